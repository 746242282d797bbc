"""`NetworkService` on loopback: hooks, verdict penalties, bounded queues, status, shutdown."""

import gc
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from p2pchain.errors import ConfigError, GossipReject, Reason
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.vote import Checkpoint
from p2pchain.net import (
    InboundMessage,
    NetworkConfig,
    PeerDisconnected,
    SwarmConfig,
    open_network,
    open_swarm,
)
from p2pchain.net.faults import Where
from p2pchain.net.service import VALIDATION_BATCH
from p2pchain.net.transports import parse_address
from p2pchain.protocol.gossip import Verdict
from p2pchain.protocol.messages import (
    Blocks,
    DisconnectReason,
    GetBlocksByRange,
    Publish,
    Status,
    Topic,
)
from p2pchain.testing.link import TEST_CHAIN_ID, TEST_GENESIS
from p2pchain.testing.simnet import GossipHost

WAIT = 20


def _swarm_config(seed, **overrides):
    fields = {
        "identity": SecretKey.from_entropy(sha256(b"service-test" + bytes([seed]))),
        "chain_id": TEST_CHAIN_ID,
        "genesis": TEST_GENESIS,
        "target_outbound": 0,
    }
    fields.update(overrides)
    return SwarmConfig(**fields)


def _config(seed, **overrides):
    return NetworkConfig(swarm=_swarm_config(seed), seed=seed, **overrides)


def _tcp(service):
    return next(a for a in service.swarm.listen_addresses if a.startswith("tcp://"))


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("validation_workers", "worker and queue sizes"),
        ("delivery_queue", "worker and queue sizes"),
        ("max_sync_responses", "sync answer queue"),
    ],
)
def test_bad_queue_limits_are_config_errors(field, message):
    with pytest.raises(ConfigError, match=message):
        _config(1, **{field: 0})


@pytest.mark.parametrize("field", ["inbox_size", "inbox_bytes", "inbox_per_peer"])
def test_bad_inbox_limits_are_config_errors(field):
    with pytest.raises(ConfigError, match="inbox limits"):
        _swarm_config(1, **{field: 0})


class SevereReject(GossipReject):
    penalty = 45


class GatedHost(GossipHost):
    """Validation waits for `gate`; raises `SevereReject` for data starting with b"evil"."""

    def __init__(self):
        super().__init__(TEST_GENESIS)
        self.gate = trio.Event()
        self.started = 0

    async def validate(self, topic, data, from_peer):
        self.started += 1
        await self.gate.wait()
        await super().validate(topic, data, from_peer)
        if data.startswith(b"evil"):
            raise SevereReject(Reason.BAD_SIGNATURE)
        return Verdict.ACCEPT


async def test_raised_reject_costs_its_class_penalty_and_delivers_nothing():
    host = GatedHost()
    host.gate.set()
    with trio.fail_after(WAIT):
        async with (
            open_network(_config(1), host) as node,
            open_network(_config(2), GossipHost(TEST_GENESIS)) as sender,
        ):
            await sender.swarm.connect(_tcp(node))
            await trio.testing.wait_all_tasks_blocked()
            assert sender.publish(Topic.VOTE, b"evil vote") == 1
            assert sender.publish(Topic.VOTE, b"fine vote") == 1
            await host.wait_delivered(Topic.VOTE, b"fine vote")
            await trio.testing.wait_all_tasks_blocked()
            assert node.swarm.score(sender.peer_id) == pytest.approx(-45, abs=0.01)
            assert [d.message_id for d in host.delivered] == [
                d.message_id for d in host.delivered if d.topic is Topic.VOTE
            ]
            assert not host.has(Topic.VOTE, b"evil vote")
            stats = node.statistics().gossip
            assert (stats.rejected, stats.delivered) == (1, 1)
            # Publishing a message again is a no-op.
            assert sender.publish(Topic.VOTE, b"fine vote") == 0


