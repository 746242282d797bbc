"""The node's JSON-RPC methods and the JSON shapes of its objects (see docs/rpc.md).

Ids, keys and raw bytes are ``0x``-hex; addresses are bech32m text with the chain's prefix;
amounts are decimal strings of base units (they may exceed the 2**53 that JSON numbers carry
safely); heights, slots and epochs are JSON integers.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Final

import trio

from p2pchain.consensus import Proposal, ProposalStatus, Tally
from p2pchain.errors import ConfigError, InvalidAddress, InvalidProof
from p2pchain.ledger.address import decode_address, encode_address
from p2pchain.ledger.block import Block
from p2pchain.ledger.encoding import decode, encode, encode_item
from p2pchain.ledger.offer import MAX_OFFER_BYTES, Offer
from p2pchain.ledger.partial import PartialTransaction, combine
from p2pchain.ledger.proofs import (
    ProofTooLarge,
    ProvenValue,
    QueryKind,
    StateQuery,
    encode_proof,
    verify,
)
from p2pchain.ledger.tx import (
    MAX_OUTPUT_INDEX,
    GovVotePayload,
    IssuePayload,
    Lock,
    MintPayload,
    OutPoint,
    Payload,
    ProposePayload,
    RetirePayload,
    RewardPayload,
    SlashPayload,
    Transaction,
    TxOutput,
)
from p2pchain.ledger.types import Address, AssetId, Height, TxId
from p2pchain.ledger.utxo import AssetInfo
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.net.swarm import PeerInfo
from p2pchain.node import Event, HeadInfo, Node, PeerEvent, ReorgInfo, TxInfo
from p2pchain.node.config import MAX_CLOCK_TIME_MS
from p2pchain.node.node import MAX_LISTED
from p2pchain.node.offers import BookEntry
from p2pchain.params import ChainParams
from p2pchain.rpc.jsonrpc import (
    REJECTED,
    Json,
    Method,
    Params,
    RpcError,
    camel_case,
    invalid_params,
    parse_hex,
    to_hex,
)

DEFAULT_LISTED: Final = 100
"""Offers, retirements or proposals one call lists unless its ``limit`` asks otherwise."""
MAX_PARTS: Final = 16
"""Most partially signed copies one `partial_combine` takes."""
MAX_UTXOS: Final = 1_000
"""Most outputs one `address_utxos` call returns (its ``limit`` param may ask for fewer)."""
DEV_SET_TIME_TIMEOUT_S: Final = 10.0
"""dev_setTime answers within this even if the node's duties for that time stall."""
PROOF_TOO_LARGE: Final = "proof-too-large"
"""The ``data.reason`` of a `state_proof` whose account or stake table is past the proof
limits (`ProofTooLarge` carries no `Reason` of the ledger: nothing broke a rule)."""
_QUERY_SHAPES: Final = "address, outpoint (with address), asset or validators"


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
            "state_proof": Method(self.state_proof, ("query", "block"), 1),
            "tx_get": Method(self.tx_get, ("txid",), 1),
            "tx_proof": Method(self.tx_proof, ("txid",), 1),
            "tx_submit": Method(self.tx_submit, ("raw",), 1),
            "address_utxos": Method(self.address_utxos, ("address", "limit", "pending"), 1),
            "address_balances": Method(self.address_balances, ("address",), 1),
            "asset_get": Method(self.asset_get, ("asset",), 1),
            "asset_retirements": Method(self.asset_retirements, ("asset", "offset", "limit"), 1),
            "offer_submit": Method(self.offer_submit, ("raw",), 1),
            "offer_list": Method(self.offer_list, ("offered", "wanted", "limit"), 2),
            "offer_get": Method(self.offer_get, ("offerId",), 1),
            "partial_inspect": Method(self.partial_inspect, ("raw",), 1),
            "partial_combine": Method(self.partial_combine, ("raws",), 1),
            "partial_submit": Method(self.partial_submit, ("raw",), 1),
            "chain_params": Method(self.chain_params),
            "gov_proposals": Method(self.gov_proposals, ("status", "limit"), 0),
            "gov_proposal": Method(self.gov_proposal, ("proposalId",), 1),
            "gov_tally": Method(self.gov_tally, ("proposalId",), 1),
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
            "announcedAddresses": list(info.announced_addresses),
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
        return {
            "blockId": to_hex(block.block_id),
            "height": block.header.height,
            "stateRoot": to_hex(block.header.state_root),
        }

    async def state_proof(self, params: Params) -> Json:
        query = self._state_query(params.value("query"))
        selector = params.value("block")
        block = self._find_block("finalized" if selector is None else selector)
        if block is None:
            raise invalid_params("unknown block")
        try:
            proof = await self.node.state_proof(
                query, block.block_id
            )  # InvalidBlock below finalized
        except ProofTooLarge as exc:
            raise RpcError(
                REJECTED, f"{PROOF_TOO_LARGE}: {exc}", {"reason": PROOF_TOO_LARGE}
            ) from exc
        root = block.header.state_root
        try:
            value = verify(root, query, proof)
        except InvalidProof as exc:  # our own proof failed our own check: a bug, logged
            raise RuntimeError(f"state proof for {query} does not verify: {exc}") from exc
        return {
            "blockId": to_hex(block.block_id),
            "height": block.header.height,
            "stateRoot": to_hex(root),
            "query": self.query_json(query),
            "proof": to_hex(encode_item(encode_proof(proof))),
            "value": self.proven_json(query, value),
        }

    def _state_query(self, raw: Json) -> StateQuery:
        """The `StateQuery` a ``query`` param names (exactly one kind), or `INVALID_PARAMS`."""
        if not isinstance(raw, dict):
            raise invalid_params(f"query must be an object with {_QUERY_SHAPES}")
        members = set(raw)
        unknown = sorted(members - {"address", "outpoint", "asset", "validators"})
        if unknown:
            raise invalid_params(f"query: unknown member {unknown[0]!r}")
        if members == {"address"}:
            return StateQuery(kind=QueryKind.ACCOUNT, address=self._query_address(raw))
        if members == {"outpoint", "address"}:
            return StateQuery(
                kind=QueryKind.OUTPUT,
                outpoint=_query_outpoint(raw["outpoint"]),
                address=self._query_address(raw),
            )
        if members == {"asset"}:
            asset = raw["asset"]
            if not isinstance(asset, str):
                raise invalid_params("query.asset must be a 0x asset id")
            return StateQuery(
                kind=QueryKind.ASSET, asset=AssetId(parse_hex(asset, "query.asset", length=32))
            )
        if members == {"validators"}:
            if raw["validators"] is not True:
                raise invalid_params("query.validators must be true")
            return StateQuery(kind=QueryKind.VALIDATORS)
        if members == {"outpoint"}:
            raise invalid_params("query.outpoint needs the owner's address")
        raise invalid_params(f"query must have exactly one of {_QUERY_SHAPES}")

    def _query_address(self, raw: dict[str, Json]) -> Address:
        text = raw["address"]
        if not isinstance(text, str):
            raise invalid_params("query.address must be a string")
        try:
            return decode_address(text, self.prefix)
        except InvalidAddress as exc:
            raise invalid_params(f"query.address: {exc}") from exc

    async def tx_proof(self, params: Params) -> Json:
        txid = params.hex_bytes("txid", length=32)
        try:
            header, tx, proof = self.node.transaction_proof(txid)
        except KeyError:
            raise invalid_params("txid is not on the canonical chain") from None
        return {
            "blockId": to_hex(header.block_id),
            "height": header.height,
            "header": to_hex(encode(header)),
            "tx": to_hex(tx.encoded),
            "proof": to_hex(encode_item(proof.to_rlp())),
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

    async def asset_retirements(self, params: Params) -> Json:
        asset = params.hex_bytes("asset", length=32)
        offset = params.integer("offset", default=0)
        limit = params.integer("limit", default=DEFAULT_LISTED, maximum=MAX_LISTED)
        final = self.node.get_block(self.node.finalized().block_id)
        final_height = -1 if final is None else final.header.height
        return [
            {
                "certificate": to_hex(r.certificate),
                "blockId": to_hex(r.location.block_id),
                "height": r.location.height,
                "final": r.location.height <= final_height,
                "asset": to_hex(r.asset),
                "amount": str(r.amount),
                "beneficiary": r.beneficiary.decode("utf-8", "replace"),
                "beneficiaryHex": to_hex(r.beneficiary),
                "purpose": r.purpose.decode("utf-8", "replace"),
                "purposeHex": to_hex(r.purpose),
                "retiredBy": self.address_text(r.retired_by),
            }
            for r in self.node.retirements(asset, offset=offset, limit=limit)
        ]

    async def offer_submit(self, params: Params) -> Json:
        raw = params.hex_bytes("raw")
        if len(raw) > MAX_OFFER_BYTES:
            raise invalid_params(f"raw: an offer is at most {MAX_OFFER_BYTES} bytes")
        return to_hex(await self.node.submit_offer(decode(Offer, raw)))

    async def offer_list(self, params: Params) -> Json:
        offered = params.hex_bytes("offered", length=32)
        wanted = params.hex_bytes("wanted", length=32)
        limit = params.integer("limit", default=DEFAULT_LISTED, maximum=MAX_LISTED)
        return [self.offer_json(entry) for entry in self.node.offers(offered, wanted, limit=limit)]

    async def offer_get(self, params: Params) -> Json:
        entry = self.node.get_offer(params.hex_bytes("offerId", length=32))
        return None if entry is None else self.offer_json(entry)

    async def partial_inspect(self, params: Params) -> Json:
        partial = self._partial(params.hex_bytes("raw"))
        tx = partial.tx
        native = self.node.params.native_asset
        inputs: list[Json] = []
        coins: dict[Address, dict[OutPoint, TxOutput]] = {}
        for index, (tx_input, claimed) in enumerate(zip(tx.inputs, partial.spent, strict=True)):
            if claimed.address not in coins:  # one read of each signer's coins
                coins[claimed.address] = dict(self.node.utxos(claimed.address))
            on_chain = coins[claimed.address].get(tx_input.outpoint) == claimed
            inputs.append(
                {
                    **outpoint_json(tx_input.outpoint),
                    "spent": {
                        "address": self.address_text(claimed.address),
                        **self.output_json(claimed),
                    },
                    "onChain": on_chain,
                    "signed": partial.is_signed(index),
                    "offer": tx_input.offer_until is not None,
                }
            )
        addresses = dict.fromkeys(o.address for o in (*partial.spent, *tx.outputs))
        fee = sum(o.amount for o in partial.spent if o.asset == native) - sum(
            o.amount for o in tx.outputs if o.asset == native
        )
        missing: list[Json] = list(partial.missing())
        return {
            "txid": to_hex(tx.txid),
            "kind": tx.kind.name.lower(),
            "inputs": inputs,
            "outputs": [
                {"address": self.address_text(o.address), **self.output_json(o)} for o in tx.outputs
            ],
            "fee": str(fee),
            "missing": missing,
            "signersNeeded": [self.address_text(a) for a in partial.signers_needed()],
            "flows": {
                self.address_text(address): {
                    to_hex(asset): str(amount) for asset, amount in partial.flows(address).items()
                }
                for address in addresses
            },
        }

    async def partial_combine(self, params: Params) -> Json:
        raws = params.value("raws")
        if not isinstance(raws, list) or not raws or len(raws) > MAX_PARTS:
            raise invalid_params(f"raws must be a list of 1..{MAX_PARTS} hex strings")
        parts = []
        for raw in raws:
            if not isinstance(raw, str):
                raise invalid_params("raws must be hex strings")
            parts.append(self._partial(parse_hex(raw, "raws")))
        return to_hex(encode(combine(parts)))

    async def partial_submit(self, params: Params) -> Json:
        tx = self._partial(params.hex_bytes("raw")).finish()
        return to_hex(await self.node.submit_transaction(tx))

    def _partial(self, raw: bytes) -> PartialTransaction:
        return decode(PartialTransaction, raw)

    async def chain_params(self, params: Params) -> Json:
        return chain_params_json(self.node.chain_params())

    async def gov_proposals(self, params: Params) -> Json:
        status: ProposalStatus | None = None
        if params.has("status"):
            text = params.text("status")
            try:
                status = ProposalStatus(text)
            except ValueError:
                choices = ", ".join(s.value for s in ProposalStatus)
                raise invalid_params(f"status must be one of {choices}") from None
        limit = params.integer("limit", default=DEFAULT_LISTED, maximum=MAX_LISTED)
        state = self.node.governance()
        found = [p for p in state.proposals() if status is None or p.status is status]
        newest = found[max(0, len(found) - limit) :] if limit else []
        return [self.proposal_json(p, state.base) for p in newest]

    async def gov_proposal(self, params: Params) -> Json:
        proposal, base = self._proposal(params)
        return None if proposal is None else self.proposal_json(proposal, base)

    async def gov_tally(self, params: Params) -> Json:
        proposal, base = self._proposal(params)
        return None if proposal is None else tally_json(proposal.current_tally(), base)

    def _proposal(self, params: Params) -> tuple[Proposal | None, ChainParams]:
        """The proposal `proposalId` names (None if unknown) and the rules it is judged by."""
        state = self.node.governance()
        return state.proposal(TxId(params.hex_bytes("proposalId", length=32))), state.base

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
                {
                    **outpoint_json(tx_input.outpoint),
                    "publicKey": to_hex(tx_input.public_key),
                    "offerUntil": tx_input.offer_until,
                }
                for tx_input in tx.inputs
            ],
            "outputs": [
                {"address": self.address_text(output.address), **self.output_json(output)}
                for output in tx.outputs
            ],
            "payload": payload_json(tx.payload, self.prefix),
            "size": tx.size,
            "raw": to_hex(tx.encoded),
        }

    def output_json(self, output: TxOutput) -> dict[str, Json]:
        return {
            "asset": to_hex(output.asset),
            "amount": str(output.amount),
            "lock": lock_json(output.lock),
        }

    def offer_json(self, entry: BookEntry) -> dict[str, Json]:
        offer, offered = entry.offer, entry.offered
        return {
            "offerId": to_hex(entry.offer_id),
            "raw": to_hex(encode(offer)),
            **outpoint_json(offer.outpoint),
            "maker": self.address_text(entry.maker),
            "offered": self.output_json(offered),
            "wanted": {
                "address": self.address_text(offer.wanted.address),
                **self.output_json(offer.wanted),
            },
            "until": offer.until,
            "price": f"{entry.price.numerator}/{entry.price.denominator}",
        }

    def proposal_json(self, proposal: Proposal, base: ChainParams) -> dict[str, Json]:
        """A proposal; its tally is judged by the chain's (genesis) governance rules. `votes`
        is null once tallied: a tallied proposal keeps its tally, not its votes."""
        return {
            "proposalId": to_hex(proposal.proposal_id),
            "status": proposal.status.value,
            "changes": [{"name": name, "value": value} for name, value in proposal.changes],
            "refund": self.address_text(proposal.refund),
            "deposit": str(proposal.deposit),
            "submitted": proposal.submitted,
            "start": proposal.start,
            "end": proposal.end,
            "activation": proposal.activation,
            "tally": tally_json(proposal.current_tally(), base),
            "votes": len(proposal.votes) if proposal.status is ProposalStatus.VOTING else None,
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

    def query_json(self, query: StateQuery) -> dict[str, Json]:
        """`query` as `state_proof` takes it (addresses and hex in their canonical spelling)."""
        result: dict[str, Json] = {}
        if query.outpoint is not None:
            result["outpoint"] = outpoint_json(query.outpoint)
        if query.address is not None:
            result["address"] = self.address_text(query.address)
        if query.asset is not None:
            result["asset"] = to_hex(query.asset)
        if query.kind is QueryKind.VALIDATORS:
            result["validators"] = True
        return result

    def proven_json(self, query: StateQuery, value: ProvenValue) -> Json:
        """What a verified proof shows: an address's outputs as `address_utxos` lists them,
        one output as a transaction's (or null), an asset as `asset_get` (or null), the stake
        table as ``{"0x<key>": "<stake>"}``."""
        if query.kind is QueryKind.ACCOUNT:
            assert isinstance(value, list)
            return [
                {**outpoint_json(outpoint), **self.output_json(output)}
                for outpoint, output in value
            ]
        if query.kind is QueryKind.OUTPUT:
            assert value is None or isinstance(value, TxOutput)
            if value is None:
                return None
            return {"address": self.address_text(value.address), **self.output_json(value)}
        if query.kind is QueryKind.ASSET:
            assert value is None or isinstance(value, AssetInfo)
            return None if value is None else self.asset_json(value)
        assert isinstance(value, dict)
        return {to_hex(key): str(stake) for key, stake in sorted(value.items())}

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


def payload_json(payload: Payload, prefix: str) -> Json:
    """A transaction's payload; `prefix` spells the addresses in it."""
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
        case RetirePayload(asset=asset, amount=amount, beneficiary=beneficiary, purpose=purpose):
            return {
                "asset": to_hex(asset),
                "amount": str(amount),
                "beneficiary": beneficiary.decode("utf-8", "replace"),
                "beneficiaryHex": to_hex(beneficiary),
                "purpose": purpose.decode("utf-8", "replace"),
                "purposeHex": to_hex(purpose),
            }
        case ProposePayload(changes=changes, activation=activation, refund=refund):
            return {
                "changes": [
                    {"name": name.decode("ascii", "replace"), "value": value}
                    for name, value in changes
                ],
                "activation": activation,
                "refund": encode_address(refund, prefix),
            }
        case GovVotePayload(
            proposal=proposal, choice=choice, validator=validator, signature=signature
        ):
            return {
                "proposal": to_hex(proposal),
                "choice": choice.name.lower(),
                "validator": to_hex(validator),
                "signature": to_hex(signature),
            }
    raise TypeError(f"unknown payload {payload!r}")


def chain_params_json(params: ChainParams) -> dict[str, Json]:
    """Every field of `params`, named in camelCase: integers as JSON numbers, bytes as hex."""
    result: dict[str, Json] = {}
    for spec in fields(params):
        value = getattr(params, spec.name)
        name = camel_case(spec.name)
        if isinstance(value, bytes):
            result[name] = to_hex(value)
        elif isinstance(value, int | str):
            result[name] = value
        else:  # a field of a new type needs a JSON form of its own
            raise TypeError(f"no JSON form for {spec.name}={value!r}")
    return result


def tally_json(tally: Tally, base: ChainParams) -> dict[str, Json]:
    """Stake per answer (decimal strings, like amounts) and whether it would pass now."""
    return {
        "yes": str(tally.yes),
        "no": str(tally.no),
        "abstain": str(tally.abstain),
        "turnout": str(tally.turnout),
        "total": str(tally.total),
        "quorumReached": tally.reaches_quorum(base),
        "passing": tally.passes(base),
    }


def _query_outpoint(raw: Json) -> OutPoint:
    """``{"txid": "0x…", "index": n}`` as an `OutPoint`, or `INVALID_PARAMS`."""
    if not isinstance(raw, dict) or set(raw) != {"txid", "index"}:
        raise invalid_params('query.outpoint must be {"txid": "0x…", "index": n}')
    txid, index = raw["txid"], raw["index"]
    if not isinstance(txid, str):
        raise invalid_params("query.outpoint.txid must be a 0x txid")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= MAX_OUTPUT_INDEX:
        raise invalid_params(f"query.outpoint.index must be an integer 0..{MAX_OUTPUT_INDEX}")
    return OutPoint(txid=TxId(parse_hex(txid, "query.outpoint.txid", length=32)), index=index)


def outpoint_json(outpoint: OutPoint) -> dict[str, Json]:
    return {"txid": to_hex(outpoint.txid), "index": outpoint.index}
