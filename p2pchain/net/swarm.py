"""`Swarm`: every peer link of a node — listeners, dialing, limits, scores, bans, peer exchange.

``async with open_swarm(config, get_status) as swarm:`` listens on TCP and WebSocket, dials the
bootnodes and keeps `target_outbound` outbound peers, learning addresses by peer exchange
(GetPeers/Peers) and re-dialing with exponential backoff. Connection-level messages stay here;
everything else reaches the layer above through `swarm.events`, together with
`PeerConnected` / `PeerDisconnected`; one peer's messages there and in the layer above's hands
are bounded by `inbox_per_peer` (the layer above releases each when done). Leaving the context
says goodbye (SHUTDOWN) to every peer and then cancels every task and closes every socket.

Admission (the decisions are the pure functions of `p2pchain.protocol.admission` and
`p2pchain.protocol.eviction`): an inbound connection is *pending* from its TCP accept (a
WebSocket upgrades inside that window) until its Hello exchange ends, within
`ConnectionConfig.handshake_timeout`; pending connections are bounded in total and per source
address, and a new one makes room by closing the oldest of the most crowded address or group.
Accepted inbound peers are bounded per address, per network group and in total; when the total
is reached, a Core-style eviction makes room, or the newcomer is refused. Every penalty lands
on the peer's key and, for inbound links, on its source address and network group, whose own
thresholds ban them for inbound connections; a banned key bans its address too. Addresses in
`trusted_networks` (127.0.0.1 and ::1 by default, so that local testnets work) are exempt from
the per-address and per-group rules.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

import trio

from p2pchain.errors import ConfigError, StorageError
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.types import BlockId
from p2pchain.net.faults import FaultLog, Where
from p2pchain.net.inbox import Inbox, InboxShare, message_weight
from p2pchain.net.peer import (
    PeerEvent,
    PeerFailed,
    PeerHandle,
    PeerLimits,
    PeerMisbehaved,
    PeerStatistics,
)
from p2pchain.net.transports import (
    HostScope,
    PeerAddress,
    SocketTransport,
    Transport,
    announced_addresses,
    as_seen_from,
    check_public_host,
    host_scope,
    parse_address,
    shareable_with,
)
from p2pchain.protocol.admission import (
    DEFAULT_TRUSTED_NETWORKS,
    PendingSlots,
    check_inbound,
    is_trusted,
    network_group,
    parse_networks,
)
from p2pchain.protocol.connection import (
    ConnectionClosed,
    ConnectionConfig,
    ConnectionKeys,
    HandshakeComplete,
    MessageReceived,
    PeerConnection,
    PeerId,
)
from p2pchain.protocol.eviction import EvictionCandidate, EvictionParams, select_peer_to_evict
from p2pchain.protocol.framing import encode_frame
from p2pchain.protocol.messages import (
    MAX_PEERS_IN_RESPONSE,
    PROTOCOL_VERSION,
    DisconnectReason,
    GetPeers,
    Hello,
    Message,
    Peers,
    Publish,
    Status,
    Topic,
)
from p2pchain.protocol.scoring import BanEntry, BanList, Offence, PeerScores, ScoringParams

_logger = logging.getLogger("p2pchain.net")

DEFAULT_LISTEN: Final = ("tcp://127.0.0.1:0", "ws://127.0.0.1:0")


@dataclass(frozen=True, slots=True, kw_only=True)
class SwarmConfig:
    """Identity, addresses and limits of one node's peer set."""

    identity: SecretKey
    chain_id: int
    genesis: BlockId
    listen: tuple[str, ...] = DEFAULT_LISTEN
    bootnodes: tuple[str, ...] = ()
    advertise: tuple[str, ...] | None = None
    """Addresses told to peers in Hello (and so passed on by peer exchange); None = the
    bound listen addresses (`public_addr` in place of their host). A node behind a relay or a
    NAT announces where others can reach it, or () to announce nothing and be reached only by
    those configured to dial it."""
    public_addr: str | None = None
    """The host (IP or DNS name) peers on other hosts reach this node at: announced with each
    listener's scheme and port. Without it a listener on 0.0.0.0 or :: is announced as such,
    which a peer reads as the host it sees our connection come from."""
    target_outbound: int = 8
    max_inbound: int = 32
    """Accepted inbound peers; a newcomer beyond it evicts one (`EvictionParams`) or is
    refused with TOO_MANY_PEERS."""
    max_inbound_per_address: int = 4
    """Accepted inbound peers from one source address (newcomers beyond: TOO_MANY_PEERS)."""
    max_inbound_per_group: int = 8
    """Accepted inbound peers from one network group (IPv4 /16, IPv6 /32)."""
    max_pending_handshakes: int = 32
    """Inbound connections from TCP accept to the end of Hello (WebSocket upgrades included);
    a newcomer beyond it closes the oldest pending one of the most crowded group."""
    max_pending_per_address: int = 4
    """Pending inbound connections from one source address; a newcomer beyond it closes that
    address's oldest pending one."""
    trusted_networks: tuple[str, ...] = DEFAULT_TRUSTED_NETWORKS
    """Sources exempt from the per-address and per-group limits and from address scores and
    bans (their keys are still scored and banned). The default, 127.0.0.1 and ::1, is what
    every node of a local testnet shares; use () to treat loopback like any address."""
    eviction: EvictionParams = field(default_factory=EvictionParams)
    connect_timeout: float = 10.0
    maintenance_interval: float = 1.0
    peer_exchange_interval: float = 30.0
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    bootnode_backoff_max: float = 10.0
    """The longest wait before redialing a configured bootnode: the peers an operator chose
    are found again within seconds of a healed partition or a restart, not minutes."""
    max_known_addresses: int = 1_000
    inbox_size: int = 1_024
    """Events waiting for the layer above; a peer whose event finds no room stops being read."""
    inbox_bytes: int = 8 * 1024 * 1024
    """Estimated memory of the messages waiting in `events` (`message_weight`); past it, the
    same back-pressure applies (1,024 large IHaves alone would hold 300 MiB)."""
    inbox_per_peer: int = 256
    """Messages of one peer that the layers above hold at once: waiting in `events`, or taken
    and not yet released (`InboundMessage.release`; a gossip message is held until it is
    validated). A peer at its share is not read until half of it is back, so a burst is
    paced by TCP instead of dropped, and one peer never fills `events` for everyone."""
    shutdown_timeout: float = 2.0
    connection: ConnectionConfig = field(default_factory=ConnectionConfig)
    limits: PeerLimits = field(default_factory=PeerLimits)
    scoring: ScoringParams = field(default_factory=ScoringParams)
    transport: Transport = field(default_factory=SocketTransport, repr=False, compare=False)
    """How peers are reached: TCP + WebSocket, or a simulated network's in-memory links."""

    def __post_init__(self) -> None:
        for text in self.listen + self.bootnodes + (self.advertise or ()):
            if parse_address(text).scheme not in self.transport.schemes:
                raise ConfigError(f"address {text!r}: the transport cannot reach it")
        if self.public_addr is not None:
            check_public_host(self.public_addr)
            if self.advertise is not None:
                raise ConfigError("set advertise or public_addr, not both")
        if self.target_outbound < 0 or self.max_inbound < 0:
            raise ConfigError("peer limits must be non-negative")
        per_source = (
            self.max_inbound_per_address,
            self.max_inbound_per_group,
            self.max_pending_handshakes,
            self.max_pending_per_address,
        )
        if min(per_source) < 1:
            raise ConfigError("per-address, per-group and pending-handshake limits must be >= 1")
        if min(self.inbox_size, self.inbox_bytes, self.inbox_per_peer) < 1:
            raise ConfigError("inbox limits must be positive")
        parse_networks(self.trusted_networks)


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerConnected:
    """A peer finished the handshake and was accepted, or a new link to an accepted peer
    replaced its old one (both ends keep the same link of two crossed dials). Whatever the
    layer above tied to the old link (requests awaiting an answer, mesh membership) ended
    with it, so it registers the peer afresh."""

    peer_id: PeerId
    hello: Hello
    outbound: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerDisconnected:
    """An accepted peer is gone."""

    peer_id: PeerId
    reason: DisconnectReason | None
    by_peer: bool


