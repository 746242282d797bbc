"""Which block is canonical at each height, where its transactions are, and why refused ones
were refused.

Plain bookkeeping for `ChainService`: no trio, no storage, no fork choice. The chain service
connects and disconnects blocks as its head moves and releases the blocks whose bodies leave
memory; storage answers for those (`ChainService` asks it below its history floor).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

from p2pchain.errors import Reason
from p2pchain.ledger.block import Block
from p2pchain.ledger.types import BlockId, Height, TxId
from p2pchain.node.storage import TxLocation


class TxIndex:
    """The canonical block ids by height, the transactions of the indexed blocks, and the
    reasons of the last `rejected_history` rejections (the oldest forgotten first)."""

    def __init__(self, first: Block, *, rejected_history: int) -> None:
        """`first` is genesis, or the anchor block of a store started from a snapshot: the
        index knows nothing below it."""
        self._base = first.header.height
        self._canonical: list[BlockId] = []
        self._locations: dict[TxId, TxLocation] = {}
        self._rejected: OrderedDict[TxId, Reason] = OrderedDict()
        self._rejected_history = rejected_history
        self.connect(first)

    # -- canonical chain -----------------------------------------------------------------------
    @property
    def height(self) -> int:
        """Height of the last canonical block."""
        return self._base + len(self._canonical) - 1

    def block_id_at(self, height: Height) -> BlockId | None:
        """The canonical block at `height`, or None above the head (or below the first)."""
        if not 0 <= height - self._base < len(self._canonical):
            return None
        return self._canonical[height - self._base]

    def connect(self, block: Block) -> None:
        """`block` is canonical at its height: the ids above it leave, its transactions are
        indexed (a transaction seen in an earlier block now points here)."""
        del self._canonical[block.header.height - self._base :]
        self._canonical.append(block.block_id)
        self._index(block)

    def disconnect(self, block: Block) -> None:
        """`block` left the canonical chain, with every block above it."""
        del self._canonical[block.header.height - self._base :]
        self.release(block)

    def rebuild(self, canonical: Sequence[BlockId], indexed: Iterable[Block]) -> None:
        """Start over from the canonical ids from the first block up and the blocks (oldest
        first) whose transactions are to be indexed."""
        self._canonical = list(canonical)
        self._locations = {}
        for block in indexed:
            self._index(block)

    def release(self, block: Block) -> None:
        """Stop indexing the transactions of `block` (ones that point elsewhere stay)."""
        block_id = block.block_id
        for tx in block.transactions:
            location = self._locations.get(tx.txid)
            if location is not None and location.block_id == block_id:
                del self._locations[tx.txid]

    def locate(self, txid: TxId) -> TxLocation | None:
        """Where `txid` is in an indexed canonical block, or None."""
        return self._locations.get(txid)

    def __contains__(self, txid: object) -> bool:
        return txid in self._locations

    def _index(self, block: Block) -> None:
        block_id, height = block.block_id, block.header.height
        for position, tx in enumerate(block.transactions):
            self._locations[tx.txid] = TxLocation(
                block_id=block_id, height=height, position=position
            )

    # -- rejections ------------------------------------------------------------------------------
    def reject(self, txid: TxId, reason: Reason) -> None:
        """Remember why `txid` was refused (the newest reason wins and counts as newest)."""
        self._rejected[txid] = reason
        self._rejected.move_to_end(txid)
        while len(self._rejected) > self._rejected_history:
            self._rejected.popitem(last=False)

    def rejection(self, txid: TxId) -> Reason | None:
        """Why `txid` was last refused, unless it was forgotten or accepted since."""
        return self._rejected.get(txid)

    def forget_rejection(self, txid: TxId) -> None:
        """`txid` was accepted after all."""
        self._rejected.pop(txid, None)
