"""`state_proof` and `tx_proof` behind the envelope, on simulated nodes in virtual time: every
answer is checked the way a light client would, against the header of the block it names."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import trio

from p2pchain import TxStatus
from p2pchain.errors import InvalidProof
from p2pchain.ledger.block import InclusionProof, verify_inclusion
from p2pchain.ledger.encoding import decode, decode_item, encode
from p2pchain.ledger.header import BlockHeader
from p2pchain.ledger.proofs import (
    MAX_PROOF_OUTPUTS,
    QueryKind,
    StateProof,
    StateQuery,
    decode_proof,
    verify,
)
from p2pchain.ledger.tx import LockKind, Transaction, TxOutput
from p2pchain.ledger.types import Amount, AssetId, Height, Slot, TxId
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Wallet
from p2pchain.node import Node, NodeLimits
from p2pchain.rpc import Dispatcher, NodeMethods
from p2pchain.testing.simnet import SimulatedNetwork
from p2pchain.testing.testnet import TESTNET_PARAMS, Testnet, derive_key, testnet

LIMIT_S = 60 * TESTNET_PARAMS.slot_ms * TESTNET_PARAMS.slots_per_epoch / 1000
"""A bound on virtual time that turns a hang into a failure; no test asserts on time."""
FEE = Amount(10_000)
UNKNOWN_ID = "0x" + "ee" * 32


class Rpc:
    def __init__(self, node: Node) -> None:
        self.dispatcher = Dispatcher(NodeMethods(node).table())
        self.ids = 0

    async def send(self, method: str, params: object) -> dict:
        self.ids += 1
        request = {"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params}
        response = json.loads(await self.dispatcher.handle(json.dumps(request)))
        assert response["id"] == self.ids
        return response

    async def call(self, method: str, *params: object) -> dict:
        response = await self.send(method, list(params))
        assert "result" in response, response
        return response["result"]


def unhex(text: str) -> bytes:
    assert text.startswith("0x")
    return bytes.fromhex(text[2:])


def header_of(node: Node, result: dict) -> BlockHeader:
    """The header of the block a result names, read through the node's block API (what a
    light client would hold), checked against the result's id, height and root."""
    block = node.get_block(unhex(result["blockId"]))
    assert block is not None
    assert block.header.height == result["height"]
    assert unhex(result["stateRoot"]) == block.header.state_root
    return block.header


def proof_of(result: dict) -> StateProof:
    return decode_proof(decode_item(unhex(result["proof"])))


def checked(node: Node, result: dict, query: StateQuery) -> object:
    """What the returned proof shows under the named block's header (raises if it does not
    verify)."""
    return verify(header_of(node, result).state_root, query, proof_of(result))


def next_block(node: Node) -> BlockContext:
    head = node.head()
    return BlockContext(height=Height(head.height + 1), slot=Slot(head.slot + 1))


async def settle(net: Testnet, tx: Transaction) -> None:
    node = net.nodes[0]
    await node.submit_transaction(tx)
    with trio.fail_after(LIMIT_S):
        await node.wait_for_status(tx.txid, TxStatus.INCLUDED)


def finalized_height(node: Node) -> int:
    block = node.get_block(node.finalized().block_id)
    assert block is not None
    return block.header.height


def utxos_json(node: Node, wallet: Wallet) -> list[dict]:
    """`address_utxos` as the node computes it from its head, independently of any proof."""
    return [
        {
            "txid": "0x" + outpoint.txid.hex(),
            "index": outpoint.index,
            "asset": "0x" + output.asset.hex(),
            "amount": str(output.amount),
            "lock": {
                "kind": output.lock.kind.name.lower(),
                "value": output.lock.value,
                "key": "0x" + output.lock.key.hex(),
            },
        }
        for outpoint, output in node.utxos(wallet.address)
    ]


