"""On-chain governance: proposals, validators' votes, tallies and the parameters they enact.

Pure and per block, like the validator set: every block's node in the fork-choice store holds
the `GovernanceState` after it, derived from its parent's by `advance` (the calendar: windows
open and close, tallies, activations, all at epoch boundaries) and `apply_block` (the block's
PROPOSE and GOV_VOTE transactions). Whatever order blocks arrive in, and across reorgs and
restarts (the node replays blocks), the parameters in force at a block are a function of its
ancestry alone. The rules are written down in docs/governance.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from p2pchain.consensus.validators import ValidatorSet
from p2pchain.errors import InvalidBlock, InvalidTransaction, Reason
from p2pchain.ledger.block import Block
from p2pchain.ledger.tx import (
    GovVotePayload,
    ProposePayload,
    Transaction,
    TxKind,
    VoteChoice,
)
from p2pchain.ledger.types import Address, Amount, Epoch, PublicKey, TxId
from p2pchain.params import ChainParams

FINISHED_KEPT: Final = 256
"""Finished proposals (enacted, rejected, without quorum) a state remembers, newest kept."""

_GOVERNANCE_KINDS: Final = frozenset({TxKind.PROPOSE, TxKind.GOV_VOTE})
_EMPTY_VOTES: Final[Mapping[PublicKey, VoteChoice]] = MappingProxyType({})


class ProposalStatus(StrEnum):
    """Where a proposal is in its life; the strings are part of the RPC."""

    VOTING = "voting"
    """Submitted; its window has not ended (it may not have opened yet)."""
    PASSED = "passed"
    """Passed; waiting for its activation epoch."""
    ENACTED = "enacted"
    """Its changes are in force since its activation epoch."""
    REJECTED = "rejected"
    """Reached quorum without enough yes; the deposit was refunded."""
    NO_QUORUM = "no-quorum"
    """Too little stake voted; the deposit was burned."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tally:
    """Stake per answer, from the proposal's snapshot, and the snapshot's total stake."""

    yes: int = 0
    no: int = 0
    abstain: int = 0
    total: int = 0

    @property
    def turnout(self) -> int:
        return self.yes + self.no + self.abstain

    def reaches_quorum(self, params: ChainParams) -> bool:
        """At least `gov_quorum_bps` of the snapshot stake voted (abstentions count)."""
        return self.total > 0 and self.turnout * 10_000 >= params.gov_quorum_bps * self.total

    def passes(self, params: ChainParams) -> bool:
        """Quorum, and yes above `gov_threshold_bps` of yes plus no."""
        return self.reaches_quorum(params) and (
            self.yes * 10_000 > params.gov_threshold_bps * (self.yes + self.no)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    """One proposal: its terms (from its PROPOSE transaction), calendar, votes and outcome."""

    proposal_id: TxId
    """The PROPOSE transaction's id."""
    changes: tuple[tuple[str, int], ...]
    refund: Address
    deposit: Amount
    submitted: Epoch
    """Epoch of the block that included the proposal."""
    start: Epoch
    end: Epoch
    """Votes count in blocks of epochs `start` to `end`, inclusive."""
    activation: Epoch
    order: int
    """Position among all proposals of the chain: later ones win a tie on one parameter."""
    status: ProposalStatus = ProposalStatus.VOTING
    snapshot: ValidatorSet | None = None
    """Bonded stake after the last block before the window opened; None until it opens."""
    votes: Mapping[PublicKey, VoteChoice] = field(default_factory=lambda: _EMPTY_VOTES)
    tally: Tally | None = None
    """The final tally, once the window has ended."""

    def current_tally(self) -> Tally:
        """The tally of the votes so far (the final one once the window has ended)."""
        if self.tally is not None:
            return self.tally
        if self.snapshot is None:
            return Tally()
        totals = dict.fromkeys(VoteChoice, 0)
        for validator, choice in self.votes.items():
            totals[choice] += self.snapshot.stake_of(validator)
        return Tally(
            yes=totals[VoteChoice.YES],
            no=totals[VoteChoice.NO],
            abstain=totals[VoteChoice.ABSTAIN],
            total=self.snapshot.total,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class GovernanceState:
    """Governance after one block: the parameters in force in its epoch, proposals in flight
    (voting, or passed and waiting) and the most recently finished ones."""

    base: ChainParams
    """The chain's genesis parameters: the ranges and the governance rules come from here."""
    epoch: Epoch
    params: ChainParams
    """The parameters blocks of `epoch` are validated with."""
    active: Mapping[TxId, Proposal]
    finished: tuple[Proposal, ...] = ()
    refunds: tuple[tuple[Address, Amount], ...] = ()
    """Deposits the block this state was advanced for must return, in its reward."""
    next_order: int = 0

    @classmethod
    def at_genesis(cls, params: ChainParams) -> GovernanceState:
        return cls(base=params, epoch=Epoch(0), params=params, active=MappingProxyType({}))

    def proposal(self, proposal_id: TxId) -> Proposal | None:
        """A proposal in flight or recently finished; None if unknown or long finished."""
        found = self.active.get(proposal_id)
        if found is not None:
            return found
        return next((p for p in self.finished if p.proposal_id == proposal_id), None)

    def proposals(self) -> list[Proposal]:
        """Every proposal this state knows, in submission order."""
        return sorted([*self.active.values(), *self.finished], key=lambda p: p.order)


def advance(state: GovernanceState, epoch: Epoch, stakes: ValidatorSet) -> GovernanceState:
    """The state a block of `epoch` starts from, given its parent's `state` and bonded `stakes`.

    Windows whose first epoch has come take `stakes` as their snapshot; windows that ended
    before `epoch` are tallied (the deposit refunded in this block when quorum was reached);
    passed proposals whose activation epoch has come are enacted, in (activation, order)
    order. Nothing changes inside an epoch: a second block of the same epoch starts from the
    same parameters.

    Raises:
        ValueError: `epoch` is before the state's (blocks only move forward).
    """
    if epoch < state.epoch:
        raise ValueError(f"epoch {epoch} is before the state's {state.epoch}")
    if epoch == state.epoch:
        return replace(state, refunds=()) if state.refunds else state
    if not any(_moves(proposal, epoch) for proposal in state.active.values()):
        # The common case: the new state shares its parent's maps, so a store holding one
        # state per epoch does not hold one copy of the proposal lists per epoch.
        return replace(state, epoch=epoch, refunds=())
    base = state.base
    active: dict[TxId, Proposal] = {}
    finished = list(state.finished)
    refunds: list[tuple[Address, Amount]] = []
    for proposal in sorted(state.active.values(), key=lambda p: p.order):
        if proposal.status is ProposalStatus.VOTING:
            if proposal.snapshot is None and epoch >= proposal.start:
                proposal = replace(proposal, snapshot=stakes)
            if epoch > proposal.end:
                tally = proposal.current_tally()
                if tally.reaches_quorum(base):
                    refunds.append((proposal.refund, proposal.deposit))
                if tally.passes(base):
                    status = ProposalStatus.PASSED
                elif tally.reaches_quorum(base):
                    status = ProposalStatus.REJECTED
                else:
                    status = ProposalStatus.NO_QUORUM
                proposal = replace(proposal, status=status, tally=tally)
        if proposal.status in (ProposalStatus.VOTING, ProposalStatus.PASSED):
            active[proposal.proposal_id] = proposal
        else:
            finished.append(proposal)
    params = state.params
    due = sorted(
        (p for p in active.values() if p.status is ProposalStatus.PASSED and p.activation <= epoch),
        key=lambda p: (p.activation, p.order),
    )
    for proposal in due:
        params = params.with_changes(proposal.changes)
        del active[proposal.proposal_id]
        finished.append(replace(proposal, status=ProposalStatus.ENACTED))
    return GovernanceState(
        base=base,
        epoch=epoch,
        params=params,
        active=MappingProxyType(active),
        finished=tuple(finished[-FINISHED_KEPT:]),
        refunds=tuple(refunds),
        next_order=state.next_order,
    )


def _moves(proposal: Proposal, epoch: Epoch) -> bool:
    """Whether reaching `epoch` changes `proposal`: its window opens or ends, or it activates."""
    if proposal.status is ProposalStatus.PASSED:
        return proposal.activation <= epoch
    return (proposal.snapshot is None and epoch >= proposal.start) or epoch > proposal.end


def check_proposal(payload: ProposePayload, epoch: Epoch, base: ChainParams) -> None:
    """The terms of a proposal included in a block of `epoch`: known, distinct parameters with
    values in their ranges, activating after the window and not too long after.

    Raises:
        InvalidTransaction: `BAD_PROPOSAL`, or `BAD_ACTIVATION` for the activation epoch.
    """
    names: set[str] = set()
    for raw_name, value in payload.changes:
        name = raw_name.decode("ascii", errors="replace")
        bounds = base.governable_range(name)
        if bounds is None:
            raise InvalidTransaction(Reason.BAD_PROPOSAL, f"{name!r} is not governable")
        if name in names:
            raise InvalidTransaction(Reason.BAD_PROPOSAL, f"{name} changed twice")
        names.add(name)
        low, high = bounds
        if not low <= value <= high:
            raise InvalidTransaction(Reason.BAD_PROPOSAL, f"{name} must be {low}..{high}")
    end = epoch + base.gov_voting_epochs
    if not end < payload.activation <= end + base.gov_max_activation_delay:
        raise InvalidTransaction(  # its own reason: the range moves with the epoch (a race)
            Reason.BAD_ACTIVATION,
            f"activation must be epoch {end + 1}..{end + base.gov_max_activation_delay}",
        )


class GovernanceDraft:
    """A state being extended by one block's (or one candidate body's) governance
    transactions; copies what it changes once, however many transactions it takes."""

    def __init__(self, state: GovernanceState) -> None:
        self.state = state
        self._active: dict[TxId, Proposal] | None = None
        self._votes: dict[TxId, dict[PublicKey, VoteChoice]] = {}
        self._next_order = state.next_order

    @property
    def active(self) -> Mapping[TxId, Proposal]:
        return self.state.active if self._active is None else self._active

    def check(self, tx: Transaction) -> None:
        """Raise `InvalidTransaction` unless `tx` may join a block of the state's epoch after
        the transactions this draft already took (only PROPOSE and GOV_VOTE are checked).

        Raises:
            InvalidTransaction: `BAD_PROPOSAL`, `BAD_ACTIVATION`, `GOVERNANCE_FULL`,
                `UNKNOWN_PROPOSAL`,
                `VOTING_CLOSED`, `NOT_A_VOTER` or `DOUBLE_GOV_VOTE`.
        """
        payload, epoch, base = tx.payload, self.state.epoch, self.state.base
        if isinstance(payload, ProposePayload):
            check_proposal(payload, epoch, base)
            if len(self.active) >= base.gov_max_proposals:
                raise InvalidTransaction(
                    Reason.GOVERNANCE_FULL, f"{base.gov_max_proposals} proposals in flight"
                )
        elif isinstance(payload, GovVotePayload):
            proposal = self.active.get(payload.proposal)
            if proposal is None:
                known = self.state.proposal(payload.proposal) is not None
                reason = Reason.VOTING_CLOSED if known else Reason.UNKNOWN_PROPOSAL
                raise InvalidTransaction(reason, payload.proposal.hex())
            if proposal.status is not ProposalStatus.VOTING or not (
                proposal.start <= epoch <= proposal.end
            ):
                raise InvalidTransaction(
                    Reason.VOTING_CLOSED, f"votes count in epochs {proposal.start}..{proposal.end}"
                )
            if proposal.snapshot is None or not proposal.snapshot.stake_of(payload.validator):
                raise InvalidTransaction(Reason.NOT_A_VOTER, "no stake in the snapshot")
            votes = self._votes.get(payload.proposal, proposal.votes)
            if payload.validator in votes:
                raise InvalidTransaction(Reason.DOUBLE_GOV_VOTE, payload.validator.hex())

    def take(self, tx: Transaction, txid: TxId) -> None:
        """Record a transaction `check` accepted."""
        payload = tx.payload
        if isinstance(payload, ProposePayload):
            if self._active is None:
                self._active = dict(self.state.active)
            epoch, base = self.state.epoch, self.state.base
            self._active[txid] = Proposal(
                proposal_id=txid,
                changes=tuple((name.decode("ascii"), value) for name, value in payload.changes),
                refund=payload.refund,
                deposit=Amount(base.gov_deposit),
                submitted=epoch,
                start=Epoch(epoch + 1),
                end=Epoch(epoch + base.gov_voting_epochs),
                activation=payload.activation,
                order=self._next_order,
            )
            self._next_order += 1
        elif isinstance(payload, GovVotePayload):
            if self._active is None:
                self._active = dict(self.state.active)
            votes = self._votes.get(payload.proposal)
            if votes is None:
                votes = self._votes[payload.proposal] = dict(self.active[payload.proposal].votes)
            votes[payload.validator] = payload.choice

    def finish(self) -> GovernanceState:
        """The state after every transaction taken."""
        if self._active is None:
            return self.state
        active = self._active
        for proposal_id, votes in self._votes.items():
            active[proposal_id] = replace(active[proposal_id], votes=MappingProxyType(votes))
        return replace(self.state, active=MappingProxyType(active), next_order=self._next_order)


def is_governance(tx: Transaction) -> bool:
    """True for the transactions governance rules read (PROPOSE and GOV_VOTE)."""
    return tx.kind in _GOVERNANCE_KINDS


def apply_transactions(state: GovernanceState, txs: Iterable[Transaction]) -> GovernanceState:
    """`state` after a block's transactions (in order), each checked against what came before.

    Raises:
        InvalidBlock: with the reason of the first governance rule broken (tx index in the
            detail, counting the block's reward as 0).
    """
    draft: GovernanceDraft | None = None
    for index, tx in enumerate(txs):
        if not is_governance(tx):
            continue
        draft = draft or GovernanceDraft(state)
        try:
            draft.check(tx)
        except InvalidTransaction as exc:
            raise InvalidBlock(exc.reason, f"tx {index}: {exc.detail}") from exc
        draft.take(tx, tx.txid)
    return state if draft is None else draft.finish()


def apply_block(state: GovernanceState, block: Block) -> GovernanceState:
    """`apply_transactions` over a block's body (after `advance` to its epoch)."""
    return apply_transactions(state, block.transactions)
