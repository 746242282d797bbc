"""Per-peer inbound rate limits as pure token buckets: what a peer may make us read and do.

Three kinds of budget apply to every inbound message, whatever its type (Ping and a repeated
Hello included, although the connection answers or ignores those itself):

- a **message** budget and a **byte** budget: volume. Going over them only stops reading from
  that peer until the bucket refills (back-pressure). An honest node under heavy load can reach
  them, and the cure for volume is to slow the sender down, never to ban it.
- a **per-type** budget for the types that cost us work to answer or that an honest node sends
  at a rate fixed by the protocol. Volume types (Status, block requests charged by the blocks
  they ask for) pause reading like the volume budgets. A budget marked `abusive_beyond` (Ping,
  unsolicited Pong, GetPeers, a repeated Hello) instead reports every message over it at once,
  without pausing: honest nodes stay far below it under any load, so only a flooder gets there;
  the shell drops the message and turns the report into a score penalty, so a flood ends in a
  ban within a few messages. Its debt is capped at one burst, so the budget recovers.

Time is always an argument (seconds on the caller's clock); nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from p2pchain.errors import ConfigError
from p2pchain.protocol.messages import (
    GetBlocksById,
    GetBlocksByRange,
    GetFinality,
    GetPeers,
    GetSnapshotManifest,
    GetSnapshotPage,
    GetStateProof,
    GetTxProof,
    Hello,
    Message,
    Ping,
    Pong,
    Status,
)


class TokenBucket:
    """`rate` tokens per second up to `burst`; may go negative, which means "over the limit"."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._updated = now

    def consume(self, amount: float, now: float) -> bool:
        """Take `amount` tokens; False if the bucket is now below zero."""
        if now > self._updated:  # `_refill`, inlined: this runs for every message and read
            self.tokens = min(self.burst, self.tokens + (now - self._updated) * self.rate)
            self._updated = now
        self.tokens -= amount
        return self.tokens >= 0

    def ready_at(self, now: float) -> float:
        """When the bucket is back at zero or above."""
        if self.tokens >= 0:  # refilling only adds: asked on every read, so skip the work
            return now
        self._refill(now)
        return now if self.tokens >= 0 else now - self.tokens / self.rate

    def _refill(self, now: float) -> None:
        if now > self._updated:  # the clock never runs back; a stale `now` adds nothing
            self.tokens = min(self.burst, self.tokens + (now - self._updated) * self.rate)
            self._updated = now


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """`rate` units per second with bursts up to `burst` units."""

    rate: float
    burst: float
    abusive_beyond: bool = False
    """True if going over means abuse (reported, so the shell can penalise), not only volume."""

    def __post_init__(self) -> None:
        if not (self.rate > 0 and self.burst >= 1):
            raise ConfigError("a budget needs a positive rate and a burst of at least 1")


DEFAULT_TYPE_BUDGETS: Final[tuple[tuple[type[Message], Budget], ...]] = tuple(
    {
        # The connection pings every 15 s; `PeerHandle.ping` barriers come on top. A latency
        # probe waiting for each Pong stays under 20/s on any real link; a flood does not.
        Ping: Budget(rate=20.0, burst=200.0, abusive_beyond=True),
        Pong: Budget(rate=20.0, burst=200.0, abusive_beyond=True),
        # Asked on connect and every `peer_exchange_interval` (30 s) while short of peers.
        GetPeers: Budget(rate=1.0, burst=10.0, abusive_beyond=True),
        # An honest peer sends Hello once, at the start; a repeat is only ever decoding work.
        Hello: Budget(rate=0.1, burst=2.0, abusive_beyond=True),
        # Sent on every head change; fast imports make many, so only back-pressure.
        Status: Budget(rate=50.0, burst=500.0),
        # Charged per block asked for: serving them is storage reads and up to 16 MiB of
        # encoding. An honest syncer keeps 2 requests open and waits, so it slows down instead.
        GetBlocksByRange: Budget(rate=2_048.0, burst=8_192.0),
        GetBlocksById: Budget(rate=2_048.0, burst=8_192.0),
        # Light clients: a certificate may read up to 4,096 headers and a proof moves the state
        # cursor, so these slow a busy asker down rather than queue work for it.
        GetFinality: Budget(rate=2.0, burst=20.0),
        GetStateProof: Budget(rate=50.0, burst=200.0),
        GetTxProof: Budget(rate=50.0, burst=200.0),
        # Snapshots: a manifest may prepare a whole state (once per finalized checkpoint); a
        # page is up to 1 MiB cut from a prepared one. A syncing node asks at least one page
        # of each of the 256 subtrees, so the burst holds them all: a small state's pages are
        # not held back (a burst of 200 cost a 2,700-output snapshot 1.1 s of its 1.35 s).
        GetSnapshotManifest: Budget(rate=1.0, burst=10.0),
        GetSnapshotPage: Budget(rate=50.0, burst=600.0),
    }.items()
)
"""Per-type budgets of the reference node (docs/protocol.md, Limits)."""


