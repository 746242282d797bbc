"""A hexary sparse Merkle trie over 32-byte keys, with inclusion and exclusion proofs.

The shape is a function of the key set alone (so the root is the same on every node, whatever
order the keys arrived in): a subtree holding one key is that key's leaf, a subtree holding two
or more is a branch of 16 children, one per nibble of the key at that depth, and an empty
subtree is 32 zero bytes. Keys are hashes, so a trie of n keys is about log16(n) + 1 deep, and
an update marks that many nodes; hashes are recomputed once per `root()` call for everything
marked since the last one, so a block's changes share their upper levels. Byte layouts are in
docs/protocol.md ("State commitment").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Self

from p2pchain.errors import DecodeError, InvalidProof
from p2pchain.ledger.encoding import RLPItem, read_fixed, read_list, read_uint, uint_bytes
from p2pchain.ledger.types import Hash32

EMPTY_ROOT: Final = Hash32(bytes(32))
"""The hash of an empty subtree (and the root of an empty trie)."""

KEY_BYTES: Final = 32
MAX_DEPTH: Final = 2 * KEY_BYTES
"""Nibbles in a key: no path is longer."""

_LEAF: Final = b"\x00"
_BRANCH: Final = b"\x01"
_SHA256 = hashlib.sha256


def leaf_hash(key: bytes, value: bytes) -> Hash32:
    """``SHA-256(0x00 || key || value)``."""
    return Hash32(_SHA256(_LEAF + key + value).digest())


def branch_hash(children: Iterable[bytes]) -> Hash32:
    """``SHA-256(0x01 || child_0 || ... || child_15)``, an empty child as 32 zero bytes."""
    return Hash32(_SHA256(_BRANCH + b"".join(children)).digest())


def nibble(key: bytes, depth: int) -> int:
    """The 4 bits of `key` that choose its child at `depth` (high nibble first)."""
    byte = key[depth >> 1]
    return byte & 0x0F if depth & 1 else byte >> 4


class _Leaf:
    __slots__ = ("hash", "key", "value")

    def __init__(self, key: bytes, value: bytes) -> None:
        self.key = key
        self.value = value
        self.hash: bytes | None = None


class _Branch:
    """`hashes` are the 16 child hashes as of the last rehash; bit i of `dirty` says child i
    changed since, so a rehash visits only the children that changed, not all 16."""

    __slots__ = ("children", "count", "dirty", "hash", "hashes")

    def __init__(self) -> None:
        self.children: list[_Node | None] = [None] * 16
        self.hashes: list[bytes] = [EMPTY_ROOT] * 16
        self.count = 0
        self.hash: bytes | None = None
        self.dirty = 0


_Node = _Leaf | _Branch


def _node_hash(node: _Node) -> bytes:
    cached = node.hash
    if cached is not None:
        return cached
    if isinstance(node, _Leaf):
        digest = _SHA256(_LEAF + node.key + node.value).digest()
    else:
        hashes, children, dirty = node.hashes, node.children, node.dirty
        while dirty:
            lowest = dirty & -dirty
            dirty ^= lowest
            slot = lowest.bit_length() - 1
            child = children[slot]
            if child is None:
                hashes[slot] = EMPTY_ROOT
            elif child.hash is not None:
                hashes[slot] = child.hash
            elif isinstance(child, _Leaf):  # most changed children: hashed here, not called
                hashes[slot] = child.hash = _SHA256(_LEAF + child.key + child.value).digest()
            else:
                hashes[slot] = _node_hash(child)
        node.dirty = 0
        digest = _SHA256(_BRANCH + b"".join(hashes)).digest()
    node.hash = digest
    return digest


def _copy(node: _Node) -> _Node:
    if isinstance(node, _Leaf):
        leaf = _Leaf(node.key, node.value)
        leaf.hash = node.hash
        return leaf
    branch = _Branch()
    branch.children = [None if child is None else _copy(child) for child in node.children]
    branch.count, branch.hash = node.count, node.hash
    branch.dirty, branch.hashes = node.dirty, list(node.hashes)
    return branch


@dataclass(frozen=True, slots=True, kw_only=True)
class ProofStep:
    """One branch on the path from the root: the 15 siblings of the child the path takes,
    the empty ones left out (`present` has bit i set when child i is sent)."""

    present: int
    siblings: tuple[Hash32, ...]

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(self.present), b"".join(self.siblings)]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        present_item, hashes = read_list(item, "proof.step", length=2)
        present = read_uint(present_item, "proof.step.present")
        if present >= 1 << 16:
            raise DecodeError("proof.step.present: more than 16 children")
        raw = read_fixed(hashes, "proof.step.siblings", 32 * present.bit_count())
        return cls(
            present=present,
            siblings=tuple(Hash32(raw[i : i + 32]) for i in range(0, len(raw), 32)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TrieProof:
    """The path a key takes from the root, and what ends it: its own leaf (inclusion),
    another key's leaf or an empty child (exclusion). `leaf` is ``(key, value)`` or None."""

    steps: tuple[ProofStep, ...]
    leaf: tuple[Hash32, Hash32] | None

    def to_rlp(self) -> RLPItem:
        end: RLPItem = [] if self.leaf is None else [self.leaf[0], self.leaf[1]]
        return [[step.to_rlp() for step in self.steps], end]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        steps_item, end = read_list(item, "proof", length=2)
        steps = read_list(steps_item, "proof.steps")
        if len(steps) > MAX_DEPTH:
            raise DecodeError(f"proof.steps: {len(steps)} > {MAX_DEPTH}")
        fields = read_list(end, "proof.leaf")
        if fields and len(fields) != 2:
            raise DecodeError("proof.leaf: expected [] or [key, value]")
        leaf = (
            (
                Hash32(read_fixed(fields[0], "proof.key", 32)),
                Hash32(read_fixed(fields[1], "proof.value", 32)),
            )
            if fields
            else None
        )
        return cls(steps=tuple(ProofStep.from_rlp(step) for step in steps), leaf=leaf)


