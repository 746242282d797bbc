"""The incremental fork-choice tree against a naive model that recomputes everything."""

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from p2pchain.consensus.protoarray import ProtoArray
from p2pchain.ledger.types import BlockId


def _id(n: int) -> BlockId:
    return BlockId(n.to_bytes(32, "big"))


class NaiveTree:
    """Parents, per-block vote weight, and GHOST by full recomputation."""

    def __init__(self, root):
        self.parent = {root: None}
        self.own = {root: 0}
        self.root = root

    def descendants(self, block_id):
        found = [block_id]
        for child in [c for c, p in self.parent.items() if p == block_id]:
            found += self.descendants(child)
        return found

    def weight(self, block_id):
        return sum(self.own[b] for b in self.descendants(block_id))

    def head(self, start):
        node = start
        while children := [c for c, p in self.parent.items() if p == node]:
            node = min(children, key=lambda c: (-self.weight(c), c))
        return node

    def prune(self, new_root, dropped):
        kept = set()
        for child in [c for c, p in self.parent.items() if p == new_root and c not in dropped]:
            kept |= set(self.descendants(child))
        kept.add(new_root)
        self.parent = {
            b: (None if b == new_root else p) for b, p in self.parent.items() if b in kept
        }
        self.own = {b: w for b, w in self.own.items() if b in kept}
        self.root = new_root


class ProtoArrayMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.tree = ProtoArray(_id(0))
        self.model = NaiveTree(_id(0))
        self.next = 1
        self.votes: dict[int, tuple[BlockId, int]] = {}

    def blocks(self):
        return sorted(self.model.parent)

    @rule(data=st.data())
    def add_block(self, data):
        parent = data.draw(st.sampled_from(self.blocks()))
        block_id = _id(self.next)
        self.next += 1
        self.tree.add_block(block_id, parent)
        self.model.parent[block_id] = parent
        self.model.own[block_id] = 0

    @rule(data=st.data(), voter=st.integers(0, 5), weight=st.integers(0, 10))
    def vote(self, data, voter, weight):
        head = data.draw(st.sampled_from(self.blocks()))
        old = self.votes.get(voter)
        if old is not None and old[0] in self.model.own:
            self.tree.add_weight(old[0], -old[1])
            self.model.own[old[0]] -= old[1]
        self.tree.add_weight(head, weight)
        self.model.own[head] += weight
        self.votes[voter] = (head, weight)

    @precondition(lambda self: len(self.model.parent) > 1)
    @rule(data=st.data())
    def prune(self, data):
        new_root = data.draw(st.sampled_from(self.blocks()))
        children = sorted(c for c, p in self.model.parent.items() if p == new_root)
        dropped = data.draw(st.lists(st.sampled_from(children), unique=True)) if children else []
        self.tree.set_root(new_root, dropped)
        self.model.prune(new_root, set(dropped))
        self.votes = {v: (h, w) for v, (h, w) in self.votes.items() if h in self.model.own}

    @rule(data=st.data())
    def head_from_any_start(self, data):
        start = data.draw(st.sampled_from(self.blocks()))
        assert self.tree.find_head(start) == self.model.head(start)

    @invariant()
    def same_blocks_weights_and_head(self):
        assert set(self.tree.block_ids()) == set(self.model.parent)
        self.tree.apply_deltas()
        for block_id in self.model.parent:
            assert self.tree.weight(block_id) == self.model.weight(block_id)
        assert self.tree.find_head(self.model.root) == self.model.head(self.model.root)


TestProtoArray = ProtoArrayMachine.TestCase
