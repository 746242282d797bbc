"""The hostile-network catalogue's two sides: a real ``p2pchain node`` process, and a raw peer.

The raw peer is `p2pchain.testing.adversary.SecurePeer`: the project's own socket code, never
the node's `Swarm` or transports. Every row of the catalogue ends with `Verdict.check`: the node
process is alive, its log has no traceback, an honest peer still completes a handshake and a
ping, and the chain, finality and mempool are as they were before the attack.
"""

from __future__ import annotations

import itertools
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from p2pchain.cli.config import load_network, load_node, read_key
from p2pchain.cli.network import init_network
from p2pchain.cli.rpc_client import JSON, connect_rpc
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.genesis import GenesisConfig, genesis_block
from p2pchain.ledger.types import BlockId
from p2pchain.params import ChainParams
from p2pchain.testing import adversary
from p2pchain.testing.adversary import SecurePeer
from p2pchain.testing.adversary import closed_at_accept as closed_at_accept  # until test_chain
from p2pchain.testing.adversary import fresh_keys as fresh_keys  # imports them from there

WAIT_S = adversary.WAIT_S
"""Safety bound on every wait of the catalogue: a wait that reaches it fails the row."""
READY_S = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- the node process ------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class NodeProcess:
    """A ``p2pchain node`` process on a network made by ``p2pchain init --nodes 1``.

    The node runs without its validator key, so it makes no blocks: its chain changes only when
    a peer brings valid blocks, and a row can tell that its attack changed nothing. The test
    holds the validator key, so chain-level rows can sign blocks the node would accept.
    """

    process: subprocess.Popen[bytes]
    directory: Path
    log: Path
    host: str
    tcp_port: int
    ws_port: int
    rpc_url: str
    params: ChainParams
    genesis: GenesisConfig
    genesis_id: BlockId
    validator_key: SecretKey
    wallet_keys: tuple[SecretKey, ...]
    wallet_key_files: tuple[Path, ...]

    @property
    def chain_id(self) -> int:
        return self.params.chain_id

    def log_offset(self) -> int:
        return self.log.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.log.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")

    def is_alive(self) -> bool:
        return self.process.poll() is None

    async def rpc(self, method: str, *params: JSON) -> JSON:
        async with connect_rpc(self.rpc_url) as client:
            return await client.call(method, *params)

    async def snapshot(self) -> dict[str, JSON]:
        """What an attack must not change: head, finalized checkpoint, mempool."""
        async with connect_rpc(self.rpc_url) as client:
            mempool = await client.call("mempool_status")
            assert isinstance(mempool, dict)
            return {
                "head": await client.call("chain_head"),
                "finalized": await client.call("chain_finalized"),
                "mempool": {key: mempool[key] for key in ("size", "bytes", "orphans")},
            }

    async def peer_scores(self) -> dict[str, float]:
        """Connected peers' scores by peer id (hex), from `net_peers`."""
        peers = await self.rpc("net_peers")
        assert isinstance(peers, list)
        return {str(p["peerId"]): float(str(p["score"])) for p in peers if isinstance(p, dict)}

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or power loss of the process."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_node(root: Path, *, params: ChainParams | None = None) -> NodeProcess:
    """Initialise a one-validator network in `root` and start its node without the validator
    key; wait (bounded) until its RPC answers."""
    params = params or ChainParams(slot_ms=1_000, slots_per_epoch=4)
    layout = init_network(
        root,
        nodes=1,
        params=params,
        base_port=30_300,
        rpc_port=8_645,
        wallets=2,
        genesis_delay_s=-2.0,
    )
    config = layout.nodes[0]
    node_file = load_node(config)
    assert node_file.validator_key is not None
    validator_key = read_key(node_file.validator_key)
    text = re.sub(r"127\.0\.0\.1:\d+", lambda _: f"127.0.0.1:{free_port()}", config.read_text())
    text = "\n".join(line for line in text.splitlines() if "validator_key_file" not in line)
    config.write_text(text + "\n")
    node_file = load_node(config)
    ports = {a.split("://")[0]: int(a.rsplit(":", 1)[1]) for a in node_file.listen}
    network = load_network(layout.network)
    assert node_file.rpc is not None
    node = NodeProcess(
        process=spawn_node_process(config),
        directory=config.parent,
        log=config.parent / "node.log",
        host="127.0.0.1",
        tcp_port=ports["tcp"],
        ws_port=ports["ws"],
        rpc_url=f"ws://{node_file.rpc}",
        params=network.params,
        genesis=network.genesis,
        genesis_id=genesis_block(network.genesis, network.params).block_id,
        validator_key=validator_key,
        wallet_keys=tuple(read_key(path) for path in layout.wallets),
        wallet_key_files=layout.wallets,
    )
    wait_listening(node)
    return node


