"""Vote validation: every rejection reason, and rejected votes leave the store unchanged."""

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.consensus import get_head, get_weight, make_vote, on_vote
from p2pchain.errors import InvalidVote, Reason
from p2pchain.ledger.types import BlockId
from p2pchain.ledger.vote import Checkpoint
from p2pchain.params import COIN
from p2pchain.testing.consensus import Simulation, sign_vote_data, store_state, validator_keys

STAKES = [COIN, 2 * COIN, 3 * COIN, 4 * COIN]


@pytest.fixture(scope="module")
def finalized_sim() -> Simulation:
    sim = Simulation.create(STAKES)
    sim.run_epochs(4)
    assert sim.store.finalized_checkpoint.epoch >= 2
    return sim


def signed(sim, key, vote):
    return sign_vote_data(
        sim.store, key, slot=vote.slot, head=vote.head, source=vote.source, target=vote.target
    )


def reject(sim, vote, reason, current_slot=None):
    before = store_state(sim.store)
    with pytest.raises(InvalidVote) as info:
        on_vote(sim.store, vote, sim.slot if current_slot is None else current_slot)
    assert info.value.reason is reason
    assert store_state(sim.store) == before


def honest(sim, index=0, slot=None):
    key = sim.keys[sorted(sim.keys)[index]]
    return key, make_vote(sim.store, key, sim.slot if slot is None else slot)


def test_honest_vote_is_counted(finalized_sim):
    sim = finalized_sim
    _, vote = honest(sim)
    before = get_weight(sim.store, vote.head)
    on_vote(sim.store, vote, sim.slot)
    assert get_weight(sim.store, vote.head) >= before
    assert sim.store.latest_votes[vote.validator].head == vote.head


def test_future_vote(finalized_sim):
    _, vote = honest(finalized_sim, slot=finalized_sim.slot + 1)
    reject(finalized_sim, vote, Reason.FUTURE_VOTE)


def test_head_newer_than_vote(finalized_sim):
    sim = finalized_sim
    key, vote = honest(sim)
    older = signed(sim, key, replace(vote, slot=sim.store.nodes[vote.head].slot - 1))
    reject(sim, older, Reason.FUTURE_VOTE)


def test_unknown_head(finalized_sim):
    key, vote = honest(finalized_sim)
    reject(
        finalized_sim,
        signed(finalized_sim, key, replace(vote, head=BlockId(bytes(32)))),
        Reason.UNKNOWN_VOTE_HEAD,
    )


def test_head_before_finalized(finalized_sim):
    sim = finalized_sim
    key, vote = honest(sim)
    old = sim.store.nodes[sim.store.finalized_checkpoint.block_id].parent
    reject(sim, signed(sim, key, replace(vote, head=old.block_id)), Reason.CONFLICTS_WITH_FINALIZED)


def test_stale_target(finalized_sim):
    sim = finalized_sim
    key, vote = honest(sim)
    genesis = Checkpoint(epoch=0, block_id=sim.store.genesis_id)
    reject(sim, signed(sim, key, replace(vote, target=genesis)), Reason.STALE_VOTE)


def test_target_of_another_epoch(finalized_sim):
    sim = finalized_sim
    key, vote = honest(sim)
    target = replace(vote.target, epoch=vote.target.epoch + 1)
    reject(sim, signed(sim, key, replace(vote, target=target)), Reason.BAD_VOTE_TARGET)


def test_target_not_on_head_chain(finalized_sim):
    sim = finalized_sim
    key, vote = honest(sim)
    target = replace(vote.target, block_id=vote.head)
    if target == vote.target:
        target = replace(target, block_id=sim.store.finalized_checkpoint.block_id)
    reject(sim, signed(sim, key, replace(vote, target=target)), Reason.BAD_VOTE_TARGET)


def test_source_not_before_target(finalized_sim):
    sim = finalized_sim
    key, vote = honest(sim)
    reject(sim, signed(sim, key, replace(vote, source=vote.target)), Reason.BAD_VOTE_SOURCE)


def test_source_not_on_head_chain(finalized_sim):
    sim = finalized_sim
    key, vote = honest(sim)
    source = replace(vote.source, block_id=BlockId(bytes(32)))
    reject(sim, signed(sim, key, replace(vote, source=source)), Reason.BAD_VOTE_SOURCE)


def test_unknown_validator(finalized_sim):
    sim = finalized_sim
    _, vote = honest(sim)
    (stranger,) = validator_keys(1, label=b"stranger")
    reject(sim, signed(sim, stranger, vote), Reason.UNKNOWN_VALIDATOR)


def test_bad_signature(finalized_sim):
    _, vote = honest(finalized_sim)
    reject(finalized_sim, replace(vote, signature=bytes(64)), Reason.BAD_VOTE_SIGNATURE)


@given(
    st.sampled_from(["slot", "head", "target", "source", "validator", "signature"]),
    st.integers(min_value=1, max_value=9),
    st.integers(min_value=0, max_value=3),
)
def test_rejected_vote_leaves_store_unchanged(field, slots, index):
    sim = Simulation.create(STAKES)
    for _ in range(slots):
        sim.run_slot()
    key, vote = honest(sim, index)
    match field:
        case "slot":
            bad = signed(sim, key, replace(vote, slot=sim.slot + 5))
        case "head":
            bad = signed(sim, key, replace(vote, head=BlockId(bytes(32))))
        case "target":
            bad = signed(sim, key, replace(vote, target=replace(vote.target, epoch=9)))
        case "source":
            bad = signed(sim, key, replace(vote, source=replace(vote.target, epoch=9)))
        case "validator":
            bad = signed(sim, validator_keys(1, label=b"stranger")[0], vote)
        case _:
            bad = replace(vote, signature=bytes(64))
    before = store_state(sim.store)
    with pytest.raises(InvalidVote):
        on_vote(sim.store, bad, sim.slot)
    assert store_state(sim.store) == before
    on_vote(sim.store, vote, sim.slot)
    assert sim.store.latest_votes[vote.validator].slot == sim.slot
    assert get_head(sim.store) in sim.store.tree
