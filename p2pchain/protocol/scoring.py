"""Peer scores and bans: the memory of who misbehaved, as pure bookkeeping.

A peer starts at score 0. Every offence subtracts a penalty: the `penalty` class attribute of the
`GossipReject` / `GossipIgnore` raised by a validation hook, or an explicit amount for protocol
errors, timeouts and spam. Scores decay exponentially back toward 0, so an honest peer that once
timed out recovers while a peer that keeps misbehaving sinks below `disconnect_threshold`; the
shell then disconnects it and records a timed ban in `BanList`.

Node keys cost nothing to make, so the same penalties also land on the key's source address and
its network group (`p2pchain.protocol.admission.network_group`), in separate `PeerScores`: many
fresh keys misbehaving from one address sink that address, and its inbound connections are then
refused for `address_ban_duration_s`. Time is always an argument (seconds on the caller's clock);
nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from p2pchain.errors import ConfigError, GossipIgnore, GossipReject
from p2pchain.protocol.connection import PeerId

_NEGLIGIBLE_SCORE: Final = 1e-3


class Offence(StrEnum):
    """Why a peer lost score; the string values appear in logs and metrics."""

    INVALID_MESSAGE = "invalid-message"
    GRAFT_IN_BACKOFF = "graft-in-backoff"
    BROKEN_PROMISE = "broken-promise"
    PROTOCOL_ERROR = "protocol-error"
    TIMEOUT = "timeout"
    BAD_RESPONSE = "bad-response"
    SPAM = "spam"


@dataclass(frozen=True, slots=True, kw_only=True)
class Penalize:
    """Action: lower `peer_id`'s score by `amount` (a positive number) for `reason`."""

    peer_id: PeerId
    amount: float
    reason: Offence


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoringParams:
    """How fast scores fall and recover, where the line is, and how long a ban lasts."""

    disconnect_threshold: float = -100.0
    """A peer whose score is below this is disconnected and banned."""
    half_life_s: float = 600.0
    """Time for a score to decay halfway back to 0."""
    ban_duration_s: float = 3_600.0
    protocol_error_penalty: float = 50.0
    timeout_penalty: float = 10.0
    spam_penalty: float = 10.0
    max_tracked_peers: int = 10_000
    """Bound on remembered scores (per kind: keys, addresses, groups); the entries closest to 0
    are forgotten first."""
    address_disconnect_threshold: float = -100.0
    """A source address whose peers together scored below this is refused inbound for
    `address_ban_duration_s`: three protocol errors from three fresh keys, for example."""
    group_disconnect_threshold: float = -500.0
    """The same for a whole network group (/16 or /32), set wider since honest neighbours
    share it."""
    address_ban_duration_s: float = 1_800.0
    """How long an address (or group) stays refused inbound; a key's ban also bans the address
    the key came from for this long. Outbound dials are not affected."""
    max_bans: int = 10_000
    """Bound on the ban list; when full, the ban that ends soonest is dropped first."""

    def __post_init__(self) -> None:
        thresholds = (
            self.disconnect_threshold,
            self.address_disconnect_threshold,
            self.group_disconnect_threshold,
        )
        if max(thresholds) >= 0:
            raise ConfigError("disconnect thresholds must be negative")
        durations = (self.half_life_s, self.ban_duration_s, self.address_ban_duration_s)
        if min(durations) <= 0 or min(self.max_tracked_peers, self.max_bans) < 1:
            raise ConfigError(
                "half_life_s, ban durations, max_tracked_peers and max_bans must be positive"
            )


@dataclass(slots=True)
class _Score:
    value: float
    updated_at: float


class PeerScores:
    """Decaying score per key: a node key (so it survives reconnects), a source address or a
    network group (so it survives fresh keys). The threshold is `disconnect_threshold` unless
    given."""

    def __init__(
        self, params: ScoringParams | None = None, *, threshold: float | None = None
    ) -> None:
        self.params = params if params is not None else ScoringParams()
        self.threshold = self.params.disconnect_threshold if threshold is None else threshold
        self._scores: dict[bytes, _Score] = {}

    def __len__(self) -> int:
        return len(self._scores)

    def score(self, peer_id: bytes, now: float) -> float:
        """The peer's score at `now` (0 for a peer never penalised)."""
        entry = self._scores.get(peer_id)
        return 0.0 if entry is None else self._decayed(entry, now)

    def penalize(self, peer_id: bytes, amount: float, now: float) -> float:
        """Subtract `amount` (>= 0) and return the new score."""
        if amount < 0 or math.isnan(amount):
            raise ValueError("a penalty must be a non-negative number")
        entry = self._scores.get(peer_id)
        value = (0.0 if entry is None else self._decayed(entry, now)) - amount
        if entry is None:
            self._make_room(now)
        self._scores[peer_id] = _Score(value, now)
        return value

    def penalize_error(
        self, peer_id: PeerId, error: GossipIgnore | GossipReject, now: float
    ) -> float:
        """Penalise by the verdict's class, never by its message text (STYLE.md 2.5)."""
        return self.penalize(peer_id, type(error).penalty, now)

    def apply(self, action: Penalize, now: float) -> float:
        """Apply a `Penalize` action emitted by the gossip router or the sync manager."""
        return self.penalize(action.peer_id, action.amount, now)

    def should_disconnect(self, peer_id: bytes, now: float) -> bool:
        """True once the peer's score is below the threshold."""
        return self.score(peer_id, now) < self.threshold

    def forget_recovered(self, now: float) -> int:
        """Drop entries that have decayed to about 0; return how many were dropped."""
        recovered = [
            peer_id
            for peer_id, entry in self._scores.items()
            if abs(self._decayed(entry, now)) < _NEGLIGIBLE_SCORE
        ]
        for peer_id in recovered:
            del self._scores[peer_id]
        return len(recovered)

    def _decayed(self, entry: _Score, now: float) -> float:
        elapsed = max(0.0, now - entry.updated_at)
        return entry.value * math.exp(-math.log(2) * elapsed / self.params.half_life_s)

    def _make_room(self, now: float) -> None:
        if len(self._scores) < self.params.max_tracked_peers:
            return
        if self.forget_recovered(now):
            return
        mildest = max(self._scores, key=lambda peer_id: self._decayed(self._scores[peer_id], now))
        del self._scores[mildest]


