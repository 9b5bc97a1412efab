from __future__ import annotations

import pytest

from lambdalite.errors import EventError, UnsupportedMediaTypeError
from lambdalite.function.web import HttpRequest, parse_form, parse_multipart

from helpers.eventlib import BOUNDARY, multipart


def form_request(body: bytes, ctype: str) -> HttpRequest:
    return HttpRequest("POST", "/", {}, {"content-type": ctype}, body)


def test_multipart_files_and_fields():
    body = multipart({"file": ("a.jpg", "image/jpeg", b"\xff\xd8\r\n--not-a-boundary\r\n\x00")}, {"top_k": "3"})
    fields, files = parse_form(form_request(body, f"multipart/form-data; boundary={BOUNDARY}"))
    assert fields == {"top_k": "3"}
    [part] = files
    assert (part.name, part.filename, part.content_type) == ("file", "a.jpg", "image/jpeg")
    assert part.data == b"\xff\xd8\r\n--not-a-boundary\r\n\x00"  # binary survives, CRLFs included


def test_quoted_boundary_and_browser_style():
    body = multipart({"upload": ("x.png", "image/png", b"PNGDATA")}, boundary="WebKitFormBoundaryABC")
    parts = parse_multipart(body, 'multipart/form-data; boundary="WebKitFormBoundaryABC"')
    assert parts[0].name == "upload" and parts[0].data == b"PNGDATA"


@pytest.mark.parametrize(
    ("body", "ctype", "message"),
    [
        (b"whatever", "multipart/form-data", "without a boundary"),
        (b"no delimiters here", "multipart/form-data; boundary=abc", "no parts found"),
        (
            b"--abc\r\nContent-Disposition: form-data; name=x\r\nno blank line--abc--",
            "multipart/form-data; boundary=abc",
            "no blank line",
        ),
    ],
)
def test_malformed_multipart(body, ctype, message):
    with pytest.raises(EventError, match=message):
        parse_form(form_request(body, ctype))


def test_urlencoded_form():
    fields, files = parse_form(
        form_request(b"url=https%3A%2F%2Fx%2Fa.jpg&top_k=2", "application/x-www-form-urlencoded")
    )
    assert fields == {"url": "https://x/a.jpg", "top_k": "2"} and files == []
    with pytest.raises(UnsupportedMediaTypeError):
        parse_form(form_request(b"x", "text/plain"))
