"""Fork choice: order independence, block rejection reasons, atomicity and chain state."""

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.consensus import (
    BlockOutcome,
    adopt_checkpoints,
    build_block,
    get_block_view,
    get_forkchoice_store,
    get_head,
    get_head_view,
    get_proposer,
    get_weight,
    make_vote,
    on_block,
    on_tick,
    pop_head_change,
)
from p2pchain.errors import InvalidBlock, Reason
from p2pchain.ledger.block import Block, compute_body_root
from p2pchain.ledger.encoding import encode
from p2pchain.ledger.genesis import genesis_state
from p2pchain.ledger.header import header_signing_message
from p2pchain.ledger.tx import OutPoint
from p2pchain.ledger.types import BlockId, Hash32
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.vote import Checkpoint
from p2pchain.ledger.wallet import Wallet
from p2pchain.params import COIN
from p2pchain.testing.consensus import (
    CONSENSUS_PARAMS,
    Simulation,
    build_self_pruning_chain,
    feed_in_order,
    scenarios,
    sign_vote_data,
    store_state,
)
from p2pchain.testing.vectors import vector_on_failure

STAKES = [COIN, 2 * COIN, 3 * COIN, 4 * COIN]


def outcome(store):
    return get_head(store), store.justified_checkpoint, store.finalized_checkpoint


def _feed_counting_refusals(scenario, messages):
    """`feed_in_order`, plus how many messages were refused because finality had already
    pruned what they refer to."""
    refused = []
    store = feed_in_order(
        scenario.params,
        scenario.genesis,
        messages,
        scenario.last_slot,
        on_refused=lambda message, reason: refused.append(reason),
    )
    return store, refused.count(Reason.CONFLICTS_WITH_FINALIZED)


@given(scenarios(), st.randoms(use_true_random=False))
def test_any_order_gives_the_same_head_and_checkpoints(scenario, random):
    """docs/consensus.md, "Determinism": the justified and finalized checkpoints never depend
    on the order; the head and its state do not either unless, in one of the orders, a
    message arrived after finality had pruned the block it refers to."""
    messages = [*scenario.blocks, *scenario.votes]
    in_order, late_in_order = _feed_counting_refusals(scenario, messages)
    random.shuffle(messages)
    head, justified, finalized = outcome(in_order)
    # On failure the shuffled delivery is written as a step vector (docs/testing.md).
    with vector_on_failure(
        "any-order",
        scenario.params,
        scenario.genesis,
        messages,
        description=f"Shuffled delivery; in order: head 0x{head.hex()}, justified "
        f"({justified.epoch}, 0x{justified.block_id.hex()}), finalized "
        f"({finalized.epoch}, 0x{finalized.block_id.hex()}).",
        current_slot=scenario.last_slot,
        retry=True,
    ):
        shuffled, late_shuffled = _feed_counting_refusals(scenario, messages)
        checkpoints = (in_order.justified_checkpoint, in_order.finalized_checkpoint)
        assert (shuffled.justified_checkpoint, shuffled.finalized_checkpoint) == checkpoints
        if not late_in_order and not late_shuffled:
            assert outcome(shuffled) == outcome(in_order)
            assert shuffled.view.snapshot() == in_order.view.snapshot()


@given(scenarios())
def test_head_view_equals_replaying_the_head_chain(scenario):
    store = feed_in_order(
        scenario.params, scenario.genesis, [*scenario.blocks, *scenario.votes], scenario.last_slot
    )
    chain = []
    node = store.nodes[get_head(store)]
    while node is not None:
        chain.append(node.block)
        node = node.parent
    _, view = genesis_state(scenario.genesis, scenario.params)
    for block in reversed(chain[:-1]):
        view.apply(block)
    assert get_head_view(store).snapshot() == view.snapshot()


def resign(sim: Simulation, block: Block, *, key=None, **changes) -> Block:
    """`block` with header fields changed and a fresh signature by `key` (its proposer's)."""
    header = replace(block.header, **changes)
    key = key or sim.keys[block.header.proposer]
    signature = key.sign(header_signing_message(sim.params.chain_id, header.block_id))
    return replace(block, header=header, signature=signature)


