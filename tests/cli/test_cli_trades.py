"""`p2pchain wallet` trades against a real in-process testnet serving JSON-RPC: offers posted in
lots (coins split off first) and taken by another key, a retirement and its certificate, a
swap inspected, signed, combined and submitted, and one-line errors for what cannot be done."""

import json
from dataclasses import replace
from fractions import Fraction
from functools import partial
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner, Result

from p2pchain import TxStatus
from p2pchain.cli.commands import cli
from p2pchain.cli.config import write_key
from p2pchain.ledger.encoding import decode, encode
from p2pchain.ledger.partial import PartialTransaction
from p2pchain.ledger.types import Amount, Height
from p2pchain.ledger.validation import BlockContext
from p2pchain.params import COIN
from p2pchain.rpc import serve_rpc
from p2pchain.testing.testnet import TESTNET_PARAMS, testnet

pytestmark = pytest.mark.timeout(120)
WAIT_S = 60.0
NATIVE = "0x" + "00" * 32


async def _run(*args: str) -> Result:
    """Invoke the CLI in a worker thread (it runs its own trio loop)."""
    return await trio.to_thread.run_sync(partial(CliRunner().invoke, cli, list(args)))


def _refused(result: Result, complaint: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: "), result.output
    assert complaint in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


async def test_offers_retirements_and_swaps_from_the_wallet_cli(tmp_path: Path) -> None:
    params = replace(TESTNET_PARAMS, slot_ms=500)
    async with testnet(2, params=params) as net, trio.open_nursery() as nursery:
        node = net.nodes[0]
        server = await nursery.start(serve_rpc, node, "127.0.0.1", 0)
        rpc = ("--rpc", server.url)
        maker, buyer = net.wallets[0], net.wallets[1]
        maker_key, buyer_key = str(tmp_path / "maker.key"), str(tmp_path / "buyer.key")
        write_key(Path(maker_key), maker.key)
        write_key(Path(buyer_key), buyer.key)
        head = node.head()
        issue, credit = maker.build_issue(
            node.utxos(maker.address), name=b"CO2-t", amount=Amount(1_000), fee=Amount(10_000),
            context=BlockContext(height=Height(head.height + 1), slot=head.slot + 1),
        )  # fmt: skip
        await node.submit_transaction(issue)
        with trio.fail_after(WAIT_S):
            await node.wait_for_status(issue.txid, TxStatus.INCLUDED)
        asset = "0x" + credit.hex()

        # Two lots of 300 at 3 coins each: the maker holds one coin of 1000, so it splits first.
        result = await _run(
            "wallet", "offer", "--key", maker_key, "--sell", f"{asset}:600",
            "--for", f"native:{6 * COIN}", "--lots", "2", *rpc,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        lots = [line.removeprefix("offer ") for line in result.output.splitlines()]
        assert len(set(lots)) == 2, result.output
        # One more lot of 300, cheaper: the two coins of 300 are in the book, so a third is split.
        result = await _run(
            "wallet", "offer", "--key", maker_key, "--sell", f"{asset}:300",
            "--for", f"native:{2 * COIN}", *rpc,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        (cheap,) = [line.removeprefix("offer ") for line in result.output.splitlines()]
        result = await _run("wallet", "offers", "--sell", asset, "--for", "native", "--json", *rpc)
        assert result.exit_code == 0, result.output
        book = json.loads(result.output)
        assert book[0]["offerId"] == cheap
        assert sorted(entry["offerId"] for entry in book[1:]) == sorted(lots)
        assert [entry["wanted"]["amount"] for entry in book] == [str(n * COIN) for n in (2, 3, 3)]
        assert len({(entry["txid"], entry["index"]) for entry in book}) == 3  # three coins
        assert node.balance(maker.address, credit) == 1_000
        result = await _run("wallet", "offers", "--sell", asset, "--for", "native", *rpc)
        price = Fraction(2 * COIN, 300)
        assert result.output.splitlines()[0] == (
            f"{cheap} 300 for {2 * COIN} (price {price.numerator}/{price.denominator}) by"
            f" {maker.address_text}"
            f" until height {book[0]['until']}"
        )
        result = await _run("wallet", "offers", "--sell", "native", "--for", asset, *rpc)
        assert result.output == "no offers\n"

        result = await _run("wallet", "take", cheap, "--key", buyer_key, *rpc)
        assert result.exit_code == 0, result.output
        with trio.fail_after(WAIT_S):
            await node.wait_for_status(bytes.fromhex(result.output.strip()[2:]), TxStatus.INCLUDED)
        assert node.balance(buyer.address, credit) == 300
        result = await _run("wallet", "offers", "--sell", asset, "--for", "native", "--json", *rpc)
        assert sorted(entry["offerId"] for entry in json.loads(result.output)) == sorted(lots)
        _refused(
            await _run("wallet", "take", cheap, "--key", buyer_key, *rpc), "not in the node's book"
        )

        result = await _run(
            "wallet", "retire", "--key", buyer_key, "--asset", asset, "--amount", "120",
            "--beneficiary", "Acme Stahl GmbH", "--purpose", "scope 1, 2026", *rpc,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        certificate = result.output.strip()
        with trio.fail_after(WAIT_S):
            await node.wait_for_status(bytes.fromhex(certificate[2:]), TxStatus.INCLUDED)
        assert node.balance(buyer.address, credit) == 180
        result = await _run("wallet", "retirements", "--asset", asset, *rpc)
        assert result.exit_code == 0, result.output
        assert result.output.startswith(
            f"{certificate} 120 for 'Acme Stahl GmbH': 'scope 1, 2026' at height "
        )
        result = await _run("wallet", "retirements", "--asset", asset, "--json", *rpc)
        (record,) = json.loads(result.output)
        assert (record["certificate"], record["retiredBy"]) == (certificate, buyer.address_text)
        result = await _run("wallet", "retirements", "--asset", asset, "--offset", "1", *rpc)
        assert result.output == "no retirements\n"

        # The maker gives 50 credits for one coin; the buyer checks, signs, and submits.
        result = await _run(
            "wallet", "swap", "--key", maker_key, "--give", f"{asset}:50",
            "--get", f"native:{COIN}", "--with", buyer.address_text, *rpc,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        offered = result.output.strip()
        result = await _run("wallet", "partial", "inspect", offered, *rpc)
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert f"  {buyer.address_text}: -{COIN} {NATIVE}, +50 {asset}" in lines
        assert f"  {maker.address_text}: {COIN - 10_000:+d} {NATIVE}, -50 {asset}" in lines
        assert lines[-1] == f"needs signatures of: {buyer.address_text}"
        assert not any("WARNING" in line for line in lines)
        result = await _run("wallet", "partial", "inspect", offered, "--json", *rpc)
        assert json.loads(result.output)["signersNeeded"] == [buyer.address_text]
        _refused(await _run("wallet", "partial", "submit", offered, *rpc), "unsigned-input")
        _refused(
            await _run("wallet", "partial", "sign", offered, "--key", maker_key, *rpc),
            "owns none of the unsigned inputs",
        )
        # A builder's lie about the buyer's coin: the buyer's sign refuses it.
        swap = decode(PartialTransaction, bytes.fromhex(offered[2:]))
        (theirs,) = [i for i, o in enumerate(swap.spent) if o.address == buyer.address]
        spent = list(swap.spent)
        spent[theirs] = replace(spent[theirs], amount=Amount(spent[theirs].amount - 1))
        lie = "0x" + encode(replace(swap, spent=tuple(spent))).hex()
        result = await _run("wallet", "partial", "inspect", lie, *rpc)
        assert f"WARNING: input {theirs} spends no such coin" in result.output
        _refused(
            await _run("wallet", "partial", "sign", lie, "--key", buyer_key, *rpc),
            f"input {theirs} claims an output",
        )

        result = await _run("wallet", "partial", "sign", offered, "--key", buyer_key, *rpc)
        assert result.exit_code == 0, result.output
        signed = result.stdout.strip()
        assert result.stderr == "signed 1 input(s)\n"
        assert decode(PartialTransaction, bytes.fromhex(signed[2:])).missing() == []
        # The buyer's signature alone, on a copy without the maker's, combines with the maker's.
        alone = PartialTransaction.unsigned(swap.tx, swap.spent).sign(buyer.key, params.chain_id)
        result = await _run("wallet", "partial", "combine", offered, "0x" + encode(alone[0]).hex())
        assert result.exit_code == 0, result.output
        assert result.output.strip() == signed
        result = await _run("wallet", "partial", "inspect", signed, *rpc)
        assert result.output.splitlines()[-1] == "signed"
        result = await _run("wallet", "partial", "submit", signed, *rpc)
        assert result.exit_code == 0, result.output
        assert result.output.strip() == "0x" + swap.tx.txid.hex()
        with trio.fail_after(WAIT_S):
            await node.wait_for_status(swap.tx.txid, TxStatus.INCLUDED)
        assert node.balance(buyer.address, credit) == 180 + 50
        nursery.cancel_scope.cancel()
