"""BIP-340 sign/verify against the official vectors, and verify's never-raise contract."""

import csv
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.ledger.crypto import public_key_of, sign, verify

VECTORS = list(csv.DictReader((Path(__file__).parent.parent / "vectors" / "bip340.csv").open()))


@pytest.mark.parametrize("row", VECTORS, ids=lambda row: row["index"])
def test_bip340_vector_verifies_as_expected(row: dict[str, str]) -> None:
    key = bytes.fromhex(row["public key"])
    message = bytes.fromhex(row["message"])
    signature = bytes.fromhex(row["signature"])
    assert verify(key, message, signature) is (row["verification result"] == "TRUE")


@pytest.mark.parametrize(
    "row",
    [r for r in VECTORS if r["secret key"] and len(r["message"]) == 64],
    ids=lambda r: r["index"],
)
def test_bip340_vector_signs_identically(row: dict[str, str]) -> None:
    secret = bytes.fromhex(row["secret key"])
    assert public_key_of(secret).hex().upper() == row["public key"]
    signature = sign(secret, bytes.fromhex(row["message"]), bytes.fromhex(row["aux_rand"]))
    assert signature.hex().upper() == row["signature"]


@given(key=st.binary(max_size=40), message=st.binary(max_size=40), signature=st.binary(max_size=70))
def test_verify_returns_false_for_arbitrary_input(
    key: bytes, message: bytes, signature: bytes
) -> None:
    assert verify(key, message, signature) is False