def with_body(sim: Simulation, block: Block, transactions=None, votes=None) -> Block:
    transactions = block.transactions if transactions is None else transactions
    votes = block.votes if votes is None else votes
    body_root = compute_body_root(transactions, votes)
    rebuilt = replace(block, transactions=transactions, votes=votes)
    return resign(sim, rebuilt, body_root=body_root)


def next_block(sim: Simulation, slot=None, votes=()) -> Block:
    slot = sim.slot + 1 if slot is None else slot
    head = get_head(sim.store)
    proposer = get_proposer(sim.store, head, slot)
    return build_block(sim.store, head, slot, sim.keys[proposer], votes=votes)


@pytest.fixture
def sim() -> Simulation:
    sim = Simulation.create(STAKES)
    for _ in range(3):
        sim.run_slot()
    return sim


def reject(sim, block, reason, current_slot=None):
    before = store_state(sim.store)
    with pytest.raises(InvalidBlock) as info:
        on_block(sim.store, block, sim.slot + 1 if current_slot is None else current_slot)
    assert info.value.reason is reason
    assert store_state(sim.store) == before


def test_valid_block_is_accepted_and_becomes_head(sim):
    block = next_block(sim)
    on_block(sim.store, block, sim.slot + 1)
    assert get_head(sim.store) == block.block_id


def test_block_import_asks_the_given_signature_check_about_each_transaction(sim):
    """The node passes its signature cache here, so a transaction verified in the pool is
    not verified again when a block brings it."""
    view = get_head_view(sim.store)
    height = view.height + 1
    context = BlockContext(height=height, slot=sim.slot + 1)
    spends = []
    for key in sim.keys.values():
        wallet = Wallet(key, sim.params)
        mature = [c for c in view.utxos_of(wallet.address) if c[1].lock.value < height]
        if mature:
            spends.append(wallet.build_transfer(mature, [], fee=1_000, context=context))
    assert spends  # the first rewards have matured
    head = get_head(sim.store)
    proposer = sim.keys[get_proposer(sim.store, head, sim.slot + 1)]
    block = build_block(sim.store, head, sim.slot + 1, proposer, transactions=spends)
    assert block.transactions[1:] == tuple(spends)
    asked = []

    def cache(tx, txid):
        asked.append(txid)
        return True

    on_block(sim.store, block, sim.slot + 1, signatures_valid=cache)
    assert asked == [tx.txid for tx in spends]


def test_duplicate_block(sim):
    block = next_block(sim)
    on_block(sim.store, block, sim.slot + 1)
    reject(sim, block, Reason.DUPLICATE_BLOCK)


def test_unknown_parent(sim):
    block = next_block(sim)
    reject(sim, resign(sim, block, parent=BlockId(bytes(32))), Reason.UNKNOWN_PARENT)


def test_future_slot_can_be_queued_and_retried(sim):
    block = next_block(sim, slot=sim.slot + 2)
    reject(sim, block, Reason.FUTURE_SLOT, current_slot=sim.slot + 1)
    on_block(sim.store, block, sim.slot + 2)
    assert get_head(sim.store) == block.block_id


def test_slot_not_after_parent(sim):
    block = next_block(sim)
    reject(sim, resign(sim, block, slot=sim.slot), Reason.SLOT_NOT_AFTER_PARENT)


def test_bad_height(sim):
    block = next_block(sim)
    reject(sim, resign(sim, block, height=block.header.height + 1), Reason.BAD_HEIGHT)


def test_wrong_proposer(sim):
    block = next_block(sim)
    other = next(key for pk, key in sim.keys.items() if pk != block.header.proposer)
    forged = resign(sim, block, key=other, proposer=other.public_key)
    reject(sim, forged, Reason.WRONG_PROPOSER)


def test_bad_proposer_signature(sim):
    block = next_block(sim)
    reject(sim, replace(block, signature=bytes(64)), Reason.BAD_PROPOSER_SIGNATURE)


def test_bad_body_root(sim):
    block = next_block(sim)
    reject(sim, resign(sim, block, body_root=Hash32(bytes(32))), Reason.BAD_BODY_ROOT)


