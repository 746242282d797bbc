"""PeerConnection over the in-memory ConnectionPair: handshake, rejections, faults, timers."""

from collections import Counter

import pytest
from hypothesis import assume, given
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
from p2pchain.ledger.types import BlockId
from p2pchain.protocol import connection
from p2pchain.protocol.connection import (
    NEED_DATA,
    TRANSITIONS,
    ConnectionClosed,
    ConnectionConfig,
    FrameToDecode,
    HandshakeComplete,
    MessageReceived,
    PeerConnection,
    State,
)
from p2pchain.protocol.framing import encode_frame
from p2pchain.protocol.messages import (
    ANSWER_OF,
    PROTOCOL_VERSION,
    Blocks,
    DisconnectReason,
    GetBlocksById,
    GetBlocksByRange,
    GetPeers,
    Hello,
    Ping,
    Pong,
    Publish,
    Status,
    Topic,
    decode_message,
)
from p2pchain.protocol.noise import MAX_PLAINTEXT_CHUNK, IdentityProof, make_identity_proof
from p2pchain.testing.hostile import LOW_ORDER_POINTS
from p2pchain.testing.link import (
    ConnectionPair,
    RawConnection,
    connection_keys,
    drain_events,
    honest_connection,
    link_messages,
    make_hello,
)

CONFIG = ConnectionConfig()


def _active_pair(**kwargs):
    pair = ConnectionPair(**kwargs)
    seen = pair.exchange()
    assert [type(e) for e in seen.dialer] == [HandshakeComplete]
    assert [type(e) for e in seen.listener] == [HandshakeComplete]
    return pair


def _raw(seed, initiator):
    keys = connection_keys(seed)
    return RawConnection(initiator=initiator, keys=keys, hello=make_hello(keys.identity), now=0.0)


def _closed(events):
    return [e for e in events if isinstance(e, ConnectionClosed)]


def test_handshake_exchanges_hellos_and_proves_keys():
    pair = ConnectionPair()
    seen = pair.exchange()
    assert seen.dialer == [HandshakeComplete(hello=pair.listener.hello)]
    assert seen.listener == [HandshakeComplete(hello=pair.dialer.hello)]
    assert pair.dialer.peer_key == pair.listener.hello.node_key
    assert pair.listener.peer_key == pair.dialer.hello.node_key
    assert pair.dialer.state is pair.listener.state is State.ACTIVE


def test_one_table_holds_every_state_change():
    states_reached = {new for new in TRANSITIONS.values()}
    assert states_reached == set(State) - {State.NOISE_HANDSHAKE}
    assert all(old not in (State.CLOSED, State.ERROR) for old, _ in TRANSITIONS)


def test_ping_is_answered_by_the_connection():
    pair = _active_pair()
    pair.listener.send(Ping(nonce=77))
    assert pair.deliver_to_dialer() == [MessageReceived(message=Ping(nonce=77))]  # for limits
    assert pair.deliver_to_listener() == [MessageReceived(message=Pong(nonce=77))]


def test_a_message_sent_with_its_ready_frame_arrives_as_itself():
    """A relayed message is encoded once and its frame handed to every link."""
    pair = _active_pair()
    message = Publish(topic=Topic.VOTE, data=b"vote bytes" * 20)
    pair.listener.send(message, frame=encode_frame(message))
    pair.listener.send(message)
    assert pair.deliver_to_dialer() == [MessageReceived(message=message)] * 2


