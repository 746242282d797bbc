"""Slashing detection: remember what each key signed and spot two signatures that conflict.

The detector is fed every header and vote a node sees (valid or not for the fork choice: a
vote on a pruned branch still counts as evidence) and returns ledger evidence objects that
`Evidence.validate` accepts, ready to gossip or to put in a SLASH transaction. It forgets what
precedes the window the caller keeps (`forget_before`); a node feeds it only the signatures of
keys that have stake to burn and no evidence against them yet, so that neither strangers'
fresh keys nor an equivocator signing pair after pair make it grow.
"""

from __future__ import annotations

from p2pchain.ledger.block import Block
from p2pchain.ledger.evidence import (
    DoubleProposal,
    Evidence,
    VoteEquivocation,
    evidence_key,
    is_double_proposal,
    is_double_vote,
    is_surround_vote,
)
from p2pchain.ledger.header import SignedHeader
from p2pchain.ledger.types import Epoch, PublicKey, Slot
from p2pchain.ledger.vote import Vote


class SlashingDetector:
    """Signed headers by (proposer, slot) and votes by (validator, target epoch)."""

    def __init__(self, chain_id: int) -> None:
        self.chain_id = chain_id
        self._headers: dict[tuple[PublicKey, int], SignedHeader] = {}
        self._votes: dict[PublicKey, dict[int, Vote]] = {}
        self._found: dict[bytes, Evidence] = {}

    def __len__(self) -> int:
        """Signatures remembered: headers plus votes (what `forget_before` bounds)."""
        return len(self._headers) + sum(len(by_target) for by_target in self._votes.values())

    @property
    def evidence(self) -> list[Evidence]:
        """Every piece of evidence found so far, in discovery order."""
        return list(self._found.values())

    @property
    def offenders(self) -> set[PublicKey]:
        """Keys with at least one piece of evidence against them."""
        return {found.offender for found in self._found.values()}

    def forget_before(self, epoch: Epoch, slot: Slot) -> None:
        """Forget votes whose target precedes `epoch` and headers from before `slot`.

        Bounds the memory by the window the caller keeps (offences older than it go unseen,
        as with any slasher's bounded history).
        """
        self._headers = {key: h for key, h in self._headers.items() if key[1] >= slot}
        for validator, by_target in list(self._votes.items()):
            kept = {target: vote for target, vote in by_target.items() if target >= epoch}
            if kept:
                self._votes[validator] = kept
            else:
                del self._votes[validator]

    def observe_block(self, block: Block) -> list[Evidence]:
        """Check a block's signed header and the votes it carries."""
        found = self.observe_header(block.signed_header)
        for vote in block.votes:
            found += self.observe_vote(vote)
        return found

    def observe_header(self, signed: SignedHeader) -> list[Evidence]:
        """Return new double-proposal evidence that `signed` completes (ignores bad signatures)."""
        key = (signed.header.proposer, signed.header.slot)
        first = self._headers.get(key)
        if first is None:
            if signed.is_signature_valid(self.chain_id):
                self._headers[key] = signed
            return []
        if not is_double_proposal(first, signed) or not signed.is_signature_valid(self.chain_id):
            return []
        return self._record(DoubleProposal(first=first, second=signed))

    def observe_vote(self, vote: Vote) -> list[Evidence]:
        """Return new double-vote or surround-vote evidence that `vote` completes."""
        earlier = self._votes.get(vote.validator, {})
        same_target = earlier.get(vote.target.epoch)
        if same_target is not None and same_target.same_data(vote):
            return []
        if not vote.is_signature_valid(self.chain_id):
            return []
        found: list[Evidence] = []
        if same_target is not None and is_double_vote(same_target, vote):
            found += self._record(VoteEquivocation(first=same_target, second=vote))
        for other in sorted(earlier.values(), key=lambda v: v.target.epoch):
            if is_surround_vote(other, vote):
                found += self._record(VoteEquivocation(first=other, second=vote))
                break
        self._votes.setdefault(vote.validator, {}).setdefault(vote.target.epoch, vote)
        return found

    def _record(self, found: Evidence) -> list[Evidence]:
        key = evidence_key(found)
        if key in self._found:
            return []
        self._found[key] = found
        return [found]
