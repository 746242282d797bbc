"""The fork-choice tree: subtree weights kept up to date incrementally (proto-array style).

A vote moving from block A to block B adds ``-w`` at A and ``+w`` at B as *pending deltas*.
`ProtoArray.apply_deltas` pushes them towards the root deepest-first, merging deltas that meet
and stopping where they cancel, so a vote that moves between two recent blocks costs the
distance to their common ancestor, not the size of the tree. Every node keeps its best child
(heaviest; equal weights go to the lowest block id), and the canonical path from the start node
is cached and only re-walked below the highest node whose best child changed.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable

from p2pchain.ledger.types import BlockId


class _Node:
    __slots__ = ("best", "block_id", "children", "depth", "parent", "weight")

    def __init__(self, block_id: BlockId, parent: _Node | None, depth: int) -> None:
        self.block_id = block_id
        self.parent = parent
        self.depth = depth
        self.children: list[_Node] = []
        self.weight = 0
        self.best: _Node | None = None


def _is_better(a: _Node, b: _Node) -> bool:
    """True when `a` beats `b` as a best child: more weight, then the lower block id."""
    return a.weight > b.weight or (a.weight == b.weight and a.block_id < b.block_id)


class ProtoArray:
    """Block tree rooted at the finalized block, with LMD weights and best-child pointers."""

    def __init__(self, root: BlockId) -> None:
        self._nodes: dict[BlockId, _Node] = {root: _Node(root, None, 0)}
        self._root = root
        self._pending: dict[BlockId, int] = {}
        self._path: list[_Node] = []
        self._position: dict[BlockId, int] = {}
        self._dirty: int | None = None

    @property
    def root(self) -> BlockId:
        return self._root

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def block_ids(self) -> Iterable[BlockId]:
        return self._nodes.keys()

    def weight(self, block_id: BlockId) -> int:
        """Applied subtree weight (call `apply_deltas` first for an up-to-date value)."""
        return self._nodes[block_id].weight

    def children(self, block_id: BlockId) -> list[BlockId]:
        return [child.block_id for child in self._nodes[block_id].children]

    def add_block(self, block_id: BlockId, parent_id: BlockId) -> None:
        """Add a leaf under a known parent; it starts with no weight. O(1)."""
        if block_id in self._nodes:
            raise ValueError("block already in the tree")
        parent = self._nodes[parent_id]
        node = _Node(block_id, parent, parent.depth + 1)
        self._nodes[block_id] = node
        parent.children.append(node)
        if parent.best is None or _is_better(node, parent.best):
            self._set_best(parent, node)

    def add_weight(self, block_id: BlockId, delta: int) -> None:
        """Queue `delta` of weight for `block_id` and all its ancestors. O(1)."""
        if delta:
            self._pending[block_id] = self._pending.get(block_id, 0) + delta

    def apply_deltas(self) -> None:
        """Push queued deltas to the ancestors, deepest first; cancelled deltas stop early."""
        if not self._pending:
            return
        pending = self._pending
        heap = [(-self._nodes[block_id].depth, block_id) for block_id in pending]
        heapq.heapify(heap)
        while heap:
            _, block_id = heapq.heappop(heap)
            delta = pending.pop(block_id)
            if not delta:
                continue
            node = self._nodes[block_id]
            node.weight += delta
            parent = node.parent
            if parent is None:
                continue
            self._update_best(parent, node, delta)
            if parent.block_id not in pending:
                heapq.heappush(heap, (-parent.depth, parent.block_id))
                pending[parent.block_id] = 0
            pending[parent.block_id] += delta

    def find_head(self, start: BlockId) -> BlockId:
        """Follow best children from `start` to a leaf (the LMD-GHOST head)."""
        self.apply_deltas()
        path = self._path
        if not path or path[0].block_id != start:
            self._reset_path(self._nodes[start])
            path = self._path
        elif self._dirty is not None:
            for node in path[self._dirty + 1 :]:
                del self._position[node.block_id]
            del path[self._dirty + 1 :]
        self._dirty = None
        node = path[-1]
        while node.best is not None:
            node = node.best
            self._position[node.block_id] = len(path)
            path.append(node)
        return node.block_id

    def set_root(self, new_root: BlockId, dropped: Collection[BlockId] = ()) -> set[BlockId]:
        """Keep `new_root` and its descendants except the subtrees of its children in `dropped`.

        Returns:
            The ids that were removed.
        """
        self.apply_deltas()
        root = self._nodes[new_root]
        own_weight = root.weight - sum(child.weight for child in root.children)
        root.children = [child for child in root.children if child.block_id not in dropped]
        root.best = None
        for child in root.children:
            if root.best is None or _is_better(child, root.best):
                root.best = child
        root.weight = own_weight + sum(child.weight for child in root.children)
        kept: dict[BlockId, _Node] = {}
        stack = [root]
        while stack:
            node = stack.pop()
            kept[node.block_id] = node
            stack.extend(node.children)
        removed = set(self._nodes) - set(kept)
        root.parent = None
        self._nodes = kept
        self._root = new_root
        self._path = []
        self._position = {}
        self._dirty = None
        return removed

    def _reset_path(self, start: _Node) -> None:
        self._path = [start]
        self._position = {start.block_id: 0}

    def _set_best(self, parent: _Node, best: _Node | None) -> None:
        parent.best = best
        position = self._position.get(parent.block_id)
        if position is not None and (self._dirty is None or position < self._dirty):
            self._dirty = position

    def _update_best(self, parent: _Node, child: _Node, delta: int) -> None:
        best = parent.best
        if best is child:
            if delta < 0:
                new_best = child
                for sibling in parent.children:
                    if _is_better(sibling, new_best):
                        new_best = sibling
                if new_best is not child:
                    self._set_best(parent, new_best)
        elif best is None or _is_better(child, best):
            self._set_best(parent, child)
