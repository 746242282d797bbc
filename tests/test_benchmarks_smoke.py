"""Every benchmark still runs (at tiny size) and reports figures; no timing is asserted."""

import importlib

import pytest

from benchmarks.__main__ import BENCHMARKS


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_runs_at_tiny_size(name: str) -> None:
    report = importlib.import_module(f"benchmarks.{name}").run(quick=True)
    assert report.baselines
    assert report.figures
    assert all(figure.ratio > 0 for figure in report.figures)