async def test_an_account_proof_verifies_against_the_named_headers_state_root(autojump_clock):
    async with testnet(1, transport=SimulatedNetwork(seed=11)) as net:
        node, payee = net.nodes[0], net.wallets[1]
        await settle(net, net.transfer(0, payee.address, 3 * 10**8))
        rpc = Rpc(node)
        query = StateQuery(kind=QueryKind.ACCOUNT, address=payee.address)
        result = await rpc.call("state_proof", {"address": payee.address_text}, "head")
        assert result["query"] == {"address": payee.address_text}
        proven = checked(node, result, query)
        assert proven == node.utxos(payee.address)
        assert len(proven) == 2  # the genesis allocation and the payment
        assert (
            result["value"]
            == utxos_json(node, payee)
            == await rpc.call("address_utxos", payee.address_text)
        )
        # The same account named by height and by id: one answer.
        height = result["height"]
        by_height = await rpc.call("state_proof", {"address": payee.address_text}, height)
        by_id = await rpc.call("state_proof", {"address": payee.address_text}, result["blockId"])
        assert by_height == by_id == result
        # An address that owns nothing: the proof shows the account empty.
        stranger = Wallet(derive_key(net.seed, "stranger", 0), net.params)
        nothing = await rpc.call("state_proof", {"address": stranger.address_text}, "head")
        empty = StateQuery(kind=QueryKind.ACCOUNT, address=stranger.address)
        assert checked(node, nothing, empty) == [] == nothing["value"]
        # The proof holds for its own address under its own root only.
        root = header_of(node, result).state_root
        with pytest.raises(InvalidProof, match="another address"):
            verify(root, empty, proof_of(result))
        genesis = node.get_block_at_height(Height(0))
        assert genesis is not None
        with pytest.raises(InvalidProof, match="root"):
            verify(genesis.header.state_root, query, proof_of(result))


async def test_the_default_block_is_the_finalized_one(autojump_clock):
    async with testnet(1, transport=SimulatedNetwork(seed=12)) as net:
        await net.wait_finalized(2)
        node, payee = net.nodes[0], net.wallets[1]
        result = await Rpc(node).call("state_proof", {"address": payee.address_text})
        assert unhex(result["blockId"]) == node.finalized().block_id
        query = StateQuery(kind=QueryKind.ACCOUNT, address=payee.address)
        assert checked(node, result, query) == node.utxos(payee.address)  # nothing moved since


async def test_an_output_proof_shows_it_present_then_absent_once_spent(autojump_clock):
    async with testnet(1, transport=SimulatedNetwork(seed=13)) as net:
        node, owner = net.nodes[0], net.wallets[2]
        rpc = Rpc(node)
        [(outpoint, output)] = node.utxos(owner.address)
        before = node.head()
        spec = {
            "outpoint": {"txid": "0x" + outpoint.txid.hex().upper(), "index": outpoint.index},
            "address": owner.address_text,
        }
        query = StateQuery(kind=QueryKind.OUTPUT, outpoint=outpoint, address=owner.address)
        present = await rpc.call("state_proof", spec, "head")
        assert checked(node, present, query) == output
        assert present["query"]["outpoint"]["txid"] == "0x" + outpoint.txid.hex()
        assert present["value"] == {
            "address": owner.address_text,
            "asset": "0x" + output.asset.hex(),
            "amount": str(output.amount),
            "lock": {"kind": "none", "value": 0, "key": "0x" + output.lock.key.hex()},
        }
        await settle(net, net.transfer(2, net.wallets[3].address, 10**8))
        assert all(op != outpoint for op, _ in node.utxos(owner.address))
        absent = await rpc.call("state_proof", spec, "head")
        assert absent["value"] is None
        assert checked(node, absent, query) is None
        # The block before the spend still proves it present; proving there leaves the
        # node's head state where it was.
        head_root = node.state_root(node.head().block_id)
        earlier = await rpc.call("state_proof", spec, "0x" + before.block_id.hex())
        assert earlier["height"] == before.height
        assert checked(node, earlier, query) == output
        assert node.state_root(node.head().block_id) == head_root
        assert all(op != outpoint for op, _ in node.utxos(owner.address))
        # Asked under another owner, the outpoint is absent.
        other = {**spec, "address": net.wallets[3].address_text}
        elsewhere = await rpc.call("state_proof", other, "0x" + before.block_id.hex())
        assert elsewhere["value"] is None
        other_query = replace(query, address=net.wallets[3].address)
        assert checked(node, elsewhere, other_query) is None


