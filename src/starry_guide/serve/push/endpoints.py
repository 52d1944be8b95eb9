"""Which push-service URLs the server will ever post to — the SSRF guard.

A subscription's endpoint comes from a client, so the server must never be made to post to
its own network: only ``https`` URLs, on hosts that are not names of this machine, whose
addresses are public. The addresses are checked twice: literal addresses when a
subscription is made (:func:`problem`), and every resolved address at connection time
(:class:`PublicOnlyBackend`), so that a name that later resolves to a private address (DNS
rebinding) is refused too. Redirects are never followed (the sender reads the first answer).

``STARRY_PUSH_ALLOW_PRIVATE=1`` lifts the guard — **for tests only**, where the push
service is a loopback ``http`` server.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from urllib.parse import urlsplit

import httpcore

ALLOW_PRIVATE_ENV = "STARRY_PUSH_ALLOW_PRIVATE"
MAX_ENDPOINT_CHARS = 2048
#: names that are this machine or its private network, whatever DNS says
LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa", ".localdomain")


def allow_private() -> bool:
    """Whether the tests-only ``STARRY_PUSH_ALLOW_PRIVATE=1`` is set."""
    return os.environ.get(ALLOW_PRIVATE_ENV, "").strip() == "1"


def public_address(address: str) -> bool:
    """Whether an IP address is globally routable (not loopback, private, link-local
    — cloud metadata services live at 169.254.169.254 —, multicast, reserved, ...)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def problem(endpoint: str, private_allowed: bool | None = None) -> str | None:
    """Why the server refuses to post to ``endpoint``, or None when it may."""
    private_allowed = allow_private() if private_allowed is None else private_allowed
    if len(endpoint) > MAX_ENDPOINT_CHARS:
        return f"the endpoint has {len(endpoint)} characters; at most {MAX_ENDPOINT_CHARS}"
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError as exc:
        return f"not a URL ({exc})"
    schemes = ("https", "http") if private_allowed else ("https",)
    if parts.scheme not in schemes:
        return f"the push service must be an https:// URL, not {parts.scheme or 'none'}:"
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return "the URL has no host"
    if parts.username or parts.password:
        return "the URL must not carry a user name or password"
    if port == 0:
        return "port 0 is not a port"
    if private_allowed:
        return None
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        if not public_address(host):
            return f"{host} is not a public address"
        return None
    lowered = host.lower()
    if lowered == "localhost" or lowered.endswith(LOCAL_SUFFIXES) or "." not in lowered:
        return f"{host} is a local name, not a public push service"
    return None


class RefusedAddress(httpcore.ConnectError):
    """The push service's host resolved to an address the server does not post to."""


class PublicOnlyBackend(httpcore.SyncBackend):
    """httpcore's network backend, connecting only to public addresses: the host is
    resolved here, every address checked, and the connection made to a checked address
    (TLS still verifies the host name)."""

    def __init__(self, private_allowed: bool | None = None):
        self.private_allowed = allow_private() if private_allowed is None else private_allowed

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        if self.private_allowed:
            return super().connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        refused = [a for a in addresses if not public_address(a)]
        if refused or not addresses:
            raise RefusedAddress(f"{host} resolves to {', '.join(refused) or 'nothing'}: "
                                 "not a public address")
        return super().connect_tcp(addresses[0], port, timeout, local_address, socket_options)
