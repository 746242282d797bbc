"""``p2pchain testnet``: N validator nodes as separate OS processes on loopback, a live status
table, optional demo payments; Ctrl-C stops every node cleanly; the same --dir resumes.

With ``--hosts netns`` every node runs on a host of its own instead: a Linux network namespace
(`p2pchain.testing.netns`) with its own address (``10.77.0.2`` on), on one bridge that the root
namespace, where the supervisor runs, joins as ``10.77.0.1``. The nodes listen, serve RPC and
metrics on their host's address and dial each other there directly; the namespaces and the
root's veth are deleted when the supervisor stops.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

import trio
from rich.console import Console
from rich.live import Live
from rich.table import Table
from trio_websocket import ConnectionClosed, HandshakeError

from p2pchain.cli.config import NetworkFile, load_network, load_node, read_key
from p2pchain.cli.control import NodeRunner, Supervisor
from p2pchain.cli.network import init_network, relay_bootnodes
from p2pchain.cli.payments import FEE, PaymentTally, send_demo_payments, track_finality
from p2pchain.cli.rpc_client import JSON, connect_rpc
from p2pchain.cli.run import split_host_port
from p2pchain.cli.wallet import send
from p2pchain.errors import ConfigError, InsufficientFunds
from p2pchain.ledger.address import address_of, encode_address
from p2pchain.ledger.crypto import SecretKey
from p2pchain.net.relay import Relays, relay_port
from p2pchain.node.datadir import lock_data_dir
from p2pchain.params import ChainParams
from p2pchain.rpc import RpcError
from p2pchain.testing import netns

STATUS_INTERVAL_S = 0.5
STOP_GRACE_S = 10.0
HOSTS: Final = ("local", "netns")
"""Where the nodes run (``--hosts``): all on loopback, or each on a namespaced host."""


@dataclass
class NodeStatus:
    """What the table shows for one node; `error` when its RPC is not answering yet."""

    rpc_url: str
    metrics_url: str | None = None
    height: int | None = None
    finalized_epoch: int | None = None
    peers: int | None = None
    mempool: int | None = None
    exit_code: int | None = None
    error: str = "starting"
    answered: bool = False
    """True once its RPC answered: later failures are shown as such, not as "starting"."""

    def starting(self) -> None:
        """A (re)started process: nothing known until its RPC answers."""
        self.exit_code, self.answered, self.error = None, False, "starting"
        self.forget()

    def forget(self) -> None:
        """Clear the numbers: a node that is not answering shows none, not stale ones."""
        self.height = self.finalized_epoch = self.peers = self.mempool = None


@dataclass(frozen=True, slots=True)
class TestnetResult:
    """The last status of every node and how many demo payments the nodes accepted."""

    statuses: list[NodeStatus]
    payments: PaymentTally


def _table(statuses: list[NodeStatus], payments: PaymentTally) -> Table:
    title = (
        f"p2pchain testnet: demo payments {payments.sent} sent, {payments.finalized} finalized"
        + (f", {payments.lost} lost" if payments.lost else "")
        + " (Ctrl-C stops)"
    )
    table = Table(title=title)
    for column in ("node", "head height", "finalized epoch", "peers", "mempool"):
        table.add_column(column, justify="right")
    table.add_column("rpc", no_wrap=True)
    table.add_column("state")
    for index, status in enumerate(statuses):
        state = f"exited {status.exit_code}" if status.exit_code is not None else status.error
        table.add_row(
            str(index),
            _show(status.height),
            _show(status.finalized_epoch),
            _show(status.peers),
            _show(status.mempool),
            status.rpc_url,
            state or "running",
        )
    return table


def _show(value: int | None) -> str:
    return "-" if value is None else str(value)


async def _poll(status: NodeStatus, runner: NodeRunner) -> None:
    """Show `status` of the node `runner` runs, until its process exits."""
    while runner.exit_code is None:
        try:
            async with connect_rpc(status.rpc_url) as rpc:
                while runner.exit_code is None:
                    head = await rpc.call("chain_head")
                    finalized = await rpc.call("chain_finalized")
                    peers = await rpc.call("net_peers")
                    mempool = await rpc.call("mempool_status")
                    status.height = _field(head, "height")
                    status.finalized_epoch = _field(finalized, "epoch")
                    status.peers = len(peers) if isinstance(peers, list) else None
                    status.mempool = _field(mempool, "size")
                    status.error = ""
                    status.answered = True
                    await trio.sleep(STATUS_INTERVAL_S)
        except (OSError, HandshakeError, ConnectionClosed, RpcError):  # down or restarting
            if status.answered:
                status.forget()
                status.error = "not answering"
        await trio.sleep(STATUS_INTERVAL_S)
    status.exit_code = runner.exit_code
    status.forget()


def _field(value: object, name: str) -> int | None:
    if isinstance(value, dict):
        item = value.get(name)
        return item if isinstance(item, int) else None
    return None


async def run_testnet(
    root: Path,
    *,
    nodes: int,
    params: ChainParams,
    tx_rate: float,
    duration: float | None,
    log_level: str,
    base_port: int,
    rpc_port: int,
    console: Console,
    metrics_port: int | None = None,
    manual_clock: bool = False,
    hosts: str = "local",
) -> TestnetResult:
    """Start (or resume) the network in `root`; return the last statuses when it stops.

    `hosts` (`HOSTS`), like the other settings, shapes a new network only: a network that
    `root` holds runs where it was made to (`hosts_of`).

    Raises:
        ConfigError: the nodes are to run on namespaced hosts and this machine cannot make
            them (`netns.unavailable_reason`; nothing is written then), or too many nodes.
        NetnsError: the root namespace uses the hosts' subnet already (another testnet on
            namespaced hosts runs), or an ``ip`` command failed.
        StorageError: another supervisor runs this network directory (named with its pid).
    """
    addresses = _host_addresses(root, nodes, hosts)
    await trio.Path(root).mkdir(parents=True, exist_ok=True)
    with lock_data_dir(root):
        network, configs, statuses, wallets = _prepare(
            root,
            nodes=nodes,
            params=params,
            base_port=base_port,
            rpc_port=rpc_port,
            metrics_port=metrics_port,
            manual_clock=manual_clock,
            addresses=addresses,
        )
        namespaced = (
            contextlib.nullcontext(None)
            if addresses is None
            else netns.open_hosts(len(configs), attach_root=True)
        )
        with namespaced as made:
            return await _supervise(
                root,
                configs,
                statuses,
                wallets,
                network,
                tx_rate,
                duration,
                log_level,
                console,
                made,
            )


def _host_addresses(root: Path, nodes: int, hosts: str) -> tuple[str, ...] | None:
    """The address of each node's host, or None for nodes on loopback: `hosts` for a new
    network, the network's own (`hosts_of`) for one that `root` holds."""
    if hosts not in HOSTS:
        raise ConfigError(f"--hosts must be one of {', '.join(HOSTS)}, got {hosts!r}")
    if (root / "network.toml").exists():
        configs = sorted(root.glob("node*/node.toml"))
        hosts, nodes = hosts_of(configs), len(configs)
    if hosts == "local":
        return None
    reason = netns.unavailable_reason()
    if reason is not None:
        raise ConfigError(f"--hosts netns: {reason}")
    try:
        return netns.host_addresses(nodes, attach_root=True)
    except ValueError as exc:
        raise ConfigError(f"--hosts netns: {exc}") from exc


