"""Mempool rules that mutation testing found unpinned: exact bounds (fee floor, pool bytes, block
bytes), eviction order, per-peer quotas held by orphans, orphans adopted in order and checked
in full, and what a rebuild after a block or a reorg keeps, reports and re-checks."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from p2pchain.errors import InvalidTransaction, Reason
from p2pchain.ledger.block import Block
from p2pchain.ledger.tx import (
    LockKind,
    MintPayload,
    OutPoint,
    Transaction,
    TxInput,
    TxKind,
    TxOutput,
)
from p2pchain.ledger.types import Address, AssetId, TxId
from p2pchain.ledger.utxo import UtxoView
from p2pchain.ledger.validation import BlockContext, connect_block
from p2pchain.ledger.wallet import Coin, Wallet
from p2pchain.node.mempool import Mempool, MempoolLimits, Removal
from p2pchain.testing.crash import NATIVE, PARAMS, VALIDATOR, WALLETS, genesis, next_block

FEE = 1_000


@pytest.fixture
def view() -> UtxoView:
    return genesis()[1]


def next_context(view: UtxoView) -> BlockContext:
    return BlockContext(height=view.height + 1, slot=view.height + 1)


def head_coin(view: UtxoView, wallet: Wallet) -> Coin:
    (coin,) = [c for c in view.utxos_of(wallet.address) if c[1].lock.kind is LockKind.NONE]
    return coin


def coins_of(tx: Transaction) -> list[Coin]:
    return [(OutPoint(txid=tx.txid, index=i), o) for i, o in enumerate(tx.outputs)]


def pay(
    wallet: Wallet, coins: list[Coin], to: Address, *, fee: int = FEE, parts: int = 1
) -> Transaction:
    """`wallet` spends `coins` (its own, native) into `parts` equal-ish outputs to `to`."""
    value = sum(output.amount for _, output in coins) - fee
    amounts = [value // parts] * (parts - 1) + [value - value // parts * (parts - 1)]
    return wallet.sign(
        Transaction(
            kind=TxKind.TRANSFER,
            inputs=tuple(TxInput(outpoint=outpoint) for outpoint, _ in coins),
            outputs=tuple(TxOutput(asset=NATIVE, amount=a, address=to) for a in amounts),
        )
    )


def unsigned(tx: Transaction, owner: Wallet) -> Transaction:
    """`tx` with its witnesses replaced by the owner's bare key: well formed, unsigned."""
    return tx.with_inputs(
        tuple(TxInput(outpoint=i.outpoint, public_key=owner.public_key) for i in tx.inputs)
    )


def fees_of(view: UtxoView, txs: list[Transaction]) -> int:
    """The native fee each of `txs` pays, summed (inputs read from `view` or earlier `txs`)."""
    made = {outpoint: output for tx in txs for outpoint, output in coins_of(tx)}
    total = 0
    for tx in txs:
        spent = [made.get(i.outpoint) or view.get(i.outpoint) for i in tx.inputs]
        total += sum(o.amount for o in spent if o is not None and o.asset == NATIVE)
        total -= sum(o.amount for o in tx.outputs if o.asset == NATIVE)
    return total


def connect(view: UtxoView, txs: list[Transaction]) -> Block:
    block = next_block(view, txs, fees_of(view, txs))
    connect_block(view, block, PARAMS)
    return block


def issued_on_chain(view: UtxoView, issuer: Wallet, *, cap: int) -> tuple[Transaction, AssetId]:
    """`issuer` issues 10 units of "kelp" (capped at `cap`) in a block on `view`."""
    created, asset = issuer.build_issue(
        [head_coin(view, issuer)],
        name=b"kelp",
        amount=10,
        cap=cap,
        fee=FEE,
        context=next_context(view),
    )
    connect(view, [created])
    return created, asset


def ordered_by_txid(build: Callable[[int], Transaction], above: TxId | None) -> Transaction:
    """The first of `build(0)`, `build(1)`, ... whose txid sorts above `above` (any if None)."""
    for variant in range(1_000):
        tx = build(variant)
        if above is None or tx.txid > above:
            return tx
    raise AssertionError("no variant sorts high enough")


