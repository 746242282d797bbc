"""A deterministic in-memory network of `GossipRouter`s, for tests and fuzzing.

`GossipSim` wires N routers into a seeded random connected topology and runs them on a virtual
clock: every `Send` action becomes an in-flight message on its link (fixed per-link latency, so
each link is FIFO like a stream, and a per-link loss probability), every router gets a heartbeat
at its own phase, and every `Validate` action is answered at once by a pluggable validator. The
same seed and the same calls give the same run, message for message::

    sim = GossipSim(20, seed=7, loss=0.1)
    sim.run_for(5.0)                                  # let the meshes form
    message_id = sim.publish(0, Topic.TRANSACTION, b"tx bytes")
    sim.run_for(5.0)
    assert sim.reached(message_id) == 20

Adversarial peers are written by injecting raw wire messages with `inject`, from a node whose
own router then sees the replies like any other peer would.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from random import Random

from p2pchain.ledger.crypto import sha256
from p2pchain.protocol.connection import PeerId
from p2pchain.protocol.gossip import (
    Deliver,
    GossipAction,
    GossipMessage,
    GossipParams,
    GossipRouter,
    Send,
    Validate,
    Verdict,
)
from p2pchain.protocol.messages import (
    Graft,
    IHave,
    IWant,
    Prune,
    Publish,
    Topic,
    compute_message_id,
)
from p2pchain.protocol.scoring import PeerScores, Penalize

Validator = Callable[[int, Topic, bytes], Verdict]
"""``validator(node_index, topic, data) -> Verdict``: the hook every node runs before relaying."""


def accept_all(node_index: int, topic: Topic, data: bytes) -> Verdict:
    """The default validator: every message is valid."""
    return Verdict.ACCEPT


@dataclass(slots=True)
class SimNode:
    """One simulated node: its router plus everything observed at it."""

    index: int
    peer_id: PeerId
    router: GossipRouter
    scores: PeerScores = field(default_factory=PeerScores)
    delivered: list[Deliver] = field(default_factory=list)
    """Messages handed to the application, in order."""
    copies: Counter[bytes] = field(default_factory=Counter)
    """Full `Publish` copies received per message id (first copy and duplicates)."""
    penalties: list[Penalize] = field(default_factory=list)
    """Penalties this node's router gave to its peers."""
    known: set[bytes] = field(default_factory=set)
    """Ids of the messages the application here has: delivered or published here."""


@dataclass(frozen=True, slots=True)
class _InFlight:
    source: int
    target: int
    message: GossipMessage


@dataclass(frozen=True, slots=True)
class _Heartbeat:
    index: int