async def test_a_peer_at_its_inbox_share_is_not_read_until_its_validations_end():
    """A peer's messages held by the service count against its share; at the share its reader
    waits (TCP back-pressure) instead of anything being dropped, and other peers are read."""
    host = GatedHost()
    config = NetworkConfig(swarm=_swarm_config(3, inbox_per_peer=2), seed=3, validation_workers=1)
    burst = [b"tx %d" % n for n in range(5)]
    with trio.fail_after(WAIT):
        async with (
            open_network(config, host) as node,
            open_swarm(_swarm_config(4), GossipHost(TEST_GENESIS).get_status) as flooder,
            open_swarm(_swarm_config(9), GossipHost(TEST_GENESIS).get_status) as other,
        ):
            node_id = await flooder.connect(_tcp(node))
            await other.connect(_tcp(node))
            for data in burst:
                flooder.send(node_id, Publish(topic=Topic.TRANSACTION, data=data))
            await _until(lambda: node.swarm.statistics().reads_paused > 0)
            await trio.testing.wait_all_tasks_blocked()
            stats = node.statistics()
            # One validating, one queued; the third was read and waits for a share.
            assert (host.started, stats.validations_waiting) == (1, 2)
            assert dict(stats.swarm.messages_in)["Publish"] == 3
            # A paused peer holds up nobody else: another peer's message is read and queued.
            other.send(node_id, Publish(topic=Topic.TRANSACTION, data=b"other tx"))
            await _until(lambda: node.statistics().validations_waiting == 3)

            host.gate.set()
            for data in [*burst, b"other tx"]:
                await host.wait_delivered(Topic.TRANSACTION, data)
            await trio.testing.wait_all_tasks_blocked()
            validated = [data for _, data, _ in host.validated]
            assert [data for data in validated if data in burst] == burst  # in order, all
            stats = node.statistics()
            assert stats.validations_waiting == stats.validations_dropped == 0
            assert stats.gossip.ignored == 0
            # Our slowness costs an honest peer nothing.
            assert node.swarm.score(flooder.peer_id) == 0


@asynccontextmanager
async def _one_worker_holding_a_transaction(seed, validation_queue):
    """A node with one validation worker and `validation_queue`, and a sender whose "tx 0"
    that worker holds until `host.gate` is set: (host, node, sender, node's peer id)."""
    host = GatedHost()
    config = NetworkConfig(
        swarm=_swarm_config(seed),
        seed=seed,
        validation_workers=1,
        validation_queue=validation_queue,
    )
    async with (
        open_network(config, host) as node,
        open_swarm(_swarm_config(seed + 1), GossipHost(TEST_GENESIS).get_status) as sender,
    ):
        node_id = await sender.connect(_tcp(node))
        sender.send(node_id, Publish(topic=Topic.TRANSACTION, data=b"tx 0"))
        await _until(lambda: host.started == 1)
        yield host, node, sender, node_id


async def test_past_the_validation_queue_messages_are_ignored_without_blame():
    with trio.fail_after(WAIT):
        async with _one_worker_holding_a_transaction(15, 2) as (host, node, sender, node_id):
            for n in range(1, 5):
                sender.send(node_id, Publish(topic=Topic.TRANSACTION, data=b"tx %d" % n))
            await sender.ping(node_id)  # read after the five: all were handled
            await trio.testing.wait_all_tasks_blocked()
            stats = node.statistics()
            # One validating, two queued, two dropped: our overload, nobody blamed.
            assert (host.started, stats.validations_waiting) == (1, 3)
            assert stats.validations_dropped == stats.gossip.ignored == 2
            assert node.swarm.score(sender.peer_id) == 0
            host.gate.set()
            await host.wait_delivered(Topic.TRANSACTION, b"tx 2")
            assert [data for _, data, _ in host.validated] == [b"tx 0", b"tx 1", b"tx 2"]


async def test_votes_and_blocks_are_validated_before_waiting_transactions():
    """Blocks, votes and evidence have their own queue, served first: under a flood of
    transactions a vote waits for at most the batch in hand, and a full transaction queue
    drops no vote."""
    with trio.fail_after(WAIT):
        async with _one_worker_holding_a_transaction(17, 3) as (host, node, sender, node_id):
            for n in range(1, 6):
                sender.send(node_id, Publish(topic=Topic.TRANSACTION, data=b"tx %d" % n))
            sender.send(node_id, Publish(topic=Topic.VOTE, data=b"vote"))
            sender.send(node_id, Publish(topic=Topic.BLOCK, data=b"block"))
            await sender.ping(node_id)  # read after all of them: all were handled
            await trio.testing.wait_all_tasks_blocked()
            stats = node.statistics()
            # Three transactions queued, two dropped; the vote and the block are queued.
            assert stats.validations_dropped == 2
            assert stats.validations_waiting == 1 + 3 + 2
            host.gate.set()
            await host.wait_delivered(Topic.TRANSACTION, b"tx 3")
            assert [data for _, data, _ in host.validated] == [
                b"tx 0",
                b"vote",
                b"block",
                b"tx 1",
                b"tx 2",
                b"tx 3",
            ]