def _nothing_held() -> None:
    """The release of a message that holds no share (built by hand, as tests do)."""


@dataclass(slots=True, kw_only=True)
class InboundMessage:
    """A message for the layer above (gossip, status, sync).

    It holds one unit of its sender's `inbox_per_peer` share until the layer above calls
    `release()`, exactly once, when it is done with it. Not frozen: one is made per message
    received (a frozen dataclass's `__init__` costs three times as much); nothing changes it.
    """

    peer_id: PeerId
    message: Message
    release: Callable[[], None] = field(default=_nothing_held, compare=False, repr=False)


SwarmEvent = PeerConnected | PeerDisconnected | InboundMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerInfo:
    """One accepted peer."""

    peer_id: PeerId
    address: str
    outbound: bool
    hello: Hello
    score: float
    traffic: PeerStatistics


@dataclass(frozen=True, slots=True, kw_only=True)
class SwarmStatistics:
    """Counts for monitoring."""

    peers: int
    outbound: int
    inbound: int
    handshaking: int
    dialing: int
    known_addresses: int
    bans: int
    refused: int
    """Inbound connections closed at accept (banned source) or after Hello (banned key, limits)."""
    protocol_errors: int
    messages_in: tuple[tuple[str, int], ...] = ()
    """Messages received from active peers, by message type name."""
    messages_out: tuple[tuple[str, int], ...] = ()
    """Messages queued to peers, by message type name."""
    internal_errors: tuple[tuple[str, int], ...] = ()
    """Our own failures contained at a peer boundary, by place (`p2pchain.net.faults.Where`)."""
    pending: int = 0
    """Inbound connections between accept and the end of Hello."""
    pending_evicted: int = 0
    """Pending connections closed to make room for a newer one."""
    evicted: int = 0
    """Accepted inbound peers evicted to make room for a newcomer."""
    reads_paused: int = 0
    """Times a peer's next message waited because its `inbox_per_peer` share was all held."""


_ORDINARY_CLOSES: Final = frozenset(
    {
        None,
        DisconnectReason.REQUESTED,
        DisconnectReason.SHUTDOWN,
        DisconnectReason.DUPLICATE_CONNECTION,
    }
)


_ADMISSION_CLOSES: Final = frozenset(
    {DisconnectReason.TOO_MANY_PEERS, DisconnectReason.HANDSHAKE_TIMEOUT}
)


class PeerRefused(trio.BrokenResourceError):
    """`Swarm.connect` failed: `reason` is the Disconnect reason, or None if none was given."""

    def __init__(self, address: str, reason: DisconnectReason | None) -> None:
        name = "connection failed" if reason is None else reason.name
        super().__init__(f"{address}: {name}")
        self.reason = reason


@dataclass(slots=True)
class _Known:
    failures: int = 0
    next_attempt: float = 0.0
    is_self: bool = False
    peer_id: PeerId | None = None
    """Who answered there last: while that peer is connected (perhaps over its own dial to
    us), dialing the address again would only make a duplicate link."""


