"""Canonical RLP of every ledger wire object: round trips, and strict rejection of anything else."""

from collections.abc import Callable
from dataclasses import dataclass, replace
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain import testing as pt
from p2pchain.errors import DecodeError
from p2pchain.ledger import encoding
from p2pchain.ledger.address import address_of
from p2pchain.ledger.block import Block, body_rlp, compute_body_root
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.encoding import ENCODERS, RLPItem, decode, encode, encode_item
from p2pchain.ledger.evidence import decode_evidence
from p2pchain.ledger.genesis import Allocation, GenesisConfig, GenesisValidator
from p2pchain.ledger.header import BlockHeader, SignedHeader
from p2pchain.ledger.offer import Offer
from p2pchain.ledger.partial import PartialTransaction
from p2pchain.ledger.tx import (
    Lock,
    LockKind,
    OutPoint,
    Transaction,
    TxInput,
    TxKind,
    TxOutput,
    tx_signing_message,
)
from p2pchain.ledger.types import AssetId, TxId
from p2pchain.ledger.utxo import AssetInfo, TxUndo, UndoData
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.params import COIN, NATIVE_ASSET


@dataclass(frozen=True)
class Codec:
    """One wire type: how to draw values of it and how to decode it."""

    name: str
    values: st.SearchStrategy[object]
    decoder: Callable[[bytes], object]


def _decoder(cls: type) -> Callable[[bytes], object]:
    return lambda data: decode(cls, data)


CODECS = [
    Codec("lock", pt.locks(), _decoder(Lock)),
    Codec("outpoint", pt.outpoints(), _decoder(OutPoint)),
    Codec("input", pt.tx_inputs(), _decoder(TxInput)),
    Codec("output", pt.tx_outputs(), _decoder(TxOutput)),
    *(
        Codec(f"tx-{kind.name.lower()}", pt.transactions(st.just(kind)), _decoder(Transaction))
        for kind in TxKind
    ),
    Codec("tx-from-bytes", pt.transactions(), Transaction.from_bytes),
    Codec("header", pt.block_headers(), _decoder(BlockHeader)),
    Codec("signed-header", pt.signed_headers(), _decoder(SignedHeader)),
    Codec("block", pt.blocks(), _decoder(Block)),
    Codec("vote", pt.votes(), _decoder(Vote)),
    Codec("checkpoint", pt.checkpoints(), _decoder(Checkpoint)),
    Codec("evidence", pt.evidence(), decode_evidence),
    Codec("genesis-config", pt.genesis_configs(), _decoder(GenesisConfig)),
    Codec(
        "allocation",
        st.builds(Allocation, address=pt.addresses(), amount=pt.uint64s()),
        _decoder(Allocation),
    ),
    Codec(
        "genesis-validator",
        st.builds(GenesisValidator, key=pt.public_keys(), owner=pt.addresses(), stake=pt.uint64s()),
        _decoder(GenesisValidator),
    ),
    Codec("asset-info", pt.asset_infos(), _decoder(AssetInfo)),
    Codec("offer", pt.offers(), _decoder(Offer)),
    Codec("partial", pt.partial_transactions(), _decoder(PartialTransaction)),
    Codec("tx-undo", pt.tx_undos(), _decoder(TxUndo)),
    Codec("undo-data", pt.undo_data(), _decoder(UndoData)),
]
BY_NAME = {codec.name: codec for codec in CODECS}


def _encode_any(value: object) -> bytes:
    to_rlp = getattr(value, "to_rlp")  # noqa: B009 - every drawn value is a wire object
    return encode_item(to_rlp())


def _decodes_canonically_or_rejects(codec: Codec, data: bytes) -> None:
    """The decoding contract: DecodeError, or a value that re-encodes to exactly `data`."""
    try:
        value = codec.decoder(data)
    except DecodeError:
        return
    assert _encode_any(value) == data


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@given(data=st.data())
def test_round_trip(codec: Codec, data: st.DataObject) -> None:
    value = data.draw(codec.values)
    encoded = _encode_any(value)
    decoded = codec.decoder(encoded)
    assert decoded == value
    assert _encode_any(decoded) == encoded


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
@given(data=st.data())
def test_every_encoder_gives_the_same_bytes(encoder: str, data: st.DataObject) -> None:
    codec = data.draw(st.sampled_from(CODECS), label="codec")
    value = data.draw(codec.values)
    with mock.patch.object(encoding, "_encode_raw", ENCODERS[encoder]):
        encoded = _encode_any(value)
        decoded = codec.decoder(encoded)
    to_rlp = getattr(value, "to_rlp")  # noqa: B009
    assert encoded == ENCODERS["python"](to_rlp())
    assert decoded == value


