"""The mempool's view of the ledger (`Mempool.overlay`), issues and mints in the pool, and the
release of a peer's quota when its transactions leave."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchain.errors import InvalidTransaction, Reason
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.tx import (
    LockKind,
    MintPayload,
    OutPoint,
    Transaction,
    TxOutput,
)
from p2pchain.ledger.types import AssetId, PublicKey
from p2pchain.ledger.utxo import UtxoView
from p2pchain.ledger.validation import BlockContext, connect_block
from p2pchain.ledger.wallet import Coin, Wallet
from p2pchain.node.mempool import Mempool, MempoolLimits
from p2pchain.testing.crash import NATIVE, PARAMS, VALIDATOR, WALLETS, genesis, next_block

FEE = 1_000


def next_context(view: UtxoView) -> BlockContext:
    return BlockContext(height=view.height + 1, slot=view.height + 1)


def coins_of(view: UtxoView, wallet: Wallet) -> list[Coin]:
    return [c for c in view.utxos_of(wallet.address) if c[1].lock.kind is LockKind.NONE]


def outputs_of(tx: Transaction) -> list[Coin]:
    return [(OutPoint(txid=tx.txid, index=i), o) for i, o in enumerate(tx.outputs)]


@pytest.fixture
def view() -> UtxoView:
    return genesis()[1]


def test_the_overlay_reads_pool_outputs_and_hides_pool_spent_ones(view: UtxoView) -> None:
    pool = Mempool(PARAMS)
    context = next_context(view)
    (coin,) = coins_of(view, WALLETS[1])
    payment = TxOutput(asset=NATIVE, amount=5, address=WALLETS[2].address)
    tx = WALLETS[1].build_transfer([coin], [payment], fee=FEE, context=context)
    pool.add(tx, view, context, now=0.0)
    overlay = pool.overlay(view)
    assert overlay.get(coin[0]) is None
    assert view.get(coin[0]) == coin[1]
    for outpoint, output in outputs_of(tx):
        assert overlay.get(outpoint) == output
    assert overlay.get(OutPoint(txid=tx.txid, index=len(tx.outputs))) is None


def test_the_overlay_counts_pool_stake_for_slashing(view: UtxoView) -> None:
    pool = Mempool(PARAMS)
    context = next_context(view)
    validator = PublicKey(VALIDATOR.public_key)
    (stake,) = view.slashable_outpoints(validator)
    other = PublicKey(SecretKey.from_entropy(b"another validator" * 2).public_key)
    bond = WALLETS[1].build_bond(
        coins_of(view, WALLETS[1]),
        validator=other,
        amount=PARAMS.min_stake,
        fee=FEE,
        context=context,
    )
    unbond = WALLETS[0].build_unbond([(stake, view.get(stake))], fee=FEE, context=context)
    assert pool.overlay(view).slashable_outpoints(other) == []
    pool.add(bond, view, context, now=0.0)
    pool.add(unbond, view, context, now=0.0)
    overlay = pool.overlay(view)
    assert overlay.slashable_outpoints(other) == [
        outpoint for outpoint, output in outputs_of(bond) if output.lock.kind is LockKind.STAKE
    ]
    assert overlay.slashable_outpoints(validator) == [OutPoint(txid=unbond.txid, index=0)]
    assert view.slashable_outpoints(validator) == [stake]


# -- issues and mints in the pool ----------------------------------------------------------------

ISSUER = WALLETS[1]


def confirm(pool: Mempool, view: UtxoView, txs: list[Transaction]) -> None:
    """Connect a block of `txs` (pool fees paid to the proposer) and tell the pool."""
    fees = sum(entry.fee for tx in txs if (entry := pool.get(tx.txid)) is not None)
    block = next_block(view, txs, fees)
    connect_block(view, block, PARAMS)
    pool.remove_included(block, view, next_context(view))


def issue(view: UtxoView, coin: Coin, *, amount: int, cap: int) -> tuple[Transaction, AssetId]:
    return ISSUER.build_issue(
        [coin], name=b"carbon", amount=amount, cap=cap, fee=FEE, context=next_context(view)
    )


def mint(view: UtxoView, coin: Coin, asset: AssetId, amount: int, fee: int = FEE) -> Transaction:
    return ISSUER.build_mint(
        [coin], asset=asset, amount=amount, fee=fee, context=next_context(view)
    )


def change_of(tx: Transaction) -> Coin:
    """The issuer's native change output of an issue or mint (always the last output)."""
    return outputs_of(tx)[-1]


