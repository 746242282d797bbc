"""`PeerConnection`: one peer link as a sans-IO state machine (bytes in, events and bytes out).

Rule: every state change of a connection goes through `TRANSITIONS` in this file, and the dialer
and the listener follow the same table; only their Noise role differs. Inside code raises
`LocalProtocolError` (or `DecodeError`); the one inbound entry point, `next_event`, turns either
into `RemoteProtocolError` and moves the connection to `ERROR`. Time, keys and nonces come from the
caller: there is no clock, socket or randomness in here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Literal, NewType

from p2pchain.errors import DecodeError, LocalProtocolError, RemoteProtocolError
from p2pchain.ledger.crypto import SecretKey
from p2pchain.protocol.framing import FrameDecoder, check_frame_header, encode_frame
from p2pchain.protocol.hello import check_hello
from p2pchain.protocol.messages import (
    ANSWER_OF,
    MAX_DETAIL_BYTES,
    MESSAGE_TYPES,
    Blocks,
    Disconnect,
    DisconnectReason,
    GetBlocksById,
    GetBlocksByRange,
    Hello,
    Message,
    Ping,
    Pong,
    decode_message,
)
from p2pchain.protocol.noise import (
    MAX_HANDSHAKE_MESSAGE,
    IdentityProof,
    NoiseMessageDecoder,
    NoiseSession,
    compute_static_public,
    make_identity_proof,
)

PeerId = NewType("PeerId", bytes)
"""A peer's 32-byte x-only node key, as proved in the Noise handshake."""


class State(Enum):
    """Connection states; see `TRANSITIONS`."""

    # By identity (members are singletons): Enum's own hash is Python code, and every received
    # message looks its (state, type) pair up twice.
    __hash__ = object.__hash__

    NOISE_HANDSHAKE = "noise-handshake"
    HELLO = "hello"
    ACTIVE = "active"
    CLOSED = "closed"
    ERROR = "error"


class Trigger(Enum):
    """State inputs that are not received messages."""

    NOISE_COMPLETE = "noise-complete"
    CLOSE = "close"
    EOF = "eof"
    FAULT = "fault"


OPEN_STATES: Final = frozenset({State.NOISE_HANDSHAKE, State.HELLO, State.ACTIVE})
_ACTIVE_MESSAGES: Final = tuple(cls for cls in MESSAGE_TYPES.values() if cls is not Disconnect)

TRANSITIONS: Final[Mapping[tuple[State, Trigger | type[Message]], State]] = {
    (State.NOISE_HANDSHAKE, Trigger.NOISE_COMPLETE): State.HELLO,
    (State.HELLO, Hello): State.ACTIVE,
    (State.HELLO, Disconnect): State.CLOSED,
    # A repeated Hello is ignored (a confused but harmless peer), as is every other message type.
    **{(State.ACTIVE, cls): State.ACTIVE for cls in _ACTIVE_MESSAGES},
    (State.ACTIVE, Disconnect): State.CLOSED,
    **{(state, Trigger.CLOSE): State.CLOSED for state in OPEN_STATES},
    **{(state, Trigger.EOF): State.CLOSED for state in OPEN_STATES},
    **{(state, Trigger.FAULT): State.ERROR for state in OPEN_STATES},
}


_ANSWER_TO: Final[Mapping[type[Message], int]] = {
    GetBlocksByRange: Blocks.TYPE,
    GetBlocksById: Blocks.TYPE,
    **{request: answer.TYPE for request, answer in ANSWER_OF.items()},
}
"""The answer type each request type expects back."""
_ANSWER_TYPES: Final = frozenset(_ANSWER_TO.values())


def _message_type(message: Message) -> int:
    return type(message).TYPE


