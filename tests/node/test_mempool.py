"""Mempool policy: first-seen conflicts, fee-rate eviction and selection, orphans, reorgs."""

from __future__ import annotations

import tracemalloc
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchain.errors import ConfigError, InvalidTransaction, Reason
from p2pchain.ledger.crypto import sha256
from p2pchain.ledger.evidence import VoteEquivocation
from p2pchain.ledger.tx import (
    LockKind,
    OutPoint,
    SlashPayload,
    Transaction,
    TxInput,
    TxKind,
    TxOutput,
)
from p2pchain.ledger.types import Address, BlockId, PublicKey, TxId
from p2pchain.ledger.utxo import UtxoView
from p2pchain.ledger.validation import BlockContext, connect_block
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.ledger.wallet import Wallet
from p2pchain.node.mempool import Mempool, MempoolLimits, Removal
from p2pchain.testing.crash import NATIVE, PARAMS, VALIDATOR, WALLETS, genesis, next_block

Coin = tuple[OutPoint, TxOutput]


def next_context(view: UtxoView) -> BlockContext:
    return BlockContext(height=view.height + 1, slot=view.height + 1)


def spend(
    wallet: Wallet, coin: Coin, to: Address, fee: int, parts: int = 2
) -> tuple[Transaction, list[Coin]]:
    """Spend one coin into `parts` outputs to `to` minus `fee`; return the tx and its coins."""
    outpoint, output = coin
    value = output.amount - fee
    amounts = [value // parts] * (parts - 1) + [value - value // parts * (parts - 1)]
    outputs = tuple(TxOutput(asset=NATIVE, amount=a, address=to) for a in amounts)
    tx = wallet.sign(
        Transaction(kind=TxKind.TRANSFER, inputs=(TxInput(outpoint=outpoint),), outputs=outputs)
    )
    return tx, [(OutPoint(txid=tx.txid, index=i), o) for i, o in enumerate(outputs)]


def genesis_coin(view: UtxoView, index: int) -> Coin:
    (coin,) = [c for c in view.utxos_of(WALLETS[index].address) if c[1].lock.kind is LockKind.NONE]
    return coin


def pool_fees(pool: Mempool, txs: list[Transaction]) -> int:
    fees = 0
    for tx in txs:
        entry = pool.get(tx.txid)
        assert entry is not None
        fees += entry.fee
    return fees


@pytest.fixture
def view() -> UtxoView:
    return genesis()[1]


@pytest.mark.parametrize(
    "bad",
    [
        {"max_bytes": 0},
        {"max_txs_per_peer": 0},
        {"max_orphans": -1},
        {"max_orphan_bytes": 0},
        {"max_orphans_per_peer": 0},
        {"max_orphan_bytes_per_peer": 0},
    ],
)
def test_limits_out_of_range_are_a_config_error(bad: dict[str, int]) -> None:
    with pytest.raises(ConfigError, match="limits must be positive"):
        MempoolLimits(**bad)


def test_the_smallest_limits_are_accepted() -> None:
    limits = MempoolLimits(
        max_bytes=1,
        max_txs_per_peer=1,
        max_orphans=0,
        max_orphan_bytes=1,
        max_orphans_per_peer=1,
        max_orphan_bytes_per_peer=1,
    )
    assert Mempool(PARAMS, limits).limits == limits


def test_accepts_a_valid_transfer_once(view: UtxoView) -> None:
    pool = Mempool(PARAMS)
    tx, _ = spend(WALLETS[0], genesis_coin(view, 0), WALLETS[1].address, fee=1_000)
    change = pool.add(tx, view, next_context(view), now=0.0, peer="p1")
    assert change.accepted == (tx.txid,)
    entry = pool.get(tx.txid)
    assert entry is not None
    assert (entry.fee, entry.size, entry.peer) == (1_000, tx.size, "p1")
    with pytest.raises(InvalidTransaction) as failure:
        pool.add(tx, view, next_context(view), now=0.0)
    assert failure.value.reason is Reason.ALREADY_KNOWN
    stats = pool.statistics()
    assert (stats.tx_count, stats.total_bytes, stats.total_fees) == (1, tx.size, 1_000)


def test_invalid_transactions_raise_the_ledger_reason(view: UtxoView) -> None:
    pool = Mempool(PARAMS)
    tx, _ = spend(WALLETS[0], genesis_coin(view, 0), WALLETS[1].address, fee=1_000)
    forged = tx.with_inputs(
        (TxInput(outpoint=tx.inputs[0].outpoint, public_key=WALLETS[0].public_key),)
    )
    with pytest.raises(InvalidTransaction) as failure:
        pool.add(forged, view, next_context(view), now=0.0)
    assert failure.value.reason is Reason.BAD_SIGNATURE
    stolen, _ = spend(WALLETS[1], genesis_coin(view, 0), WALLETS[1].address, fee=1_000)
    with pytest.raises(InvalidTransaction) as failure:
        pool.add(stolen, view, next_context(view), now=0.0)
    assert failure.value.reason is Reason.WITNESS_KEY_MISMATCH
    assert len(pool) == 0


def test_rewards_and_slashing_evidence_are_not_pooled(view: UtxoView) -> None:
    pool = Mempool(PARAMS)
    reward = next_block(view, [], 0).transactions[0]
    with pytest.raises(InvalidTransaction) as failure:
        pool.add(reward, view, next_context(view), now=0.0)
    assert failure.value.reason is Reason.MISPLACED_REWARD
    vote = Vote(
        slot=1,
        head=BlockId(bytes(32)),
        source=Checkpoint(epoch=0, block_id=BlockId(bytes(32))),
        target=Checkpoint(epoch=1, block_id=BlockId(bytes(32))),
        validator=PublicKey(VALIDATOR.public_key),
        signature=bytes(64),
    )
    slash = Transaction(
        kind=TxKind.SLASH, payload=SlashPayload(evidence=VoteEquivocation(first=vote, second=vote))
    )
    with pytest.raises(InvalidTransaction) as failure:
        pool.add(slash, view, next_context(view), now=0.0)
    assert failure.value.reason is Reason.BAD_TX_KIND


def test_first_seen_wins_a_conflict(view: UtxoView) -> None:
    pool = Mempool(PARAMS)
    first, _ = spend(WALLETS[0], genesis_coin(view, 0), WALLETS[1].address, fee=100)
    richer, _ = spend(WALLETS[0], genesis_coin(view, 0), WALLETS[2].address, fee=90_000)
    pool.add(first, view, next_context(view), now=0.0)
    with pytest.raises(InvalidTransaction) as failure:
        pool.add(richer, view, next_context(view), now=0.0)
    assert failure.value.reason is Reason.MEMPOOL_CONFLICT
    spent = richer.inputs[0].outpoint
    assert f"{spent.txid.hex()}:{spent.index} is spent by {first.txid.hex()}" in str(failure.value)
    assert first.txid in pool
    assert richer.txid not in pool
    assert pool.spender_of(first.inputs[0].outpoint) == first.txid


def test_chains_are_accepted_and_selected_parents_first(view: UtxoView) -> None:
    pool = Mempool(PARAMS)
    context = next_context(view)
    parent, coins = spend(WALLETS[0], genesis_coin(view, 0), WALLETS[1].address, fee=100)
    child, grandchildren = spend(WALLETS[1], coins[0], WALLETS[2].address, fee=50_000)
    grandchild, _ = spend(WALLETS[2], grandchildren[1], WALLETS[3].address, fee=90_000)
    other, _ = spend(WALLETS[3], genesis_coin(view, 3), WALLETS[0].address, fee=10_000)
    for tx in (parent, child, grandchild, other):
        pool.add(tx, view, context, now=0.0)
    selected = pool.select_for_block(max_bytes=10**6, max_count=100)
    assert [tx.txid for tx in selected] == [other.txid, parent.txid, child.txid, grandchild.txid]
    assert pool.select_for_block(max_bytes=10**6, max_count=2) == [other, parent]
    # without room for the parent, nothing that depends on it is chosen
    assert pool.select_for_block(max_bytes=other.size + parent.size - 1, max_count=100) == [other]
    block = next_block(view, selected, pool_fees(pool, selected))
    connect_block(view.copy(), block, PARAMS)


def test_a_block_removes_included_and_conflicting_transactions(view: UtxoView) -> None:
    pool = Mempool(PARAMS)
    context = next_context(view)
    parent, coins = spend(WALLETS[0], genesis_coin(view, 0), WALLETS[1].address, fee=100)
    child, _ = spend(WALLETS[1], coins[0], WALLETS[2].address, fee=100)
    doomed, doomed_coins = spend(WALLETS[3], genesis_coin(view, 3), WALLETS[3].address, fee=100)
    doomed_child, _ = spend(WALLETS[3], doomed_coins[0], WALLETS[2].address, fee=100)
    for tx in (parent, child, doomed, doomed_child):
        pool.add(tx, view, context, now=0.0)
    rival, _ = spend(WALLETS[3], genesis_coin(view, 3), WALLETS[0].address, fee=100)
    block = next_block(view, [parent, rival], 200)
    connect_block(view, block, PARAMS)
    change = pool.remove_included(block, view, next_context(view))
    assert set(change.removed) == {
        Removal(txid=doomed.txid, reason=Reason.CONFLICTING_SPEND),
        Removal(txid=doomed_child.txid, reason=Reason.CONFLICTING_SPEND),
    }
    assert [entry.txid for entry in pool.entries()] == [child.txid]
    assert pool.select_for_block(10**6, 100) == [child]
    connect_block(view.copy(), next_block(view, [child], 100), PARAMS)


def test_full_pool_evicts_the_lowest_fee_rate_with_descendants(view: UtxoView) -> None:
    cheap, cheap_coins = spend(WALLETS[0], genesis_coin(view, 0), WALLETS[0].address, fee=100)
    cheap_child, _ = spend(WALLETS[0], cheap_coins[0], WALLETS[1].address, fee=90_000)
    middle, _ = spend(WALLETS[1], genesis_coin(view, 1), WALLETS[1].address, fee=5_000)
    pool = Mempool(PARAMS, MempoolLimits(max_bytes=cheap.size + cheap_child.size + middle.size))
    context = next_context(view)
    for tx in (cheap, cheap_child, middle):
        pool.add(tx, view, context, now=0.0)
    poor, _ = spend(WALLETS[2], genesis_coin(view, 2), WALLETS[2].address, fee=50)
    with pytest.raises(InvalidTransaction) as failure:
        pool.add(poor, view, context, now=0.0)
    assert failure.value.reason is Reason.MEMPOOL_FULL
    rich, _ = spend(WALLETS[2], genesis_coin(view, 2), WALLETS[2].address, fee=20_000)
    change = pool.add(rich, view, context, now=0.0)
    assert change.removed == (
        Removal(txid=cheap.txid, reason=Reason.MEMPOOL_FULL),
        Removal(txid=cheap_child.txid, reason=Reason.MEMPOOL_FULL),
    )
    assert {e.txid for e in pool.entries()} == {middle.txid, rich.txid}
    assert pool.statistics().total_bytes <= pool.limits.max_bytes


def test_a_new_transaction_never_evicts_its_own_parent(view: UtxoView) -> None:
    parent, coins = spend(WALLETS[0], genesis_coin(view, 0), WALLETS[0].address, fee=100)
    child, _ = spend(WALLETS[0], coins[0], WALLETS[1].address, fee=90_000)
    pool = Mempool(PARAMS, MempoolLimits(max_bytes=parent.size + child.size - 1))
    pool.add(parent, view, next_context(view), now=0.0)
    with pytest.raises(InvalidTransaction) as failure:
        pool.add(child, view, next_context(view), now=0.0)
    assert failure.value.reason is Reason.MEMPOOL_FULL
    assert [e.txid for e in pool.entries()] == [parent.txid]


def test_fee_rate_floor_and_peer_quota(view: UtxoView) -> None:
    pool = Mempool(PARAMS, MempoolLimits(min_fee_per_kb=1_000, max_txs_per_peer=1))
    context = next_context(view)
    low, _ = spend(WALLETS[0], genesis_coin(view, 0), WALLETS[0].address, fee=10)
    with pytest.raises(InvalidTransaction) as failure:
        pool.add(low, view, context, now=0.0, peer="p")
    assert failure.value.reason is Reason.FEE_TOO_LOW
    first, _ = spend(WALLETS[0], genesis_coin(view, 0), WALLETS[0].address, fee=10_000)
    pool.add(first, view, context, now=0.0, peer="p")
    second, _ = spend(WALLETS[1], genesis_coin(view, 1), WALLETS[0].address, fee=10_000)
    with pytest.raises(InvalidTransaction) as failure:
        pool.add(second, view, context, now=0.0, peer="p")
    assert failure.value.reason is Reason.PEER_LIMIT
    pool.add(second, view, context, now=0.0, peer="q")


def test_orphans_wait_for_parents_and_expire(view: UtxoView) -> None:
    pool = Mempool(PARAMS, MempoolLimits(orphan_ttl=10.0))
    context = next_context(view)
    parent, coins = spend(WALLETS[0], genesis_coin(view, 0), WALLETS[1].address, fee=100)
    child, grand_coins = spend(WALLETS[1], coins[0], WALLETS[2].address, fee=100)
    grandchild, _ = spend(WALLETS[2], grand_coins[0], WALLETS[3].address, fee=100)
    assert pool.add(grandchild, view, context, now=0.0).orphaned == (grandchild.txid,)
    assert pool.add(child, view, context, now=1.0).orphaned == (child.txid,)
    assert len(pool) == 0
    assert pool.statistics().orphan_count == 2
    change = pool.add(parent, view, context, now=2.0)
    assert change.accepted == (parent.txid, child.txid, grandchild.txid)
    assert pool.statistics().orphan_count == 0
    lonely, _ = spend(WALLETS[2], grand_coins[1], WALLETS[3].address, fee=100)
    other_view = genesis()[1]
    pool = Mempool(PARAMS, MempoolLimits(orphan_ttl=10.0))
    pool.add(lonely, other_view, context, now=0.0)
    assert pool.is_orphan(lonely.txid)
    assert pool.expire_orphans(9.9) == ()
    assert pool.expire_orphans(10.0) == (Removal(txid=lonely.txid, reason=Reason.MISSING_INPUT),)
    assert not pool.is_orphan(lonely.txid)


def test_the_orphan_pool_is_bounded(view: UtxoView) -> None:
    pool = Mempool(PARAMS, MempoolLimits(max_orphans=2))
    context = next_context(view)
    _, coins = spend(WALLETS[0], genesis_coin(view, 0), WALLETS[1].address, fee=100, parts=3)
    orphans = [spend(WALLETS[1], coin, WALLETS[2].address, fee=100)[0] for coin in coins]
    pool.add(orphans[0], view, context, now=0.0)
    pool.add(orphans[1], view, context, now=0.0)
    change = pool.add(orphans[2], view, context, now=0.0)
    assert change.removed == (Removal(txid=orphans[0].txid, reason=Reason.MEMPOOL_FULL),)
    assert [pool.is_orphan(tx.txid) for tx in orphans] == [False, True, True]


def test_each_transaction_is_gossiped_once(view: UtxoView) -> None:
    pool = Mempool(PARAMS)
    tx, _ = spend(WALLETS[0], genesis_coin(view, 0), WALLETS[1].address, fee=100)
    pool.add(tx, view, next_context(view), now=0.0)
    assert pool.not_gossiped() == [tx.txid]
    assert pool.mark_gossiped(tx.txid)
    assert not pool.mark_gossiped(tx.txid)
    assert pool.not_gossiped() == []
    assert pool.statistics().not_gossiped == 0


def test_a_reorg_returns_dropped_transactions_before_their_children(view: UtxoView) -> None:
    pool = Mempool(PARAMS)
    included, included_coins = spend(WALLETS[0], genesis_coin(view, 0), WALLETS[1].address, 100)
    dropped_child, _ = spend(WALLETS[1], included_coins[0], WALLETS[2].address, fee=100)
    block = next_block(view, [included], 100)
    undo = connect_block(view, block, PARAMS)
    pool.add(dropped_child, view, next_context(view), now=0.0)
    pool.mark_gossiped(dropped_child.txid)
    view.undo(block, undo)
    sibling = next_block(view, [], 0)
    connect_block(view, sibling, PARAMS)
    pool.remove_included(sibling, view, next_context(view))
    change = pool.readd_after_reorg([block], view, next_context(view))
    assert change.accepted == (included.txid,)
    assert change.removed == ()
    assert [e.txid for e in pool.entries()] == [included.txid, dropped_child.txid]
    assert pool.not_gossiped() == [included.txid]
    selected = pool.select_for_block(10**6, 10)
    connect_block(view.copy(), next_block(view, selected, 200), PARAMS)


def test_reorg_drops_pool_transactions_that_conflict_with_returning_ones(view: UtxoView) -> None:
    base = view.copy()
    included, _ = spend(WALLETS[0], genesis_coin(view, 0), WALLETS[1].address, fee=100)
    block = next_block(view, [included], 100)
    undo = connect_block(view, block, PARAMS)
    view.undo(block, undo)
    sibling = next_block(view, [], 0)
    connect_block(view, sibling, PARAMS)
    pool = Mempool(PARAMS)
    rival, _ = spend(WALLETS[0], genesis_coin(base, 0), WALLETS[3].address, fee=100)
    pool.add(rival, view, next_context(view), now=0.0)
    change = pool.readd_after_reorg([block], view, next_context(view))
    assert change.accepted == (included.txid,)
    assert change.removed == (Removal(txid=rival.txid, reason=Reason.MEMPOOL_CONFLICT),)


# -- properties ------------------------------------------------------------------------------


def check_invariants(pool: Mempool, view: UtxoView, max_bytes: int) -> None:
    entries = pool.entries()
    spent = [i.outpoint for entry in entries for i in entry.tx.inputs]
    assert len(spent) == len(set(spent)), "two pool transactions spend one outpoint"
    total = sum(entry.size for entry in entries)
    assert pool.statistics().total_bytes == total <= max_bytes
    selected = pool.select_for_block(max_bytes=10**9, max_count=10**6)
    assert len(selected) == len(entries)
    ids = {entry.txid: entry for entry in entries}
    position = {tx.txid: index for index, tx in enumerate(selected)}
    for index, tx in enumerate(selected):
        for tx_input in tx.inputs:
            parent = tx_input.outpoint.txid
            if parent in ids:
                assert position[parent] < index, "a child selected before its parent"
        # greedy: nothing that was ready at this point paid a higher fee rate
        chosen = {t.txid for t in selected[:index]}
        rate = ids[tx.txid].fee_rate
        for entry in entries:
            ready = all(
                i.outpoint.txid not in ids or i.outpoint.txid in chosen for i in entry.tx.inputs
            )
            if entry.txid not in chosen and ready:
                assert entry.fee_rate <= rate
    block = next_block(view, selected, sum(entry.fee for entry in entries))
    connect_block(view.copy(), block, PARAMS)


operations = st.lists(
    st.tuples(
        st.integers(0, 3),  # sender
        st.integers(0, 50),  # which of its coins (spent or not: conflicts happen)
        st.integers(0, 3),  # receiver
        st.integers(0, 50_000),  # fee
        st.integers(1, 3),  # outputs
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40)
@given(ops=operations, capacity=st.integers(800, 4_000))
def test_pool_invariants_hold_under_random_traffic(
    ops: list[tuple[int, int, int, int, int]], capacity: int
) -> None:
    view = genesis()[1]
    pool = Mempool(PARAMS, MempoolLimits(max_bytes=capacity))
    context = next_context(view)
    coins: list[list[Coin]] = [[genesis_coin(view, i)] for i in range(4)]
    for sender, pick, receiver, fee, parts in ops:
        owned = coins[sender]
        coin = owned[pick % len(owned)]
        if coin[1].amount <= fee + parts:
            continue
        tx, made = spend(WALLETS[sender], coin, WALLETS[receiver].address, fee, parts)
        reason = None
        try:
            pool.add(tx, view, context, now=0.0)
        except InvalidTransaction as exc:
            reason = exc.reason
        assert reason in {None, Reason.ALREADY_KNOWN, Reason.MEMPOOL_CONFLICT, Reason.MEMPOOL_FULL}
        if reason is None:
            coins[receiver].extend(made)
        check_invariants(pool, view, capacity)
    for entry in pool.entries():
        assert entry.fee_rate == Fraction(entry.fee, entry.size)


def _junk_orphan(nonce: int, outputs: int) -> Transaction:
    """A well-shaped transaction spending an output nobody has: held as an orphan, unsigned."""
    outpoint = OutPoint(txid=TxId(sha256(b"missing %d" % nonce)), index=0)
    payments = tuple(
        TxOutput(asset=NATIVE, amount=1 + i, address=WALLETS[0].address) for i in range(outputs)
    )
    return Transaction(kind=TxKind.TRANSFER, inputs=(TxInput(outpoint=outpoint),), outputs=payments)


def test_orphan_flood_stays_within_count_and_bytes_and_spares_the_honest_orphan(
    view: UtxoView,
) -> None:
    limits = MempoolLimits(
        max_orphans=50,
        max_orphan_bytes=20_000,
        max_orphans_per_peer=10,
        max_orphan_bytes_per_peer=2_500,
    )
    pool = Mempool(PARAMS, limits)
    context = next_context(view)
    parent, coins = spend(WALLETS[0], genesis_coin(view, 0), WALLETS[1].address, fee=100)
    child, _ = spend(WALLETS[1], coins[0], WALLETS[2].address, fee=100)
    assert pool.add(child, view, context, now=0.0, peer="honest").orphaned == (child.txid,)
    junk = [_junk_orphan(nonce, 1 + nonce % 5) for nonce in range(10_000)]
    assert len({(tx.txid, tx.size) for tx in junk}) == len(junk)  # cached before measuring
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for nonce, tx in enumerate(junk):
            pool.add(tx, view, context, now=0.0, peer=f"sybil-{nonce % 40}")
            stats = pool.statistics()
            assert stats.orphan_count <= limits.max_orphans
            assert stats.orphan_bytes <= limits.max_orphan_bytes
            if nonce == len(junk) // 2:
                half = tracemalloc.get_traced_memory()[0] - before
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 4_000 * limits.max_orphans  # bookkeeping of what is held (indexes, heap)
    assert held - half < 20_000  # and nothing per junk transaction offered
    assert pool.is_orphan(child.txid)  # it held less than every flooder
    change = pool.add(parent, view, context, now=1.0)
    assert change.accepted == (parent.txid, child.txid)
