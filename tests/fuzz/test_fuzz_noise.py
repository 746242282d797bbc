"""`NoiseSession` fed arbitrary bytes at every step of XX, in both roles, and after it.

Before the handshake a peer is a stranger: any bytes it sends must end in `DecodeError` (the
connection turns that into a protocol error), never in an exception from the Noise library or
its crypto backend (issue 1 was a ValueError from the X25519 backend, which ended the node).
"""

import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st
from noise.connection import Keypair, NoiseConnection

from p2pchain.errors import DecodeError
from p2pchain.ledger.encoding import decode_item, encode_item
from p2pchain.protocol.noise import (
    NOISE_PROTOCOL_NAME,
    PROLOGUE,
    IdentityProof,
    NoiseSession,
    compute_static_public,
    make_identity_proof,
)
from p2pchain.testing.hostile import LOW_ORDER_POINTS
from p2pchain.testing.link import connection_keys
from p2pchain.testing.mutations import check_strict_decode, hostile_encodings

READERS = [
    pytest.param(0, False, id="responder-reads-msg1"),
    pytest.param(1, True, id="initiator-reads-msg2"),
    pytest.param(2, False, id="responder-reads-msg3"),
]


def _session(seed: int, *, initiator: bool) -> NoiseSession:
    keys = connection_keys(seed)
    return NoiseSession(
        initiator=initiator,
        static_private=keys.noise_static,
        ephemeral_private=keys.noise_ephemeral,
        identity_proof=make_identity_proof(keys.identity, compute_static_public(keys.noise_static)),
    )


def _honest_until(step: int) -> tuple[NoiseSession, NoiseSession, bytes]:
    """Both sides after `step` honest messages, and the honest message number `step`."""
    initiator, responder = _session(1, initiator=True), _session(2, initiator=False)
    for index in range(step + 1):
        writer, reader = (initiator, responder) if index % 2 == 0 else (responder, initiator)
        message = writer.write_handshake()[2:]
        if index < step:
            reader.read_handshake(message)
    return initiator, responder, message


@st.composite
def _variants(draw: st.DrawFn, honest: bytes) -> bytes:
    """Junk, or the honest message damaged: a bit flipped, cut, extended, its key replaced."""
    position = draw(st.integers(min_value=0, max_value=max(0, len(honest) - 1)))
    key = draw(st.one_of(st.sampled_from(LOW_ORDER_POINTS), st.binary(min_size=32, max_size=32)))
    return draw(
        st.sampled_from(
            [
                honest[:position],
                honest + draw(st.binary(min_size=1, max_size=64)),
                honest[:position] + bytes([honest[position] ^ 0x01]) + honest[position + 1 :],
                key + honest[32:],
                draw(st.binary(max_size=600)),
            ]
        )
    )


def _after_a_read(session: NoiseSession) -> None:
    """What the connection does next with a session that accepted a message."""
    if session.is_our_turn:
        try:
            session.write_handshake()
        except DecodeError:
            return
    if session.is_complete:
        with pytest.raises(DecodeError):
            session.decrypt(b"\x00" * 40)


@pytest.mark.parametrize(("step", "reader_is_initiator"), READERS)
@given(data=st.data())
def test_any_handshake_message_at_any_step(
    step: int, reader_is_initiator: bool, data: st.DataObject
) -> None:
    initiator, responder, honest = _honest_until(step)
    reader = initiator if reader_is_initiator else responder
    try:
        reader.read_handshake(data.draw(_variants(honest)))
    except DecodeError:
        return
    _after_a_read(reader)


@pytest.mark.parametrize("initiator", [True, False], ids=["initiator", "responder"])
@given(message=st.binary(max_size=600))
def test_message_out_of_turn_is_a_decode_error(initiator: bool, message: bytes) -> None:
    """A message where the session expects to write (or after the handshake) is refused."""
    session = _session(1, initiator=initiator)
    if not initiator:
        session.read_handshake(_session(2, initiator=True).write_handshake()[2:])
    assert session.is_our_turn
    with pytest.raises(DecodeError):
        session.read_handshake(message)


