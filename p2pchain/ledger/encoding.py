"""Canonical RLP: a lean, strict layer over the `rlp` package's raw codec.

Wire objects convert themselves to and from nested lists of byte strings (`RLPItem`). The raw
codec already refuses non-canonical lengths and trailing bytes; the readers here add the field
rules (exact sizes, minimal integers, list lengths), so `encode(decode(b)) == b` for every
accepted `b`. Decoding goes through plain lists rather than `rlp.Serializable` because it is
several times faster on the hot path (see benchmarks/).
"""

from __future__ import annotations

from typing import Protocol, Self, TypeVar

import rlp

from p2pchain.errors import DecodeError

RLPItem = bytes | list["RLPItem"]

MAX_UINT64 = 2**64 - 1


class WireObject(Protocol):
    """Anything with a canonical RLP form."""

    def to_rlp(self) -> RLPItem: ...

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self: ...


W = TypeVar("W", bound=WireObject)


def encode(obj: WireObject) -> bytes:
    """Canonical RLP bytes of `obj`."""
    return encode_item(obj.to_rlp())


def encode_item(item: RLPItem) -> bytes:
    """Canonical RLP bytes of a raw item."""
    return bytes(rlp.encode(item))


def decode_item(data: bytes) -> RLPItem:
    """Parse one RLP item that spans all of `data`, or raise `DecodeError`."""
    try:
        item: RLPItem = rlp.decode(bytes(data), strict=True)
    except rlp.exceptions.RLPException as exc:
        raise DecodeError(f"invalid RLP: {exc}") from exc
    except RecursionError as exc:
        raise DecodeError("invalid RLP: nested too deeply") from exc
    return item


def decode(cls: type[W], data: bytes) -> W:
    """Decode canonical RLP from an untrusted source into `cls`, or raise `DecodeError`."""
    return cls.from_rlp(decode_item(data))


def uint_bytes(value: int) -> bytes:
    """Minimal big-endian bytes of a non-negative integer (zero is the empty string)."""
    if value < 0:
        raise ValueError("RLP integers are non-negative")
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def read_uint(item: RLPItem, name: str, max_value: int = MAX_UINT64) -> int:
    """A minimal big-endian integer no larger than `max_value`."""
    if not isinstance(item, bytes):
        raise DecodeError(f"{name}: expected an integer, got a list")
    if item[:1] == b"\x00":
        raise DecodeError(f"{name}: integer with leading zero")
    value = int.from_bytes(item, "big")
    if value > max_value:
        raise DecodeError(f"{name}: {value} exceeds {max_value}")
    return value


def read_fixed(item: RLPItem, name: str, length: int) -> bytes:
    """A byte string of exactly `length` bytes."""
    if not isinstance(item, bytes):
        raise DecodeError(f"{name}: expected {length} bytes, got a list")
    if len(item) != length:
        raise DecodeError(f"{name}: expected {length} bytes, got {len(item)}")
    return item


def read_bytes(item: RLPItem, name: str, max_length: int) -> bytes:
    """A byte string of at most `max_length` bytes."""
    if not isinstance(item, bytes):
        raise DecodeError(f"{name}: expected bytes, got a list")
    if len(item) > max_length:
        raise DecodeError(f"{name}: {len(item)} bytes exceeds {max_length}")
    return item


def read_list(
    item: RLPItem, name: str, *, length: int | None = None, max_length: int | None = None
) -> list[RLPItem]:
    """A list with exactly `length` or at most `max_length` elements."""
    if not isinstance(item, list):
        raise DecodeError(f"{name}: expected a list, got bytes")
    if length is not None and len(item) != length:
        raise DecodeError(f"{name}: expected {length} fields, got {len(item)}")
    if max_length is not None and len(item) > max_length:
        raise DecodeError(f"{name}: {len(item)} elements exceeds {max_length}")
    return item
