"""Canonical RLP: a strict codec for nested lists of byte strings, plus field readers.

Wire objects convert themselves to and from nested lists of byte strings (`RLPItem`). The raw
codec refuses non-canonical lengths, trailing bytes and over-deep nesting; the readers here add
the field rules (exact sizes, minimal integers, list lengths), so `encode(decode(b)) == b` for
every accepted `b`.

The codec also bounds what decoding may build: each list costs `LIST_COST` and each element of
a list `ELEMENT_COST`, and `n` bytes may decode to items costing at most `n + COST_ALLOWANCE`.
Without that bound, a peer's 16 MiB of ``c0`` bytes (one empty list each) became 16 million
Python lists, 1.2 GB and 6 s of CPU, before any field reader could reject the first of them.

Encoding uses the `rusty-rlp` backend of the `rlp` package when it is installed (the ``fast``
extra; over 10 times the Python encoder here) and the Python encoder otherwise, which is about
twice as fast as `rlp`'s own pure encoder. Decoding stays here, strict and bounded, and about
twice as fast as `rlp`'s pure decoder, which has no cost bound and raises `RecursionError` at
1,000 levels of nesting. `rusty-rlp`'s decoder is not strict (it drops a truncated last element
of a list) and crashes the process at 100,000 levels (a 378 kB input). Figures:
docs/dependencies.md (benchmarks/bench_rlp.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Final, Protocol, Self, TypeVar

from p2pchain.errors import DecodeError

RLPItem = bytes | list["RLPItem"]

MAX_UINT64 = 2**64 - 1
MAX_DEPTH = 16
"""Deepest list nesting any p2pchain object uses is 8; anything deeper is junk."""
ELEMENT_COST = 1
"""Each element of a list: one 8-byte reference in the list."""
LIST_COST = 7
"""Each list: an empty Python list object weighs about seven references."""
COST_ALLOWANCE = 64
"""Lets small objects (Ping, a lone Lock) be list-heavy. Large valid wire objects cost under 0.4
per encoded byte (the densest, an output without a lock, ~0.36) and a block's undo record ~0.6,
so `n + COST_ALLOWANCE` leaves them a margin while junk stays within a few times its size."""


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


def _encode_python(item: RLPItem) -> bytes:
    """Canonical RLP bytes of a raw item, without the `rusty-rlp` backend."""
    if isinstance(item, bytes):
        length = len(item)
        if length == 1 and item[0] < 0x80:
            return item
        if length < 56:
            return bytes((0x80 + length,)) + item
        return _long_prefix(length, 0x80) + item
    return wrap_list(b"".join(map(_encode_python, item)))


def _available_encoders() -> dict[str, Callable[[RLPItem], bytes]]:
    encoders: dict[str, Callable[[RLPItem], bytes]] = {"python": _encode_python}
    try:
        rusty_rlp = importlib.import_module("rusty_rlp")  # the optional ``fast`` extra
    except ImportError:
        return encoders
    encoders["rusty-rlp"] = rusty_rlp.encode_raw
    return encoders


ENCODERS: Final[Mapping[str, Callable[[RLPItem], bytes]]] = _available_encoders()
"""The raw encoders this installation has, by name; they give identical bytes."""
ENCODER: Final = "rusty-rlp" if "rusty-rlp" in ENCODERS else "python"
"""The name of the encoder `encode_item` uses: the fastest one installed."""
_encode_raw = ENCODERS[ENCODER]


def encode_item(item: RLPItem) -> bytes:
    """Canonical RLP bytes of a raw item."""
    return _encode_raw(item)


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


def _decode_at(
    data: bytes, start: int, end: int, depth: int, budget: int
) -> tuple[RLPItem, int, int]:
    """Decode the item starting at `start` (not beyond `end`) within `budget`.

    Returns the item, where it ends, and the budget left.
    """
    is_list, body, stop = item_header(data, start, end)
    if not is_list:
        return data[body:stop], stop, budget
    if depth >= MAX_DEPTH:
        raise DecodeError("invalid RLP: nested too deeply")
    budget -= LIST_COST
    if budget < 0:
        raise DecodeError("invalid RLP: more items than its size allows")
    items: list[RLPItem] = []
    position = body
    while position < stop:
        item, position, budget = _decode_at(data, position, stop, depth + 1, budget)
        items.append(item)
    budget -= ELEMENT_COST * len(items)  # after the fact: strings alone cost < 1 per byte
    if budget < 0:
        raise DecodeError("invalid RLP: more items than its size allows")
    return items, stop, budget


def budget_for(data: bytes) -> int:
    """What decoding all of `data` may cost (see the module docstring)."""
    return len(data) + COST_ALLOWANCE


def decode_item(data: bytes) -> RLPItem:
    """Parse one RLP item that spans all of `data`, or raise `DecodeError`."""
    data = bytes(data)
    item, stop, _ = _decode_at(data, 0, len(data), 0, budget_for(data))
    if stop != len(data):
        raise DecodeError(f"invalid RLP: {len(data) - stop} trailing bytes")
    return item


def item_header(data: bytes, start: int, end: int) -> tuple[bool, int, int]:
    """The header of the item at `start`: (is a list, where its payload starts, where it ends).

    Checked as `decode_item` checks it (canonical length, within `end`) without decoding the
    payload, so that a reader can walk to the fields it wants in place.
    """
    if start >= end:
        raise DecodeError("invalid RLP: truncated")
    prefix = data[start]
    if prefix < 0x80:
        return False, start, start + 1
    if prefix < 0xB8:
        length, body = prefix - 0x80, start + 1
        if length == 1 and body < end and data[body] < 0x80:
            raise DecodeError("invalid RLP: single byte below 0x80 must not be prefixed")
    elif prefix < 0xC0:
        size = prefix - 0xB7
        length, body = _read_length(data, start + 1, size, end), start + 1 + size
    elif prefix < 0xF8:
        length, body = prefix - 0xC0, start + 1
    else:
        size = prefix - 0xF7
        length, body = _read_length(data, start + 1, size, end), start + 1 + size
    stop = body + length
    if stop > end:
        raise DecodeError("invalid RLP: item runs past the end of its container")
    return prefix >= 0xC0, body, stop


def list_payload(data: bytes, start: int, end: int) -> tuple[int, int]:
    """Where the payload of the list at `start` begins and ends, checked as `item_header` checks.

    The short forms are read inline: readers walking transactions in place call this per input
    and per output.
    """
    if start >= end:
        raise DecodeError("invalid RLP: truncated")
    prefix = data[start]
    if prefix < 0xC0:
        raise DecodeError("expected a list")
    if prefix < 0xF8:
        body, stop = start + 1, start + 1 + prefix - 0xC0
    elif prefix == 0xF8 and start + 1 < end:
        length = data[start + 1]
        if length < 56:
            raise DecodeError("invalid RLP: long form used for a short item")
        body, stop = start + 2, start + 2 + length
    else:
        size = prefix - 0xF7
        body = start + 1 + size
        stop = body + _read_length(data, start + 1, size, end)
    if stop > end:
        raise DecodeError("invalid RLP: list runs past the end of its container")
    return body, stop


def decode_span(data: bytes, start: int, end: int, depth: int, budget: int) -> tuple[RLPItem, int]:
    """Decode the one item in `data[start:end]`, nested `depth` lists deep, within `budget`.

    Returns the item and the budget left, so that a reader walking a large object in place
    charges its parts to one budget, exactly as `decode_item` on the whole would.
    """
    item, stop, budget = _decode_at(data, start, end, depth, budget)
    if stop != end:
        raise DecodeError(f"invalid RLP: {end - stop} trailing bytes")
    return item, budget


def charge(budget: int, lists: int, elements: int) -> int:
    """`budget` less what `lists` lists holding `elements` elements in all cost to decode."""
    budget -= LIST_COST * lists + ELEMENT_COST * elements
    if budget < 0:
        raise DecodeError("invalid RLP: more items than its size allows")
    return budget


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
    if len(item) > (max_value.bit_length() + 7) // 8:  # before int(): str() of a huge int raises
        raise DecodeError(f"{name}: {len(item)}-byte integer exceeds {max_value}")
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
