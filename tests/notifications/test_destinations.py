"""The destination policy of notification channels (dashboard/notifications/destinations.py), over classes of
addresses: no loopback, private, link-local, shared, reserved, unspecified, multicast or metadata
address, in IPv4 or IPv6 (IPv4-mapped, NAT64, 6to4 included), in any spelling the system resolver
accepts, nor a name resolving to one, now or at connect time (DNS rebinding); public addresses pass,
and NOTIFY_ALLOWED_HOSTS lets named hosts, addresses and networks through, never a metadata service.
The connection goes to the address checked, resolved once. Delivery end to end, with real receivers:
tests/notifications/test_notifications.py."""

from __future__ import annotations

import ipaddress
from unittest import mock

import httpcore
import pytest
from django.test import override_settings
from hypothesis import assume, given
from hypothesis import strategies as st

from dashboard.notifications import destinations
from dashboard.notifications.destinations import (
    METADATA,
    DestinationRefused,
    GuardedBackend,
    check,
    check_url,
    is_public,
)


def addresses_in(*networks: str) -> st.SearchStrategy:
    """Any address of any of `networks`."""
    parsed = [ipaddress.ip_network(network) for network in networks]
    return st.sampled_from(parsed).flatmap(
        lambda network: st.integers(int(network.network_address), int(network.broadcast_address)).map(
            type(network.network_address)  # ::/96 holds small numbers, still IPv6 addresses
        )
    )


INSIDE_IPV4 = addresses_in(
    "127.0.0.0/8",  # loopback
    "10.0.0.0/8",  # private
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",  # link-local, metadata services among them
    "100.64.0.0/10",  # shared (carrier-grade NAT)
    "0.0.0.0/8",  # "this network": 0.0.0.0 reaches the local host
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, the broadcast address among them
    "198.18.0.0/15",  # benchmarking
    "192.0.0.0/24",  # IETF protocol assignments (Oracle's metadata service among them)
)
PUBLIC_IPV4 = addresses_in("8.8.8.0/24", "1.1.1.0/24", "93.184.215.0/24", "151.101.0.0/16", "52.0.0.0/11")
PUBLIC_IPV6 = addresses_in("2606:4700::/32", "2001:4860::/32", "2a00:1450::/32", "2600:1f00::/24")


def carrying(ipv4: st.SearchStrategy) -> st.SearchStrategy:
    """IPv6 addresses standing for those IPv4 ones: IPv4-mapped, NAT64 (64:ff9b::/96), 6to4 (2002::/16)."""
    return st.tuples(ipv4, st.sampled_from(["mapped", "nat64", "6to4"]), st.integers(0, 2**80 - 1)).map(
        lambda parts: ipaddress.IPv6Address(
            {
                "mapped": 0xFFFF << 32 | int(parts[0]),
                "nat64": 0x64FF9B << 96 | int(parts[0]),
                "6to4": 0x2002 << 112 | int(parts[0]) << 80 | parts[2],
            }[parts[1]]
        )
    )


INSIDE_IPV6 = st.one_of(
    st.sampled_from([ipaddress.IPv6Address("::1"), ipaddress.IPv6Address("::")]),  # loopback, unspecified
    addresses_in(
        "fe80::/10",  # link-local
        "fc00::/7",  # unique local (private), AWS's IPv6 metadata service among them
        "ff00::/8",  # multicast
        "fec0::/10",  # site-local (deprecated, still routed inside some networks)
        "2001::/32",  # Teredo
        "2001:db8::/32",  # documentation
        "100::/64",  # discard
        "::/96",  # IPv4-compatible (deprecated)
    ),
    carrying(INSIDE_IPV4),
)
INSIDE = st.one_of(INSIDE_IPV4, INSIDE_IPV6, st.sampled_from(sorted(METADATA, key=str)))
PUBLIC = st.one_of(PUBLIC_IPV4, PUBLIC_IPV6, carrying(PUBLIC_IPV4))
LABEL = st.from_regex(r"\A[a-z][a-z0-9]{0,12}\Z")
NAMES = st.lists(LABEL, min_size=2, max_size=4).map(".".join)


def spellings(address: ipaddress.IPv4Address) -> st.SearchStrategy:
    """The spellings of an IPv4 address that the system resolver (inet_aton) reads as that address."""
    value = int(address)
    a, b, c, d = address.packed
    return st.sampled_from(
        [
            str(address),
            str(value),  # 2130706433
            hex(value),  # 0x7f000001
            "0" + oct(value)[2:],  # 017700000001
            ".".join(f"0{part:o}" for part in (a, b, c, d)),  # 0177.00.00.01
            ".".join(hex(part) for part in (a, b, c, d)),  # 0x7f.0x0.0x0.0x1
            f"{a}.{b}.{c << 8 | d}",  # 127.0.1
            f"{a}.{b << 16 | c << 8 | d}",  # 127.1
            f"{hex(a)}.{b << 16 | c << 8 | d}",  # 0x7f.1
            f"[::ffff:{address}]",
            f"[0:0:0:0:0:ffff:{a << 8 | b:x}:{c << 8 | d:x}]",
        ]
    )


class Sockets:
    """Stands for httpcore's socket backend: records where connections go, connects nowhere."""

    def __init__(self, failing: frozenset[str] = frozenset()) -> None:
        self.connected: list[str] = []
        self.failing = failing

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        self.connected.append(host)
        if host in self.failing:
            raise httpcore.ConnectError("connection refused")
        return httpcore.MockStream([])


