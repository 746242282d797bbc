"""Every pool a peer can fill stays within its `NodeLimits` bound, in count and in bytes.

Each test pushes 10^4 junk items through `node.network.host.validate` (the gossip hook, as
the network service calls it) and checks the node's own accounting, `tracemalloc` where the
bytes matter, and that an honest peer's entry survives the flood. Blocks with unknown parents
are not the node's to hold: they go back to the network's orphan pool (bounded in
tests/protocol/test_sync.py).
"""

import gc
import tracemalloc
from dataclasses import replace

import pytest
import trio

from p2pchain import NodeConfig, NodeLimits, open_node
from p2pchain.consensus import build_block, get_forkchoice_store, get_proposer, on_block, on_tick
from p2pchain.errors import GossipIgnore, GossipReject, Reason
from p2pchain.ledger.block import Block
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.encoding import encode, encode_item
from p2pchain.ledger.evidence import VoteEquivocation
from p2pchain.ledger.header import BlockHeader, header_signing_message
from p2pchain.ledger.tx import OutPoint, Transaction, TxInput, TxKind, TxOutput
from p2pchain.ledger.types import AssetId, BlockId, Hash32, PublicKey, TxId
from p2pchain.ledger.validation import SignatureCache
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.ledger.wallet import Wallet
from p2pchain.net import Orphan
from p2pchain.params import COIN
from p2pchain.protocol.connection import PeerId
from p2pchain.protocol.gossip import Verdict
from p2pchain.protocol.messages import Topic
from p2pchain.testing.consensus import CONSENSUS_PARAMS, make_genesis, validator_keys
from p2pchain.testing.simnet import SimulatedNetwork

JUNK = 10_000
NOW_SLOT = 5
"""The node's clock stands in slot 5 (nothing is finalized past genesis at slot 0)."""
KEYS = validator_keys(4, label=b"pools")
GENESIS = make_genesis(KEYS, [10 * COIN] * 4, CONSENSUS_PARAMS)
GENESIS_ID = get_forkchoice_store(CONSENSUS_PARAMS, GENESIS).genesis_id
HONEST = PeerId(b"h" * 32)
NATIVE = AssetId(CONSENSUS_PARAMS.native_asset)
SMALL = NodeLimits(
    pending_blocks=64,
    pending_block_bytes=30_000,
    pending_blocks_per_peer=8,
    pending_block_bytes_per_peer=4_000,
    pending_votes=256,
    pending_votes_per_peer=32,
)


def _config(limits: NodeLimits) -> NodeConfig:
    network = SimulatedNetwork(seed=1)
    slot_ms = CONSENSUS_PARAMS.slot_ms
    return NodeConfig(
        genesis=GENESIS,
        params=CONSENSUS_PARAMS,
        listen=(network.address("node"),),
        transport=network.transport("node"),
        clock_offset_ms=NOW_SLOT * slot_ms - round(trio.current_time() * 1000),
        offload_blocking=False,
        limits=limits,
    )


def _peer(index: int) -> PeerId:
    return PeerId(index.to_bytes(32, "big"))


JUNK_KEY = SecretKey.from_entropy(sha256(b"nobody's proposer"))


def _junk_block(nonce: int, *, parent: BlockId, slot: int, padding: int = 0) -> Block:
    """A well-formed block nobody may propose (checked only once it can be imported), signed
    by its stranger of a proposer: a block on an unknown parent or for a later slot is held
    only when its signature holds, so a flood that fills the pools has to sign each block."""
    header = BlockHeader(
        parent=parent,
        height=1,
        slot=slot,
        proposer=JUNK_KEY.public_key,
        body_root=Hash32(sha256(nonce.to_bytes(8, "big"))),
        state_root=Hash32(bytes(32)),
    )
    signature = JUNK_KEY.sign(header_signing_message(CONSENSUS_PARAMS.chain_id, header.block_id))
    filler = Vote(
        slot=0,
        head=BlockId(bytes(32)),
        source=Checkpoint(epoch=0, block_id=BlockId(bytes(32))),
        target=Checkpoint(epoch=0, block_id=BlockId(bytes(32))),
        validator=PublicKey(bytes(32)),
        signature=bytes(64),
    )
    return Block(header=header, signature=signature, votes=(filler,) * padding)


async def _offer(node, topic: Topic, data: bytes, peer: PeerId) -> Verdict:
    try:
        return await node.network.host.validate(topic, data, peer)
    except GossipIgnore:
        return Verdict.IGNORE
    except GossipReject:
        return Verdict.REJECT


def _honest_chain(*slots: int) -> list[Block]:
    """Valid blocks on genesis at `slots`, each the parent of the next, by their proposers."""
    store = get_forkchoice_store(CONSENSUS_PARAMS, GENESIS)
    by_key = {key.public_key: key for key in KEYS}
    chain: list[Block] = []
    parent = store.genesis_id
    for slot in slots:
        on_tick(store, slot)
        proposer = get_proposer(store, parent, slot)
        assert proposer is not None
        block = build_block(store, parent, slot, by_key[proposer])
        on_block(store, block, slot)
        chain.append(block)
        parent = block.block_id
    return chain


