"""The serving side of snapshot sync: the finalized states this node hands to new nodes.

A state is prepared once per finalized checkpoint, on the first request for it (a pass over
the whole UTXO set on the event loop, under the chain lock), and the last `SNAPSHOTS_KEPT` are
kept, so a node downloading while finality moves on can finish the one it started. Pages are
cut from the prepared records by bisection: answering one costs its own bytes only.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from p2pchain.consensus.light import AnchorStakes, anchor_evidence
from p2pchain.consensus.store import move_view
from p2pchain.ledger.encoding import encode_item
from p2pchain.ledger.header import BlockHeader
from p2pchain.ledger.snapshot import (
    MAX_SNAPSHOT_PAGE_BYTES,
    SnapshotManifest,
    manifest_of,
    page,
    snapshot_records,
)
from p2pchain.ledger.types import BlockId

if TYPE_CHECKING:
    from p2pchain.node.chain import ChainService

SNAPSHOTS_KEPT: Final = 2
"""Prepared finalized states kept (each about the size of the UTXO set's encoding)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedSnapshot:
    """One finalized state, ready to serve."""

    manifest: SnapshotManifest
    anchors: tuple[AnchorStakes, ...]
    headers: tuple[BlockHeader, ...]
    """From the oldest anchor point to the block's parent (`anchor_evidence`)."""
    subtrees: tuple[list[tuple[bytes, bytes]], ...]
    """Per subtree (first byte of the top-trie key), its records: (sort key, encoding)."""


class SnapshotServer:
    """Prepares and serves finalized states (`ChainService.snapshots`)."""

    def __init__(self, chain: ChainService) -> None:
        self._chain = chain
        self._prepared: OrderedDict[BlockId, PreparedSnapshot] = OrderedDict()

    async def get(self, block_id: BlockId) -> PreparedSnapshot | None:
        """The state after `block_id` if it is one we keep or our finalized checkpoint's
        block (prepared now), else None."""
        prepared = self._prepared.get(block_id)
        if prepared is not None:
            return prepared
        chain = self._chain
        store = chain.store
        checkpoint = store.finalized_checkpoint
        if block_id != checkpoint.block_id:
            return None
        async with chain.lock:  # the storage worker reads the cursor while it persists
            checkpoint = store.finalized_checkpoint
            if block_id != checkpoint.block_id:
                return None
            evidence = anchor_evidence(store, checkpoint, chain.header_of)
            governance = store.nodes[block_id].governance
            if evidence is None or governance is None:
                return None
            try:
                view = move_view(store, block_id)
                prepared = PreparedSnapshot(
                    manifest=manifest_of(view, block_id),
                    anchors=evidence[0],
                    headers=evidence[1],
                    subtrees=tuple(snapshot_records(view, encode_item(governance.to_rlp()))),
                )
            finally:
                move_view(store, store.head)
        self._prepared[block_id] = prepared
        while len(self._prepared) > SNAPSHOTS_KEPT:
            self._prepared.popitem(last=False)
        return prepared

    async def page(
        self, block_id: BlockId, subtree: int, after: bytes
    ) -> tuple[tuple[bytes, ...], bool] | None:
        """The encoded records of `subtree` after sort key `after` (at most
        `MAX_SNAPSHOT_PAGE_BYTES`) and whether they are its last; None for a state we do
        not keep."""
        prepared = await self.get(block_id)
        if prepared is None:
            return None
        return page(prepared.subtrees[subtree], after, MAX_SNAPSHOT_PAGE_BYTES)
