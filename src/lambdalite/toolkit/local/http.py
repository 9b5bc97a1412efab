"""A small, fast HTTP/1.1 server on asyncio: keep-alive, Content-Length and chunked bodies.

Both of the emulator's listeners use it: the Invoke API (one port) and each instance's Runtime
API (an ephemeral port). It exists because the warm path crosses it twice per invoke and every
framework costs more than the budget (about 1 ms for the whole round trip); it speaks just
enough HTTP for real clients: botocore (urllib3), the AWS CLI, curl, and awslambdaric's libcurl
client, which keeps one connection open and long-polls on it.

    server = HttpServer(handler, max_body=6 * 2**20)   # handler(Request) -> Awaitable[Reply]
    port = await server.start("127.0.0.1", 0)
    ...
    await server.close()

Requests on one connection are answered in order, one at a time. A body over `max_body` is read
and dropped (`Request.body_dropped`), so the handler can still answer 413 on a healthy connection;
a body over `DROP_LIMIT` closes the connection instead.

`HttpLimits` bound what one client may hold (the serve port uses `PUBLIC_LIMITS`):

* the request line and headers: at most `head_bytes` (431), CRLF line ends (a bare LF is 400),
  HTTP/1.0 or 1.1 (others 505), header names that are tokens and values without control bytes;
* the header timeout: a request's head must be complete `header_timeout_s` after its first byte
  (or after the connection opened): else 408 and the connection closes (slowloris);
* the idle timeout: a connection that sends nothing for `idle_timeout_s` while no request of it
  is being answered is closed (idle keep-alive connections, a stalled body);
* `max_buffered` bytes read ahead while a request is being answered (pipelining): past it the
  server stops reading that connection until the answer is out; answers wait for a client that
  does not read them (the transport's write buffer) the same way;
* `max_connections` open at once: a connection past it is answered 503 and closed.

A HEAD request's answer carries the headers (and the Content-Length) of the GET without its body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import NamedTuple

from lambdalite.toolkit.local.messages import Reply, Request

__all__ = ["DROP_LIMIT", "HEAD_LIMIT", "PUBLIC_LIMITS", "Handler", "HttpLimits", "HttpServer"]

HEAD_LIMIT = 64 * 1024  # request line + headers
DROP_LIMIT = 64 * 2**20  # bodies up to this size are drained and dropped; beyond it, the connection closes
_SMALL_WRITE = 64 * 1024
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_VERSION = re.compile(r"HTTP/(\d)\.(\d)")
_BARE_LF = re.compile(rb"(?<!\r)\n")


class HttpLimits(NamedTuple):
    """What one client may hold of the server (see the module docstring); None: no such limit."""

    head_bytes: int = HEAD_LIMIT
    header_timeout_s: float | None = None
    idle_timeout_s: float | None = None
    max_buffered: int = 2**20
    max_connections: int | None = None


# The serve port (Invoke API and API Gateway): API Gateway's 10,240 bytes of request line and
# headers. AWS publishes no header or keep-alive timeouts for API Gateway or the Lambda API; these
# are the usual front-end values (nginx's client_header_timeout is 60 s, an ALB's idle timeout 60 s).
PUBLIC_LIMITS = HttpLimits(
    head_bytes=10_240, header_timeout_s=10.0, idle_timeout_s=60.0, max_buffered=2**20, max_connections=512
)

Handler = Callable[[Request], Awaitable[Reply]]

_log = logging.getLogger("lambdalite.toolkit.local.http")
_REASONS = {s.value: s.phrase for s in HTTPStatus}


class _BadRequest(Exception):
    pass


class _Connection(asyncio.Protocol):
    __slots__ = (
        "body",
        "body_size",
        "busy",
        "chunk_left",
        "closing",
        "dropped",
        "keep_alive",
        "last_data",
        "paused",
        "pending",
        "server",
        "state",
        "transport",
        "buffer",
        "waiting_since",
        "write_paused",
        "writable",
    )

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.state = "head"  # head | body | chunk_size | chunk_data | chunk_crlf | trailers
        self.pending: Request | None = None
        self.body = bytearray()
        self.body_size = 0  # bytes of body still expected (Content-Length) or read so far (chunked)
        self.chunk_left = 0
        self.dropped = False
        self.keep_alive = True
        self.busy = False
        self.closing = False
        self.paused = False  # reading paused: enough is buffered behind the request in progress
        self.write_paused = False  # the client is not reading its answers
        self.writable: asyncio.Future[None] | None = None
        now = time.monotonic()
        self.waiting_since = now  # when the connection began waiting for a request's head
        self.last_data = now

    # -- asyncio callbacks ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        limit = self.server.limits.max_connections
        if limit is not None and len(self.server.connections) >= limit:
            self._fail(503, f"too many connections (at most {limit})")
            return
        self.server.connections.add(self)
        self.server.watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server.connections.discard(self)
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.state == "head" and not self.buffer and not self.busy:
            self.waiting_since = time.monotonic()  # a new request's first byte: its head's clock starts
        self.buffer += data
        self.last_data = time.monotonic()
        if not self.busy:
            self._advance()
        elif len(self.buffer) > self.server.limits.max_buffered and self.transport is not None and not self.paused:
            self.paused = True  # pipelined bytes behind a request in progress: stop reading until it is done
            self.transport.pause_reading()

    def check_timers(self, now: float) -> None:
        """Close the connection when its request head is late (408), when it sent nothing for the
        idle timeout while waiting for a request (closed without a word), or when its body stalled
        that long (408). A request being answered is never timed here."""
        if self.busy or self.closing:
            return
        limits = self.server.limits
        if self.state == "head":
            if self.buffer:
                if limits.header_timeout_s is not None and now - self.waiting_since > limits.header_timeout_s:
                    self._fail(408, f"the request head did not arrive within {limits.header_timeout_s:g} s")
            elif limits.idle_timeout_s is not None and now - self.waiting_since > limits.idle_timeout_s:
                self._close()
        elif limits.idle_timeout_s is not None and now - self.last_data > limits.idle_timeout_s:
            self._fail(408, f"the request body stalled: nothing arrived for {limits.idle_timeout_s:g} s")

    # -- parsing -------------------------------------------------------------------------------------

    def _advance(self) -> None:
        try:
            while not self.busy and not self.closing and self.buffer:
                before = len(self.buffer)
                request = self._parse_step()
                if request is not None:
                    self._dispatch(request)
                elif len(self.buffer) == before:
                    return  # waiting for more bytes
        except _BadRequest as exc:
            self._fail(400, str(exc))

    def _parse_step(self) -> Request | None:
        """Consume what the buffer allows; return a request once it is complete."""
        if self.state == "head":
            limit = self.server.limits.head_bytes
            end = self.buffer.find(b"\r\n\r\n")
            if _BARE_LF.search(self.buffer, 0, end + 2 if end >= 0 else min(len(self.buffer), limit + 1)):
                raise _BadRequest("malformed request: lines must end with CRLF, not a bare LF")
            if end < 0:
                if len(self.buffer) > limit:
                    self._fail(431, f"request line and headers over {limit:,} bytes")
                return None
            if end + 4 > limit:
                self._fail(431, f"request line and headers over {limit:,} bytes")
                return None
            head = bytes(self.buffer[:end])
            del self.buffer[: end + 4]
            return self._start(head)
        if self.state == "body":
            take = min(self.chunk_left, len(self.buffer))
            self._keep(self.buffer, take)
            del self.buffer[:take]
            self.chunk_left -= take
            return self._finish() if self.chunk_left == 0 else None
        return self._parse_chunked()

    def _start(self, head: bytes) -> Request | None:
        try:
            text = head.decode("latin-1")
            line, *header_lines = text.split("\r\n")
            method, target, version = line.split(" ")
        except ValueError as exc:
            raise _BadRequest("malformed request line") from exc
        known = _VERSION.fullmatch(version)
        if known is None or not _TOKEN.fullmatch(method) or not target or _BAD_VALUE.search(target) or " " in target:
            raise _BadRequest("malformed request line")
        if version not in ("HTTP/1.0", "HTTP/1.1"):
            self._fail(505, f"{version} is not supported: send HTTP/1.1")
            return None
        headers: dict[str, str] = {}
        for raw in header_lines:
            name, sep, value = raw.partition(":")
            if not sep or not _TOKEN.fullmatch(name):
                raise _BadRequest(f"malformed header {name[:40]!r}")
            if _BAD_VALUE.search(value):
                raise _BadRequest(f"malformed header {name[:40]!r}: control characters in its value")
            key = name.lower()
            value = value.strip(" \t")
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if "transfer-encoding" in headers and "content-length" in headers:
            raise _BadRequest("both Transfer-Encoding and Content-Length")
        path, _, query = target.partition("?")
        conn = headers.get("connection", "").lower()
        self.keep_alive = "close" not in conn if version == "HTTP/1.1" else "keep-alive" in conn
        self.pending = Request(method, path, query, headers, b"", 0)
        self.body = bytearray()
        self.dropped = False
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.state = "chunk_size"
            self.body_size = 0
            self._continue(headers)
            return None
        length = headers.get("content-length")
        if length is None:
            return self._finish()
        try:
            size = int(length)
            if size < 0:
                raise ValueError(length)
        except ValueError as exc:
            raise _BadRequest("bad Content-Length") from exc
        if size > DROP_LIMIT:
            self._fail(413, "request body too large")
            return None
        self.pending.body_size = size
        self.dropped = size > self.server.max_body
        if size == 0:
            return self._finish()
        self.state = "body"
        self.chunk_left = size
        self._continue(headers)
        return None

    def _continue(self, headers: dict[str, str]) -> None:
        if headers.get("expect", "").lower() == "100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _keep(self, data: bytearray, n: int) -> None:
        if not self.dropped:
            self.body += data[:n]

    def _parse_chunked(self) -> Request | None:
        while self.buffer:
            if self.state == "chunk_size":
                end = self.buffer.find(b"\r\n")
                if end < 0:
                    if len(self.buffer) > 1024:
                        raise _BadRequest("bad chunk size line")
                    return None
                line = bytes(self.buffer[:end]).split(b";", 1)[0].strip()
                del self.buffer[: end + 2]
                try:
                    self.chunk_left = int(line, 16)
                except ValueError as exc:
                    raise _BadRequest("bad chunk size") from exc
                if self.chunk_left == 0:
                    self.state = "trailers"
                    continue
                self.body_size += self.chunk_left
                if self.body_size > DROP_LIMIT:
                    self._fail(413, "request body too large")
                    return None
                if self.body_size > self.server.max_body:
                    self.dropped = True
                    self.body = bytearray()
                self.state = "chunk_data"
            elif self.state == "chunk_data":
                take = min(self.chunk_left, len(self.buffer))
                self._keep(self.buffer, take)
                del self.buffer[:take]
                self.chunk_left -= take
                if self.chunk_left:
                    return None
                self.state = "chunk_crlf"
            elif self.state == "chunk_crlf":
                if len(self.buffer) < 2:
                    return None
                if self.buffer[:2] != b"\r\n":
                    raise _BadRequest("bad chunk terminator")
                del self.buffer[:2]
                self.state = "chunk_size"
            else:  # trailers: lines until an empty one
                end = self.buffer.find(b"\r\n")
                if end < 0:
                    return None
                del self.buffer[: end + 2]
                if end == 0:
                    assert self.pending is not None
                    self.pending.body_size = self.body_size
                    return self._finish()
        return None

    def _finish(self) -> Request:
        request = self.pending
        assert request is not None
        request.body = bytes(self.body)
        request.body_dropped = self.dropped
        self.pending = None
        self.body = bytearray()
        self.state = "head"
        return request

    # -- answering -----------------------------------------------------------------------------------

    def _dispatch(self, request: Request) -> None:
        self.busy = True
        asyncio.get_running_loop().create_task(self._respond(request, self.keep_alive))

    async def _respond(self, request: Request, keep_alive: bool) -> None:
        try:
            reply = await self.server.handler(request)
        except Exception:  # a bug must not take the server down; the client gets a JSON 500
            _log.exception("internal error answering %s %s", request.method, request.path)
            reply = Reply(500, [("Content-Type", "application/json")], b'{"message":"Internal server error"}')
        self._write(reply, keep_alive, head_only=request.method == "HEAD")
        if self.write_paused and not self.closing:  # the client is not reading: wait before reading more
            self.writable = asyncio.get_running_loop().create_future()
            await self.writable
            self.writable = None
        self.busy = False
        self.waiting_since = time.monotonic()
        if not keep_alive:
            self._close()
            return
        if self.paused and self.transport is not None and not self.closing:
            self.paused = False
            self.transport.resume_reading()
        if self.buffer:
            self._advance()

    def _write(self, reply: Reply, keep_alive: bool, *, head_only: bool = False) -> None:
        if self.closing or self.transport is None or self.transport.is_closing():
            return
        lines = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Unknown')}"]
        lines.extend(f"{name}: {value}" for name, value in reply.headers)
        lines.append(f"Content-Length: {len(reply.body)}")
        if not keep_alive:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if head_only:  # HEAD: the GET's headers, Content-Length included, and no body
            self.transport.write(head)
        elif len(reply.body) < _SMALL_WRITE:
            self.transport.write(head + reply.body)
        else:
            self.transport.write(head)
            self.transport.write(reply.body)

    def _fail(self, status: int, message: str) -> None:
        body = json.dumps({"message": message}).encode()
        self._write(Reply(status, [("Content-Type", "application/json")], body), keep_alive=False)
        self._close()

    def _close(self) -> None:
        self.closing = True
        self.buffer.clear()
        if self.transport is not None:
            self.transport.close()


class HttpServer:
    """One listening socket; every complete request goes to `handler`, answers go back in order."""

    def __init__(self, handler: Handler, *, max_body: int, limits: HttpLimits | None = None) -> None:
        self.handler = handler
        self.max_body = max_body
        self.limits = limits or HttpLimits()
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def watch(self) -> None:
        """Start the sweep that enforces the header and idle timeouts (once, when first needed)."""
        if self._sweeper is None and (
            self.limits.header_timeout_s is not None or self.limits.idle_timeout_s is not None
        ):
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        timeouts = [t for t in (self.limits.header_timeout_s, self.limits.idle_timeout_s) if t is not None]
        period = min(1.0, min(timeouts) / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for conn in list(self.connections):
                conn.check_timers(now)

    async def start(self, host: str, port: int) -> int:
        """Listen; return the bound port (pass 0 for an ephemeral one)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, backlog=1024)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        self.connections.clear()
        await self._server.wait_closed()
        self._server = None