async def test_an_asset_proof_shows_the_issued_record_and_a_never_issued_one(autojump_clock):
    async with testnet(1, transport=SimulatedNetwork(seed=14)) as net:
        node, issuer = net.nodes[0], net.wallets[0]
        rpc = Rpc(node)
        tx, asset = issuer.build_issue(
            node.utxos(issuer.address), name=b"CO2-t", amount=Amount(900), cap=5_000, fee=FEE,
            context=next_block(node),
        )  # fmt: skip
        await settle(net, tx)
        result = await rpc.call("state_proof", {"asset": "0x" + asset.hex()}, "head")
        info = checked(node, result, StateQuery(kind=QueryKind.ASSET, asset=asset))
        assert info == node.asset(asset)
        assert info.issued == 900
        assert info.cap == 5_000
        assert result["value"] == await rpc.call("asset_get", "0x" + asset.hex())
        assert result["value"]["name"] == "CO2-t"
        never = AssetId(bytes(range(32)))
        missing = await rpc.call("state_proof", {"asset": "0x" + never.hex()}, "head")
        assert missing["value"] is None
        assert checked(node, missing, StateQuery(kind=QueryKind.ASSET, asset=never)) is None


async def test_a_validators_proof_equals_the_bonded_stake(autojump_clock):
    async with testnet(2, transport=SimulatedNetwork(seed=15)) as net:
        await net.wait_finalized(1)
        node = net.nodes[0]
        result = await Rpc(node).call("state_proof", {"validators": True}, "head")
        stakes = checked(node, result, StateQuery(kind=QueryKind.VALIDATORS))
        bonded = {}
        for key in net.validator_keys:  # each self-bonded: its own address holds the stake
            owner = Wallet(key, net.params).address
            bonded[key.public_key] = sum(
                output.amount
                for _, output in node.utxos(owner)
                if output.lock.kind is LockKind.STAKE and output.lock.key == key.public_key
            )
        assert stakes == bonded
        assert len(bonded) == 2
        assert all(stake > 0 for stake in bonded.values())
        assert result["value"] == {
            "0x" + key.hex(): str(stake) for key, stake in sorted(bonded.items())
        }
        assert result["query"] == {"validators": True}


async def test_tx_proof_places_a_payment_in_its_blocks_body(autojump_clock):
    async with testnet(1, transport=SimulatedNetwork(seed=16)) as net:
        node = net.nodes[0]
        rpc = Rpc(node)
        txs = [net.transfer(i, net.wallets[3].address, 10**8) for i in range(3)]
        for tx in txs:
            await node.submit_transaction(tx)
        with trio.fail_after(LIMIT_S):
            for tx in txs:
                await node.wait_for_status(tx.txid, TxStatus.INCLUDED)
        for tx in txs:
            result = await rpc.call("tx_proof", "0x" + tx.txid.hex())
            header = decode(BlockHeader, unhex(result["header"]))
            proven = Transaction.from_bytes(unhex(result["tx"]))
            proof = InclusionProof.from_rlp(decode_item(unhex(result["proof"])))
            info = node.get_transaction(tx.txid)
            assert unhex(result["blockId"]) == header.block_id == info.block_id
            assert result["height"] == header.height == info.height
            assert proven.txid == tx.txid
            assert verify_inclusion(header.body_root, proven, proof)
            block = node.get_block_at_height(header.height)
            assert block is not None
            assert block.header == header
            others = [t for t in block.transactions if t.txid != tx.txid]
            assert others  # the block's reward, at least
            assert not any(verify_inclusion(header.body_root, t, proof) for t in others)


