"""Which inbound peer to drop when a new one arrives and every inbound slot is taken.

Bitcoin Core's answer (``SelectNodeToEvict`` in its net code), since refusing newcomers lets
whoever connected first keep the slots forever, and evicting at random lets an attacker with
many connections push out everyone else. Peers are protected in turn, each rule looking at those
that no earlier rule protected:

1. one peer (the longest connected) from each of `protect_by_group` network groups chosen by a
   keyed hash that an attacker cannot predict, so that no one allocation wins by numbers;
2. the `protect_by_rtt` peers with the lowest round trip seen (hard to fake from afar);
3. the `protect_by_transactions` peers that most recently sent us a new valid transaction, and
   4. the `protect_by_blocks` that most recently sent a new valid block (useful work);
5. the longest-connected `protect_longest_fraction` of the rest.

Of the unprotected remainder, the victim is the youngest peer of the network group with the most
peers (ties: the group whose youngest peer is youngest). When nothing remains, nobody is
evicted and the newcomer is refused. Pure and deterministic: ties end on the key.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from p2pchain.errors import ConfigError
from p2pchain.ledger.crypto import sha256


@dataclass(frozen=True, slots=True, kw_only=True)
class EvictionParams:
    """How many inbound peers each rule protects (Bitcoin Core's numbers)."""

    protect_by_group: int = 4
    protect_by_rtt: int = 8
    protect_by_transactions: int = 4
    protect_by_blocks: int = 4
    protect_longest_fraction: float = 0.5

    def __post_init__(self) -> None:
        counts = (
            self.protect_by_group,
            self.protect_by_rtt,
            self.protect_by_transactions,
            self.protect_by_blocks,
        )
        if min(counts) < 0 or not 0.0 <= self.protect_longest_fraction <= 1.0:
            raise ConfigError("protection counts must be >= 0 and the fraction within [0, 1]")


@dataclass(frozen=True, slots=True, kw_only=True)
class EvictionCandidate:
    """What the eviction rules know about one inbound peer."""

    key: bytes
    """The peer's node key."""
    group: str
    """Its network group (`p2pchain.protocol.admission.network_group`)."""
    connected_at: float
    min_rtt: float = math.inf
    """Lowest round trip seen, in seconds (handshake or ping); infinite if none yet."""
    last_transaction_at: float = -math.inf
    """When it last sent a transaction new to us that validated; never: -inf."""
    last_block_at: float = -math.inf
    """When it last sent a block new to us that validated; never: -inf."""
    protected: bool = False
    """Never evicted (a trusted address)."""


def select_peer_to_evict(
    candidates: Sequence[EvictionCandidate], *, salt: bytes, params: EvictionParams
) -> bytes | None:
    """The key of the inbound peer to evict, or None if every candidate is protected.

    `salt` keys the group hash: a per-node secret, so that which groups are protected cannot be
    predicted from outside.
    """
    remaining = [c for c in candidates if not c.protected]
    remaining = _protect_by_group(remaining, salt, params.protect_by_group)
    remaining = _protect(remaining, params.protect_by_rtt, lambda c: (c.min_rtt, c.connected_at))
    remaining = _protect(
        [c for c in remaining if c.last_transaction_at > -math.inf],
        params.protect_by_transactions,
        lambda c: (-c.last_transaction_at, c.connected_at),
        others=[c for c in remaining if c.last_transaction_at == -math.inf],
    )
    remaining = _protect(
        [c for c in remaining if c.last_block_at > -math.inf],
        params.protect_by_blocks,
        lambda c: (-c.last_block_at, c.connected_at),
        others=[c for c in remaining if c.last_block_at == -math.inf],
    )
    longest = math.floor(len(remaining) * params.protect_longest_fraction)
    remaining = _protect(remaining, longest, lambda c: (c.connected_at,))
    if not remaining:
        return None
    groups: dict[str, list[EvictionCandidate]] = {}
    for candidate in remaining:
        groups.setdefault(candidate.group, []).append(candidate)
    crowded = max(
        groups.values(),
        key=lambda members: (len(members), max(_youngest_first(m) for m in members)),
    )
    return max(crowded, key=_youngest_first).key


def _youngest_first(candidate: EvictionCandidate) -> tuple[float, bytes]:
    return (candidate.connected_at, candidate.key)


def _protect(
    candidates: list[EvictionCandidate],
    count: int,
    rank: Callable[[EvictionCandidate], tuple[float, ...]],
    *,
    others: Sequence[EvictionCandidate] = (),
) -> list[EvictionCandidate]:
    """Remove the `count` best-ranked of `candidates`; the rest and `others` stay candidates."""
    ordered = sorted(candidates, key=lambda c: (*rank(c), c.key))
    return ordered[count:] + list(others)


def _protect_by_group(
    candidates: list[EvictionCandidate], salt: bytes, count: int
) -> list[EvictionCandidate]:
    groups = sorted({c.group for c in candidates}, key=lambda g: sha256(salt + g.encode()))
    chosen = set(groups[:count])
    kept: set[bytes] = set()
    for group in chosen:
        members = [c for c in candidates if c.group == group]
        kept.add(min(members, key=lambda c: (c.connected_at, c.key)).key)
    return [c for c in candidates if c.key not in kept]
