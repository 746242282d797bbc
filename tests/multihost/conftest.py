"""A testnet of real `p2pchain node` processes, each on a host of its own: a Linux network
namespace with its own address on one private subnet (`p2pchain.testing.netns`).

Host `i` (address ``10.77.0.(i+1)``) runs node `i` on the same ports as every other host, as
machines of one network would: P2P on TCP 30300 and WebSocket 30301, RPC on the host's own
loopback. Nodes 0-3 are the genesis validators; node 0 is the only bootnode of the others. Node
4 (no validator key) is started later by the test that wants a late joiner. The nodes listen
in the three ways an operator may configure a machine (`LISTEN_STYLES`):

- ``address``: on the host's address, and, as for tools on the machine itself, on its own
  loopback ``tcp://127.0.0.1:(30310+i)``, an address no other host can use, and so one that
  must never travel (nodes 0, 3 and 4);
- ``public_addr``: on 0.0.0.0, announcing the host's address as `public_addr` (node 1);
- ``wildcard``: on 0.0.0.0 and nothing else, announced as such, which each peer reads as the
  host it sees the connection come from (node 2).

The tests reach each node's RPC from this process through a socket made inside its host
(`Hosts.connect`), so a host whose link is down still answers.

In every host, listeners on 127.0.0.1 ("traps") at every P2P port another node could have
announced as loopback (30300 and 30301 unless the host's own node holds them, and every other
node's 30310+j) catch any dial of an address that is not this host's to dial: a node dials what
it learned while it has fewer than `target_outbound` (8) peers, and in its own host such an
address is a trap (an unspecified host, 0.0.0.0, is dialed as 127.0.0.1 by Linux, so it is
caught too).

The network is shared by the tests of a module (starting it costs seconds); each test starts
what it needs (`start_validators` is idempotent) and leaves every link up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, wrap_client_stream

from p2pchain.cli.config import NodeFile, dump_node, load_node, write_key
from p2pchain.cli.network import init_network
from p2pchain.cli.rpc_client import JSON, RpcClient
from p2pchain.ledger.crypto import SecretKey
from p2pchain.params import ChainParams
from p2pchain.testing.netns import Hosts, open_hosts, unavailable_reason

VALIDATORS = 4
LATE_JOINER = 4
HOSTS = VALIDATORS + 1
PARAMS = ChainParams(slot_ms=500, slots_per_epoch=4)
P2P_PORT = 30300
WS_PORT = 30301
LOCAL_PORT = 30310
"""A node of the ``address`` style also listens on its own host's 127.0.0.1:LOCAL_PORT+i."""
LISTEN_STYLES = ("address", "public_addr", "wildcard", "address", "address")
"""How node `i` listens (see above)."""
RPC_PORT = 8645
POLL_S = 0.25
START_S = 60.0
"""Bound on a node process answering its RPC after it was started."""

T = TypeVar("T")


def local_port(index: int) -> int:
    return LOCAL_PORT + index


class Rpc:
    """One RPC connection per node, made on first use and made again after a failure."""

    def __init__(self, net: MultiHostNet, nursery: trio.Nursery) -> None:
        self._net = net
        self._nursery = nursery
        self._clients: dict[int, tuple[WebSocketConnection, RpcClient]] = {}

    async def call(self, node: int, method: str, *params: JSON) -> JSON:
        """`method` on node `node`; a failed connection is dropped (the next call redials)."""
        client = self._clients.get(node)
        if client is None:
            client = self._clients[node] = await self._connect(node)
        try:
            return await client[1].call(method, *params)
        except BaseException:
            self._clients.pop(node, None)
            with trio.CancelScope(shield=True):
                await client[0].aclose()
            raise

    async def dict(self, node: int, method: str, *params: JSON) -> dict[str, JSON]:
        result = await self.call(node, method, *params)
        assert isinstance(result, dict), f"node {node} {method}: {result!r}"
        return result

    async def peers(self, node: int) -> list[dict[str, JSON]]:
        result = await self.call(node, "net_peers")
        assert isinstance(result, list), f"node {node} net_peers: {result!r}"
        return [peer for peer in result if isinstance(peer, dict)]

    async def _connect(self, node: int) -> tuple[WebSocketConnection, RpcClient]:
        host = self._net.hosts[node]
        sock = await trio.to_thread.run_sync(
            lambda: self._net.hosts.connect(host, "127.0.0.1", RPC_PORT)
        )
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        with trio.fail_after(10):
            connection = await wrap_client_stream(self._nursery, stream, "127.0.0.1", "/")
        return connection, RpcClient(connection)

    async def aclose(self) -> None:
        for connection, _ in self._clients.values():
            await connection.aclose()
        self._clients.clear()