def hosts_of(configs: Sequence[Path]) -> str:
    """Where the nodes of a network run (`HOSTS`): ``netns`` when node `i` listens on the
    address of namespaced host `i` (`netns.host_addresses`), else ``local``."""
    if not configs:
        return "local"
    try:
        addresses = netns.host_addresses(len(configs), attach_root=True)
    except ValueError:
        return "local"
    for config, address in zip(configs, addresses, strict=True):
        listen = load_node(config).listen
        if not listen or split_host_port(listen[0].split("://", 1)[-1], "listen")[0] != address:
            return "local"
    return "netns"


def check_existing_network(root: Path, flags: dict[str, int | str]) -> None:
    """Refuse flags (given on the command line) that differ from the network already in
    `root`: resuming it would silently ignore them.

    Raises:
        ConfigError: naming the first flag that differs and the network's value.
    """
    if not (root / "network.toml").exists():
        return
    params = load_network(root / "network.toml").params
    configs = sorted(root.glob("node*/node.toml"))
    first = load_node(configs[0]) if configs else None
    manual = first is not None and first.manual_clock
    existing: dict[str, int | str] = {
        "hosts": hosts_of(configs),
        "nodes": len(configs),
        "slot-ms": "manual" if manual else params.slot_ms,
        "slots-per-epoch": params.slots_per_epoch,
    }
    if first is not None and first.listen:
        existing["base-port"] = int(first.listen[0].rsplit(":", 1)[1])
    if first is not None and first.rpc is not None:
        existing["rpc-port"] = int(first.rpc.rsplit(":", 1)[1])
    for flag, value in flags.items():
        if flag in existing and existing[flag] != value:
            raise ConfigError(
                f"--{flag} {value} differs from the network in {root} ({existing[flag]}): "
                "drop the flag to resume it, or choose another --dir"
            )


