"""Hostile peers over real sockets, for tests and fuzzers that attack a running node.

Two kinds, both built on the library's pure `PeerConnection` (so the Noise channel and framing
are the real ones) but never on the node's `Swarm` or transports:

- `SecurePeer` over a `RawStream`: a trio socket from a chosen loopback source address, with
  WebSocket framing written out by hand (so it can lie about lengths). It does only what the
  test asks: it answers pings and nothing else happens on its own. It attacks any node that
  listens on TCP and WebSocket, in this process or another one (`PeerTarget`).
- `run_junk_peer`: `run_peer` (the library's peer loop) over a stream of the test's choosing;
  once the handshake completes it sends bytes of the test's making inside the encrypted channel
  and waits until the node ends the link. `RecordingPeer` records what it saw.

`open_stream_from` picks the source address: all of 127.0.0.0/8 reaches the loopback interface
on Linux, so each attacker can come from an address (and network group) of its own.
"""

from __future__ import annotations

import base64
import functools
import itertools
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol, TypeVar

import trio

from p2pchain.errors import DecodeError
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.types import BlockId
from p2pchain.net.peer import PeerEvent, PeerHandle, PeerLimits, run_peer
from p2pchain.protocol.connection import (
    NEED_DATA,
    ConnectionClosed,
    ConnectionConfig,
    ConnectionKeys,
    FrameToDecode,
    HandshakeComplete,
    MessageReceived,
    PeerConnection,
    PeerId,
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

__all__ = [
    "NO_TIMERS",
    "WAIT_S",
    "WS_PIECE_BYTES",
    "Ending",
    "PeerClosed",
    "PeerTarget",
    "RawStream",
    "RecordingPeer",
    "SecurePeer",
    "SilentConnection",
    "closed_at_accept",
    "fresh_keys",
    "open_stream_from",
    "parse_ws_frame",
    "run_junk_peer",
    "upgrade_request",
    "ws_frame",
    "ws_header",
]

WAIT_S: Final = 20.0
"""Default bound on every wait of a hostile peer: a node that never reacts fails the test."""
RECEIVE_BYTES: Final = 1 << 16
WS_PIECE_BYTES: Final = 1 << 16
"""`RawStream.send` cuts WebSocket payloads into frames of at most this much (a node closes
frames over 131,072 bytes with 1009; a test that wants that writes its own header)."""
NO_TIMERS: Final = ConnectionConfig(
    handshake_timeout=3_600.0, ping_interval=3_600.0, pong_timeout=3_600.0
)
"""A `SecurePeer`'s own timers never fire: only the node's reactions count."""

M = TypeVar("M", bound=Message)


class PeerTarget(Protocol):
    """The node under attack: where it listens and which chain it serves.

    Any object with these attributes will do (a node process of the test's, a `Node`'s
    addresses wrapped in a dataclass, ...).
    """

    @property
    def host(self) -> str: ...
    @property
    def tcp_port(self) -> int: ...
    @property
    def ws_port(self) -> int: ...
    @property
    def chain_id(self) -> int: ...
    @property
    def genesis_id(self) -> BlockId: ...


async def open_stream_from(source: str, host: str, port: int) -> trio.SocketStream:
    """A TCP stream to `host:port` whose local address is `source` (any 127.x.y.z on Linux)."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    try:
        await sock.bind((source, 0))
        await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


# -- a raw transport -------------------------------------------------------------------------


class PeerClosed(trio.BrokenResourceError):
    """The node closed or reset the raw peer's connection; the message says how ("closed",
    "reset", "websocket close 1009")."""


@dataclass(slots=True)
class RawStream:
    """Bytes to and from a node over TCP, or over WebSocket framed by hand.

    Over WebSocket, `send` wraps the bytes in masked binary frames and `receive` returns the
    payload of the node's data frames (answering its pings); `send_bytes` writes any bytes,
    headers of the test's own making included.
    """

    stream: trio.SocketStream
    websocket: bool
    sent: list[bytes] | None = None
    """When a list, every `send` is also recorded here (to replay it later)."""
    close_code: int | None = None
    """The code of the node's WebSocket close frame, once one arrived."""
    _buffer: bytearray = field(default_factory=bytearray)

    @classmethod
    async def open(
        cls, target: PeerTarget, transport: str, source: str, *, upgrade: bool = True
    ) -> RawStream:
        """Connect from `source` to `target`'s "tcp" or "ws" listener; over WebSocket, do the
        HTTP upgrade too unless `upgrade` is false. Raises `PeerClosed` if the node refuses it."""
        port = target.tcp_port if transport == "tcp" else target.ws_port
        raw = cls(await open_stream_from(source, target.host, port), transport == "ws")
        if raw.websocket and upgrade:
            try:
                await raw.upgrade(target)
            except PeerClosed:
                await raw.aclose()
                raise
        return raw

    async def upgrade(self, target: PeerTarget) -> None:
        """The WebSocket opening handshake; raises `PeerClosed` unless the node answers 101."""
        await self.send_bytes(upgrade_request(target))
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
        """Stream bytes: as they are over TCP, in binary frames over WebSocket."""
        if self.sent is not None:
            self.sent.append(data)
        if self.websocket:  # frames under the node's limit: the stream has no boundaries
            data = b"".join(
                ws_frame(data[i : i + WS_PIECE_BYTES]) for i in range(0, len(data), WS_PIECE_BYTES)
            )
        await self.send_bytes(data)

    async def send_bytes(self, data: bytes) -> None:
        """Bytes exactly as given, WebSocket or not."""
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise PeerClosed("reset") from exc

    async def receive(self) -> bytes:
        """Some bytes of the node's stream; raises `PeerClosed` at its end."""
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

    async def wait_closed(self, *, wait_s: float = WAIT_S) -> str:
        """Read and discard until the node ends the connection (bounded); how it ended."""
        with trio.fail_after(wait_s):
            while True:
                try:
                    await self.receive()
                except PeerClosed as end:
                    return str(end)

    async def aclose(self) -> None:
        await self.stream.aclose()


