"""Every ledger decoder, fed arbitrary and almost-valid bytes: only `DecodeError` comes out.

The contract (docs/protocol.md, RLP conventions): decoding yields a value that encodes back to
exactly the input, or `DecodeError`. Anything else escaping a decoder could end a node, since
peers send these objects in gossip, sync responses and slashing evidence.
"""

import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain import testing as pt
from p2pchain.errors import DecodeError, InvalidAddress
from p2pchain.ledger.address import decode_address, encode_address
from p2pchain.ledger.block import Block
from p2pchain.ledger.encoding import (
    COST_ALLOWANCE,
    ELEMENT_COST,
    LIST_COST,
    budget_for,
    decode,
    decode_item,
    decode_span,
    encode,
    encode_item,
    wrap_list,
)
from p2pchain.ledger.evidence import decode_evidence
from p2pchain.ledger.genesis import Allocation, GenesisConfig, GenesisValidator
from p2pchain.ledger.header import BlockHeader, SignedHeader
from p2pchain.ledger.tx import (
    NO_LOCK,
    Lock,
    OutPoint,
    Transaction,
    TxInput,
    TxKind,
    TxOutput,
)
from p2pchain.ledger.types import Address, AssetId, BlockId, Hash32, PublicKey, TxId
from p2pchain.ledger.utxo import AssetInfo, TxUndo, UndoData
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.testing.mutations import (
    LONG_INTEGER_BYTES,
    check_strict_decode,
    hostile_encodings,
    nested_lists,
    rlp_items,
)


@dataclass(frozen=True)
class Decoder:
    """One ledger type: valid values of it, and the decoder that peers' bytes go through."""

    name: str
    values: st.SearchStrategy[object]
    decode: Callable[[bytes], object]


def _decoder(cls: type) -> Callable[[bytes], object]:
    return lambda data: decode(cls, data)


def _encode(value: object) -> bytes:
    return encode(value)  # every drawn value is a wire object


DECODERS = [
    Decoder("lock", pt.locks(), _decoder(Lock)),
    Decoder("outpoint", pt.outpoints(), _decoder(OutPoint)),
    Decoder("input", pt.tx_inputs(), _decoder(TxInput)),
    Decoder("output", pt.tx_outputs(), _decoder(TxOutput)),
    Decoder("tx", pt.transactions(), _decoder(Transaction)),
    Decoder("tx-from-bytes", pt.transactions(), Transaction.from_bytes),
    Decoder("header", pt.block_headers(), _decoder(BlockHeader)),
    Decoder("signed-header", pt.signed_headers(), _decoder(SignedHeader)),
    Decoder("block", pt.blocks(max_txs=2, max_votes=1), _decoder(Block)),
    Decoder("vote", pt.votes(), _decoder(Vote)),
    Decoder("checkpoint", pt.checkpoints(), _decoder(Checkpoint)),
    Decoder("evidence", pt.evidence(), decode_evidence),
    Decoder("genesis-config", pt.genesis_configs(), _decoder(GenesisConfig)),
    Decoder(
        "allocation",
        st.builds(Allocation, address=pt.addresses(), amount=pt.uint64s()),
        _decoder(Allocation),
    ),
    Decoder(
        "genesis-validator",
        st.builds(GenesisValidator, key=pt.public_keys(), owner=pt.addresses(), stake=pt.uint64s()),
        _decoder(GenesisValidator),
    ),
    Decoder("asset-info", pt.asset_infos(), _decoder(AssetInfo)),
    Decoder("tx-undo", pt.tx_undos(), _decoder(TxUndo)),
    Decoder("undo-data", pt.undo_data(), _decoder(UndoData)),
]
DEEP_DECODERS = [
    Decoder("tx-large", pt.transactions(max_inputs=20, max_outputs=20), Transaction.from_bytes),
    Decoder("block-large", pt.blocks(max_txs=10, max_votes=10), _decoder(Block)),
]
by_name = pytest.mark.parametrize("decoder", DECODERS, ids=lambda d: d.name)


def _structured_bytes() -> st.SearchStrategy[bytes]:
    """Well-formed RLP of arbitrary shape: gets past the raw codec to the field readers."""
    return rlp_items().map(encode_item)


@by_name
@given(data=st.one_of(st.binary(max_size=400), _structured_bytes()))
def test_arbitrary_bytes(decoder: Decoder, data: bytes) -> None:
    check_strict_decode(decoder.decode, _encode, data)


@by_name
@given(data=st.data())
def test_hostile_variants_of_valid_encodings(decoder: Decoder, data: st.DataObject) -> None:
    value = data.draw(decoder.values)
    item = value.to_rlp()  # every drawn value is a wire object
    check_strict_decode(decoder.decode, _encode, data.draw(hostile_encodings(item)))


@pytest.mark.fuzz
@pytest.mark.parametrize("decoder", DECODERS + DEEP_DECODERS, ids=lambda d: d.name)
@given(data=st.data())
def test_hostile_variants_deep(decoder: Decoder, data: st.DataObject) -> None:
    value = data.draw(decoder.values)
    encoded = _encode(value)
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):  # damage on damage
        try:
            item = decode_item(encoded)
        except DecodeError:
            break
        encoded = data.draw(hostile_encodings(item))
    check_strict_decode(decoder.decode, _encode, encoded)


