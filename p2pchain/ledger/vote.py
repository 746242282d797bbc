"""Validator votes (FFG source/target plus an LMD-GHOST head) and checkpoints.

They are wire objects of the ledger because blocks carry them and slashing evidence quotes them;
the rules about counting them live in `p2pchain.consensus`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from p2pchain.ledger.crypto import tagged_hash, verify
from p2pchain.ledger.encoding import (
    RLPItem,
    encode_item,
    read_fixed,
    read_list,
    read_uint,
    uint_bytes,
)
from p2pchain.ledger.types import BlockId, Epoch, Hash32, PublicKey, Slot

_VOTE_SIG_TAG = b"p2pchain/vote"


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class Checkpoint:
    """The block at (or last before) the first slot of `epoch`, on some branch."""

    epoch: Epoch
    block_id: BlockId

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(self.epoch), self.block_id]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        fields = read_list(item, "checkpoint", length=2)
        return cls(
            epoch=Epoch(read_uint(fields[0], "checkpoint.epoch")),
            block_id=BlockId(read_fixed(fields[1], "checkpoint.block_id", 32)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Vote:
    """One validator's vote for `slot`: its head block and an FFG link source -> target."""

    slot: Slot
    head: BlockId
    source: Checkpoint
    target: Checkpoint
    validator: PublicKey
    signature: bytes

    def data_rlp(self) -> RLPItem:
        """The signed part: everything but the signature."""
        return [
            uint_bytes(self.slot),
            self.head,
            self.source.to_rlp(),
            self.target.to_rlp(),
            self.validator,
        ]

    def to_rlp(self) -> RLPItem:
        return [self.data_rlp(), self.signature]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        outer = read_list(item, "vote", length=2)
        data = read_list(outer[0], "vote.data", length=5)
        return cls(
            slot=Slot(read_uint(data[0], "vote.slot")),
            head=BlockId(read_fixed(data[1], "vote.head", 32)),
            source=Checkpoint.from_rlp(data[2]),
            target=Checkpoint.from_rlp(data[3]),
            validator=PublicKey(read_fixed(data[4], "vote.validator", 32)),
            signature=read_fixed(outer[1], "vote.signature", 64),
        )

    def signing_message(self, chain_id: int) -> Hash32:
        """Tag, chain id (8 bytes big-endian), then the RLP of the vote data."""
        return tagged_hash(
            _VOTE_SIG_TAG, chain_id.to_bytes(8, "big") + encode_item(self.data_rlp())
        )

    def is_signature_valid(self, chain_id: int) -> bool:
        """True when `validator` signed this vote for this chain."""
        return verify(self.validator, self.signing_message(chain_id), self.signature)

    def same_data(self, other: Vote) -> bool:
        """True when both votes say the same thing (signatures may differ)."""
        return self.data_rlp() == other.data_rlp()
