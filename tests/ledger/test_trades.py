"""Atomic trades on the ledger: standing offers, partially signed swaps and retirements.

An offer's signature covers one coin, the output at the input's own index and an expiry; the
rules must let any taker complete the trade and must stop every way of paying the maker less.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from p2pchain import testing as pt
from p2pchain.errors import (
    DecodeError,
    InvalidOffer,
    InvalidPartial,
    InvalidTransaction,
    Reason,
)
from p2pchain.ledger.encoding import decode, encode, encode_item
from p2pchain.ledger.offer import MAX_OFFER_BYTES, Offer, check_offer, offer_price, sign_offer
from p2pchain.ledger.partial import PartialTransaction, combine
from p2pchain.ledger.tx import (
    Lock,
    LockKind,
    RetirePayload,
    Transaction,
    TxInput,
    TxKind,
    TxOutput,
)
from p2pchain.ledger.types import Amount, AssetId, Height
from p2pchain.ledger.utxo import UtxoView
from p2pchain.ledger.validation import BlockContext, connect_block, validate_transaction
from p2pchain.ledger.wallet import Coin, Wallet
from p2pchain.params import COIN
from p2pchain.testing import FAST_PARAMS, FundedChain, build_block, funded_chain

NATIVE = AssetId(FAST_PARAMS.native_asset)
PRICE = 5 * COIN
LOT = 400
UNTIL = Height(50)


def next_context(view: UtxoView, height: int | None = None) -> BlockContext:
    height = view.height + 1 if height is None else height
    return BlockContext(height=Height(height), slot=height)


def mine(chain: FundedChain, txs: list[Transaction]) -> None:
    block = build_block(chain.view, chain.params, txs, proposer=chain.validator)
    connect_block(chain.view, block, chain.params)


def coins(chain: FundedChain, wallet: Wallet) -> list[Coin]:
    return chain.view.utxos_of(wallet.address)


def reason(chain: FundedChain, tx: Transaction, context: BlockContext | None = None) -> Reason:
    with pytest.raises(InvalidTransaction) as info:
        validate_transaction(tx, chain.view, chain.params, context or next_context(chain.view))
    return info.value.reason


@dataclass(frozen=True)
class Market:
    """A registry holding credits in lots of `LOT`, and a buyer with native coins."""

    chain: FundedChain
    credit: AssetId
    registry: Wallet
    buyer: Wallet

    def lots(self) -> list[Coin]:
        return [c for c in coins(self.chain, self.registry) if c[1].asset == self.credit]

    def offer(self, lot: Coin, price: int = PRICE, until: Height = UNTIL) -> Offer:
        wanted = TxOutput(asset=NATIVE, amount=Amount(price), address=self.registry.address)
        return self.registry.make_offer(lot, wanted, until=until)

    def take(self, *offers: tuple[Offer, TxOutput], fee: int = 1_000) -> Transaction:
        return self.buyer.build_take(
            offers,
            coins(self.chain, self.buyer),
            fee=Amount(fee),
            context=next_context(self.chain.view),
        )


def open_market() -> Market:
    """A fresh market: issue 1,200 credits, split into three lots of 400 (two blocks)."""
    chain = funded_chain(3, params=FAST_PARAMS)
    registry, buyer = chain.wallets[1], chain.wallets[2]
    issue, credit = registry.build_issue(
        coins(chain, registry),
        name=b"CO2-t",
        amount=Amount(3 * LOT),
        cap=10_000,
        fee=Amount(0),
        context=next_context(chain.view),
    )
    mine(chain, [issue])
    lots = [TxOutput(asset=credit, amount=Amount(LOT), address=registry.address)] * 3
    split = registry.build_transfer(
        coins(chain, registry), lots, fee=Amount(0), context=next_context(chain.view)
    )
    mine(chain, [split])
    return Market(chain=chain, credit=credit, registry=registry, buyer=buyer)


@functools.cache
def shared_market() -> Market:
    """One market for the read-only property tests (validation never changes the view)."""
    return open_market()


# -- offers ------------------------------------------------------------------------------------


def test_anyone_takes_an_offer_without_the_maker() -> None:
    market = open_market()
    lot = market.lots()[0]
    offer = market.offer(lot)
    check_offer(offer, lot[1], market.chain.params, Height(market.chain.view.height + 1))
    before = market.chain.view.balance(market.registry.address, NATIVE)
    tx = market.take((offer, lot[1]))
    assert (
        validate_transaction(
            tx, market.chain.view, market.chain.params, next_context(market.chain.view)
        )
        == 1_000
    )
    mine(market.chain, [tx])
    view = market.chain.view
    assert view.balance(market.registry.address, NATIVE) == before + PRICE
    assert view.balance(market.buyer.address, market.credit) == LOT
    assert view.get(lot[0]) is None


def test_one_transaction_takes_several_offers_each_paid_at_its_own_index() -> None:
    market = open_market()
    first, second = market.lots()[:2]
    tx = market.take((market.offer(first), first[1]), (market.offer(second, 2 * PRICE), second[1]))
    mine(market.chain, [tx])
    view = market.chain.view
    assert view.balance(market.buyer.address, market.credit) == 2 * LOT
    assert [o.amount for o in tx.outputs[:2]] == [PRICE, 2 * PRICE]


def test_two_offers_cannot_share_one_payment() -> None:
    """Two offers of the same coin terms on two lots: each needs its own paired output, so a
    taker paying the maker once for both lots is refused."""
    market = shared_market()
    first, second = market.lots()[:2]
    tx = market.take((market.offer(first), first[1]), (market.offer(second), second[1]))
    outputs = list(tx.outputs)
    outputs[1] = replace(outputs[1], address=market.buyer.address)  # the second payment kept
    cheat = market.buyer.sign(replace(tx, outputs=tuple(outputs)))
    assert reason(market.chain, cheat) is Reason.BAD_SIGNATURE


_TAMPERS = ["amount", "address", "asset", "until", "index", "kind", "chain"]


@given(tamper=st.sampled_from(_TAMPERS), cut=st.integers(min_value=1, max_value=PRICE - 1))
@example(tamper="amount", cut=1)
def test_no_way_of_paying_the_maker_less_is_accepted(tamper: str, cut: int) -> None:
    """Whatever the taker changes about the maker's side, the transaction is refused: the
    signature covers the paired output, its index and the expiry; offers go in TRANSFERs."""
    market = shared_market()
    lot = market.lots()[0]
    offer = market.offer(lot)
    tx = market.take((offer, lot[1]))
    inputs, outputs = list(tx.inputs), list(tx.outputs)
    wanted = outputs[0]
    expected = {Reason.BAD_SIGNATURE}
    match tamper:
        case "amount":
            outputs[0] = replace(wanted, amount=Amount(wanted.amount - cut))
        case "address":
            outputs[0] = replace(wanted, address=market.buyer.address)
        case "asset":  # paid one credit of the lot instead of the coins
            outputs[0] = replace(wanted, asset=market.credit, amount=Amount(1))
            lot_out = next(i for i, o in enumerate(outputs) if o.asset == market.credit and i)
            outputs[lot_out] = replace(outputs[lot_out], amount=Amount(LOT - 1))
        case "until":
            inputs[0] = replace(inputs[0], offer_until=Height(UNTIL + cut))
        case "index":
            outputs = [*outputs[1:], outputs[0]]  # the payment moved off the input's index
            expected = {Reason.BAD_SIGNATURE, Reason.VALUE_NOT_CONSERVED}
        case "kind":
            tx = replace(tx, kind=TxKind.BOND)
            expected = {Reason.BAD_OFFER}
        case "chain":
            foreign = replace(FAST_PARAMS, chain_id=FAST_PARAMS.chain_id + 1)
            offer = sign_offer(market.registry.key, foreign.chain_id, lot[0], wanted, UNTIL)
            inputs[0] = offer.as_input()
    changed = replace(tx, inputs=tuple(inputs), outputs=tuple(outputs))
    assert reason(market.chain, market.buyer.sign(changed)) in expected


@given(
    extra=st.lists(st.integers(min_value=1, max_value=COIN), max_size=3),
    fee=st.integers(min_value=0, max_value=COIN),
)
def test_a_taker_arranges_its_own_side_freely(extra: list[int], fee: int) -> None:
    """After the pair, the taker may add outputs and pay any fee: the offer still holds."""
    market = shared_market()
    lot = market.lots()[1]
    tx = market.take((market.offer(lot), lot[1]), fee=fee + sum(extra))
    gifts = [TxOutput(asset=NATIVE, amount=Amount(x), address=market.buyer.address) for x in extra]
    tx = market.buyer.sign(replace(tx, outputs=(*tx.outputs, *gifts)))
    assert (
        validate_transaction(
            tx, market.chain.view, market.chain.params, next_context(market.chain.view)
        )
        == fee
    )


def test_an_offer_without_its_paired_output_is_refused_before_any_signature() -> None:
    market = shared_market()
    lot = market.lots()[0]
    payment = TxOutput(asset=market.credit, amount=Amount(LOT), address=market.buyer.address)
    tx = Transaction(
        kind=TxKind.TRANSFER,
        inputs=(
            TxInput(outpoint=coins(market.chain, market.buyer)[0][0]),
            market.offer(lot).as_input(),
        ),
        outputs=(payment,),
    )
    assert reason(market.chain, market.buyer.sign(tx)) is Reason.BAD_OFFER


def test_an_expired_offer_cannot_be_taken() -> None:
    market = shared_market()
    lot = market.lots()[0]
    tx = market.take((market.offer(lot, until=Height(5)), lot[1]))
    assert reason(market.chain, tx, next_context(market.chain.view, height=6)) is (
        Reason.OFFER_EXPIRED
    )
    assert validate_transaction(
        tx, market.chain.view, market.chain.params, next_context(market.chain.view, height=5)
    )


def test_spending_the_coin_cancels_the_offer() -> None:
    market = open_market()
    lot = market.lots()[0]
    offer = market.offer(lot)
    keep = TxOutput(asset=market.credit, amount=Amount(LOT), address=market.registry.address)
    spend = market.registry.sign(
        Transaction(kind=TxKind.TRANSFER, inputs=(TxInput(outpoint=lot[0]),), outputs=(keep,))
    )
    mine(market.chain, [spend])
    assert reason(market.chain, market.take((offer, lot[1]))) is Reason.MISSING_INPUT


def test_check_offer_names_what_makes_an_offer_untakeable() -> None:
    market = shared_market()
    lot = market.lots()[0]
    params, height = market.chain.params, Height(market.chain.view.height + 1)

    def refused(offer: Offer, offered: TxOutput = lot[1], at: Height = height) -> Reason:
        with pytest.raises(InvalidOffer) as info:
            check_offer(offer, offered, params, at)
        return info.value.reason

    offer = market.offer(lot)
    stake = Lock(kind=LockKind.STAKE, key=market.chain.validator.public_key)
    assert refused(replace(offer, wanted=replace(offer.wanted, lock=stake))) is Reason.BAD_OFFER
    assert refused(replace(offer, wanted=replace(offer.wanted, amount=Amount(0)))) is (
        Reason.BAD_OFFER
    )
    assert refused(offer, replace(lot[1], address=market.buyer.address)) is (
        Reason.WITNESS_KEY_MISMATCH
    )
    assert refused(offer, replace(lot[1], lock=stake)) is Reason.STAKE_LOCKED
    assert refused(offer, at=Height(UNTIL + 1)) is Reason.OFFER_EXPIRED
    assert refused(replace(offer, until=Height(UNTIL - 1))) is Reason.BAD_SIGNATURE
    assert offer_price(offer, lot[1]) == PRICE / LOT


def test_an_offer_id_names_its_terms_not_its_signature() -> None:
    market = shared_market()
    lot = market.lots()[0]
    offer = market.offer(lot)
    chain_id = market.chain.params.chain_id
    assert offer.offer_id(chain_id) == market.offer(lot).offer_id(chain_id)
    assert offer.offer_id(chain_id) != market.offer(lot, PRICE + 1).offer_id(chain_id)


# -- partially signed transactions ----------------------------------------------------------


@functools.cache
def three_owners() -> tuple[FundedChain, PartialTransaction]:
    """A transaction moving one coin of each of three owners round in a ring."""
    chain = funded_chain(3, params=FAST_PARAMS)
    owners = chain.wallets
    spend = [coins(chain, wallet)[0] for wallet in owners]
    outputs = tuple(
        TxOutput(
            asset=NATIVE,
            amount=Amount(spend[i][1].amount - 100),
            address=owners[(i + 1) % 3].address,
        )
        for i in range(3)
    )
    tx = Transaction(
        kind=TxKind.TRANSFER,
        inputs=tuple(TxInput(outpoint=outpoint) for outpoint, _ in spend),
        outputs=outputs,
    )
    return chain, PartialTransaction.unsigned(tx, [output for _, output in spend])


@given(order=st.permutations(range(3)), merge=st.permutations(range(3)))
def test_owners_sign_copies_in_any_order_and_any_combination_finishes_the_same(
    order: list[int], merge: list[int]
) -> None:
    chain, partial = three_owners()
    chain_id = chain.params.chain_id
    copies = []
    for owner in order:  # each owner signs its own copy
        signed, count = partial.sign(chain.wallets[owner].key, chain_id)
        assert count == 1
        copies.append(signed)
    with pytest.raises(InvalidPartial) as info:
        copies[0].finish()
    assert info.value.reason is Reason.UNSIGNED_INPUT
    combined = combine([copies[i] for i in merge])
    assert combined.missing() == []
    tx = combined.finish()
    assert tx.txid == partial.tx.txid
    assert validate_transaction(tx, chain.view, chain.params, next_context(chain.view)) == 300
    # Signing one after the other gives the same transaction as combining.
    chained = partial
    for owner in order:
        chained = chained.sign(chain.wallets[owner].key, chain_id)[0]
    assert chained.finish() == tx


def test_flows_show_each_party_what_it_gives_and_gets() -> None:
    chain, partial = three_owners()
    for index, wallet in enumerate(chain.wallets):
        given = partial.spent[index].amount
        got = partial.tx.outputs[(index - 1) % 3].amount
        assert partial.flows(wallet.address) == {NATIVE: got - given}
    assert sum(sum(partial.flows(w.address).values()) for w in chain.wallets) == -300
    assert partial.signers_needed() == [w.address for w in chain.wallets]
    assert partial.sign(funded_chain(5).wallets[4].key, chain.params.chain_id)[1] == 0


def test_copies_of_different_transactions_do_not_combine() -> None:
    _, partial = three_owners()
    other = replace(partial.tx, outputs=partial.tx.outputs[:2])
    with pytest.raises(InvalidPartial) as info:
        combine([partial, PartialTransaction(tx=other, spent=partial.spent)])
    assert info.value.reason is Reason.PARTIAL_MISMATCH
    with pytest.raises(InvalidPartial):
        PartialTransaction(tx=partial.tx, spent=partial.spent[:2])


def test_bytes_claiming_another_number_of_spent_outputs_do_not_decode() -> None:
    """A decoder raises only `DecodeError`: the count is part of the format's shape."""
    _, partial = three_owners()
    for spent in (partial.spent[:2], (*partial.spent, partial.spent[0])):
        raw = encode_item([partial.tx.to_rlp(), [output.to_rlp() for output in spent]])
        with pytest.raises(DecodeError):
            decode(PartialTransaction, raw)