def verify_proof(root: bytes, key: bytes, proof: TrieProof) -> Hash32 | None:
    """The value `proof` shows for `key` under `root`: None when it shows the key absent.

    Raises:
        InvalidProof: the proof does not hash to `root` along `key`'s path.
    """
    if len(key) != KEY_BYTES:
        raise InvalidProof(f"key of {len(key)} bytes")
    depth = len(proof.steps)
    found: Hash32 | None = None
    if proof.leaf is None:
        node: bytes = EMPTY_ROOT
    else:
        # The leaf may be another key's: in the trie the root commits to, the only leaf on
        # this path at this depth shares the path's nibbles, and a leaf anywhere else hashes
        # to another root, so the root check below covers both.
        other, value = proof.leaf
        node = leaf_hash(other, value)
        found = value if other == key else None
    for level in range(depth - 1, -1, -1):
        step = proof.steps[level]
        taken = nibble(key, level)
        siblings = iter(step.siblings)
        node = branch_hash(
            node if i == taken else (next(siblings) if step.present >> i & 1 else EMPTY_ROOT)
            for i in range(16)
        )
    if node != root:
        raise InvalidProof("the proof does not hash to the root")
    return found


class Trie:
    """The trie itself: `set`, `delete`, `root`, `prove`. Values are 32-byte hashes."""

    __slots__ = ("_root", "_size")

    def __init__(self, items: Iterable[tuple[bytes, bytes]] = ()) -> None:
        self._root: _Node | None = None
        self._size = 0
        for key, value in items:
            self.set(key, value)

    def __len__(self) -> int:
        return self._size

    def copy(self) -> Trie:
        """An independent trie with the same contents (hashes kept, not recomputed)."""
        clone = Trie()
        clone._root = None if self._root is None else _copy(self._root)
        clone._size = self._size
        return clone

    def root(self) -> Hash32:
        """The root hash; recomputes only what changed since the last call."""
        return EMPTY_ROOT if self._root is None else Hash32(_node_hash(self._root))

    def get(self, key: bytes) -> bytes | None:
        node = self._root
        depth = 0
        while isinstance(node, _Branch):
            node = node.children[nibble(key, depth)]
            depth += 1
        return node.value if node is not None and node.key == key else None

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every ``(key, value)``, in key order."""
        stack: list[_Node] = [] if self._root is None else [self._root]
        while stack:
            node = stack.pop()
            if isinstance(node, _Leaf):
                yield node.key, node.value
            else:
                stack.extend(child for child in reversed(node.children) if child is not None)

    def set(self, key: bytes, value: bytes) -> None:
        """Insert or replace `key`."""
        if len(key) != KEY_BYTES or len(value) != 32:
            raise ValueError("trie keys and values are 32 bytes")
        node = self._root
        if node is None:
            self._root = _Leaf(key, value)
            self._size = 1
            return
        parent: _Branch | None = None
        depth = 0
        while isinstance(node, _Branch):  # the hot loop of every update: `nibble` inlined
            byte = key[depth >> 1]
            slot = byte & 0x0F if depth & 1 else byte >> 4
            node.hash = None
            node.dirty |= 1 << slot
            child = node.children[slot]
            if child is None:
                node.children[slot] = _Leaf(key, value)
                node.count += 1
                self._size += 1
                return
            parent, node = node, child
            depth += 1
        leaf = node  # the loop ends only at a leaf
        if leaf.key == key:
            leaf.value, leaf.hash = value, None
            return
        replacement = _split(leaf, _Leaf(key, value), depth)
        if parent is None:
            self._root = replacement
        else:
            parent.children[nibble(key, depth - 1)] = replacement
        self._size += 1

    def delete(self, key: bytes) -> None:
        """Remove `key`; a branch left with one leaf collapses into that leaf.

        Raises:
            KeyError: `key` is not in the trie.
        """
        path: list[tuple[_Branch, int]] = []
        node = self._root
        depth = 0
        while isinstance(node, _Branch):
            byte = key[depth >> 1]
            slot = byte & 0x0F if depth & 1 else byte >> 4
            # Marked on the way down: should the key be missing, the rehash this causes
            # gives the same hashes back.
            node.hash = None
            node.dirty |= 1 << slot
            path.append((node, slot))
            node = node.children[slot]
            depth += 1
        end = node  # the loop ends at a leaf or an empty child
        if end is None or end.key != key:
            raise KeyError(key.hex())
        self._size -= 1
        if not path:
            self._root = None
            return
        branch, slot = path[-1]
        branch.children[slot] = None
        branch.count -= 1
        # Collapse upward while a branch holds nothing but one leaf.
        while path:
            branch, _ = path[-1]
            if branch.count != 1:
                return
            only = next(child for child in branch.children if child is not None)
            if isinstance(only, _Branch):
                return
            path.pop()
            if path:
                path[-1][0].children[path[-1][1]] = only
            else:
                self._root = only

    def prove(self, key: bytes) -> TrieProof:
        """A proof of `key`'s value, or of its absence, under `root()`."""
        self.root()
        steps: list[ProofStep] = []
        node = self._root
        depth = 0
        while isinstance(node, _Branch):
            taken = nibble(key, depth)
            present = 0
            siblings: list[Hash32] = []
            for i, child in enumerate(node.children):
                if i != taken and child is not None:
                    present |= 1 << i
                    siblings.append(Hash32(_node_hash(child)))
            steps.append(ProofStep(present=present, siblings=tuple(siblings)))
            node = node.children[taken]
            depth += 1
        leaf = None if node is None else (Hash32(node.key), Hash32(node.value))
        return TrieProof(steps=tuple(steps), leaf=leaf)

    def subtrees(self) -> tuple[tuple[int, Hash32], ...]:
        """The 256 subtrees at depth 2, by first key byte: ``(keys with that first byte, the
        hash of the subtree they form at depth 2)``, i.e. the leaf's hash for one key and
        `EMPTY_ROOT` for none. `root_from_subtrees` gives `root()` back from them.

        Read from the nodes as they stand after `root()` (nothing is rehashed that `root()`
        would not rehash); counting the keys visits every node once.
        """
        self.root()
        entries = [(0, EMPTY_ROOT)] * SUBTREES
        root = self._root
        if isinstance(root, _Leaf):
            entries[root.key[0]] = (1, Hash32(_node_hash(root)))
        elif isinstance(root, _Branch):
            for high, upper in enumerate(root.children):
                if isinstance(upper, _Leaf):
                    entries[upper.key[0]] = (1, Hash32(_node_hash(upper)))
                elif isinstance(upper, _Branch):
                    for low, child in enumerate(upper.children):
                        entries[high << 4 | low] = _subtree_entry(child)
        return tuple(entries)


