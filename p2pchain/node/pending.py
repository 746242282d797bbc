"""Blocks and votes that arrived before their slot or their vote's head, held within `NodeLimits`.

Both pools are `QuotaPool`s (count and bytes, per peer and in total; the peer holding the most
loses first). `ChainService` decides what waits and retries the waiting messages; this module
only holds them and says which are due. No trio, no clock: the slot is an argument. Blocks
whose parent is unknown are not held here: they wait in the network's `OrphanPool`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from p2pchain.ledger.block import Block
from p2pchain.ledger.encoding import MAX_UINT64, encode
from p2pchain.ledger.types import BlockId, Epoch, PublicKey, Slot
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.node.config import NodeLimits
from p2pchain.protocol.connection import PeerId
from p2pchain.protocol.quota import Quota, QuotaPool

MAX_VOTE_BYTES: Final = len(
    encode(
        Vote(
            slot=Slot(MAX_UINT64),
            head=BlockId(bytes(32)),
            source=Checkpoint(epoch=Epoch(MAX_UINT64), block_id=BlockId(bytes(32))),
            target=Checkpoint(epoch=Epoch(MAX_UINT64), block_id=BlockId(bytes(32))),
            validator=PublicKey(bytes(32)),
            signature=bytes(64),
        )
    )
)
"""The largest encoding of a vote (every field has a fixed maximum size): the waiting-vote
pool's byte bound is its count bound times this."""

Source = PeerId | None
"""Who made us hold a waiting message: the peer that sent it, None for our own."""


class PendingMessages:
    """Blocks on a known parent waiting for their slot, and votes waiting for their head block
    or their slot, each pool within its `NodeLimits` bounds."""

    def __init__(self, limits: NodeLimits) -> None:
        self._blocks: QuotaPool[BlockId, Source, Block] = QuotaPool(
            Quota(
                max_items=limits.pending_blocks,
                max_bytes=limits.pending_block_bytes,
                max_items_per_source=limits.pending_blocks_per_peer,
                max_bytes_per_source=limits.pending_block_bytes_per_peer,
            )
        )
        self._votes: QuotaPool[bytes, Source, Vote] = QuotaPool(
            Quota(
                max_items=limits.pending_votes,
                max_bytes=limits.pending_votes * MAX_VOTE_BYTES,
                max_items_per_source=limits.pending_votes_per_peer,
                max_bytes_per_source=limits.pending_votes_per_peer * MAX_VOTE_BYTES,
            )
        )
        self._too_early = 0

    # -- blocks ----------------------------------------------------------------------------------
    def hold_block(self, block: Block, *, source: Source) -> None:
        """Keep `block` until it is due, charged to `source` (a bigger block than a share is
        not held; past a share or the total, the oldest of the biggest holder leaves)."""
        self._blocks.add(block.block_id, block, source=source, size=len(block.encoded))

    def ignore_too_early(self) -> None:
        """Count a block too far ahead of our clock to be held."""
        self._too_early += 1

    def take_block(self, block_id: BlockId) -> Block | None:
        """Remove and return a held block (None if it is not held, or no longer)."""
        return self._blocks.pop(block_id)

    def blocks_due(self, slot: Slot, is_known: Callable[[BlockId], bool]) -> list[Block]:
        """Held blocks whose slot has come and whose parent `is_known` (still: it may have been
        pruned meanwhile), by height (blocks of one height in the order they arrived)."""
        due = [
            block
            for _, block in self._blocks.items()
            if block.header.slot <= slot and is_known(block.header.parent)
        ]
        return sorted(due, key=lambda block: block.header.height)

    def drop_blocks_through(self, slot: Slot) -> None:
        """Drop held blocks at or below `slot` (the finalized block's: they can no longer
        extend the finalized chain)."""
        for block_id, block in self._blocks.items():
            if block.header.slot <= slot:
                self._blocks.pop(block_id)

    @property
    def blocks_waiting(self) -> int:
        return len(self._blocks)

    @property
    def blocks_waiting_bytes(self) -> int:
        """Encoded bytes of the held blocks."""
        return self._blocks.bytes

    @property
    def blocks_dropped(self) -> int:
        """Blocks not held or pushed out by the bounds, plus those too far ahead."""
        return self._blocks.evicted + self._too_early

    # -- votes -----------------------------------------------------------------------------------
    def hold_vote(self, vote: Vote, *, source: Source) -> None:
        """Keep `vote` until its head or slot arrives, charged to `source`."""
        encoded = encode(vote)
        self._votes.add(encoded, vote, source=source, size=len(encoded))

    def votes(self) -> list[tuple[bytes, Vote]]:
        """The held votes (keyed by their encoding), in the order they arrived."""
        return list(self._votes.items())

    def take_vote(self, key: bytes) -> None:
        """Drop a held vote: counted, or never valid."""
        self._votes.pop(key)

    @property
    def votes_waiting(self) -> int:
        return len(self._votes)

    @property
    def votes_dropped(self) -> int:
        """Votes not held or pushed out by the bounds."""
        return self._votes.evicted
