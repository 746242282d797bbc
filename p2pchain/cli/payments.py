"""Demo payments for ``p2pchain testnet --tx-rate R``: the demo wallets pay each other over RPC.

Each wallet keeps the coins it knows locally (its change outputs, even while unconfirmed, so
it can send faster than one payment per block) and refreshes them from a node's
`address_utxos` when a submission fails (for example after a reorg).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import trio

from p2pchain.cli.config import NetworkFile
from p2pchain.cli.rpc_client import RpcClient, RpcError, connect_rpc, parse_utxos
from p2pchain.errors import InsufficientFunds
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.tx import NO_LOCK, OutPoint, TxOutput
from p2pchain.ledger.types import AssetId
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Wallet
from p2pchain.params import COIN

PAYMENT = COIN // 100
FEE = 10_000


@dataclass
class _DemoWallet:
    wallet: Wallet
    coins: dict[OutPoint, TxOutput] = field(default_factory=dict)


async def _refresh(rpc: RpcClient, demo: _DemoWallet) -> None:
    """Replace the wallet's coins with the node's view: plain native outputs only."""
    native = demo.wallet.params.native_asset
    result = await rpc.call("address_utxos", demo.wallet.address_text)
    demo.coins = {
        outpoint: output
        for outpoint, output in parse_utxos(result, demo.wallet.address)
        if output.asset == native and output.lock == NO_LOCK
    }


async def _pay(rpc: RpcClient, payer: _DemoWallet, payee: _DemoWallet) -> bool:
    """Send one payment; True when the node accepted it."""
    native = AssetId(payer.wallet.params.native_asset)
    payment = TxOutput(asset=native, amount=PAYMENT, address=payee.wallet.address)
    try:
        tx = payer.wallet.build_transfer(
            list(payer.coins.items()),
            [payment],
            fee=FEE,
            context=BlockContext(height=0, slot=0),
        )
    except InsufficientFunds:
        await _refresh(rpc, payer)
        return False
    try:
        await rpc.call("tx_submit", "0x" + tx.encoded.hex())
    except RpcError:
        await _refresh(rpc, payer)
        return False
    for tx_input in tx.inputs:
        payer.coins.pop(tx_input.outpoint, None)
    for index, output in enumerate(tx.outputs):
        if output.address == payer.wallet.address:
            payer.coins[OutPoint(txid=tx.txid, index=index)] = output
    return True


async def send_demo_payments(
    rpc_urls: list[str],
    keys: list[SecretKey],
    network: NetworkFile,
    rate: float,
    sent: list[int],
) -> None:
    """Round-robin payments between the demo wallets at `rate` per second, via each node in
    turn; `sent[0]` counts accepted payments. Runs until cancelled; survives nodes restarting."""
    wallets = [_DemoWallet(Wallet(key, network.params)) for key in keys]
    if len(wallets) < 2:
        return
    pairs = itertools.cycle(zip(wallets, wallets[1:] + wallets[:1], strict=True))
    urls = itertools.cycle(rpc_urls)
    while True:
        try:
            async with connect_rpc(next(urls)) as rpc:
                for demo in wallets:
                    await _refresh(rpc, demo)
                while True:
                    payer, payee = next(pairs)
                    if await _pay(rpc, payer, payee):
                        sent[0] += 1
                    await trio.sleep(1 / rate)
        except (OSError, RpcError, trio.BrokenResourceError):
            await trio.sleep(1.0)
        except Exception:  # trio-websocket's connection errors have no common base with OSError
            await trio.sleep(1.0)