async def test_tx_proof_reads_a_body_that_left_memory_from_storage(autojump_clock):
    limits = replace(NodeLimits(), history_blocks=1)
    async with testnet(1, transport=SimulatedNetwork(seed=17), limits=limits) as net:
        node = net.nodes[0]
        tx = net.transfer(0, net.wallets[1].address, 10**8)
        await settle(net, tx)
        height = node.get_transaction(tx.txid).height
        assert height is not None
        # Finality passes it by more than the one body kept in memory below the finalized one.
        await net.wait_for(lambda: finalized_height(node) > height + 2)
        assert node.statistics().chain.history_blocks <= 1
        result = await Rpc(node).call("tx_proof", "0x" + tx.txid.hex())
        header = decode(BlockHeader, unhex(result["header"]))
        proof = InclusionProof.from_rlp(decode_item(unhex(result["proof"])))
        assert header.height == height
        assert verify_inclusion(header.body_root, tx, proof)


async def test_an_account_past_the_proof_limit_is_refused_but_its_outputs_are_provable(
    autojump_clock,
):
    async with testnet(1, transport=SimulatedNetwork(seed=18)) as net:
        node, payer, crowded = net.nodes[0], net.wallets[0], net.wallets[2]
        rpc = Rpc(node)
        dust = [TxOutput(asset=net.params.native_asset, amount=Amount(1), address=crowded.address)]
        for _ in range(3):  # 1 + 3 x 700 outputs, past the limit (the change goes elsewhere)
            tx = payer.build_transfer(
                node.utxos(payer.address), dust * 700, fee=Amount(10**6),
                context=next_block(node),
            )  # fmt: skip
            await settle(net, tx)
        assert len(node.utxos(crowded.address)) == 2_101 > MAX_PROOF_OUTPUTS
        head_root = node.state_root(node.head().block_id)
        response = await rpc.send("state_proof", [{"address": crowded.address_text}, "head"])
        error = response["error"]
        assert error["code"] == -32000
        assert error["data"] == {"reason": "proof-too-large"}
        assert error["message"].startswith("proof-too-large")
        assert node.state_root(node.head().block_id) == head_root  # the cursor came back
        outpoint, output = node.utxos(crowded.address)[-1]
        spec = {
            "outpoint": {"txid": "0x" + outpoint.txid.hex(), "index": outpoint.index},
            "address": crowded.address_text,
        }
        one = await rpc.call("state_proof", spec, "head")
        query = StateQuery(kind=QueryKind.OUTPUT, outpoint=outpoint, address=crowded.address)
        assert checked(node, one, query) == output


