"""The mempool's view of the ledger (`Mempool.overlay`), issues and mints in the pool, and the
release of a peer's quota when its transactions leave."""

from __future__ import annotations

import pytest
from crash_worker import NATIVE, PARAMS, VALIDATOR, WALLETS, genesis

from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.tx import LockKind, OutPoint, Transaction, TxOutput
from p2pchain.ledger.types import PublicKey
from p2pchain.ledger.utxo import UtxoView
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Coin, Wallet
from p2pchain.node.mempool import Mempool

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
