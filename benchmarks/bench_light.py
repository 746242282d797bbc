"""State commitment and light clients: the state root's share of a block connect, and what a
light client downloads, keeps and spends against a full node.

State root (issue goal: the commitment costs at most a fifth of a block connect, held against
the cold connect: a block's full validation, signatures included, as a node does for a block
whose transactions it has not seen; against a warm connect, whose signatures the mempool
already checked, the share is reported: there the commitment is over half, and a fifth would
need the tries in compiled code, benchmarks/README.md). The blocks of
`bench_ledger` (100 and 1,000 independent 2-in/2-out payments), connected on a state grown to
about 20,000 outputs (each payer's address holds 5 outputs, and 5,000 bystander addresses 2
each), so that the top trie and the account tries have the depth of a real state. Per block,
medians of repetitions, each starting from the same state (the block is undone and the
commitment rehashed, untimed, between them):

- `connect_block` cold (every signature verified) and warm (with the `SignatureCache`);
- the commitment's part: `apply_transaction` of the block's transactions on the view, minus the
  same on a copy whose `commitment` is a stub with no-op methods (the tries' updates inside
  `_add`/`_remove`), plus `state_root()` after them (the rehash). Cross-check: the same
  `add_output`/`remove_output` calls replayed on a copy of the real commitment, then `root()`.

Light clients. A pure `Simulation` of 16 validators (12 epochs of 4 slots; 4 payments a slot,
through `sim.pending_transactions`). A light client follows it live: after every slot it takes
each certificate `build_certificate` offers (`LightState.advance`). Figures:

- bytes per finalized epoch: encoded certificates / epochs its checkpoint advanced, against the
  encoded blocks and gossiped votes a full node receives in those epochs (RLP bodies only,
  framing and gossip duplicates left out for both); the same for one certificate catching up
  from genesis at the end;
- memory: tracemalloc peak while a fresh `LightState` decodes and adopts the same certificates,
  against the peak while a fresh store (`get_forkchoice_store`) replays the run's messages with
  `on_block`/`on_vote`;
- CPU: `LightState.advance` per certificate against `on_block` of the blocks it makes final for
  the client (both fed freshly decoded objects, decoding untimed).

Run alone: ``python -m benchmarks.bench_light [--quick]``.
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

from benchmarks.bench_ledger import Workload, make_block, make_workload
from benchmarks.harness import Report, run_alone
from p2pchain.consensus import get_forkchoice_store, on_block, on_tick, on_vote
from p2pchain.consensus.forkchoice import get_head_view
from p2pchain.consensus.light import FinalityCertificate, LightState, VoteArchive
from p2pchain.consensus.store import Store
from p2pchain.consensus.types import compute_epoch_at_slot
from p2pchain.ledger.address import address_of
from p2pchain.ledger.block import Block
from p2pchain.ledger.commitment import StateCommitment
from p2pchain.ledger.crypto import sha256
from p2pchain.ledger.encoding import ENCODER, decode, encode, encode_item
from p2pchain.ledger.tx import LockKind, OutPoint, Transaction, TxOutput
from p2pchain.ledger.types import (
    Address,
    Amount,
    AssetId,
    BlockId,
    Hash32,
    Height,
    Slot,
    TxId,
)
from p2pchain.ledger.utxo import TxUndo, UtxoView
from p2pchain.ledger.validation import BlockContext, SignatureCache, connect_block
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.ledger.wallet import Wallet
from p2pchain.params import COIN
from p2pchain.testing.consensus import Simulation
from p2pchain.testing.light import follow, genesis_client

GOAL = 0.2

# -- the state root's share of a block connect ---------------------------------------------------


class _NoCommitment(StateCommitment):
    """A commitment that does nothing: what `apply_transaction` costs without the tries."""

    __slots__ = ()

    def add_output(
        self, outpoint: OutPoint, output: TxOutput, encoded: bytes | None = None
    ) -> None:
        pass

    def remove_output(self, outpoint: OutPoint, output: TxOutput) -> None:
        pass

    def set_asset(self, asset: AssetId, encoded_info: bytes | None) -> None:
        pass

    def root(self) -> Hash32:
        return Hash32(bytes(32))


Call = tuple[bool, OutPoint, TxOutput, bytes | None]


class _Recorder(_NoCommitment):
    """Records the output changes a block makes, to replay them on a real commitment."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []

    def add_output(
        self, outpoint: OutPoint, output: TxOutput, encoded: bytes | None = None
    ) -> None:
        self.calls.append((True, outpoint, output, encoded))

    def remove_output(self, outpoint: OutPoint, output: TxOutput) -> None:
        self.calls.append((False, outpoint, output, None))


