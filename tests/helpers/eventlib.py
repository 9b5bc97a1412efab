"""Load the real-shaped events in tests/events/, filling in the image they carry."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

from helpers import EVENTS

BOUNDARY = "----lambdaliteBoundary7MA4YWxkTrZu0gW"


def multipart(
    files: dict[str, tuple[str, str, bytes]], fields: dict[str, str] | None = None, boundary: str = BOUNDARY
) -> bytes:
    """A multipart/form-data body: files maps field -> (filename, content type, bytes)."""
    out = b""
    for name, value in (fields or {}).items():
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n').encode()
    for name, (filename, ctype, data) in files.items():
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {ctype}\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode()


def load_event(name: str, image: bytes = b"", url: str = "http://example.invalid/cat.jpg") -> Any:
    text = (EVENTS / name).read_text()
    body = multipart({"file": ("cat.jpg", "image/jpeg", image)})
    subs = {
        "IMAGE_BASE64": base64.b64encode(image).decode(),
        "IMAGE_LENGTH": str(len(image)),
        # What API Gateway does to binary bytes it treats as text.
        "IMAGE_AS_TEXT": json.dumps(image.decode("utf-8", "replace"))[1:-1],
        "MULTIPART_BASE64": base64.b64encode(body).decode(),
        "MULTIPART_LENGTH": str(len(body)),
        "IMAGE_URL": url,
        "IMAGE_URL_QUOTED": quote(url, safe=""),
    }
    for key, value in subs.items():
        text = text.replace("${" + key + "}", value)
    return json.loads(text)


def event_names() -> list[str]:
    return sorted(p.name for p in EVENTS.glob("*.json"))
