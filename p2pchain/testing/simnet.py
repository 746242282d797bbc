"""A deterministic simulated network: the real swarm and gossip code over in-memory links.

`SimulatedNetwork(seed)` hands out a `Transport` per node name; nodes listen on ``sim://name``
and dial each other exactly as they would over TCP. Only the transport and the clock are
swapped: every byte still goes through the Noise channel, framing, `PeerConnection`, `Swarm`,
`GossipRouter` and `SyncManager`. Run it under trio's `MockClock` with ``autojump_threshold=0``
and minutes of network time pass in a fraction of a second::

    def test_scenario() -> None:
        network = SimulatedNetwork(seed=7, latency=(0.01, 0.05), loss=0.05)
        trio.run(scenario, network, clock=trio.testing.MockClock(autojump_threshold=0))

The link model keeps TCP's guarantees: each direction of a connection is a FIFO byte stream
with a bounded send window. Per link (an unordered pair of names) the latency is fixed, drawn
from `latency`. `loss` is modelled as TCP experiences it: a lost segment is retransmitted, so a
chunk is delayed by one retransmission timeout per loss (doubling each time) and everything
behind it on that connection waits too. `reorder` delays a chunk by a random extra up to twice
the link latency; within a connection order is kept, so it reorders traffic *across* links.
`partition(groups)` holds every byte between groups (as a cut cable does; held bytes arrive
after `heal()`, unless the peers' ping timeouts closed the connection first) and refuses new
dials across the cut.

The same seed gives the same run: link latencies and per-chunk draws come from seeded
generators, and creating the network switches trio's scheduler to its deterministic mode
(the one trio uses under Hypothesis), seeded from the same seed. `report_seed()` prints the
seed of a failing run; `seed_from_env` lets ``P2PCHAIN_SIM_SEED=N`` replay it.
"""

from __future__ import annotations

import errno
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from random import Random
from typing import Final

import trio
from trio._core import _run as trio_run

from p2pchain.ledger.block import Block
from p2pchain.ledger.types import BlockId, Epoch, Height, Slot
from p2pchain.ledger.vote import Checkpoint
from p2pchain.net.service import ImportResult
from p2pchain.net.transports import PeerAddress, Scheme, StreamHandler
from p2pchain.protocol.connection import PeerId
from p2pchain.protocol.gossip import Verdict
from p2pchain.protocol.messages import (
    ANSWER_OF,
    Blocks,
    Finality,
    GetBlocksById,
    GetBlocksByRange,
    LightAnswer,
    LightError,
    LightRequest,
    StateProofAnswer,
    Status,
    Topic,
    TxProofAnswer,
    compute_message_id,
)
from p2pchain.testing.gossip_sim import random_connected_graph

SEED_VARIABLE: Final = "P2PCHAIN_SIM_SEED"
DEFAULT_WINDOW: Final = 1 << 20
"""Bytes one direction of a connection holds in flight before `send_all` waits (the socket
buffer)."""
MAX_RETRANSMISSIONS: Final = 6
"""Losses of one chunk in a row beyond which no further delay is added."""
LISTEN_BACKLOG: Final = 128


def seed_from_env(default: int) -> int:
    """`default`, unless ``P2PCHAIN_SIM_SEED`` is set to replay a printed seed."""
    return int(os.environ.get(SEED_VARIABLE, default))


def random_topology(size: int, degree: int, seed: int) -> tuple[tuple[int, int], ...]:
    """Edges of a seeded random connected graph: a random spanning tree plus random extra
    edges up to an average degree of `degree`; sorted, each as (lower, higher) node index."""
    if size < 2:
        raise ValueError("a topology needs at least two nodes")
    return tuple(sorted(random_connected_graph(size, degree, Random(seed))))


@dataclass(frozen=True, slots=True, kw_only=True)
class SimStatistics:
    """Traffic of the whole simulated network."""

    connections: int
    refused: int
    """Dials that failed: no listener, a full backlog, or a partition in the way."""
    chunks: int
    bytes: int
    losses: int
    """Simulated segment losses (each one a retransmission delay)."""


