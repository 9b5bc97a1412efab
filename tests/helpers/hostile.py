"""Hostile inputs, generated where the test needs them (no large binaries in the repository).

scan_bomb(2000, 1000)          a progressive JPEG whose last scan repeats 1,000 times
flat_png(8000, 8000, "RGBA")   a PNG of one colour: 64 MP that compress to about 250 KB
DripServer(...)                an image server that sends its headers or body a byte at a time
"""

from __future__ import annotations

import io
import re
import socket
import struct
import threading
import time
import zlib

from PIL import Image

_MARKER = re.compile(rb"\xff+([^\x00\xd0-\xd7\xff])")
# PNG colour type and bytes per pixel for each mode flat_png writes.
_PNG_MODES = {"L": (0, 1), "RGB": (2, 3), "P": (3, 1), "LA": (4, 2), "RGBA": (6, 4)}


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of every segment after SOI; a scan's segment includes its entropy data."""
    out: list[tuple[int, int, int]] = []
    pos = 2
    while pos + 1 < len(data):
        marker = data[pos + 1]
        if marker == 0xD9:
            out.append((marker, pos, pos + 2))
            break
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:
            found = _MARKER.search(data, end)
            assert found is not None
            end = found.start(1) - 1
        out.append((marker, pos, end))
        pos = end
    return out


def scan_bomb(size: int, repeats: int, *, mode: str = "L") -> bytes:
    """A progressive `size` x `size` JPEG whose last (refinement) scan is repeated `repeats` more
    times: valid for libjpeg, which makes one pass over every block per scan."""
    buf = io.BytesIO()
    Image.new(mode, (size, size), 128 if mode == "L" else (128, 64, 32)).save(buf, "JPEG", progressive=True)
    data = buf.getvalue()
    last = [s for s in jpeg_segments(data) if s[0] == 0xDA][-1]
    scan = data[last[1] : last[2]]
    return data[: last[2]] + scan * repeats + data[last[2] :]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def flat_png(width: int, height: int, mode: str = "RGBA", *, transparency: bool = False) -> bytes:
    """A `width` x `height` PNG of one colour (zeros), compressed row by row without ever holding
    the image: an 8000 x 8000 RGBA one is about 250 KB. `transparency` gives a palette image a
    tRNS chunk (index 0 transparent, the rest opaque)."""
    color_type, depth = _PNG_MODES[mode]
    head = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0))
    if mode == "P":
        head += _chunk(b"PLTE", bytes(range(256)) * 3)
        if transparency:
            head += _chunk(b"tRNS", b"\x00" + b"\xff" * 255)
    compressor = zlib.compressobj(9)
    left = height * (1 + width * depth)  # each row: filter type 0, then zero pixels: all zeros
    block = b"\x00" * (1 << 20)
    parts = []
    while left:
        piece = block[: min(left, len(block))]
        parts.append(compressor.compress(piece))
        left -= len(piece)
    parts.append(compressor.flush())
    return head + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


class DripServer:
    """A raw TCP server on 127.0.0.1 for one hostile answer per connection.

    `body`: valid headers (a Content-Length of `length`), then one body byte every `interval`.
    `headers`: a status line, then one header line every `interval`. Either way the connection
    is closed after `give_up` seconds, so a client without a deadline still ends (late)."""

    def __init__(self, kind: str, *, interval: float = 0.5, length: int = 10_000, give_up: float = 8.0) -> None:
        self.kind = kind
        self.interval = interval
        self.length = length
        self.give_up = give_up
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def url(self, path: str = "/cat.jpg") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                if self.kind == "body":
                    conn.sendall(
                        f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {self.length}\r\n\r\n".encode()
                    )
                    chunk, line = b"\xff", None
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\n")
                    chunk, line = None, 0
                end = time.monotonic() + self.give_up
                while not self.closed.is_set() and time.monotonic() < end:
                    if chunk is not None:
                        conn.sendall(chunk)
                    else:
                        assert line is not None
                        line += 1
                        conn.sendall(f"X-Drip-{line}: {line}\r\n".encode())
                    time.sleep(self.interval)
            except OSError:
                return

    def close(self) -> None:
        self.closed.set()
        self.sock.close()
        self.thread.join(5)
