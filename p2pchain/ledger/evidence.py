"""Slashing evidence: two signatures by one key that no honest validator would produce.

Evidence is self-contained: anyone can check it with the chain id alone, so the ledger can burn
the offender's stake without consulting fork-choice state.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from p2pchain.errors import InvalidTransaction, Reason
from p2pchain.ledger.encoding import (
    RLPItem,
    decode_item,
    encode,
    read_list,
    read_uint,
    uint_bytes,
)
from p2pchain.ledger.header import SignedHeader
from p2pchain.ledger.types import PublicKey
from p2pchain.ledger.vote import Vote


class EvidenceKind(IntEnum):
    DOUBLE_PROPOSAL = 0
    VOTE_EQUIVOCATION = 1


def is_double_vote(a: Vote, b: Vote) -> bool:
    """Two different votes by one validator for the same target epoch."""
    return a.validator == b.validator and a.target.epoch == b.target.epoch and not a.same_data(b)


def is_surround_vote(a: Vote, b: Vote) -> bool:
    """One validator's FFG link strictly surrounds another of its links (either way round)."""
    if a.validator != b.validator:
        return False
    a_surrounds_b = a.source.epoch < b.source.epoch and b.target.epoch < a.target.epoch
    b_surrounds_a = b.source.epoch < a.source.epoch and a.target.epoch < b.target.epoch
    return a_surrounds_b or b_surrounds_a


def is_double_proposal(a: SignedHeader, b: SignedHeader) -> bool:
    """Two different headers signed by one proposer for the same slot."""
    return (
        a.header.proposer == b.header.proposer
        and a.header.slot == b.header.slot
        and a.header.block_id != b.header.block_id
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DoubleProposal:
    """Two different headers signed by one proposer for one slot."""

    first: SignedHeader
    second: SignedHeader

    @property
    def offender(self) -> PublicKey:
        return self.first.header.proposer

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(EvidenceKind.DOUBLE_PROPOSAL), self.first.to_rlp(), self.second.to_rlp()]

    def validate(self, chain_id: int) -> None:
        """Raise `InvalidTransaction(BAD_EVIDENCE)` unless this proves a double proposal."""
        if not is_double_proposal(self.first, self.second):
            raise InvalidTransaction(Reason.BAD_EVIDENCE, "headers are not a double proposal")
        if not (
            self.first.is_signature_valid(chain_id) and self.second.is_signature_valid(chain_id)
        ):
            raise InvalidTransaction(Reason.BAD_EVIDENCE, "header signature invalid")


@dataclass(frozen=True, slots=True, kw_only=True)
class VoteEquivocation:
    """Two votes by one validator that form a double vote or a surround vote."""

    first: Vote
    second: Vote

    @property
    def offender(self) -> PublicKey:
        return self.first.validator

    def to_rlp(self) -> RLPItem:
        return [
            uint_bytes(EvidenceKind.VOTE_EQUIVOCATION),
            self.first.to_rlp(),
            self.second.to_rlp(),
        ]

    def validate(self, chain_id: int) -> None:
        """Raise `InvalidTransaction(BAD_EVIDENCE)` unless this proves a slashable vote pair."""
        if not (
            is_double_vote(self.first, self.second) or is_surround_vote(self.first, self.second)
        ):
            raise InvalidTransaction(Reason.BAD_EVIDENCE, "votes are not slashable together")
        if not (
            self.first.is_signature_valid(chain_id) and self.second.is_signature_valid(chain_id)
        ):
            raise InvalidTransaction(Reason.BAD_EVIDENCE, "vote signature invalid")


Evidence = DoubleProposal | VoteEquivocation


def evidence_from_rlp(item: RLPItem) -> Evidence:
    """Decode either kind of evidence from its tagged list form."""
    fields = read_list(item, "evidence", length=3)
    kind = read_uint(fields[0], "evidence.kind", max_value=max(EvidenceKind))
    if kind == EvidenceKind.DOUBLE_PROPOSAL:
        return DoubleProposal(
            first=SignedHeader.from_rlp(fields[1]), second=SignedHeader.from_rlp(fields[2])
        )
    return VoteEquivocation(first=Vote.from_rlp(fields[1]), second=Vote.from_rlp(fields[2]))


def decode_evidence(data: bytes) -> Evidence:
    """Decode evidence of either kind from untrusted bytes, or raise `DecodeError`."""
    return evidence_from_rlp(decode_item(data))


def evidence_key(evidence: Evidence) -> bytes:
    """A canonical identity for de-duplicating evidence: both halves encoded, in sorted order."""
    first, second = sorted((encode(evidence.first), encode(evidence.second)))
    return uint_bytes(len(first)) + first + second