def test_a_two_party_swap_settles_atomically() -> None:
    market = open_market()
    chain, registry, buyer = market.chain, market.registry, market.buyer
    give = TxOutput(asset=market.credit, amount=Amount(250), address=buyer.address)
    get = TxOutput(asset=NATIVE, amount=Amount(3 * COIN), address=registry.address)
    partial = registry.build_swap(
        coins(chain, registry),
        coins(chain, buyer),
        give=give,
        get=get,
        fee=Amount(500),
        context=next_context(chain.view),
    )
    assert partial.signers_needed() == [buyer.address]
    assert partial.flows(buyer.address) == {NATIVE: -3 * COIN, market.credit: 250}
    assert partial.flows(registry.address) == {NATIVE: 3 * COIN - 500, market.credit: -250}
    done = partial.sign(buyer.key, chain.params.chain_id)[0].finish()
    mine(chain, [done])
    assert chain.view.balance(buyer.address, market.credit) == 250


# -- retirements ---------------------------------------------------------------------------


def retire_150(market: Market) -> Transaction:
    """The registry retires 150 credits for Acme Steel."""
    chain = market.chain
    return market.registry.build_retire(
        coins(chain, market.registry),
        asset=market.credit,
        amount=Amount(150),
        beneficiary=b"Acme Steel",
        purpose=b"2026 scope 1 emissions",
        fee=Amount(0),
        context=next_context(chain.view),
    )


