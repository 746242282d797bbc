"""`PeerConnection` as a Hypothesis state machine under a hostile link.

Two production connections (a dialer and a listener) are joined by a link that the machine
controls byte by byte. Rules deliver any prefix of what is in flight, inject arbitrary bytes,
corrupt bytes in flight, put valid, junk and out-of-order frames into the encrypted stream
(`RawConnection.send_raw`), send honest messages, end a stream, advance the clock and close, in
any order, from both sides and in every state (during Noise, in HELLO, ACTIVE, after the end).

What must hold whatever happens:
- `next_event` raises nothing but `RemoteProtocolError`, and then the state is ERROR for good;
  `send` in a state that does not allow it raises `LocalProtocolError`, nothing else;
- no event follows `ConnectionClosed`; messages come only after `HandshakeComplete`, once;
- a closed or failed connection stays so, has no timer, and ignores what it receives;
- `handle_timer(now)` leaves no deadline at or before `now` (so a driver always progresses);
- once `next_event` returns NEED_DATA, what a side buffers is below the bound of its state.
"""

from dataclasses import dataclass

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from p2pchain.errors import DecodeError, LocalProtocolError, RemoteProtocolError
from p2pchain.ledger.crypto import sha256
from p2pchain.ledger.encoding import decode_item
from p2pchain.ledger.types import BlockId
from p2pchain.protocol.connection import (
    NEED_DATA,
    OPEN_STATES,
    ConnectionClosed,
    ConnectionConfig,
    FrameToDecode,
    HandshakeComplete,
    MessageReceived,
    State,
)
from p2pchain.protocol.framing import HEADER_BYTES, LENGTH_BYTES, encode_frame
from p2pchain.protocol.messages import (
    MAX_PAYLOAD_BYTES,
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Disconnect,
    DisconnectReason,
    Hello,
    Message,
    decode_message,
    encode_message,
)
from p2pchain.protocol.noise import (
    LENGTH_BYTES as NOISE_LENGTH_BYTES,
)
from p2pchain.protocol.noise import (
    MAX_HANDSHAKE_MESSAGE,
    MAX_NOISE_MESSAGE,
)
from p2pchain.testing.link import (
    ConnectionPair,
    RawConnection,
    connection_keys,
    link_messages,
    make_hello,
    wire_messages,
)
from p2pchain.testing.mutations import hostile_encodings

SIDES = ("dialer", "listener")
MAX_EVENTS_PER_DRAIN = 10_000
"""Far more than the frames one rule can put on the wire; reaching it means no progress."""
_TRANSPORT = NOISE_LENGTH_BYTES + MAX_NOISE_MESSAGE + HEADER_BYTES
BUFFER_BOUND = {
    State.NOISE_HANDSHAKE: NOISE_LENGTH_BYTES + MAX_HANDSHAKE_MESSAGE,
    State.HELLO: _TRANSPORT
    + max(MAX_PAYLOAD_BYTES[Hello.TYPE], MAX_PAYLOAD_BYTES[Disconnect.TYPE]),
    State.ACTIVE: _TRANSPORT + max(MAX_PAYLOAD_BYTES.values()),
}
"""What a side may hold once it asks for more data, per state (see `buffered_bytes`)."""


def _connection(seed: int, *, initiator: bool, config: ConnectionConfig) -> RawConnection:
    keys = connection_keys(seed)
    hello = make_hello(keys.identity)
    return RawConnection(initiator=initiator, keys=keys, hello=hello, now=0.0, config=config)


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(LENGTH_BYTES, "big") + body


@st.composite
def _hostile_frames(draw: st.DrawFn) -> bytes:
    """A frame whose body is a damaged encoding of a valid message of any type."""
    message: Message = draw(wire_messages())
    body = encode_message(message)
    return _frame(body[:1] + draw(hostile_encodings(decode_item(body[1:]))))


