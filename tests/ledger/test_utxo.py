"""UtxoView: exact apply/undo, all-or-nothing `connect_block`, and value conservation."""

import random
from collections import defaultdict
from dataclasses import replace

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from p2pchain.errors import DecodeError, InvalidBlock, Reason
from p2pchain.ledger.block import Block
from p2pchain.ledger.encoding import decode, encode
from p2pchain.ledger.tx import OutPoint, Transaction, TxInput, TxOutput
from p2pchain.ledger.types import Address, Amount, AssetId, TxId
from p2pchain.ledger.utxo import AssetInfo, TxUndo, UndoData, UtxoView
from p2pchain.ledger.validation import BlockContext, connect_block
from p2pchain.testing import (
    FAST_PARAMS,
    FundedChain,
    build_block,
    funded_chain,
    native_fee,
    valid_blocks,
    view_state,
)
from p2pchain.testing.strategies import hashes


def _advance(chain: FundedChain, data: st.DataObject, max_blocks: int) -> None:
    """Connect a few random valid blocks, so that the view holds assets, stake and rewards."""
    for _ in range(data.draw(st.integers(min_value=0, max_value=max_blocks))):
        block = data.draw(valid_blocks(chain.view, chain.wallets, proposer=chain.validator))
        connect_block(chain.view, block, chain.params)


def _totals(view: UtxoView) -> defaultdict[AssetId, int]:
    totals: defaultdict[AssetId, int] = defaultdict(int)
    for _, output in view:
        totals[output.asset] += output.amount
    return totals


@given(data=st.data())
def test_connect_then_undo_restores_the_view_exactly(data: st.DataObject) -> None:
    chain = funded_chain(3, params=FAST_PARAMS)
    _advance(chain, data, 2)
    before = view_state(chain.view)
    block = data.draw(valid_blocks(chain.view, chain.wallets, proposer=chain.validator))
    undo = connect_block(chain.view, block, chain.params)
    assert chain.view.tip == block.block_id
    assert decode(UndoData, encode(undo)) == undo
    chain.view.undo(block, undo)
    assert view_state(chain.view) == before


@given(data=st.data())
def test_apply_of_a_connected_block_gives_the_same_view(data: st.DataObject) -> None:
    chain = funded_chain(3, params=FAST_PARAMS)
    _advance(chain, data, 1)
    trusted = chain.view.copy()
    block = data.draw(valid_blocks(chain.view, chain.wallets, proposer=chain.validator))
    checked_undo = connect_block(chain.view, block, chain.params)
    trusted_undo = trusted.apply(block)
    assert view_state(trusted) == view_state(chain.view)
    assert (trusted.tip, trusted.height) == (block.block_id, block.header.height)
    assert trusted_undo == checked_undo


def test_finish_block_needs_one_undo_record_per_transaction(chain: FundedChain) -> None:
    block = build_block(chain.view, chain.params, proposer=chain.validator)
    tip, height = chain.view.tip, chain.view.height
    with pytest.raises(ValueError, match="undo records"):
        chain.view.finish_block(block, [], governance_before=chain.view.governance_value)
    assert (chain.view.tip, chain.view.height) == (tip, height)


@given(data=st.data())
def test_value_is_conserved_per_asset(data: st.DataObject) -> None:
    chain = funded_chain(3, params=FAST_PARAMS)
    _advance(chain, data, 2)
    view = chain.view
    before, issued_before = _totals(view), view.assets()
    block = data.draw(valid_blocks(view, chain.wallets, proposer=chain.validator))
    fees = native_fee(view, block.transactions[1:], chain.params)
    paid = sum(output.amount for output in block.transactions[0].outputs)
    connect_block(view, block, chain.params)
    after, issued_after = _totals(view), view.assets()
    native = AssetId(chain.params.native_asset)
    assert after[native] == before[native] - fees + paid
    assert after[native] - before[native] <= paid
    for asset, info in issued_after.items():
        previous = issued_before.get(asset)
        minted = info.issued - (previous.issued if previous else 0)
        assert after[asset] - before[asset] == minted
        assert after[asset] <= info.issued


