"""Finality: liveness of an honest synchronous run, safety against a < 1/3 adversary,
accountable safety when finality does conflict."""

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from p2pchain.consensus import (
    SlashingDetector,
    build_block,
    get_checkpoint,
    get_forkchoice_store,
    get_head,
    get_proposer,
    make_vote,
    on_block,
    on_vote,
)
from p2pchain.consensus.finality import Link
from p2pchain.consensus.store import is_ancestor
from p2pchain.params import COIN
from p2pchain.testing.consensus import (
    Simulation,
    adversarial_blocks,
    adversarial_votes,
    feed_in_order,
    sign_vote_data,
)

STAKES = [COIN, 2 * COIN, 3 * COIN, 4 * COIN]


@pytest.mark.parametrize("epochs", [3, 6])
def test_honest_run_finalizes_every_epoch_after_the_first_two(epochs):
    sim = Simulation.create(STAKES)
    sim.run_epochs(epochs)
    finalized_epochs = [checkpoint.epoch for checkpoint in sim.finalized_history]
    assert finalized_epochs == list(range(epochs - 1))
    head = get_head(sim.store)
    for epoch in range(epochs - 1):
        assert get_checkpoint(sim.store, head, epoch) in sim.finalized_history
    assert sim.store.justified_checkpoint.epoch == epochs - 1


def test_finality_needs_two_thirds_of_the_stake():
    minority = Simulation.create(STAKES)
    minority.offline = {minority.honest[0]}  # 1 of 10
    minority.run_epochs(5)
    assert minority.store.finalized_checkpoint.epoch == 3
    exactly = Simulation.create([COIN, COIN, COIN])
    exactly.offline = {exactly.honest[0]}  # 2/3 online: 3 * 2 >= 2 * 3
    exactly.run_epochs(5)
    assert exactly.store.finalized_checkpoint.epoch == 3
    below = Simulation.create([COIN, COIN, COIN, COIN])
    below.offline = set(below.honest[:2])  # 1/2 online
    below.run_epochs(5)
    assert below.store.finalized_checkpoint.epoch == 0
    assert below.store.justified_checkpoint.epoch == 0


def descends(store, low, high):
    """Checkpoint `high` has `low` on its chain."""
    return get_checkpoint(store, high.block_id, low.epoch) == low


class AdversarialRun(RuleBasedStateMachine):
    """Honest validators hold 7/10 of the stake; the other two send arbitrary valid messages."""

    def __init__(self):
        super().__init__()
        self.sim = Simulation.create(STAKES)
        stakes = self.sim.store.nodes[self.sim.store.genesis_id].validator_set
        self.sim.hostile = set(sorted(self.sim.keys, key=stakes.stake_of)[:2])
        self.finalized = [self.sim.store.finalized_checkpoint]

    @rule()
    def honest_slot(self):
        self.sim.run_slot()

    @rule(data=st.data())
    def hostile_votes(self, data):
        keys = [self.sim.keys[pk] for pk in sorted(self.sim.hostile)]
        for vote in data.draw(adversarial_votes(self.sim, keys, self.sim.slot)):
            self.sim.deliver(vote)

    @rule(data=st.data())
    def hostile_blocks(self, data):
        slot = self.sim.slot + 1
        for block in data.draw(adversarial_blocks(self.sim, slot)):
            if block.block_id not in self.sim.store.nodes:
                on_block(self.sim.store, block, slot)
                self.sim.messages.append(block)

    @invariant()
    def finality_only_moves_forward(self):
        store = self.sim.store
        current = store.finalized_checkpoint
        previous = self.finalized[-1]
        assert current.epoch >= previous.epoch
        assert descends(store, previous, current)
        if current != previous:
            self.finalized.append(current)
        assert store.conflicting_finalized == []

    @invariant()
    def head_descends_from_finalized(self):
        store = self.sim.store
        head = get_head(store)
        assert is_ancestor(store, store.finalized_checkpoint.block_id, head)
        assert descends(store, store.finalized_checkpoint, store.justified_checkpoint)

    def teardown(self):
        """Another node that saw the same messages in another order agrees on finality."""
        sim = self.sim
        event(f"finalized epoch {sim.store.finalized_checkpoint.epoch}")
        other = feed_in_order(sim.params, sim.genesis, reversed(sim.messages), sim.slot + 1)
        ours, theirs = sim.store.finalized_checkpoint, other.finalized_checkpoint
        low, high = sorted([ours, theirs], key=lambda cp: cp.epoch)
        assert descends(sim.store if high == ours else other, low, high)


