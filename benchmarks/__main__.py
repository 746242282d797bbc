"""Run every benchmark: ``python -m benchmarks [--quick] [--only NAME ...] [--json PATH]``.

Prints each baseline and figure as it is measured, then a Markdown table of the figures (ratios,
goals, met or missed) and the baselines, and writes the same data as JSON.
"""

from __future__ import annotations

import argparse
import importlib
import platform
from pathlib import Path

from benchmarks.harness import Report

BENCHMARKS = ("bench_ledger", "bench_transport", "bench_forkchoice", "bench_node")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS, help="run only these")
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/latest.json"), help="output file"
    )
    args = parser.parse_args()
    report = Report()
    report.baseline("machine", f"{platform.machine()}, {platform.python_version()}")
    for name in args.only or BENCHMARKS:
        module = importlib.import_module(f"benchmarks.{name}")
        report.merge(module.run(quick=args.quick))
    print()
    print(report.table())
    report.write_json(args.json)
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