def pool_minted_recount(pool: Mempool, view: UtxoView, asset: AssetId) -> int:
    """Units of `asset` the pool's mints create, recounted from the entries one by one."""
    total = 0
    for entry in pool.entries():
        if entry.tx.payload != MintPayload(asset=asset):
            continue
        spent = [spent_output(pool, view, i.outpoint) for i in entry.tx.inputs]
        total += sum(o.amount for o in entry.tx.outputs if o.asset == asset)
        total -= sum(o.amount for o in spent if o.asset == asset)
    return total


def spent_output(pool: Mempool, view: UtxoView, outpoint: OutPoint) -> TxOutput:
    """The output a pool transaction spends: in the head view or made by a pool parent."""
    parent = pool.get(outpoint.txid)
    output = view.get(outpoint) if parent is None else parent.tx.outputs[outpoint.index]
    assert output is not None
    return output


def test_an_issue_in_the_pool_makes_its_asset_visible_to_a_pool_mint(view: UtxoView) -> None:
    pool = Mempool(PARAMS)
    context = next_context(view)
    (coin,) = coins_of(view, ISSUER)
    created, asset = issue(view, coin, amount=10, cap=100)
    assert pool.overlay(view).asset(asset) is None
    pool.add(created, view, context, now=0.0)
    info = pool.overlay(view).asset(asset)
    assert info is not None
    assert (info.issuer, info.cap, info.issued, info.name) == (ISSUER.address, 100, 10, b"carbon")
    assert view.asset(asset) is None
    more = mint(view, change_of(created), asset, 30)
    assert pool.add(more, view, context, now=0.0).accepted == (more.txid,)
    assert pool.minted(asset) == 30
    info = pool.overlay(view).asset(asset)
    assert info is not None
    assert info.issued == 40
    assert pool.select_for_block(10**6, 10) == [created, more]


def test_a_mint_over_the_cap_counting_pool_mints_is_refused(view: UtxoView) -> None:
    pool = Mempool(PARAMS)
    context = next_context(view)
    (coin,) = coins_of(view, ISSUER)
    created, asset = issue(view, coin, amount=10, cap=100)
    pool.add(created, view, context, now=0.0)
    confirm(pool, view, [created])  # on chain: issued 10
    first = mint(view, change_of(created), asset, 50)
    pool.add(first, view, next_context(view), now=0.0)
    too_many = mint(view, change_of(first), asset, 41)
    with pytest.raises(InvalidTransaction) as failure:
        pool.add(too_many, view, next_context(view), now=0.0)
    assert failure.value.reason is Reason.CAP_EXCEEDED
    assert pool.minted(asset) == 50
    enough = mint(view, change_of(first), asset, 40)
    pool.add(enough, view, next_context(view), now=0.0)
    assert pool.minted(asset) == 90
    info = pool.overlay(view).asset(asset)
    assert info is not None
    assert info.issued == 100


def test_confirming_the_issue_and_the_mints_moves_the_total_to_the_chain(view: UtxoView) -> None:
    pool = Mempool(PARAMS)
    context = next_context(view)
    (coin,) = coins_of(view, ISSUER)
    created, asset = issue(view, coin, amount=10, cap=0)
    first = mint(view, change_of(created), asset, 20)
    second = mint(view, change_of(first), asset, 30)
    for tx in (created, first, second):
        pool.add(tx, view, context, now=0.0)
    assert pool.minted(asset) == 50
    confirm(pool, view, [created])
    assert pool.minted(asset) == 50
    assert pool.issue_of(asset) is None
    confirm(pool, view, [first])
    assert pool.minted(asset) == 30
    info = pool.overlay(view).asset(asset)
    assert info is not None
    assert info.issued == 60
    confirm(pool, view, [second])
    assert (pool.minted(asset), len(pool)) == (0, 0)
    chain_info = view.asset(asset)
    assert chain_info is not None
    assert chain_info.issued == 60
    assert pool.overlay(view).asset(asset) == chain_info