@pytest.mark.parametrize("count", [1, 40, 400])
def test_frames_queued_together_go_out_in_as_few_transport_messages_as_fit(count):
    """Everything queued before one `data_to_send` is encrypted together: ceil(bytes / 65,519)
    transport messages, each length-prefixed with its 16-byte tag, whatever the frame count;
    the peer gets every frame, in order."""
    pair = _active_pair()
    messages = [Publish(topic=Topic.TRANSACTION, data=bytes([i % 256]) * 300) for i in range(count)]
    for message in messages:
        pair.listener.send(message)
    plaintext = sum(len(encode_frame(message)) for message in messages)
    assert pair.listener.pending_bytes == plaintext
    data = pair.listener.data_to_send()
    transports = -(-plaintext // MAX_PLAINTEXT_CHUNK)
    assert len(data) == plaintext + transports * (2 + 16)
    pair.dialer.receive_data(data)
    assert drain_events(pair.dialer) == [MessageReceived(message=m) for m in messages]


@given(message=link_messages().filter(lambda m: m.TYPE not in connection._ANSWER_TYPES))
def test_the_active_shortcut_does_what_the_full_path_does(message):
    """`_on_message` passes most messages of an ACTIVE link straight up; with the shortcut
    off, the full path must give the same events, state and expected answers. (Answers are
    refused unasked, and never take the shortcut.)"""
    outcomes = []
    for shortcut in (True, False):
        pair = _active_pair()
        with pytest.MonkeyPatch.context() as patch:
            if not shortcut:
                patch.setattr(connection, "_PLAIN_WHEN_ACTIVE", frozenset())
            pair.listener.send(message)
            events = pair.deliver_to_dialer()
        outcomes.append((events, pair.dialer.state, dict(pair.dialer._answers_expected)))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == [MessageReceived(message=message)]


def test_local_misuse_raises_local_protocol_error():
    pair = ConnectionPair()
    with pytest.raises(LocalProtocolError, match="cannot send"):
        pair.dialer.send(GetPeers())
    pair.exchange()
    with pytest.raises(LocalProtocolError, match="sent by the connection"):
        pair.dialer.send(pair.dialer.hello)
    pair.dialer.close(DisconnectReason.REQUESTED)
    with pytest.raises(LocalProtocolError):
        pair.dialer.send(GetPeers())


def test_hello_must_carry_our_own_key():
    keys = connection_keys(1)
    with pytest.raises(LocalProtocolError):
        PeerConnection(
            initiator=True, keys=keys, hello=make_hello(connection_keys(2).identity), now=0.0
        )


def test_close_sends_reason_and_is_idempotent():
    pair = _active_pair()
    pair.dialer.send(GetPeers())
    pair.dialer.close(DisconnectReason.SHUTDOWN, b"bye")
    pair.dialer.close(DisconnectReason.REQUESTED)
    seen = pair.exchange()
    assert seen.dialer == [
        ConnectionClosed(reason=DisconnectReason.SHUTDOWN, by_peer=False, detail=b"bye")
    ]
    assert seen.listener == [
        MessageReceived(message=GetPeers()),
        ConnectionClosed(reason=DisconnectReason.SHUTDOWN, by_peer=True, detail=b"bye"),
    ]
    assert not pair.listener.is_open
    assert pair.listener.get_timer() is None


def test_eof_without_disconnect_closes_with_no_reason():
    pair = _active_pair()
    pair.listener.receive_data(b"")
    assert pair.listener.next_event() == ConnectionClosed(reason=None, by_peer=True)
    assert pair.listener.next_event() is NEED_DATA


# -- handshake rejections: each side sees the reason ------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"chain_id": 99}, DisconnectReason.WRONG_CHAIN),
        ({"genesis": BlockId(sha256(b"other genesis"))}, DisconnectReason.WRONG_GENESIS),
    ],
)
def test_hello_mismatch_closes_both_sides_with_the_reason(overrides, reason):
    pair = ConnectionPair(listener=honest_connection(2, initiator=False, **overrides))
    seen = pair.exchange()
    assert [e.reason for e in _closed(seen.dialer)] == [reason]
    assert [e.reason for e in _closed(seen.listener)] == [reason]
    assert not any(isinstance(e, HandshakeComplete) for e in seen.dialer + seen.listener)
    assert pair.dialer.close_reason is pair.listener.close_reason is reason


def test_incompatible_version_is_refused():
    keys = connection_keys(2)
    hello = make_hello(keys.identity, protocol_version=PROTOCOL_VERSION + 1)
    listener = PeerConnection(initiator=False, keys=keys, hello=hello, now=0.0)
    seen = ConnectionPair(listener=listener).exchange()
    assert [e.reason for e in _closed(seen.dialer)] == [DisconnectReason.INCOMPATIBLE_VERSION]
    assert [e.reason for e in _closed(seen.listener)] == [DisconnectReason.INCOMPATIBLE_VERSION]


