"""Swarms on real loopback sockets (TCP and WebSocket, port 0); waits are events, not sleeps."""

import gc
import logging
from contextlib import AsyncExitStack

import pytest
import trio

from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.vote import Checkpoint
from p2pchain.net import (
    InboundMessage,
    PeerConnected,
    PeerDisconnected,
    PeerRefused,
    SwarmConfig,
    open_swarm,
)
from p2pchain.net.transports import open_peer_stream, parse_address
from p2pchain.protocol.connection import (
    ConnectionKeys,
)
from p2pchain.protocol.messages import DisconnectReason, Publish, Status, Topic
from p2pchain.protocol.scoring import Offence, ScoringParams
from p2pchain.testing.adversary import run_junk_peer
from p2pchain.testing.link import TEST_CHAIN_ID, TEST_GENESIS, RawConnection, make_hello

WAIT = 20  # generous safety bound on every wait; tests never sleep


def _status():
    return Status(
        head=TEST_GENESIS,
        head_height=0,
        head_slot=0,
        finalized=Checkpoint(epoch=0, block_id=TEST_GENESIS),
    )


def _identity(seed):
    return SecretKey.from_entropy(sha256(b"swarm-test" + bytes([seed])))


def _config(seed, **overrides):
    fields = {
        "identity": _identity(seed),
        "chain_id": TEST_CHAIN_ID,
        "genesis": TEST_GENESIS,
        "target_outbound": 0,
    }
    fields.update(overrides)
    return SwarmConfig(**fields)


async def _next_event(swarm, kind):
    async for event in swarm.events:
        if isinstance(event, InboundMessage):
            event.release()
        if isinstance(event, kind):
            return event
    raise AssertionError("event channel closed")


def _tcp(swarm):
    return next(a for a in swarm.listen_addresses if a.startswith("tcp://"))


def _ws(swarm):
    return next(a for a in swarm.listen_addresses if a.startswith("ws://"))


async def test_tcp_and_websocket_peers_share_one_node():
    with trio.fail_after(WAIT):
        async with (
            open_swarm(_config(1), _status) as hub,
            open_swarm(_config(2), _status) as tcp_peer,
            open_swarm(_config(3), _status) as ws_peer,
        ):
            assert await tcp_peer.connect(_tcp(hub)) == hub.peer_id
            assert await ws_peer.connect(_ws(hub)) == hub.peer_id
            await hub.wait_peer_count(2)
            assert {p.peer_id for p in hub.peers()} == {tcp_peer.peer_id, ws_peer.peer_id}
            assert {p.address for p in ws_peer.peers()} == {_ws(hub)}

            message = Publish(topic=Topic.TRANSACTION, data=b"from tcp")
            assert tcp_peer.send(hub.peer_id, message)
            assert await _next_event(hub, InboundMessage) == InboundMessage(
                peer_id=tcp_peer.peer_id, message=message
            )
            block = Publish(topic=Topic.BLOCK, data=b"to everyone")
            assert hub.broadcast(block) == 2
            for peer in (tcp_peer, ws_peer):
                event = await _next_event(peer, InboundMessage)
                assert event == InboundMessage(peer_id=hub.peer_id, message=block)


async def test_peer_exchange_reaches_the_target_outbound_count():
    with trio.fail_after(WAIT):
        async with AsyncExitStack() as stack:
            hub = await stack.enter_async_context(open_swarm(_config(10), _status))
            others = []
            for seed in (11, 12, 13):
                node = await stack.enter_async_context(
                    open_swarm(_config(seed, bootnodes=(_tcp(hub),), target_outbound=1), _status)
                )
                await node.wait_peer_count(1, outbound=True)
                others.append(node)
            await hub.wait_peer_count(3)
            joiner = await stack.enter_async_context(
                open_swarm(_config(14, bootnodes=(_ws(hub),), target_outbound=4), _status)
            )
            await joiner.wait_peer_count(4, outbound=True)
            outbound = {p.peer_id for p in joiner.peers() if p.outbound}
            assert outbound == {hub.peer_id, *(node.peer_id for node in others)}
            assert joiner.statistics().outbound == 4


