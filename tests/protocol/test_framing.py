"""Frame codec: round trips under any split, and header checks before the body is buffered."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.errors import DecodeError
from p2pchain.ledger.encoding import encode_item
from p2pchain.protocol.framing import FrameDecoder, encode_frame
from p2pchain.protocol.messages import (
    MAX_PAYLOAD_BYTES,
    MESSAGE_TYPES,
    Ping,
    Publish,
    decode_message,
    encode_message,
)
from p2pchain.testing.link import link_messages


def _header(length: int, message_type: int) -> bytes:
    return length.to_bytes(4, "big") + bytes([message_type])


@given(
    messages=st.lists(link_messages(), min_size=1, max_size=5),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
)
def test_frames_survive_any_split(messages, cuts):
    stream = b"".join(encode_frame(m) for m in messages)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    decoder = FrameDecoder()
    bodies = []
    for start, end in zip([0, *points], [*points, len(stream)], strict=True):
        decoder.receive_data(stream[start:end])
        while (body := decoder.next_frame()) is not None:
            bodies.append(body)
        assert decoder.buffered == end - sum(4 + len(b) for b in bodies)  # what is left over
    assert [decode_message(b) for b in bodies] == messages
    assert decoder.buffered == 0


def test_frame_layout_is_length_then_type_then_rlp():
    frame = encode_frame(Ping(nonce=5))
    assert frame == bytes([0, 0, 0, 3, Ping.TYPE, 0xC1, 0x05])


@pytest.mark.parametrize("message_type", sorted(MESSAGE_TYPES))
def test_oversize_length_rejected_from_the_header_alone(message_type):
    decoder = FrameDecoder()
    decoder.receive_data(_header(MAX_PAYLOAD_BYTES[message_type] + 2, message_type))
    with pytest.raises(DecodeError, match="exceeds"):
        decoder.next_frame()


@pytest.mark.parametrize("message_type", sorted(MESSAGE_TYPES))
def test_length_at_the_limit_waits_for_the_body(message_type):
    decoder = FrameDecoder()
    decoder.receive_data(_header(MAX_PAYLOAD_BYTES[message_type] + 1, message_type))
    assert decoder.next_frame() is None


@given(message_type=st.integers(0, 255).filter(lambda t: t not in MESSAGE_TYPES))
def test_unknown_type_rejected(message_type):
    decoder = FrameDecoder()
    decoder.receive_data(_header(10, message_type))
    with pytest.raises(DecodeError, match="unknown message type"):
        decoder.next_frame()


def test_zero_length_rejected_before_the_type_byte():
    decoder = FrameDecoder()
    decoder.receive_data(bytes(4))
    with pytest.raises(DecodeError, match="zero-length"):
        decoder.next_frame()


def test_partial_header_needs_more_data():
    frame = encode_frame(Publish(topic=0, data=b"abc"))
    decoder = FrameDecoder()
    for i in range(len(frame) - 1):
        decoder.receive_data(frame[i : i + 1])
        assert decoder.next_frame() is None
    decoder.receive_data(frame[-1:])
    assert decoder.next_frame() == frame[4:]


@given(message=link_messages())
def test_message_encoding_equals_the_generic_rlp_of_its_fields(message):
    """`Blocks` takes a shortcut through cached encodings; it must give the same bytes."""
    assert encode_message(message) == bytes([message.TYPE]) + encode_item(message.to_rlp())