def _split(old: _Leaf, new: _Leaf, depth: int) -> _Branch:
    """Branches from `depth` down to where two different keys' nibbles part, with both leaves."""
    top = branch = _Branch()
    while True:
        old_slot, new_slot = nibble(old.key, depth), nibble(new.key, depth)
        if old_slot != new_slot:
            branch.children[old_slot] = old
            branch.children[new_slot] = new
            branch.count = 2
            branch.dirty = 1 << old_slot | 1 << new_slot
            return top
        inner = _Branch()
        branch.children[old_slot] = inner
        branch.count = 1
        branch.dirty = 1 << old_slot
        branch = inner
        depth += 1


# -- subtrees by first key byte (what a state snapshot is cut along) ---------------------------

SUBTREES: Final = 256
"""Subtrees of depth 2, one per first key byte (two nibbles)."""
SUBTREE_DEPTH: Final = 2


def _subtree_entry(node: _Node | None) -> tuple[int, Hash32]:
    """(keys in the subtree rooted at `node`, its hash); hashes must be current."""
    if node is None:
        return 0, EMPTY_ROOT
    count = 0
    stack: list[_Node] = [node]
    while stack:  # counted, not hashed: a branch records its children, not its keys
        top = stack.pop()
        if isinstance(top, _Leaf):
            count += 1
        else:
            stack.extend(child for child in top.children if child is not None)
    return count, Hash32(_node_hash(node))