def grow_state(work: Workload, *, per_payer: int, bystanders: int, per_bystander: int) -> None:
    """Give each funded address `per_payer` more outputs and add `bystanders` addresses of
    `per_bystander` outputs each (made-up outpoints, native coins); rebuild `work.view`."""
    native = AssetId(work.params.native_asset)
    payers = sorted({output.address for _, output in work.view})
    owners = [address for address in payers for _ in range(per_payer)]
    for index in range(bystanders):
        address = Address(sha256(b"bench_light/bystander" + index.to_bytes(4, "big"))[:20])
        owners += [address] * per_bystander
    extra = [
        (
            OutPoint(txid=TxId(sha256(b"bench_light/txid" + n.to_bytes(4, "big"))), index=0),
            TxOutput(asset=native, amount=Amount(COIN), address=address),
        )
        for n, address in enumerate(owners)
    ]
    view = work.view
    work.view = UtxoView.from_snapshot(
        [*view, *extra], view.assets().values(), view.tip, view.height
    )
    work.view.state_root()


def _median_ms(samples: Sequence[float]) -> float:
    return statistics.median(samples) * 1e3


def _timed(operation: Callable[[], object]) -> float:
    start = time.perf_counter()
    operation()
    return time.perf_counter() - start


def _apply_all(view: UtxoView, txs: Sequence[Transaction]) -> list[TxUndo]:
    return [view.apply_transaction(tx) for tx in txs]


def _undo_all(view: UtxoView, txs: Sequence[Transaction], undos: list[TxUndo]) -> None:
    for tx, undo in zip(reversed(txs), reversed(undos), strict=True):
        view.undo_transaction(tx, undo)


def _replay(commitment: StateCommitment, calls: Sequence[Call]) -> None:
    for added, outpoint, output, encoded in calls:
        if added:
            commitment.add_output(outpoint, output, encoded)
        else:
            commitment.remove_output(outpoint, output)


def _reverse(commitment: StateCommitment, calls: Sequence[Call]) -> None:
    for added, outpoint, output, _ in reversed(calls):
        if added:
            commitment.remove_output(outpoint, output)
        else:
            commitment.add_output(outpoint, output)


@dataclass(frozen=True, slots=True)
class CommitmentCost:
    """Medians, in seconds, for one block."""

    cold: float
    warm: float
    apply_with: float
    apply_without: float
    root: float
    replayed_updates: float
    replayed_root: float

    @property
    def commitment(self) -> float:
        """The tries' updates inside apply plus the rehash at `state_root()`."""
        return max(self.apply_with - self.apply_without, 0.0) + self.root


def measure_commitment(work: Workload, block: Block, repeat: int) -> CommitmentCost:
    view, params, txs = work.view, work.params, block.transactions
    bare = view.copy()
    recorder = _Recorder()
    bare.commitment = recorder
    undos = _apply_all(bare, txs)
    calls = list(recorder.calls)
    _undo_all(bare, txs, undos)
    bare.commitment = _NoCommitment()
    shadow = view.commitment.copy()
    cache = SignatureCache(params.chain_id)
    view.undo(block, connect_block(view, block, params, signatures_valid=cache))
    view.state_root()
    samples: dict[str, list[float]] = {f.name: [] for f in fields(CommitmentCost)}
    for _ in range(repeat):
        for field, check in (("cold", None), ("warm", cache)):
            gc.collect()
            start = time.perf_counter()
            undo = connect_block(view, block, params, signatures_valid=check)
            samples[field].append(time.perf_counter() - start)
            view.undo(block, undo)
            view.state_root()
        gc.collect()
        start = time.perf_counter()
        undos = _apply_all(view, txs)
        middle = time.perf_counter()
        root = view.state_root()
        samples["root"].append(time.perf_counter() - middle)
        samples["apply_with"].append(middle - start)
        if root != block.header.state_root:
            raise RuntimeError("the benchmark block's state root does not match")
        _undo_all(view, txs, undos)
        view.state_root()
        gc.collect()
        start = time.perf_counter()
        undos = _apply_all(bare, txs)
        samples["apply_without"].append(time.perf_counter() - start)
        _undo_all(bare, txs, undos)
        gc.collect()
        samples["replayed_updates"].append(_timed(lambda: _replay(shadow, calls)))
        samples["replayed_root"].append(_timed(shadow.root))
        _reverse(shadow, calls)
        shadow.root()
    return CommitmentCost(**{key: statistics.median(value) for key, value in samples.items()})


