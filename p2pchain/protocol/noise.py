"""The secure channel: Noise_XX_25519_ChaChaPoly_SHA256 with the node identity bound to it.

Every Noise message on the wire is ``length (2 bytes, big-endian) || ciphertext``. XX runs three
handshake messages (initiator ``e``; responder ``e, ee, s, es`` + payload; initiator ``s, se`` +
payload). Each side's payload is its `IdentityProof`: its secp256k1 x-only node key and a BIP-340
signature over a tagged hash of its Noise static key, so a node cannot reuse another node's proof
with its own Noise key. After the handshake, the frame stream is cut into chunks of at most
`MAX_PLAINTEXT_CHUNK` bytes and each chunk becomes one transport message.

Pure: both X25519 private keys (static and ephemeral) come from the caller.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Final, Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from noise.connection import Keypair, NoiseConnection
from noise.exceptions import (
    NoiseHandshakeError,
    NoiseInvalidMessage,
    NoiseMaxNonceError,
    NoiseValueError,
)

from p2pchain.errors import DecodeError
from p2pchain.ledger.crypto import SecretKey, tagged_hash, verify
from p2pchain.ledger.encoding import RLPItem, decode_item, encode_item, read_fixed, read_list
from p2pchain.protocol.framing import StreamBuffer

NOISE_PROTOCOL_NAME: Final = b"Noise_XX_25519_ChaChaPoly_SHA256"
PROLOGUE: Final = b"p2pchain/noise/1"
IDENTITY_TAG: Final = b"p2pchain/noise-identity"
LENGTH_BYTES: Final = 2
MAX_NOISE_MESSAGE: Final = 65_535
TAG_BYTES: Final = 16
MAX_PLAINTEXT_CHUNK: Final = MAX_NOISE_MESSAGE - TAG_BYTES
MAX_HANDSHAKE_MESSAGE: Final = 512
"""XX messages are 32, 32+48+payload+16 and 48+payload+16 bytes; the payload is ~100 bytes."""

_COFACTOR_PROBE: Final = X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
"""Any fixed scalar: X25519 clamps it to a multiple of 8, which sends every point of order
1, 2, 4 or 8 (in any of its encodings) to the all-zero output."""

_NOISE_FAULTS: Final = (
    InvalidTag,
    NoiseHandshakeError,
    NoiseInvalidMessage,
    NoiseMaxNonceError,
    NoiseValueError,
    ValueError,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityProof:
    """Handshake payload: the node key and its signature over the sender's Noise static key."""

    node_key: bytes
    signature: bytes

    def to_rlp(self) -> RLPItem:
        return [self.node_key, self.signature]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        f = read_list(item, "identity_proof", length=2)
        return cls(
            node_key=read_fixed(f[0], "identity_proof.node_key", 32),
            signature=read_fixed(f[1], "identity_proof.signature", 64),
        )


def compute_identity_message(noise_static_public: bytes) -> bytes:
    """The 32 bytes a node signs to bind its identity to its Noise static key."""
    return tagged_hash(IDENTITY_TAG, noise_static_public)


def make_identity_proof(identity: SecretKey, noise_static_public: bytes) -> IdentityProof:
    """Prove that the holder of `identity` owns the Noise static key."""
    return IdentityProof(
        node_key=identity.public_key,
        signature=identity.sign(compute_identity_message(noise_static_public)),
    )


def is_valid_identity_proof(proof: IdentityProof, noise_static_public: bytes) -> bool:
    """True if `proof` binds its node key to this Noise static key."""
    return verify(proof.node_key, compute_identity_message(noise_static_public), proof.signature)


def compute_static_public(static_private: bytes) -> bytes:
    """The X25519 public key of a Noise static private key."""
    conn = NoiseConnection.from_name(NOISE_PROTOCOL_NAME)
    conn.set_keypair_from_private_bytes(Keypair.STATIC, static_private)
    return bytes(conn.noise_protocol.keypairs["s"].public_bytes)


def is_low_order_point(public: bytes) -> bool:
    """True if a peer's X25519 key lies in the small subgroup: every DH with it gives zero.

    Such a key (all-zero, one, the order-8 points, p-1, p, p+1 and their non-canonical twins)
    would make a shared secret the peer knows in advance, and the X25519 backend refuses to
    compute it; the handshake rejects the key on receipt instead.
    """
    try:
        _COFACTOR_PROBE.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        return True
    return False


def frame_noise_message(ciphertext: bytes) -> bytes:
    """``length || ciphertext`` for one Noise message."""
    return len(ciphertext).to_bytes(LENGTH_BYTES, "big") + ciphertext


