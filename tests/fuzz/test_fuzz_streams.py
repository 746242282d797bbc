"""The two stream splitters, `FrameDecoder` and `NoiseMessageDecoder`, under any bytes and splits.

A socket may deliver a peer's bytes cut anywhere. Whatever the bytes and the cuts: only
`DecodeError` comes out, the verdict and the pieces returned do not depend on the cuts, and once
a splitter asks for more data it holds less than one whole unit (one maximum-size frame of the
type it is reading, or one Noise message) plus its header.
"""

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.errors import DecodeError
from p2pchain.protocol.framing import HEADER_BYTES, LENGTH_BYTES, FrameDecoder, encode_frame
from p2pchain.protocol.messages import MAX_PAYLOAD_BYTES, MESSAGE_TYPES
from p2pchain.protocol.noise import (
    LENGTH_BYTES as NOISE_LENGTH_BYTES,
)
from p2pchain.protocol.noise import (
    MAX_HANDSHAKE_MESSAGE,
    MAX_NOISE_MESSAGE,
    NoiseMessageDecoder,
    frame_noise_message,
)
from p2pchain.testing.link import wire_messages
from p2pchain.testing.mutations import chunkings


@dataclass
class Outcome:
    """What a splitter made of a stream: the pieces it returned, and whether it then failed."""

    pieces: list[bytes]
    failed: bool


def _frames(chunks: list[bytes]) -> Outcome:
    decoder = FrameDecoder()
    pieces: list[bytes] = []
    stream = b"".join(chunks)
    for chunk in chunks:
        decoder.receive_data(chunk)
        try:
            while (body := decoder.next_frame()) is not None:
                pieces.append(body)
        except DecodeError:
            return Outcome(pieces, failed=True)
        start = sum(LENGTH_BYTES + len(piece) for piece in pieces)
        _assert_frame_buffer_bounded(decoder, stream[start:])
    return Outcome(pieces, failed=False)


def _assert_frame_buffer_bounded(decoder: FrameDecoder, rest: bytes) -> None:
    """Less than a header, or less than the frame whose (accepted) header starts `rest`."""
    if decoder.buffered < HEADER_BYTES:
        return
    length = int.from_bytes(rest[:LENGTH_BYTES], "big")
    assert length - 1 <= MAX_PAYLOAD_BYTES[rest[LENGTH_BYTES]]
    assert decoder.buffered < LENGTH_BYTES + length


def _noise(max_length: int) -> Callable[[list[bytes]], Outcome]:
    def split(chunks: list[bytes]) -> Outcome:
        decoder = NoiseMessageDecoder()
        pieces: list[bytes] = []
        for chunk in chunks:
            decoder.receive_data(chunk)
            try:
                while (message := decoder.next_message(max_length)) is not None:
                    pieces.append(message)
            except DecodeError:
                return Outcome(pieces, failed=True)
            assert decoder.buffered < NOISE_LENGTH_BYTES + max_length
        return Outcome(pieces, failed=False)

    return split


SPLITTERS = {
    "frames": _frames,
    "noise-handshake": _noise(MAX_HANDSHAKE_MESSAGE),
    "noise-transport": _noise(MAX_NOISE_MESSAGE),
}
by_splitter = pytest.mark.parametrize("name", sorted(SPLITTERS))


def _streams() -> st.SearchStrategy[bytes]:
    """Junk, valid units, and valid units with junk after them."""
    frames = st.lists(wire_messages(), max_size=4).map(
        lambda messages: b"".join(encode_frame(m) for m in messages)
    )
    noise = st.lists(st.binary(min_size=1, max_size=600), max_size=4).map(
        lambda messages: b"".join(frame_noise_message(m) for m in messages)
    )
    junk = st.binary(max_size=64)
    return st.one_of(
        st.binary(max_size=2_000),
        st.tuples(st.one_of(frames, noise), junk).map(lambda parts: parts[0] + parts[1]),
    )


@by_splitter
@given(data=st.data(), stream=_streams())
def test_any_split_gives_the_same_outcome(name: str, data: st.DataObject, stream: bytes) -> None:
    split = SPLITTERS[name]
    whole = split([stream] if stream else [])
    cut = split(data.draw(chunkings(stream)))
    assert cut == whole


@given(messages=st.lists(wire_messages(), min_size=1, max_size=4), data=st.data())
def test_valid_frames_come_out_whole_before_junk(messages, data: st.DataObject) -> None:
    stream = b"".join(encode_frame(m) for m in messages)
    junk = data.draw(st.binary(max_size=64))
    outcome = _frames(data.draw(chunkings(stream + junk)))
    assert outcome.pieces[: len(messages)] == [encode_frame(m)[LENGTH_BYTES:] for m in messages]


@pytest.mark.parametrize("message_type", sorted(MESSAGE_TYPES))
def test_a_frame_at_its_limit_is_buffered_and_never_more(message_type: int) -> None:
    limit = MAX_PAYLOAD_BYTES[message_type]
    header = (limit + 1).to_bytes(LENGTH_BYTES, "big") + bytes([message_type])
    decoder = FrameDecoder()
    decoder.receive_data(header)
    for size in (limit // 2, limit - limit // 2 - 1):  # the payload trickles in, but one byte
        decoder.receive_data(bytes(size))
        assert decoder.next_frame() is None
        assert decoder.buffered < HEADER_BYTES + limit
    decoder.receive_data(b"\x00")
    assert decoder.next_frame() == header[LENGTH_BYTES:] + bytes(limit)
    assert decoder.buffered == 0


@pytest.mark.fuzz
@by_splitter
@given(data=st.data(), stream=st.binary(min_size=2_000, max_size=200_000))
def test_any_split_of_large_junk(name: str, data: st.DataObject, stream: bytes) -> None:
    split = SPLITTERS[name]
    assert split(data.draw(chunkings(stream, max_cuts=100))) == split([stream])
