"""`decode_message` and the gossip payload decoders, fed any frame body a peer could send.

Behind every valid type byte: arbitrary bytes, well-formed RLP of the wrong shape, and hostile
variants of valid messages. Only `DecodeError` may come out, and whatever is accepted must be
the canonical encoding of what was decoded.
"""

import itertools
import tracemalloc
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.errors import DecodeError
from p2pchain.ledger.block import Block
from p2pchain.ledger.encoding import decode, decode_item, encode_item, wrap_list
from p2pchain.ledger.evidence import decode_evidence
from p2pchain.ledger.offer import Offer
from p2pchain.ledger.tx import Transaction
from p2pchain.ledger.vote import Vote
from p2pchain.protocol.messages import (
    MAX_GOSSIP_DATA_BYTES,
    MAX_PAYLOAD_BYTES,
    MESSAGE_TYPES,
    Blocks,
    Message,
    Publish,
    Topic,
    decode_message,
    encode_message,
)
from p2pchain.testing import blocks, evidence, offers, transactions, votes
from p2pchain.testing.link import message_strategies
from p2pchain.testing.mutations import (
    check_strict_decode,
    hostile_encodings,
    nested_lists,
    rlp_items,
)

STRATEGIES = message_strategies()
by_type = pytest.mark.parametrize(
    "cls", sorted(MESSAGE_TYPES.values(), key=lambda c: c.TYPE), ids=lambda c: c.__name__
)
TOPIC_DECODERS: dict[Topic, Callable[[bytes], object]] = {
    Topic.TRANSACTION: Transaction.from_bytes,
    Topic.BLOCK: lambda data: decode(Block, data),
    Topic.VOTE: lambda data: decode(Vote, data),
    Topic.EVIDENCE: decode_evidence,
    Topic.OFFER: lambda data: decode(Offer, data),
}
"""What the node runs on a Publish's data, per topic (p2pchain/node/node.py)."""
TOPIC_VALUES = {
    Topic.TRANSACTION: transactions(),
    Topic.BLOCK: blocks(max_txs=2, max_votes=1),
    Topic.VOTE: votes(),
    Topic.EVIDENCE: evidence(),
    Topic.OFFER: offers(),
}


def _check(body: bytes) -> Message | None:
    return check_strict_decode(decode_message, encode_message, body)


def test_every_message_type_has_a_strategy() -> None:
    assert set(STRATEGIES) == set(MESSAGE_TYPES.values())


@by_type
@given(payload=st.one_of(st.binary(max_size=300), rlp_items().map(encode_item)))
def test_arbitrary_payload_behind_a_valid_type(cls: type[Message], payload: bytes) -> None:
    _check(bytes([cls.TYPE]) + payload)


@given(body=st.binary(max_size=300))
def test_arbitrary_body(body: bytes) -> None:
    _check(body)


@by_type
@given(data=st.data())
def test_hostile_variants_of_valid_messages(cls: type[Message], data: st.DataObject) -> None:
    message = data.draw(STRATEGIES[cls])
    item = message.to_rlp()
    _check(bytes([cls.TYPE]) + data.draw(hostile_encodings(item)))


@given(topic=st.sampled_from(Topic), data=st.data())
def test_hostile_gossip_payloads(topic: Topic, data: st.DataObject) -> None:
    """The frame is fine; the object inside it is not (the node decodes it by topic)."""
    value = data.draw(TOPIC_VALUES[topic])
    payload = data.draw(hostile_encodings(value.to_rlp()))
    message = _check(encode_message(Publish(topic=topic, data=payload)))
    assert isinstance(message, Publish)
    check_strict_decode(TOPIC_DECODERS[topic], lambda v: encode_item(v.to_rlp()), message.data)


@pytest.mark.fuzz
@by_type
@given(data=st.data())
def test_hostile_variants_deep(cls: type[Message], data: st.DataObject) -> None:
    encoded = encode_message(data.draw(STRATEGIES[cls]))[1:]
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        try:
            item = decode_item(encoded)
        except DecodeError:
            break
        encoded = data.draw(hostile_encodings(item))
    _check(bytes([cls.TYPE]) + encoded)


@pytest.mark.fuzz
@by_type
@given(payload=st.binary(min_size=300, max_size=20_000))
def test_arbitrary_large_payload(cls: type[Message], payload: bytes) -> None:
    _check(bytes([cls.TYPE]) + payload)


# -- regressions and limits ----------------------------------------------------------------

PUBLISH_LIMIT = MAX_PAYLOAD_BYTES[Publish.TYPE]
BLOCKS_LIMIT = MAX_PAYLOAD_BYTES[Blocks.TYPE]


def _filled(build: Callable[[int], bytes], limit: int) -> bytes:
    """`build(n)` for the largest `n` whose result fits in `limit` bytes (headers grow with n)."""
    n = limit
    while len(payload := build(n)) > limit:
        n -= len(payload) - limit
    assert len(payload) > limit - 8  # as full as the header sizes allow
    return payload