class ForgedIdentity(PeerConnection):
    """Claims node 9's key but cannot sign for it: signs with its own key instead."""

    def _identity_proof(self, keys):
        honest = make_identity_proof(keys.identity, b"\x00" * 32)
        return IdentityProof(
            node_key=connection_keys(9).identity.public_key, signature=honest.signature
        )


@pytest.mark.parametrize("forger_dials", [True, False])
def test_bad_identity_signature_is_refused_and_told(forger_dials):
    keys = connection_keys(3)
    forger = ForgedIdentity(
        initiator=forger_dials, keys=keys, hello=make_hello(keys.identity), now=0.0
    )
    honest = honest_connection(2, initiator=not forger_dials)
    pair = (
        ConnectionPair(dialer=forger, listener=honest)
        if forger_dials
        else ConnectionPair(dialer=honest, listener=forger)
    )
    seen = pair.exchange()
    honest_events, forger_events = (
        (seen.listener, seen.dialer) if forger_dials else (seen.dialer, seen.listener)
    )
    assert _closed(honest_events) == [
        ConnectionClosed(
            reason=DisconnectReason.BAD_IDENTITY,
            by_peer=False,
            detail=b"identity signature does not verify",
        )
    ]
    assert [(e.reason, e.by_peer) for e in _closed(forger_events)] == [
        (DisconnectReason.BAD_IDENTITY, True)
    ]
    assert honest.peer_key is None
    assert not any(isinstance(e, HandshakeComplete) for e in honest_events)


def test_self_connection_is_refused_by_both_ends():
    keys_a, keys_b = connection_keys(4, connection=1), connection_keys(4, connection=2)
    dialer = PeerConnection(initiator=True, keys=keys_a, hello=make_hello(keys_a.identity), now=0.0)
    listener = PeerConnection(
        initiator=False, keys=keys_b, hello=make_hello(keys_b.identity), now=0.0
    )
    seen = ConnectionPair(dialer=dialer, listener=listener).exchange()
    assert [e.reason for e in _closed(seen.dialer)] == [DisconnectReason.SELF_CONNECTION]
    assert [e.reason for e in _closed(seen.listener)] == [DisconnectReason.SELF_CONNECTION]


def test_duplicate_connection_refusal_reaches_the_dialer():
    pair = _active_pair()
    pair.listener.close(DisconnectReason.DUPLICATE_CONNECTION)
    seen = pair.exchange()
    assert seen.listener == [
        ConnectionClosed(reason=DisconnectReason.DUPLICATE_CONNECTION, by_peer=False)
    ]
    assert seen.dialer == [
        ConnectionClosed(reason=DisconnectReason.DUPLICATE_CONNECTION, by_peer=True)
    ]


def test_handshake_deadline_when_noise_never_finishes():
    pair = ConnectionPair()
    pair.deliver_to_listener()  # msg1 only; the dialer never sees msg2
    pair.listener.data_to_send()
    assert pair.listener.get_timer() == CONFIG.handshake_timeout
    pair.listener.handle_timer(CONFIG.handshake_timeout - 0.001)
    assert pair.listener.is_open
    pair.listener.handle_timer(CONFIG.handshake_timeout)
    assert pair.listener.next_event() == ConnectionClosed(
        reason=DisconnectReason.HANDSHAKE_TIMEOUT, by_peer=False
    )
    assert pair.listener.data_to_send() == b""  # no channel yet: nothing can be said


def test_handshake_deadline_when_hello_never_comes():
    pair = ConnectionPair()
    pair.deliver_to_listener()
    pair.deliver_to_dialer()  # the dialer now finishes Noise and queues msg3 + Hello
    wire = pair.dialer.data_to_send()
    msg3_length = 2 + int.from_bytes(wire[:2], "big")
    pair.listener.receive_data(wire[:msg3_length])  # withhold the Hello
    assert pair.listener.next_event() is NEED_DATA
    assert pair.listener.state is State.HELLO
    pair.listener.handle_timer(CONFIG.handshake_timeout)
    seen = pair.exchange()
    assert _closed(seen.listener) == [
        ConnectionClosed(reason=DisconnectReason.HANDSHAKE_TIMEOUT, by_peer=False)
    ]
    assert seen.dialer == [
        HandshakeComplete(hello=pair.listener.hello),
        ConnectionClosed(reason=DisconnectReason.HANDSHAKE_TIMEOUT, by_peer=True),
    ]