def _hellos() -> st.SearchStrategy[Hello]:
    """Hellos a hostile peer might send: someone else's, another chain's, a future version's."""
    ours, theirs = connection_keys(1).identity, connection_keys(2).identity
    return st.sampled_from(
        [
            make_hello(ours),
            make_hello(theirs),
            make_hello(connection_keys(7).identity),
            make_hello(ours, chain_id=99),
            make_hello(theirs, genesis=BlockId(sha256(b"elsewhere"))),
            make_hello(theirs, protocol_version=PROTOCOL_VERSION + 1),
        ]
    )


def _plaintexts() -> st.SearchStrategy[bytes]:
    """Bytes for the encrypted stream: frames valid, out of order, damaged, lying, or junk."""
    lying_headers = st.builds(
        lambda length, kind, rest: length.to_bytes(LENGTH_BYTES, "big") + bytes([kind]) + rest,
        st.one_of(st.integers(min_value=0, max_value=2**32 - 1), st.sampled_from([0, 1, 2])),
        st.one_of(st.sampled_from(sorted(MESSAGE_TYPES)), st.integers(min_value=0, max_value=255)),
        st.binary(max_size=64),
    )
    return st.one_of(
        st.binary(min_size=1, max_size=300),
        wire_messages().map(encode_frame),
        _hellos().map(encode_frame),
        _hostile_frames(),
        lying_headers,
    )


@dataclass
class Watch:
    """What one side has shown so far."""

    handshake_complete: bool = False
    closed_event: bool = False
    failed: bool = False
    final_state: State | None = None