def _tampered_body(block: Block, index: int) -> list[Transaction]:
    """The body after the reward, with the first signature of transaction `index` corrupted."""
    tx = block.transactions[index]
    first = tx.inputs[0]
    bad = TxInput(
        outpoint=first.outpoint,
        public_key=first.public_key,
        signature=bytes([first.signature[0] ^ 1]) + first.signature[1:],
    )
    body = list(block.transactions)
    body[index] = tx.with_inputs((bad, *tx.inputs[1:]))
    return body[1:]


@given(data=st.data())
def test_a_bad_transaction_anywhere_leaves_the_view_unchanged(data: st.DataObject) -> None:
    chain = funded_chain(3, params=FAST_PARAMS)
    _advance(chain, data, 1)
    valid = data.draw(
        valid_blocks(chain.view, chain.wallets, proposer=chain.validator, min_txs=1, max_txs=5)
    )
    assume(len(valid.transactions) >= 2)
    index = data.draw(st.integers(min_value=1, max_value=len(valid.transactions) - 1))
    body = _tampered_body(valid, index)
    block = build_block(chain.view, chain.params, body, proposer=chain.validator)
    before = view_state(chain.view)
    with pytest.raises(InvalidBlock) as info:
        connect_block(chain.view, block, chain.params)
    assert info.value.reason is Reason.BAD_SIGNATURE
    assert view_state(chain.view) == before


@given(data=st.data(), extra=st.integers(min_value=1, max_value=10**6))
def test_an_overpaid_reward_leaves_the_view_unchanged(data: st.DataObject, extra: int) -> None:
    chain = funded_chain(3, params=FAST_PARAMS)
    valid = data.draw(valid_blocks(chain.view, chain.wallets, proposer=chain.validator))
    body = valid.transactions[1:]
    allowed = chain.params.block_reward + native_fee(chain.view, body, chain.params)
    block = build_block(
        chain.view, chain.params, body, proposer=chain.validator, reward=allowed + extra
    )
    before = view_state(chain.view)
    with pytest.raises(InvalidBlock) as info:
        connect_block(chain.view, block, chain.params)
    assert info.value.reason is Reason.BAD_REWARD
    assert view_state(chain.view) == before


def test_undo_with_records_of_another_block_is_refused_and_changes_nothing(
    chain: FundedChain,
) -> None:
    empty = build_block(chain.view, chain.params, proposer=chain.validator)
    undo_of_empty = connect_block(chain.view, empty, chain.params)
    sender = chain.wallets[0]
    context = BlockContext(height=chain.view.height + 1, slot=chain.view.height + 1)
    payment = sender.build_transfer(
        chain.view.utxos_of(sender.address), [], fee=1_000, context=context
    )
    fuller = build_block(chain.view, chain.params, [payment], proposer=chain.validator)
    connect_block(chain.view, fuller, chain.params)
    before = view_state(chain.view)
    with pytest.raises(ValueError, match="undo records"):
        chain.view.undo(fuller, undo_of_empty)
    assert view_state(chain.view) == before


def test_undo_of_a_block_that_is_not_the_tip_is_refused(chain: FundedChain) -> None:
    first = build_block(chain.view, chain.params, proposer=chain.validator)
    undo = connect_block(chain.view, first, chain.params)
    second = build_block(chain.view, chain.params, proposer=chain.validator)
    connect_block(chain.view, second, chain.params)
    with pytest.raises(ValueError, match="tip"):
        chain.view.undo(first, undo)


def test_balances_follow_the_outputs(chain: FundedChain) -> None:
    wallet = chain.wallets[1]
    native = AssetId(chain.params.native_asset)
    assert chain.view.balances(wallet.address) == {native: 20 * 10**8}
    assert chain.view.balance(wallet.address, native) == 20 * 10**8
    assert chain.view.bonded_stake() == {chain.validator.public_key: 2 * chain.params.min_stake}
    stranger = Address(bytes(20))
    assert chain.view.utxos_of(stranger) == []
    assert chain.view.balances(stranger) == {}


