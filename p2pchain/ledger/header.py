"""Block headers, their ids and the proposer's signature over them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Self

from p2pchain.ledger.crypto import sha256, tagged_hash, verify
from p2pchain.ledger.encoding import (
    RLPItem,
    encode,
    read_fixed,
    read_list,
    read_uint,
    uint_bytes,
)
from p2pchain.ledger.types import BlockId, Hash32, Height, PublicKey, Slot

_HEADER_SIG_TAG = b"p2pchain/header"


@dataclass(frozen=True, kw_only=True)
class BlockHeader:
    """What the proposer signs: the parent, position in time, a commitment to the body and one
    to the state after the block (`UtxoView.state_root`).

    Not slotted, so that `block_id` is hashed once per object (`cached_property`).
    """

    parent: BlockId
    height: Height
    slot: Slot
    proposer: PublicKey
    body_root: Hash32
    state_root: Hash32

    def to_rlp(self) -> RLPItem:
        return [
            self.parent,
            uint_bytes(self.height),
            uint_bytes(self.slot),
            self.proposer,
            self.body_root,
            self.state_root,
        ]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        fields = read_list(item, "header", length=6)
        return cls(
            parent=BlockId(read_fixed(fields[0], "header.parent", 32)),
            height=Height(read_uint(fields[1], "header.height")),
            slot=Slot(read_uint(fields[2], "header.slot")),
            proposer=PublicKey(read_fixed(fields[3], "header.proposer", 32)),
            body_root=Hash32(read_fixed(fields[4], "header.body_root", 32)),
            state_root=Hash32(read_fixed(fields[5], "header.state_root", 32)),
        )

    @cached_property
    def block_id(self) -> BlockId:
        """SHA-256 of the encoded header (the signature is not part of it)."""
        return BlockId(sha256(encode(self)))


def header_signing_message(chain_id: int, block_id: bytes) -> Hash32:
    """The 32-byte message a proposer signs: tag, chain id (8 bytes big-endian), block id."""
    return tagged_hash(_HEADER_SIG_TAG, chain_id.to_bytes(8, "big") + block_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedHeader:
    """A header with its proposer's signature: the unit of double-proposal evidence."""

    header: BlockHeader
    signature: bytes

    def to_rlp(self) -> RLPItem:
        return [self.header.to_rlp(), self.signature]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        fields = read_list(item, "signed_header", length=2)
        return cls(
            header=BlockHeader.from_rlp(fields[0]),
            signature=read_fixed(fields[1], "signed_header.signature", 64),
        )

    def is_signature_valid(self, chain_id: int) -> bool:
        """True when the header's proposer signed it for this chain."""
        message = header_signing_message(chain_id, self.header.block_id)
        return verify(self.header.proposer, message, self.signature)
