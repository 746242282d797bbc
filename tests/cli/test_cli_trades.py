"""`p2pchain wallet` trades against a real in-process testnet serving JSON-RPC: offers posted in
lots and taken by another key, a retirement and its certificate, a swap signed by two keys,
and one-line errors for bad flags."""

import json
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from p2pchain import TxStatus
from p2pchain.cli.commands import cli
from p2pchain.cli.config import write_key
from p2pchain.ledger.types import Amount, Height
from p2pchain.ledger.validation import BlockContext
from p2pchain.params import COIN
from p2pchain.rpc import serve_rpc
from p2pchain.testing.testnet import TESTNET_PARAMS, testnet

pytestmark = pytest.mark.timeout(120)
WAIT_S = 60.0


async def _run(*args: str) -> tuple[int, str]:
    """Invoke the CLI in a worker thread (it runs its own trio loop)."""
    result = await trio.to_thread.run_sync(partial(CliRunner().invoke, cli, list(args)))
    return result.exit_code, result.output


async def test_offers_retirements_and_swaps_from_the_wallet_cli(tmp_path: Path) -> None:
    params = replace(TESTNET_PARAMS, slot_ms=500)
    async with testnet(2, params=params) as net, trio.open_nursery() as nursery:
        node = net.nodes[0]
        server = await nursery.start(serve_rpc, node, "127.0.0.1", 0)
        rpc = ("--rpc", server.url)
        maker, buyer = net.wallets[0], net.wallets[1]
        maker_key, buyer_key = tmp_path / "maker.key", tmp_path / "buyer.key"
        write_key(maker_key, maker.key)
        write_key(buyer_key, buyer.key)
        head = node.head()
        issue, credit = maker.build_issue(
            node.utxos(maker.address), name=b"CO2-t", amount=Amount(1_000), fee=Amount(10_000),
            context=BlockContext(height=Height(head.height + 1), slot=head.slot + 1),
        )  # fmt: skip
        await node.submit_transaction(issue)
        with trio.fail_after(WAIT_S):
            await node.wait_for_status(issue.txid, TxStatus.INCLUDED)
        asset = "0x" + credit.hex()

        code, output = await _run(
            "wallet", "offer", "--key", str(maker_key), "--sell", f"{asset}:600",
            "--for", f"native:{6 * COIN}", "--lots", "2", *rpc,
        )  # fmt: skip
        assert code == 0, output
        ids = [line.split()[1] for line in output.splitlines()]
        assert len(ids) == 2, output
        code, output = await _run(
            "wallet", "offers", "--sell", asset, "--for", "native", "--json", *rpc
        )
        assert code == 0, output
        listed = json.loads(output)
        assert sorted(entry["offerId"] for entry in listed) == sorted(ids)
        assert {entry["offered"]["amount"] for entry in listed} == {"300"}
        assert {entry["wanted"]["amount"] for entry in listed} == {str(3 * COIN)}

        code, output = await _run("wallet", "take", ids[0], "--key", str(buyer_key), *rpc)
        assert code == 0, output
        taken = bytes.fromhex(output.strip()[2:])
        with trio.fail_after(WAIT_S):
            await node.wait_for_status(taken, TxStatus.INCLUDED)
        assert node.balance(buyer.address, credit) == 300
        code, output = await _run("wallet", "offers", "--sell", asset, "--for", "native", *rpc)
        assert code == 0, output
        assert ids[1] in output
        assert ids[0] not in output

        code, output = await _run(
            "wallet", "retire", "--key", str(buyer_key), "--asset", asset, "--amount", "120",
            "--beneficiary", "Acme Stahl GmbH", "--purpose", "scope 1, 2026", *rpc,
        )  # fmt: skip
        assert code == 0, output
        certificate = output.strip()
        with trio.fail_after(WAIT_S):
            await node.wait_for_status(bytes.fromhex(certificate[2:]), TxStatus.INCLUDED)
        code, output = await _run("wallet", "retirements", "--asset", asset, *rpc)
        assert code == 0, output
        assert output.startswith(f"{certificate} 120 for 'Acme Stahl GmbH': 'scope 1, 2026'")

        code, output = await _run(
            "wallet", "swap", "--key", str(maker_key), "--give", f"{asset}:50",
            "--get", f"native:{COIN}", "--with", buyer.address_text, *rpc,
        )  # fmt: skip
        assert code == 0, output
        raw = output.strip()
        code, output = await _run("rpc", "partial_inspect", raw, *rpc)
        assert json.loads(output)["signersNeeded"] == [buyer.address_text]
        code, output = await _run("wallet", "partial-sign", raw, "--key", str(buyer_key), *rpc)
        assert code == 0, output
        signed = output.splitlines()[0]
        assert "signed" in output.splitlines()[1]
        code, output = await _run("rpc", "partial_submit", signed, *rpc)
        assert code == 0, output
        with trio.fail_after(WAIT_S):
            await node.wait_for_status(bytes.fromhex(json.loads(output)[2:]), TxStatus.INCLUDED)
        assert node.balance(buyer.address, credit) == 300 - 120 + 50

        for bad in (
            ("wallet", "offer", "--key", str(maker_key), "--sell", "gold", "--for", "native:1"),
            ("wallet", "offer", "--key", str(maker_key), "--sell", f"{asset}:5", "--for",
             "native:1", "--lots", "2"),
            ("wallet", "take", "0x" + "00" * 32, "--key", str(buyer_key)),
            ("wallet", "partial-sign", "0xzz", "--key", str(buyer_key)),
        ):  # fmt: skip
            code, output = await _run(*bad, *rpc)
            assert code != 0, (bad, output)
            assert output.startswith("Error"), output
            assert len(output.strip().splitlines()) == 1, output
        nursery.cancel_scope.cancel()
