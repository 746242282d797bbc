"""A small JSON-RPC 2.0 client over WebSocket (trio-websocket), for the CLI's own use."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from itertools import count

from trio_websocket import WebSocketConnection, open_websocket_url

from p2pchain.errors import P2PChainError

JSON = None | bool | int | float | str | list["JSON"] | dict[str, "JSON"]


class RpcError(P2PChainError):
    """The node answered a call with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: JSON = None) -> None:
        reason = data.get("reason") if isinstance(data, dict) else None
        super().__init__(f"{message} ({reason})" if reason else message)
        self.code = code
        self.data = data
        self.reason = reason


class RpcClient:
    """Sequential calls over one connection."""

    def __init__(self, connection: WebSocketConnection) -> None:
        self._connection = connection
        self._ids = count(1)

    async def call(self, method: str, *params: JSON) -> JSON:
        request_id = next(self._ids)
        request = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}
        await self._connection.send_message(json.dumps(request))
        while True:
            reply = json.loads(await self._connection.get_message())
            if isinstance(reply, dict) and reply.get("id") == request_id:
                break
        if "error" in reply:
            error = reply["error"]
            raise RpcError(int(error["code"]), str(error["message"]), error.get("data"))
        result: JSON = reply.get("result")
        return result


@asynccontextmanager
async def connect_rpc(url: str) -> AsyncIterator[RpcClient]:
    """Open a connection to a node's JSON-RPC endpoint (``ws://host:port``)."""
    async with open_websocket_url(url, connect_timeout=5, disconnect_timeout=2) as connection:
        yield RpcClient(connection)
