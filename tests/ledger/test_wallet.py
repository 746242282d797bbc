"""The pure wallet: coin selection, change, fees, and transactions the ledger accepts."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.errors import InsufficientFunds
from p2pchain.ledger.address import decode_address
from p2pchain.ledger.tx import Lock, LockKind, OutPoint, TxKind, TxOutput
from p2pchain.ledger.types import Address, AssetId, TxId
from p2pchain.ledger.validation import BlockContext, connect_block, validate_transaction
from p2pchain.ledger.wallet import is_spendable, select_coins
from p2pchain.params import COIN
from p2pchain.testing import FAST_PARAMS, FundedChain, build_block, funded_chain

NATIVE = AssetId(FAST_PARAMS.native_asset)


def context_of(chain: FundedChain) -> BlockContext:
    return BlockContext(height=chain.view.height + 1, slot=chain.view.height + 1)


def coin(index: int, amount: int, asset: bytes = NATIVE) -> tuple[OutPoint, TxOutput]:
    output = TxOutput(asset=AssetId(asset), amount=amount, address=Address(bytes(20)))
    return OutPoint(txid=TxId(bytes(32)), index=index), output


@given(
    amounts=st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=8),
    data=st.data(),
)
def test_select_coins_covers_the_target_largest_first(
    amounts: list[int], data: st.DataObject
) -> None:
    coins = [coin(i, a) for i, a in enumerate(amounts)]
    target = data.draw(st.integers(min_value=1, max_value=sum(amounts)))
    chosen = select_coins(coins, NATIVE, target)
    total = sum(output.amount for _, output in chosen)
    assert total >= target
    assert total - min(output.amount for _, output in chosen) < target  # no needless coin
    assert [o.amount for _, o in chosen] == sorted(amounts, reverse=True)[: len(chosen)]
    with pytest.raises(InsufficientFunds):
        select_coins(coins, NATIVE, sum(amounts) + 1)


def test_other_assets_do_not_count() -> None:
    with pytest.raises(InsufficientFunds):
        select_coins([coin(0, 100, b"\x01" * 32)], NATIVE, 1)


@given(
    amount=st.integers(min_value=1, max_value=19 * COIN),
    fee=st.integers(min_value=0, max_value=COIN),
)
def test_transfer_pays_returns_change_and_is_valid(amount: int, fee: int) -> None:
    chain = funded_chain(2, params=FAST_PARAMS)
    sender, receiver = chain.wallets[1], chain.wallets[0]
    context = context_of(chain)
    payment = TxOutput(asset=NATIVE, amount=amount, address=receiver.address)
    tx = sender.build_transfer(
        chain.view.utxos_of(sender.address), [payment], fee=fee, context=context
    )
    assert tx.outputs[0] == payment
    assert validate_transaction(tx, chain.view, chain.params, context) == fee
    change = sum(o.amount for o in tx.outputs[1:])
    assert all(o.address == sender.address for o in tx.outputs[1:])
    assert change == 10 * COIN * len(tx.inputs) - amount - fee


@pytest.mark.parametrize("fee", [0, 10])
def test_issue_and_mint_with_any_fee(fee: int) -> None:
    """An issue with fee 0 still spends a coin: its asset id derives from the first input."""
    chain = funded_chain(2, params=FAST_PARAMS)
    issuer = chain.wallets[1]
    context = context_of(chain)
    tx, asset = issuer.build_issue(
        chain.view.utxos_of(issuer.address),
        name=b"co2",
        amount=500,
        cap=1_000,
        fee=fee,
        context=context,
    )
    assert tx.inputs
    assert validate_transaction(tx, chain.view, chain.params, context) == fee
    connect_block(
        chain.view,
        build_block(chain.view, chain.params, [tx], proposer=chain.validator),
        chain.params,
    )
    mint = issuer.build_mint(
        chain.view.utxos_of(issuer.address),
        asset=asset,
        amount=500,
        fee=fee,
        context=context_of(chain),
    )
    assert validate_transaction(mint, chain.view, chain.params, context_of(chain)) == fee


def test_bond_and_unbond_round_trip(chain: FundedChain) -> None:
    owner = chain.wallets[1]
    context = context_of(chain)
    bond = owner.build_bond(
        chain.view.utxos_of(owner.address),
        validator=owner.public_key,
        amount=3 * COIN,
        fee=1,
        context=context,
    )
    assert bond.kind is TxKind.BOND
    connect_block(
        chain.view,
        build_block(chain.view, chain.params, [bond], proposer=chain.validator),
        chain.params,
    )
    stakes = [c for c in chain.view.utxos_of(owner.address) if c[1].lock.kind is LockKind.STAKE]
    unbond = owner.build_unbond(stakes, fee=2, context=context_of(chain))
    assert validate_transaction(unbond, chain.view, chain.params, context_of(chain)) == 2
    with pytest.raises(InsufficientFunds):
        owner.build_unbond(stakes, fee=3 * COIN, context=context_of(chain))
    with pytest.raises(ValueError, match="exactly one validator"):
        owner.build_unbond([], fee=0, context=context_of(chain))


def test_insufficient_funds(chain: FundedChain) -> None:
    sender = chain.wallets[2]
    payment = TxOutput(asset=NATIVE, amount=20 * COIN, address=sender.address)
    with pytest.raises(InsufficientFunds):
        sender.build_transfer(
            chain.view.utxos_of(sender.address), [payment], fee=1, context=context_of(chain)
        )


@pytest.mark.parametrize(
    ("lock", "spendable"),
    [
        (Lock(), True),
        (Lock(kind=LockKind.HEIGHT, value=5), True),
        (Lock(kind=LockKind.HEIGHT, value=6), False),
        (Lock(kind=LockKind.EPOCH, value=1), True),
        (Lock(kind=LockKind.EPOCH, value=2), False),
        (Lock(kind=LockKind.STAKE, key=bytes(32)), False),
        (Lock(kind=LockKind.UNBONDING, value=1, key=bytes(32)), True),
    ],
)
def test_is_spendable(lock: Lock, spendable: bool) -> None:
    output = TxOutput(asset=NATIVE, amount=1, address=Address(bytes(20)), lock=lock)
    assert is_spendable(output, BlockContext(height=5, slot=7), FAST_PARAMS) is spendable


def test_address_text_decodes_to_the_address(chain: FundedChain) -> None:
    wallet = chain.wallets[0]
    assert decode_address(wallet.address_text, FAST_PARAMS.address_prefix) == wallet.address
