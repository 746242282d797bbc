"""`p2pchain testnet --hosts netns`: the real CLI runs each node in a network namespace of its
own; the nodes link over their hosts' addresses, finalize, survive a partition made of routes
and a restart, and the supervisor leaves no namespace or veth behind, at the end of
--duration as on Ctrl-C. Where namespaces are unavailable, and on a network directory made with
another --hosts, the command refuses in one line."""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from p2pchain.cli.commands import cli
from p2pchain.cli.config import load_node
from p2pchain.cli.control import control
from p2pchain.cli.network import init_network
from p2pchain.cli.rpc_client import JSON, connect_rpc
from p2pchain.params import ChainParams
from p2pchain.testing import netns

pytestmark = pytest.mark.timeout(120)
NODES = 3
SUBNET = ipaddress.IPv4Network(netns.DEFAULT_SUBNET)
POLL_S = 0.25
WAIT_S = 30.0
ARGS = ("--slot-ms", "500", "--slots-per-epoch", "4", "--metrics-port", "0")
_HOST = re.compile(r"(?:^|//)(\d+\.\d+\.\d+\.\d+)")


@pytest.fixture
def need_netns() -> None:
    reason = netns.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


class Supervisor:
    """A `p2pchain testnet --hosts netns` process on `root` and what it printed."""

    def __init__(self, root: Path, *args: str) -> None:
        self.root = root
        self.out = root.parent / "supervisor.out"
        self.err = root.parent / "supervisor.err"
        argv = [sys.executable, "-m", "p2pchain", "testnet", "--hosts", "netns"]
        argv += ["--nodes", str(NODES), "--dir", str(root), *ARGS, *args]
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(
                argv, stdout=out, stderr=err, env={**os.environ, "COLUMNS": "200"}
            )

    def urls(self) -> list[str]:
        configs = sorted(self.root.glob("node*/node.toml"))
        return [f"ws://{load_node(config).rpc}" for config in configs]

    def report(self) -> str:
        logs = [
            f"{path}:\n" + "\n".join(path.read_text(errors="replace").splitlines()[-10:])
            for path in [self.out, self.err, *sorted(self.root.glob("node*/node.log"))]
            if path.exists()
        ]
        return "\n".join(logs)

    async def until(self, condition: Callable[[], Awaitable[bool]], what: str) -> None:
        """Re-check `condition` every POLL_S until it holds, or fail naming `what`."""
        with trio.move_on_after(WAIT_S):
            while True:
                assert self.process.poll() is None, f"supervisor exited\n{self.report()}"
                try:
                    if await condition():
                        return
                except Exception:  # a node starting or restarting, a config being written
                    pass
                await trio.sleep(POLL_S)
        raise AssertionError(f"not within {WAIT_S:.0f} s: {what}\n{self.report()}")

    async def wait_exit(self, within: float) -> int:
        """Its exit code (`subprocess.TimeoutExpired` if still running after `within` s)."""
        return await trio.to_thread.run_sync(lambda: self.process.wait(within))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def supervisors() -> Iterator[list[Supervisor]]:
    made: list[Supervisor] = []
    yield made
    for supervisor in made:
        supervisor.kill()


async def _call(url: str, method: str) -> JSON:
    with trio.fail_after(5):
        async with connect_rpc(url) as rpc:
            return await rpc.call(method)


async def _finalized(urls: list[str]) -> list[int]:
    epochs = []
    for url in urls:
        finalized = await _call(url, "chain_finalized")
        assert isinstance(finalized, dict)
        epochs.append(int(str(finalized["epoch"])))
    return epochs


async def _peer_hosts(url: str) -> set[str]:
    peers = await _call(url, "net_peers")
    assert isinstance(peers, list)
    hosts = set()
    for peer in peers:
        assert isinstance(peer, dict)
        match = _HOST.search(str(peer["address"]))
        hosts.add(match.group(1) if match else str(peer["address"]))
    return hosts


