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
"""Consumed bytes a decoder keeps before dropping them: past this (a large frame, or a chunk of
small ones), or once everything is read, they go at once, so a 16 MiB frame is not held twice,
while the frames of one chunk cost one move, not one each."""


class FrameDecoder:
    """Splits a byte stream into frame bodies, rejecting bad headers before buffering bodies.

    Args:
        check_header: the rule for headers; the connection adds its own to the static limits
            (an unsolicited `Blocks` frame is refused before its 16 MiB arrive).
    """

    def __init__(self, check_header: HeaderCheck = check_frame_header) -> None:
        self._check_header = check_header
        self._buffer = bytearray()
        self._start = 0
        """Where the unread bytes begin: frames are taken by moving it, and the bytes before
        it dropped at the next `receive_data` or past `COMPACT_AFTER`, so taking k frames
        from one decrypted chunk costs O(chunk), not O(k * chunk)."""
        self._body_length: int | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buffer) - self._start

    def receive_data(self, data: bytes) -> None:
        """Append bytes from the stream."""
        if self._start:
            del self._buffer[: self._start]
            self._start = 0
        self._buffer += data

    def next_frame(self) -> bytes | None:
        """The next complete body (type byte + payload), or None if more bytes are needed.

        Raises:
            DecodeError: zero length, unknown type, a length over the type's limit, or a
                header the `check_header` rule refuses.
        """
        buffer, start = self._buffer, self._start
        if self._body_length is None:
            if len(buffer) - start < LENGTH_BYTES:
                return None
            length = int.from_bytes(buffer[start : start + LENGTH_BYTES], "big")
            if length == 0:
                raise DecodeError("zero-length frame")
            if len(buffer) - start < HEADER_BYTES:
                return None
            self._check_header(length, buffer[start + LENGTH_BYTES])
            self._body_length = length
        end = start + LENGTH_BYTES + self._body_length
        if len(buffer) < end:
            return None
        body = bytes(buffer[start + LENGTH_BYTES : end])
        self._start = end
        if end == len(buffer) or end >= COMPACT_AFTER:  # never hold a big frame twice
            del buffer[:end]
            self._start = 0
        self._body_length = None
        return body