@given(block=pt.blocks())
def test_block_encodings_from_cached_tx_bytes_equal_the_generic_rlp(block: Block) -> None:
    assert block.encoded == encode(block)
    txs_item, votes_item = body_rlp(block.transactions, block.votes)
    level = [sha256(b"\x00" + encode_item(tx)) for tx in txs_item]
    while len(level) > 1:  # the Merkle tree of docs/protocol.md, from the generic encodings
        level = [
            sha256(b"\x01" + level[i] + level[i + 1]) if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
    tx_root = level[0] if level else bytes(32)
    count = len(block.transactions).to_bytes(8, "big")
    expected = sha256(count + tx_root + sha256(encode_item(votes_item)))
    assert compute_body_root(block.transactions, block.votes) == expected
    decoded = decode(Block, block.encoded)
    assert decoded.encoded == block.encoded


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_decode_error(codec: Codec, data: bytes) -> None:
    _decodes_canonically_or_rejects(codec, data)


@st.composite
def byte_mutations(draw: st.DrawFn, encoded: bytes) -> bytes:
    """Flip, insert, delete, truncate or extend the bytes of a valid encoding."""
    position = draw(st.integers(min_value=0, max_value=len(encoded)))
    byte = draw(st.integers(min_value=0, max_value=255))
    match draw(st.sampled_from(["flip", "insert", "delete", "truncate", "append"])):
        case "flip" if position < len(encoded):
            return (
                encoded[:position]
                + bytes([encoded[position] ^ (byte or 1)])
                + encoded[position + 1 :]
            )
        case "insert":
            return encoded[:position] + bytes([byte]) + encoded[position:]
        case "delete" if position < len(encoded):
            return encoded[:position] + encoded[position + 1 :]
        case "truncate":
            return encoded[:position]
        case _:
            return encoded + bytes([byte])


def _paths(item: RLPItem, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    paths = [prefix]
    if isinstance(item, list):
        for index, child in enumerate(item):
            paths += _paths(child, (*prefix, index))
    return paths


def _replace_at(item: RLPItem, path: tuple[int, ...], new: RLPItem) -> RLPItem:
    if not path:
        return new
    assert isinstance(item, list)
    copy = list(item)
    copy[path[0]] = _replace_at(copy[path[0]], path[1:], new)
    return copy


def _get_at(item: RLPItem, path: tuple[int, ...]) -> RLPItem:
    for index in path:
        assert isinstance(item, list)
        item = item[index]
    return item


@st.composite
def structural_mutations(draw: st.DrawFn, item: RLPItem) -> bytes:
    """Canonical RLP of a valid item with one field changed in shape or size."""
    path = draw(st.sampled_from(_paths(item)))
    target = _get_at(item, path)
    nested: RLPItem = b"\x01"
    for _ in range(draw(st.integers(min_value=1, max_value=40))):
        nested = [nested]
    options: list[RLPItem] = [nested, [], b"", bytes(100_000)]
    if isinstance(target, bytes):
        options += [
            b"\x00" + target,  # leading zero / one byte too long
            target[:-1],  # one byte short
            target + b"\x00",
            [target],  # a list where bytes belong
            bytes(2**8) + target,  # oversize field
            b"\x01" + bytes(8),  # integer just over 2**64 - 1
        ]
    else:
        options += [
            [*target, b""],  # one field too many
            target[:-1],  # one field too few
            b"\x01",  # bytes where a list belongs
            [*target, *target],
        ]
    return encode_item(_replace_at(item, path, draw(st.sampled_from(options))))


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@given(data=st.data())
def test_mutated_encodings_raise_only_decode_error(codec: Codec, data: st.DataObject) -> None:
    value = data.draw(codec.values)
    getattr_rlp = getattr(value, "to_rlp")  # noqa: B009
    item: RLPItem = getattr_rlp()
    if data.draw(st.booleans()):
        mutated = data.draw(byte_mutations(encode_item(item)))
    else:
        mutated = data.draw(structural_mutations(item))
    _decodes_canonically_or_rejects(codec, mutated)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xc1" * 5_000 + b"\xc0", id="deeply-nested-lists"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\x81\x05", id="single-byte-as-short-string"),
        pytest.param(b"\xb8\x03abc", id="long-form-for-short-string"),
        pytest.param(b"\xb9\x00\x03abc", id="length-with-leading-zero"),
        pytest.param(b"\xbf" + b"\xff" * 8, id="absurd-length"),
        pytest.param(b"\xc0\xc0", id="trailing-bytes"),
        pytest.param(b"\xc2\x80", id="truncated-list"),
    ],
)
@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_malformed_rlp_is_rejected(codec: Codec, data: bytes) -> None:
    with pytest.raises(DecodeError):
        codec.decoder(data)


def _outpoint_item(index: bytes) -> RLPItem:
    return [bytes(32), index]


@pytest.mark.parametrize(
    ("item", "why"),
    [
        pytest.param(_outpoint_item(b"\x00\x01"), "integer with leading zero", id="leading-zero"),
        pytest.param(_outpoint_item(b"\x00"), "integer with leading zero", id="zero-as-00"),
        pytest.param(_outpoint_item(b"\x01" + bytes(4)), "exceeds", id="index-too-large"),
        pytest.param([bytes(31), b""], "expected 32 bytes", id="short-txid"),
        pytest.param([bytes(32), b"", b""], "expected 2 fields", id="extra-field"),
        pytest.param([bytes(32), [b""]], "got a list", id="list-for-integer"),
    ],
)
def test_field_rules_are_enforced(item: RLPItem, why: str) -> None:
    with pytest.raises(DecodeError, match=why):
        decode(OutPoint, encode_item(item))