def test_a_conflicting_block_removes_the_issue_and_its_mints(view: UtxoView) -> None:
    pool = Mempool(PARAMS)
    context = next_context(view)
    (coin,) = coins_of(view, ISSUER)
    created, asset = issue(view, coin, amount=10, cap=0)
    minted = mint(view, change_of(created), asset, 20)
    for tx in (created, minted):
        pool.add(tx, view, context, now=0.0)
    payment = TxOutput(asset=NATIVE, amount=5, address=ISSUER.address)
    rival = ISSUER.build_transfer([coin], [payment], fee=FEE, context=context)
    fees = FEE
    block = next_block(view, [rival], fees)
    connect_block(view, block, PARAMS)
    change = pool.remove_included(block, view, next_context(view))
    assert {r.txid for r in change.removed} == {created.txid, minted.txid}
    assert (pool.minted(asset), pool.issue_of(asset), len(pool)) == (0, None, 0)
    assert pool.overlay(view).asset(asset) is None


def test_evicting_the_issue_evicts_its_mints_and_their_total(view: UtxoView) -> None:
    (coin,) = coins_of(view, ISSUER)
    created, asset = issue(view, coin, amount=10, cap=0)
    minted = mint(view, change_of(created), asset, 20, fee=10 * FEE)  # the issue pays less
    (rich_coin,) = coins_of(view, WALLETS[2])
    payment = TxOutput(asset=NATIVE, amount=5, address=WALLETS[3].address)
    context = next_context(view)
    rich = WALLETS[2].build_transfer([rich_coin], [payment], fee=100 * FEE, context=context)
    pool = Mempool(PARAMS, MempoolLimits(max_bytes=created.size + minted.size + rich.size - 1))
    pool.add(created, view, context, now=0.0)
    pool.add(minted, view, context, now=0.0)
    change = pool.add(rich, view, context, now=0.0)
    assert {r.txid for r in change.removed} == {created.txid, minted.txid}
    assert {r.reason for r in change.removed} == {Reason.MEMPOOL_FULL}
    assert (pool.minted(asset), pool.issue_of(asset)) == (0, None)
    assert pool.overlay(view).asset(asset) is None


# (kind, amount or count, fee): "mint" amount units, "confirm" the best `count`, "conflict"
# (a block spends the oldest pool transaction's input elsewhere), "flood" (a rich transfer)
actions = st.lists(
    st.tuples(
        st.sampled_from(["mint", "mint", "confirm", "conflict", "flood"]),
        st.integers(1, 40),
        st.integers(0, 20 * FEE),
    ),
    max_size=14,
)


REFUSED_MINTS = {None, Reason.CAP_EXCEEDED, Reason.UNKNOWN_ASSET, Reason.MEMPOOL_FULL}


