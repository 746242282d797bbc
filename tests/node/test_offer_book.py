"""The offer book against a naive model: what it holds, what it refuses and what it drops.

A stateful hypothesis test drives the book with offers of several makers on several coins,
spends and heights; the model keeps a plain list and the documented rules. Offers are real
(signed) ones, checked by the book's own `check_offer`.
"""

from __future__ import annotations

import functools

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from p2pchain.errors import ConfigError, InvalidOffer, Reason
from p2pchain.ledger.address import address_of
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.offer import Offer, sign_offer
from p2pchain.ledger.tx import OutPoint, TxOutput
from p2pchain.ledger.types import Amount, AssetId, Height, TxId
from p2pchain.node.offers import OfferBook, OfferBookLimits
from p2pchain.params import ChainParams

PARAMS = ChainParams()
NATIVE = AssetId(PARAMS.native_asset)
CREDIT = AssetId(b"\x07" * 32)
LIMITS = OfferBookLimits(max_offers=6, max_per_maker=4, max_per_coin=2)
MAKERS = 3
COINS_PER_MAKER = 3


@functools.cache
def key(maker: int) -> SecretKey:
    return SecretKey.from_entropy(b"p2pchain-tests-offer-book-maker" + bytes([maker]))


def outpoint(maker: int, coin: int) -> OutPoint:
    return OutPoint(txid=TxId(bytes([maker, coin]) * 16), index=coin)


def coin_output(maker: int, coin: int) -> TxOutput:
    return TxOutput(
        asset=CREDIT, amount=Amount(100 * (coin + 1)), address=address_of(key(maker).public_key)
    )


@functools.cache
def offer(maker: int, coin: int, price: int, until: int) -> Offer:
    wanted = TxOutput(asset=NATIVE, amount=Amount(price), address=address_of(key(maker).public_key))
    return sign_offer(key(maker), PARAMS.chain_id, outpoint(maker, coin), wanted, Height(until))


class Coins:
    """The unspent coins, as the book's `LedgerReader` (only `get` is asked)."""

    def __init__(self) -> None:
        self.unspent = {
            outpoint(m, c): coin_output(m, c) for m in range(MAKERS) for c in range(COINS_PER_MAKER)
        }

    def get(self, point: OutPoint) -> TxOutput | None:
        return self.unspent.get(point)


class BookMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.book = OfferBook(PARAMS, LIMITS)
        self.coins = Coins()
        self.height = 1
        self.model: list[Offer] = []  # oldest first

    def _maker(self, item: Offer) -> int:
        return next(m for m in range(MAKERS) if key(m).public_key == item.public_key)

    @rule(
        maker=st.integers(0, MAKERS - 1),
        coin=st.integers(0, COINS_PER_MAKER - 1),
        price=st.integers(1, 5),
        until=st.integers(0, 8),
    )
    def add(self, maker: int, coin: int, price: int, until: int) -> None:
        new = offer(maker, coin, price, until)
        ids = [o.offer_id(PARAMS.chain_id) for o in self.model]
        expected: Reason | None = None
        victims: list[Offer] = []
        if new.offer_id(PARAMS.chain_id) in ids:
            entry, is_new = self.book.add(new, self.coins, Height(self.height))  # type: ignore[arg-type]
            assert not is_new
            return
        counts = [sum(self._maker(o) == m for o in self.model) for m in range(MAKERS)]
        full = len(self.model) >= LIMITS.max_offers
        # room first (no signature spent on what the book refuses anyway), then the rules
        if new.outpoint not in self.coins.unspent:
            expected = Reason.MISSING_INPUT
        elif (
            sum(o.outpoint == new.outpoint for o in self.model) >= LIMITS.max_per_coin
            or counts[maker] >= LIMITS.max_per_maker
            or (full and max(counts) <= counts[maker] + 1)
        ):
            expected = Reason.OFFER_BOOK_FULL
        elif until < self.height:
            expected = Reason.OFFER_EXPIRED
        elif full:  # the oldest offer of one of the makers holding the most goes
            crowded = [m for m in range(MAKERS) if counts[m] == max(counts)]
            victims = [next(o for o in self.model if self._maker(o) == m) for m in crowded]
        if expected is not None:
            before = list(self.book)
            with pytest.raises(InvalidOffer) as info:
                self.book.add(new, self.coins, Height(self.height))  # type: ignore[arg-type]
            assert info.value.reason is expected
            assert list(self.book) == before
            return
        before = {e.offer_id for e in self.book}
        entry, is_new = self.book.add(new, self.coins, Height(self.height))  # type: ignore[arg-type]
        assert is_new
        assert entry.offered == coin_output(maker, coin)
        gone = before - {e.offer_id for e in self.book}
        assert gone == set() if not victims else len(gone) == 1
        if victims:
            (victim,) = [o for o in victims if o.offer_id(PARAMS.chain_id) in gone]
            self.model.remove(victim)
        self.model.append(new)

    @precondition(lambda self: self.coins.unspent)
    @rule(data=st.data())
    def spend_and_prune(self, data: st.DataObject) -> None:
        point = data.draw(st.sampled_from(sorted(self.coins.unspent)))
        del self.coins.unspent[point]
        self.book.prune(self.coins, Height(self.height))  # type: ignore[arg-type]
        self.model = [o for o in self.model if o.outpoint != point and o.until >= self.height]

    @rule(blocks=st.integers(1, 3))
    def blocks_pass(self, blocks: int) -> None:
        self.height += blocks
        self.book.prune(self.coins, Height(self.height))  # type: ignore[arg-type]
        self.model = [o for o in self.model if o.until >= self.height]

    @invariant()
    def the_book_holds_what_the_model_holds(self) -> None:
        held = {entry.offer_id for entry in self.book}
        assert held == {o.offer_id(PARAMS.chain_id) for o in self.model}
        assert len(self.book) <= LIMITS.max_offers
        stats = self.book.statistics()
        assert stats.offers == len(self.model)
        assert stats.makers == len({self._maker(o) for o in self.model})

    @invariant()
    def matching_lists_the_best_price_first(self) -> None:
        listed = self.book.matching(CREDIT, NATIVE, limit=100)
        prices = [entry.price for entry in listed]
        assert prices == sorted(prices)
        assert len(listed) == len(self.model)
        assert self.book.matching(NATIVE, CREDIT, limit=100) == []


