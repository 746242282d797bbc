"""Fork choice: cost of one vote plus one head lookup as the block tree grows.

The tree is built directly at the proto-array level (`ProtoArray.add_block`): each new block
picks its parent among the 16 most recent ones, so the tree is bushy near the tips and deep
(about N/8 levels) overall, and nothing is ever finalized or pruned. 10^4 validators vote for
recent blocks. One measured operation is what `on_vote` plus `get_head` do to the tree: move one
validator's weight from its old head to a random recent block, then find the head from the
root. Baseline: the same operation on a 10^3-block tree, so the figure is
``cost(10^5 blocks) / cost(10^3 blocks)`` with goal <= 3 (incremental: the cost must not grow
with the tree).

Run alone: ``python -m benchmarks.bench_forkchoice [--quick]``.
"""

from __future__ import annotations

import random

from benchmarks.harness import Rate, Report, measure_seconds, run_alone
from p2pchain.consensus.protoarray import ProtoArray
from p2pchain.ledger.types import BlockId

PARENT_WINDOW = 16
VOTE_WINDOW = 64


def _block_id(n: int) -> BlockId:
    return BlockId(n.to_bytes(32, "big"))


def build_tree(blocks: int, seed: int) -> tuple[ProtoArray, list[BlockId]]:
    """A tree of `blocks` blocks, each on one of the 16 blocks added just before it."""
    rng = random.Random(seed)
    tree = ProtoArray(_block_id(0))
    ids = [_block_id(0)]
    for n in range(1, blocks):
        parent = ids[max(0, n - 1 - rng.randrange(PARENT_WINDOW))]
        block_id = _block_id(n)
        tree.add_block(block_id, parent)
        ids.append(block_id)
    return tree, ids


class VoteLoad:
    """Validators with equal stake whose votes move between recent blocks."""

    def __init__(self, tree: ProtoArray, ids: list[BlockId], validators: int, seed: int) -> None:
        self.tree = tree
        self.recent = ids[-VOTE_WINDOW:]
        self.rng = random.Random(seed)
        self.heads = [self.rng.choice(self.recent) for _ in range(validators)]
        for head in self.heads:
            tree.add_weight(head, 1)
        tree.find_head(ids[0])
        self.root = ids[0]

    def one(self) -> None:
        """What on_vote + get_head do to the tree for one new vote."""
        validator = self.rng.randrange(len(self.heads))
        new_head = self.rng.choice(self.recent)
        self.tree.add_weight(self.heads[validator], -1)
        self.tree.add_weight(new_head, 1)
        self.heads[validator] = new_head
        self.tree.find_head(self.root)

    def many(self, count: int) -> None:
        for _ in range(count):
            self.one()


def measure(blocks: int, validators: int, votes: int, repeat: int) -> Rate:
    tree, ids = build_tree(blocks, seed=blocks)
    load = VoteLoad(tree, ids, validators, seed=7)
    load.many(votes)  # warm up
    return measure_seconds(lambda: load.many(votes), repeat=repeat)


def run(quick: bool = False) -> Report:
    report = Report()
    print("fork choice", flush=True)
    sizes = (100, 1_000) if quick else (1_000, 10_000, 100_000)
    validators = 1_000 if quick else 10_000
    votes = 200 if quick else 2_000
    repeat = 3 if quick else 7
    costs = {}
    for size in sizes:
        rate = measure(size, validators, votes, repeat)
        costs[size] = rate.median / votes
        report.baseline(
            f"vote + head, {size} blocks, {validators} validators",
            f"{costs[size] * 1e6:.1f} us/vote (median of {repeat})",
        )
    report.curve(
        f"fork choice: vote + head, {validators} validators",
        "blocks in the tree",
        "us per vote",
        [(size, cost * 1e6) for size, cost in costs.items()],
    )
    small, large = sizes[0], sizes[-1]
    ratio = costs[large] / costs[small]
    report.figure(
        f"vote + head cost, {large} / {small} blocks", ratio, "<= 3", ratio <= 3, "median"
    )
    return report


if __name__ == "__main__":
    run_alone(run, __doc__)