@given(data=st.data(), seed=st.integers(min_value=0, max_value=2**32))
def test_the_state_root_depends_on_the_contents_only(data: st.DataObject, seed: int) -> None:
    """Views with the same outputs, assets and governance leaf have one root however they
    were built; removing any one output, changing one amount, or changing or leaving out the
    governance leaf changes it."""
    chain = funded_chain(3, params=FAST_PARAMS)
    _advance(chain, data, 2)
    view = chain.view
    leaf = view.governance_value
    utxos, assets = view.snapshot()
    items = list(utxos.items())
    random.Random(seed).shuffle(items)
    rebuilt = UtxoView.from_snapshot(
        items, list(assets.values())[::-1], view.tip, view.height, governance=leaf
    )
    assert rebuilt.state_root() == view.state_root()
    assert rebuilt.governance_value == leaf
    victim = data.draw(st.sampled_from(items))
    fewer = UtxoView.from_snapshot(
        [item for item in items if item != victim],
        assets.values(),
        view.tip,
        view.height,
        governance=leaf,
    )
    assert fewer.state_root() != view.state_root()
    outpoint = victim[0]
    richer = [
        (o, replace(out, amount=out.amount + 1) if o == outpoint else out) for o, out in items
    ]
    assert UtxoView.from_snapshot(
        richer, assets.values(), view.tip, view.height, governance=leaf
    ).state_root() != (view.state_root())
    other = data.draw(hashes().filter(lambda value: value != leaf))
    for governance in (None, other):
        changed = UtxoView.from_snapshot(
            items, assets.values(), view.tip, view.height, governance=governance
        )
        assert changed.state_root() != view.state_root()


# -- stored records decode strictly ---------------------------------------------------------

_INFO = AssetInfo(
    asset=AssetId(b"\x01" * 32), name=b"carbon", issuer=Address(b"\x02" * 20), cap=9, issued=5
)
_UNDO = TxUndo(
    spent=(
        (
            OutPoint(txid=TxId(b"\x03" * 32), index=1),
            TxOutput(asset=AssetId(b"\x00" * 32), amount=Amount(7), address=Address(b"\x04" * 20)),
        ),
    ),
    assets=((_INFO.asset, _INFO), (AssetId(b"\x05" * 32), None)),
)


def test_stored_asset_records_and_undo_entries_round_trip() -> None:
    assert AssetInfo.from_rlp(_INFO.to_rlp()) == _INFO
    assert TxUndo.from_rlp(_UNDO.to_rlp()) == _UNDO
    for governance in (None, b"\x06" * 32):
        undo = UndoData(txs=(_UNDO, TxUndo()), governance=governance)
        assert UndoData.from_rlp(undo.to_rlp()) == undo


@pytest.mark.parametrize(
    "governance",
    [b"\x06" * 31, b"\x06" * 33, b"", [b"\x06" * 32], [[]]],
    ids=["31 bytes", "33 bytes", "empty bytes", "wrapped", "nested"],
)
def test_an_undo_record_with_a_malformed_governance_leaf_is_a_decode_error(governance) -> None:
    """The leaf before the block is 32 bytes or `[]` (none); anything else is refused."""
    with pytest.raises(DecodeError):
        UndoData.from_rlp([[_UNDO.to_rlp()], governance])
    with pytest.raises(DecodeError):  # the layout of before the governance leaf
        UndoData.from_rlp([_UNDO.to_rlp(), _UNDO.to_rlp(), _UNDO.to_rlp()])


@pytest.mark.parametrize(
    "damage",
    [
        "asset record with an extra field",
        "asset record missing a field",
        "asset name over 32 bytes",
        "spent entry with an extra field",
        "asset entry with an extra field",
    ],
)
def test_damaged_stored_records_fail_as_decode_errors(damage: str) -> None:
    """A record the store reads back is checked field by field like a wire object: a wrong
    shape is a DecodeError, never an unpacking error or a silently accepted value."""
    info = _INFO.to_rlp()
    undo = _UNDO.to_rlp()
    if damage == "asset record with an extra field":
        item, decoder = [*info, b"\x01"], AssetInfo.from_rlp
    elif damage == "asset record missing a field":
        item, decoder = info[:4], AssetInfo.from_rlp
    elif damage == "asset name over 32 bytes":
        item, decoder = [info[0], b"n" * 33, *info[2:]], AssetInfo.from_rlp
    elif damage == "spent entry with an extra field":
        item, decoder = [[[*undo[0][0], b"\x01"]], undo[1]], TxUndo.from_rlp
    else:
        item, decoder = [undo[0], [[*undo[1][0], b"\x01"]]], TxUndo.from_rlp
    with pytest.raises(DecodeError):
        decoder(item)