def _dial(namespace: str, address: str, port: int) -> str:
    """Dial `address:port` from inside `namespace`: "ok" or the error it got."""
    script = (
        "import socket\ntry:\n"
        f"    socket.create_connection(({address!r}, {port}), timeout=3).close()\n"
        "    print('ok')\nexcept OSError as exc:\n    print(exc)"
    )
    ip = netns.find_ip()
    assert ip is not None
    result = subprocess.run(
        [ip, "netns", "exec", namespace, sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def _leftovers(pid: int) -> list[str]:
    """The namespaces and root-namespace interfaces of the supervisor `pid` still there, and
    any route of the hosts' subnet."""
    ip = netns.find_ip()
    assert ip is not None

    def lines(*args: str) -> list[str]:
        return subprocess.run([ip, *args], capture_output=True, text=True).stdout.splitlines()

    left = [n for n in lines("netns", "list") if n.startswith(f"{netns.NAMESPACE_PREFIX}{pid}-")]
    left += [n for n in lines("-o", "link", "show") if f"{netns.ROOT_LINK_PREFIX}{pid}-" in n]
    left += lines("-4", "route", "show", str(SUBNET))
    return left


async def test_nodes_on_namespaced_hosts_link_finalize_and_clean_up(
    need_netns: None, tmp_path: Path, supervisors: list[Supervisor]
) -> None:
    root = tmp_path / "net"
    supervisor = Supervisor(root, "--duration", "30", "--tx-rate", "2")
    supervisors.append(supervisor)

    async def configs_written() -> bool:
        return len(supervisor.urls()) == NODES

    await supervisor.until(configs_written, "the network written")
    urls = supervisor.urls()
    addresses = netns.host_addresses(NODES, attach_root=True)
    assert urls == [f"ws://{address}:{8645 + i}" for i, address in enumerate(addresses)]

    async def linked_over_host_addresses() -> bool:
        for index, url in enumerate(urls):
            others = set(addresses) - {addresses[index]}
            if await _peer_hosts(url) != others:
                return False
        return True

    await supervisor.until(linked_over_host_addresses, "every node linked to the others' hosts")

    async def finalized() -> bool:
        return min(await _finalized(urls)) >= 1

    await supervisor.until(finalized, "every node finalized epoch 1")

    status = await control(root, {"command": "partition", "groups": [[0]]})
    assert status["links"] == {"partition": [[0], [1, 2]], "delayMs": {}, "lossPercent": {}}
    nodes = status["nodes"]
    assert isinstance(nodes, list)
    namespaces = [node["host"]["namespace"] for node in nodes]  # type: ignore[call-overload,index]
    assert [node["host"]["address"] for node in nodes] == list(addresses)  # type: ignore[call-overload,index]
    cut = await trio.to_thread.run_sync(_dial, namespaces[0], addresses[1], 30302)
    assert "No route to host" in cut
    assert await trio.to_thread.run_sync(_dial, namespaces[2], addresses[1], 30302) == "ok"
    assert await _call(urls[0], "chain_head")  # the supervisor still reaches a cut-off node
    await control(root, {"command": "heal"})
    assert await trio.to_thread.run_sync(_dial, namespaces[0], addresses[1], 30302) == "ok"
    before = max(await _finalized(urls))

    restarted = await control(root, {"command": "restart", "node": 2})
    assert restarted["node"]["host"] == {"address": addresses[2], "namespace": namespaces[2]}  # type: ignore[call-overload,index]

    async def finality_advances() -> bool:
        epochs = await _finalized(urls)
        return min(epochs) >= before + 2 and len(await _peer_hosts(urls[2])) == 2

    await supervisor.until(finality_advances, f"every node finalized past epoch {before + 1}")

    assert await supervisor.wait_exit(30) == 0, supervisor.report()
    out = supervisor.out.read_text()
    assert "Traceback" not in supervisor.err.read_text(), supervisor.report()
    assert "stopped; network directory" in out
    for index, (address, url) in enumerate(zip(addresses, urls, strict=True)):
        assert f"node{index}: host {address} ({namespaces[index]})" in out
        row = next(line for line in out.splitlines() if url in line)
        assert "running" in row, out
    assert _leftovers(supervisor.process.pid) == []


async def test_ctrl_c_stops_the_nodes_and_removes_the_hosts(
    need_netns: None, tmp_path: Path, supervisors: list[Supervisor]
) -> None:
    supervisor = Supervisor(tmp_path / "net", "--tx-rate", "0")
    supervisors.append(supervisor)

    async def answering() -> bool:
        urls = supervisor.urls()
        return len(urls) == NODES and all([await _call(url, "chain_head") for url in urls])

    await supervisor.until(answering, "every node answers RPC")
    assert _leftovers(supervisor.process.pid) != []
    supervisor.process.send_signal(signal.SIGINT)
    assert await supervisor.wait_exit(20) == 0, supervisor.report()
    assert "stopped; network directory" in supervisor.out.read_text()
    assert _leftovers(supervisor.process.pid) == []


def test_unavailable_namespaces_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = netns.unavailable_reason()
    if reason is None:  # this machine can: make it one that cannot
        reason = (
            "namespaced hosts need Linux network namespaces, which need root: running as uid 1000"
        )
        monkeypatch.setattr(netns, "unavailable_reason", lambda: reason)
    root = tmp_path / "net"
    result = CliRunner().invoke(cli, ["testnet", "--hosts", "netns", "--dir", str(root)])
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [f"Error: ConfigError: --hosts netns: {reason}"]
    assert not root.exists()


@pytest.mark.parametrize(("made", "given"), [("local", "netns"), ("netns", "local")])
def test_another_hosts_value_than_the_networks_is_refused(
    tmp_path: Path, made: str, given: str
) -> None:
    addresses = netns.host_addresses(2, attach_root=True) if made == "netns" else None
    init_network(
        tmp_path,
        nodes=2,
        params=ChainParams(slot_ms=500, slots_per_epoch=4),
        base_port=30300,
        rpc_port=8645,
        wallets=0,
        supervised=True,
        addresses=addresses,
    )
    before = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*"))
    result = CliRunner().invoke(cli, ["testnet", "--hosts", given, "--dir", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [
        f"Error: ConfigError: --hosts {given} differs from the network in {tmp_path} ({made}): "
        "drop the flag to resume it, or choose another --dir"
    ]
    assert sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*")) == before