def reason_of(add: Callable[[], object]) -> Reason:
    with pytest.raises(InvalidTransaction) as failure:
        add()
    return failure.value.reason


# -- limits and statistics ---------------------------------------------------------------------


def test_no_orphan_is_held_when_max_orphans_is_zero(view: UtxoView) -> None:
    pool = Mempool(PARAMS, MempoolLimits(max_orphans=0))
    parent = pay(WALLETS[0], [head_coin(view, WALLETS[0])], WALLETS[1].address)
    child = pay(WALLETS[1], coins_of(parent), WALLETS[2].address)
    add = lambda: pool.add(child, view, next_context(view), now=0.0)  # noqa: E731
    assert reason_of(add) is Reason.MISSING_INPUT
    assert not pool.is_orphan(child.txid)
    assert pool.statistics().orphan_count == 0


def test_one_orphan_slot_holds_exactly_one_orphan(view: UtxoView) -> None:
    pool = Mempool(PARAMS, MempoolLimits(max_orphans=1))
    parent = pay(WALLETS[0], [head_coin(view, WALLETS[0])], WALLETS[1].address, parts=2)
    first, second = (pay(WALLETS[1], [coin], WALLETS[2].address) for coin in coins_of(parent))
    pool.add(first, view, next_context(view), now=0.0)
    change = pool.add(second, view, next_context(view), now=0.0)
    assert change.removed == (Removal(txid=first.txid, reason=Reason.MEMPOOL_FULL),)
    assert [pool.is_orphan(first.txid), pool.is_orphan(second.txid)] == [False, True]


def test_statistics_report_the_byte_limit_and_the_orphans_bytes(view: UtxoView) -> None:
    pool = Mempool(PARAMS, MempoolLimits(max_bytes=123_456))
    parent = pay(WALLETS[0], [head_coin(view, WALLETS[0])], WALLETS[1].address)
    orphan = pay(WALLETS[1], coins_of(parent), WALLETS[2].address)
    pool.add(orphan, view, next_context(view), now=0.0)
    stats = pool.statistics()
    assert (stats.max_bytes, stats.orphan_count, stats.orphan_bytes) == (123_456, 1, orphan.size)


def test_the_fee_floor_is_exact(view: UtxoView) -> None:
    """At `min_fee_per_kb` 7000 a transaction of `size` bytes needs a fee of 7 * size."""
    coin = head_coin(view, WALLETS[0])
    size = pay(WALLETS[0], [coin], WALLETS[1].address).size
    enough = pay(WALLETS[0], [coin], WALLETS[1].address, fee=7 * size)
    short = pay(WALLETS[0], [coin], WALLETS[1].address, fee=7 * size - 1)
    assert enough.size == short.size == size
    pool = Mempool(PARAMS, MempoolLimits(min_fee_per_kb=7_000))
    add_short = lambda: pool.add(short, view, next_context(view), now=0.0)  # noqa: E731
    assert reason_of(add_short) is Reason.FEE_TOO_LOW
    assert pool.add(enough, view, next_context(view), now=0.0).accepted == (enough.txid,)


# -- signatures ------------------------------------------------------------------------------


def test_the_pool_checks_signatures_with_the_check_it_was_given(view: UtxoView) -> None:
    pool = Mempool(PARAMS, signatures=lambda tx, txid: False)
    tx = pay(WALLETS[0], [head_coin(view, WALLETS[0])], WALLETS[1].address)
    assert (
        reason_of(lambda: pool.add(tx, view, next_context(view), now=0.0)) is Reason.BAD_SIGNATURE
    )
    assert len(pool) == 0


