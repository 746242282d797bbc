"""The JSON-RPC 2.0 server over WebSocket: one session per client, subscriptions, limits.

Each client gets a reader (requests are answered in order, one at a time) and a writer draining
a bounded send queue. Responses wait for room in that queue, so a client that does not read
only stops its own requests. Subscription notifications never wait: when the queue is full,
the client cannot keep up and is disconnected at once (its socket closed without a close
handshake), so the node's event fan-out and every other client go on unaffected.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    wrap_server_stream,
)

from p2pchain.errors import ConfigError, EventHistoryExpired, SubscriptionOverflow
from p2pchain.node import EventKind, Node
from p2pchain.rpc.jsonrpc import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_REQUEST_BYTES,
    LIMIT_EXCEEDED,
    Dispatcher,
    Json,
    Method,
    Params,
    RpcError,
    invalid_params,
    notification,
)
from p2pchain.rpc.methods import NodeMethods, event_json

TOPICS: Final[Mapping[str, EventKind]] = {
    "newHeads": EventKind.NEW_HEAD,
    "finalized": EventKind.FINALIZED,
    "txStatus": EventKind.TX_STATUS,
    "peers": EventKind.PEER,
    "reorgs": EventKind.REORG,
}
"""`p2p_subscribe` topic names and the node events they carry."""

NOTIFICATION_METHOD: Final = "p2p_subscription"

_logger = logging.getLogger("p2pchain.rpc")


@dataclass(frozen=True, slots=True, kw_only=True)
class RpcLimits:
    """Bounds on what clients can make the server hold (see docs/rpc.md)."""

    max_connections: int = 64
    """Clients served at once; more get HTTP 503 at the WebSocket handshake."""
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    """Larger messages get error -32005; messages over twice this close the connection (1009)."""
    max_batch: int = DEFAULT_MAX_BATCH
    send_queue: int = 256
    """Messages waiting to be written to one client; a notification that finds it full
    disconnects the client."""
    max_subscriptions: int = 32
    """Subscriptions per connection."""
    handshake_timeout: float = 10.0
    """Seconds a new connection has to complete its WebSocket handshake."""
    close_timeout: float = 5.0
    """Seconds the closing handshake may take before the socket is closed anyway."""

    def __post_init__(self) -> None:
        counts = (self.max_connections, self.max_request_bytes, self.max_batch, self.send_queue)
        if min(*counts, self.max_subscriptions) < 1:
            raise ConfigError("RPC limits must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class RpcStatistics:
    connections: int
    connections_refused: int
    """Handshakes refused because `max_connections` clients were connected."""
    clients_dropped: int
    """Clients disconnected because they could not keep up with their notifications."""
    messages: int
    """WebSocket messages (single requests or batches) handled."""
    subscriptions: int


class RpcServer:
    """A running server; obtain it from ``await nursery.start(serve_rpc, node, host, port)``."""

    def __init__(self, node: Node, limits: RpcLimits, url: str) -> None:
        self.node = node
        self.limits = limits
        self.url = url
        """``ws://host:port`` where clients connect."""
        self._methods = NodeMethods(node).table()
        self._sessions: set[_Session] = set()
        self._refused = 0
        self._dropped = 0
        self._messages = 0

    def statistics(self) -> RpcStatistics:
        return RpcStatistics(
            connections=len(self._sessions),
            connections_refused=self._refused,
            clients_dropped=self._dropped,
            messages=self._messages,
            subscriptions=sum(len(session.subscriptions) for session in self._sessions),
        )

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        """One TCP connection: handshake, session, close.

        Whatever the client does (garbage, a reset in mid-handshake) ends only this connection:
        trio-websocket's reader task can let `ConnectionClosed` escape when it cannot answer a
        bad handshake, which under its own `serve_websocket` would stop the whole server.
        """
        try:
            async with trio.open_nursery() as nursery:
                request: WebSocketRequest | None = None
                with trio.move_on_after(self.limits.handshake_timeout):
                    request = await wrap_server_stream(
                        nursery, stream, max_message_size=2 * self.limits.max_request_bytes
                    )
                if request is not None:
                    await self._handle(request)
                nursery.cancel_scope.cancel()  # stops the reader task
        except* ConnectionClosed:
            pass  # the client broke the connection
        finally:
            await trio.aclose_forcefully(stream)

    async def _handle(self, request: WebSocketRequest) -> None:
        if len(self._sessions) >= self.limits.max_connections:
            self._refused += 1
            await request.reject(503, body=b"too many RPC connections")
            return
        ws = await request.accept()
        session = _Session(self, ws)
        self._sessions.add(session)
        try:
            await session.run()
        finally:
            self._sessions.discard(session)
        if session.dropped:
            self._dropped += 1
            return  # no closing handshake: the socket is closed at once
        with trio.move_on_after(self.limits.close_timeout):
            await ws.aclose()