def test_too_many_votes():
    sim = Simulation.create(STAKES, params=replace(CONSENSUS_PARAMS, max_block_votes=1))
    while len(sim.pending_votes) < 2:
        sim.run_slot()
    block = next_block(sim, votes=sim.pending_votes)
    assert len(block.votes) == 1
    reject(sim, with_body(sim, block, votes=tuple(sim.pending_votes)), Reason.BLOCK_TOO_LARGE)


def test_too_many_bytes():
    sim = Simulation.create(STAKES, params=replace(CONSENSUS_PARAMS, max_block_bytes=1_000))
    while len(sim.pending_votes) < 1:
        sim.run_slot()
    block = next_block(sim)
    assert len(encode(block)) <= 1_000
    padded = with_body(sim, block, votes=tuple(sim.pending_votes) * 4)
    reject(sim, padded, Reason.BLOCK_TOO_LARGE)


def test_invalid_carried_vote(sim):
    vote = make_vote(sim.store, sim.keys[sorted(sim.keys)[0]], sim.slot)
    block = next_block(sim)
    forged = replace(vote, signature=bytes(64))
    reject(sim, with_body(sim, block, votes=(forged,)), Reason.BAD_VOTE_SIGNATURE)
    ahead = make_vote(sim.store, sim.keys[sorted(sim.keys)[0]], sim.slot + 1)
    reject(sim, with_body(sim, block, votes=(ahead,)), Reason.FUTURE_VOTE)


def test_ledger_rule_violation(sim):
    block = next_block(sim)
    reward = block.transactions[0]
    output = reward.outputs[0]
    richer = replace(reward, outputs=(replace(output, amount=output.amount + 1),))
    reject(sim, with_body(sim, block, transactions=(richer,)), Reason.BAD_REWARD)


def test_block_conflicting_with_finality():
    sim = Simulation.create(STAKES)
    sim.run_epochs(4)
    store = sim.store
    finalized = store.nodes[store.finalized_checkpoint.block_id]
    assert store.finalized_checkpoint.epoch >= 2
    old = finalized.parent
    slot = sim.slot + 1
    proposer = get_proposer(store, old.block_id, slot)
    template = next_block(sim)
    block = resign(
        sim,
        template,
        key=sim.keys[proposer],
        parent=old.block_id,
        height=old.height + 1,
        proposer=proposer,
    )
    reject(sim, block, Reason.CONFLICTS_WITH_FINALIZED)
    with pytest.raises(InvalidBlock) as info:
        get_block_view(store, old.block_id)
    assert info.value.reason is Reason.CONFLICTS_WITH_FINALIZED


@given(
    st.sampled_from(
        ["parent", "slot", "height", "proposer", "signature", "body_root", "reward", "vote"]
    ),
    st.integers(min_value=1, max_value=6),
)
def test_rejected_block_leaves_store_unchanged(field, slots):
    sim = Simulation.create(STAKES)
    for _ in range(slots):
        sim.run_slot()
    block = next_block(sim)
    match field:
        case "parent":
            bad = resign(sim, block, parent=BlockId(bytes(32)))
        case "slot" | "height":
            bad = resign(sim, block, **{field: getattr(block.header, field) + 7})
        case "proposer":
            other = next(key for key in sorted(sim.keys) if key != block.header.proposer)
            bad = resign(sim, block, proposer=other)
        case "signature":
            bad = replace(block, signature=bytes(64))
        case "body_root":
            bad = resign(sim, block, body_root=Hash32(bytes(32)))
        case "reward":
            reward = block.transactions[0]
            output = reward.outputs[0]
            bigger = (replace(reward, outputs=(output, replace(output, amount=1))),)
            bad = with_body(sim, block, transactions=bigger)
        case _:
            vote = make_vote(sim.store, sim.keys[sorted(sim.keys)[0]], sim.slot)
            bad = with_body(sim, block, votes=(replace(vote, signature=bytes(64)),))
    before = store_state(sim.store)
    with pytest.raises(InvalidBlock):
        on_block(sim.store, bad, sim.slot + 1)
    assert store_state(sim.store) == before


