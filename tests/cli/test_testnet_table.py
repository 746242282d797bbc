"""The testnet table tells starting, failing and exited nodes apart, and never shows a dead
node's last numbers as if they were current."""

import io
import socket
from pathlib import Path

import trio
from rich.console import Console

from p2pchain.cli.control import NodeRunner
from p2pchain.cli.payments import PaymentTally
from p2pchain.cli.testnet import NodeStatus, _poll, _table


def _dead_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"ws://127.0.0.1:{probe.getsockname()[1]}"


def _render(statuses: list[NodeStatus], tally: PaymentTally) -> str:
    console = Console(file=io.StringIO(), width=200)
    console.print(_table(statuses, tally))
    return console.file.getvalue()  # type: ignore[attr-defined]


async def test_a_node_never_answered_is_starting_and_one_that_stopped_answering_shows_nothing(
    autojump_clock,
):
    """Both RPC ports refuse connections; the pollers retry for a few virtual seconds."""
    starting = NodeStatus(rpc_url=_dead_url())
    failing = NodeStatus(rpc_url=_dead_url(), height=987_653, finalized_epoch=9, peers=3, mempool=2)
    failing.answered = True
    with trio.move_on_after(3):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_poll, starting, NodeRunner(Path("node0.toml"), "info"))
            nursery.start_soon(_poll, failing, NodeRunner(Path("node1.toml"), "info"))
    assert failing.error == "not answering"
    assert starting.error == "starting"
    assert (failing.height, failing.finalized_epoch, failing.peers, failing.mempool) == (None,) * 4
    shown = _render([starting, failing], PaymentTally(sent=7, finalized=5))
    assert "starting" in shown
    assert "not answering" in shown
    assert "987653" not in shown
    assert "7 sent, 5 finalized" in shown


async def test_an_exited_node_shows_its_exit_code_and_no_numbers():
    status = NodeStatus(rpc_url=_dead_url(), height=987_654, finalized_epoch=2, peers=1, mempool=0)
    exited = NodeRunner(Path("node0.toml"), "info", exit_code=-9)
    await _poll(status, exited)  # returns at once for an exited node, clearing its numbers
    shown = _render([status], PaymentTally(sent=3, finalized=1, lost=1))
    assert "exited -9" in shown
    assert "987654" not in shown
    assert "1 lost" in shown
