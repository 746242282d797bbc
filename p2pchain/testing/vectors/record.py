"""Making vectors: run steps on the pure store and write down what it did.

`VectorBuilder` is how the generator writes every shipped vector: each message goes to a store
as it is recorded, the outcome recorded is the store's, and an `expect` argument turns the
author's intent into a check (a vector that no longer shows what it was written for fails to
generate). `export_vector` does the same for a list of messages (a property test's example),
and `vector_on_failure` calls it when the block it wraps fails.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from p2pchain.consensus import Store, get_forkchoice_store, on_tick
from p2pchain.errors import Reason
from p2pchain.ledger.block import Block
from p2pchain.ledger.encoding import encode, encode_item
from p2pchain.ledger.evidence import DoubleProposal, VoteEquivocation
from p2pchain.ledger.genesis import GenesisConfig
from p2pchain.ledger.types import BlockId, Slot
from p2pchain.ledger.vote import Vote
from p2pchain.params import ChainParams
from p2pchain.testing.vectors.format import (
    BlockOutcomeName,
    Checks,
    Delivery,
    MessageKind,
    Step,
    Tick,
    ValidatorsCheck,
    Vector,
    dump_vector,
)
from p2pchain.testing.vectors.runner import (
    Observed,
    StoreView,
    compare_delivery,
    deliver_to_store,
)

Message = Block | Vote | DoubleProposal | VoteEquivocation
Expectation = Reason | BlockOutcomeName | str
"""A reason code, ``"added"``/``"pruned"`` for a block, or ``"valid"``."""
EXPORT_DIR_VARIABLE: Final = "P2PCHAIN_VECTOR_DIR"
_RETRY: Final = frozenset(
    {Reason.UNKNOWN_PARENT, Reason.UNKNOWN_VOTE_HEAD, Reason.FUTURE_SLOT, Reason.FUTURE_VOTE}
)


class GenerationError(AssertionError):
    """The store did not do what a vector's author expected of it."""


def wire_bytes(message: Message) -> tuple[MessageKind, bytes]:
    """The kind and the bytes a message travels as (gossip's encodings)."""
    if isinstance(message, Block):
        return MessageKind.BLOCK, message.encoded
    if isinstance(message, Vote):
        return MessageKind.VOTE, encode(message)
    return MessageKind.EVIDENCE, encode_item(message.to_rlp())


def _expected_step(kind: MessageKind, data: bytes, expect: Expectation) -> Delivery:
    if isinstance(expect, Reason):
        return Delivery(kind=kind, data=data, valid=False, reason=expect)
    if expect in ("valid", BlockOutcomeName.ADDED):
        return Delivery(kind=kind, data=data, valid=True)
    if expect == BlockOutcomeName.PRUNED:
        return Delivery(kind=kind, data=data, valid=True, outcome=BlockOutcomeName.PRUNED)
    return Delivery(kind=kind, data=data, valid=False, reason=Reason(expect))


class VectorBuilder:
    """Steps recorded as they run on `store`, a pure store built from the anchor."""

    def __init__(
        self, name: str, description: str, params: ChainParams, genesis: GenesisConfig
    ) -> None:
        self.name = name
        self.description = description
        self.params = params
        self.genesis = genesis
        self.store: Store = get_forkchoice_store(params, genesis)
        self.steps: list[Step] = []

    @property
    def slot(self) -> int:
        return self.store.current_slot

    def tick(self, slot: int) -> None:
        """Move the clock to `slot` (a no-op step is not recorded)."""
        if slot < self.store.current_slot:
            raise GenerationError(f"{self.name}: tick {slot} after {self.store.current_slot}")
        if slot == self.store.current_slot and self.steps:
            return
        on_tick(self.store, Slot(slot))
        self.steps.append(Tick(slot))

    def deliver(
        self, kind: MessageKind, data: bytes, expect: Expectation | None = None
    ) -> Observed:
        """Hand raw wire bytes to the store and record the outcome (checked against `expect`)."""
        observed = deliver_to_store(self.store, Delivery(kind=kind, data=data, valid=True))
        if observed.crashed:
            raise GenerationError(f"{self.name}: the store raised {observed.detail}")
        if expect is not None:
            problem = compare_delivery(_expected_step(kind, data, expect), observed)
            if problem is not None:
                raise GenerationError(f"{self.name}: step {len(self.steps)}: {problem}")
        if observed.valid:
            outcome = observed.outcome if observed.outcome is BlockOutcomeName.PRUNED else None
            self.steps.append(Delivery(kind=kind, data=data, valid=True, outcome=outcome))
        else:
            self.steps.append(Delivery(kind=kind, data=data, valid=False, reason=observed.reason))
        return observed

    def send(self, message: Message, expect: Expectation | None = None) -> Observed:
        """Deliver a block, vote or evidence in its wire encoding."""
        kind, data = wire_bytes(message)
        return self.deliver(kind, data, expect)

    def check(
        self,
        *,
        head: bool = True,
        justified: bool = True,
        finalized: bool = True,
        weights: Iterable[BlockId] | bool = True,
        validators: int | None = None,
        proposer: Iterable[int] = (),
    ) -> Checks:
        """Record checks of the store's current state: the fields asked for, as they are now.

        `weights=True` checks every block of the fork-choice tree; `validators` is an epoch;
        `proposer` lists slots whose proposer on the head is checked.
        """
        view = StoreView(self.store)
        if weights is True:
            weighed: list[BlockId] | None = sorted(self.store.tree.block_ids())
        elif weights is False:
            weighed = None
        else:
            weighed = list(weights)
        slots = list(proposer)
        proposers = {slot: view.proposer(slot) for slot in slots}
        checks = Checks(
            head=view.head() if head else None,
            justified=view.justified() if justified else None,
            finalized=view.finalized() if finalized else None,
            weights=None if weighed is None else {b: view.weight(b) or 0 for b in weighed},
            validators=None
            if validators is None
            else ValidatorsCheck(epoch=validators, stakes=view.validators(validators)),
            proposer={slot: key for slot, key in proposers.items() if key is not None}
            if slots
            else None,
        )
        self.steps.append(checks)
        return checks

    def vector(self) -> Vector:
        return Vector(
            name=self.name,
            description=self.description,
            params=self.params,
            genesis=self.genesis,
            steps=tuple(self.steps),
        )


