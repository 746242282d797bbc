"""Hashing and BIP-340 Schnorr signatures over secp256k1 (via coincurve).

Pure: no randomness of its own. Key generation takes entropy from the caller, and signing uses
BIP-340's deterministic nonce with caller-supplied auxiliary data (zeros by default).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import coincurve

from p2pchain.ledger.types import Hash32, PublicKey

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def sha256(data: bytes) -> Hash32:
    """SHA-256 digest."""
    return Hash32(hashlib.sha256(data).digest())


def tagged_hash(tag: bytes, data: bytes) -> Hash32:
    """SHA-256 of `tag || data`: every signed message in p2pchain starts with its own tag."""
    return Hash32(hashlib.sha256(tag + data).digest())


def is_valid_secret(secret: bytes) -> bool:
    """True for a 32-byte scalar in [1, n-1]."""
    return len(secret) == 32 and 0 < int.from_bytes(secret, "big") < SECP256K1_ORDER


@dataclass(frozen=True, slots=True)
class SecretKey:
    """A secp256k1 secret key; its repr never shows the secret."""

    secret: bytes = field(repr=False)
    _public_key: PublicKey = field(init=False, repr=False, compare=False)
    """Derived once: a wallet or a validator asks for its key at every signature, and the
    derivation is a scalar multiplication."""

    def __post_init__(self) -> None:
        if not is_valid_secret(self.secret):
            raise ValueError("secret key must be 32 bytes in [1, n-1]")
        object.__setattr__(self, "_public_key", public_key_of(self.secret))

    @classmethod
    def from_entropy(cls, entropy: bytes) -> SecretKey:
        """Derive a key from at least 32 bytes of entropy (from `os.urandom` in the shell)."""
        if len(entropy) < 32:
            raise ValueError("need at least 32 bytes of entropy")
        counter = 0
        while True:
            candidate = hashlib.sha256(entropy + counter.to_bytes(4, "big")).digest()
            if is_valid_secret(candidate):
                return cls(candidate)
            counter += 1  # pragma: no cover - probability ~2**-128

    @property
    def public_key(self) -> PublicKey:
        """The 32-byte x-only public key."""
        return self._public_key

    def sign(self, message: bytes) -> bytes:
        """BIP-340 signature of a 32-byte message."""
        return sign(self.secret, message)


def public_key_of(secret: bytes) -> PublicKey:
    """x-only public key of a secret key."""
    return PublicKey(coincurve.PrivateKey(secret).public_key_xonly.format())


def sign(secret: bytes, message: bytes, aux_rand: bytes = bytes(32)) -> bytes:
    """BIP-340 Schnorr signature (64 bytes) of a 32-byte `message`."""
    if len(message) != 32:
        raise ValueError("BIP-340 signs 32-byte messages")
    if len(aux_rand) != 32:
        raise ValueError("aux_rand must be 32 bytes")
    if not is_valid_secret(secret):
        raise ValueError("secret key must be 32 bytes in [1, n-1]")
    return bytes(coincurve.PrivateKey(secret).sign_schnorr(message, aux_rand))


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """BIP-340 verification. False, never an exception, for any malformed or invalid input."""
    if len(public_key) != 32 or len(message) != 32 or len(signature) != 64:
        return False
    try:
        return bool(coincurve.PublicKeyXOnly(bytes(public_key)).verify(signature, message))
    except Exception:  # coincurve raises ValueError/TypeError for keys off the curve
        return False


def is_valid_public_key(public_key: bytes) -> bool:
    """True for 32 bytes that are the x coordinate of a point on secp256k1."""
    if len(public_key) != 32:
        return False
    try:
        coincurve.PublicKeyXOnly(bytes(public_key))
    except Exception:  # coincurve raises ValueError for an x with no point
        return False
    return True
