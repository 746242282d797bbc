"""Honest service under hostile floods: an honest peer's ping round trip while 8 peers flood.

The node under test is a real ``p2pchain node`` OS process, set up by the same code as
``p2pchain init --nodes 1`` (every ``127.0.0.1:<port>`` in its node.toml moved to a free port),
so that its memory can be read from ``/proc/<pid>/status`` while it is under attack. Every
window (the quiet baseline and each flood) gets a fresh node process on a copy of the
initialised node directory, so that no flood inherits another's memory, scores or bans.

- An honest prober (this process, its own small trio loop around the library's sans-IO
  `PeerConnection`) completes the real handshake with a Hello for the node's chain and genesis
  and sends a Ping every 100 ms, timing each round trip. A Ping is answered by the node's
  reader task for that link, so the round trip is how long the node's event loop makes an
  honest peer wait.
- 8 attackers (one separate process, each attacker its own TCP connection from its own
  loopback address, driven by its own loop, not the node's `Swarm`) handshake with a fresh
  node key each, then send frames of one kind as fast as the socket takes them. When the node
  drops or refuses one, it reconnects with a fresh key (identities are free); every drop is
  counted by the reason the node gave.
- Scenarios, after a quiet baseline with no attacker:

  - ``Blocks``: unsolicited `Blocks` answers of the maximum size (`MAX_BLOCKS_RESPONSE_BYTES`),
    made of real signed blocks of payments (`bench_sync.build_chain`), repeated to fill the
    frame, so that decoding one costs what decoding a real sync answer costs;
  - ``Publish``: block-topic gossip of the maximum gossip size (`MAX_GOSSIP_DATA_BYTES`): a
    block on the node's genesis carrying real payments, with a forged signature and a fresh
    body root in every frame (so no seen cache or block id cache short-cuts the decoding);
  - ``IHave``: the maximum number of fresh random message ids in every frame;
  - ``junk``: a frame header announcing a `Publish` body of its maximum size (the largest
    frame a peer may send unasked) followed by that many random bytes, inside a valid
    encrypted channel.

Figures, per scenario:

- honest ping p99 during the flood as a ratio to the quiet p99 measured in the same run
  (p50, lost pings and the time to get back to quiet latency in the detail). A ping never
  answered counts as infinitely late. Goal (issue 11, Bitcoin Core's bar): p99 under 2 s and
  the prober still connected.
- node peak RSS during the flood (``VmHWM``, reset at the start of each flood through
  ``/proc/<pid>/clear_refs``) as a ratio to the quiet RSS. Goal, "bounded": the peak grows by
  at most 64 MiB plus two maximum frames per attacker (one buffered, one being decoded).
  A flood that takes the node over `RSS_CAP_MIB` is stopped early (and fails the goal).

Quick mode (the smoke test): 2 attackers, frames of a few kB, 1 s per scenario.

Run alone: ``python -m benchmarks.bench_flood [--quick]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import Any

import trio

from benchmarks.bench_sync import build_chain
from benchmarks.harness import Report, run_alone
from p2pchain.cli.config import load_network, load_node
from p2pchain.cli.network import init_network
from p2pchain.errors import DecodeError, RemoteProtocolError
from p2pchain.ledger.block import Block
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.genesis import genesis_block
from p2pchain.ledger.header import BlockHeader
from p2pchain.ledger.tx import Transaction
from p2pchain.ledger.types import BlockId, Hash32, PublicKey
from p2pchain.params import ChainParams
from p2pchain.protocol.connection import (
    NEED_DATA,
    ConnectionClosed,
    ConnectionConfig,
    ConnectionKeys,
    FrameToDecode,
    HandshakeComplete,
    MessageReceived,
    PeerConnection,
    State,
)
from p2pchain.protocol.framing import LENGTH_BYTES, encode_frame
from p2pchain.protocol.messages import (
    MAX_BLOCKS_PER_REQUEST,
    MAX_BLOCKS_RESPONSE_BYTES,
    MAX_GOSSIP_DATA_BYTES,
    MAX_IHAVE_IDS,
    MAX_PAYLOAD_BYTES,
    MESSAGE_ID_BYTES,
    Blocks,
    DisconnectReason,
    IHave,
    Ping,
    Pong,
    Publish,
    Topic,
    decode_message,
)
from p2pchain.testing.link import RawConnection, connection_keys, make_hello

PING_INTERVAL_S = 0.1
PING_GOAL_S = 2.0
RSS_ALLOWANCE_MIB = 64
RSS_CAP_MIB = 4_096
"""A flood that takes the node past this is stopped (the machine is shared)."""
RSS_SAMPLE_S = 0.1
CALM_TIMES_QUIET = 5
CALM_FLOOR_S = 0.02
QUIET_CALM_S = 0.2
"""After a flood the node counts as serving again once pings return within this many times
the quiet p99 (at least the floor)."""
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0
HANDSHAKE_TIMEOUT_S = 10.0
RECONNECT_PAUSE_S = 0.05
RECEIVE_BYTES = 1 << 16
SEND_PIECE_BYTES = 1 << 20
DETAIL_CHARS = 48
PROBER_SEED = 0xF100D
PROBER_ADDRESS = "127.0.0.1"
PING_NONCE_BASE = 2**40
"""Prober nonces start here, apart from the connection's own (disabled) liveness pings."""
NO_TIMERS = ConnectionConfig(
    handshake_timeout=HANDSHAKE_TIMEOUT_S, ping_interval=1e9, pong_timeout=1e9
)
"""The bench's links never ping on their own: the prober times its own pings, and an attacker
must not give up on a slow node."""
BANS = frozenset({DisconnectReason.LOW_SCORE, DisconnectReason.BANNED})


