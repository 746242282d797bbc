"""Every script in examples/ runs as a user would run it, exits 0 and prints what it promises."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TIMEOUT_S = 60


def run_example(name, *args):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=EXAMPLES.parent,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


@pytest.mark.timeout(TIMEOUT_S + 10)
def test_embed_node_pays_and_waits_for_finality():
    code, out = run_example("embed_node.py")
    assert code == 0, out
    assert "connected to 3 peers" in out
    assert re.search(r"submitted payment [0-9a-f]{16}: pending", out)
    assert re.search(r"finalized in block [0-9a-f]{16} at height \d+", out)
    # 25 coins moved, plus a 0.0001 fee paid by the payer.
    assert re.search(r"payer dp2p1\w+: 974\.99990000\n", out), out
    assert re.search(r"payee dp2p1\w+: 25\.00000000\n", out), out
    assert out.rstrip().endswith("node closed")


@pytest.mark.timeout(TIMEOUT_S + 10)
def test_light_wallet_proves_its_balance_and_payment():
    code, out = run_example("light_wallet.py")
    assert code == 0, out
    assert re.search(r"verified finality up to epoch [1-9]\d*, height \d+", out), out
    assert "proven balance: 12.00000000\n" in out
    assert re.search(r"payment proven in block [0-9a-f]{16} at height \d+", out)
    assert "validators: 3, bonded 300.00000000" in out
    assert out.rstrip().endswith("light client closed")


@pytest.mark.timeout(TIMEOUT_S + 10)
def test_local_testnet_finalizes_epochs_on_every_node():
    code, out = run_example("local_testnet.py", "--epochs", "2")
    assert code == 0, out
    assert len(re.findall(r"node\d listening on tcp://127\.0\.0\.1:\d+", out)) == 4
    assert "all 4 nodes connected" in out
    epochs = [int(e) for e in re.findall(r"\] finalized epoch (\d+)", out)]
    assert epochs == sorted(set(epochs)), out
    assert epochs[-1] >= 2, out
    rows = re.findall(r"^node\d\s+(\d+)\s+[0-9a-f]{12}\s+(\d+)\s+(\d+)\s+(\d+)$", out, re.M)
    assert len(rows) == 4
    assert all(int(finalized) >= 2 and int(peers) == 3 for _, _, finalized, peers in rows)
    assert "canonical on 4/4 nodes" in out


@pytest.mark.timeout(TIMEOUT_S + 10)
def test_carbon_credits_offers_trades_retires_and_caps():
    code, out = run_example("carbon_credits.py")
    assert code == 0, out
    steps = out.split("\n\n")
    expected = [
        ("issued 6000", "issued 6000 of cap 10000", 6000, 0, 0),
        ("split 3000 t into 6 lots of 500 t", "issued 6000 of cap 10000", 6000, 0, 0),
        ("buyer took 3 lots (1500 t at 12 coin/t)", "issued 6000 of cap 10000", 4500, 1500, 0),
        (
            "offsetter took 2 lots (1000 t at 15 coin/t)",
            "issued 6000 of cap 10000",
            3500,
            1500,
            1000,
        ),
        ("offsetter retired 250 t", "issued 6000 of cap 10000", 3500, 1500, 750),
        ("minted 4000 t", "issued 10000 of cap 10000", 7500, 1500, 750),
    ]
    trades = [s for s in steps if "finalized at height" in s]
    assert len(trades) == len(expected), out
    for step, (action, supply, registry, buyer, offsetter) in zip(trades, expected, strict=True):
        assert action in step, step
        assert supply in step, step
        assert re.search(rf"registry\s+{registry} t CO2", step), step
        assert re.search(rf"buyer\s+{buyer} t CO2", step), step
        assert re.search(rf"offsetter\s+{offsetter} t CO2", step), step
    book = re.findall(r"^  offer [0-9a-f]{12}  500 t  at\s+(\d+\.\d\d) coin/t", out, re.M)
    assert book == ["12.00"] * 3 + ["15.00"] * 3, out
    assert "the registry was paid exactly 18,000.0000 coin and buyer got 1500 t" in out
    assert "the registry was paid exactly 15,000.0000 coin and offsetter got 1000 t" in out
    assert re.search(
        r"certificate [0-9a-f]{64}\n\s+250 t retired by offsetter at height \d+"
        r" for Acme Stahl GmbH: 2026 scope 1",
        out,
    ), out
    assert "minting 1 t more was rejected: cap-exceeded" in out
    assert "status on node 0: rejected" in out
    assert "held 9750 t + retired 250 t = issued 10000 t" in out
    assert (
        "registry: 32,999.9997 coin = 33,000.0000 coin from taken offers - 0.0003 coin in fees"
        in out
    )


@pytest.mark.timeout(TIMEOUT_S + 10)
def test_governance_passes_a_lower_block_reward_and_enacts_it_on_every_node():
    code, out = run_example("governance.py")
    assert code == 0, out
    steps = out.split("\n\n")
    assert "block_reward in force for the next block (epoch 0): 5.00000000 coin" in out
    proposed = re.search(r"registry proposes block_reward = 2\.00000000 coin from epoch (\d+)", out)
    assert proposed, out
    activation = proposed.group(1)
    assert "registry paid the 10.00000000 coin deposit and a 0.00010000 coin fee" in out
    assert "tally so far: yes 200.00000000 coin, no 100.00000000 coin, abstain 0.00000000" in out
    # tallied: quorum, so the deposit is back; the old reward stays until the activation epoch
    closed = next(s for s in steps if "the window closed" in s)
    assert "passed (turnout 100.00 %, yes 66.67 % of yes + no)" in closed, closed
    assert re.search(
        r"block \d+ paid its proposer 5\.00000000 coin and returned the 10\.00000000 coin"
        r" deposit to registry",
        closed,
    ), closed
    assert re.search(r"block_reward in force for the next block \(epoch \d+\): 5\.0+ coin", closed)
    enacted = next(s for s in steps if "enacted" in s)
    assert enacted.startswith(f"epoch {activation}: proposal "), enacted
    in_force = re.findall(r"block_reward in force on node (\d): (\S+) coin", enacted)
    assert in_force == [("0", "2.00000000"), ("1", "2.00000000"), ("2", "2.00000000")], out
    assert re.search(
        rf"block \d+ \(epoch {activation}\) paid its proposer 2\.00000000 coin", enacted
    )
    assert out.rstrip().endswith("block_reward: 5.00000000 coin before, 2.00000000 coin after")


@pytest.mark.timeout(TIMEOUT_S + 10)
def test_fuzz_consensus_holds_and_replays_by_seed():
    args = ("--examples", "6", "--seed", "11")
    code, out = run_example("fuzz_consensus.py", *args)
    assert code == 0, out
    assert "property held in 6 examples" in out
    offered = re.search(r"hostile blocks: (\d+) offered", out)
    assert offered, out
    assert int(offered.group(1)) > 0, out
    assert "replay with: python examples/fuzz_consensus.py --seed 11 --examples 6" in out
    _, again = run_example("fuzz_consensus.py", *args)
    assert again == out


@pytest.mark.timeout(TIMEOUT_S + 10)
def test_fuzz_consensus_reports_a_false_claim_with_its_replay_command():
    code, out = run_example("fuzz_consensus.py", "--examples", "10", "--seed", "1", "--false-claim")
    assert code == 1, out
    assert "Failing test case" in out or "Falsifying example" in out, out
    assert re.search(r"FAILED: slot \d+: a hostile block was accepted", out)
    assert (
        "replay with: python examples/fuzz_consensus.py --seed 1 --examples 10 --false-claim" in out
    )
