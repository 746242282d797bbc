"""The Casper-FFG bookkeeping in `p2pchain.consensus.finality` against a naive model.

The model recomputes everything from the list of votes counted so far: each link's tally (a
validator counted once, with the stake and the total of the first vote seen), the justified
set as a fixpoint from genesis, and the finalized set as every justified source with a
supermajority link to the very next epoch. The property feeds the same votes to both in a
random order and checks they agree after every vote, including what each vote reports as
newly finalized.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from p2pchain.consensus.finality import FinalityState, Link, process_link_vote, prune_finality
from p2pchain.ledger.types import BlockId, PublicKey
from p2pchain.ledger.vote import Checkpoint


def _checkpoint(epoch: int, branch: int) -> Checkpoint:
    return Checkpoint(epoch=epoch, block_id=BlockId(bytes([branch]) * 32))


GENESIS = _checkpoint(0, 0)
VALIDATORS = [PublicKey(bytes([index + 1]) * 32) for index in range(4)]

checkpoints = st.builds(_checkpoint, st.integers(0, 4), st.integers(0, 1))


@dataclass(frozen=True)
class LinkVote:
    source: Checkpoint
    target: Checkpoint
    validator: PublicKey
    stake: int
    total: int


link_votes = st.builds(
    LinkVote,
    source=checkpoints,
    target=checkpoints,
    validator=st.sampled_from(VALIDATORS),
    stake=st.integers(0, 10),
    total=st.integers(0, 12),
)


@dataclass
class NaiveFinality:
    """Tallies, justification and finalization recomputed from scratch on every query."""

    votes: list[LinkVote] = field(default_factory=list)

    def _tallies(self) -> dict[tuple[Checkpoint, Checkpoint], tuple[int, int]]:
        totals: dict[tuple[Checkpoint, Checkpoint], int] = {}
        stakes: dict[tuple[Checkpoint, Checkpoint], dict[PublicKey, int]] = {}
        for vote in self.votes:
            if vote.source == vote.target:
                continue
            key = (vote.source, vote.target)
            totals.setdefault(key, vote.total)
            stakes.setdefault(key, {}).setdefault(vote.validator, vote.stake)
        return {key: (sum(stakes[key].values()), totals[key]) for key in totals}

    def _supermajority_links(self) -> set[tuple[Checkpoint, Checkpoint]]:
        return {
            key
            for key, (voted, total) in self._tallies().items()
            if total > 0 and voted * 3 >= total * 2
        }

    def justified(self) -> set[Checkpoint]:
        links = self._supermajority_links()
        justified = {GENESIS}
        while grown := {target for source, target in links if source in justified} - justified:
            justified |= grown
        return justified

    def finalized(self) -> set[Checkpoint]:
        justified = self.justified()
        return {GENESIS} | {
            source
            for source, target in self._supermajority_links()
            if source in justified and target.epoch == source.epoch + 1
        }


@given(st.lists(link_votes, max_size=40))
def test_justified_and_finalized_sets_match_the_naive_fixpoint(votes: list[LinkVote]) -> None:
    state = FinalityState.at_genesis(GENESIS)
    model = NaiveFinality()
    for vote in votes:
        finalized_before = model.finalized()
        reported = process_link_vote(
            state, vote.source, vote.target, vote.validator, vote.stake, vote.total
        )
        model.votes.append(vote)
        assert state.justified == model.justified()
        assert state.finalized == model.finalized()
        assert reported == sorted(model.finalized() - finalized_before)


def _vote_all(state: FinalityState, source: Checkpoint, target: Checkpoint) -> list[Checkpoint]:
    finalized: list[Checkpoint] = []
    for validator in VALIDATORS:
        finalized += process_link_vote(state, source, target, validator, 1, len(VALIDATORS))
    return finalized


def test_a_supermajority_link_that_skips_an_epoch_justifies_but_does_not_finalize() -> None:
    state = FinalityState.at_genesis(GENESIS)
    skip = _checkpoint(2, 1)
    assert _vote_all(state, GENESIS, skip) == []
    assert skip in state.justified
    assert state.finalized == {GENESIS}
    following = _checkpoint(3, 1)
    assert _vote_all(state, skip, following) == [skip]
    assert state.finalized == {GENESIS, skip}


def test_a_link_to_an_earlier_epoch_never_finalizes_its_source() -> None:
    state = FinalityState.at_genesis(GENESIS)
    later = _checkpoint(2, 1)
    earlier = _checkpoint(1, 1)
    _vote_all(state, GENESIS, later)
    assert _vote_all(state, later, earlier) == []
    assert earlier in state.justified
    assert later not in state.finalized


def test_a_link_is_supermajority_from_exactly_two_thirds_and_never_with_no_stake() -> None:
    assert Link(total_stake=3, voted_stake=2).is_supermajority()
    assert not Link(total_stake=300, voted_stake=199).is_supermajority()
    assert not Link(total_stake=0, voted_stake=0).is_supermajority()
    assert not Link(total_stake=0, voted_stake=5).is_supermajority()


def test_votes_that_justify_a_source_late_cascade_to_every_finalization_they_complete() -> None:
    state = FinalityState.at_genesis(GENESIS)
    one, two, three = (_checkpoint(epoch, 1) for epoch in (1, 2, 3))
    _vote_all(state, two, three)
    _vote_all(state, one, two)
    assert state.justified == {GENESIS}
    assert _vote_all(state, GENESIS, one) == [one, two]
    assert state.justified == {GENESIS, one, two, three}


def _links_from(links: set[tuple[Checkpoint, Checkpoint]]) -> dict[Checkpoint, set[Checkpoint]]:
    grouped: dict[Checkpoint, set[Checkpoint]] = {}
    for source, target in links:
        grouped.setdefault(source, set()).add(target)
    return grouped


@given(
    st.lists(link_votes, max_size=30),
    st.sets(st.integers(0, 1)),
    st.integers(0, 5),
)
def test_pruning_keeps_exactly_the_links_between_known_blocks_that_can_still_change(
    votes: list[LinkVote], known_branches: set[int], finalized_epoch: int
) -> None:
    state = FinalityState.at_genesis(GENESIS)
    for vote in votes:
        process_link_vote(state, vote.source, vote.target, vote.validator, vote.stake, vote.total)
    justified, finalized, links = set(state.justified), set(state.finalized), set(state.links)
    known = {BlockId(bytes([branch]) * 32) for branch in known_branches}
    prune_finality(state, known, finalized_epoch)
    kept = {
        (source, target)
        for source, target in links
        if source.block_id in known and target.block_id in known and target.epoch >= finalized_epoch
    }
    assert set(state.links) == kept
    assert state.links_from == _links_from(kept)
    assert state.justified == {cp for cp in justified if cp.block_id in known}
    assert state.finalized == {cp for cp in finalized if cp.block_id in known}


def test_a_pruned_link_starts_a_fresh_tally() -> None:
    state = FinalityState.at_genesis(GENESIS)
    target = _checkpoint(1, 1)
    for validator in VALIDATORS[:2]:
        process_link_vote(state, GENESIS, target, validator, 1, 4)
    prune_finality(state, {GENESIS.block_id}, 0)
    process_link_vote(state, GENESIS, target, VALIDATORS[2], 1, 4)
    assert state.links[(GENESIS, target)].voted_stake == 1
    assert target not in state.justified
