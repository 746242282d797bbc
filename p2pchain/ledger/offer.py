"""Standing offers: "this coin of mine for that output to me", signed once, taken by anyone.

The maker signs `offer_signing_message` over one outpoint it owns, the output it wants in
return and the last height the offer may be taken at. A taker completes the trade without
talking to the maker: it puts the maker's input (with that witness) at some index `i`, the
wanted output at the same index `i`, and adds its own inputs and outputs, signed as usual.
Spending the coin in any other way cancels the offer. The rules that make this safe are in
`validation` (`_check_offers`, `verify_input_signatures`); this module is the offer as an
object, as the offer book and the wire carry it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Final, Self

from p2pchain.errors import InvalidOffer, Reason
from p2pchain.ledger.address import address_of
from p2pchain.ledger.crypto import SecretKey, verify
from p2pchain.ledger.encoding import RLPItem, read_fixed, read_list, read_uint, uint_bytes
from p2pchain.ledger.tx import LockKind, OutPoint, TxInput, TxOutput, offer_signing_message
from p2pchain.ledger.types import Hash32, Height, PublicKey
from p2pchain.params import ChainParams

MAX_OFFER_BYTES: Final = 512
"""No valid offer's encoding is longer (about 260 bytes with the longest lock): gossip refuses a
longer one before decoding it."""

TAKEABLE_LOCKS = frozenset({LockKind.NONE, LockKind.HEIGHT, LockKind.EPOCH})
"""The locks a wanted output may carry: a TRANSFER (the only kind that takes offers) cannot
create stake or unbonding outputs, so an offer wanting one could never be taken."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Offer:
    """The owner of `outpoint` (key `public_key`) gives it for `wanted`, up to height `until`."""

    outpoint: OutPoint
    public_key: PublicKey
    signature: bytes
    wanted: TxOutput
    until: Height

    def to_rlp(self) -> RLPItem:
        return [
            self.outpoint.to_rlp(),
            self.public_key,
            self.signature,
            self.wanted.to_rlp(),
            uint_bytes(self.until),
        ]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        fields = read_list(item, "offer", length=5)
        return cls(
            outpoint=OutPoint.from_rlp(fields[0]),
            public_key=PublicKey(read_fixed(fields[1], "offer.public_key", 32)),
            signature=read_fixed(fields[2], "offer.signature", 64),
            wanted=TxOutput.from_rlp(fields[3]),
            until=Height(read_uint(fields[4], "offer.until")),
        )

    def offer_id(self, chain_id: int) -> Hash32:
        """The signed message: one id per (coin, wanted output, expiry), whoever re-signs it."""
        return offer_signing_message(chain_id, self.outpoint, self.wanted, self.until)

    def as_input(self) -> TxInput:
        """The input that takes this offer, witness included."""
        return TxInput(
            outpoint=self.outpoint,
            public_key=self.public_key,
            signature=self.signature,
            offer_until=self.until,
        )


def sign_offer(
    key: SecretKey, chain_id: int, outpoint: OutPoint, wanted: TxOutput, until: Height
) -> Offer:
    """`key`'s offer of the coin at `outpoint` for `wanted`, takeable up to height `until`."""
    message = offer_signing_message(chain_id, outpoint, wanted, until)
    return Offer(
        outpoint=outpoint,
        public_key=key.public_key,
        signature=key.sign(message),
        wanted=wanted,
        until=until,
    )


def check_offer(offer: Offer, offered: TxOutput, params: ChainParams, height: Height) -> None:
    """Raise `InvalidOffer` unless a transaction at `height` could take `offer`, whose coin is
    `offered` (unspent: the caller looked it up). Cheap rules first, the signature last.

    Reasons: `bad-offer` (the wanted output could never be created), `witness-key-mismatch`
    (the key does not own the coin), `stake-locked` (bonded stake is not traded),
    `offer-expired`, `bad-signature`.
    """
    wanted = offer.wanted
    if not 0 < wanted.amount <= params.max_money:
        raise InvalidOffer(Reason.BAD_OFFER, f"wanted amount {wanted.amount}")
    if wanted.lock.kind not in TAKEABLE_LOCKS or not wanted.lock.is_well_formed():
        raise InvalidOffer(
            Reason.BAD_OFFER, f"a transfer cannot create a {wanted.lock.kind.name} output"
        )
    if address_of(offer.public_key) != offered.address:
        raise InvalidOffer(Reason.WITNESS_KEY_MISMATCH, str(offer.outpoint))
    if offered.lock.kind is LockKind.STAKE:
        raise InvalidOffer(Reason.STAKE_LOCKED, str(offer.outpoint))
    if height > offer.until:
        raise InvalidOffer(Reason.OFFER_EXPIRED, f"until {offer.until}, next block {height}")
    if not verify(offer.public_key, offer.offer_id(params.chain_id), offer.signature):
        raise InvalidOffer(Reason.BAD_SIGNATURE, str(offer.outpoint))


def offer_price(offer: Offer, offered: TxOutput) -> Fraction:
    """Wanted units per offered unit: what a taker pays for one unit of the coin (lower is a
    better deal for the taker)."""
    return Fraction(offer.wanted.amount, offered.amount)