def test_reorg_is_reported_and_the_view_follows():
    sim = Simulation.create(STAKES)
    sim.run_slot()
    store = sim.store
    pop_head_change(store)
    base = get_head(store)
    # Two competing children of `base` by different proposers (so that their rewards differ);
    # votes decide between them.
    first_proposer = get_proposer(store, base, 2)
    slot = next(s for s in range(3, 64) if get_proposer(store, base, s) != first_proposer)
    first = build_block(store, base, 2, sim.keys[first_proposer])
    on_block(store, first, 2)
    second = build_block(store, base, slot, sim.keys[get_proposer(store, base, slot)])
    on_block(store, second, slot)
    heavier, lighter = (first, second) if get_head(store) == first.block_id else (second, first)
    change = pop_head_change(store)
    assert (change.old_head, change.new_head) == (base, heavier.block_id)
    assert (change.undone, change.applied) == ((), (heavier,))
    stakes = store.nodes[store.genesis_id].validator_set
    for key in sorted(sim.keys, key=stakes.stake_of)[-2:]:
        sim.deliver(make_vote(store, sim.keys[key], slot, head=lighter.block_id))
    assert get_head(store) == lighter.block_id
    assert get_weight(store, lighter.block_id) > get_weight(store, heavier.block_id)
    change = pop_head_change(store)
    assert (change.undone, change.applied) == ((heavier,), (lighter,))
    expected = get_block_view(store, lighter.block_id)
    assert get_head_view(store).snapshot() == expected.snapshot()
    reward = lighter.transactions[0]
    assert get_head_view(store).get(_outpoint(reward)) == reward.outputs[0]
    assert get_head_view(store).get(_outpoint(heavier.transactions[0])) is None


def _outpoint(tx):
    return OutPoint(txid=tx.txid, index=0)


def test_votes_carried_by_blocks_are_counted():
    sim = Simulation.create(STAKES)
    sim.run_epochs(5)
    blocks = [m for m in sim.messages if isinstance(m, Block)]
    assert sum(len(block.votes) for block in blocks) > 0
    only_blocks = feed_in_order(sim.params, sim.genesis, blocks, sim.slot)
    assert only_blocks.finalized_checkpoint.epoch >= 2
    assert only_blocks.finalized_checkpoint in sim.finalized_history
    assert get_head(only_blocks) == get_head(sim.store)


def test_a_block_whose_own_votes_finalize_off_its_chain_is_reported_pruned():
    chain = build_self_pruning_chain()
    store = get_forkchoice_store(CONSENSUS_PARAMS, chain.genesis)
    for block in (chain.h, chain.x, chain.y):
        on_tick(store, block.header.slot)
        assert on_block(store, block, block.header.slot) is BlockOutcome.ADDED
    pop_head_change(store)
    outcome = on_block(store, chain.z, 9)
    assert outcome is BlockOutcome.PRUNED
    assert store.finalized_checkpoint == Checkpoint(epoch=1, block_id=chain.h.block_id)
    assert store.head == chain.h.block_id
    for pruned in (chain.x, chain.y, chain.z):
        assert pruned.block_id not in store.nodes
        assert pruned.block_id not in store.tree
    change = pop_head_change(store)
    assert [b.block_id for b in change.undone] == [chain.y.block_id, chain.x.block_id]
    assert change.applied == ()
    assert store.view.tip == chain.h.block_id


def _replay_blocks(sim: Simulation):
    """A fresh store fed only the blocks of `sim`, as a restarting node replays its storage."""
    store = get_forkchoice_store(sim.params, sim.genesis)
    for message in sim.messages:
        if isinstance(message, Block):
            on_tick(store, message.header.slot)
            on_block(store, message, message.header.slot)
    on_tick(store, sim.slot)
    return store


