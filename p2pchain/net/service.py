"""`NetworkService`: gossip and block sync running on a `Swarm`, for the node to sit on.

``async with open_network(config, host) as network:`` opens the swarm and starts the tasks that
drive the sans-IO `GossipRouter` and `SyncManager` on trio time. The `host` (the node's
`ChainHost`; `service.host`) reads its chain (`get_status`, `get_block`), answers peers'
block requests (``await host.serve_blocks(request, max_bytes)``, one at a time in a serving task
that takes peers in turn; a waiting request holds its sender's inbox share) and answers four
hooks:

- ``await host.prepare(batch)`` with the (topic, data) of up to `VALIDATION_BATCH` messages a
  validation worker took at once, before it validates them one by one: the host may verify
  their signatures together (in a worker thread).
- ``await host.validate(topic, data, from_peer)`` before a gossip message is delivered or
  forwarded. It returns a `Verdict`, or raises `GossipIgnore` / `GossipReject`; a REJECT costs
  every sender the raised class's `penalty`. For a block whose parent it does not know it
  returns `Orphan(block)` (the block it decoded): an IGNORE, and the block waits in the sync
  manager's `OrphanPool` while the sender is asked for the parent.
- ``await host.deliver(topic, data)`` for every accepted message from the network, in order.
- ``await host.import_blocks(blocks, from_peer)`` for blocks fetched by sync (each the parent of
  the next) and for orphans whose parent is known now; it returns an `ImportResult`, and the
  blocks it neither accepted nor found invalid wait in the orphan pool.

The orphan pool is the only place where blocks wait for a parent. Its blocks are handed back
to `import_blocks` as soon as the host knows their parent (`get_block`), whichever way the
parent came: checked after every block accepted from gossip (validated and delivered) or
sync and at every `announce_status` (the node calls it after its own imports: slot ticks,
proposals).

Nothing waits on the node inside the swarm's event loop: validations run in a pool of worker
tasks taking batches from two bounded queues in arrival order (blocks, votes and evidence
before transactions), deliveries in one worker, imports in the sync task. Every queue is
bounded, and every message dropped at a full queue is counted in `statistics()` (our own
slowness never costs an honest peer score). One peer's messages are paced rather than dropped:
each holds a unit of its sender's share of the swarm's inbox (`SwarmConfig.inbox_per_peer`)
until this service is done with it (a gossip message until its validation ends), and a sender
with its whole share held is not read meanwhile. A `Blocks` answer to nothing we asked is
judged at once (it costs score) and never takes room in the answer queue.

Fault containment: an unexpected exception while handling one peer's message (in the router,
the validation or delivery hook, or a sync import) is recorded in the swarm's `FaultLog` and
disconnects that peer with INTERNAL_ERROR; the service keeps running. `StorageError` is the
exception: it propagates and stops the node (fail-stop). Leaving the context cancels these
tasks, then closes the swarm.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from random import Random
from typing import Final, Protocol, TypeVar

import trio

from p2pchain.errors import ConfigError, GossipIgnore, GossipReject, StorageError
from p2pchain.ledger.block import Block
from p2pchain.ledger.types import BlockId, Height
from p2pchain.net.faults import FaultLog, Where
from p2pchain.net.swarm import (
    InboundMessage,
    PeerConnected,
    Swarm,
    SwarmConfig,
    SwarmEvent,
    SwarmStatistics,
    open_swarm,
)
from p2pchain.protocol.connection import PeerId
from p2pchain.protocol.gossip import (
    Deliver,
    GossipAction,
    GossipParams,
    GossipRouter,
    GossipStatistics,
    Send,
    Validate,
    Verdict,
)
from p2pchain.protocol.messages import (
    MAX_BLOCKS_RESPONSE_BYTES,
    Blocks,
    DisconnectReason,
    GetBlocksById,
    GetBlocksByRange,
    Graft,
    IHave,
    IWant,
    LightAnswer,
    LightRequest,
    Message,
    Prune,
    Publish,
    Status,
    Topic,
)
from p2pchain.protocol.scoring import Offence, Penalize
from p2pchain.protocol.sync import (
    Import,
    SyncAction,
    SyncManager,
    SyncParams,
    SyncStatistics,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportResult:
    """What `NetworkHost.import_blocks` did with the blocks it was given.

    A block in neither set has a parent the host does not know: it waits in the orphan pool
    (unless the host knows that parent, which it could not attach to: it is dropped).
    """

    accepted: frozenset[BlockId]
    """Blocks now in the host's block tree: imported by this call or known before."""
    invalid: frozenset[BlockId] = frozenset()
    """Blocks that break a rule; the peer that sent them loses `invalid_block_penalty`."""


