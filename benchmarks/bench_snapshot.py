"""Snapshot sync: how much sooner a new node is at the tip when it starts from a verified
snapshot of the finalized state than when it replays the chain from genesis.

A finalized chain of 10,000 blocks (``--quick``: 1,000) is built with the pure consensus layer
(`p2pchain.testing.consensus.Simulation` with one validator on `TESTNET_PARAMS`: it proposes
every slot and votes once an epoch, and the next block carries the vote, so finality follows
two epochs behind the tip). Every block also carries 10 payments (quick: 8) between 2,000
funded wallets (quick: 500), each spending all its coins (up to 8) into one coin to each of 3
others and its change, and the validator's sweep of its matured rewards, so that the UTXO set
stays at one or two outputs per wallet: a state of some thousands of outputs (2,733 at 10,000
blocks) spread over every subtree, not one that grows with the chain.

A node in a second process (as a real peer is) builds the chain, imports it and serves it over
loopback TCP. Then, alternately, in this process on the same chain:

- full sync: a fresh node with the server as its bootnode, until its head is the tip;
- snapshot sync: a fresh node with ``snapshot_sync=True`` and as `trusted_checkpoint` a
  finalized checkpoint `TRUST_EPOCHS_BACK` epochs below the server's finalized one (read from
  the server's store, and checked to be one it can certify from), until its head is the tip:
  certificates from the trusted checkpoint, the manifest and the 256 subtrees in pages, each
  checked against the checkpoint's state root, the state installed, then range sync of the
  blocks after it. Before each run the server forgets the states it prepared, so every run pays
  the preparation a serving node makes once per finalized checkpoint (on a live chain the first
  node to ask after finality moved on pays it); one more run right after the last, with the
  state still prepared, is reported beside it.

Each run is checked: the node's head is the server's tip, its head state root (recomputed
from its own UTXO set) is the server's and so is its output count; a snapshot run must have
started at an anchor above genesis (a node whose snapshot fetch fails falls back to syncing
from genesis), a full sync at genesis.

Figure: full sync seconds / snapshot sync seconds, medians (of 2 full syncs, they take 40-50 s,
and 3 snapshot syncs; 1 of each in quick mode), goal >= 10 at 10,000 blocks. The
snapshot path's phases (from timing wrappers put around library functions for the run, which
change nothing they wrap) are reported beside it.

Run alone: ``python -m benchmarks.bench_snapshot [--quick]``.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import multiprocessing
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import wraps
from multiprocessing.connection import Connection

import trio

import p2pchain.light.snapshot as light_snapshot
import p2pchain.node.node as node_module
from benchmarks.harness import Report, run_alone
from p2pchain import NodeConfig, open_node
from p2pchain.consensus.forkchoice import get_head_view
from p2pchain.consensus.store import get_checkpoint, get_forkchoice_store
from p2pchain.ledger.block import Block
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.encoding import encode
from p2pchain.ledger.genesis import GenesisConfig
from p2pchain.ledger.snapshot import SubtreeAssembler
from p2pchain.ledger.tx import LockKind, Transaction, TxInput, TxKind, TxOutput
from p2pchain.ledger.types import Address, Amount, AssetId, BlockId, Epoch, Height, Slot
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.vote import Checkpoint
from p2pchain.ledger.wallet import Coin, Wallet, is_spendable
from p2pchain.light.client import LightClient
from p2pchain.node import Node
from p2pchain.node.chain import ChainService
from p2pchain.node.storage import MemoryChainStore
from p2pchain.params import COIN
from p2pchain.protocol.connection import PeerId
from p2pchain.testing.consensus import Simulation
from p2pchain.testing.testnet import TESTNET_PARAMS, derive_key, make_testnet_genesis

SEED = 7
PARAMS = TESTNET_PARAMS
TIMEOUT_S = 600
"""Bound on every wait (building, importing, one sync): a hang fails instead of stalling."""
TRUST_EPOCHS_BACK = 8
"""How far below the server's finalized epoch the snapshot node's trusted checkpoint is."""
GOAL = 10.0
PAYEES = 3
MAX_INPUTS = 8
FEE = Amount(1_000)
IMPORT_BATCH = 500


@dataclass(frozen=True, slots=True)
class Shape:
    blocks: int
    wallets: int
    payments: int  # per block, besides the reward and the validator's sweep

    def label(self) -> str:
        return f"{self.blocks:,} blocks x {self.payments} payments, {self.wallets:,} wallets"


FULL = Shape(blocks=10_000, wallets=2_000, payments=10)
QUICK = Shape(blocks=1_000, wallets=500, payments=8)


def _validator_key() -> SecretKey:
    return derive_key(SEED, "validator", 0)


def _wallets(shape: Shape) -> list[Wallet]:
    return [Wallet(derive_key(SEED, "wallet", i), PARAMS) for i in range(shape.wallets)]


def make_genesis(shape: Shape, wallets: list[Wallet] | None = None) -> GenesisConfig:
    """The chain's genesis: one validator, `shape.wallets` wallets of 1,000 coins each."""
    return make_testnet_genesis(
        PARAMS,
        [_validator_key()],
        _wallets(shape) if wallets is None else wallets,
        genesis_time_ms=0,
        stake=100 * COIN,
        balance=1_000 * COIN,
    )


