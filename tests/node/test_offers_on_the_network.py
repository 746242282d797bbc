"""Offers and retirements through real nodes on the simulated network (virtual time).

An offer submitted to one node reaches every node's book by gossip, is taken on chain by a
stranger without the maker, and leaves every book when its coin is spent; an expired offer
leaves at its height; a retirement is listed by every node with its certificate.
"""

from __future__ import annotations

import pytest
import trio

from p2pchain import TxStatus
from p2pchain.errors import InvalidOffer, Reason
from p2pchain.ledger.tx import Transaction, TxOutput
from p2pchain.ledger.types import Amount, AssetId, Height
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Wallet
from p2pchain.node import Node
from p2pchain.params import COIN
from p2pchain.testing.simnet import SimulatedNetwork, seed_from_env
from p2pchain.testing.testnet import TESTNET_PARAMS, Testnet, testnet

LIMIT_S = 60 * TESTNET_PARAMS.slot_ms * TESTNET_PARAMS.slots_per_epoch / 1000
FEE = Amount(10_000)


def next_block(node: Node) -> BlockContext:
    head = node.head()
    return BlockContext(height=Height(head.height + 1), slot=head.slot + 1)


async def settle(net: Testnet, tx: Transaction) -> None:
    txid = await net.nodes[0].submit_transaction(tx)
    with trio.fail_after(LIMIT_S):
        for node in net.nodes:
            await node.wait_for_status(txid, TxStatus.INCLUDED)


async def issue_lots(net: Testnet, maker: Wallet, lots: int, size: int) -> AssetId:
    node = net.nodes[0]
    tx, credit = maker.build_issue(
        node.utxos(maker.address),
        name=b"CO2-t",
        amount=Amount(lots * size),
        fee=FEE,
        context=next_block(node),
    )
    await settle(net, tx)
    split = [TxOutput(asset=credit, amount=Amount(size), address=maker.address)] * lots
    tx = maker.build_transfer(node.utxos(maker.address), split, fee=FEE, context=next_block(node))
    await settle(net, tx)
    return credit


async def test_an_offer_gossips_is_taken_by_a_stranger_and_leaves_every_book(autojump_clock):
    network = SimulatedNetwork(seed=seed_from_env(17), latency=(0.005, 0.05))
    async with testnet(3, transport=network) as net:
        maker, taker = net.wallets[0], net.wallets[1]
        node = net.nodes[0]
        credit = await issue_lots(net, maker, 2, 300)
        native = AssetId(net.params.native_asset)
        lots = [c for c in node.utxos(maker.address) if c[1].asset == credit]
        prices = [4 * COIN, 3 * COIN]
        offers = []
        for lot, price in zip(lots, prices, strict=True):
            wanted = TxOutput(asset=native, amount=Amount(price), address=maker.address)
            offer = maker.make_offer(lot, wanted, until=Height(node.head().height + 100))
            offers.append(offer)
            offer_id = await node.submit_offer(offer)
            assert await node.submit_offer(offer) == offer_id  # again: the same id
        with trio.fail_after(LIMIT_S):
            for other in net.nodes:
                await other.wait_for(lambda n: len(n.offers(credit, native)) == 2)
        far = net.nodes[2]
        listed = far.offers(credit, native)
        assert [entry.offer.wanted.amount for entry in listed] == sorted(prices)  # best first
        assert far.offers(native, credit) == []
        best = listed[0]
        before = node.balance(maker.address)
        tx = taker.build_take(
            [(best.offer, best.offered)],
            far.utxos(taker.address),
            fee=FEE,
            context=next_block(far),
        )
        txid = await far.submit_transaction(tx)
        with trio.fail_after(LIMIT_S):
            for other in net.nodes:
                await other.wait_for_status(txid, TxStatus.INCLUDED)
            for other in net.nodes:
                await other.wait_for(lambda n: len(n.offers(credit, native)) == 1)
        assert node.balance(maker.address) == before + best.offer.wanted.amount
        assert node.balance(taker.address, credit) == 300
        assert node.get_offer(best.offer_id) is None
        with pytest.raises(InvalidOffer) as refused:  # its coin is spent now
            await node.submit_offer(best.offer)
        assert refused.value.reason is Reason.MISSING_INPUT
        assert node.statistics().offers.dropped >= 1


