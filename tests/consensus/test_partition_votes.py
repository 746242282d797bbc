"""Liveness after a partition at the rule level: votes cast on a branch that lost must still
reach the link tallies of nodes that never saw that branch.

Two stores stand for the two sides of a split in the middle of an epoch: side A holds 60 % of
the stake, side B 40 %, so neither justifies alone. When the split heals, B learns A's branch
and A's votes (A's branch is heavier, so everyone builds on it), but A never learns B's
branch: B's nodes have moved to A's branch before anyone asks for theirs. B then counts every
vote of that epoch and justifies its checkpoint; A does not. Unless B's votes reach A inside
blocks of A's branch, the two sides vote from different sources forever and no link gathers
two thirds again: finality stops for good although every validator is online and honest.
"""

from dataclasses import dataclass, field

from p2pchain.consensus import build_block, get_head, make_vote, on_block, on_tick, on_vote
from p2pchain.consensus.store import Store, get_forkchoice_store, get_proposer
from p2pchain.consensus.validators import get_duties
from p2pchain.errors import InvalidBlock, InvalidVote
from p2pchain.ledger.block import Block
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.types import PublicKey
from p2pchain.ledger.vote import Vote
from p2pchain.params import COIN
from p2pchain.testing.consensus import CONSENSUS_PARAMS, make_genesis, validator_keys

PARAMS = CONSENSUS_PARAMS
EPOCH = PARAMS.slots_per_epoch


@dataclass
class Side:
    """The nodes of one side of the split: they share one view (one store) and one vote pool."""

    store: Store
    keys: dict[PublicKey, SecretKey]
    pool: list[Vote] = field(default_factory=list)


def _deliver(store: Store, message: Block | Vote, slot: int) -> None:
    try:
        if isinstance(message, Block):
            on_block(store, message, slot)
        else:
            on_vote(store, message, slot)
    except (InvalidBlock, InvalidVote):
        pass  # a duplicate, or a message this side cannot place


def _slot(sides: list[Side], slot: int, reach: list[list[Side]]) -> None:
    """One slot: the scheduled proposer's side builds on its head, its validators on duty
    vote; each side's messages go to the sides in `reach[i]` (itself included)."""
    for side in sides:
        on_tick(side.store, slot)
    for index, side in enumerate(sides):
        head = get_head(side.store)
        proposer = get_proposer(side.store, head, slot)
        if proposer in side.keys:
            block = build_block(side.store, head, slot, side.keys[proposer], votes=side.pool)
            included = {vote.signature for vote in block.votes}
            side.pool = [vote for vote in side.pool if vote.signature not in included]
            for other in reach[index]:
                _deliver(other.store, block, slot)
        for key in get_duties(PARAMS, side.keys, slot):
            vote = make_vote(side.store, side.keys[key], slot)
            side.pool.append(vote)
            for other in reach[index]:
                _deliver(other.store, vote, slot)


def test_votes_of_the_losing_side_reach_the_winning_side_and_finality_resumes():
    keys = validator_keys(4)
    genesis = make_genesis(keys, [3 * COIN, 3 * COIN, 2 * COIN, 2 * COIN], PARAMS)
    a = Side(get_forkchoice_store(PARAMS, genesis), {k.public_key: k for k in keys[:2]})
    b = Side(get_forkchoice_store(PARAMS, genesis), {k.public_key: k for k in keys[2:]})
    sides = [a, b]
    together = [[a, b], [a, b]]
    slot = 0
    while slot < 4 * EPOCH:
        slot += 1
        _slot(sides, slot, together)
    assert a.store.finalized_checkpoint == b.store.finalized_checkpoint
    before = a.store.finalized_checkpoint.epoch
    assert before >= 2

    split_at = slot + 2  # mid-epoch: both sides share this epoch's checkpoint
    while slot < split_at + 2 * EPOCH:
        slot += 1
        _slot(sides, slot, together if slot < split_at else [[a], [b]])
    assert a.store.justified_checkpoint.epoch < slot // EPOCH - 1  # neither side justifies

    b_branch = _blocks_of(b, a)
    for block in _blocks_of(a, b):  # the heal: B learns A's branch, never the reverse
        _deliver(b.store, block, slot)
    assert get_head(b.store) == get_head(a.store)
    # A node puts back the votes of blocks that left its chain (`ChainService`).
    b.pool.extend(vote for block in b_branch for vote in block.votes)

    for _ in range(3 * EPOCH):
        slot += 1
        _slot(sides, slot, together)
    assert a.store.justified_checkpoint == b.store.justified_checkpoint
    assert a.store.finalized_checkpoint.epoch > before + 1
    assert a.store.finalized_checkpoint == b.store.finalized_checkpoint


def _blocks_of(side: Side, other: Side) -> list[Block]:
    """The blocks `side` has and `other` lacks, parents first."""
    store = side.store
    missing = [store.nodes[i] for i in store.tree.block_ids() if i not in other.store.nodes]
    blocks = [node.block for node in sorted(missing, key=lambda n: n.height)]
    assert None not in blocks
    return [block for block in blocks if block is not None]
