"""Blocks: a signed header over a body of transactions and validator votes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Self

from p2pchain.errors import DecodeError
from p2pchain.ledger.crypto import sha256
from p2pchain.ledger.encoding import (
    RLPItem,
    budget_for,
    charge,
    decode_span,
    encode_item,
    item_header,
    list_payload,
    read_bytes,
    read_fixed,
    read_list,
    read_uint,
    uint_bytes,
    wrap_list,
)
from p2pchain.ledger.header import BlockHeader, SignedHeader
from p2pchain.ledger.tx import Transaction, read_transaction
from p2pchain.ledger.types import BlockId, Hash32
from p2pchain.ledger.vote import Vote

_SHA256 = hashlib.sha256

EMPTY_BLOCK_SIGNATURE = bytes(64)


def compute_body_root(transactions: tuple[Transaction, ...], votes: tuple[Vote, ...]) -> Hash32:
    """``SHA-256(u64be(len(transactions)) || tx_root || SHA-256(rlp(votes)))``: commits to the
    whole body, witnesses included, and lets one transaction be proven in it by a Merkle branch
    (`prove_inclusion`). The count is part of it so that a branch proves the index too."""
    return _body_root(len(transactions), compute_tx_root(transactions), votes_hash(votes))


def _body_root(count: int, tx_root: bytes, votes: bytes) -> Hash32:
    return sha256(count.to_bytes(8, "big") + tx_root + votes)


def votes_hash(votes: tuple[Vote, ...]) -> Hash32:
    return sha256(encode_item([vote.to_rlp() for vote in votes]))


def _tx_leaf(tx: Transaction) -> bytes:
    return _SHA256(b"\x00" + tx.encoded).digest()


def _tx_node(left: bytes, right: bytes) -> bytes:
    return _SHA256(b"\x01" + left + right).digest()


def compute_tx_root(transactions: tuple[Transaction, ...]) -> Hash32:
    """The binary Merkle root over the transactions' full encodings, in block order; a level
    of odd length carries its last node up unchanged (nothing is duplicated, so no two lists
    share a root); 32 zero bytes for none."""
    level = [_tx_leaf(tx) for tx in transactions]
    if not level:
        return Hash32(bytes(32))
    while len(level) > 1:
        paired = [_tx_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return Hash32(level[0])


@dataclass(frozen=True, slots=True, kw_only=True)
class InclusionProof:
    """Where a transaction sits in a block body: its index, the body's transaction count, the
    sibling hashes from the leaf up (levels where it has none are skipped) and the votes hash,
    so that ``body_root`` can be recomputed from the transaction alone."""

    index: int
    count: int
    siblings: tuple[Hash32, ...]
    votes_hash: Hash32

    def to_rlp(self) -> RLPItem:
        return [
            uint_bytes(self.index),
            uint_bytes(self.count),
            b"".join(self.siblings),
            self.votes_hash,
        ]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        index, count, siblings, votes = read_list(item, "inclusion_proof", length=4)
        raw = read_bytes(siblings, "inclusion_proof.siblings", 32 * 64)
        if len(raw) % 32:
            raise DecodeError("inclusion_proof.siblings: not a list of 32-byte hashes")
        return cls(
            index=read_uint(index, "inclusion_proof.index"),
            count=read_uint(count, "inclusion_proof.count"),
            siblings=tuple(Hash32(raw[i : i + 32]) for i in range(0, len(raw), 32)),
            votes_hash=Hash32(read_fixed(votes, "inclusion_proof.votes_hash", 32)),
        )


def prove_inclusion(block: Block, index: int) -> InclusionProof:
    """The proof that ``block.transactions[index]`` is in the body `block.header` commits to."""
    level = [_tx_leaf(tx) for tx in block.transactions]
    if not 0 <= index < len(level):
        raise IndexError(index)
    siblings: list[Hash32] = []
    position = index
    while len(level) > 1:
        partner = position ^ 1
        if partner < len(level):
            siblings.append(Hash32(level[partner]))
        paired = [_tx_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level, position = paired, position // 2
    return InclusionProof(
        index=index,
        count=len(block.transactions),
        siblings=tuple(siblings),
        votes_hash=votes_hash(block.votes),
    )


def verify_inclusion(body_root: bytes, tx: Transaction, proof: InclusionProof) -> bool:
    """True when `proof` places `tx` at `proof.index` in the body `body_root` commits to."""
    if not 0 <= proof.index < proof.count < 1 << 64:
        return False
    node = _tx_leaf(tx)
    position, width = proof.index, proof.count
    siblings = iter(proof.siblings)
    while width > 1:
        partner = position ^ 1
        if partner < width:
            sibling = next(siblings, None)
            if sibling is None:
                return False
            node = _tx_node(sibling, node) if position & 1 else _tx_node(node, sibling)
        position, width = position // 2, (width + 1) // 2
    if next(siblings, None) is not None:
        return False
    return _body_root(proof.count, node, proof.votes_hash) == body_root


def _encode_body(transactions: tuple[Transaction, ...], votes: tuple[Vote, ...]) -> bytes:
    """The encodings of the transaction list and the vote list, concatenated.

    Built from each transaction's cached `encoded` bytes: re-encoding every transaction from
    its fields was the largest cost of serving and checking blocks during sync.
    """
    transactions_item = wrap_list(b"".join(tx.encoded for tx in transactions))
    return transactions_item + encode_item([vote.to_rlp() for vote in votes])


def body_rlp(transactions: tuple[Transaction, ...], votes: tuple[Vote, ...]) -> RLPItem:
    return [[tx.to_rlp() for tx in transactions], [vote.to_rlp() for vote in votes]]


@dataclass(frozen=True, kw_only=True)
class Block:
    """``[header, signature, transactions, votes]``; its id is its header's id.

    Not slotted, so that `encoded` is computed once per object (and not at all for a block
    read from bytes): byte bounds, serving and storage each ask for it.
    """

    header: BlockHeader
    signature: bytes
    transactions: tuple[Transaction, ...] = ()
    votes: tuple[Vote, ...] = ()

    def to_rlp(self) -> RLPItem:
        return [self.header.to_rlp(), self.signature, *body_rlp(self.transactions, self.votes)]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        fields = read_list(item, "block", length=4)
        return cls(
            header=BlockHeader.from_rlp(fields[0]),
            signature=read_fixed(fields[1], "block.signature", 64),
            transactions=tuple(Transaction.from_rlp(x) for x in read_list(fields[2], "block.txs")),
            votes=tuple(Vote.from_rlp(x) for x in read_list(fields[3], "block.votes")),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Block:
        """Decode untrusted bytes; the same result and errors as ``decode(Block, data)``, with
        each transaction read in place from its own bytes (see `read_block`).

        Raises:
            DecodeError: when `data` is not a canonical block.
        """
        data = bytes(data)
        return read_block(data, 0, len(data), 0, budget_for(data))[0]

    @cached_property
    def encoded(self) -> bytes:
        """The canonical encoding, equal to ``encode(block)`` but reusing the txs' encodings."""
        signed = encode_item(self.header.to_rlp()) + encode_item(self.signature)
        return wrap_list(signed + _encode_body(self.transactions, self.votes))

    @property
    def block_id(self) -> BlockId:
        return self.header.block_id

    @property
    def signed_header(self) -> SignedHeader:
        return SignedHeader(header=self.header, signature=self.signature)

    def has_valid_body_root(self) -> bool:
        """True when the header commits to exactly this body."""
        return self.header.body_root == compute_body_root(self.transactions, self.votes)