def _assert_block_pool_within(stats, limits: NodeLimits) -> None:
    assert stats.blocks_waiting <= limits.pending_blocks
    assert stats.blocks_waiting_bytes <= limits.pending_block_bytes


async def test_future_block_flood_from_one_peer_keeps_its_share_and_the_honest_block(
    autojump_clock,
):
    (honest,) = _honest_chain(NOW_SLOT + 1)
    async with open_node(_config(SMALL)) as node:
        assert await _offer(node, Topic.BLOCK, encode(honest), HONEST) is Verdict.IGNORE
        flooder = _peer(1)
        for nonce in range(JUNK):
            junk = _junk_block(nonce, parent=GENESIS_ID, slot=NOW_SLOT + 1, padding=2)
            await _offer(node, Topic.BLOCK, encode(junk), flooder)
            if nonce % 1_000 == 0:
                _assert_block_pool_within(node.statistics().chain, SMALL)
        stats = node.statistics().chain
        assert stats.blocks_waiting == 1 + min(
            SMALL.pending_blocks_per_peer,
            SMALL.pending_block_bytes_per_peer // len(junk.encoded),
        )
        assert stats.blocks_dropped >= JUNK - SMALL.pending_blocks_per_peer
        # The slot comes: the honest block is imported, the junk fails and leaves.
        await node.wait_for(lambda n: n.head().block_id == honest.block_id)
        assert node.statistics().chain.blocks_waiting == 0


async def test_future_block_flood_from_many_peers_stays_within_count_and_bytes(autojump_clock):
    (honest,) = _honest_chain(NOW_SLOT + 1)
    junk = [
        encode(_junk_block(nonce, parent=GENESIS_ID, slot=NOW_SLOT + 1, padding=2))
        for nonce in range(JUNK)
    ]
    async with open_node(_config(SMALL)) as node:
        assert await _offer(node, Topic.BLOCK, encode(honest), HONEST) is Verdict.IGNORE
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for nonce, data in enumerate(junk):
                # Few enough identities that each fills its whole share (16 shares of 4 KB
                # would be 64 KB > 30 KB), so the pool is full all along.
                await _offer(node, Topic.BLOCK, data, _peer(nonce % 16))
            gc.collect()  # cyclic garbage is not held
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        stats = node.statistics().chain
        _assert_block_pool_within(stats, SMALL)
        assert stats.blocks_waiting_bytes + len(junk[0]) > SMALL.pending_block_bytes  # full
        # Decoded blocks cost a few times their encoding; 10^4 junk blocks (8 MB) went by.
        assert held < 8 * SMALL.pending_block_bytes
        # It held less than any flooder all along: its slot brings it in.
        await node.wait_for(lambda n: n.head().block_id == honest.block_id)


async def test_blocks_with_unknown_parents_are_handed_to_the_network_not_held(autojump_clock):
    blocks = [
        _junk_block(nonce, parent=BlockId(sha256(b"%d" % nonce)), slot=NOW_SLOT, padding=2)
        for nonce in range(JUNK)
    ]
    junk = [encode(block) for block in blocks]
    async with open_node(_config(SMALL)) as node:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for nonce, data in enumerate(junk):
                result = await node.network.host.validate(Topic.BLOCK, data, _peer(nonce % 16))
                assert result == Orphan(blocks[nonce])  # for the orphan pool, decoded once
            del result
            gc.collect()  # cyclic garbage is not held
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        stats = node.statistics().chain
        assert (stats.blocks_waiting, stats.blocks_waiting_bytes) == (0, 0)
        assert held < sum(map(len, junk)) // 100  # nothing kept per block


async def test_blocks_far_ahead_of_our_clock_are_ignored_not_held(autojump_clock):
    async with open_node(_config(SMALL)) as node:
        for nonce in range(JUNK):
            slot = NOW_SLOT + SMALL.max_future_slots + 1 + nonce
            junk = _junk_block(nonce, parent=BlockId(sha256(b"%d" % nonce)), slot=slot)
            with pytest.raises(GossipIgnore) as ignored:
                await node.network.host.validate(Topic.BLOCK, encode(junk), _peer(nonce))
            assert ignored.value.reason is Reason.FUTURE_SLOT
        stats = node.statistics().chain
        assert stats.blocks_waiting == 0
        assert stats.blocks_dropped == JUNK


def _signed_vote(key: SecretKey, *, slot: int, head: BlockId) -> Vote:
    unsigned = Vote(
        slot=slot,
        head=head,
        source=Checkpoint(epoch=0, block_id=BlockId(bytes(32))),
        target=Checkpoint(epoch=1, block_id=head),
        validator=key.public_key,
        signature=bytes(64),
    )
    signature = key.sign(unsigned.signing_message(CONSENSUS_PARAMS.chain_id))
    return replace(unsigned, signature=signature)


