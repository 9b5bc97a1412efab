"""The URL fetcher against a real local server, and its refusals."""

from __future__ import annotations

import ipaddress
import time
from urllib.parse import quote

import pytest

from lambdalite.errors import FetchError, FetchTimeoutError, PayloadTooLargeError, URLRefusedError
from lambdalite.function.urls import URLPolicy, fetch_image

from helpers.hostile import DripServer

LOCAL = URLPolicy(allow_private=True, connect_timeout=2, total_timeout=5)
STRICT = URLPolicy(allow_private=False, connect_timeout=2, total_timeout=5)


def test_fetches_from_a_local_server(image_server, chelsea_jpeg):
    assert fetch_image(image_server.url("/cat.jpg"), LOCAL) == chelsea_jpeg


def test_follows_redirects(image_server, chelsea_jpeg):
    assert fetch_image(image_server.url("/redirect?to=/cat.jpg"), LOCAL) == chelsea_jpeg


def test_redirect_limit(image_server):
    with pytest.raises(FetchError, match="too many redirects"):
        fetch_image(image_server.url("/loop"), LOCAL)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/cat.jpg", "loopback"),
        ("http://localhost/cat.jpg", "loopback"),
        ("http://[::1]/x", "loopback"),
        ("http://[fec0::1]/x.jpg", "site-local"),
        ("http://[fec0:0:0:ffff::1]/x.jpg", "site-local"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::ffff:169.254.169.254]/latest/meta-data/", "link-local"),
        ("http://10.0.0.8/x.jpg", "private"),
        ("http://192.168.1.20/x.jpg", "private"),
        ("http://172.16.5.4/x.jpg", "private"),
        ("http://100.64.0.1/x.jpg", "reserved"),
        ("http://224.0.0.1/x.jpg", "multicast"),
        ("http://0.0.0.0/x.jpg", "reserved|private"),
        ("file:///etc/passwd", "only http and https"),
        ("ftp://example.com/x.jpg", "only http and https"),
        ("gopher://example.com/", "only http and https"),
        ("/etc/passwd", "only http and https"),
        ("http://user:pw@example.com/x.jpg", "credentials"),
        ("http:///nohost", "no host"),
    ],
)
def test_refuses_private_and_odd_urls(url, reason):
    with pytest.raises(URLRefusedError, match=reason):
        fetch_image(url, STRICT)


def test_every_redirect_is_checked(image_server):
    # Only the test server's loopback network is allowed; every hop is checked on its own.
    policy = STRICT._replace(allow_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    assert fetch_image(image_server.url("/redirect?to=/red.jpg"), policy)
    with pytest.raises(URLRefusedError, match="link-local"):
        fetch_image(image_server.url("/redirect?to=" + quote("http://169.254.169.254/latest/meta-data/")), policy)
    with pytest.raises(URLRefusedError, match="private"):
        fetch_image(image_server.url("/redirect?to=" + quote("http://10.1.2.3/x.jpg")), policy)
    with pytest.raises(URLRefusedError, match="only http and https"):
        fetch_image(image_server.url("/redirect?to=" + quote("file:///etc/passwd")), policy)


def test_http_errors(image_server):
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_image(image_server.url("/missing.jpg"), LOCAL)


def test_connection_refused():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(FetchError, match="failed"):
        fetch_image(f"http://127.0.0.1:{port}/x.jpg", LOCAL)


def test_timeout(image_server):
    with pytest.raises(FetchTimeoutError, match="timed out|longer than allowed"):
        fetch_image(image_server.url("/slow"), LOCAL._replace(total_timeout=0.5))


@pytest.mark.parametrize("kind", ["body", "headers"])
def test_a_slow_drip_ends_at_the_total_deadline(kind):
    """Valid headers then a byte every 0.3 s, or header lines without end: each read is quick, so
    only a deadline on the socket itself stops it (issue 14, row 3)."""
    server = DripServer(kind, interval=0.3)
    start = time.monotonic()
    try:
        with pytest.raises(FetchTimeoutError, match="LAMBDALITE_URL_TIMEOUT"):
            fetch_image(server.url(), LOCAL._replace(total_timeout=2.0))
    finally:
        server.close()
    assert time.monotonic() - start < 2.5  # the deadline, within half a second


def test_byte_cap(image_server):
    with pytest.raises(PayloadTooLargeError, match="500.0 MB"):
        fetch_image(image_server.url("/huge"), LOCAL)
    with pytest.raises(PayloadTooLargeError):
        fetch_image(image_server.url("/cat.jpg"), LOCAL._replace(max_bytes=1000))


def test_unresolvable_host():
    with pytest.raises(FetchError, match="cannot resolve"):
        fetch_image("http://no-such-host.invalid/x.jpg", STRICT)


@pytest.mark.parametrize("status", [429, 503])
def test_a_busy_host_is_throttling_not_a_failure(status):
    import threading
    from http.server import ThreadingHTTPServer

    from lambdalite.errors import ThrottledError

    from helpers.servers import Site, make_handler

    site = Site()
    site.routes["/busy.jpg"] = (status, b"try later", {})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(site))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ThrottledError, match=f"HTTP {status}"):  # batch sources retry it later
            fetch_image(f"http://127.0.0.1:{httpd.server_address[1]}/busy.jpg", LOCAL)
    finally:
        httpd.shutdown()
        httpd.server_close()
