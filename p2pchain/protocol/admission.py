"""Who may connect: network groups, trusted networks, pending-handshake slots, inbound limits.

Node keys are free, so limits that only count keys are no limits; these count source addresses
and network groups too. A *pending* connection is one from its TCP accept (before a WebSocket
upgrade, if any) to the end of the Hello exchange; pending connections are bounded in total and
per source address. When a bound is reached the newest connection is still admitted and the
oldest pending one of the most crowded address or group makes room: honest handshakes finish
in milliseconds, so what lingers is what trickles (slowloris), and an attacker crowding one
address or group only ever displaces its own connections first. Established inbound peers are
bounded per address and per network group; the total inbound bound evicts (see
`p2pchain.protocol.eviction`).

Hosts in `trusted` networks (by default the loopback addresses ``127.0.0.1`` and ``::1``) skip
the per-address and per-group limits and address scores: every node of a local testnet shares
127.0.0.1, and so does everything behind a local proxy (Bitcoin Core never discourages local
peers either). Other loopback addresses (127.0.0.2, ...) are ordinary addresses.

Pure bookkeeping: hosts are text, time is an argument, nothing here touches a socket or a clock.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from p2pchain.errors import ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_TRUSTED_NETWORKS: Final = ("127.0.0.1/32", "::1/128")
"""Loopback as local testnets use it; other 127.x addresses stay ordinary (tests use them)."""

IPV4_GROUP_PREFIX: Final = 16
IPV6_GROUP_PREFIX: Final = 32


def network_group(host: str) -> str:
    """The network group of a host: its /16 for IPv4, its /32 for IPv6, else the host itself.

    One operator usually holds addresses within one group, so per-group limits cap what a single
    allocation can take (Bitcoin Core groups by the same prefixes). IPv4-mapped IPv6 addresses
    group as IPv4. Names (and simulated hosts) are their own group.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = IPV4_GROUP_PREFIX if address.version == 4 else IPV6_GROUP_PREFIX
    return str(ipaddress.ip_network((address, prefix), strict=False))


def parse_networks(texts: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse CIDR texts such as ``127.0.0.1/32``.

    Raises:
        ConfigError: one is not a network.
    """
    networks = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise ConfigError(f"{text!r} is not a network (CIDR such as 10.0.0.0/8)") from exc
    return tuple(networks)


def is_trusted(host: str, networks: Iterable[IPNetwork]) -> bool:
    """True if `host` is an IP address inside one of `networks`."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class _Pending:
    host: str
    group: str
    since: float
    order: int


class PendingSlots(Generic[K]):
    """Pending connections, at most `max_total` in all and `max_per_address` per source host.

    Args:
        max_total: bound on pending connections.
        max_per_address: bound per host, for hosts that are not trusted.
    """

    def __init__(self, *, max_total: int, max_per_address: int) -> None:
        if max_total < 1 or max_per_address < 1:
            raise ConfigError("pending bounds must be positive")
        self.max_total = max_total
        self.max_per_address = max_per_address
        self._entries: dict[K, _Pending] = {}
        self._admitted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def count(self, host: str) -> int:
        """Pending connections from `host`."""
        return sum(entry.host == host for entry in self._entries.values())

    def admit(self, key: K, host: str, now: float, *, trusted: bool = False) -> K | None:
        """Add a new pending connection; return the one to close to make room, if any.

        The returned connection is already forgotten here. A trusted host has no per-address
        bound, but its connections can still make room for others under the total bound.
        """
        victim = None
        if not trusted and self.count(host) >= self.max_per_address:
            victim = self._oldest(entry for entry in self._entries.items() if entry[1].host == host)
        elif len(self._entries) >= self.max_total:
            victim = self._oldest_of_crowded_group()
        if victim is not None:
            del self._entries[victim]
        self._admitted += 1
        self._entries[key] = _Pending(host, network_group(host), now, self._admitted)
        return victim

    def release(self, key: K) -> None:
        """Forget a connection that finished its handshake or closed (unknown keys are fine)."""
        self._entries.pop(key, None)

    def _oldest(self, entries: Iterable[tuple[K, _Pending]]) -> K | None:
        best = min(entries, key=lambda item: (item[1].since, item[1].order), default=None)
        return None if best is None else best[0]

    def _oldest_of_crowded_group(self) -> K | None:
        sizes: dict[str, int] = {}
        for entry in self._entries.values():
            sizes[entry.group] = sizes.get(entry.group, 0) + 1
        if not sizes:
            return None
        largest = max(sizes.values())
        return self._oldest(
            item for item in self._entries.items() if sizes[item[1].group] == largest
        )


def check_inbound(
    host: str,
    peers: Iterable[str],
    *,
    max_per_address: int,
    max_per_group: int,
) -> str | None:
    """Why a new inbound peer from `host` is over a per-address or per-group limit, or None.

    `peers` are the source hosts of the established inbound peers that are not trusted.
    """
    group = network_group(host)
    same_address = same_group = 0
    for other in peers:
        same_address += other == host
        same_group += network_group(other) == group
    if same_address >= max_per_address:
        return f"{same_address} inbound peers from {host} already"
    if same_group >= max_per_group:
        return f"{same_group} inbound peers from network {group} already"
    return None