@settings(max_examples=40, deadline=None)
@given(actions=actions, cap=st.sampled_from([0, 150]), capacity=st.integers(700, 3_000))
def test_the_minted_total_equals_a_recount_of_the_pool(
    actions: list[tuple[str, int, int]], cap: int, capacity: int
) -> None:
    view = genesis()[1]
    pool = Mempool(PARAMS, MempoolLimits(max_bytes=capacity))
    (coin,) = coins_of(view, ISSUER)
    created, asset = issue(view, coin, amount=10, cap=cap)
    pool.add(created, view, next_context(view), now=0.0)
    issuer_coin = change_of(created)  # what the issuer spends next
    chain: list[Transaction] = [created]  # the issuer's transactions, in spending order
    flooders = [coins_of(view, WALLETS[2])[0], coins_of(view, WALLETS[3])[0]]
    for kind, amount, fee in actions:
        context = next_context(view)
        if kind == "mint":
            tx = mint(view, issuer_coin, asset, amount, fee)
            reason = None
            try:
                pool.add(tx, view, context, now=0.0)
            except InvalidTransaction as exc:
                reason = exc.reason
            assert reason in REFUSED_MINTS
            if tx.txid in pool:
                issuer_coin = change_of(tx)
                chain.append(tx)
        elif kind == "confirm":
            confirm(pool, view, pool.select_for_block(10**6, amount))
        elif kind == "conflict":
            pending = [tx for tx in chain if tx.txid in pool]
            if pending and view.get(pending[0].inputs[0].outpoint) is not None:
                spent = pending[0].inputs[0].outpoint
                held = view.get(spent)
                assert held is not None
                payment = TxOutput(asset=NATIVE, amount=5, address=ISSUER.address)
                rival = ISSUER.build_transfer([(spent, held)], [payment], fee=FEE, context=context)
                confirm(pool, view, [rival])
                issuer_coin = change_of(rival)
        else:
            index = amount % 2
            flooder = WALLETS[2 + index]
            payment = TxOutput(asset=NATIVE, amount=5, address=flooder.address)
            rich = flooder.build_transfer(
                [flooders[index]], [payment], fee=50 * FEE + fee, context=context
            )
            with contextlib.suppress(InvalidTransaction):
                pool.add(rich, view, context, now=0.0)
            if rich.txid in pool:
                flooders[index] = change_of(rich)
        if issuer_coin[0] not in view and pool.get(issuer_coin[0].txid) is None:
            # What the issuer would spend left with an evicted or conflicted transaction: the
            # change of its latest pooled transaction, else an unspent coin on chain (a stale
            # coin would make the next mint an orphan, and a repeat of it already known).
            unspent = [
                change_of(tx)
                for tx in chain
                if tx.txid in pool and pool.spender_of(change_of(tx)[0]) is None
            ]
            unspent += sorted(
                (
                    c
                    for c in coins_of(view, ISSUER)
                    if c[1].asset == NATIVE and pool.spender_of(c[0]) is None
                ),
                key=lambda c: -c[1].amount,
            )
            issuer_coin = unspent[0] if unspent else issuer_coin
        recount = pool_minted_recount(pool, view, asset)
        assert pool.minted(asset) == recount
        info = pool.overlay(view).asset(asset)
        on_chain = view.asset(asset)
        if info is not None:
            issued = on_chain.issued if on_chain is not None else 10
            assert info.issued == issued + recount
            assert not cap or info.issued <= cap


# -- a peer's quota is released when its transactions leave --------------------------------------


def transfer(view: UtxoView, wallet: Wallet, coin: Coin, fee: int = FEE) -> Transaction:
    payment = TxOutput(asset=NATIVE, amount=5, address=wallet.address)
    return wallet.build_transfer([coin], [payment], fee=fee, context=next_context(view))


def assert_at_quota(pool: Mempool, view: UtxoView, peer: str) -> None:
    (coin,) = coins_of(view, WALLETS[3])
    with pytest.raises(InvalidTransaction) as failure:
        pool.add(transfer(view, WALLETS[3], coin), view, next_context(view), now=0.0, peer=peer)
    assert failure.value.reason is Reason.PEER_LIMIT


def assert_released(pool: Mempool, view: UtxoView, peer: str, fee: int = FEE) -> None:
    (coin,) = coins_of(view, WALLETS[3])
    tx = transfer(view, WALLETS[3], coin, fee)
    assert pool.add(tx, view, next_context(view), now=5.0, peer=peer).accepted == (tx.txid,)


