"""The hostile-network catalogue's two sides: a real ``p2pchain node`` process, and a raw peer.

The raw peer is the project's own socket code: a trio stream from a chosen loopback address,
with WebSocket framing written out by hand (so it can lie about lengths), under the library's
pure `PeerConnection` for the Noise channel and framing. It never uses the node's `Swarm` or
transports. Every row of the catalogue ends with `Verdict.check`: the node process is alive, its
log has no traceback, an honest peer still completes a handshake and a ping, and the chain,
finality and mempool are as they were before the attack.
"""

from __future__ import annotations

import base64
import itertools
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import trio

from p2pchain.cli.config import load_network, load_node, read_key
from p2pchain.cli.network import init_network
from p2pchain.cli.rpc_client import JSON, connect_rpc
from p2pchain.errors import DecodeError
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.genesis import GenesisConfig, genesis_block
from p2pchain.ledger.types import BlockId
from p2pchain.params import ChainParams
from p2pchain.protocol.connection import (
    NEED_DATA,
    ConnectionClosed,
    ConnectionConfig,
    ConnectionKeys,
    FrameToDecode,
    HandshakeComplete,
    MessageReceived,
    State,
)
from p2pchain.protocol.messages import (
    DisconnectReason,
    Hello,
    Message,
    Ping,
    Pong,
    decode_message,
)
from p2pchain.testing.link import RawConnection, make_hello

WAIT_S = 20.0
"""Safety bound on every wait of the catalogue: a wait that reaches it fails the row."""
READY_S = 30.0
RECEIVE_BYTES = 1 << 16
WS_PIECE_BYTES = 1 << 16
"""The raw peer's WebSocket frames carry at most this much (the node closes frames over
131,072 bytes with 1009; rows that want that send their own header)."""
NO_TIMERS = ConnectionConfig(handshake_timeout=3_600.0, ping_interval=3_600.0, pong_timeout=3_600.0)
"""The raw peer's own timers never fire: only the node's reactions count."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- the node process ------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class NodeProcess:
    """A ``p2pchain node`` process on a network made by ``p2pchain init --nodes 1``.

    The node runs without its validator key, so it makes no blocks: its chain changes only when
    a peer brings valid blocks, and a row can tell that its attack changed nothing. The test
    holds the validator key, so chain-level rows can sign blocks the node would accept.
    """

    process: subprocess.Popen[bytes]
    directory: Path
    log: Path
    host: str
    tcp_port: int
    ws_port: int
    rpc_url: str
    params: ChainParams
    genesis: GenesisConfig
    genesis_id: BlockId
    validator_key: SecretKey
    wallet_keys: tuple[SecretKey, ...]
    wallet_key_files: tuple[Path, ...]

    @property
    def chain_id(self) -> int:
        return self.params.chain_id

    def log_offset(self) -> int:
        return self.log.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.log.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")

    def is_alive(self) -> bool:
        return self.process.poll() is None

    async def rpc(self, method: str, *params: JSON) -> JSON:
        async with connect_rpc(self.rpc_url) as client:
            return await client.call(method, *params)

    async def snapshot(self) -> dict[str, JSON]:
        """What an attack must not change: head, finalized checkpoint, mempool."""
        async with connect_rpc(self.rpc_url) as client:
            mempool = await client.call("mempool_status")
            assert isinstance(mempool, dict)
            return {
                "head": await client.call("chain_head"),
                "finalized": await client.call("chain_finalized"),
                "mempool": {key: mempool[key] for key in ("size", "bytes", "orphans")},
            }

    async def peer_scores(self) -> dict[str, float]:
        """Connected peers' scores by peer id (hex), from `net_peers`."""
        peers = await self.rpc("net_peers")
        assert isinstance(peers, list)
        return {str(p["peerId"]): float(str(p["score"])) for p in peers if isinstance(p, dict)}

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or power loss of the process."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_node(root: Path, *, params: ChainParams | None = None) -> NodeProcess:
    """Initialise a one-validator network in `root` and start its node without the validator
    key; wait (bounded) until its RPC answers."""
    params = params or ChainParams(slot_ms=1_000, slots_per_epoch=4)
    layout = init_network(
        root,
        nodes=1,
        params=params,
        base_port=30_300,
        rpc_port=8_645,
        wallets=2,
        genesis_delay_s=-2.0,
    )
    config = layout.nodes[0]
    node_file = load_node(config)
    assert node_file.validator_key is not None
    validator_key = read_key(node_file.validator_key)
    text = re.sub(r"127\.0\.0\.1:\d+", lambda _: f"127.0.0.1:{free_port()}", config.read_text())
    text = "\n".join(line for line in text.splitlines() if "validator_key_file" not in line)
    config.write_text(text + "\n")
    node_file = load_node(config)
    ports = {a.split("://")[0]: int(a.rsplit(":", 1)[1]) for a in node_file.listen}
    network = load_network(layout.network)
    assert node_file.rpc is not None
    node = NodeProcess(
        process=spawn_node_process(config),
        directory=config.parent,
        log=config.parent / "node.log",
        host="127.0.0.1",
        tcp_port=ports["tcp"],
        ws_port=ports["ws"],
        rpc_url=f"ws://{node_file.rpc}",
        params=network.params,
        genesis=network.genesis,
        genesis_id=genesis_block(network.genesis, network.params).block_id,
        validator_key=validator_key,
        wallet_keys=tuple(read_key(path) for path in layout.wallets),
        wallet_key_files=layout.wallets,
    )
    wait_listening(node)
    return node


