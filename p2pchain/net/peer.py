"""`run_peer`: the thin trio driver between one stream and one `PeerConnection`.

All protocol decisions stay in the connection. The driver reads with the connection's timer as a
deadline, hands events to the owner, and runs a writer task that takes everything queued in the
connection and sends it with one ``send_all`` (so a burst of small messages costs one write). The
send queue is bounded in bytes; a peer that does not drain it within `slow_peer_timeout` is
dropped with SLOW_PEER. Every inbound message (Ping and repeated Hello included) and every byte
read is charged to the link's `RateLimiter`: over a budget, reading pauses until it refills
(back-pressure, no blame); a message over a budget whose excess is abuse (a Ping flood, say) is
dropped and reported as `PeerMisbehaved(SPAM)`.

Frames larger than the connection's `inline_decode_bytes` are decoded in a worker thread, so a
peer's 16 MiB answer costs the event loop nothing but GIL slices.

An exception that is not one of the protocol's own (a bug in decoding, in the stream or in the
owner's handler) ends this link alone: it is reported as `PeerFailed` and the link closes with
INTERNAL_ERROR; it never escapes into the owner's nursery.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

import trio

from p2pchain.errors import DecodeError, RemoteProtocolError
from p2pchain.net.faults import Where
from p2pchain.protocol.connection import (
    NEED_DATA,
    ConnectionClosed,
    Event,
    FrameToDecode,
    MessageReceived,
    PeerConnection,
    PeerId,
    State,
)
from p2pchain.protocol.messages import DisconnectReason, Hello, Message, Ping, Pong, decode_message
from p2pchain.protocol.ratelimit import RateLimiter, RateLimits
from p2pchain.protocol.scoring import Offence

USER_PING_NONCE_BASE: Final = 2**63
"""Nonces of `PeerHandle.ping` start here, apart from the connection's own liveness pings."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerLimits:
    """Per-peer resource limits of the driver."""

    receive_bytes: int = 65_536
    max_send_queue_bytes: int = 32 * 1024 * 1024
    slow_peer_timeout: float = 10.0
    """A write that takes longer, or a queue that stays full longer, drops the peer."""
    close_timeout: float = 2.0
    """Time allowed to deliver the final Disconnect."""
    rates: RateLimits = field(default_factory=RateLimits)
    """Inbound message, byte and per-type budgets (`p2pchain.protocol.ratelimit`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerMisbehaved:
    """The driver saw the peer break a rule; the owner turns `offence` into a score penalty."""

    offence: Offence
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerFailed:
    """Our own code failed on this link (`error` is not a protocol error): a bug to record.

    `where` is a `Where` name. The link closes with INTERNAL_ERROR after this event.
    """

    where: str
    error: Exception


PeerEvent = Event | PeerMisbehaved | PeerFailed
EventHandler = Callable[["PeerHandle", PeerEvent], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerStatistics:
    """Counters of one peer link."""

    bytes_sent: int
    bytes_received: int
    messages_received: int
    messages_dropped: int
    send_queue_bytes: int


class PeerHandle:
    """What the owner holds for a running peer: send, close, ping, wait for the end."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        conn: PeerConnection,
        limits: PeerLimits,
        *,
        address: str,
        outbound: bool,
    ) -> None:
        now = trio.current_time()
        self.conn = conn
        self.address = address
        self.outbound = outbound
        self.limits = limits
        self.close_reason: DisconnectReason | None = None
        self.closed_by_peer = False
        self._stream = stream
        self._wake_writer = trio.Event()
        self._closed = trio.Event()
        self._in_flight = 0
        self._full_since: float | None = None
        self._rates = RateLimiter(limits.rates, now)
        self._pings: dict[int, trio.Event] = {}
        self._ping_counter = USER_PING_NONCE_BASE
        self._bytes_sent = 0
        self._bytes_received = 0
        self._messages_received = 0
        self._messages_dropped = 0
        self._cancel_scope = trio.CancelScope()
        self._receive_scope = trio.CancelScope()
        self._writer_done = trio.Event()
        self._answered: set[int] = set()
        self._stage = Where.CONNECTION
        self._writer_fault: Exception | None = None
        self._peer_id: PeerId | None = None

    @property
    def peer_id(self) -> PeerId | None:
        """The node key proved by the peer (None until the Noise handshake is done); kept once
        known, since a proved key never changes and the swarm asks for it per message."""
        if self._peer_id is None:
            self._peer_id = self.conn.peer_key
        return self._peer_id

    @property
    def is_active(self) -> bool:
        """True while messages can be sent."""
        return self.conn.state is State.ACTIVE

    def send_nowait(self, message: Message, *, frame: bytes | None = None) -> bool:
        """Queue `message` (already encoded as `frame`, if given); False if the link is not
        active or the send queue is full.

        A queue that stays full for `slow_peer_timeout` closes the link with SLOW_PEER.
        """
        if not self.is_active:
            return False
        queued = self.conn.pending_bytes + self._in_flight
        if queued >= self.limits.max_send_queue_bytes:
            now = trio.current_time()
            self._messages_dropped += 1
            if self._full_since is None:
                self._full_since = now
            elif now - self._full_since >= self.limits.slow_peer_timeout:
                self.close(DisconnectReason.SLOW_PEER)
            return False
        self._full_since = None
        self.conn.send(message, frame=frame)
        self._wake_writer.set()
        return True

    def close(self, reason: DisconnectReason, detail: bytes = b"") -> None:
        """Ask the link to close with `reason`; the driver delivers the Disconnect and ends."""
        self.conn.close(reason, detail)
        self._wake_writer.set()
        self._receive_scope.cancel()

    async def ping(self) -> None:
        """Send a Ping and wait for its Pong: a barrier proving the peer processed what we sent.

        Raises:
            trio.BrokenResourceError: the link closed first.
        """
        self._ping_counter += 1
        nonce = self._ping_counter
        answered = self._pings[nonce] = trio.Event()
        if not self.send_nowait(Ping(nonce=nonce)):
            del self._pings[nonce]
            raise trio.BrokenResourceError("peer link is not active")
        await answered.wait()
        if nonce not in self._answered:
            raise trio.BrokenResourceError("peer link closed before the pong")
        self._answered.discard(nonce)

    async def wait_closed(self) -> None:
        """Return once the driver has finished and the stream is closed."""
        await self._closed.wait()

    def statistics(self) -> PeerStatistics:
        """Traffic counters."""
        return PeerStatistics(
            bytes_sent=self._bytes_sent,
            bytes_received=self._bytes_received,
            messages_received=self._messages_received,
            messages_dropped=self._messages_dropped,
            send_queue_bytes=self.conn.pending_bytes + self._in_flight,
        )

    # -- driver -------------------------------------------------------------------------------

    async def run(self, on_event: EventHandler) -> None:
        """Drive the link until it ends (see `run_peer`)."""
        final: ConnectionClosed | None = None
        try:
            with self._cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer)
                    try:
                        final = await self._reader(on_event)
                    except Exception as exc:  # our bug, on this link only (Cancelled is not one)
                        final = await self._contain(on_event, self._stage, exc)
                    self._wake_writer.set()
                    with trio.move_on_after(self.limits.close_timeout):
                        await self._writer_done.wait()
                    nursery.cancel_scope.cancel()
        finally:
            await trio.aclose_forcefully(self._stream)
            if final is None:
                final = ConnectionClosed(reason=self.close_reason, by_peer=self.closed_by_peer)
            elif self.close_reason is None:
                self.close_reason = final.reason
                self.closed_by_peer = final.by_peer
            for waiter in self._pings.values():
                waiter.set()
            self._closed.set()
        # Not reached when the owner cancels us: it is shutting down and needs no report.
        if self._writer_fault is not None:
            await on_event(self, PeerFailed(where=Where.TRANSPORT, error=self._writer_fault))
        await on_event(self, final)

    async def _contain(
        self, on_event: EventHandler, where: str, error: Exception
    ) -> ConnectionClosed:
        """Report our own failure and close the link with INTERNAL_ERROR."""
        await on_event(self, PeerFailed(where=where, error=error))
        try:
            self.conn.close(DisconnectReason.INTERNAL_ERROR)
        except Exception:  # the connection's own state is what broke: no goodbye is possible
            self.close_reason = DisconnectReason.INTERNAL_ERROR
            self._cancel_scope.cancel()
        return ConnectionClosed(reason=DisconnectReason.INTERNAL_ERROR, by_peer=False)

    async def _emit(self, on_event: EventHandler, event: PeerEvent) -> None:
        """Hand `event` to the owner; a failure in there is the owner's (`Where.SWARM`)."""
        self._stage = Where.SWARM
        await on_event(self, event)
        self._stage = Where.CONNECTION

    async def _reader(self, on_event: EventHandler) -> ConnectionClosed:
        conn = self.conn
        while True:
            now = trio.current_time()
            resume = self._rates.ready_at(now)
            if resume > now:
                # over a budget: stop parsing until it refills (back-pressure, no blame)
                await self._wait(resume, read=False)
                conn.handle_timer(trio.current_time())
                continue
            try:
                event = conn.next_event()
                if isinstance(event, FrameToDecode):
                    conn.receive_decoded(await _decode_in_thread(event.body))
                    continue
            except RemoteProtocolError as exc:
                await self._emit(
                    on_event, PeerMisbehaved(offence=Offence.PROTOCOL_ERROR, detail=str(exc))
                )
                return ConnectionClosed(
                    reason=DisconnectReason.PROTOCOL_ERROR, by_peer=False, detail=str(exc).encode()
                )
            if event is NEED_DATA:
                self._wake_writer.set()
                resume = self._rates.bytes_ready_at(now)
                await self._wait(resume, read=resume <= now)
                conn.handle_timer(trio.current_time())
            elif isinstance(event, ConnectionClosed):
                return event
            else:
                if isinstance(event, MessageReceived):
                    self._messages_received += 1
                    message = event.message
                    answered = isinstance(message, Pong) and self._resolve_ping(message)
                    # `now` is still the time: nothing was awaited since it was read
                    charge = self._rates.charge(message, now, solicited=answered)
                    if charge.abusive:
                        name = type(message).__name__
                        await self._emit(
                            on_event, PeerMisbehaved(offence=Offence.SPAM, detail=f"{name} rate")
                        )
                        continue  # not served: an honest peer never gets here
                    if answered or isinstance(message, Ping | Hello):
                        continue  # answered or ignored by the connection; only charged here
                await self._emit(on_event, event)

    async def _wait(self, resume: float, *, read: bool) -> None:
        """Read once (if `read`) or sleep until `resume`, but never past the connection's timer.

        `close()` interrupts the wait. The bytes read are charged to the peer's byte budget.
        """
        timer = self.conn.get_timer()
        deadline = math.inf if timer is None else timer
        with trio.move_on_at(deadline if read else min(resume, deadline)) as scope:
            self._receive_scope = scope
            if not read:
                await trio.sleep_forever()
            self._stage = Where.TRANSPORT
            try:
                data = await self._stream.receive_some(self.limits.receive_bytes)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            self._stage = Where.CONNECTION
            self._bytes_received += len(data)
            self.conn.receive_data(bytes(data))
            self._rates.charge_bytes(len(data), trio.current_time())

    def _resolve_ping(self, pong: Pong) -> bool:
        waiter = self._pings.pop(pong.nonce, None)
        if waiter is None:
            return False
        self._answered.add(pong.nonce)
        waiter.set()
        return True

    async def _writer(self) -> None:
        try:
            while True:
                await self._wake_writer.wait()
                self._wake_writer = trio.Event()
                data = self.conn.data_to_send()
                if data:
                    self._in_flight = len(data)
                    with trio.move_on_after(self.limits.slow_peer_timeout) as scope:
                        await self._stream.send_all(data)
                    self._in_flight = 0
                    if scope.cancelled_caught:
                        self._drop(DisconnectReason.SLOW_PEER, by_peer=False)
                        return
                    self._bytes_sent += len(data)
                if not self.conn.is_open and not self.conn.pending_bytes:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._drop(None, by_peer=True)
        except Exception as exc:  # the stream failed in a way it should not: this link only
            self._writer_fault = exc
            self._drop(DisconnectReason.INTERNAL_ERROR, by_peer=False)
        finally:
            self._writer_done.set()

    def _drop(self, reason: DisconnectReason | None, *, by_peer: bool) -> None:
        """End the link at once: the stream cannot carry a goodbye any more."""
        self.conn.close(reason or DisconnectReason.REQUESTED)
        self.close_reason = reason
        self.closed_by_peer = by_peer
        self._cancel_scope.cancel()


async def _decode_in_thread(body: bytes) -> Message | DecodeError:
    """Decode a large frame in a worker thread: the event loop (every other peer's reads,
    pings and timers) keeps running meanwhile; this peer's reader waits for it."""

    def decode() -> Message | DecodeError:
        try:
            return decode_message(body)
        except DecodeError as exc:
            return exc

    return await trio.to_thread.run_sync(decode)


async def run_peer(
    stream: trio.abc.Stream,
    conn: PeerConnection,
    on_event: EventHandler,
    *,
    address: str,
    outbound: bool,
    limits: PeerLimits = PeerLimits(),
    task_status: trio.TaskStatus[PeerHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Drive `conn` over `stream` until the link ends; the stream is closed on return.

    `on_event` receives every event in order: HandshakeComplete, MessageReceived (never a Ping
    or a repeated Hello, which the connection answers or ignores, nor a Pong that answers
    `PeerHandle.ping`), PeerMisbehaved, and last a ConnectionClosed, unless the caller
    cancelled us. A protocol fault ends with ConnectionClosed(PROTOCOL_ERROR).
    """
    handle = PeerHandle(stream, conn, limits, address=address, outbound=outbound)
    task_status.started(handle)
    await handle.run(on_event)
