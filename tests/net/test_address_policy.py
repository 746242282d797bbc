"""Addresses that travel between hosts: what a node announces (its public host in place of a
wildcard listener's), how it reads a peer's announcement (a wildcard host is the host the peer
is seen at; another host's loopback is never dialable) and what peer exchange passes on (no
wildcard, no loopback to a peer on another host). The policy is pure; the last test runs it
over real TCP sockets."""

from __future__ import annotations

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.errors import ConfigError
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.vote import Checkpoint
from p2pchain.net import InboundMessage, PeerConnected, Swarm, SwarmConfig, open_swarm
from p2pchain.net.transports import (
    PeerAddress,
    Scheme,
    announced_addresses,
    as_seen_from,
    check_public_host,
    host_scope,
    parse_address,
    shareable_with,
)
from p2pchain.protocol.connection import PeerId
from p2pchain.protocol.messages import Status
from p2pchain.testing.link import TEST_CHAIN_ID, TEST_GENESIS

HOSTS = {
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "::ffff:0.0.0.0": "unspecified",
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback",
    "::1": "loopback",
    "::ffff:127.0.0.1": "loopback",
    "localhost": "loopback",
    "LocalHost": "loopback",
    "10.1.2.3": "routable",
    "192.0.2.7": "routable",
    "2001:db8::1": "routable",
    "node-3.validators.example": "routable",
}
host_names = st.sampled_from(sorted(HOSTS))


def test_each_host_has_the_scope_a_remote_peer_sees() -> None:
    assert {host: host_scope(host) for host in HOSTS} == HOSTS


def test_the_public_host_replaces_every_bound_host_and_keeps_scheme_and_port() -> None:
    bound = ("tcp://0.0.0.0:30300", "ws://127.0.0.1:30301", "sim://name")
    assert announced_addresses(bound, None) == bound
    assert announced_addresses(bound, "2001:db8::1") == (
        "tcp://[2001:db8::1]:30300",
        "ws://[2001:db8::1]:30301",
        "sim://name",
    )


