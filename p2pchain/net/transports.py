"""Transports behind one stream type, and their text addresses.

Peer logic only ever sees a `trio.abc.Stream`: TCP streams as trio makes them, WebSocket
connections wrapped in `WebSocketStream` (binary messages carry the byte stream; message
boundaries mean nothing). Addresses are text: ``tcp://host:port``, ``ws://host:port``, or
``sim://name`` for the in-memory links of a simulated network.

The swarm reaches peers through a `Transport`: `SocketTransport` (TCP + WebSocket) in production,
`p2pchain.testing.simnet` in simulations. Everything above the transport is the same code.
"""

from __future__ import annotations

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
WS_HANDSHAKE_TIMEOUT_S: Final = 10.0
"""An inbound client must finish the HTTP upgrade within this time."""
"""Largest WebSocket message we accept (trio-websocket enforces it)."""
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


class WebSocketStream(trio.abc.Stream):
    """A WebSocket connection seen as a byte stream (binary messages only)."""

    def __init__(
        self,
        connection: trio_websocket.WebSocketConnection,
        transport: trio.abc.Stream | None = None,
    ) -> None:
        self._ws = connection
        self._transport = transport
        self._buffer = bytearray()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send `data` as one or more binary messages."""
        view = memoryview(data)
        try:
            for start in range(0, len(view), WS_MESSAGE_BYTES):
                await self._ws.send_message(bytes(view[start : start + WS_MESSAGE_BYTES]))
        except trio_websocket.ConnectionClosed as exc:
            raise trio.BrokenResourceError("websocket closed") from exc

    async def wait_send_all_might_not_block(self) -> None:
        """WebSocket sends have no separate readiness signal."""
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Bytes from the next message(s); ``b""`` once the peer closed."""
        if not self._buffer:
            try:
                message = await self._ws.get_message()
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
            await self._ws.aclose()
        finally:
            # trio-websocket leaves a client's TCP stream open when the server closed first.
            if self._transport is not None:
                await self._transport.aclose()

    @property
    def remote_host(self) -> str:
        """IP address of the peer."""
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


async def serve_peer_streams(
    address: PeerAddress,
    handler: StreamHandler,
    *,
    task_status: trio.TaskStatus[PeerAddress] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections on `address` forever, calling `handler(stream)` for each one.

    `task_status.started` receives the bound address (useful with port 0).
    """
    if address.scheme is Scheme.TCP:
        listeners = await trio.open_tcp_listeners(address.port, host=address.host)
        port = listeners[0].socket.getsockname()[1]
        task_status.started(PeerAddress(scheme=address.scheme, host=address.host, port=port))
        await trio.serve_listeners(handler, listeners)

    listeners = await trio.open_tcp_listeners(address.port, host=address.host)
    port = listeners[0].socket.getsockname()[1]
    task_status.started(PeerAddress(scheme=address.scheme, host=address.host, port=port))

    async def serve_connection(stream: trio.SocketStream) -> None:
        """One WebSocket client; whatever it sends, only this connection fails."""
        try:
            async with trio.open_nursery() as nursery:
                request = None
                with trio.move_on_after(WS_HANDSHAKE_TIMEOUT_S):
                    request = await trio_websocket.wrap_server_stream(
                        nursery, stream, max_message_size=WS_MAX_MESSAGE_BYTES
                    )
                if request is not None:
                    await handler(WebSocketStream(await request.accept()))
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