def _slot_of(message: Message) -> int | None:
    if isinstance(message, Block):
        return message.header.slot
    if isinstance(message, Vote):
        return message.slot
    return None


def _delivery_order(
    params: ChainParams, genesis: GenesisConfig, messages: Sequence[Message], slot: int
) -> list[Message]:
    """The messages in the order a feed with an orphan buffer (like `feed_in_order`) tries
    them, each kept only at its successful try (or its first, if it never succeeds)."""
    store = get_forkchoice_store(params, genesis, current_slot=Slot(slot))
    attempts: list[tuple[int, bool]] = []
    waiting: list[int] = []
    queue = list(range(len(messages)))
    while queue:
        index = queue.pop(0)
        kind, data = wire_bytes(messages[index])
        observed = deliver_to_store(store, Delivery(kind=kind, data=data, valid=True))
        attempts.append((index, observed.valid))
        if not observed.valid:
            if observed.reason in _RETRY:
                waiting.append(index)
            continue
        if kind is MessageKind.BLOCK and waiting:
            queue = waiting + queue
            waiting = []
    accepted = {index for index, valid in attempts if valid}
    order: list[Message] = []
    seen: set[int] = set()
    for index, valid in attempts:
        if index in seen or (index in accepted and not valid):
            continue
        seen.add(index)
        order.append(messages[index])
    return order


def build_export(
    params: ChainParams,
    genesis: GenesisConfig,
    messages: Iterable[Message],
    description: str,
    *,
    name: str = "exported",
    current_slot: int | None = None,
    retry: bool = False,
) -> Vector:
    """The vector of delivering `messages` in order, with the outcome the store gives each and
    checks of head, checkpoints and every weight at the end.

    With `current_slot`, the clock is set to it once at the start (as `feed_in_order` does);
    otherwise it moves to each block's or vote's slot just before it is delivered. With `retry`,
    messages refused for an unknown parent or head or an early slot are retried after every
    accepted block, and each is recorded where it was accepted (see `feed_in_order`).
    """
    builder = VectorBuilder(name, description, params, genesis)
    items = list(messages)
    if current_slot is not None:
        builder.tick(current_slot)
        if retry:
            items = _delivery_order(params, genesis, items, current_slot)
    for message in items:
        slot = _slot_of(message)
        if current_slot is None and slot is not None and slot > builder.slot:
            builder.tick(slot)
        builder.send(message)
    builder.check()
    return builder.vector()


def export_vector(
    path: Path,
    params: ChainParams,
    genesis: GenesisConfig,
    messages: Iterable[Message],
    description: str,
    *,
    current_slot: int | None = None,
    retry: bool = False,
) -> Vector:
    """Write the vector of delivering `messages` (see `build_export`) to `path`; return it.

    What it records is what the store does now, so a vector exported from a failing property
    runs green until someone edits its expectations to what the rules say should happen.
    """
    vector = build_export(
        params,
        genesis,
        messages,
        description,
        name=path.stem,
        current_slot=current_slot,
        retry=retry,
    )
    dump_vector(vector, path)
    return vector


def export_directory() -> Path:
    """Where `vector_on_failure` writes: ``$P2PCHAIN_VECTOR_DIR``, else a temporary dir."""
    configured = os.environ.get(EXPORT_DIR_VARIABLE)
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / "p2pchain-vectors"


def _in_final_hypothesis_run() -> bool | None:
    """True/False inside a hypothesis test (whether this is the run it reports), None outside."""
    from hypothesis import currently_in_test_context
    from hypothesis.control import current_build_context

    if not currently_in_test_context():
        return None
    return bool(getattr(current_build_context(), "is_final", True))


def _note(text: str) -> None:
    from hypothesis import currently_in_test_context, note

    if currently_in_test_context():
        note(text)


@contextmanager
def vector_on_failure(
    name: str,
    params: ChainParams,
    genesis: GenesisConfig,
    messages: Sequence[Message],
    *,
    description: str,
    current_slot: int | None = None,
    retry: bool = False,
    directory: Path | None = None,
) -> Iterator[None]:
    """Export `messages` as vector `name` if the block raises, then re-raise.

    Inside a hypothesis test only the example it reports (the shrunk one) is written, and a
    `note` names the file; ``P2PCHAIN_VECTOR_DIR`` chooses the directory.
    """
    try:
        yield
    except Exception:
        if _in_final_hypothesis_run() is not False:
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
            path = (directory or export_directory()) / f"{safe}.json"
            try:
                export_vector(
                    path,
                    params,
                    genesis,
                    messages,
                    description,
                    current_slot=current_slot,
                    retry=retry,
                )
            except Exception as exc:  # never hide the failure being reported
                _note(f"could not export the failing example as a vector: {exc!r}")
            else:
                _note(f"failing example exported as a step vector: {path}")
        raise


__all__ = [
    "EXPORT_DIR_VARIABLE",
    "Expectation",
    "GenerationError",
    "Message",
    "VectorBuilder",
    "build_export",
    "export_directory",
    "export_vector",
    "vector_on_failure",
    "wire_bytes",
]
