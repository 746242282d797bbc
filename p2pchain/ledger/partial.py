"""Partially signed transactions: several owners build, sign and combine one transaction.

The idea of Bitcoin's PSBT, for this chain: the unsigned (or partly signed) transaction travels
with the outputs its inputs spend, so that each signer sees what it gives and gets
(`flows`) without a node, signs the inputs its key owns, and any party combines the signed
copies, in any order, into the final transaction. Every input signs the same txid (the body
without witnesses), so signatures made on different copies fit together. The layout is in
docs/protocol.md ("Partially signed transactions").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from p2pchain.errors import DecodeError, InvalidPartial, Reason
from p2pchain.ledger.address import address_of
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.encoding import RLPItem, read_list
from p2pchain.ledger.tx import (
    EMPTY_KEY,
    EMPTY_SIGNATURE,
    Transaction,
    TxInput,
    TxOutput,
    tx_signing_message,
)
from p2pchain.ledger.types import Address, AssetId


@dataclass(frozen=True, slots=True, kw_only=True)
class PartialTransaction:
    """`tx` with some witnesses still empty (32 and 64 zero bytes) and `spent[i]`, the output
    `tx.inputs[i]` spends, as its builder claims it: a signer that does not trust the builder
    checks the claims against its own node before signing."""

    tx: Transaction
    spent: tuple[TxOutput, ...]

    def __post_init__(self) -> None:
        if len(self.spent) != len(self.tx.inputs):
            raise InvalidPartial(
                Reason.PARTIAL_MISMATCH,
                f"{len(self.tx.inputs)} inputs but {len(self.spent)} spent outputs",
            )

    def to_rlp(self) -> RLPItem:
        return [self.tx.to_rlp(), [output.to_rlp() for output in self.spent]]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        tx_item, spent_item = read_list(item, "partial", length=2)
        tx = Transaction.from_rlp(tx_item)
        spent = tuple(TxOutput.from_rlp(x) for x in read_list(spent_item, "partial.spent"))
        if len(spent) != len(tx.inputs):  # a shape error of the bytes, like a wrong length
            raise DecodeError(f"{len(tx.inputs)} inputs but {len(spent)} spent outputs")
        return cls(tx=tx, spent=spent)

    @classmethod
    def unsigned(cls, tx: Transaction, spent: Sequence[TxOutput]) -> Self:
        """`tx` with every witness emptied (offer witnesses kept: their makers signed them)."""
        inputs = tuple(
            tx_input if tx_input.offer_until is not None else TxInput(outpoint=tx_input.outpoint)
            for tx_input in tx.inputs
        )
        return cls(tx=tx.with_inputs(inputs), spent=tuple(spent))

    def is_signed(self, index: int) -> bool:
        """True when input `index` carries a witness (whether it verifies is the node's job)."""
        tx_input = self.tx.inputs[index]
        return tx_input.public_key != EMPTY_KEY or tx_input.signature != EMPTY_SIGNATURE

    def missing(self) -> list[int]:
        """Indices of the inputs nobody signed yet."""
        return [index for index in range(len(self.tx.inputs)) if not self.is_signed(index)]

    def signers_needed(self) -> list[Address]:
        """The owners whose signatures are still missing, each once, in input order."""
        return list(dict.fromkeys(self.spent[index].address for index in self.missing()))

    def sign(self, key: SecretKey, chain_id: int) -> tuple[Self, int]:
        """Sign every unsigned input whose spent output `key` owns; return the copy and how
        many inputs it signed (0: nothing here is this key's)."""
        owner = address_of(key.public_key)
        mine = [i for i in self.missing() if self.spent[i].address == owner]
        if not mine:
            return self, 0
        signature = key.sign(tx_signing_message(chain_id, self.tx.txid))
        inputs = list(self.tx.inputs)
        for index in mine:
            inputs[index] = TxInput(
                outpoint=inputs[index].outpoint, public_key=key.public_key, signature=signature
            )
        return type(self)(tx=self.tx.with_inputs(tuple(inputs)), spent=self.spent), len(mine)

    def flows(self, address: Address) -> dict[AssetId, int]:
        """Net change per asset for `address`: what it receives minus what it spends (the
        fee shows as the native asset's share of whoever pays it)."""
        net: defaultdict[AssetId, int] = defaultdict(int)
        for output in self.tx.outputs:
            if output.address == address:
                net[output.asset] += output.amount
        for output in self.spent:
            if output.address == address:
                net[output.asset] -= output.amount
        return {asset: amount for asset, amount in sorted(net.items()) if amount}

    def finish(self) -> Transaction:
        """The transaction to submit.

        Raises:
            InvalidPartial: `unsigned-input` while an input has no witness.
        """
        missing = self.missing()
        if missing:
            raise InvalidPartial(Reason.UNSIGNED_INPUT, f"inputs {missing} are not signed")
        return self.tx


def combine(parts: Sequence[PartialTransaction]) -> PartialTransaction:
    """One copy with every witness any of `parts` carries (the first one found wins).

    Raises:
        InvalidPartial: `partial-mismatch` when the parts are not copies of one transaction
            (another txid, or other spent outputs claimed).
    """
    if not parts:
        raise InvalidPartial(Reason.PARTIAL_MISMATCH, "nothing to combine")
    first = parts[0]
    for part in parts[1:]:
        if part.tx.txid != first.tx.txid or part.spent != first.spent:
            raise InvalidPartial(Reason.PARTIAL_MISMATCH, "the parts are different transactions")
    inputs = list(first.tx.inputs)
    for index in first.missing():
        for part in parts[1:]:
            if part.is_signed(index):
                inputs[index] = part.tx.inputs[index]
                break
    return PartialTransaction(tx=first.tx.with_inputs(tuple(inputs)), spent=first.spent)