def root_from_subtrees(entries: Sequence[tuple[int, bytes]]) -> Hash32:
    """The trie root from its 256 depth-2 subtrees ``(key count, hash)``, as `Trie.subtrees`
    gives them: a node holding one key in all is that key's leaf, not a branch over it, at
    depth 1 as at the root.

    Raises:
        ValueError: not 256 entries, or a negative count.
    """
    if len(entries) != SUBTREES:
        raise ValueError(f"{len(entries)} subtree entries, not {SUBTREES}")
    if any(count < 0 for count, _ in entries):
        raise ValueError("a negative key count")
    upper: list[tuple[int, bytes]] = []
    for high in range(16):
        group = entries[high * 16 : high * 16 + 16]
        upper.append(_fold(group))
    return Hash32(_fold(upper)[1])


def _fold(children: Sequence[tuple[int, bytes]]) -> tuple[int, bytes]:
    """(count, hash) of the node over 16 children: empty, the lone leaf, or a branch."""
    total = sum(count for count, _ in children)
    if total == 0:
        return 0, EMPTY_ROOT
    if total == 1:
        return 1, next(digest for count, digest in children if count)
    return total, branch_hash(digest for _, digest in children)


def subtree_hash(items: Sequence[tuple[bytes, bytes]], depth: int) -> Hash32:
    """``H(items, depth)`` of the definition: the hash of the subtree at `depth` holding
    `items`, ``(key, value)`` pairs in ascending key order whose keys share their first `depth`
    nibbles (the subtree's own hash, a leaf's for one item, the empty hash for none).

    Raises:
        ValueError: the items are out of order, repeated, or do not share the prefix.
    """
    for index in range(1, len(items)):
        if not items[index - 1][0] < items[index][0]:
            raise ValueError("subtree items out of order or repeated")
    if items:
        first, last = items[0][0], items[-1][0]
        if any(nibble(first, d) != nibble(last, d) for d in range(depth)):
            raise ValueError(f"subtree items do not share their first {depth} nibbles")
    return _range_hash(items, 0, len(items), depth)


def _range_hash(items: Sequence[tuple[bytes, bytes]], start: int, stop: int, depth: int) -> Hash32:
    if start == stop:
        return EMPTY_ROOT
    if stop - start == 1:
        key, value = items[start]
        return leaf_hash(key, value)
    children: list[bytes] = []
    position = start
    for slot in range(16):
        end = position
        while end < stop and nibble(items[end][0], depth) == slot:
            end += 1
        children.append(_range_hash(items, position, end, depth + 1))
        position = end
    return branch_hash(children)