def test_revalidation_does_not_check_signatures_again(view: UtxoView) -> None:
    accepting = [True]
    pool = Mempool(PARAMS, signatures=lambda tx, txid: accepting[0])
    kept = pay(WALLETS[0], [head_coin(view, WALLETS[0])], WALLETS[1].address)
    pool.add(kept, view, next_context(view), now=0.0, peer="p")
    accepting[0] = False
    assert pool.revalidate(view, next_context(view)).removed == ()
    assert [(e.txid, e.peer) for e in pool.entries()] == [(kept.txid, "p")]
    fresh = pay(WALLETS[1], [head_coin(view, WALLETS[1])], WALLETS[2].address)
    add = lambda: pool.add(fresh, view, next_context(view), now=0.0)  # noqa: E731
    assert reason_of(add) is Reason.BAD_SIGNATURE


# -- the overlay -----------------------------------------------------------------------------


def test_the_overlay_keeps_the_heads_stake(view: UtxoView) -> None:
    pool = Mempool(PARAMS)
    stake = view.slashable_outpoints(VALIDATOR.public_key)
    assert stake
    pool.add(
        pay(WALLETS[1], [head_coin(view, WALLETS[1])], WALLETS[2].address),
        view,
        next_context(view),
        now=0.0,
    )
    assert pool.overlay(view).slashable_outpoints(VALIDATOR.public_key) == stake


def test_a_pool_issue_gives_its_asset_a_record_under_its_own_id(view: UtxoView) -> None:
    pool = Mempool(PARAMS)
    created, asset = WALLETS[1].build_issue(
        [head_coin(view, WALLETS[1])],
        name=b"kelp",
        amount=5,
        cap=9,
        fee=FEE,
        context=next_context(view),
    )
    pool.add(created, view, next_context(view), now=0.0)
    info = pool.overlay(view).asset(asset)
    assert info is not None
    assert (info.asset, info.issued, info.cap) == (asset, 5, 9)


def test_a_mint_that_also_moves_old_units_counts_only_the_new_ones(view: UtxoView) -> None:
    issuer = WALLETS[1]
    created, asset = issued_on_chain(view, issuer, cap=0)
    old_units, change = coins_of(created)
    mint = issuer.sign(
        Transaction(
            kind=TxKind.MINT,
            inputs=(TxInput(outpoint=old_units[0]), TxInput(outpoint=change[0])),
            outputs=(
                TxOutput(asset=asset, amount=10 + 30, address=issuer.address),
                TxOutput(asset=NATIVE, amount=change[1].amount - FEE, address=issuer.address),
            ),
            payload=MintPayload(asset=asset),
        )
    )
    pool = Mempool(PARAMS)
    pool.add(mint, view, next_context(view), now=0.0)
    assert pool.minted(asset) == 30
    info = pool.overlay(view).asset(asset)
    assert info is not None
    assert info.issued == 40


# -- arrival order, eviction and selection ---------------------------------------------------


def equal_rate_triple(view: UtxoView) -> list[Transaction]:
    """Three same-size, same-fee transfers in descending txid order (the order they arrive)."""
    txs = [pay(w, [head_coin(view, w)], WALLETS[0].address, fee=500) for w in WALLETS[1:]]
    assert len({tx.size for tx in txs}) == 1
    return sorted(txs, key=lambda tx: tx.txid, reverse=True)


def test_equal_fee_rates_are_selected_in_arrival_order(view: UtxoView) -> None:
    txs = equal_rate_triple(view)
    pool = Mempool(PARAMS)
    for tx in txs:
        pool.add(tx, view, next_context(view), now=0.0)
    assert pool.select_for_block(10**6, 10) == txs


def test_of_equal_fee_rates_the_latest_is_evicted(view: UtxoView) -> None:
    txs = equal_rate_triple(view)
    pool = Mempool(PARAMS, MempoolLimits(max_bytes=sum(tx.size for tx in txs)))
    for tx in txs:
        pool.add(tx, view, next_context(view), now=0.0)
    rich = pay(WALLETS[0], [head_coin(view, WALLETS[0])], WALLETS[3].address, fee=90_000)
    assert rich.size == txs[0].size
    change = pool.add(rich, view, next_context(view), now=0.0)
    assert change.removed == (Removal(txid=txs[2].txid, reason=Reason.MEMPOOL_FULL),)
    assert [e.txid for e in pool.entries()] == [txs[0].txid, txs[1].txid, rich.txid]