class GossipSim:
    """N routers on a seeded random connected graph, driven by a virtual clock.

    Args:
        size: number of nodes (at least 2).
        seed: the one seed for topology, latencies, losses, heartbeat phases and routers.
        degree: target average number of neighbours (the graph is connected in any case).
        params: gossip parameters shared by every router.
        latency: (min, max) seconds; each link draws a fixed latency in this range.
        loss: probability that a message on any link is dropped; see `set_link_loss`.
        validator: the validation hook every node runs; `accept_all` by default.
    """

    def __init__(
        self,
        size: int,
        *,
        seed: int,
        degree: int = 6,
        params: GossipParams | None = None,
        latency: tuple[float, float] = (0.01, 0.1),
        loss: float = 0.0,
        validator: Validator = accept_all,
    ) -> None:
        if size < 2:
            raise ValueError("a simulation needs at least two nodes")
        self.now = 0.0
        self.params = params if params is not None else GossipParams()
        self.validator = validator
        self._rng = Random(seed)
        self._queue: list[tuple[float, int, _InFlight | _Heartbeat]] = []
        self._sequence = itertools.count()
        self.nodes: tuple[SimNode, ...] = tuple(
            SimNode(
                index=index,
                peer_id=PeerId(sha256(b"gossip-sim" + index.to_bytes(4, "big"))),
                router=GossipRouter(Random(self._rng.getrandbits(64)), self.params),
            )
            for index in range(size)
        )
        self._index_of = {node.peer_id: node.index for node in self.nodes}
        self.edges = random_connected_graph(size, degree, self._rng)
        self._latency: dict[tuple[int, int], float] = {}
        self._loss: dict[tuple[int, int], float] = {}
        for a, b in sorted(self.edges):
            delay = self._rng.uniform(*latency)
            for link in ((a, b), (b, a)):
                self._latency[link] = delay
                self._loss[link] = loss
            dialer = self._rng.random() < 0.5
            self.nodes[a].router.add_peer(self.nodes[b].peer_id, outbound=dialer)
            self.nodes[b].router.add_peer(self.nodes[a].peer_id, outbound=not dialer)
        for node in self.nodes:
            phase = self._rng.uniform(0, self.params.heartbeat_interval)
            self._schedule(phase, _Heartbeat(node.index))

    # -- topology ----------------------------------------------------------------------------

    def neighbours(self, index: int) -> list[int]:
        """Indices of the nodes linked to node `index`."""
        return sorted(b if a == index else a for a, b in self.edges if index in (a, b))

    def set_loss(self, loss: float) -> None:
        """Set the drop probability of every link."""
        for link in self._loss:
            self._loss[link] = loss

    def set_link_loss(self, source: int, target: int, loss: float) -> None:
        """Set the drop probability of messages from `source` to `target`."""
        self._loss[(source, target)] = loss

    # -- driving -----------------------------------------------------------------------------

    def publish(self, index: int, topic: Topic, data: bytes) -> bytes:
        """Publish an own message at node `index` now; return its message id."""
        node = self.nodes[index]
        message_id = compute_message_id(topic, data)
        node.known.add(message_id)
        self._execute(node, node.router.publish(topic, data, self.now))
        return message_id

    def inject(self, source: int, target: int, message: GossipMessage) -> None:
        """Put a raw message from `source` on the link to `target` (for adversarial tests)."""
        if (source, target) not in self._latency:
            raise ValueError("no link between these nodes")
        self._transmit(source, target, message)

    def run_until(self, deadline: float) -> None:
        """Process every event up to virtual time `deadline`."""
        while self._queue and self._queue[0][0] <= deadline:
            when, _, event = heapq.heappop(self._queue)
            self.now = when
            if isinstance(event, _Heartbeat):
                node = self.nodes[event.index]
                self._execute(node, node.router.heartbeat(self.now))
                self._schedule(self.now + self.params.heartbeat_interval, event)
            else:
                self._receive(event)
        self.now = max(self.now, deadline)

    def run_for(self, seconds: float) -> None:
        """Advance virtual time by `seconds`."""
        self.run_until(self.now + seconds)

    # -- observing ---------------------------------------------------------------------------

    def reached(self, message_id: bytes) -> int:
        """How many nodes' applications have the message."""
        return sum(1 for node in self.nodes if message_id in node.known)

    def max_copies(self, message_id: bytes) -> int:
        """The most full copies of the message any single node received."""
        return max(node.copies[message_id] for node in self.nodes)

    def mesh_sizes(self, topic: Topic) -> list[int]:
        """Each node's mesh size for `topic`, by node index."""
        return [len(node.router.mesh_peers(topic)) for node in self.nodes]

    # -- internals ---------------------------------------------------------------------------

    def _schedule(self, when: float, event: _InFlight | _Heartbeat) -> None:
        heapq.heappush(self._queue, (when, next(self._sequence), event))

    def _transmit(self, source: int, target: int, message: GossipMessage) -> None:
        link = (source, target)
        if self._rng.random() < self._loss[link]:
            return
        self._schedule(self.now + self._latency[link], _InFlight(source, target, message))

    def _receive(self, event: _InFlight) -> None:
        node = self.nodes[event.target]
        sender = self.nodes[event.source].peer_id
        if isinstance(event.message, Publish):
            node.copies[compute_message_id(event.message.topic, event.message.data)] += 1
        self._execute(node, node.router.handle_message(sender, event.message, self.now))

    def _execute(self, node: SimNode, actions: Iterable[GossipAction]) -> None:
        work = list(actions)
        while work:
            action = work.pop(0)
            if isinstance(action, Send):
                message = action.message
                if not isinstance(message, _GOSSIP_TYPES):
                    raise TypeError(f"router sent a non-gossip message {message!r}")
                self._transmit(node.index, self._index_of[action.peer_id], message)
            elif isinstance(action, Validate):
                verdict = self.validator(node.index, action.topic, action.data)
                work.extend(node.router.report_validation(action.message_id, verdict, self.now))
            elif isinstance(action, Deliver):
                node.delivered.append(action)
                node.known.add(action.message_id)
            else:
                node.penalties.append(action)
                node.scores.apply(action, self.now)


_GOSSIP_TYPES = (Publish, IHave, IWant, Graft, Prune)


def random_connected_graph(size: int, degree: int, rng: Random) -> frozenset[tuple[int, int]]:
    """A random spanning tree plus random extra edges up to an average degree of `degree`."""
    edges: set[tuple[int, int]] = set()
    order = list(range(size))
    rng.shuffle(order)
    for position in range(1, size):
        a, b = order[position], order[rng.randrange(position)]
        edges.add((min(a, b), max(a, b)))
    target = min(size * degree // 2, size * (size - 1) // 2)
    while len(edges) < target:
        a, b = rng.sample(range(size), 2)
        edges.add((min(a, b), max(a, b)))
    return frozenset(edges)
