"""Range sync: blocks/s a fresh node imports from a peer over loopback, against local import.

A chain of a few hundred blocks, each carrying payments, is built with the pure consensus layer
(one validator proposing every slot). Three rates are measured on the same blocks in one run:

- consensus only (baseline): `on_block` into a fresh `Store`, every signature verified;
- local import (the figure's baseline): a fresh node without peers given the whole chain through
  `node.network.host.import_blocks`, the path sync feeds (signature batches in a worker thread,
  storage commits, events);
- sync: a fresh node with the chain-holding node as its bootnode starts, dials it over loopback
  TCP and downloads the chain with the production range sync, until its head reaches the tip.

Figure: sync blocks/s / local import blocks/s (goal >= 0.5: the network and the request
pipeline cost at most as much as the import itself).

Run alone: ``python -m benchmarks.bench_sync [--quick]``.
"""

from __future__ import annotations

import time

import trio

from benchmarks.harness import Rate, Report, measure_rate, run_alone
from p2pchain import NodeConfig, open_node
from p2pchain.consensus import build_block, get_forkchoice_store, on_block, on_tick
from p2pchain.ledger.block import Block
from p2pchain.ledger.genesis import GenesisConfig
from p2pchain.ledger.tx import TxOutput
from p2pchain.ledger.types import AssetId
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Wallet
from p2pchain.params import COIN, ChainParams
from p2pchain.protocol.connection import PeerId
from p2pchain.testing.testnet import TESTNET_PARAMS, derive_key, make_testnet_genesis

SEED = 2
SYNC_TIMEOUT_S = 120


def build_chain(blocks: int, txs_per_block: int) -> tuple[GenesisConfig, list[Block]]:
    """`blocks` blocks at slots 1..blocks, each with `txs_per_block` payments between wallets."""
    params = TESTNET_PARAMS
    key = derive_key(SEED, "validator", 0)
    wallets = [Wallet(derive_key(SEED, "wallet", i), params) for i in range(txs_per_block)]
    genesis = make_testnet_genesis(
        params, [key], wallets, genesis_time_ms=0, stake=100 * COIN, balance=1_000 * COIN
    )
    store = get_forkchoice_store(params, genesis)
    native = AssetId(params.native_asset)
    parent = store.genesis_id
    chain = []
    for slot in range(1, blocks + 1):
        on_tick(store, slot)
        context = BlockContext(height=slot, slot=slot)
        txs = []
        for index, wallet in enumerate(wallets):
            payee = wallets[(index + 1) % len(wallets)].address
            payment = TxOutput(asset=native, amount=COIN, address=payee)
            coins = store.view.utxos_of(wallet.address)[:4]  # a few coins keep the tx small
            txs.append(wallet.build_transfer(coins, [payment], fee=1_000, context=context))
        block = build_block(store, parent, slot, key, transactions=txs)
        if len(block.transactions) != txs_per_block + 1:
            raise RuntimeError("a benchmark payment was left out of its block")
        on_block(store, block, slot)
        parent = block.block_id
        chain.append(block)
    return genesis, chain


def _config(
    genesis: GenesisConfig,
    params: ChainParams,
    tip_slot: int,
    index: int,
    bootnodes: tuple[str, ...] = (),
) -> NodeConfig:
    """A node whose clock stands just after the tip's slot (so no block waits as 'future')."""
    now_ms = (tip_slot + 1) * params.slot_ms + params.slot_ms // 2
    return NodeConfig(
        genesis=genesis,
        params=params,
        listen=("tcp://127.0.0.1:0",),
        bootnodes=bootnodes,
        node_key=derive_key(SEED, "node", index),
        clock_offset_ms=now_ms - round(trio.current_time() * 1000),
    )


def consensus_import(genesis: GenesisConfig, chain: list[Block]) -> None:
    store = get_forkchoice_store(TESTNET_PARAMS, genesis)
    for block in chain:
        on_block(store, block, chain[-1].header.slot)


async def local_import(genesis: GenesisConfig, chain: list[Block]) -> float:
    """Seconds for a fresh, peerless node to import `chain` through `import_blocks`."""
    tip = chain[-1].header
    async with open_node(_config(genesis, TESTNET_PARAMS, tip.slot, 0)) as node:
        start = time.perf_counter()
        await node.network.host.import_blocks(tuple(chain), PeerId(bytes(32)))
        elapsed = time.perf_counter() - start
        if node.head().block_id != chain[-1].block_id:
            raise RuntimeError("local import did not reach the tip")
    return elapsed


async def sync_from_peer(genesis: GenesisConfig, chain: list[Block]) -> float:
    """Seconds for a fresh node to start, dial its bootnode over loopback and download and
    import `chain` from it."""
    tip = chain[-1].header
    async with open_node(_config(genesis, TESTNET_PARAMS, tip.slot, 1)) as server:
        await server.network.host.import_blocks(tuple(chain), PeerId(bytes(32)))
        address = next(a for a in server.info.listen_addresses if a.startswith("tcp://"))
        config = _config(genesis, TESTNET_PARAMS, tip.slot, 2, bootnodes=(address,))
        start = time.perf_counter()
        async with open_node(config) as fresh:
            with trio.fail_after(SYNC_TIMEOUT_S):
                await fresh.wait_for(lambda node: node.head().height >= tip.height)
            elapsed = time.perf_counter() - start
    return elapsed


def _rate(samples: list[float], blocks: int) -> Rate:
    rates = sorted(blocks / s for s in samples)
    return Rate(median=rates[len(rates) // 2], low=rates[0], high=rates[-1])


def run(quick: bool = False) -> Report:
    report = Report()
    blocks, per_block = (40, 4) if quick else (300, 10)
    repeat = 1 if quick else 3
    print("sync", flush=True)
    genesis, chain = build_chain(blocks, per_block)
    label = f"{blocks} blocks x {per_block} payments"
    pure = measure_rate(lambda: consensus_import(genesis, chain), ops=blocks, repeat=repeat)
    report.baseline(f"consensus on_block, {label} (blocks/s)", pure)
    local = _rate([trio.run(local_import, genesis, chain) for _ in range(repeat)], blocks)
    report.baseline(f"node import_blocks without network, {label} (blocks/s)", local)
    synced = _rate([trio.run(sync_from_peer, genesis, chain) for _ in range(repeat)], blocks)
    report.baseline(f"range sync from one peer over loopback TCP, {label} (blocks/s)", synced)
    ratio = synced.median / local.median
    report.figure(
        "sync blocks/s from a peer / local import blocks/s",
        ratio,
        ">= 0.5",
        ratio >= 0.5,
        f"({synced.median:.0f} vs {local.median:.0f} blocks/s)",
    )
    return report


if __name__ == "__main__":
    run_alone(run, __doc__)
