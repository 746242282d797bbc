"""Fault containment: our own bug while handling one peer's input never ends the node.

Each test injects an unexpected exception at one stage of receive -> validate -> import on a
`NetworkService` over loopback TCP, from a peer of its own, and checks that the fault is counted
at that stage and logged once with its traceback, that the peer that triggered it (only that
one) is disconnected with INTERNAL_ERROR, that nothing was delivered or relayed, and that the
node goes on serving another peer. A `StorageError` is the exception: it stops the node.
"""

import logging
import random

import pytest
import trio
import trio.testing

from p2pchain.errors import StorageError
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.net import (
    InboundMessage,
    NetworkConfig,
    PeerConnected,
    PeerDisconnected,
    SwarmConfig,
    open_network,
    open_swarm,
)
from p2pchain.net.swarm import Swarm
from p2pchain.protocol import connection
from p2pchain.protocol.connection import PeerId
from p2pchain.protocol.gossip import GossipRouter
from p2pchain.protocol.messages import DisconnectReason, GetPeers, Publish, Topic
from p2pchain.testing.link import TEST_CHAIN_ID, TEST_GENESIS, make_hello
from p2pchain.testing.simnet import GossipHost

WAIT = 20
POISON = b"poison"


class Boom(RuntimeError):
    """The injected bug."""


def _swarm_config(seed):
    return SwarmConfig(
        identity=SecretKey.from_entropy(sha256(b"containment" + bytes([seed]))),
        chain_id=TEST_CHAIN_ID,
        genesis=TEST_GENESIS,
        target_outbound=0,
    )


def _config(seed):
    return NetworkConfig(swarm=_swarm_config(seed), seed=seed)


def _tcp(service):
    return next(a for a in service.swarm.listen_addresses if a.startswith("tcp://"))


class PoisonHost(GossipHost):
    """A host whose `hook` ("validate" or "deliver") raises `error` for data starting with
    POISON and otherwise behaves like `GossipHost`."""

    def __init__(self, hook, error=None):
        super().__init__(TEST_GENESIS)
        self.hook = hook
        self.error = Boom("injected") if error is None else error

    async def validate(self, topic, data, from_peer):
        if self.hook == "validate" and data.startswith(POISON):
            raise self.error
        return await super().validate(topic, data, from_peer)

    async def deliver(self, topic, data):
        if self.hook == "deliver" and data.startswith(POISON):
            raise self.error
        await super().deliver(topic, data)


async def _until_disconnected(swarm, node_id):
    async for event in swarm.events:
        if isinstance(event, InboundMessage):
            event.release()
        if isinstance(event, PeerDisconnected) and event.peer_id == node_id:
            return event
    raise AssertionError("the events channel closed first")


def _tracebacks(caplog):
    return [r for r in caplog.records if r.exc_info is not None]


async def _check_still_serving(node, host, bystander):
    """The node answers a peer that was connected all along, and delivers its gossip."""
    await node.swarm.ping(bystander.peer_id)
    assert bystander.publish(Topic.TRANSACTION, b"after the fault") == 1
    await host.wait_delivered(Topic.TRANSACTION, b"after the fault")


@pytest.mark.parametrize(
    ("stage", "inject"),
    [
        ("connection", "decode"),
        ("gossip", "router"),
        ("validation", "validate"),
    ],
)
async def test_a_fault_on_one_peers_message_drops_that_peer_only(
    caplog, monkeypatch, stage, inject
):
    caplog.set_level(logging.INFO, logger="p2pchain")
    host = PoisonHost(inject)
    if inject == "decode":
        real_decode = connection.decode_message

        def decode(body):
            if POISON in body:
                raise Boom("injected")
            return real_decode(body)

        monkeypatch.setattr(connection, "decode_message", decode)
    elif inject == "router":
        real_handle = GossipRouter.handle_message

        def handle(router, peer_id, message, now):
            if isinstance(message, Publish) and message.data.startswith(POISON):
                raise Boom("injected")
            return real_handle(router, peer_id, message, now)

        monkeypatch.setattr(GossipRouter, "handle_message", handle)
    with trio.fail_after(WAIT):
        async with (
            open_network(_config(1), host) as node,
            open_network(_config(2), GossipHost(TEST_GENESIS)) as bystander,
            open_swarm(_swarm_config(3), host.get_status) as sender,
        ):
            await bystander.swarm.connect(_tcp(node))
            node_id = await sender.connect(_tcp(node))
            sender.send(node_id, Publish(topic=Topic.TRANSACTION, data=POISON + b" 1"))
            event = await _until_disconnected(sender, node_id)
            assert event.reason is DisconnectReason.INTERNAL_ERROR
            await _check_still_serving(node, host, bystander)
            assert dict(node.statistics().swarm.internal_errors) == {stage: 1}
            assert not host.has(Topic.TRANSACTION, POISON + b" 1")
            assert [p.peer_id for p in node.swarm.peers()] == [bystander.peer_id]
            # Not a verdict on the peer: a bug of ours costs it no score.
            assert node.swarm.score(sender.peer_id) == 0

            # The same bug again is counted and logged, but its traceback only once.
            again = await sender.connect(_tcp(node))
            sender.send(again, Publish(topic=Topic.TRANSACTION, data=POISON + b" 2"))
            await _until_disconnected(sender, again)
            assert dict(node.statistics().swarm.internal_errors) == {stage: 2}
    (logged,) = _tracebacks(caplog)
    assert logged.exc_info[0] is Boom
    assert f"internal error in {stage}" in logged.getMessage()


