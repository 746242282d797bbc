"""Range sync: blocks/s a fresh node imports from a peer over loopback, against local import.

A chain of a few hundred blocks, each carrying payments, is built with the pure consensus layer
(one validator proposing every slot). Three rates are measured on the same blocks in one run:

- consensus only (baseline): `on_block` into a fresh `Store`, every signature verified;
- local import (the figure's baseline): a fresh node without peers given the whole chain through
  `node.network.host.import_blocks`, the path sync feeds (signature batches in a worker thread,
  storage commits, events);
- sync: a fresh node with the chain-holding node (in another process, as a peer is) as its
  bootnode starts, dials it over loopback TCP and downloads the chain with the production range
  sync, until its head reaches the tip. The same with the serving node in this process is
  reported beside it: there both nodes share one core, and the fresh node's cyclic garbage
  collections walk the server's whole chain too, which costs it about a quarter of its rate.

Figure: sync blocks/s / local import blocks/s, the median over runs of each sync paired with a
local import next to it (goal >= 0.8: the network and the request pipeline cost at most a
quarter of what the import itself costs).

Run alone: ``python -m benchmarks.bench_sync [--quick]``.
"""

from __future__ import annotations

import gc
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection

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


def _serve_chain(pipe: Connection, blocks: int, txs_per_block: int) -> None:
    """Child process: hold the benchmark chain in a node, send its TCP address, serve until told
    to stop (anything on `pipe`)."""

    async def serve() -> None:
        genesis, chain = build_chain(blocks, txs_per_block)
        config = _config(genesis, TESTNET_PARAMS, chain[-1].header.slot, 1)
        async with open_node(config) as server:
            await server.network.host.import_blocks(tuple(chain), PeerId(bytes(32)))
            pipe.send(next(a for a in server.info.listen_addresses if a.startswith("tcp://")))
            await trio.to_thread.run_sync(pipe.recv, abandon_on_cancel=True)

    trio.run(serve)


async def sync_from_process(genesis: GenesisConfig, chain: list[Block], address: str) -> float:
    """Seconds for a fresh node to sync `chain` from the node of another process at `address`."""
    tip = chain[-1].header
    config = _config(genesis, TESTNET_PARAMS, tip.slot, 2, bootnodes=(address,))
    start = time.perf_counter()
    async with open_node(config) as fresh:
        with trio.fail_after(SYNC_TIMEOUT_S):
            await fresh.wait_for(lambda node: node.head().height >= tip.height)
        return time.perf_counter() - start


def _run(function: Callable[..., Awaitable[float]], *args: object) -> float:
    """`trio.run(function, *args)` after collecting the garbage of earlier runs, which the
    run would otherwise pay for (a stopped node leaves reference cycles behind)."""
    gc.collect()
    return trio.run(function, *args)


def _paired_ratio(pairs: list[tuple[float, float]]) -> float:
    """Median over (local seconds, sync seconds) pairs of sync rate / local rate."""
    ratios = sorted(local_s / sync_s for local_s, sync_s in pairs)
    return ratios[len(ratios) // 2]


def _rate(samples: list[float], blocks: int) -> Rate:
    rates = sorted(blocks / s for s in samples)
    return Rate(median=rates[len(rates) // 2], low=rates[0], high=rates[-1])


def run(quick: bool = False) -> Report:
    report = Report()
    blocks, per_block = (40, 4) if quick else (300, 10)
    repeat = 1 if quick else 7
    print("sync", flush=True)
    genesis, chain = build_chain(blocks, per_block)
    label = f"{blocks} blocks x {per_block} payments"
    pure = measure_rate(lambda: consensus_import(genesis, chain), ops=blocks, repeat=repeat)
    report.baseline(f"consensus on_block, {label} (blocks/s)", pure)
    # Each sync run is paired with a local import run next to it, and the figures are medians
    # of the pairs' ratios: one run takes under a second, so the machine's drift between runs
    # would otherwise swamp them.
    context = multiprocessing.get_context("spawn")
    pipe, child_pipe = context.Pipe()
    server = context.Process(target=_serve_chain, args=(child_pipe, blocks, per_block))
    server.start()
    try:
        if not pipe.poll(SYNC_TIMEOUT_S):
            raise RuntimeError("the serving process did not start")
        address = pipe.recv()
        pairs = [
            (_run(local_import, genesis, chain), _run(sync_from_process, genesis, chain, address))
            for _ in range(repeat)
        ]
    finally:
        pipe.send(None)
        server.join(SYNC_TIMEOUT_S)
        if server.is_alive():
            server.terminate()
    local = _rate([local_s for local_s, _ in pairs], blocks)
    report.baseline(f"node import_blocks without network, {label} (blocks/s)", local)
    synced = _rate([sync_s for _, sync_s in pairs], blocks)
    report.baseline(f"range sync from a peer process over loopback TCP, {label} (blocks/s)", synced)
    ratio = _paired_ratio(pairs)
    report.figure(
        "sync blocks/s from a peer / local import blocks/s",
        ratio,
        ">= 0.8",
        ratio >= 0.8,
        f"({synced.median:.0f} vs {local.median:.0f} blocks/s)",
    )
    shared = [
        (_run(local_import, genesis, chain), _run(sync_from_peer, genesis, chain))
        for _ in range(repeat)
    ]
    report.figure(
        "the same with the serving node in this process",
        _paired_ratio(shared),
        "report",
        True,
        "(both nodes on one core, and every full collection walks the server's heap too)",
    )
    return report


if __name__ == "__main__":
    run_alone(run, __doc__)
