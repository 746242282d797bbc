"""`QuotaPool`: items charged to the peer that sent them, bounded per peer and in total.

Every pool that holds what peers send us before it can be checked (blocks waiting for a parent
or a slot, votes waiting for a head, orphan transactions) needs a bound that a flooding peer
cannot turn against honest ones. The pool counts items and bytes per *source* and in total:

- a source over its own quota (count or bytes) loses its own oldest items first;
- a pool over its total loses the oldest item of the source holding the most bytes (then the
  most items), so a flood only pushes out entries of whoever holds at least as much as the
  flooder. An honest peer within its share keeps its entries until every flooder is down to
  its size: pushing it out takes as many identities as the pool has shares.

An item larger than a source's byte quota is never held. Sources are opaque hashable keys
(a peer id, or None for our own submissions).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from p2pchain.errors import ConfigError

K = TypeVar("K", bound=Hashable)
S = TypeVar("S", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True, slots=True, kw_only=True)
class Quota:
    """Bounds of one `QuotaPool`: count and bytes, in total and per source."""

    max_items: int
    max_bytes: int
    max_items_per_source: int
    max_bytes_per_source: int

    def __post_init__(self) -> None:
        if not 0 < self.max_items_per_source <= self.max_items:
            raise ConfigError("max_items_per_source must be in 1..max_items")
        if not 0 < self.max_bytes_per_source <= self.max_bytes:
            raise ConfigError("max_bytes_per_source must be in 1..max_bytes")


@dataclass(slots=True)
class _Entry(Generic[S, V]):
    value: V
    source: S
    size: int


@dataclass(slots=True)
class _Usage:
    items: int = 0
    bytes: int = 0


class QuotaPool(Generic[K, S, V]):
    """Keyed items with a source and a size, within a `Quota`; oldest first when iterated."""

    def __init__(self, quota: Quota) -> None:
        self.quota = quota
        self._entries: dict[K, _Entry[S, V]] = {}
        self._by_source: dict[S, dict[K, None]] = {}
        self._usage: dict[S, _Usage] = {}
        self._bytes = 0
        self._heap: list[tuple[int, int, int, S]] = []
        """(-bytes, -items, push order, source): the largest holder on top; stale entries (whose
        usage no longer matches) are skipped when popped."""
        self._pushes = 0
        self.evicted = 0
        """Items pushed out by the bounds (or never held) since creation."""

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    @property
    def bytes(self) -> int:
        """Sum of the sizes of the held items."""
        return self._bytes

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        return None if entry is None else entry.value

    def items(self) -> Iterator[tuple[K, V]]:
        """Held items, oldest first (a snapshot: the pool may change while iterating)."""
        for key, entry in list(self._entries.items()):
            yield key, entry.value

    def usage(self, source: S) -> tuple[int, int]:
        """Items and bytes held for `source`."""
        usage = self._usage.get(source)
        return (0, 0) if usage is None else (usage.items, usage.bytes)

    def add(self, key: K, value: V, *, source: S, size: int) -> list[V]:
        """Hold `value` under `key` for `source`; return what the bounds pushed out.

        The returned list holds `value` itself when it is larger than a source's byte quota
        or is the one the total bound chose. A key already held is left as it is.
        """
        if key in self._entries:
            return []
        if size > self.quota.max_bytes_per_source:
            self.evicted += 1
            return [value]
        self._entries[key] = _Entry(value, source, size)
        self._by_source.setdefault(source, {})[key] = None
        usage = self._usage.setdefault(source, _Usage())
        usage.items += 1
        usage.bytes += size
        self._bytes += size
        self._push(source, usage)
        quota = self.quota
        evicted: list[V] = []
        while usage.items > quota.max_items_per_source or usage.bytes > quota.max_bytes_per_source:
            evicted.append(self._evict_oldest(source))
        while len(self._entries) > quota.max_items or self._bytes > quota.max_bytes:
            evicted.append(self._evict_oldest(self._largest()))
        return evicted

    def pop(self, key: K) -> V | None:
        """Remove and return the item under `key` (None if it is not held)."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        source = entry.source
        keys = self._by_source[source]
        del keys[key]
        usage = self._usage[source]
        usage.items -= 1
        usage.bytes -= entry.size
        self._bytes -= entry.size
        if not keys:
            del self._by_source[source]
            del self._usage[source]
        else:
            self._push(source, usage)
        return entry.value

    def _evict_oldest(self, source: S) -> V:
        key = next(iter(self._by_source[source]))
        value = self.pop(key)
        assert value is not None  # the key came from the index
        self.evicted += 1
        return value

    def _push(self, source: S, usage: _Usage) -> None:
        self._pushes += 1
        heapq.heappush(self._heap, (-usage.bytes, -usage.items, self._pushes, source))
        if len(self._heap) > 4 * len(self._usage) + 64:
            self._heap = [
                (-u.bytes, -u.items, order, s) for order, (s, u) in enumerate(self._usage.items())
            ]
            heapq.heapify(self._heap)

    def _largest(self) -> S:
        while True:
            negative_bytes, negative_items, _, source = self._heap[0]
            usage = self._usage.get(source)
            if usage is not None and (usage.bytes, usage.items) == (
                -negative_bytes,
                -negative_items,
            ):
                return source
            heapq.heappop(self._heap)