async def test_handshake_rejections_reach_the_dialer(caplog):
    caplog.set_level(logging.INFO, logger="p2pchain.net")
    with trio.fail_after(WAIT):
        async with (
            open_swarm(_config(20), _status) as node,
            open_swarm(_config(21, chain_id=TEST_CHAIN_ID + 1), _status) as other_chain,
            open_swarm(_config(22, genesis=sha256(b"another genesis")), _status) as other_genesis,
            open_swarm(_config(23), _status) as friend,
        ):
            for stranger, reason in (
                (other_chain, DisconnectReason.WRONG_CHAIN),
                (other_genesis, DisconnectReason.WRONG_GENESIS),
            ):
                with pytest.raises(PeerRefused) as refused:
                    await stranger.connect(_tcp(node))
                assert refused.value.reason is reason
            with pytest.raises(PeerRefused) as refused:
                await node.connect(_ws(node))
            assert refused.value.reason is DisconnectReason.SELF_CONNECTION

            await friend.connect(_tcp(node))
            with pytest.raises(PeerRefused) as refused:
                await friend.connect(_ws(node))
            assert refused.value.reason is DisconnectReason.DUPLICATE_CONNECTION
            await friend.ping(node.peer_id)
            assert [p.peer_id for p in node.peers()] == [friend.peer_id]
            assert [p.peer_id for p in friend.peers()] == [node.peer_id]
    logged = caplog.text
    for reason in ("WRONG_CHAIN", "WRONG_GENESIS", "SELF_CONNECTION", "DUPLICATE_CONNECTION"):
        assert logged.count(f"({reason}, by ") >= 2  # both ends log why the link closed


async def test_inbound_limit_refuses_extra_peers():
    with trio.fail_after(WAIT):
        async with (
            open_swarm(_config(30, max_inbound=1), _status) as node,
            open_swarm(_config(31), _status) as first,
            open_swarm(_config(32), _status) as second,
        ):
            await first.connect(_tcp(node))
            with pytest.raises(PeerRefused) as refused:
                await second.connect(_tcp(node))
            assert refused.value.reason is DisconnectReason.TOO_MANY_PEERS
            assert node.statistics().refused == 1


async def _scripted_peer(nursery, address, seed, junk):
    """A hostile peer: completes the handshake, then sends `junk` inside the encrypted stream."""
    identity = _identity(seed)
    conn = RawConnection(
        initiator=True,
        keys=ConnectionKeys(
            identity=identity,
            noise_static=sha256(b"static" + bytes([seed])),
            noise_ephemeral=sha256(trio.current_time().hex().encode()),
        ),
        hello=make_hello(identity),
        now=trio.current_time(),
    )
    stream = await open_peer_stream(nursery, parse_address(address))
    peer = await run_junk_peer(stream, conn, junk, address=address)
    return peer.closed(), peer.active.is_set()


async def test_junk_sender_is_banned_while_the_node_keeps_serving(caplog):
    scoring = ScoringParams(protocol_error_penalty=60.0)
    junk = (3).to_bytes(4, "big") + bytes([200, 0xC0, 0xC0])  # unknown message type
    with trio.fail_after(WAIT):
        async with (
            open_swarm(_config(40, scoring=scoring), _status) as node,
            open_swarm(_config(41), _status) as honest,
            trio.open_nursery() as nursery,
        ):
            await honest.connect(_tcp(node))
            hostile = _identity(42).public_key
            for _ in range(2):
                closed, handshook = await _scripted_peer(nursery, _tcp(node), 42, junk)
                assert handshook
                assert closed == [(DisconnectReason.PROTOCOL_ERROR, True)]
                await honest.ping(node.peer_id)  # barrier: the node is still serving
            assert node.score(hostile) < scoring.disconnect_threshold
            assert node.is_banned(hostile)
            closed, handshook = await _scripted_peer(nursery, _ws(node), 42, b"")
            assert closed == [(DisconnectReason.BANNED, True)]
            message = Publish(topic=Topic.VOTE, data=b"still here")
            assert honest.send(node.peer_id, message)
            assert await _next_event(node, InboundMessage) == InboundMessage(
                peer_id=honest.peer_id, message=message
            )
            assert node.statistics().protocol_errors == 2
            assert [p.peer_id for p in node.peers()] == [honest.peer_id]
            nursery.cancel_scope.cancel()
    assert f"peer {hostile.hex()[:12]} banned" in caplog.text


