"""Every ledger rule, each with the `Reason` it must report."""

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain import testing as pt
from p2pchain.errors import InvalidBlock, InvalidTransaction, Reason
from p2pchain.ledger.block import Block, compute_body_root
from p2pchain.ledger.evidence import Evidence, VoteEquivocation
from p2pchain.ledger.header import BlockHeader
from p2pchain.ledger.tx import (
    IssuePayload,
    Lock,
    LockKind,
    MintPayload,
    OutPoint,
    RewardPayload,
    SlashPayload,
    Transaction,
    TxInput,
    TxKind,
    TxOutput,
)
from p2pchain.ledger.types import AssetId, BlockId, PublicKey, TxId
from p2pchain.ledger.utxo import UtxoView
from p2pchain.ledger.validation import (
    BlockContext,
    check_transaction,
    connect_block,
    reward_lock,
    unbonding_lock,
    validate_transaction,
)
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.ledger.wallet import Coin, Wallet
from p2pchain.params import COIN
from p2pchain.testing import (
    FAST_PARAMS,
    FundedChain,
    build_block,
    funded_chain,
    sign_header,
    sign_vote,
    slashable_evidence,
    view_state,
    votes,
)
from p2pchain.testing.roots import state_root_after

NATIVE = AssetId(FAST_PARAMS.native_asset)
NOT_ON_CURVE = PublicKey(bytes(31) + b"\x05")  # x = 5 has no point on secp256k1


def next_context(view: UtxoView, slot: int | None = None) -> BlockContext:
    height = view.height + 1
    return BlockContext(height=height, slot=height if slot is None else slot)


def coins(chain: FundedChain, index: int) -> list[Coin]:
    return chain.view.utxos_of(chain.wallets[index].address)


def pay(to: Wallet, amount: int, asset: bytes = NATIVE, lock: Lock | None = None) -> TxOutput:
    return TxOutput(asset=AssetId(asset), amount=amount, address=to.address, lock=lock or Lock())


def signed(wallet, kind, spend, outputs, payload=None) -> Transaction:
    """A transaction spending `spend` with `outputs`, signed by `wallet` (valid or not)."""
    inputs = tuple(TxInput(outpoint=outpoint) for outpoint, _ in spend)
    tx = Transaction(kind=kind, inputs=inputs, outputs=tuple(outputs), payload=payload)
    return wallet.sign(tx)


def rejects(chain: FundedChain, tx: Transaction, context: BlockContext | None = None) -> Reason:
    """The reason `validate_transaction` gives; the view must be unchanged afterwards."""
    before = view_state(chain.view)
    with pytest.raises(InvalidTransaction) as info:
        validate_transaction(tx, chain.view, chain.params, context or next_context(chain.view))
    assert view_state(chain.view) == before
    return info.value.reason


def accepts(chain: FundedChain, tx: Transaction, context: BlockContext | None = None) -> int:
    return validate_transaction(tx, chain.view, chain.params, context or next_context(chain.view))


def mine(chain: FundedChain, txs=(), *, slot=None, reward_to=None) -> Block:
    block = build_block(
        chain.view, chain.params, txs, proposer=chain.validator, slot=slot, reward_to=reward_to
    )
    connect_block(chain.view, block, chain.params)
    return block


def block_rejects(chain: FundedChain, block: Block) -> Reason:
    before = view_state(chain.view)
    with pytest.raises(InvalidBlock) as info:
        connect_block(chain.view, block, chain.params)
    assert view_state(chain.view) == before
    return info.value.reason


# -- signatures and replay protection ------------------------------------------------------


@given(data=st.data())
def test_any_tampered_signature_is_rejected(data: st.DataObject) -> None:
    chain = funded_chain(2, params=FAST_PARAMS)
    sender, receiver = chain.wallets
    tx = sender.build_transfer(
        coins(chain, 0), [pay(receiver, 15 * COIN)], fee=100, context=next_context(chain.view)
    )
    assert len(tx.inputs) == 2
    index = data.draw(st.integers(min_value=0, max_value=len(tx.inputs) - 1))
    position = data.draw(st.integers(min_value=0, max_value=63))
    bit = data.draw(st.integers(min_value=0, max_value=7))
    signature = bytearray(tx.inputs[index].signature)
    signature[position] ^= 1 << bit
    inputs = list(tx.inputs)
    inputs[index] = replace(inputs[index], signature=bytes(signature))
    assert rejects(chain, tx.with_inputs(tuple(inputs))) is Reason.BAD_SIGNATURE
    assert accepts(chain, tx) == 100


@given(chain_id=st.integers(min_value=0, max_value=2**64 - 1))
def test_a_signature_for_another_chain_is_rejected(chain_id: int) -> None:
    chain = funded_chain(2, params=FAST_PARAMS)
    other = Wallet(chain.wallets[0].key, replace(FAST_PARAMS, chain_id=chain_id))
    spend = coins(chain, 0)[:1]
    tx = signed(other, TxKind.TRANSFER, spend, [pay(chain.wallets[1], COIN)])
    if chain_id == FAST_PARAMS.chain_id:
        assert accepts(chain, tx) == 9 * COIN
    else:
        assert rejects(chain, tx) is Reason.BAD_SIGNATURE


def test_witness_key_must_own_the_output(chain: FundedChain) -> None:
    thief = chain.wallets[1]
    tx = signed(thief, TxKind.TRANSFER, coins(chain, 0)[:1], [pay(thief, COIN)])
    assert rejects(chain, tx) is Reason.WITNESS_KEY_MISMATCH


