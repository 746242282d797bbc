"""The trade methods (offers, partially signed transactions, retirements) behind the envelope,
on simulated nodes in virtual time."""

from __future__ import annotations

import json
from dataclasses import replace
from fractions import Fraction

import trio

from p2pchain import TxStatus
from p2pchain.ledger.encoding import encode
from p2pchain.ledger.offer import MAX_OFFER_BYTES
from p2pchain.ledger.partial import PartialTransaction
from p2pchain.ledger.tx import Transaction, TxOutput
from p2pchain.ledger.types import Amount, AssetId, Height
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Wallet
from p2pchain.node import Node
from p2pchain.params import COIN
from p2pchain.rpc import Dispatcher, NodeMethods
from p2pchain.testing.simnet import SimulatedNetwork
from p2pchain.testing.testnet import TESTNET_PARAMS, Testnet, testnet

LIMIT_S = 60 * TESTNET_PARAMS.slot_ms * TESTNET_PARAMS.slots_per_epoch / 1000
FEE = Amount(10_000)


class Rpc:
    def __init__(self, node: Node) -> None:
        self.dispatcher = Dispatcher(NodeMethods(node).table())
        self.ids = 0

    async def send(self, method: str, *params: object) -> dict[str, object]:
        self.ids += 1
        request = {"jsonrpc": "2.0", "id": self.ids, "method": method, "params": list(params)}
        return json.loads(await self.dispatcher.handle(json.dumps(request)))

    async def call(self, method: str, *params: object) -> object:
        response = await self.send(method, *params)
        assert "result" in response, response
        return response["result"]

    async def reason(self, method: str, *params: object) -> tuple[int, str | None]:
        error = (await self.send(method, *params))["error"]
        assert isinstance(error, dict)
        data = error.get("data")
        return error["code"], data["reason"] if isinstance(data, dict) else None


def hex_of(data: bytes) -> str:
    return "0x" + data.hex()


def next_block(node: Node) -> BlockContext:
    head = node.head()
    return BlockContext(height=Height(head.height + 1), slot=head.slot + 1)


async def settle(net: Testnet, tx: Transaction, status: TxStatus = TxStatus.INCLUDED) -> None:
    await net.nodes[0].submit_transaction(tx)
    with trio.fail_after(LIMIT_S):
        for node in net.nodes:
            await node.wait_for_status(tx.txid, status)


async def lots(net: Testnet, maker: Wallet) -> AssetId:
    node = net.nodes[0]
    tx, credit = maker.build_issue(
        node.utxos(maker.address), name=b"CO2-t", amount=Amount(900), fee=FEE,
        context=next_block(node),
    )  # fmt: skip
    await settle(net, tx)
    split = [TxOutput(asset=credit, amount=Amount(300), address=maker.address)] * 3
    await settle(
        net,
        maker.build_transfer(node.utxos(maker.address), split, fee=FEE, context=next_block(node)),
    )
    return credit


async def test_offers_over_rpc_are_checked_listed_best_first_and_taken(autojump_clock):
    async with testnet(2, transport=SimulatedNetwork(seed=31)) as net:
        maker, taker = net.wallets[0], net.wallets[1]
        node = net.nodes[0]
        rpc = Rpc(node)
        credit = await lots(net, maker)
        native = AssetId(net.params.native_asset)
        coins = [c for c in node.utxos(maker.address) if c[1].asset == credit]
        until = Height(node.head().height + 50)
        ids = []
        for coin, price in zip(coins, (5, 3, 4), strict=True):
            wanted = TxOutput(asset=native, amount=Amount(price * COIN), address=maker.address)
            offer = maker.make_offer(coin, wanted, until=until)
            ids.append(await rpc.call("offer_submit", hex_of(encode(offer))))
        assert len(set(ids)) == 3
        assert ids[-1] == hex_of(offer.offer_id(net.params.chain_id))
        listed = await rpc.call("offer_list", hex_of(credit), hex_of(native))
        assert isinstance(listed, list)
        prices = [Fraction(p * COIN, 300) for p in (3, 4, 5)]
        assert [o["price"] for o in listed] == [f"{p.numerator}/{p.denominator}" for p in prices]
        assert listed[0]["maker"] == maker.address_text
        assert listed[0]["offered"]["amount"] == "300"
        assert listed[0]["wanted"]["amount"] == str(3 * COIN)
        assert listed[0]["until"] == until
        assert await rpc.call("offer_list", hex_of(native), hex_of(credit)) == []
        assert await rpc.call("offer_get", listed[1]["offerId"]) == listed[1]
        assert await rpc.call("offer_get", hex_of(bytes(32))) is None
        assert (await rpc.reason("offer_list", hex_of(credit), "0x00"))[0] == -32602
        # hostile input: too long, junk, a forged signature
        assert (await rpc.reason("offer_submit", hex_of(bytes(MAX_OFFER_BYTES + 1))))[0] == -32602
        assert await rpc.reason("offer_submit", "0xc0") == (-32000, "malformed")
        forged = replace(offer, until=Height(until + 1))
        assert await rpc.reason("offer_submit", hex_of(encode(forged))) == (-32000, "bad-signature")
        # take the best one; its RPC shapes show the offer's input
        best = node.get_offer(bytes.fromhex(listed[0]["offerId"][2:]))
        assert best is not None
        take = taker.build_take(
            [(best.offer, best.offered)], node.utxos(taker.address), fee=FEE,
            context=next_block(node),
        )  # fmt: skip
        await settle(net, take)
        shown = await rpc.call("tx_get", hex_of(take.txid))
        assert isinstance(shown, dict)
        assert [i["offerUntil"] for i in shown["tx"]["inputs"]][:1] == [until]
        assert len(await rpc.call("offer_list", hex_of(credit), hex_of(native))) == 2


