"""Slashing: detection of equivocation, evidence in blocks, stake burnt, weight removed."""

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.consensus import (
    SlashingDetector,
    build_block,
    get_checkpoint,
    get_head,
    get_proposer,
    get_validator_set,
    get_weight,
    make_vote,
    on_block,
    on_evidence,
)
from p2pchain.errors import InvalidTransaction, Reason
from p2pchain.ledger.evidence import VoteEquivocation, is_double_vote, is_surround_vote
from p2pchain.ledger.tx import SlashPayload
from p2pchain.ledger.vote import Checkpoint
from p2pchain.params import COIN
from p2pchain.testing.consensus import Simulation, adversarial_votes, sign_vote_data

STAKES = [COIN, 2 * COIN, 3 * COIN, 4 * COIN]


def test_double_proposal_is_detected():
    sim = Simulation.create(STAKES)
    sim.run_slot()
    store = sim.store
    head = get_head(store)
    slot = 2
    proposer = sim.keys[get_proposer(store, head, slot)]
    first = build_block(store, head, slot, proposer)
    vote = make_vote(store, sim.keys[sorted(sim.keys)[0]], 1)
    second = build_block(store, head, slot, proposer, votes=[vote])
    assert first.block_id != second.block_id
    detector = SlashingDetector(sim.params.chain_id)
    assert detector.observe_block(first) == []
    assert detector.observe_block(first) == []
    (evidence,) = detector.observe_block(second)
    evidence.validate(sim.params.chain_id)
    assert detector.offenders == {proposer.public_key}
    forged = replace(second, signature=bytes(64))
    assert SlashingDetector(sim.params.chain_id).observe_header(forged.signed_header) == []


@pytest.mark.parametrize(("forget_before_slot", "caught"), [(2, True), (3, False)])
def test_the_window_keeps_headers_from_its_first_slot_on(forget_before_slot, caught):
    sim = Simulation.create(STAKES)
    sim.run_slot()
    store = sim.store
    head = get_head(store)
    proposer = sim.keys[get_proposer(store, head, 2)]
    first = build_block(store, head, 2, proposer)
    second = build_block(store, head, 2, proposer, votes=[make_vote(store, proposer, 1)])
    detector = SlashingDetector(sim.params.chain_id)
    assert detector.observe_block(first) == []
    detector.forget_before(0, forget_before_slot)
    assert bool(detector.observe_block(second)) is caught


@given(st.data())
def test_detector_reports_exactly_the_slashable_vote_pairs(data):
    sim = Simulation.create(STAKES)
    for _ in range(data.draw(st.integers(4, 12))):
        sim.run_slot()
    key = sim.keys[sorted(sim.keys)[0]]
    votes = []
    for _ in range(2):
        oldest = sim.store.nodes[sim.store.tree.root].slot
        slot = data.draw(st.integers(oldest, sim.slot))
        votes += data.draw(adversarial_votes(sim, [key], slot))
    detector = SlashingDetector(sim.params.chain_id)
    found = [e for vote in votes for e in detector.observe_vote(vote)]
    slashable = any(is_double_vote(a, b) or is_surround_vote(a, b) for a in votes for b in votes)
    assert bool(found) == slashable
    for evidence in found:
        evidence.validate(sim.params.chain_id)


def link_voter(epochs):
    """A simulation run for `epochs`, and a function signing one validator's vote for the link
    between two of its head chain's checkpoints."""
    sim = Simulation.create(STAKES)
    sim.run_epochs(epochs)
    store = sim.store
    key = sim.keys[sorted(sim.keys)[0]]
    head = get_head(store)

    def vote(source_epoch, target_epoch):
        return sign_vote_data(
            store,
            key,
            slot=target_epoch * sim.params.slots_per_epoch,
            head=get_checkpoint(store, head, target_epoch).block_id,
            source=get_checkpoint(store, head, source_epoch),
            target=get_checkpoint(store, head, target_epoch),
        )

    return sim, vote


def test_surround_vote_is_detected():
    sim, vote = link_voter(4)
    detector = SlashingDetector(sim.params.chain_id)
    assert detector.observe_vote(vote(1, 2)) == []
    assert detector.observe_vote(vote(2, 3)) == []  # consecutive links never surround
    (surround,) = detector.observe_vote(vote(0, 4))
    assert isinstance(surround, VoteEquivocation)
    assert is_surround_vote(surround.first, surround.second)
    surround.validate(sim.params.chain_id)
    (double,) = detector.observe_vote(vote(0, 2))
    assert is_double_vote(double.first, double.second)