class _Pipe:
    """One direction of a connection: FIFO chunks, each with the time it reaches the reader."""

    def __init__(self, network: SimulatedNetwork, source: str, target: str, rng: Random) -> None:
        self.network = network
        self.source = source
        self.target = target
        self.rng = rng
        self.chunks: deque[tuple[float, bytes]] = deque()
        self.eof_at: float | None = None
        self.last_at = 0.0
        self.queued_bytes = 0
        self.reader_closed = False
        self.readable = trio.Event()
        self.writable = trio.Event()

    def wake_reader(self) -> None:
        self.readable.set()
        self.readable = trio.Event()

    def wake_writer(self) -> None:
        self.writable.set()
        self.writable = trio.Event()

    def arrival_time(self) -> float:
        """When a chunk sent now arrives: latency, loss and reorder delays, never before the
        chunk ahead of it."""
        network = self.network
        latency = network.link_latency(self.source, self.target)
        delay = latency + network.extra_delay(self.source, self.target)
        loss = network.loss_between(self.source, self.target)
        timeout = max(0.2, 3 * delay)
        for _ in range(MAX_RETRANSMISSIONS):
            if self.rng.random() >= loss:
                break
            network.losses += 1
            delay += timeout
            timeout *= 2
        if network.reorder and self.rng.random() < network.reorder:
            delay += self.rng.uniform(0, 2 * latency)
        self.last_at = max(self.last_at, trio.current_time() + delay)
        return self.last_at


class SimStream(trio.abc.Stream):
    """One end of a simulated connection (see the module docstring for the link model)."""

    def __init__(self, outgoing: _Pipe, incoming: _Pipe) -> None:
        self._out = outgoing
        self._in = incoming
        self._closed = False
        self.remote_name = incoming.source

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Queue `data` for the peer; waits while the send window is full."""
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        await trio.lowlevel.checkpoint()
        pipe = self._out
        while pipe.queued_bytes >= pipe.network.window and not pipe.reader_closed:
            await pipe.writable.wait()
            if self._closed:
                raise trio.ClosedResourceError("stream closed")
        if pipe.reader_closed:
            raise trio.BrokenResourceError("connection reset by peer")
        if data:
            chunk = bytes(data)
            pipe.chunks.append((pipe.arrival_time(), chunk))
            pipe.queued_bytes += len(chunk)
            pipe.network.chunks += 1
            pipe.network.bytes += len(chunk)
            pipe.wake_reader()

    async def wait_send_all_might_not_block(self) -> None:
        """Return once the send window has room."""
        pipe = self._out
        while pipe.queued_bytes >= pipe.network.window and not pipe.reader_closed:
            await pipe.writable.wait()
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """The next bytes that have arrived; ``b""`` once the peer closed and all arrived."""
        pipe = self._in
        network = pipe.network
        while True:
            if self._closed:
                raise trio.ClosedResourceError("stream closed")
            now = trio.current_time()
            blocked = network.is_cut(pipe.source, pipe.target)
            if not blocked and pipe.chunks and pipe.chunks[0][0] <= now:
                # As a socket does: a cancelled receive consumed nothing, a returned one
                # cannot be cancelled after taking its bytes.
                await trio.lowlevel.checkpoint_if_cancelled()
                at, chunk = pipe.chunks.popleft()
                size = len(chunk) if max_bytes is None else max_bytes
                if size < len(chunk):
                    pipe.chunks.appendleft((at, chunk[size:]))
                    chunk = chunk[:size]
                pipe.queued_bytes -= len(chunk)
                pipe.wake_writer()
                await trio.lowlevel.cancel_shielded_checkpoint()
                return chunk
            if not blocked and not pipe.chunks and pipe.eof_at is not None and pipe.eof_at <= now:
                await trio.lowlevel.checkpoint()
                return b""
            due = pipe.chunks[0][0] if pipe.chunks else pipe.eof_at
            readable = pipe.readable
            with trio.move_on_at(float("inf") if blocked or due is None else due):
                await readable.wait()

    async def aclose(self) -> None:
        """Close both directions: the peer reads EOF after the data already sent."""
        if not self._closed:
            self._closed = True
            out = self._out
            out.eof_at = out.arrival_time()
            out.wake_reader()
            self._in.reader_closed = True
            self._in.wake_writer()
            self._in.wake_reader()
        await trio.lowlevel.checkpoint()


class SimTransport:
    """The `Transport` of one named node on a `SimulatedNetwork`."""

    schemes: frozenset[Scheme] = frozenset({Scheme.SIM})

    def __init__(self, network: SimulatedNetwork, name: str) -> None:
        self.network = network
        self.name = name

    async def open_stream(self, nursery: trio.Nursery, address: PeerAddress) -> trio.abc.Stream:
        """Connect after one round trip; `OSError` if nobody listens or a partition is in the
        way."""
        network = self.network
        target = address.host
        await trio.sleep(2 * network.link_latency(self.name, target))
        listener = network.listeners.get(target)
        if listener is None or network.is_cut(self.name, target):
            network.refused += 1
            code = errno.ECONNREFUSED if listener is None else errno.EHOSTUNREACH
            raise OSError(code, f"sim://{target}: {os.strerror(code)}")
        client, server = network.connect(self.name, target)
        try:
            listener.send_nowait(server)
        except trio.WouldBlock:
            network.refused += 1
            raise OSError(errno.ECONNREFUSED, f"sim://{target}: backlog full") from None
        return client

    async def serve(
        self,
        address: PeerAddress,
        handler: StreamHandler,
        *,
        task_status: trio.TaskStatus[PeerAddress] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``sim://<address.host>`` until cancelled."""
        name = address.host
        if name in self.network.listeners:
            raise OSError(errno.EADDRINUSE, f"sim://{name} is already listening")
        send, receive = trio.open_memory_channel[SimStream](LISTEN_BACKLOG)
        self.network.listeners[name] = send
        try:
            async with trio.open_nursery() as nursery:
                task_status.started(address)
                async for stream in receive:
                    nursery.start_soon(handler, stream)
        finally:
            del self.network.listeners[name]

    def remote_host(self, stream: trio.abc.Stream) -> str | None:
        """The dialer's name, so that address bans work in simulations too."""
        return stream.remote_name if isinstance(stream, SimStream) else None

    def peer_fault(self, stream: trio.abc.Stream) -> str | None:
        """Simulated links carry bytes only: the transport never cuts one."""
        del stream
        return None