def test_a_new_transaction_does_not_evict_an_equal_fee_rate(view: UtxoView) -> None:
    first, second, _ = equal_rate_triple(view)
    pool = Mempool(PARAMS, MempoolLimits(max_bytes=first.size))
    pool.add(first, view, next_context(view), now=0.0)
    assert reason_of(lambda: pool.add(second, view, next_context(view), now=0.0)) is (
        Reason.MEMPOOL_FULL
    )
    assert [e.txid for e in pool.entries()] == [first.txid]


def test_eviction_skips_what_it_already_evicted_and_stops_once_the_room_is_made(
    view: UtxoView,
) -> None:
    """Rates: poor 1 < other 2 < poor's child 3 < spare 4 < extra 5 < newcomer. Evicting poor
    takes its child; the room needs other and spare as well, and nothing more."""
    poor = pay(WALLETS[0], [head_coin(view, WALLETS[0])], WALLETS[0].address, fee=1 * 300)
    child = pay(WALLETS[0], coins_of(poor), WALLETS[0].address, fee=3 * 300)
    other = pay(WALLETS[1], [head_coin(view, WALLETS[1])], WALLETS[1].address, fee=2 * 300)
    spare = pay(WALLETS[2], [head_coin(view, WALLETS[2])], WALLETS[2].address, fee=4 * 300)
    extra = pay(WALLETS[3], [head_coin(view, WALLETS[3])], WALLETS[3].address, fee=5 * 300)
    pooled = [poor, child, other, spare, extra]
    assert len({tx.size for tx in pooled}) == 1
    needed = poor.size + child.size + other.size + 1
    parts = 3
    while (
        newcomer := pay(WALLETS[3], coins_of(extra), WALLETS[1].address, fee=90_000, parts=parts)
    ).size <= needed:
        parts += 1
    # a pool that holds the five, and that the newcomer overflows by exactly `needed` bytes
    limit = sum(tx.size for tx in pooled) + newcomer.size - needed
    pool = Mempool(PARAMS, MempoolLimits(max_bytes=limit))
    for tx in pooled:
        pool.add(tx, view, next_context(view), now=0.0)
    change = pool.add(newcomer, view, next_context(view), now=0.0)
    assert change.removed == tuple(
        Removal(txid=tx.txid, reason=Reason.MEMPOOL_FULL) for tx in (poor, child, other, spare)
    )
    assert [e.txid for e in pool.entries()] == [extra.txid, newcomer.txid]


def test_eviction_that_frees_exactly_the_excess_evicts_no_more(view: UtxoView) -> None:
    cheap = [
        pay(wallet, [head_coin(view, wallet)], wallet.address, fee=100 + index)
        for index, wallet in enumerate(WALLETS[:2])
    ]
    rich = pay(WALLETS[2], [head_coin(view, WALLETS[2])], WALLETS[2].address, fee=90_000)
    assert len({tx.size for tx in (*cheap, rich)}) == 1
    pool = Mempool(PARAMS, MempoolLimits(max_bytes=cheap[0].size + cheap[1].size))
    for tx in cheap:
        pool.add(tx, view, next_context(view), now=0.0)
    change = pool.add(rich, view, next_context(view), now=0.0)
    assert change.removed == (Removal(txid=cheap[0].txid, reason=Reason.MEMPOOL_FULL),)
    assert pool.statistics().total_bytes == pool.limits.max_bytes


def test_block_selection_fills_the_byte_budget_exactly_and_skips_what_does_not_fit(
    view: UtxoView,
) -> None:
    pool = Mempool(PARAMS)
    big = pay(WALLETS[0], [head_coin(view, WALLETS[0])], WALLETS[0].address, fee=90_000, parts=6)
    small = [
        pay(wallet, [head_coin(view, wallet)], wallet.address, fee=1_000 - index)
        for index, wallet in enumerate(WALLETS[1:])
    ]
    for tx in (big, *small):
        pool.add(tx, view, next_context(view), now=0.0)
    assert big.size > 2 * small[0].size
    budget = small[0].size + small[1].size
    assert pool.select_for_block(max_bytes=budget, max_count=10) == small[:2]
    assert pool.select_for_block(max_bytes=budget - 1, max_count=10) == small[:1]