def attacker_address(index: int) -> str:
    """Each attacker connects from its own loopback address, in its own /16."""
    return f"127.{10 + index}.0.1"


@dataclass(frozen=True, slots=True)
class Sizes:
    """What the attackers send: frame sizes (bytes, or ids for IHave)."""

    blocks_bytes: int
    gossip_bytes: int
    ihave_ids: int
    junk_bytes: int


@dataclass(frozen=True, slots=True)
class Setup:
    attackers: int
    quiet_s: float
    flood_s: float
    settle_timeout_s: float
    """After a flood: how long to wait for the node to answer pings at quiet latency again."""
    sizes: Sizes
    settle_s: float
    """After the prober's handshake, before the window starts (the node's first status and
    gossip exchange)."""


FULL_SIZES = Sizes(
    blocks_bytes=MAX_BLOCKS_RESPONSE_BYTES,
    gossip_bytes=MAX_GOSSIP_DATA_BYTES,
    ihave_ids=MAX_IHAVE_IDS,
    junk_bytes=MAX_PAYLOAD_BYTES[Publish.TYPE],
)
QUICK_SIZES = Sizes(blocks_bytes=32_768, gossip_bytes=8_192, ihave_ids=50, junk_bytes=8_192)
QUICK = Setup(2, 1.0, 1.0, 5.0, QUICK_SIZES, settle_s=0.2)
FULL = Setup(8, 10.0, 25.0, 45.0, FULL_SIZES, settle_s=0.5)
SCENARIOS = ("blocks", "publish", "ihave", "junk")


@dataclass(frozen=True, slots=True)
class Target:
    """The node under test, as a peer on the network sees it."""

    host: str
    port: int
    chain_id: int
    genesis: BlockId
    proposer: PublicKey
    """The genesis validator's key: the forged gossip blocks name it as their proposer."""


# -- frames ---------------------------------------------------------------------------------


