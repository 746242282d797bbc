"""Frames: ``length (4 bytes, big-endian) || type (1 byte) || RLP payload``.

`length` counts the body (type byte and payload). The decoder reads the type byte as soon as it
arrives and checks the declared length against that type's limit *before* it buffers the body, so
a peer cannot make us allocate more than one maximum-size frame of a type it may send.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from p2pchain.errors import DecodeError
from p2pchain.protocol.messages import MAX_PAYLOAD_BYTES, MESSAGE_TYPES, Message, encode_message

LENGTH_BYTES: Final = 4
HEADER_BYTES: Final = LENGTH_BYTES + 1
"""Length prefix plus type byte: what the decoder needs before it accepts a body."""


def encode_frame(message: Message) -> bytes:
    """The frame that carries `message`."""
    body = encode_message(message)
    return len(body).to_bytes(LENGTH_BYTES, "big") + body


def check_frame_header(length: int, message_type: int) -> None:
    """Raise `DecodeError` unless a body of `length` bytes may carry a message of this type."""
    if length == 0:
        raise DecodeError("zero-length frame")
    cls = MESSAGE_TYPES.get(message_type)
    if cls is None:
        raise DecodeError(f"unknown message type {message_type}")
    limit = MAX_PAYLOAD_BYTES[message_type]
    if length - 1 > limit:
        raise DecodeError(f"{cls.__name__} payload of {length - 1} bytes exceeds the limit {limit}")


HeaderCheck = Callable[[int, int], None]
"""``check(length, message_type)``: raise `DecodeError` to refuse a frame before its body."""


COMPACT_AFTER: Final = 64 * 1024
"""Consumed bytes a `StreamBuffer` keeps before dropping them: past this (a large item, or a
chunk of small ones), or once everything is read, they go at once, so a 16 MiB frame is not
held twice, while the items of one chunk cost one move, not one each."""


class StreamBuffer:
    """Bytes received from a stream and not yet taken, for the decoders that cut it into
    length-prefixed items (frames, Noise messages). Taking an item moves a read offset; the
    bytes before it are dropped at the next `append` or past `COMPACT_AFTER`, so taking k items
    from one chunk costs O(chunk), not O(k * chunk)."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._start = 0

    def __len__(self) -> int:
        return len(self._data) - self._start

    def append(self, data: bytes) -> None:
        if self._start:
            del self._data[: self._start]
            self._start = 0
        self._data += data

    def peek(self, offset: int, length: int) -> bytes:
        """`length` unread bytes from `offset` on (the caller checked they are there)."""
        start = self._start + offset
        return bytes(self._data[start : start + length])

    def take(self, skip: int, length: int) -> bytes:
        """Drop `skip` unread bytes (a header) and take the `length` after them."""
        start = self._start + skip
        end = start + length
        item = bytes(self._data[start:end])
        if end == len(self._data) or end >= COMPACT_AFTER:  # never hold a big item twice
            del self._data[:end]
            self._start = 0
        else:
            self._start = end
        return item


class FrameDecoder:
    """Splits a byte stream into frame bodies, rejecting bad headers before buffering bodies.

    Args:
        check_header: the rule for headers; the connection adds its own to the static limits
            (an unsolicited `Blocks` frame is refused before its 16 MiB arrive).
    """

    def __init__(self, check_header: HeaderCheck = check_frame_header) -> None:
        self._check_header = check_header
        self._buffer = StreamBuffer()
        self._body_length: int | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Append bytes from the stream."""
        self._buffer.append(data)

    def next_frame(self) -> bytes | None:
        """The next complete body (type byte + payload), or None if more bytes are needed.

        Raises:
            DecodeError: zero length, unknown type, a length over the type's limit, or a
                header the `check_header` rule refuses.
        """
        buffer = self._buffer
        if self._body_length is None:
            if len(buffer) < LENGTH_BYTES:
                return None
            length = int.from_bytes(buffer.peek(0, LENGTH_BYTES), "big")
            if length == 0:
                raise DecodeError("zero-length frame")
            if len(buffer) < HEADER_BYTES:
                return None
            self._check_header(length, buffer.peek(LENGTH_BYTES, 1)[0])
            self._body_length = length
        if len(buffer) < LENGTH_BYTES + self._body_length:
            return None
        body = buffer.take(LENGTH_BYTES, self._body_length)
        self._body_length = None
        return body
