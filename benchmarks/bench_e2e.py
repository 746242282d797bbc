"""End to end on a local network of node processes: payments/s, finality latency, memory.

The network is what ``p2pchain init`` writes, and every node is a separate ``p2pchain node``
OS process on loopback (as ``p2pchain testnet`` runs them). Demo wallets submit payments over
JSON-RPC as fast as the nodes accept them, each wallet spending its own unconfirmed change, one
wallet per RPC connection, spread over the nodes.

- Sustained accepted payments/s over the load window, as a ratio to the validated tx/s of one
  core measured in the same run (`bench_parallel.validate_one_core`): how much of the raw
  validation capacity survives RPC, gossip to every node, block building, import and storage.
- Submit-to-finalized latency, in slots, of a sample of payments (median; p90 and max in the
  detail): a poller asks one node for each sample's block height and for the finalized
  height, every 0.1 s. Goal: <= 2 epochs + 2 slots.
- Peak RSS of each node (``VmHWM`` from ``/proc/<pid>/status``), as a ratio to the peak RSS of a
  Python process that only imported p2pchain.

Run alone: ``python -m benchmarks.bench_e2e [--quick]``.
"""

from __future__ import annotations

import math
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

from benchmarks.bench_ledger import make_workload
from benchmarks.bench_parallel import validate_one_core
from benchmarks.harness import Report, measure_rate, run_alone
from p2pchain.cli.config import load_network, load_node, read_key
from p2pchain.cli.network import init_network
from p2pchain.cli.rpc_client import RpcClient, RpcError, connect_rpc
from p2pchain.errors import InsufficientFunds
from p2pchain.ledger.tx import OutPoint, TxOutput
from p2pchain.ledger.types import AssetId, TxId
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Wallet
from p2pchain.params import COIN, ChainParams

PAYMENT = COIN // 100
FEE = 10_000
SAMPLE_EVERY = 10
POLL_S = 0.1
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0


@dataclass(frozen=True, slots=True)
class Setup:
    nodes: int
    wallets: int
    params: ChainParams
    load_s: float
    """Seconds of payment load, after the first block."""
    settle_s: float
    """Seconds after the load for the sampled payments to finalize."""


QUICK = Setup(3, 6, ChainParams(slot_ms=500, slots_per_epoch=4), load_s=5.0, settle_s=7.0)
FULL = Setup(4, 8, ChainParams(slot_ms=1_000, slots_per_epoch=4), load_s=40.0, settle_s=14.0)


@dataclass
class LoadResult:
    accepted: int = 0
    refused: int = 0
    submitted_at: dict[TxId, float] = field(default_factory=dict)
    """Sampled payments: submission time (perf_counter)."""
    finalized_at: dict[TxId, float] = field(default_factory=dict)


def _free_port_block(size: int) -> int:
    """A base port with `size` consecutive ports free right now (best effort)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + size >= 65_535:
            continue
        try:
            for port in range(base, base + size):
                with socket.socket() as candidate:
                    candidate.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no block of free ports")


def peak_rss_kib(pid: int) -> int:
    """``VmHWM`` (peak resident set) of a live process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for pid {pid}")


def _import_only_rss_kib() -> int:
    code = "import p2pchain, pathlib; print(pathlib.Path('/proc/self/status').read_text())"
    status = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    line = next(x for x in status.stdout.decode().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1])