@pytest.mark.parametrize(
    "lock_item",
    [
        pytest.param([b"", b"\x01", b""], id="none-with-value"),
        pytest.param([b"", b"", bytes(32)], id="none-with-key"),
        pytest.param([b"\x01", b"\x05", bytes(32)], id="height-with-key"),
        pytest.param([b"\x03", b"", bytes(31)], id="stake-short-key"),
        pytest.param([b"\x03", b"\x01", bytes(32)], id="stake-with-value"),
        pytest.param([b"\x04", b"\x01", b""], id="unbonding-without-key"),
        pytest.param([b"\x05", b"", b""], id="unknown-kind"),
    ],
)
def test_ill_formed_locks_are_rejected(lock_item: RLPItem) -> None:
    with pytest.raises(DecodeError):
        decode(Lock, encode_item(lock_item))


def test_payload_must_match_kind() -> None:
    transfer = Transaction(kind=TxKind.TRANSFER)
    item = transfer.to_rlp()
    assert isinstance(item, list)
    with pytest.raises(DecodeError, match="payload"):
        decode(Transaction, encode_item([item[0], item[1], item[2], [b"\x01"]]))
    with pytest.raises(DecodeError, match="payload"):
        decode(Transaction, encode_item([b"\x01", item[1], item[2], []]))


def test_asset_name_longer_than_limit_is_rejected() -> None:
    item = [b"\x02", [], [], [b"x" * 33, b""]]
    with pytest.raises(DecodeError, match=r"payload\.name"):
        decode(Transaction, encode_item(item))


def test_known_encoding_of_a_lock() -> None:
    """A fixed vector, so that a change of layout cannot pass unnoticed."""
    lock = Lock(kind=LockKind.HEIGHT, value=1_000)
    assert encode(lock).hex() == "c5" + "01" + "8203e8" + "80"


@given(tx=pt.transactions())
def test_from_bytes_agrees_with_decode(tx: Transaction) -> None:
    data = encode(tx)
    fast = Transaction.from_bytes(data)
    assert fast == decode(Transaction, data) == tx
    assert (fast.txid, fast.size, fast.encoded) == (tx.txid, tx.size, data)


EXAMPLE_BODY = (
    "f86980e3e2a01111111111111111111111111111111111111111111111111111111111111111"
    "01f841f83fa0000000000000000000000000000000000000000000000000000000000000000084"
    "05f5e10094c689ceedf0db24183ff8b19f1053b7f2a504e599c3808080c0"
)
EXAMPLE_TXID = "24fbfe6011f7b4610ddbe597dfc0657a266b763578b76ec2cb12fcae6426bd7e"
EXAMPLE_MESSAGE = "786bd45217c5d2b4ef3513dac05d699dcc5da31fc12561e64c8394c7dc6ae34d"
EXAMPLE_SIGNATURE = (
    "0e09126b38b72ec345d9a44d806cf127eab9a71305b566f4e392ad4a8184a853"
    "6e086194cc57862b11b27301da5289299518bb23a6465e73818a7b52031c1af2"
)


def test_example_transaction_of_the_protocol_document() -> None:
    """The worked example in docs/protocol.md, byte for byte."""
    alice, bob = SecretKey(bytes(31) + b"\x01"), SecretKey(bytes(31) + b"\x02")
    unsigned = Transaction(
        kind=TxKind.TRANSFER,
        inputs=(TxInput(outpoint=OutPoint(txid=TxId(b"\x11" * 32), index=1)),),
        outputs=(
            TxOutput(asset=AssetId(NATIVE_ASSET), amount=COIN, address=address_of(bob.public_key)),
        ),
    )
    unsigned_item = unsigned.to_rlp()
    assert isinstance(unsigned_item, list)
    body = encode_item(
        [
            unsigned_item[0],
            [OutPoint(txid=TxId(b"\x11" * 32), index=1).to_rlp()],
            unsigned_item[2],
            unsigned_item[3],
        ]
    )
    assert body.hex() == EXAMPLE_BODY
    assert unsigned.txid.hex() == EXAMPLE_TXID == sha256(body).hex()
    message = tx_signing_message(1337, unsigned.txid)
    assert message.hex() == EXAMPLE_MESSAGE
    signature = alice.sign(message)
    assert signature.hex() == EXAMPLE_SIGNATURE
    signed = unsigned.with_inputs(
        (replace(unsigned.inputs[0], public_key=alice.public_key, signature=signature),)
    )
    assert signed.txid == unsigned.txid
    assert len(encode(signed)) == 209
    assert (
        encode(signed)
        .hex()
        .startswith("f8cf80f888f886e2a0" + "11" * 32 + "01a0" + alice.public_key.hex())
    )
