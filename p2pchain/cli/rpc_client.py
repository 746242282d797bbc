"""A small JSON-RPC 2.0 client over WebSocket (trio-websocket), for the CLI's own use."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from itertools import count

from trio_websocket import WebSocketConnection, open_websocket_url

from p2pchain.ledger.tx import NO_LOCK, Lock, LockKind, OutPoint, TxOutput
from p2pchain.ledger.types import Address, Amount, AssetId, TxId
from p2pchain.rpc.jsonrpc import INTERNAL_ERROR, RpcError

JSON = None | bool | int | float | str | list["JSON"] | dict[str, "JSON"]


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
            data = error.get("data")
            raise RpcError(
                int(error["code"]), str(error["message"]), data if isinstance(data, dict) else None
            )
        result: JSON = reply.get("result")
        return result


@asynccontextmanager
async def connect_rpc(url: str) -> AsyncIterator[RpcClient]:
    """Open a connection to a node's JSON-RPC endpoint (``ws://host:port``)."""
    async with open_websocket_url(url, connect_timeout=5, disconnect_timeout=2) as connection:
        yield RpcClient(connection)


def _hex(value: JSON) -> bytes:
    text = str(value)
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


def parse_utxos(result: JSON, owner: Address) -> list[tuple[OutPoint, TxOutput]]:
    """The `address_utxos` answer as ledger coins (see docs/rpc.md for the JSON shape)."""
    coins = []
    for entry in result if isinstance(result, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("lock"), dict):
            raise RpcError(INTERNAL_ERROR, f"unexpected address_utxos entry {entry!r}")
        lock_json = entry["lock"]
        assert isinstance(lock_json, dict)
        kind = LockKind[str(lock_json["kind"]).upper()]
        lock = Lock(kind=kind, value=int(str(lock_json["value"])), key=_hex(lock_json["key"]))
        outpoint = OutPoint(txid=TxId(_hex(entry["txid"])), index=int(str(entry["index"])))
        output = TxOutput(
            asset=AssetId(_hex(entry["asset"])),
            amount=Amount(int(str(entry["amount"]))),
            address=owner,
            lock=NO_LOCK if lock == NO_LOCK else lock,
        )
        coins.append((outpoint, output))
    return coins