def test_a_vote_that_is_both_a_double_and_a_surround_vote_yields_both_offences():
    sim, vote = link_voter(6)
    detector = SlashingDetector(sim.params.chain_id)
    first, inner = vote(2, 5), vote(2, 3)
    assert detector.observe_vote(first) == []
    assert detector.observe_vote(inner) == []
    both = vote(1, 5)  # a second vote for epoch 5, and it surrounds 2 -> 3
    found = detector.observe_vote(both)
    assert {(e.first, e.second) for e in found} == {(first, both), (inner, both)}


def equivocation(sim, key):
    store = sim.store
    first = make_vote(store, key, sim.slot)
    other_head = store.nodes[first.head].parent.block_id
    second = make_vote(store, key, sim.slot, head=other_head)
    return VoteEquivocation(first=first, second=second)


def test_evidence_removes_fork_choice_weight():
    sim = Simulation.create(STAKES)
    sim.run_epochs(2)
    store = sim.store
    offender = sim.keys[sorted(sim.keys)[-1]]
    weight = get_weight(store, store.tree.root)
    latest = store.latest_votes[offender.public_key]
    assert latest.weight > 0
    bad = equivocation(sim, offender)
    with pytest.raises(InvalidTransaction) as info:
        on_evidence(store, replace(bad, second=bad.first))
    assert info.value.reason is Reason.BAD_EVIDENCE
    on_evidence(store, equivocation(sim, offender))
    assert get_weight(store, store.tree.root) == weight - latest.weight
    assert offender.public_key in store.slashed
    assert get_head(store) in store.tree


def test_slash_transaction_burns_stake_and_shrinks_later_validator_sets():
    sim = Simulation.create(STAKES)
    sim.run_epochs(2)
    store = sim.store
    offender = sim.keys[sorted(sim.keys)[0]]
    evidence = equivocation(sim, offender)
    slot = sim.slot + 1
    parent = get_head(store)
    proposer = get_proposer(store, parent, slot)
    if proposer == offender.public_key:
        slot += 1
        proposer = get_proposer(store, parent, slot)
    block = build_block(store, parent, slot, sim.keys[proposer], evidence=[evidence])
    assert isinstance(block.transactions[1].payload, SlashPayload)
    on_block(store, block, slot)
    assert offender.public_key in store.slashed
    assert offender.public_key not in store.view.bonded_stake()
    # The first set without the offender is the one whose epoch-2 checkpoint is this block.
    spe = sim.params.slots_per_epoch
    first = -(-slot // spe) + sim.params.validator_set_lag_epochs
    assert offender.public_key in get_validator_set(store, block.block_id, first - 1)
    assert offender.public_key not in get_validator_set(store, block.block_id, first)
    # The same evidence cannot burn twice: the builder drops it (nothing left to slash).
    again = build_block(
        store,
        block.block_id,
        slot + 1,
        sim.keys[get_proposer(store, block.block_id, slot + 1)],
        evidence=[evidence],
    )
    assert len(again.transactions) == 1


def test_the_detector_remembers_only_the_window_it_is_told_to_keep():
    """10^4 honest votes over 2,500 epochs: with `forget_before` called each epoch to keep 64
    epochs (NodeLimits.slashing_window_epochs), the detector never holds more than 64 epochs'
    worth, and a double vote inside the window is still caught."""
    sim = Simulation.create(STAKES)
    store = sim.store
    genesis = Checkpoint(epoch=0, block_id=store.genesis_id)
    window = 64
    detector = SlashingDetector(sim.params.chain_id)
    keys = [sim.keys[key] for key in sorted(sim.keys)]
    most = 0
    for epoch in range(1, 2_501):
        target = Checkpoint(epoch=epoch, block_id=store.genesis_id)
        slot = epoch * sim.params.slots_per_epoch
        for key in keys:
            vote = sign_vote_data(
                store, key, slot=slot, head=store.genesis_id, source=genesis, target=target
            )
            assert detector.observe_vote(vote) == []
        detector.forget_before(epoch - window + 1, 0)
        most = max(most, len(detector))
    assert most == window * len(keys)
    double = sign_vote_data(
        store,
        keys[0],
        slot=2_500 * sim.params.slots_per_epoch + 1,
        head=sim.store.genesis_id,
        source=Checkpoint(epoch=1, block_id=store.genesis_id),
        target=Checkpoint(epoch=2_500, block_id=store.genesis_id),
    )
    assert len(detector.observe_vote(double)) == 1
