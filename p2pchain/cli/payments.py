"""Demo payments for ``p2pchain testnet --tx-rate R``: the demo wallets pay each other over RPC.

Each wallet keeps the coins it knows locally (its change outputs, even while unconfirmed, so
it can send faster than one payment per block) and refreshes them from a node's
`address_utxos` when a submission fails (for example after a reorg).
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

import trio
from trio_websocket import ConnectionClosed, HandshakeError

from p2pchain.cli.config import NetworkFile
from p2pchain.cli.rpc_client import RpcClient, connect_rpc, parse_utxos
from p2pchain.errors import InsufficientFunds
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.tx import NO_LOCK, OutPoint, Transaction, TxOutput
from p2pchain.ledger.types import Address, Amount, AssetId, Height, Slot
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Wallet
from p2pchain.params import COIN
from p2pchain.rpc import RpcError

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


@dataclass
class PaymentTally:
    """Demo payments: accepted by a node, then seen finalized (or lost) by `track_finality`."""

    sent: int = 0
    finalized: int = 0
    lost: int = 0
    """Accepted, then rejected or forgotten by the node that accepted them (a reorg or a
    crash can do that to a payment built on unconfirmed change)."""
    waiting: deque[tuple[str, str]] = field(default_factory=deque)
    """(node RPC URL, txid) of accepted payments not yet seen finalized, oldest first."""


async def _pay(rpc: RpcClient, payer: _DemoWallet, payee: _DemoWallet) -> str | None:
    """Send one payment; its txid when the node accepted it."""
    native = AssetId(payer.wallet.params.native_asset)
    payment = TxOutput(asset=native, amount=Amount(PAYMENT), address=payee.wallet.address)
    try:
        tx = payer.wallet.build_transfer(
            list(payer.coins.items()),
            [payment],
            fee=Amount(FEE),
            context=BlockContext(height=Height(0), slot=Slot(0)),
        )
    except InsufficientFunds:
        await _refresh(rpc, payer)
        return None
    try:
        txid = await rpc.call("tx_submit", "0x" + tx.encoded.hex())
    except RpcError:
        await _refresh(rpc, payer)
        return None
    spend_own_coins(payer.coins, tx, payer.wallet.address)
    return str(txid)


def spend_own_coins(coins: dict[OutPoint, TxOutput], tx: Transaction, owner: Address) -> None:
    """Update a wallet's known coins for a transaction it sent: its inputs are gone, its
    outputs to `owner` (the change) can be spent at once, before any block has them."""
    for tx_input in tx.inputs:
        coins.pop(tx_input.outpoint, None)
    for index, output in enumerate(tx.outputs):
        if output.address == owner:
            coins[OutPoint(txid=tx.txid, index=index)] = output


async def send_demo_payments(
    rpc_urls: list[str],
    keys: list[SecretKey],
    network: NetworkFile,
    rate: float,
    tally: PaymentTally,
) -> None:
    """Round-robin payments between the demo wallets at `rate` per second, via each node in
    turn, counted in `tally`. Runs until cancelled; survives nodes restarting."""
    wallets = [_DemoWallet(Wallet(key, network.params)) for key in keys]
    if len(wallets) < 2:
        return
    pairs = itertools.cycle(zip(wallets, wallets[1:] + wallets[:1], strict=True))
    urls = itertools.cycle(rpc_urls)
    while True:
        url = next(urls)
        try:
            async with connect_rpc(url) as rpc:
                for demo in wallets:
                    await _refresh(rpc, demo)
                while True:
                    payer, payee = next(pairs)
                    txid = await _pay(rpc, payer, payee)
                    if txid is not None:
                        tally.sent += 1
                        tally.waiting.append((url, txid))
                    await trio.sleep(1 / rate)
        except (OSError, RpcError, trio.BrokenResourceError, HandshakeError, ConnectionClosed):
            await trio.sleep(1.0)


async def track_finality(tally: PaymentTally, poll_s: float) -> None:
    """Move payments from `tally.waiting` to finalized (or lost), asking the node that
    accepted each; runs until cancelled."""
    while True:
        if not tally.waiting:
            await trio.sleep(poll_s)
            continue
        url = tally.waiting[0][0]
        try:
            async with connect_rpc(url) as rpc:
                while tally.waiting and tally.waiting[0][0] == url:
                    info = await rpc.call("tx_get", tally.waiting[0][1])
                    status = info.get("status") if isinstance(info, dict) else None
                    if status == "finalized":
                        tally.finalized += 1
                    elif status in ("rejected", "unknown"):
                        tally.lost += 1
                    else:
                        await trio.sleep(poll_s)
                        continue
                    tally.waiting.popleft()
        except (OSError, HandshakeError, ConnectionClosed, RpcError):  # down: ask again later
            await trio.sleep(poll_s)
