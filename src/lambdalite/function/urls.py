"""Image URLs: fetch an image without becoming a proxy into the function's network.

Rules, in order, for the URL and for every redirect (at most `MAX_REDIRECTS`):

* only `http` and `https`, no credentials in the URL;
* the host is resolved once, every address it resolves to is checked, and the connection goes
  to the checked address (the Host header and TLS name stay the host's), so a DNS answer that
  changes between check and use cannot redirect us (no TOCTOU);
* private, loopback, link-local (169.254.169.254, the instance metadata service, included),
  multicast, reserved and otherwise non-global addresses are refused, unless the policy allows
  them (`LAMBDALITE_ALLOW_PRIVATE_URLS=1`, or networks in `LAMBDALITE_ALLOW_URL_NETWORKS`);
* a connect timeout, a total deadline, and a byte cap (`Content-Length` checked up front, the
  stream counted as it arrives). The deadline is the socket's: every read may wait only for
  what is left of it (`_DeadlineSocket`), so a server that drips its headers or its body a byte
  at a time is cut off at the deadline, not between reads.

Refusals raise `URLRefusedError` (HTTP 422), failures `FetchError` (502), timeouts
`FetchTimeoutError` (504), a host that answers 429 or 503 `ThrottledError` (503). Standard
library only, imported when a URL is first fetched.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from typing import Any, NamedTuple
from urllib.parse import urljoin, urlsplit

from lambdalite.errors import FetchError, FetchTimeoutError, PayloadTooLargeError, ThrottledError, URLRefusedError
from lambdalite.settings import MAX_IMAGE_BYTES, Settings

__all__ = ["MAX_REDIRECTS", "URLPolicy", "fetch_image"]

MAX_REDIRECTS = 3
_CHUNK = 64 * 1024
_USER_AGENT = "lambdalite-fetch/1"


class URLPolicy(NamedTuple):
    """What may be fetched. `allow_networks` lists networks allowed even though not global
    (say, an internal image service in the function's VPC); `allow_private` allows all."""

    allow_private: bool = False
    connect_timeout: float = 3.0
    total_timeout: float = 10.0
    max_bytes: int = MAX_IMAGE_BYTES
    allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> URLPolicy:
        return cls(
            allow_private=settings.allow_private_urls,
            connect_timeout=settings.url_connect_timeout,
            total_timeout=settings.url_timeout,
            max_bytes=settings.max_image_bytes,
            allow_networks=settings.allow_url_networks,
        )

    def allows(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(ip.version == n.version and ip in n for n in self.allow_networks)


def _refuse_reason(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return _refuse_reason(mapped)
        if ip.is_site_local:  # fec0::/10: deprecated, yet routed inside some networks
            return "a site-local address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (such as the instance metadata service)"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved or ip.is_unspecified or not ip.is_global:
        return "a reserved address"
    return None


def _resolve(host: str, port: int, policy: URLPolicy, deadline: float) -> str:
    """One checked address for host: every address it resolves to must be allowed."""
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
        candidates = [str(literal)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise FetchError(f"cannot resolve {host}: {exc}") from exc
        candidates = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if time.monotonic() > deadline:
        raise FetchTimeoutError(f"resolving {host} timed out")
    if not candidates:
        raise FetchError(f"cannot resolve {host}")
    if not policy.allow_private:
        for address in candidates:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            reason = None if policy.allows(ip) else _refuse_reason(ip)
            if reason:
                raise URLRefusedError(f"refusing {host}: it resolves to {reason} ({address})")
    return candidates[0]


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the fetch's deadline passed")
    return left


class _DeadlineSocket(socket.socket):
    """Reads that wait no longer than what is left until `deadline` (time.monotonic()).

    http.client reads the status line, the headers and the body through `recv_into`; each call
    sets the socket's timeout to the time left first, so however the server spaces its bytes,
    the last read ends at the deadline (a timeout bounds one read, the deadline all of them)."""

    deadline = 0.0

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self.settimeout(_left(self.deadline))
        return super().recv_into(buffer, nbytes, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self.settimeout(_left(self.deadline))
        return super().recv(bufsize, flags)


class _DeadlineSSLSocket(ssl.SSLSocket):
    """The same over TLS (`SSLContext.sslsocket_class`): TLS reads go through these too."""

    deadline = 0.0

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        self.settimeout(_left(self.deadline))
        return super().recv_into(buffer, nbytes, flags)

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        self.settimeout(_left(self.deadline))
        return super().recv(buflen, flags)


def _connect(address: str, port: int, timeout: float, deadline: float) -> _DeadlineSocket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = _DeadlineSocket(family, socket.SOCK_STREAM)
    sock.deadline = deadline
    try:
        sock.settimeout(timeout)
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to an address we checked, with the URL's host in the Host header."""

    def __init__(self, host: str, port: int, address: str, timeout: float, deadline: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address
        self.deadline = deadline

    def connect(self) -> None:
        self.sock = _connect(self.address, self.port, min(self.timeout or 1.0, self._left()), self.deadline)

    def _left(self) -> float:
        return max(0.001, self.deadline - time.monotonic())


class _PinnedHTTPS(_PinnedHTTP):
    """The same for HTTPS: TCP to the checked address, TLS verified against the host name (the
    handshake, too, within the deadline)."""

    def __init__(self, host: str, port: int, address: str, timeout: float, deadline: float) -> None:
        super().__init__(host, port, address, timeout, deadline)
        self.tls = ssl.create_default_context()
        self.tls.sslsocket_class = _DeadlineSSLSocket

    def connect(self) -> None:
        raw = _connect(self.address, self.port, min(self.timeout or 1.0, self._left()), self.deadline)
        raw.settimeout(self._left())
        try:
            tls = self.tls.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        assert isinstance(tls, _DeadlineSSLSocket)
        tls.deadline = self.deadline
        self.sock = tls


def fetch_image(url: str, policy: URLPolicy) -> bytes:
    """The body of `url` (following up to MAX_REDIRECTS checked redirects)."""
    deadline = time.monotonic() + policy.total_timeout
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        status, location, body = _get(current, policy, deadline)
        if location is None:
            return body
        current = urljoin(current, location)
    raise FetchError(f"too many redirects (more than {MAX_REDIRECTS}) fetching {url}")


def _get(url: str, policy: URLPolicy, deadline: float) -> tuple[int, str | None, bytes]:
    if not isinstance(url, str) or len(url) > 4096:
        raise URLRefusedError("the URL must be a string of at most 4096 characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise URLRefusedError(f"malformed URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise URLRefusedError(f"only http and https URLs are fetched, not {parts.scheme or 'a bare path'}")
    if not parts.hostname:
        raise URLRefusedError("the URL has no host")
    if parts.username or parts.password:
        raise URLRefusedError("URLs with credentials are not fetched")
    host = parts.hostname
    port = port or (443 if parts.scheme == "https" else 80)
    address = _resolve(host, port, policy, deadline)
    timeout = max(0.05, min(policy.connect_timeout, deadline - time.monotonic()))
    conn_class = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    conn = conn_class(host, port, address, timeout, deadline)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("GET", target, headers={"User-Agent": _USER_AGENT, "Accept": "image/*,*/*;q=0.5"})
        response = conn.getresponse()
        try:
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                if not location:
                    raise FetchError(f"{host} answered {response.status} without a Location")
                return response.status, location, b""
            if response.status in (429, 503):  # busy: worth retrying later (batch sources do)
                raise ThrottledError(f"{host} answered HTTP {response.status} {response.reason}".rstrip())
            if response.status != 200:
                raise FetchError(f"{host} answered HTTP {response.status} {response.reason}".rstrip())
            length = response.getheader("Content-Length")
            if length and length.isdigit() and int(length) > policy.max_bytes:
                size, cap = int(length) / 2**20, policy.max_bytes / 2**20
                raise PayloadTooLargeError(f"the image at {host} is {size:.1f} MB, over the {cap:.0f} MB cap")
            chunks: list[bytes] = []
            total = 0
            while True:
                chunk = response.read1(_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > policy.max_bytes:
                    raise PayloadTooLargeError(f"the image at {host} is over the {policy.max_bytes / 2**20:.0f} MB cap")
                chunks.append(chunk)
            return 200, None, b"".join(chunks)
        finally:
            response.close()  # its socket too: an error answer must not leak the connection
    except (FetchError, PayloadTooLargeError):
        raise
    except TimeoutError as exc:
        raise FetchTimeoutError(
            f"fetching the image from {host} timed out: it took longer than the {policy.total_timeout:g} s "
            "allowed (LAMBDALITE_URL_TIMEOUT)"
        ) from exc
    except ssl.SSLError as exc:
        raise FetchError(f"TLS with {host} failed: {exc.reason or exc}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise FetchError(f"fetching the image from {host} failed: {exc or type(exc).__name__}") from exc
    finally:
        conn.close()