async def test_a_fault_in_the_swarm_handler_drops_that_peer_only(caplog, monkeypatch):
    def broken(swarm, requester):
        raise Boom("injected")

    monkeypatch.setattr(Swarm, "_addresses_for", broken)
    host = GossipHost(TEST_GENESIS)
    with trio.fail_after(WAIT):
        async with (
            open_network(_config(4), host) as node,
            open_network(_config(5), GossipHost(TEST_GENESIS)) as bystander,
            open_swarm(_swarm_config(6), host.get_status) as sender,
        ):
            await bystander.swarm.connect(_tcp(node))
            node_id = await sender.connect(_tcp(node))
            sender.send(node_id, GetPeers())
            event = await _until_disconnected(sender, node_id)
            assert event.reason is DisconnectReason.INTERNAL_ERROR
            await _check_still_serving(node, host, bystander)
            assert dict(node.statistics().swarm.internal_errors) == {"swarm": 1}
    assert len(_tracebacks(caplog)) == 1


async def test_a_fault_while_delivering_is_counted_and_the_next_message_delivered(caplog):
    host = PoisonHost("deliver")
    with trio.fail_after(WAIT):
        async with (
            open_network(_config(7), host) as node,
            open_network(_config(8), GossipHost(TEST_GENESIS)) as sender,
        ):
            await sender.swarm.connect(_tcp(node))
            await trio.testing.wait_all_tasks_blocked()
            assert sender.publish(Topic.VOTE, POISON + b" vote") == 1
            assert sender.publish(Topic.VOTE, b"fine vote") == 1
            await host.wait_delivered(Topic.VOTE, b"fine vote")
            assert dict(node.statistics().swarm.internal_errors) == {"delivery": 1}
            # Delivery happens after validation: the message came from the network as a whole,
            # so no peer is dropped for it.
            await node.swarm.ping(sender.peer_id)
    assert len(_tracebacks(caplog)) == 1


async def test_a_storage_failure_stops_the_node():
    host = PoisonHost("validate", error=StorageError("disk gone"))
    stopped = []
    with trio.fail_after(WAIT):
        try:
            async with (
                open_network(_config(9), host) as node,
                open_network(_config(10), GossipHost(TEST_GENESIS)) as sender,
            ):
                await sender.swarm.connect(_tcp(node))
                await trio.testing.wait_all_tasks_blocked()
                sender.publish(Topic.TRANSACTION, POISON + b" tx")
                await trio.sleep_forever()  # ended by the node's failure, within WAIT
        except* StorageError as group:
            stopped.extend(_leaves(group))
    assert [str(error) for error in stopped] == ["disk gone"]


def _leaves(error):
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


async def test_peer_events_in_any_order_keep_the_service_consistent():
    """Connects, repeated connects, disconnects of peers never registered and messages from
    unknown peers (as a swarm under load can produce) never raise, and the registered peers
    follow a naive model: connected and not disconnected since."""
    host = GossipHost(TEST_GENESIS)
    peers = [PeerId(sha256(bytes([n]))) for n in range(4)]
    hello = make_hello(SecretKey.from_entropy(sha256(b"hello")))
    rng = random.Random(11)
    with trio.fail_after(WAIT):
        async with open_network(_config(11), host) as node:
            for _ in range(200):
                model = set()
                for _ in range(rng.randrange(1, 30)):
                    peer_id = rng.choice(peers)
                    kind = rng.randrange(3)
                    if kind == 0:
                        event = PeerConnected(peer_id=peer_id, hello=hello, outbound=False)
                        model.add(peer_id)
                    elif kind == 1:
                        event = PeerDisconnected(peer_id=peer_id, reason=None, by_peer=True)
                        model.discard(peer_id)
                    else:
                        message = Publish(topic=Topic.VOTE, data=bytes([rng.randrange(256)]))
                        event = InboundMessage(peer_id=peer_id, message=message)
                    node._on_event(event, trio.current_time())
                    assert set(node._generation) == model
                    assert set(node._router.peers) == model
                for peer_id in list(model):
                    node._on_event(
                        PeerDisconnected(peer_id=peer_id, reason=None, by_peer=True),
                        trio.current_time(),
                    )
    assert node.statistics().swarm.internal_errors == ()
