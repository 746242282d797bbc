"""Raw RLP codecs on real payloads: p2pchain's, the `rlp` package's pure one, and `rusty-rlp`.

The payloads are a signed 2-in/2-out transfer and a block of such transfers
(`bench_ledger.make_workload`). In one run, for each payload: raw encode and raw decode with
each codec, then the hot path (`Transaction.from_bytes`; a block decoded and its txids computed,
which re-encodes every transaction) with each encoder `p2pchain.ledger.encoding` can use.
Figures are ratios between codecs of the same run; each rate is printed as a baseline.

`rlp` picks `rusty-rlp` as its backend whenever it is installed, so its pure codec is loaded
here as a second copy of `rlp.codec` with `rusty_rlp` hidden. `rusty-rlp` is measured only if
installed (``pip install 'p2pchain[fast]'``). Its decoder is timed for comparison only: it is not
strict and has no depth or cost bound, so p2pchain never decodes with it.

Run alone: ``python -m benchmarks.bench_rlp [--quick]``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from functools import partial
from types import ModuleType
from unittest import mock

from benchmarks.bench_ledger import make_block, make_workload
from benchmarks.harness import Rate, Report, measure_rate, run_alone
from p2pchain.ledger import encoding
from p2pchain.ledger.block import Block
from p2pchain.ledger.encoding import ENCODERS, RLPItem, decode_item
from p2pchain.ledger.tx import Transaction


def load_pure_rlp_codec() -> ModuleType:
    """A copy of `rlp.codec` that does not see `rusty_rlp`, so it uses its pure-Python codec."""
    spec = importlib.util.find_spec("rlp.codec")
    assert spec is not None
    assert spec.loader is not None
    codec = importlib.util.module_from_spec(spec)
    with mock.patch.dict(sys.modules, {"rusty_rlp": None}):
        spec.loader.exec_module(codec)
    return codec


def _rusty_rlp() -> ModuleType | None:
    try:
        return importlib.import_module("rusty_rlp")
    except ImportError:
        return None


def _rate(operation: Callable[[], object], ops: int, repeat: int) -> Rate:
    """Operations per second of `operation`, each result dropped at once.

    Kept, the results would slow the garbage collector's passes down for the codecs that build
    more objects, and the rate would measure that instead.
    """

    def run_ops() -> None:
        for _ in range(ops):
            operation()

    return measure_rate(run_ops, ops=ops, repeat=repeat)


def _decode_block_and_txids(data: bytes) -> None:
    block = Block.from_rlp(decode_item(data))
    for tx in block.transactions:
        _ = tx.txid


def _compare(
    report: Report,
    name: str,
    rates: dict[str, Rate],
    pairs: list[tuple[str, str, float | None, str]],
) -> None:
    """Print every rate, then `numerator / denominator` for each pair both sides of which ran.

    A pair's goal is `ratio >= minimum` (`None`: only reported), and `otherwise` says what a
    missed goal would mean for the codec.
    """
    for codec, rate in rates.items():
        report.baseline(f"{name}, {codec}", rate)
    for numerator, denominator, minimum, otherwise in pairs:
        if numerator not in rates or denominator not in rates:
            continue
        ratio = rates[numerator].median / rates[denominator].median
        report.figure(
            f"{name}: {numerator} / {denominator}",
            ratio,
            "report" if minimum is None else f">= {minimum} (else {otherwise})",
            minimum is None or ratio >= minimum,
            f"({_si_rate(rates[numerator])} vs {_si_rate(rates[denominator])})",
        )


def _si_rate(rate: Rate) -> str:
    return str(rate).split(" (", 1)[0]


def run(quick: bool = False) -> Report:
    report = Report()
    block_txs = 20 if quick else 200
    tx_ops, block_ops = (300, 10) if quick else (10_000, 50)
    repeat = 3 if quick else 7
    print("rlp", flush=True)

    work = make_workload(block_txs)
    block = make_block(work, work.txs)
    pure = load_pure_rlp_codec()
    rusty = _rusty_rlp()
    payloads: list[tuple[str, RLPItem, bytes, int]] = [
        ("2-in/2-out tx", work.txs[0].to_rlp(), work.txs[0].encoded, tx_ops),
        (f"{len(block.transactions)}-tx block", block.to_rlp(), block.encoded, block_ops),
    ]
    report.baseline("payload sizes (bytes)", ", ".join(f"{p[0]}: {len(p[2])}" for p in payloads))

    encoders: dict[str, Callable[[RLPItem], bytes]] = {
        "p2pchain python": ENCODERS["python"],
        "rlp pure": pure.encode_raw,
    }
    decoders: dict[str, Callable[[bytes], object]] = {
        "p2pchain strict": decode_item,
        "rlp pure": lambda data: pure.decode_raw(data, True, False),
    }
    if rusty is not None:
        encoders["rusty-rlp"] = rusty.encode_raw
        decoders["rusty-rlp (not strict)"] = lambda data: rusty.decode_raw(data, True, False)

    for label, item, data, ops in payloads:
        assert all(encode(item) == data for encode in encoders.values())
        _compare(
            report,
            f"raw encode of a {label}",
            {name: _rate(partial(e, item), ops, repeat) for name, e in encoders.items()},
            [
                ("p2pchain python", "rlp pure", 1, "encode with rlp's"),
                ("rusty-rlp", "p2pchain python", 1, "drop the backend"),
            ],
        )
        _compare(
            report,
            f"raw decode of a {label}",
            {name: _rate(partial(d, data), ops, repeat) for name, d in decoders.items()},
            [
                ("p2pchain strict", "rlp pure", 1, "decode with rlp's, plus the limits"),
                ("rusty-rlp (not strict)", "p2pchain strict", None, ""),
            ],
        )

    # from_bytes encodes only the outpoints again, so the encoder barely shows: it must not slow
    # it down. A block's transactions are all encoded again for their txids.
    hot_paths: list[tuple[str, Callable[[], object], int, float]] = [
        (
            "Transaction.from_bytes",
            lambda: Transaction.from_bytes(work.txs[0].encoded),
            tx_ops,
            0.9,
        ),
        (
            f"{len(block.transactions)}-tx block decode + txids",
            lambda: _decode_block_and_txids(block.encoded),
            block_ops,
            1,
        ),
    ]
    for label, operation, ops, minimum in hot_paths:
        rates = {}
        for name, encoder in ENCODERS.items():
            with mock.patch.object(encoding, "_encode_raw", encoder):
                rates[f"{name} encoder"] = _rate(operation, ops, repeat)
        _compare(
            report,
            label,
            rates,
            [("rusty-rlp encoder", "python encoder", minimum, "drop the backend")],
        )
    if rusty is None:
        print("  rusty-rlp is not installed (pip install 'p2pchain[fast]'): measured without it")
    return report


if __name__ == "__main__":
    run_alone(run, __doc__)
