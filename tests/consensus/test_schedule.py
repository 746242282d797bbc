"""Slots, epochs, validator sets and the proposer schedule."""

from hypothesis import given
from hypothesis import strategies as st

from p2pchain.consensus import (
    ValidatorSet,
    compute_epoch_at_slot,
    compute_proposer,
    compute_slot_at_time,
    compute_start_slot_at_epoch,
    compute_vote_slot,
    get_proposer,
    get_validator_set,
    on_block,
)
from p2pchain.consensus.builder import build_block
from p2pchain.consensus.store import get_seed
from p2pchain.consensus.validators import compute_seed
from p2pchain.ledger.crypto import sha256
from p2pchain.ledger.types import BlockId, PublicKey
from p2pchain.params import COIN, ChainParams
from p2pchain.testing.consensus import CONSENSUS_PARAMS, Simulation


@given(st.integers(min_value=1, max_value=64), st.integers(min_value=0, max_value=10**9))
def test_epoch_and_start_slot_agree(slots_per_epoch, slot):
    params = ChainParams(slots_per_epoch=slots_per_epoch)
    epoch = compute_epoch_at_slot(params, slot)
    start = compute_start_slot_at_epoch(params, epoch)
    assert start <= slot < start + slots_per_epoch


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=10**12))
def test_slot_at_time_counts_whole_slots_since_genesis(genesis_ms, elapsed_ms):
    params = ChainParams(slot_ms=2_000)
    assert compute_slot_at_time(params, genesis_ms, genesis_ms + elapsed_ms) == elapsed_ms // 2_000
    assert compute_slot_at_time(params, genesis_ms + 1, genesis_ms) == 0


def _keys(n):
    return [PublicKey(sha256(bytes([i]))) for i in range(n)]


@given(st.lists(st.integers(min_value=1, max_value=10**15), min_size=1, max_size=20), st.data())
def test_proposer_is_a_staked_validator(stakes, data):
    validators = ValidatorSet.from_stakes(dict(zip(_keys(len(stakes)), stakes, strict=True)))
    slot = data.draw(st.integers(min_value=0, max_value=2**40))
    seed = data.draw(st.binary(min_size=32, max_size=32))
    assert compute_proposer(validators, seed, slot) in validators
    assert validators.total == sum(stakes)


def test_proposer_frequency_follows_stake():
    """Chi-square goodness of fit over 8000 slots with a fixed seed (deterministic)."""
    keys = _keys(5)
    stakes = [1, 2, 3, 4, 10]
    validators = ValidatorSet.from_stakes(
        {key: stake * COIN for key, stake in zip(keys, stakes, strict=True)}
    )
    seed = compute_seed(7, BlockId(bytes(32)))
    slots = 8_000
    counts = dict.fromkeys(keys, 0)
    for slot in range(slots):
        counts[compute_proposer(validators, seed, slot)] += 1
    chi_square = sum(
        (counts[key] - slots * stake / 20) ** 2 / (slots * stake / 20)
        for key, stake in zip(keys, stakes, strict=True)
    )
    assert chi_square < 18.47  # 4 degrees of freedom, p = 0.001
    uniform = sum((counts[key] - slots / 5) ** 2 / (slots / 5) for key in keys)
    assert uniform > 18.47


@given(st.integers(min_value=0, max_value=10**6))
def test_vote_duty_is_inside_its_epoch(epoch):
    key = _keys(1)[0]
    slot = compute_vote_slot(CONSENSUS_PARAMS, key, epoch)
    assert compute_epoch_at_slot(CONSENSUS_PARAMS, slot) == epoch


@given(st.data())
def test_schedule_of_an_epoch_is_fixed_before_the_epoch(data):
    """Branches that share blocks up to the epoch-2 checkpoint agree on epoch e's proposers,
    however they differ afterwards (so no proposer of epochs e-1 or e can change them)."""
    sim = Simulation.create([COIN, 2 * COIN, 3 * COIN])
    store = sim.store
    params = sim.params
    spe = params.slots_per_epoch
    epoch = 3
    anchor_slot = compute_start_slot_at_epoch(params, epoch - 2)
    sim.run_slot()
    while sim.slot < anchor_slot:
        sim.run_slot()
    fork_point = store.head
    last = compute_start_slot_at_epoch(params, epoch) - 1
    slots = list(range(anchor_slot + 1, last + 1))
    tips = []
    for _ in range(2):
        chosen = data.draw(st.lists(st.sampled_from(slots), unique=True, max_size=len(slots)))
        parent = fork_point
        for slot in sorted(chosen):
            proposer = get_proposer(store, parent, slot)
            block = build_block(store, parent, slot, sim.keys[proposer])
            if block.block_id not in store.nodes:
                on_block(store, block, slot)
            parent = block.block_id
        tips.append(parent)
    first, second = tips
    assert get_seed(store, first, epoch) == get_seed(store, second, epoch)
    assert (
        get_validator_set(store, first, epoch).stakes
        == get_validator_set(store, second, epoch).stakes
    )
    for slot in range(epoch * spe, (epoch + 1) * spe):
        assert get_proposer(store, first, slot) == get_proposer(store, second, slot)
    # The seed does depend on the anchor: a different epoch-2 checkpoint gives another seed.
    assert get_seed(store, first, epoch) != compute_seed(epoch, store.genesis_id)
