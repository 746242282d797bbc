"""Node block import: how long the event loop stalls while a block of new transactions imports.

Baseline (same run): verifying the block's transaction signatures one after another on one core
(coincurve BIP-340). Figures: the longest gap a 1 ms heartbeat task sees while a node imports the
block with signature checks on the loop (``offload_blocking=False``), as a ratio to the
baseline; and with them in a worker thread (the default), as a ratio to the first. Offloading
should leave only the UTXO and fork-choice work on the loop.

Run alone: ``python -m benchmarks.bench_node [--quick]``.
"""

from __future__ import annotations

import time
from dataclasses import replace

import trio

from benchmarks.harness import Report, measure_seconds, run_alone
from p2pchain import NodeConfig, open_node
from p2pchain.consensus import build_block, get_forkchoice_store, on_tick
from p2pchain.ledger.block import Block
from p2pchain.ledger.genesis import GenesisConfig
from p2pchain.ledger.validation import BlockContext, verify_input_signatures
from p2pchain.ledger.wallet import Wallet
from p2pchain.params import COIN, ChainParams
from p2pchain.protocol.connection import PeerId
from p2pchain.testing.testnet import TESTNET_PARAMS, derive_key, make_testnet_genesis

HEARTBEAT_S = 0.001


def _block(size: int) -> tuple[ChainParams, GenesisConfig, Block]:
    params = replace(TESTNET_PARAMS, max_block_txs=size + 1)
    key = derive_key(1, "validator", 0)
    wallets = [Wallet(derive_key(1, "wallet", i), params) for i in range(size)]
    genesis = make_testnet_genesis(
        params, [key], wallets, genesis_time_ms=0, stake=100 * COIN, balance=COIN
    )
    store = get_forkchoice_store(params, genesis)
    on_tick(store, 1)
    context = BlockContext(height=1, slot=1)
    txs = [
        w.build_transfer(store.view.utxos_of(w.address), [], fee=1_000, context=context)
        for w in wallets
    ]
    return params, genesis, build_block(store, store.genesis_id, 1, key, transactions=txs)


async def _longest_stall(
    params: ChainParams, genesis: GenesisConfig, block: Block, offload: bool
) -> float:
    config = NodeConfig(
        genesis=genesis,
        params=params,
        listen=("tcp://127.0.0.1:0",),
        clock_offset_ms=1_500 - round(trio.current_time() * 1000),
        offload_blocking=offload,
    )
    worst = 0.0
    importing = True

    async def heartbeat() -> None:
        nonlocal worst
        last = time.perf_counter()
        while importing:
            await trio.sleep(HEARTBEAT_S)
            now = time.perf_counter()
            worst = max(worst, now - last)
            last = now

    async with open_node(config) as node, trio.open_nursery() as nursery:
        nursery.start_soon(heartbeat)
        await trio.sleep(10 * HEARTBEAT_S)
        worst = 0.0
        await node.network.host.import_blocks((block,), PeerId(bytes(32)))
        importing = False
        if node.head().block_id != block.block_id:
            raise RuntimeError("the benchmark block was not imported")
    return worst


def run(*, quick: bool = False) -> Report:
    report = Report()
    size = 40 if quick else 1_000
    params, genesis, block = _block(size)
    txs = block.transactions[1:]
    verify = measure_seconds(
        lambda: [verify_input_signatures(tx, tx.txid, params.chain_id) for tx in txs],
        repeat=1 if quick else 3,
    )
    report.baseline(f"verify {size} tx signatures on one core", f"{verify.median * 1000:.1f} ms")
    inline = trio.run(_longest_stall, params, genesis, block, False)
    offloaded = trio.run(_longest_stall, params, genesis, block, True)
    report.figure(
        "node import: longest loop stall, signatures on the loop / verify time",
        inline / verify.median,
        ">= 1 (shows the cost being removed)",
        inline >= verify.median,
        f"{inline * 1000:.1f} ms",
    )
    report.figure(
        "node import: longest loop stall, signatures in a worker thread / on the loop",
        offloaded / inline,
        "< 0.75",
        offloaded < 0.75 * inline,
        f"{offloaded * 1000:.1f} ms",
    )
    return report


if __name__ == "__main__":
    run_alone(run, __doc__)