def upgrade_request(target: PeerTarget) -> bytes:
    """An HTTP/1.1 WebSocket upgrade request for `target`'s WebSocket listener."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET / HTTP/1.1\r\nHost: {target.host}:{target.ws_port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def ws_header(opcode: int, length: int, *, fin: bool = True, mask: bytes = b"\0\0\0\0") -> bytes:
    """A client frame header declaring `length` payload bytes (any length up to 2^63 - 1),
    whatever follows it."""
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
    """Take one unmasked server frame off `buffer`: (opcode, payload), or None if incomplete
    (then `buffer` is left as it was)."""
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


# -- a raw peer with the real secure channel -------------------------------------------------

_connections = itertools.count(1)


def fresh_keys() -> ConnectionKeys:
    """Keys that no earlier connection used, in this process or an earlier run: a node that
    banned one identity must not see it again by accident (identities are free)."""
    seed = f"{os.getpid()}/{next(_connections)}/{time.time_ns()}".encode()
    return ConnectionKeys(
        identity=SecretKey.from_entropy(sha256(b"identity" + seed)),
        noise_static=sha256(b"noise-static" + seed),
        noise_ephemeral=sha256(b"noise-ephemeral" + seed),
    )


@dataclass(frozen=True, slots=True)
class Ending:
    """How the node ended a raw peer's connection."""

    reason: DisconnectReason | None
    """The Disconnect reason it sent, if any."""
    how: str
    """"disconnect", or how the stream ended ("closed", "reset", "websocket close 1009")."""


class SilentConnection(RawConnection):
    """Completes the Noise handshake but never sends its Hello (the test sends its own frames)."""

    def _write_message(self, message: Message) -> None:
        if message is not self.hello:
            super()._write_message(message)


