"""The in-place readers of transactions, blocks and `Blocks` frames against the generic decoder.

They exist for speed only, so each must give the generic decoder's answer for every input: the
same value, or a `DecodeError` both ways, and the same decode budget left over (which is what
makes them refuse exactly the inputs too costly to decode).
"""

from collections.abc import Callable
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from p2pchain import testing as pt
from p2pchain.errors import DecodeError
from p2pchain.ledger.block import Block, read_block
from p2pchain.ledger.encoding import (
    RLPItem,
    budget_for,
    decode,
    decode_item,
    decode_span,
    encode,
    encode_item,
)
from p2pchain.ledger.header import BlockHeader
from p2pchain.ledger.tx import (
    OutPoint,
    Transaction,
    TxInput,
    TxKind,
    TxOutput,
    _read_in_place,
    read_transaction,
)
from p2pchain.ledger.types import (
    Address,
    Amount,
    AssetId,
    BlockId,
    Hash32,
    Height,
    PublicKey,
    Slot,
    TxId,
)
from p2pchain.protocol.messages import Blocks, decode_message, encode_message
from p2pchain.testing.mutations import hostile_encodings

PAYLOAD_FREE = st.sampled_from([TxKind.TRANSFER, TxKind.BOND, TxKind.UNBOND])


def _outcome(decoder: Callable[[bytes], object], data: bytes) -> object:
    try:
        return decoder(data)
    except DecodeError:
        return DecodeError


def _generic_budget_left(data: bytes) -> int:
    return decode_span(data, 0, len(data), 0, budget_for(data))[1]


@given(pt.transactions(PAYLOAD_FREE, max_inputs=4, max_outputs=4))
def test_a_payload_free_transaction_takes_the_in_place_path(tx: Transaction) -> None:
    """Every transfer, bond and unbond without an offer's witness is read in place (so the
    fast path is the usual one), to the same value, id and size as the generic decoder."""
    tx = replace(tx, inputs=tuple(replace(i, offer_until=None) for i in tx.inputs))
    data = encode(tx)
    fast, inputs, outputs = _read_in_place(data)
    assert fast == tx == decode(Transaction, data)
    assert (fast.txid, fast.size, fast.encoded) == (tx.txid, tx.size, data)
    assert (inputs, outputs) == (len(tx.inputs), len(tx.outputs))


@given(pt.transactions(max_inputs=4, max_outputs=4))
def test_any_transaction_leaves_the_budget_the_generic_decoder_leaves(tx: Transaction) -> None:
    data = encode(tx)
    read, left = read_transaction(data, 0, len(data), 0, budget_for(data))
    assert read == tx
    assert read.txid == tx.txid
    assert left == _generic_budget_left(data)


@given(pt.transactions(), st.data())
def test_hostile_variants_of_a_transaction_decode_alike_on_both_paths(
    tx: Transaction, draw: st.DataObject
) -> None:
    data = draw.draw(hostile_encodings(tx.to_rlp()))
    expected = _outcome(lambda raw: decode(Transaction, raw), data)
    got = _outcome(Transaction.from_bytes, data)
    assert got == expected
    if isinstance(got, Transaction):
        assert isinstance(expected, Transaction)
        assert (got.txid, got.encoded) == (expected.txid, encode(expected))


@given(pt.blocks(max_txs=4))
def test_a_block_read_in_place_equals_the_generic_decode(block: Block) -> None:
    data = encode(block)
    read, left = read_block(data, 0, len(data), 0, budget_for(data))
    assert read == block == decode(Block, data)
    assert [tx.txid for tx in read.transactions] == [tx.txid for tx in block.transactions]
    assert read.encoded == data == block.encoded  # kept from the bytes read, cached when built
    assert left == _generic_budget_left(data)


@given(pt.blocks(), st.data())
def test_hostile_variants_of_a_block_decode_alike_on_both_paths(
    block: Block, draw: st.DataObject
) -> None:
    data = draw.draw(hostile_encodings(block.to_rlp()))
    assert _outcome(Block.from_bytes, data) == _outcome(lambda raw: decode(Block, raw), data)


def _generic_blocks(body: bytes) -> Blocks:
    return Blocks.from_rlp(decode_item(body[1:]))


@given(st.lists(pt.blocks(max_txs=2, max_votes=1), max_size=3), st.data())
def test_hostile_variants_of_a_blocks_frame_decode_alike_on_both_paths(
    blocks: list[Block], draw: st.DataObject
) -> None:
    message = Blocks(request_id=draw.draw(st.integers(0, 2**64 - 1)), blocks=tuple(blocks))
    assert decode_message(encode_message(message)) == message
    item: RLPItem = message.to_rlp()
    body = bytes([Blocks.TYPE]) + draw.draw(hostile_encodings(item))
    assert _outcome(decode_message, body) == _outcome(_generic_blocks, body)


def _refused_for_cost(decoder: Callable[[bytes], object], data: bytes) -> bool:
    try:
        decoder(data)
    except DecodeError as exc:
        return "more items than its size allows" in str(exc)
    return False


def test_a_block_of_in_place_transactions_at_the_budget_edge_is_judged_alike() -> None:
    """Empty lists in the votes field push a block of in-place transfers to within and past its
    decode budget, one list at a time: both paths refuse it for its cost from the same count."""
    inputs = tuple(TxInput(outpoint=OutPoint(txid=TxId(bytes([i]) * 32), index=i)) for i in (1, 2))
    output = TxOutput(asset=AssetId(bytes(32)), amount=Amount(5), address=Address(bytes(20)))
    transfer = Transaction(kind=TxKind.TRANSFER, inputs=inputs, outputs=(output, output))
    header = BlockHeader(
        parent=BlockId(bytes(32)),
        height=Height(1),
        slot=Slot(1),
        proposer=PublicKey(bytes(32)),
        body_root=Hash32(bytes(32)),
        state_root=Hash32(bytes(32)),
    )
    item = Block(header=header, signature=bytes(64), transactions=(transfer,) * 3).to_rlp()
    assert isinstance(item, list)
    verdicts = []
    for fillers in range(0, 200):
        data = encode_item([*item[:3], [[]] * fillers])
        generic = _refused_for_cost(decode_item, data)
        in_place = _refused_for_cost(
            lambda raw: read_block(raw, 0, len(raw), 0, budget_for(raw)), data
        )
        assert generic == in_place, fillers
        verdicts.append(generic)
    assert verdicts[0] is False
    assert verdicts[-1] is True