def test_a_replay_that_ends_below_the_persisted_checkpoints_adopts_them():
    """Votes that justified the last checkpoints have not reached a block yet, so a replay of
    the blocks ends below them; adopting the persisted ones restores exactly the checkpoints
    and head the node had, and adopting them again changes nothing."""
    regressed = 0
    for slots in range(8, 40):
        sim = Simulation.create(STAKES)
        for _ in range(slots):
            sim.run_slot()
        replay = _replay_blocks(sim)
        justified, finalized = sim.store.justified_checkpoint, sim.store.finalized_checkpoint
        behind = (replay.justified_checkpoint, replay.finalized_checkpoint) != (
            justified,
            finalized,
        )
        regressed += behind
        assert adopt_checkpoints(replay, justified, finalized) is behind
        assert replay.justified_checkpoint == justified
        assert replay.finalized_checkpoint == finalized
        assert get_head(replay) == get_head(sim.store)
        assert adopt_checkpoints(replay, justified, finalized) is False
    assert regressed > 0  # the scenario does exercise a replay that falls short


def _replay_behind():
    """A simulation whose block replay ends below its finalized checkpoint."""
    for slots in range(8, 60):
        sim = Simulation.create(STAKES)
        for _ in range(slots):
            sim.run_slot()
        replay = _replay_blocks(sim)
        if replay.finalized_checkpoint != sim.store.finalized_checkpoint:
            return sim, replay
    raise AssertionError("no replay fell behind")


def test_a_persisted_pair_with_justified_equal_to_finalized_is_adopted():
    sim, replay = _replay_behind()
    finalized = sim.store.finalized_checkpoint
    assert adopt_checkpoints(replay, finalized, finalized) is True
    assert replay.finalized_checkpoint == finalized
    assert replay.justified_checkpoint.epoch >= finalized.epoch


def test_a_justified_checkpoint_off_the_finalized_chain_is_not_adopted():
    """Genesis is its own chain's checkpoint for any later epoch, so only the consistency
    rule refuses it as the justified checkpoint above a finalized one on another chain."""
    sim, replay = _replay_behind()
    finalized = sim.store.finalized_checkpoint
    assert finalized.epoch > 0
    before = outcome(replay)
    stray = Checkpoint(epoch=finalized.epoch + 1, block_id=replay.genesis_id)
    assert not adopt_checkpoints(replay, stray, finalized)
    assert outcome(replay) == before


def test_a_block_that_is_not_its_epochs_checkpoint_is_not_adopted():
    sim, replay = _replay_behind()
    finalized = sim.store.finalized_checkpoint
    start = finalized.epoch * sim.params.slots_per_epoch
    later = [node.block_id for node in replay.nodes.values() if node.slot > start]
    assert later
    before = outcome(replay)
    mislabelled = Checkpoint(epoch=finalized.epoch, block_id=later[0])
    assert not adopt_checkpoints(replay, mislabelled, mislabelled)
    assert outcome(replay) == before


def test_checkpoints_that_do_not_fit_the_store_are_not_adopted():
    sim = Simulation.create(STAKES)
    sim.run_epochs(4)
    replay = get_forkchoice_store(sim.params, sim.genesis)  # knows none of the blocks
    before = outcome(replay)
    finalized = sim.store.finalized_checkpoint
    assert finalized.epoch > 0
    assert not adopt_checkpoints(replay, sim.store.justified_checkpoint, finalized)
    assert outcome(replay) == before
    own = _replay_blocks(sim)
    before = outcome(own)
    assert own.finalized_checkpoint.epoch > 0
    genesis = Checkpoint(epoch=0, block_id=own.genesis_id)
    assert not adopt_checkpoints(own, genesis, genesis)  # older ones never move it back
    unknown = Checkpoint(epoch=finalized.epoch, block_id=BlockId(bytes(32)))
    assert not adopt_checkpoints(own, unknown, unknown)
    if sim.store.justified_checkpoint.epoch > finalized.epoch:
        assert not adopt_checkpoints(own, finalized, sim.store.justified_checkpoint)  # swapped
    assert outcome(own) == before


