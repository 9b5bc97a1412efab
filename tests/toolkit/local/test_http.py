"""The emulator's HTTP/1.1 server, fed raw bytes over real sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from lambdalite.toolkit.local.http import HttpServer
from lambdalite.toolkit.local.messages import Reply, Request


async def describe(request: Request) -> Reply:
    if request.path == "/boom":
        raise RuntimeError("a bug in a handler")
    if request.path == "/slow":
        await asyncio.sleep(0.2)
    body = json.dumps(
        {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "headers": request.headers,
            "body": request.body.decode("latin-1"),
            "size": request.body_size,
            "dropped": request.body_dropped,
        }
    ).encode()
    return Reply(200, [("Content-Type", "application/json")], body)


@pytest.fixture()
def port() -> Iterator[int]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = HttpServer(describe, max_body=1000)
    bound = asyncio.run_coroutine_threadsafe(server.start("127.0.0.1", 0), loop).result(10)
    yield bound
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, dict[str, str], bytes]:
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response")
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        rest += chunk
    buffer[:] = rest[length:]
    return status, headers, rest[:length]


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def test_keep_alive_serves_many_requests_on_one_connection(port):
    with connect(port) as sock:
        buffer = bytearray()
        for i in range(3):
            sock.sendall(f"POST /x?i={i} HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello".encode())
            status, headers, body = read_response(sock, buffer)
            seen = json.loads(body)
            assert (status, seen["query"], seen["body"], seen["method"]) == (200, f"i={i}", "hello", "POST")
            assert "connection" not in headers


def test_no_content_type_and_no_body_are_fine(port):
    with connect(port) as sock:
        sock.sendall(b"POST /p HTTP/1.1\r\nHost: h\r\n\r\n")
        status, _, body = read_response(sock, bytearray())
        assert status == 200 and json.loads(body)["body"] == ""


def test_pipelined_requests_are_answered_in_order(port):
    with connect(port) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\nGET /second HTTP/1.1\r\nHost: h\r\n\r\n")
        buffer = bytearray()
        assert json.loads(read_response(sock, buffer)[2])["path"] == "/slow"
        assert json.loads(read_response(sock, buffer)[2])["path"] == "/second"


def test_chunked_body_with_extensions_and_trailers(port):
    with connect(port) as sock:
        sock.sendall(
            b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
        )
        seen = json.loads(read_response(sock, bytearray())[2])
        assert (seen["body"], seen["size"]) == ("hello world", 11)


def test_body_sent_byte_by_byte(port):
    request = b"POST /s HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
    with connect(port) as sock:
        for i in range(len(request)):
            sock.sendall(request[i : i + 1])
        assert json.loads(read_response(sock, bytearray())[2])["body"] == "abc"


def test_expect_100_continue(port):
    with connect(port) as sock:
        sock.sendall(b"POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"ok")
        assert json.loads(read_response(sock, bytearray())[2])["body"] == "ok"


def test_oversized_body_is_drained_and_flagged_and_the_connection_lives(port):
    with connect(port) as sock:
        buffer = bytearray()
        sock.sendall(b"POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n" + b"z" * 5000)
        seen = json.loads(read_response(sock, buffer)[2])
        assert (seen["dropped"], seen["size"], seen["body"]) == (True, 5000, "")
        sock.sendall(b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
        assert json.loads(read_response(sock, buffer)[2])["path"] == "/after"


def test_connection_close_and_http_1_0(port):
    for request in (b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\n", b"GET /b HTTP/1.0\r\n\r\n"):
        with connect(port) as sock:
            sock.sendall(request)
            _, headers, _ = read_response(sock, bytearray())
            assert headers["connection"] == "close"
            assert sock.recv(10) == b""


def test_malformed_requests_get_400_and_a_closed_connection(port):
    for bad in (b"NONSENSE\r\n\r\n", b"GET / HTTP/1.1\r\nno colon here\r\n\r\n"):
        with connect(port) as sock:
            sock.sendall(bad)
            status, _, body = read_response(sock, bytearray())
            assert status == 400 and "message" in json.loads(body)
            assert sock.recv(10) == b""


def test_a_handler_bug_is_a_json_500_and_the_server_keeps_serving(port):
    with connect(port) as sock:
        buffer = bytearray()
        sock.sendall(b"GET /boom HTTP/1.1\r\nHost: h\r\n\r\n")
        status, _, body = read_response(sock, buffer)
        assert (status, json.loads(body)) == (500, {"message": "Internal server error"})
        sock.sendall(b"GET /fine HTTP/1.1\r\nHost: h\r\n\r\n")
        assert read_response(sock, buffer)[0] == 200