# -- per-peer quotas -------------------------------------------------------------------------


def test_a_peers_quota_is_released_one_transaction_at_a_time(view: UtxoView) -> None:
    pool = Mempool(PARAMS, MempoolLimits(max_txs_per_peer=2))
    a, b, c, d = (pay(w, [head_coin(view, w)], w.address) for w in WALLETS)
    pool.add(a, view, next_context(view), now=0.0, peer="p")
    pool.add(b, view, next_context(view), now=0.0, peer="p")
    assert reason_of(lambda: pool.add(c, view, next_context(view), now=0.0, peer="p")) is (
        Reason.PEER_LIMIT
    )
    block = connect(view, [a])
    pool.remove_included(block, view, next_context(view))
    pool.add(c, view, next_context(view), now=0.0, peer="p")
    assert reason_of(lambda: pool.add(d, view, next_context(view), now=0.0, peer="p")) is (
        Reason.PEER_LIMIT
    )


def test_orphans_count_against_their_peers_quota_until_they_expire(view: UtxoView) -> None:
    pool = Mempool(PARAMS, MempoolLimits(max_txs_per_peer=2, orphan_ttl=10.0))
    parent = pay(WALLETS[0], [head_coin(view, WALLETS[0])], WALLETS[1].address, parts=4)
    orphans = [pay(WALLETS[1], [coin], WALLETS[2].address) for coin in coins_of(parent)]
    pool.add(orphans[0], view, next_context(view), now=0.0, peer="p")
    pool.add(orphans[1], view, next_context(view), now=5.0, peer="p")
    add = lambda tx: lambda: pool.add(tx, view, next_context(view), now=6.0, peer="p")  # noqa: E731
    assert reason_of(add(orphans[2])) is Reason.PEER_LIMIT
    assert pool.expire_orphans(10.0) == (
        Removal(txid=orphans[0].txid, reason=Reason.MISSING_INPUT),
    )
    pool.add(orphans[2], view, next_context(view), now=10.0, peer="p")
    assert reason_of(add(orphans[3])) is Reason.PEER_LIMIT


# -- orphans ---------------------------------------------------------------------------------


def test_orphans_are_retried_in_order_each_checked_in_full(view: UtxoView) -> None:
    """Three orphans wait for `parent`, in txid order: one with its signatures missing, one that
    also waits for `other_parent`, one that also spends a coin of the head. The parent's
    arrival rejects the first, keeps the second waiting (still the peer's, expiring on time)
    and accepts the third for the peer that sent it."""
    owner = WALLETS[1]
    parent = pay(WALLETS[0], [head_coin(view, WALLETS[0])], owner.address, parts=3)
    other_parent = pay(WALLETS[2], [head_coin(view, WALLETS[2])], owner.address)
    to_parent, to_waiting, to_good = coins_of(parent)
    bad = ordered_by_txid(
        lambda n: unsigned(pay(owner, [to_parent], WALLETS[3].address, fee=FEE + n), owner), None
    )
    waiting = ordered_by_txid(
        lambda n: pay(
            owner, [to_waiting, *coins_of(other_parent)], WALLETS[3].address, fee=FEE + n
        ),
        bad.txid,
    )
    good = ordered_by_txid(
        lambda n: pay(owner, [to_good, head_coin(view, owner)], WALLETS[3].address, fee=FEE + n),
        waiting.txid,
    )
    pool = Mempool(PARAMS, MempoolLimits(max_txs_per_peer=3, orphan_ttl=10.0))
    for orphan in (good, bad, waiting):
        assert pool.add(orphan, view, next_context(view), now=0.0, peer="p").orphaned == (
            orphan.txid,
        )
    change = pool.add(parent, view, next_context(view), now=1.0)
    assert change.accepted == (parent.txid, good.txid)
    assert change.removed == (Removal(txid=bad.txid, reason=Reason.BAD_SIGNATURE),)
    assert pool.is_orphan(waiting.txid)
    good_entry = pool.get(good.txid)
    assert good_entry is not None
    assert good_entry.peer == "p"
    # the peer holds `waiting` and `good`: one more fits its quota of three, then no more
    spare = pay(WALLETS[3], [head_coin(view, WALLETS[3])], WALLETS[3].address)
    pool.add(spare, view, next_context(view), now=2.0, peer="p")
    add_more = lambda: pool.add(other_parent, view, next_context(view), now=2.0, peer="p")  # noqa: E731
    assert reason_of(add_more) is Reason.PEER_LIMIT
    assert pool.expire_orphans(9.9) == ()
    assert pool.expire_orphans(10.0) == (Removal(txid=waiting.txid, reason=Reason.MISSING_INPUT),)