async def test_an_offer_leaves_the_books_when_it_expires(autojump_clock):
    network = SimulatedNetwork(seed=seed_from_env(18), latency=(0.005, 0.05))
    async with testnet(3, transport=network) as net:
        maker = net.wallets[0]
        node = net.nodes[0]
        credit = await issue_lots(net, maker, 1, 10)
        lot = next(c for c in node.utxos(maker.address) if c[1].asset == credit)
        until = Height(node.head().height + 3)
        wanted = TxOutput(
            asset=AssetId(net.params.native_asset), amount=Amount(COIN), address=maker.address
        )
        offer = maker.make_offer(lot, wanted, until=until)
        offer_id = await node.submit_offer(offer)
        with trio.fail_after(LIMIT_S):
            await net.nodes[1].wait_for(lambda n: n.get_offer(offer_id) is not None)
            for other in net.nodes:
                await other.wait_for(lambda n: n.get_offer(offer_id) is None)
        assert all(other.head().height >= until for other in net.nodes)
        with pytest.raises(InvalidOffer) as refused:
            await node.submit_offer(offer)
        assert refused.value.reason is Reason.OFFER_EXPIRED


async def test_every_node_lists_a_retirement_with_its_certificate(autojump_clock):
    network = SimulatedNetwork(seed=seed_from_env(19), latency=(0.005, 0.05))
    async with testnet(3, transport=network) as net:
        holder = net.wallets[2]
        node = net.nodes[0]
        credit = await issue_lots(net, holder, 1, 1_000)
        tx = holder.build_retire(
            node.utxos(holder.address),
            asset=credit,
            amount=Amount(250),
            beneficiary=b"Acme Stahl GmbH",
            purpose=b"2026 scope 1",
            fee=FEE,
            context=next_block(node),
        )
        await settle(net, tx)
        for other in net.nodes:
            (record,) = other.retirements(credit)
            assert record.certificate == tx.txid
            assert (record.amount, record.beneficiary, record.purpose) == (
                250,
                b"Acme Stahl GmbH",
                b"2026 scope 1",
            )
            assert record.retired_by == holder.address
            assert other.balance(holder.address, credit) == 750
            info = other.asset(credit)
            assert info is not None
            assert info.issued == 1_000
        assert node.retirements(credit, offset=1) == []


async def test_a_node_that_joins_later_learns_the_offers_of_its_peers_clients(autojump_clock):
    """Gossip happened before it connected, and its seen cache is empty: the node that took
    the offer from its client sends it to each newcomer, as it does pending submissions."""
    network = SimulatedNetwork(seed=seed_from_env(20), latency=(0.005, 0.05))
    async with testnet(3, transport=network) as net:
        maker = net.wallets[0]
        node = net.nodes[0]
        credit = await issue_lots(net, maker, 1, 10)
        lot = next(c for c in node.utxos(maker.address) if c[1].asset == credit)
        wanted = TxOutput(
            asset=AssetId(net.params.native_asset), amount=Amount(COIN), address=maker.address
        )
        offer_id = await node.submit_offer(
            maker.make_offer(lot, wanted, until=Height(node.head().height + 1_000))
        )
        late = await net.add_node()
        with trio.fail_after(LIMIT_S):
            await late.wait_for(lambda n: n.head().height >= node.head().height)
            await late.wait_for(lambda n: n.get_offer(offer_id) is not None)
        assert late.offers(credit, AssetId(net.params.native_asset))[0].offer_id == offer_id