async def test_hostile_params_get_the_documented_errors(autojump_clock):
    async with testnet(1, transport=SimulatedNetwork(seed=19)) as net:
        await net.wait_finalized(2)
        node, wallet = net.nodes[0], net.wallets[0]
        assert finalized_height(node) > 0
        rpc = Rpc(node)
        address = wallet.address_text
        [(coin, _)] = node.utxos(wallet.address)
        good_outpoint = {"txid": "0x" + coin.txid.hex(), "index": coin.index}
        asset = "0x" + "11" * 32
        invalid: list[tuple[str, object]] = [
            ("state_proof", []),
            ("state_proof", [None]),
            ("state_proof", ["validators"]),
            ("state_proof", [["address", address]]),
            ("state_proof", [17]),
            ("state_proof", [{}]),
            ("state_proof", [{"balance": address}]),
            ("state_proof", [{"address": address, "asset": asset}]),
            ("state_proof", [{"validators": True, "asset": asset}]),
            ("state_proof", [{"validators": True, "address": address}]),
            ("state_proof", [{"outpoint": good_outpoint}]),
            ("state_proof", [{"outpoint": good_outpoint, "address": address, "asset": asset}]),
            ("state_proof", [{"validators": False}]),
            ("state_proof", [{"validators": 1}]),
            ("state_proof", [{"validators": None}]),
            ("state_proof", [{"address": 5}]),
            ("state_proof", [{"address": None}]),
            ("state_proof", [{"address": "dp2p1notanaddress"}]),
            ("state_proof", [{"address": address.replace("dp2p", "xp2p", 1)}]),
            ("state_proof", [{"asset": "11" * 32}]),
            ("state_proof", [{"asset": "0x1122"}]),
            ("state_proof", [{"asset": "0x" + "zz" * 32}]),
            ("state_proof", [{"asset": "0x" + "1" * 63}]),
            ("state_proof", [{"asset": 11}]),
            ("state_proof", [{"outpoint": [good_outpoint["txid"], 0], "address": address}]),
            ("state_proof", [{"outpoint": {"txid": good_outpoint["txid"]}, "address": address}]),
            ("state_proof", [{"outpoint": {**good_outpoint, "x": 1}, "address": address}]),
            ("state_proof", [{"outpoint": {**good_outpoint, "index": -1}, "address": address}]),
            ("state_proof", [{"outpoint": {**good_outpoint, "index": True}, "address": address}]),
            ("state_proof", [{"outpoint": {**good_outpoint, "index": "0"}, "address": address}]),
            ("state_proof", [{"outpoint": {**good_outpoint, "index": 1.5}, "address": address}]),
            ("state_proof", [{"outpoint": {**good_outpoint, "index": 2**32}, "address": address}]),
            ("state_proof", [{"outpoint": {**good_outpoint, "txid": "0x12"}, "address": address}]),
            ("state_proof", [{"outpoint": {**good_outpoint, "txid": 12}, "address": address}]),
            ("state_proof", [{"validators": True}, UNKNOWN_ID]),
            ("state_proof", [{"validators": True}, 10**9]),
            ("state_proof", [{"validators": True}, -1]),
            ("state_proof", [{"validators": True}, True]),
            ("state_proof", [{"validators": True}, "0xabc"]),
            ("state_proof", [{"validators": True}, "latest"]),
            ("state_proof", [{"validators": True}, {"height": 1}]),
            ("state_proof", [{"validators": True}, "head", "extra"]),
            ("state_proof", {"query": {"validators": True}, "blocks": "head"}),
            ("tx_proof", []),
            ("tx_proof", [None]),
            ("tx_proof", [5]),
            ("tx_proof", ["0x12"]),
            ("tx_proof", ["ab" * 32]),
            ("tx_proof", ["0x" + "zz" * 32]),
            ("tx_proof", [UNKNOWN_ID]),
            ("tx_proof", {"tx": UNKNOWN_ID}),
        ]
        for method, params in invalid:
            response = await rpc.send(method, params)
            assert response.get("error", {}).get("code") == -32602, (method, params, response)
        below = [
            [{"validators": True}, 0],
            [{"address": address}, 0],
            [{"asset": asset}, "0x" + node.get_block_at_height(0).block_id.hex()],
        ]
        for params in below:
            error = (await rpc.send("state_proof", params))["error"]
            assert error["code"] == -32000, (params, error)
            assert error["data"] == {"reason": "conflicts-with-finalized"}
        # The node still answers, its head state untouched.
        head = node.head()
        result = await rpc.call("state_proof", {"address": address}, "head")
        query = StateQuery(kind=QueryKind.ACCOUNT, address=wallet.address)
        assert checked(node, result, query) == node.utxos(wallet.address)
        assert node.state_root(head.block_id) == node.get_block(head.block_id).header.state_root


async def test_a_pending_transaction_has_no_proof_until_a_block_carries_it(autojump_clock):
    async with testnet(1, transport=SimulatedNetwork(seed=20), manual_clock=True) as net:
        node = net.nodes[0]
        rpc = Rpc(node)
        tx = net.transfer(0, net.wallets[1].address, 10**8)
        await node.submit_transaction(tx)
        assert node.get_transaction(tx.txid).status == "pending"
        with pytest.raises(KeyError):
            node.transaction_proof(tx.txid)
        error = (await rpc.send("tx_proof", ["0x" + tx.txid.hex()]))["error"]
        assert error["code"] == -32602
        assert "not on the canonical chain" in error["message"]
        with trio.fail_after(LIMIT_S):
            while node.get_transaction(tx.txid).status == "pending":
                await net.mine()
        header, proven, proof = node.transaction_proof(tx.txid)
        assert proven == tx
        assert verify_inclusion(header.body_root, tx, proof)
        assert header == node.get_block(node.get_transaction(tx.txid).block_id).header
        result = await rpc.call("tx_proof", "0x" + tx.txid.hex())
        assert unhex(result["header"]) == encode(header)
        assert unhex(result["tx"]) == tx.encoded
        with pytest.raises(KeyError):
            node.transaction_proof(TxId(bytes(32)))