class SimulatedNetwork:
    """In-memory links between named nodes, with latency, loss, reordering and partitions.

    Args:
        seed: the one seed of the run (link latencies, per-chunk draws, trio's scheduler).
        latency: one-way seconds, or a (min, max) range each link draws its latency from.
        loss: probability that a chunk is lost once (and so delayed by a retransmission).
        reorder: probability that a chunk gets an extra random delay.
        window: bytes in flight per direction before `send_all` waits.
    """

    def __init__(
        self,
        seed: int,
        *,
        latency: float | tuple[float, float] = (0.005, 0.05),
        loss: float = 0.0,
        reorder: float = 0.0,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        low, high = (latency, latency) if isinstance(latency, int | float) else latency
        if not 0 <= low <= high or not 0 <= loss < 1 or not 0 <= reorder <= 1 or window < 1:
            raise ValueError("need 0 <= latency, 0 <= loss < 1, 0 <= reorder <= 1, window >= 1")
        self.seed = seed
        self.latency = (float(low), float(high))
        self.loss = loss
        self.reorder = reorder
        self.window = window
        self.listeners: dict[str, trio.MemorySendChannel[SimStream]] = {}
        self.refused = 0
        self.chunks = 0
        self.bytes = 0
        self.losses = 0
        self._latencies: dict[tuple[str, str], float] = {}
        self._connections: dict[tuple[str, str], int] = {}
        self._group_of: dict[str, int] | None = None
        self._node_delay: dict[str, float] = {}
        self._node_loss: dict[str, float] = {}
        self._pipes: list[_Pipe] = []
        _seed_trio_scheduler(seed)

    def __repr__(self) -> str:
        return f"SimulatedNetwork(seed={self.seed})"

    @staticmethod
    def address(name: str) -> str:
        """The listen address of node `name`."""
        return f"sim://{name}"

    def transport(self, name: str) -> SimTransport:
        """The transport node `name` gives its swarm (listen on `address(name)`)."""
        return SimTransport(self, name)

    def link_latency(self, a: str, b: str) -> float:
        """The fixed one-way latency between two names (drawn from the seed and the names)."""
        key = (min(a, b), max(a, b))
        latency = self._latencies.get(key)
        if latency is None:
            latency = Random(f"{self.seed}/{key[0]}/{key[1]}").uniform(*self.latency)
            self._latencies[key] = latency
        return latency

    def connect(self, dialer: str, listener: str) -> tuple[SimStream, SimStream]:
        """A fresh connection: the dialer's end and the listener's end."""
        key = (dialer, listener)
        count = self._connections.get(key, 0)
        self._connections[key] = count + 1
        forward = _Pipe(self, dialer, listener, Random(f"{self.seed}/{dialer}>{listener}/{count}"))
        back = _Pipe(self, listener, dialer, Random(f"{self.seed}/{listener}>{dialer}/{count}"))
        self._pipes = [pipe for pipe in self._pipes if not pipe.reader_closed]
        self._pipes += [forward, back]
        return SimStream(forward, back), SimStream(back, forward)

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every link between different groups; names in no group form one more group."""
        self._group_of = {name: index for index, group in enumerate(groups) for name in group}
        self._wake_all()

    def heal(self) -> None:
        """Remove the partition; held bytes flow again."""
        self._group_of = None
        self._wake_all()

    def set_delay(self, name: str, seconds: float) -> None:
        """Delay every chunk to or from `name` by `seconds` more (one way; 0 removes it)."""
        if not 0 <= seconds <= 60:
            raise ValueError(f"delay must be 0..60 s, got {seconds}")
        self._node_delay[name] = seconds

    def set_loss(self, name: str, fraction: float) -> None:
        """Lose chunks to or from `name` with probability `fraction` on top of `loss`."""
        if not 0 <= fraction < 1:
            raise ValueError(f"loss must be in [0, 1), got {fraction}")
        self._node_loss[name] = fraction

    def extra_delay(self, a: str, b: str) -> float:
        return self._node_delay.get(a, 0.0) + self._node_delay.get(b, 0.0)

    def loss_between(self, a: str, b: str) -> float:
        extra_a, extra_b = self._node_loss.get(a, 0.0), self._node_loss.get(b, 0.0)
        if not extra_a and not extra_b:
            return self.loss  # exactly: a seeded run without node faults replays as before
        return 1 - (1 - self.loss) * (1 - extra_a) * (1 - extra_b)

    def is_cut(self, a: str, b: str) -> bool:
        """True while a partition separates `a` and `b`."""
        if self._group_of is None:
            return False
        return self._group_of.get(a, -1) != self._group_of.get(b, -1)

    def now(self) -> float:
        """Trio's clock (virtual under `MockClock`)."""
        return trio.current_time()

    def statistics(self) -> SimStatistics:
        """Traffic counters."""
        return SimStatistics(
            connections=sum(self._connections.values()),
            refused=self.refused,
            chunks=self.chunks,
            bytes=self.bytes,
            losses=self.losses,
        )

    @contextmanager
    def report_seed(self) -> Iterator[None]:
        """Print the seed (and how to replay it) if the block raises."""
        try:
            yield
        except BaseException:
            print(
                f"\nsimulated network failed with seed {self.seed}; "
                f"replay with {SEED_VARIABLE}={self.seed}",
                file=sys.stderr,
            )
            raise

    def _wake_all(self) -> None:
        for pipe in self._pipes:
            pipe.wake_reader()


def _seed_trio_scheduler(seed: int) -> None:
    """Make trio order runnable tasks by creation and shuffle them from `seed`.

    This is the switch trio itself flips when Hypothesis is imported; it is private to trio,
    which is why only the test kit touches it.
    """
    setattr(trio_run, "_ALLOW_DETERMINISTIC_SCHEDULING", True)  # noqa: B010 (Final upstream)
    trio_run._r.seed(seed)


Validator = Callable[[Topic, bytes], Verdict]
BatchValidator = Callable[[Sequence[tuple[Topic, bytes]]], Sequence[Verdict]]
"""Verdicts for a whole batch at once (see `GossipHost`)."""


def accept_all(topic: Topic, data: bytes) -> Verdict:
    """The default validation: every message is valid."""
    return Verdict.ACCEPT


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message handed to a `GossipHost`: when, and what."""

    time: float
    topic: Topic
    message_id: bytes


class GossipHost:
    """A `NetworkHost` without blocks: validates with a function and records what arrives.

    Args:
        genesis: the head and finalized block announced in Status.
        validator: the verdict for each gossip message.
        batch_validator: if given, `prepare` runs it in a worker thread on each batch the
            network hands over, and `validate` answers from its verdicts (as a node checks
            a batch's signatures off the event loop); `validator` judges anything else.
    """

    def __init__(
        self,
        genesis: BlockId,
        validator: Validator = accept_all,
        *,
        batch_validator: BatchValidator | None = None,
    ) -> None:
        self.status = Status(
            head=genesis,
            head_height=Height(0),
            head_slot=Slot(0),
            finalized=Checkpoint(epoch=Epoch(0), block_id=genesis),
        )
        self.validator = validator
        self.batch_validator = batch_validator
        self._prepared: dict[tuple[Topic, bytes], Verdict] = {}
        self.validated: list[tuple[Topic, bytes, PeerId]] = []
        """Every validation request, in order: topic, data and the peer it came from."""
        self.delivered: list[Delivery] = []
        self._arrivals: dict[bytes, trio.Event] = {}

    def get_status(self) -> Status:
        return self.status

    def get_block(self, block_id: BlockId) -> Block | None:
        return None

    async def serve_blocks(
        self, request: GetBlocksByRange | GetBlocksById, max_bytes: int
    ) -> Blocks:
        return Blocks(request_id=request.request_id, blocks=())  # it holds no blocks

    async def serve_light(self, request: LightRequest) -> LightAnswer:
        """Nothing to prove: it holds no chain."""
        answer = ANSWER_OF[type(request)]
        if answer is Finality:
            return Finality(
                request_id=request.request_id, certificate=None, error=LightError.NOTHING_NEWER
            )
        if answer is StateProofAnswer:
            return StateProofAnswer(
                request_id=request.request_id, proof=None, error=LightError.UNKNOWN_BLOCK
            )
        return TxProofAnswer(
            request_id=request.request_id,
            block_id=None,
            transaction=None,
            proof=None,
            error=LightError.NOT_FOUND,
        )

    async def prepare(self, batch: Sequence[tuple[Topic, bytes]]) -> None:
        check = self.batch_validator
        if check is None:
            return
        verdicts = await trio.to_thread.run_sync(check, batch)
        self._prepared.update(zip(batch, verdicts, strict=True))  # each is validated next

    async def validate(self, topic: Topic, data: bytes, from_peer: PeerId) -> Verdict:
        self.validated.append((topic, data, from_peer))
        verdict = self._prepared.pop((topic, data), None)
        return self.validator(topic, data) if verdict is None else verdict

    async def deliver(self, topic: Topic, data: bytes) -> None:
        message_id = compute_message_id(topic, data)
        self.delivered.append(Delivery(trio.current_time(), topic, message_id))
        self._arrival(message_id).set()

    async def import_blocks(self, blocks: tuple[Block, ...], from_peer: PeerId) -> ImportResult:
        return ImportResult(accepted=frozenset())

    def has(self, topic: Topic, data: bytes) -> bool:
        """True once the message was delivered here."""
        return self._arrival(compute_message_id(topic, data)).is_set()

    async def wait_delivered(self, topic: Topic, data: bytes) -> None:
        """Wait until the message has been delivered here."""
        await self._arrival(compute_message_id(topic, data)).wait()

    def _arrival(self, message_id: bytes) -> trio.Event:
        event = self._arrivals.get(message_id)
        if event is None:
            event = self._arrivals[message_id] = trio.Event()
        return event
