"""Canonical RLP: a lean, strict codec for nested lists of byte strings, plus field readers.

Wire objects convert themselves to and from nested lists of byte strings (`RLPItem`). The raw
codec refuses non-canonical lengths, trailing bytes and over-deep nesting; the readers here add
the field rules (exact sizes, minimal integers, list lengths), so `encode(decode(b)) == b` for
every accepted `b`.

Why not `rlp.encode`/`rlp.Serializable` on the hot path: the `rlp` package infers a sedes for
every element and costs more than a signature check per transaction (see benchmarks/). The codec
here handles only raw items and is tested for agreement with the `rlp` package's strict raw
decoder on arbitrary input (tests/ledger/test_encoding.py).
"""

from __future__ import annotations

from typing import Protocol, Self, TypeVar

from p2pchain.errors import DecodeError

RLPItem = bytes | list["RLPItem"]

MAX_UINT64 = 2**64 - 1
MAX_DEPTH = 16
"""Deepest list nesting any p2pchain object uses is 8; anything deeper is junk."""


class WireObject(Protocol):
    """Anything with a canonical RLP form."""

    def to_rlp(self) -> RLPItem: ...

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self: ...


W = TypeVar("W", bound=WireObject)


def encode(obj: WireObject) -> bytes:
    """Canonical RLP bytes of `obj`."""
    return encode_item(obj.to_rlp())


def _long_prefix(length: int, offset: int) -> bytes:
    length_bytes = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((offset + 55 + len(length_bytes),)) + length_bytes


def wrap_list(payload: bytes) -> bytes:
    """RLP list header + `payload`, where `payload` is already the concatenated item encodings."""
    length = len(payload)
    if length < 56:
        return bytes((0xC0 + length,)) + payload
    return _long_prefix(length, 0xC0) + payload


def encode_item(item: RLPItem) -> bytes:
    """Canonical RLP bytes of a raw item."""
    if isinstance(item, bytes):
        length = len(item)
        if length == 1 and item[0] < 0x80:
            return item
        if length < 56:
            return bytes((0x80 + length,)) + item
        return _long_prefix(length, 0x80) + item
    return wrap_list(b"".join(map(encode_item, item)))


def _read_length(data: bytes, start: int, size: int, end: int) -> int:
    """A long-form length of `size` bytes at `start`: minimal, >= 56, and within `end`."""
    if start + size > end:
        raise DecodeError("invalid RLP: truncated length")
    if data[start] == 0:
        raise DecodeError("invalid RLP: length with leading zero")
    length = int.from_bytes(data[start : start + size], "big")
    if length < 56:
        raise DecodeError("invalid RLP: long form used for a short item")
    return length


def _decode_at(data: bytes, start: int, end: int, depth: int) -> tuple[RLPItem, int]:
    """Decode the item starting at `start` (not beyond `end`); return it and where it ends."""
    if start >= end:
        raise DecodeError("invalid RLP: truncated")
    prefix = data[start]
    if prefix < 0x80:
        return data[start : start + 1], start + 1
    if prefix < 0xB8:
        length, body = prefix - 0x80, start + 1
        if length == 1 and body < end and data[body] < 0x80:
            raise DecodeError("invalid RLP: single byte below 0x80 must not be prefixed")
    elif prefix < 0xC0:
        size = prefix - 0xB7
        length, body = _read_length(data, start + 1, size, end), start + 1 + size
    else:
        if depth >= MAX_DEPTH:
            raise DecodeError("invalid RLP: nested too deeply")
        if prefix < 0xF8:
            length, body = prefix - 0xC0, start + 1
        else:
            size = prefix - 0xF7
            length, body = _read_length(data, start + 1, size, end), start + 1 + size
        stop = body + length
        if stop > end:
            raise DecodeError("invalid RLP: list runs past the end of its container")
        items: list[RLPItem] = []
        position = body
        while position < stop:
            item, position = _decode_at(data, position, stop, depth + 1)
            items.append(item)
        return items, stop
    stop = body + length
    if stop > end:
        raise DecodeError("invalid RLP: string runs past the end of its container")
    return data[body:stop], stop


def decode_item(data: bytes) -> RLPItem:
    """Parse one RLP item that spans all of `data`, or raise `DecodeError`."""
    data = bytes(data)
    item, stop = _decode_at(data, 0, len(data), 0)
    if stop != len(data):
        raise DecodeError(f"invalid RLP: {len(data) - stop} trailing bytes")
    return item


def decode_list_with_spans(data: bytes) -> tuple[list[RLPItem], list[bytes]]:
    """Parse a list spanning all of `data`; return its elements and each one's raw encoding.

    Lets a decoder reuse the exact bytes of a field (e.g. to hash part of an object) instead of
    encoding it again.
    """
    data = bytes(data)
    if not data or data[0] < 0xC0:
        raise DecodeError("expected a list")
    prefix = data[0]
    if prefix < 0xF8:
        length, body = prefix - 0xC0, 1
    else:
        size = prefix - 0xF7
        length, body = _read_length(data, 1, size, len(data)), 1 + size
    if body + length != len(data):
        raise DecodeError("invalid RLP: list length does not match the data")
    items: list[RLPItem] = []
    spans: list[bytes] = []
    position = body
    while position < len(data):
        item, end = _decode_at(data, position, len(data), 1)
        items.append(item)
        spans.append(data[position:end])
        position = end
    return items, spans


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
