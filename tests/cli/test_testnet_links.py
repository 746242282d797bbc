"""Link faults of a running testnet (real node processes, links through the supervisor's
relays): a 2|2 partition splits the chain and stops finality, heal joins it again; a 3|1
partition lets the majority finalize alone; delay and loss slow links without stopping it."""

import io
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner
from rich.console import Console

from p2pchain.cli.commands import cli
from p2pchain.cli.config import load_node
from p2pchain.cli.control import RemoteTestnet, control
from p2pchain.cli.network import relay_bootnodes
from p2pchain.cli.rpc_client import connect_rpc
from p2pchain.cli.testnet import run_testnet
from p2pchain.errors import ConfigError
from p2pchain.params import ChainParams
from tests.cli.test_testnet_control import _until
from tests.cli.test_testnet_processes import _free_port_block

pytestmark = pytest.mark.timeout(240)
NODES = 4


async def _views(urls):
    """(head id, height, finalized epoch) of every node."""
    views = []
    for url in urls:
        async with connect_rpc(url) as rpc:
            head = await rpc.call("chain_head")
            finalized = await rpc.call("chain_finalized")
        views.append((head["blockId"], int(head["height"]), int(finalized["epoch"])))
    return views


async def test_partition_heal_delay_and_loss_on_a_running_testnet(tmp_path: Path) -> None:
    base = _free_port_block(2 * NODES + NODES * NODES + NODES)
    rpc_port = base + 2 * NODES + NODES * NODES
    urls = [f"ws://127.0.0.1:{rpc_port + i}" for i in range(NODES)]
    params = ChainParams(slot_ms=500, slots_per_epoch=4)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: run_testnet(
                tmp_path,
                nodes=NODES,
                params=params,
                tx_rate=0.0,
                duration=None,
                log_level="info",
                base_port=base,
                rpc_port=rpc_port,
                console=Console(file=io.StringIO()),
            )
        )

        async def finalized_everywhere() -> bool:
            return min(view[2] for view in await _views(urls)) >= 1

        await _until(finalized_everywhere, "all four nodes finalize")
        for index in range(NODES):  # every link is a relay; nobody announces an address
            node_file = load_node(tmp_path / f"node{index}" / "node.toml")
            assert node_file.bootnodes == relay_bootnodes(base, NODES, index)
            assert node_file.advertise == ()

        net = RemoteTestnet(tmp_path)  # the calls an in-process testnet answers too
        await net.partition([0, 1], [2, 3])
        answer = await net.status()
        assert answer["links"]["partition"] == [[0, 1], [2, 3]]  # type: ignore[index, call-overload]
        split = await _views(urls)

        async def diverged() -> bool:
            views = await _views(urls)
            left, right = views[0], views[2]
            return (
                left[0] != right[0]
                and left[1] > max(v[1] for v in split) + 1
                and right[1] > max(v[1] for v in split) + 1
            )

        await _until(diverged, "both halves of a 2|2 split keep making their own blocks")
        # Half the stake on each side is short of 2/3: no side can finalize past the split.
        assert max(v[2] for v in await _views(urls)) <= max(v[2] for v in split) + 1

        await net.heal()
        healed_at = max(v[2] for v in await _views(urls))

        async def converged_and_finalizing() -> bool:
            views = await _views(urls)
            return len({v[0] for v in views}) == 1 and min(v[2] for v in views) >= healed_at + 2

        await _until(converged_and_finalizing, "one head and finality two epochs on after heal")

        await net.partition([3])
        minority = (await _views(urls))[3][2]

        async def majority_finalizes() -> bool:
            return min(v[2] for v in (await _views(urls))[:3]) >= minority + 2

        await _until(majority_finalizes, "three of four validators finalize without the fourth")
        assert (await _views(urls))[3][2] <= minority + 1  # a quarter of the stake cannot
        await net.heal()

        await net.delay(2, 100)
        await net.drop(2, 10)
        answer = await net.status()
        assert answer["links"]["delayMs"] == {"2": 100}  # type: ignore[index, call-overload]
        assert answer["links"]["lossPercent"] == {"2": 10.0}  # type: ignore[index, call-overload]
        slowed = min(v[2] for v in await _views(urls))

        async def still_finalizing() -> bool:
            views = await _views(urls)
            return min(v[2] for v in views) >= slowed + 2

        await _until(still_finalizing, "finality goes on with a slow, lossy node")
        for bad, complaint in (
            ({"command": "partition", "groups": [[0, 1], [1, 2]]}, "two groups"),
            ({"command": "partition", "groups": [[0, 9]]}, "no node 9"),
            ({"command": "partition", "groups": "0,1"}, "list of lists"),
            ({"command": "delay", "node": 1, "ms": -5}, "delay must be"),
            ({"command": "drop", "node": 1, "percent": 100}, "below 100"),
            ({"command": "drop", "node": 1, "percent": True}, "must be a number"),
        ):
            with pytest.raises(ConfigError, match=complaint):
                await control(tmp_path, bad)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("delay", "1", "fast"), "is not a duration"),
        (("delay", "1", "90s"), "between 0 and 60s"),
        (("drop", "1", "100%"), "below 100%"),
        (("drop", "1", "ten"), "not a percentage"),
        (("partition", "0,x", "1"), "not a list of node indices"),
    ],
)
def test_link_fault_arguments_are_checked_before_asking_the_supervisor(
    tmp_path: Path, args: tuple[str, ...], complaint: str
) -> None:
    result = CliRunner().invoke(cli, ["testnet", *args, "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert complaint in result.output
    assert "Traceback" not in result.output


def test_link_faults_without_a_supervisor_are_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["testnet", "heal", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "no testnet supervisor is running" in result.output
