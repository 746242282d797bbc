"""Validated transactions per second with both cores, against the same work on one core.

The node validates on one event loop; the CPU-heavy part of a transaction is its BIP-340
signatures (two per 2-in/2-out transfer). This benchmark shows what spreading that part over
the machine's cores gives, with the library's pure validation unchanged:

- One core (baseline): decode + `validate_transaction` (structure, UTXO lookups, value rules and
  both signatures) for each raw transaction, one after another.
- Two cores: the main process decodes batches of transactions and hands each batch's
  ``(public key, message, signature)`` triples to two worker processes over pipes; when a batch's
  verdicts come back, `validate_transaction` runs with ``signatures_valid`` answering from them.
  Decoding the next batch overlaps with verifying the previous ones. The figure is its rate / the
  one-core rate (goal >= 1.5).
- Threads: the same triples verified in two threads vs one. coincurve releases the GIL inside
  libsecp256k1, so threads scale too when the per-call Python overhead is small; the node
  relies on this (`trio.to_thread` for blocks with many unseen transactions).

Run alone: ``python -m benchmarks.bench_parallel [--quick]``.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection

from benchmarks.bench_ledger import Workload, make_workload
from benchmarks.harness import Report, measure_rate, run_alone
from p2pchain.ledger.crypto import verify
from p2pchain.ledger.tx import Transaction, tx_signing_message
from p2pchain.ledger.types import TxId
from p2pchain.ledger.validation import BlockContext, validate_transaction

WORKERS = 2
BATCH = 128

Triple = tuple[bytes, bytes, bytes]


def verify_batch(triples: Sequence[Triple]) -> list[bool]:
    """Worker side: one verdict per ``(public key, message, signature)``."""
    return [verify(key, message, signature) for key, message, signature in triples]


def _triples(txs: Sequence[Transaction], chain_id: int) -> list[Triple]:
    triples = []
    for tx in txs:
        message = tx_signing_message(chain_id, tx.txid)
        triples += [(bytes(i.public_key), message, bytes(i.signature)) for i in tx.inputs]
    return triples


def validate_one_core(work: Workload, raws: Sequence[bytes]) -> int:
    """Decode and fully validate each transaction in turn; the number that passed."""
    context = BlockContext(height=1, slot=1)
    for raw in raws:
        validate_transaction(Transaction.from_bytes(raw), work.view, work.params, context)
    return len(raws)


def serve_verifications(connection: Connection) -> None:
    """Worker process: answer each batch of triples with its verdicts until sent None."""
    while (triples := connection.recv()) is not None:
        connection.send(verify_batch(triples))


class SignatureWorkers:
    """Worker processes fed over one pipe each, round robin; results come back in order.

    Plain pipes rather than `concurrent.futures`: an executor's feeder thread takes the GIL from
    the decoding loop at every submit, which cost more than the signatures it offloaded.
    """

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._connections: list[Connection] = []
        self._processes = []
        for _ in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(target=serve_verifications, args=(theirs,), daemon=True)
            process.start()
            self._connections.append(ours)
            self._processes.append(process)
        for connection in self._connections:  # wait until every worker has started
            connection.send([])
            connection.recv()
        self._next = 0

    def submit(self, triples: list[Triple]) -> Connection:
        """Send a batch to the next worker; `.recv()` on the returned pipe gives its verdicts."""
        connection = self._connections[self._next]
        self._next = (self._next + 1) % len(self._connections)
        connection.send(triples)
        return connection

    def close(self) -> None:
        for connection, process in zip(self._connections, self._processes, strict=True):
            connection.send(None)
            process.join()


def validate_with_workers(work: Workload, raws: Sequence[bytes], workers: SignatureWorkers) -> int:
    """Decode here, verify signatures in `workers` batch by batch, then validate here."""
    context = BlockContext(height=1, slot=1)
    chain_id = work.params.chain_id
    pending = []
    for start in range(0, len(raws), BATCH):
        txs = [Transaction.from_bytes(raw) for raw in raws[start : start + BATCH]]
        pending.append((txs, workers.submit(_triples(txs, chain_id))))
    for txs, connection in pending:
        verdicts = iter(connection.recv())
        verified: set[TxId] = {tx.txid for tx in txs if all([next(verdicts) for _ in tx.inputs])}
        for tx in txs:
            validate_transaction(
                tx,
                work.view,
                work.params,
                context,
                signatures_valid=lambda _tx, txid, verified=verified: txid in verified,
            )
    return len(raws)


def verify_in_threads(triples: Sequence[Triple], threads: ThreadPoolExecutor | None) -> int:
    """Verify `triples` in this thread (None) or split over the executor's threads."""
    if threads is None:
        return sum(verify_batch(triples))
    half = len(triples) // 2
    parts = [threads.submit(verify_batch, part) for part in (triples[:half], triples[half:])]
    return sum(sum(part.result()) for part in parts)


def run(quick: bool = False) -> Report:
    report = Report()
    count = 256 if quick else 2_000
    repeat = 2 if quick else 5
    print("parallel validation", flush=True)
    work = make_workload(count)
    raws = [tx.encoded for tx in work.txs]

    one_core = measure_rate(lambda: validate_one_core(work, raws), ops=count, repeat=repeat)
    report.baseline("validated 2-in/2-out tx, decode + checks + 2 signatures, 1 core", one_core)

    workers = SignatureWorkers(WORKERS)
    try:
        pooled = measure_rate(
            lambda: validate_with_workers(work, raws, workers), ops=count, repeat=repeat
        )
    finally:
        workers.close()
    ratio = pooled.median / one_core.median
    report.figure(
        f"validated tx/s, signatures in {WORKERS} processes / 1 core",
        ratio,
        ">= 1.5",
        ratio >= 1.5,
        f"({pooled}, batches of {BATCH})",
    )

    triples = _triples(work.txs, work.params.chain_id)
    single = measure_rate(lambda: verify_in_threads(triples, None), ops=len(triples), repeat=repeat)
    report.baseline("schnorr verify in 1 thread", single)
    with ThreadPoolExecutor(2) as threads:
        double = measure_rate(
            lambda: verify_in_threads(triples, threads), ops=len(triples), repeat=repeat
        )
    report.figure(
        "schnorr verify/s, 2 threads / 1 thread",
        double.median / single.median,
        "report",
        True,
        f"({double}; > 1 means coincurve releases the GIL)",
    )
    return report


if __name__ == "__main__":
    run_alone(run, __doc__)