class _Payer:
    """One demo wallet paying the next one, tracking its own (possibly unconfirmed) change."""

    def __init__(self, wallet: Wallet, payee: Wallet) -> None:
        self.wallet = wallet
        self.payee = payee
        self.coins: dict[OutPoint, TxOutput] = {}

    async def refresh(self, rpc: RpcClient) -> None:
        native = self.wallet.params.native_asset
        entries = await rpc.call("address_utxos", self.wallet.address_text)
        self.coins.clear()
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or str(entry.get("asset")) != "0x" + native.hex():
                continue
            lock = entry.get("lock")
            if not isinstance(lock, dict) or lock.get("kind") != "none":
                continue
            outpoint = OutPoint(
                txid=TxId(bytes.fromhex(str(entry["txid"])[2:])), index=int(str(entry["index"]))
            )
            self.coins[outpoint] = TxOutput(
                asset=AssetId(native), amount=int(str(entry["amount"])), address=self.wallet.address
            )

    async def pay(self, rpc: RpcClient) -> TxId | None:
        """Submit one payment; its id if the node accepted it."""
        native = AssetId(self.wallet.params.native_asset)
        payment = TxOutput(asset=native, amount=PAYMENT, address=self.payee.address)
        coins = sorted(self.coins.items(), key=lambda item: -item[1].amount)[:2]
        try:
            tx = self.wallet.build_transfer(
                coins, [payment], fee=FEE, context=BlockContext(height=0, slot=0)
            )
        except InsufficientFunds:
            await self.refresh(rpc)
            return None
        try:
            await rpc.call("tx_submit", "0x" + tx.encoded.hex())
        except RpcError:
            await self.refresh(rpc)
            return None
        for tx_input in tx.inputs:
            self.coins.pop(tx_input.outpoint, None)
        for index, output in enumerate(tx.outputs):
            if output.address == self.wallet.address:
                self.coins[OutPoint(txid=tx.txid, index=index)] = output
        return tx.txid


async def _wait_ready(urls: list[str], first_block_height: int) -> None:
    """Wait until every node answers RPC and has a block above genesis."""
    with trio.fail_after(READY_TIMEOUT_S):
        for url in urls:
            while True:
                try:
                    async with connect_rpc(url) as rpc:
                        head = await rpc.call("chain_head")
                        if (
                            isinstance(head, dict)
                            and int(str(head["height"])) >= first_block_height
                        ):
                            break
                except (OSError, RpcError, trio.BrokenResourceError):
                    pass
                except Exception:  # trio-websocket's handshake errors have no common base
                    pass
                await trio.sleep(0.2)


async def _drive(payer: _Payer, url: str, result: LoadResult, until: float) -> None:
    async with connect_rpc(url) as rpc:
        await payer.refresh(rpc)
        while time.perf_counter() < until:
            txid = await payer.pay(rpc)
            if txid is None:
                result.refused += 1
                continue
            result.accepted += 1
            if result.accepted % SAMPLE_EVERY == 0:
                result.submitted_at[txid] = time.perf_counter()


async def _poll_finality(url: str, result: LoadResult, load_end: float, until: float) -> None:
    """Track the sampled payments until final; stop once the load is over and all are.

    Each round asks for the status of the samples not yet in a block (few: inclusion takes a
    slot or so) and for the finalized height; a sample is final once that height reaches the
    height of its block. Asking for every pending sample each round would itself lag by
    seconds under load.
    """
    heights: dict[TxId, int] = {}
    async with connect_rpc(url) as rpc:
        while (now := time.perf_counter()) < until:
            if now > load_end and len(result.finalized_at) == len(result.submitted_at):
                return
            for txid in [t for t in result.submitted_at if t not in heights]:
                info = await rpc.call("tx_get", "0x" + txid.hex())
                if isinstance(info, dict) and isinstance(info.get("height"), int):
                    heights[txid] = int(str(info["height"]))
            finalized = await rpc.call("chain_finalized")
            if isinstance(finalized, dict) and isinstance(finalized.get("height"), int):
                final_height = int(str(finalized["height"]))
                seen = time.perf_counter()
                for txid, height in heights.items():
                    if height <= final_height and txid not in result.finalized_at:
                        result.finalized_at[txid] = seen
            await trio.sleep(POLL_S)


async def load(urls: list[str], wallets: list[Wallet], setup: Setup) -> LoadResult:
    payers = [_Payer(w, wallets[(i + 1) % len(wallets)]) for i, w in enumerate(wallets)]
    await _wait_ready(urls, 1)
    result = LoadResult()
    start = time.perf_counter()
    load_end = start + setup.load_s
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_poll_finality, urls[0], result, load_end, load_end + setup.settle_s)
        for index, payer in enumerate(payers):
            nursery.start_soon(_drive, payer, urls[index % len(urls)], result, load_end)
    return result


