"""Hostile inputs for fuzzing decoders: RLP that is almost right, and byte streams cut anywhere.

Each strategy starts from a valid item and breaks it the way a careless or hostile encoder would:
a field of the wrong size or shape, a non-canonical integer or length prefix, a length that lies,
a truncation, trailing bytes, absurd nesting. A strict decoder answers every one of them with
`DecodeError`, or, when a change happens to leave the bytes canonical, with a value that encodes
back to exactly those bytes (`hostile_encodings` does not promise that the result is invalid).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from p2pchain.errors import DecodeError
from p2pchain.ledger.encoding import MAX_DEPTH, RLPItem, encode_item

T = TypeVar("T")
Path = tuple[int, ...]
Header = Callable[[int, int], bytes]
"""(offset, payload length) -> header bytes; offset is 0x80 for strings, 0xC0 for lists."""

NESTING_DEPTHS: Final = (MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 1_000, 20_000)
"""Around the decoder's limit, and far past it (as many as a frame can hold is in the tests)."""
HUGE_LENGTHS: Final = (2**31 - 1, 2**32 - 1, 2**62, 2**64 - 1)
LONG_INTEGER_BYTES: Final = (9, 33, 1_787, 5_000)
"""Just over 64 bits, a hash's worth, and past the 4,300 decimal digits that `str(int)` allows."""


def rlp_items(*, max_leaves: int = 20) -> SearchStrategy[RLPItem]:
    """Arbitrary raw items: short and long byte strings in lists of lists."""
    leaves = st.one_of(st.binary(max_size=60), st.binary(min_size=56, max_size=300))
    return st.recursive(
        leaves, lambda children: st.lists(children, max_size=8), max_leaves=max_leaves
    )


