"""Transports behind one stream type, and their text addresses.

Peer logic only ever sees a `trio.abc.Stream`: TCP streams as trio makes them, WebSocket
connections wrapped in `WebSocketStream` (binary messages carry the byte stream; message
boundaries mean nothing). Addresses are text: ``tcp://host:port``, ``ws://host:port``, or
``sim://name`` for the in-memory links of a simulated network.

A listener hands every accepted connection to its handler at once, before any WebSocket upgrade:
an inbound `WebSocketStream` upgrades on first use, the way trio's `SSLStream` handshakes, so the
swarm counts a pending upgrade against its handshake bounds and deadline like any other pending
connection. Beneath trio-websocket, `ClientFrameScanner` follows the client's frame headers and
closes (1009) a connection whose frame declares more than `WS_MAX_MESSAGE_BYTES` as soon as the
header arrives, instead of waiting for a payload that never comes; `Transport.peer_fault` lets
the swarm count that against the source address.

The swarm reaches peers through a `Transport`: `SocketTransport` (TCP + WebSocket) in production,
`p2pchain.testing.simnet` in simulations. Everything above the transport is the same code.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

import trio
import trio_websocket

from p2pchain.errors import ConfigError

WS_MESSAGE_BYTES: Final = 65_536
"""Largest WebSocket message we send; coalesced writes are cut to this size."""
WS_MAX_MESSAGE_BYTES: Final = 2 * WS_MESSAGE_BYTES
"""Largest WebSocket message (and frame) we accept."""
WS_HANDSHAKE_TIMEOUT_S: Final = 10.0
"""Backstop for an inbound HTTP upgrade; the swarm's handshake deadline is shorter."""
WS_MAX_REQUEST_BYTES: Final = 16_384
"""Largest HTTP upgrade request we read."""
WS_CLOSE_TIMEOUT_S: Final = 1.0
"""Time allowed to send our close frame to a client that broke the framing rules."""
WS_MESSAGE_TOO_BIG: Final = 1009
RECEIVE_BYTES: Final = 65_536


