"""Node events: numbered, kept in a bounded history, fanned out to bounded subscriptions.

Publishing never waits. Each subscription has its own buffer; when a subscriber falls so far
behind that the buffer is full, the subscription ends: the subscriber first reads everything
that was buffered, then gets `SubscriptionOverflow` carrying the sequence number of the last
event it received. It can subscribe again with ``since=last_seq`` and the hub replays the
events it missed from its history (`NodeLimits.event_history` events and
`NodeLimits.event_history_bytes`, see `event_size`), or raises `EventHistoryExpired` when they
are older than that.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import trio

from p2pchain.errors import EventHistoryExpired, Reason, SubscriptionOverflow
from p2pchain.ledger.tx import Transaction
from p2pchain.ledger.types import BlockId, Height, Slot, TxId
from p2pchain.ledger.vote import Checkpoint


class TxStatus(StrEnum):
    """Where a transaction stands, as this node sees it."""

    UNKNOWN = "unknown"
    PENDING = "pending"
    INCLUDED = "included"
    FINALIZED = "finalized"
    REJECTED = "rejected"


class EventKind(StrEnum):
    NEW_HEAD = "new_head"
    FINALIZED = "finalized"
    TX_STATUS = "tx_status"
    PEER = "peer"
    REORG = "reorg"


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadInfo:
    """A block of the canonical chain (normally the head)."""

    block_id: BlockId
    height: Height
    slot: Slot


@dataclass(frozen=True, slots=True, kw_only=True)
class TxInfo:
    """A transaction's status; `block_id` / `height` are set when it is on the chain and
    `reason` when it was rejected."""

    txid: TxId
    status: TxStatus
    tx: Transaction | None = None
    block_id: BlockId | None = None
    height: Height | None = None
    reason: Reason | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerEvent:
    """A peer connected (`connected` True) or left."""

    peer_id: bytes
    address: str
    connected: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ReorgInfo:
    """The head moved to another branch: blocks taken off (newest first), then put on."""

    old_head: BlockId
    new_head: BlockId
    undone: tuple[BlockId, ...]
    applied: tuple[BlockId, ...]


EventData = HeadInfo | Checkpoint | TxInfo | PeerEvent | ReorgInfo

EVENT_BASE_BYTES: Final = 256
"""What `event_size` charges for any event, before what it carries."""


def event_size(data: EventData) -> int:
    """The bytes an event is charged in the history: a fixed part plus the encoding of the
    transaction it carries or 32 per block id it lists (a transaction event keeps its
    transaction alive after the pool and the chain let go of it)."""
    if isinstance(data, TxInfo) and data.tx is not None:
        return EVENT_BASE_BYTES + data.tx.size
    if isinstance(data, ReorgInfo):
        return EVENT_BASE_BYTES + 32 * (len(data.undone) + len(data.applied))
    return EVENT_BASE_BYTES


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One thing that happened; `seq` increases by one per event across all kinds."""

    seq: int
    kind: EventKind
    data: EventData


class Subscription:
    """An async iterator over the events of the subscribed kinds. Create with `subscribe`."""

    def __init__(self, kinds: frozenset[EventKind], buffer: int, last_seq: int) -> None:
        self.kinds = kinds
        self.buffer = buffer
        self.last_seq = last_seq
        """Sequence number of the last event this subscriber received (or skipped by kind)."""
        self._queue: deque[Event] = deque()
        self._overflowed = False
        self._closed = False
        self._wakeup = trio.Event()

    def _offer(self, event: Event) -> None:
        if self._overflowed or self._closed:
            return
        if event.kind not in self.kinds:
            if not self._queue:
                self.last_seq = event.seq
            return
        if len(self._queue) >= self.buffer:
            self._overflowed = True
        else:
            self._queue.append(event)
        self._wakeup.set()

    def _close(self) -> None:
        self._closed = True
        self._wakeup.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while not self._queue:
            if self._overflowed:
                raise SubscriptionOverflow(self.last_seq)
            if self._closed:
                raise StopAsyncIteration
            await self._wakeup.wait()
            self._wakeup = trio.Event()
        event = self._queue.popleft()
        self.last_seq = event.seq
        return event

    def pending(self) -> int:
        """Events buffered and not read yet."""
        return len(self._queue)


class EventHub:
    """Numbers events, keeps the last `history` of them (within `history_bytes` by
    `event_size`) and offers each to every subscriber."""

    def __init__(self, history: int, history_bytes: int) -> None:
        self._history: deque[tuple[Event, int]] = deque()
        self._max_events = history
        self._max_bytes = history_bytes
        self._history_bytes = 0
        self._seq = 0
        self._subscribers: set[Subscription] = set()
        self.published = 0
        self.overflows = 0

    @property
    def last_seq(self) -> int:
        """Sequence number of the newest event (0 before the first)."""
        return self._seq

    def publish(self, kind: EventKind, data: EventData) -> Event:
        """Record and fan out one event; never waits."""
        self._seq += 1
        event = Event(seq=self._seq, kind=kind, data=data)
        size = event_size(data)
        self._history.append((event, size))
        self._history_bytes += size
        while len(self._history) > self._max_events or (
            self._history_bytes > self._max_bytes and len(self._history) > 1
        ):
            _, gone = self._history.popleft()
            self._history_bytes -= gone
        self.published += 1
        for subscription in list(self._subscribers):
            was_overflowed = subscription._overflowed
            subscription._offer(event)
            if subscription._overflowed and not was_overflowed:
                self.overflows += 1
        return event

    def history(self, since: int) -> list[Event]:
        """Events after `since` still in the history.

        Raises:
            EventHistoryExpired: some event after `since` has already left the history.
        """
        if since > self._seq or since < 0:
            raise ValueError(f"since={since} is not a sequence number this node issued")
        oldest = self._history[0][0].seq if self._history else self._seq + 1
        if since + 1 < oldest:
            raise EventHistoryExpired(since, f"events after {since} left the history")
        return [event for event, _ in self._history if event.seq > since]

    @property
    def history_bytes(self) -> int:
        """What the events in the history are charged (`event_size`)."""
        return self._history_bytes

    @asynccontextmanager
    async def subscribe(
        self, kinds: Iterable[EventKind] | None, *, since: int | None, buffer: int
    ) -> AsyncIterator[Subscription]:
        """A subscription to live events of `kinds` (all when None), after `since` if given.

        Raises:
            EventHistoryExpired: `since` is older than the history.
        """
        if buffer < 1:
            raise ValueError("buffer must be positive")
        wanted = frozenset(EventKind) if kinds is None else frozenset(kinds)
        start = self._seq if since is None else since
        subscription = Subscription(wanted, buffer, start)
        for event in self.history(start):
            subscription._offer(event)
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)
            subscription._close()

    def close(self) -> None:
        """End every subscription (their iterators stop after the buffered events)."""
        for subscription in self._subscribers:
            subscription._close()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
