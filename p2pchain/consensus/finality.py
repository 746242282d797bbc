"""Casper-FFG bookkeeping: supermajority links, justification and finalization.

A link ``source -> target`` is *supermajority* when the validators that voted for it hold at
least two thirds of the stake of the target epoch's validator set (``3 * voted >= 2 * total``,
integers only). A target becomes justified by a supermajority link from a justified source; a
justified source whose link goes to the very next epoch becomes finalized. Tallies are kept for
every link, so votes may arrive in any order: a link is re-examined whenever its tally grows or
its source becomes justified, which makes the justified set the same fixpoint for any order.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field

from p2pchain.ledger.types import BlockId, Epoch, PublicKey
from p2pchain.ledger.vote import Checkpoint


@dataclass(slots=True, eq=False)
class Link:
    """Votes for one ``source -> target`` link: each validator counted once."""

    total_stake: int
    voters: set[PublicKey] = field(default_factory=set)
    voted_stake: int = 0

    def is_supermajority(self) -> bool:
        """At least 2/3 of the target epoch's stake, in integer arithmetic."""
        return self.total_stake > 0 and 3 * self.voted_stake >= 2 * self.total_stake


@dataclass(slots=True, eq=False)
class FinalityState:
    """Every known link tally plus the justified checkpoints they imply."""

    justified: set[Checkpoint]
    finalized: set[Checkpoint]
    links: dict[tuple[Checkpoint, Checkpoint], Link] = field(default_factory=dict)
    links_from: dict[Checkpoint, set[Checkpoint]] = field(default_factory=dict)

    @classmethod
    def at_genesis(cls, genesis: Checkpoint) -> FinalityState:
        return cls(justified={genesis}, finalized={genesis})


def process_link_vote(
    state: FinalityState,
    source: Checkpoint,
    target: Checkpoint,
    validator: PublicKey,
    stake: int,
    total_stake: int,
) -> list[Checkpoint]:
    """Count one validator's vote for ``source -> target``; return checkpoints it finalized.

    A validator is counted once per link however many times it votes for it. The returned list
    holds every checkpoint that first met the finalization rule because of this vote (cascades
    included), in ascending order; deciding which of them the store adopts is up to it.
    """
    if source == target:
        return []
    link = state.links.get((source, target))
    if link is None:
        link = Link(total_stake=total_stake)
        state.links[(source, target)] = link
        state.links_from.setdefault(source, set()).add(target)
    if validator in link.voters:
        return []
    link.voters.add(validator)
    link.voted_stake += stake
    return _cascade(state, [(source, target)])


def _cascade(state: FinalityState, work: list[tuple[Checkpoint, Checkpoint]]) -> list[Checkpoint]:
    finalized: set[Checkpoint] = set()
    while work:
        source, target = work.pop()
        link = state.links[(source, target)]
        if source not in state.justified or not link.is_supermajority():
            continue
        if target.epoch == source.epoch + 1 and source not in state.finalized:
            state.finalized.add(source)
            finalized.add(source)
        if target not in state.justified:
            state.justified.add(target)
            work.extend((target, nxt) for nxt in sorted(state.links_from.get(target, ())))
    return sorted(finalized)


def prune_finality(state: FinalityState, known: Container[BlockId], finalized_epoch: Epoch) -> None:
    """Forget links and justified checkpoints whose block is no longer `known`, and links whose
    target precedes `finalized_epoch`.

    Pruned blocks conflict with the finalized checkpoint, so links touching them can only
    justify checkpoints that will never be adopted. A vote whose target precedes the finalized
    epoch is never counted (stale), so those links cannot change any more; without this their
    tallies (one entry per voter) would pile up epoch after epoch. Justified checkpoints of
    earlier epochs stay: a new link may still start from one.
    """
    state.justified = {cp for cp in state.justified if cp.block_id in known}
    state.finalized = {cp for cp in state.finalized if cp.block_id in known}
    for source, target in [
        key
        for key in state.links
        if not (key[0].block_id in known and key[1].block_id in known)
        or key[1].epoch < finalized_epoch
    ]:
        del state.links[(source, target)]
        targets = state.links_from.get(source)
        if targets is not None:
            targets.discard(target)
            if not targets:
                del state.links_from[source]