class Scheme(StrEnum):
    """Transport of an address."""

    TCP = "tcp"
    WS = "ws"
    SIM = "sim"
    """In-memory links of a simulated network; the address has a name and no port."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerAddress:
    """A dialable endpoint: scheme, host (name or IP literal) and port."""

    scheme: Scheme
    host: str
    port: int

    def __str__(self) -> str:
        if self.scheme is Scheme.SIM:
            return f"sim://{self.host}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme.value}://{host}:{self.port}"

    def to_bytes(self) -> bytes:
        """The text form as ASCII, as carried in Hello and Peers."""
        return str(self).encode("ascii")


def parse_address(text: str | bytes) -> PeerAddress:
    """Parse ``tcp://host:port``, ``ws://host:port`` (IPv6 hosts in brackets) or ``sim://name``.

    Raises:
        ConfigError: anything else, with the reason.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"address is not ASCII: {text!r}") from exc
    scheme_text, sep, rest = text.partition("://")
    if not sep:
        raise ConfigError(f"address {text!r} lacks a scheme (expected tcp:// or ws://)")
    try:
        scheme = Scheme(scheme_text)
    except ValueError as exc:
        raise ConfigError(f"address {text!r}: unknown scheme {scheme_text!r}") from exc
    if scheme is Scheme.SIM:
        if not rest or not all(c.isalnum() or c in "-_." for c in rest):
            raise ConfigError(f"address {text!r}: a sim name is letters, digits, '-', '_', '.'")
        return PeerAddress(scheme=scheme, host=rest, port=0)
    host, sep, port_text = rest.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"address {text!r} lacks host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise ConfigError(f"address {text!r}: bad IPv6 host") from exc
    elif ":" in host or "/" in host or any(c.isspace() for c in host):
        raise ConfigError(f"address {text!r}: bad host {host!r}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65_535:
        raise ConfigError(f"address {text!r}: port must be 0..65535")
    return PeerAddress(scheme=scheme, host=host, port=int(port_text))


class HostScope(StrEnum):
    """What a host in an address is worth to a peer on another host."""

    UNSPECIFIED = "unspecified"
    """0.0.0.0 or ::: a listener on every interface, dialable by no one as such."""
    LOOPBACK = "loopback"
    """127/8, ::1 or ``localhost``: dialable only on the same host."""
    ROUTABLE = "routable"
    """Any other IP literal, a DNS name or a simulated name."""


def host_scope(host: str) -> HostScope:
    """The scope of `host` (an IPv4-mapped IPv6 address counts as its IPv4 address)."""
    if host.lower() == "localhost":
        return HostScope.LOOPBACK
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return HostScope.ROUTABLE
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return HostScope.UNSPECIFIED
    return HostScope.LOOPBACK if ip.is_loopback else HostScope.ROUTABLE


def check_public_host(host: str) -> None:
    """A host peers can dial: an IP literal (IPv6 without brackets) or a DNS name, neither
    unspecified nor loopback (it is what nodes on other hosts reach us at).

    Raises:
        ConfigError: with the reason.
    """
    literal = f"[{host}]" if ":" in host else host
    parse_address(f"tcp://{literal}:1")
    scope = host_scope(host)
    if scope is not HostScope.ROUTABLE:
        raise ConfigError(f"public_addr {host!r} is {scope}: peers elsewhere cannot dial it")


def announced_addresses(bound: tuple[str, ...], public_host: str | None) -> tuple[str, ...]:
    """What Hello announces when no explicit list is configured: each bound listen address
    with its host replaced by `public_host` (the node's public IP or DNS name), or as bound.
    A listener on 0.0.0.0 or :: is announced as such: each peer reads it as the host it sees
    this node's connection come from (`as_seen_from`)."""
    if public_host is None:
        return bound
    announced = []
    for text in bound:
        address = parse_address(text)
        if address.scheme is not Scheme.SIM:
            address = PeerAddress(scheme=address.scheme, host=public_host, port=address.port)
        announced.append(str(address))
    return tuple(announced)


def as_seen_from(address: PeerAddress, seen_host: str) -> PeerAddress | None:
    """A peer's own announced `address` as we may dial it, given the host its connection
    comes from: an unspecified host becomes `seen_host`; a loopback host is kept only when the
    peer is itself on our loopback (anyone else's loopback is not ours); None = unusable."""
    scope, seen = host_scope(address.host), host_scope(seen_host)
    if scope is HostScope.UNSPECIFIED:
        if seen is HostScope.UNSPECIFIED or not seen_host:
            return None
        return PeerAddress(scheme=address.scheme, host=seen_host, port=address.port)
    if scope is HostScope.LOOPBACK and seen is not HostScope.LOOPBACK:
        return None
    return address


def shareable_with(address: PeerAddress, requester_host: str) -> bool:
    """Whether peer exchange may pass `address` to a peer connected from `requester_host`:
    never an unspecified host, and a loopback one only to a peer on our own loopback."""
    scope = host_scope(address.host)
    if scope is HostScope.UNSPECIFIED:
        return False
    return scope is not HostScope.LOOPBACK or host_scope(requester_host) is HostScope.LOOPBACK


class ClientFrameScanner:
    """Follows a WebSocket client's byte stream (HTTP request, then frame headers) without
    buffering payloads, to catch a frame whose declared length is over the limit the moment
    its header arrives.

    trio-websocket only counts payload bytes as they come, so a header declaring 2^62 bytes
    followed by silence (or a trickle) would hold the connection until some other timer fires.
    """

    def __init__(self, max_frame_bytes: int = WS_MAX_MESSAGE_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.upgraded = False
        """True once the HTTP request has ended (frames follow)."""
        self._request = bytearray()
        self._header = bytearray()
        self._payload_left = 0

    def feed(self, data: bytes) -> str | None:
        """Scan `data`; return why the client broke the limits, or None."""
        view = memoryview(data)
        if not self.upgraded:
            start = len(self._request)
            self._request += view[: WS_MAX_REQUEST_BYTES + 4 - start]
            end = self._request.find(b"\r\n\r\n")
            if end < 0:
                if len(self._request) > WS_MAX_REQUEST_BYTES:
                    return "http upgrade request too large"
                return None
            self.upgraded = True
            self._request = bytearray()
            view = view[end + 4 - start :]  # what follows the request in this chunk
        while view:
            if self._payload_left:
                step = min(self._payload_left, len(view))
                self._payload_left -= step
                view = view[step:]
                continue
            take = (self._header_size() or 2) - len(self._header)
            self._header += view[:take]
            view = view[take:]
            need = self._header_size()
            if need and len(self._header) == need:
                length = self._declared_length()
                self._header.clear()
                if length > self.max_frame_bytes:
                    return f"frame of {length} bytes declared (limit {self.max_frame_bytes})"
                self._payload_left = length
        return None

    def _header_size(self) -> int:
        """Bytes in the current frame header, or 0 while its first two bytes are incomplete."""
        if len(self._header) < 2:
            return 0
        size = {126: 4, 127: 10}.get(self._header[1] & 0x7F, 2)
        return size + (4 if self._header[1] & 0x80 else 0)

    def _declared_length(self) -> int:
        short = self._header[1] & 0x7F
        if short == 126:
            return int.from_bytes(self._header[2:4], "big")
        if short == 127:
            return int.from_bytes(self._header[2:10], "big")
        return short


def close_frame(code: int, reason: str) -> bytes:
    """A server's (unmasked) WebSocket close frame."""
    payload = code.to_bytes(2, "big") + reason.encode()[:123]
    return bytes([0x88, len(payload)]) + payload


class _GuardedStream(trio.abc.Stream):
    """The TCP stream under an inbound WebSocket, with the client's frames scanned."""

    def __init__(self, inner: trio.SocketStream) -> None:
        self.inner = inner
        self.violation: str | None = None
        self.upgrade_scope: trio.CancelScope | None = None
        """Cancelled when the connection ends before the upgrade is done."""
        self.ended = False
        """True once the client closed, broke the stream or broke the limits."""
        self._scanner = ClientFrameScanner()
        self._send_lock = trio.Lock()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        async with self._send_lock:
            if self.violation is not None:
                raise trio.BrokenResourceError(self.violation)
            await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.violation is not None:
            raise trio.BrokenResourceError(self.violation)
        try:
            data = await self.inner.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._end_upgrade()
            raise
        if not data:
            self._end_upgrade()
            return data
        violation = self._scanner.feed(bytes(data))
        if violation is None:
            return data
        with trio.move_on_after(WS_CLOSE_TIMEOUT_S):
            async with self._send_lock:  # after any frame trio-websocket is sending
                self.violation = violation
                if self._scanner.upgraded:
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await self.inner.send_all(close_frame(WS_MESSAGE_TOO_BIG, violation))
        self.violation = violation
        self._end_upgrade()
        raise trio.BrokenResourceError(violation)

    async def aclose(self) -> None:
        self._end_upgrade()
        await self.inner.aclose()

    def _end_upgrade(self) -> None:
        self.ended = True
        if self.upgrade_scope is not None:
            self.upgrade_scope.cancel()


class WebSocketStream(trio.abc.Stream):
    """A WebSocket connection seen as a byte stream (binary messages only).

    Dialed connections come upgraded; accepted ones (`accepting`) upgrade on first use.
    """

    def __init__(
        self,
        connection: trio_websocket.WebSocketConnection,
        transport: trio.abc.Stream | None = None,
    ) -> None:
        self._ws: trio_websocket.WebSocketConnection | None = connection
        self._transport = transport
        self._buffer = bytearray()
        self._guard: _GuardedStream | None = None
        self._nursery: trio.Nursery | None = None
        self._upgrade_lock = trio.Lock()

    @classmethod
    def accepting(cls, nursery: trio.Nursery, stream: trio.SocketStream) -> WebSocketStream:
        """The server side of an accepted TCP connection; trio-websocket's reader task will run
        in `nursery`, which must outlive the stream."""
        self = cls.__new__(cls)
        self._ws = None
        self._transport = None
        self._buffer = bytearray()
        self._guard = _GuardedStream(stream)
        self._nursery = nursery
        self._upgrade_lock = trio.Lock()
        return self

    @property
    def violation(self) -> str | None:
        """Why we closed an inbound client for breaking the framing limits, if we did."""
        return None if self._guard is None else self._guard.violation

    async def _connection(self) -> trio_websocket.WebSocketConnection:
        async with self._upgrade_lock:
            if self._ws is None:
                self._ws = await self._accept_upgrade()
        return self._ws

    async def _accept_upgrade(self) -> trio_websocket.WebSocketConnection:
        guard, nursery = self._guard, self._nursery
        assert guard is not None  # only `accepting` streams lack `_ws`
        assert nursery is not None
        with trio.move_on_after(WS_HANDSHAKE_TIMEOUT_S) as scope:
            guard.upgrade_scope = scope
            try:
                request = await trio_websocket.wrap_server_stream(
                    nursery, guard, max_message_size=WS_MAX_MESSAGE_BYTES
                )
                connection: trio_websocket.WebSocketConnection = await request.accept()
            except trio_websocket.ConnectionClosed as exc:
                raise trio.BrokenResourceError("websocket upgrade failed") from exc
            guard.upgrade_scope = None
            return connection
        if guard.violation is not None:
            raise trio.BrokenResourceError(guard.violation)
        raise trio.BrokenResourceError(
            "client left before the upgrade" if guard.ended else "websocket upgrade timed out"
        )

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send `data` as one or more binary messages."""
        ws = await self._connection()
        view = memoryview(data)
        try:
            for start in range(0, len(view), WS_MESSAGE_BYTES):
                await ws.send_message(bytes(view[start : start + WS_MESSAGE_BYTES]))
        except trio_websocket.ConnectionClosed as exc:
            raise trio.BrokenResourceError("websocket closed") from exc

    async def wait_send_all_might_not_block(self) -> None:
        """WebSocket sends have no separate readiness signal."""
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Bytes from the next message(s); ``b""`` once the peer closed."""
        if not self._buffer:
            ws = await self._connection()
            try:
                message = await ws.get_message()
            except trio_websocket.ConnectionClosed:
                return b""
            if isinstance(message, str):
                raise trio.BrokenResourceError("text message on a binary link")
            self._buffer += message
        size = len(self._buffer) if max_bytes is None else max_bytes
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def aclose(self) -> None:
        """Close the WebSocket (close handshake, then the TCP stream)."""
        try:
            if self._ws is not None:
                await self._ws.aclose()
        finally:
            # trio-websocket leaves a client's TCP stream open when the server closed first.
            if self._transport is not None:
                await self._transport.aclose()
            if self._guard is not None:
                await self._guard.aclose()

    @property
    def remote_host(self) -> str:
        """IP address of the peer."""
        if self._guard is not None:
            return str(self._guard.inner.socket.getpeername()[0])
        assert self._ws is not None
        remote = self._ws.remote
        return remote if isinstance(remote, str) else str(remote.address)


def remote_host(stream: trio.abc.Stream) -> str | None:
    """IP address of the other end of a stream made by this module (None if already gone)."""
    try:
        if isinstance(stream, WebSocketStream):
            return stream.remote_host
        if isinstance(stream, trio.SocketStream):
            return str(stream.socket.getpeername()[0])
    except OSError:
        return None
    return "memory"


async def open_peer_stream(nursery: trio.Nursery, address: PeerAddress) -> trio.abc.Stream:
    """Connect to `address`; WebSocket connections run their reader task in `nursery`.

    Raises:
        OSError: the TCP connection failed.
        trio_websocket.HandshakeError: the WebSocket upgrade failed.
    """
    if address.scheme is Scheme.TCP:
        return await trio.open_tcp_stream(address.host, address.port)
    transport = await trio.open_tcp_stream(address.host, address.port)
    try:
        connection = await trio_websocket.wrap_client_stream(
            nursery,
            transport,
            address.host,
            "/",
            max_message_size=WS_MAX_MESSAGE_BYTES,
        )
    except BaseException:
        await trio.aclose_forcefully(transport)
        raise
    return WebSocketStream(connection, transport)


StreamHandler = Callable[[trio.abc.Stream], Awaitable[None]]


async def _listen(address: PeerAddress) -> list[trio.SocketListener]:
    """Bind `address`; an address in use is named (a node may listen on several)."""
    try:
        return await trio.open_tcp_listeners(address.port, host=address.host)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {address}: {exc.strerror}") from exc


async def serve_peer_streams(
    address: PeerAddress,
    handler: StreamHandler,
    *,
    task_status: trio.TaskStatus[PeerAddress] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections on `address` forever, calling `handler(stream)` for each one.

    The handler gets each connection as soon as it is accepted; a WebSocket stream upgrades on
    its first `receive_some` or `send_all`, which raise `trio.BrokenResourceError` if the client
    fails the upgrade. `task_status.started` receives the bound address (useful with port 0).
    """
    listeners = await _listen(address)
    if address.scheme is Scheme.TCP:
        port = listeners[0].socket.getsockname()[1]
        task_status.started(PeerAddress(scheme=address.scheme, host=address.host, port=port))
        await trio.serve_listeners(handler, listeners)

    port = listeners[0].socket.getsockname()[1]
    task_status.started(PeerAddress(scheme=address.scheme, host=address.host, port=port))

    async def serve_connection(stream: trio.SocketStream) -> None:
        """One WebSocket client, handed over before its upgrade; whatever it sends, only this
        connection fails."""
        try:
            async with trio.open_nursery() as nursery:
                await handler(WebSocketStream.accepting(nursery, stream))
                nursery.cancel_scope.cancel()  # stops trio-websocket's reader task
        except* (trio_websocket.ConnectionClosed, trio.BrokenResourceError):
            pass  # the client broke the connection or never spoke WebSocket
        finally:
            await trio.aclose_forcefully(stream)

    await trio.serve_listeners(serve_connection, listeners)


class Transport(Protocol):
    """How a swarm dials and listens: the one seam between peer logic and the outside world.

    Implementations raise `OSError` (or `trio.BrokenResourceError`) when a dial fails.
    """

    schemes: frozenset[Scheme]
    """Address schemes this transport can dial and serve; other addresses are never tried."""

    async def open_stream(self, nursery: trio.Nursery, address: PeerAddress) -> trio.abc.Stream:
        """Connect to `address`; helper tasks of the stream (if any) run in `nursery`."""
        ...

    async def serve(
        self,
        address: PeerAddress,
        handler: StreamHandler,
        *,
        task_status: trio.TaskStatus[PeerAddress] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept connections on `address` forever; `task_status` gets the bound address."""
        ...

    def remote_host(self, stream: trio.abc.Stream) -> str | None:
        """The host of the other end of an accepted stream (for address bans), None if gone."""
        ...

    def peer_fault(self, stream: trio.abc.Stream) -> str | None:
        """Why the transport itself cut an accepted stream because of the peer, if it did."""
        ...


class SocketTransport:
    """The production transport: TCP and WebSocket on real sockets."""

    schemes: frozenset[Scheme] = frozenset({Scheme.TCP, Scheme.WS})

    async def open_stream(self, nursery: trio.Nursery, address: PeerAddress) -> trio.abc.Stream:
        """See `open_peer_stream`; a failed WebSocket upgrade is reported as `OSError`."""
        try:
            return await open_peer_stream(nursery, address)
        except trio_websocket.HandshakeError as exc:
            raise OSError(f"websocket upgrade to {address} failed") from exc

    async def serve(
        self,
        address: PeerAddress,
        handler: StreamHandler,
        *,
        task_status: trio.TaskStatus[PeerAddress] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """See `serve_peer_streams`."""
        await serve_peer_streams(address, handler, task_status=task_status)

    def remote_host(self, stream: trio.abc.Stream) -> str | None:
        """See the module-level `remote_host`."""
        return remote_host(stream)

    def peer_fault(self, stream: trio.abc.Stream) -> str | None:
        """A WebSocket client that broke the framing limits (see `ClientFrameScanner`)."""
        return stream.violation if isinstance(stream, WebSocketStream) else None
