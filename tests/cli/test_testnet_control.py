"""The testnet's control plane against real node processes: kill a node (SIGKILL), see it
exited, restart it and see it rejoin the chain, skew its clock while it runs, and mine the
slots of a manual-clock testnet, through the same calls the CLI makes."""

import io
import json
from functools import partial
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner
from rich.console import Console

from p2pchain.cli.commands import cli
from p2pchain.cli.control import CONTROL_FILE, Supervisor, _read_line, control
from p2pchain.cli.rpc_client import connect_rpc
from p2pchain.cli.testnet import run_testnet
from p2pchain.errors import ConfigError
from p2pchain.params import ChainParams
from tests.cli.test_testnet_processes import _free_port_block

pytestmark = pytest.mark.timeout(120)
WAIT_S = 60


async def _height(url: str) -> int:
    async with connect_rpc(url) as rpc:
        head = await rpc.call("chain_head")
    assert isinstance(head, dict)
    return int(str(head["height"]))


async def _until(condition, what: str) -> None:
    """Re-check `condition` every half slot until it holds (bounded)."""
    with trio.move_on_after(WAIT_S):
        while True:
            try:
                if await condition():
                    return
            except Exception:  # a node that is (re)starting refuses or drops the connection
                pass
            await trio.sleep(0.25)
    raise AssertionError(f"not within {WAIT_S} s: {what}")


async def _two_nodes(
    root: Path, base: int, params: ChainParams, *, manual_clock: bool = False
) -> None:
    """A 2-node `p2pchain testnet` on ports from `base` (RPC at base + 7 and + 8)."""
    await run_testnet(
        root,
        nodes=2,
        params=params,
        tx_rate=0.0,
        duration=None,
        log_level="info",
        base_port=base,
        rpc_port=base + 7,
        console=Console(file=io.StringIO()),
        manual_clock=manual_clock,
    )


async def test_kill_and_restart_a_node_of_a_running_testnet(tmp_path: Path) -> None:
    base = _free_port_block(10)
    params = ChainParams(slot_ms=500, slots_per_epoch=4)
    rpc_urls = [f"ws://127.0.0.1:{base + 7 + i}" for i in range(2)]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(_two_nodes, tmp_path, base, params))

        async def both_answer() -> bool:
            return min([await _height(url) for url in rpc_urls]) >= 2

        await _until(both_answer, "both nodes make blocks")
        status = await control(tmp_path, {"command": "status"})
        pids = [node["pid"] for node in status["nodes"]]  # type: ignore[index, union-attr]
        killed = await control(tmp_path, {"command": "kill", "node": 1})
        assert killed["node"]["running"] is False  # type: ignore[index, call-overload]
        assert killed["node"]["exitCode"] == -9  # type: ignore[index, call-overload]
        with pytest.raises(ConfigError, match="node 1 is not running"):
            await control(tmp_path, {"command": "kill", "node": 1})
        with pytest.raises(ConfigError, match="no node 7"):
            await control(tmp_path, {"command": "kill", "node": 7})
        before = await _height(rpc_urls[0])
        restarted = await control(tmp_path, {"command": "restart", "node": 1})
        assert restarted["node"]["running"] is True  # type: ignore[index, call-overload]
        assert restarted["node"]["pid"] != pids[1]  # type: ignore[index, call-overload]

        async def rejoined() -> bool:
            return await _height(rpc_urls[1]) > before

        await _until(rejoined, "the restarted node passes the height of the kill")
        skewed = await control(tmp_path, {"command": "skew", "node": 1, "ms": 1500})
        assert skewed["node"]["clockSkewMs"] == 1500  # type: ignore[index, call-overload]
        # Live, through the node's dev RPC: the same process, its clock moved.
        assert skewed["node"]["pid"] == restarted["node"]["pid"]  # type: ignore[index, call-overload]
        async with connect_rpc(rpc_urls[1]) as rpc:
            clock = await rpc.call("dev_clock")
        assert clock["skewMs"] == 1500  # type: ignore[index, call-overload]
        assert "clock_skew_ms = 1500" in (tmp_path / "node1" / "node.toml").read_text()
        with pytest.raises(ConfigError, match="within ±1 day"):
            await control(tmp_path, {"command": "skew", "node": 1, "ms": 10**9})
        skewed_at = await _height(rpc_urls[0])

        async def follows() -> bool:  # 1.5 s is 3 slots off: within what peers tolerate
            return await _height(rpc_urls[1]) > skewed_at

        await _until(follows, "the skewed node keeps up with the chain")
        nursery.cancel_scope.cancel()
    assert not (tmp_path / CONTROL_FILE).exists()  # the supervisor cleaned up


async def test_a_manual_testnet_makes_blocks_only_when_mined(tmp_path: Path) -> None:
    base = _free_port_block(10)
    params = ChainParams(slot_ms=1000, slots_per_epoch=4)
    rpc_urls = [f"ws://127.0.0.1:{base + 7 + i}" for i in range(2)]

    def mine(*args: str) -> dict[str, int]:
        result = CliRunner().invoke(cli, ["testnet", "mine", *args, "--dir", str(tmp_path)])
        assert result.exit_code == 0, result.output
        answer: dict[str, int] = json.loads(result.output)
        return answer

    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(_two_nodes, tmp_path, base, params, manual_clock=True))

        async def both_manual() -> bool:
            clocks = []
            for url in rpc_urls:
                async with connect_rpc(url) as rpc:
                    clocks.append(await rpc.call("dev_clock"))
            return all(clock["manual"] for clock in clocks)  # type: ignore[index, call-overload]

        await _until(both_manual, "both nodes answer with manual clocks")
        assert [await _height(url) for url in rpc_urls] == [0, 0]
        assert await trio.to_thread.run_sync(mine, "3", "--json") == {"slot": 3, "height": 3}
        assert [await _height(url) for url in rpc_urls] == [3, 3]
        assert await trio.to_thread.run_sync(mine, "12", "--json") == {"slot": 15, "height": 15}
        async with connect_rpc(rpc_urls[1]) as rpc:
            finalized = await rpc.call("chain_finalized")
        assert finalized["epoch"] >= 2  # type: ignore[index, call-overload]
        with pytest.raises(ConfigError, match="manual clock"):
            await control(tmp_path, {"command": "skew", "node": 1, "ms": 100})
        with pytest.raises(ConfigError, match="slots must be"):
            await control(tmp_path, {"command": "mine", "slots": 0})
        nursery.cancel_scope.cancel()


def test_control_commands_without_a_supervisor_are_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["testnet", "kill", "1", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert f"no testnet supervisor is running on {tmp_path}" in result.output
    assert result.output.count("\n") == 1


@pytest.mark.parametrize(
    ("request_bytes", "complaint"),
    [
        (b"{not json\n", "bad request"),
        (b"[1, 2]\n", "a request is a JSON object"),
        (b'{"command": "kill", "node": true}\n', "node must be a node index"),
        (b'{"command": "format-disk"}\n', "unknown command"),
        (b"x" * 5_000 + b"\n", "longer than 4096 bytes"),
    ],
)
async def test_the_control_port_answers_hostile_requests_with_an_error(
    tmp_path: Path, request_bytes: bytes, complaint: str
) -> None:
    async with trio.open_nursery() as nursery:
        supervisor = Supervisor(tmp_path, [], nursery, lambda index: None)
        port = await nursery.start(supervisor.serve)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(request_bytes)
            with trio.fail_after(WAIT_S):
                answer = json.loads(await _read_line(stream))
        assert answer["ok"] is False
        assert complaint in answer["error"]
        nursery.cancel_scope.cancel()
