"""``p2pchain node``: run one node from a node.toml until interrupted, with RPC and metrics."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Awaitable, Callable

import trio

from p2pchain.cli.config import NodeFile, load_network, read_key
from p2pchain.errors import ConfigError
from p2pchain.net.swarm import DEFAULT_LISTEN
from p2pchain.node import Node, NodeConfig, open_node
from p2pchain.rpc import MetricsServer, NodeMetrics, serve_rpc, start_metrics_server

logger = logging.getLogger("p2pchain.cli")
SYNC_REPORT_INTERVAL_S = 2.0


def split_host_port(text: str, what: str) -> tuple[str, int]:
    """``host:port`` → (host, port), or a `ConfigError` naming the setting."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{what} must be host:port, got {text!r}")
    return host, int(port)


def node_config_from(node_file: NodeFile) -> NodeConfig:
    """The `NodeConfig` a node.toml describes (call inside trio: a skew reads its clock)."""
    network = load_network(node_file.network)
    offset = None
    if node_file.clock_skew_ms:
        wall_ms = round(time.time() * 1000 - trio.current_time() * 1000)
        offset = wall_ms + node_file.clock_skew_ms
    return NodeConfig(
        clock_offset_ms=offset,
        genesis=network.genesis,
        params=network.params,
        data_dir=node_file.data_dir,
        listen=node_file.listen or DEFAULT_LISTEN,
        bootnodes=node_file.bootnodes,
        advertise=node_file.advertise,
        public_addr=node_file.public_addr,
        dev_rpc=node_file.dev_rpc,
        manual_clock=node_file.manual_clock,
        snapshot_sync=node_file.snapshot_sync,
        trusted_checkpoint=node_file.trusted_checkpoint,
        node_key=read_key(node_file.node_key),
        validator_key=read_key(node_file.validator_key) if node_file.validator_key else None,
    )


async def run_until_signalled(main: Callable[[], Awaitable[None]]) -> None:
    """Run `main` until it returns or SIGINT/SIGTERM arrives; then cancel it cleanly."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def run_main() -> None:
                await main()
                nursery.cancel_scope.cancel()

            nursery.start_soon(run_main)
            async for signum in signals:
                logger.info("signal %s: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


async def run_node(node_file: NodeFile, *, ready: trio.Event | None = None) -> None:
    """Run until cancelled; the node shuts down cleanly on the way out."""
    config = node_config_from(node_file)
    async with open_node(config) as node, trio.open_nursery() as nursery:
        server = None
        if node_file.rpc is not None:
            host, port = split_host_port(node_file.rpc, "rpc")
            server = await nursery.start(serve_rpc, node, host, port)
            print(f"rpc: {server.url}", flush=True)
        if node_file.metrics is not None:
            host, port = split_host_port(node_file.metrics, "metrics")
            metrics = NodeMetrics(node, rpc=server)
            metrics_server = start_metrics_server(metrics.registry, host, port)
            nursery.start_soon(_run_metrics, metrics, metrics_server)
            print(f"metrics: {metrics_server.url}", flush=True)
        info = node.info
        print(f"node {info.node_id.hex()[:16]} listening on {', '.join(info.listen_addresses)}")
        if info.validator is not None:
            print(f"validator {info.validator.hex()[:16]}", flush=True)
        nursery.start_soon(report_sync_progress, node)
        if ready is not None:
            ready.set()
        await trio.sleep_forever()


async def report_sync_progress(node: Node, interval: float = SYNC_REPORT_INTERVAL_S) -> None:
    """While the node is behind its peers, log blocks done / total, rate and ETA."""
    previous: tuple[float, int] | None = None
    while True:
        state = node.sync_state()
        now = trio.current_time()
        if state.syncing:
            rate = 0.0
            if previous is not None and now > previous[0]:
                rate = (state.head_height - previous[1]) / (now - previous[0])
            remaining = state.target_height - state.head_height
            eta = f"{remaining / rate:.0f} s" if rate > 0 else "?"
            logger.info(
                "syncing: %d / %d blocks (%.1f%%), %.0f blocks/s, ETA %s",
                state.head_height,
                state.target_height,
                100 * state.head_height / max(state.target_height, 1),
                rate,
                eta,
            )
            previous = (now, state.head_height)
        else:
            previous = None
        await trio.sleep(interval)


async def _run_metrics(metrics: NodeMetrics, server: MetricsServer) -> None:
    """Refresh the gauges until cancelled, then stop the HTTP thread."""
    try:
        await metrics.run()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(server.close)