def _spend_all(wallet: Wallet, coins: list[Coin], payees: list[Address]) -> Transaction:
    """A transfer of all of `coins` (up to `MAX_INPUTS`): one coin to each payee, the rest back
    to the wallet as change. All of them, not the fewest that cover it (what `fund` chooses),
    so that a wallet's outputs do not pile up."""
    chosen = coins[:MAX_INPUTS]
    native = AssetId(PARAMS.native_asset)
    total = sum(output.amount for _, output in chosen)
    payments = [TxOutput(asset=native, amount=Amount(COIN), address=p) for p in payees]
    change = total - len(payees) * COIN - FEE
    if change <= 0:
        raise RuntimeError("a benchmark wallet ran out of coins")
    outputs = (*payments, TxOutput(asset=native, amount=Amount(change), address=wallet.address))
    tx = Transaction(
        kind=TxKind.TRANSFER,
        inputs=tuple(TxInput(outpoint=outpoint) for outpoint, _ in chosen),
        outputs=outputs,
        payload=None,
    )
    return wallet.sign(tx)


def build_chain(shape: Shape) -> tuple[GenesisConfig, list[Block]]:
    """`shape.blocks` blocks at slots 1..blocks, voted and finalized as they go."""
    key = _validator_key()
    wallets = _wallets(shape)
    genesis = make_genesis(shape, wallets)
    sim = Simulation(
        params=PARAMS,
        keys={key.public_key: key},
        genesis=genesis,
        store=get_forkchoice_store(PARAMS, genesis),
    )
    validator = Wallet(key, PARAMS)
    cursor = 0
    count = len(wallets)
    while sim.slot < shape.blocks:
        view = get_head_view(sim.store)
        context = BlockContext(height=Height(view.height + 1), slot=Slot(sim.slot + 1))
        txs = []
        for offset in range(shape.payments):
            payer = (cursor + offset) % count
            payees = [
                wallets[(payer + 1 + step * 97 + cursor // count) % count].address
                for step in range(PAYEES)
            ]
            coins = view.utxos_of(wallets[payer].address)
            txs.append(_spend_all(wallets[payer], coins, payees))
        cursor += shape.payments
        rewards = [
            coin
            for coin in view.utxos_of(validator.address)
            if coin[1].lock.kind is not LockKind.STAKE and is_spendable(coin[1], context, PARAMS)
        ]
        if sum(output.amount for _, output in rewards) > PAYEES * COIN + FEE:
            payees = [wallets[(cursor * 31 + step) % count].address for step in range(PAYEES)]
            txs.append(_spend_all(validator, rewards, payees))
        sim.pending_transactions = txs
        made = len(sim.messages)
        sim.run_slot()
        block = sim.messages[made]  # the proposal comes first, then the slot's votes
        if not isinstance(block, Block) or len(block.transactions) != len(txs) + 1:
            raise RuntimeError("a benchmark payment was left out of its block")
    chain = [message for message in sim.messages if isinstance(message, Block)]
    if len(chain) != shape.blocks:
        raise RuntimeError(f"{len(chain)} blocks built, not {shape.blocks}")
    if sim.store.finalized_checkpoint.epoch < TRUST_EPOCHS_BACK + 1:
        raise RuntimeError("the benchmark chain did not finalize")
    return genesis, chain


# -- the serving process ------------------------------------------------------------------------


def _config(
    genesis: GenesisConfig,
    tip_slot: int,
    index: int,
    bootnodes: tuple[str, ...] = (),
    trusted: Checkpoint | None = None,
) -> NodeConfig:
    """A node whose clock stands just after the tip's slot (so no block waits as 'future')."""
    now_ms = (tip_slot + 1) * PARAMS.slot_ms + PARAMS.slot_ms // 2
    return NodeConfig(
        genesis=genesis,
        params=PARAMS,
        listen=("tcp://127.0.0.1:0",),
        bootnodes=bootnodes,
        node_key=derive_key(SEED, "node", index),
        clock_offset_ms=now_ms - round(trio.current_time() * 1000),
        snapshot_sync=trusted is not None,
        trusted_checkpoint=trusted,
    )


@dataclass(frozen=True, slots=True)
class Served:
    """What the serving process reports once it holds the chain."""

    address: str
    build_s: float
    import_s: float
    tip: BlockId
    tip_height: int
    tip_slot: int
    state_root: bytes
    outputs: int
    addresses: int
    finalized: Checkpoint
    trusted: Checkpoint
    certificate_bytes: int


def _serve_chain(pipe: Connection, shape: Shape) -> None:
    """Child process: build the chain, hold it in a node, report (`Served`), then answer
    commands on `pipe` until told to stop: "forget" (drop the prepared snapshots), "stop"."""

    async def serve() -> None:
        start = time.perf_counter()
        genesis, chain = build_chain(shape)
        build_s = time.perf_counter() - start
        tip = chain[-1].header
        async with open_node(_config(genesis, tip.slot, 1)) as server:
            start = time.perf_counter()
            for first in range(0, len(chain), IMPORT_BATCH):
                batch = tuple(chain[first : first + IMPORT_BATCH])
                await server.network.host.import_blocks(batch, PeerId(bytes(32)))
            import_s = time.perf_counter() - start
            del chain
            gc.collect()
            if server.head().block_id != tip.block_id:
                raise RuntimeError("the server did not import the whole chain")
            store = server._chain.store
            finalized = store.finalized_checkpoint
            trusted = get_checkpoint(
                store, finalized.block_id, Epoch(finalized.epoch - TRUST_EPOCHS_BACK)
            )
            certificate = server._chain.certificate(trusted)
            if certificate is None:
                raise RuntimeError(f"the server cannot certify from {trusted}")
            view = server._chain.head_view()
            pipe.send(
                Served(
                    address=next(a for a in server.info.listen_addresses if a.startswith("tcp://")),
                    build_s=build_s,
                    import_s=import_s,
                    tip=tip.block_id,
                    tip_height=tip.height,
                    tip_slot=tip.slot,
                    state_root=view.state_root(),
                    outputs=len(view),
                    addresses=len({output.address for _, output in view}),
                    finalized=finalized,
                    trusted=trusted,
                    certificate_bytes=len(encode(certificate)),
                )
            )
            while True:
                command = await trio.to_thread.run_sync(pipe.recv, abandon_on_cancel=True)
                if command == "forget":  # what finality moving on does to the prepared states
                    server._chain.snapshots._prepared.clear()
                    pipe.send("forgotten")
                else:
                    return

    trio.run(serve)


# -- the phases of a snapshot start ---------------------------------------------------------------


@dataclass
class Phases:
    """When each wrapped library call started and ended (perf_counter), by name."""

    spans: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    pages: int = 0
    records: int = 0
    record_bytes: int = 0

    def first(self, name: str) -> tuple[float, float]:
        spans = self.spans.get(name)
        if not spans:
            raise RuntimeError(f"the snapshot path never called {name}")
        return spans[0]

    def total(self, name: str) -> float:
        return sum(end - start for start, end in self.spans.get(name, ()))


@contextlib.contextmanager
def timed_calls(targets: dict[str, tuple[object, str]]) -> Iterator[Phases]:
    """Wrap each ``getattr(owner, attribute)`` so that its calls are timed into the yielded
    `Phases` (nothing else about the call changes); put the originals back on exit. Also
    counts the snapshot pages and records the node checks (`SubtreeAssembler.add_page`)."""
    phases = Phases()
    saved: list[tuple[object, str, object]] = []

    def timing(name: str, function: Callable[..., object]) -> Callable[..., object]:
        if inspect.iscoroutinefunction(function):

            @wraps(function)
            async def timed_async(*args: object, **kwargs: object) -> object:
                start = time.perf_counter()
                try:
                    return await function(*args, **kwargs)
                finally:
                    phases.spans.setdefault(name, []).append((start, time.perf_counter()))

            return timed_async

        @wraps(function)
        def timed(*args: object, **kwargs: object) -> object:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                phases.spans.setdefault(name, []).append((start, time.perf_counter()))

        return timed

    original_add_page = SubtreeAssembler.add_page

    def add_page(self: SubtreeAssembler, records: Sequence[bytes], done: bool) -> bytes:
        phases.pages += bool(records)  # an empty subtree is taken as one empty page, unasked
        phases.records += len(records)
        phases.record_bytes += sum(map(len, records))
        return original_add_page(self, records, done)

    try:
        for name, (owner, attribute) in targets.items():
            original = getattr(owner, attribute)
            saved.append((owner, attribute, original))
            setattr(owner, attribute, timing(name, original))
        saved.append((SubtreeAssembler, "add_page", original_add_page))
        SubtreeAssembler.add_page = add_page  # type: ignore[method-assign]
        yield phases
    finally:
        for owner, attribute, original in reversed(saved):
            setattr(owner, attribute, original)


def _snapshot_targets() -> dict[str, tuple[object, str]]:
    """The calls the breakdown is made of (the node's in-memory store installs the state)."""
    return {
        "snapshot start": (node_module, "_start_from_snapshot"),
        "certificates": (LightClient, "sync"),
        "fetch": (light_snapshot, "_fetch_at"),
        "manifest": (light_snapshot, "_manifest"),
        "assemble": (light_snapshot, "assemble"),
        "install": (MemoryChainStore, "install_anchor"),
        "restore": (ChainService, "restore"),
    }


# -- one sync -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Synced:
    seconds: float
    anchor_height: int
    phases: Phases | None = None


def _check(node: Node, served: Served) -> None:
    view = node._chain.head_view()
    if node.head().block_id != served.tip:
        raise RuntimeError("the synced node's head is not the server's tip")
    if view.state_root() != served.state_root:
        raise RuntimeError("the synced node's head state root is not the server's")
    if len(view) != served.outputs:
        raise RuntimeError("the synced node's UTXO set is not the server's")


async def sync_once(genesis: GenesisConfig, served: Served, snapshot: bool) -> Synced:
    """Seconds for a fresh node to start and reach the server's tip, by full or snapshot sync."""
    config = _config(
        genesis,
        served.tip_slot,
        2,
        bootnodes=(served.address,),
        trusted=served.trusted if snapshot else None,
    )
    phases = None
    with contextlib.ExitStack() as stack:
        if snapshot:
            phases = stack.enter_context(timed_calls(_snapshot_targets()))
        start = time.perf_counter()
        async with open_node(config) as fresh:
            with trio.fail_after(TIMEOUT_S):
                await fresh.wait_for(lambda node: node.head().height >= served.tip_height)
            elapsed = time.perf_counter() - start
            _check(fresh, served)
            anchor = fresh._chain.store.anchor_height
    if phases is not None:
        phases.spans["run"] = [(start, start + elapsed)]
    if snapshot and not 0 < anchor <= served.tip_height:
        raise RuntimeError(f"the snapshot node started at height {anchor}, not from a snapshot")
    if not snapshot and anchor != 0:
        raise RuntimeError("the full-sync node did not start from genesis")
    return Synced(elapsed, anchor, phases)


def _run(function: Callable[..., Awaitable[Synced]], *args: object) -> Synced:
    """`trio.run` after collecting the garbage of earlier runs (as bench_sync does)."""
    gc.collect()
    return trio.run(function, *args)


def _breakdown(synced: Synced) -> str:
    """The snapshot run's phases, in milliseconds, in the order they happen."""
    phases = synced.phases
    assert phases is not None
    start, _ = phases.first("run")
    snap_start, _ = phases.first("snapshot start")
    cert_start, _ = phases.first("certificates")
    fetch_start, fetch_end = phases.first("fetch")
    _, manifest_end = phases.first("manifest")
    assemble_s = phases.total("assemble")
    install_s = phases.total("install")
    restore_start, restore_end = phases.first("restore")
    run_end = start + synced.seconds
    parts = [
        ("open + connect + trusted header", cert_start - snap_start),
        ("certificates", phases.total("certificates")),
        ("checkpoint block + manifest", manifest_end - fetch_start),
        ("pages", fetch_end - manifest_end - assemble_s),
        ("assemble + root check", assemble_s),
        ("install", install_s),
        ("rebuild from anchor (restore)", restore_end - restore_start),
        ("network start + forward sync", run_end - restore_end),
    ]
    other = synced.seconds - sum(seconds for _, seconds in parts)
    text = ", ".join(f"{name} {seconds * 1e3:.0f}" for name, seconds in parts)
    return f"{text}, other {other * 1e3:.0f} ms"


def run(quick: bool = False) -> Report:
    report = Report()
    shape = QUICK if quick else FULL
    repeat, full_runs = (1, 1) if quick else (3, 2)  # a full sync takes 40-50 s at 10,000
    print("snapshot", flush=True)
    genesis = make_genesis(shape)
    context = multiprocessing.get_context("spawn")
    pipe, child_pipe = context.Pipe()
    server = context.Process(target=_serve_chain, args=(child_pipe, shape))
    server.start()
    full: list[Synced] = []
    cold: list[Synced] = []
    try:
        if not pipe.poll(TIMEOUT_S):
            raise RuntimeError("the serving process did not start")
        served: Served = pipe.recv()

        def forget() -> None:
            pipe.send("forget")
            if not pipe.poll(TIMEOUT_S) or pipe.recv() != "forgotten":
                raise RuntimeError("the serving process did not answer")

        for run_index in range(repeat):
            if run_index < full_runs:
                full.append(_run(sync_once, genesis, served, False))
                print(f"  run       full sync: {full[-1].seconds:.2f} s", flush=True)
            forget()
            cold.append(_run(sync_once, genesis, served, True))
            print(f"  run       snapshot sync: {cold[-1].seconds:.3f} s", flush=True)
        warm = _run(sync_once, genesis, served, True)
    finally:
        with contextlib.suppress(OSError):  # a server that died has said why already
            pipe.send("stop")
        server.join(TIMEOUT_S)
        if server.is_alive():
            server.terminate()
    label = shape.label()
    blocks = served.tip_height
    report.baseline(
        f"snapshot bench chain, {label}",
        f"built in {served.build_s:.1f} s (pure consensus layer), imported by the server in "
        f"{served.import_s:.1f} s ({blocks / served.import_s:.0f} blocks/s); tip height "
        f"{blocks}, finalized epoch {served.finalized.epoch} (tip epoch "
        f"{served.tip_slot // PARAMS.slots_per_epoch}); state {served.outputs:,} outputs "
        f"over {served.addresses:,} addresses",
    )
    first = cold[0].phases
    assert first is not None
    report.baseline(
        "snapshot the node fetches",
        f"{first.records:,} records, {first.record_bytes / 1024:,.0f} KiB in {first.pages} "
        f"pages; trusted checkpoint epoch {served.trusted.epoch} -> finalized "
        f"{served.finalized.epoch} (a {served.certificate_bytes:,} B certificate); anchor "
        f"height {cold[0].anchor_height}, {blocks - cold[0].anchor_height} blocks synced after",
    )
    full_s = statistics.median(s.seconds for s in full)
    cold_s = statistics.median(s.seconds for s in cold)
    report.baseline(
        f"full sync from genesis, {label} (s)",
        f"{full_s:.2f} (min {min(s.seconds for s in full):.2f}, max "
        f"{max(s.seconds for s in full):.2f}; {blocks / full_s:.0f} blocks/s)",
    )
    report.baseline(
        f"snapshot sync, {label} (s)",
        f"{cold_s:.3f} (min {min(s.seconds for s in cold):.3f}, max "
        f"{max(s.seconds for s in cold):.3f}); with the state already prepared "
        f"{warm.seconds:.3f}",
    )
    median_run = sorted(cold, key=lambda s: s.seconds)[len(cold) // 2]
    ratio = full_s / cold_s
    report.figure(
        f"full sync / snapshot sync seconds, {blocks:,} blocks",
        ratio,
        f">= {GOAL:g}" if not quick else "report (goal >= 10 at 10,000 blocks)",
        ratio >= GOAL if not quick else True,
        f"({full_s:.2f} s vs {cold_s:.3f} s; median run, ms: {_breakdown(median_run)})",
    )
    report.figure(
        "the same with the server's state already prepared",
        full_s / warm.seconds,
        "report",
        True,
        f"({warm.seconds:.3f} s; ms: {_breakdown(warm)})",
    )
    return report


if __name__ == "__main__":
    run_alone(run, __doc__)
