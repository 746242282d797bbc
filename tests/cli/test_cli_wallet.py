"""`p2pchain wallet` against a real in-process testnet serving JSON-RPC: keys, payments, asset
issue and balances end to end, and one-line errors."""

import json
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from p2pchain.cli.commands import cli
from p2pchain.cli.config import write_key
from p2pchain.params import COIN
from p2pchain.rpc import serve_rpc
from p2pchain.testing.testnet import TESTNET_PARAMS, testnet

pytestmark = pytest.mark.timeout(120)


async def _run(*args: str) -> tuple[int, str]:
    """Invoke the CLI in a worker thread (it runs its own trio loop)."""
    result = await trio.to_thread.run_sync(partial(CliRunner().invoke, cli, list(args)))
    return result.exit_code, result.output


async def test_wallet_commands_pay_issue_and_report_balances(tmp_path: Path) -> None:
    params = replace(TESTNET_PARAMS, slot_ms=500)
    async with testnet(3, params=params) as net, trio.open_nursery() as nursery:
        server = await nursery.start(serve_rpc, net.nodes[0], "127.0.0.1", 0)
        rpc = ("--rpc", server.url)
        payer_key = tmp_path / "payer.key"
        write_key(payer_key, net.wallets[0].key)
        code, output = await _run("wallet", "new", "--out", str(tmp_path / "new.key"))
        assert code == 0, output
        payee = output.strip()
        assert payee.startswith(params.address_prefix + "1")
        code, output = await _run("wallet", "address", "--key", str(payer_key), *rpc)
        assert (code, output.strip()) == (0, net.wallets[0].address_text)
        code, output = await _run("rpc", "chain_head", *rpc)
        assert code == 0, output
        assert json.loads(output)["height"] == net.nodes[0].head().height
        code, output = await _run("rpc", "address_utxos", net.wallets[0].address_text, "1", *rpc)
        assert code == 0, output
        assert len(json.loads(output)) == 1  # the limit went through as a number
        code, output = await _run("rpc", "no_such_method", *rpc)
        assert code == 1
        assert output.startswith("Error: RpcError")
        assert len(output.strip().splitlines()) == 1
        code, output = await _run("wallet", "address", "--key", str(payer_key))  # offline
        assert (code, output.strip()) == (0, net.wallets[0].address_text)
        code, output = await _run("wallet", "address", "--key", str(payer_key), "--json")
        assert code == 0, output
        assert json.loads(output) == {
            "address": net.wallets[0].address_text,
            "publicKey": net.wallets[0].key.public_key.hex(),
        }
        code, output = await _run("wallet", "balance", payee, *rpc)
        assert (code, output.strip()) == (0, f"{payee} holds nothing")

        code, output = await _run(
            "wallet", "send", "--key", str(payer_key), "--to", payee,
            "--amount", str(3 * COIN), "--wait", *rpc,
        )  # fmt: skip
        assert code == 0, output
        assert "finalized" in output
        code, output = await _run("wallet", "balance", payee, *rpc)
        assert code == 0, output
        assert output.split() == ["native", "3.00000000", "coins"]
        code, output = await _run("wallet", "balance", payee, "--base-units", *rpc)
        assert output.split() == ["0x" + "00" * 32, str(3 * COIN)]
        code, output = await _run("wallet", "balance", payee, "--json", *rpc)
        assert json.loads(output) == {"0x" + "00" * 32: str(3 * COIN)}

        code, output = await _run(
            "wallet", "issue-asset", "--key", str(payer_key), "--name", "CO2-t",
            "--amount", "700", "--cap", "1000", "--wait", *rpc,
        )  # fmt: skip
        assert code == 0, output
        asset = output.splitlines()[0].removeprefix("asset ")
        code, output = await _run("wallet", "balance", net.wallets[0].address_text, *rpc)
        assert f"{asset} 700" in output.splitlines()

        code, output = await _run(
            "wallet", "send", "--key", str(payer_key), "--to", "dp2p1notanaddress",
            "--amount", "1", *rpc,
        )  # fmt: skip
        assert code == 1
        assert output.startswith("Error: InvalidAddress")
        assert len(output.strip().splitlines()) == 1
        nursery.cancel_scope.cancel()


def test_unreachable_node_is_one_line() -> None:
    result = CliRunner().invoke(cli, ["wallet", "balance", "x", "--rpc", "ws://127.0.0.1:1"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert "Traceback" not in result.output


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    import socket

    assert CliRunner().invoke(cli, ["init", "--dir", str(tmp_path), "--nodes", "1"]).exit_code == 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "node0" / "node.toml"
        text = config.read_text()
        config.write_text(text.replace("tcp://127.0.0.1:30300", f"tcp://127.0.0.1:{port}"))
        result = CliRunner().invoke(cli, ["node", "--config", str(config)])
    assert result.exit_code == 1
    assert f"cannot listen on tcp://127.0.0.1:{port}: Address already in use" in result.output
    assert len(result.output.strip().splitlines()) == 1
