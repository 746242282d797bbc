"""Vote validation: which signed votes the fork choice and the finality gadget may count.

A vote is ``(slot, head, source, target, validator, signature)`` (layout and signing message in
`p2pchain.ledger.vote`). It is valid when its head is known, its target is the checkpoint of
the vote's own epoch on the head's chain, its source is an earlier checkpoint on that chain, the
validator is in the target epoch's set, and the signature checks out. Checks run cheapest
first; each failure raises `InvalidVote` with its `Reason`.
"""

from __future__ import annotations

from p2pchain.consensus.store import (
    BlockNode,
    Store,
    get_ancestor_at_height,
    get_checkpoint_node,
    get_validator_set,
)
from p2pchain.consensus.types import Slot, compute_epoch_at_slot
from p2pchain.errors import InvalidVote, Reason
from p2pchain.ledger.vote import Vote


def validate_vote(store: Store, vote: Vote, current_slot: Slot) -> int:
    """Check a gossiped vote against the store; return the validator's stake.

    Raises:
        InvalidVote: `FUTURE_VOTE` (slot ahead of `current_slot`, or head newer than the vote),
            `UNKNOWN_VOTE_HEAD`, `CONFLICTS_WITH_FINALIZED` (head pruned, or not descending
            from the finalized block), `STALE_VOTE` (target before the finalized epoch), and
            the reasons of `validate_vote_on_chain`.
    """
    if vote.slot > current_slot:
        raise InvalidVote(Reason.FUTURE_VOTE, f"slot {vote.slot} > current {current_slot}")
    head = store.nodes.get(vote.head)
    if head is None:
        if vote.head in store.pruned:
            raise InvalidVote(Reason.CONFLICTS_WITH_FINALIZED, "head was pruned")
        raise InvalidVote(Reason.UNKNOWN_VOTE_HEAD, vote.head.hex())
    if vote.head not in store.tree:
        raise InvalidVote(Reason.CONFLICTS_WITH_FINALIZED, "head precedes the finalized block")
    if vote.target.epoch < store.finalized_checkpoint.epoch:
        raise InvalidVote(Reason.STALE_VOTE, f"target epoch {vote.target.epoch}")
    return validate_vote_on_chain(store, vote, head)


def validate_vote_on_chain(
    store: Store,
    vote: Vote,
    head: BlockNode,
    *,
    check_signature: bool = True,
    check_head: bool = True,
) -> int:
    """Rules that depend only on the chain of `head` (also used for votes inside blocks).

    `check_head=False` checks the vote's checkpoints against `head`'s chain without taking
    `head` for the vote's own head (a carried vote whose head is on another branch).

    Raises:
        InvalidVote: `FUTURE_VOTE` (head newer than the vote), `BAD_VOTE_TARGET`,
            `BAD_VOTE_SOURCE`, `UNKNOWN_VALIDATOR`, `BAD_VOTE_SIGNATURE`.
    """
    target, source = vote.target, vote.source
    if check_head and head.slot > vote.slot:
        raise InvalidVote(Reason.FUTURE_VOTE, f"head slot {head.slot} > vote slot {vote.slot}")
    if target.epoch != compute_epoch_at_slot(store.params, vote.slot):
        raise InvalidVote(Reason.BAD_VOTE_TARGET, "target epoch is not the vote's epoch")
    if get_checkpoint_node(store, head.block_id, target.epoch).block_id != target.block_id:
        raise InvalidVote(Reason.BAD_VOTE_TARGET, "target is not the head chain's checkpoint")
    if target.epoch == 0:
        if source != target:
            raise InvalidVote(Reason.BAD_VOTE_SOURCE, "epoch-0 votes use genesis as source")
    elif source.epoch >= target.epoch:
        raise InvalidVote(Reason.BAD_VOTE_SOURCE, "source must precede target")
    elif get_checkpoint_node(store, head.block_id, source.epoch).block_id != source.block_id:
        raise InvalidVote(Reason.BAD_VOTE_SOURCE, "source is not on the head's chain")
    stake = get_validator_set(store, head.block_id, target.epoch).stake_of(vote.validator)
    if not stake:
        raise InvalidVote(Reason.UNKNOWN_VALIDATOR, vote.validator.hex())
    if check_signature and not vote.is_signature_valid(store.params.chain_id):
        raise InvalidVote(Reason.BAD_VOTE_SIGNATURE)
    return stake


def validate_included_vote(store: Store, vote: Vote, parent: BlockNode, slot: Slot) -> int:
    """Check a vote carried by a block at `slot` on top of `parent`; return the stake.

    The vote must be older than the block. If its head is on the block's own chain, the vote
    is checked as a gossiped one would be, against its head's chain. Otherwise (a head on
    another branch, known here or not) the vote can only serve finality, so its target and
    source must be checkpoints of the block's own chain: that is how votes cast on a branch
    that lost (during a partition, say) still reach every node's link tallies, including nodes
    that never saw that branch. Either way a block's validity never depends on which side
    branches this node happens to know.

    Raises:
        InvalidVote: `FUTURE_VOTE`, or a reason of `validate_vote_on_chain`.
    """
    if vote.slot >= slot:
        raise InvalidVote(Reason.FUTURE_VOTE, f"vote slot {vote.slot} >= block slot {slot}")
    if is_head_on_chain(store, vote, parent):
        return validate_vote_on_chain(store, vote, store.nodes[vote.head])
    return validate_vote_on_chain(store, vote, parent, check_head=False)


def is_head_on_chain(store: Store, vote: Vote, parent: BlockNode) -> bool:
    """Whether a vote carried by a child of `parent` has its head on that chain: only such a
    vote moves fork-choice weight when the block is imported."""
    head = store.nodes.get(vote.head)
    return head is not None and get_ancestor_at_height(parent, head.height) is head
