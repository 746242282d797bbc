"""`p2pchain wallet propose / vote / proposals` against a real in-process node serving JSON-RPC
on a manual clock (slots happen when the test mines them): a proposal built for the chain's own
deposit and fee floor, a validator's vote paid by another wallet, the table, and the new value
in force after the activation epoch; bad settings refused in one line before connecting."""

import json
import socket
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner, Result

from p2pchain.cli.commands import cli
from p2pchain.cli.config import write_key
from p2pchain.params import COIN
from p2pchain.rpc import serve_rpc
from p2pchain.testing.testnet import TESTNET_PARAMS, testnet

pytestmark = pytest.mark.timeout(60)
# A deposit above the default and a fee floor above the CLI's default fee: a wallet that built
# with the default parameters would be refused (bad-proposal, fee-too-low).
PARAMS = replace(
    TESTNET_PARAMS, slots_per_epoch=2, gov_voting_epochs=1, gov_deposit=20 * COIN, min_fee_rate=60
)
NEW_REWARD = 3 * COIN


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


async def _run(*args: str) -> Result:
    """Invoke the CLI in a worker thread (it runs its own trio loop)."""
    return await trio.to_thread.run_sync(partial(_invoke, *args))


def _refused(result: Result, complaint: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: "), result.output
    assert complaint in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def _closed_port_url() -> str:
    """A ws:// URL nothing listens on: a command that connected would fail differently."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"ws://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        (("max_money=1",), "'max_money' is not governable"),
        (("gov_deposit=1",), "'gov_deposit' is not governable"),
        (("block_reward",), "is not NAME=VALUE"),
        (("block_reward=lots",), "'lots' is not a whole number"),
        (("block_reward=0",), "block_reward: 0 is outside 1.."),
        (("min_fee_rate=-1",), "min_fee_rate: -1 is outside 0..1000000"),
        (("max_block_txs=1",), "max_block_txs: 1 is outside 2..100000"),
        (("reward_maturity=5", "reward_maturity=6"), "reward_maturity given twice"),
    ],
)
def test_propose_refuses_bad_settings_in_one_line_before_connecting(
    tmp_path: Path, settings: tuple[str, ...], complaint: str
) -> None:
    sets = [arg for setting in settings for arg in ("--set", setting)]
    missing_key = str(tmp_path / "no.key")  # not read either: the settings are checked first
    result = _invoke("wallet", "propose", "--key", missing_key, *sets, "--rpc", _closed_port_url())
    _refused(result, complaint)
    assert result.output.startswith("Error: ConfigError: ")


async def test_propose_vote_and_list_from_the_wallet_cli(tmp_path: Path) -> None:
    async with (
        testnet(1, params=PARAMS, manual_clock=True) as net,
        trio.open_nursery() as nursery,
    ):
        node = net.nodes[0]
        server = await nursery.start(serve_rpc, node, "127.0.0.1", 0)
        rpc = ("--rpc", server.url)
        proposer, payer = net.wallets[0], net.wallets[1]
        keys = {"proposer": proposer.key, "payer": payer.key, "validator": net.validator_keys[0]}
        for name, key in keys.items():
            write_key(tmp_path / f"{name}.key", key)
        proposer_key, payer_key, validator_key = (str(tmp_path / f"{n}.key") for n in keys)
        await net.mine(1)
        assert (await _run("wallet", "proposals", *rpc)).output == "no proposals\n"

        result = await _run(
            "wallet", "propose", "--key", proposer_key, "--set", "block_reward=1", "--fee", "1",
            *rpc,
        )  # fmt: skip
        _refused(result, "--fee 1 is below the chain's floor")
        before = node.balance(proposer.address)
        result = await _run(
            "wallet", "propose", "--key", proposer_key, "--set", f"block_reward={NEW_REWARD}",
            "--refund", payer.address_text, *rpc,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        proposal = result.stdout.strip()
        epoch = (node.head().slot + 1) // PARAMS.slots_per_epoch
        activation = epoch + PARAMS.gov_voting_epochs + 2  # the default: one epoch of margin
        assert result.stderr == (
            f"proposal block_reward={NEW_REWARD} from epoch {activation};"
            " deposit 20.00000000 coins\n"
        )
        await net.mine(1)
        pending = node.get_transaction(bytes.fromhex(proposal[2:]))
        assert pending.status == "included", pending
        assert pending.tx is not None
        paid = before - node.balance(proposer.address)
        assert paid - PARAMS.gov_deposit >= PARAMS.min_fee_rate * pending.tx.size

        result = await _run("wallet", "proposals", *rpc)
        assert result.exit_code == 0, result.output
        header, row = result.output.splitlines()
        assert header.split() == [
            "PROPOSAL", "STATUS", "WINDOW", "ACTIVATION", "YES", "NO", "ABSTAIN", "VOTES",
            "CHANGES",
        ]  # fmt: skip
        window = f"{epoch + 1}..{epoch + PARAMS.gov_voting_epochs}"
        assert row.split() == [
            proposal, "voting", window, str(activation), "-", "-", "-", "0",
            f"block_reward={NEW_REWARD}",
        ]  # fmt: skip
        result = await _run("wallet", "proposals", "--status", "voting", "--json", *rpc)
        (listed,) = json.loads(result.output)
        assert (listed["proposalId"], listed["refund"]) == (proposal, payer.address_text)
        assert (await _run("wallet", "proposals", "--status", "passed", *rpc)).output == (
            "no proposals\n"
        )

        while (node.head().slot + 1) // PARAMS.slots_per_epoch < epoch + 1:  # the window opens
            await net.mine(1)
        result = await _run(
            "wallet", "vote", proposal, "yes", "--key", payer_key, "--validator-key",
            validator_key, *rpc,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        ballot = bytes.fromhex(result.output.strip()[2:])
        _refused(
            await _run("wallet", "vote", proposal, "no", "--key", payer_key, *rpc), "not-a-voter"
        )  # the payer's own key has no stake
        await net.mine(1)
        assert node.get_transaction(ballot).status == "included"
        result = await _run("wallet", "proposals", *rpc)
        assert result.output.splitlines()[1].split()[4:8] == ["100.0%", "0.0%", "0.0%", "1"]

        while (node.head().slot + 1) // PARAMS.slots_per_epoch < activation:
            await net.mine(1)
        result = await _run("rpc", "chain_params", *rpc)
        assert json.loads(result.output)["blockReward"] == NEW_REWARD
        result = await _run("wallet", "proposals", "--status", "enacted", *rpc)
        enacted = result.output.splitlines()[1].split()
        assert enacted[:2] == [proposal, "enacted"]
        assert enacted[4:8] == ["100.0%", "0.0%", "0.0%", "-"]  # the tally kept, not the votes
        _refused(
            await _run(
                "wallet", "vote", proposal, "yes", "--key", payer_key, "--validator-key",
                validator_key, *rpc,
            ),
            "is enacted: voting is over",
        )  # fmt: skip
        unknown = "0x" + "11" * 32
        _refused(
            await _run("wallet", "vote", unknown, "yes", "--key", payer_key, *rpc),
            "knows no proposal",
        )
        # a payment without --fee pays the floor (60 per byte, above the 10,000 default)
        before = node.balance(payer.address)
        result = await _run(
            "wallet", "send", "--key", payer_key, "--to", proposer.address_text, "--amount",
            str(COIN), *rpc,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        await net.mine(1)
        payment = node.get_transaction(bytes.fromhex(result.output.strip()[2:]))
        assert payment.status == "included", payment
        assert payment.tx is not None
        fee = before - COIN - node.balance(payer.address)
        assert fee == PARAMS.min_fee_rate * payment.tx.size > 10_000
        nursery.cancel_scope.cancel()
