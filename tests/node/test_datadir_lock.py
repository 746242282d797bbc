"""One data directory, one node: a second node on it stops with one clear line.

Two nodes on one directory once corrupted the database for good (`canonical block at height 90
is missing`) and got the honest node banned by its peers.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from p2pchain import open_node
from p2pchain.cli.commands import cli
from p2pchain.errors import StorageError
from p2pchain.node.datadir import LOCK_FILE, lock_data_dir
from p2pchain.testing.simnet import SimulatedNetwork
from p2pchain.testing.testnet import testnet

WAIT_S = 60


async def test_a_second_node_on_the_same_directory_is_refused(tmp_path, autojump_clock):
    async with testnet(1, transport=SimulatedNetwork(seed=3), data_dir=tmp_path) as net:
        running = net.nodes[0]
        config = running.config
        with pytest.raises(StorageError) as refused:
            async with open_node(config):
                pass
        message = str(refused.value)
        assert str(config.data_dir) in message
        assert f"process {os.getpid()}" in message
        # The first node is untouched: it goes on making blocks.
        height = running.head().height
        await trio.sleep(10)
        assert running.head().height > height
    # Once the first node stopped, the directory is free again.
    async with open_node(config) as again:
        assert again.head().height > height


def test_the_lock_is_released_when_its_holder_dies(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, pathlib, time\n"
            "from p2pchain.node.datadir import lock_data_dir\n"
            "with lock_data_dir(pathlib.Path(sys.argv[1])):\n"
            "    print('locked', flush=True)\n"
            "    time.sleep(120)\n",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with (
            pytest.raises(StorageError, match=f"in use by process {holder.pid}"),
            lock_data_dir(tmp_path),
        ):
            pass
    finally:
        holder.kill()
        holder.wait(timeout=WAIT_S)
    with lock_data_dir(tmp_path):  # killed: the OS released its lock, nothing stale remains
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())


def test_a_second_node_process_exits_with_one_line(tmp_path: Path):
    runner = CliRunner()
    init = runner.invoke(cli, ["init", "--dir", str(tmp_path), "--nodes", "1"])
    assert init.exit_code == 0, init.output
    config = tmp_path / "node0" / "node.toml"
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:0", config.read_text())  # any free ports
    config.write_text(text)
    command = [sys.executable, "-m", "p2pchain", "node", "--config", str(config)]
    first = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        lock = next((tmp_path / "node0").rglob(LOCK_FILE), None)
        deadline = time.monotonic() + WAIT_S
        while lock is None or not lock.read_text().strip():
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline, "the first node never took its lock"
            time.sleep(0.05)
            lock = next((tmp_path / "node0").rglob(LOCK_FILE), None)
        second = subprocess.run(command, capture_output=True, text=True, timeout=WAIT_S)
        assert second.returncode != 0
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert f"in use by process {first.pid}" in lines[0]
        assert str(lock.parent) in lines[0]
        assert first.poll() is None  # the first node is still running
    finally:
        first.terminate()
        first.wait(timeout=WAIT_S)
