"""Requests to addresses a merchant typed (webhook endpoints): never to the shop's own network.

The shop must not be made to call what sits behind it (SSRF). An address is checked twice: when it is saved
(`url_check`: https only, no userinfo, and every address its name resolves to is a public one) and when each
request connects (`post`): the socket's peer, the address actually connected to, must be public too, so a name
that resolves differently the second time (DNS rebinding) is still refused. No proxy from the environment is used
and redirects are not followed. Tests allow plain http to 127.0.0.1 with settings.WEBHOOK_ALLOW_LOOPBACK_HTTP.
"""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

LOOPBACK = ipaddress.ip_address("127.0.0.1")


class UnsafeUrl(Exception):
    """An address the shop refuses to call, with the reason (for the merchant, in admin)."""


def address_allowed(address: str) -> bool:
    """Whether the shop may connect to this IP address: a global unicast one (not private, loopback, link-local,
    shared, reserved or multicast), or 127.0.0.1 when the test suite allows it."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip == LOOPBACK and settings.WEBHOOK_ALLOW_LOOPBACK_HTTP:
        return True
    return ip.is_global and not ip.is_multicast


def url_check(url: str, *, resolve: bool = True) -> str:
    """The URL if the shop may post to it, else UnsafeUrl. Resolves its host name (every address must pass)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUrl("The address is not a valid URL.") from None
    allowed = {"https", "http"} if settings.WEBHOOK_ALLOW_LOOPBACK_HTTP else {"https"}
    if parts.scheme not in allowed:
        raise UnsafeUrl("The address must start with https://.")
    if not parts.hostname or parts.username or parts.password or "\\" in url:
        raise UnsafeUrl("The address must name a host, without a user name or password.")
    if parts.scheme == "http" and parts.hostname != "127.0.0.1":
        raise UnsafeUrl("Plain http is allowed only to 127.0.0.1, in tests.")
    if not resolve:
        return url
    try:
        infos = socket.getaddrinfo(parts.hostname, port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeUrl("The host name does not resolve.") from None
    if not infos or not all(address_allowed(info[4][0]) for info in infos):
        raise UnsafeUrl("The host resolves to a private, loopback or link-local address.")
    return url


class _PeerChecked:
    def _new_conn(self):
        sock = super()._new_conn()
        peer = sock.getpeername()[0]
        if not address_allowed(peer):
            sock.close()
            raise UnsafeUrl("The host resolved to a private, loopback or link-local address.")
        return sock


class _HTTPConnection(_PeerChecked, HTTPConnection):
    pass


class _HTTPSConnection(_PeerChecked, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def _pool_manager() -> urllib3.PoolManager:
    manager = urllib3.PoolManager(num_pools=20, maxsize=2)
    manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
    return manager


_manager = _pool_manager()


@dataclass(frozen=True)
class Answer:
    status: int


def post(url: str, *, body: bytes, headers: dict[str, str], timeout_seconds: float = 10.0) -> Answer:
    """POST `body` to a checked URL, connecting only to public addresses; no redirects, no retries.

    Raises UnsafeUrl, or urllib3's HTTPError when the endpoint cannot be reached in time.
    """
    url_check(url, resolve=False)
    response = _manager.request(  # a refused peer raises UnsafeUrl from the connection itself
        "POST",
        url,
        body=body,
        headers=headers,
        timeout=urllib3.Timeout(connect=min(5.0, timeout_seconds), read=timeout_seconds),
        redirect=False,
        retries=False,
        preload_content=False,
    )
    try:
        response.read(64 * 1024, decode_content=False)  # the answer is not used; read a little to reuse the socket
    finally:
        response.release_conn()
    return Answer(status=response.status)