def test_a_retirement_burns_exactly_what_it_records_and_issued_still_counts_it() -> None:
    market = open_market()
    chain, registry = market.chain, market.registry
    mine(chain, [retire_150(market)])
    assert chain.view.balance(registry.address, market.credit) == 3 * LOT - 150
    info = chain.view.asset(market.credit)
    assert info is not None
    assert info.issued == 3 * LOT


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"amount": Amount(149)}, Reason.BAD_RETIREMENT),
        ({"asset": NATIVE}, Reason.BAD_RETIREMENT),
        ({"asset": AssetId(b"\x01" * 32)}, Reason.UNKNOWN_ASSET),
        ({"amount": Amount(0)}, Reason.AMOUNT_OUT_OF_RANGE),
        ({"beneficiary": b"x" * 65}, Reason.BAD_RETIREMENT),
        ({"purpose": b"x" * 257}, Reason.BAD_RETIREMENT),
    ],
)
def test_a_retirement_that_does_not_match_its_burn_is_refused(
    change: dict[str, object], expected: Reason
) -> None:
    market = shared_market()
    chain, registry = market.chain, market.registry
    tx = retire_150(market)
    assert isinstance(tx.payload, RetirePayload)
    tampered = registry.sign(replace(tx, payload=replace(tx.payload, **change)))  # type: ignore[arg-type]
    assert reason(chain, tampered) is expected


@given(pt.offers())
def test_no_offer_encodes_longer_than_the_gossip_bound(offer: Offer) -> None:
    """Every field at its longest (uint64s, a 32-byte lock key) still fits MAX_OFFER_BYTES,
    so gossip may refuse anything longer unread."""
    assert len(encode(offer)) <= MAX_OFFER_BYTES
    assert decode(Offer, encode(offer)) == offer