class HostileLink(RuleBasedStateMachine):
    """A dialer and a listener, and a link that does whatever the rules say."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self._connect(ConnectionConfig())

    def _connect(self, config: ConnectionConfig) -> None:
        self.conns = {
            "dialer": _connection(1, initiator=True, config=config),
            "listener": _connection(2, initiator=False, config=config),
        }
        self.in_flight = {side: bytearray() for side in SIDES}  # bytes on their way to `side`
        self.watch = {side: Watch() for side in SIDES}
        self.decoding: dict[str, bytes | None] = {side: None for side in SIDES}
        """A `FrameToDecode` body the shell is decoding elsewhere; it reads nothing meanwhile."""
        self._collect()

    @initialize(
        start=st.sampled_from(["fresh", "hello", "active"]),
        inline_decode_bytes=st.sampled_from([None, 0, 150]),
    )
    def start_from(self, start: str, inline_decode_bytes: int | None = None) -> None:
        """Begin before Noise, with both sides in HELLO, or on an ACTIVE link; frame bodies
        over `inline_decode_bytes` come out as `FrameToDecode`."""
        self._connect(ConnectionConfig(inline_decode_bytes=inline_decode_bytes))
        if start == "fresh":
            return
        self.deliver("listener", None)  # msg1
        self.deliver("dialer", None)  # msg2; the dialer answers msg3 and its Hello
        if start == "hello":
            flight = self.in_flight["listener"]
            msg3 = NOISE_LENGTH_BYTES + int.from_bytes(flight[:NOISE_LENGTH_BYTES], "big")
            self.deliver("listener", msg3)
            assert {conn.state for conn in self.conns.values()} == {State.HELLO}
        else:
            for _ in range(4):  # the Hellos may each go through a FrameToDecode
                self.exchange()
                for side in SIDES:
                    if self.decoding[side] is not None:
                        self.finish_decode(side)
            assert {conn.state for conn in self.conns.values()} == {State.ACTIVE}

    @staticmethod
    def _other(side: str) -> str:
        return "listener" if side == "dialer" else "dialer"

    def _collect(self) -> None:
        """Put what each side wrote onto the link towards the other."""
        for side in SIDES:
            self.in_flight[self._other(side)] += self.conns[side].data_to_send()

    def _receive(self, side: str, data: bytes) -> None:
        if self.decoding[side] is None:  # else the shell is not reading from this side
            self.conns[side].receive_data(data)
            self._drain(side)

    def _failed(self, side: str) -> None:
        conn, watch = self.conns[side], self.watch[side]
        assert conn.state is State.ERROR
        assert not watch.closed_event, "an error after ConnectionClosed"
        watch.failed = True
        with pytest.raises(RemoteProtocolError):
            conn.next_event()  # and it stays failed

    def _drain(self, side: str) -> None:
        """Take every event `side` can produce now, checking each against the rules."""
        conn, watch = self.conns[side], self.watch[side]
        if self.decoding[side] is not None:
            with pytest.raises(LocalProtocolError):
                conn.next_event()  # the shell must hand the decoded frame back first
            return
        for _ in range(MAX_EVENTS_PER_DRAIN):
            try:
                event = conn.next_event()
            except RemoteProtocolError:
                self._failed(side)
                break
            if isinstance(event, FrameToDecode):
                assert not watch.failed
                assert not watch.closed_event
                self.decoding[side] = event.body
                break
            if event is NEED_DATA:
                if conn.state in BUFFER_BOUND:
                    assert conn.buffered_bytes < BUFFER_BOUND[conn.state], conn.state
                break
            assert not watch.closed_event, f"{event} after ConnectionClosed"
            assert not watch.failed, f"{event} after a protocol error"
            if isinstance(event, HandshakeComplete):
                assert not watch.handshake_complete, "a second HandshakeComplete"
                watch.handshake_complete = True
            elif isinstance(event, MessageReceived):
                assert watch.handshake_complete, "a message before HandshakeComplete"
            else:
                assert isinstance(event, ConnectionClosed)
                assert conn.state is State.CLOSED
                watch.closed_event = True
        else:
            raise AssertionError("next_event never returned NEED_DATA")
        self._collect()

    # -- the link -------------------------------------------------------------------------

    @rule(side=st.sampled_from(SIDES), size=st.none() | st.integers(min_value=1, max_value=4096))
    def deliver(self, side: str, size: int | None) -> None:
        """Deliver what is in flight to `side`, or only its first `size` bytes."""
        flight = self.in_flight[side]
        cut = len(flight) if size is None else min(size, len(flight))
        chunk = bytes(flight[:cut])
        del flight[:cut]
        if chunk:
            self._receive(side, chunk)

    @rule()
    def exchange(self) -> None:
        """Deliver everything both ways until the link is quiet (honest progress)."""
        for _ in range(20):
            if not any(self.in_flight.values()):
                break
            for side in SIDES:
                self.deliver(side, None)

    @rule(side=st.sampled_from(SIDES), junk=st.binary(min_size=1, max_size=600))
    def inject(self, side: str, junk: bytes) -> None:
        """Arbitrary bytes reach `side` ahead of what is in flight."""
        self._receive(side, junk)

    @precondition(lambda self: any(self.in_flight.values()))
    @rule(side=st.sampled_from(SIDES), position=st.integers(min_value=0), bit=st.integers(0, 7))
    def corrupt(self, side: str, position: int, bit: int) -> None:
        """Flip one bit of the bytes in flight to `side`."""
        flight = self.in_flight[side]
        if flight:
            flight[position % len(flight)] ^= 1 << bit

    @precondition(lambda self: any(body is not None for body in self.decoding.values()))
    @rule(side=st.sampled_from(SIDES))
    def finish_decode(self, side: str) -> None:
        """The shell's worker thread is done with the `FrameToDecode` body: hand it back."""
        body = self.decoding[side]
        if body is None:
            with pytest.raises(LocalProtocolError):
                self.conns[side].receive_decoded(DecodeError("nothing was waiting"))
            return
        self.decoding[side] = None
        outcome: Message | DecodeError
        try:
            outcome = decode_message(body)
        except DecodeError as exc:
            outcome = exc
        try:
            self.conns[side].receive_decoded(outcome)
        except RemoteProtocolError:
            self._failed(side)
            return
        self._drain(side)

    @rule(side=st.sampled_from(SIDES))
    def end_of_stream(self, side: str) -> None:
        """The transport towards `side` ends (what is in flight arrives first)."""
        self.deliver(side, None)
        self._receive(side, b"")

    # -- the peers ------------------------------------------------------------------------

    @precondition(lambda self: any(conn.is_channel_up for conn in self.conns.values()))
    @rule(side=st.sampled_from(SIDES), plaintext=_plaintexts())
    def send_raw(self, side: str, plaintext: bytes) -> None:
        """`side` puts any bytes into its encrypted stream, whatever its state."""
        conn = self.conns[side]
        if conn.is_channel_up:
            conn.send_raw(plaintext)
            self._collect()

    @rule(side=st.sampled_from(SIDES), message=link_messages())
    def send(self, side: str, message: Message) -> None:
        conn = self.conns[side]
        if conn.state is State.ACTIVE:
            conn.send(message)
            self._collect()
        else:
            with pytest.raises(LocalProtocolError):
                conn.send(message)

    @rule(side=st.sampled_from(SIDES), hello=_hellos())
    def send_connection_message(self, side: str, hello: Hello) -> None:
        """Hello (and Disconnect) belong to the connection itself, in any state."""
        with pytest.raises(LocalProtocolError):
            self.conns[side].send(hello)

    @rule(side=st.sampled_from(SIDES), reason=st.sampled_from(DisconnectReason))
    def close(self, side: str, reason: DisconnectReason) -> None:
        self.conns[side].close(reason)
        self._drain(side)

    @rule(dt=st.one_of(st.floats(min_value=0, max_value=60), st.sampled_from([10.0, 15.0, 20.0])))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        for side in SIDES:
            conn = self.conns[side]
            conn.handle_timer(self.now)
            timer = conn.get_timer()
            assert timer is None or timer > self.now, "a deadline left in the past"
            self._drain(side)

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def closed_stays_closed(self) -> None:
        for side in SIDES:
            conn, watch = self.conns[side], self.watch[side]
            assert conn.is_open == (conn.state in OPEN_STATES)
            if watch.final_state is not None:
                assert conn.state is watch.final_state
            elif not conn.is_open:
                watch.final_state = conn.state
            if not conn.is_open:
                assert conn.get_timer() is None
                assert conn.state is (State.ERROR if watch.failed else State.CLOSED)

    @invariant()
    def handshake_only_with_a_proved_peer(self) -> None:
        for side in SIDES:
            conn = self.conns[side]
            if self.watch[side].handshake_complete:
                assert conn.peer_key is not None
                assert conn.peer_hello is not None
                assert conn.peer_hello.node_key == conn.peer_key


