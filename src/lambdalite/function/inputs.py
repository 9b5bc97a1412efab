"""What a request asks for: images (bytes or URLs) and options, from any shape the seeds use.

Direct invokes (JSON objects)::

    {"url": "https://…/cat.jpg"}                seeds 001 and 004
    {"inputImageUrl": "https://…/kitten.jpg"}   seed 000 (DJL)
    {"image": "<base64 or data: URL>"}
    {"images": ["<base64>", …]}  {"urls": ["https://…", …]}    one engine batch
    plus options: "top_k" (and "beam_size", "max_length" for captioners)

HTTP requests (from API Gateway or a Function URL): a raw image body (`image/*`,
`application/octet-stream`), `multipart/form-data` (field `file`, else the first file; text
fields `url`, `top_k`…), a JSON body as above, a urlencoded form, or `GET …?url=`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from lambdalite.errors import EventError, PayloadTooLargeError, UnsupportedMediaTypeError
from lambdalite.function.web import HttpRequest, parse_form
from lambdalite.settings import MAX_BATCH

__all__ = ["OPTION_NAMES", "Inputs", "from_json", "from_request"]

OPTION_NAMES = ("top_k", "beam_size", "max_length")
URL_KEYS = ("url", "inputImageUrl", "imageUrl")
_USAGE = 'send {"url": "https://…"}, {"inputImageUrl": …}, {"image": "<base64>"}, {"images": [...]} or {"urls": [...]}'


class Inputs(NamedTuple):
    """Images to run (bytes, or URLs still to fetch), options, and whether it was a batch."""

    images: list[bytes | str]
    options: dict[str, int]
    batch: bool = False

    @property
    def byte_count(self) -> int:
        return sum(len(i) for i in self.images if isinstance(i, bytes))


_OPTION_DIGITS = 9  # an option is a count (top_k, beam_size, max_length): a billion is plenty
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=_\-\s]")


def _option(name: str, value: Any) -> int:
    if isinstance(value, str):
        text = value.strip()
        digits = text.lstrip("-")
        if len(digits) > _OPTION_DIGITS:
            shown = f"{text[:12]}… ({len(text):,} characters)" if len(text) > 20 else repr(text)
            raise EventError(f"{name} must be a whole number of at most {_OPTION_DIGITS} digits, not {shown}")
        if digits.isdigit():
            value = int(text)
    if isinstance(value, bool) or not isinstance(value, int):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise EventError(f"{name} must be a whole number, not {shown}")
    return value


def _options(source: Mapping[str, Any]) -> dict[str, int]:
    return {name: _option(name, source[name]) for name in OPTION_NAMES if source.get(name) is not None}


def _b64(value: Any, what: str, max_bytes: int) -> bytes:
    if not isinstance(value, str) or not value:
        raise EventError(f"{what} must be a non-empty base64 string")
    if value.startswith("data:"):
        header, sep, value = value.partition(",")
        if not sep or ";base64" not in header:
            raise EventError(f"{what}: only base64 data URLs are accepted")
    if len(value) * 3 // 4 > max_bytes:
        raise PayloadTooLargeError(f"{what} is over the {max_bytes / 2**20:.0f} MB image cap")
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        stray = _NOT_BASE64.search(value)
        if stray is not None:
            raise EventError(
                f"{what} is not base64: it has {stray.group()!r} at character {stray.start() + 1}, "
                "which base64 never uses (send the image's bytes base64-encoded)"
            ) from None
        try:  # tolerate URL-safe alphabets and missing padding
            return base64.urlsafe_b64decode(value.strip() + "=" * (-len(value.strip()) % 4))
        except (binascii.Error, ValueError) as exc:
            raise EventError(f"{what} is not valid base64") from exc


def _url(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise EventError(f"{what} must be a non-empty string URL")
    return value.strip()


def from_json(payload: Any, *, max_bytes: int, max_batch: int = MAX_BATCH) -> Inputs:
    """Inputs from a direct-invoke payload or a JSON request body."""
    if not isinstance(payload, dict):
        raise EventError(f"expected a JSON object; {_USAGE}")
    options = _options(payload)
    for key in URL_KEYS:
        if key in payload:
            return Inputs([_url(payload[key], key)], options)
    if "image" in payload:
        return Inputs([_b64(payload["image"], "image", max_bytes)], options)
    if "images" in payload or "urls" in payload:
        key = "images" if "images" in payload else "urls"
        items = payload[key]
        if not isinstance(items, list) or not items:
            raise EventError(f"{key} must be a non-empty list")
        if len(items) > max_batch:
            raise EventError(f"{key} has {len(items)} entries; at most {max_batch} per request (LAMBDALITE_MAX_BATCH)")
        images: list[bytes | str] = []
        for i, item in enumerate(items):
            what = f"{key}[{i}]"
            if key == "urls" or (isinstance(item, str) and item.startswith(("http://", "https://"))):
                images.append(_url(item, what))
            else:
                images.append(_b64(item, what, max_bytes))
        return Inputs(images, options, batch=True)
    raise EventError(f"no image in the request; {_USAGE}")


def _is_image(body: bytes) -> bool:
    from lambdalite.core.images import sniff

    return sniff(body[:16]) is not None


def from_request(request: HttpRequest, *, max_bytes: int, max_batch: int = MAX_BATCH) -> Inputs:
    """Inputs from an HTTP request, whatever its body."""
    query = {k: v[0] for k, v in request.query.items() if v}
    options = _options(query)
    if len(request.body) > max_bytes:
        raise PayloadTooLargeError(
            f"the body is {len(request.body) / 2**20:.1f} MB, over the {max_bytes / 2**20:.0f} MB cap"
        )
    if not request.body:
        for key in URL_KEYS:
            if query.get(key):
                return Inputs([query[key]], options)
        raise EventError(f"no image in the request: POST an image body, a form with a file, or JSON ({_USAGE})")
    ctype = request.content_type
    if ctype.startswith("image/") or ctype in ("application/octet-stream", "binary/octet-stream"):
        return Inputs([request.body], options)
    if ctype != "multipart/form-data" and _is_image(request.body):
        # `curl --data-binary @cat.jpg` labels the bytes x-www-form-urlencoded; the bytes say otherwise.
        return Inputs([request.body], options)
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        fields, files = parse_form(request)
        options = {**options, **_options(fields)}
        chosen = next((f for f in files if f.name == "file"), files[0] if files else None)
        if chosen is not None:
            if not chosen.data:
                raise EventError(f"the uploaded file {chosen.filename or chosen.name!r} is empty")
            return Inputs([chosen.data], options)
        for key in URL_KEYS:
            if fields.get(key):
                return Inputs([fields[key].strip()], options)
        raise EventError("the form has no file and no url field")
    if ctype in ("application/json", "") or ctype.endswith("+json"):
        parsed = from_json(request.json(), max_bytes=max_bytes, max_batch=max_batch)
        return parsed._replace(options={**options, **parsed.options})
    raise UnsupportedMediaTypeError(
        f"cannot read a {ctype} body: send an image (image/*), multipart/form-data, or application/json"
    )