class SecurePeer:
    """A raw peer with the Noise channel and framing of the pure `PeerConnection`.

    Only what the test asks for is sent: pings are answered, nothing else happens on its own.
    Every wait is bounded by `wait_s`.
    """

    def __init__(self, stream: RawStream, conn: RawConnection, *, wait_s: float = WAIT_S) -> None:
        self.stream = stream
        self.conn = conn
        self.wait_s = wait_s
        self.received: list[Message] = []
        self.ending: Ending | None = None

    @classmethod
    async def connect(
        cls,
        target: PeerTarget,
        transport: str,
        source: str,
        *,
        keys: ConnectionKeys | None = None,
        hello: Hello | None = None,
        handshake: bool = True,
        connection: type[RawConnection] = RawConnection,
        wait_s: float = WAIT_S,
    ) -> SecurePeer:
        """Connect from `source`; with `handshake`, wait until the link is active or ended
        (else only the first Noise message is queued). `hello` replaces the honest Hello,
        which is written only once the channel is up, so it may lie about anything."""
        keys = keys or fresh_keys()
        honest = make_hello(keys.identity, chain_id=target.chain_id, genesis=target.genesis_id)
        conn = connection(
            initiator=True, keys=keys, hello=honest, now=trio.current_time(), config=NO_TIMERS
        )
        if hello is not None:
            conn.hello = hello
        peer = cls(await RawStream.open(target, transport, source), conn, wait_s=wait_s)
        if handshake:
            await peer.wait_for(lambda: peer.conn.state is State.ACTIVE or peer.ending is not None)
        return peer

    @property
    def is_active(self) -> bool:
        return self.ending is None and self.conn.state is State.ACTIVE

    def received_of(self, kind: type[M]) -> list[M]:
        """The messages of type `kind` received so far, in order."""
        return [message for message in self.received if isinstance(message, kind)]

    async def flush(self) -> None:
        if data := self.conn.data_to_send():
            await self.stream.send(data)

    async def send(self, message: Message) -> None:
        self.conn.send(message)
        await self.flush()

    async def send_plaintext(self, plaintext: bytes) -> None:
        """Any bytes inside the encrypted channel (frames of the test's own making)."""
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

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Step until `condition()` holds or the node ended the link (bounded by `wait_s`)."""
        with trio.fail_after(self.wait_s):
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
        """One round trip, the barrier that says the node has processed everything sent
        before it: True if the node answered `nonce` (False if it ended the link)."""
        await self.send(Ping(nonce=nonce))

        def answered() -> bool:
            return any(message.nonce == nonce for message in self.received_of(Pong))

        await self.wait_for(answered)
        return answered()

    async def aclose(self) -> None:
        await self.stream.aclose()


async def closed_at_accept(
    target: PeerTarget, transport: str, source: str, *, wait_s: float = WAIT_S
) -> bool:
    """True if the node closes a connection from `source` before any handshake work: the
    WebSocket upgrade fails, or an honest first Noise message gets no answer but the close."""
    try:
        raw = await RawStream.open(target, transport, source)
    except PeerClosed:
        return True
    keys = fresh_keys()
    hello = make_hello(keys.identity, chain_id=target.chain_id, genesis=target.genesis_id)
    conn = RawConnection(initiator=True, keys=keys, hello=hello, now=0.0, config=NO_TIMERS)
    try:
        await raw.send(conn.data_to_send())
        with trio.fail_after(wait_s):
            try:
                await raw.receive()
            except PeerClosed:
                return True
        return False
    finally:
        await raw.aclose()


# -- the library's peer loop with a hostile payload ------------------------------------------


class RecordingPeer:
    """An event handler for `run_peer` that records every event and signals the milestones."""

    def __init__(self, conn: PeerConnection) -> None:
        self.conn = conn
        self.events: list[PeerEvent] = []
        self.handle: PeerHandle | None = None
        self.active = trio.Event()
        """Set once the handshake completed."""
        self.ended = trio.Event()
        """Set once the link ended."""
        self.settled = trio.Event()
        """Set once the handshake completed or the link ended, whichever came first."""

    async def __call__(self, handle: PeerHandle, event: PeerEvent) -> None:
        self.events.append(event)
        if isinstance(event, HandshakeComplete):
            self.active.set()
            self.settled.set()
        if isinstance(event, ConnectionClosed):
            self.ended.set()
            self.settled.set()

    @property
    def key(self) -> PeerId:
        """The identity this peer presented."""
        return PeerId(self.conn.hello.node_key)

    def closed(self) -> list[tuple[DisconnectReason | None, bool]]:
        """(reason, by_peer) of each ConnectionClosed: one, once the link ended."""
        return [(e.reason, e.by_peer) for e in self.events if isinstance(e, ConnectionClosed)]

    def received(self, kind: type[M]) -> list[M]:
        """The messages of type `kind` received, in order."""
        return [
            e.message
            for e in self.events
            if isinstance(e, MessageReceived) and isinstance(e.message, kind)
        ]


Junk = bytes | Callable[[RawConnection], bytes]


async def run_junk_peer(
    stream: trio.abc.Stream,
    conn: RawConnection,
    junk: Junk,
    *,
    address: str,
    limits: PeerLimits | None = None,
) -> RecordingPeer:
    """Run `conn` as an outbound peer over `stream`; once the handshake completes, put `junk`
    (bytes, or a function of the connection giving them) inside the encrypted stream and a Ping
    after it, then wait until the link ends (the node's doing: bound it with
    `trio.fail_after`). A node that refuses the handshake ends it earlier; then nothing is sent.
    """
    peer = RecordingPeer(conn)
    async with trio.open_nursery() as nursery:
        peer.handle = await nursery.start(
            functools.partial(
                run_peer,
                stream,
                conn,
                peer,
                address=address,
                outbound=True,
                limits=limits or PeerLimits(),
            )
        )
        await peer.settled.wait()
        if peer.active.is_set():
            conn.send_raw(junk(conn) if callable(junk) else junk)
            peer.handle.send_nowait(Ping(nonce=1))
        await peer.ended.wait()
    return peer