async def test_a_burst_far_beyond_a_peers_share_is_paced_and_validated_in_full():
    """With validation held, a 1,000-message burst stops at a share of 16 (the rest stays
    unread) and, once validation runs, is read and validated to the last message."""
    host = GatedHost()
    config = NetworkConfig(swarm=_swarm_config(11, inbox_per_peer=16), seed=11)
    burst = [b"tx %-300d" % n for n in range(1_000)]
    with trio.fail_after(WAIT):
        async with (
            open_network(config, host) as node,
            open_swarm(_swarm_config(12), GossipHost(TEST_GENESIS).get_status) as sender,
        ):
            node_id = await sender.connect(_tcp(node))
            for data in burst:
                assert sender.send(node_id, Publish(topic=Topic.TRANSACTION, data=data))
            await _until(lambda: node.swarm.statistics().reads_paused > 0)
            await trio.testing.wait_all_tasks_blocked()
            assert node.statistics().validations_waiting == 16
            host.gate.set()
            for data in burst:
                await host.wait_delivered(Topic.TRANSACTION, data)
            stats = node.statistics()
            assert stats.validations_dropped == stats.gossip.ignored == 0
            assert sorted(data for _, data, _ in host.validated) == sorted(burst)


async def _until(condition):
    """Poll `condition` (state moved by socket data: no event to wait on); callers bound it."""
    while not condition():  # noqa: ASYNC110
        await trio.sleep(0.01)


class PreparingHost(GossipHost):
    """Records every batch `prepare` receives; the first call fails like a bug would."""

    def __init__(self, **kwargs):
        super().__init__(TEST_GENESIS, **kwargs)
        self.batches = []

    async def prepare(self, batch):
        self.batches.append(list(batch))
        await super().prepare(batch)
        if len(self.batches) == 1:
            raise RuntimeError("injected failure in prepare")


async def test_each_message_is_prepared_in_a_batch_then_validated_even_if_prepare_fails():
    host = PreparingHost()
    messages = [b"tx %d" % n for n in range(20)]
    with trio.fail_after(WAIT):
        async with (
            open_network(_config(13), host) as node,
            open_swarm(_swarm_config(14), GossipHost(TEST_GENESIS).get_status) as sender,
        ):
            node_id = await sender.connect(_tcp(node))
            for data in messages:
                sender.send(node_id, Publish(topic=Topic.TRANSACTION, data=data))
            for data in messages:
                await host.wait_delivered(Topic.TRANSACTION, data)
            prepared = [data for batch in host.batches for _, data in batch]
            assert sorted(prepared) == sorted(messages)  # each once, before its validation
            assert all(len(batch) <= VALIDATION_BATCH for batch in host.batches)
            assert dict(node.faults.counts()) == {Where.VALIDATION: 1}
            assert node.swarm.score(sender.peer_id) == 0  # nobody blamed for our failure


async def test_verdicts_of_a_batch_validator_judge_the_messages_it_prepared():
    def odd_ones_out(batch):
        return [Verdict.REJECT if data.endswith(b"!") else Verdict.ACCEPT for _, data in batch]

    host = GossipHost(TEST_GENESIS, batch_validator=odd_ones_out)
    with trio.fail_after(WAIT):
        async with (
            open_network(_config(17), host) as node,
            open_swarm(_swarm_config(18), GossipHost(TEST_GENESIS).get_status) as sender,
        ):
            node_id = await sender.connect(_tcp(node))
            for data in (b"good", b"bad!", b"fine"):
                sender.send(node_id, Publish(topic=Topic.VOTE, data=data))
            await host.wait_delivered(Topic.VOTE, b"fine")
            await host.wait_delivered(Topic.VOTE, b"good")
            await sender.ping(node_id)
            await trio.testing.wait_all_tasks_blocked()
            assert not host.has(Topic.VOTE, b"bad!")
            assert node.statistics().gossip.rejected == 1


async def test_a_burst_judged_in_worker_threads_is_validated_in_full():
    """A worker waiting on a thread lets the event task read on; the sender's inbox share,
    not a drop, stops it (a 1,000-message burst lost 75 % to a per-peer drop rule once)."""
    host = GossipHost(TEST_GENESIS, batch_validator=lambda batch: [Verdict.ACCEPT for _ in batch])
    burst = [b"tx %-300d" % n for n in range(1_000)]
    config = NetworkConfig(swarm=_swarm_config(19, inbox_per_peer=64), seed=19)
    with trio.fail_after(WAIT):
        async with (
            open_network(config, host) as node,
            open_swarm(_swarm_config(20), GossipHost(TEST_GENESIS).get_status) as sender,
        ):
            node_id = await sender.connect(_tcp(node))
            for data in burst:
                assert sender.send(node_id, Publish(topic=Topic.TRANSACTION, data=data))
            for data in burst:
                await host.wait_delivered(Topic.TRANSACTION, data)
            stats = node.statistics()
            assert stats.validations_dropped == stats.gossip.ignored == 0


