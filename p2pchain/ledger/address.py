"""Addresses: 20 bytes derived from an x-only key; bech32m text with a per-chain prefix."""

from __future__ import annotations

from bech32m import codecs

from p2pchain.errors import InvalidAddress
from p2pchain.ledger.crypto import tagged_hash
from p2pchain.ledger.types import Address

ADDRESS_BYTES = 20
_ADDRESS_TAG = b"p2pchain/address"


def address_of(public_key: bytes) -> Address:
    """The address that a 32-byte x-only key controls."""
    if len(public_key) != 32:
        raise ValueError("public key must be 32 bytes (x-only)")
    return Address(tagged_hash(_ADDRESS_TAG, public_key)[:ADDRESS_BYTES])


def encode_address(address: bytes, prefix: str) -> str:
    """bech32m text form, e.g. ``dp2p1...``."""
    if len(address) != ADDRESS_BYTES:
        raise ValueError("address must be 20 bytes")
    return str(
        codecs.bech32_encode(prefix, codecs.convertbits(address, 8, 5), codecs.Encoding.BECH32M)
    )


def decode_address(text: str, prefix: str) -> Address:
    """Parse bech32m text, or raise `InvalidAddress` saying what is wrong with it."""
    try:
        hrp, data, spec = codecs.bech32_decode(text)
    except codecs.DecodeError as exc:
        raise InvalidAddress(f"not bech32m text: {text!r}") from exc
    if spec is None:
        raise InvalidAddress(f"checksum mismatch in {text!r}")
    if spec is not codecs.Encoding.BECH32M:
        raise InvalidAddress(f"bech32 checksum where bech32m is required: {text!r}")
    if hrp != prefix:
        raise InvalidAddress(f"prefix {hrp!r} is not this chain's {prefix!r}")
    try:
        payload = bytes(codecs.convertbits(data, 5, 8, False))
    except codecs.DecodeError as exc:
        raise InvalidAddress(f"bad padding in {text!r}") from exc
    if len(payload) != ADDRESS_BYTES:
        raise InvalidAddress(f"payload is {len(payload)} bytes, expected {ADDRESS_BYTES}")
    return Address(payload)
