"""The TLS proxy in front of Threshold: which peers it is, and who the client is behind it.

With ``THRESHOLD_BEHIND_TLS_PROXY=1``, a request's ``X-Forwarded-For`` and
``X-Forwarded-Proto`` are believed only when the connection comes from a trusted proxy
(``THRESHOLD_TRUSTED_PROXIES``, by default this machine's loopback addresses; a Unix
socket's peer is this machine too). From anyone else they are the client's to forge, so
``ForwardedHeaders`` removes them before Django or the lean path reads them, and the
client is the connection's address.

Behind a chain of trusted proxies (a load balancer, then nginx), each one appends the
address it received the request from. The client is the right-most address that is not a
trusted proxy: everything left of it was written by the client (nginx's
``real_ip_recursive on``, Keycloak's and authentik's trusted-proxy lists).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

from django.conf import settings

# The headers a trusted proxy sets, as WSGI names them.
FORWARDED_FOR = "HTTP_X_FORWARDED_FOR"
FORWARDED_PROTO = "HTTP_X_FORWARDED_PROTO"

# At most this many X-Forwarded-For entries are read, right to left: a chain of proxies is
# short, and the rest of a long header is the client's.
MOST_HOPS = 16


def _address(text: str) -> str | None:
    """``text`` as a normalised IP address, or None. Without an IPv6 zone ("%eth0"): it names
    an interface of the proxy's host, and PostgreSQL's inet refuses a long one."""
    try:
        return str(ipaddress.ip_address(text.strip().split("%", 1)[0]))
    except ValueError:
        return None


@lru_cache(maxsize=4096)
def _trusted(address: str, networks: tuple[Any, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    # A dual-stack socket's name for an IPv4 peer (::ffff:10.0.0.5) is that peer under either
    # spelling of the list, as gunicorn reads it.
    names = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        names.append(ip.ipv4_mapped)
    return any(
        name.version == network.version and name in network
        for name in names
        for network in networks
    )


def is_trusted_proxy(peer: str) -> bool:
    """Whether the connection's peer (``REMOTE_ADDR``) is a proxy we trust. An empty one is a
    Unix socket's: only this machine can connect there (gunicorn trusts it likewise)."""
    config = settings.THRESHOLD
    if not config.proxy_ssl_header:
        return False
    return peer == "" or _trusted(peer, config.trusted_proxies)


def client_address(meta: Mapping[str, Any]) -> str | None:
    """The client's address for a request's WSGI environ (or ``request.META``): behind a
    trusted proxy, the right-most ``X-Forwarded-For`` entry that is not a trusted proxy;
    otherwise the connection's."""
    peer = meta.get("REMOTE_ADDR") or ""
    if not is_trusted_proxy(peer):
        return peer or None
    forwarded = str(meta.get(FORWARDED_FOR, ""))
    networks = settings.THRESHOLD.trusted_proxies
    nearest = peer or None
    for entry in forwarded.rsplit(",", MOST_HOPS)[::-1][:MOST_HOPS]:
        address = _address(entry)
        if address is None:
            # Not an address: the client's forgery or a proxy's mistake. The nearest address
            # a trusted proxy vouched for stands.
            break
        nearest = address
        if not _trusted(address, networks):
            break
    return nearest


class ForwardedHeaders:
    """WSGI middleware, first in line: the forwarding headers of a request that did not come
    through a trusted proxy are dropped, so that no later reader can believe them."""

    def __init__(self, application: Callable[..., Iterable[bytes]]) -> None:
        self.application = application

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if settings.THRESHOLD.proxy_ssl_header and not is_trusted_proxy(
            environ.get("REMOTE_ADDR") or ""
        ):
            environ.pop(FORWARDED_FOR, None)
            environ.pop(FORWARDED_PROTO, None)
        return self.application(environ, start_response)
