"""Block sync between `NetworkService`s on loopback: range sync, orphans, hostile answers.

The chain is built with the ledger alone (reward-only blocks); `LedgerChain` imports with
`connect_block`, so these tests do not depend on consensus.
"""

from contextlib import AsyncExitStack
from dataclasses import replace

import pytest
import trio
import trio.testing

from p2pchain.errors import GossipIgnore, InvalidBlock, Reason
from p2pchain.ledger.block import Block
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.encoding import decode_item, encode_item
from p2pchain.ledger.validation import connect_block
from p2pchain.ledger.vote import Checkpoint
from p2pchain.net import (
    ImportResult,
    InboundMessage,
    NetworkConfig,
    Orphan,
    PeerDisconnected,
    SwarmConfig,
    open_network,
    open_swarm,
)
from p2pchain.protocol.gossip import Verdict
from p2pchain.protocol.messages import (
    Blocks,
    DisconnectReason,
    GetBlocksById,
    GetBlocksByRange,
    Status,
    Topic,
)
from p2pchain.protocol.sync import SyncParams, serve_blocks
from p2pchain.testing import build_block, funded_chain

WAIT = 20
FUNDED = funded_chain(1)
GENESIS = FUNDED.genesis


def _build_chain(length):
    view = FUNDED.view.copy()
    blocks = []
    for _ in range(length):
        block = build_block(view, FUNDED.params, proposer=FUNDED.validator)
        connect_block(view, block, FUNDED.params)
        blocks.append(block)
    return blocks


CHAIN = _build_chain(300)


class LedgerChain:
    """A `NetworkHost` holding one linear chain; blocks attach to the tip or not at all."""

    def __init__(self, blocks=()):
        self.view = FUNDED.view.copy()
        self.blocks = [GENESIS]
        self.by_id = {GENESIS.block_id: GENESIS}
        self.imported_from = []
        self._grew = trio.Event()
        for block in blocks:
            self._connect(block)

    def _connect(self, block):
        connect_block(self.view, block, FUNDED.params)
        self.blocks.append(block)
        self.by_id[block.block_id] = block
        self._grew.set()
        self._grew = trio.Event()

    @property
    def height(self):
        return self.view.height

    async def wait_height(self, height):
        while self.height < height:
            await self._grew.wait()

    def get_status(self):
        return Status(
            head=self.view.tip,
            head_height=self.view.height,
            head_slot=self.blocks[-1].header.slot,
            finalized=Checkpoint(epoch=0, block_id=GENESIS.block_id),
        )

    def canonical_id(self, height):
        return self.blocks[height].block_id if 0 <= height < len(self.blocks) else None

    def height_of(self, block_id):
        block = self.by_id.get(block_id)
        return None if block is None else block.header.height

    def get_block(self, block_id):
        return self.by_id.get(block_id)

    async def serve_blocks(self, request, max_bytes):
        return serve_blocks(request, self, max_bytes)

    async def validate(self, topic, data, from_peer):
        block = Block.from_rlp(decode_item(data))
        if block.block_id in self.by_id:
            raise GossipIgnore(Reason.DUPLICATE_BLOCK)
        if block.header.parent not in self.by_id:
            return Orphan(block)
        return Verdict.ACCEPT

    async def deliver(self, topic, data):
        await self.import_blocks((Block.from_rlp(decode_item(data)),), None)

    async def import_blocks(self, blocks, from_peer):
        accepted, invalid = set(), set()
        for block in blocks:
            if block.block_id in self.by_id:
                accepted.add(block.block_id)
                continue
            if block.header.parent != self.view.tip:
                break
            try:
                self._connect(block)
            except InvalidBlock:
                invalid.add(block.block_id)
                break
            self.imported_from.append(from_peer)
            accepted.add(block.block_id)
        return ImportResult(accepted=frozenset(accepted), invalid=frozenset(invalid))


def _swarm_config(seed, **overrides):
    fields = {
        "identity": SecretKey.from_entropy(sha256(b"sync-network" + bytes([seed]))),
        "chain_id": FUNDED.params.chain_id,
        "genesis": GENESIS.block_id,
        "target_outbound": 0,
    }
    fields.update(overrides)
    return SwarmConfig(**fields)


def _config(seed, **overrides):
    return NetworkConfig(swarm=_swarm_config(seed), seed=seed, **overrides)


def _tcp(service):
    return next(a for a in service.swarm.listen_addresses if a.startswith("tcp://"))


def _ws(service):
    return next(a for a in service.swarm.listen_addresses if a.startswith("ws://"))