TestHostileLink = HostileLink.TestCase
TestHostileLink.settings = settings(stateful_step_count=40)


class DeepHostileLink(HostileLink):
    """The same machine, with longer programs (run with ``-m fuzz``)."""


TestDeepHostileLink = pytest.mark.fuzz(DeepHostileLink.TestCase)
TestDeepHostileLink.settings = settings(stateful_step_count=200)


# -- regressions ---------------------------------------------------------------------------


class WithholdsHello(RawConnection):
    """Completes Noise but never sends its Hello: its peer stays in HELLO."""

    def _write_message(self, message: Message) -> None:
        if not isinstance(message, Hello):
            super()._write_message(message)


@pytest.mark.parametrize("message_type", sorted(set(MESSAGE_TYPES) - {Hello.TYPE, Disconnect.TYPE}))
def test_before_hello_any_other_frame_is_refused_from_its_header(message_type: int) -> None:
    """Only Hello and Disconnect are allowed before the peer's Hello, so a frame of any other
    type is refused from its 5-byte header: before, a peer that had not said Hello could make us
    buffer a whole 2 MB Publish body (or 105 KB of IHave) first."""
    keys = connection_keys(1)
    dialer = WithholdsHello(initiator=True, keys=keys, hello=make_hello(keys.identity), now=0.0)
    pair = ConnectionPair(dialer=dialer)
    pair.exchange()
    listener = pair.listener
    assert listener.state is State.HELLO
    limit = MAX_PAYLOAD_BYTES[message_type]
    dialer.send_raw((limit + 1).to_bytes(LENGTH_BYTES, "big") + bytes([message_type]))
    listener.receive_data(dialer.data_to_send())  # the header alone, no body yet
    with pytest.raises(RemoteProtocolError, match="not allowed now"):
        listener.next_event()
    assert listener.state is State.ERROR
    assert listener.buffered_bytes <= HEADER_BYTES
