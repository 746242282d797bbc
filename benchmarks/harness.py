"""Timing helpers shared by the benchmarks: medians of repetitions, ratios, goals, a table.

Absolute rates drift a lot between runs on shared machines, so every figure is reported as a
ratio to a baseline measured in the same run; the baseline's own rate is printed alongside.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Rate:
    """Operations per second over several repetitions."""

    median: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{_si(self.median)}/s (min {_si(self.low)}, max {_si(self.high)})"


def _si(value: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.2f}"


def measure_rate(operation: Callable[[], object], *, ops: int, repeat: int = 5) -> Rate:
    """Run `operation` (which performs `ops` operations) `repeat` times; ops/s statistics."""
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        operation()
        rates.append(ops / (time.perf_counter() - start))
    return Rate(median=statistics.median(rates), low=min(rates), high=max(rates))


def measure_seconds(
    operation: Callable[[], object],
    *,
    repeat: int = 5,
    reset: Callable[[], object] = lambda: None,
) -> Rate:
    """Seconds per call of `operation` (median/min/max), stored in a `Rate` for uniformity;
    `reset` runs untimed after each call (to put the state back for the next)."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        operation()
        samples.append(time.perf_counter() - start)
        reset()
    return Rate(median=statistics.median(samples), low=min(samples), high=max(samples))


@dataclass(frozen=True, slots=True)
class Figure:
    """One reported figure: a ratio to a baseline and the goal it is held to."""

    name: str
    ratio: float
    goal: str
    met: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Curve:
    """How one cost scales with one size, for ``python -m benchmarks --plot``."""

    x_label: str
    y_label: str
    points: list[tuple[float, float]]


@dataclass
class Report:
    """Figures and baselines of one run, printable as a table and writable as JSON."""

    baselines: dict[str, str] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    curves: dict[str, Curve] = field(default_factory=dict)

    def baseline(self, name: str, value: object) -> None:
        self.baselines[name] = str(value)
        print(f"  baseline  {name}: {value}", flush=True)

    def figure(self, name: str, ratio: float, goal: str, met: bool, detail: str = "") -> None:
        self.figures.append(Figure(name, ratio, goal, met, detail))
        verdict = "met" if met else "MISSED"
        print(f"  figure    {name}: {ratio:.3f} (goal {goal}: {verdict}) {detail}", flush=True)

    def curve(
        self, name: str, x_label: str, y_label: str, points: list[tuple[float, float]]
    ) -> None:
        self.curves[name] = Curve(x_label, y_label, points)

    def merge(self, other: Report) -> None:
        self.baselines.update(other.baselines)
        self.figures.extend(other.figures)
        self.curves.update(other.curves)

    def table(self) -> str:
        lines = ["| figure | ratio | goal | met | detail |", "|---|---|---|---|---|"]
        for f in self.figures:
            verdict = "yes" if f.met else "no"
            lines.append(f"| {f.name} | {f.ratio:.3f} | {f.goal} | {verdict} | {f.detail} |")
        lines += ["", "| baseline | value |", "|---|---|"]
        lines += [f"| {name} | {value} |" for name, value in self.baselines.items()]
        return "\n".join(lines)

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "baselines": self.baselines,
            "figures": [asdict(f) for f in self.figures],
            "curves": {name: asdict(c) for name, c in self.curves.items()},
        }
        path.write_text(json.dumps(data, indent=2))


def run_alone(run: Callable[..., Report], description: str | None) -> None:
    """Command line of one benchmark module: ``python -m benchmarks.<name> [--quick]``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    run(quick=parser.parse_args().quick)
