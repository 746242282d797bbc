"""Tokenised carbon credits: issue, trade, retire and mint a capped asset on a p2pchain network.

Run it with ``python examples/carbon_credits.py``. A registry issues credits for the 2026
vintage, one tonne of CO2 each, with a cap on the total ever issued. The credits then move
like the native coin: the registry sells to a buyer, who resells part; the second buyer
retires (burns) what it offsets; the registry mints up to the cap, and a mint beyond the cap
is refused by every node with the reason code ``cap-exceeded``.

Three validators run on p2pchain's simulated network under trio's MockClock: the production
node code with in-memory links and virtual time, so the dozens of slots this story needs
pass in a few seconds of wall time.
"""

from __future__ import annotations

import trio
import trio.testing

from p2pchain import Node, TxStatus
from p2pchain.errors import InvalidTransaction
from p2pchain.ledger.tx import Transaction, TxInput, TxKind, TxOutput
from p2pchain.ledger.types import AssetId
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Wallet, select_coins
from p2pchain.params import COIN
from p2pchain.testing import Testnet, testnet
from p2pchain.testing.simnet import SimulatedNetwork

NAME = b"CO2-t/2026"
CAP = 10_000  # tonnes: no more credits of this vintage can ever exist
FEE = 10_000  # native base units per transaction
TIMEOUT_S = 600.0  # virtual seconds


def next_block(node: Node) -> BlockContext:
    """The block a transaction built now would land in (locks are checked against it)."""
    head = node.head()
    return BlockContext(height=head.height + 1, slot=head.slot + 1)


async def settle(net: Testnet, tx: Transaction, what: str) -> None:
    """Submit `tx` to node 0 and wait until every node has it in a finalized block."""
    txid = await net.nodes[0].submit_transaction(tx)
    with trio.fail_after(TIMEOUT_S):
        for node in net.nodes:
            info = await node.wait_for_status(txid, TxStatus.FINALIZED)
    print(f"\n{what}: finalized at height {info.height} (tx {txid.hex()[:12]})")


def show(net: Testnet, parties: dict[str, Wallet], credit: AssetId) -> None:
    """Balances per asset of every party, as node 0 sees them at its head."""
    node = net.nodes[0]
    info = node.asset(credit)
    assert info is not None
    print(f"  {info.name.decode()}: issued {info.issued} of cap {info.cap}")
    for name, wallet in parties.items():
        balances = node.balances(wallet.address)
        native = balances.get(AssetId(net.params.native_asset), 0)
        print(f"  {name:<9} {balances.get(credit, 0):>6} t CO2   {native / COIN:>12,.4f} coin")


def retirement(wallet: Wallet, node: Node, credit: AssetId, tonnes: int) -> Transaction:
    """A transfer that spends `tonnes` credits without re-creating them: a burn.

    The ledger lets a non-native asset's outputs fall short of its inputs (the difference is
    destroyed), so the retired tonnes leave the supply for good. The wallet has no burn
    helper, so the transaction is assembled here from the wallet's coins and signed by it.
    """
    coins = node.utxos(wallet.address)
    native = AssetId(wallet.params.native_asset)
    spent = select_coins(coins, credit, tonnes) + select_coins(coins, native, FEE)
    kept = sum(out.amount for _, out in spent if out.asset == credit) - tonnes
    change = sum(out.amount for _, out in spent if out.asset == native) - FEE
    outputs = [TxOutput(asset=native, amount=change, address=wallet.address)]
    if kept:
        outputs.append(TxOutput(asset=credit, amount=kept, address=wallet.address))
    unsigned = Transaction(
        kind=TxKind.TRANSFER,
        inputs=tuple(TxInput(outpoint=outpoint) for outpoint, _ in spent),
        outputs=tuple(outputs),
    )
    return wallet.sign(unsigned)


async def main() -> None:
    network = SimulatedNetwork(seed=2026, latency=(0.005, 0.05))
    async with testnet(3, transport=network) as net:
        node = net.nodes[0]
        registry, buyer, offsetter = net.wallets[:3]
        parties = {"registry": registry, "buyer": buyer, "offsetter": offsetter}

        # 1. Issue: 6,000 credits now, a cap of 10,000. The asset id derives from the
        #    issue transaction's first input, so nobody can issue the same asset twice.
        tx, credit = registry.build_issue(
            node.utxos(registry.address),
            name=NAME,
            amount=6_000,
            cap=CAP,
            fee=FEE,
            context=next_block(node),
        )
        await settle(net, tx, f"registry issued 6000 {NAME.decode()}")
        print(f"  asset id {credit.hex()}")
        show(net, parties, credit)

        # 2. Trade: the registry sells 1,500 t to a buyer, who resells 400 t.
        sale = TxOutput(asset=credit, amount=1_500, address=buyer.address)
        tx = registry.build_transfer(
            node.utxos(registry.address), [sale], fee=FEE, context=next_block(node)
        )
        await settle(net, tx, "registry sold 1500 t to buyer")
        show(net, parties, credit)
        resale = TxOutput(asset=credit, amount=400, address=offsetter.address)
        tx = buyer.build_transfer(
            node.utxos(buyer.address), [resale], fee=FEE, context=next_block(node)
        )
        await settle(net, tx, "buyer resold 400 t to offsetter")
        show(net, parties, credit)

        # 3. Retire: the offsetter burns 250 t against its emissions. Retired credits still
        #    count as issued, so the cap limits every credit that ever existed.
        await settle(net, retirement(offsetter, node, credit, 250), "offsetter retired 250 t")
        show(net, parties, credit)

        # 4. Mint: only the issuer may mint, and only up to the cap.
        tx = registry.build_mint(
            node.utxos(registry.address),
            asset=credit,
            amount=CAP - 6_000,
            fee=FEE,
            context=next_block(node),
        )
        await settle(net, tx, f"registry minted {CAP - 6_000} t (up to the cap)")
        show(net, parties, credit)

        over = registry.build_mint(
            node.utxos(registry.address), asset=credit, amount=1, fee=FEE, context=next_block(node)
        )
        try:
            await node.submit_transaction(over)
        except InvalidTransaction as exc:
            print(f"\nminting 1 t more was rejected: {exc.reason}")
        else:
            raise SystemExit("a mint above the cap was accepted")
        print(f"  status on node 0: {node.get_transaction(over.txid).status}")

        # Every credit ever issued is either held by someone or retired.
        held = sum(node.balance(wallet.address, credit) for wallet in parties.values())
        info = node.asset(credit)
        assert info is not None
        print(f"\nheld {held} t + retired 250 t = issued {info.issued} t")


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