def _publish(build: Callable[[int], bytes]) -> bytes:
    return bytes([Publish.TYPE]) + _filled(build, PUBLISH_LIMIT)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            _publish(lambda n: nested_lists(100_000, encode_item(bytes(n)))), id="as-the-payload"
        ),
        pytest.param(
            _publish(lambda n: wrap_list(nested_lists(100_000) + encode_item(bytes(n)))),
            id="as-the-topic",
        ),
        pytest.param(
            _publish(
                lambda n: wrap_list(
                    b"\x01" + encode_item(nested_lists(100_000, encode_item(bytes(n))))
                )
            ),
            id="in-the-block-data",
        ),
    ],
)
def test_100k_nested_lists_in_a_max_size_publish(body: bytes) -> None:
    """Deep nesting is refused at depth 16 wherever it is, without recursing 100,000 times (a
    recursive decoder raises RecursionError there) and without copying the input many times."""
    tracemalloc.start()
    try:
        message = _check(body)
        if message is not None:  # the nesting is opaque data here: the block decoder meets it
            assert isinstance(message, Publish)
            with pytest.raises(DecodeError, match="nested too deeply"):
                TOPIC_DECODERS[message.topic](message.data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(body)


def test_max_size_blocks_frame_of_empty_lists_is_refused_within_its_budget() -> None:
    """Found by fuzzing: a 16 MiB Blocks body of ``c0`` bytes decoded into 16 million lists
    (1.2 GB, 6 s) before `Blocks.from_rlp` saw that 128 is the most it may hold."""
    payload = _filled(lambda n: wrap_list(b"\x80" + wrap_list(b"\xc0" * n)), BLOCKS_LIMIT)
    with pytest.raises(DecodeError, match="more items than its size allows"):
        decode_item(payload)  # the generic decoder, the reference of the in-place reader
    body = bytes([Blocks.TYPE]) + payload
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError):  # in place: the first block is already no block
            decode_message(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(payload) // 100


@pytest.mark.parametrize("size", [9, 2_000, 100_000])
def test_huge_integer_in_a_publish_topic_is_a_decode_error(size: int) -> None:
    """Found by fuzzing: a 2,000-byte topic escaped `decode_message` as ValueError."""
    body = bytes([Publish.TYPE]) + encode_item([b"\x01" * size, b""])
    with pytest.raises(DecodeError, match=r"publish\.topic"):
        decode_message(body)


def _header(offset: int, length: int, form: str) -> bytes:
    """An RLP header for `length`: its canonical form, or a long form of 1 or 2 length
    bytes whatever the length (non-canonical below 56, or with a leading zero)."""
    if form == "canonical":
        if length < 56:
            return bytes([offset + length])
        size = (length.bit_length() + 7) // 8
    else:
        size = 1 if form == "long1" else 2
        if length >= 256**size:
            size = (length.bit_length() + 7) // 8
    return bytes([offset + 55 + size]) + length.to_bytes(size, "big")


def _publish_body(
    topic: int, data: bytes, forms: tuple[str, str], deltas: tuple[int, int]
) -> bytes:
    """A Publish body from its parts: the topic's byte, then `data` under a header of form
    ``forms[0]`` declaring ``deltas[0]`` bytes more than it has ("single": no header), all in
    a list header of form ``forms[1]`` declaring ``deltas[1]`` bytes more than the payload."""
    if forms[0] == "single":
        data_item = data
    else:
        data_item = _header(0x80, max(0, len(data) + deltas[0]), forms[0]) + data
    payload = bytes([topic]) + data_item
    return (
        bytes([Publish.TYPE]) + _header(0xC0, max(0, len(payload) + deltas[1]), forms[1]) + payload
    )


def _generic_publish(body: bytes) -> Publish:
    """The reference the in-place reader must agree with: the generic RLP decoder alone."""
    return Publish.from_rlp(decode_item(body[1:]))


def _decode_or_error(decoder: Callable[[bytes], object], body: bytes) -> object:
    try:
        return decoder(body)
    except DecodeError:
        return DecodeError


def test_the_in_place_publish_reader_agrees_with_the_generic_decoder_at_every_edge() -> None:
    """Every combination of topic byte, data length at a form boundary, header form and
    declared length off by one: both decoders give the same message or both refuse."""
    forms = ("canonical", "long1", "long2")
    count = 0
    for topic, length, data_form, list_form, data_delta, list_delta in itertools.product(
        (0x80, 0x00, 0x01, 0x03, 0x04, 0x81, 0xC0),
        (0, 1, 2, 50, 54, 55, 56, 300, 70_000),
        (*forms, "single"),
        forms,
        (-1, 0, 1),
        (-1, 0, 1),
    ):
        for data in {bytes([0x7F]) * length, bytes([0x80]) * length}:
            body = _publish_body(topic, data, (data_form, list_form), (data_delta, list_delta))
            expected = _decode_or_error(_generic_publish, body)
            assert _decode_or_error(decode_message, body) == expected, body.hex()
            count += expected is not DecodeError
    assert count > 100  # the grid does reach valid messages, not only refusals
    for length in (MAX_GOSSIP_DATA_BYTES, MAX_GOSSIP_DATA_BYTES + 1):  # within the frame limit
        body = encode_message(Publish(topic=Topic.BLOCK, data=bytes(length)))
        expected = _decode_or_error(_generic_publish, body)
        assert _decode_or_error(decode_message, body) == expected
        assert (expected is DecodeError) is (length > MAX_GOSSIP_DATA_BYTES)


@given(st.sampled_from(Topic), st.binary(max_size=300), st.data())
def test_hostile_variants_of_a_publish_decode_alike_on_both_paths(
    topic: Topic, data: bytes, draw: st.DataObject
) -> None:
    message = Publish(topic=topic, data=data)
    body = bytes([Publish.TYPE]) + draw.draw(hostile_encodings(message.to_rlp()))
    expected = _decode_or_error(_generic_publish, body)
    assert _decode_or_error(decode_message, body) == expected
