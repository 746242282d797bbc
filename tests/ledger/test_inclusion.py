"""Transaction inclusion proofs against the body root (a binary Merkle tree of the body)."""

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from p2pchain.ledger.block import (
    Block,
    InclusionProof,
    compute_body_root,
    compute_tx_root,
    prove_inclusion,
    verify_inclusion,
)
from p2pchain.ledger.encoding import decode, encode
from p2pchain.ledger.header import BlockHeader
from p2pchain.ledger.reward import reward_transaction
from p2pchain.ledger.types import Address, Amount, BlockId, Hash32, Height, PublicKey, Slot
from p2pchain.params import ChainParams

PARAMS = ChainParams()


def _block(count: int) -> Block:
    """A body of `count` distinct transactions (rewards for different heights: cheap to make)."""
    txs = tuple(
        reward_transaction(
            height=Height(i), amount=Amount(1 + i), address=Address(bytes(20)), params=PARAMS
        )
        for i in range(count)
    )
    header = BlockHeader(
        parent=BlockId(bytes(32)),
        height=Height(1),
        slot=Slot(1),
        proposer=PublicKey(bytes(32)),
        body_root=compute_body_root(txs, ()),
        state_root=Hash32(bytes(32)),
    )
    return Block(header=header, signature=bytes(64), transactions=txs)


sizes = st.integers(min_value=1, max_value=40)


@given(sizes, st.data())
def test_every_transaction_of_a_body_is_proven_in_it(count, data) -> None:
    block = _block(count)
    index = data.draw(st.integers(min_value=0, max_value=count - 1))
    proof = prove_inclusion(block, index)
    assert decode(InclusionProof, encode(proof)) == proof
    assert verify_inclusion(block.header.body_root, block.transactions[index], proof)
    assert len(proof.siblings) <= count.bit_length()


@given(sizes, st.data())
def test_a_proof_for_another_place_or_body_fails(count, data) -> None:
    block = _block(count)
    index = data.draw(st.integers(min_value=0, max_value=count - 1))
    proof = prove_inclusion(block, index)
    root, tx = block.header.body_root, block.transactions[index]
    flip = lambda h: Hash32(bytes([h[0] ^ 1]) + h[1:])  # noqa: E731
    forged = [
        replace(proof, index=(index + 1) % count) if count > 1 else None,
        replace(proof, index=count),
        replace(proof, count=count + 1),
        replace(proof, count=max(count - 1, 0)) if index < count - 1 else None,
        replace(proof, votes_hash=flip(proof.votes_hash)),
        replace(proof, siblings=(*proof.siblings, proof.votes_hash)),
        replace(proof, siblings=proof.siblings[:-1]) if proof.siblings else None,
        *(
            replace(proof, siblings=(*proof.siblings[:i], flip(s), *proof.siblings[i + 1 :]))
            for i, s in enumerate(proof.siblings)
        ),
    ]
    for bad in forged:
        if bad is not None:
            assert not verify_inclusion(root, tx, bad), bad
    other = _block(count + 1).transactions[count]
    assert not verify_inclusion(root, other, proof)


@given(sizes)
def test_no_two_transaction_lists_share_a_root_by_repeating_the_last(count) -> None:
    """An odd level carries its last node up instead of pairing it with itself, so a body
    ending in a repeated transaction does not have the root of the body without it."""
    txs = _block(count).transactions
    assert compute_tx_root(txs) != compute_tx_root((*txs, txs[-1]))