# -- liveness -----------------------------------------------------------------------------------


class NoPong(PeerConnection):
    """Completes the handshake, then ignores every Ping (cf. Bitcoin Core's NodeNoPong)."""

    def _on_ping(self, ping):
        del ping


def test_silent_peer_is_dropped_after_pong_timeout():
    keys = connection_keys(2)
    pair = ConnectionPair(
        listener=NoPong(initiator=False, keys=keys, hello=make_hello(keys.identity), now=0.0)
    )
    pair.exchange()
    assert pair.dialer.get_timer() == CONFIG.ping_interval
    seen = pair.handle_timers(CONFIG.ping_interval)  # both ping; only the dialer answers
    assert seen.dialer == [MessageReceived(message=Ping(nonce=1))]
    assert seen.listener == [MessageReceived(message=m) for m in (Ping(nonce=1), Pong(nonce=1))]
    deadline = CONFIG.ping_interval + CONFIG.pong_timeout
    assert pair.dialer.get_timer() == deadline
    not_yet = pair.handle_timers(deadline - 0.001).dialer
    assert not_yet == [MessageReceived(message=Ping(nonce=2))]  # the listener's next ping
    seen = pair.handle_timers(deadline)
    assert seen.dialer == [ConnectionClosed(reason=DisconnectReason.PING_TIMEOUT, by_peer=False)]
    assert seen.listener == [ConnectionClosed(reason=DisconnectReason.PING_TIMEOUT, by_peer=True)]


def test_answered_pings_keep_the_link_alive():
    pair = _active_pair()
    for step in range(1, 20):
        pair.handle_timers(step * CONFIG.ping_interval)
    assert pair.dialer.is_open
    assert pair.listener.is_open
    assert pair.dialer.get_timer() == 20 * CONFIG.ping_interval


# -- remote faults ------------------------------------------------------------------------------


def _raw_pair():
    pair = ConnectionPair(dialer=_raw(1, True))
    pair.exchange()
    return pair


def _assert_remote_fault(pair, match):
    with pytest.raises(RemoteProtocolError, match=match):
        pair.deliver_to_listener()
    assert pair.listener.state is State.ERROR
    assert not pair.listener.is_open
    with pytest.raises(RemoteProtocolError):
        pair.listener.next_event()
    seen = pair.deliver_to_dialer()
    assert [(e.reason, e.by_peer) for e in _closed(seen)] == [
        (DisconnectReason.PROTOCOL_ERROR, True)
    ]


def test_frame_flipped_in_transit_closes_with_an_error():
    pair = _active_pair()
    pair.dialer.send(Publish(topic=Topic.TRANSACTION, data=b"payload"))
    wire = bytearray(pair.dialer.data_to_send())
    wire[10] ^= 0x20
    pair.listener.receive_data(bytes(wire))
    with pytest.raises(RemoteProtocolError, match="noise transport"):
        pair.listener.next_event()
    assert pair.listener.state is State.ERROR
    seen = pair.deliver_to_dialer()
    assert [(e.reason, e.by_peer) for e in _closed(seen)] == [
        (DisconnectReason.PROTOCOL_ERROR, True)
    ]


def test_oversize_frame_rejected_before_its_body_arrives():
    pair = _raw_pair()
    pair.dialer.send_raw((5_000_000).to_bytes(4, "big") + bytes([Status.TYPE]))
    _assert_remote_fault(pair, "exceeds")


def test_unknown_type_is_a_remote_fault():
    pair = _raw_pair()
    pair.dialer.send_raw((3).to_bytes(4, "big") + bytes([200, 0xC0, 0xC0]))
    _assert_remote_fault(pair, "unknown message type")


def test_invalid_rlp_is_a_remote_fault():
    pair = _raw_pair()
    pair.dialer.send_raw((3).to_bytes(4, "big") + bytes([GetPeers.TYPE, 0xC2, 0x80]))
    _assert_remote_fault(pair, "invalid RLP")


class SkipsHello(PeerConnection):
    """Sends GetPeers where its Hello belongs."""

    def _write_message(self, message):
        super()._write_message(GetPeers() if isinstance(message, Hello) else message)


