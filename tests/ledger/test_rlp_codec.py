"""The RLP codec agrees with the `rlp` package's strict pure-Python codec, byte for byte."""

import importlib.util
import sys
from types import ModuleType
from unittest import mock

import pytest
import rlp
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.errors import DecodeError
from p2pchain.ledger.encoding import (
    COST_ALLOWANCE,
    ELEMENT_COST,
    ENCODERS,
    LIST_COST,
    MAX_DEPTH,
    RLPItem,
    budget_for,
    charge,
    decode_item,
    decode_span,
    encode_item,
    item_header,
    list_payload,
    wrap_list,
)


def _pure_rlp_codec() -> ModuleType:
    """A copy of `rlp.codec` without its `rusty-rlp` backend, which `rlp` picks when installed.

    The reference must be the pure codec: the Rust decoder is not strict (see
    `test_rusty_rlp_decoder_is_not_strict`).
    """
    spec = importlib.util.find_spec("rlp.codec")
    assert spec is not None
    assert spec.loader is not None
    codec = importlib.util.module_from_spec(spec)
    with mock.patch.dict(sys.modules, {"rusty_rlp": None}):
        spec.loader.exec_module(codec)
    return codec


PURE_RLP = _pure_rlp_codec()

items: st.SearchStrategy[RLPItem] = st.recursive(
    st.binary(max_size=80), lambda children: st.lists(children, max_size=6), max_leaves=30
)


def _depth(item: RLPItem) -> int:
    return 0 if isinstance(item, bytes) else 1 + max(map(_depth, item), default=0)


def _cost(item: RLPItem) -> int:
    """What decoding `item` charges: each list, plus each element of a list."""
    if isinstance(item, bytes):
        return 0
    return LIST_COST + sum(ELEMENT_COST + _cost(child) for child in item)


def _within_limits(item: RLPItem, size: int) -> bool:
    return _depth(item) <= MAX_DEPTH and _cost(item) <= size + COST_ALLOWANCE


def _reference_decode(data: bytes) -> RLPItem | None:
    """The `rlp` package's verdict, plus our documented nesting and cost limits."""
    try:
        item: RLPItem
        item, _ = PURE_RLP.decode_raw(data, True, False)
    except rlp.exceptions.RLPException:
        return None
    return item if _within_limits(item, len(data)) else None


def test_the_reference_is_the_pure_codec() -> None:
    with pytest.raises(rlp.exceptions.DecodingError):
        PURE_RLP.decode_raw(b"\xc3\x00\x82a", True, False)  # the last element is truncated


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
@given(item=items)
def test_every_encoder_matches_reference(encoder: str, item: RLPItem) -> None:
    encoded = ENCODERS[encoder](item)
    assert encoded == PURE_RLP.encode_raw(item) == encode_item(item)
    assert _reference_decode(encoded) in (item, None)
    if _within_limits(item, len(encoded)):
        assert decode_item(encoded) == item


def _assert_agrees_with_reference(data: bytes) -> None:
    expected = _reference_decode(data)
    try:
        decoded = decode_item(data)
    except DecodeError:
        assert expected is None
    else:
        assert decoded == expected
        assert encode_item(decoded) == data


@given(st.binary(max_size=200))
def test_arbitrary_bytes_accepted_exactly_when_reference_accepts(data: bytes) -> None:
    _assert_agrees_with_reference(data)


@given(items, st.data())
def test_mutated_encodings_agree_with_reference(item: RLPItem, data: st.DataObject) -> None:
    encoded = bytearray(encode_item(item))
    position = data.draw(st.integers(0, len(encoded) - 1))
    encoded[position] = data.draw(st.integers(0, 255))
    _assert_agrees_with_reference(bytes(encoded))


def test_deep_nesting_is_a_decode_error_not_a_recursion_error() -> None:
    data = b"\xc0"
    for _ in range(5_000):
        data = wrap_list(data)
    with pytest.raises(DecodeError, match="nested too deeply"):
        decode_item(data)


@given(st.lists(items, max_size=6))
def test_walking_a_list_in_place_finds_each_element_and_charges_what_decode_item_does(
    elements: list[RLPItem],
) -> None:
    """`item_header` finds each element's encoding without decoding it, and `decode_span`
    decodes the elements one by one charging one budget exactly as `decode_item` would."""
    encoded = encode_item(elements)
    budget = budget_for(encoded)
    try:
        position, stop = list_payload(encoded, 0, len(encoded))
        budget = charge(budget, 1, 0)
        walked: list[RLPItem] = []
        while position < stop:
            end = item_header(encoded, position, stop)[2]
            assert encoded[position:end] == encode_item(elements[len(walked)])
            element, budget = decode_span(encoded, position, end, 1, budget)
            walked.append(element)
            position = end
        charge(budget, 0, len(walked))
    except DecodeError:
        assert not _within_limits(elements, len(encoded))
        return
    assert _within_limits(elements, len(encoded))
    assert walked == elements == decode_item(encoded)


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc2\x80", b"\xf8\x05\x80", b"\xf8\x37" + b"\x80" * 54, b"\xf9\x00\x38"],
    ids=["empty", "overrun", "short-long-form", "long-form-under-56", "leading-zero"],
)
def test_list_payload_refuses_what_decode_item_refuses(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_item(data)
    with pytest.raises(DecodeError):
        list_payload(data, 0, len(data))


def test_list_payload_refuses_a_string() -> None:
    with pytest.raises(DecodeError, match="expected a list"):
        list_payload(b"\x82ab", 0, 3)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xc2\x00\x81", id="last-element-missing-its-byte"),
        pytest.param(b"\xc3\x00\x82a", id="last-element-one-byte-short"),
        pytest.param(b"\xc2\x00\xb8", id="last-element-missing-its-length"),
    ],
)
def test_rusty_rlp_decoder_is_not_strict(data: bytes) -> None:
    """Why decoding never goes to `rusty-rlp`: it drops a truncated last element of a list."""
    rusty_rlp = pytest.importorskip("rusty_rlp", reason="needs the fast extra (rusty-rlp)")
    with pytest.raises(DecodeError):
        decode_item(data)
    with pytest.raises(rlp.exceptions.DecodingError):
        PURE_RLP.decode_raw(data, True, False)
    item, _ = rusty_rlp.decode_raw(data, True, False)
    assert item == [b"\x00"]
    assert encode_item(item) != data