@pytest.mark.parametrize(
    ("host", "complaint"),
    [
        ("127.0.0.1", "loopback"),
        ("localhost", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("a b", "bad host"),
        ("", "lacks host"),
        ("host/path", "bad host"),
        ("[::1", "bad"),
    ],
)
def test_a_public_address_peers_cannot_dial_is_refused(host: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        check_public_host(host)


def test_public_addr_and_advertise_are_exclusive() -> None:
    fields = {
        "identity": SecretKey.from_entropy(sha256(b"exclusive")),
        "chain_id": TEST_CHAIN_ID,
        "genesis": TEST_GENESIS,
    }
    SwarmConfig(**fields, public_addr="203.0.113.9")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not both"):
        SwarmConfig(**fields, public_addr="203.0.113.9", advertise=())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="loopback"):
        SwarmConfig(**fields, public_addr="::1")  # type: ignore[arg-type]


@given(announced=host_names, seen=host_names, port=st.integers(0, 65_535))
def test_a_peer_announcement_is_read_as_dialable_from_here_or_not_at_all(
    announced: str, seen: str, port: int
) -> None:
    address = PeerAddress(scheme=Scheme.TCP, host=announced, port=port)
    usable = as_seen_from(address, seen)
    if usable is None:
        assert HOSTS[seen] == "unspecified" or (
            HOSTS[announced] == "loopback" and HOSTS[seen] != "loopback"
        )
        return
    assert host_scope(usable.host) != "unspecified"
    assert usable.port == port
    assert usable.scheme is Scheme.TCP
    if HOSTS[announced] == "unspecified":
        assert usable.host == seen  # the host its connection comes from
    else:
        assert usable == address
    if host_scope(usable.host) == "loopback":
        assert HOSTS[seen] == "loopback"  # only a peer on our own loopback


@given(address=host_names, requester=host_names)
def test_peer_exchange_never_passes_a_wildcard_nor_loopback_to_another_host(
    address: str, requester: str
) -> None:
    shared = shareable_with(PeerAddress(scheme=Scheme.WS, host=address, port=1), requester)
    expected = HOSTS[address] == "routable" or (
        HOSTS[address] == "loopback" and HOSTS[requester] == "loopback"
    )
    assert shared == expected


def _status() -> Status:
    return Status(
        head=TEST_GENESIS,
        head_height=0,
        head_slot=0,
        finalized=Checkpoint(epoch=0, block_id=TEST_GENESIS),
    )


def _config(seed: int, **overrides: object) -> SwarmConfig:
    fields: dict[str, object] = {
        "identity": SecretKey.from_entropy(sha256(b"address policy" + bytes([seed]))),
        "chain_id": TEST_CHAIN_ID,
        "genesis": TEST_GENESIS,
        "target_outbound": 0,
        "peer_exchange_interval": 0.2,
    }
    fields.update(overrides)
    return SwarmConfig(**fields)  # type: ignore[arg-type]


class Connections:
    """The PeerConnected events of one swarm, with a wake-up for each."""

    def __init__(self) -> None:
        self.seen: list[PeerConnected] = []
        self.changed = trio.Event()

    async def drain(self, swarm: Swarm) -> None:
        async for event in swarm.events:
            if isinstance(event, InboundMessage):
                event.release()
            elif isinstance(event, PeerConnected):
                self.seen.append(event)
                self.changed.set()
                self.changed = trio.Event()

    async def wait_for(self, peer_id: PeerId) -> PeerConnected:
        while True:
            for event in self.seen:
                if event.peer_id == peer_id:
                    return event
            await self.changed.wait()


async def test_a_wildcard_listener_is_found_by_peer_exchange_at_the_host_it_is_seen_at() -> None:
    """A listens on 0.0.0.0 and is dialed by B only; C, told of B alone, learns A from B
    as the address B sees A at (never 0.0.0.0) and connects to it."""
    with trio.fail_after(30):
        async with (
            open_swarm(_config(1, listen=("tcp://0.0.0.0:0",)), _status) as wildcard,
            open_swarm(_config(2, listen=("tcp://127.0.0.1:0",)), _status) as middle,
            trio.open_nursery() as nursery,
        ):
            (bound,) = wildcard.listen_addresses
            port = parse_address(bound).port
            assert wildcard.advertised_addresses == (f"tcp://0.0.0.0:{port}",)
            nursery.start_soon(Connections().drain, wildcard)
            nursery.start_soon(Connections().drain, middle)
            await middle.connect(f"tcp://127.0.0.1:{port}")
            (middle_address,) = middle.listen_addresses
            async with open_swarm(
                _config(3, bootnodes=(middle_address,), target_outbound=2), _status
            ) as late:
                connections = Connections()
                nursery.start_soon(connections.drain, late)
                await connections.wait_for(wildcard.peer_id)
                (found,) = [info for info in late.peers() if info.peer_id == wildcard.peer_id]
                assert found.outbound  # dialed at what B passed on: the host B sees A at
                assert found.address == f"tcp://127.0.0.1:{port}"
            nursery.cancel_scope.cancel()


async def test_a_public_host_is_what_peers_are_told() -> None:
    with trio.fail_after(30):
        async with (
            open_swarm(
                _config(4, listen=("tcp://0.0.0.0:0",), public_addr="198.51.100.4"), _status
            ) as public,
            open_swarm(_config(5, listen=("tcp://127.0.0.1:0",)), _status) as dialer,
            trio.open_nursery() as nursery,
        ):
            port = parse_address(public.listen_addresses[0]).port
            connections = Connections()
            nursery.start_soon(connections.drain, dialer)
            nursery.start_soon(Connections().drain, public)
            await dialer.connect(f"tcp://127.0.0.1:{port}")
            event = await connections.wait_for(public.peer_id)
            assert event.hello.listen_addresses == (f"tcp://198.51.100.4:{port}".encode(),)
            nursery.cancel_scope.cancel()