TestOfferBook = BookMachine.TestCase


def test_a_bad_offer_is_refused_with_the_rules_reason_and_changes_nothing() -> None:
    book = OfferBook(PARAMS, LIMITS)
    coins = Coins()
    good = offer(0, 0, 3, 5)
    forged = Offer(
        outpoint=good.outpoint,
        public_key=good.public_key,
        signature=offer(0, 0, 4, 5).signature,
        wanted=good.wanted,
        until=good.until,
    )
    with pytest.raises(InvalidOffer) as info:
        book.add(forged, coins, Height(1))  # type: ignore[arg-type]
    assert info.value.reason is Reason.BAD_SIGNATURE
    stolen = sign_offer(key(1), PARAMS.chain_id, good.outpoint, good.wanted, good.until)
    with pytest.raises(InvalidOffer) as info:
        book.add(stolen, coins, Height(1))  # type: ignore[arg-type]
    assert info.value.reason is Reason.WITNESS_KEY_MISMATCH
    assert len(book) == 0


def test_an_offer_whose_coin_a_reorg_changed_is_dropped() -> None:
    book = OfferBook(PARAMS, LIMITS)
    coins = Coins()
    item = offer(2, 1, 3, 5)
    book.add(item, coins, Height(1))  # type: ignore[arg-type]
    coins.unspent[item.outpoint] = coin_output(2, 2)  # another coin at the same outpoint
    assert book.prune(coins, Height(1)) == [item.offer_id(PARAMS.chain_id)]  # type: ignore[arg-type]


def test_a_flood_of_offers_from_many_makers_keeps_the_book_bounded_and_an_honest_offer() -> None:
    """12,288 valid offers from 48 makers at the default limits: the book never holds more
    than `max_offers`, each maker at most `max_per_maker`, each coin `max_per_coin`, and the
    honest maker's one offer, the oldest of all, is never the one evicted."""
    limits = OfferBookLimits()
    book = OfferBook(PARAMS, limits)
    coins: dict[OutPoint, TxOutput] = {}
    honest = offer(0, 0, 3, 10**6)
    coins[honest.outpoint] = coin_output(0, 0)

    class Reader:
        def get(self, point: OutPoint) -> TxOutput | None:
            return coins.get(point)

    book.add(honest, Reader(), Height(1))  # type: ignore[arg-type]
    refused = 0
    refusals: set[Reason] = set()
    for flooder in range(48):
        secret = SecretKey.from_entropy(
            b"p2pchain-tests-offer-flooder" + flooder.to_bytes(4, "big")
        )
        owner = address_of(secret.public_key)
        for coin in range(64):
            point = OutPoint(txid=TxId(flooder.to_bytes(4, "big") * 8), index=coin)
            coins[point] = TxOutput(asset=CREDIT, amount=Amount(10), address=owner)
            for price in range(1, limits.max_per_coin + 1):
                wanted = TxOutput(asset=NATIVE, amount=Amount(price), address=owner)
                flood = sign_offer(secret, PARAMS.chain_id, point, wanted, Height(10**6))
                try:
                    book.add(flood, Reader(), Height(1))  # type: ignore[arg-type]
                except InvalidOffer as exc:
                    refusals.add(exc.reason)
                    refused += 1
                assert len(book) <= limits.max_offers
    assert refusals <= {Reason.OFFER_BOOK_FULL}
    stats = book.statistics()
    assert stats.offers == limits.max_offers
    assert stats.evicted > 0
    assert honest.offer_id(PARAMS.chain_id) in book
    per_maker: dict[bytes, int] = {}
    for entry in book:
        per_maker[entry.maker] = per_maker.get(entry.maker, 0) + 1
    assert max(per_maker.values()) <= limits.max_per_maker
    assert refused + stats.evicted + stats.offers == 48 * 64 * limits.max_per_coin + 1


def test_an_offer_the_book_has_no_room_for_costs_no_signature_check() -> None:
    """A coin at its share: a forged offer on it is refused for room (offer-book-full), not
    for its signature, so a flood of such offers costs a lookup each, never a verification."""
    book = OfferBook(PARAMS, LIMITS)
    coins = Coins()
    for price in range(1, LIMITS.max_per_coin + 1):
        book.add(offer(1, 1, price, 9), coins, Height(1))  # type: ignore[arg-type]
    genuine = offer(1, 1, 9, 9)
    forged = Offer(
        outpoint=genuine.outpoint,
        public_key=genuine.public_key,
        signature=bytes(64),
        wanted=genuine.wanted,
        until=genuine.until,
    )
    with pytest.raises(InvalidOffer) as info:
        book.add(forged, coins, Height(1))  # type: ignore[arg-type]
    assert info.value.reason is Reason.OFFER_BOOK_FULL
    assert len(book) == LIMITS.max_per_coin


@pytest.mark.parametrize("field", ["max_offers", "max_per_maker", "max_per_coin"])
def test_a_limit_below_one_is_a_config_error(field: str) -> None:
    with pytest.raises(ConfigError):
        OfferBookLimits(**{field: 0})  # type: ignore[arg-type]