@pytest.mark.fuzz
@by_name
@given(data=st.binary(min_size=400, max_size=20_000))
def test_arbitrary_bytes_large(decoder: Decoder, data: bytes) -> None:
    check_strict_decode(decoder.decode, _encode, data)


@given(
    text=st.one_of(
        st.text(max_size=120),
        st.builds(
            lambda a, tail: "dp2p1" + a + tail,
            st.text("qpzry9x8gf2tvdw0s3jn54khce6mua7l"),
            st.text(max_size=3),
        ),
        st.binary(min_size=20, max_size=20).map(lambda a: encode_address(a, "dp2p")),
    ),
    prefix=st.sampled_from(["dp2p", "tp2p"]),
)
def test_address_text(text: str, prefix: str) -> None:
    """RPC and the CLI read addresses from users: `InvalidAddress` (a DecodeError) or the one
    address that encodes back to the same text."""
    try:
        address = decode_address(text, prefix)
    except InvalidAddress:
        return
    assert encode_address(address, prefix) == text


# -- regressions --------------------------------------------------------------------------


@pytest.mark.parametrize("size", LONG_INTEGER_BYTES)
def test_integer_too_long_to_print_is_a_decode_error(size: int) -> None:
    """Found by fuzzing: an integer field of 1,787 bytes or more escaped as ValueError, because
    `read_uint` put the value in its message and `str()` refuses ints past 4,300 digits."""
    with pytest.raises(DecodeError, match="exceeds"):
        decode(OutPoint, encode_item([bytes(32), b"\x01" * size]))


@by_name
def test_100k_nested_lists_stop_at_the_depth_limit(decoder: Decoder) -> None:
    with pytest.raises(DecodeError, match="nested too deeply"):
        decoder.decode(nested_lists(100_000))


def test_wide_list_costs_a_few_times_its_size_in_memory() -> None:
    """Found by fuzzing: 16 MiB of ``c0`` (an empty list per byte) decoded into 16 million
    lists, 1.2 GB, before any field reader saw the first; now decoding stops at its cost budget
    (docs/protocol.md, RLP conventions)."""
    data = wrap_list(b"\xc0" * 1_000_000)
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="more items than its size allows"):
            decode(Block, data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 * len(data)  # was ~64 times: now lists stop at about len / 8


def test_block_of_empty_transactions_is_rejected_for_its_cost() -> None:
    """The cheapest decodable transaction is 5 bytes (``c4 80 c0 c0 c0``) and 4 lists; a block
    of 100,000 of them would allocate ~80 times its size in objects."""
    empty = encode(Transaction(kind=TxKind.TRANSFER))
    header = encode_item(_header().to_rlp()) + encode_item(bytes(64))
    block = wrap_list(header + wrap_list(empty * 100_000) + wrap_list(b""))
    with pytest.raises(DecodeError, match="more items than its size allows"):
        decode(Block, block)


def test_densest_valid_objects_are_far_within_the_cost_budget() -> None:
    """Outputs without a lock cost the most per byte of any valid object: a transaction and a
    block made of little else still decode, with room to spare."""
    outputs = tuple(
        TxOutput(asset=AssetId(bytes(32)), amount=1_000, address=Address(bytes(20)), lock=NO_LOCK)
        for _ in range(1_000)
    )
    tx = Transaction(
        kind=TxKind.TRANSFER,
        inputs=(TxInput(outpoint=OutPoint(txid=TxId(bytes(32)), index=0)),),
        outputs=outputs,
    )
    block = Block(header=_header(), signature=bytes(64), transactions=(tx,) * 20)
    assert Transaction.from_bytes(encode(tx)) == tx
    assert decode(Block, encode(block)) == block
    item = decode_item(encode(block))
    assert _cost(item) < 0.5 * len(encode(block))  # the budget is 1 per byte (+ an allowance)
    assert _cost(item) <= len(encode(block)) + COST_ALLOWANCE


def _cost(item: object) -> int:
    if isinstance(item, bytes):
        return 0
    assert isinstance(item, list)
    return LIST_COST + sum(ELEMENT_COST + _cost(child) for child in item)


def _header() -> BlockHeader:
    return BlockHeader(
        parent=BlockId(bytes(32)),
        height=1,
        slot=2,
        proposer=PublicKey(bytes(32)),
        body_root=Hash32(bytes(32)),
        state_root=Hash32(bytes(32)),
    )


def test_in_place_readers_share_the_limits() -> None:
    deep = wrap_list(nested_lists(100_000))
    with pytest.raises(DecodeError, match="nested too deeply"):
        decode_span(deep, 0, len(deep), 0, budget_for(deep))
    with pytest.raises(DecodeError, match="more items than its size allows"):
        Transaction.from_bytes(wrap_list(b"\xc0" * 10_000))
    header = encode(_header())
    junk_txs = wrap_list(header + encode_item(bytes(64)) + wrap_list(b"\xc0" * 10_000) + b"\xc0")
    with pytest.raises(DecodeError, match="tx: expected 4 fields"):  # at the first, not the last
        Block.from_bytes(junk_txs)