# -- amounts, outpoints, structure ---------------------------------------------------------


@pytest.mark.parametrize(
    ("amounts", "reason"),
    [
        ([0], Reason.AMOUNT_OUT_OF_RANGE),
        ([FAST_PARAMS.max_money + 1], Reason.AMOUNT_OUT_OF_RANGE),
        ([FAST_PARAMS.max_money, 1], Reason.VALUE_OVERFLOW),
        ([FAST_PARAMS.max_money // 2 + 1] * 2, Reason.VALUE_OVERFLOW),
    ],
)
def test_amount_rules(chain: FundedChain, amounts: list[int], reason: Reason) -> None:
    receiver = chain.wallets[1]
    tx = signed(
        chain.wallets[0], TxKind.TRANSFER, coins(chain, 0), [pay(receiver, a) for a in amounts]
    )
    assert rejects(chain, tx) is reason


def test_max_money_output_is_in_range(chain: FundedChain) -> None:
    tx = signed(
        chain.wallets[1],
        TxKind.TRANSFER,
        coins(chain, 1),
        [pay(chain.wallets[2], FAST_PARAMS.max_money)],
    )
    assert rejects(chain, tx) is Reason.NEGATIVE_FEE  # in range; only the value rule fails


def test_missing_outpoint_is_rejected(chain: FundedChain) -> None:
    ghost = (OutPoint(txid=TxId(bytes(32)), index=7), coins(chain, 0)[0][1])
    tx = signed(chain.wallets[0], TxKind.TRANSFER, [ghost], [pay(chain.wallets[1], COIN)])
    assert rejects(chain, tx) is Reason.MISSING_INPUT


def test_duplicate_inputs_are_rejected(chain: FundedChain) -> None:
    coin = coins(chain, 0)[0]
    tx = signed(chain.wallets[0], TxKind.TRANSFER, [coin, coin], [pay(chain.wallets[1], COIN)])
    assert rejects(chain, tx) is Reason.DUPLICATE_INPUT


def test_no_inputs_or_no_outputs_are_rejected(chain: FundedChain) -> None:
    sender = chain.wallets[0]
    assert rejects(chain, Transaction(kind=TxKind.TRANSFER, outputs=(pay(sender, 1),))) is (
        Reason.NO_INPUTS
    )
    assert rejects(chain, signed(sender, TxKind.TRANSFER, coins(chain, 0), [])) is (
        Reason.NO_OUTPUTS
    )


def test_negative_fee_is_rejected(chain: FundedChain) -> None:
    tx = signed(
        chain.wallets[0],
        TxKind.TRANSFER,
        coins(chain, 0)[:1],
        [pay(chain.wallets[1], 10 * COIN + 1)],
    )
    assert rejects(chain, tx) is Reason.NEGATIVE_FEE


def test_ill_formed_lock_is_rejected(chain: FundedChain) -> None:
    bad = Lock(kind=LockKind.NONE, value=3)
    tx = signed(
        chain.wallets[0], TxKind.TRANSFER, coins(chain, 0)[:1], [pay(chain.wallets[1], 1, lock=bad)]
    )
    assert rejects(chain, tx) is Reason.BAD_LOCK


@pytest.mark.parametrize(
    ("limits", "reason"),
    [
        ({"max_tx_inputs": 1}, Reason.TOO_MANY_INPUTS),
        ({"max_tx_outputs": 1}, Reason.TOO_MANY_OUTPUTS),
        ({"max_tx_bytes": 200}, Reason.TX_TOO_LARGE),
    ],
)
def test_size_limits(limits: dict[str, int], reason: Reason) -> None:
    chain = funded_chain(2, params=replace(FAST_PARAMS, **limits))
    receiver = chain.wallets[1]
    tx = signed(
        chain.wallets[0], TxKind.TRANSFER, coins(chain, 0), [pay(receiver, 1), pay(receiver, 2)]
    )
    assert rejects(chain, tx) is reason


def test_size_limits_are_inclusive(chain: FundedChain) -> None:
    receiver = chain.wallets[1]
    tx = signed(
        chain.wallets[0], TxKind.TRANSFER, coins(chain, 0), [pay(receiver, 1), pay(receiver, 2)]
    )
    sizes = {
        "max_tx_inputs": (len(tx.inputs), Reason.TOO_MANY_INPUTS),
        "max_tx_outputs": (len(tx.outputs), Reason.TOO_MANY_OUTPUTS),
        "max_tx_bytes": (tx.size, Reason.TX_TOO_LARGE),
    }
    for field, (size, reason) in sizes.items():
        check_transaction(tx, replace(chain.params, **{field: size}))
        with pytest.raises(InvalidTransaction) as info:
            check_transaction(tx, replace(chain.params, **{field: size - 1}))
        assert info.value.reason is reason


# -- locks -----------------------------------------------------------------------------------


def _mine_reward(chain: FundedChain, owner: Wallet) -> tuple[Coin, int]:
    """Mine a block rewarding `owner`; return the reward coin and the height it matures at."""
    rewarded = mine(chain, reward_to=owner.address)
    reward = rewarded.transactions[0]
    maturity = rewarded.header.height + chain.params.reward_maturity
    return (OutPoint(txid=reward.txid, index=0), reward.outputs[0]), maturity


@pytest.mark.parametrize(("offset", "ok"), [(-1, False), (0, True), (1, True)])
def test_reward_matures_at_its_height_lock(chain: FundedChain, offset: int, ok: bool) -> None:
    owner = chain.wallets[1]
    reward_coin, maturity = _mine_reward(chain, owner)
    assert reward_coin[1].lock == Lock(kind=LockKind.HEIGHT, value=maturity)
    tx = signed(owner, TxKind.TRANSFER, [reward_coin], [pay(owner, COIN)])
    context = BlockContext(height=maturity + offset, slot=maturity + offset)
    if ok:
        assert accepts(chain, tx, context) == chain.params.block_reward - COIN
    else:
        assert rejects(chain, tx, context) is Reason.IMMATURE


@pytest.mark.parametrize(("epoch", "ok"), [(4, False), (5, True), (6, True)])
def test_epoch_lock(chain: FundedChain, epoch: int, ok: bool) -> None:
    owner = chain.wallets[1]
    lock = Lock(kind=LockKind.EPOCH, value=5)
    tx = owner.build_transfer(
        coins(chain, 1), [pay(owner, COIN, lock=lock)], fee=0, context=next_context(chain.view)
    )
    mine(chain, [tx])
    locked = (OutPoint(txid=tx.txid, index=0), tx.outputs[0])
    spend = signed(owner, TxKind.TRANSFER, [locked], [pay(owner, COIN)])
    slot = epoch * chain.params.slots_per_epoch
    context = BlockContext(height=chain.view.height + 1, slot=slot)
    if ok:
        assert accepts(chain, spend, context) == 0
    else:
        assert rejects(chain, spend, context) is Reason.LOCKED
        last_slot = BlockContext(
            height=chain.view.height + 1, slot=slot + chain.params.slots_per_epoch - 1
        )
        assert rejects(chain, spend, last_slot) is Reason.LOCKED


def _stake_coin(chain: FundedChain) -> Coin:
    (stake,) = [c for c in coins(chain, 0) if c[1].lock.kind is LockKind.STAKE]
    return stake


@pytest.mark.parametrize("kind", [TxKind.TRANSFER, TxKind.BOND])
def test_stake_is_spendable_only_by_unbond(chain: FundedChain, kind: TxKind) -> None:
    owner = chain.wallets[0]
    stake = _stake_coin(chain)
    lock = Lock(kind=LockKind.STAKE, key=chain.validator.public_key)
    out = pay(owner, stake[1].amount, lock=lock if kind is TxKind.BOND else None)
    assert rejects(chain, signed(owner, kind, [stake], [out])) is Reason.STAKE_LOCKED


def test_unbonding_output_is_locked_until_its_epoch(chain: FundedChain) -> None:
    owner = chain.wallets[0]
    context = next_context(chain.view)
    unbond = owner.build_unbond([_stake_coin(chain)], fee=10, context=context)
    assert accepts(chain, unbond) == 10
    mine(chain, [unbond])
    released = (OutPoint(txid=unbond.txid, index=0), unbond.outputs[0])
    until = context.epoch(chain.params) + chain.params.unbonding_epochs
    expected = unbonding_lock(chain.validator.public_key, context.epoch(chain.params), chain.params)
    assert released[1].lock == expected
    assert expected.value == until
    assert chain.view.bonded_stake() == {}
    spend = signed(owner, TxKind.TRANSFER, [released], [pay(owner, COIN)])
    spe = chain.params.slots_per_epoch
    height = chain.view.height + 1
    assert rejects(chain, spend, BlockContext(height=height, slot=until * spe - 1)) is Reason.LOCKED
    assert accepts(chain, spend, BlockContext(height=height, slot=until * spe)) > 0


# -- assets --------------------------------------------------------------------------------


def _issue(chain: FundedChain, *, amount: int = 1_000, cap: int = 0) -> AssetId:
    issuer = chain.wallets[1]
    tx, asset = issuer.build_issue(
        coins(chain, 1),
        name=b"carbon",
        amount=amount,
        cap=cap,
        fee=0,
        context=next_context(chain.view),
    )
    mine(chain, [tx])
    info = chain.view.asset(asset)
    assert info is not None
    assert (info.issuer, info.cap, info.issued, info.name) == (
        issuer.address,
        cap,
        amount,
        b"carbon",
    )
    return asset


def test_issue_over_its_cap_is_rejected(chain: FundedChain) -> None:
    issuer = chain.wallets[1]
    tx, _ = issuer.build_issue(
        coins(chain, 1), name=b"c", amount=11, cap=10, fee=0, context=next_context(chain.view)
    )
    assert rejects(chain, tx) is Reason.CAP_EXCEEDED


@pytest.mark.parametrize(("name", "cap"), [(b"", 0), (b"x", FAST_PARAMS.max_money + 1)])
def test_issue_payload_rules(chain: FundedChain, name: bytes, cap: int) -> None:
    issuer = chain.wallets[1]
    spend = coins(chain, 1)[:1]
    tx = signed(issuer, TxKind.ISSUE, spend, [pay(issuer, COIN)], IssuePayload(name=name, cap=cap))
    expected = Reason.BAD_ASSET_NAME if not name else Reason.AMOUNT_OUT_OF_RANGE
    assert rejects(chain, tx) is expected


def test_only_the_issuer_may_mint(chain: FundedChain) -> None:
    asset = _issue(chain)
    outsider = chain.wallets[2]
    tx = outsider.build_mint(
        coins(chain, 2), asset=asset, amount=5, fee=0, context=next_context(chain.view)
    )
    assert rejects(chain, tx) is Reason.NOT_ISSUER
    issuer = chain.wallets[1]
    tx = issuer.build_mint(
        coins(chain, 1), asset=asset, amount=5, fee=0, context=next_context(chain.view)
    )
    mine(chain, [tx])
    info = chain.view.asset(asset)
    assert info is not None
    assert info.issued == 1_005
    assert chain.view.balance(issuer.address, asset) == 1_005


def test_mint_beyond_the_cap_is_rejected(chain: FundedChain) -> None:
    asset = _issue(chain, amount=90, cap=100)
    issuer = chain.wallets[1]
    context = next_context(chain.view)
    assert (
        accepts(
            chain,
            issuer.build_mint(coins(chain, 1), asset=asset, amount=10, fee=0, context=context),
        )
        == 0
    )
    too_much = issuer.build_mint(coins(chain, 1), asset=asset, amount=11, fee=0, context=context)
    assert rejects(chain, too_much) is Reason.CAP_EXCEEDED


def test_mint_of_an_unknown_asset_is_rejected(chain: FundedChain) -> None:
    issuer = chain.wallets[1]
    unknown = AssetId(b"\x07" * 32)
    tx = issuer.build_mint(
        coins(chain, 1), asset=unknown, amount=1, fee=0, context=next_context(chain.view)
    )
    assert rejects(chain, tx) is Reason.UNKNOWN_ASSET


def test_mint_that_creates_nothing_is_rejected(chain: FundedChain) -> None:
    asset = _issue(chain)
    issuer = chain.wallets[1]
    spend = [c for c in coins(chain, 1) if c[1].asset == NATIVE][:1]
    tx = signed(issuer, TxKind.MINT, spend, [pay(issuer, COIN)], MintPayload(asset=asset))
    assert rejects(chain, tx) is Reason.VALUE_NOT_CONSERVED


def test_transfer_cannot_create_asset_units(chain: FundedChain) -> None:
    asset = _issue(chain, amount=50)
    holder = chain.wallets[1]
    held = [c for c in coins(chain, 1) if c[1].asset == asset]
    tx = signed(holder, TxKind.TRANSFER, held, [pay(holder, 51, asset)])
    assert rejects(chain, tx) is Reason.VALUE_NOT_CONSERVED
    unheld = signed(
        holder,
        TxKind.TRANSFER,
        [c for c in coins(chain, 1) if c[1].asset == NATIVE][:1],
        [pay(holder, 1, b"\x09" * 32)],
    )
    assert rejects(chain, unheld) is Reason.UNKNOWN_ASSET


def test_every_asset_of_a_transfer_is_conserved_whatever_its_output_order(
    chain: FundedChain,
) -> None:
    """Outputs of the native asset (or of another asset) first must not end the check before
    a later asset's outputs are counted."""
    asset = _issue(chain, amount=50)
    holder = chain.wallets[1]
    held = [c for c in coins(chain, 1) if c[1].asset == asset]
    native = [c for c in coins(chain, 1) if c[1].asset == NATIVE][:1]
    value = native[0][1].amount
    tx = signed(
        holder, TxKind.TRANSFER, native + held, [pay(holder, value), pay(holder, 5_000, asset)]
    )
    assert rejects(chain, tx) is Reason.VALUE_NOT_CONSERVED
    honest = signed(
        holder, TxKind.TRANSFER, native + held, [pay(holder, value), pay(holder, 50, asset)]
    )
    assert accepts(chain, honest) == 0


def test_a_mint_that_moves_old_units_counts_only_the_new_ones_against_the_cap(
    chain: FundedChain,
) -> None:
    """Issued 10 of cap 45: spending the 10 into 40 mints 30 (40 in all), within the cap."""
    asset = _issue(chain, amount=10, cap=45)
    issuer = chain.wallets[1]
    old = [c for c in coins(chain, 1) if c[1].asset == asset]
    native = [c for c in coins(chain, 1) if c[1].asset == NATIVE][:1]
    value = native[0][1].amount
    tx = signed(
        issuer,
        TxKind.MINT,
        native + old,
        [pay(issuer, value), pay(issuer, 40, asset)],
        MintPayload(asset=asset),
    )
    mine(chain, [tx])
    info = chain.view.asset(asset)
    assert info is not None
    assert info.issued == 40


def test_minting_up_to_max_money_is_allowed_and_one_unit_more_overflows() -> None:
    params = replace(FAST_PARAMS, max_money=1_000 * COIN)
    chain = funded_chain(3, params=params)
    asset = _issue(chain, amount=params.max_money - 100)
    issuer = chain.wallets[1]
    context = next_context(chain.view)
    spend = [c for c in coins(chain, 1) if c[1].asset == NATIVE][:1]
    exact = issuer.build_mint(spend, asset=asset, amount=100, fee=0, context=context)
    over = issuer.build_mint(spend, asset=asset, amount=101, fee=0, context=context)
    assert rejects(chain, over) is Reason.VALUE_OVERFLOW
    assert accepts(chain, exact) == 0


def test_asset_names_and_caps_reach_their_bounds_inclusively(chain: FundedChain) -> None:
    issuer = chain.wallets[1]
    spend = coins(chain, 1)[:1]
    longest = b"n" * chain.params.max_asset_name_bytes
    widest = IssuePayload(name=longest, cap=chain.params.max_money)
    tx = signed(issuer, TxKind.ISSUE, spend, [pay(issuer, COIN)], widest)
    assert accepts(chain, tx) >= 0


def test_a_block_reads_locks_at_its_own_height(chain: FundedChain) -> None:
    """connect_block checks each transaction where the block sits: a reward spent one block
    before it matures fails there, and the same spend one block later is accepted."""
    owner = chain.wallets[1]
    reward_coin, maturity = _mine_reward(chain, owner)
    while chain.view.height < maturity - 2:
        mine(chain)
    spend = signed(owner, TxKind.TRANSFER, [reward_coin], [pay(owner, COIN)])
    early = build_block(chain.view, chain.params, [spend], proposer=chain.validator)
    assert early.header.height == maturity - 1
    assert block_rejects(chain, early) is Reason.IMMATURE
    mine(chain)
    mine(chain, [spend])
    assert chain.view.get(reward_coin[0]) is None


def test_a_block_that_fails_after_applying_some_transactions_leaves_the_view_unchanged(
    chain: FundedChain,
) -> None:
    sender, receiver = chain.wallets[0], chain.wallets[1]
    context = next_context(chain.view)
    good = sender.build_transfer(coins(chain, 0), [pay(receiver, COIN)], fee=0, context=context)
    bad = signed(receiver, TxKind.TRANSFER, coins(chain, 1), [pay(receiver, 10**15)])
    block = build_block(chain.view, chain.params, [good, bad], proposer=chain.validator)
    assert block_rejects(chain, block) is Reason.NEGATIVE_FEE  # after `good` was applied


def test_block_signature_checks_are_asked_about_each_transaction_and_its_id(
    chain: FundedChain,
) -> None:
    sender, receiver = chain.wallets[0], chain.wallets[1]
    context = next_context(chain.view)
    first = sender.build_transfer(coins(chain, 0)[:1], [pay(receiver, 1)], fee=0, context=context)
    second = receiver.build_transfer(coins(chain, 1), [pay(sender, 1)], fee=0, context=context)
    block = build_block(chain.view, chain.params, [first, second], proposer=chain.validator)
    asked: list[tuple[Transaction, TxId]] = []

    def record(tx: Transaction, txid: TxId) -> bool:
        asked.append((tx, txid))
        return True

    connect_block(chain.view, block, chain.params, signatures_valid=record)
    assert asked == [(first, first.txid), (second, second.txid)]
    spend = sender.build_transfer(
        coins(chain, 0)[:1], [pay(receiver, 1)], fee=0, context=next_context(chain.view)
    )
    refused = build_block(chain.view, chain.params, [spend], proposer=chain.validator)
    before = view_state(chain.view)
    with pytest.raises(InvalidBlock) as info:
        connect_block(chain.view, refused, chain.params, signatures_valid=lambda tx, txid: False)
    assert info.value.reason is Reason.BAD_SIGNATURE
    assert view_state(chain.view) == before


def test_a_block_may_hold_exactly_max_block_txs(chain: FundedChain) -> None:
    params = replace(chain.params, max_block_txs=2)
    sender, receiver = chain.wallets[0], chain.wallets[1]
    context = next_context(chain.view)
    payment = sender.build_transfer(coins(chain, 0), [pay(receiver, COIN)], fee=0, context=context)
    block = build_block(chain.view, params, [payment], proposer=chain.validator)
    connect_block(chain.view, block, params)
    assert chain.view.tip == block.block_id
    crowded = build_block(
        chain.view,
        params,
        [
            receiver.build_transfer(
                coins(chain, 1), [pay(sender, 1)], fee=0, context=next_context(chain.view)
            ),
            sender.build_transfer(
                coins(chain, 0)[:1], [pay(receiver, 1)], fee=0, context=next_context(chain.view)
            ),
        ],
        proposer=chain.validator,
    )
    with pytest.raises(InvalidBlock) as info:
        connect_block(chain.view, crowded, params)
    assert info.value.reason is Reason.BLOCK_TOO_LARGE


# -- staking -------------------------------------------------------------------------------


def _bond(chain: FundedChain, key: bytes, amount: int, asset: bytes = NATIVE) -> Transaction:
    owner = chain.wallets[1]
    lock = Lock(kind=LockKind.STAKE, key=key)
    spend = coins(chain, 1)
    return signed(owner, TxKind.BOND, spend, [pay(owner, amount, asset, lock=lock)])


def test_bond_rules(chain: FundedChain) -> None:
    key = chain.wallets[2].public_key
    assert rejects(chain, _bond(chain, key, chain.params.min_stake - 1)) is Reason.STAKE_TOO_SMALL
    assert rejects(chain, _bond(chain, NOT_ON_CURVE, COIN)) is Reason.BAD_STAKE_OUTPUT
    assert rejects(chain, _bond(chain, key, COIN, b"\x01" * 32)) is Reason.BAD_STAKE_OUTPUT
    owner = chain.wallets[1]
    no_stake = signed(owner, TxKind.BOND, coins(chain, 1), [pay(owner, COIN)])
    assert rejects(chain, no_stake) is Reason.BAD_STAKE_OUTPUT
    stake_lock = Lock(kind=LockKind.STAKE, key=key)
    transfer = signed(owner, TxKind.TRANSFER, coins(chain, 1), [pay(owner, COIN, lock=stake_lock)])
    assert rejects(chain, transfer) is Reason.BAD_STAKE_OUTPUT
    good = _bond(chain, key, chain.params.min_stake)
    assert accepts(chain, good) == 20 * COIN - chain.params.min_stake
    mine(chain, [good])
    assert chain.view.bonded_stake()[PublicKey(key)] == chain.params.min_stake


def test_unbond_shape_rules(chain: FundedChain) -> None:
    owner = chain.wallets[0]
    context = next_context(chain.view)
    stake = _stake_coin(chain)
    plain = [c for c in coins(chain, 0) if c[1].lock.kind is LockKind.NONE]
    key = chain.validator.public_key
    right = unbonding_lock(key, context.epoch(chain.params), chain.params)
    wrong_epoch = replace(right, value=right.value + 1)
    cases = [
        ([plain[0]], [pay(owner, COIN, lock=right)]),  # spends no stake
        ([stake, plain[0]], [pay(owner, COIN, lock=right)]),  # mixes stake with plain coins
        ([stake], [pay(owner, COIN, lock=wrong_epoch)]),  # unlocks at the wrong epoch
        ([stake], [pay(owner, COIN)]),  # output not unbonding
        ([stake], [pay(owner, COIN, lock=right), pay(owner, COIN)]),
        ([stake], [pay(owner, COIN, b"\x02" * 32, lock=right)]),  # not native
    ]
    for spend, outputs in cases:
        assert rejects(chain, signed(owner, TxKind.UNBOND, spend, outputs)) is Reason.BAD_UNBOND
    transfer = signed(owner, TxKind.TRANSFER, plain[:1], [pay(owner, COIN, lock=right)])
    assert rejects(chain, transfer) is Reason.BAD_UNBOND
    assert accepts(chain, signed(owner, TxKind.UNBOND, [stake], [pay(owner, COIN, lock=right)])) > 0


def test_unbond_of_two_validators_at_once_is_rejected(chain: FundedChain) -> None:
    owner = chain.wallets[0]
    other_key = chain.wallets[2].public_key
    bond = owner.build_bond(
        coins(chain, 0), validator=other_key, amount=COIN, fee=0, context=next_context(chain.view)
    )
    mine(chain, [bond])
    stakes = [c for c in coins(chain, 0) if c[1].lock.kind is LockKind.STAKE]
    assert len(stakes) == 2
    context = next_context(chain.view)
    lock = unbonding_lock(chain.validator.public_key, context.epoch(chain.params), chain.params)
    tx = signed(owner, TxKind.UNBOND, stakes, [pay(owner, COIN, lock=lock)])
    assert rejects(chain, tx) is Reason.BAD_UNBOND


# -- slashing ------------------------------------------------------------------------------


def _slash(evidence: Evidence) -> Transaction:
    return Transaction(kind=TxKind.SLASH, payload=SlashPayload(evidence=evidence))


@given(data=st.data())
def test_valid_evidence_burns_stake_and_unbonding_outputs(data: st.DataObject) -> None:
    chain = funded_chain(3, params=FAST_PARAMS)
    key = chain.validator.public_key
    owner, backer = chain.wallets[0], chain.wallets[1]
    context = next_context(chain.view)
    unbond = owner.build_unbond([_stake_coin(chain)], fee=0, context=context)
    bond = backer.build_bond(coins(chain, 1), validator=key, amount=COIN, fee=0, context=context)
    mine(chain, [unbond, bond])
    slashable = chain.view.slashable_outpoints(key)
    assert len(slashable) == 2  # one unbonding, one bonded
    burned = sum(chain.view.get(op).amount for op in slashable)
    supply = sum(output.amount for _, output in chain.view)
    evidence = data.draw(slashable_evidence(chain.validator, chain.params.chain_id))
    assert accepts(chain, _slash(evidence)) == 0
    block = mine(chain, [_slash(evidence)])
    assert chain.view.slashable_outpoints(key) == []
    assert key not in chain.view.bonded_stake()
    reward = sum(o.amount for o in block.transactions[0].outputs)
    assert sum(output.amount for _, output in chain.view) == supply - burned + reward
    assert rejects(chain, _slash(evidence)) is Reason.NOTHING_TO_SLASH


@given(data=st.data())
def test_evidence_against_a_key_without_stake_has_nothing_to_slash(data: st.DataObject) -> None:
    chain = funded_chain(2, params=FAST_PARAMS)
    evidence = data.draw(slashable_evidence(chain.wallets[1].key, chain.params.chain_id))
    assert rejects(chain, _slash(evidence)) is Reason.NOTHING_TO_SLASH


@given(data=st.data(), chain_id=st.integers(min_value=0, max_value=2**64 - 1))
def test_evidence_signed_for_another_chain_is_rejected(data: st.DataObject, chain_id: int) -> None:
    chain = funded_chain(2, params=FAST_PARAMS)
    evidence = data.draw(slashable_evidence(chain.validator, chain_id))
    if chain_id == chain.params.chain_id:
        assert accepts(chain, _slash(evidence)) == 0
    else:
        assert rejects(chain, _slash(evidence)) is Reason.BAD_EVIDENCE


@given(vote=votes())
def test_votes_that_do_not_conflict_are_not_evidence(vote: Vote) -> None:
    chain = funded_chain(2, params=FAST_PARAMS)
    key, chain_id = chain.validator, chain.params.chain_id
    mine_vote = sign_vote(replace(vote, validator=key.public_key), key, chain_id)
    same = VoteEquivocation(first=mine_vote, second=mine_vote)
    assert rejects(chain, _slash(same)) is Reason.BAD_EVIDENCE
    other_key = chain.wallets[1].key
    theirs = sign_vote(
        replace(vote, validator=other_key.public_key, head=BlockId(bytes(32))), other_key, chain_id
    )
    two_validators = VoteEquivocation(first=mine_vote, second=theirs)
    assert rejects(chain, _slash(two_validators)) is Reason.BAD_EVIDENCE


def test_slash_transaction_carries_no_value(chain: FundedChain) -> None:
    evidence = VoteEquivocation(first=_vote(chain, 1), second=_vote(chain, 2))
    spend = coins(chain, 1)[:1]
    inputs = tuple(TxInput(outpoint=op) for op, _ in spend)
    tx = Transaction(kind=TxKind.SLASH, inputs=inputs, payload=SlashPayload(evidence=evidence))
    assert rejects(chain, tx) is Reason.BAD_TX_KIND
    assert accepts(chain, _slash(evidence)) == 0


def _vote(chain: FundedChain, head_byte: int) -> Vote:
    key = chain.validator
    vote = Vote(
        slot=3,
        head=BlockId(bytes([head_byte]) * 32),
        source=Checkpoint(epoch=0, block_id=chain.genesis.block_id),
        target=Checkpoint(epoch=1, block_id=BlockId(bytes([head_byte]) * 32)),
        validator=key.public_key,
        signature=bytes(64),
    )
    return sign_vote(vote, key, chain.params.chain_id)


# -- blocks and rewards ----------------------------------------------------------------------


def _with_body(chain: FundedChain, body: list[Transaction], height: int | None = None) -> Block:
    """A correctly signed block with exactly `body` (reward included) on the view's tip."""
    header = BlockHeader(
        parent=chain.view.tip,
        height=chain.view.height + 1 if height is None else height,
        slot=chain.view.height + 1,
        proposer=chain.validator.public_key,
        body_root=compute_body_root(tuple(body), ()),
        state_root=state_root_after(chain.view, body),
    )
    signature = sign_header(header, chain.validator, chain.params.chain_id).signature
    return Block(header=header, signature=signature, transactions=tuple(body))


def _reward(
    chain: FundedChain, amount: int, *, height: int | None = None, lock: Lock | None = None
) -> Transaction:
    height = chain.view.height + 1 if height is None else height
    output = TxOutput(
        asset=NATIVE,
        amount=amount,
        address=chain.wallets[2].address,
        lock=reward_lock(height, chain.params) if lock is None else lock,
    )
    return Transaction(kind=TxKind.REWARD, outputs=(output,), payload=RewardPayload(height=height))


def test_reward_may_claim_block_reward_plus_fees_and_no_more(chain: FundedChain) -> None:
    transfer = chain.wallets[1].build_transfer(
        coins(chain, 1), [pay(chain.wallets[2], COIN)], fee=777, context=next_context(chain.view)
    )
    limit = chain.params.block_reward + 777
    assert (
        block_rejects(chain, _with_body(chain, [_reward(chain, limit + 1), transfer]))
        is Reason.BAD_REWARD
    )
    connect_block(chain.view, _with_body(chain, [_reward(chain, limit), transfer]), chain.params)
    assert chain.view.balance(chain.wallets[2].address, NATIVE) == 20 * COIN + COIN + limit


def test_reward_paying_less_burns_the_rest(chain: FundedChain) -> None:
    supply = sum(output.amount for _, output in chain.view)
    connect_block(chain.view, _with_body(chain, [_reward(chain, 1)]), chain.params)
    assert sum(output.amount for _, output in chain.view) == supply + 1


@pytest.mark.parametrize(
    "lock",
    [
        Lock(),
        Lock(kind=LockKind.HEIGHT, value=1),
        Lock(kind=LockKind.EPOCH, value=1 + FAST_PARAMS.reward_maturity),
    ],
)
def test_reward_must_be_locked_to_maturity(chain: FundedChain, lock: Lock) -> None:
    block = _with_body(chain, [_reward(chain, COIN, lock=lock)])
    assert block_rejects(chain, block) is Reason.BAD_REWARD


def test_reward_must_name_the_block_height(chain: FundedChain) -> None:
    block = _with_body(chain, [_reward(chain, COIN, height=5)])
    assert block_rejects(chain, block) is Reason.BAD_REWARD


def test_reward_must_be_first_and_only_first(chain: FundedChain) -> None:
    transfer = chain.wallets[1].build_transfer(
        coins(chain, 1), [pay(chain.wallets[2], COIN)], fee=0, context=next_context(chain.view)
    )
    assert block_rejects(chain, _with_body(chain, [transfer])) is Reason.BAD_REWARD
    assert block_rejects(chain, _with_body(chain, [])) is Reason.BAD_REWARD
    twice = [_reward(chain, COIN), transfer, _reward(chain, COIN)]
    assert block_rejects(chain, _with_body(chain, twice)) is Reason.MISPLACED_REWARD
    assert rejects(chain, _reward(chain, COIN)) is Reason.MISPLACED_REWARD


def test_reward_without_outputs_or_with_inputs_is_rejected(chain: FundedChain) -> None:
    empty = Transaction(kind=TxKind.REWARD, payload=RewardPayload(height=1))
    assert block_rejects(chain, _with_body(chain, [empty])) is Reason.BAD_REWARD
    spend = tuple(TxInput(outpoint=op) for op, _ in coins(chain, 1)[:1])
    with_input = replace(_reward(chain, COIN), inputs=spend)
    assert block_rejects(chain, _with_body(chain, [with_input])) is Reason.BAD_REWARD


def test_block_must_extend_the_tip(chain: FundedChain) -> None:
    wrong_height = _with_body(chain, [_reward(chain, COIN, height=2)], height=2)
    assert block_rejects(chain, wrong_height) is Reason.BAD_PARENT
    block = build_block(chain.view, chain.params, proposer=chain.validator)
    connect_block(chain.view, block, chain.params)
    assert block_rejects(chain, block) is Reason.BAD_PARENT


def test_conflicting_spends_within_a_block_are_rejected(chain: FundedChain) -> None:
    sender = chain.wallets[1]
    context = next_context(chain.view)
    first = sender.build_transfer(
        coins(chain, 1), [pay(chain.wallets[2], COIN)], fee=0, context=context
    )
    second = sender.build_transfer(
        coins(chain, 1), [pay(chain.wallets[0], COIN)], fee=0, context=context
    )
    assert first.inputs[0].outpoint == second.inputs[0].outpoint
    block = build_block(chain.view, chain.params, [first, second], proposer=chain.validator)
    assert block_rejects(chain, block) is Reason.CONFLICTING_SPEND
    duplicate = build_block(chain.view, chain.params, [first, first], proposer=chain.validator)
    assert block_rejects(chain, duplicate) is Reason.DUPLICATE_TX


def test_outputs_can_be_spent_later_in_the_same_block(chain: FundedChain) -> None:
    a, b, c = chain.wallets
    context = next_context(chain.view)
    first = a.build_transfer(
        [x for x in coins(chain, 0) if x[1].lock.kind is LockKind.NONE],
        [pay(b, 2 * COIN)],
        fee=0,
        context=context,
    )
    received = [(OutPoint(txid=first.txid, index=0), first.outputs[0])]
    second = b.build_transfer(received, [pay(c, 10**8)], fee=5, context=context)
    mine(chain, [first, second])
    assert chain.view.balance(c.address, NATIVE) == 21 * COIN


def test_too_many_transactions_in_a_block(chain: FundedChain) -> None:
    params = replace(FAST_PARAMS, max_block_txs=1)
    transfer = chain.wallets[1].build_transfer(
        coins(chain, 1), [pay(chain.wallets[2], COIN)], fee=0, context=next_context(chain.view)
    )
    block = build_block(chain.view, params, [transfer], proposer=chain.validator)
    before = view_state(chain.view)
    with pytest.raises(InvalidBlock) as info:
        connect_block(chain.view, block, params)
    assert info.value.reason is Reason.BLOCK_TOO_LARGE
    assert view_state(chain.view) == before


# -- hostile input -------------------------------------------------------------------------


@st.composite
def hostile_transactions(draw: st.DrawFn, chain: FundedChain) -> Transaction:
    """Any kind, spending real or made-up outpoints, paying real or made-up assets, often signed."""
    real = [outpoint for outpoint, _ in chain.view]
    outpoints = st.sampled_from(real) | pt.outpoints()
    assets = st.sampled_from([NATIVE, *chain.view.assets()]) | pt.asset_ids()
    amounts = st.integers(min_value=0, max_value=20 * COIN) | pt.uint64s()
    kind = draw(st.sampled_from(TxKind))
    tx = Transaction(
        kind=kind,
        inputs=tuple(
            TxInput(outpoint=op) for op in draw(st.lists(outpoints, max_size=3, unique=True))
        ),
        outputs=tuple(draw(st.lists(pt.tx_outputs(assets, amounts), max_size=3))),
        payload=draw(pt.payloads(kind)),
    )
    spent = [chain.view.get(tx_input.outpoint) for tx_input in tx.inputs]
    owners = [w for w in chain.wallets for o in spent if o is not None and o.address == w.address]
    signer = draw(st.sampled_from([*owners[:1], *chain.wallets]) | st.none())
    return tx if signer is None else signer.sign(tx)


@given(data=st.data())
def test_hostile_transactions_raise_only_invalid_transaction(data: st.DataObject) -> None:
    chain = funded_chain(3, params=FAST_PARAMS)
    tx = data.draw(hostile_transactions(chain))
    slot = data.draw(st.integers(min_value=1, max_value=100))
    context = BlockContext(height=chain.view.height + 1, slot=slot)
    before = view_state(chain.view)
    try:
        fee = validate_transaction(tx, chain.view, chain.params, context)
    except InvalidTransaction:
        assert view_state(chain.view) == before
        return
    assert fee >= 0
    assert view_state(chain.view) == before
    block = build_block(chain.view, chain.params, [tx], proposer=chain.validator, slot=slot)
    connect_block(chain.view, block, chain.params)


@given(block=pt.blocks())
def test_arbitrary_blocks_raise_only_invalid_block(block: Block) -> None:
    chain = funded_chain(2, params=FAST_PARAMS)
    header = replace(block.header, parent=chain.view.tip, height=1)
    before = view_state(chain.view)
    supply = sum(output.amount for _, output in chain.view)
    try:
        connect_block(chain.view, replace(block, header=header), chain.params)
    except InvalidBlock:
        assert view_state(chain.view) == before
    else:  # only a lone, well-formed reward can pass
        assert len(block.transactions) == 1
        assert supply < sum(o.amount for _, o in chain.view) <= supply + chain.params.block_reward