class BanKind(StrEnum):
    """What a ban entry matches."""

    PEER = "peer"
    """A node key, whichever address it comes from."""
    ADDRESS = "address"
    """A host (or any address bytes), inbound and outbound."""
    SOURCE = "source"
    """Inbound connections from a host (ASCII host text, such as ``203.0.113.5``)."""
    GROUP = "group"
    """Inbound connections from a network group (``203.0.0.0/16``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BanEntry:
    """One ban: `value` is a node key (PEER), a host (ADDRESS, SOURCE) or a group (GROUP)."""

    kind: BanKind
    value: bytes
    until: float


class BanList:
    """Timed bans by peer key, address, inbound source and network group, at most `max_entries`.

    `until` is on the caller's clock. Bans meant to survive a restart should be recorded with
    wall-clock time, since a monotonic clock restarts with the process. When the list is full,
    the ban that ends soonest makes room (an attacker with many addresses cannot grow it).
    """

    def __init__(self, entries: Iterable[BanEntry] = (), *, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._bans: dict[tuple[BanKind, bytes], float] = {}
        for entry in entries:
            self._add(entry.kind, entry.value, entry.until)

    def __len__(self) -> int:
        return len(self._bans)

    def ban_peer(self, peer_id: PeerId, until: float) -> None:
        """Refuse `peer_id` until `until` (an existing longer ban is kept)."""
        self._add(BanKind.PEER, peer_id, until)

    def ban_address(self, address: bytes, until: float) -> None:
        """Refuse connections to or from `address` until `until`."""
        self._add(BanKind.ADDRESS, address, until)

    def ban_source(self, host: bytes, until: float) -> None:
        """Refuse inbound connections from `host` until `until`."""
        self._add(BanKind.SOURCE, host, until)

    def ban_group(self, group: bytes, until: float) -> None:
        """Refuse inbound connections from network group `group` until `until`."""
        self._add(BanKind.GROUP, group, until)

    def is_banned(
        self, now: float, *, peer_id: PeerId | None = None, address: bytes | None = None
    ) -> bool:
        """True if the given key or address is under a ban that has not expired at `now`."""
        keys = []
        if peer_id is not None:
            keys.append((BanKind.PEER, bytes(peer_id)))
        if address is not None:
            keys.append((BanKind.ADDRESS, address))
        return any(self._bans.get(key, -math.inf) > now for key in keys)

    def is_refused_inbound(
        self, now: float, *, host: bytes | None = None, group: bytes | None = None
    ) -> bool:
        """True if inbound connections from `host` (or from network `group`) are refused."""
        keys = []
        if host is not None:
            keys += [(BanKind.ADDRESS, host), (BanKind.SOURCE, host)]
        if group is not None:
            keys.append((BanKind.GROUP, group))
        return any(self._bans.get(key, -math.inf) > now for key in keys)

    def expire(self, now: float) -> int:
        """Drop bans that ended at or before `now`; return how many were dropped."""
        ended = [key for key, until in self._bans.items() if until <= now]
        for key in ended:
            del self._bans[key]
        return len(ended)

    def restore(self, entries: Iterable[BanEntry]) -> None:
        """Add saved bans (as `BanList(entries)` does); a shorter one never shortens a ban."""
        for entry in entries:
            self._add(entry.kind, entry.value, entry.until)

    def entries(self) -> tuple[BanEntry, ...]:
        """Every ban, for persistence; `BanList(entries)` or `restore` loads them back."""
        return tuple(
            BanEntry(kind=kind, value=value, until=until)
            for (kind, value), until in self._bans.items()
        )

    def _add(self, kind: BanKind, value: bytes, until: float) -> None:
        key = (kind, bytes(value))
        if key not in self._bans and len(self._bans) >= self.max_entries:
            soonest = min(self._bans, key=self._bans.__getitem__)
            if self._bans[soonest] >= until:
                return  # every ban held outlasts the new one
            del self._bans[soonest]
        self._bans[key] = max(until, self._bans.get(key, -math.inf))