async def _supervise(
    root: Path,
    configs: list[Path],
    statuses: list[NodeStatus],
    wallets: list[SecretKey],
    network: NetworkFile,
    tx_rate: float,
    duration: float | None,
    log_level: str,
    console: Console,
    hosts: netns.Hosts | None = None,
) -> TestnetResult:
    """Run the node processes, the pollers and the demo payments under the live table; node
    `i` in `hosts[i]` when `hosts` is given."""
    tally = PaymentTally()
    runners = [
        _runner(config, log_level, () if hosts is None else tuple(hosts.exec_prefix(hosts[i])))
        for i, config in enumerate(configs)
    ]
    console.print(f"network {root}: wallets and URLs with `p2pchain testnet accounts --dir {root}`")
    if hosts is not None:
        console.print(
            f"hosts: one network namespace per node on {hosts.subnet}, this machine "
            f"{hosts.root_address} (`ip netns exec NAMESPACE COMMAND` runs inside one)"
        )
    for index, (config, status) in enumerate(zip(configs, statuses, strict=True)):
        metrics = status.metrics_url or "no metrics"
        where = "" if hosts is None else f"host {hosts[index].address} ({hosts[index].namespace}), "
        console.print(f"node{index}: {where}log {config.parent / 'node.log'}, {metrics}")
    with Live(_table(statuses, tally), console=console, refresh_per_second=4) as live:
        async with trio.open_nursery() as nursery:

            def watch(index: int) -> None:
                statuses[index].starting()
                nursery.start_soon(_poll, statuses[index], runners[index])

            relays = relays_of(configs)
            if relays is not None:
                await nursery.start(relays.serve)
            supervisor = Supervisor(
                root,
                runners,
                nursery,
                watch,
                relays,
                params=network.params,
                genesis_time_ms=network.genesis.genesis_time_ms,
                hosts=hosts,
            )
            for index in range(len(runners)):
                await supervisor.start(index)
            await nursery.start(supervisor.serve)
            if tx_rate > 0 and wallets:
                nursery.start_soon(
                    send_demo_payments,
                    [s.rpc_url for s in statuses],
                    wallets,
                    network,
                    tx_rate,
                    tally,
                )
                nursery.start_soon(track_finality, tally, STATUS_INTERVAL_S)
            with trio.move_on_after(math.inf if duration is None else duration):
                while any(runner.running for runner in runners):
                    live.update(_table(statuses, tally))
                    await trio.sleep(STATUS_INTERVAL_S)
            live.update(_table(statuses, tally))
            nursery.cancel_scope.cancel()
    return TestnetResult(statuses=statuses, payments=tally)


def _runner(config: Path, log_level: str, prefix: tuple[str, ...] = ()) -> NodeRunner:
    node_file = load_node(config)
    return NodeRunner(
        config,
        log_level,
        prefix=prefix,
        clock_skew_ms=node_file.clock_skew_ms,
        rpc_url=None if node_file.rpc is None else f"ws://{node_file.rpc}",
        dev_rpc=node_file.dev_rpc,
        manual_clock=node_file.manual_clock,
    )


def relays_of(configs: list[Path]) -> Relays | None:
    """The relays a network's links go through, or None for a network whose nodes dial each
    other directly (made before testnets were relayed, or by ``p2pchain init``)."""
    files = [load_node(config) for config in configs]
    if not files or not files[0].listen:
        return None
    base_port = int(files[0].listen[0].rsplit(":", 1)[1])
    nodes = len(files)
    if any(f.bootnodes != relay_bootnodes(base_port, nodes, i) for i, f in enumerate(files)):
        return None
    targets = []
    for node_file in files:
        tcp = next((a for a in node_file.listen if a.startswith("tcp://")), None)
        if tcp is None:
            return None
        host, port = split_host_port(tcp.removeprefix("tcp://"), "listen")
        targets.append((host, port))
    return Relays(targets, partial(relay_port, base_port, nodes))