async def test_late_joiner_syncs_hundreds_of_blocks_to_the_same_head():
    with trio.fail_after(WAIT):
        async with AsyncExitStack() as stack:
            seeders = []
            for seed in (1, 2, 3):
                service = await stack.enter_async_context(
                    open_network(_config(seed), LedgerChain(CHAIN))
                )
                seeders.append(service)
            joiner_chain = LedgerChain()
            joiner = await stack.enter_async_context(open_network(_config(4), joiner_chain))
            await joiner.swarm.connect(_tcp(seeders[0]))
            await joiner.swarm.connect(_ws(seeders[1]))
            await joiner.swarm.connect(_tcp(seeders[2]))
            await joiner_chain.wait_height(len(CHAIN))

            assert joiner_chain.get_status().head == CHAIN[-1].block_id
            assert joiner_chain.blocks[1:] == CHAIN
            stats = joiner.statistics()
            assert stats.blocks_accepted >= len(CHAIN)
            assert stats.blocks_invalid == 0
            assert stats.sync.bad_responses == 0
            assert not joiner.is_syncing
            served = sum(service.statistics().blocks_served for service in seeders)
            assert served >= len(CHAIN)
            assert set(joiner_chain.imported_from) <= {service.peer_id for service in seeders}
            # The joiner announced its new head: every seeder's view of it is current.
            for service in seeders:
                await service.swarm.ping(joiner.peer_id)


async def test_gossiped_block_with_unknown_parent_waits_for_its_parent():
    with trio.fail_after(WAIT):
        async with AsyncExitStack() as stack:
            producer_chain = LedgerChain(CHAIN[:8])
            producer = await stack.enter_async_context(open_network(_config(10), producer_chain))
            follower_chain = LedgerChain(CHAIN[:8])
            follower = await stack.enter_async_context(open_network(_config(11), follower_chain))
            await follower.swarm.connect(_tcp(producer))
            await trio.testing.wait_all_tasks_blocked()  # both sides exchanged Status
            # The producer makes two blocks but gossips only the second one.
            producer_chain._connect(CHAIN[8])
            producer_chain._connect(CHAIN[9])
            assert producer.publish(Topic.BLOCK, encode_item(CHAIN[9].to_rlp())) == 1
            await follower_chain.wait_height(10)

            assert follower_chain.blocks[1:] == CHAIN[:10]
            stats = follower.statistics()
            assert stats.orphans_released == 1
            assert stats.sync.orphans == 0
            assert stats.gossip.ignored == 1
            assert producer.statistics().blocks_served == 1


class OrphanWatch(LedgerChain):
    """A `LedgerChain` that signals each block it hands back as an orphan."""

    def __init__(self, blocks=()):
        super().__init__(blocks)
        self.orphaned = trio.Event()

    async def validate(self, topic, data, from_peer):
        verdict = await super().validate(topic, data, from_peer)
        if isinstance(verdict, Orphan):
            self.orphaned.set()
        return verdict


async def _orphan_nobody_can_serve(stack):
    """A follower holding CHAIN[9] as an orphan, from a producer that lacks its parent."""
    producer = await stack.enter_async_context(open_network(_config(12), LedgerChain(CHAIN[:8])))
    follower_chain = OrphanWatch(CHAIN[:8])
    follower = await stack.enter_async_context(open_network(_config(13), follower_chain))
    await follower.swarm.connect(_tcp(producer))
    await trio.testing.wait_all_tasks_blocked()  # both sides exchanged Status
    assert producer.publish(Topic.BLOCK, encode_item(CHAIN[9].to_rlp())) == 1
    await follower_chain.orphaned.wait()
    await trio.testing.wait_all_tasks_blocked()  # the validation worker took the orphan
    assert follower.statistics().sync.orphans == 1
    return producer, follower, follower_chain


async def test_an_orphan_whose_parent_comes_by_gossip_is_imported_after_it():
    with trio.fail_after(WAIT):
        async with AsyncExitStack() as stack:
            producer, follower, follower_chain = await _orphan_nobody_can_serve(stack)
            assert producer.publish(Topic.BLOCK, encode_item(CHAIN[8].to_rlp())) == 1
            await follower_chain.wait_height(10)

            assert follower_chain.blocks[1:] == CHAIN[:10]
            stats = follower.statistics()
            assert (stats.orphans_released, stats.sync.orphans) == (1, 0)
            assert producer.statistics().blocks_served == 0