def _state_root_figures(report: Report, quick: bool, repeat: int) -> None:
    sizes = [100] if quick else [100, 1_000]
    work = make_workload(max(sizes))
    if quick:
        grow_state(work, per_payer=4, bystanders=300, per_bystander=2)
    else:
        grow_state(work, per_payer=4, bystanders=5_000, per_bystander=2)
    addresses = len({output.address for _, output in work.view})
    report.baseline(
        "state the blocks connect on",
        f"{len(work.view):,} outputs over {addresses:,} addresses (RLP encoder: {ENCODER})",
    )
    for size in sizes:
        block = make_block(work, work.txs[:size])
        cost = measure_commitment(work, block, repeat)
        report.baseline(
            f"connect {size}-tx block, cold / warm",
            f"{cost.cold * 1e3:.2f} ms / {cost.warm * 1e3:.2f} ms",
        )
        detail = (
            f"(commitment {cost.commitment * 1e3:.2f} ms: tries in apply "
            f"{(cost.apply_with - cost.apply_without) * 1e3:.2f} ms "
            f"[apply {cost.apply_with * 1e3:.2f} vs {cost.apply_without * 1e3:.2f} ms stubbed] "
            f"+ state_root {cost.root * 1e3:.2f} ms; replayed on its own "
            f"{cost.replayed_updates * 1e3:.2f} + {cost.replayed_root * 1e3:.2f} ms)"
        )
        ratio = cost.commitment / cost.cold
        report.figure(
            f"state commitment per {size}-tx block / connect (cold)",
            ratio,
            f"<= {GOAL}",
            ratio <= GOAL,
            f"(connect {cost.cold * 1e3:.2f} ms) {detail}",
        )
        report.figure(  # the share once the mempool checked the signatures: see the docstring
            f"state commitment per {size}-tx block / connect (warm)",
            cost.commitment / cost.warm,
            "report",
            True,
            detail,
        )


# -- light client against full node ----------------------------------------------------------


def _queue_payments(sim: Simulation, count: int, cursor: int) -> None:
    """`count` payments of one coin, from the keys after `cursor` to their neighbours."""
    view = get_head_view(sim.store)
    pending = {i.outpoint for tx in sim.pending_transactions for i in tx.inputs}
    context = BlockContext(height=Height(view.height + 1), slot=Slot(sim.slot + 1))
    native = AssetId(sim.params.native_asset)
    keys = [sim.keys[key] for key in sorted(sim.keys)]
    for offset in range(count):
        key = keys[(cursor + offset) % len(keys)]
        wallet = Wallet(key, sim.params)
        coins = [
            coin
            for coin in view.utxos_of(wallet.address)
            if coin[1].lock.kind is LockKind.NONE and coin[0] not in pending
        ]
        payee = address_of(keys[(cursor + offset + 1) % len(keys)].public_key)
        payment = TxOutput(asset=native, amount=Amount(COIN), address=payee)
        tx = wallet.build_transfer(coins[:4], [payment], fee=Amount(1_000), context=context)
        sim.pending_transactions.append(tx)


def _follow(client: LightState, store: Store, archive: VoteArchive) -> list[bytes]:
    """Every certificate the node offers until it has nothing newer, each adopted; encoded."""
    return [encode(certificate) for certificate, _ in follow(client, store, archive)]