def test_an_orphan_waiting_for_a_blocks_transaction_is_accepted_with_the_block(
    view: UtxoView,
) -> None:
    pool = Mempool(PARAMS)
    parent = pay(WALLETS[0], [head_coin(view, WALLETS[0])], WALLETS[1].address)
    orphan = pay(WALLETS[1], [*coins_of(parent), head_coin(view, WALLETS[1])], WALLETS[2].address)
    pool.add(orphan, view, next_context(view), now=0.0)
    block = connect(view, [parent])
    change = pool.remove_included(block, view, next_context(view))
    assert change.accepted == (orphan.txid,)
    assert [e.txid for e in pool.entries()] == [orphan.txid]


# -- blocks, revalidation and reorgs ---------------------------------------------------------


def test_a_block_reports_every_conflict_it_causes(view: UtxoView) -> None:
    pool = Mempool(PARAMS)
    doomed = [pay(w, [head_coin(view, w)], WALLETS[0].address) for w in WALLETS[1:3]]
    for tx in doomed:
        pool.add(tx, view, next_context(view), now=0.0)
    rivals = [pay(w, [head_coin(view, w)], w.address, fee=2 * FEE) for w in WALLETS[1:3]]
    change = pool.remove_included(connect(view, rivals), view, next_context(view))
    assert set(change.removed) == {
        Removal(txid=tx.txid, reason=Reason.CONFLICTING_SPEND) for tx in doomed
    }
    assert len(pool) == 0


def test_a_block_that_mints_rechecks_the_pool_and_keeps_what_it_accepted(view: UtxoView) -> None:
    """The block mints up to the cap, so the pool's own mint must go; the block also conflicts
    with a pool transfer and unlocks an orphan, and the change reports all three."""
    issuer = WALLETS[1]
    created, asset = issued_on_chain(view, issuer, cap=50)
    _, change_coin = coins_of(created)
    split = pay(issuer, [change_coin], issuer.address, parts=2)
    connect(view, [split])
    own_coin, block_coin = coins_of(split)
    pool = Mempool(PARAMS)
    context = next_context(view)
    pool_mint = issuer.build_mint([own_coin], asset=asset, amount=40, fee=FEE, context=context)
    pool.add(pool_mint, view, context, now=0.0)
    doomed = pay(WALLETS[2], [head_coin(view, WALLETS[2])], WALLETS[0].address)
    pool.add(doomed, view, context, now=0.0)
    parent = pay(WALLETS[3], [head_coin(view, WALLETS[3])], WALLETS[3].address)
    orphan = pay(WALLETS[3], coins_of(parent), WALLETS[0].address)
    pool.add(orphan, view, context, now=0.0)
    block_mint = issuer.build_mint([block_coin], asset=asset, amount=40, fee=FEE, context=context)
    rival = pay(WALLETS[2], [head_coin(view, WALLETS[2])], WALLETS[2].address)
    block = connect(view, [block_mint, rival, parent])
    change = pool.remove_included(block, view, next_context(view))
    assert change.accepted == (orphan.txid,)
    assert set(change.removed) == {
        Removal(txid=doomed.txid, reason=Reason.CONFLICTING_SPEND),
        Removal(txid=pool_mint.txid, reason=Reason.CAP_EXCEEDED),
    }
    assert [e.txid for e in pool.entries()] == [orphan.txid]
    assert pool.minted(asset) == 0