async def test_a_swap_is_inspected_combined_and_submitted_over_rpc(autojump_clock):
    async with testnet(2, transport=SimulatedNetwork(seed=32)) as net:
        seller, buyer = net.wallets[0], net.wallets[1]
        node = net.nodes[0]
        rpc = Rpc(node)
        credit = await lots(net, seller)
        native = AssetId(net.params.native_asset)
        give = TxOutput(asset=credit, amount=Amount(100), address=buyer.address)
        get = TxOutput(asset=native, amount=Amount(2 * COIN), address=seller.address)
        partial = seller.build_swap(
            node.utxos(seller.address), node.utxos(buyer.address), give=give, get=get,
            fee=FEE, context=next_block(node),
        )  # fmt: skip
        raw = hex_of(encode(partial))
        seen = await rpc.call("partial_inspect", raw)
        assert isinstance(seen, dict)
        assert seen["txid"] == hex_of(partial.tx.txid)
        assert seen["signersNeeded"] == [buyer.address_text]
        assert seen["missing"] == partial.missing()
        assert all(i["onChain"] for i in seen["inputs"])
        assert seen["flows"][buyer.address_text] == {
            hex_of(native): str(-2 * COIN),
            hex_of(credit): "100",
        }
        assert seen["fee"] == str(FEE)
        assert await rpc.reason("partial_submit", raw) == (-32000, "unsigned-input")
        lying = replace(
            partial, spent=(replace(partial.spent[0], amount=Amount(1)), *partial.spent[1:])
        )
        lied = await rpc.call("partial_inspect", hex_of(encode(lying)))
        assert isinstance(lied, dict)
        assert lied["inputs"][0]["onChain"] is False
        # the seller's copy (its inputs signed) and the buyer's (its own signed) fit together
        buyer_copy = seller.build_swap(
            node.utxos(seller.address), node.utxos(buyer.address), give=give, get=get,
            fee=FEE, context=next_block(node),
        )  # fmt: skip
        buyer_copy = PartialTransaction.unsigned(buyer_copy.tx, buyer_copy.spent)
        buyer_copy = buyer_copy.sign(buyer.key, net.params.chain_id)[0]
        assert buyer_copy.missing() != []
        combined = await rpc.call("partial_combine", [raw, hex_of(encode(buyer_copy))])
        mismatch = hex_of(encode(lying))
        assert await rpc.reason("partial_combine", [raw, mismatch]) == (-32000, "partial-mismatch")
        assert (await rpc.reason("partial_combine", []))[0] == -32602
        assert await rpc.reason("partial_inspect", "0xc0") == (-32000, "malformed")
        assert (await rpc.reason("partial_inspect", "0xzz"))[0] == -32602
        txid = await rpc.call("partial_submit", combined)
        assert txid == hex_of(partial.tx.txid)
        with trio.fail_after(LIMIT_S):
            await node.wait_for_status(partial.tx.txid, TxStatus.INCLUDED)
        assert node.balance(buyer.address, credit) == 100


async def test_retirements_are_listed_with_their_certificate_and_finality(autojump_clock):
    async with testnet(2, transport=SimulatedNetwork(seed=33)) as net:
        holder = net.wallets[0]
        node = net.nodes[0]
        rpc = Rpc(node)
        credit = await lots(net, holder)
        tx = holder.build_retire(
            node.utxos(holder.address), asset=credit, amount=Amount(40),
            beneficiary="Zürich Tram AG".encode(), purpose=b"fleet 2026", fee=FEE,
            context=next_block(node),
        )  # fmt: skip
        await settle(net, tx, TxStatus.FINALIZED)
        (record,) = await rpc.call("asset_retirements", hex_of(credit))  # type: ignore[misc]
        assert record["certificate"] == hex_of(tx.txid)
        assert record["final"] is True
        assert record["amount"] == "40"
        assert record["beneficiary"] == "Zürich Tram AG"
        assert record["purpose"] == "fleet 2026"
        assert record["retiredBy"] == holder.address_text
        assert await rpc.call("asset_retirements", hex_of(credit), 1) == []
        shown = await rpc.call("tx_get", hex_of(tx.txid))
        assert isinstance(shown, dict)
        assert shown["tx"]["kind"] == "retire"
        assert shown["tx"]["payload"]["beneficiary"] == "Zürich Tram AG"
        assert (await rpc.reason("asset_retirements", hex_of(credit), 0, 1_001))[0] == -32602
