"""Noise XX channel: handshake, identity binding, and authenticated transport messages."""

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from hypothesis import given
from hypothesis import strategies as st
from noise.backends.default.keypairs import KeyPair25519

from p2pchain.errors import DecodeError
from p2pchain.ledger.crypto import SecretKey
from p2pchain.protocol.noise import (
    MAX_NOISE_MESSAGE,
    IdentityProof,
    NoiseMessageDecoder,
    NoiseSession,
    compute_static_public,
    is_low_order_point,
    is_valid_identity_proof,
    make_identity_proof,
)
from p2pchain.testing.hostile import LOW_ORDER_POINTS
from p2pchain.testing.link import connection_keys


def _session(seed, initiator, proof=None):
    keys = connection_keys(seed)
    if proof is None:
        proof = make_identity_proof(keys.identity, compute_static_public(keys.noise_static))
    session = NoiseSession(
        initiator=initiator,
        static_private=keys.noise_static,
        ephemeral_private=keys.noise_ephemeral,
        identity_proof=proof,
    )
    return session, keys


def _handshake(initiator, responder):
    for writer, reader in ((initiator, responder), (responder, initiator), (initiator, responder)):
        assert writer.is_our_turn
        reader.read_handshake(writer.write_handshake()[2:])


def _messages(wire):
    decoder = NoiseMessageDecoder()
    decoder.receive_data(wire)
    out = []
    while (message := decoder.next_message()) is not None:
        out.append(message)
    return out


@pytest.fixture
def sessions():
    (a, a_keys), (b, b_keys) = _session(1, True), _session(2, False)
    _handshake(a, b)
    return a, b, a_keys, b_keys


def test_handshake_binds_each_node_key(sessions):
    a, b, a_keys, b_keys = sessions
    assert a.is_complete
    assert b.is_complete
    assert a.remote_node_key == b_keys.identity.public_key
    assert b.remote_node_key == a_keys.identity.public_key
    assert b.remote_static == compute_static_public(a_keys.noise_static)


def test_proof_for_another_static_key_is_rejected():
    keys = connection_keys(3)
    stolen = make_identity_proof(
        keys.identity, compute_static_public(connection_keys(4).noise_static)
    )
    (a, _), (b, _) = _session(3, True, proof=stolen), _session(5, False)
    _handshake(a, b)
    assert b.remote_node_key is None
    assert a.remote_node_key is not None


def test_proof_signature_checks_the_key():
    keys, other = connection_keys(6), SecretKey.from_entropy(bytes(32))
    static = compute_static_public(keys.noise_static)
    proof = make_identity_proof(keys.identity, static)
    assert is_valid_identity_proof(proof, static)
    forged = IdentityProof(node_key=other.public_key, signature=proof.signature)
    assert not is_valid_identity_proof(forged, static)


@given(data=st.binary(min_size=0, max_size=200_000))
def test_transport_round_trip_in_bounded_chunks(data):
    (a, _), (b, _) = _session(1, True), _session(2, False)
    _handshake(a, b)
    wire = a.encrypt(data)
    messages = _messages(wire)
    assert all(len(m) <= MAX_NOISE_MESSAGE for m in messages)
    assert b"".join(b.decrypt(m) for m in messages) == data


@given(
    chunks=st.lists(st.binary(min_size=1, max_size=3_000), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=8),
)
def test_transport_messages_survive_any_split_of_the_stream(chunks, cuts):
    (a, _), (b, _) = _session(1, True), _session(2, False)
    _handshake(a, b)
    wire = b"".join(a.encrypt(chunk) for chunk in chunks)
    points = sorted({c % (len(wire) + 1) for c in cuts})
    decoder = NoiseMessageDecoder()
    plaintext, taken = b"", 0
    for start, end in zip([0, *points], [*points, len(wire)], strict=True):
        decoder.receive_data(wire[start:end])
        while (message := decoder.next_message()) is not None:
            plaintext += b.decrypt(message)
            taken += 2 + len(message)  # the length prefix and the ciphertext
        assert decoder.buffered == end - taken  # what is left over
    assert plaintext == b"".join(chunks)


@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_fails_authentication(position, bit):
    (a, _), (b, _) = _session(1, True), _session(2, False)
    _handshake(a, b)
    (message,) = _messages(a.encrypt(b"hello, peer"))
    flipped = bytearray(message)
    flipped[position % len(flipped)] ^= 1 << bit
    with pytest.raises(DecodeError, match="noise transport"):
        b.decrypt(bytes(flipped))


def test_replayed_and_reordered_messages_fail(sessions):
    a, b, _, _ = sessions
    first, _second = _messages(a.encrypt(b"one") + a.encrypt(b"two"))
    assert b.decrypt(first) == b"one"
    with pytest.raises(DecodeError):
        b.decrypt(first)  # replay: the receive nonce has moved on
    (c, _), (d, _) = _session(1, True), _session(2, False)
    _handshake(c, d)
    _one, two = _messages(c.encrypt(b"one") + c.encrypt(b"two"))
    with pytest.raises(DecodeError):
        d.decrypt(two)  # reorder


def test_tampered_handshake_message_fails():
    (a, _), (b, _) = _session(1, True), _session(2, False)
    b.read_handshake(a.write_handshake()[2:])
    message = bytearray(b.write_handshake()[2:])
    message[40] ^= 0x01
    with pytest.raises(DecodeError, match="noise handshake"):
        a.read_handshake(bytes(message))


def test_first_message_must_not_carry_a_payload():
    (a, _), (b, _) = _session(1, True), _session(2, False)
    with pytest.raises(DecodeError, match="unexpected payload"):
        b.read_handshake(a.write_handshake()[2:] + b"extra")


@pytest.mark.parametrize("length", [0, 600])
def test_message_length_bounds(length):
    decoder = NoiseMessageDecoder()
    decoder.receive_data(length.to_bytes(2, "big"))
    with pytest.raises(DecodeError, match="noise message"):
        decoder.next_message(max_length=512)


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p.hex()[:8])
def test_responder_rejects_every_low_order_ephemeral_key(point):
    assert is_low_order_point(point)
    responder, _ = _session(2, False)
    with pytest.raises(DecodeError, match="low-order e key"):
        responder.read_handshake(point)  # msg1 of XX: the ephemeral key in the clear, alone
    assert not responder.is_complete


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p.hex()[:8])
def test_initiator_rejects_every_low_order_ephemeral_key(point):
    initiator, _ = _session(1, True)
    initiator.write_handshake()
    with pytest.raises(DecodeError, match="noise handshake"):
        initiator.read_handshake(point + bytes(48 + 100 + 16))


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p.hex()[:8])
def test_responder_rejects_every_low_order_static_key(point):
    (a, _), (b, _) = _session(1, True), _session(2, False)
    b.read_handshake(a.write_handshake()[2:])
    a.read_handshake(b.write_handshake()[2:])
    # The initiator announces a low-order static key while keeping its real private key.
    handshake = a._handshake
    handshake.s = KeyPair25519(handshake.s.private, X25519PublicKey.from_public_bytes(point), point)
    with pytest.raises(DecodeError, match="noise handshake"):
        b.read_handshake(a.write_handshake()[2:])
    assert b.remote_node_key is None


@given(key=st.binary(min_size=32, max_size=32))
def test_only_the_fourteen_small_subgroup_encodings_are_low_order(key):
    assert is_low_order_point(key) == (key in LOW_ORDER_POINTS)
