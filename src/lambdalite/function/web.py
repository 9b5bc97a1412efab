"""HTTP requests and responses as the function sees them, whatever gateway carried them.

`HttpRequest` is what an API Gateway or Function URL event becomes (see events.py): method,
path, decoded query, lower-case headers and the body as bytes. `HttpResponse` is what the
function's routes answer; events.py turns it back into the proxy response of the event's own
kind. Bodies are parsed here: JSON, `multipart/form-data` and `application/x-www-form-urlencoded`.
Standard library only: this runs inside the function.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from lambdalite.errors import EventError, UnsupportedMediaTypeError

__all__ = ["FormPart", "HttpRequest", "HttpResponse", "json_response", "parse_form", "parse_multipart"]

TEXT_TYPES = ("text/", "application/json", "application/javascript", "application/xml", "image/svg+xml")


class HttpRequest(NamedTuple):
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    source: str = "http"  # which front door: "rest", "http", "url"
    text_body: bool = False  # the gateway delivered the body as text (not base64)

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-case ("" when absent)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except RecursionError:
            raise EventError("the body is JSON nested too deeply to read; send at most a few hundred levels") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise EventError(f"the body is not valid JSON: {exc}") from exc


class HttpResponse(NamedTuple):
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        for name, value in self.headers.items():
            if name.lower() == "content-type":
                return value
        return ""

    @property
    def is_text(self) -> bool:
        return self.content_type.lower().startswith(TEXT_TYPES)


def json_response(value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> HttpResponse:
    body = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    return HttpResponse(status, {"Content-Type": "application/json", **(headers or {})}, body)


class FormPart(NamedTuple):
    name: str
    filename: str | None
    content_type: str
    data: bytes


def _header_params(value: str) -> tuple[str, dict[str, str]]:
    """`form-data; name="file"; filename="a.jpg"` -> ("form-data", {"name": "file", ...})."""
    head, *rest = value.split(";")
    params: dict[str, str] = {}
    for item in rest:
        key, sep, val = item.strip().partition("=")
        if sep:
            val = val.strip()
            if len(val) >= 2 and val[0] == val[-1] == '"':
                val = val[1:-1].replace('\\"', '"')
            params[key.strip().lower()] = val
    return head.strip().lower(), params


def parse_multipart(body: bytes, content_type: str) -> list[FormPart]:
    """Split a `multipart/form-data` body into its parts."""
    _, params = _header_params(content_type)
    boundary = params.get("boundary")
    if not boundary:
        raise EventError("multipart/form-data body without a boundary parameter")
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 3:
        raise EventError("malformed multipart/form-data body: no parts found for its boundary")
    parts: list[FormPart] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):  # the closing delimiter
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk.lstrip(b"\n")
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise EventError("malformed multipart/form-data part: no blank line after its headers")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        _, disposition = _header_params(headers.get("content-disposition", ""))
        parts.append(
            FormPart(
                name=disposition.get("name", ""),
                filename=disposition.get("filename"),
                content_type=headers.get("content-type", "text/plain").split(";", 1)[0].strip().lower(),
                data=data,
            )
        )
    return parts


def parse_form(request: HttpRequest) -> tuple[dict[str, str], list[FormPart]]:
    """Fields and files of a form body (multipart or urlencoded)."""
    if request.content_type == "multipart/form-data":
        parts = parse_multipart(request.body, request.headers.get("content-type", ""))
        fields = {p.name: p.data.decode("utf-8", "replace") for p in parts if p.filename is None}
        files = [p for p in parts if p.filename is not None]
        return fields, files
    if request.content_type == "application/x-www-form-urlencoded":
        try:
            decoded = parse_qs(request.body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError as exc:
            raise EventError("the form body is not UTF-8") from exc
        return {k: v[0] for k, v in decoded.items()}, []
    raise UnsupportedMediaTypeError(f"expected a form body, got {request.content_type or 'no content type'}")
