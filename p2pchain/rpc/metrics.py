"""Prometheus metrics of one node, on a registry of its own (never prometheus' global one).

The node's state belongs to its trio thread, while prometheus_client's HTTP server answers
scrapes from a thread of its own. So `NodeMetrics.refresh` (run by `NodeMetrics.run` in the
trio thread every `REFRESH_INTERVAL` seconds) takes an immutable snapshot, and a scrape only
reads the latest snapshot: it never touches the node. Several nodes in one process each get
their own registry, so their metric names never clash.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from threading import Thread
from typing import Final
from wsgiref.simple_server import WSGIServer

import trio
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from p2pchain.node import Node, NodeStatistics
from p2pchain.rpc.server import RpcServer, RpcStatistics

REFRESH_INTERVAL: Final = 1.0
"""Seconds between two snapshots of the node's state."""

PREFIX: Final = "p2pchain"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Snapshot:
    head_height: int
    head_slot: int
    finalized_epoch: int
    justified_epoch: int
    syncing: bool
    sync_target_height: int
    peers_inbound: int
    peers_outbound: int
    stats: NodeStatistics
    rpc: RpcStatistics | None


class NodeMetrics(Collector):
    """A collector over snapshots of one node (and optionally its RPC server)."""

    def __init__(self, node: Node, *, rpc: RpcServer | None = None) -> None:
        self.node = node
        self.rpc = rpc
        self._snapshot = self._take()
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self)

    def refresh(self) -> None:
        """Take a new snapshot; call it from the node's trio thread."""
        self._snapshot = self._take()

    async def run(self, *, interval: float = REFRESH_INTERVAL) -> None:
        """Refresh every `interval` seconds until cancelled."""
        while True:
            await trio.sleep(interval)
            self.refresh()

    def _take(self) -> _Snapshot:
        node = self.node
        head = node.head()
        sync = node.sync_state()
        peers = node.peers()
        outbound = sum(peer.outbound for peer in peers)
        return _Snapshot(
            head_height=head.height,
            head_slot=head.slot,
            finalized_epoch=node.finalized().epoch,
            justified_epoch=node.justified().epoch,
            syncing=sync.syncing,
            sync_target_height=sync.target_height,
            peers_inbound=len(peers) - outbound,
            peers_outbound=outbound,
            stats=node.statistics(),
            rpc=None if self.rpc is None else self.rpc.statistics(),
        )

    def collect(self) -> Iterator[Metric]:
        """Metric families from the latest snapshot (called from the HTTP server's thread)."""
        snap = self._snapshot
        stats = snap.stats
        chain, mempool, network = stats.chain, stats.mempool, stats.network
        gossip, swarm, sync = network.gossip, network.swarm, network.sync

        yield _gauge("head_height", "Height of the head block.", snap.head_height)
        yield _gauge("head_slot", "Slot of the head block.", snap.head_slot)
        yield _gauge("finalized_epoch", "Epoch of the finalized checkpoint.", snap.finalized_epoch)
        yield _gauge("justified_epoch", "Epoch of the justified checkpoint.", snap.justified_epoch)
        yield _gauge("syncing", "1 while the node downloads blocks, else 0.", int(snap.syncing))
        yield _gauge(
            "sync_target_height", "Highest head height a peer claims.", snap.sync_target_height
        )

        peers = GaugeMetricFamily(
            f"{PREFIX}_peers", "Connected peers by direction.", labels=["direction"]
        )
        peers.add_metric(["inbound"], snap.peers_inbound)
        peers.add_metric(["outbound"], snap.peers_outbound)
        yield peers
        yield _gauge("peers_banned", "Peer addresses currently banned.", swarm.bans)

        messages = CounterMetricFamily(
            f"{PREFIX}_gossip_messages",
            "Gossip messages by outcome: published (out), delivered (in, valid), duplicate, "
            "rejected (invalid), ignored.",
            labels=["outcome"],
        )
        for outcome, count in (
            ("published", gossip.published),
            ("delivered", gossip.delivered),
            ("duplicate", gossip.duplicates),
            ("rejected", gossip.rejected),
            ("ignored", gossip.ignored),
        ):
            messages.add_metric([outcome], count)
        yield messages

        invalid = CounterMetricFamily(
            f"{PREFIX}_invalid_messages",
            "Invalid input from peers by kind.",
            labels=["kind"],
        )
        for kind, count in (
            ("gossip", gossip.rejected),
            ("protocol", swarm.protocol_errors),
            ("sync_response", sync.bad_responses),
            ("block", chain.blocks_invalid),
        ):
            invalid.add_metric([kind], count)
        yield invalid

        internal = CounterMetricFamily(
            f"{PREFIX}_internal_errors",
            "Unexpected exceptions contained while handling a peer's input, by place.",
            labels=["where"],
        )
        for where, count in swarm.internal_errors:
            internal.add_metric([where], count)
        yield internal

        dropped = CounterMetricFamily(
            f"{PREFIX}_network_dropped",
            "Messages dropped at a full queue of this node's (its own overload; nobody blamed).",
            labels=["queue"],
        )
        for queue, count in (
            ("validation", network.validations_dropped),
            ("delivery", network.deliveries_dropped),
            ("sync_response", network.sync_responses_dropped),
            ("send", network.sends_dropped),
        ):
            dropped.add_metric([queue], count)
        yield dropped
        yield _gauge(
            "validations_waiting",
            "Gossip messages queued or being validated.",
            network.validations_waiting,
        )
        yield _counter(
            "peer_reads_paused",
            "Times a peer was not read because the node held its whole inbox share.",
            swarm.reads_paused,
        )
        yield _counter("blocks_imported", "Blocks added to the block tree.", chain.blocks_imported)
        yield _counter(
            "blocks_pruned",
            "Valid blocks whose own votes finalized a checkpoint off their chain (not kept).",
            chain.blocks_pruned,
        )
        import_time = HistogramMetricFamily(
            f"{PREFIX}_block_import_seconds",
            "Time to validate, apply and commit one block (its queued children excluded).",
        )
        import_time.add_metric(
            [],
            [(repr(bound), count) for bound, count in chain.import_seconds_buckets]
            + [("+Inf", chain.import_seconds_count)],
            chain.import_seconds_sum,
        )
        yield import_time
        peer_messages = CounterMetricFamily(
            f"{PREFIX}_peer_messages",
            "Peer protocol messages by direction and type.",
            labels=["direction", "type"],
        )
        for direction, counts in (("in", swarm.messages_in), ("out", swarm.messages_out)):
            for message_type, count in counts:
                peer_messages.add_metric([direction, message_type], count)
        yield peer_messages
        yield _counter("votes_imported", "Votes counted by the fork choice.", chain.votes_imported)
        yield _counter("reorgs", "Head changes to another branch.", chain.reorgs)
        yield _counter("blocks_proposed", "Blocks this validator proposed.", stats.blocks_proposed)
        yield _counter("votes_cast", "Votes this validator signed.", stats.votes_cast)

        yield _gauge("mempool_transactions", "Transactions in the mempool.", mempool.tx_count)
        yield _gauge("mempool_bytes", "Encoded bytes of the mempool.", mempool.total_bytes)
        yield _gauge("mempool_orphans", "Transactions waiting for a parent.", mempool.orphan_count)
        offers = stats.offers
        yield _gauge("offer_book_offers", "Standing offers in the offer book.", offers.offers)
        yield _counter("offers_added", "Offers the book took in.", offers.added)
        yield _counter("offers_evicted", "Offers evicted from a full book.", offers.evicted)
        yield _counter("offers_dropped", "Offers dropped as spent or expired.", offers.dropped)

        yield _gauge("event_subscribers", "Open node event subscriptions.", stats.subscribers)
        yield _counter(
            "subscription_overflows",
            "Event subscriptions ended because the subscriber fell behind.",
            stats.subscription_overflows,
        )
        rpc = snap.rpc
        if rpc is not None:
            yield _gauge("rpc_connections", "Open JSON-RPC connections.", rpc.connections)
            yield _gauge("rpc_subscriptions", "Open JSON-RPC subscriptions.", rpc.subscriptions)
            yield _counter("rpc_messages", "JSON-RPC messages handled.", rpc.messages)
            yield _counter(
                "rpc_clients_dropped", "JSON-RPC clients dropped as too slow.", rpc.clients_dropped
            )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


@dataclass(frozen=True, slots=True)
class MetricsServer:
    """prometheus_client's HTTP server, running in a daemon thread of its own."""

    url: str
    """``http://host:port/metrics``."""
    _server: WSGIServer
    _thread: Thread

    def close(self) -> None:
        """Stop serving and wait for the thread (blocks briefly; call via a worker thread)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def start_metrics_server(
    registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0
) -> MetricsServer:
    """Serve `registry` in the Prometheus text format on `host`:`port` (0 picks a free one)."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    bound_port = server.server_port
    shown = f"[{host}]" if ":" in host else host
    return MetricsServer(f"http://{shown}:{bound_port}/metrics", server, thread)