@dataclass(slots=True, kw_only=True)
class _Link:
    """What admission and eviction know about one link, and its share of the inbox."""

    host: str | None
    started_at: float
    share: InboxShare
    trusted: bool = False
    connected_at: float = 0.0
    min_rtt: float = math.inf
    last_transaction_at: float = -math.inf
    last_block_at: float = -math.inf

    @property
    def group(self) -> str | None:
        return None if self.host is None else network_group(self.host)


@dataclass(slots=True)
class _Dial:
    done: trio.Event = field(default_factory=trio.Event)
    handle: PeerHandle | None = None
    peer_id: PeerId | None = None
    reason: DisconnectReason | None = None


class Swarm:
    """The peer set of one node. Create with `open_swarm`."""

    def __init__(
        self, config: SwarmConfig, get_status: Callable[[], Status], nursery: trio.Nursery
    ) -> None:
        self.config = config
        self.peer_id = PeerId(config.identity.public_key)
        self.log = logging.LoggerAdapter(_logger, {"node": self.peer_id.hex()[:12]})
        """Logger whose records carry this node's short id as ``node``."""
        self.faults = FaultLog(self.log)
        """Where our own failures on peers' input are counted (the layers above share it)."""
        self.listen_addresses: tuple[str, ...] = ()
        self._get_status = get_status
        self._nursery = nursery
        self._noise_static = os.urandom(32)
        self._peers: dict[PeerId, PeerHandle] = {}
        self._announced: set[PeerId] = set()
        """Peers whose PeerConnected reached `events` (and whose PeerDisconnected has not)."""
        self._messages_in: Counter[str] = Counter()
        self._messages_out: Counter[str] = Counter()
        self._handshaking: set[PeerHandle] = set()
        self._dialing: set[str] = set()
        self._dials: dict[PeerHandle, _Dial] = {}
        self._known: dict[str, _Known] = {}
        scoring = config.scoring
        self._scores = PeerScores(scoring)
        self._address_scores = PeerScores(scoring, threshold=scoring.address_disconnect_threshold)
        self._group_scores = PeerScores(scoring, threshold=scoring.group_disconnect_threshold)
        self._bans = BanList(max_entries=scoring.max_bans)
        self._trusted = parse_networks(config.trusted_networks)
        self._pending: PendingSlots[PeerHandle] = PendingSlots(
            max_total=config.max_pending_handshakes,
            max_per_address=config.max_pending_per_address,
        )
        self._links: dict[PeerHandle, _Link] = {}
        self._eviction_salt = os.urandom(32)
        self._pending_evicted = 0
        self._evicted = 0
        self._reads_paused = 0
        self._changed = trio.Event()
        self._wake = trio.Event()
        self._refused = 0
        self._protocol_errors = 0
        self._last_published: Publish | None = None
        self._last_frame = b""
        self._last_exchange = -float("inf")
        self.events: Inbox[SwarmEvent] = Inbox(config.inbox_size, config.inbox_bytes)
        """Events for the layer above, in order per peer (``async for event in swarm.events``).
        Call `release()` on every `InboundMessage` once done with it, or its sender stops
        being read when `inbox_per_peer` of them are held."""
        self._bootnodes = frozenset(str(parse_address(text)) for text in config.bootnodes)
        for text in config.bootnodes:
            self._add_known(parse_address(text))

    # -- public API ---------------------------------------------------------------------------

    @property
    def advertised_addresses(self) -> tuple[str, ...]:
        """What our Hello tells peers: `SwarmConfig.advertise`, else the bound addresses
        (with `SwarmConfig.public_addr` as their host)."""
        advertise = self.config.advertise
        if advertise is not None:
            return advertise
        return announced_addresses(self.listen_addresses, self.config.public_addr)

    def peers(self) -> tuple[PeerInfo, ...]:
        """Every accepted peer."""
        now = trio.current_time()
        return tuple(
            PeerInfo(
                peer_id=peer_id,
                address=handle.address,
                outbound=handle.outbound,
                hello=_hello_of(handle),
                score=self._scores.score(peer_id, now),
                traffic=handle.statistics(),
            )
            for peer_id, handle in self._peers.items()
        )

    def send(self, peer_id: PeerId, message: Message) -> bool:
        """Queue `message` for one peer without blocking; False if unknown, closed or full."""
        handle = self._peers.get(peer_id)
        return handle is not None and self._send(handle, message)

    def _send(self, handle: PeerHandle, message: Message) -> bool:
        frame = None
        if isinstance(message, Publish):
            # A relayed message goes to several peers in a row: encode it once for all.
            if message is not self._last_published:
                self._last_published, self._last_frame = message, encode_frame(message)
            frame = self._last_frame
        queued = handle.send_nowait(message, frame=frame)
        if queued:
            self._messages_out[type(message).__name__] += 1
        return queued

    def broadcast(self, message: Message, *, exclude: Iterable[PeerId] = ()) -> int:
        """Queue `message` for every peer not in `exclude`; return how many accepted it."""
        skip = set(exclude)
        return sum(
            self.send(peer_id, message) for peer_id in list(self._peers) if peer_id not in skip
        )

    def penalize(self, peer_id: PeerId, amount: float, reason: Offence) -> None:
        """Lower a peer's score (and its source address's); below the threshold it is
        disconnected and banned, and so is the address it came from."""
        self._penalize(peer_id, self._peers.get(peer_id), amount, reason)

    def _penalize(
        self, peer_id: PeerId | None, handle: PeerHandle | None, amount: float, reason: Offence
    ) -> None:
        """Penalise a key (if known) and the source of an inbound link (if it has one)."""
        now = trio.current_time()
        scoring = self.config.scoring
        link = None if handle is None or handle.outbound else self._links.get(handle)
        source = None if link is None or link.trusted else link.host
        if source is not None:
            self._penalize_source(source, amount, reason, now)
        if peer_id is None:
            return
        self._scores.penalize(peer_id, amount, now)
        self.log.debug("peer %s penalised %.1f for %s", peer_id.hex()[:12], amount, reason.value)
        if self._scores.should_disconnect(peer_id, now):
            self.log.warning(
                "peer %s banned for %.0f s: score below threshold after %s",
                peer_id.hex()[:12],
                scoring.ban_duration_s,
                reason.value,
            )
            self._bans.ban_peer(peer_id, now + scoring.ban_duration_s)
            if source is not None:
                self._ban_source(source, f"its key {peer_id.hex()[:12]} was banned", now)
            target = handle if handle is not None else self._peers.get(peer_id)
            if target is not None:
                target.close(DisconnectReason.LOW_SCORE, reason.value.encode())

    def _penalize_source(self, host: str, amount: float, reason: Offence, now: float) -> None:
        group = network_group(host)
        self._address_scores.penalize(host.encode(), amount, now)
        self._group_scores.penalize(group.encode(), amount, now)
        if self._address_scores.should_disconnect(host.encode(), now):
            self._ban_source(host, f"address score below threshold after {reason.value}", now)
        if self._group_scores.should_disconnect(group.encode(), now):
            until = now + self.config.scoring.address_ban_duration_s
            if not self._bans.is_refused_inbound(now, group=group.encode()):
                self.log.warning("network %s refused inbound until %.0f: group score", group, until)
            self._bans.ban_group(group.encode(), until)

    def _ban_source(self, host: str, why: str, now: float) -> None:
        until = now + self.config.scoring.address_ban_duration_s
        if not self._bans.is_refused_inbound(now, host=host.encode()):
            self.log.warning(
                "address %s refused inbound for %.0f s: %s",
                host,
                self.config.scoring.address_ban_duration_s,
                why,
            )
        self._bans.ban_source(host.encode(), until)

    def score(self, peer_id: PeerId) -> float:
        """A peer's current score (0 if never penalised)."""
        return self._scores.score(peer_id, trio.current_time())

    def disconnect(
        self,
        peer_id: PeerId,
        reason: DisconnectReason = DisconnectReason.REQUESTED,
        detail: bytes = b"",
    ) -> None:
        """Close the link to `peer_id` (if any), telling the peer `reason`."""
        handle = self._peers.get(peer_id)
        if handle is not None:
            handle.close(reason, detail)

    def ban_peer(self, peer_id: PeerId, duration: float) -> None:
        """Refuse `peer_id` for `duration` seconds (and drop it now); an inbound peer's source
        address is refused inbound for `ScoringParams.address_ban_duration_s` too."""
        now = trio.current_time()
        self._bans.ban_peer(peer_id, now + duration)
        handle = self._peers.get(peer_id)
        link = None if handle is None or handle.outbound else self._links.get(handle)
        if link is not None and link.host is not None and not link.trusted:
            self._ban_source(link.host, f"its key {peer_id.hex()[:12]} was banned", now)
        self.disconnect(peer_id, DisconnectReason.BANNED)

    def ban_entries(self) -> tuple[BanEntry, ...]:
        """Every ban in force or not yet expired, on trio's clock (to persist them)."""
        return self._bans.entries()

    def restore_bans(self, entries: Iterable[BanEntry]) -> None:
        """Bans saved by an earlier run (on trio's clock): they hold from now on."""
        self._bans.restore(entries)

    def ban_address(self, address: str, duration: float) -> None:
        """Refuse the host of `address` for `duration` seconds, inbound and outbound."""
        host = parse_address(address).host
        self._bans.ban_address(host.encode(), trio.current_time() + duration)

    def is_banned(self, peer_id: PeerId) -> bool:
        """True if `peer_id` is under a ban."""
        return self._bans.is_banned(trio.current_time(), peer_id=peer_id)

    def is_refused(self, host: str) -> bool:
        """True if inbound connections from `host` are refused now (its address or group)."""
        now = trio.current_time()
        if is_trusted(host, self._trusted):
            return self._bans.is_banned(now, address=host.encode())
        group = network_group(host).encode()
        return self._bans.is_refused_inbound(now, host=host.encode(), group=group)

    def address_score(self, host: str) -> float:
        """The score of a source address: the decaying sum of its inbound peers' penalties."""
        return self._address_scores.score(host.encode(), trio.current_time())

    def credit(self, peer_id: PeerId, topic: Topic) -> None:
        """Note that `peer_id` was first to bring us a valid `topic` message.

        Eviction protects the peers that most recently brought new transactions and blocks:
        useful work that fresh identities cannot fake.
        """
        handle = self._peers.get(peer_id)
        link = None if handle is None else self._links.get(handle)
        if link is None:
            return
        now = trio.current_time()
        if topic is Topic.TRANSACTION:
            link.last_transaction_at = now
        elif topic is Topic.BLOCK:
            link.last_block_at = now

    async def connect(self, address: str) -> PeerId:
        """Dial `address` now and wait until the peer is accepted.

        Raises:
            PeerRefused: the dial failed or either side closed the link during the handshake.
        """
        parsed = parse_address(address)
        if parsed.scheme not in self.config.transport.schemes:
            raise PeerRefused(str(parsed), None)
        self._add_known(parsed)
        connected_before = frozenset(self._peers)
        dial = _Dial()
        self._nursery.start_soon(self._dial, parsed, dial)
        await dial.done.wait()
        if dial.peer_id is None or dial.handle is None:
            return self._crossed_dial(dial.handle, dial.reason, connected_before, str(parsed))
        try:
            # Both Hellos cross on the wire, so our HandshakeComplete does not prove the peer
            # accepted us; a round trip does (a refusal arrives before the Pong would).
            await self._timed_ping(dial.handle)
        except trio.BrokenResourceError:
            await dial.handle.wait_closed()
            return self._crossed_dial(
                dial.handle, dial.handle.close_reason, connected_before, str(parsed)
            )
        return dial.peer_id

    def _crossed_dial(
        self,
        handle: PeerHandle | None,
        reason: DisconnectReason | None,
        connected_before: frozenset[PeerId],
        address: str,
    ) -> PeerId:
        """A dial refused as a duplicate succeeded after all if the peer dialed us at the same
        moment and that link was kept; any other refusal is raised as `PeerRefused`."""
        peer_id = None if handle is None else handle.peer_id
        if (
            reason is DisconnectReason.DUPLICATE_CONNECTION
            and peer_id is not None
            and peer_id not in connected_before
            and peer_id in self._peers
        ):
            return peer_id
        raise PeerRefused(address, reason)

    async def ping(self, peer_id: PeerId) -> None:
        """Round trip to `peer_id`: everything sent before has been processed by it.

        Raises:
            trio.BrokenResourceError: the peer is unknown or the link closed first.
        """
        handle = self._peers.get(peer_id)
        if handle is None:
            raise trio.BrokenResourceError("unknown peer")
        await self._timed_ping(handle)

    async def _timed_ping(self, handle: PeerHandle) -> None:
        """Ping, keeping the lowest round trip for eviction (close peers are hard to fake)."""
        start = trio.current_time()
        await handle.ping()
        link = self._links.get(handle)
        if link is not None:
            link.min_rtt = min(link.min_rtt, trio.current_time() - start)

    async def wait_peer_count(self, count: int, *, outbound: bool | None = None) -> None:
        """Wait until at least `count` peers (of the given direction, if any) are accepted."""
        while self._count(outbound) < count:
            await self._changed.wait()

    def statistics(self) -> SwarmStatistics:
        """Current counts."""
        outbound = self._count(True)
        return SwarmStatistics(
            peers=len(self._peers),
            outbound=outbound,
            inbound=len(self._peers) - outbound,
            handshaking=len(self._handshaking),
            dialing=len(self._dialing),
            known_addresses=len(self._known),
            bans=len(self._bans),
            refused=self._refused,
            protocol_errors=self._protocol_errors,
            messages_in=tuple(sorted(self._messages_in.items())),
            messages_out=tuple(sorted(self._messages_out.items())),
            internal_errors=self.faults.counts(),
            pending=len(self._pending),
            pending_evicted=self._pending_evicted,
            evicted=self._evicted,
            reads_paused=self._reads_paused,
        )

    # -- links ----------------------------------------------------------------------------------

    def _count(self, outbound: bool | None) -> int:
        if outbound is None:
            return len(self._peers)
        return sum(handle.outbound == outbound for handle in self._peers.values())

    def _new_connection(self, *, initiator: bool) -> PeerConnection:
        status = self._get_status()
        hello = Hello(
            protocol_version=PROTOCOL_VERSION,
            chain_id=self.config.chain_id,
            genesis=self.config.genesis,
            node_key=self.peer_id,
            listen_addresses=tuple(a.encode() for a in self.advertised_addresses),
            head=status.head,
            head_height=status.head_height,
            finalized=status.finalized,
        )
        keys = ConnectionKeys(
            identity=self.config.identity,
            noise_static=self._noise_static,
            noise_ephemeral=os.urandom(32),
        )
        return PeerConnection(
            initiator=initiator,
            keys=keys,
            hello=hello,
            now=trio.current_time(),
            config=self.config.connection,
        )

    async def _serve(
        self, address: PeerAddress, *, task_status: trio.TaskStatus[PeerAddress]
    ) -> None:
        await self.config.transport.serve(address, self._accept, task_status=task_status)

    async def _accept(self, stream: trio.abc.Stream) -> None:
        """Admit an accepted connection as pending (before any WebSocket upgrade)."""
        host = self.config.transport.remote_host(stream)
        if host is None or self.is_refused(host):
            self._refused += 1
            await trio.aclose_forcefully(stream)
            return
        now = trio.current_time()
        trusted = is_trusted(host, self._trusted)
        conn = self._new_connection(initiator=False)  # its handshake deadline counts from now
        handle = PeerHandle(stream, conn, self.config.limits, address=host, outbound=False)
        victim = self._pending.admit(handle, host, now, trusted=trusted)
        if victim is not None:
            self._pending_evicted += 1
            self.log.debug("pending link from %s closed for a newer one", victim.address)
            victim.close(DisconnectReason.TOO_MANY_PEERS, b"too many pending handshakes")
        self._links[handle] = _Link(
            host=host, started_at=now, trusted=trusted, share=self._new_share()
        )
        await self._run(stream, handle)

    async def _dial(self, address: PeerAddress, dial: _Dial | None = None) -> None:
        text = str(address)
        self._dialing.add(text)
        try:
            if self._bans.is_banned(trio.current_time(), address=address.host.encode()):
                raise OSError("address is banned")
            with trio.fail_after(self.config.connect_timeout):
                stream = await self.config.transport.open_stream(self._nursery, address)
        except (OSError, trio.TooSlowError, trio.BrokenResourceError):
            self._dialing.discard(text)
            self._record_failure(text)
            if dial is not None:
                dial.done.set()
            return
        self._dialing.discard(text)
        conn = self._new_connection(initiator=True)
        handle = PeerHandle(stream, conn, self.config.limits, address=text, outbound=True)
        self._links[handle] = _Link(
            host=address.host, started_at=trio.current_time(), share=self._new_share()
        )
        await self._run(stream, handle, dial=dial)

    async def _run(
        self, stream: trio.abc.Stream, handle: PeerHandle, *, dial: _Dial | None = None
    ) -> None:
        self._handshaking.add(handle)
        if dial is not None:
            dial.handle = handle
            self._dials[handle] = dial
        try:
            await handle.run(self._on_peer_event)
            fault = self.config.transport.peer_fault(stream)
            if fault is not None:
                # The transport cut the link for breaking its framing (a WebSocket frame over
                # the limit, say): as costly as a protocol error, for the key and the address.
                self._protocol_errors += 1
                self.log.info("link from %s cut by the transport: %s", handle.address, fault)
                self._penalize(
                    handle.peer_id,
                    handle,
                    self.config.scoring.protocol_error_penalty,
                    Offence.PROTOCOL_ERROR,
                )
        finally:
            self._handshaking.discard(handle)
            self._pending.release(handle)
            self._links.pop(handle, None)
            pending = self._dials.pop(handle, None)
            if pending is not None:
                pending.reason = handle.close_reason
                pending.done.set()

    async def _on_peer_event(self, handle: PeerHandle, event: PeerEvent) -> None:
        """Handle one event of one link; a bug in here ends that link, never the node."""
        try:
            await self._handle_peer_event(handle, event)
        except StorageError:
            raise  # fail-stop: the node must stop and recover from its last commit
        except Exception as exc:
            self.faults.record(Where.SWARM, exc, peer=_describe(handle))
            handle.close(DisconnectReason.INTERNAL_ERROR)

    async def _handle_peer_event(self, handle: PeerHandle, event: PeerEvent) -> None:
        if isinstance(event, MessageReceived):  # first: nearly every event is one
            peer_id = handle.peer_id
            if (
                peer_id is None
                or self._peers.get(peer_id) is not handle
                or peer_id not in self._announced
            ):
                return
            message = event.message
            self._messages_in[type(message).__name__] += 1
            if isinstance(message, GetPeers):
                self._send(handle, Peers(addresses=self._addresses_for(peer_id)))
            elif isinstance(message, Peers):
                seen_from = self._seen_host(handle)
                for address in message.addresses:
                    self._learn(address, seen_from, own=False)
                self._wake.set()
            else:
                share = self._links[handle].share
                if not share.try_acquire():
                    self._reads_paused += 1
                    await share.acquire()  # this peer's reader waits here: TCP back-pressure
                inbound = InboundMessage(peer_id=peer_id, message=message, release=share.release)
                weight = message_weight(message)
                if self.events.try_send(inbound, weight):
                    return
                try:
                    await self.events.send(inbound, weight)
                except BaseException:
                    share.release()
                    raise
        elif isinstance(event, PeerFailed):
            self.faults.record(event.where, event.error, peer=_describe(handle))
        elif isinstance(event, HandshakeComplete):
            await self._on_handshake(handle, event.hello)
        elif isinstance(event, PeerMisbehaved):
            self._protocol_errors += event.offence is Offence.PROTOCOL_ERROR
            amount = {
                Offence.PROTOCOL_ERROR: self.config.scoring.protocol_error_penalty,
                Offence.SPAM: self.config.scoring.spam_penalty,
            }.get(event.offence, self.config.scoring.timeout_penalty)
            # Before the Noise handshake ends there is no key, but there is an address.
            self._penalize(handle.peer_id, handle, amount, event.offence)
        elif isinstance(event, ConnectionClosed):
            await self._on_closed(handle, event)

    async def _on_handshake(self, handle: PeerHandle, hello: Hello) -> None:
        peer_id = handle.peer_id
        assert peer_id is not None  # HandshakeComplete implies a proved key
        self._handshaking.discard(handle)
        self._pending.release(handle)
        now = trio.current_time()
        link = self._links.get(handle)
        if link is not None:
            link.connected_at = now
            link.min_rtt = min(link.min_rtt, now - link.started_at)
        if self._bans.is_banned(now, peer_id=peer_id):
            self._refused += 1
            self.log.info("refused banned peer %s at %s", peer_id.hex()[:12], handle.address)
            handle.close(DisconnectReason.BANNED)
            return
        if handle.outbound:
            self._remember(handle.address).peer_id = peer_id
        evicted: PeerHandle | None = None
        existing = self._peers.get(peer_id)
        if existing is not None:
            if not self._prefer(handle, existing, peer_id):
                handle.close(DisconnectReason.DUPLICATE_CONNECTION)
                return
            del self._peers[peer_id]
            existing.close(DisconnectReason.DUPLICATE_CONNECTION)
        elif not handle.outbound:
            refusal = self._inbound_refusal(link)
            if refusal is None and self._count(False) >= self.config.max_inbound:
                evicted = self._evict_inbound()
                if evicted is None:
                    refusal = "inbound limit reached and every inbound peer is protected"
            if refusal is not None:
                self._refused += 1
                self.log.debug("refused peer %s: %s", peer_id.hex()[:12], refusal)
                handle.close(DisconnectReason.TOO_MANY_PEERS, refusal.encode())
                return
        self._peers[peer_id] = handle
        self.log.info(
            "peer %s connected (%s, %s)",
            peer_id.hex()[:12],
            "outbound" if handle.outbound else "inbound",
            handle.address,
        )
        if handle.outbound:
            self._remember(handle.address).failures = 0
        seen_from = self._seen_host(handle)
        for address in hello.listen_addresses:
            self._learn(address, seen_from, own=True)
        dial = self._dials.pop(handle, None)
        if dial is not None:
            dial.peer_id = peer_id
            dial.done.set()
        if handle.outbound and self._count(True) < self.config.target_outbound:
            self._send(handle, GetPeers())
        self._notify()
        if evicted is not None:
            await self._forget_peer(evicted, DisconnectReason.TOO_MANY_PEERS, by_peer=False)
        # Sent for a link that replaced an announced one too: an answer to a request sent on
        # the old link is lost with it, and waiting for it would cost the peer a timeout.
        await self.events.send(
            PeerConnected(peer_id=peer_id, hello=hello, outbound=handle.outbound)
        )
        self._announced.add(peer_id)
        if peer_id not in self._peers:  # evicted while we waited for room in `events`
            await self._forget_peer(handle, DisconnectReason.TOO_MANY_PEERS, by_peer=False)

    def _inbound_refusal(self, link: _Link | None) -> str | None:
        """Why a new inbound peer is over its address's or group's limit, or None."""
        if link is None or link.host is None or link.trusted:
            return None
        sources = []
        for handle in self._peers.values():
            other = None if handle.outbound else self._links.get(handle)
            if other is not None and other.host is not None and not other.trusted:
                sources.append(other.host)
        return check_inbound(
            link.host,
            sources,
            max_per_address=self.config.max_inbound_per_address,
            max_per_group=self.config.max_inbound_per_group,
        )

    def _evict_inbound(self) -> PeerHandle | None:
        """Pick an inbound peer to make room (`select_peer_to_evict`), close it and drop it
        from `_peers` at once, so the inbound count never passes the limit."""
        candidates = []
        for peer_id, handle in self._peers.items():
            link = None if handle.outbound else self._links.get(handle)
            if link is None:
                continue
            candidates.append(
                EvictionCandidate(
                    key=peer_id,
                    group=link.group or handle.address,
                    connected_at=link.connected_at,
                    min_rtt=link.min_rtt,
                    last_transaction_at=link.last_transaction_at,
                    last_block_at=link.last_block_at,
                    protected=link.trusted,
                )
            )
        victim = select_peer_to_evict(
            candidates, salt=self._eviction_salt, params=self.config.eviction
        )
        if victim is None:
            return None
        handle = self._peers.pop(PeerId(victim))
        self._evicted += 1
        self.log.info("evicted inbound peer %s at %s", victim.hex()[:12], handle.address)
        handle.close(DisconnectReason.TOO_MANY_PEERS, b"evicted for a newcomer")
        return handle

    async def _forget_peer(
        self, handle: PeerHandle, reason: DisconnectReason | None, *, by_peer: bool
    ) -> None:
        """Tell the layer above that a peer it heard of is gone (once)."""
        peer_id = handle.peer_id
        if peer_id is not None and peer_id in self._announced:
            self._announced.discard(peer_id)
            await self.events.send(
                PeerDisconnected(peer_id=peer_id, reason=reason, by_peer=by_peer)
            )

    def _prefer(self, new: PeerHandle, existing: PeerHandle, peer_id: PeerId) -> bool:
        """Of two links to one peer, both ends keep the one dialed by the lower node key."""
        new_dialer = self.peer_id if new.outbound else peer_id
        old_dialer = self.peer_id if existing.outbound else peer_id
        return new_dialer < old_dialer

    async def _on_closed(self, handle: PeerHandle, event: ConnectionClosed) -> None:
        peer_id = handle.peer_id
        reason = "connection lost" if event.reason is None else event.reason.name
        if peer_id is None or event.reason in _ADMISSION_CLOSES:
            level = logging.DEBUG  # an attacker's flood of these must not flood the log
        elif event.reason in _ORDINARY_CLOSES:
            level = logging.INFO
        else:
            level = logging.WARNING
        self.log.log(
            level,
            "peer %s at %s disconnected (%s, by %s)%s",
            "?" if peer_id is None else peer_id.hex()[:12],
            handle.address,
            reason,
            "peer" if event.by_peer else "us",
            f": {event.detail.decode(errors='replace')}" if event.detail else "",
        )
        if handle.outbound:
            if event.reason is DisconnectReason.SELF_CONNECTION:
                self._remember(handle.address).is_self = True
            elif peer_id is None or self._peers.get(peer_id) is not handle:
                self._record_failure(handle.address)
            else:
                known = self._remember(handle.address)
                known.next_attempt = trio.current_time() + self.config.backoff_initial
        if (
            event.reason is DisconnectReason.HANDSHAKE_TIMEOUT
            and not event.by_peer
            and not handle.outbound
        ):
            # A trickling handshake (slowloris) costs its address, even with no key to blame.
            self._penalize(
                handle.peer_id, handle, self.config.scoring.timeout_penalty, Offence.TIMEOUT
            )
        if peer_id is not None and self._peers.get(peer_id) is handle:
            del self._peers[peer_id]
            self._notify()
            # Only a peer the layer above heard of leaves it: a link cancelled while its
            # PeerConnected waited for room in `events` was never announced.
            await self._forget_peer(handle, event.reason, by_peer=event.by_peer)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
        self._wake.set()

    # -- addresses, dialing, peer exchange ------------------------------------------------------

    def _learn(self, address: str | bytes, seen_from: str, *, own: bool) -> None:
        """Remember `address`, told by the peer connected from host `seen_from` (`own`: as
        that peer's own address). Another host's loopback address is never ours to dial, and
        only a peer's own unspecified host can be read as the host we see it at."""
        try:
            parsed = parse_address(address)
        except ConfigError:
            return
        if not own and host_scope(parsed.host) is HostScope.UNSPECIFIED:
            return
        usable = as_seen_from(parsed, seen_from)
        if usable is not None:
            self._add_known(usable)

    def _seen_host(self, handle: PeerHandle) -> str:
        """The host a link's bytes come from ("" when unknown)."""
        link = self._links.get(handle)
        return "" if link is None or link.host is None else link.host

    def _add_known(self, address: PeerAddress) -> None:
        """Remember an address to dial (one of ours and other transports' are left out)."""
        if address.scheme not in self.config.transport.schemes:
            return
        text = str(address)
        if text in self._known or text in self._own_addresses():
            return
        self._remember(text)

    def _own_addresses(self) -> set[str]:
        return set(self.listen_addresses) | set(self.advertised_addresses)

    def _remember(self, address: str) -> _Known:
        """The record of `address`, added within `max_known_addresses` (the most-failed
        address is forgotten to make room)."""
        known = self._known.get(address)
        if known is None:
            if self._known and len(self._known) >= self.config.max_known_addresses:
                worst = max(self._known, key=lambda a: self._known[a].failures)
                del self._known[worst]
            known = self._known[address] = _Known()
        return known

    def _record_failure(self, address: str) -> None:
        known = self._known.get(address)
        if known is None:
            return  # forgotten while it was dialed (a flood of fresh addresses): keep it so
        known.failures += 1
        delay = self.config.backoff_initial * 2 ** (known.failures - 1)
        longest = self.config.backoff_max
        if address in self._bootnodes:
            longest = min(longest, self.config.bootnode_backoff_max)
        known.next_attempt = trio.current_time() + min(longest, delay)

    def _new_share(self) -> InboxShare:
        return InboxShare(self.config.inbox_per_peer)

    def _addresses_for(self, requester: PeerId) -> tuple[bytes, ...]:
        """Our peers' own addresses as we reach them, less what the requester cannot use
        (loopback addresses for a peer on another host)."""
        asker = self._peers.get(requester)
        asker_host = "" if asker is None else self._seen_host(asker)
        addresses: list[bytes] = []
        for peer_id, handle in self._peers.items():
            if peer_id == requester or handle not in self._links:
                continue
            seen_from = self._seen_host(handle)
            for raw in _hello_of(handle).listen_addresses:
                try:
                    usable = as_seen_from(parse_address(raw), seen_from)
                except ConfigError:
                    continue
                if usable is not None and shareable_with(usable, asker_host):
                    addresses.append(usable.to_bytes())
        return tuple(addresses[:MAX_PEERS_IN_RESPONSE])

    def _connected_addresses(self) -> set[str]:
        connected = {handle.address for handle in self._peers.values()}
        for handle in self._peers.values():
            connected.update(
                a.decode("ascii", "replace") for a in _hello_of(handle).listen_addresses
            )
        return connected

    async def _maintain(self) -> None:
        """Keep dialing toward `target_outbound`; ask peers for addresses while short."""
        while True:
            now = trio.current_time()
            missing = self.config.target_outbound - self._count(True) - len(self._dialing)
            if missing > 0:
                busy = self._connected_addresses() | self._dialing | self._own_addresses()
                candidates = sorted(
                    (known.failures, address)
                    for address, known in self._known.items()
                    if address not in busy
                    and not known.is_self
                    and known.next_attempt <= now
                    and known.peer_id not in self._peers
                )
                for _, address in candidates[:missing]:
                    self._dialing.add(address)
                    self._nursery.start_soon(self._dial, parse_address(address))
                if now - self._last_exchange >= self.config.peer_exchange_interval:
                    self._last_exchange = now
                    self.broadcast(GetPeers())
            self._bans.expire(now)
            with trio.move_on_after(self.config.maintenance_interval):
                await self._wake.wait()
            self._wake = trio.Event()

    async def _shutdown(self) -> None:
        for handle in list(self._peers.values()) + list(self._handshaking):
            handle.close(DisconnectReason.SHUTDOWN)
        for handle in list(self._peers.values()) + list(self._handshaking):
            await handle.wait_closed()


def _describe(handle: PeerHandle) -> str:
    """A peer as logs name it: short node key, else its address."""
    peer_id = handle.peer_id
    return handle.address if peer_id is None else f"{peer_id.hex()[:12]} at {handle.address}"


def _hello_of(handle: PeerHandle) -> Hello:
    hello = handle.conn.peer_hello
    assert hello is not None  # only accepted peers are listed
    return hello


@asynccontextmanager
async def open_swarm(config: SwarmConfig, get_status: Callable[[], Status]) -> AsyncIterator[Swarm]:
    """Start listeners and the dialer; on exit say SHUTDOWN to every peer and close everything.

    `get_status` gives the head and finalized checkpoint put in each new Hello.
    """
    async with trio.open_nursery() as nursery:
        swarm = Swarm(config, get_status, nursery)
        bound = [await nursery.start(swarm._serve, parse_address(text)) for text in config.listen]
        swarm.listen_addresses = tuple(str(address) for address in bound)
        nursery.start_soon(swarm._maintain)
        try:
            yield swarm
        finally:
            with trio.move_on_after(config.shutdown_timeout) as scope:
                scope.shield = True
                await swarm._shutdown()
            nursery.cancel_scope.cancel()
            swarm.events.close()
