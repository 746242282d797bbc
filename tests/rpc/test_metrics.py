"""Prometheus metrics: per-node registries, periodic snapshots, and the HTTP endpoint."""

import urllib.request

import trio
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rpc_harness import WAIT_S

from p2pchain.rpc import NodeMetrics, start_metrics_server
from p2pchain.testing.simnet import SimulatedNetwork
from p2pchain.testing.testnet import testnet

LIMIT_S = 600.0
"""Virtual seconds a simulated wait may take before the test fails instead of hanging."""


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(registry, name: str, **labels) -> float:
    text = generate_latest(registry).decode()
    return samples(text)[(name, tuple(sorted(labels.items())))]


def fetch(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=WAIT_S) as response:
        assert response.status == 200
        return response.read().decode()


async def test_the_http_endpoint_serves_the_node_gauges(served):
    node, net = served.node, served.net
    with trio.fail_after(WAIT_S):
        await net.wait_finalized(1)
    metrics = NodeMetrics(node, rpc=served.server)
    metrics.refresh()
    head, finalized = node.head(), node.finalized()  # no checkpoint since the snapshot
    server = start_metrics_server(metrics.registry)
    try:
        text = await trio.to_thread.run_sync(fetch, server.url)
    finally:
        await trio.to_thread.run_sync(server.close)
    got = samples(text)
    assert got[("p2pchain_head_height", ())] == head.height
    assert got[("p2pchain_head_slot", ())] == head.slot
    assert got[("p2pchain_finalized_epoch", ())] == finalized.epoch >= 1
    assert got[("p2pchain_peers", (("direction", "inbound"),))] == 0
    assert got[("p2pchain_peers", (("direction", "outbound"),))] == 0
    assert got[("p2pchain_mempool_transactions", ())] == node.mempool_size()
    assert got[("p2pchain_blocks_proposed_total", ())] >= head.height
    assert got[("p2pchain_gossip_messages_total", (("outcome", "published"),))] >= 0
    assert got[("p2pchain_invalid_messages_total", (("kind", "gossip"),))] == 0
    network = node.statistics().network
    for queue, count in (
        ("validation", network.validations_dropped),
        ("delivery", network.deliveries_dropped),
        ("sync_response", network.sync_responses_dropped),
        ("send", network.sends_dropped),
    ):
        assert got[("p2pchain_network_dropped_total", (("queue", queue),))] == count
    assert got[("p2pchain_validations_waiting", ())] == network.validations_waiting
    assert got[("p2pchain_peer_reads_paused_total", ())] == network.swarm.reads_paused
    assert got[("p2pchain_rpc_connections", ())] == 0
    assert got[("p2pchain_syncing", ())] == 0
    imported = got[("p2pchain_block_import_seconds_count", ())]
    assert imported >= head.height
    assert got[("p2pchain_block_import_seconds_bucket", (("le", "+Inf"),))] == imported
    assert got[("p2pchain_block_import_seconds_sum", ())] > 0


async def test_each_node_has_its_own_registry_refreshed_in_the_background(autojump_clock):
    async with (
        testnet(2, transport=SimulatedNetwork(seed=3)) as net,
        trio.open_nursery() as nursery,
    ):
        first, second = (NodeMetrics(node) for node in net.nodes)
        nursery.start_soon(first.run)
        nursery.start_soon(second.run)
        with trio.fail_after(LIMIT_S):
            await net.wait_height(4)
            await net.wait_for(
                lambda: all(
                    value(m.registry, "p2pchain_head_height") >= 4
                    and value(m.registry, "p2pchain_peers", direction="inbound")
                    + value(m.registry, "p2pchain_peers", direction="outbound")
                    == 1
                    for m in (first, second)
                )
            )
        first.refresh()
        # both nodes propose, so each received blocks and votes from the other
        for message_type in ("Publish", "Status"):
            assert value(first.registry, "p2pchain_peer_messages_total", direction="in",
                         type=message_type) > 0  # fmt: skip
            assert value(first.registry, "p2pchain_peer_messages_total", direction="out",
                         type=message_type) > 0  # fmt: skip
        nursery.cancel_scope.cancel()
    assert b"p2pchain_" not in generate_latest(REGISTRY)
