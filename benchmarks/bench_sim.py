"""Simulated network: wall-clock seconds for 4 validator nodes to run 10 epochs in virtual time.

`p2pchain.testing.testnet` over a `SimulatedNetwork` on trio's `MockClock` (autojump) runs the
production node, gossip, sync and storage code; only the links and the clock are simulated.
How fast it runs decides how many scenarios a test suite or a fuzzer can afford. A payment is
submitted every slot so that blocks carry transactions. Goal: under 5 s of wall time, printed as
the ratio ``5 s / measured`` (goal >= 1). Baselines: the virtual seconds simulated and the
finalized epoch reached (it must keep up with the epochs, or the run measured a stalled chain).

Run alone: ``python -m benchmarks.bench_sim [--quick]``.
"""

from __future__ import annotations

import time

import trio
import trio.testing

from benchmarks.harness import Rate, Report, run_alone
from p2pchain.params import COIN
from p2pchain.testing.simnet import SimulatedNetwork
from p2pchain.testing.testnet import TESTNET_PARAMS, testnet

NODES = 4
GOAL_S = 5.0


async def simulate(epochs: int, seed: int) -> tuple[int, int]:
    """Run `NODES` validators for `epochs` epochs of virtual time with a payment every slot;
    return the lowest finalized epoch and the payments accepted."""
    slot_s = TESTNET_PARAMS.slot_ms / 1000
    slots = epochs * TESTNET_PARAMS.slots_per_epoch
    network = SimulatedNetwork(seed=seed, latency=(0.005, 0.05))
    accepted = 0
    async with testnet(NODES, transport=network, seed=seed) as net:
        for slot in range(slots):
            await trio.sleep(slot_s)
            if slot >= 1:
                payer = slot % len(net.wallets)
                payee = net.wallets[(payer + 1) % len(net.wallets)].address
                tx = net.transfer(payer, payee, COIN, node=slot % NODES)
                await net.node(slot % NODES).submit_transaction(tx)
                accepted += 1
        finalized = min(node.finalized().epoch for node in net.nodes)
    return finalized, accepted


def measure(epochs: int, repeat: int) -> tuple[Rate, int, int]:
    """Wall seconds of `repeat` runs (median, min, max), the finalized epoch and payments."""
    samples = []
    finalized = accepted = 0
    for seed in range(1, repeat + 1):
        start = time.perf_counter()
        finalized, accepted = trio.run(
            simulate, epochs, seed, clock=trio.testing.MockClock(autojump_threshold=0)
        )
        samples.append(time.perf_counter() - start)
    samples.sort()
    return (
        Rate(median=samples[len(samples) // 2], low=samples[0], high=samples[-1]),
        finalized,
        accepted,
    )


def run(quick: bool = False) -> Report:
    report = Report()
    epochs = 2 if quick else 10
    repeat = 1 if quick else 3
    print("simulated network", flush=True)
    seconds, finalized, accepted = measure(epochs, repeat)
    virtual = epochs * TESTNET_PARAMS.slots_per_epoch * TESTNET_PARAMS.slot_ms / 1000
    report.baseline(
        f"simulated {NODES} nodes, {epochs} epochs ({virtual:.0f} virtual s)",
        f"finalized epoch {finalized}, {accepted} payments",
    )
    report.baseline(
        f"wall seconds, {NODES} nodes x {epochs} epochs",
        f"{seconds.median:.2f} (min {seconds.low:.2f}, max {seconds.high:.2f})",
    )
    scaled_goal = GOAL_S * epochs / 10
    ratio = scaled_goal / seconds.median
    report.figure(
        f"sim {NODES} nodes x {epochs} epochs: {scaled_goal:g} s / wall seconds",
        ratio,
        ">= 1",
        ratio >= 1 and finalized >= epochs - 2,
        f"({seconds.median:.2f} s; finalized epoch {finalized})",
    )
    return report


if __name__ == "__main__":
    run_alone(run, __doc__)
