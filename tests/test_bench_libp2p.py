"""The py-libp2p baseline reports its figures when the `bench` extra is installed (CI installs it),
and says it is missing otherwise.

The missing-package path is exercised by hiding the package; the figures need the package itself,
so those tests skip, with the reason, where it is absent rather than pass without asserting."""

import sys
from contextlib import asynccontextmanager
from importlib.metadata import version

import pytest
import trio

from benchmarks import bench_libp2p

NOT_INSTALLED = {"py-libp2p": "not installed (pip install -e .[bench])"}
NEEDS_LIBP2P = "the py-libp2p baseline needs the bench extra: pip install -e .[bench]"


@pytest.fixture
def without_libp2p(monkeypatch):
    monkeypatch.setitem(sys.modules, "libp2p", None)  # what an absent package looks like


@pytest.mark.usefixtures("without_libp2p")
def test_without_libp2p_run_reports_that_it_is_not_installed():
    report = bench_libp2p.run(quick=True)

    assert report.baselines == NOT_INSTALLED
    assert report.figures == []


@pytest.mark.usefixtures("without_libp2p")
def test_without_libp2p_measure_libp2p_raises_module_not_found():
    with pytest.raises(ModuleNotFoundError):
        bench_libp2p.measure_libp2p(nodes=4, messages=3, seed=1)


def test_run_reports_every_libp2p_baseline():
    pytest.importorskip("libp2p", reason=NEEDS_LIBP2P)

    report = bench_libp2p.run(quick=True)

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


def test_measure_libp2p_delivers_a_small_load_to_every_node():
    pytest.importorskip("libp2p", reason=NEEDS_LIBP2P)

    result = bench_libp2p.measure_libp2p(nodes=4, messages=3, seed=1)

    assert (result.nodes, result.messages, result.spam_protection) == (4, 3, True)
    assert result.silent_drops == 0
    assert result.delivered_fraction == 1.0
    assert result.rate_limited == result.peer_queue_drops == result.subscription_queue_drops == 0
    assert 0 < result.latency_median_s < bench_libp2p.LATENCY_TIMEOUT_S
    assert result.throughput_msgs_per_s > 0
    assert result.duplicates_per_delivery >= 0


def test_a_mesh_that_never_forms_is_rebuilt_then_reported(monkeypatch):
    pytest.importorskip("libp2p", reason=NEEDS_LIBP2P)
    monkeypatch.setattr(bench_libp2p, "SETUP_TIMEOUT_S", 0.0)
    built = []
    open_network = bench_libp2p._open_network

    def counting_open_network(*args):
        built.append(args)
        return open_network(*args)

    monkeypatch.setattr(bench_libp2p, "_open_network", counting_open_network)

    with pytest.raises(trio.TooSlowError, match=r"in 8 attempts: no mesh within 0\.0 s"):
        bench_libp2p.measure_libp2p(nodes=4, messages=3, seed=1)
    assert len(built) == bench_libp2p.SETUP_ATTEMPTS


def test_a_failing_py_libp2p_network_is_rebuilt_and_a_failed_teardown_keeps_its_figures(
    monkeypatch,
):
    """py-libp2p's own tasks sometimes fail while hosts start or stop on a loaded machine: a
    network that fails before it is measured is built again, and one whose teardown fails
    after it was measured still gives its figures."""
    pytest.importorskip("libp2p", reason=NEEDS_LIBP2P)
    open_network = bench_libp2p._open_network
    built = []

    @asynccontextmanager
    async def flaky_open_network(*args):
        built.append(args)
        if len(built) == 1:
            raise RuntimeError("a host failed to start")
        async with open_network(*args) as publisher:
            yield publisher
        raise RuntimeError("a host failed to stop")

    monkeypatch.setattr(bench_libp2p, "_open_network", flaky_open_network)

    result = bench_libp2p.measure_libp2p(nodes=4, messages=3, seed=1)

    assert len(built) == 2
    assert result.delivered_fraction == 1.0
