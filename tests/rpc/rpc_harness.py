"""Test harness: a single-validator node on loopback with its RPC server, and an independent
JSON-RPC client built on the `websockets` package (not p2pchain code).

The clients are real WebSocket clients running on threads, so trio's virtual clock cannot drive
these tests: the node's slots are kept short (`SLOT_MS`) instead. The websockets sync client
runs on threads of its own; each call here hands one blocking operation to a trio worker
thread, so tests can interleave it with the node. Receive timeouts and `WAIT_S` only turn a
hang into a failure: no test asserts on time.
"""

import json
import socket
from contextlib import ExitStack
from dataclasses import dataclass, replace
from functools import partial

import trio
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from p2pchain.rpc import RpcLimits, RpcServer, serve_rpc
from p2pchain.testing.testnet import TESTNET_PARAMS, Testnet

SLOT_MS = 250
PARAMS = replace(TESTNET_PARAMS, slot_ms=SLOT_MS)
WAIT_S = 60.0
RECV_TIMEOUT_S = 60.0


@dataclass
class Served:
    net: Testnet
    server: RpcServer
    nursery: trio.Nursery

    @property
    def node(self):
        return self.net.nodes[0]

    async def start_server(self, limits: RpcLimits) -> RpcServer:
        """Another RPC server on the same node, with other limits."""
        return await self.nursery.start(partial(serve_rpc, self.node, limits=limits))


class Client:
    def __init__(self, ws: ClientConnection, stack: ExitStack) -> None:
        self.ws = ws
        self._stack = stack
        self._next_id = 0
        self.notifications: list[dict] = []

    @classmethod
    async def connect(cls, url: str, *, small_receive_buffer: bool = False, **options) -> "Client":
        def open_() -> Client:
            stack = ExitStack()
            sock = None
            if small_receive_buffer:
                # A client that reads slowly: its kernel buffer fills after a few KB.
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                host, port = url.removeprefix("ws://").rsplit(":", 1)
                sock.connect((host, int(port)))
            ws = stack.enter_context(
                connect(url, sock=sock, proxy=None, ping_interval=None, **options)
            )
            return cls(ws, stack)

        return await trio.to_thread.run_sync(open_)

    async def send(self, message: str | bytes) -> None:
        await trio.to_thread.run_sync(self.ws.send, message)

    async def send_json(self, value: object) -> None:
        await self.send(json.dumps(value))

    async def receive(self):
        text = await trio.to_thread.run_sync(partial(self.ws.recv, timeout=RECV_TIMEOUT_S))
        return json.loads(text)

    async def response(self):
        """The next message that is not a subscription notification (those are kept)."""
        while True:
            message = await self.receive()
            if isinstance(message, dict) and message.get("method") == "p2p_subscription":
                self.notifications.append(message["params"])
            else:
                return message

    async def notification(self) -> dict:
        """The next subscription notification's params ({"subscription", "result"})."""
        if self.notifications:
            return self.notifications.pop(0)
        message = await self.receive()
        assert message.get("method") == "p2p_subscription", message
        return message["params"]

    async def request(self, method: str, *params, **named):
        """Send one request and return its whole response object."""
        self._next_id += 1
        request = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params or named:
            request["params"] = named or list(params)
        await self.send_json(request)
        response = await self.response()
        assert response["id"] == self._next_id
        return response

    async def call(self, method: str, *params, **named):
        """The result of a request that must succeed."""
        response = await self.request(method, *params, **named)
        assert "error" not in response, response
        return response["result"]

    async def wait_closed(self) -> ConnectionClosed:
        """Read and discard until the server has closed the connection; return how."""
        while True:
            try:
                await self.receive()
            except ConnectionClosed as closed:
                return closed

    async def close(self) -> None:
        await trio.to_thread.run_sync(self._stack.close)
