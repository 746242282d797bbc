"""The node's JSON-RPC methods and the JSON shapes of its objects (see docs/rpc.md).

Ids, keys and raw bytes are ``0x``-hex; addresses are bech32m text with the chain's prefix;
amounts are decimal strings of base units (they may exceed the 2**53 that JSON numbers carry
safely); heights, slots and epochs are JSON integers.
"""

from __future__ import annotations

from typing import Final

import trio

from p2pchain.errors import ConfigError, InvalidAddress
from p2pchain.ledger.address import decode_address, encode_address
from p2pchain.ledger.block import Block
from p2pchain.ledger.encoding import encode_item
from p2pchain.ledger.tx import (
    IssuePayload,
    Lock,
    MintPayload,
    OutPoint,
    Payload,
    RewardPayload,
    SlashPayload,
    Transaction,
    TxOutput,
)
from p2pchain.ledger.types import Address, Height
from p2pchain.ledger.utxo import AssetInfo
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.net.swarm import PeerInfo
from p2pchain.node import Event, HeadInfo, Node, PeerEvent, ReorgInfo, TxInfo
from p2pchain.node.config import MAX_CLOCK_TIME_MS
from p2pchain.rpc.jsonrpc import Json, Method, Params, invalid_params, parse_hex, to_hex

MAX_UTXOS: Final = 1_000
"""Most outputs one `address_utxos` call returns (its ``limit`` param may ask for fewer)."""
DEV_SET_TIME_TIMEOUT_S: Final = 10.0
"""dev_setTime answers within this even if the node's duties for that time stall."""


