"""Test-side helpers for the chain stores: building a commit from a view, reading undo data.

The node builds its own commits from the undo data fork choice kept (`ChainService`) and never
reads undo data back but to revert; tests that drive a store by hand use these instead.
"""

from __future__ import annotations

from contextlib import closing

from p2pchain.ledger.block import Block
from p2pchain.ledger.encoding import decode
from p2pchain.ledger.types import BlockId
from p2pchain.ledger.utxo import UndoData, UtxoView
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.node.storage import (
    BlockCommit,
    ChainStore,
    MemoryChainStore,
    SqliteChainStore,
    connect_sqlite_reader,
)

__all__ = ["commit_after_apply", "stored_undo"]


def commit_after_apply(
    block: Block,
    undo: UndoData,
    view: UtxoView,
    *,
    justified: Checkpoint | None = None,
    finalized: Checkpoint | None = None,
    votes: tuple[Vote, ...] = (),
) -> BlockCommit:
    """The commit for `block`, given the view it was just applied to and the undo it gave
    (the touched assets' records are read from the view).

    Raises:
        ValueError: the view's tip is not `block`, or it lost an asset the block touched.
    """
    if view.tip != block.block_id:
        raise ValueError("the view's tip is not this block")
    touched = sorted({asset for tx_undo in undo.txs for asset, _ in tx_undo.assets})
    assets = []
    for asset in touched:
        info = view.asset(asset)
        if info is None:
            raise ValueError("the view lost an asset the block touched")
        assets.append(info)
    return BlockCommit(
        block=block,
        undo=undo,
        assets=tuple(assets),
        justified=justified,
        finalized=finalized,
        votes=votes,
    )


def stored_undo(store: ChainStore, block_id: BlockId) -> UndoData | None:
    """The undo data `store` keeps for `block_id`: canonical blocks only (a revert drops it).

    A SQLite store is read from its file (the `undo` table, docs/storage.md), on a connection of
    its own.

    Raises:
        TypeError: `store` is neither of the library's stores.
    """
    if isinstance(store, SqliteChainStore):
        with closing(connect_sqlite_reader(store.path)) as reader:
            row = reader.execute("SELECT data FROM undo WHERE id = ?", (block_id,)).fetchone()
        return None if row is None else decode(UndoData, row[0])
    if isinstance(store, MemoryChainStore):
        return store._undo.get(block_id)
    raise TypeError(f"not a library chain store: {type(store).__name__}")
