"""What one client may hold of the emulator's HTTP server (issue 14, row 7), over real sockets.

Short limits keep the tests quick; `PUBLIC_LIMITS` (the serve port) has the same rules with the
documented numbers."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from lambdalite.toolkit.local.http import PUBLIC_LIMITS, HttpLimits, HttpServer
from lambdalite.toolkit.local.messages import Reply, Request

LIMITS = HttpLimits(
    head_bytes=10_240, header_timeout_s=1.0, idle_timeout_s=1.5, max_buffered=256 * 1024, max_connections=40
)
PAGE = b"<html>" + b"x" * 9_890 + b"</html>"


async def handler(request: Request) -> Reply:
    if request.path == "/slow":
        await asyncio.sleep(1.5)
    if request.path == "/page":
        return Reply(200, [("Content-Type", "text/html")], PAGE)
    return Reply(200, [("Content-Type", "application/json")], json.dumps({"path": request.path}).encode())


class Running:
    def __init__(self, limits: HttpLimits) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = HttpServer(handler, max_body=10 * 2**20, limits=limits)
        self.port = asyncio.run_coroutine_threadsafe(self.server.start("127.0.0.1", 0), self.loop).result(10)

    def buffered(self) -> int:
        """The most bytes any connection holds unparsed, read on the server's own loop."""

        async def peek() -> int:
            return max((len(c.buffer) for c in self.server.connections), default=0)

        return asyncio.run_coroutine_threadsafe(peek(), self.loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture()
def server() -> Iterator[Running]:
    running = Running(LIMITS)
    yield running
    running.close()


def connect(port: int, timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def response(sock: socket.socket, buffer: bytearray, *, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response")
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = 0 if head_only else int(headers.get("content-length", "0"))
    while len(rest) < length:
        rest += sock.recv(65536)
    buffer[:] = rest[length:]
    return int(lines[0].split(" ")[1]), headers, rest[:length]


def closed(sock: socket.socket, within: float) -> bool:
    """Whether the server closes the connection within `within` seconds (reading what it sends)."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def test_head_gets_the_headers_of_get_and_no_body(server):
    with connect(server.port) as sock:
        buffer = bytearray()
        sock.sendall(b"HEAD /page HTTP/1.1\r\nHost: h\r\n\r\n")
        status, headers, _ = response(sock, buffer, head_only=True)
        assert status == 200 and headers["content-length"] == str(len(PAGE))
        sock.sendall(b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
        status, _, body = response(sock, buffer)  # the next answer on the connection is intact
        assert status == 200 and json.loads(body) == {"path": "/next"}
        assert buffer == b""


def test_a_slowloris_head_gets_408_at_the_header_timeout(server):
    with connect(server.port) as sock:
        start = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n")
        status = None
        for i in range(40):  # a header line every 0.1 s, never the blank line
            try:
                sock.sendall(f"X-Drip-{i}: {i}\r\n".encode())
            except OSError:
                break
            time.sleep(0.1)
            sock.settimeout(0.01)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            status = int(data.split(b" ")[1])
            break
        assert status == 408
        assert time.monotonic() - start < LIMITS.header_timeout_s + 1.0
        assert closed(sock, 2)


def test_idle_connections_are_closed_at_the_idle_timeout(server):
    socks = [connect(server.port) for _ in range(30)]  # connected, never a byte
    used = connect(server.port)  # a keep-alive connection after one answer
    used.sendall(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
    assert response(used, bytearray())[0] == 200
    start = time.monotonic()
    try:
        assert all(closed(s, LIMITS.idle_timeout_s + 2) for s in [*socks, used])
        assert time.monotonic() - start < LIMITS.idle_timeout_s + 2
    finally:
        for s in [*socks, used]:
            s.close()


def test_a_stalled_body_is_closed_at_the_idle_timeout(server):
    with connect(server.port) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nhalf")
        status, _, _ = response(sock, bytearray())
        assert status == 408


def test_pipelined_bytes_behind_a_slow_request_are_bounded(server):
    """400 MB pipelined behind a slow request used to be read into memory; now the server stops
    reading past `max_buffered` until the request in progress is answered."""
    with connect(server.port) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
        sock.setblocking(False)
        junk = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n" * 10_000
        sent = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and sent < 200 * 2**20:
            try:
                sent += sock.send(junk)
            except BlockingIOError:
                time.sleep(0.01)
        assert server.buffered() <= LIMITS.max_buffered + 2**20  # the cap, plus at most one read
        assert sent < 64 * 2**20, f"{sent / 2**20:.0f} MB accepted behind a request in progress"
        sock.setblocking(True)
        sock.settimeout(10)
        buffer = bytearray()
        assert response(sock, buffer)[0] == 200  # the slow one, then the pipelined ones, in order
        assert response(sock, buffer)[0] == 200


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\nHost: h\n\n", 400),  # bare LF: used to hang
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", 431),  # in one piece
        (b"GET / HTTP/1.9\r\nHost: h\r\n\r\n", 505),
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHo\x00st: h\r\n\r\n", 400),  # NUL in a header name
        (b"GET / HTTP/1.1\r\nHost: h\x01\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    ],
)
def test_malformed_requests_are_answered_and_closed(server, request_bytes, status):
    with connect(server.port, timeout=5) as sock:
        try:
            sock.sendall(request_bytes)
        except ConnectionResetError:
            pytest.fail("the server reset the connection instead of answering")
        got, headers, body = response(sock, bytearray())
        assert got == status and "message" in json.loads(body)
        assert headers["connection"] == "close" and closed(sock, 2)


def test_connections_past_the_limit_get_503(server):
    socks = [connect(server.port) for _ in range(LIMITS.max_connections)]
    try:
        for s in socks:  # every one is really open and served
            s.sendall(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
            assert response(s, bytearray())[0] == 200
        with connect(server.port) as extra:
            assert response(extra, bytearray())[0] == 503
    finally:
        for s in socks:
            s.close()


def test_the_serve_port_has_api_gateways_head_limit():
    assert PUBLIC_LIMITS.head_bytes == 10_240
    assert PUBLIC_LIMITS.header_timeout_s and PUBLIC_LIMITS.idle_timeout_s and PUBLIC_LIMITS.max_connections
