"""`p2pchain testnet accounts` and `faucet` against a running node process of a network
directory: funded wallets with balances, node URLs and logs, and a payment on demand."""

import json
from functools import partial
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from p2pchain.cli.commands import cli
from p2pchain.cli.network import DEMO_WALLET_COINS
from p2pchain.params import COIN
from tests.robustness.harness import start_node

pytestmark = pytest.mark.timeout(120)


async def _run(*args: str) -> tuple[int, str]:
    result = await trio.to_thread.run_sync(partial(CliRunner().invoke, cli, list(args)))
    return result.exit_code, result.output


async def test_accounts_list_wallets_and_nodes_and_the_faucet_pays(tmp_path: Path) -> None:
    node = start_node(tmp_path)
    try:
        code, output = await _run("testnet", "accounts", "--dir", str(tmp_path), "--json")
        assert code == 0, output
        described = json.loads(output)
        assert [w["balance"] for w in described["wallets"]] == [str(DEMO_WALLET_COINS * COIN)] * 2
        assert [w["keyFile"] for w in described["wallets"]] == [
            str(p) for p in node.wallet_key_files
        ]
        (only,) = described["nodes"]
        assert only["rpcUrl"] == node.rpc_url
        assert only["log"] == str(node.log)
        code, text = await _run("testnet", "accounts", "--dir", str(tmp_path))
        assert code == 0, text
        assert described["wallets"][0]["address"] in text
        payee = described["wallets"][1]["address"]
        code, output = await _run("testnet", "faucet", "--dir", str(tmp_path), payee, str(COIN))
        assert code == 0, output
        info = await node.rpc("tx_get", output.strip())
        assert isinstance(info, dict)
        assert info["status"] == "pending"
        code, output = await _run("testnet", "faucet", "--dir", str(tmp_path), payee, "0")
        assert code == 2
        assert "Invalid value for 'AMOUNT'" in output
    finally:
        node.stop()


def test_accounts_of_a_directory_without_a_network_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["testnet", "accounts", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "holds no network" in result.output
    assert result.output.count("\n") == 1
