"""Fuzz a consensus rule of your own with hypothesis and p2pchain's shipped test kit.

Run it with ``python examples/fuzz_consensus.py [--examples N] [--epochs E] [--seed S]``.

The property: *with less than a third of the stake hostile, the fork-choice head always
descends from the finalized checkpoint, and finality never goes back.* Hypothesis draws the
stakes, which validator turns hostile, and, every slot, what the hostile validator does:
blocks on stale parents, double proposals, votes for random heads with random sources (double
and surround votes). `p2pchain.testing.consensus.Simulation` runs the honest validators and
feeds everything to the pure fork choice, exactly as a node would.

Every run prints its seed; ``--seed S`` replays it example for example. Add ``--false-claim``
to check a claim that does not hold ("hostile blocks are never accepted"): hypothesis finds a
counterexample, shrinks it, and the script prints the command that replays it.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from p2pchain.consensus import get_head
from p2pchain.ledger.block import Block
from p2pchain.ledger.types import BlockId
from p2pchain.ledger.vote import Vote
from p2pchain.params import COIN
from p2pchain.testing.consensus import Simulation, adversarial_blocks, adversarial_votes


@dataclass
class Summary:
    """What the fuzzer exercised, over every example hypothesis ran."""

    examples: int = 0
    slots: int = 0
    hostile_blocks: int = 0
    hostile_blocks_accepted: int = 0
    hostile_votes: int = 0
    hostile_votes_accepted: int = 0
    highest_finalized: int = 0


def descends_from(parents: dict[BlockId, BlockId], block: BlockId, ancestor: BlockId) -> bool:
    """True if `ancestor` is `block` or on its chain of parents (genesis has no entry)."""
    current: BlockId | None = block
    while current is not None:
        if current == ancestor:
            return True
        current = parents.get(current)
    return False


def fuzz_test(epochs: int, summary: Summary, false_claim: bool) -> Callable[[], None]:
    """The hypothesis test: a whole simulated run per example, checked after every slot."""

    @given(
        honest=st.lists(st.integers(min_value=1, max_value=10), min_size=3, max_size=5),
        data=st.data(),
    )
    def test(honest: list[int], data: st.DataObject) -> None:
        # The hostile stake stays strictly below a third of the total: 2 * hostile < honest.
        most = (sum(honest) - 1) // 2
        hostile = data.draw(st.integers(min_value=1, max_value=most), label="hostile stake")
        sim = Simulation.create([stake * COIN for stake in [*honest, hostile]])
        hostile_key = list(sim.keys.values())[-1]
        sim.hostile = {hostile_key.public_key}
        offered: list[Block | Vote] = []

        def adversary(sim: Simulation, slot: int) -> list[Block | Vote]:
            messages: list[Block | Vote] = [
                *data.draw(adversarial_blocks(sim, slot), label=f"hostile blocks at {slot}"),
                *data.draw(adversarial_votes(sim, [hostile_key], slot), label=f"votes at {slot}"),
            ]
            offered.extend(messages)
            return messages

        sim.adversary = adversary
        parents: dict[BlockId, BlockId] = {}
        finalized_epoch = 0
        while sim.slot < epochs * sim.params.slots_per_epoch - 1:
            known = len(sim.messages)
            sim.run_slot()
            summary.slots += 1
            for message in sim.messages[known:]:  # what the fork choice accepted this slot
                if isinstance(message, Block):
                    parents[message.block_id] = message.header.parent
            finalized = sim.store.finalized_checkpoint
            head = get_head(sim.store)
            # The property under test.
            assert descends_from(parents, head, finalized.block_id), (
                f"slot {sim.slot}: head {head.hex()[:12]} does not descend from the "
                f"finalized block {finalized.block_id.hex()[:12]}"
            )
            assert finalized.epoch >= finalized_epoch, "finality went back"
            finalized_epoch = finalized.epoch
            if false_claim:
                # Wrong on purpose: hostile blocks are valid blocks, so they do get in.
                hostile_blocks = {id(m) for m in offered if isinstance(m, Block)}
                assert not hostile_blocks & set(map(id, sim.messages)), (
                    f"slot {sim.slot}: a hostile block was accepted"
                )

        delivered = set(map(id, sim.messages))
        blocks = [m for m in offered if isinstance(m, Block)]
        votes = [m for m in offered if isinstance(m, Vote)]
        summary.examples += 1
        summary.hostile_blocks += len(blocks)
        summary.hostile_blocks_accepted += sum(id(b) in delivered for b in blocks)
        summary.hostile_votes += len(votes)
        summary.hostile_votes_accepted += sum(id(v) in delivered for v in votes)
        summary.highest_finalized = max(summary.highest_finalized, finalized_epoch)

    return test


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=25, help="hypothesis max_examples")
    parser.add_argument("--epochs", type=int, default=4, help="epochs simulated per example")
    parser.add_argument("--seed", type=int, default=None, help="replay the run with this seed")
    parser.add_argument("--false-claim", action="store_true", help="see a failure and replay")
    args = parser.parse_args(argv)
    run_seed = random.randrange(2**32) if args.seed is None else args.seed
    replay = f"python examples/fuzz_consensus.py --seed {run_seed} --examples {args.examples}"
    if args.epochs != 4:
        replay += f" --epochs {args.epochs}"
    if args.false_claim:
        replay += " --false-claim"
    print(f"fuzzing {args.examples} examples of {args.epochs} epochs, seed {run_seed}")

    summary = Summary()
    test = fuzz_test(args.epochs, summary, args.false_claim)
    configured = settings(
        max_examples=args.examples,
        deadline=None,  # one example signs dozens of blocks and votes
        database=None,  # replay by seed instead of hypothesis' example database
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )(test)
    try:
        seed(run_seed)(configured)()
    except AssertionError as exc:
        # Hypothesis attaches the shrunk falsifying example to the error as notes.
        for note in getattr(exc, "__notes__", []):
            print(note)
        print(f"\nFAILED: {exc}")
        print(f"replay with: {replay}")
        return 1
    print(
        f"\nproperty held in {summary.examples} examples ({summary.slots} slots)\n"
        f"  hostile blocks: {summary.hostile_blocks} offered, "
        f"{summary.hostile_blocks_accepted} accepted by the fork choice\n"
        f"  hostile votes:  {summary.hostile_votes} offered, "
        f"{summary.hostile_votes_accepted} accepted\n"
        f"  highest finalized epoch: {summary.highest_finalized}\n"
        f"replay with: {replay}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