def test_a_vote_whose_target_an_earlier_vote_of_its_block_pruned_is_not_counted():
    """z's first three votes finalize (1, h) and prune x, y and z; its fourth vote targets
    (2, y), pruned a moment ago: it is skipped (it used to crash the store half-way)."""
    chain = build_self_pruning_chain()
    store = get_forkchoice_store(CONSENSUS_PARAMS, chain.genesis)
    for block in (chain.h, chain.x, chain.y):
        on_tick(store, block.header.slot)
        on_block(store, block, block.header.slot)
    on_tick(store, 9)
    fourth = sign_vote_data(
        store,
        chain.keys[3],
        slot=8,
        head=chain.y.block_id,
        source=Checkpoint(epoch=1, block_id=chain.x.block_id),
        target=Checkpoint(epoch=2, block_id=chain.y.block_id),
    )
    proposer = next(k for k in chain.keys if k.public_key == chain.z.header.proposer)
    z = build_block(store, chain.y.block_id, 9, proposer, votes=[*chain.z.votes, fourth])
    assert len(z.votes) == 4
    assert on_block(store, z, 9) is BlockOutcome.PRUNED
    assert store.finalized_checkpoint == Checkpoint(epoch=1, block_id=chain.h.block_id)
    assert store.head == get_head(store) == chain.h.block_id
    assert chain.y.block_id not in store.nodes


def test_a_block_of_exactly_max_block_bytes_is_accepted_and_one_byte_more_is_not(sim):
    block = next_block(sim)
    size = len(block.encoded)
    sim.store.params = replace(sim.params, max_block_bytes=size - 1)
    reject(sim, block, Reason.BLOCK_TOO_LARGE)
    sim.store.params = replace(sim.params, max_block_bytes=size)
    assert on_block(sim.store, block, sim.slot + 1) is BlockOutcome.ADDED


def _proposer_key(sim: Simulation, parent: BlockId, slot: int):
    return sim.keys[get_proposer(sim.store, parent, slot)]


def test_a_carried_vote_whose_head_is_on_another_branch_counts_for_finality_only():
    """Siblings a (slot 2) and b (slot 3); b carries a vote for a. The vote's links count,
    but it must not become its validator's latest head vote: weight moves only for votes
    whose head is on the carrying block's chain."""
    sim = Simulation.create(STAKES)
    sim.run_slot()
    store = sim.store
    base = get_head(store)
    on_tick(store, 3)
    a = build_block(store, base, 2, _proposer_key(sim, base, 2))
    on_block(store, a, 3)
    voter = min(sim.keys)
    before = store.latest_votes.get(voter)
    assert before is None or before.slot < 2
    vote = make_vote(store, sim.keys[voter], 2, head=a.block_id)
    b = build_block(store, base, 3, _proposer_key(sim, base, 3), votes=[vote])
    assert b.votes == (vote,)
    weight_of_a = get_weight(store, a.block_id)
    on_block(store, b, 3)
    assert store.latest_votes.get(voter) == before
    assert get_weight(store, a.block_id) == weight_of_a
    # The same vote on a's own chain does move the weight.
    c = build_block(store, a.block_id, 4, _proposer_key(sim, a.block_id, 4), votes=[vote])
    on_tick(store, 4)
    on_block(store, c, 4)
    assert store.latest_votes[voter].head == a.block_id
    assert get_weight(store, a.block_id) > weight_of_a


def test_a_child_of_the_finalized_block_may_not_take_its_epochs_start_slot():
    """The proposer of epoch 3's first slot is offline, so the finalized checkpoint (3, f)
    names a block of the slot before. A child of f at that first slot would become epoch 3's
    checkpoint of its own chain, so it conflicts with finality; one slot later it does not."""
    sim = Simulation.create(STAKES)
    start = 3 * sim.params.slots_per_epoch
    while sim.slot < start - 1:
        sim.run_slot()
    f = get_head(sim.store)
    skipped = get_proposer(sim.store, f, start)
    sim.offline.add(skipped)
    sim.run_slot()
    sim.offline.discard(skipped)
    while sim.store.finalized_checkpoint.epoch < 3:
        sim.run_slot()
    store = sim.store
    assert store.finalized_checkpoint == Checkpoint(epoch=3, block_id=f)
    assert store.nodes[f].slot == start - 1
    on_start = resign(
        sim,
        next_block(sim),
        key=sim.keys[skipped],
        parent=f,
        slot=start,
        height=store.nodes[f].height + 1,
        proposer=skipped,
    )
    reject(sim, on_start, Reason.CONFLICTS_WITH_FINALIZED)
    after = build_block(store, f, start + 1, _proposer_key(sim, f, start + 1))
    assert on_block(store, after, sim.slot) is BlockOutcome.ADDED