def _archive_messages(archive: VoteArchive, messages: Sequence[Block | Vote]) -> None:
    for message in messages:
        for vote in message.votes if isinstance(message, Block) else (message,):
            archive.add(vote)


@dataclass
class LightRun:
    sim: Simulation
    certificates: list[bytes]  # what the live client downloaded, in order
    catch_up: list[bytes]  # what a client starting from genesis at the end downloads
    finalized: Checkpoint


def run_light(validators: int, epochs: int, payments: int) -> LightRun:
    sim = Simulation.create([COIN * (1 + i % 4) for i in range(validators)])
    client = genesis_client(sim.store)
    archive = VoteArchive()
    certificates: list[bytes] = []
    seen = 0
    while sim.slot < epochs * sim.params.slots_per_epoch - 1:
        if payments:
            _queue_payments(sim, payments, sim.slot * payments)
        sim.run_slot()
        _archive_messages(archive, sim.messages[seen:])
        seen = len(sim.messages)
        certificates += _follow(client, sim.store, archive)
    if client.finalized != sim.store.finalized_checkpoint:
        raise RuntimeError("the light client did not reach the node's finalized checkpoint")
    catch_up = _follow(genesis_client(sim.store), sim.store, archive)
    return LightRun(sim, certificates, catch_up, client.finalized)


def _replay_store(run: LightRun, raws: Sequence[bytes]) -> tuple[Store, dict[BlockId, float]]:
    """A fresh store fed the run's messages, each decoded from `raws` as it arrives (untimed);
    the seconds each `on_block` took, by block."""
    sim = run.sim
    store = get_forkchoice_store(sim.params, sim.genesis)
    times: dict[BlockId, float] = {}
    slot = 0
    for original, raw in zip(sim.messages, raws, strict=True):
        message = Block.from_bytes(raw) if isinstance(original, Block) else decode(Vote, raw)
        at = message.header.slot if isinstance(message, Block) else message.slot
        if at > slot:
            slot = at
            on_tick(store, Slot(slot))
        if isinstance(message, Block):
            start = time.perf_counter()
            on_block(store, message, Slot(slot))
            times[message.block_id] = time.perf_counter() - start
        else:
            on_vote(store, message, Slot(slot))
    return store, times


def _adopt_all(run: LightRun) -> tuple[LightState, list[float], list[set[BlockId]]]:
    """A fresh client taking the live run's certificates: seconds per `advance` (decoding
    untimed) and the blocks each one made final for it."""
    client = genesis_client(run.sim.store)
    seconds, covered = [], []
    for raw in run.certificates:
        certificate = decode(FinalityCertificate, raw)
        before = set(client.headers)
        start = time.perf_counter()
        client.advance(certificate)
        seconds.append(time.perf_counter() - start)
        covered.append(set(client.headers) - before)
    return client, seconds, covered


def _adopt_lean(run: LightRun) -> LightState:
    """A fresh client taking the live run's certificates, and nothing else kept."""
    client = genesis_client(run.sim.store)
    for raw in run.certificates:
        client.advance(decode(FinalityCertificate, raw))
    return client


def _parts(raw: bytes) -> tuple[int, int, int, int]:
    """A certificate's bytes in headers, link votes and stake tables, and its header count."""
    certificate = decode(FinalityCertificate, raw)
    return (
        len(encode_item([header.to_rlp() for header in certificate.headers])),
        len(encode_item([link.to_rlp() for link in certificate.links])),
        len(encode_item([anchor.to_rlp() for anchor in certificate.anchors])),
        len(certificate.headers),
    )


def _peak(operation: Callable[[], object]) -> tuple[int, int, object]:
    """tracemalloc (peak, retained) bytes of `operation`, and what it returned (kept alive)."""
    gc.collect()
    tracemalloc.start()
    try:
        kept = operation()
        retained, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, retained, kept


def _kib(value: float) -> str:
    return f"{value / 1024:,.1f} KiB"


