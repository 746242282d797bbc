"""The control plane of a running ``p2pchain testnet``: kill, restart and inspect its nodes
from a second terminal (``p2pchain testnet kill 2``) or from Python (`control`).

The supervisor listens on a loopback TCP port it writes to ``<dir>/control.port``. A request
is one JSON object on one line (at most `MAX_REQUEST_BYTES`), the answer one JSON object on
one line: ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. Anyone who can connect
to the loopback port can kill the testnet's nodes: this is a local development tool.

In a testnet on namespaced hosts (``--hosts netns``) each node runs inside its host (its
runner's `NodeRunner.prefix`), and a partition is made of routes inside the hosts
(`Hosts.partition`) instead of relays; delay and loss need relays and are refused there.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import trio
from trio_websocket import ConnectionClosed, HandshakeError

from p2pchain.cli.config import dump_node, load_node
from p2pchain.cli.rpc_client import JSON, connect_rpc
from p2pchain.errors import ConfigError
from p2pchain.net.relay import LinkFaults, Relays
from p2pchain.node.config import MAX_CLOCK_SKEW_MS
from p2pchain.params import ChainParams
from p2pchain.rpc import RpcError
from p2pchain.testing.netns import Hosts, NetnsError

CONTROL_FILE: Final = "control.port"
MAX_REQUEST_BYTES: Final = 4_096
REQUEST_TIMEOUT_S: Final = 10.0
STOP_GRACE_S: Final = 10.0
COMMANDS: Final = (
    "status",
    "kill",
    "restart",
    "skew",
    "partition",
    "heal",
    "delay",
    "drop",
    "mine",
)
MAX_MINE_SLOTS: Final = 1_000
BLOCK_WAIT_S: Final = 5.0
"""How long `mine` waits for a slot's block to reach every running node before it moves on
(its proposer may be down, or partitioned away)."""


@dataclass
class NodeRunner:
    """One node's process, started again on demand; `exit_code` is None while it runs."""

    config: Path
    log_level: str
    process: trio.Process | None = None
    exit_code: int | None = None
    restarts: int = 0
    clock_skew_ms: int = 0
    """What its node.toml says (kept here so that `status` reads no file)."""
    rpc_url: str | None = None
    dev_rpc: bool = False
    """Its RPC serves the dev_* methods: skew and manual time change without a restart."""
    manual_clock: bool = False
    prefix: tuple[str, ...] = ()
    """What the node's command runs under (``ip netns exec NAME`` for a namespaced host; it
    execs the node, so that signals sent to the process reach the node itself)."""
    exited: trio.Event = field(default_factory=trio.Event)

    @property
    def running(self) -> bool:
        return self.process is not None and self.exit_code is None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the process until it exits; on cancellation stop it (SIGINT, then SIGKILL)."""
        command = [*self.prefix, sys.executable, "-m", "p2pchain", "--log-level", self.log_level]
        command += ["node"]
        command += ["--config", str(self.config)]
        self.exit_code = None
        self.exited = trio.Event()
        with (self.config.parent / "node.log").open("ab") as log:
            process = await trio.lowlevel.open_process(
                command, stdout=log, stderr=subprocess.STDOUT
            )
            self.process = process
            task_status.started()
            try:
                self.exit_code = await process.wait()
            finally:
                if process.returncode is None:
                    process.send_signal(signal.SIGINT)
                    with trio.move_on_after(STOP_GRACE_S) as scope:
                        scope.shield = True
                        await process.wait()
                    if process.returncode is None:
                        process.kill()
                        with trio.CancelScope(shield=True):
                            await process.wait()
                self.exit_code = process.returncode
                self.exited.set()


class Supervisor:
    """The testnet's node runners and the control server that acts on them."""

    def __init__(
        self,
        root: Path,
        runners: list[NodeRunner],
        nursery: trio.Nursery,
        on_start: Callable[[int], None],
        relays: Relays | None = None,
        params: ChainParams | None = None,
        genesis_time_ms: int = 0,
        hosts: Hosts | None = None,
    ) -> None:
        self.params = params
        self.genesis_time_ms = genesis_time_ms
        self.root = root
        self.runners = runners
        self.relays = relays
        """The links between the nodes, when the network routes them through relays."""
        self.hosts = hosts
        """Node `i`'s host is `hosts[i]`, when the nodes run on namespaced hosts."""
        self._host_faults = LinkFaults(len(runners))
        """The partition in force between the hosts (only ever a partition)."""
        self._host_lock = trio.Lock()
        self._nursery = nursery
        self._on_start = on_start
        """Called after node `i`'s process started (the supervisor watches it from there)."""

    async def start(self, index: int) -> None:
        await self._nursery.start(self.runners[index].run)
        self._on_start(index)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve control requests on a free loopback port, announced in ``control.port``."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = int(listeners[0].socket.getsockname()[1])
        await trio.Path(self.root / CONTROL_FILE).write_text(f"{port}\n")
        task_status.started(port)
        try:
            await trio.serve_listeners(self._handle, listeners)
        finally:
            with trio.CancelScope(shield=True):
                await trio.Path(self.root / CONTROL_FILE).unlink(missing_ok=True)

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            try:
                with trio.fail_after(REQUEST_TIMEOUT_S):
                    request = await _read_line(stream)
                    answer = await self.answer(json.loads(request))
            except (ValueError, trio.TooSlowError) as exc:
                answer = {"ok": False, "error": f"bad request: {exc}"}
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            try:
                await stream.send_all(json.dumps(answer).encode() + b"\n")
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return

    async def answer(self, request: JSON) -> dict[str, JSON]:
        """Carry out one request (`COMMANDS`); a refusal is ``{"ok": false, "error": ...}``."""
        if not isinstance(request, dict):
            return {"ok": False, "error": "a request is a JSON object"}
        command = request.get("command")
        handlers = {
            "status": self._status,
            "kill": self._kill,
            "restart": self._restart,
            "skew": self._skew,
            "partition": self._partition,
            "heal": self._heal,
            "delay": self._delay,
            "drop": self._drop,
            "mine": self._mine,
        }
        handler = handlers.get(command) if isinstance(command, str) else None
        if handler is None:
            return {"ok": False, "error": f"unknown command {command!r} ({', '.join(COMMANDS)})"}
        try:
            return await handler(request)
        except ConfigError as exc:
            return {"ok": False, "error": str(exc)}

    async def _status(self, request: dict[str, JSON]) -> dict[str, JSON]:
        links = None
        if self.relays is not None:
            links = _links_json(self.relays.faults)
        elif self.hosts is not None:
            links = _links_json(self._host_faults)
        nodes: list[JSON] = [self._describe(i) for i in range(len(self.runners))]
        return {"ok": True, "nodes": nodes, "links": links}

    async def _kill(self, request: dict[str, JSON]) -> dict[str, JSON]:
        index = self._node(request)
        runner = self.runners[index]
        if not runner.running or runner.process is None:
            raise ConfigError(f"node {index} is not running")
        runner.process.kill()
        await runner.exited.wait()
        return {"ok": True, "node": self._describe(index)}

    async def _restart(self, request: dict[str, JSON]) -> dict[str, JSON]:
        index = self._node(request)
        runner = self.runners[index]
        if runner.running and runner.process is not None:
            runner.process.kill()
            await runner.exited.wait()
        runner.restarts += 1
        await self.start(index)
        return {"ok": True, "node": self._describe(index)}

    async def _skew(self, request: dict[str, JSON]) -> dict[str, JSON]:
        index = self._node(request)
        skew = _integer(request, "ms", "ms must be an integer (milliseconds)")
        runner = self.runners[index]
        if runner.manual_clock:
            raise ConfigError(f"node {index} has a manual clock: `mine` moves it, not a skew")
        await trio.to_thread.run_sync(set_clock_skew, runner.config, skew)
        runner.clock_skew_ms = skew
        if runner.running and runner.dev_rpc and runner.rpc_url is not None:
            try:
                await _call(runner.rpc_url, "dev_setClockSkew", skew)
            except (OSError, RpcError, HandshakeError, ConnectionClosed, trio.TooSlowError):
                pass  # not answering yet: a restart reads the new skew from its node.toml
            else:
                return {"ok": True, "node": self._describe(index)}
        return await self._restart(request)

    async def _mine(self, request: dict[str, JSON]) -> dict[str, JSON]:
        """Produce the next `slots` slots on manual clocks: for each, move every running node
        to the slot's start (its proposer proposes), wait for the block to reach them all,
        then to half-way (the validators whose duty slot it is vote)."""
        request = {"slots": 1} | request
        slots = _integer(request, "slots", f"slots must be an integer from 1 to {MAX_MINE_SLOTS}")
        if not 1 <= slots <= MAX_MINE_SLOTS:
            raise ConfigError(f"slots must be an integer from 1 to {MAX_MINE_SLOTS}")
        params = self.params
        if params is None or not self.runners or not all(r.manual_clock for r in self.runners):
            raise ConfigError(
                "this testnet follows the wall clock: create it with --slot-ms manual to mine"
            )
        urls = [r.rpc_url for r in self.runners if r.running and r.rpc_url is not None]
        if not urls:
            raise ConfigError("no node is running")
        now_ms = max(await _gather(urls, "dev_clock", key="nowMs"))
        slot = max(0, (now_ms - self.genesis_time_ms) // params.slot_ms)
        for _ in range(slots):
            slot += 1
            start = self.genesis_time_ms + slot * params.slot_ms
            await _gather(self._urls(), "dev_setTime", start, key="slot")
            with trio.move_on_after(BLOCK_WAIT_S):
                while True:  # polled: the nodes are other processes
                    heads = await _gather(self._urls(), "chain_head", key="slot")
                    if min(heads, default=slot) >= slot:
                        break
                    await trio.sleep(0.02)
            await _gather(self._urls(), "dev_setTime", start + params.slot_ms // 2, key="slot")
        heads = await _gather(self._urls(), "chain_head", key="height")
        return {"ok": True, "slot": slot, "height": max(heads, default=0)}

    def _urls(self) -> list[str]:
        return [r.rpc_url for r in self.runners if r.running and r.rpc_url is not None]

    async def _partition(self, request: dict[str, JSON]) -> dict[str, JSON]:
        groups = _groups(request.get("groups"))
        if self.hosts is not None:
            wanted = LinkFaults(len(self.runners))
            wanted.partition(groups)
            await self._cut_hosts(wanted.groups)
            return await self._status(request)
        relays = self._relays()
        relays.faults.partition(groups)
        relays.changed()
        return await self._status(request)

    async def _heal(self, request: dict[str, JSON]) -> dict[str, JSON]:
        if self.hosts is not None:
            await self._cut_hosts(())
            return await self._status(request)
        relays = self._relays()
        relays.faults.heal()
        relays.changed()
        return await self._status(request)

    async def _cut_hosts(self, groups: tuple[frozenset[int], ...]) -> None:
        """Make `groups` the partition between the hosts (none: heal), one change at a time."""
        hosts = self.hosts
        assert hosts is not None
        by_host = [[hosts[index] for index in sorted(group)] for group in groups]
        async with self._host_lock:
            try:
                if by_host:
                    await trio.to_thread.run_sync(lambda: hosts.partition(*by_host))
                else:
                    await trio.to_thread.run_sync(hosts.heal)
            except NetnsError as exc:
                raise ConfigError(f"changing the hosts' routes failed: {exc}") from exc
            self._host_faults.groups = groups

    async def _delay(self, request: dict[str, JSON]) -> dict[str, JSON]:
        relays = self._relays()
        index = self._node(request)
        relays.faults.set_delay(index, _integer(request, "ms", "ms must be an integer"))
        relays.changed()
        return await self._status(request)

    async def _drop(self, request: dict[str, JSON]) -> dict[str, JSON]:
        relays = self._relays()
        index = self._node(request)
        percent = request.get("percent")
        if not isinstance(percent, int | float) or isinstance(percent, bool):
            raise ConfigError("percent must be a number (0 to below 100)")
        relays.faults.set_loss(index, float(percent) / 100)
        relays.changed()
        return await self._status(request)

    def _node(self, request: dict[str, JSON]) -> int:
        index = _integer(request, "node", "node must be a node index")
        if not 0 <= index < len(self.runners):
            raise ConfigError(f"no node {index} (0..{len(self.runners) - 1})")
        return index

    def _relays(self) -> Relays:
        if self.hosts is not None:
            raise ConfigError(
                "delay and drop need --hosts local (links through relays): this testnet's "
                "nodes run on namespaced hosts, where only partition and heal cut links"
            )
        if self.relays is None:
            raise ConfigError(
                "this network's nodes dial each other directly (it was made before links went "
                "through relays): create a new one to cut or slow its links"
            )
        return self.relays

    def _describe(self, index: int) -> dict[str, JSON]:
        runner = self.runners[index]
        return {
            "index": index,
            "running": runner.running,
            "exitCode": runner.exit_code,
            "restarts": runner.restarts,
            "clockSkewMs": runner.clock_skew_ms,
            "pid": None if runner.process is None else runner.process.pid,
            "host": None if self.hosts is None else _host_json(self.hosts, index),
        }


def _host_json(hosts: Hosts, index: int) -> dict[str, JSON]:
    host = hosts[index]
    return {"address": host.address, "namespace": host.namespace}


def _groups(value: JSON) -> list[list[int]]:
    complaint = ConfigError("groups must be a list of lists of node indices")
    if not isinstance(value, list):
        raise complaint
    groups: list[list[int]] = []
    for group in value:
        if not isinstance(group, list):
            raise complaint
        groups.append([])
        for index in group:
            if not isinstance(index, int) or isinstance(index, bool):
                raise complaint
            groups[-1].append(index)
    return groups


def _links_json(faults: LinkFaults) -> dict[str, JSON]:
    groups: list[JSON] = [list[JSON](sorted(group)) for group in faults.groups]
    delays: dict[str, JSON] = {str(i): ms for i, ms in sorted(faults.delay_ms.items()) if ms}
    losses: dict[str, JSON] = {
        str(i): round(loss * 100, 3) for i, loss in sorted(faults.loss.items()) if loss
    }
    return {"partition": groups, "delayMs": delays, "lossPercent": losses}


async def _call(url: str, method: str, *params: JSON) -> JSON:
    with trio.fail_after(REQUEST_TIMEOUT_S):
        async with connect_rpc(url) as rpc:
            return await rpc.call(method, *params)


async def _gather(urls: list[str], method: str, *params: JSON, key: str) -> list[int]:
    """`method` on every node at once; the integer `key` of each answer from the nodes that
    answered (a node that is starting or was just killed is left out)."""
    found: list[int] = []

    async def one(url: str) -> None:
        try:
            answer = await _call(url, method, *params)
        except (OSError, RpcError, HandshakeError, ConnectionClosed, trio.TooSlowError):
            return
        value = answer.get(key) if isinstance(answer, dict) else None
        if isinstance(value, int):
            found.append(value)

    async with trio.open_nursery() as nursery:
        for url in urls:
            nursery.start_soon(one, url)
    return found


def _integer(request: dict[str, JSON], name: str, complaint: str) -> int:
    value = request.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(complaint)
    return value


def set_clock_skew(config: Path, skew_ms: int) -> None:
    """Write `clock_skew_ms` into a node.toml, refusing what the node would refuse before
    the file changes (a node may be starting and reading it)."""
    if abs(skew_ms) > MAX_CLOCK_SKEW_MS:
        raise ConfigError(f"clock_skew_ms must be an integer within ±1 day, got {skew_ms}")
    dump_node(dataclasses.replace(load_node(config), clock_skew_ms=skew_ms), config)


async def _read_line(stream: trio.SocketStream) -> bytes:
    data = bytearray()
    while b"\n" not in data:
        chunk = await stream.receive_some(MAX_REQUEST_BYTES)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST_BYTES:
            raise ValueError(f"longer than {MAX_REQUEST_BYTES} bytes")
    return bytes(data).split(b"\n", 1)[0]


async def control(root: Path, request: dict[str, JSON]) -> dict[str, JSON]:
    """Send one request to the supervisor of the testnet in `root`; its answer.

    Raises:
        ConfigError: no supervisor runs there, or it refused the request (its reason).
    """
    path = trio.Path(root / CONTROL_FILE)
    try:
        port = int((await path.read_text()).strip())
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"no testnet supervisor is running on {root}") from exc
    async with stream:
        with trio.fail_after(REQUEST_TIMEOUT_S + STOP_GRACE_S):
            await stream.send_all(json.dumps(request).encode() + b"\n")
            reply = await _read_line(stream)
    answer = json.loads(reply) if reply else {"ok": False, "error": "the supervisor closed"}
    if not isinstance(answer, dict) or not answer.get("ok"):
        error = answer.get("error") if isinstance(answer, dict) else answer
        raise ConfigError(f"testnet supervisor: {error}")
    return answer


class RemoteTestnet:
    """The running ``p2pchain testnet`` in `root`, steered from another process with the same
    calls as an in-process `p2pchain.testnet(...)` (`p2pchain.testing.control.TestnetControl`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def status(self) -> dict[str, JSON]:
        return await control(self.root, {"command": "status"})

    async def running(self) -> list[bool]:
        nodes = (await self.status())["nodes"]
        assert isinstance(nodes, list)
        return [isinstance(node, dict) and node.get("running") is True for node in nodes]

    async def kill(self, node: int) -> None:
        await control(self.root, {"command": "kill", "node": node})

    async def restart(self, node: int) -> None:
        await control(self.root, {"command": "restart", "node": node})

    async def partition(self, *groups: Sequence[int]) -> None:
        request: dict[str, JSON] = {
            "command": "partition",
            "groups": [list[JSON](group) for group in groups],
        }
        await control(self.root, request)

    async def heal(self) -> None:
        await control(self.root, {"command": "heal"})

    async def delay(self, node: int, ms: int) -> None:
        await control(self.root, {"command": "delay", "node": node, "ms": ms})

    async def drop(self, node: int, percent: float) -> None:
        await control(self.root, {"command": "drop", "node": node, "percent": percent})

    async def skew(self, node: int, ms: int) -> None:
        await control(self.root, {"command": "skew", "node": node, "ms": ms})

    async def mine(self, slots: int = 1) -> None:
        await control(self.root, {"command": "mine", "slots": slots})
