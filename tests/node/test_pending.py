"""`PendingMessages`: the waiting pools keep their `NodeLimits` bounds and release in order."""

from hypothesis import given
from hypothesis import strategies as st

from p2pchain.ledger.block import Block
from p2pchain.ledger.crypto import sha256
from p2pchain.ledger.header import BlockHeader
from p2pchain.ledger.types import BlockId, Hash32, PublicKey
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.node.config import NodeLimits
from p2pchain.node.pending import MAX_VOTE_BYTES, PendingMessages
from p2pchain.protocol.connection import PeerId

KNOWN = BlockId(b"k" * 32)
LIMITS = NodeLimits(
    pending_blocks=12,
    pending_block_bytes=4_000,
    pending_blocks_per_peer=4,
    pending_block_bytes_per_peer=1_500,
    pending_votes=10,
    pending_votes_per_peer=3,
)


def _peer(index: int) -> PeerId:
    return PeerId(index.to_bytes(32, "big"))


def _block(nonce: int, *, parent: BlockId = KNOWN, height: int = 1, slot: int = 1) -> Block:
    header = BlockHeader(
        parent=parent,
        height=height,
        slot=slot,
        proposer=PublicKey(sha256(b"%d" % nonce)),
        body_root=Hash32(bytes(32)),
        state_root=Hash32(bytes(32)),
    )
    return Block(header=header, signature=bytes(64))


def _vote(nonce: int) -> Vote:
    return Vote(
        slot=1,
        head=BlockId(sha256(b"%d" % nonce)),
        source=Checkpoint(epoch=0, block_id=KNOWN),
        target=Checkpoint(epoch=1, block_id=KNOWN),
        validator=PublicKey(bytes(32)),
        signature=bytes(64),
    )


@given(senders=st.lists(st.integers(0, 5), max_size=80))
def test_held_blocks_stay_within_the_count_and_byte_bounds(senders: list[int]) -> None:
    pending = PendingMessages(LIMITS)
    for nonce, sender in enumerate(senders):
        pending.hold_block(_block(nonce), source=_peer(sender))
        assert pending.blocks_waiting <= LIMITS.pending_blocks
        assert pending.blocks_waiting_bytes <= LIMITS.pending_block_bytes
    assert pending.blocks_waiting + pending.blocks_dropped == len(senders)


def test_a_peer_over_its_share_loses_its_own_oldest_block() -> None:
    pending = PendingMessages(LIMITS)
    honest = _block(1_000)
    pending.hold_block(honest, source=None)
    flood = [_block(nonce) for nonce in range(LIMITS.pending_blocks_per_peer + 2)]
    for block in flood:
        pending.hold_block(block, source=_peer(1))
    assert pending.take_block(honest.block_id) == honest
    assert pending.take_block(flood[0].block_id) is None
    assert pending.take_block(flood[-1].block_id) == flood[-1]
    assert pending.blocks_dropped == 2


def test_due_blocks_come_parents_first_and_only_once_their_slot_started() -> None:
    pending = PendingMessages(LIMITS)
    late = _block(1, height=2, slot=3)
    high = _block(2, height=3, slot=2)
    low_second = _block(3, height=1, slot=1)
    low_first = _block(4, height=1, slot=2)
    parent_pruned = _block(5, parent=BlockId(b"u" * 32), slot=1)
    for sender, block in enumerate((late, high, low_first, low_second, parent_pruned)):
        pending.hold_block(block, source=_peer(sender))
    due = pending.blocks_due(2, lambda parent: parent == KNOWN)
    assert due == [low_first, low_second, high]
    assert pending.blocks_due(3, lambda parent: parent == KNOWN) == [
        low_first,
        low_second,
        late,
        high,
    ]


def test_blocks_at_or_below_the_finalized_slot_are_dropped() -> None:
    pending = PendingMessages(LIMITS)
    old, new = _block(1, slot=4), _block(2, slot=5)
    pending.hold_block(old, source=None)
    pending.hold_block(new, source=None)
    pending.drop_blocks_through(4)
    assert pending.take_block(old.block_id) is None
    assert pending.take_block(new.block_id) == new


def test_too_early_blocks_count_as_dropped_without_being_held() -> None:
    pending = PendingMessages(LIMITS)
    pending.ignore_too_early()
    assert (pending.blocks_waiting, pending.blocks_dropped) == (0, 1)


@given(senders=st.lists(st.integers(0, 5), max_size=60))
def test_held_votes_stay_within_their_bounds_in_arrival_order(senders: list[int]) -> None:
    pending = PendingMessages(LIMITS)
    for nonce, sender in enumerate(senders):
        pending.hold_vote(_vote(nonce), source=_peer(sender))
        assert pending.votes_waiting <= LIMITS.pending_votes
    held = pending.votes()
    assert len(held) + pending.votes_dropped == len(senders)
    nonce_of = {_vote(n).head: n for n in range(len(senders))}
    order = [nonce_of[vote.head] for _, vote in held]
    assert order == sorted(order)
    for sender in set(senders):
        mine = [n for n in order if senders[n] == sender]
        assert len(mine) <= LIMITS.pending_votes_per_peer


def test_every_vote_fits_the_byte_bound_and_a_taken_vote_is_gone() -> None:
    pending = PendingMessages(LIMITS)
    vote = _vote(1)
    pending.hold_vote(vote, source=None)
    ((key, held),) = pending.votes()
    assert held == vote
    assert len(key) <= MAX_VOTE_BYTES
    pending.take_vote(key)
    assert pending.votes() == []