_PLAIN_WHEN_ACTIVE: Final = frozenset(
    kind
    for kind in _ACTIVE_MESSAGES
    if TRANSITIONS.get((State.ACTIVE, kind)) is State.ACTIVE
    and kind not in (Hello, Ping, Pong)
    and kind.TYPE not in _ANSWER_TYPES
)
"""Types an ACTIVE link takes with nothing to do but pass them up (no state change, no
answer to count, no ping to settle): nearly every message, given a shortcut in `_on_message`."""


_ACCEPTED_TYPES: Final[Mapping[State, frozenset[int]]] = {
    state: frozenset(
        trigger.TYPE
        for source, trigger in TRANSITIONS
        if source is state and not isinstance(trigger, Trigger)
    )
    for state in State
}
"""Frame types each state accepts, from `TRANSITIONS`. Checked from the frame header, so that
before its Hello a peer cannot make us buffer, say, a 2 MB Publish body."""


class NeedData(Enum):
    """Type of the `NEED_DATA` sentinel."""

    NEED_DATA = "need-data"


NEED_DATA: Final = NeedData.NEED_DATA


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeComplete:
    """The peer proved its key and sent an acceptable Hello; the link is ACTIVE."""

    hello: Hello


@dataclass(slots=True, kw_only=True)
class MessageReceived:
    """A message for the layer above.

    A Ping (already answered here) and a repeated Hello (ignored) surface too, so that the
    driver can charge them to the peer's rate limits; the driver passes neither on.

    Not frozen, unlike the other events: one is made per message received, and a frozen
    dataclass's `__init__` costs three times as much. Nothing changes it after it is made.
    """

    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed:
    """The last event of a cleanly closed link.

    `reason` is None when the transport ended without a Disconnect message.
    """

    reason: DisconnectReason | None
    by_peer: bool
    detail: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameToDecode:
    """A frame body too large to decode inline (`ConnectionConfig.inline_decode_bytes`).

    The caller decodes it with `decode_message` wherever it likes (a worker thread, so that
    one peer's 16 MiB answer does not stall every other peer) and hands the outcome back to
    `PeerConnection.receive_decoded` before asking for the next event.
    """

    body: bytes = field(repr=False)


