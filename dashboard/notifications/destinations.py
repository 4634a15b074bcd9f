"""Where notifications may connect: the destination policy, and the connections that obey it.

**The policy.** A Slack or webhook channel may reach public addresses only: no loopback, link-local,
private, shared (100.64/10), reserved, unspecified, multicast or site-local address, nor an IPv6
address standing for such an IPv4 one (IPv4-mapped, NAT64, 6to4). NOTIFY_ALLOWED_HOSTS lets some
through: a host name there allows whatever that name resolves to (its DNS is trusted), an address or
network (`10.1.2.3`, `10.0.0.0/8`, `fd00::/8`) allows those addresses whatever the name. A cloud
metadata service's address is never allowed, whatever the setting says.

**Where it is checked.** When a channel is saved (`check_url`, for the operator's benefit), and when
the poller connects, which is what counts: `GuardedBackend.connect_tcp` resolves the name once,
checks every address it resolves to, and connects to a checked address itself. A name that
resolved to a public address when the channel was saved and to a private one now (DNS rebinding) is
refused, and so is any spelling of an address the system resolver accepts (`2130706433`, `0x7f.1`,
`0177.0.0.1`): it is the resolved address that is checked, and the one connected to. httpcore sends
the URL's host name as the Host header and as TLS SNI (and checks the certificate against it),
whatever address the connection went to.

**The deadline.** Every connect, read, write and TLS handshake on a guarded connection waits no
longer than what is left of the send's deadline: a receiver that answers one byte at a time is cut
there, its socket closed, and the send's thread ends. (Name resolution is the system resolver's:
no socket is open meanwhile, and its own timeouts bound it.)
"""

from __future__ import annotations

import ipaddress
import socket
import time

import httpcore
import httpx
from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata services (AWS, its ECS tasks and IPv6; GCP, Azure, OpenStack; Azure's wire server;
# Alibaba; Oracle): a credential away from anyone who can read their answers. Never a destination.
METADATA = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",
        "169.254.170.2",
        "fd00:ec2::254",
        "168.63.129.16",
        "100.100.100.200",
        "192.0.0.192",
    )
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# IETF protocol assignments (Oracle's metadata service among them): global to some Python versions' ipaddress.
PROTOCOL_ASSIGNMENTS = ipaddress.ip_network("192.0.0.0/24")
DEFAULT_PORTS = {"http": 80, "https": 443}


class DestinationRefused(Exception):
    """A destination the policy refuses, or a name that does not resolve. The text names the host,
    never the URL (a Slack webhook's URL is its credential) nor the address (no map of inner DNS)."""


def carried_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one reaches: IPv4-mapped, or NAT64's well-known prefix."""
    if address.version == 4:
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: Address) -> bool:
    """Whether `address` is on the public internet and no metadata service."""
    if (carried := carried_ipv4(address)) is not None:
        return is_public(carried)
    if address.is_multicast or address.is_reserved or not address.is_global:
        return False
    if address in METADATA or address in PROTOCOL_ASSIGNMENTS:
        return False
    if address.version == 6:
        return not address.is_site_local and (address.sixtofour is None or is_public(address.sixtofour))
    return True


def allowances() -> tuple[set[str], list[Network]]:
    """NOTIFY_ALLOWED_HOSTS: the host names, and the addresses and networks, that may be non-public."""
    names, networks = set(), []
    for entry in settings.NOTIFY_ALLOWED_HOSTS:
        entry = entry.strip().lower()
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            if entry:
                names.add(entry.rstrip("."))
    return names, networks


def check(host: str, addresses: list[Address]) -> None:
    """Raise DestinationRefused unless every one of `addresses` (what `host` resolves to) may be
    connected to: public, or allowed by NOTIFY_ALLOWED_HOSTS, and no metadata service's."""
    if not addresses:
        raise DestinationRefused(f"{host} does not resolve")
    names, networks = allowances()
    named = host.lower().rstrip(".") in names
    for address in addresses:
        plain = carried_ipv4(address) or address
        if plain in METADATA:
            raise DestinationRefused(f"{host} is a cloud metadata service: never a destination")
        if is_public(address) or named or any(plain in network for network in networks):
            continue
        raise DestinationRefused(
            f"{host} resolves to an address that is not public (loopback, private, link-local…): "
            "refused unless NOTIFY_ALLOWED_HOSTS names it"
        )


def resolve(host: str, port: int) -> list[Address]:
    """Every address `host` resolves to, in the resolver's order (an address, in any spelling the
    system accepts, resolves to itself)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise DestinationRefused(f"{host} does not resolve") from None
    # Without an IPv6 zone (fe80::1%eth0): a scoped address would compare unequal to the same one unscoped.
    return list(dict.fromkeys(ipaddress.ip_address(sockaddr[0].partition("%")[0]) for *_, sockaddr in found))


def check_url(url: str) -> None:
    """At save time: raise DestinationRefused unless `url`'s host resolves to allowed addresses only.
    (The check that counts is at connect time: the name may resolve elsewhere by then.)"""
    try:
        parsed = httpx.URL(url)  # as a send parses it
    except httpx.InvalidURL:
        raise DestinationRefused("the URL's host is no name or address a send could use") from None
    host = parsed.raw_host.decode("ascii")
    check(host, resolve(host, parsed.port or DEFAULT_PORTS.get(parsed.scheme, 80)))


class BoundedStream(httpcore.NetworkStream):
    """A connection whose every read, write and TLS handshake waits no longer than `deadline`
    (time.monotonic()) allows: a receiver that drips its answer is cut there, not at each byte."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float):
        self.stream = stream
        self.deadline = deadline

    def _left(self, timeout: float | None, expired: type[Exception]) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise expired("the send's time is up")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.stream.read(max_bytes, self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, self._left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> BoundedStream:
        left = self._left(timeout, httpcore.ConnectTimeout)
        return BoundedStream(self.stream.start_tls(ssl_context, server_hostname, left), self.deadline)

    def get_extra_info(self, info: str):
        return self.stream.get_extra_info(info)


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's own socket backend, behind the policy: each connection's host resolved once, every
    address checked, a checked address connected to, and the whole of it bounded by `deadline`."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.sockets = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None) -> BoundedStream:
        addresses = resolve(host, port)
        check(host, addresses)
        failure: Exception = httpcore.ConnectError(f"{host}: no address to connect to")
        for address in addresses:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise httpcore.ConnectTimeout("the send's time is up")
            try:
                stream = self.sockets.connect_tcp(
                    str(address), port, left if timeout is None else min(timeout, left), local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
                continue
            return BoundedStream(stream, self.deadline)
        raise failure
