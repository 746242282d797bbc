"""Running a vector against the pure fork-choice store, and the comparisons every runner shares.

`run_vector` builds a store from the vector's anchor and feeds it the steps: `on_tick` for a
tick, the wire bytes decoded and handed to `on_block` / `on_vote` / `on_evidence`, and each
check read with the store's own queries. The first step that does not go as the vector says
ends the run; its failures (one per mismatching field) are returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from p2pchain.consensus import (
    BlockOutcome,
    Store,
    get_forkchoice_store,
    get_proposer,
    get_validator_set,
    get_weight,
    on_block,
    on_evidence,
    on_tick,
    on_vote,
)
from p2pchain.errors import DecodeError, InvalidBlock, InvalidTransaction, InvalidVote, Reason
from p2pchain.ledger.block import Block
from p2pchain.ledger.encoding import decode
from p2pchain.ledger.evidence import decode_evidence
from p2pchain.ledger.types import BlockId, Epoch, PublicKey, Slot
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.testing.vectors.format import (
    BlockOutcomeName,
    Checks,
    Delivery,
    MessageKind,
    Tick,
    Vector,
)

HELD_VOTE_REASONS: Final = frozenset({Reason.UNKNOWN_VOTE_HEAD, Reason.FUTURE_VOTE})
"""Vote rejections a node may answer by holding the vote for a retry instead of naming the rule
(p2pchain's node does, for both): a runner accepts a hold where a vector expects one of them."""


@dataclass(frozen=True, slots=True)
class Failure:
    """One way a run differed from its vector: which vector, which step (index into
    `Vector.steps`; None for the run as a whole) and what differed."""

    vector: str
    step: int | None
    message: str

    def __str__(self) -> str:
        where = "" if self.step is None else f"step {self.step}: "
        return f"{self.vector}: {where}{self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Observed:
    """What an implementation did with one delivered message."""

    valid: bool
    reason: Reason | None = None
    outcome: BlockOutcomeName | None = None
    held: bool = False
    """Kept for a retry without naming a rule (only some nodes; see `HELD_VOTE_REASONS`)."""
    detail: str = ""
    crashed: bool = False
    """It raised something other than the library's rule errors (always a failure)."""


def describe_delivery(step: Delivery) -> str:
    if step.valid:
        outcome = step.outcome or BlockOutcomeName.ADDED
        return f"valid ({outcome.value})" if step.kind is MessageKind.BLOCK else "valid"
    assert step.reason is not None
    return f"invalid ({step.reason.value})"


def _describe_observed(observed: Observed) -> str:
    if observed.crashed:
        return f"an unexpected error: {observed.detail}"
    if observed.held:
        return "held for a retry (unknown head or future slot)"
    if observed.valid:
        return f"valid ({observed.outcome.value})" if observed.outcome else "valid"
    assert observed.reason is not None
    detail = f": {observed.detail}" if observed.detail else ""
    return f"invalid ({observed.reason.value}{detail})"


def compare_delivery(step: Delivery, observed: Observed) -> str | None:
    """A one-line difference between what `step` expects and what happened, or None."""
    if observed.crashed:
        matches = False
    elif observed.held:
        matches = step.kind is MessageKind.VOTE and step.reason in HELD_VOTE_REASONS
    elif step.valid:
        expected = step.outcome or BlockOutcomeName.ADDED
        matches = observed.valid and (observed.outcome is None or observed.outcome is expected)
    else:
        matches = not observed.valid and observed.reason is step.reason
    if matches:
        return None
    return (
        f"{step.kind.value} 0x{step.data[:8].hex()}..: expected {describe_delivery(step)}, "
        f"got {_describe_observed(observed)}"
    )


class StateView(Protocol):
    """The fork-choice state a check reads, from whatever implementation runs the vector."""

    def head(self) -> BlockId: ...

    def justified(self) -> Checkpoint: ...

    def finalized(self) -> Checkpoint: ...

    def weight(self, block_id: BlockId) -> int | None:
        """None for a block that is not in the fork-choice tree."""

    def validators(self, epoch: int) -> Mapping[PublicKey, int]: ...

    def proposer(self, slot: int) -> PublicKey | None: ...


class StoreView:
    """`StateView` of a pure `Store`, read with the consensus queries."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def head(self) -> BlockId:
        return self.store.head

    def justified(self) -> Checkpoint:
        return self.store.justified_checkpoint

    def finalized(self) -> Checkpoint:
        return self.store.finalized_checkpoint

    def weight(self, block_id: BlockId) -> int | None:
        if block_id not in self.store.tree:
            return None
        return get_weight(self.store, block_id)

    def validators(self, epoch: int) -> Mapping[PublicKey, int]:
        return dict(get_validator_set(self.store, self.store.head, Epoch(epoch)).stakes)

    def proposer(self, slot: int) -> PublicKey | None:
        return get_proposer(self.store, self.store.head, Slot(slot))


def _short(block_id: bytes) -> str:
    return "0x" + block_id.hex()


def _checkpoint(checkpoint: Checkpoint) -> str:
    return f"(epoch {checkpoint.epoch}, {_short(checkpoint.block_id)})"


def evaluate_checks(checks: Checks, view: StateView) -> list[str]:
    """One line per field of `checks` that the state does not match."""
    problems: list[str] = []
    if checks.head is not None and (head := view.head()) != checks.head:
        problems.append(f"head: expected {_short(checks.head)}, got {_short(head)}")
    if checks.justified is not None and (justified := view.justified()) != checks.justified:
        problems.append(
            f"justified: expected {_checkpoint(checks.justified)}, got {_checkpoint(justified)}"
        )
    if checks.finalized is not None and (finalized := view.finalized()) != checks.finalized:
        problems.append(
            f"finalized: expected {_checkpoint(checks.finalized)}, got {_checkpoint(finalized)}"
        )
    for block_id, stake in (checks.weights or {}).items():
        weight = view.weight(block_id)
        if weight is None:
            problems.append(f"weight of {_short(block_id)}: not in the fork-choice tree")
        elif weight != stake:
            problems.append(f"weight of {_short(block_id)}: expected {stake}, got {weight}")
    if checks.validators is not None:
        epoch = checks.validators.epoch
        actual = view.validators(epoch)
        expected = dict(checks.validators.stakes)
        if actual != expected:
            problems.append(
                f"validators of epoch {epoch}: expected {_stakes(expected)}, got {_stakes(actual)}"
            )
    for slot, key in (checks.proposer or {}).items():
        proposer = view.proposer(slot)
        if proposer != key:
            got = "none" if proposer is None else _short(proposer)
            problems.append(f"proposer of slot {slot}: expected {_short(key)}, got {got}")
    return problems


def _stakes(stakes: Mapping[PublicKey, int]) -> str:
    return "{" + ", ".join(f"0x{k.hex()[:16]}..: {v}" for k, v in sorted(stakes.items())) + "}"


def _unexpected(exc: Exception) -> Observed:
    return Observed(valid=False, crashed=True, detail=f"{type(exc).__name__}: {exc}")


def deliver_to_store(store: Store, step: Delivery) -> Observed:
    """Decode `step`'s bytes and hand them to the store's handler at its current slot."""
    try:
        if step.kind is MessageKind.BLOCK:
            block = decode(Block, step.data)
            outcome = on_block(store, block, store.current_slot)
            name = BlockOutcomeName.PRUNED if outcome is BlockOutcome.PRUNED else None
            return Observed(valid=True, outcome=name or BlockOutcomeName.ADDED)
        if step.kind is MessageKind.VOTE:
            on_vote(store, decode(Vote, step.data), store.current_slot)
        else:
            on_evidence(store, decode_evidence(step.data))
    except DecodeError as exc:
        return Observed(valid=False, reason=Reason.MALFORMED, detail=str(exc))
    except (InvalidBlock, InvalidVote, InvalidTransaction) as exc:
        return Observed(valid=False, reason=exc.reason, detail=exc.detail)
    except Exception as exc:  # a bug in the implementation under test: report, never crash
        return _unexpected(exc)
    return Observed(valid=True)


def run_vector(vector: Vector) -> list[Failure]:
    """Run `vector` against a fresh pure store; [] when every step went as it says."""
    try:
        store = get_forkchoice_store(vector.params, vector.genesis)
    except Exception as exc:  # ConfigError for a genesis that breaks the rules
        return [Failure(vector.name, None, f"anchor: {type(exc).__name__}: {exc}")]
    view = StoreView(store)
    for index, step in enumerate(vector.steps):
        if isinstance(step, Tick):
            on_tick(store, Slot(step.slot))
            continue
        observed = deliver_to_store(store, step) if isinstance(step, Delivery) else None
        if failures := step_failures(vector, index, step, observed, view):
            return failures
    return []


def step_failures(
    vector: Vector, index: int, step: Delivery | Checks, observed: Observed | None, view: StateView
) -> list[Failure]:
    """What went other than step `index` says: a delivery's `observed` outcome, or checks
    evaluated on `view` (a check that raises is a failure too)."""
    if isinstance(step, Delivery):
        assert observed is not None
        problem = compare_delivery(step, observed)
        problems = [] if problem is None else [problem]
    else:
        try:
            problems = evaluate_checks(step, view)
        except Exception as exc:
            problems = [f"checks raised {type(exc).__name__}: {exc}"]
    return [Failure(vector.name, index, problem) for problem in problems]
