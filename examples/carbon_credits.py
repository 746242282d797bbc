"""Tokenised carbon credits: issue, offer, trade atomically, retire and mint a capped asset.

Run it with ``python examples/carbon_credits.py``. A registry issues credits for the 2026
vintage, one tonne of CO2 each, with a cap on the total ever issued, and splits part of them
into lots of 500 t. It signs a standing offer on each lot (three at 12 coin/t, three at
15 coin/t) and hands them to one node; the offers gossip into every node's offer book, which
the example prints from another node. Two buyers take the best-priced lots from that book in
one transaction each, without any message to the registry: the lots and the payments move
together or not at all, so the registry is paid exactly what each offer asked. One buyer
retires credits for a named beneficiary and purpose; every node lists the retirement, its
transaction id being the certificate. The registry mints up to the cap, and a mint beyond
the cap is refused with the reason code ``cap-exceeded``. At the end the totals reconcile:
credits held plus credits retired equal credits issued, and the registry's coin balance grew
by exactly the taken offers' prices less its own fees.

Three validators run on p2pchain's simulated network under trio's MockClock: the production
node code with in-memory links and virtual time, so the dozens of slots this story needs
pass in a few seconds of wall time.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio
import trio.testing

from p2pchain import Node, TxStatus
from p2pchain.errors import InvalidTransaction
from p2pchain.ledger import (
    Amount,
    AssetId,
    BlockContext,
    Height,
    Slot,
    Transaction,
    TxOutput,
    Wallet,
)
from p2pchain.node import BookEntry
from p2pchain.params import COIN
from p2pchain.testing import Testnet, testnet
from p2pchain.testing.simnet import SimulatedNetwork

NAME = b"CO2-t/2026"
CAP = 10_000  # tonnes: no more credits of this vintage can ever exist
ISSUED = 6_000  # tonnes issued at first
LOT = 500  # tonnes per lot on offer
PRICES = (12, 15)  # coin per tonne asked, three lots at each
LOTS_PER_PRICE = 3
FEE = Amount(10_000)  # native base units per transaction
BALANCE = 25_000 * COIN  # native coin of each funded wallet at genesis
TIMEOUT_S = 600.0  # virtual seconds


def next_block(node: Node) -> BlockContext:
    """The block a transaction built now would land in (locks are checked against it)."""
    head = node.head()
    return BlockContext(height=Height(head.height + 1), slot=Slot(head.slot + 1))


async def settle(net: Testnet, tx: Transaction, what: str, via: Node | None = None) -> Height:
    """Submit `tx` to `via` (node 0 by default), wait until every node has it in a finalized
    block, and return that block's height."""
    txid = await (via or net.nodes[0]).submit_transaction(tx)
    with trio.fail_after(TIMEOUT_S):
        for node in net.nodes:
            info = await node.wait_for_status(txid, TxStatus.FINALIZED)
    assert info.height is not None
    print(f"\n{what}: finalized at height {info.height} (tx {txid.hex()[:12]})")
    return Height(info.height)


def coin(amount: int) -> str:
    return f"{amount / COIN:,.4f} coin"


def show(net: Testnet, parties: dict[str, Wallet], credit: AssetId) -> None:
    """Balances per asset of every party, as node 0 sees them at its head."""
    node = net.nodes[0]
    info = node.asset(credit)
    assert info is not None
    print(f"  {info.name.decode()}: issued {info.issued} of cap {info.cap}")
    for name, wallet in parties.items():
        balances = node.balances(wallet.address)
        native = balances.get(AssetId(net.params.native_asset), 0)
        print(f"  {name:<9} {balances.get(credit, 0):>6} t CO2   {coin(native):>16}")


def best_lots(book: Sequence[BookEntry], tonnes: int) -> list[BookEntry]:
    """The cheapest offers of `book` (listed best price first) that add up to `tonnes`."""
    chosen: list[BookEntry] = []
    for entry in book:
        if sum(e.offered.amount for e in chosen) >= tonnes:
            break
        chosen.append(entry)
    if sum(e.offered.amount for e in chosen) != tonnes:
        raise SystemExit(f"the book does not hold exactly {tonnes} t in whole lots")
    return chosen