@dataclass(frozen=True, slots=True)
class Orphan:
    """`NetworkHost.validate`'s answer for a block whose parent the host does not know.

    Gossip treats it as an IGNORE (not relayed, nobody blamed); the service keeps `block`, as
    the host decoded it, in the orphan pool and asks the sender for the parent.
    """

    block: Block


_A = TypeVar("_A")
Release = Callable[[], None]
"""Gives back the inbox share a peer's message holds (`InboundMessage.release`)."""

VALIDATION_BATCH: Final = 64
"""Messages a validation worker hands to `NetworkHost.prepare` together. It takes batch after
batch until the queue is empty; while it waits (a thread verifying), the others take the rest."""

_WAITING_TOPICS: Final = frozenset({Topic.TRANSACTION, Topic.OFFER})
"""Topics validated after blocks, votes and evidence (their own queue, served second)."""

EVENT_BATCH: Final = 128
"""Swarm events handled per wake-up of the event task (what arrived meanwhile, in order); the
workers it woke run before the next batch, so no batch waits behind more than one other."""


class NetworkHost(Protocol):
    """The node as the network service sees it: its chain and its four hooks."""

    def get_status(self) -> Status:
        """Our head and finalized checkpoint, as announced to peers."""
        ...

    def get_block(self, block_id: BlockId) -> Block | None:
        """Any block we hold (canonical or not), for status comparison and the sync anchor."""
        ...

    async def serve_blocks(
        self, request: GetBlocksByRange | GetBlocksById, max_bytes: int
    ) -> Blocks:
        """Our answer to a peer's block request (`serve_blocks` in `p2pchain.protocol.sync`
        says which blocks): bodies kept only in storage are read off the event loop."""
        ...

    async def serve_light(self, request: LightRequest) -> LightAnswer:
        """Our answer to a light client's request: a finality certificate, a state proof or
        a transaction's place in a finalized block, or why there is none."""
        ...

    async def prepare(self, batch: Sequence[tuple[Topic, bytes]]) -> None:
        """Messages about to be validated one by one: check together what can be checked
        together (signatures, in a worker thread where that pays). Only a head start: each
        message's `validate` still decides, and a failure in here blames nobody."""
        ...

    async def validate(self, topic: Topic, data: bytes, from_peer: PeerId) -> Verdict | Orphan:
        """Gossip validation; may raise `GossipIgnore` / `GossipReject` instead of returning,
        and returns `Orphan` for a block with an unknown parent."""
        ...

    async def deliver(self, topic: Topic, data: bytes) -> None:
        """An accepted gossip message from the network (never our own `publish`)."""
        ...

    async def import_blocks(self, blocks: tuple[Block, ...], from_peer: PeerId) -> ImportResult:
        """Import `blocks` in order; known blocks count as accepted."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkConfig:
    """The swarm's configuration plus gossip, sync and queue limits."""

    swarm: SwarmConfig
    gossip: GossipParams = field(default_factory=GossipParams)
    sync: SyncParams = field(default_factory=SyncParams)
    seed: int | None = None
    """Seed of the router's peer selection; None draws one from the OS (simulations fix it)."""
    validation_workers: int = 4
    """Validation hooks running at once."""
    validation_queue: int = 1_024
    """Messages waiting for a validation worker, from all peers, in each of the two queues
    (blocks, votes and evidence; transactions); more are dropped (counted, not blamed: the
    queue backs up because we are slow). One peer's are bounded by its share of the swarm's
    inbox (`SwarmConfig.inbox_per_peer`)."""
    delivery_queue: int = 1_024
    """Accepted messages waiting for `deliver`; more are dropped (counted)."""
    max_sync_responses: int = 64
    """`Blocks` answers to our open requests waiting for the sync task; more are dropped."""
    serve_max_bytes: int = MAX_BLOCKS_RESPONSE_BYTES
    """Byte bound of one `Blocks` answer we serve."""
    invalid_block_penalty: float = 200.0
    """Score a sync peer loses for serving a block that breaks a rule: provable, so twice the
    ban threshold (a ban whatever its score was)."""

    def __post_init__(self) -> None:
        if min(self.validation_workers, self.validation_queue, self.delivery_queue) < 1:
            raise ConfigError("worker and queue sizes must be positive")
        if self.max_sync_responses < 1:
            raise ConfigError("the sync answer queue limit must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkStatistics:
    """The swarm's, router's and sync manager's counters, plus this service's queues and drops."""

    swarm: SwarmStatistics
    gossip: GossipStatistics
    sync: SyncStatistics
    validations_waiting: int
    """Messages queued or being validated now."""
    validations_dropped: int
    """Messages dropped because the validation queue was full (our overload, nobody blamed)."""
    deliveries_dropped: int
    """Accepted messages dropped because `deliver` fell behind."""
    sync_responses_dropped: int
    """Answers to our open requests dropped because the sync task fell behind (retried)."""
    sends_dropped: int
    """Messages the swarm refused to queue (peer gone or its send queue full)."""
    serves_waiting: int
    """Block requests from peers waiting to be answered now (each holds a unit of its
    sender's inbox share, so a peer asking faster than it is answered is not read)."""
    blocks_served: int
    light_served: int
    """Light-client requests answered (finality certificates, state and transaction proofs)."""
    blocks_accepted: int
    blocks_invalid: int
    orphans_released: int


@dataclass(slots=True)
class _Counters:
    validations_dropped: int = 0
    deliveries_dropped: int = 0
    sync_responses_dropped: int = 0
    sends_dropped: int = 0
    blocks_served: int = 0
    light_served: int = 0
    blocks_accepted: int = 0
    blocks_invalid: int = 0
    orphans_released: int = 0


@dataclass(frozen=True, slots=True)
class _Request:
    peer_id: PeerId
    generation: int
    request: GetBlocksByRange | GetBlocksById | LightRequest
    release: Release


@dataclass(frozen=True, slots=True)
class _Response:
    peer_id: PeerId
    generation: int
    blocks: Blocks


class NetworkService:
    """Gossip and sync for one node over its swarm. Create with `open_network`."""

    def __init__(self, config: NetworkConfig, host: NetworkHost, swarm: Swarm) -> None:
        self.config = config
        self.swarm = swarm
        self._host = host
        seed = config.seed if config.seed is not None else int.from_bytes(os.urandom(8), "big")
        self._rng = Random(seed)
        self._router = GossipRouter(Random(self._rng.getrandbits(64)), config.gossip)
        anchor_height, anchor_id = self._anchor()
        self._sync = SyncManager(
            anchor_height=anchor_height, anchor_id=anchor_id, params=config.sync
        )
        self._counters = _Counters()
        self._generation: dict[PeerId, int] = {}
        self._next_generation = 0
        self._validating = 0
        """Messages queued or being validated."""
        self._validations: deque[tuple[Validate, Release | None]] = deque()
        """Blocks, votes and evidence waiting for a validation worker, oldest first (at most
        `validation_queue`), each with the release of the share its sender's message holds.
        Workers take these first: a vote never waits behind a flood of transactions."""
        self._tx_validations: deque[tuple[Validate, Release | None]] = deque()
        """Transactions and offers waiting for a validation worker, likewise."""
        self._validations_ready = trio.Event()
        self._delivery_send, self._delivery_receive = trio.open_memory_channel[Deliver](
            config.delivery_queue
        )
        self._statuses: dict[PeerId, Status] = {}
        self._departed: list[PeerId] = []
        self._responses: deque[_Response] = deque()
        self._imports: deque[Import] = deque()
        self._sync_wake = trio.Event()
        self._serving: dict[PeerId, deque[_Request]] = {}
        """Block requests waiting to be answered, per peer, the next peer to serve first."""
        self._serving_wake = trio.Event()
        self._announced = host.get_status()
        """The status last sent to every peer (new peers get the current one on connect)."""

    # -- public API ---------------------------------------------------------------------------

    @property
    def peer_id(self) -> PeerId:
        """Our node key."""
        return self.swarm.peer_id

    @property
    def host(self) -> NetworkHost:
        """The host this service was opened on: its chain reads and hooks."""
        return self._host

    @property
    def faults(self) -> FaultLog:
        """Where every layer of the network records the failures it contained."""
        return self.swarm.faults

    @property
    def is_syncing(self) -> bool:
        """True while some peer claims a head above what sync has handed over."""
        return self._sync.is_syncing

    def publish(self, topic: Topic, data: bytes) -> int:
        """Gossip an object of our own to every peer; return how many peers it was queued for.

        Returns 0 for a message already seen (ours or from the network): it is not sent again.
        """
        actions = self._router.publish(topic, data, trio.current_time())
        before = self._counters.sends_dropped
        self._execute(actions)
        return len(actions) - (self._counters.sends_dropped - before)

    def announce_status(self) -> None:
        """Send `host.get_status()` to every peer if it changed since the last announcement,
        and import the orphans whose parent the host knows now.

        Call after the host's chain changed by itself (a slot tick, our own block); the
        service calls it itself after every block import.
        """
        self._release_orphans()
        status = self._host.get_status()
        if status == self._announced:
            return
        self._announced = status
        for peer_id in self._generation:
            self._send(peer_id, status)
        anchor_height, anchor_id = self._anchor()
        if anchor_height >= self._sync.statistics().next_height:
            # Finality passed everything sync handed over: restart above it, skipping the
            # blocks gossip brought (safe, since every honest peer builds on finalized blocks).
            self._execute(self._sync.reset(anchor_height, anchor_id, trio.current_time()))

    def mesh_peers(self, topic: Topic) -> frozenset[PeerId]:
        """The peers we push full messages of `topic` to."""
        return self._router.mesh_peers(topic)

    def statistics(self) -> NetworkStatistics:
        """Counters of every layer and of this service's queues."""
        c = self._counters
        return NetworkStatistics(
            swarm=self.swarm.statistics(),
            gossip=self._router.statistics(),
            sync=self._sync.statistics(),
            validations_waiting=self._validating,
            validations_dropped=c.validations_dropped,
            deliveries_dropped=c.deliveries_dropped,
            sync_responses_dropped=c.sync_responses_dropped,
            sends_dropped=c.sends_dropped,
            serves_waiting=sum(map(len, self._serving.values())),
            blocks_served=c.blocks_served,
            light_served=c.light_served,
            blocks_accepted=c.blocks_accepted,
            blocks_invalid=c.blocks_invalid,
            orphans_released=c.orphans_released,
        )

    # -- swarm events -------------------------------------------------------------------------

    async def _run_events(self) -> None:
        while batch := await self.swarm.events.receive_batch(EVENT_BATCH):
            now = trio.current_time()  # one batch is handled without a checkpoint: one time
            for event in batch:
                held = False
                try:
                    held = self._on_event(event, now)
                except StorageError:
                    raise
                except Exception as exc:
                    self._contain(Where.GOSSIP, exc, event.peer_id)
                finally:
                    if not held and isinstance(event, InboundMessage):
                        event.release()
            # The workers woken by this batch run before the next one is taken, so what one
            # batch queued is validated (and relayed) before more arrives behind it.
            await trio.lowlevel.checkpoint()

    def _contain(self, where: str, error: Exception, peer_id: PeerId) -> None:
        """Record our own failure on `peer_id`'s input and drop that peer (never the node)."""
        self.faults.record(where, error, peer=peer_id.hex()[:12])
        self.swarm.disconnect(peer_id, DisconnectReason.INTERNAL_ERROR)

    def _on_event(self, event: SwarmEvent, now: float) -> bool:
        """Peer events in any order: a repeated connect re-registers, an unknown disconnect or
        a message from a peer not registered is dropped. True when a queued validation holds
        the message's share now (it releases it)."""
        if isinstance(event, InboundMessage):  # first: nearly every event is one
            return event.peer_id in self._generation and self._on_message(event, now)
        if isinstance(event, PeerConnected):
            if event.peer_id in self._generation:
                self._forget(event.peer_id)
            self._next_generation += 1
            self._generation[event.peer_id] = self._next_generation
            self._router.add_peer(event.peer_id, outbound=event.outbound)
            self._send(event.peer_id, self._host.get_status())
        elif event.peer_id in self._generation:  # a PeerDisconnected
            self._forget(event.peer_id)
        return False

    def _forget(self, peer_id: PeerId) -> None:
        del self._generation[peer_id]
        self._drop_serving(peer_id)
        self._router.remove_peer(peer_id)
        self._statuses.pop(peer_id, None)
        self._departed.append(peer_id)
        self._sync_wake.set()

    def _on_message(self, event: InboundMessage, now: float) -> bool:
        peer_id, message = event.peer_id, event.message
        if isinstance(message, (Publish, IHave, IWant, Graft, Prune)):  # a tuple: faster than |
            return self._execute(self._router.handle_message(peer_id, message, now), event.release)
        if isinstance(message, Status):
            self._statuses[peer_id] = message
            self._sync_wake.set()
        elif isinstance(message, GetBlocksByRange | GetBlocksById | LightRequest):
            return self._serve(peer_id, message, event.release)
        elif isinstance(message, Blocks):
            if not self._sync.is_awaiting(peer_id, message.request_id):
                # Judged at once (a penalty, counted as a bad response), never queued: only
                # answers to our own open requests can take room in the queue.
                self._execute(self._sync.on_blocks(peer_id, message, now))
            elif len(self._responses) >= self.config.max_sync_responses:
                self._counters.sync_responses_dropped += 1  # the sync task fell behind; it retries
            else:
                self._responses.append(_Response(peer_id, self._generation[peer_id], message))
                self._sync_wake.set()
        return False

    def _serve(
        self,
        peer_id: PeerId,
        request: GetBlocksByRange | GetBlocksById | LightRequest,
        release: Release,
    ) -> bool:
        """Queue a peer's block or light request for the serving task; it holds its inbox
        share until answered (True), so a peer's unanswered requests are bounded by it."""
        queued = _Request(peer_id, self._generation[peer_id], request, release)
        self._serving.setdefault(peer_id, deque()).append(queued)
        self._serving_wake.set()
        return True

    def _drop_serving(self, peer_id: PeerId) -> None:
        for queued in self._serving.pop(peer_id, ()):
            queued.release()

    async def _run_serving(self) -> None:
        """Answer queued block requests one at a time, taking peers in turn (a peer with many
        waiting delays another peer's by one answer at most): the host may read bodies from
        storage off the event loop, and meanwhile every other message is handled."""
        while True:
            await self._serving_wake.wait()
            self._serving_wake = trio.Event()
            while self._serving:
                peer_id, waiting = next(iter(self._serving.items()))
                queued = waiting.popleft()
                del self._serving[peer_id]
                if waiting:
                    self._serving[peer_id] = waiting  # to the back of the turn
                request = queued.request
                try:
                    response: Blocks | LightAnswer
                    if isinstance(request, GetBlocksByRange | GetBlocksById):
                        response = await self._host.serve_blocks(
                            request, self.config.serve_max_bytes
                        )
                    else:
                        response = await self._host.serve_light(request)
                except StorageError:
                    raise
                except Exception as exc:
                    self._contain(Where.GOSSIP, exc, peer_id)
                    continue
                finally:
                    queued.release()
                if self._generation.get(peer_id) != queued.generation:
                    continue  # it left (and maybe came back) meanwhile
                if self._send(peer_id, response):
                    if isinstance(response, Blocks):
                        self._counters.blocks_served += len(response.blocks)
                    else:
                        self._counters.light_served += 1

    # -- actions ------------------------------------------------------------------------------

    def _send(self, peer_id: PeerId, message: Message) -> bool:
        if self.swarm.send(peer_id, message):
            return True
        self._counters.sends_dropped += 1
        return False

    def _execute(
        self, actions: Iterable[GossipAction | SyncAction], release: Release | None = None
    ) -> bool:
        """Carry out router and sync actions without waiting; imports go to the sync task.

        `release` is the share held by the message these actions answer: a queued validation
        of it takes it over (True), else the caller releases it.
        """
        held = False
        for action in actions:
            if isinstance(action, Send):
                if not self.swarm.send(action.peer_id, action.message):
                    self._counters.sends_dropped += 1
            elif isinstance(action, Penalize):
                self.swarm.penalize(action.peer_id, action.amount, action.reason)
            elif isinstance(action, Validate):
                if self._queue_validation(action, release):
                    held, release = release is not None, None
            elif isinstance(action, Deliver):
                try:
                    self._delivery_send.send_nowait(action)
                except trio.WouldBlock:
                    self._counters.deliveries_dropped += 1
            else:
                self._imports.append(action)
                self._sync_wake.set()
        return held

    def _queue_validation(self, action: Validate, release: Release | None) -> bool:
        waits = action.topic in _WAITING_TOPICS
        queue = self._tx_validations if waits else self._validations
        if len(queue) < self.config.validation_queue:
            queue.append((action, release))
            self._validations_ready.set()
            self._validating += 1
            return True
        self._counters.validations_dropped += 1
        # The router holds the message as pending: clear it, blaming nobody.
        now = trio.current_time()
        self._execute(self._router.report_validation(action.message_id, Verdict.IGNORE, now))
        return False

    # -- workers ------------------------------------------------------------------------------

    async def _run_validator(self) -> None:
        """Take the oldest waiting messages, up to a batch, until none wait: blocks, votes and
        evidence before transactions. A batch keeps arrival order (a block before the votes
        that name it); workers overlap only while one of them waits inside a hook."""
        consensus, transactions = self._validations, self._tx_validations
        while True:
            while not consensus and not transactions:
                if self._validations_ready.is_set():
                    self._validations_ready = trio.Event()
                await self._validations_ready.wait()
            queue = consensus or transactions
            batch = [queue.popleft() for _ in range(min(VALIDATION_BATCH, len(queue)))]
            try:
                await self._host.prepare([(action.topic, action.data) for action, _ in batch])
            except StorageError:
                raise
            except Exception as exc:  # our bug; the messages are still validated one by one
                self.faults.record(Where.VALIDATION, exc)
            for action, release in batch:
                await self._validate(action, release)

    async def _validate(self, action: Validate, release: Release | None) -> None:
        penalty: float = GossipReject.penalty
        orphan: Block | None = None
        try:
            result = await self._host.validate(action.topic, action.data, action.from_peer)
        except GossipReject as exc:
            verdict, penalty = Verdict.REJECT, type(exc).penalty
        except GossipIgnore:
            verdict = Verdict.IGNORE
        except StorageError:
            raise
        except Exception as exc:
            verdict = Verdict.IGNORE  # our bug: nobody is blamed, nothing is relayed
            self._contain(Where.VALIDATION, exc, action.from_peer)
        else:
            if isinstance(result, Orphan):
                verdict, orphan = Verdict.IGNORE, result.block
            else:
                verdict = result
        finally:
            self._validating -= 1
            if release is not None:
                release()  # its sender may be read again
        now = trio.current_time()
        if verdict is Verdict.ACCEPT:
            self.swarm.credit(action.from_peer, action.topic)  # protects it from eviction
        self._execute(
            self._router.report_validation(action.message_id, verdict, now, penalty=penalty)
        )
        if orphan is not None:
            self._hold_orphan(orphan, action.from_peer, now)
        elif verdict is Verdict.ACCEPT and action.topic is Topic.BLOCK:
            self._release_orphans()

    def _knows(self, block_id: BlockId) -> bool:
        return self._host.get_block(block_id) is not None

    def _hold_orphan(self, block: Block, from_peer: PeerId, now: float) -> None:
        """Keep a block whose parent `from_peer`'s data did not let us attach, and ask that
        peer for the parent; import it at once if the parent came meanwhile."""
        if from_peer not in self._generation:
            return
        if self._knows(block.header.parent):
            # Imported while this block was checked, after the orphans were last released.
            self._execute([Import(blocks=(block,), from_peer=from_peer)])
        else:
            self._execute(self._sync.add_orphan(block, from_peer, now))
            self._sync_wake.set()  # a new request deadline

    def _release_orphans(self) -> None:
        """Hand the orphans whose parent the host knows now to the sync task, to import."""
        if not self._sync.orphans:
            return
        imports = self._sync.orphans.release_known(self._knows)
        self._counters.orphans_released += sum(len(action.blocks) for action in imports)
        self._execute(imports)

    async def _run_deliveries(self) -> None:
        async for first in self._delivery_receive:
            for action in _with_waiting(first, self._delivery_receive):
                try:
                    await self._host.deliver(action.topic, action.data)
                except StorageError:
                    raise
                except Exception as exc:  # the message came from several peers: nobody to drop
                    self.faults.record(Where.DELIVERY, exc)
                if action.topic is Topic.BLOCK:
                    self._release_orphans()  # for a host that imports on delivery

    async def _run_heartbeat(self) -> None:
        interval = self.config.gossip.heartbeat_interval
        await trio.sleep(self._rng.uniform(0, interval))  # spread peers' heartbeats apart
        while True:
            try:
                self._execute(self._router.heartbeat(trio.current_time()))
            except Exception as exc:
                self.faults.record(Where.TIMER, exc)
            await trio.sleep(interval)

    # -- sync ---------------------------------------------------------------------------------

    def _anchor(self) -> tuple[Height, BlockId]:
        """The finalized block as the sync anchor (every honest peer builds on it)."""
        status = self._host.get_status()
        finalized = self._host.get_block(status.finalized.block_id)
        if finalized is None:
            return status.head_height, status.head
        return finalized.header.height, finalized.block_id

    async def _run_sync(self) -> None:
        """Feed the sync manager and import what it releases, one batch at a time.

        While an import runs, statuses are coalesced per peer, departures listed and answers
        held in a bounded queue; answers are handled before timeouts, so waiting on our own
        import never makes a peer look late.
        """
        while True:
            deadline = self._sync.next_deadline()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self._sync_wake.wait()
            self._sync_wake = trio.Event()
            now = trio.current_time()
            departed, self._departed = self._departed, []
            for peer_id in departed:
                self._execute(self._sync.remove_peer(peer_id, now))
            statuses, self._statuses = self._statuses, {}
            for peer_id, status in statuses.items():
                if self._host.get_block(status.head) is None:
                    self._execute(self._sync.on_status(peer_id, status, now))
            while self._responses:
                response = self._responses.popleft()
                if self._generation.get(response.peer_id) == response.generation:
                    self._execute(self._sync.on_blocks(response.peer_id, response.blocks, now))
            self._execute(self._sync.handle_timeouts(now))
            while self._imports:
                action = self._imports.popleft()
                try:
                    await self._import(action)
                except StorageError:
                    raise
                except Exception as exc:
                    self._contain(Where.IMPORT, exc, action.from_peer)
                    self._execute(self._sync.reset(*self._anchor(), trio.current_time()))

    async def _import(self, action: Import) -> None:
        """Import one batch; what did not attach becomes an orphan, and the orphans it
        unlocks are queued as imports of their own (`announce_status`)."""
        blocks, from_peer = action.blocks, action.from_peer
        result = await self._host.import_blocks(blocks, from_peer)
        now = trio.current_time()
        c = self._counters
        c.blocks_accepted += sum(block.block_id in result.accepted for block in blocks)
        c.blocks_invalid += sum(block.block_id in result.invalid for block in blocks)
        if result.invalid and from_peer in self._generation:
            self.swarm.penalize(
                from_peer, self.config.invalid_block_penalty, Offence.INVALID_MESSAGE
            )
            # Banned now; its disconnect is still on the way: never ask it again meanwhile.
            self._execute(self._sync.remove_peer(from_peer, now))
        missing = [
            block
            for block in blocks
            if block.block_id not in result.accepted and block.block_id not in result.invalid
        ]
        if result.invalid or missing:
            self._execute(self._sync.reset(*self._anchor(), now))
        if from_peer in self._generation:
            for block in missing:
                if not self._knows(block.header.parent):  # else the host cannot place it
                    self._execute(self._sync.add_orphan(block, from_peer, now))
        self.announce_status()


def _with_waiting(first: _A, channel: trio.MemoryReceiveChannel[_A]) -> Iterator[_A]:
    """`first`, then whatever waits in `channel` as each is taken, without a task switch:
    one wake-up of a worker carries every message queued meanwhile."""
    yield first
    while True:
        try:
            yield channel.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return


@asynccontextmanager
async def open_network(config: NetworkConfig, host: NetworkHost) -> AsyncIterator[NetworkService]:
    """Open the swarm and run gossip and sync on it; on exit stop them, then close the swarm."""
    async with open_swarm(config.swarm, host.get_status) as swarm, trio.open_nursery() as nursery:
        service = NetworkService(config, host, swarm)
        nursery.start_soon(service._run_events)
        nursery.start_soon(service._run_heartbeat)
        nursery.start_soon(service._run_sync)
        nursery.start_soon(service._run_serving)
        nursery.start_soon(service._run_deliveries)
        for _ in range(config.validation_workers):
            nursery.start_soon(service._run_validator)
        try:
            yield service
        finally:
            nursery.cancel_scope.cancel()