# -- a raw Noise peer that puts any payload where the identity proof belongs --------------


def _raw_peer(seed: int, *, initiator: bool) -> NoiseConnection:
    keys = connection_keys(seed)
    peer = NoiseConnection.from_name(NOISE_PROTOCOL_NAME)
    if initiator:
        peer.set_as_initiator()
    else:
        peer.set_as_responder()
    peer.set_prologue(PROLOGUE)
    peer.set_keypair_from_private_bytes(Keypair.STATIC, keys.noise_static)
    peer.set_keypair_from_private_bytes(Keypair.EPHEMERAL, keys.noise_ephemeral)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "ephemeral key given": a fixture, as intended here
        peer.start_handshake()
    return peer


def _proof_item(seed: int) -> bytes:
    keys = connection_keys(seed)
    proof = make_identity_proof(keys.identity, compute_static_public(keys.noise_static))
    return encode_item(proof.to_rlp())


def _payloads() -> st.SearchStrategy[bytes]:
    valid = _proof_item(9)
    return st.one_of(
        st.binary(max_size=400),
        hostile_encodings(decode_item(valid)),
        st.sampled_from([valid, _proof_item(3), b""]),
    )


@pytest.mark.parametrize(
    "hostile_dials", [True, False], ids=["hostile-initiator", "hostile-responder"]
)
@given(payload=_payloads())
def test_any_identity_payload(hostile_dials: bool, payload: bytes) -> None:
    """Any payload in msg2/msg3 is refused as `DecodeError` or leaves the peer unproved; only a
    proof for the peer's own Noise key proves it."""
    peer = _raw_peer(9, initiator=hostile_dials)
    session = _session(2, initiator=not hostile_dials)
    if hostile_dials:
        session.read_handshake(bytes(peer.write_message(b"")))
        peer.read_message(session.write_handshake()[2:])
    else:
        peer.read_message(session.write_handshake()[2:])
    try:
        session.read_handshake(bytes(peer.write_message(payload)))
    except DecodeError:
        return
    proved = session.remote_node_key is not None
    assert proved == (payload == _proof_item(9))
    _after_a_read(session)


@given(data=st.binary(max_size=300))
def test_identity_proof_decoder(data: bytes) -> None:
    check_strict_decode(
        lambda raw: IdentityProof.from_rlp(decode_item(raw)),
        lambda proof: encode_item(proof.to_rlp()),
        data,
    )


@pytest.mark.parametrize("receiver_is_initiator", [True, False], ids=["initiator", "responder"])
@given(data=st.data())
def test_decrypt_any_bytes(receiver_is_initiator: bool, data: st.DataObject) -> None:
    initiator, responder, last = _honest_until(2)
    responder.read_handshake(last)
    receiver, sender = (initiator, responder) if receiver_is_initiator else (responder, initiator)
    honest = sender.encrypt(data.draw(st.binary(min_size=1, max_size=100)))[2:]
    message = data.draw(st.one_of(st.binary(max_size=300), _variants(honest)))
    try:
        receiver.decrypt(message)
    except DecodeError:
        return
    assert message == honest


@given(message=st.binary(max_size=300), step=st.integers(min_value=0, max_value=2))
def test_decrypt_before_the_handshake_completes(message: bytes, step: int) -> None:
    initiator, responder, _ = _honest_until(step)
    for session in (initiator, responder):
        with pytest.raises(DecodeError):
            session.decrypt(message)


@pytest.mark.fuzz
@pytest.mark.parametrize(("step", "reader_is_initiator"), READERS)
@given(messages=st.lists(st.binary(max_size=600), min_size=1, max_size=4))
def test_message_sequences_at_any_step(
    step: int, reader_is_initiator: bool, messages: list[bytes]
) -> None:
    """Several junk messages in a row: the first refusal ends it, nothing else escapes."""
    initiator, responder, _ = _honest_until(step)
    reader = initiator if reader_is_initiator else responder
    for message in messages:
        try:
            reader.read_handshake(message)
        except DecodeError:
            return
        _after_a_read(reader)