async def test_vote_flood_keeps_the_waiting_pool_bounded_and_the_honest_vote(autojump_clock):
    stranger = SecretKey.from_entropy(b"s" * 32)
    honest = _signed_vote(KEYS[0], slot=NOW_SLOT, head=BlockId(b"u" * 32))
    junk = [
        encode(_signed_vote(stranger, slot=NOW_SLOT, head=BlockId(sha256(b"%d" % nonce))))
        for nonce in range(JUNK)
    ]
    async with open_node(_config(SMALL)) as node:
        assert await _offer(node, Topic.VOTE, encode(honest), HONEST) is Verdict.IGNORE
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for nonce, data in enumerate(junk):
                await _offer(node, Topic.VOTE, data, _peer(nonce % 4))
                if nonce % 1_000 == 0:
                    assert node.statistics().chain.votes_waiting <= SMALL.pending_votes
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        stats = node.statistics().chain
        assert stats.votes_waiting == 1 + 4 * SMALL.pending_votes_per_peer
        assert stats.votes_dropped == JUNK - 4 * SMALL.pending_votes_per_peer
        # The waiting votes (a few hundred bytes each as objects), nothing per vote offered:
        # neither the slashing detector nor anything else kept the strangers' signatures.
        assert held < 2_000 * (1 + 4 * SMALL.pending_votes_per_peer)


async def test_votes_with_bad_signatures_are_rejected_not_queued(autojump_clock):
    async with open_node(_config(SMALL)) as node:
        for nonce in range(JUNK):
            vote = replace(
                _signed_vote(KEYS[0], slot=NOW_SLOT, head=BlockId(b"u" * 32)),
                head=BlockId(sha256(b"%d" % nonce)),
            )
            assert await _offer(node, Topic.VOTE, encode(vote), _peer(1)) is Verdict.REJECT
        assert node.statistics().chain.votes_waiting == 0


def _equivocation(key: SecretKey) -> VoteEquivocation:
    first = _signed_vote(key, slot=4, head=GENESIS_ID)
    second = _signed_vote(key, slot=5, head=GENESIS_ID)
    return VoteEquivocation(first=first, second=second)


async def test_evidence_against_keys_without_stake_is_ignored_not_pooled(autojump_clock):
    junk = [
        encode_item(_equivocation(SecretKey.from_entropy(sha256(b"%d" % nonce))).to_rlp())
        for nonce in range(JUNK)
    ]
    async with open_node(_config(SMALL)) as node:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for nonce, data in enumerate(junk):
                with pytest.raises(GossipIgnore) as ignored:
                    await node.network.host.validate(Topic.EVIDENCE, data, _peer(nonce))
                assert ignored.value.reason is Reason.NOTHING_TO_SLASH
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert node.statistics().chain.evidence_pooled == 0
        assert held < 200_000  # nothing per piece of evidence (nor in the fork choice)
        data = encode_item(_equivocation(KEYS[1]).to_rlp())
        assert await node.network.host.validate(Topic.EVIDENCE, data, HONEST) is Verdict.ACCEPT
        assert node.statistics().chain.evidence_pooled == 1


def test_signature_cache_holds_at_most_its_named_limit():
    limits = NodeLimits(signature_cache=1_000)
    cache = SignatureCache(CONSENSUS_PARAMS.chain_id, limits.signature_cache)
    wallet = Wallet(KEYS[0], CONSENSUS_PARAMS)
    for nonce in range(JUNK):
        outpoint = OutPoint(txid=TxId(sha256(b"%d" % nonce)), index=0)
        payment = TxOutput(asset=NATIVE, amount=1, address=wallet.address)
        unsigned = Transaction(
            kind=TxKind.TRANSFER, inputs=(TxInput(outpoint=outpoint),), outputs=(payment,)
        )
        tx = wallet.sign(unsigned)
        assert cache(tx, tx.txid)
        assert len(cache) <= limits.signature_cache
    assert len(cache) == limits.signature_cache


async def test_a_vote_older_than_its_head_is_refused_not_held(autojump_clock):
    """A vote whose head is newer than the vote can never become valid: it is not queued for
    a retry (anyone could fill the waiting pool with them; the signature needs no stake)."""
    first, second = _honest_chain(1, 2)
    async with open_node(_config(SMALL)) as node:
        for block in (first, second):
            assert await _offer(node, Topic.BLOCK, encode(block), HONEST) is Verdict.ACCEPT
        for nonce in range(100):
            signer = SecretKey.from_entropy(sha256(b"signer %d" % nonce))
            vote = _signed_vote(signer, slot=1, head=second.block_id)
            assert await _offer(node, Topic.VOTE, encode(vote), _peer(nonce % 4)) is Verdict.IGNORE
        assert node.statistics().chain.votes_waiting == 0