def _light_figures(report: Report, quick: bool, repeat: int) -> None:
    validators, epochs, payments = (8, 6, 2) if quick else (16, 12, 4)
    run = run_light(validators, epochs, payments)
    sim, params = run.sim, run.sim.params
    advanced = run.finalized.epoch
    raws = [m.encoded if isinstance(m, Block) else encode(m) for m in sim.messages]
    report.baseline(
        "light-client simulation",
        f"{validators} validators, {epochs} epochs of {params.slots_per_epoch} slots, "
        f"{payments} payments a slot; finalized epoch {advanced}, "
        f"{len(run.certificates)} certificates live",
    )

    def epoch_of(message: Block | Vote) -> int:
        slot = message.header.slot if isinstance(message, Block) else message.slot
        return compute_epoch_at_slot(params, Slot(slot))

    blocks = votes = 0
    for message, raw in zip(sim.messages, raws, strict=True):
        if epoch_of(message) < advanced:
            if isinstance(message, Block):
                blocks += len(raw)
            else:
                votes += len(raw)
    full = (blocks + votes) / advanced
    live = sum(map(len, run.certificates)) / advanced
    catch_up = sum(map(len, run.catch_up)) / advanced
    report.baseline(
        "full node bytes per epoch (blocks + gossiped votes)",
        f"{full:,.0f} B ({blocks / advanced:,.0f} + {votes / advanced:,.0f})",
    )
    headers, links, anchors, count = (
        statistics.median(column) for column in zip(*map(_parts, run.certificates), strict=True)
    )
    report.figure(
        "light client bytes per finalized epoch, following live / full node",
        live / full,
        "report",
        True,
        f"({live:,.0f} B vs {full:,.0f} B per epoch; {len(run.certificates)} certificates, "
        f"median {statistics.median(map(len, run.certificates)):,.0f} B: {count:.0f} headers "
        f"{headers:,.0f} B, link votes {links:,.0f} B, stake tables {anchors:,.0f} B)",
    )
    report.figure(
        "light client bytes per finalized epoch, catching up from genesis / full node",
        catch_up / full,
        "report",
        True,
        f"({catch_up:,.0f} B vs {full:,.0f} B per epoch; {len(run.catch_up)} certificate(s))",
    )

    light_peak, light_kept, client = _peak(lambda: _adopt_lean(run))
    full_peak, full_kept, _ = _peak(lambda: _replay_store(run, raws)[0])
    assert isinstance(client, LightState)
    header_bytes = sum(len(encode(header)) for header in client.headers.values())
    report.figure(
        "light client memory / full node store, tracemalloc peak",
        light_peak / full_peak,
        "report",
        True,
        f"({_kib(light_peak)} vs {_kib(full_peak)}; retained {_kib(light_kept)} vs "
        f"{_kib(full_kept)}; {len(client.headers)} headers, {_kib(header_bytes)} encoded)",
    )

    advance_samples: list[list[float]] = []
    block_samples: dict[BlockId, list[float]] = {}
    covered: list[set[BlockId]] = []
    for _ in range(repeat):
        gc.collect()
        _, seconds, covered = _adopt_all(run)
        advance_samples.append(seconds)
        gc.collect()
        _, times = _replay_store(run, raws)
        for block_id, spent in times.items():
            block_samples.setdefault(block_id, []).append(spent)
    per_certificate = [statistics.median(s) for s in zip(*advance_samples, strict=True)]
    on_block_s = {block_id: statistics.median(s) for block_id, s in block_samples.items()}
    covered_s = [sum(on_block_s[b] for b in ids) for ids in covered]
    blocks_covered = sum(map(len, covered))
    report.figure(
        "light client advance per certificate / on_block of the blocks it finalizes",
        sum(per_certificate) / sum(covered_s),
        "report",
        True,
        f"(advance median {_median_ms(per_certificate):.2f} ms per certificate; "
        f"{blocks_covered / len(covered):.1f} blocks each, on_block "
        f"{_median_ms(list(on_block_s.values())):.2f} ms per block)",
    )


def run(quick: bool = False) -> Report:
    report = Report()
    repeat = 3 if quick else 7
    print("light", flush=True)
    _state_root_figures(report, quick, repeat)
    _light_figures(report, quick, repeat)
    return report


if __name__ == "__main__":
    run_alone(run, __doc__)