@dataclasses.dataclass
class MultiHostNet:
    """The namespaced hosts, the network directory, and the node processes started so far."""

    hosts: Hosts
    root: Path
    configs: list[Path]
    processes: dict[int, subprocess.Popen[bytes]] = dataclasses.field(default_factory=dict)
    node_ids: dict[int, str] = dataclasses.field(default_factory=dict)
    traps: list[tuple[int, int, socket.socket]] = dataclasses.field(default_factory=list)
    """(host, port, listener) of every loopback trap."""
    loopback_dials: list[str] = dataclasses.field(default_factory=list)
    """Every dial a trap caught, described."""

    validators = range(VALIDATORS)
    late_joiner = LATE_JOINER

    def in_subnet(self, host: str) -> bool:
        try:
            return ipaddress.ip_address(host) in self.hosts.subnet
        except ValueError:
            return False

    @contextlib.asynccontextmanager
    async def open_rpc(self) -> AsyncIterator[Rpc]:
        async with trio.open_nursery() as nursery:
            rpc = Rpc(self, nursery)
            try:
                yield rpc
            finally:
                with trio.CancelScope(shield=True):
                    await rpc.aclose()

    async def start(self, node: int) -> None:
        """Start node `node`'s process (once) and wait until its RPC answers."""
        if node not in self.processes:
            config = self.configs[node]
            with (config.parent / "node.log").open("ab") as log:
                self.processes[node] = self.hosts.run(
                    self.hosts[node],
                    [sys.executable, "-m", "p2pchain", "node", "--config", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
        async with self.open_rpc() as rpc:

            async def answers() -> str | None:
                process = self.processes[node]
                if process.poll() is not None:
                    raise AssertionError(
                        f"node {node} exited {process.returncode}: {self.log(node)}"
                    )
                with contextlib.suppress(
                    OSError, trio.TooSlowError, HandshakeError, ConnectionClosed
                ):
                    info = await rpc.dict(node, "p2p_nodeInfo")
                    return str(info["nodeId"])
                return None

            self.node_ids[node] = await self.wait_until(
                answers, f"node {node} answers RPC", START_S
            )

    async def start_validators(self) -> None:
        """Nodes 0-3, the bootnode first; node 3 only once 1 and 2 are connected to it, so
        that what it learns from node 0 already names them."""
        if all(node in self.processes for node in self.validators):
            return
        await self.start(0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.start, 1)
            nursery.start_soon(self.start, 2)
        async with self.open_rpc() as rpc:

            async def both_in() -> bool:
                ids = {str(peer["peerId"]) for peer in await rpc.peers(0)}
                return {self.node_ids[1], self.node_ids[2]} <= ids

            await self.wait_until(both_in, "nodes 1 and 2 connect to node 0", START_S)
        await self.start(3)

    def check_loopback_dials(self) -> list[str]:
        """Every connection a trap accepted so far (each a dial of another node's loopback
        address from inside a host); the connections are closed."""
        for host, port, listener in self.traps:
            while True:
                try:
                    connection, source = listener.accept()
                except BlockingIOError:
                    break
                connection.close()
                self.loopback_dials.append(f"node {host} dialed 127.0.0.1:{port} from {source}")
        return list(self.loopback_dials)

    async def wait_until(
        self, condition: Callable[[], Awaitable[T | bool | None]], what: str, within: float
    ) -> T:
        """Poll `condition` every POLL_S until it returns something truthy (returned), or fail
        after `within` seconds naming `what`, with the end of every started node's log."""
        with trio.move_on_after(within):
            while True:
                result = await condition()
                if result:
                    return result  # type: ignore[return-value]
                await trio.sleep(POLL_S)
        logs = "\n".join(self.log(node) for node in sorted(self.processes))
        raise AssertionError(f"not within {within:.0f} s: {what}\n{logs}")

    def log(self, node: int, lines: int = 15) -> str:
        path = self.configs[node].parent / "node.log"
        if not path.exists():
            return f"(no {path.name})"
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        return f"last lines of {path}:\n" + "\n".join(tail)


def _write_configs(root: Path, hosts: Hosts) -> list[Path]:
    layout = init_network(
        root,
        nodes=VALIDATORS,
        params=PARAMS,
        base_port=P2P_PORT,
        rpc_port=RPC_PORT,
        wallets=0,
        metrics_port=None,
        genesis_delay_s=5.0,
    )
    configs = list(layout.nodes)
    late = root / f"node{LATE_JOINER}" / "node.toml"
    write_key(late.parent / "node.key", SecretKey.from_entropy(os.urandom(32)))
    first = load_node(configs[0])
    dump_node(
        dataclasses.replace(
            first,
            node_key=late.parent / "node.key",
            validator_key=None,
            data_dir=late.parent / "data",
        ),
        late,
    )
    configs.append(late)
    bootnode = f"tcp://{hosts[0].address}:{P2P_PORT}"
    for index, path in enumerate(configs):
        node: NodeFile = load_node(path)
        address, style = hosts[index].address, LISTEN_STYLES[index]
        host = address if style == "address" else "0.0.0.0"
        listen = (f"tcp://{host}:{P2P_PORT}", f"ws://{host}:{WS_PORT}")
        if style == "address":
            listen += (f"tcp://127.0.0.1:{local_port(index)}",)
        dump_node(
            dataclasses.replace(
                node,
                listen=listen,
                public_addr=address if style == "public_addr" else None,
                bootnodes=() if index == 0 else (bootnode,),
                rpc=f"127.0.0.1:{RPC_PORT}",
                metrics=None,
            ),
            path,
        )
    return configs


def _set_traps(net: MultiHostNet) -> None:
    for host in net.hosts:
        ports = {
            local_port(other.index)
            for other in net.hosts
            if other != host and LISTEN_STYLES[other.index] == "address"
        }
        if LISTEN_STYLES[host.index] == "address":
            ports |= {P2P_PORT, WS_PORT}
        for port in sorted(ports):
            listener = net.hosts.listen(host, "127.0.0.1", port)
            listener.setblocking(False)
            net.traps.append((host.index, port, listener))


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with open_hosts(HOSTS) as made:
        yield made


@pytest.fixture(scope="module")
def net(hosts: Hosts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiHostNet]:
    root = tmp_path_factory.mktemp("multihost")
    made = MultiHostNet(hosts=hosts, root=root, configs=_write_configs(root, hosts))
    _set_traps(made)
    try:
        yield made
    finally:
        hosts.stop(*made.processes.values())
        for _, _, listener in made.traps:
            listener.close()