def restart_node(node: NodeProcess) -> None:
    """Start the node's process again on its directory (after `stop` or `kill`)."""
    assert not node.is_alive()
    node.process = spawn_node_process(node.directory / "node.toml")
    wait_listening(node)


def spawn_node_process(config: Path) -> subprocess.Popen[bytes]:
    with (config.parent / "node.log").open("ab") as output:
        command = [sys.executable, "-m", "p2pchain", "node", "--config", str(config)]
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)


def wait_listening(node: NodeProcess) -> None:
    deadline = time.monotonic() + READY_S
    rpc_host, rpc_port = node.rpc_url.removeprefix("ws://").rsplit(":", 1)
    for port, host in (
        (node.tcp_port, node.host),
        (node.ws_port, node.host),
        (int(rpc_port), rpc_host),
    ):
        while True:
            if not node.is_alive():
                raise RuntimeError(f"the node exited:\n{node.log.read_text()[-3000:]}")
            try:
                socket.create_connection((host, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the node did not listen on {port} within {READY_S} s"
                    ) from None
                time.sleep(0.05)


# -- sources ---------------------------------------------------------------------------------


class Sources:
    """Loopback source addresses, each row in a network group (/16) of its own.

    127.0.0.1 is trusted by the node, so attackers never use it: 127.0.0.0/8 all reaches `lo`
    on Linux, and the second octet picks the group.
    """

    def __init__(self) -> None:
        self._groups = itertools.count(2)

    def group(self) -> Iterator[str]:
        """Fresh addresses 127.G.x.y of one fresh group G."""
        group = next(self._groups)
        if group > 254:
            raise RuntimeError("out of loopback network groups: split the module")
        return (f"127.{group}.{i // 250}.{1 + i % 250}" for i in itertools.count())


# -- verdicts --------------------------------------------------------------------------------


HONEST_SOURCE = "127.0.0.1"


async def honest_peer_is_served(node: NodeProcess, transport: str) -> None:
    """A fresh honest peer completes the handshake and gets a Pong."""
    peer = await SecurePeer.connect(node, transport, HONEST_SOURCE)
    try:
        assert peer.is_active, f"honest handshake refused: {peer.ending}"
        assert await peer.ping(1), f"honest ping unanswered: {peer.ending}"
    finally:
        await peer.aclose()


@dataclass(slots=True)
class Verdict:
    """Taken before an attack; `check` after it asserts what every row promises."""

    node: NodeProcess
    log_offset: int
    before: dict[str, JSON]

    @classmethod
    async def before_attack(cls, node: NodeProcess) -> Verdict:
        assert node.is_alive(), "the node had already exited"
        return cls(node, node.log_offset(), await node.snapshot())

    async def check(self, transport: str, *, state_changes: bool = False) -> None:
        node = self.node
        assert node.is_alive(), f"the node exited:\n{node.log_since(self.log_offset)[-3000:]}"
        await honest_peer_is_served(node, transport)
        log = node.log_since(self.log_offset)
        assert "Traceback" not in log, log[-4000:]
        assert "internal error" not in log.lower(), log[-4000:]
        if not state_changes:
            assert await node.snapshot() == self.before