class FloodFrames:
    """Plaintext frames of each scenario, built once; every call of a maker returns one frame.

    Makers are cheap (a copy and a few bytes changed): the attackers share two cores with the
    node, and what they spend building frames is time the node gets for free.
    """

    def __init__(self, target: Target, sizes: Sizes) -> None:
        self.sizes = sizes
        per_block = sizes.blocks_bytes // MAX_BLOCKS_PER_REQUEST
        _, chain = build_chain(2, max(1, per_block // 270 + 1))
        self.chain = chain
        self._blocks, self._blocks_count = self._build_blocks(chain, sizes.blocks_bytes)
        payments = [tx for block in chain for tx in block.transactions[1:]]
        self._publish, self._publish_root = self._build_publish(target, payments, sizes)
        self._ihave, self._ihave_ids = self._build_ihave(sizes.ihave_ids)
        junk_body = bytes([Publish.TYPE]) + os.urandom(sizes.junk_bytes)
        self._junk = len(junk_body).to_bytes(LENGTH_BYTES, "big") + junk_body
        self._counter = 0

    @staticmethod
    def _build_blocks(chain: list[Block], limit: int) -> tuple[bytes, int]:
        blocks: list[Block] = []
        total = 32  # list headers and the request id
        while len(blocks) < MAX_BLOCKS_PER_REQUEST:
            block = chain[len(blocks) % len(chain)]
            if total + len(block.encoded) > limit:
                break
            blocks.append(block)
            total += len(block.encoded)
        if not blocks:
            raise ValueError(f"no block fits in {limit} bytes")
        return encode_frame(Blocks(request_id=1, blocks=tuple(blocks))), len(blocks)

    @staticmethod
    def _build_publish(
        target: Target, payments: list[Transaction], sizes: Sizes
    ) -> tuple[bytearray, int]:
        """A block on the node's genesis, full of real payments (repeated), forged signature."""
        marker = Hash32(os.urandom(32))
        header = BlockHeader(
            parent=target.genesis,
            height=1,
            slot=1,
            proposer=target.proposer,
            body_root=marker,
            state_root=marker,
        )
        overhead = len(Block(header=header, signature=bytes(64)).encoded) + 16
        txs: list[Transaction] = []
        total = overhead
        while True:
            tx = payments[len(txs) % len(payments)]
            if txs and total + len(tx.encoded) > sizes.gossip_bytes:
                break
            txs.append(tx)
            total += len(tx.encoded)
        block = Block(header=header, signature=os.urandom(64), transactions=tuple(txs))
        frame = bytearray(encode_frame(Publish(topic=Topic.BLOCK, data=block.encoded)))
        return frame, frame.index(marker)

    @staticmethod
    def _build_ihave(count: int) -> tuple[bytearray, int]:
        ids = [os.urandom(MESSAGE_ID_BYTES) for _ in range(count)]
        frame = bytearray(encode_frame(IHave(topic=Topic.BLOCK, message_ids=tuple(ids))))
        start = frame.index(ids[0]) - 1  # each id is a one-byte string header and 20 bytes
        return frame, start

    def describe(self) -> dict[str, str]:
        """What one frame of each scenario is, for the report."""
        blocks = len(self._blocks) - LENGTH_BYTES
        payments = len(self.chain[0].transactions) - 1
        count = self._blocks_count
        return {
            "blocks": f"Blocks {_mib(blocks)} ({count} real blocks of {payments} payments)",
            "publish": f"Publish {_mib(len(self._publish) - LENGTH_BYTES)} block-shaped",
            "ihave": f"IHave {self.sizes.ihave_ids} ids ({_mib(len(self._ihave) - LENGTH_BYTES)})",
            "junk": f"junk {_mib(len(self._junk) - LENGTH_BYTES)} (as Publish)",
        }

    def frame_bytes(self, kind: str) -> int:
        """Size of one frame of `kind`."""
        return len(self.maker(kind)()) - LENGTH_BYTES

    def maker(self, kind: str) -> Callable[[], bytes]:
        """A function returning the next frame of `kind`."""
        return {
            "blocks": lambda: self._blocks,
            "publish": self._next_publish,
            "ihave": self._next_ihave,
            "junk": lambda: self._junk,
        }[kind]

    def _next_publish(self) -> bytes:
        self._counter += 1
        start = self._publish_root
        self._publish[start : start + 8] = self._counter.to_bytes(8, "big")
        return bytes(self._publish)

    def _next_ihave(self) -> bytes:
        frame, start, count = self._ihave, self._ihave_ids, self.sizes.ihave_ids
        fresh = os.urandom(MESSAGE_ID_BYTES * count)
        stride = MESSAGE_ID_BYTES + 1
        end = start + stride * count
        for offset in range(MESSAGE_ID_BYTES):
            frame[start + 1 + offset : end : stride] = fresh[offset::MESSAGE_ID_BYTES]
        return bytes(frame)


def _mib(size: int) -> str:
    if size >= 1 << 20:
        return f"{size / (1 << 20):.2f} MiB"
    return f"{size / 1024:.1f} KiB"


# -- a link of our own ----------------------------------------------------------------------


def _fresh_keys() -> ConnectionKeys:
    return ConnectionKeys(
        identity=SecretKey.from_entropy(os.urandom(32)),
        noise_static=os.urandom(32),
        noise_ephemeral=os.urandom(32),
    )


class AttackerConnection(RawConnection):
    """An attacker's link: it writes frames in pieces, so it answers pings between frames.

    The connection itself would queue a Pong the moment it reads a Ping, which could land in
    the middle of a frame being written and garble the stream.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pings: list[int] = []

    def _on_ping(self, ping: Ping) -> None:
        self.pings.append(ping.nonce)

    def answer_pings(self) -> None:
        """Queue the Pongs owed (call between frames)."""
        for nonce in self.pings:
            self.send(Pong(nonce=nonce))
        self.pings.clear()


def _connection(target: Target, keys: ConnectionKeys, *, attacker: bool) -> PeerConnection:
    hello = make_hello(keys.identity, chain_id=target.chain_id, genesis=target.genesis)
    cls = AttackerConnection if attacker else PeerConnection
    return cls(initiator=True, keys=keys, hello=hello, now=trio.current_time(), config=NO_TIMERS)


class _Link:
    """A `PeerConnection` over a trio stream: a reader, and sends under one lock."""

    def __init__(self, stream: trio.SocketStream, conn: PeerConnection) -> None:
        self.stream = stream
        self.conn = conn
        self.active = trio.Event()
        self.closed: ConnectionClosed | None = None
        self.ended = "reset"
        """How the link ended: a DisconnectReason name, "closed" (no reason) or "reset"."""
        self.send_lock = trio.Lock()
        """Held while bytes taken from the connection are sent, so they go out in order."""

    async def flush(self) -> None:
        """Send what the connection has queued."""
        async with self.send_lock:
            if data := self.conn.data_to_send():
                await self.stream.send_all(data)

    async def read(self, on_message: Callable[[MessageReceived], None], *, reply: bool) -> None:
        """Read until the link ends; `reply`: also send what the connection queues (pongs)."""
        conn = self.conn
        try:
            while True:
                while (event := conn.next_event()) is not NEED_DATA:
                    if isinstance(event, HandshakeComplete):
                        self.active.set()
                    elif isinstance(event, MessageReceived):
                        on_message(event)
                    elif isinstance(event, FrameToDecode):
                        try:
                            conn.receive_decoded(decode_message(event.body))
                        except DecodeError as exc:
                            conn.receive_decoded(exc)
                    else:
                        self.closed = event
                        self.ended = "closed" if event.reason is None else event.reason.name
                        return
                if reply or conn.state is not State.ACTIVE:
                    await self.flush()
                deadline = conn.get_timer()
                with trio.move_on_at(math.inf if deadline is None else deadline):
                    conn.receive_data(await self.stream.receive_some(RECEIVE_BYTES))
                conn.handle_timer(trio.current_time())
        except RemoteProtocolError as exc:
            self.ended = f"our error: {exc}"
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self.ended = "reset"


# -- attackers (a process of their own) -----------------------------------------------------


@dataclass
class FloodStats:
    """What the attackers of one scenario did and what the node did to them."""

    connects: int = 0
    connect_failures: int = 0
    handshakes: int = 0
    frames: int = 0
    bytes_sent: int = 0
    drops: Counter[str] = field(default_factory=Counter)
    """Links ended by the node after the handshake, by the reason it gave."""
    refusals: Counter[str] = field(default_factory=Counter)
    """Links ended before the handshake completed, by reason."""
    details: Counter[str] = field(default_factory=Counter)
    """The node's Disconnect details (truncated), by reason."""

    @property
    def bans(self) -> int:
        return sum(self.drops[r.name] + self.refusals[r.name] for r in BANS)

    def summary(self, seconds: float) -> str:
        """One line for the report; `seconds` is the length of the flood."""
        drops = sum(self.drops.values())
        reasons = ", ".join(f"{n} {reason.lower()}" for reason, n in self.drops.most_common())
        refused = sum(self.refusals.values())
        rate = self.bytes_sent / seconds / (1 << 20)
        text = f"{self.frames} frames sent whole, {rate:.1f} MiB/s; "
        text += f"{drops} dropped ({reasons or 'none'}), {self.bans} banned"
        if refused or self.connect_failures:
            why = ", ".join(f"{n} {reason.lower()}" for reason, n in self.refusals.most_common())
            text += f"; {refused + self.connect_failures} refused ({why}"
            text += f", {self.connect_failures} at connect)" if self.connect_failures else ")"
        if self.details:
            detail, count = self.details.most_common(1)[0]
            text += f'; most said "{detail}" ({count})'
        return text


async def _attack_once(
    target: Target, address: str, next_frame: Callable[[], bytes], stats: FloodStats
) -> None:
    """One connection: handshake with a fresh key, then flood until the node ends the link."""
    try:
        stream = await trio.open_tcp_stream(target.host, target.port, local_address=address)
    except OSError:
        stats.connect_failures += 1
        await trio.sleep(RECONNECT_PAUSE_S)
        return
    stats.connects += 1
    conn = _connection(target, _fresh_keys(), attacker=True)
    assert isinstance(conn, AttackerConnection)
    link = _Link(stream, conn)
    async with stream, trio.open_nursery() as nursery:

        async def reader() -> None:
            await link.read(lambda _: None, reply=False)
            nursery.cancel_scope.cancel()

        nursery.start_soon(reader)
        with trio.move_on_after(HANDSHAKE_TIMEOUT_S) as waiting:
            await link.active.wait()
        if waiting.cancelled_caught:
            link.ended = "HANDSHAKE_TIMEOUT"
        elif link.active.is_set():
            stats.handshakes += 1
            try:
                while conn.state is State.ACTIVE:
                    conn.answer_pings()
                    frame = next_frame()
                    for start in range(0, len(frame), SEND_PIECE_BYTES):
                        # encrypt only what the socket takes: a node that hangs up after the
                        # header costs us little CPU (the machine is shared with it)
                        async with link.send_lock:
                            conn.send_raw(frame[start : start + SEND_PIECE_BYTES])
                            data = conn.data_to_send()
                            await stream.send_all(data)
                        stats.bytes_sent += len(data)
                    stats.frames += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            await trio.sleep(1.0)  # the node ended the link: the reader ends us with its reason
        nursery.cancel_scope.cancel()
    if link.closed is not None and link.closed.detail:
        detail = link.closed.detail[:DETAIL_CHARS].decode(errors="replace")
        stats.details[f"{link.ended}: {detail}"] += 1
    if link.active.is_set():
        stats.drops[link.ended] += 1
    else:
        stats.refusals[link.ended] += 1
        await trio.sleep(RECONNECT_PAUSE_S)


async def _attacker(
    target: Target, address: str, next_frame: Callable[[], bytes], stats: FloodStats
) -> None:
    while True:
        await _attack_once(target, address, next_frame, stats)
        await trio.lowlevel.checkpoint()


async def _flood(
    target: Target, frames: FloodFrames, kind: str, attackers: int, stop: ProcessEvent
) -> FloodStats:
    stats = FloodStats()
    next_frame = frames.maker(kind)
    async with trio.open_nursery() as nursery:
        for index in range(attackers):
            nursery.start_soon(_attacker, target, attacker_address(index), next_frame, stats)
        await trio.to_thread.run_sync(stop.wait, abandon_on_cancel=True)
        nursery.cancel_scope.cancel()
    return stats


def attack_process(
    pipe: Connection, stop: ProcessEvent, network: Target, sizes: Sizes, attackers: int
) -> None:
    """The attackers' process: build the frames for `network`, then run each flood the pipe
    asks for (a kind and the node to flood) until it sends None."""
    frames = FloodFrames(network, sizes)
    pipe.send({kind: (text, frames.frame_bytes(kind)) for kind, text in frames.describe().items()})
    while (command := pipe.recv()) is not None:
        kind, target = command
        pipe.send(trio.run(_flood, target, frames, kind, attackers, stop))


# -- the honest prober ----------------------------------------------------------------------


class Prober:
    """An honest peer that pings the node every `PING_INTERVAL_S` and times the pongs.

    A ping sent while the link is down is recorded too, and is never answered.
    """

    def __init__(self, target: Target) -> None:
        self.target = target
        self.sent: dict[int, float] = {}
        self.rtt: dict[int, float] = {}
        self.drops: list[tuple[float, str]] = []
        self._nonce = PING_NONCE_BASE
        self._link: _Link | None = None
        self._attempt = 0
        self.connected = trio.Event()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._keep_connected)
            await self.connected.wait()
            while True:
                await self._ping()
                await trio.sleep(PING_INTERVAL_S)

    async def _ping(self) -> None:
        self._nonce += 1
        self.sent[self._nonce] = trio.current_time()
        link = self._link
        if link is None or link.conn.state is not State.ACTIVE:
            return
        link.conn.send(Ping(nonce=self._nonce))
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await link.flush()  # a failure ends the reader, which notes the drop

    def _on_message(self, event: MessageReceived) -> None:
        message = event.message
        if isinstance(message, Pong) and message.nonce in self.sent:
            self.rtt[message.nonce] = trio.current_time() - self.sent[message.nonce]

    async def _keep_connected(self) -> None:
        while True:
            self._attempt += 1
            try:
                stream = await trio.open_tcp_stream(
                    self.target.host, self.target.port, local_address=PROBER_ADDRESS
                )
            except OSError:
                await trio.sleep(0.1)
                continue
            keys = connection_keys(PROBER_SEED, self._attempt)
            link = _Link(stream, _connection(self.target, keys, attacker=False))
            async with stream, trio.open_nursery() as nursery:

                async def mark_active(link: _Link = link) -> None:
                    await link.active.wait()
                    self._link = link
                    self.connected.set()

                nursery.start_soon(mark_active)
                await link.read(self._on_message, reply=True)
                nursery.cancel_scope.cancel()
            if self._link is link:
                self.drops.append((trio.current_time(), link.ended))
            self._link = None
            await trio.sleep(0.1)

    def window(self, start: float, end: float) -> list[float]:
        """Round trips (s) of the pings sent in [start, end); unanswered ones are infinite."""
        return sorted(
            self.rtt.get(nonce, math.inf)
            for nonce, sent in self.sent.items()
            if start <= sent < end
        )

    def drops_between(self, start: float, end: float) -> list[str]:
        return [reason for at, reason in self.drops if start <= at < end]

    async def wait_calm(self, threshold: float, patience: float, since: float) -> bool:
        """Wait until the 3 latest pings old enough to judge came back within `threshold`, the
        latest sent after `since` (the node answers in order: every earlier ping is settled);
        False if that did not happen within `patience` seconds."""
        start = trio.current_time()
        while (now := trio.current_time()) - start < patience:
            judged = [n for n, sent in self.sent.items() if sent <= now - threshold][-3:]
            if (
                len(judged) == 3
                and self.sent[judged[-1]] >= since
                and all(self.rtt.get(n, math.inf) <= threshold for n in judged)
            ):
                return True
            await trio.sleep(PING_INTERVAL_S)
        return False


# -- the node process -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _status_kib(pid: int, field_name: str) -> int:
    """A ``VmRSS``-style field of /proc/<pid>/status in KiB (0 once the process is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux clear_refs); False if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Network:
    """What ``p2pchain init --nodes 1`` wrote, before any node ran on it."""

    node_dir: Path
    """The initialised node directory (node.toml, keys), copied for every node started."""
    target: Target
    """The node as a peer sees it (the port is each started node's own)."""


def init_flood_network(root: Path) -> Network:
    """``p2pchain init --nodes 1`` (the same code) into `root`."""
    layout = init_network(
        root,
        nodes=1,
        params=ChainParams(slot_ms=1_000),
        base_port=30_300,
        rpc_port=8_645,
        wallets=1,
        genesis_delay_s=1.0,
    )
    network = load_network(layout.network)
    target = Target(
        host="127.0.0.1",
        port=0,
        chain_id=network.params.chain_id,
        genesis=genesis_block(network.genesis, network.params).block_id,
        proposer=network.genesis.validators[0].key,
    )
    return Network(layout.nodes[0].parent, target)


@dataclass(frozen=True, slots=True)
class NodeUnderTest:
    process: subprocess.Popen[bytes]
    target: Target
    log: Path


def start_node(network: Network, name: str) -> NodeUnderTest:
    """A fresh ``p2pchain node`` process: a copy of the initialised node directory (no data
    yet, so no memory of earlier floods), every ``127.0.0.1:<port>`` moved to a free port."""
    directory = network.node_dir.parent / name
    shutil.copytree(network.node_dir, directory)
    config = directory / "node.toml"
    text = re.sub(r"127\.0\.0\.1:\d+", lambda _: f"127.0.0.1:{_free_port()}", config.read_text())
    config.write_text(text)
    tcp = next(a for a in load_node(config).listen if a.startswith("tcp://"))
    target = dataclasses.replace(network.target, port=int(tcp.rsplit(":", 1)[1]))
    log = directory / "node.log"
    with log.open("wb") as output:
        command = [sys.executable, "-m", "p2pchain", "node", "--config", str(config)]
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    return NodeUnderTest(process, target, log)


def stop_node(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _bans_in_log(log: Path, start: int, end: int | None = None) -> int:
    """Peers the node's log says it banned, between two byte offsets of the log."""
    with log.open("rb") as file:
        file.seek(start)
        data = file.read() if end is None else file.read(end - start)
    return len(set(re.findall(r"peer ([0-9a-f]+) banned", data.decode(errors="replace"))))


# -- one run --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sampled:
    """The node process over one window."""

    peak_rss_kib: int
    end_rss_kib: int
    path_kib: list[int]
    """RSS at each quarter of the window (growing, or a plateau?)."""
    cpu_cores: float
    """Node CPU seconds per wall second."""
    attacker_cores: float
    """The same for the attackers' process (it shares the machine with the node)."""
    capped: bool
    """The window was cut short at `RSS_CAP_MIB`."""
    end: float
    """trio time at the end of the window."""


@dataclass(frozen=True, slots=True)
class Window:
    """One measured period on a fresh node: the quiet baseline or one flood."""

    kind: str
    rtts: list[float]
    node: Sampled
    prober_drops: list[str]
    stats: FloodStats | None = None
    recovered_s: float = 0.0
    settled_rss_kib: int = 0
    """Node RSS once pings were back to quiet latency after the flood."""
    load: float = 0.0
    logged_bans: tuple[int, int] = (0, 0)
    """Peers the node's own log reports banned during the flood, and after it."""
    exit_code: int | None = None
    """Set if the node process ended by itself."""
    tracebacks: int = 0
    """Tracebacks in the node's log."""

    @property
    def lost(self) -> int:
        return sum(math.isinf(x) for x in self.rtts)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a sorted list."""
    if not sorted_values:
        return math.inf
    return sorted_values[max(0, math.ceil(fraction * len(sorted_values)) - 1)]


@dataclass(frozen=True, slots=True)
class FloodRun:
    quiet: Window
    floods: list[Window]
    frames: dict[str, tuple[str, int]]
    attackers: int


def _alive_rss_kib(process: subprocess.Popen[bytes]) -> int:
    return 0 if process.poll() is not None else _status_kib(process.pid, "VmRSS")


async def _sample(
    node: NodeUnderTest, attackers: int, seconds: float, stop: Callable[[], None] | None
) -> Sampled:
    """Watch the node for `seconds` (less if it exits or passes the RSS cap), then `stop`.

    `attackers` is the pid of the attackers' process.
    """
    pid = node.process.pid
    reset = _reset_peak(pid)
    cpu, attackers_cpu = _cpu_seconds(pid), _cpu_seconds(attackers)
    start = trio.current_time()
    samples = [_status_kib(pid, "VmRSS")]
    capped = False
    while trio.current_time() - start < seconds and node.process.poll() is None:
        await trio.sleep(RSS_SAMPLE_S)
        samples.append(_alive_rss_kib(node.process))
        if samples[-1] > RSS_CAP_MIB * 1024:
            capped = True
            break
    end = trio.current_time()
    if stop is not None:
        stop()
    path = [samples[min(len(samples) - 1, len(samples) * q // 4)] for q in (1, 2, 3, 4)]
    attacker_cores = (_cpu_seconds(attackers) - attackers_cpu) / (end - start)
    if node.process.poll() is not None:
        return Sampled(max(samples), 0, path, 0.0, attacker_cores, capped, end)
    peak = max(max(samples), _status_kib(pid, "VmHWM") if reset else 0)
    cores = (_cpu_seconds(pid) - cpu) / (end - start)
    return Sampled(peak, _status_kib(pid, "VmRSS"), path, cores, attacker_cores, capped, end)


@dataclass(frozen=True, slots=True)
class _Attackers:
    """The main process's handle on the attackers' process."""

    pipe: Connection
    stop: ProcessEvent
    pid: int


async def _scenario(
    setup: Setup,
    network: Network,
    kind: str,
    attackers: _Attackers,
    stopping: list[NodeUnderTest],
    calm: float,
) -> Window:
    """Start a fresh node, connect the prober, measure one window (`kind` "quiet": no flood),
    wait for pings to come back within `calm` seconds, and ask the node to stop (it joins
    `stopping`: its shutdown overlaps the next node's start)."""
    node = start_node(network, kind)
    try:
        prober = Prober(node.target)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(prober.run)
            with trio.fail_after(READY_TIMEOUT_S):
                await prober.connected.wait()
            await trio.sleep(setup.settle_s)
            load = os.getloadavg()[0]
            log_start = node.log.stat().st_size
            start = trio.current_time()
            stats = None
            if kind == "quiet":
                sampled = await _sample(node, attackers.pid, setup.quiet_s, None)
            else:
                print(f"  flood {kind} x {setup.attackers} ...", flush=True)
                attackers.stop.clear()
                attackers.pipe.send((kind, node.target))
                sampled = await _sample(node, attackers.pid, setup.flood_s, attackers.stop.set)
                stats = await trio.to_thread.run_sync(attackers.pipe.recv)
            log_end = node.log.stat().st_size
            alive = node.process.poll() is None
            calmed = alive and await prober.wait_calm(calm, setup.settle_timeout_s, sampled.end)
            now = trio.current_time()
            window = Window(
                kind,
                prober.window(start, sampled.end),
                sampled,
                prober.drops_between(start, now),
                stats,
                now - sampled.end if calmed else math.inf,
                _alive_rss_kib(node.process),
                load,
                (_bans_in_log(node.log, log_start, log_end), _bans_in_log(node.log, log_end)),
                node.process.poll(),
            )
            nursery.cancel_scope.cancel()
    finally:
        if node.process.poll() is None:
            node.process.send_signal(signal.SIGINT)
        stopping.append(node)
    if window.exit_code is not None:
        log = node.log.read_text(errors="replace")
        print(f"  the node exited ({window.exit_code}); its log ends with:\n{log[-3000:]}")
    return window


def _tracebacks(node: NodeUnderTest) -> int:
    """Stop `node` (if it is still stopping) and count the tracebacks in its log."""
    stop_node(node.process)
    return node.log.read_text(errors="replace").count("Traceback")


async def _run(setup: Setup, root: Path) -> FloodRun:
    network = init_flood_network(root / "network")
    context = multiprocessing.get_context("spawn")
    pipe, child_pipe = context.Pipe()
    stop = context.Event()
    process = context.Process(
        target=attack_process,
        args=(child_pipe, stop, network.target, setup.sizes, setup.attackers),
        daemon=True,
    )
    process.start()
    child_pipe.close()
    stopping: list[NodeUnderTest] = []
    try:
        with trio.fail_after(READY_TIMEOUT_S):
            frames = await trio.to_thread.run_sync(pipe.recv, abandon_on_cancel=True)
        attackers = _Attackers(pipe, stop, process.pid or 0)
        windows = [await _scenario(setup, network, "quiet", attackers, stopping, QUIET_CALM_S)]
        quiet_p99 = percentile([x for x in windows[0].rtts if math.isfinite(x)], 0.99)
        calm = max(CALM_FLOOR_S, CALM_TIMES_QUIET * quiet_p99)
        for kind in SCENARIOS:
            windows.append(await _scenario(setup, network, kind, attackers, stopping, calm))
        tracebacks = [_tracebacks(node) for node in stopping]
    finally:
        for node in stopping:
            stop_node(node.process)
        stop.set()
        if process.is_alive():
            with contextlib.suppress(OSError):
                pipe.send(None)
        process.join(STOP_GRACE_S)
        if process.is_alive():
            process.terminate()
            process.join()
    quiet, *floods = (
        dataclasses.replace(window, tracebacks=count)
        for window, count in zip(windows, tracebacks, strict=True)
    )
    return FloodRun(quiet, floods, frames, setup.attackers)


# -- report ---------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    if math.isinf(seconds):
        return "never"
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def run(quick: bool = False) -> Report:
    report = Report()
    setup = QUICK if quick else FULL
    print("floods", flush=True)
    with tempfile.TemporaryDirectory(prefix="p2pchain-flood-") as directory:
        outcome = trio.run(_run, setup, Path(directory))
    quiet = outcome.quiet
    answered = [x for x in quiet.rtts if math.isfinite(x)]
    quiet_p50, quiet_p99 = statistics.median(answered), percentile(answered, 0.99)
    quiet_mib = quiet.node.peak_rss_kib / 1024
    report.baseline(
        "flood: quiet honest ping round trip, p50 / p99 (ms)",
        f"{quiet_p50 * 1000:.2f} / {quiet_p99 * 1000:.2f} ({len(quiet.rtts)} pings, every "
        f"{PING_INTERVAL_S * 1000:.0f} ms, {quiet.lost} lost)",
    )
    report.baseline("flood: quiet node peak RSS (MiB)", f"{quiet_mib:.1f}")
    report.baseline("flood: quiet node CPU (cores)", f"{quiet.node.cpu_cores:.2f}")
    for kind, (text, _) in outcome.frames.items():
        report.baseline(f"flood frame: {kind}", text)
    windows = [quiet, *outcome.floods]
    tracebacks = ", ".join(f"{w.kind} {w.tracebacks}" for w in windows)
    report.baseline("flood: tracebacks in the node's log, per fresh node", tracebacks)
    for window in outcome.floods:
        assert window.stats is not None
        text, frame_bytes = outcome.frames[window.kind]
        p50, p99 = percentile(window.rtts, 0.5), percentile(window.rtts, 0.99)
        stayed = not window.prober_drops
        connected = (
            "prober stayed connected"
            if stayed
            else ("prober dropped: " + ", ".join(r.lower() for r in window.prober_drops))
        )
        label = f"{text} x {outcome.attackers}"
        recovered = (
            f"{window.recovered_s:.1f} s after"
            if math.isfinite(window.recovered_s)
            else f"not within {setup.settle_timeout_s:g} s of"
        ) + " the flood"
        report.figure(
            f"flood {label}: honest ping p99 / quiet p99",
            p99 / quiet_p99,
            f"p99 < {PING_GOAL_S:g} s and connected",
            p99 < PING_GOAL_S and stayed,
            f"(p50 {_ms(p50)}, p99 {_ms(p99)}, {window.lost}/{len(window.rtts)} lost; "
            f"{window.stats.summary(setup.flood_s)}; the node's log: {window.logged_bans[0]} bans, "
            f"{window.logged_bans[1]} more after the flood; "
            f"{connected}; quiet again {recovered}; "
            f"CPU: node {window.node.cpu_cores:.2f}, attackers {window.node.attacker_cores:.2f} "
            f"cores; load {window.load:.1f})",
        )
        bound_mib = RSS_ALLOWANCE_MIB + 2 * outcome.attackers * frame_bytes / (1 << 20)
        sampled = window.node
        peak_mib = sampled.peak_rss_kib / 1024
        path = ", ".join(f"{kib / 1024:.0f}" for kib in sampled.path_kib)
        cap = f"; stopped at the {RSS_CAP_MIB} MiB cap" if sampled.capped else ""
        report.figure(
            f"flood {label}: node peak RSS / quiet RSS",
            peak_mib / quiet_mib,
            f"<= {(quiet_mib + bound_mib) / quiet_mib:.2f} (quiet + {bound_mib:.0f} MiB)",
            peak_mib <= quiet_mib + bound_mib and not sampled.capped,
            f"(peak {peak_mib:.0f} MiB; at each quarter of the flood {path} MiB, "
            f"{window.settled_rss_kib / 1024:.0f} once quiet again; quiet {quiet_mib:.0f}{cap})",
        )
    exits = [f"{w.kind} ({w.exit_code})" for w in windows if w.exit_code is not None]
    if exits:
        report.figure(
            "flood: node processes that exited", len(exits), "none", False, ", ".join(exits)
        )
    return report


if __name__ == "__main__":
    run_alone(run, __doc__)