def read_signed_header(data: bytes) -> SignedHeader:
    """The header and proposer signature of the block encoded in `data`, read without its body,
    so that a block whose header breaks a rule costs its receiver no more than this. The
    body is not checked here: decoding the whole block later still may fail.

    Raises:
        DecodeError: the first two fields are not a header and a signature.
    """
    position, stop = list_payload(data, 0, len(data))
    return _signed_header_at(data, position, stop, 1, budget_for(data))[0]


def _signed_header_at(
    data: bytes, position: int, stop: int, depth: int, budget: int
) -> tuple[SignedHeader, int, int]:
    """The header and signature fields of a block at `position` (its list ends at `stop`),
    each nested `depth` lists deep: the signed header, where the body starts, and the decode
    budget left."""
    fields: list[RLPItem] = []
    for _ in range(2):
        field_end = item_header(data, position, stop)[2]
        field, budget = decode_span(data, position, field_end, depth, budget)
        fields.append(field)
        position = field_end
    signed = SignedHeader(
        header=BlockHeader.from_rlp(fields[0]),
        signature=read_fixed(fields[1], "block.signature", 64),
    )
    return signed, position, budget


def read_block(data: bytes, start: int, end: int, depth: int, budget: int) -> tuple[Block, int]:
    """The block encoded in `data[start:end]`, nested `depth` lists deep, and the decode budget
    left: walks the block in place and hands each transaction's bytes to `read_transaction`,
    charging the budget exactly what the generic decoder charges for the whole block, so both
    accept the same bytes. Decoding all of a block first and then its transactions from the
    lists was most of the cost of receiving one.
    """
    position, stop = list_payload(data, start, end)
    if stop != end:
        raise DecodeError(f"invalid RLP: {end - stop} trailing bytes")
    budget = charge(budget, 1, 4)
    signed, position, budget = _signed_header_at(data, position, stop, depth + 1, budget)
    tx_position, txs_end = list_payload(data, position, stop)
    budget = charge(budget, 1, 0)
    transactions: list[Transaction] = []
    while tx_position < txs_end:
        tx_end = item_header(data, tx_position, txs_end)[2]
        tx, budget = read_transaction(data, tx_position, tx_end, depth + 2, budget)
        transactions.append(tx)
        tx_position = tx_end
    budget = charge(budget, 0, len(transactions))
    votes_end = item_header(data, txs_end, stop)[2]
    votes, budget = decode_span(data, txs_end, votes_end, depth + 1, budget)
    if votes_end != stop:
        raise DecodeError("block: expected 4 fields, got more")
    block = Block(
        header=signed.header,
        signature=signed.signature,
        transactions=tuple(transactions),
        votes=tuple(Vote.from_rlp(x) for x in read_list(votes, "block.votes")),
    )
    block.__dict__["encoded"] = data[start:end]  # canonical, so these bytes are its encoding
    return block, budget
