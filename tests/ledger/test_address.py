"""Addresses: derivation from keys, and the bech32m text form with its error cases."""

import pytest
from bech32m import codecs
from hypothesis import given
from hypothesis import strategies as st

from p2pchain import testing as pt
from p2pchain.errors import DecodeError, InvalidAddress
from p2pchain.ledger.address import address_of, decode_address, encode_address
from p2pchain.ledger.crypto import SecretKey

PREFIX = "dp2p"


def _bech32(prefix: str, payload: bytes, encoding: codecs.Encoding) -> str:
    return str(codecs.bech32_encode(prefix, codecs.convertbits(payload, 8, 5), encoding))


@given(address=pt.addresses(), prefix=st.sampled_from(["dp2p", "tp2p", "x"]))
def test_text_round_trip(address: bytes, prefix: str) -> None:
    text = encode_address(address, prefix)
    assert text.startswith(prefix + "1")
    assert decode_address(text, prefix) == address
    assert decode_address(text.upper(), prefix) == address


@given(key=pt.secret_keys())
def test_address_is_twenty_bytes_and_depends_on_the_key(key: SecretKey) -> None:
    address = address_of(key.public_key)
    assert len(address) == 20
    other = SecretKey.from_entropy(key.secret + b"other")
    assert address_of(other.public_key) != address


@given(address=pt.addresses())
def test_wrong_prefix_is_rejected(address: bytes) -> None:
    with pytest.raises(InvalidAddress, match="prefix"):
        decode_address(encode_address(address, "tp2p"), PREFIX)


@given(address=pt.addresses(), data=st.data())
def test_any_single_character_change_is_rejected(address: bytes, data: st.DataObject) -> None:
    text = encode_address(address, PREFIX)
    position = data.draw(st.integers(min_value=len(PREFIX) + 1, max_value=len(text) - 1))
    replacement = data.draw(st.sampled_from(codecs.CHARSET).filter(lambda c: c != text[position]))
    with pytest.raises(InvalidAddress):
        decode_address(text[:position] + replacement + text[position + 1 :], PREFIX)


def test_bech32_checksum_where_bech32m_is_required() -> None:
    with pytest.raises(InvalidAddress, match="bech32m is required"):
        decode_address(_bech32(PREFIX, bytes(20), codecs.Encoding.BECH32), PREFIX)


@pytest.mark.parametrize("length", [0, 19, 21, 32])
def test_payload_of_wrong_length_is_rejected(length: int) -> None:
    with pytest.raises(InvalidAddress, match="expected 20"):
        decode_address(_bech32(PREFIX, bytes(range(length)), codecs.Encoding.BECH32M), PREFIX)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "dp2p",
        "dp2p1",
        "Dp2p1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq",  # mixed case
        "dp2p1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqb",  # 'b' is not in the charset
        "dp2p1" + "q" * 100,  # longer than 90 characters
        "dp2p 1qqqqqqqqqqqqqq",
    ],
)
def test_malformed_text_is_rejected(text: str) -> None:
    with pytest.raises(InvalidAddress):
        decode_address(text, PREFIX)


@given(text=st.text(max_size=100))
def test_arbitrary_text_raises_only_invalid_address(text: str) -> None:
    try:
        address = decode_address(text, PREFIX)
    except InvalidAddress:
        return
    assert encode_address(address, PREFIX) == text.lower()


def test_invalid_address_is_a_decode_error() -> None:
    assert issubclass(InvalidAddress, DecodeError)