async def test_status_goes_to_new_peers_and_again_when_the_head_changes():
    host = GossipHost(TEST_GENESIS)
    with trio.fail_after(WAIT):
        async with (
            open_network(_config(5), host) as node,
            open_swarm(_swarm_config(6), host.get_status) as peer,
        ):
            node_id = await peer.connect(_tcp(node))
            statuses = []
            async for event in peer.events:
                if isinstance(event, InboundMessage):
                    event.release()
                if isinstance(event, InboundMessage) and isinstance(event.message, Status):
                    statuses.append(event.message)
                    if len(statuses) == 1:
                        node.announce_status()  # unchanged: nothing is sent
                        host.status = Status(
                            head=sha256(b"new head"),
                            head_height=1,
                            head_slot=1,
                            finalized=Checkpoint(epoch=0, block_id=TEST_GENESIS),
                        )
                        node.announce_status()
                        node.announce_status()
                        await peer.ping(node_id)
                        await node.swarm.ping(peer.peer_id)
                    else:
                        break
            assert [s.head_height for s in statuses] == [0, 1]
            assert node.statistics().sends_dropped == 0


@pytest.mark.filterwarnings("error::ResourceWarning")
async def test_leaving_the_context_stops_every_task_and_socket():
    before = _all_tasks()
    with trio.fail_after(WAIT):
        async with open_swarm(_swarm_config(7), GossipHost(TEST_GENESIS).get_status) as watcher:
            async with open_network(_config(8), GossipHost(TEST_GENESIS)) as node:
                await watcher.connect(_tcp(node))
                node.publish(Topic.BLOCK, b"a block")
                addresses = node.swarm.listen_addresses
            event = None
            async for event in watcher.events:
                if isinstance(event, PeerDisconnected):
                    break
            assert event.reason is DisconnectReason.SHUTDOWN
            for address in addresses:
                with pytest.raises(OSError, match="connect"):
                    await trio.open_tcp_stream("127.0.0.1", parse_address(address).port)
            gc.collect()
    assert _all_tasks() == before


def _all_tasks():
    tasks, stack = [], [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        tasks.append(task)
        stack.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return len(tasks)


class ServingGate(GossipHost):
    """Answers block requests only once `gate` is set; records the requests it began."""

    def __init__(self):
        super().__init__(TEST_GENESIS)
        self.gate = trio.Event()
        self.started = []

    async def serve_blocks(self, request, max_bytes):
        self.started.append(request.request_id)
        await self.gate.wait()
        return await super().serve_blocks(request, max_bytes)


async def test_block_requests_are_answered_in_turn_and_hold_their_senders_share():
    """While the host is slow, a peer's waiting block requests hold its inbox share (its
    reader pauses at the share: nothing is dropped); another peer's request is answered after
    at most one of the first peer's, and every request is answered once, in order."""
    host = ServingGate()
    config = NetworkConfig(swarm=_swarm_config(1, inbox_per_peer=6), seed=1)
    status = GossipHost(TEST_GENESIS).get_status
    with trio.fail_after(WAIT):
        async with (
            open_network(config, host) as node,
            open_swarm(_swarm_config(2), status) as flooder,
            open_swarm(_swarm_config(3), status) as other,
            trio.open_nursery() as nursery,
        ):
            answers = {flooder.peer_id: [], other.peer_id: []}

            async def collect(asker):
                async for event in asker.events:
                    if isinstance(event, InboundMessage):
                        event.release()
                        if isinstance(event.message, Blocks):
                            answers[asker.peer_id].append(event.message.request_id)

            for asker in (flooder, other):
                await asker.connect(_tcp(node))
                nursery.start_soon(collect, asker)

            def ask(asker, request_id):
                request = GetBlocksByRange(request_id=request_id, start_height=1, count=4)
                assert asker.send(node.peer_id, request)

            flooded = 20
            for request_id in range(flooded):
                ask(flooder, request_id)
            while not host.started:
                await trio.testing.wait_all_tasks_blocked()
            ask(other, 100)
            while node.statistics().serves_waiting < 6:
                await trio.testing.wait_all_tasks_blocked()
            await trio.testing.wait_all_tasks_blocked()
            stats = node.statistics()
            # The flooder's share less the one being answered, and the other peer's one.
            assert stats.serves_waiting == 5 + 1
            assert stats.swarm.reads_paused >= 1  # ... so it is not read meanwhile
            host.gate.set()
            while len(answers[flooder.peer_id]) < flooded or not answers[other.peer_id]:
                await trio.testing.wait_all_tasks_blocked()
            assert answers == {flooder.peer_id: list(range(flooded)), other.peer_id: [100]}
            assert host.started.index(100) <= 2  # one of the flooder's at most before it
            assert node.swarm.score(flooder.peer_id) == node.swarm.score(other.peer_id) == 0
            nursery.cancel_scope.cancel()