def test_message_before_hello_is_a_remote_fault():
    keys = connection_keys(1)
    dialer = SkipsHello(initiator=True, keys=keys, hello=make_hello(keys.identity), now=0.0)
    pair = ConnectionPair(dialer=dialer)
    pair.deliver_to_listener()
    pair.deliver_to_dialer()
    with pytest.raises(RemoteProtocolError, match="GetPeers not allowed now"):
        pair.deliver_to_listener()


def test_junk_instead_of_noise_is_a_remote_fault():
    listener = honest_connection(2, initiator=False)
    listener.receive_data(b"\x00\x05hello")
    with pytest.raises(RemoteProtocolError, match="noise handshake"):
        listener.next_event()
    assert listener.data_to_send() == b""


@pytest.mark.parametrize("initiator", [False, True], ids=["listener", "dialer"])
@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p.hex()[:8])
def test_low_order_handshake_key_is_a_remote_fault_on_both_sides(point, initiator):
    conn = honest_connection(2, initiator=initiator)
    conn.data_to_send()
    tail = bytes(148) if initiator else b""  # msg2 carries more after the ephemeral key
    message = point + tail
    conn.receive_data(len(message).to_bytes(2, "big") + message)
    with pytest.raises(RemoteProtocolError, match="noise handshake"):
        conn.next_event()
    assert conn.state is State.ERROR
    assert conn.data_to_send() == b""


def test_unsolicited_blocks_frame_is_refused_from_its_header():
    pair = _raw_pair()
    # Only the header of a 16 MiB frame arrives: the refusal comes before the body would.
    pair.dialer.send_raw((16 * 1024 * 1024).to_bytes(4, "big") + bytes([Blocks.TYPE]))
    with pytest.raises(RemoteProtocolError, match="answers no request"):
        pair.deliver_to_listener()
    assert pair.listener.state is State.ERROR


def test_each_block_request_allows_exactly_one_blocks_answer():
    pair = _raw_pair()
    pair.listener.send(GetBlocksByRange(request_id=1, start_height=1, count=2))
    pair.listener.send(GetBlocksById(request_id=2, block_ids=()))
    pair.deliver_to_dialer()
    answers = [Blocks(request_id=2, blocks=()), Blocks(request_id=1, blocks=())]
    for answer in answers:  # in any order
        pair.dialer.send(answer)
    events = pair.deliver_to_listener()
    assert [e.message for e in events if isinstance(e, MessageReceived)] == answers
    pair.dialer.send_raw(encode_frame(Blocks(request_id=1, blocks=())))  # a third: unasked
    with pytest.raises(RemoteProtocolError, match="answers no request"):
        pair.deliver_to_listener()


def test_large_frames_are_handed_out_for_decoding_elsewhere():
    pair = ConnectionPair(config=ConnectionConfig(inline_decode_bytes=400))
    pair.exchange()
    small, large = Publish(topic=Topic.VOTE, data=b"x"), Publish(topic=Topic.VOTE, data=bytes(900))
    pair.dialer.send(small)
    pair.dialer.send(large)
    pair.dialer.send(small)
    pair.listener.receive_data(pair.dialer.data_to_send())
    assert pair.listener.next_event() == MessageReceived(message=small)
    pending = pair.listener.next_event()
    assert isinstance(pending, FrameToDecode)
    with pytest.raises(LocalProtocolError, match="waiting for receive_decoded"):
        pair.listener.next_event()
    pair.listener.receive_decoded(decode_message(pending.body))
    assert pair.listener.next_event() == MessageReceived(message=large)
    assert pair.listener.next_event() == MessageReceived(message=small)
    with pytest.raises(LocalProtocolError, match="no FrameToDecode"):
        pair.listener.receive_decoded(large)


def test_a_large_frame_that_fails_to_decode_is_a_remote_fault():
    pair = ConnectionPair(
        dialer=_raw(1, True),
        listener=honest_connection(
            2, initiator=False, config=ConnectionConfig(inline_decode_bytes=400)
        ),
    )
    pair.exchange()
    body = bytes([Publish.TYPE]) + b"\xff" * 899  # a long RLP string header, then nothing
    pair.dialer.send_raw(len(body).to_bytes(4, "big") + body)
    pair.listener.receive_data(pair.dialer.data_to_send())
    pending = pair.listener.next_event()
    assert isinstance(pending, FrameToDecode)
    with pytest.raises(DecodeError) as error:
        decode_message(pending.body)
    with pytest.raises(RemoteProtocolError):
        pair.listener.receive_decoded(error.value)
    assert pair.listener.state is State.ERROR