def header(offset: int, length: int) -> bytes:
    """The canonical RLP header of a string (offset 0x80) or list (0xC0) of `length` bytes."""
    if length < 56:
        return bytes((offset + length,))
    return _long_header(offset, length.to_bytes((length.bit_length() + 7) // 8, "big"))


def _long_header(offset: int, length_bytes: bytes) -> bytes:
    return bytes((offset + 55 + len(length_bytes),)) + length_bytes


def nested_lists(depth: int, core: bytes = b"\xc0") -> bytes:
    """`depth` lists, each holding only the next, around the encoding `core`.

    Built in one pass from the inside out, so that 100,000 levels cost milliseconds (wrapping
    one level at a time would copy the growing encoding each time).
    """
    headers: list[bytes] = []
    length = len(core)
    for _ in range(depth):
        headers.append(header(0xC0, length))
        length += len(headers[-1])
    return b"".join(reversed(headers)) + core


def paths(item: RLPItem, prefix: Path = ()) -> list[Path]:
    """Every node of `item`, as the indexes that lead to it (the root is ``()``)."""
    found = [prefix]
    if isinstance(item, list):
        for index, child in enumerate(item):
            found += paths(child, (*prefix, index))
    return found


def get_at(item: RLPItem, path: Path) -> RLPItem:
    """The node of `item` at `path`."""
    for index in path:
        if not isinstance(item, list):
            raise IndexError(path)
        item = item[index]
    return item


def replace_at(item: RLPItem, path: Path, new: RLPItem) -> RLPItem:
    """A copy of `item` with the node at `path` replaced by `new`."""
    if not path:
        return new
    if not isinstance(item, list):
        raise IndexError(path)
    copy = list(item)
    copy[path[0]] = replace_at(copy[path[0]], path[1:], new)
    return copy


def encode_with(item: RLPItem, path: Path, encode_node: Callable[[RLPItem], bytes]) -> bytes:
    """The canonical encoding of `item`, except the node at `path`, which `encode_node` writes.

    The enclosing lists get canonical headers for their new lengths, so the damage stays where
    it was put.
    """
    if not path:
        return encode_node(item)
    if not isinstance(item, list):
        raise IndexError(path)
    payload = b"".join(
        encode_with(child, path[1:], encode_node) if index == path[0] else encode_item(child)
        for index, child in enumerate(item)
    )
    return header(0xC0, len(payload)) + payload


def with_header(make_header: Header) -> Callable[[RLPItem], bytes]:
    """An `encode_node` that writes the node canonically but under `make_header`."""

    def encode_node(node: RLPItem) -> bytes:
        if isinstance(node, bytes):
            return make_header(0x80, len(node)) + node
        payload = b"".join(encode_item(child) for child in node)
        return make_header(0xC0, len(payload)) + payload

    return encode_node


def _noncanonical_header(offset: int, length: int) -> bytes:
    """Long form for a short item; a length field with a leading zero byte for a long one."""
    if length < 56:
        return _long_header(offset, bytes((length,)))
    canonical = header(offset, length)
    return _long_header(offset, b"\x00" + canonical[1:])


def _lying_header(declared: int) -> Header:
    return lambda offset, _length: _long_header(
        offset, declared.to_bytes((declared.bit_length() + 7) // 8, "big")
    )


def _off_by(delta: int) -> Header:
    return lambda offset, length: header(offset, max(0, length + delta))


def _replacements(target: RLPItem) -> list[RLPItem]:
    """Nodes to put where `target` was: wrong size, wrong shape, non-canonical, absurd."""
    common: list[RLPItem] = [b"", [], [target], b"\x00"]
    if isinstance(target, bytes):
        return [
            *common,
            b"\x00" + target,  # leading zero: a non-canonical integer, or one byte too long
            target[:-1],
            target + b"\x01",
            bytes(32),
            bytes(64),
            bytes(300),
            *(b"\x01" * size for size in LONG_INTEGER_BYTES),
            [target, target],
        ]
    return [
        *common,
        encode_item(target),  # bytes where a list belongs: the list's own encoding
        b"\x05",
        [*target, b""],
        [*target, *target],
        target[:-1],
        target[1:],
        list(reversed(target)),
        [[child] for child in target],
        [b"" for _ in target],
    ]


@st.composite
def _replaced(draw: st.DrawFn, item: RLPItem) -> bytes:
    path = draw(st.sampled_from(paths(item)))
    new = draw(st.sampled_from(_replacements(get_at(item, path))))
    return encode_item(replace_at(item, path, new))


@st.composite
def _nested_at(draw: st.DrawFn, item: RLPItem) -> bytes:
    path = draw(st.sampled_from(paths(item)))
    depth = draw(st.sampled_from(NESTING_DEPTHS))
    return encode_with(item, path, lambda node: nested_lists(depth, encode_item(node)))


@st.composite
def _reheadered(draw: st.DrawFn, item: RLPItem) -> bytes:
    path = draw(st.sampled_from(paths(item)))
    make_header = draw(
        st.sampled_from(
            [
                _noncanonical_header,
                _off_by(1),
                _off_by(-1),
                *(_lying_header(length) for length in HUGE_LENGTHS),
            ]
        )
    )
    target = get_at(item, path)
    if isinstance(target, bytes) and len(target) == 1 and target[0] < 0x80:
        make_header = header  # "81 05": a single low byte must stand for itself
    return encode_with(item, path, with_header(make_header))


@st.composite
def _edited(draw: st.DrawFn, item: RLPItem) -> bytes:
    data = encode_item(item)
    position = draw(st.integers(min_value=0, max_value=len(data)))
    junk = draw(st.binary(min_size=1, max_size=8))
    match draw(st.sampled_from(["truncate", "append", "insert", "delete", "overwrite"])):
        case "truncate":
            return data[:position]
        case "append":
            return data + junk
        case "insert":
            return data[:position] + junk + data[position:]
        case "delete":
            return data[:position] + data[position + len(junk) :]
        case _:
            return data[:position] + junk + data[position + len(junk) :]


def hostile_encodings(item: RLPItem) -> SearchStrategy[bytes]:
    """Bytes that are almost the canonical encoding of `item` (see the module docstring)."""
    return st.one_of(_replaced(item), _reheadered(item), _edited(item), _nested_at(item))


def chunkings(data: bytes, *, max_cuts: int = 12) -> SearchStrategy[list[bytes]]:
    """`data` cut into non-empty pieces at arbitrary points (a socket may deliver any split)."""
    if len(data) < 2:
        return st.just([data] if data else [])
    cuts = st.lists(st.integers(min_value=1, max_value=len(data) - 1), max_size=max_cuts)
    return cuts.map(
        lambda points: [
            data[start:end]
            for start, end in zip(
                [0, *sorted(set(points))], [*sorted(set(points)), len(data)], strict=True
            )
        ]
    )


def check_strict_decode(
    decode: Callable[[bytes], T], encode: Callable[[T], bytes], data: bytes
) -> T | None:
    """Apply the decoding contract to `data`: `DecodeError`, or a value that encodes back to
    exactly `data`.

    Returns the value, or None if `data` was rejected. Any other exception escapes (and fails
    the calling test): it is the bug a fuzzer looks for.
    """
    try:
        value = decode(data)
    except DecodeError:
        return None
    if encode(value) != data:
        raise AssertionError(f"accepted a non-canonical encoding: {data[:64].hex()}...")
    return value