class NodeMethods:
    """Every request/response method, answered from one node's in-memory state."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.prefix = node.params.address_prefix

    def table(self) -> dict[str, Method]:
        methods = self._public()
        if self.node.config.dev_rpc:
            methods |= {
                "dev_clock": Method(self.dev_clock),
                "dev_setClockSkew": Method(self.dev_set_clock_skew, ("ms",), 1),
                "dev_setTime": Method(self.dev_set_time, ("ms",), 1),
            }
        return methods

    def _public(self) -> dict[str, Method]:
        return {
            "p2p_nodeInfo": Method(self.node_info),
            "chain_head": Method(self.chain_head),
            "chain_finalized": Method(self.chain_finalized),
            "chain_getBlock": Method(self.chain_get_block, ("block", "full"), 1),
            "chain_stateRoot": Method(self.chain_state_root, ("block",), 0),
            "chain_syncing": Method(self.chain_syncing),
            "tx_get": Method(self.tx_get, ("txid",), 1),
            "tx_submit": Method(self.tx_submit, ("raw",), 1),
            "address_utxos": Method(self.address_utxos, ("address", "limit", "pending"), 1),
            "address_balances": Method(self.address_balances, ("address",), 1),
            "asset_get": Method(self.asset_get, ("asset",), 1),
            "net_peers": Method(self.net_peers),
            "mempool_status": Method(self.mempool_status),
        }

    async def dev_clock(self, params: Params) -> Json:
        status = self.node.clock_status()
        return {
            "nowMs": status.now_ms,
            "skewMs": status.skew_ms,
            "manual": status.manual,
            "slot": status.slot,
        }

    async def dev_set_clock_skew(self, params: Params) -> Json:
        try:
            self.node.set_clock_skew(params.signed_integer("ms"))
        except ConfigError as exc:
            raise invalid_params(str(exc)) from exc
        return await self.dev_clock(params)

    async def dev_set_time(self, params: Params) -> Json:
        try:
            with trio.fail_after(DEV_SET_TIME_TIMEOUT_S):
                await self.node.advance_clock(params.integer("ms", maximum=MAX_CLOCK_TIME_MS))
        except ConfigError as exc:
            raise invalid_params(str(exc)) from exc
        except trio.TooSlowError as exc:
            raise invalid_params(
                f"the node's duties up to that time took over {DEV_SET_TIME_TIMEOUT_S:.0f} s"
            ) from exc
        return await self.dev_clock(params)

    async def node_info(self, params: Params) -> Json:
        info = self.node.info
        return {
            "nodeId": to_hex(info.node_id),
            "chainId": info.chain_id,
            "genesis": to_hex(info.genesis),
            "addressPrefix": self.prefix,
            "listenAddresses": list(info.listen_addresses),
            "rpcUrl": info.rpc_url,
            "validator": None if info.validator is None else to_hex(info.validator),
            "version": info.version,
        }

    async def chain_head(self, params: Params) -> Json:
        return head_json(self.node.head())

    async def chain_finalized(self, params: Params) -> Json:
        checkpoint = self.node.finalized()
        block = self.node.get_block(checkpoint.block_id)
        result = checkpoint_json(checkpoint)
        result["height"] = None if block is None else block.header.height
        return result

    async def chain_get_block(self, params: Params) -> Json:
        block = self._find_block(params.value("block"))
        if block is None:
            return None
        return self.block_json(block, full=params.flag("full", default=False))

    async def chain_state_root(self, params: Params) -> Json:
        selector = params.value("block")
        selector = "finalized" if selector is None else selector
        block = self._find_block(selector)
        if block is None:
            raise invalid_params("unknown block")
        root = self.node.state_root(block.block_id)  # InvalidBlock below the finalized one
        return {
            "blockId": to_hex(block.block_id),
            "height": block.header.height,
            "stateRoot": to_hex(root),
        }

    def _find_block(self, selector: Json) -> Block | None:
        node = self.node
        if isinstance(selector, bool) or selector is None:
            raise invalid_params("block must be a height, a 0x block id, 'head' or 'finalized'")
        if isinstance(selector, int):
            if selector < 0:
                raise invalid_params("block height must be non-negative")
            return node.get_block_at_height(Height(selector))
        if selector == "head":
            return node.get_block(node.head().block_id)
        if selector == "finalized":
            return node.get_block(node.finalized().block_id)
        if isinstance(selector, str):
            return node.get_block(parse_hex(selector, "block", length=32))
        raise invalid_params("block must be a height, a 0x block id, 'head' or 'finalized'")

    async def chain_syncing(self, params: Params) -> Json:
        state = self.node.sync_state()
        return {
            "syncing": state.syncing,
            "headHeight": state.head_height,
            "targetHeight": state.target_height,
        }

    async def tx_get(self, params: Params) -> Json:
        info = self.node.get_transaction(params.hex_bytes("txid", length=32))
        result = tx_info_json(info)
        result["tx"] = None if info.tx is None else self.tx_json(info.tx)
        return result

    async def tx_submit(self, params: Params) -> Json:
        tx = Transaction.from_bytes(params.hex_bytes("raw"))
        return to_hex(await self.node.submit_transaction(tx))

    async def address_utxos(self, params: Params) -> Json:
        address = self._address(params)
        limit = params.integer("limit", default=MAX_UTXOS, maximum=MAX_UTXOS)
        pending = params.flag("pending", default=False)
        return [
            {**outpoint_json(outpoint), **self.output_json(output)}
            for outpoint, output in self.node.utxos(address, pending=pending)[:limit]
        ]

    async def address_balances(self, params: Params) -> Json:
        balances = self.node.balances(self._address(params))
        return {to_hex(asset): str(amount) for asset, amount in sorted(balances.items())}

    async def asset_get(self, params: Params) -> Json:
        info = self.node.asset(params.hex_bytes("asset", length=32))
        return None if info is None else self.asset_json(info)

    async def net_peers(self, params: Params) -> Json:
        return [peer_json(peer) for peer in self.node.peers()]

    async def mempool_status(self, params: Params) -> Json:
        stats = self.node.statistics().mempool
        return {
            "size": stats.tx_count,
            "bytes": stats.total_bytes,
            "maxBytes": stats.max_bytes,
            "fees": str(stats.total_fees),
            "orphans": stats.orphan_count,
        }

    def _address(self, params: Params) -> Address:
        try:
            return decode_address(params.text("address"), self.prefix)
        except InvalidAddress as exc:
            raise invalid_params(f"address: {exc}") from exc

    # -- shapes --------------------------------------------------------------------------------
    def block_json(self, block: Block, *, full: bool) -> dict[str, Json]:
        header = block.header
        canonical = self.node.get_block_at_height(header.height)
        transactions: list[Json] = [
            self.tx_json(tx) if full else to_hex(tx.txid) for tx in block.transactions
        ]
        return {
            "blockId": to_hex(block.block_id),
            "parent": to_hex(header.parent),
            "height": header.height,
            "slot": header.slot,
            "epoch": header.slot // self.node.params.slots_per_epoch,
            "proposer": to_hex(header.proposer),
            "bodyRoot": to_hex(header.body_root),
            "signature": to_hex(block.signature),
            "canonical": canonical is not None and canonical.block_id == block.block_id,
            "transactions": transactions,
            "votes": [vote_json(vote) for vote in block.votes] if full else len(block.votes),
        }

    def tx_json(self, tx: Transaction) -> dict[str, Json]:
        return {
            "txid": to_hex(tx.txid),
            "kind": tx.kind.name.lower(),
            "inputs": [
                {**outpoint_json(tx_input.outpoint), "publicKey": to_hex(tx_input.public_key)}
                for tx_input in tx.inputs
            ],
            "outputs": [
                {"address": self.address_text(output.address), **self.output_json(output)}
                for output in tx.outputs
            ],
            "payload": payload_json(tx.payload),
            "size": tx.size,
            "raw": to_hex(tx.encoded),
        }

    def output_json(self, output: TxOutput) -> dict[str, Json]:
        return {
            "asset": to_hex(output.asset),
            "amount": str(output.amount),
            "lock": lock_json(output.lock),
        }

    def asset_json(self, info: AssetInfo) -> dict[str, Json]:
        return {
            "asset": to_hex(info.asset),
            "name": info.name.decode("utf-8", "replace"),
            "nameHex": to_hex(info.name),
            "issuer": self.address_text(info.issuer),
            "cap": str(info.cap),
            "issued": str(info.issued),
        }

    def address_text(self, address: bytes) -> str:
        return encode_address(address, self.prefix)


def head_json(head: HeadInfo) -> dict[str, Json]:
    return {"blockId": to_hex(head.block_id), "height": head.height, "slot": head.slot}


def checkpoint_json(checkpoint: Checkpoint) -> dict[str, Json]:
    return {"epoch": checkpoint.epoch, "blockId": to_hex(checkpoint.block_id)}


def tx_info_json(info: TxInfo) -> dict[str, Json]:
    return {
        "txid": to_hex(info.txid),
        "status": info.status.value,
        "blockId": None if info.block_id is None else to_hex(info.block_id),
        "height": info.height,
        "reason": None if info.reason is None else info.reason.value,
    }


def peer_event_json(event: PeerEvent) -> dict[str, Json]:
    return {"peerId": to_hex(event.peer_id), "address": event.address, "connected": event.connected}


def reorg_json(reorg: ReorgInfo) -> dict[str, Json]:
    return {
        "oldHead": to_hex(reorg.old_head),
        "newHead": to_hex(reorg.new_head),
        "undone": [to_hex(block_id) for block_id in reorg.undone],
        "applied": [to_hex(block_id) for block_id in reorg.applied],
    }


def event_json(event: Event) -> dict[str, Json]:
    """The ``result`` of a subscription notification for `event`."""
    data = event.data
    if isinstance(data, HeadInfo):
        return head_json(data)
    if isinstance(data, Checkpoint):
        return checkpoint_json(data)
    if isinstance(data, TxInfo):
        return tx_info_json(data)
    if isinstance(data, PeerEvent):
        return peer_event_json(data)
    return reorg_json(data)


def peer_json(peer: PeerInfo) -> dict[str, Json]:
    return {
        "peerId": to_hex(peer.peer_id),
        "address": peer.address,
        "direction": "outbound" if peer.outbound else "inbound",
        "score": peer.score,
        "headHeight": peer.hello.head_height,
        "bytesSent": peer.traffic.bytes_sent,
        "bytesReceived": peer.traffic.bytes_received,
        "messagesReceived": peer.traffic.messages_received,
    }


def vote_json(vote: Vote) -> dict[str, Json]:
    return {
        "slot": vote.slot,
        "head": to_hex(vote.head),
        "source": checkpoint_json(vote.source),
        "target": checkpoint_json(vote.target),
        "validator": to_hex(vote.validator),
    }


def lock_json(lock: Lock) -> dict[str, Json]:
    return {"kind": lock.kind.name.lower(), "value": lock.value, "key": to_hex(lock.key)}


def payload_json(payload: Payload) -> Json:
    match payload:
        case None:
            return None
        case RewardPayload(height=height):
            return {"height": height}
        case IssuePayload(name=name, cap=cap):
            return {
                "name": name.decode("utf-8", "replace"),
                "nameHex": to_hex(name),
                "cap": str(cap),
            }
        case MintPayload(asset=asset):
            return {"asset": to_hex(asset)}
        case SlashPayload(evidence=evidence):
            return {"evidence": to_hex(encode_item(evidence.to_rlp()))}
    raise TypeError(f"unknown payload {payload!r}")


def outpoint_json(outpoint: OutPoint) -> dict[str, Json]:
    return {"txid": to_hex(outpoint.txid), "index": outpoint.index}