class NoiseSession:
    """One side of a Noise XX session: handshake messages first, then transport encryption.

    The caller moves the handshake along: when `is_our_turn` it calls `write_handshake`,
    otherwise it feeds the next message to `read_handshake`. The peer's identity proof is checked
    on receipt; a bad one does not stop the handshake (so that we can still tell the peer why we
    close) but leaves `remote_node_key` None.
    """

    def __init__(
        self,
        *,
        initiator: bool,
        static_private: bytes,
        ephemeral_private: bytes,
        identity_proof: IdentityProof,
    ) -> None:
        self.initiator = initiator
        self._proof = encode_item(identity_proof.to_rlp())
        self._noise = NoiseConnection.from_name(NOISE_PROTOCOL_NAME)
        if initiator:
            self._noise.set_as_initiator()
        else:
            self._noise.set_as_responder()
        self._noise.set_prologue(PROLOGUE)
        self._noise.set_keypair_from_private_bytes(Keypair.STATIC, static_private)
        self._noise.set_keypair_from_private_bytes(Keypair.EPHEMERAL, ephemeral_private)
        with warnings.catch_warnings():
            # The library warns whenever the ephemeral key is supplied: it assumes a test
            # fixture, but here the shell draws it from the OS just like the library would.
            warnings.simplefilter("ignore")
            self._noise.start_handshake()
        self._handshake = self._noise.noise_protocol.handshake_state
        self._messages_done = 0
        self.remote_node_key: bytes | None = None
        self.remote_static: bytes | None = None

    @property
    def is_complete(self) -> bool:
        """True once the handshake is over and transport messages can flow."""
        return bool(self._noise.handshake_finished)

    @property
    def is_our_turn(self) -> bool:
        """True if the next handshake message is ours to write."""
        return not self.is_complete and (self._messages_done % 2 == 0) == self.initiator

    def write_handshake(self) -> bytes:
        """Our next handshake message, framed; it carries our identity proof if it has ``s``."""
        payload = b"" if self._messages_done == 0 else self._proof
        self._messages_done += 1
        try:
            message = bytes(self._noise.write_message(payload))
        except _NOISE_FAULTS as exc:  # a DH with a key the peer sent; rejected on read already
            raise DecodeError(f"noise handshake: {type(exc).__name__}") from exc
        return frame_noise_message(message)

    def read_handshake(self, message: bytes) -> None:
        """Process the peer's next handshake message (without its length prefix).

        Raises:
            DecodeError: the message fails authentication, carries a low-order key or its
                payload is malformed.
        """
        try:
            payload = bytes(self._noise.read_message(message))
        except _NOISE_FAULTS as exc:
            raise DecodeError(f"noise handshake: {type(exc).__name__}") from exc
        for name in ("re", "rs"):  # the library keeps a placeholder until the key arrives
            public = getattr(getattr(self._handshake, name), "public_bytes", None)
            if public is not None and is_low_order_point(bytes(public)):
                raise DecodeError(f"noise handshake: low-order {name[1:]} key")
        first = self._messages_done == 0
        self._messages_done += 1
        if first:
            if payload:
                raise DecodeError("noise handshake: unexpected payload in the first message")
            return
        remote_static = bytes(self._handshake.rs.public_bytes)
        proof = IdentityProof.from_rlp(decode_item(payload))
        self.remote_static = remote_static
        if is_valid_identity_proof(proof, remote_static):
            self.remote_node_key = proof.node_key

    def encrypt(self, plaintext: bytes) -> bytes:
        """Transport messages (framed) carrying `plaintext`, split into chunks as needed."""
        out = bytearray()
        for start in range(0, len(plaintext), MAX_PLAINTEXT_CHUNK):
            chunk = plaintext[start : start + MAX_PLAINTEXT_CHUNK]
            out += frame_noise_message(bytes(self._noise.encrypt(chunk)))
        return bytes(out)

    def decrypt(self, message: bytes) -> bytes:
        """Plaintext of one transport message (without its length prefix).

        Raises:
            DecodeError: tampered, reordered, replayed or truncated ciphertext.
        """
        try:
            return bytes(self._noise.decrypt(message))
        except _NOISE_FAULTS as exc:
            raise DecodeError(f"noise transport: {type(exc).__name__}") from exc


class NoiseMessageDecoder:
    """Splits a byte stream into Noise messages (``length || ciphertext``)."""

    def __init__(self) -> None:
        self._buffer = StreamBuffer()

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a message."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Append bytes from the stream."""
        self._buffer.append(data)

    def next_message(self, max_length: int = MAX_NOISE_MESSAGE) -> bytes | None:
        """The next whole message, or None if more bytes are needed.

        Raises:
            DecodeError: an empty message or one longer than `max_length`.
        """
        buffer = self._buffer
        if len(buffer) < LENGTH_BYTES:
            return None
        length = int.from_bytes(buffer.peek(0, LENGTH_BYTES), "big")
        if not 0 < length <= max_length:
            raise DecodeError(f"noise message of {length} bytes (allowed 1..{max_length})")
        if len(buffer) < LENGTH_BYTES + length:
            return None
        return buffer.take(LENGTH_BYTES, length)
