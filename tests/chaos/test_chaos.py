"""Chaos runs against real node processes (`harness.ChaosRun`): SIGKILLs at random moments,
right after an acknowledgement and during recovery; 2|2 and 3|1 partitions held and healed;
link delay and loss; clock skew within and beyond the tolerance; payments all the while.

The quick run is a few cycles of each fault (CI); `pytest -m soak tests/chaos` runs at least
200 kills and 20 partitions and prints the figures docs/security.md records.
`P2PCHAIN_CHAOS_SEED=N` replays a schedule.
"""

import os
from pathlib import Path

import pytest

from tests.chaos.harness import BEYOND_SKEW_MS, NODES, TOLERATED_SKEW_MS, ChaosRun

SEED = int(os.environ.get("P2PCHAIN_CHAOS_SEED", "1"))
SOAK_KILLS = 200
SOAK_PARTITIONS = 20


def _split(run: ChaosRun) -> tuple[list[int], list[int]]:
    """A random 2|2 or 3|1 split of the nodes."""
    nodes = list(range(NODES))
    run.random.shuffle(nodes)
    cut = run.random.choice([1, 2])
    return sorted(nodes[:cut]), sorted(nodes[cut:])


async def _one_of_each(run: ChaosRun) -> None:
    pick = run.random.randrange
    await run.kill_and_restart(pick(NODES), down_s=run.random.uniform(0, 2))
    await run.kill_right_after_ack(pick(NODES))
    await run.partition([0, 1], [2, 3], epochs=2)
    await run.kill_during_recovery(pick(NODES), after_s=run.random.uniform(0.2, 2))
    lone = pick(NODES)
    await run.partition([lone], [n for n in range(NODES) if n != lone], epochs=2)
    await run.degrade(pick(NODES), delay_ms=200, loss_percent=10, epochs=1)
    await run.skew(pick(NODES), TOLERATED_SKEW_MS, epochs=1)
    await run.skew(pick(NODES), BEYOND_SKEW_MS, epochs=1.5)
    await run.kill_and_restart(pick(NODES), down_s=0)


@pytest.mark.timeout(600)
async def test_a_quick_chaos_run_keeps_every_promise(tmp_path: Path) -> None:
    figures = await ChaosRun(tmp_path, SEED).run(_one_of_each, rate=2.0)
    assert figures.kills >= 5
    assert figures.kills_after_ack == 1
    assert figures.partitions == 2
    assert figures.acknowledged > 50
    assert figures.lost == 0
    assert figures.conflicting_finality == 0


async def _soak(run: ChaosRun) -> None:
    figures = run.figures
    pick = run.random.randrange
    while figures.kills < SOAK_KILLS or figures.partitions < SOAK_PARTITIONS:
        choice = run.random.random()
        if figures.partitions < SOAK_PARTITIONS and choice < 0.12:
            await run.partition(*_split(run), epochs=run.random.uniform(1.5, 3))
        elif choice < 0.2:
            await run.degrade(pick(NODES), delay_ms=pick(400), loss_percent=pick(20), epochs=1)
        elif choice < 0.25:
            skew = run.random.choice([TOLERATED_SKEW_MS, -TOLERATED_SKEW_MS, BEYOND_SKEW_MS])
            await run.skew(pick(NODES), skew, epochs=1)
        elif choice < 0.45:
            await run.kill_right_after_ack(pick(NODES))
        elif choice < 0.6:
            await run.kill_during_recovery(pick(NODES), after_s=run.random.uniform(0.1, 3))
        else:
            await run.kill_and_restart(pick(NODES), down_s=run.random.uniform(0, 3))


@pytest.mark.soak
@pytest.mark.timeout(7200)
async def test_a_soak_chaos_run_keeps_every_promise(tmp_path: Path) -> None:
    figures = await ChaosRun(tmp_path, SEED).run(_soak, rate=2.0)
    assert figures.kills >= SOAK_KILLS
    assert figures.partitions >= SOAK_PARTITIONS
    assert figures.lost == 0
