"""Run every benchmark: ``python -m benchmarks [--quick] [--only NAME ...] [--json PATH] [--plot]``.

Prints each baseline and figure as it is measured, then a Markdown table of the figures (ratios,
goals, met or missed) and the baselines, and writes the same data as JSON. ``--plot`` also draws
the scaling curves the benchmarks recorded (fork-choice cost per tree size, gossip latency per
node count, block connect time per block size) as PNG files next to the JSON; it needs the
``plot`` extra (matplotlib).
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import re
from pathlib import Path

from benchmarks.harness import Curve, Report

BENCHMARKS = (
    "bench_ledger",
    "bench_light",
    "bench_rlp",
    "bench_transport",
    "bench_forkchoice",
    "bench_gossip",
    "bench_node",
    "bench_parallel",
    "bench_sync",
    "bench_snapshot",
    "bench_sim",
    "bench_e2e",
    "bench_flood",
)


def plot_curves(curves: dict[str, Curve], directory: Path) -> list[Path]:
    """One PNG per curve (log-scaled x when the sizes span a decade or more)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, curve in curves.items():
        figure, axes = pyplot.subplots(figsize=(6, 4))
        xs = [x for x, _ in curve.points]
        axes.plot(xs, [y for _, y in curve.points], marker="o")
        if len(xs) > 1 and max(xs) >= 10 * min(xs) > 0:
            axes.set_xscale("log")
        axes.set_xlabel(curve.x_label)
        axes.set_ylabel(curve.y_label)
        axes.set_title(name)
        axes.grid(True, alpha=0.3)
        path = directory / (re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") + ".png")
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        pyplot.close(figure)
        written.append(path)
    return written


def _have_matplotlib() -> bool:
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS, help="run only these")
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/latest.json"), help="output file"
    )
    parser.add_argument("--plot", action="store_true", help="draw scaling curves (matplotlib)")
    args = parser.parse_args()
    plot = args.plot and _have_matplotlib()
    if args.plot and not plot:
        print("--plot needs matplotlib: pip install 'p2pchain[plot]'; running without plots")
    report = Report()
    cores = os.cpu_count()
    machine = f"{platform.machine()}, {cores} cores, Python {platform.python_version()}"
    report.baseline("machine", machine)
    for name in args.only or BENCHMARKS:
        module = importlib.import_module(f"benchmarks.{name}")
        report.merge(module.run(quick=args.quick))
    print()
    print(report.table())
    report.write_json(args.json)
    print(f"\nwritten to {args.json}")
    if plot:
        for path in plot_curves(report.curves, args.json.parent):
            print(f"plotted {path}")


if __name__ == "__main__":
    main()
