"""The sparse Merkle trie against a model computed from the definition, and its proofs."""

import hashlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.errors import DecodeError, InvalidProof
from p2pchain.ledger.encoding import decode, encode
from p2pchain.ledger.trie import EMPTY_ROOT, ProofStep, Trie, TrieProof, verify_proof
from p2pchain.testing.roots import naive_trie_root


def _key(seed: int, shared: int = 0) -> bytes:
    """A 32-byte key; keys with the same `shared` > 0 agree on their first `shared` bytes, so
    that chains of one-child branches get built and collapsed."""
    digest = hashlib.sha256(seed.to_bytes(4, "big")).digest()
    if not shared:
        return digest
    prefix = hashlib.sha256(b"prefix").digest()[:shared]
    return prefix + digest[shared:]


KEYS = [_key(i) for i in range(24)] + [_key(100 + i, shared=3) for i in range(6)]
keys = st.sampled_from(KEYS)
values = st.binary(min_size=32, max_size=32)
operations = st.lists(
    st.tuples(st.sampled_from(["set", "delete"]), keys, values), min_size=1, max_size=60
)


def _run(
    ops: list[tuple[str, bytes, bytes]],
    after_each: Callable[[Trie, dict[bytes, bytes]], None] = lambda trie, model: None,
    start: tuple[Trie, dict[bytes, bytes]] | None = None,
) -> tuple[Trie, dict[bytes, bytes]]:
    """Apply `ops` to a trie and to a dict (the model), empty or `start`, calling `after_each`
    after every one; deleting an absent key must raise KeyError."""
    trie, model = (Trie(), {}) if start is None else start
    for op, key, value in ops:
        if op == "set":
            trie.set(key, value)
            model[key] = value
        elif key in model:
            trie.delete(key)
            del model[key]
        else:
            with pytest.raises(KeyError):
                trie.delete(key)
        after_each(trie, model)
    return trie, model


@given(operations)
def test_the_root_after_any_updates_is_the_root_of_the_contents(ops) -> None:
    def agrees(trie: Trie, model: dict[bytes, bytes]) -> None:
        assert trie.root() == naive_trie_root(model)  # after every step: lazy hashes stay right
        assert len(trie) == len(model)

    trie, model = _run(ops, agrees)
    assert dict(trie.items()) == model
    assert [key for key, _ in trie.items()] == sorted(model)


@given(operations, st.randoms(use_true_random=False))
def test_the_root_does_not_depend_on_the_order_of_updates(ops, rng) -> None:
    trie, model = _run(ops)
    items = list(model.items())
    rng.shuffle(items)
    assert Trie(items).root() == trie.root()


@given(operations)
def test_a_batch_of_updates_hashed_once_gives_the_same_root(ops) -> None:
    """`root()` called only at the end (as once per block) equals the model too."""
    trie, model = _run(ops)
    assert trie.root() == naive_trie_root(model)


@given(operations, operations)
def test_rehashing_at_any_points_gives_the_root_of_the_contents(ops, more) -> None:
    """Changes marked before one `root()` and after it, and a copy taken with changes not yet
    rehashed: each rehash folds in exactly what changed since the last."""
    trie, model = _run(ops)
    trie.root()
    clone = trie.copy()
    _, clone_model = _run(more, start=(clone, dict(model)))
    unhashed = clone.copy()
    assert clone.root() == unhashed.root() == naive_trie_root(clone_model)
    assert trie.root() == naive_trie_root(model)


@given(operations, operations)
def test_a_copy_is_independent(ops, more) -> None:
    trie, model = _run(ops)
    before = trie.root()
    clone = trie.copy()
    for op, key, value in more:
        if op == "set":
            clone.set(key, value)
        elif clone.get(key) is not None:
            clone.delete(key)
    assert trie.root() == before == naive_trie_root(model)


