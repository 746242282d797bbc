"""`p2pchain testnet` end to end: separate node processes on loopback make blocks, accept the
demo payments and agree on the chain; a second run on the same directory resumes it."""

import contextlib
import io
import random
import socket
from pathlib import Path

import pytest
from rich.console import Console

from p2pchain.cli.testnet import run_testnet
from p2pchain.params import ChainParams

pytestmark = pytest.mark.timeout(120)


def _free_port_block(size: int) -> int:
    """A base port with `size` consecutive ports free right now, below the range the kernel
    picks connections' source ports from (a node or relay dialing out could take a port in it
    before the node meant to listen there has started)."""
    first_ephemeral = 32768
    with contextlib.suppress(OSError, ValueError):
        first_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(50):
        base = random.randrange(10_000, first_ephemeral - size)
        sockets = []
        try:
            for port in range(base, base + size):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
        return base
    raise RuntimeError("no free port block")


async def test_testnet_processes_make_and_agree_on_blocks(tmp_path: Path) -> None:
    base = _free_port_block(21)  # 6 node ports, 9 relay ports, 3 RPC, 3 metrics
    params = ChainParams(slot_ms=500, slots_per_epoch=4)
    kwargs = dict(
        nodes=3,
        params=params,
        tx_rate=4.0,
        log_level="info",
        base_port=base,
        rpc_port=base + 15,
        metrics_port=base + 18,
        console=Console(file=io.StringIO()),
    )
    result = await run_testnet(tmp_path, duration=12.0, **kwargs)
    first = result.statuses
    assert result.payments.sent >= 5
    assert result.payments.finalized >= 1  # the table counts what reached finality
    assert result.payments.lost == 0
    assert result.payments.finalized + len(result.payments.waiting) == result.payments.sent
    heights = [status.height for status in first]
    assert all(h is not None and h >= 5 for h in heights), [s.__dict__ for s in first]
    assert max(heights) - min(heights) <= 2  # type: ignore[operator]
    assert all(status.peers == 2 for status in first)
    assert all(status.exit_code is None for status in first)  # still running when stopped
    assert [s.metrics_url for s in first] == [
        f"http://127.0.0.1:{base + 18 + i}/metrics" for i in range(3)
    ]
    second = (await run_testnet(tmp_path, duration=8.0, **kwargs)).statuses
    assert all(
        s2.height is not None and s1.height is not None and s2.height > s1.height
        for s1, s2 in zip(first, second, strict=True)
    )
