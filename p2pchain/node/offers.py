"""The offer book: standing offers whose coins are unspent at the head, bounded.

Offers cost their makers no fee, so the book charges what cannot be faked instead: each offer
needs an unspent coin its key owns, a coin carries at most `max_per_coin` offers, a maker (the
coin's address) at most `max_per_maker`, and when the book is full the maker holding the most
offers loses its oldest. Filling the book therefore takes many coins held by many addresses,
each made by a transaction that paid a fee. Every head change drops offers whose coin is gone
or whose expiry passed. Plain bookkeeping: no trio, no I/O.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from operator import attrgetter

from p2pchain.errors import ConfigError, InvalidOffer, Reason
from p2pchain.ledger.offer import Offer, check_offer, offer_price
from p2pchain.ledger.tx import OutPoint, TxOutput
from p2pchain.ledger.types import Address, AssetId, Hash32, Height
from p2pchain.ledger.utxo import LedgerReader
from p2pchain.params import ChainParams


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferBookLimits:
    """Node-local policy on the offer book (not consensus)."""

    max_offers: int = 10_000
    """Offers held in all; a newcomer beyond it evicts the oldest offer of the maker with
    the most (or is refused when that maker is its own)."""
    max_per_maker: int = 256
    """Offers one address may have in the book."""
    max_per_coin: int = 4
    """Offers on one coin (a maker re-pricing keeps a few; only one can ever be taken)."""

    def __post_init__(self) -> None:
        if min(self.max_offers, self.max_per_maker, self.max_per_coin) < 1:
            raise ConfigError("offer book limits must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class BookEntry:
    """An offer in the book, with the coin it gives (as the head's UTXO set has it)."""

    offer_id: Hash32
    offer: Offer
    offered: TxOutput
    price: Fraction
    """Wanted units per offered unit (`offer_price`), computed once."""
    rank: tuple[float, Fraction, int]
    """`matching`'s sort key: the price as a float first (rounding is monotonic, so unequal
    floats order the exact prices alike, and compare far faster), then exactly, then arrival
    order (equal prices list the oldest first)."""

    @property
    def maker(self) -> Address:
        return self.offered.address


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferBookStatistics:
    offers: int
    max_offers: int
    makers: int
    added: int
    evicted: int
    dropped: int
    """Offers dropped because their coin was spent or their expiry passed."""


class OfferBook:
    """Valid, unexpired offers on unspent coins, by id, oldest first."""

    def __init__(self, params: ChainParams, limits: OfferBookLimits) -> None:
        self.params = params
        self.limits = limits
        self._entries: OrderedDict[Hash32, BookEntry] = OrderedDict()
        self._by_maker: dict[Address, OrderedDict[Hash32, None]] = {}
        self._by_coin: dict[OutPoint, set[Hash32]] = {}
        self._by_pair: dict[tuple[AssetId, AssetId], dict[Hash32, None]] = {}
        """Offer ids by (offered asset, wanted asset), for `matching`."""
        self._local: dict[Hash32, None] = {}
        """Offers our own clients submitted, oldest first (sent to newly connected peers)."""
        self._makers_by_count: dict[int, dict[Address, None]] = {}
        """Makers by how many offers they hold, so the most crowded is found in O(1)."""
        self._most = 0
        self._added = 0
        self._evicted = 0
        self._dropped = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, offer_id: object) -> bool:
        return offer_id in self._entries

    def __iter__(self) -> Iterator[BookEntry]:
        return iter(list(self._entries.values()))

    def get(self, offer_id: Hash32) -> BookEntry | None:
        return self._entries.get(offer_id)

    def add(
        self, offer: Offer, view: LedgerReader, height: Height, *, local: bool = False
    ) -> tuple[BookEntry, bool]:
        """Check `offer` against `view` for a block at `height` and keep it; return its entry
        and whether it is new (an offer already in the book is returned as it is). A `local`
        offer (our client's) is also listed by `local_offers`.

        Raises:
            InvalidOffer: `missing-input` (the coin is not unspent), `offer-book-full` (the
                coin or the maker has its share, or the book is full of this maker's offers),
                or a reason of `check_offer`. The book is unchanged.
        """
        offer_id = offer.offer_id(self.params.chain_id)
        known = self._entries.get(offer_id)
        if known is not None:
            if local:
                self._local[offer_id] = None
            return known, False
        offered = view.get(offer.outpoint)
        if offered is None:
            raise InvalidOffer(Reason.MISSING_INPUT, str(offer.outpoint))
        # The book's room is judged before the signature, so that a flood of offers the book
        # would refuse anyway costs a lookup, not a verification; nothing is evicted before
        # the signature holds.
        maker = offered.address
        if len(self._by_coin.get(offer.outpoint, ())) >= self.limits.max_per_coin:
            raise InvalidOffer(Reason.OFFER_BOOK_FULL, f"{offer.outpoint} has its offers")
        mine = len(self._by_maker.get(maker, ()))
        if mine >= self.limits.max_per_maker:
            raise InvalidOffer(Reason.OFFER_BOOK_FULL, "the maker has its share of the book")
        full = len(self._entries) >= self.limits.max_offers
        if full and self._most <= mine + 1:
            raise InvalidOffer(Reason.OFFER_BOOK_FULL, "the book is full")
        check_offer(offer, offered, self.params, height)
        if full:
            crowded = next(iter(self._makers_by_count[self._most]))
            self._remove(next(iter(self._by_maker[crowded])))
            self._evicted += 1
        price = offer_price(offer, offered)
        entry = BookEntry(
            offer_id=offer_id,
            offer=offer,
            offered=offered,
            price=price,
            rank=(float(price), price, self._added),
        )
        self._entries[offer_id] = entry
        pair = (offered.asset, offer.wanted.asset)
        self._by_pair.setdefault(pair, {})[offer_id] = None
        self._by_maker.setdefault(maker, OrderedDict())[offer_id] = None
        self._by_coin.setdefault(offer.outpoint, set()).add(offer_id)
        self._recount(maker, mine, mine + 1)
        if local:
            self._local[offer_id] = None
        self._added += 1
        return entry, True

    def prune(self, view: LedgerReader, height: Height) -> list[Hash32]:
        """Drop the offers that a block at `height` on `view` could not take: coin spent (or
        changed by a reorg) or expired. Returns their ids. One lookup per offer."""
        gone = [
            entry.offer_id
            for entry in self._entries.values()
            if entry.offer.until < height or view.get(entry.offer.outpoint) != entry.offered
        ]
        for offer_id in gone:
            self._remove(offer_id)
        self._dropped += len(gone)
        return gone

    def local_offers(self, limit: int) -> list[Offer]:
        """Up to `limit` of the offers our clients submitted that are still in the book,
        oldest first."""
        return [self._entries[offer_id].offer for offer_id in list(self._local)[:limit]]

    def matching(self, offered: AssetId, wanted: AssetId, limit: int) -> list[BookEntry]:
        """Offers giving `offered` for `wanted`, best price for the taker first (then oldest):
        only that pair's offers are looked at, and only `limit` of them are sorted."""
        ids = self._by_pair.get((offered, wanted), {})
        entries = (self._entries[offer_id] for offer_id in ids)
        return heapq.nsmallest(limit, entries, key=attrgetter("rank"))

    def statistics(self) -> OfferBookStatistics:
        return OfferBookStatistics(
            offers=len(self._entries),
            max_offers=self.limits.max_offers,
            makers=len(self._by_maker),
            added=self._added,
            evicted=self._evicted,
            dropped=self._dropped,
        )

    def _recount(self, maker: Address, old: int, new: int) -> None:
        if old:
            bucket = self._makers_by_count[old]
            del bucket[maker]
            if not bucket:
                del self._makers_by_count[old]
        if new:
            self._makers_by_count.setdefault(new, {})[maker] = None
        self._most = max(self._most, new)
        while self._most and self._most not in self._makers_by_count:
            self._most -= 1

    def _remove(self, offer_id: Hash32) -> None:
        entry = self._entries.pop(offer_id)
        pair = (entry.offered.asset, entry.offer.wanted.asset)
        del self._by_pair[pair][offer_id]
        if not self._by_pair[pair]:
            del self._by_pair[pair]
        self._local.pop(offer_id, None)
        maker = self._by_maker[entry.maker]
        del maker[offer_id]
        self._recount(entry.maker, len(maker) + 1, len(maker))
        if not maker:
            del self._by_maker[entry.maker]
        coin = self._by_coin[entry.offer.outpoint]
        coin.discard(offer_id)
        if not coin:
            del self._by_coin[entry.offer.outpoint]