def cost_of(message: Message) -> float:
    """Units a message takes from its type's budget: blocks asked for, else 1."""
    if isinstance(message, GetBlocksByRange):
        return float(max(1, message.count))
    if isinstance(message, GetBlocksById):
        return float(max(1, len(message.block_ids)))
    return 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimits:
    """Every inbound budget of one peer link."""

    messages: Budget = Budget(rate=2_000.0, burst=4_000.0)
    """All inbound messages. Sized against honest relay: at 500 tx/s a peer link carries about
    one Publish per transaction plus a few IHAVE/IWANT and votes per heartbeat."""
    bytes: Budget = Budget(rate=16 * 1024 * 1024, burst=64 * 1024 * 1024)
    """Inbound bytes as read from the transport (a 16 MiB `Blocks` answer fits the burst)."""
    per_type: tuple[tuple[type[Message], Budget], ...] = DEFAULT_TYPE_BUDGETS
    """Budgets of single message types; a type may appear once."""

    def __post_init__(self) -> None:
        kinds = [kind for kind, _ in self.per_type]
        if len(set(kinds)) != len(kinds):
            raise ConfigError("a message type has at most one budget")


@dataclass(frozen=True, slots=True, kw_only=True)
class Charge:
    """What one inbound message did to its peer's budgets."""

    abusive: bool
    """Its type has an `abusive_beyond` budget and this message went over it."""


_ABUSIVE: Final = Charge(abusive=True)
_NOT_ABUSIVE: Final = Charge(abusive=False)


class RateLimiter:
    """The budgets of one peer link: charge every message and every byte read, and say when
    reading may resume."""

    def __init__(self, limits: RateLimits, now: float) -> None:
        self.limits = limits
        self._messages = TokenBucket(limits.messages.rate, limits.messages.burst, now)
        self._bytes = TokenBucket(limits.bytes.rate, limits.bytes.burst, now)
        self._budgets = dict(limits.per_type)
        self._types = {
            kind: TokenBucket(budget.rate, budget.burst, now) for kind, budget in limits.per_type
        }
        self._owing: set[TokenBucket] = set()
        """The budgets that pause reading (bytes, messages, volume types) that went below zero
        and were not seen back at zero since: `ready_at` is asked before every message, and
        is free while this is empty."""
        self.over_limit = 0
        """Messages that went over some budget (volume or type)."""

    def charge_bytes(self, amount: int, now: float) -> None:
        """Take `amount` bytes just read from the transport."""
        if not self._bytes.consume(amount, now):
            self._owing.add(self._bytes)

    def charge(self, message: Message, now: float, *, solicited: bool = False) -> Charge:
        """Take one inbound message from the message budget and its type's budget.

        `solicited` marks an answer to our own request (a Pong to our ping): it counts as
        volume only, since we chose to ask.
        """
        within = self._messages.consume(1, now)
        if not within:
            self._owing.add(self._messages)
        abusive = False
        bucket = None if solicited else self._types.get(type(message))
        if bucket is not None and not bucket.consume(cost_of(message), now):
            within = False
            abusive = self._budgets[type(message)].abusive_beyond
            if abusive:
                bucket.tokens = max(bucket.tokens, -bucket.burst)
            else:
                self._owing.add(bucket)
        self.over_limit += not within
        return _ABUSIVE if abusive else _NOT_ABUSIVE

    def ready_at(self, now: float) -> float:
        """When every volume budget is back at zero or above: before then, read nothing more."""
        if not self._owing:
            return now
        latest = now
        for bucket in list(self._owing):
            ready = bucket.ready_at(now)
            if ready <= now:
                self._owing.discard(bucket)
            latest = max(latest, ready)
        return latest

    def bytes_ready_at(self, now: float) -> float:
        """When the byte budget allows the next read."""
        return self._bytes.ready_at(now)