def test_repeated_hello_is_ignored():
    pair = _raw_pair()
    pair.dialer.send_raw(encode_frame(pair.dialer.hello))
    pair.dialer.send(GetPeers())
    assert pair.deliver_to_listener() == [
        MessageReceived(message=pair.dialer.hello),  # surfaces only to be charged
        MessageReceived(message=GetPeers()),
    ]
    assert pair.listener.state is State.ACTIVE


# -- stateful: messages arrive intact and in order; both ends open or both closed --------------


REQUESTS = {GetBlocksByRange: Blocks, GetBlocksById: Blocks, **ANSWER_OF}
"""Each request type and the answer type it opens."""
ANSWERS = frozenset(REQUESTS.values())


class LinkMachine(RuleBasedStateMachine):
    """Random sends, deliveries, clock jumps and closes over one pair."""

    @initialize()
    def connect(self):
        self.now = 0.0
        self.link = _active_pair()
        self.to_listener = []
        self.to_dialer = []
        self.closed = False
        self.open_requests = {side: Counter() for side in ("dialer", "listener")}
        """Per answer type: requests each side sent that the other has not answered yet."""

    def _may_send(self, sender, receiver, message):
        """An answer (`Blocks`, a light answer) needs an open request of its kind from the
        receiver (unsolicited ones are a protocol error, tested on their own); count the
        requests a send opens."""
        if type(message) in ANSWERS:
            assume(self.open_requests[receiver][type(message)] > 0)
            self.open_requests[receiver][type(message)] -= 1
        elif type(message) in REQUESTS:
            self.open_requests[sender][REQUESTS[type(message)]] += 1

    def _check(self, events, expected):
        messages = [
            e.message
            for e in events
            if isinstance(e, MessageReceived) and not isinstance(e.message, Ping | Pong)
        ]
        assert messages == expected
        expected.clear()

    @precondition(lambda self: not self.closed)
    @rule(message=link_messages())
    def dialer_sends(self, message):
        self._may_send("dialer", "listener", message)
        self.link.dialer.send(message)
        self.to_listener.append(message)

    @precondition(lambda self: not self.closed)
    @rule(message=link_messages())
    def listener_sends(self, message):
        self._may_send("listener", "dialer", message)
        self.link.listener.send(message)
        self.to_dialer.append(message)

    @rule()
    def deliver_to_listener(self):
        self._check(self.link.deliver_to_listener(), self.to_listener)

    @rule()
    def deliver_to_dialer(self):
        self._check(self.link.deliver_to_dialer(), self.to_dialer)

    @rule(dt=st.floats(min_value=0, max_value=120))
    def time_passes(self, dt):
        self.now += dt
        seen = self.link.handle_timers(self.now)
        self._check(seen.listener, self.to_listener)
        self._check(seen.dialer, self.to_dialer)
        assert not _closed(seen.dialer + seen.listener)

    @precondition(lambda self: not self.closed)
    @rule(by_dialer=st.booleans(), reason=st.sampled_from(DisconnectReason))
    def close(self, by_dialer, reason):
        closer = self.link.dialer if by_dialer else self.link.listener
        closer.close(reason)
        seen = self.link.exchange()
        closer_events, other_events = (
            (seen.dialer, seen.listener) if by_dialer else (seen.listener, seen.dialer)
        )
        assert _closed(closer_events) == [ConnectionClosed(reason=reason, by_peer=False)]
        assert _closed(other_events) == [ConnectionClosed(reason=reason, by_peer=True)]
        # what the closer had queued still arrives; what the other side queued is dropped
        arrived = [e.message for e in other_events if isinstance(e, MessageReceived)]
        assert arrived == (self.to_listener if by_dialer else self.to_dialer)
        self.to_listener.clear()
        self.to_dialer.clear()
        self.closed = True

    @invariant()
    def both_open_or_both_closed(self):
        if self.link.dialer.pending_bytes == self.link.listener.pending_bytes == 0:
            assert self.link.dialer.is_open == self.link.listener.is_open


TestLink = LinkMachine.TestCase