def test_revalidation_reports_the_invalid_and_keeps_the_rest_as_they_were(view: UtxoView) -> None:
    pool = Mempool(PARAMS)
    context = next_context(view)
    doomed = pay(WALLETS[1], [head_coin(view, WALLETS[1])], WALLETS[0].address)
    gossiped = pay(WALLETS[2], [head_coin(view, WALLETS[2])], WALLETS[0].address)
    quiet = pay(WALLETS[3], [head_coin(view, WALLETS[3])], WALLETS[0].address)
    for tx, peer in ((doomed, "a"), (gossiped, "b"), (quiet, "c")):
        pool.add(tx, view, context, now=0.0, peer=peer)
    pool.mark_gossiped(gossiped.txid)
    # a block spends doomed's coin behind the pool's back: only revalidation can notice
    connect(view, [pay(WALLETS[1], [head_coin(view, WALLETS[1])], WALLETS[1].address)])
    change = pool.revalidate(view, next_context(view))
    assert change.removed == (Removal(txid=doomed.txid, reason=Reason.MISSING_INPUT),)
    assert [(e.txid, e.peer) for e in pool.entries()] == [(gossiped.txid, "b"), (quiet.txid, "c")]
    assert pool.not_gossiped() == [quiet.txid]


def reorg(view: UtxoView, txs: list[Transaction]) -> Block:
    """Connect a block of `txs`, then replace it by an empty sibling; return the dropped block."""
    block = next_block(view, txs, fees_of(view, txs))
    undo = connect_block(view, block, PARAMS)
    view.undo(block, undo)
    connect_block(view, next_block(view, [], 0), PARAMS)
    return block


def test_a_returning_transaction_is_gossiped_again(view: UtxoView) -> None:
    pool = Mempool(PARAMS)
    tx = pay(WALLETS[1], [head_coin(view, WALLETS[1])], WALLETS[2].address)
    pool.add(tx, view, next_context(view), now=0.0)
    pool.mark_gossiped(tx.txid)
    block = next_block(view, [tx], FEE)
    undo = connect_block(view, block, PARAMS)
    pool.remove_included(block, view, next_context(view))
    view.undo(block, undo)
    sibling = next_block(view, [], 0)
    connect_block(view, sibling, PARAMS)
    pool.remove_included(sibling, view, next_context(view))
    assert pool.readd_after_reorg([block], view, next_context(view)).accepted == (tx.txid,)
    assert pool.not_gossiped() == [tx.txid]


def test_a_returning_transaction_pushed_out_again_is_not_reported(view: UtxoView) -> None:
    cheap = pay(WALLETS[1], [head_coin(view, WALLETS[1])], WALLETS[1].address, fee=100)
    dropped = reorg(view, [cheap])
    rich = pay(WALLETS[2], [head_coin(view, WALLETS[2])], WALLETS[2].address, fee=90_000)
    assert rich.size == cheap.size
    pool = Mempool(PARAMS, MempoolLimits(max_bytes=rich.size))
    pool.add(rich, view, next_context(view), now=0.0)
    change = pool.readd_after_reorg([dropped], view, next_context(view))
    assert (change.accepted, change.removed) == ((), ())
    assert [e.txid for e in pool.entries()] == [rich.txid]


def test_an_orphan_waiting_for_a_returning_transaction_is_accepted_after_it(
    view: UtxoView,
) -> None:
    returning = pay(WALLETS[1], [head_coin(view, WALLETS[1])], WALLETS[2].address)
    dropped = reorg(view, [returning])
    pool = Mempool(PARAMS)
    orphan = pay(
        WALLETS[2], [*coins_of(returning), head_coin(view, WALLETS[2])], WALLETS[3].address
    )
    assert pool.add(orphan, view, next_context(view), now=0.0).orphaned == (orphan.txid,)
    change = pool.readd_after_reorg([dropped], view, next_context(view))
    assert change.accepted == (returning.txid, orphan.txid)
    assert [e.txid for e in pool.entries()] == [returning.txid, orphan.txid]