class _Session:
    """One client connection: its dispatcher, send queue and subscriptions."""

    def __init__(self, server: RpcServer, ws: WebSocketConnection) -> None:
        self._server = server
        self._ws = ws
        limits = server.limits
        self._outbox, self._outgoing = trio.open_memory_channel[str](limits.send_queue)
        self.subscriptions: dict[str, trio.CancelScope] = {}
        self._unannounced: list[trio.Event] = []
        self._last_id = 0
        self.dropped = False
        self._nursery: trio.Nursery | None = None
        methods = {
            **server._methods,
            "p2p_subscribe": Method(self.subscribe, ("topic",), 1),
            "p2p_unsubscribe": Method(self.unsubscribe, ("subscription",), 1),
        }
        self._dispatcher = Dispatcher(
            methods, max_request_bytes=limits.max_request_bytes, max_batch=limits.max_batch
        )

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._write)
            try:
                while True:
                    message = await self._ws.get_message()
                    self._server._messages += 1
                    response = await self._dispatcher.handle(message)
                    if response is not None:
                        await self._outbox.send(response)
                    for ready in self._unannounced:
                        ready.set()  # the subscription ids are on their way: notify from now
                    self._unannounced.clear()
            except ConnectionClosed:
                pass
            finally:
                nursery.cancel_scope.cancel()

    async def _write(self) -> None:
        try:
            async for text in self._outgoing:
                await self._ws.send_message(text)
        except ConnectionClosed:
            self._cancel()

    def _cancel(self) -> None:
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def _notify(self, text: str) -> None:
        try:
            self._outbox.send_nowait(text)
        except trio.WouldBlock:
            self.dropped = True
            self._cancel()

    async def subscribe(self, params: Params) -> Json:
        topic = params.text("topic")
        kind = TOPICS.get(topic)
        if kind is None:
            raise invalid_params(f"unknown topic {topic!r}; expected one of {sorted(TOPICS)}")
        if len(self.subscriptions) >= self._server.limits.max_subscriptions:
            raise RpcError(LIMIT_EXCEEDED, "too many subscriptions on this connection")
        assert self._nursery is not None  # requests are only read while the nursery runs
        self._last_id += 1
        subscription_id = f"0x{self._last_id:x}"
        ready = trio.Event()
        scope: trio.CancelScope = await self._nursery.start(
            self._forward, subscription_id, kind, ready
        )
        self.subscriptions[subscription_id] = scope
        self._unannounced.append(ready)
        return subscription_id

    async def unsubscribe(self, params: Params) -> Json:
        scope = self.subscriptions.pop(params.text("subscription"), None)
        if scope is None:
            return False
        scope.cancel()
        return True

    async def _forward(
        self,
        subscription_id: str,
        kind: EventKind,
        ready: trio.Event,
        *,
        task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Relay node events of `kind`; after a node-side overflow, resume from its history."""
        since: int | None = None
        with trio.CancelScope() as scope:
            while True:
                try:
                    async with self._server.node.subscribe([kind], since=since) as events:
                        if since is None:
                            task_status.started(scope)
                        await ready.wait()
                        async for event in events:
                            params: Json = {
                                "subscription": subscription_id,
                                "result": event_json(event),
                            }
                            self._notify(notification(NOTIFICATION_METHOD, params))
                    return  # the node stopped
                except EventHistoryExpired:
                    _logger.warning("RPC subscriber lost events; dropping the client")
                    self.dropped = True
                    self._cancel()
                    return
                except SubscriptionOverflow as exc:
                    since = exc.last_seq


async def serve_rpc(
    node: Node,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    limits: RpcLimits | None = None,
    task_status: trio.TaskStatus[RpcServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve JSON-RPC over WebSocket on `host` (an IP address) and `port` (0 picks a free one)
    until cancelled; ``task_status.started`` gets the `RpcServer` (with its `url`)."""
    chosen = RpcLimits() if limits is None else limits
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound_host, bound_port = listeners[0].socket.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    server = RpcServer(node, chosen, f"ws://{shown}:{bound_port}")
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, server._serve_connection, listeners)
        node.set_rpc_url(server.url)
        try:
            task_status.started(server)
            await trio.sleep_forever()
        finally:
            node.set_rpc_url(None)
