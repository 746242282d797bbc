"""On-chain governance: proposals, validators' votes, tallies and the parameters they enact.

Pure and per block, like the validator set: every block's node in the fork-choice store holds
the `GovernanceState` after it, derived from its parent's by `advance` (the calendar: windows
open and close, tallies, activations, all at epoch boundaries) and `apply_block` (the block's
PROPOSE and GOV_VOTE transactions). Whatever order blocks arrive in, and across reorgs and
restarts (the node replays blocks), the parameters in force at a block are a function of its
ancestry alone. The rules are written down in docs/governance.md.

Every header's state root commits to the governance state after its block: one leaf of the top
trie holds `GovernanceState.commitment()`, the tagged hash of `GovernanceState.to_rlp()`
(docs/protocol.md, "State commitment"), so that a node starting from a snapshot can check the
state it is handed. `from_rlp` decodes it as hostile input: bounded, canonical, and every value
that a later block's rules would act on within its range.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from p2pchain.consensus.validators import ValidatorSet
from p2pchain.errors import ConfigError, DecodeError, InvalidBlock, InvalidTransaction, Reason
from p2pchain.ledger.block import Block
from p2pchain.ledger.commitment import governance_value, governed_params_rlp
from p2pchain.ledger.encoding import (
    RLPItem,
    encode_item,
    read_bytes,
    read_fixed,
    read_list,
    read_uint,
    uint_bytes,
)
from p2pchain.ledger.proofs import MAX_PROOF_VALIDATORS
from p2pchain.ledger.tx import (
    MAX_PARAM_NAME_BYTES,
    GovVotePayload,
    ProposePayload,
    Transaction,
    TxKind,
    VoteChoice,
)
from p2pchain.ledger.types import Address, Amount, Epoch, Hash32, PublicKey, TxId
from p2pchain.params import GOVERNABLE, MAX_PROPOSAL_CHANGES, ChainParams

FINISHED_KEPT: Final = 256
"""Finished proposals (enacted, rejected, without quorum) a state remembers, newest kept."""

MAX_SNAPSHOT_VALIDATORS: Final = MAX_PROOF_VALIDATORS
"""Validators an encoded proposal snapshot may list when decoded (as a stake-table proof)."""

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


_STATUS_CODES: Final[tuple[ProposalStatus, ...]] = (
    ProposalStatus.VOTING,
    ProposalStatus.PASSED,
    ProposalStatus.ENACTED,
    ProposalStatus.REJECTED,
    ProposalStatus.NO_QUORUM,
)
"""A status's code in the encoding is its index here."""
_IN_FLIGHT: Final = frozenset({ProposalStatus.VOTING, ProposalStatus.PASSED})


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

    def to_rlp(self) -> RLPItem:
        """``[yes, no, abstain, total]``."""
        return [
            uint_bytes(self.yes),
            uint_bytes(self.no),
            uint_bytes(self.abstain),
            uint_bytes(self.total),
        ]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Tally:
        yes, no, abstain, total = read_list(item, "tally", length=4)
        return cls(
            yes=read_uint(yes, "tally.yes"),
            no=read_uint(no, "tally.no"),
            abstain=read_uint(abstain, "tally.abstain"),
            total=read_uint(total, "tally.total"),
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
    """Bonded stake after the last block before the window opened; None until it opens, and
    None again once the window is tallied (the tally is all that is kept)."""
    votes: Mapping[PublicKey, VoteChoice] = field(default_factory=lambda: _EMPTY_VOTES)
    """The votes while voting; none once tallied."""
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

    def __eq__(self, other: object) -> bool:
        """Field by field, the snapshot by its stakes (a `ValidatorSet` compares by identity,
        and a decoded proposal holds a set of its own)."""
        if not isinstance(other, Proposal):
            return NotImplemented
        return self._fields() == other._fields()

    def _fields(self) -> tuple[object, ...]:
        snapshot = None if self.snapshot is None else self.snapshot.stakes
        return (
            self.proposal_id,
            self.changes,
            self.refund,
            self.deposit,
            self.submitted,
            self.start,
            self.end,
            self.activation,
            self.order,
            self.status,
            snapshot,
            self.votes,
            self.tally,
        )

    def to_rlp(self) -> RLPItem:
        """``[proposal_id, [[name, value], …], refund, deposit, submitted, start, end,
        activation, order, status, snapshot, [[key, choice], …], tally]``: while voting, the
        tally is ``[]``, the snapshot ``[]`` before the window opens, else ``[[[key, stake],
        …]]`` (ascending key), and the votes are by ascending key; once tallied, the tally is
        `Tally.to_rlp` and the snapshot and the votes are ``[]``, so that the encoded state is
        bounded by the proposals in flight, not by the finished ones."""
        snapshot: RLPItem = (
            []
            if self.snapshot is None
            else [[[key, uint_bytes(self.snapshot.stakes[key])] for key in self.snapshot.keys]]
        )
        return [
            self.proposal_id,
            [[name.encode("ascii"), uint_bytes(value)] for name, value in self.changes],
            self.refund,
            uint_bytes(self.deposit),
            uint_bytes(self.submitted),
            uint_bytes(self.start),
            uint_bytes(self.end),
            uint_bytes(self.activation),
            uint_bytes(self.order),
            uint_bytes(_STATUS_CODES.index(self.status)),
            snapshot,
            [[key, uint_bytes(self.votes[key])] for key in sorted(self.votes)],
            [] if self.tally is None else self.tally.to_rlp(),
        ]

    @classmethod
    def from_rlp(cls, item: RLPItem, base: ChainParams) -> Proposal:
        """Decode a proposal of a chain with genesis parameters `base`.

        Raises:
            DecodeError: not the encoding of a proposal the rules could have made: a change
                that is not governable, out of its range or repeated; a status out of range,
                or a tally present exactly when voting; a snapshot or a vote once tallied; a
                snapshot not ascending, or with a stake of 0; votes not ascending, or of keys
                without stake in the snapshot.
        """
        (
            proposal_id,
            change_items,
            refund,
            deposit,
            submitted,
            start,
            end,
            activation,
            order,
            status_code,
            snapshot_item,
            vote_items,
            tally_item,
        ) = read_list(item, "proposal", length=13)
        changes: list[tuple[str, int]] = []
        for change in read_list(change_items, "proposal.changes", max_length=MAX_PROPOSAL_CHANGES):
            raw_name, raw_value = read_list(change, "proposal.change", length=2)
            name = read_bytes(raw_name, "proposal.change.name", MAX_PARAM_NAME_BYTES).decode(
                "ascii", errors="replace"
            )
            value = read_uint(raw_value, "proposal.change.value")
            bounds = base.governable_range(name)
            if bounds is None or not bounds[0] <= value <= bounds[1]:
                raise DecodeError(f"proposal.change: {name!r} = {value} is not governable")
            if any(name == seen for seen, _ in changes):
                raise DecodeError(f"proposal.change: {name} twice")
            changes.append((name, value))
        if not changes:
            raise DecodeError("proposal.changes: none")
        code = read_uint(status_code, "proposal.status", len(_STATUS_CODES) - 1)
        status = _STATUS_CODES[code]
        snapshot = _read_snapshot(snapshot_item)
        vote_entries = read_list(vote_items, "proposal.votes", max_length=MAX_SNAPSHOT_VALIDATORS)
        tally = None if tally_item == [] else Tally.from_rlp(tally_item)
        if (tally is None) != (status is ProposalStatus.VOTING):
            raise DecodeError(
                f"proposal: a {status} proposal with{'out' * (tally is None)} a tally"
            )
        if tally is not None and (snapshot is not None or vote_entries):
            raise DecodeError(f"proposal: tallied ({status}) but keeps a snapshot or votes")
        votes: dict[PublicKey, VoteChoice] = {}
        last_key = PublicKey(b"")
        for entry in vote_entries:
            raw_key, raw_choice = read_list(entry, "proposal.vote", length=2)
            key = PublicKey(read_fixed(raw_key, "proposal.vote.key", 32))
            if votes and key <= last_key:
                raise DecodeError("proposal.votes: not ascending")
            last_key = key
            if snapshot is None or not snapshot.stake_of(key):
                raise DecodeError("proposal.votes: a key without stake in the snapshot")
            votes[key] = VoteChoice(read_uint(raw_choice, "proposal.vote.choice", max(VoteChoice)))
        return cls(
            proposal_id=TxId(read_fixed(proposal_id, "proposal.id", 32)),
            changes=tuple(changes),
            refund=Address(read_fixed(refund, "proposal.refund", 20)),
            deposit=Amount(read_uint(deposit, "proposal.deposit")),
            submitted=Epoch(read_uint(submitted, "proposal.submitted")),
            start=Epoch(read_uint(start, "proposal.start")),
            end=Epoch(read_uint(end, "proposal.end")),
            activation=Epoch(read_uint(activation, "proposal.activation")),
            order=read_uint(order, "proposal.order"),
            status=status,
            snapshot=snapshot,
            votes=MappingProxyType(votes) if votes else _EMPTY_VOTES,
            tally=tally,
        )


def _read_snapshot(item: RLPItem) -> ValidatorSet | None:
    """``[]`` (no snapshot yet) or ``[[[key, stake], …]]``, ascending keys, stakes > 0."""
    option = read_list(item, "proposal.snapshot", max_length=1)
    if not option:
        return None
    stakes: dict[PublicKey, int] = {}
    last: PublicKey | None = None
    for entry in read_list(option[0], "proposal.snapshot", max_length=MAX_SNAPSHOT_VALIDATORS):
        raw_key, raw_stake = read_list(entry, "proposal.snapshot.entry", length=2)
        key = PublicKey(read_fixed(raw_key, "proposal.snapshot.key", 32))
        stake = read_uint(raw_stake, "proposal.snapshot.stake")
        if last is not None and key <= last:
            raise DecodeError("proposal.snapshot: not ascending")
        if stake == 0:
            raise DecodeError("proposal.snapshot: a stake of 0")
        stakes[key] = stake
        last = key
    return ValidatorSet.from_stakes(stakes)


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

    def to_rlp(self) -> RLPItem:
        """``[epoch, [value of each name of GOVERNABLE, in order], [Proposal, …] (in flight, by
        ascending order), [Proposal, …] (finished, oldest first), next_order]``.

        `base` is not encoded (the decoder is given the chain's genesis parameters), nor are the
        parameters that are not governable (they are the base's). `refunds` is left out: they
        are paid by the block this state was advanced for (its reward's outputs, which the
        UTXO part of the root commits to), and `advance` drops them for every later block, so
        nothing after that block reads them.
        """
        return [
            uint_bytes(self.epoch),
            governed_params_rlp(self.params),
            [p.to_rlp() for p in sorted(self.active.values(), key=lambda p: p.order)],
            [p.to_rlp() for p in self.finished],
            uint_bytes(self.next_order),
        ]

    @classmethod
    def from_rlp(cls, item: RLPItem, base: ChainParams) -> GovernanceState:
        """Decode the governance state of a chain whose genesis parameters are `base`, with no
        refunds (see `to_rlp`).

        Raises:
            DecodeError: malformed; more proposals in flight than `gov_max_proposals` or
                finished than `FINISHED_KEPT`; a parameter value that is neither the base's
                nor in its governable range; a proposal in the wrong list for its status, in
                flight out of order, with an order not below `next_order`, or listed twice.
        """
        epoch, values, active_items, finished_items, next_order_item = read_list(
            item, "governance", length=5
        )
        changed: list[tuple[str, int]] = []
        for name, raw in zip(
            GOVERNABLE,
            read_list(values, "governance.params", length=len(GOVERNABLE)),
            strict=True,
        ):
            value = read_uint(raw, f"governance.params.{name}")
            if value != getattr(base, name):
                changed.append((name, value))
        try:
            params = base.with_changes(changed) if changed else base
        except ConfigError as exc:
            raise DecodeError(f"governance.params: {exc}") from exc
        next_order = read_uint(next_order_item, "governance.next_order")
        active: dict[TxId, Proposal] = {}
        last_order = 0
        for entry in read_list(
            active_items, "governance.active", max_length=base.gov_max_proposals
        ):
            proposal = Proposal.from_rlp(entry, base)
            if proposal.status not in _IN_FLIGHT:
                raise DecodeError(f"governance.active: a {proposal.status} proposal")
            if active and proposal.order <= last_order:
                raise DecodeError("governance.active: not by ascending order")
            last_order = proposal.order
            active[proposal.proposal_id] = proposal
        finished: list[Proposal] = []
        for entry in read_list(finished_items, "governance.finished", max_length=FINISHED_KEPT):
            proposal = Proposal.from_rlp(entry, base)
            if proposal.status in _IN_FLIGHT:
                raise DecodeError(f"governance.finished: a {proposal.status} proposal")
            finished.append(proposal)
        ids = [*active, *(p.proposal_id for p in finished)]
        if len(set(ids)) != len(ids):
            raise DecodeError("governance: a proposal listed twice")
        if any(p.order >= next_order for p in (*active.values(), *finished)):
            raise DecodeError("governance: a proposal order not below next_order")
        return cls(
            base=base,
            epoch=Epoch(read_uint(epoch, "governance.epoch")),
            params=params,
            active=MappingProxyType(active),
            finished=tuple(finished),
            next_order=next_order,
        )

    def commitment(self) -> Hash32:
        """The governance leaf of the state root: ``tagged_hash("p2pchain/state/
        governance-state", rlp(to_rlp()))``."""
        return governance_value(encode_item(self.to_rlp()))

    def proposal(self, proposal_id: TxId) -> Proposal | None:
        """A proposal in flight or recently finished; None if unknown or long finished."""
        found = self.active.get(proposal_id)
        if found is not None:
            return found
        return next((p for p in self.finished if p.proposal_id == proposal_id), None)

    def proposals(self) -> list[Proposal]:
        """Every proposal this state knows, in submission order."""
        return sorted([*self.active.values(), *self.finished], key=lambda p: p.order)


def commitment_after(
    state: GovernanceState, parent: GovernanceState, parent_commitment: Hash32
) -> Hash32:
    """`state.commitment()`, where `state` is the governance after a block and `parent` (whose
    commitment is `parent_commitment`) the one after its parent: the parent's value again,
    without encoding anything, when the block left every encoded part as it was (the same
    epoch, the same parameters and proposal lists: no governance transaction, nothing due)."""
    if state is parent or (
        state.epoch == parent.epoch
        and state.next_order == parent.next_order
        and state.params is parent.params
        and state.active is parent.active
        and state.finished is parent.finished
    ):
        return parent_commitment
    return state.commitment()


def advance(state: GovernanceState, epoch: Epoch, stakes: ValidatorSet) -> GovernanceState:
    """The state a block of `epoch` starts from, given its parent's `state` and bonded `stakes`.

    Windows whose first epoch has come take `stakes` as their snapshot; windows that ended
    before `epoch` are tallied, keeping the tally and dropping the snapshot and the votes (the
    deposit refunded in this block when quorum was reached);
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
                # The tally is all a decided proposal needs: dropping the snapshot and the
                # votes bounds the state by the proposals in flight, not by the finished ones.
                proposal = replace(
                    proposal, status=status, snapshot=None, votes=_EMPTY_VOTES, tally=tally
                )
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