async def test_penalized_peer_is_disconnected_and_its_reconnect_refused():
    with trio.fail_after(WAIT):
        async with (
            open_swarm(_config(50), _status) as node,
            open_swarm(_config(51), _status) as peer,
        ):
            await peer.connect(_tcp(node))
            node.penalize(peer.peer_id, 500.0, Offence.SPAM)
            event = await _next_event(peer, PeerDisconnected)
            assert event == PeerDisconnected(
                peer_id=node.peer_id, reason=DisconnectReason.LOW_SCORE, by_peer=True
            )
            with pytest.raises(PeerRefused) as refused:
                await peer.connect(_ws(node))
            assert refused.value.reason is DisconnectReason.BANNED


@pytest.mark.filterwarnings("error::ResourceWarning")
async def test_leaving_the_context_closes_every_socket_and_task():
    with trio.fail_after(WAIT):
        async with open_swarm(_config(61), _status) as survivor:
            async with open_swarm(
                _config(60, bootnodes=(_ws(survivor),), target_outbound=1), _status
            ) as node:
                await node.wait_peer_count(1)
                await survivor.connect(_tcp(node))
                await survivor.wait_peer_count(1)
                addresses = node.listen_addresses
            assert (
                await _next_event(survivor, PeerDisconnected)
            ).reason is DisconnectReason.SHUTDOWN
            await survivor.wait_peer_count(0)
            for address in addresses:
                with pytest.raises(OSError, match="connect"):
                    await trio.open_tcp_stream("127.0.0.1", parse_address(address).port)
            assert survivor.peers() == ()
        gc.collect()
    assert [e async for e in node.events if isinstance(e, PeerConnected)]


async def test_a_link_that_replaces_another_registers_the_peer_afresh_at_both_ends():
    """The link dialed by the lower key replaces an earlier one; what the layer above tied to
    the old link (requests awaiting answers on it) ended with it, so both ends announce the
    peer again and it is registered afresh, never left waiting for a lost answer."""
    with trio.fail_after(WAIT):
        async with open_swarm(_config(62), _status) as a, open_swarm(_config(63), _status) as b:
            low, high = sorted((a, b), key=lambda swarm: swarm.peer_id)
            assert await high.connect(_tcp(low)) == low.peer_id
            for swarm, other in ((low, high), (high, low)):
                assert (await _next_event(swarm, PeerConnected)).peer_id == other.peer_id
            assert await low.connect(_tcp(high)) == high.peer_id
            for swarm, other in ((low, high), (high, low)):
                event = await _next_event(swarm, PeerConnected | PeerDisconnected)
                assert isinstance(event, PeerConnected)
                assert (event.peer_id, event.outbound) == (other.peer_id, swarm is low)
            await low.ping(high.peer_id)
            await high.ping(low.peer_id)
            assert [(p.peer_id, p.outbound) for p in low.peers()] == [(high.peer_id, True)]
            assert [(p.peer_id, p.outbound) for p in high.peers()] == [(low.peer_id, False)]


async def test_crossing_dials_both_succeed():
    """Two nodes dialing each other at once keep one link, and both `connect` calls succeed."""
    with trio.fail_after(WAIT):
        async with open_swarm(_config(60), _status) as a, open_swarm(_config(61), _status) as b:
            results = {}

            async def dial(source, target, key):
                results[key] = await source.connect(_tcp(target))

            for _ in range(5):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(dial, a, b, "a")
                    nursery.start_soon(dial, b, a, "b")
                assert results == {"a": b.peer_id, "b": a.peer_id}
                await a.ping(b.peer_id)
                assert [p.peer_id for p in a.peers()] == [b.peer_id]
                assert [p.peer_id for p in b.peers()] == [a.peer_id]
                a.disconnect(b.peer_id)
                await _next_event(a, PeerDisconnected)
                await _next_event(b, PeerDisconnected)