async def test_an_orphan_whose_parent_the_host_learns_by_itself_is_imported_at_announce():
    with trio.fail_after(WAIT):
        async with AsyncExitStack() as stack:
            _, follower, follower_chain = await _orphan_nobody_can_serve(stack)
            follower_chain._connect(CHAIN[8])  # as a node's slot tick or own proposal would
            follower.announce_status()
            await follower_chain.wait_height(10)

            assert follower_chain.blocks[1:] == CHAIN[:10]
            stats = follower.statistics()
            assert (stats.orphans_released, stats.sync.orphans) == (1, 0)


async def _hostile_sync_peer(address, junk, done):
    """Claims a long chain, then answers every block request with the messages
    `junk(request)`."""
    claimed = Status(
        head=sha256(b"a head nobody has"),
        head_height=1_000,
        head_slot=1_000,
        finalized=Checkpoint(epoch=0, block_id=GENESIS.block_id),
    )
    async with open_swarm(_swarm_config(30), lambda: claimed) as swarm:
        node_id = await swarm.connect(address)
        swarm.send(node_id, claimed)
        async for event in swarm.events:
            if isinstance(event, InboundMessage):
                event.release()
            if isinstance(event, InboundMessage) and isinstance(
                event.message, GetBlocksByRange | GetBlocksById
            ):
                for message in junk(event.message):
                    swarm.send(node_id, message)
            elif isinstance(event, PeerDisconnected):
                done.append(event)
                return swarm.peer_id


async def test_malformed_sync_answers_cost_score_until_the_peer_is_banned():
    def wrong_heights(request):
        return [Blocks(request_id=request.request_id, blocks=(CHAIN[5], CHAIN[4]))]

    params = SyncParams(request_timeout=30.0)
    with trio.fail_after(WAIT):
        node_chain = LedgerChain()
        async with (
            open_network(_config(20, sync=params), node_chain) as node,
            open_network(_config(21), LedgerChain(CHAIN[:3])) as honest,
        ):
            await honest.swarm.connect(_tcp(node))
            done = []
            hostile_id = await _hostile_sync_peer(_tcp(node), wrong_heights, done)
            assert [(e.reason, e.by_peer) for e in done] == [(DisconnectReason.LOW_SCORE, True)]
            assert node.swarm.is_banned(hostile_id)
            stats = node.statistics()
            # -25 per bad answer: the fifth one crosses the -100 threshold.
            assert stats.sync.bad_responses >= 5
            assert stats.blocks_invalid == 0
            # The node kept serving its honest peer, and synced what that peer has.
            await node_chain.wait_height(3)
            await node.swarm.ping(honest.peer_id)
            assert [p.peer_id for p in node.swarm.peers()] == [honest.peer_id]


async def test_unsolicited_block_answers_cost_score_and_end_the_link():
    def unsolicited(request):
        # Three answers to requests never made. While the node has requests open to this peer,
        # an answer fits the connection's allowance and sync judges it (-25 each); the first
        # one beyond answers nothing at all and is refused from its header (-50): the end.
        return [Blocks(request_id=request.request_id + n, blocks=()) for n in (100, 200, 300)]

    with trio.fail_after(WAIT):
        async with open_network(_config(22), LedgerChain()) as node:
            done = []
            hostile_id = await _hostile_sync_peer(_tcp(node), unsolicited, done)
            assert [(e.reason, e.by_peer) for e in done] == [
                (DisconnectReason.PROTOCOL_ERROR, True)
            ]
            judged = node.statistics().sync.bad_responses
            assert judged >= 1
            assert node.swarm.score(hostile_id) == pytest.approx(-25 * judged - 50, abs=0.1)


async def test_a_sync_peer_serving_an_invalid_block_is_banned_at_once():
    tampered = replace(CHAIN[0], transactions=())  # its header's body root no longer matches

    def invalid(request):
        return [Blocks(request_id=request.request_id, blocks=(tampered,))]

    with trio.fail_after(WAIT):
        node_chain = LedgerChain()
        async with (
            open_network(_config(23), node_chain) as node,
            open_network(_config(24), LedgerChain(CHAIN[:3])) as honest,
        ):
            done = []
            hostile_id = await _hostile_sync_peer(_tcp(node), invalid, done)
            assert [(e.reason, e.by_peer) for e in done] == [(DisconnectReason.LOW_SCORE, True)]
            assert node.swarm.is_banned(hostile_id)
            # One import, and the peer is never asked again (the other request in flight is
            # handed to someone else, its answer dropped).
            assert node.statistics().blocks_invalid == 1
            await honest.swarm.connect(_tcp(node))
            await node_chain.wait_height(3)  # and the honest peer is synced from
