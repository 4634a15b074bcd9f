"""Which address a request came from, for sign-in throttling (django-axes' AXES_CLIENT_IP_CALLABLE).

Without TRUSTED_PROXIES it is the connection's address, REMOTE_ADDR, and X-Forwarded-For is never
read: anyone can write that header. Behind a reverse proxy every client shares the proxy's
address, so a lockout keyed on it would let anyone lock any user out; TRUSTED_PROXIES names the
proxies (addresses or networks), and for a connection from one of them the client is the
right-most X-Forwarded-For entry that is not itself a trusted proxy: the address the outermost
trusted proxy saw. What a client wrote further left is never taken.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=16)
def parse_networks(entries: tuple[str, ...], *, setting: str) -> tuple[Network, ...]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{setting}: {entry!r} is not an address or a network") from None
    return tuple(networks)


def parse_address(text: str) -> Address | None:
    """An address as a server or proxy writes it (an IPv6 zone dropped, IPv4-mapped IPv6 as IPv4)."""
    try:
        address = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _trusted(address: Address | None, proxies: tuple[Network, ...]) -> bool:
    return address is not None and any(address in network for network in proxies)


def client_address(request: HttpRequest) -> str:
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = parse_networks(tuple(settings.TRUSTED_PROXIES), setting="TRUSTED_PROXIES")
    if not _trusted(parse_address(remote), proxies):
        return remote
    client = remote
    hops = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            break  # not written by a proxy of ours: keep the last address one of them wrote
        client = str(address)
        if not _trusted(address, proxies):
            break
    return client
