"""The py-libp2p baseline reports its figures when the `bench` extra is installed, and says it is
missing otherwise; both paths are exercised for real, whichever one this environment has."""

import sys
from importlib.metadata import version

import pytest

from benchmarks import bench_libp2p

NOT_INSTALLED = {"py-libp2p": "not installed (pip install -e .[bench])"}


def test_without_libp2p_run_reports_that_it_is_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "libp2p", None)  # what an absent package looks like

    report = bench_libp2p.run(quick=True)

    assert report.baselines == NOT_INSTALLED
    assert report.figures == []


def test_run_reports_every_libp2p_baseline_or_that_it_is_not_installed():
    report = bench_libp2p.run(quick=True)

    if not bench_libp2p.is_available():
        assert report.baselines == NOT_INSTALLED
        return
    assert f"libp2p {version('libp2p')}" in report.baselines["py-libp2p gossipsub setup"]
    for setup in ("py-libp2p gossipsub 10 nodes", "py-libp2p gossipsub 10 nodes, no spam limit"):
        for measure in (
            "median latency (ms)",
            "delivered-to-all (msgs/s)",
            "silent drops",
            "duplicates per delivery",
        ):
            assert f"{setup}: {measure}" in report.baselines
    assert report.figures == []


def test_measure_libp2p_delivers_a_small_load_to_every_node_or_needs_libp2p():
    if not bench_libp2p.is_available():
        with pytest.raises(ModuleNotFoundError):
            bench_libp2p.measure_libp2p(nodes=4, messages=3, seed=1)
        return

    result = bench_libp2p.measure_libp2p(nodes=4, messages=3, seed=1)

    assert (result.nodes, result.messages, result.spam_protection) == (4, 3, True)
    assert result.silent_drops == 0
    assert result.delivered_fraction == 1.0
    assert result.rate_limited == result.peer_queue_drops == result.subscription_queue_drops == 0
    assert 0 < result.latency_median_s < bench_libp2p.LATENCY_TIMEOUT_S
    assert result.throughput_msgs_per_s > 0
    assert result.duplicates_per_delivery >= 0