def test_an_empty_trie_has_the_empty_root_and_proves_absence() -> None:
    trie = Trie()
    assert trie.root() == EMPTY_ROOT
    assert verify_proof(EMPTY_ROOT, KEYS[0], trie.prove(KEYS[0])) is None


@given(operations)
def test_every_key_gets_a_proof_of_what_it_holds(ops) -> None:
    trie, model = _run(ops)
    root = trie.root()
    for key in KEYS:
        proof = trie.prove(key)
        assert decode(TrieProof, encode(proof)) == proof
        assert verify_proof(root, key, proof) == model.get(key)


def _mutations(proof: TrieProof) -> list[TrieProof]:
    """Every proof one change away: a flipped bit in each hash, a step dropped or added, the
    leaf swapped for its absence and back, a sibling moved to another slot."""
    found: list[TrieProof] = []
    flip = lambda b: bytes([b[0] ^ 1]) + b[1:]  # noqa: E731
    steps = list(proof.steps)
    for i, step in enumerate(steps):
        for j in range(len(step.siblings)):
            siblings = list(step.siblings)
            siblings[j] = flip(siblings[j])
            changed = ProofStep(present=step.present, siblings=tuple(siblings))
            found.append(TrieProof(steps=(*steps[:i], changed, *steps[i + 1 :]), leaf=proof.leaf))
        for bit in range(16):
            if step.siblings and not step.present >> bit & 1:
                low = step.present & -step.present
                moved = ProofStep(present=step.present ^ low | 1 << bit, siblings=step.siblings)
                found.append(TrieProof(steps=(*steps[:i], moved, *steps[i + 1 :]), leaf=proof.leaf))
        found.append(TrieProof(steps=(*steps[:i], *steps[i + 1 :]), leaf=proof.leaf))
    empty_step = ProofStep(present=0, siblings=())
    found.append(TrieProof(steps=(*steps, empty_step), leaf=proof.leaf))
    if proof.leaf is None:
        found.append(TrieProof(steps=proof.steps, leaf=(KEYS[0], KEYS[1])))
    else:
        key, value = proof.leaf
        found.append(TrieProof(steps=proof.steps, leaf=None))
        found.append(TrieProof(steps=proof.steps, leaf=(flip(key), value)))
        found.append(TrieProof(steps=proof.steps, leaf=(key, flip(value))))
    return found


@given(operations, keys)
def test_a_tampered_proof_never_proves_a_wrong_answer(ops, key) -> None:
    """Soundness: a proof one change away from a real one is refused or (when the change is
    a no-op for this key) says the truth; it never shows a value the trie does not hold."""
    trie, model = _run(ops)
    root = trie.root()
    for forged in _mutations(trie.prove(key)):
        try:
            answer = verify_proof(root, key, forged)
        except InvalidProof:
            continue
        assert answer == model.get(key)


@given(operations, keys, keys)
def test_a_proof_for_one_key_does_not_prove_another(ops, key, other) -> None:
    trie, model = _run(ops)
    root = trie.root()
    try:
        answer = verify_proof(root, other, trie.prove(key))
    except InvalidProof:
        return
    assert answer == model.get(other)


@pytest.mark.parametrize(
    "item",
    [
        [[], [b"\x01" * 31, b"\x02" * 32]],  # short key
        [[[b"\x01", b""]], []],  # one sibling promised, none sent
        [[[b"\x01\x00\x00", b"\x00" * 32]], []],  # more than 16 children
        [[[b"", b""]] * 65, []],  # deeper than a key is long
        [[], [b"\x01" * 32]],  # leaf without its value
        [[]],  # no end
    ],
)
def test_malformed_proofs_are_decode_errors(item) -> None:
    with pytest.raises(DecodeError):
        TrieProof.from_rlp(item)


def test_keys_and_values_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Trie().set(b"short", bytes(32))
    with pytest.raises(ValueError, match="32 bytes"):
        Trie().set(bytes(32), b"short")
    with pytest.raises(InvalidProof):
        verify_proof(EMPTY_ROOT, b"short", Trie().prove(bytes(32)))