Event = HandshakeComplete | MessageReceived | ConnectionClosed | FrameToDecode


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionConfig:
    """Timers of one connection, in seconds of the caller's clock."""

    handshake_timeout: float = 5.0
    """Noise and Hello must be done this long after `now` at creation (the swarm creates an
    inbound connection at TCP accept, so a WebSocket upgrade counts too)."""
    ping_interval: float = 15.0
    pong_timeout: float = 20.0
    inline_decode_bytes: int | None = None
    """Frame bodies longer than this come out as `FrameToDecode` for the caller to decode
    elsewhere; None decodes every frame inline."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionKeys:
    """Secrets for one connection: node identity, Noise static key, fresh Noise ephemeral key."""

    identity: SecretKey
    noise_static: bytes = field(repr=False)
    noise_ephemeral: bytes = field(repr=False)


class PeerConnection:
    """One peer link: bytes in, events and bytes out. No I/O, no clock, no randomness.

    Args:
        initiator: True on the dialing side (Noise initiator).
        keys: our secrets for this connection.
        hello: the Hello we send once the channel is up.
        now: the caller's clock at creation; the handshake deadline counts from here.
        config: timers.
    """

    def __init__(
        self,
        *,
        initiator: bool,
        keys: ConnectionKeys,
        hello: Hello,
        now: float,
        config: ConnectionConfig = ConnectionConfig(),
    ) -> None:
        if hello.node_key != keys.identity.public_key:
            raise LocalProtocolError("our Hello must carry our own node key")
        self.initiator = initiator
        self.config = config
        self.state = State.NOISE_HANDSHAKE
        self.hello = hello
        self.peer_hello: Hello | None = None
        self.close_reason: DisconnectReason | None = None
        self._noise = NoiseSession(
            initiator=initiator,
            static_private=keys.noise_static,
            ephemeral_private=keys.noise_ephemeral,
            identity_proof=self._identity_proof(keys),
        )
        self._noise_messages = NoiseMessageDecoder()
        self._frames = FrameDecoder(self._check_frame_header)
        self._answers_expected: dict[int, int] = dict.fromkeys(_ANSWER_TYPES, 0)
        """Per answer type (`Blocks`, the light and snapshot answers): requests we sent
        minus answers received. Only these may arrive; anything else is refused from its
        frame header."""
        self._decoding = False
        self._events: deque[Event] = deque()
        self._outgoing = bytearray()
        self._plaintext = bytearray()
        """Frames queued since the last `data_to_send`, encrypted together when it is called:
        one transport message carries every frame a write takes (up to 65,519 bytes each), so
        a burst for one peer costs one encryption, not one per frame."""
        self._eof = False
        self._handshake_deadline = now + config.handshake_timeout
        self._next_ping_at = now + config.ping_interval
        self._ping_sent_at = now
        self._pong_deadline: float | None = None
        self._ping_nonce = 0
        self._advance_noise()

    # -- inspection ---------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """True until the connection is closed or has failed."""
        return self.state in OPEN_STATES

    @property
    def peer_key(self) -> PeerId | None:
        """The node key the peer proved in the Noise handshake (None before, or if invalid)."""
        key = self._noise.remote_node_key
        return None if key is None else PeerId(key)

    @property
    def pending_bytes(self) -> int:
        """Bytes queued for the peer and not yet taken by `data_to_send` (frames counted as
        plaintext until then)."""
        return len(self._outgoing) + len(self._plaintext)

    @property
    def buffered_bytes(self) -> int:
        """Bytes received and not yet turned into events.

        Once `next_event` returns NEED_DATA this is less than one Noise message plus one frame
        of the largest type the state accepts, with their headers: what a peer can make us hold.
        """
        return self._noise_messages.buffered + self._frames.buffered

    # -- inbound ------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the transport; ``b""`` means the peer closed its side."""
        if not self.is_open:
            return
        if data:
            self._noise_messages.receive_data(data)
        else:
            self._eof = True

    def next_event(self) -> Event | Literal[NeedData.NEED_DATA]:
        """Parse one event, or return NEED_DATA.

        Raises:
            RemoteProtocolError: the peer broke the protocol; the state is now ERROR and a
                Disconnect(PROTOCOL_ERROR) is queued in `data_to_send` if the channel is up.
        """
        if self._decoding:
            raise LocalProtocolError("a FrameToDecode is waiting for receive_decoded")
        if self._events:
            return self._events.popleft()
        if self.state is State.ERROR:
            raise RemoteProtocolError("the connection has already failed")
        if self.state is State.CLOSED:
            return NEED_DATA
        try:
            return self._process_inbound()
        except (DecodeError, LocalProtocolError) as exc:
            self._fail(str(exc))
            raise RemoteProtocolError(str(exc)) from exc

    def _process_inbound(self) -> Event | Literal[NeedData.NEED_DATA]:
        while not self._events:
            if self.state is State.NOISE_HANDSHAKE:
                if self._advance_noise():
                    continue
            elif (body := self._frames.next_frame()) is not None:
                limit = self.config.inline_decode_bytes
                if limit is not None and len(body) > limit:
                    self._decoding = True
                    return FrameToDecode(body=body)
                self._on_message(decode_message(body))
                continue
            elif (ciphertext := self._noise_messages.next_message()) is not None:
                self._frames.receive_data(self._noise.decrypt(ciphertext))
                continue
            if self._eof:
                self._transition(Trigger.EOF)
                self._events.append(ConnectionClosed(reason=None, by_peer=True))
                break
            return NEED_DATA
        return self._events.popleft()

    def receive_decoded(self, outcome: Message | DecodeError) -> None:
        """Continue with the decoded `FrameToDecode` body (or the error decoding it raised).

        Raises:
            LocalProtocolError: no frame was waiting to be decoded.
            RemoteProtocolError: the body was malformed, or its message is not allowed now;
                as from `next_event`, the state is ERROR.
        """
        if not self._decoding:
            raise LocalProtocolError("no FrameToDecode is waiting")
        self._decoding = False
        if not self.is_open:
            return  # closed meanwhile (a timer, or our own close): the frame no longer matters
        try:
            if isinstance(outcome, DecodeError):
                raise outcome
            self._on_message(outcome)
        except (DecodeError, LocalProtocolError) as exc:
            self._fail(str(exc))
            raise RemoteProtocolError(str(exc)) from exc

    def _check_frame_header(self, length: int, message_type: int) -> None:
        """The static limits, only types the state accepts, and no `Blocks` frame (up to
        16 MiB) that answers nothing."""
        check_frame_header(length, message_type)
        if message_type not in _ACCEPTED_TYPES[self.state]:
            raise DecodeError(f"{MESSAGE_TYPES[message_type].__name__} not allowed now")
        if self._answers_expected.get(message_type) == 0:
            name = MESSAGE_TYPES[message_type].__name__
            raise DecodeError(f"a {name} frame that answers no request")

    def _advance_noise(self) -> bool:
        """Run the handshake as far as the buffered bytes allow; True once it completed."""
        while not self._noise.is_complete:
            if self._noise.is_our_turn:
                self._outgoing += self._noise.write_handshake()
                continue
            message = self._noise_messages.next_message(MAX_HANDSHAKE_MESSAGE)
            if message is None:
                return False
            self._noise.read_handshake(message)
        self._transition(Trigger.NOISE_COMPLETE)
        if self._noise.remote_node_key is None:
            self.close(DisconnectReason.BAD_IDENTITY, b"identity signature does not verify")
        else:
            self._write_message(self.hello)
        return True

    def _on_message(self, message: Message) -> None:
        before = self.state
        if before is State.ACTIVE and type(message) in _PLAIN_WHEN_ACTIVE:
            self._events.append(MessageReceived(message=message))
            return
        if (before, type(message)) not in TRANSITIONS:
            raise LocalProtocolError(f"{type(message).__name__} not allowed in state {before}")
        if isinstance(message, Disconnect):
            self._transition(Disconnect)
            self.close_reason = message.reason
            self._events.append(
                ConnectionClosed(reason=message.reason, by_peer=True, detail=message.detail)
            )
        elif isinstance(message, Hello):
            if before is State.HELLO:
                self._on_hello(message)
            else:
                self._transition(Hello)
                self._events.append(MessageReceived(message=message))  # ignored, but charged
        elif isinstance(message, Ping):
            self._transition(Ping)
            self._on_ping(message)
            self._events.append(MessageReceived(message=message))  # answered, but charged
        else:
            if _message_type(message) in self._answers_expected:
                self._answers_expected[_message_type(message)] -= 1
            if isinstance(message, Pong) and message.nonce == self._ping_nonce:
                self._pong_deadline = None
                self._next_ping_at = self._ping_sent_at + self.config.ping_interval
            self._transition(type(message))
            self._events.append(MessageReceived(message=message))

    def _on_ping(self, ping: Ping) -> None:
        """Answer a liveness probe (tests of silent peers override this one method)."""
        self._write_message(Pong(nonce=ping.nonce))

    def _on_hello(self, hello: Hello) -> None:
        expected_key = self._noise.remote_node_key
        assert expected_key is not None  # a connection with a bad identity closes before Hello
        reason = check_hello(self.hello, hello, expected_key)
        if reason is not None:
            self.close(reason, f"rejected hello: {reason.name}".encode())
            return
        self._transition(Hello)
        self.peer_hello = hello
        self._events.append(HandshakeComplete(hello=hello))

    def _fail(self, detail: str) -> None:
        if self.state is not State.NOISE_HANDSHAKE:
            self._write_disconnect(DisconnectReason.PROTOCOL_ERROR, detail.encode())
        self.close_reason = DisconnectReason.PROTOCOL_ERROR
        self._transition(Trigger.FAULT)

    # -- timers -------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When `handle_timer` must next be called (caller's clock), or None."""
        if self.state in (State.NOISE_HANDSHAKE, State.HELLO):
            return self._handshake_deadline
        if self.state is State.ACTIVE:
            return self._next_ping_at if self._pong_deadline is None else self._pong_deadline
        return None

    def handle_timer(self, now: float) -> None:
        """Apply every deadline that has passed at `now`: handshake, ping, pong."""
        if self.state in (State.NOISE_HANDSHAKE, State.HELLO):
            if now >= self._handshake_deadline:
                self.close(DisconnectReason.HANDSHAKE_TIMEOUT)
        elif self.state is State.ACTIVE:
            if self._pong_deadline is not None:
                if now >= self._pong_deadline:
                    self.close(DisconnectReason.PING_TIMEOUT)
            elif now >= self._next_ping_at:
                self._ping_nonce += 1
                self._ping_sent_at = now
                self._pong_deadline = now + self.config.pong_timeout
                self._write_message(Ping(nonce=self._ping_nonce))

    # -- outbound -----------------------------------------------------------------------------

    def send(self, message: Message, *, frame: bytes | None = None) -> None:
        """Queue `message` for the peer; `frame` is its `encode_frame`, when the caller
        already has it (one message relayed to many peers is encoded once).

        Raises:
            LocalProtocolError: the link is not ACTIVE, or the message is Hello/Disconnect
                (those belong to the handshake and to `close`).
        """
        if self.state is not State.ACTIVE:
            raise LocalProtocolError(f"cannot send in state {self.state}")
        if isinstance(message, Hello | Disconnect):
            raise LocalProtocolError(f"{type(message).__name__} is sent by the connection itself")
        answer = _ANSWER_TO.get(type(message))
        if answer is not None:
            self._answers_expected[answer] += 1
        if frame is None:
            self._write_message(message)
        else:
            self._write_plaintext(frame)

    def close(self, reason: DisconnectReason, detail: bytes = b"") -> None:
        """Close with `reason`, telling the peer if the channel is up. Idempotent."""
        if not self.is_open:
            return
        if self.state is not State.NOISE_HANDSHAKE:
            self._write_disconnect(reason, detail)
        self._transition(Trigger.CLOSE)
        self.close_reason = reason
        self._events.append(ConnectionClosed(reason=reason, by_peer=False, detail=detail))

    def data_to_send(self) -> bytes:
        """Take every byte queued for the transport."""
        if self._plaintext:
            self._outgoing += self._noise.encrypt(bytes(self._plaintext))
            self._plaintext.clear()
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    # -- internals ----------------------------------------------------------------------------

    def _identity_proof(self, keys: ConnectionKeys) -> IdentityProof:
        """Our Noise handshake payload (tests of hostile peers override this one method)."""
        return make_identity_proof(keys.identity, compute_static_public(keys.noise_static))

    def _write_disconnect(self, reason: DisconnectReason, detail: bytes) -> None:
        self._write_message(Disconnect(reason=reason, detail=detail[:MAX_DETAIL_BYTES]))

    def _write_message(self, message: Message) -> None:
        self._write_plaintext(encode_frame(message))

    def _write_plaintext(self, plaintext: bytes) -> None:
        """Queue stream bytes, encrypted at `data_to_send` (hostile test peers send junk here)."""
        self._plaintext += plaintext

    def _transition(self, trigger: Trigger | type[Message]) -> None:
        new_state = TRANSITIONS.get((self.state, trigger))
        if new_state is None:
            raise LocalProtocolError(f"no transition from {self.state} on {trigger}")
        self.state = new_state
