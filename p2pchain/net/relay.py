"""TCP relays between the nodes of a local testnet, so that its links can fail on demand.

Node ``a`` reaches node ``b`` only through the relay for the ordered pair ``(a, b)`` (its
bootnode for ``b``; testnet nodes announce no address of their own, so peer exchange cannot
route around the relays). Because each relay knows both ends, the owner can

* ``partition([0, 1], [2, 3])``: bytes between groups are held, as by a cut cable (open
  connections stall until `heal` or until the nodes' own timeouts close them) and new
  connections are refused at once, as by a firewall that rejects;
* ``set_delay(node, ms)``: every chunk to or from `node` arrives that much later (one way);
* ``set_loss(node, fraction)``: a chunk is lost with that probability and, as TCP makes
  loss look to applications, arrives one retransmission timeout later (200 ms or three
  one-way delays, doubling with each repeated loss), with everything behind it waiting.

Faults of both ends add up. Within one connection order is kept; throughput is bounded like
a TCP window: `WINDOW_CHUNKS` chunks of at most `CHUNK_BYTES` in flight per direction.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Final

import trio

from p2pchain.errors import ConfigError

CHUNK_BYTES: Final = 65_536
WINDOW_CHUNKS: Final = 16
MAX_CONNECTIONS_PER_LINK: Final = 16
"""Open connections through one relay; a newcomer beyond it is refused (a node needs one)."""
MIN_RETRANSMISSION_S: Final = 0.2
MAX_DELAY_MS: Final = 60_000


@dataclass(slots=True)
class LinkFaults:
    """The faults in force: a partition (groups of node indices) and per-node delay and loss."""

    nodes: int
    groups: tuple[frozenset[int], ...] = ()
    delay_ms: dict[int, int] = field(default_factory=dict)
    loss: dict[int, float] = field(default_factory=dict)

    def partition(self, groups: Sequence[Iterable[int]]) -> None:
        """Separate `groups`; nodes named in none of them form one more group.

        Raises:
            ConfigError: an unknown node, a node in two groups, or fewer than two groups.
        """
        sets = [frozenset(group) for group in groups]
        named = [index for group in sets for index in group]
        unknown = sorted(i for i in named if not 0 <= i < self.nodes)
        if unknown:
            raise ConfigError(f"no node {unknown[0]} (0..{self.nodes - 1})")
        if len(named) != len(set(named)):
            raise ConfigError("a node is in two groups")
        rest = frozenset(range(self.nodes)) - set(named)
        if rest:
            sets.append(rest)
        if len([group for group in sets if group]) < 2:
            raise ConfigError("a partition needs at least two groups")
        self.groups = tuple(group for group in sets if group)

    def heal(self) -> None:
        self.groups = ()

    def set_delay(self, node: int, delay_ms: int) -> None:
        self._check_node(node)
        if not 0 <= delay_ms <= MAX_DELAY_MS:
            raise ConfigError(f"delay must be 0..{MAX_DELAY_MS} ms, got {delay_ms}")
        self.delay_ms[node] = delay_ms

    def set_loss(self, node: int, fraction: float) -> None:
        self._check_node(node)
        if not (math.isfinite(fraction) and 0 <= fraction < 1):
            raise ConfigError(f"loss must be at least 0 % and below 100 %, got {fraction:.0%}")
        self.loss[node] = fraction

    def is_cut(self, a: int, b: int) -> bool:
        return any((a in group) != (b in group) for group in self.groups)

    def one_way_delay_s(self, a: int, b: int) -> float:
        return (self.delay_ms.get(a, 0) + self.delay_ms.get(b, 0)) / 1000

    def loss_between(self, a: int, b: int) -> float:
        return 1 - (1 - self.loss.get(a, 0.0)) * (1 - self.loss.get(b, 0.0))

    def _check_node(self, node: int) -> None:
        if not 0 <= node < self.nodes:
            raise ConfigError(f"no node {node} (0..{self.nodes - 1})")


def relay_port(base_port: int, nodes: int, source: int, target: int) -> int:
    """The loopback port on which node `source` reaches node `target`: after the nodes' own
    TCP and WebSocket ports (``base_port + 2 * i`` and ``+ 1``)."""
    return base_port + 2 * nodes + source * nodes + target


@dataclass(slots=True)
class RelayStatistics:
    connections: int = 0
    refused: int = 0
    chunks: int = 0
    losses: int = 0


class Relays:
    """The relays of a testnet of ``len(targets)`` nodes; `targets[b]` is node b's TCP
    listener as (host, port)."""

    def __init__(
        self,
        targets: Sequence[tuple[str, int]],
        port_of: Callable[[int, int], int],
        *,
        seed: int | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.targets = list(targets)
        self.faults = LinkFaults(len(targets))
        self.statistics = RelayStatistics()
        self._port_of = port_of
        self._host = host
        self._rng = random.Random(seed)
        self._changed = trio.Event()
        self._open: dict[tuple[int, int], int] = {}

    def changed(self) -> None:
        """Wake every stalled pump: call after changing `faults`."""
        self._changed.set()
        self._changed = trio.Event()

    def address(self, source: int, target: int) -> str:
        return f"tcp://{self._host}:{self._port_of(source, target)}"

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen for every ordered pair of nodes until cancelled.

        Raises:
            OSError: a relay port is taken (named in the message); no relay is left open.
        """
        opened: list[tuple[int, int, list[trio.SocketListener]]] = []
        try:
            for source in range(len(self.targets)):
                for target in range(len(self.targets)):
                    if source != target:
                        opened.append((source, target, await self._open_listener(source, target)))
            async with trio.open_nursery() as nursery:
                for source, target, listeners in opened:
                    handler = partial(self._relay, source, target)
                    nursery.start_soon(trio.serve_listeners, handler, listeners)
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                for _, _, listeners in opened:
                    for listener in listeners:
                        await listener.aclose()

    async def _open_listener(self, source: int, target: int) -> list[trio.SocketListener]:
        port = self._port_of(source, target)
        try:
            return await trio.open_tcp_listeners(port, host=self._host)
        except OSError as exc:
            raise OSError(
                exc.errno, f"relay {source}->{target}: {self._host}:{port} is in use"
            ) from exc

    async def _relay(self, source: int, target: int, inbound: trio.SocketStream) -> None:
        link = (source, target)
        async with inbound:
            if self.faults.is_cut(source, target) or (
                self._open.get(link, 0) >= MAX_CONNECTIONS_PER_LINK
            ):
                self.statistics.refused += 1
                return
            host, port = self.targets[target]
            try:
                outbound = await trio.open_tcp_stream(host, port)
            except OSError:
                self.statistics.refused += 1
                return  # the node is down: the dialer sees the connection close
            self._open[link] = self._open.get(link, 0) + 1
            self.statistics.connections += 1
            try:
                async with outbound, trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, inbound, outbound, source, target, nursery)
                    nursery.start_soon(self._pump, outbound, inbound, target, source, nursery)
            finally:
                self._open[link] -= 1

    async def _pump(
        self,
        reader: trio.abc.Stream,
        writer: trio.abc.Stream,
        source: int,
        target: int,
        connection: trio.Nursery,
    ) -> None:
        """Carry one direction; when it ends (EOF or an error) the whole connection ends."""
        send, receive = trio.open_memory_channel[tuple[float, bytes]](WINDOW_CHUNKS)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._deliver, receive, writer, source, target, connection)
            async with send:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    while chunk := await reader.receive_some(CHUNK_BYTES):
                        await self._wait_open(source, target)
                        await send.send((self._release_time(source, target), bytes(chunk)))
        connection.cancel_scope.cancel()

    async def _deliver(
        self,
        receive: trio.MemoryReceiveChannel[tuple[float, bytes]],
        writer: trio.abc.Stream,
        source: int,
        target: int,
        connection: trio.Nursery,
    ) -> None:
        async with receive:
            try:
                async for release, chunk in receive:
                    await trio.sleep_until(release)
                    await self._wait_open(source, target)
                    await writer.send_all(chunk)
                    self.statistics.chunks += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                connection.cancel_scope.cancel()

    async def _wait_open(self, source: int, target: int) -> None:
        while self.faults.is_cut(source, target):
            await self._changed.wait()

    def _release_time(self, source: int, target: int) -> float:
        """When a chunk read now leaves the relay: the links' delay plus a retransmission
        timeout per simulated loss."""
        faults = self.faults
        delay = faults.one_way_delay_s(source, target)
        loss = faults.loss_between(source, target)
        timeout = max(MIN_RETRANSMISSION_S, 3 * delay)
        while loss and self._rng.random() < loss:
            self.statistics.losses += 1
            delay += timeout
            timeout *= 2
        return trio.current_time() + delay