async def take(
    net: Testnet,
    node: Node,
    taker: Wallet,
    name: str,
    registry: Wallet,
    credit: AssetId,
    tonnes: int,
) -> int:
    """`taker` takes the best-priced lots for `tonnes` from `node`'s book in one transaction;
    check that the trade was atomic and return what the registry was paid."""
    lots = best_lots(node.offers(credit, net.params.native_asset), tonnes)
    paid = sum(entry.offer.wanted.amount for entry in lots)
    registry_before = node.balance(registry.address)
    taker_before = node.balance(taker.address, credit)
    tx = taker.build_take(
        [(entry.offer, entry.offered) for entry in lots],
        node.utxos(taker.address),
        fee=FEE,
        context=next_block(node),
    )
    prices = sorted({entry.price / COIN for entry in lots})
    at = " and ".join(f"{float(price):g}" for price in prices)
    await settle(
        net, tx, f"{name} took {len(lots)} lots ({tonnes} t at {at} coin/t) on node 1", via=node
    )
    for other in net.nodes:
        assert other.balance(registry.address) - registry_before == paid
        assert other.balance(taker.address, credit) - taker_before == tonnes
    print(f"  atomic: the registry was paid exactly {coin(paid)} and {name} got {tonnes} t")
    return paid


async def main() -> None:
    network = SimulatedNetwork(seed=2026, latency=(0.005, 0.05))
    async with testnet(3, transport=network, balance=BALANCE) as net:
        node, far = net.nodes[0], net.nodes[1]
        native = AssetId(net.params.native_asset)
        registry, buyer, offsetter = net.wallets[:3]
        parties = {"registry": registry, "buyer": buyer, "offsetter": offsetter}
        registry_start = node.balance(registry.address)
        registry_fees = 0

        # 1. Issue 6,000 credits now, with a cap of 10,000. The asset id derives from the
        #    issue transaction's first input, so nobody can issue the same asset twice.
        tx, credit = registry.build_issue(
            node.utxos(registry.address),
            name=NAME,
            amount=Amount(ISSUED),
            cap=CAP,
            fee=FEE,
            context=next_block(node),
        )
        await settle(net, tx, f"registry issued {ISSUED} {NAME.decode()}")
        registry_fees += FEE
        print(f"  asset id {credit.hex()}")
        show(net, parties, credit)

        #    Split part of the supply into lots: a transfer to itself creating one coin per lot
        #    (an offer gives one whole coin).
        count = LOTS_PER_PRICE * len(PRICES)
        lot = TxOutput(asset=credit, amount=Amount(LOT), address=registry.address)
        split = registry.build_transfer(
            node.utxos(registry.address), [lot] * count, fee=FEE, context=next_block(node)
        )
        await settle(net, split, f"registry split {count * LOT} t into {count} lots of {LOT} t")
        registry_fees += FEE
        show(net, parties, credit)

        # 2. Offer: one signed standing offer per lot, "this lot for that payment to me", valid
        #    for 200 blocks. The registry hands them to node 0 and is done: gossip fills every
        #    node's offer book, and whoever pays the price may take a lot.
        lots = [
            c
            for c in node.utxos(registry.address)
            if c[0].txid == split.txid and c[1].asset == credit and c[1].amount == LOT
        ]
        assert len(lots) == count
        until = Height(node.head().height + 200)
        for index, lot_coin in enumerate(lots):
            price = PRICES[index // LOTS_PER_PRICE]
            payment = Amount(LOT * price * COIN)
            wanted = TxOutput(asset=native, amount=payment, address=registry.address)
            await node.submit_offer(registry.make_offer(lot_coin, wanted, until=until))
        print(
            f"\nregistry offered {count} lots on node 0 "
            f"({LOTS_PER_PRICE} at {PRICES[0]} coin/t, {LOTS_PER_PRICE} at {PRICES[1]} coin/t), "
            f"takeable up to height {until}"
        )
        with trio.fail_after(TIMEOUT_S):
            await far.wait_for(lambda n: len(n.offers(credit, native)) == count)
        print(f"node 1's offer book (filled by gossip), {NAME.decode()} for coin, best first:")
        for entry in far.offers(credit, native):
            maker = next(n for n, w in parties.items() if w.address == entry.maker)
            print(
                f"  offer {entry.offer_id.hex()[:12]}  {entry.offered.amount} t"
                f"  at {float(entry.price / COIN):>5.2f} coin/t"
                f"  = {coin(entry.offer.wanted.amount):>16}  by {maker}"
            )

        # 3. Trade: two buyers take lots from node 1's book, best price first, without a word
        #    to the registry. Each take is one transaction holding the registry's lots (signed
        #    by its offers) and the payments they want: valid as a whole or not at all.
        earned = await take(net, far, buyer, "buyer", registry, credit, 3 * LOT)
        show(net, parties, credit)
        print(f"  still in node 1's book: {len(far.offers(credit, native))} of the offers")
        earned += await take(net, far, offsetter, "offsetter", registry, credit, 2 * LOT)
        show(net, parties, credit)
        print(f"  still in node 1's book: {len(far.offers(credit, native))} of the offers")

        # 4. Retire: the offsetter retires 250 t on behalf of a steelmaker. The credits leave
        #    the supply for good (they still count as issued, so the cap limits every credit
        #    that ever existed) and the chain keeps a public record of whom and what for.
        tx = offsetter.build_retire(
            node.utxos(offsetter.address),
            asset=credit,
            amount=Amount(250),
            beneficiary=b"Acme Stahl GmbH",
            purpose=b"2026 scope 1 emissions, plant Duisburg",
            fee=FEE,
            context=next_block(node),
        )
        await settle(net, tx, "offsetter retired 250 t")
        show(net, parties, credit)
        print(f"retirement certificates of {NAME.decode()} on node 2:")
        records = net.nodes[2].retirements(credit)
        for record in records:
            by = next(n for n, w in parties.items() if w.address == record.retired_by)
            print(f"  certificate {record.certificate.hex()}")
            print(
                f"    {record.amount} t retired by {by} at height {record.location.height}"
                f" for {record.beneficiary.decode()}: {record.purpose.decode()}"
            )
        assert [r.certificate for r in records] == [tx.txid]

        # 5. Mint: only the issuer may mint, and only up to the cap.
        tx = registry.build_mint(
            node.utxos(registry.address),
            asset=credit,
            amount=Amount(CAP - ISSUED),
            fee=FEE,
            context=next_block(node),
        )
        await settle(net, tx, f"registry minted {CAP - ISSUED} t (up to the cap)")
        registry_fees += FEE
        show(net, parties, credit)

        over = registry.build_mint(
            node.utxos(registry.address),
            asset=credit,
            amount=Amount(1),
            fee=FEE,
            context=next_block(node),
        )
        try:
            await node.submit_transaction(over)
        except InvalidTransaction as exc:
            print(f"\nminting 1 t more was rejected: {exc.reason}")
        else:
            raise SystemExit("a mint above the cap was accepted")
        print(f"  status on node 0: {node.get_transaction(over.txid).status}")

        # 6. Every credit ever issued is either held by someone or retired, and the registry
        #    holds exactly what its offers asked for, less the fees it paid itself.
        held = sum(node.balance(wallet.address, credit) for wallet in parties.values())
        retired = sum(record.amount for record in node.retirements(credit))
        info = node.asset(credit)
        assert info is not None
        assert held + retired == info.issued == CAP
        print(f"\nheld {held} t + retired {retired} t = issued {info.issued} t")
        gained = node.balance(registry.address) - registry_start
        assert gained == earned - registry_fees
        print(
            f"registry: {coin(gained)} = {coin(earned)} from taken offers"
            f" - {coin(registry_fees)} in fees"
        )


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