def _start_nodes(configs: list[Path], logs: Path) -> list[subprocess.Popen[bytes]]:
    processes = []
    for index, config in enumerate(configs):
        log = (logs / f"node{index}.log").open("wb")
        command = [sys.executable, "-m", "p2pchain", "node", "--config", str(config)]
        processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        log.close()
    return processes


def _stop_nodes(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True, slots=True)
class E2eRun:
    load: LoadResult
    peak_rss_kib: list[int]
    load_s: float


def run_network(setup: Setup) -> E2eRun:
    with tempfile.TemporaryDirectory(prefix="p2pchain-bench-") as directory:
        root = Path(directory)
        base = _free_port_block(2 * setup.nodes + setup.nodes)
        layout = init_network(
            root,
            nodes=setup.nodes,
            params=setup.params,
            base_port=base,
            rpc_port=base + 2 * setup.nodes,
            wallets=setup.wallets,
            genesis_delay_s=3.0,
        )
        network = load_network(layout.network)
        urls = [f"ws://{load_node(path).rpc}" for path in layout.nodes]
        processes = _start_nodes(list(layout.nodes), root)
        try:
            wallets = [Wallet(read_key(path), network.params) for path in layout.wallets]
            result = trio.run(load, urls, wallets, setup)
            rss = [peak_rss_kib(p.pid) for p in processes]
            if any(p.poll() is not None for p in processes):
                raise RuntimeError(f"a node process exited; see its log under {root}")
        finally:
            _stop_nodes(processes)
    return E2eRun(load=result, peak_rss_kib=rss, load_s=setup.load_s)


def run(quick: bool = False) -> Report:
    report = Report()
    setup = QUICK if quick else FULL
    print("end to end", flush=True)
    work = make_workload(100 if quick else 500)
    raws = [tx.encoded for tx in work.txs]
    one_core = measure_rate(lambda: validate_one_core(work, raws), ops=len(raws), repeat=3)
    report.baseline("validated 2-in/2-out tx, 1 core (e2e reference)", one_core)
    baseline_rss = _import_only_rss_kib()
    report.baseline(
        "peak RSS of python after `import p2pchain` (MiB)", f"{baseline_rss / 1024:.1f}"
    )

    outcome = run_network(setup)
    result = outcome.load
    params = setup.params
    slot_s = params.slot_ms / 1000
    label = f"{setup.nodes} node processes, {setup.wallets} wallets, {slot_s:g} s slots"
    rate = result.accepted / outcome.load_s
    report.baseline(
        f"e2e accepted payments/s ({label})",
        f"{rate:.1f} ({result.accepted} accepted, {result.refused} refused)",
    )
    report.figure(
        "e2e sustained payments/s / validated tx/s on 1 core",
        rate / one_core.median,
        "report",
        rate > 0,
        f"({rate:.1f} payments/s over {outcome.load_s:g} s, {setup.nodes} processes)",
    )

    latencies = sorted(
        (result.finalized_at[t] - result.submitted_at[t]) / slot_s for t in result.finalized_at
    )
    goal_slots = 2 * params.slots_per_epoch + 2
    sampled = len(result.submitted_at)
    if latencies:
        median = statistics.median(latencies)
        p90 = latencies[min(len(latencies) - 1, math.ceil(0.9 * len(latencies)) - 1)]
        detail = f"(p90 {p90:.1f}, max {latencies[-1]:.1f}; {len(latencies)}/{sampled} finalized)"
    else:
        median = math.inf
        detail = f"(0/{sampled} sampled payments finalized)"
    report.figure(
        "e2e submit-to-finalized latency (slots), median",
        median,
        f"<= 2 epochs + 2 slots ({goal_slots})",
        median <= goal_slots and len(latencies) == sampled,
        detail,
    )
    peak = max(outcome.peak_rss_kib)
    report.figure(
        "e2e peak RSS per node / python with p2pchain imported",
        peak / baseline_rss,
        "report",
        True,
        "(" + ", ".join(f"{kib / 1024:.0f}" for kib in outcome.peak_rss_kib) + " MiB)",
    )
    return report


if __name__ == "__main__":
    run_alone(run, __doc__)