def _prepare(
    root: Path,
    *,
    nodes: int,
    params: ChainParams,
    base_port: int,
    rpc_port: int,
    metrics_port: int | None,
    manual_clock: bool,
    addresses: Sequence[str] | None = None,
) -> tuple[NetworkFile, list[Path], list[NodeStatus], list[SecretKey]]:
    """Create the network unless `root` holds one (node `i` on host `addresses[i]` if given);
    read its configs and demo wallet keys."""
    if not (root / "network.toml").exists():
        init_network(
            root,
            nodes=nodes,
            params=params,
            base_port=base_port,
            rpc_port=rpc_port,
            metrics_port=metrics_port,
            wallets=4,
            supervised=True,
            manual_clock=manual_clock,
            addresses=addresses,
        )
    network = load_network(root / "network.toml")
    configs = sorted(root.glob("node*/node.toml"))
    statuses = []
    for config in configs:
        node_file = load_node(config)
        metrics = None if node_file.metrics is None else f"http://{node_file.metrics}/metrics"
        statuses.append(NodeStatus(rpc_url=f"ws://{node_file.rpc}", metrics_url=metrics))
    wallets = [read_key(path) for path in sorted((root / "wallets").glob("*.key"))]
    return network, configs, statuses, wallets


def _read_layout(root: Path) -> tuple[str, list[dict[str, JSON]], list[dict[str, JSON]]]:
    """The native asset id (hex), the nodes and the demo wallets of the network in `root`."""
    if not (root / "network.toml").exists():
        raise ConfigError(f"{root} holds no network (run p2pchain testnet or init first)")
    network = load_network(root / "network.toml")
    prefix = network.params.address_prefix
    nodes: list[dict[str, JSON]] = []
    for index, config in enumerate(sorted(root.glob("node*/node.toml"))):
        node_file = load_node(config)
        metrics = node_file.metrics
        nodes.append(
            {
                "index": index,
                "rpcUrl": None if node_file.rpc is None else f"ws://{node_file.rpc}",
                "metricsUrl": None if metrics is None else f"http://{metrics}/metrics",
                "log": str(config.parent / "node.log"),
                "dataDir": None if node_file.data_dir is None else str(node_file.data_dir),
            }
        )
    wallets: list[dict[str, JSON]] = []
    for path in sorted((root / "wallets").glob("*.key")):
        address = encode_address(address_of(read_key(path).public_key), prefix)
        wallets.append({"address": address, "keyFile": str(path), "balance": None})
    return "0x" + network.params.native_asset.hex(), nodes, wallets


async def describe_network(root: Path) -> dict[str, list[dict[str, JSON]]]:
    """The demo wallets (with native balances from the first node that answers) and the
    nodes of the network in `root`, for `testnet accounts`."""
    native, nodes, wallets = await trio.to_thread.run_sync(_read_layout, root)
    for node in nodes:
        url = node["rpcUrl"]
        if not isinstance(url, str):
            continue
        try:
            async with connect_rpc(url) as rpc:
                for wallet in wallets:
                    totals = await rpc.call("address_balances", wallet["address"])
                    held = totals.get(native, "0") if isinstance(totals, dict) else "0"
                    wallet["balance"] = str(held)
            break
        except (OSError, HandshakeError, ConnectionClosed, RpcError):  # down: ask the next one
            continue
    return {"wallets": wallets, "nodes": nodes}


async def faucet(root: Path, address: str, amount: int, *, asset: str | None) -> str:
    """Pay from the first demo wallet of `root` whose payment a node accepts; the txid."""
    description = await describe_network(root)
    urls = [str(node["rpcUrl"]) for node in description["nodes"] if node["rpcUrl"]]
    failures: list[str] = []
    for wallet in description["wallets"]:
        for url in urls:
            try:
                return await send(
                    url,
                    Path(str(wallet["keyFile"])),
                    address,
                    amount,
                    asset=asset,
                    fee=FEE,
                    wait=False,
                )
            except (RpcError, InsufficientFunds) as exc:
                failures.append(str(exc))
                break  # this wallet cannot pay: try the next one
            except OSError as exc:
                failures.append(str(exc))  # this node is down: try the next one
    raise ConfigError("no demo wallet could pay: " + ("; ".join(failures[-2:]) or "no wallets"))