def restart_node(node: NodeProcess) -> None:
    """Start the node's process again on its directory (after `stop` or `kill`)."""
    assert not node.is_alive()
    node.process = spawn_node_process(node.directory / "node.toml")
    wait_listening(node)


def spawn_node_process(config: Path) -> subprocess.Popen[bytes]:
    with (config.parent / "node.log").open("ab") as output:
        command = [sys.executable, "-m", "p2pchain", "node", "--config", str(config)]
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)


def wait_listening(node: NodeProcess) -> None:
    deadline = time.monotonic() + READY_S
    rpc_host, rpc_port = node.rpc_url.removeprefix("ws://").rsplit(":", 1)
    for port, host in (
        (node.tcp_port, node.host),
        (node.ws_port, node.host),
        (int(rpc_port), rpc_host),
    ):
        while True:
            if not node.is_alive():
                raise RuntimeError(f"the node exited:\n{node.log.read_text()[-3000:]}")
            try:
                socket.create_connection((host, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the node did not listen on {port} within {READY_S} s"
                    ) from None
                time.sleep(0.05)


# -- sources ---------------------------------------------------------------------------------


class Sources:
    """Loopback source addresses, each row in a network group (/16) of its own.

    127.0.0.1 is trusted by the node, so attackers never use it: 127.0.0.0/8 all reaches `lo`
    on Linux, and the second octet picks the group.
    """

    def __init__(self) -> None:
        self._groups = itertools.count(2)

    def group(self) -> Iterator[str]:
        """Fresh addresses 127.G.x.y of one fresh group G."""
        group = next(self._groups)
        if group > 254:
            raise RuntimeError("out of loopback network groups: split the module")
        return (f"127.{group}.{i // 250}.{1 + i % 250}" for i in itertools.count())


# -- the raw peer's transport ----------------------------------------------------------------


class PeerClosed(Exception):
    """The node closed or reset the raw peer's connection."""


@dataclass(slots=True)
class RawStream:
    """Bytes to and from the node over TCP, or over WebSocket framed by hand.

    Over WebSocket, `send` wraps the bytes in one masked binary frame and `receive` returns the
    payload of the node's data frames; `send_ws_frame` writes any header it is given.
    """

    stream: trio.SocketStream
    websocket: bool
    sent: list[bytes] | None = None
    """When a list, every send is also recorded here (replay rows)."""
    close_code: int | None = None
    """The code of the node's WebSocket close frame, once one arrived."""
    _buffer: bytearray = field(default_factory=bytearray)

    @classmethod
    async def open(
        cls, node: NodeProcess, transport: str, source: str, *, upgrade: bool = True
    ) -> RawStream:
        port = node.tcp_port if transport == "tcp" else node.ws_port
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
        await sock.bind((source, 0))
        await sock.connect((node.host, port))
        raw = cls(trio.SocketStream(sock), transport == "ws")
        if raw.websocket and upgrade:
            try:
                await raw.upgrade(node)
            except PeerClosed:
                await raw.aclose()
                raise
        return raw

    async def upgrade(self, node: NodeProcess) -> None:
        await self.send_bytes(upgrade_request(node))
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += await self._receive_raw()
        head, _, rest = bytes(self._buffer).partition(b"\r\n\r\n")
        self._buffer = bytearray(rest)
        if not head.startswith(b"HTTP/1.1 101"):
            raise PeerClosed(head.decode(errors="replace"))

    async def _receive_raw(self) -> bytes:
        try:
            data = await self.stream.receive_some(RECEIVE_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise PeerClosed("reset") from exc
        if not data:
            raise PeerClosed("closed")
        return data

    async def send(self, data: bytes) -> None:
        if self.sent is not None:
            self.sent.append(data)
        if self.websocket:  # frames under the node's limit: the stream has no boundaries
            data = b"".join(
                ws_frame(data[i : i + WS_PIECE_BYTES]) for i in range(0, len(data), WS_PIECE_BYTES)
            )
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise PeerClosed("reset") from exc

    async def send_bytes(self, data: bytes) -> None:
        """Bytes exactly as given, WebSocket or not."""
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise PeerClosed("reset") from exc

    async def receive(self) -> bytes:
        """Some bytes of the node's stream; raises PeerClosed at its end."""
        if not self.websocket:
            if self._buffer:
                data, self._buffer = bytes(self._buffer), bytearray()
                return data
            return await self._receive_raw()
        while True:
            frame = parse_ws_frame(self._buffer)
            if frame is None:
                self._buffer += await self._receive_raw()
                continue
            opcode, payload = frame
            if opcode == 0x8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise PeerClosed(f"websocket close {self.close_code}")
            if opcode == 0x9:
                await self.send_bytes(ws_frame(payload, opcode=0xA))
            elif opcode in (0x0, 0x1, 0x2) and payload:
                return payload

    async def wait_closed(self) -> str:
        """Read and discard until the node ends the connection; how it ended."""
        with trio.fail_after(WAIT_S):
            while True:
                try:
                    await self.receive()
                except PeerClosed as end:
                    return str(end)

    async def aclose(self) -> None:
        await self.stream.aclose()


def upgrade_request(node: NodeProcess) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET / HTTP/1.1\r\nHost: {node.host}:{node.ws_port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def ws_header(opcode: int, length: int, *, fin: bool = True, mask: bytes = b"\0\0\0\0") -> bytes:
    """A client frame header declaring `length` payload bytes (any length up to 2^63 - 1)."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        return bytes([first, 0x80 | length]) + mask
    if length < 1 << 16:
        return bytes([first, 0x80 | 126]) + struct.pack("!H", length) + mask
    return bytes([first, 0x80 | 127]) + struct.pack("!Q", length) + mask


def ws_frame(payload: bytes, *, opcode: int = 0x2) -> bytes:
    """A masked client frame (the all-zero mask leaves the payload as it is)."""
    return ws_header(opcode, len(payload)) + payload


def parse_ws_frame(buffer: bytearray) -> tuple[int, bytes] | None:
    """Take one unmasked server frame off `buffer`: (opcode, payload), or None if incomplete."""
    if len(buffer) < 2:
        return None
    opcode, length, start = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
    if length == 126:
        if len(buffer) < 4:
            return None
        length, start = struct.unpack("!H", buffer[2:4])[0], 4
    elif length == 127:
        if len(buffer) < 10:
            return None
        length, start = struct.unpack("!Q", buffer[2:10])[0], 10
    if len(buffer) < start + length:
        return None
    payload = bytes(buffer[start : start + length])
    del buffer[: start + length]
    return opcode, payload


# -- the raw peer's secure channel -----------------------------------------------------------

_keys = itertools.count(1)


def fresh_keys() -> ConnectionKeys:
    """Keys no earlier connection of this run used (identities are free)."""
    seed = f"{os.getpid()}/{next(_keys)}/{time.time_ns()}".encode()
    return ConnectionKeys(
        identity=SecretKey.from_entropy(sha256(b"identity" + seed)),
        noise_static=sha256(b"noise-static" + seed),
        noise_ephemeral=sha256(b"noise-ephemeral" + seed),
    )


@dataclass(slots=True)
class Ending:
    """How the node ended a raw peer's connection."""

    reason: DisconnectReason | None
    """The Disconnect reason it sent, if any."""
    how: str
    """"disconnect", or how the stream ended ("closed", "reset", "websocket close 1009")."""


class SilentConnection(RawConnection):
    """Completes the Noise handshake but never sends its Hello (rows send their own frames)."""

    def _write_message(self, message: Message) -> None:
        if message is not self.hello:
            super()._write_message(message)


class SecurePeer:
    """A raw peer with the Noise channel and framing of the pure `PeerConnection`.

    Only what a row asks for is sent: pings are answered, nothing else happens on its own.
    """

    def __init__(self, stream: RawStream, conn: RawConnection) -> None:
        self.stream = stream
        self.conn = conn
        self.received: list[Message] = []
        self.ending: Ending | None = None

    @classmethod
    async def connect(
        cls,
        node: NodeProcess,
        transport: str,
        source: str,
        *,
        keys: ConnectionKeys | None = None,
        hello: Hello | None = None,
        handshake: bool = True,
        connection: type[RawConnection] = RawConnection,
    ) -> SecurePeer:
        """`handshake`: wait until the link is active or ended (else only msg 1 is queued)."""
        keys = keys or fresh_keys()
        honest = make_hello(keys.identity, chain_id=node.chain_id, genesis=node.genesis_id)
        conn = connection(
            initiator=True, keys=keys, hello=honest, now=trio.current_time(), config=NO_TIMERS
        )
        if hello is not None:
            conn.hello = hello  # written only once the channel is up, so it may lie
        peer = cls(await RawStream.open(node, transport, source), conn)
        if handshake:
            await peer.wait_for(lambda: peer.conn.state is State.ACTIVE or peer.ending is not None)
        return peer

    @property
    def is_active(self) -> bool:
        return self.ending is None and self.conn.state is State.ACTIVE

    async def flush(self) -> None:
        if data := self.conn.data_to_send():
            await self.stream.send(data)

    async def send(self, message: Message) -> None:
        self.conn.send(message)
        await self.flush()

    async def send_plaintext(self, plaintext: bytes) -> None:
        """Any bytes inside the encrypted channel (frames of our own making)."""
        self.conn.send_raw(plaintext)
        await self.flush()

    def _drain(self) -> None:
        while self.ending is None and (event := self.conn.next_event()) is not NEED_DATA:
            if isinstance(event, MessageReceived):
                self.received.append(event.message)
            elif isinstance(event, FrameToDecode):
                try:
                    self.conn.receive_decoded(decode_message(event.body))
                except DecodeError as exc:
                    self.conn.receive_decoded(exc)
            elif isinstance(event, ConnectionClosed):
                self.ending = Ending(event.reason, "disconnect")
            elif isinstance(event, HandshakeComplete):
                pass

    async def step(self) -> None:
        """Process what is buffered and send what is queued; if nothing ended, read once more
        and process that too."""
        self._drain()
        await self.flush()
        if self.ending is not None:
            return
        try:
            self.conn.receive_data(await self.stream.receive())
        except PeerClosed as end:
            self.conn.receive_data(b"")
            self._drain()
            if self.ending is None:
                self.ending = Ending(None, str(end))
            return
        self._drain()
        await self.flush()

    async def wait_for(self, condition: object) -> None:
        assert callable(condition)
        with trio.fail_after(WAIT_S):
            while not condition():
                if self.ending is not None:
                    return
                await self.step()
            self._drain()

    async def open_channel(self) -> None:
        """Drive the Noise handshake until the encrypted channel is up on our side."""
        await self.wait_for(lambda: self.conn.is_channel_up)
        await self.flush()

    async def wait_ended(self) -> Ending:
        """Until the node ends the connection (bounded); how it ended."""
        await self.wait_for(lambda: False)
        assert self.ending is not None
        return self.ending

    async def ping(self, nonce: int) -> bool:
        """One round trip: True if the node answered `nonce` (False if it ended the link)."""
        await self.send(Ping(nonce=nonce))

        def answered() -> bool:
            return any(isinstance(m, Pong) and m.nonce == nonce for m in self.received)

        await self.wait_for(answered)
        return answered()

    async def aclose(self) -> None:
        await self.stream.aclose()


async def closed_at_accept(node: NodeProcess, transport: str, source: str) -> bool:
    """True if the node closes a connection from `source` before any handshake work: the
    WebSocket upgrade fails, or an honest message 1 gets no message 2."""
    try:
        raw = await RawStream.open(node, transport, source)
    except PeerClosed:
        return True
    keys = fresh_keys()
    hello = make_hello(keys.identity, chain_id=node.chain_id, genesis=node.genesis_id)
    conn = RawConnection(initiator=True, keys=keys, hello=hello, now=0.0, config=NO_TIMERS)
    try:
        await raw.send(conn.data_to_send())
        with trio.fail_after(WAIT_S):
            try:
                await raw.receive()
            except PeerClosed:
                return True
        return False
    finally:
        await raw.aclose()


# -- verdicts --------------------------------------------------------------------------------


HONEST_SOURCE = "127.0.0.1"
_nonces = itertools.count(1)


async def honest_peer_is_served(node: NodeProcess, transport: str) -> None:
    """A fresh honest peer completes the handshake and gets a Pong."""
    peer = await SecurePeer.connect(node, transport, HONEST_SOURCE)
    try:
        assert peer.is_active, f"honest handshake refused: {peer.ending}"
        assert await peer.ping(next(_nonces)), f"honest ping unanswered: {peer.ending}"
    finally:
        await peer.aclose()


@dataclass(slots=True)
class Verdict:
    """Taken before an attack; `check` after it asserts what every row promises."""

    node: NodeProcess
    log_offset: int
    before: dict[str, JSON]

    @classmethod
    async def before_attack(cls, node: NodeProcess) -> Verdict:
        assert node.is_alive(), "the node had already exited"
        return cls(node, node.log_offset(), await node.snapshot())

    async def check(self, transport: str, *, state_changes: bool = False) -> None:
        node = self.node
        assert node.is_alive(), f"the node exited:\n{node.log_since(self.log_offset)[-3000:]}"
        await honest_peer_is_served(node, transport)
        log = node.log_since(self.log_offset)
        assert "Traceback" not in log, log[-4000:]
        assert "internal error" not in log.lower(), log[-4000:]
        if not state_changes:
            assert await node.snapshot() == self.before
