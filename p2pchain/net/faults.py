"""Containment of our own bugs at the peer boundary.

Everything a peer sends is handled by code that should only ever raise the library's own errors.
When something else escapes (a `KeyError`, a `TypeError` from a codec, ...), it is a bug on our
side, but one peer's message must never end the node. The handler that caught it records it
here: counted by where it was caught (the ``where`` label of
``p2pchain_internal_errors_total``) and logged with its traceback, once per distinct fault site,
so a peer that triggers the same bug ten thousand times cannot flood the log. Then the peer is
disconnected with `INTERNAL_ERROR`.

Storage failures are not contained: `StorageError` always propagates so that the node stops
cleanly and a restart recovers from the last commit (fail-stop).
"""

from __future__ import annotations

import logging
import traceback
from collections import Counter
from typing import Final

MAX_REMEMBERED_SITES: Final = 1_024
"""Distinct fault sites whose traceback was logged; past this, repeats are logged again."""


class Where:
    """Names of the places that contain faults (values of the metric's ``where`` label)."""

    CONNECTION: Final = "connection"
    """The sans-IO connection: decoding, Noise, state transitions."""
    TRANSPORT: Final = "transport"
    """Reading from or writing to the stream (TCP, WebSocket)."""
    SWARM: Final = "swarm"
    """The swarm's handling of a peer event (handshake, peer exchange, scoring)."""
    GOSSIP: Final = "gossip"
    """The network service's handling of a message (router, status, sync requests)."""
    VALIDATION: Final = "validation"
    """The node's validation hook for a gossip message."""
    DELIVERY: Final = "delivery"
    """The node's delivery hook for an accepted gossip message."""
    IMPORT: Final = "import"
    """Importing blocks fetched by sync or released from a waiting queue."""
    TIMER: Final = "timer"
    """Periodic work: heartbeats, slot ticks."""


class FaultLog:
    """Counts of contained faults per place, and their log lines."""

    def __init__(self, log: logging.LoggerAdapter[logging.Logger]) -> None:
        self.log = log
        self._counts: Counter[str] = Counter()
        self._sites: set[tuple[str, str, str, int]] = set()

    def record(self, where: str, error: BaseException, *, peer: str = "") -> None:
        """Count `error`, caught at `where` while handling `peer` (short id or address)."""
        self._counts[where] += 1
        site = _site(where, error)
        who = f" from peer {peer}" if peer else ""
        if site in self._sites:
            self.log.warning(
                "internal error in %s%s (repeat, traceback logged before): %s: %s",
                where,
                who,
                type(error).__name__,
                error,
            )
            return
        if len(self._sites) >= MAX_REMEMBERED_SITES:
            self._sites.clear()
        self._sites.add(site)
        self.log.error(
            "internal error in %s%s; the peer is disconnected and the node carries on",
            where,
            who,
            exc_info=error,
        )

    def counts(self) -> tuple[tuple[str, int], ...]:
        """Faults so far by place, sorted by name."""
        return tuple(sorted(self._counts.items()))

    @property
    def total(self) -> int:
        """All faults so far."""
        return sum(self._counts.values())


def _site(where: str, error: BaseException) -> tuple[str, str, str, int]:
    """Where `error` was raised: the innermost frame of its traceback."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return (where, type(error).__name__, "", 0)
    last = frames[-1]
    return (where, type(error).__name__, last.filename, last.lineno or 0)