class Resolver:
    """What names resolve to, in turn (the last answer from then on); every call counted."""

    def __init__(self, *answers: list) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, host: str, port: int) -> list:
        self.calls += 1
        return list(self.answers.pop(0) if len(self.answers) > 1 else self.answers[0])


def guarded(sockets: Sockets) -> GuardedBackend:
    backend = GuardedBackend(deadline=float("inf"))
    backend.sockets = sockets
    return backend


def refused(call) -> bool:
    try:
        call()
    except DestinationRefused:
        return True
    return False


@given(address=INSIDE, host=NAMES)
def test_no_address_inside_is_a_destination(address, host):
    with override_settings(NOTIFY_ALLOWED_HOSTS=[]):
        assert not is_public(address)
        assert refused(lambda: check(host, [address]))
        assert refused(lambda: check(str(address), [address]))


@given(address=PUBLIC, host=NAMES)
def test_public_addresses_are_destinations(address, host):
    with override_settings(NOTIFY_ALLOWED_HOSTS=[]):
        assert is_public(address)
        check(host, [address])


@given(inside=INSIDE_IPV4, data=st.data())
def test_every_spelling_of_an_inside_ipv4_address_is_refused_at_save_and_at_connect(inside, data):
    spelling = data.draw(spellings(inside))
    sockets = Sockets()
    with override_settings(NOTIFY_ALLOWED_HOSTS=[]):
        assert refused(lambda: check_url(f"http://{spelling}:8080/hook"))
        assert refused(lambda: guarded(sockets).connect_tcp(spelling.strip("[]"), 8080))
    assert sockets.connected == []


@given(host=NAMES, public=st.lists(PUBLIC, max_size=3), inside=INSIDE, at=st.integers(0, 3))
def test_a_name_is_refused_if_any_address_it_resolves_to_is_inside(host, public, inside, at):
    answer = [*public[:at], inside, *public[at:]]
    sockets = Sockets()
    with override_settings(NOTIFY_ALLOWED_HOSTS=[]), mock.patch.object(destinations, "resolve", Resolver(answer)):
        assert refused(lambda: check_url(f"https://{host}/hook"))
        assert refused(lambda: guarded(sockets).connect_tcp(host, 443))
    assert sockets.connected == [], "not one connection, not even to its public addresses"


@given(host=NAMES, public=st.lists(PUBLIC, min_size=1, max_size=3), inside=INSIDE)
def test_a_name_resolving_public_when_saved_and_inside_when_connecting_is_refused(host, public, inside):
    """DNS rebinding: the check that counts is the one on the addresses about to be connected to."""
    sockets = Sockets()
    resolver = Resolver(public, [inside])
    with override_settings(NOTIFY_ALLOWED_HOSTS=[]), mock.patch.object(destinations, "resolve", resolver):
        check_url(f"https://{host}/hook")
        assert refused(lambda: guarded(sockets).connect_tcp(host, 443))
    assert sockets.connected == []


@given(host=NAMES, public=st.lists(PUBLIC, min_size=1, max_size=4, unique=True), failing=st.integers(0, 3))
def test_a_connection_goes_to_an_address_resolved_once_and_checked(host, public, failing):
    """The connection is to one of the checked addresses, never to the name (which a second
    resolution could send elsewhere); addresses that refuse the connection are passed over in turn."""
    failing = min(failing, len(public) - 1)
    sockets = Sockets(failing=frozenset(str(address) for address in public[:failing]))
    resolver = Resolver(public)
    with override_settings(NOTIFY_ALLOWED_HOSTS=[]), mock.patch.object(destinations, "resolve", resolver):
        stream = guarded(sockets).connect_tcp(host, 443)
    assert isinstance(stream, destinations.BoundedStream)
    assert sockets.connected == [str(address) for address in public[: failing + 1]]
    assert resolver.calls == 1


@given(inside=st.one_of(INSIDE_IPV4, INSIDE_IPV6), host=NAMES, other=NAMES)
def test_the_allowance_lets_named_hosts_addresses_and_networks_through(inside, host, other):
    plain = destinations.carried_ipv4(inside) or inside
    assume(plain not in METADATA)  # never allowed: the next test
    with override_settings(NOTIFY_ALLOWED_HOSTS=[f" {host.upper()}. "]):
        check(host, [inside])  # by name: whatever it resolves to
        if other != host:
            assert refused(lambda: check(other, [inside]))
    with override_settings(NOTIFY_ALLOWED_HOSTS=[str(plain)]):
        check(other, [inside])  # by address, whatever the name
    network = ipaddress.ip_network(f"{plain}/{plain.max_prefixlen - 4}", strict=False)
    with override_settings(NOTIFY_ALLOWED_HOSTS=["alerts.internal", str(network)]):
        check(other, [inside])


@given(metadata=st.sampled_from(sorted(METADATA, key=str)), host=NAMES, spelled=st.booleans())
def test_a_metadata_service_is_never_a_destination_whatever_is_allowed(metadata, host, spelled):
    address = ipaddress.IPv6Address(0xFFFF << 32 | int(metadata)) if spelled and metadata.version == 4 else metadata
    with override_settings(NOTIFY_ALLOWED_HOSTS=[host, "0.0.0.0/0", "::/0", str(metadata)]):
        assert refused(lambda: check(host, [address]))


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST.", "localhost.localdomain", "ip6-localhost"])
def test_names_of_the_local_host_are_refused(host):
    """Resolved by the system (/etc/hosts): a name that does not resolve is refused just the same."""
    with override_settings(NOTIFY_ALLOWED_HOSTS=[]):
        assert refused(lambda: check_url(f"http://{host}:6379/"))
