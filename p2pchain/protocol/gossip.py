"""Sans-IO gossipsub-style router: a mesh of D peers per topic, lazy IHAVE/IWANT to the rest.

The router never touches a socket, a clock or a random source of its own: the shell passes
`now` (seconds) and a seeded `random.Random`, and carries out the actions each call returns:

- `Send(peer_id, message)`: write one wire message to a peer.
- `Validate(message_id, topic, data, from_peer)`: run the application's validation hook, then
  call `GossipRouter.report_validation` with the verdict. Nothing is forwarded before that.
- `Deliver(topic, data, message_id)`: hand an accepted message from the network to the app.
- `Penalize(peer_id, amount, reason)`: lower a peer's score (`p2pchain.protocol.scoring`).

Every node takes all four topics, so there is no subscription exchange and no fanout. Own
messages are flood-published to every peer (gossipsub v1.1); relayed ones go to the mesh only.
All state an attacker can grow is bounded by a named `GossipParams` limit.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, TypeVar

from p2pchain.errors import ConfigError, GossipReject, LocalProtocolError
from p2pchain.protocol.connection import PeerId
from p2pchain.protocol.messages import (
    MAX_IHAVE_IDS,
    MAX_IWANT_IDS,
    Graft,
    IHave,
    IWant,
    Message,
    Prune,
    Publish,
    Topic,
    compute_message_id,
)
from p2pchain.protocol.scoring import Offence, Penalize

if TYPE_CHECKING:
    from random import Random

_B = TypeVar("_B", bound=bytes)

GossipMessage = Publish | IHave | IWant | Graft | Prune
"""The wire messages `GossipRouter.handle_message` accepts."""


class Verdict(Enum):
    """Outcome of the application's validation hook (gossipsub v1.1 extended validators)."""

    ACCEPT = "accept"
    """Valid: deliver to the application and forward to the mesh."""
    IGNORE = "ignore"
    """Drop without forwarding and without blaming the sender (`GossipIgnore`)."""
    REJECT = "reject"
    """Drop, never forward, and penalise every peer that sent it (`GossipReject`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GossipParams:
    """Mesh degrees, heartbeat timing, history windows and spam caps (Ethereum's gossipsub set)."""

    d: int = 8
    """Target mesh degree per topic."""
    d_low: int = 6
    """Graft new mesh peers at a heartbeat when the mesh is smaller than this."""
    d_high: int = 12
    """Prune mesh peers at a heartbeat when the mesh is larger; refuse inbound GRAFTs at it."""
    d_lazy: int = 6
    """Minimum number of non-mesh peers that receive IHAVE gossip per topic and heartbeat."""
    d_out: int = 2
    """Outbound peers kept in the mesh when pruning (eclipse resistance); must be < d_low."""
    gossip_factor: float = 0.25
    """Fraction of the non-mesh peers that receive IHAVE when it exceeds `d_lazy`."""
    heartbeat_interval: float = 0.7
    mcache_len: int = 5
    """Heartbeats a validated message stays available for IWANT."""
    mcache_gossip: int = 3
    """Heartbeats of the message cache advertised in IHAVE."""
    seen_ttl: float = 550 * 0.7
    """Seconds a message id is remembered for duplicate suppression."""
    max_seen: int = 100_000
    """Bound on the seen cache; the oldest ids are forgotten first when it is full."""
    max_pending_validations: int = 4_096
    """Messages awaiting a verdict; new ones are dropped (not marked seen) when full."""
    max_pending_bytes: int = 32 * 1024 * 1024
    """Bytes of the messages awaiting a verdict (the validation queue holds the same
    objects); new ones are dropped, not marked seen, when they would not fit."""
    max_pending_bytes_per_peer: int = 4 * 1024 * 1024
    """Bytes awaiting a verdict that one peer sent first (two maximum-size blocks, or 16,000
    small payments); more from it are dropped (not marked seen, so an honest copy from
    another peer still gets in)."""
    max_mcache_bytes: int = 64 * 1024 * 1024
    """Bytes of validated messages kept for IWANT; past it the oldest leave early."""
    max_ihave_messages: int = 10
    """IHAVE messages accepted from one peer per heartbeat; the rest are ignored."""
    max_ihave_length: int = MAX_IHAVE_IDS
    """Ids advertised in one IHAVE, and ids requested from one peer per heartbeat."""
    max_iwant_ids: int = MAX_IWANT_IDS
    """Message ids served to one peer per heartbeat in answer to IWANT."""
    gossip_retransmission: int = 3
    """Times one message is sent to one peer in answer to IWANT."""
    iwant_followup_time: float = 3.0
    """Seconds a peer has to deliver a message it advertised before the promise is broken."""
    prune_backoff: float = 60.0
    """Seconds neither side may re-GRAFT after a PRUNE."""
    flood_publish: bool = True
    """Send own messages to every peer instead of the mesh only."""
    behaviour_penalty: float = 10.0
    """Penalty for a GRAFT during backoff and for each broken IWANT promise."""

    def __post_init__(self) -> None:
        if not 0 < self.d_low <= self.d <= self.d_high:
            raise ConfigError("mesh degrees must satisfy 0 < d_low <= d <= d_high")
        if not 0 <= self.d_out < self.d_low:
            raise ConfigError("d_out must be below d_low")
        if not 0 < self.mcache_gossip <= self.mcache_len:
            raise ConfigError("mcache_gossip must be in 1..mcache_len")
        if not 0 < self.max_ihave_length <= MAX_IHAVE_IDS:
            raise ConfigError("max_ihave_length must be in 1..MAX_IHAVE_IDS")
        if not 0 < self.max_iwant_ids <= MAX_IWANT_IDS:
            raise ConfigError("max_iwant_ids must be in 1..MAX_IWANT_IDS")
        if self.heartbeat_interval <= 0 or self.seen_ttl <= 0 or self.max_seen < 1:
            raise ConfigError("heartbeat_interval, seen_ttl and max_seen must be positive")
        if not 0 < self.max_pending_bytes_per_peer <= self.max_pending_bytes:
            raise ConfigError("max_pending_bytes_per_peer must be in 1..max_pending_bytes")
        if self.max_mcache_bytes < 1:
            raise ConfigError("max_mcache_bytes must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    """Action: write `message` to `peer_id`."""

    peer_id: PeerId
    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class Validate:
    """Action: run the validation hook, then call `GossipRouter.report_validation`."""

    message_id: bytes
    topic: Topic
    data: bytes
    from_peer: PeerId


@dataclass(frozen=True, slots=True, kw_only=True)
class Deliver:
    """Action: an accepted message from the network, for the application."""

    topic: Topic
    data: bytes
    message_id: bytes


GossipAction = Send | Validate | Deliver | Penalize


@dataclass(frozen=True, slots=True, kw_only=True)
class GossipStatistics:
    """Counters since the router was created, and current state sizes."""

    published: int
    delivered: int
    duplicates: int
    rejected: int
    ignored: int
    dropped: int
    """Messages dropped because the validation queue was full."""
    ihave_sent: int
    ihave_received: int
    iwant_sent: int
    iwant_received: int
    grafts_sent: int
    prunes_sent: int
    broken_promises: int
    peers: int
    seen: int
    pending_validations: int
    cached_messages: int
    pending_bytes: int = 0
    """Bytes of the messages awaiting a verdict."""
    cached_bytes: int = 0
    """Bytes of the validated messages kept for IWANT."""


@dataclass(slots=True)
class _Pending:
    topic: Topic
    data: bytes
    received_at: float
    senders: list[PeerId]


@dataclass(slots=True)
class _PeerState:
    outbound: bool
    ihaves_this_heartbeat: int = 0
    ids_asked_this_heartbeat: int = 0
    ids_served_this_heartbeat: int = 0
    backoff: dict[Topic, float] = field(default_factory=dict)
    promises: dict[bytes, float] = field(default_factory=dict)
    """Message id -> deadline for ids this peer advertised and we asked for."""


@dataclass(slots=True)
class _Counters:
    published: int = 0
    delivered: int = 0
    duplicates: int = 0
    rejected: int = 0
    ignored: int = 0
    dropped: int = 0
    ihave_sent: int = 0
    ihave_received: int = 0
    iwant_sent: int = 0
    iwant_received: int = 0
    grafts_sent: int = 0
    prunes_sent: int = 0
    broken_promises: int = 0


class _MessageCache:
    """Validated messages of the last `mcache_len` heartbeats, in windows, within `max_bytes`
    (the oldest leave early when a burst of big messages would pass it)."""

    def __init__(self, length: int, max_bytes: int) -> None:
        self._windows: deque[list[tuple[Topic, bytes]]] = deque([[]], maxlen=length)
        self._messages: dict[bytes, Publish] = {}
        self._max_bytes = max_bytes
        self.bytes = 0
        self.retransmissions: dict[tuple[PeerId, bytes], int] = {}

    def __len__(self) -> int:
        return len(self._messages)

    def put(self, message_id: bytes, message: Publish) -> None:
        size = len(message.data)
        if message_id in self._messages or size > self._max_bytes:
            return
        while self.bytes + size > self._max_bytes:
            self._drop_oldest()
        self._messages[message_id] = message
        self.bytes += size
        self._windows[0].append((message.topic, message_id))

    def get(self, message_id: bytes) -> Publish | None:
        return self._messages.get(message_id)

    def gossip_ids(self, topic: Topic, windows: int) -> list[bytes]:
        return [
            message_id
            for window in list(self._windows)[:windows]
            for window_topic, message_id in window
            if window_topic is topic
        ]

    def shift(self) -> None:
        if len(self._windows) == self._windows.maxlen:
            for _, message_id in self._windows.pop():
                self._forget(message_id)
            self.retransmissions = {
                key: count
                for key, count in self.retransmissions.items()
                if key[1] in self._messages
            }
        self._windows.appendleft([])

    def _drop_oldest(self) -> None:
        oldest = next(window for window in reversed(self._windows) if window)
        _, message_id = oldest.pop(0)
        self._forget(message_id)

    def _forget(self, message_id: bytes) -> None:
        message = self._messages.pop(message_id)
        self.bytes -= len(message.data)


class GossipRouter:
    """Gossipsub-style mesh router for the four topics, as a sans-IO state machine.

    Args:
        rng: the only source of randomness (peer selection); seed it for reproducible runs.
        params: mesh and spam parameters.
    """

    def __init__(self, rng: Random, params: GossipParams | None = None) -> None:
        self.params = params if params is not None else GossipParams()
        self._rng = rng
        self._peers: dict[PeerId, _PeerState] = {}
        self._mesh: dict[Topic, dict[PeerId, None]] = {topic: {} for topic in Topic}
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._pending: dict[bytes, _Pending] = {}
        self._pending_bytes = 0
        self._pending_by_peer: dict[PeerId, int] = {}
        """Bytes awaiting a verdict per first sender (the peer whose share they use)."""
        self._mcache = _MessageCache(self.params.mcache_len, self.params.max_mcache_bytes)
        self._counters = _Counters()
        self._open_promises = 0
        """IWANT promises open over all peers, so that a Publish, which keeps any promise for
        its id, looks through the peers only when one is open."""

    # -- peers -------------------------------------------------------------------------------

    @property
    def peers(self) -> frozenset[PeerId]:
        return frozenset(self._peers)

    def add_peer(self, peer_id: PeerId, *, outbound: bool) -> None:
        """Start routing to a connected peer; it joins meshes at the next heartbeat."""
        if peer_id in self._peers:
            raise LocalProtocolError("peer already added")
        self._peers[peer_id] = _PeerState(outbound=outbound)

    def remove_peer(self, peer_id: PeerId) -> None:
        """Forget a disconnected peer: meshes, backoffs, counters and open promises."""
        state = self._peers.pop(peer_id, None)
        if state is None:
            raise LocalProtocolError("unknown peer")
        self._open_promises -= len(state.promises)
        for mesh in self._mesh.values():
            mesh.pop(peer_id, None)

    def mesh_peers(self, topic: Topic) -> frozenset[PeerId]:
        """The peers that receive full messages of `topic` from us."""
        return frozenset(self._mesh[topic])

    # -- local messages ----------------------------------------------------------------------

    def publish(self, topic: Topic, data: bytes, now: float) -> list[GossipAction]:
        """Send an own message: to every peer (flood publish) or the mesh; no `Deliver` back.

        A message already seen is not sent again and returns no actions.
        """
        message_id = compute_message_id(topic, data)
        if message_id in self._seen:
            self._counters.duplicates += 1
            return []
        self._mark_seen(message_id, now)
        message = Publish(topic=topic, data=data)
        self._mcache.put(message_id, message)
        self._counters.published += 1
        targets = self._peers if self.params.flood_publish else self._mesh[topic]
        return [Send(peer_id=peer_id, message=message) for peer_id in targets]

    # -- inbound -----------------------------------------------------------------------------

    def handle_message(
        self, peer_id: PeerId, message: GossipMessage, now: float
    ) -> list[GossipAction]:
        """Process one gossip message from a connected peer."""
        peer = self._peers.get(peer_id)
        if peer is None:
            raise LocalProtocolError("message from a peer that was not added")
        if isinstance(message, Publish):
            return self._on_publish(peer_id, message, now)
        if isinstance(message, IHave):
            return self._on_ihave(peer_id, peer, message, now)
        if isinstance(message, IWant):
            return self._on_iwant(peer_id, peer, message)
        if isinstance(message, Graft):
            return self._on_graft(peer_id, peer, message, now)
        return self._on_prune(peer_id, peer, message, now)

    def report_validation(
        self,
        message_id: bytes,
        verdict: Verdict,
        now: float,
        *,
        penalty: float = GossipReject.penalty,
    ) -> list[GossipAction]:
        """Act on the hook's verdict for a message announced by a `Validate` action.

        ACCEPT delivers it and forwards it to the mesh, never to a peer that sent it to us.
        REJECT penalises every sender by `penalty` (pass the raised class's `penalty`).
        A verdict that comes after the message left the seen cache is ignored.
        """
        pending = self._pop_pending(message_id)
        if pending is None:
            return []
        if verdict is Verdict.IGNORE:
            self._counters.ignored += 1
            return []
        if verdict is Verdict.REJECT:
            self._counters.rejected += 1
            return [
                Penalize(peer_id=sender, amount=penalty, reason=Offence.INVALID_MESSAGE)
                for sender in pending.senders
            ]
        message = Publish(topic=pending.topic, data=pending.data)
        self._mcache.put(message_id, message)
        self._counters.delivered += 1
        actions: list[GossipAction] = [
            Deliver(topic=pending.topic, data=pending.data, message_id=message_id)
        ]
        actions.extend(
            Send(peer_id=peer_id, message=message)
            for peer_id in self._mesh[pending.topic]
            if peer_id not in pending.senders
        )
        return actions

    def _on_publish(self, peer_id: PeerId, message: Publish, now: float) -> list[GossipAction]:
        message_id = compute_message_id(message.topic, message.data)
        if self._open_promises:
            for peer in self._peers.values():
                self._open_promises -= peer.promises.pop(message_id, None) is not None
        if message_id in self._seen:
            self._counters.duplicates += 1
            pending = self._pending.get(message_id)
            if pending is not None and peer_id not in pending.senders:
                pending.senders.append(peer_id)
            return []
        params = self.params
        size = len(message.data)
        if (
            len(self._pending) >= params.max_pending_validations
            or self._pending_bytes + size > params.max_pending_bytes
            or self._pending_by_peer.get(peer_id, 0) + size > params.max_pending_bytes_per_peer
        ):
            self._counters.dropped += 1
            return []
        self._mark_seen(message_id, now)
        self._pending[message_id] = _Pending(message.topic, message.data, now, [peer_id])
        self._pending_bytes += size
        self._pending_by_peer[peer_id] = self._pending_by_peer.get(peer_id, 0) + size
        return [
            Validate(
                message_id=message_id, topic=message.topic, data=message.data, from_peer=peer_id
            )
        ]

    def _on_ihave(
        self, peer_id: PeerId, peer: _PeerState, message: IHave, now: float
    ) -> list[GossipAction]:
        self._counters.ihave_received += 1
        peer.ihaves_this_heartbeat += 1
        if peer.ihaves_this_heartbeat > self.params.max_ihave_messages:
            return []
        budget = self.params.max_ihave_length - peer.ids_asked_this_heartbeat
        wanted = list(
            dict.fromkeys(
                message_id for message_id in message.message_ids if message_id not in self._seen
            )
        )[: max(0, budget)]
        if not wanted:
            return []
        peer.ids_asked_this_heartbeat += len(wanted)
        # Track one promise per request, as gossipsub does: a peer cannot know which id we check.
        promised = wanted[self._rng.randrange(len(wanted))]
        if promised not in peer.promises:
            peer.promises[promised] = now + self.params.iwant_followup_time
            self._open_promises += 1
        self._counters.iwant_sent += 1
        return [Send(peer_id=peer_id, message=IWant(message_ids=tuple(wanted)))]

    def _on_iwant(self, peer_id: PeerId, peer: _PeerState, message: IWant) -> list[GossipAction]:
        self._counters.iwant_received += 1
        actions: list[GossipAction] = []
        for message_id in dict.fromkeys(message.message_ids):
            if peer.ids_served_this_heartbeat >= self.params.max_iwant_ids:
                break
            cached = self._mcache.get(message_id)
            if cached is None:
                continue
            key = (peer_id, message_id)
            sent = self._mcache.retransmissions.get(key, 0)
            if sent >= self.params.gossip_retransmission:
                continue
            self._mcache.retransmissions[key] = sent + 1
            peer.ids_served_this_heartbeat += 1
            actions.append(Send(peer_id=peer_id, message=cached))
        return actions

    def _on_graft(
        self, peer_id: PeerId, peer: _PeerState, message: Graft, now: float
    ) -> list[GossipAction]:
        mesh = self._mesh[message.topic]
        if peer_id in mesh:
            return []
        actions: list[GossipAction] = []
        if peer.backoff.get(message.topic, -1.0) > now:
            actions.append(
                Penalize(
                    peer_id=peer_id,
                    amount=self.params.behaviour_penalty,
                    reason=Offence.GRAFT_IN_BACKOFF,
                )
            )
        elif len(mesh) < self.params.d_high or peer.outbound:
            # A full mesh still takes peers we dialed, so inbound sybils cannot crowd them out;
            # the next heartbeat prunes back to `d`, keeping `d_out` outbound peers.
            mesh[peer_id] = None
            return []
        actions.append(self._prune(peer_id, peer, message.topic, now))
        return actions

    def _on_prune(
        self, peer_id: PeerId, peer: _PeerState, message: Prune, now: float
    ) -> list[GossipAction]:
        self._mesh[message.topic].pop(peer_id, None)
        until = now + message.backoff_s
        peer.backoff[message.topic] = max(until, peer.backoff.get(message.topic, until))
        return []

    # -- heartbeat ---------------------------------------------------------------------------

    def heartbeat(self, now: float) -> list[GossipAction]:
        """Run every `heartbeat_interval`: broken promises, meshes, IHAVE gossip, expiry."""
        actions: list[GossipAction] = []
        actions.extend(self._check_promises(now))
        for topic in Topic:
            actions.extend(self._maintain_mesh(topic, now))
            actions.extend(self._emit_gossip(topic))
        self._mcache.shift()
        self._expire_seen(now)
        for peer in self._peers.values():
            peer.ihaves_this_heartbeat = 0
            peer.ids_asked_this_heartbeat = 0
            peer.ids_served_this_heartbeat = 0
            peer.backoff = {topic: until for topic, until in peer.backoff.items() if until > now}
        return actions

    def _check_promises(self, now: float) -> list[GossipAction]:
        actions: list[GossipAction] = []
        for peer_id, peer in self._peers.items():
            broken = [message_id for message_id, due in peer.promises.items() if due <= now]
            self._open_promises -= len(broken)
            for message_id in broken:
                del peer.promises[message_id]
                self._counters.broken_promises += 1
                actions.append(
                    Penalize(
                        peer_id=peer_id,
                        amount=self.params.behaviour_penalty,
                        reason=Offence.BROKEN_PROMISE,
                    )
                )
        return actions

    def _maintain_mesh(self, topic: Topic, now: float) -> list[GossipAction]:
        params = self.params
        mesh = self._mesh[topic]
        actions: list[GossipAction] = []
        if len(mesh) < params.d_low:
            candidates = self._graft_candidates(topic, now)
            chosen = self._sample(candidates, params.d - len(mesh))
            actions.extend(self._graft(peer_id, topic) for peer_id in chosen)
        elif len(mesh) > params.d_high:
            members = self._shuffled(mesh)
            outbound = [peer_id for peer_id in members if self._peers[peer_id].outbound]
            keep = dict.fromkeys(outbound[: params.d_out])
            keep.update(dict.fromkeys(members))
            survivors = set(list(keep)[: params.d])
            for peer_id in members:
                if peer_id not in survivors:
                    del mesh[peer_id]
                    actions.append(self._prune(peer_id, self._peers[peer_id], topic, now))
        outbound_in_mesh = sum(1 for peer_id in mesh if self._peers[peer_id].outbound)
        if outbound_in_mesh < params.d_out:
            candidates = [
                peer_id
                for peer_id in self._graft_candidates(topic, now)
                if self._peers[peer_id].outbound
            ]
            room = min(params.d_out - outbound_in_mesh, params.d_high - len(mesh))
            actions.extend(
                self._graft(peer_id, topic) for peer_id in self._sample(candidates, room)
            )
        return actions

    def _emit_gossip(self, topic: Topic) -> list[GossipAction]:
        params = self.params
        message_ids = self._mcache.gossip_ids(topic, params.mcache_gossip)
        if not message_ids:
            return []
        mesh = self._mesh[topic]
        candidates = [peer_id for peer_id in self._peers if peer_id not in mesh]
        count = max(params.d_lazy, int(params.gossip_factor * len(candidates)))
        actions: list[GossipAction] = []
        for peer_id in self._sample(candidates, count):
            ids = message_ids
            if len(ids) > params.max_ihave_length:
                ids = self._shuffled(ids)[: params.max_ihave_length]
            self._counters.ihave_sent += 1
            actions.append(
                Send(peer_id=peer_id, message=IHave(topic=topic, message_ids=tuple(ids)))
            )
        return actions

    def _graft_candidates(self, topic: Topic, now: float) -> list[PeerId]:
        mesh = self._mesh[topic]
        return [
            peer_id
            for peer_id, peer in self._peers.items()
            if peer_id not in mesh and peer.backoff.get(topic, -1.0) <= now
        ]

    def _graft(self, peer_id: PeerId, topic: Topic) -> GossipAction:
        self._mesh[topic][peer_id] = None
        self._counters.grafts_sent += 1
        return Send(peer_id=peer_id, message=Graft(topic=topic))

    def _prune(self, peer_id: PeerId, peer: _PeerState, topic: Topic, now: float) -> GossipAction:
        backoff = self.params.prune_backoff
        peer.backoff[topic] = max(now + backoff, peer.backoff.get(topic, now))
        self._counters.prunes_sent += 1
        return Send(peer_id=peer_id, message=Prune(topic=topic, backoff_s=round(backoff)))

    def _sample(self, population: Iterable[PeerId], count: int) -> list[PeerId]:
        ordered = sorted(population)
        return self._rng.sample(ordered, min(max(count, 0), len(ordered)))

    def _shuffled(self, items: Iterable[_B]) -> list[_B]:
        ordered = sorted(items)
        self._rng.shuffle(ordered)
        return ordered

    # -- caches ------------------------------------------------------------------------------

    def _pop_pending(self, message_id: bytes) -> _Pending | None:
        pending = self._pending.pop(message_id, None)
        if pending is not None:
            size = len(pending.data)
            self._pending_bytes -= size
            first = pending.senders[0]
            # An empty message holds no bytes, so the peer's entry may already be gone.
            remaining = self._pending_by_peer.pop(first, 0) - size
            if remaining:
                self._pending_by_peer[first] = remaining
        return pending

    def _mark_seen(self, message_id: bytes, now: float) -> None:
        self._seen[message_id] = now
        while len(self._seen) > self.params.max_seen:
            oldest, _ = self._seen.popitem(last=False)
            self._pop_pending(oldest)

    def _expire_seen(self, now: float) -> None:
        cutoff = now - self.params.seen_ttl
        while self._seen:
            message_id, first_seen = next(iter(self._seen.items()))
            if first_seen > cutoff:
                break
            del self._seen[message_id]
            self._pop_pending(message_id)

    def statistics(self) -> GossipStatistics:
        """Counters and state sizes, for metrics and tests."""
        c = self._counters
        return GossipStatistics(
            published=c.published,
            delivered=c.delivered,
            duplicates=c.duplicates,
            rejected=c.rejected,
            ignored=c.ignored,
            dropped=c.dropped,
            ihave_sent=c.ihave_sent,
            ihave_received=c.ihave_received,
            iwant_sent=c.iwant_sent,
            iwant_received=c.iwant_received,
            grafts_sent=c.grafts_sent,
            prunes_sent=c.prunes_sent,
            broken_promises=c.broken_promises,
            peers=len(self._peers),
            seen=len(self._seen),
            pending_validations=len(self._pending),
            cached_messages=len(self._mcache),
            pending_bytes=self._pending_bytes,
            cached_bytes=self._mcache.bytes,
        )