AdversarialRun.TestCase.settings = settings(stateful_step_count=60)
TestAdversarialRun = AdversarialRun.TestCase


@given(st.data())
def test_conflicting_finality_exposes_a_third_of_the_stake(data):
    """Two partitions each finalize their own branch; the union of their votes convicts
    validators holding at least 1/3 of the stake."""
    stakes = data.draw(st.lists(st.integers(1, 5), min_size=3, max_size=5)).copy()
    sim = Simulation.create([stake * COIN for stake in stakes])
    keys = sorted(sim.keys)
    total = sum(stakes) * COIN
    validators = sim.store.nodes[sim.store.genesis_id].validator_set

    def quorum(label):
        chosen = data.draw(st.lists(st.sampled_from(keys), unique=True, min_size=1), label=label)
        return chosen if 3 * sum(map(validators.stake_of, chosen)) >= 2 * total else list(keys)

    sides = [quorum("left"), quorum("right")]
    spe = sim.params.slots_per_epoch
    partitions = [get_forkchoice_store(sim.params, sim.genesis) for _ in sides]
    all_votes = []
    # Each partition builds its own branch (blocks in different slots, so different ids), and
    # its quorum votes source -> target along it for epochs 1..3.
    for offset, side, branch in zip((1, 2), sides, partitions, strict=True):
        parent = branch.genesis_id
        for epoch in range(1, 4):
            slot = (epoch - 1) * spe + offset
            proposer = get_proposer(branch, parent, slot)
            block = build_block(branch, parent, slot, sim.keys[proposer])
            on_block(branch, block, slot)
            parent = block.block_id
            for pk in side:
                vote = sign_vote_data(
                    branch,
                    sim.keys[pk],
                    slot=epoch * spe,
                    head=parent,
                    source=get_checkpoint(branch, parent, epoch - 1),
                    target=get_checkpoint(branch, parent, epoch),
                )
                on_vote(branch, vote, epoch * spe)
                all_votes.append(vote)
    left, right = (branch.finalized_checkpoint for branch in partitions)
    assert (left.epoch, right.epoch) == (2, 2)
    assert left.block_id != right.block_id
    detector = SlashingDetector(sim.params.chain_id)
    for vote in all_votes:
        detector.observe_vote(vote)
    for evidence in detector.evidence:
        evidence.validate(sim.params.chain_id)
    convicted = sum(validators.stake_of(pk) for pk in detector.offenders)
    assert 3 * convicted >= total
    assert detector.offenders == set(sides[0]) & set(sides[1])


def test_equivocating_minority_neither_stops_finality_nor_escapes_detection():
    sim = Simulation.create(STAKES)
    stakes = sim.store.nodes[sim.store.genesis_id].validator_set
    smallest = min(sim.keys, key=stakes.stake_of)
    sim.hostile = {smallest}
    detector = SlashingDetector(sim.params.chain_id)

    def equivocate(sim, slot):
        head = sim.store.nodes[get_head(sim.store)]
        stale = head.parent.block_id if head.parent is not None else head.block_id
        votes = [make_vote(sim.store, sim.keys[smallest], slot, head=stale)]
        for vote in votes:
            detector.observe_vote(vote)
        return votes

    sim.adversary = equivocate
    sim.run_epochs(5)
    assert sim.store.finalized_checkpoint.epoch == 3
    assert detector.offenders == {smallest}


@pytest.mark.parametrize(
    ("total", "voted", "supermajority"),
    [(0, 0, False), (1, 0, False), (1, 1, True), (3, 2, True), (3, 1, False), (100, 66, False)],
)
def test_a_link_is_a_supermajority_at_two_thirds_of_any_positive_stake(total, voted, supermajority):
    assert Link(total_stake=total, voted_stake=voted).is_supermajority() is supermajority