def test_an_evicted_transaction_releases_its_peers_quota(view: UtxoView) -> None:
    (cheap_coin,) = coins_of(view, WALLETS[1])
    (rich_coin,) = coins_of(view, WALLETS[2])
    cheap = transfer(view, WALLETS[1], cheap_coin, fee=1)
    rich = transfer(view, WALLETS[2], rich_coin, fee=100 * FEE)
    pool = Mempool(PARAMS, MempoolLimits(max_txs_per_peer=1, max_bytes=cheap.size + rich.size - 1))
    pool.add(cheap, view, next_context(view), now=0.0, peer="p")
    assert_at_quota(pool, view, "p")
    pool.add(rich, view, next_context(view), now=0.0, peer="q")
    assert cheap.txid not in pool
    assert_released(pool, view, "p", fee=200 * FEE)  # pays enough to make room


def test_a_confirmed_transaction_releases_its_peers_quota(view: UtxoView) -> None:
    pool = Mempool(PARAMS, MempoolLimits(max_txs_per_peer=1))
    (coin,) = coins_of(view, WALLETS[1])
    tx = transfer(view, WALLETS[1], coin)
    pool.add(tx, view, next_context(view), now=0.0, peer="p")
    assert_at_quota(pool, view, "p")
    confirm(pool, view, [tx])
    assert_released(pool, view, "p")


def test_a_transaction_replaced_by_a_conflicting_block_releases_its_peers_quota(
    view: UtxoView,
) -> None:
    pool = Mempool(PARAMS, MempoolLimits(max_txs_per_peer=1))
    (coin,) = coins_of(view, WALLETS[1])
    pooled = transfer(view, WALLETS[1], coin)
    pool.add(pooled, view, next_context(view), now=0.0, peer="p")
    assert_at_quota(pool, view, "p")
    confirm(pool, view, [transfer(view, WALLETS[1], coin, fee=2 * FEE)])
    assert pooled.txid not in pool
    assert_released(pool, view, "p")


def test_an_expired_orphan_releases_its_peers_quota(view: UtxoView) -> None:
    pool = Mempool(PARAMS, MempoolLimits(max_txs_per_peer=1, orphan_ttl=1.0))
    (coin,) = coins_of(view, WALLETS[1])
    parent = transfer(view, WALLETS[1], coin)
    orphan = transfer(view, WALLETS[1], change_of(parent))
    assert pool.add(orphan, view, next_context(view), now=0.0, peer="p").orphaned == (orphan.txid,)
    assert_at_quota(pool, view, "p")
    assert_released(pool, view, "p")  # at now=5.0: the orphan expired first
    assert not pool.is_orphan(orphan.txid)


def test_a_pool_transaction_taking_an_offer_leaves_when_the_offer_expires(view: UtxoView) -> None:
    """Heights otherwise only unlock outputs, so the pool would keep a transaction whose offer
    expired (no block could take it) forever; it leaves, with its children, as offer-expired."""
    pool = Mempool(PARAMS)
    maker, taker = WALLETS[1], WALLETS[2]
    context = next_context(view)
    (lot,) = coins_of(view, maker)
    wanted = TxOutput(asset=NATIVE, amount=5 * FEE, address=maker.address)
    offer = maker.make_offer(lot, wanted, until=context.height + 1)
    take = taker.build_take([(offer, lot[1])], coins_of(view, taker), fee=FEE, context=context)
    child = taker.build_transfer(
        [c for c in outputs_of(take) if c[1].address == taker.address],
        [TxOutput(asset=NATIVE, amount=FEE, address=maker.address)],
        fee=FEE,
        context=context,
    )
    pool.add(take, view, context, now=0.0)
    pool.add(child, view, context, now=0.0)
    for expected_len in (2, 0):  # still takeable at until, expired after
        block = next_block(view, [], 0, proposer=VALIDATOR)
        connect_block(view, block, PARAMS)
        change = pool.remove_included(block, view, next_context(view))
        assert len(pool) == expected_len
    assert [(r.txid, r.reason) for r in change.removed] == [
        (take.txid, Reason.OFFER_EXPIRED),
        (child.txid, Reason.OFFER_EXPIRED),
    ]
