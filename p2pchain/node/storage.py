"""Persistence of the chain: blocks, undo data, the canonical UTXO set, fork-choice state, bans.

Every write is one transaction, all or nothing. `commit_block` connects one block: the block,
its undo data, its canonical height and transaction index, its UTXO delta (outputs created and
spent inside it cancel out), the records of the assets it touched and the new head, plus the
checkpoints and latest votes its `BlockCommit` carries (the node leaves those empty and writes
them with `record_forkchoice`, in a transaction of its own after the blocks). A head change is a
series of such transactions (`revert_block` for each block left, `commit_block` for each block
joined), so a crash leaves the store on a consistent chain of one branch or the other; side
blocks (`store_block`), the vote pool (`record_vote_pool`), bans and kept submissions are
transactions of their own. `SqliteChainStore` is the durable default (WAL,
``synchronous=FULL``); `MemoryChainStore` has the same behaviour without a disk, for tests.

Both are synchronous; the node makes every call through its `StorageWorker`: one worker thread at
a time for a durable store (opening and closing it included), inline for memory. The one
exception is the three reads a query about an old finalized block needs (`get_block`,
`canonical_block_id`, `transaction_location`): they use a read-only connection of their own and
run on the event loop. The schema and the crash semantics are written down in docs/storage.md.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol, Self, TypeVar

import trio

from p2pchain.consensus.anchor import Anchor
from p2pchain.errors import DecodeError, StorageError
from p2pchain.ledger.address import address_of
from p2pchain.ledger.block import Block, read_signed_header
from p2pchain.ledger.commitment import governance_value
from p2pchain.ledger.encoding import W, decode, encode
from p2pchain.ledger.header import BlockHeader, SignedHeader
from p2pchain.ledger.tx import OutPoint, RetirePayload, Transaction, TxKind, TxOutput
from p2pchain.ledger.types import (
    Address,
    Amount,
    AssetId,
    BlockId,
    Epoch,
    Hash32,
    Height,
    PublicKey,
    TxId,
)
from p2pchain.ledger.utxo import AssetInfo, UndoData, UtxoView
from p2pchain.ledger.vote import Checkpoint, Vote

SCHEMA_VERSION: Final = 2
"""Bumped whenever the on-disk layout changes; a store refuses to open another version."""

BUSY_TIMEOUT_S: Final = 10.0
"""How long a connection waits for another connection's write lock before failing."""

_R = TypeVar("_R")


class StorageWorker:
    """The one way the node calls its stores: blocking work runs here, one call at a time.

    With `in_thread` (a durable store) each call runs in a worker thread behind a
    `trio.CapacityLimiter(1)`, so fsyncs never stall the event loop and calls never overlap;
    without it (a memory store, or a simulation on trio's MockClock) it runs inline.
    """

    def __init__(self, *, in_thread: bool) -> None:
        self.in_thread = in_thread
        self._limiter = trio.CapacityLimiter(1)

    async def run(self, function: Callable[[], _R]) -> _R:
        """Run `function` (which blocks) and return its result; its exceptions propagate."""
        if self.in_thread:
            return await trio.to_thread.run_sync(function, limiter=self._limiter)
        return function()

    async def close(self, close: Callable[[], None]) -> None:
        """Run `close` even inside a cancelled scope (a node stopping still closes its files)."""
        with trio.CancelScope(shield=True):
            await self.run(close)


@dataclass(frozen=True, slots=True, kw_only=True)
class TxLocation:
    """Where a transaction sits on the canonical chain."""

    block_id: BlockId
    height: Height
    position: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Retirement:
    """A RETIRE transaction of the canonical chain: the certificate (its txid), where it is,
    what it retired for whom and why, and who retired it (the owner of its first input)."""

    certificate: TxId
    location: TxLocation
    asset: AssetId
    amount: Amount
    beneficiary: bytes
    purpose: bytes
    retired_by: Address

    @classmethod
    def of(cls, tx: Transaction, location: TxLocation) -> Retirement:
        """The record of `tx` (a RETIRE transaction) at `location`."""
        payload = tx.payload
        if not isinstance(payload, RetirePayload):
            raise ValueError("not a retirement")
        return cls(
            certificate=tx.txid,
            location=location,
            asset=payload.asset,
            amount=payload.amount,
            beneficiary=payload.beneficiary,
            purpose=payload.purpose,
            retired_by=address_of(tx.inputs[0].public_key),
        )


def _retirements_of(block: Block) -> list[Retirement]:
    header = block.header
    return [
        Retirement.of(tx, TxLocation(block_id=block.block_id, height=header.height, position=i))
        for i, tx in enumerate(block.transactions)
        if tx.kind is TxKind.RETIRE
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockCommit:
    """What `commit_block` writes in one transaction when `block` becomes the new head.

    The block itself, `undo`, the block's canonical height, the location of each of its
    transactions, the UTXO delta derived from the block and `undo` (spent outputs deleted,
    created ones inserted, both cancelling out inside the block), `assets` (the records of the
    assets the block touched *after* it; the undo data holds the ones before) and the new head.
    With them, if set: `justified` / `finalized` (None leaves a stored checkpoint unchanged) and
    `votes`, which replace the stored latest vote of their validators. The node sets neither: it
    records checkpoints and votes with `record_forkchoice` once the blocks are written.
    """

    block: Block
    undo: UndoData
    assets: tuple[AssetInfo, ...] = ()
    justified: Checkpoint | None = None
    finalized: Checkpoint | None = None
    votes: tuple[Vote, ...] = ()

    def __post_init__(self) -> None:
        if len(self.undo.txs) != len(self.block.transactions):
            raise ValueError("undo data does not match the block's transactions")
        touched = {asset for tx_undo in self.undo.txs for asset, _ in tx_undo.assets}
        if {info.asset for info in self.assets} != touched:
            raise ValueError("asset records do not match the assets the block touched")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredChain:
    """What a restarting node needs: the head, blocks and fork-choice state.

    `blocks` are every stored block (canonical or not) from the finalized block's height up, by
    height then id. The UTXO set is not part of it (`ChainStore.head_view` reads it): the node
    rebuilds its state by replaying blocks, and reading every output at each start would be
    work thrown away.
    """

    genesis: BlockId
    head: BlockId
    blocks: tuple[Block, ...]
    justified: Checkpoint | None
    finalized: Checkpoint | None
    votes: dict[PublicKey, Vote] = field(default_factory=dict)
    pooled_votes: tuple[Vote, ...] = ()
    """Votes the node had counted that no block of its chain carried yet (`record_vote_pool`)."""


class ChainStore(Protocol):
    """The persistence interface of a node; implementations differ only in durability."""

    @property
    def genesis(self) -> BlockId: ...

    @property
    def head(self) -> BlockId: ...

    def commit_block(self, commit: BlockCommit) -> None:
        """Connect `commit.block` on top of the head, atomically; it becomes the head.

        Raises:
            ValueError: the block's parent is not the head.
            StorageError: the database failed; nothing was written.
        """
        ...

    def revert_block(self, block_id: BlockId) -> None:
        """Disconnect the head block atomically (its parent becomes the head); keep the block.

        Raises:
            ValueError: `block_id` is not the head, or is genesis or the finalized block.
            StorageError: the database failed; nothing was written.
        """
        ...

    def store_block(self, block: Block) -> None:
        """Keep a block that is not (yet) canonical, so fork choice still knows it on restart."""
        ...

    def record_forkchoice(
        self,
        *,
        justified: Checkpoint | None = None,
        finalized: Checkpoint | None = None,
        votes: tuple[Vote, ...] = (),
    ) -> None:
        """Persist new checkpoints (None = unchanged) and latest votes without a new block."""
        ...

    def record_vote_pool(
        self, *, added: tuple[Vote, ...], removed: tuple[Vote, ...], floor_epoch: Epoch
    ) -> None:
        """Keep the votes a node counted until a block of its chain carries them, so that a
        crash cannot lose the only copies of the votes that justified a checkpoint; drop
        `removed` and every vote whose target epoch is below `floor_epoch`."""
        ...

    def get_block(self, block_id: BlockId) -> Block | None:
        """A stored block (canonical or not).

        Like `get_header`, `canonical_block_id` and `transaction_location`, safe to call from
        another thread than the writer's, also while a write runs there: these four read the
        last committed state (the node answers queries about old blocks from the event loop).
        """
        ...

    def get_header(self, block_id: BlockId) -> BlockHeader | None:
        """A stored block's header, read without decoding its body (a light-client
        certificate reads thousands of them); as safe from another thread as `get_block`."""
        ...

    def canonical_block_id(self, height: Height) -> BlockId | None: ...

    def transaction_location(self, txid: TxId) -> TxLocation | None:
        """Where `txid` is on the canonical chain, if it is."""
        ...

    def retirements(self, asset: AssetId, *, offset: int, limit: int) -> list[Retirement]:
        """The canonical chain's retirements of `asset`, oldest first, skipping `offset` and
        returning at most `limit`."""
        ...

    def install_anchor(self, anchor: Anchor, view: UtxoView) -> None:
        """Start a fresh store (nothing but genesis) at a verified snapshot: `anchor`'s block
        becomes the head and the finalized checkpoint, `view` (its state) the UTXO set, kept
        also as the state every restart rebuilds the fork choice from (`anchor`).

        Raises:
            StorageError: the store already holds more than genesis.
        """

    def anchor(self) -> tuple[Anchor, UtxoView] | None:
        """The anchor the store was started from and the state after its block; None for a
        store that starts at genesis."""

    def load(self) -> StoredChain:
        """Everything a restarting node rebuilds its state from."""
        ...

    def head_view(self) -> UtxoView:
        """The UTXO set and asset registry at the head, read from the tables: what a check of
        the store compares against a replay (a restart replays blocks instead)."""
        ...

    def ban_peer(self, peer: str, until: float) -> None:
        """Ban `peer` (an id or address) until the wall-clock time `until` (Unix seconds)."""
        ...

    def bans(self, now: float) -> dict[str, float]:
        """Bans still in force at `now`, and drop the expired ones."""
        ...

    def keep_submitted(self, txid: TxId, raw: bytes) -> None:
        """Persist a transaction a client submitted, before the node acknowledges it, so that a
        crash of the node does not lose it (kept until `forget_submitted`)."""
        ...

    def forget_submitted(self, txids: Sequence[TxId]) -> None:
        """Drop kept submissions (on the finalized chain, rejected, or evicted by policy)."""
        ...

    def submitted(self) -> list[tuple[TxId, bytes]]:
        """Every kept submission, oldest first: what a restarting node admits again."""
        ...

    def keep_offer(self, offer_id: Hash32, raw: bytes) -> None:
        """Persist an offer a client submitted, before the node acknowledges it (kept until
        `forget_offers`)."""
        ...

    def forget_offers(self, offer_ids: Sequence[Hash32]) -> None:
        """Drop kept offers (taken, cancelled by a spend, expired or evicted)."""
        ...

    def kept_offers(self) -> list[tuple[Hash32, bytes]]:
        """Every kept offer, oldest first: what a restarting node puts in its book again."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Delta:
    """How a block changes the stored UTXO set; outputs both made and spent in it cancel out."""

    spent: tuple[tuple[OutPoint, TxOutput], ...]
    created: tuple[tuple[OutPoint, TxOutput], ...]
    assets_before: tuple[tuple[AssetId, AssetInfo | None], ...]


def _block_delta(block: Block, undo: UndoData) -> _Delta:
    created: dict[OutPoint, TxOutput] = {}
    spent: list[tuple[OutPoint, TxOutput]] = []
    assets_before: dict[AssetId, AssetInfo | None] = {}
    for tx, tx_undo in zip(block.transactions, undo.txs, strict=True):
        for outpoint, output in tx_undo.spent:
            if created.pop(outpoint, None) is None:
                spent.append((outpoint, output))
        for asset, previous in tx_undo.assets:
            assets_before.setdefault(asset, previous)
        txid = tx.txid
        for index, output in enumerate(tx.outputs):
            created[OutPoint(txid=txid, index=index)] = output
    return _Delta(
        spent=tuple(spent),
        created=tuple(created.items()),
        assets_before=tuple(assets_before.items()),
    )


def _genesis_commit(genesis: Block) -> BlockCommit:
    view = UtxoView()
    undo = view.apply(genesis)
    touched = sorted({asset for tx_undo in undo.txs for asset, _ in tx_undo.assets})
    assets = tuple(info for asset in touched if (info := view.asset(asset)) is not None)
    return BlockCommit(block=genesis, undo=undo, assets=assets)


def restore_view(
    utxos: list[tuple[OutPoint, TxOutput]],
    assets: list[AssetInfo],
    tip: BlockId,
    height: Height,
) -> UtxoView:
    """A `UtxoView` holding exactly `utxos` and `assets` at `tip`."""
    return UtxoView.from_snapshot(utxos, assets, tip, height)


def anchor_view(
    anchor: Anchor, utxos: list[tuple[OutPoint, TxOutput]], assets: list[AssetInfo]
) -> UtxoView:
    """The state after `anchor`'s block, from its stored UTXOs and assets."""
    header = anchor.block.header
    return UtxoView.from_snapshot(
        utxos,
        assets,
        anchor.block.block_id,
        header.height,
        governance=governance_value(anchor.governance),
    )


def _check_fresh(head: BlockId, genesis: BlockId) -> None:
    if head != genesis:
        raise StorageError("a snapshot can only start a store that holds nothing but genesis")


def outpoint_key(outpoint: OutPoint) -> bytes:
    """36-byte key: txid then big-endian index, so keys sort like outpoints."""
    return outpoint.txid + outpoint.index.to_bytes(4, "big")


def _outpoint_from_key(key: bytes) -> OutPoint:
    return OutPoint(txid=TxId(key[:32]), index=int.from_bytes(key[32:], "big"))


def _check_extends(head: BlockId, block: Block) -> None:
    if block.header.parent != head:
        raise ValueError("block does not extend the stored head")


# -- in memory -------------------------------------------------------------------------------


class MemoryChainStore:
    """A `ChainStore` in dicts: same rules and results as `SqliteChainStore`, no durability."""

    def __init__(self, *, chain_id: int, genesis: Block) -> None:
        self.chain_id = chain_id
        self._genesis = genesis.block_id
        self._blocks: dict[BlockId, Block] = {}
        self._undo: dict[BlockId, UndoData] = {}
        self._canonical: dict[int, BlockId] = {}
        self._txs: dict[TxId, TxLocation] = {}
        self._retirements: dict[AssetId, dict[TxId, Retirement]] = {}
        self._utxos: dict[OutPoint, TxOutput] = {}
        self._assets: dict[AssetId, AssetInfo] = {}
        self._votes: dict[PublicKey, Vote] = {}
        self._pooled: dict[bytes, Vote] = {}
        self._bans: dict[str, float] = {}
        self._submitted: dict[TxId, bytes] = {}
        self._offers: dict[Hash32, bytes] = {}
        self._justified: Checkpoint | None = None
        self._finalized: Checkpoint | None = None
        self._anchor: tuple[Anchor, list[tuple[OutPoint, TxOutput]], list[AssetInfo]] | None
        self._anchor = None
        self._head = BlockId(genesis.header.parent)
        self._connect(_genesis_commit(genesis))

    @property
    def genesis(self) -> BlockId:
        return self._genesis

    @property
    def head(self) -> BlockId:
        return self._head

    def commit_block(self, commit: BlockCommit) -> None:
        _check_extends(self._head, commit.block)
        self._connect(commit)

    def _connect(self, commit: BlockCommit) -> None:
        block, block_id = commit.block, commit.block.block_id
        delta = _block_delta(block, commit.undo)
        self._undo[block_id] = commit.undo
        self._make_canonical(block)
        for outpoint, _ in delta.spent:
            self._utxos.pop(outpoint, None)
        self._utxos.update(delta.created)
        for info in commit.assets:
            self._assets[info.asset] = info
        self._head = block_id
        self.record_forkchoice(
            justified=commit.justified, finalized=commit.finalized, votes=commit.votes
        )

    def _make_canonical(self, block: Block) -> None:
        """Store `block` as canonical at its height, indexing its transactions and
        retirements."""
        block_id, height = block.block_id, block.header.height
        self._blocks[block_id] = block
        self._canonical[height] = block_id
        for position, tx in enumerate(block.transactions):
            self._txs[tx.txid] = TxLocation(block_id=block_id, height=height, position=position)
        for retirement in _retirements_of(block):
            self._retirements.setdefault(retirement.asset, {})[retirement.certificate] = retirement

    def revert_block(self, block_id: BlockId) -> None:
        block = self._revertible(block_id)
        delta = _block_delta(block, self._undo.pop(block_id))
        for outpoint, _ in delta.created:
            self._utxos.pop(outpoint, None)
        self._utxos.update(delta.spent)
        for asset, previous in delta.assets_before:
            if previous is None:
                self._assets.pop(asset, None)
            else:
                self._assets[asset] = previous
        for tx in block.transactions:
            location = self._txs.get(tx.txid)
            if location is not None and location.block_id == block_id:
                del self._txs[tx.txid]
        for retirement in _retirements_of(block):
            self._retirements[retirement.asset].pop(retirement.certificate, None)
        del self._canonical[block.header.height]
        self._head = block.header.parent

    def _revertible(self, block_id: BlockId) -> Block:
        if block_id != self._head:
            raise ValueError("only the head block can be reverted")
        if block_id == self._genesis:
            raise ValueError("genesis cannot be reverted")
        if self._finalized is not None and self._finalized.block_id == block_id:
            raise ValueError("the finalized block cannot be reverted")
        return self._blocks[block_id]

    def store_block(self, block: Block) -> None:
        self._blocks.setdefault(block.block_id, block)

    def install_anchor(self, anchor: Anchor, view: UtxoView) -> None:
        _check_fresh(self._head, self._genesis)
        block, block_id = anchor.block, anchor.block.block_id
        utxos, assets = sorted(view), sorted(view.assets().values(), key=lambda i: i.asset)
        self._anchor = (anchor, utxos, assets)
        self._make_canonical(block)
        self._utxos = dict(utxos)
        self._assets = {info.asset: info for info in assets}
        self._head = block_id
        self._justified = self._finalized = anchor.checkpoint

    def anchor(self) -> tuple[Anchor, UtxoView] | None:
        if self._anchor is None:
            return None
        anchor, utxos, assets = self._anchor
        return anchor, anchor_view(anchor, utxos, assets)

    def record_forkchoice(
        self,
        *,
        justified: Checkpoint | None = None,
        finalized: Checkpoint | None = None,
        votes: tuple[Vote, ...] = (),
    ) -> None:
        if justified is not None:
            self._justified = justified
        if finalized is not None:
            self._finalized = finalized
        for vote in votes:
            self._votes[vote.validator] = vote

    def record_vote_pool(
        self, *, added: tuple[Vote, ...], removed: tuple[Vote, ...], floor_epoch: Epoch
    ) -> None:
        for vote in added:
            self._pooled[encode(vote)] = vote
        for vote in removed:
            self._pooled.pop(encode(vote), None)
        for key in [k for k, vote in self._pooled.items() if vote.target.epoch < floor_epoch]:
            del self._pooled[key]

    def get_block(self, block_id: BlockId) -> Block | None:
        return self._blocks.get(block_id)

    def get_header(self, block_id: BlockId) -> BlockHeader | None:
        block = self._blocks.get(block_id)
        return None if block is None else block.header

    def canonical_block_id(self, height: Height) -> BlockId | None:
        return self._canonical.get(height)

    def transaction_location(self, txid: TxId) -> TxLocation | None:
        return self._txs.get(txid)

    def retirements(self, asset: AssetId, *, offset: int, limit: int) -> list[Retirement]:
        found = sorted(
            self._retirements.get(asset, {}).values(),
            key=lambda r: (r.location.height, r.location.position),
        )
        return found[offset : offset + limit]

    def load(self) -> StoredChain:
        floor = 0
        if self._finalized is not None and self._finalized.block_id in self._blocks:
            floor = self._blocks[self._finalized.block_id].header.height
        blocks = sorted(
            (b for b in self._blocks.values() if b.header.height >= floor),
            key=lambda b: (b.header.height, b.block_id),
        )
        return StoredChain(
            genesis=self._genesis,
            head=self._head,
            blocks=tuple(blocks),
            justified=self._justified,
            finalized=self._finalized,
            votes=dict(self._votes),
            pooled_votes=tuple(self._pooled.values()),
        )

    def head_view(self) -> UtxoView:
        return restore_view(
            sorted(self._utxos.items()),
            sorted(self._assets.values(), key=lambda info: info.asset),
            self._head,
            self._blocks[self._head].header.height,
        )

    def ban_peer(self, peer: str, until: float) -> None:
        self._bans[peer] = until

    def bans(self, now: float) -> dict[str, float]:
        self._bans = {peer: until for peer, until in self._bans.items() if until > now}
        return dict(self._bans)

    def keep_submitted(self, txid: TxId, raw: bytes) -> None:
        self._submitted.setdefault(txid, bytes(raw))

    def forget_submitted(self, txids: Sequence[TxId]) -> None:
        for txid in txids:
            self._submitted.pop(txid, None)

    def submitted(self) -> list[tuple[TxId, bytes]]:
        return list(self._submitted.items())

    def keep_offer(self, offer_id: Hash32, raw: bytes) -> None:
        self._offers.setdefault(offer_id, bytes(raw))

    def forget_offers(self, offer_ids: Sequence[Hash32]) -> None:
        for offer_id in offer_ids:
            self._offers.pop(offer_id, None)

    def kept_offers(self) -> list[tuple[Hash32, bytes]]:
        return list(self._offers.items())

    def close(self) -> None:
        """Nothing to release; present so both stores are used the same way."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- SQLite ----------------------------------------------------------------------------------

_SUBMITTED_TABLE: Final = (
    "CREATE TABLE IF NOT EXISTS submitted (txid BLOB PRIMARY KEY, seq INTEGER NOT NULL,"
    " data BLOB NOT NULL) WITHOUT ROWID"
)
_SUBMITTED_ORDER: Final = "CREATE INDEX IF NOT EXISTS submitted_by_seq ON submitted (seq)"
"""So that numbering the next submission (the highest `seq` plus one) reads one row."""
_POOLED_VOTES_TABLE: Final = (
    "CREATE TABLE IF NOT EXISTS pooled_votes (vote BLOB PRIMARY KEY, target INTEGER NOT NULL)"
    " WITHOUT ROWID"
)
_RETIREMENTS_TABLE: Final = (
    "CREATE TABLE IF NOT EXISTS retirements (asset BLOB NOT NULL, height INTEGER NOT NULL,"
    " position INTEGER NOT NULL, block BLOB NOT NULL, txid BLOB NOT NULL, amount TEXT NOT NULL,"
    " beneficiary BLOB NOT NULL, purpose BLOB NOT NULL, retired_by BLOB NOT NULL,"
    " PRIMARY KEY (asset, height, position)) WITHOUT ROWID"
)
"""The canonical chain's RETIRE transactions by asset, in chain order (`asset_retirements`)."""
_KEPT_OFFERS_TABLE: Final = (
    "CREATE TABLE IF NOT EXISTS kept_offers (offer_id BLOB PRIMARY KEY, seq INTEGER NOT NULL,"
    " data BLOB NOT NULL) WITHOUT ROWID"
)
_KEPT_OFFERS_ORDER: Final = "CREATE INDEX IF NOT EXISTS kept_offers_by_seq ON kept_offers (seq)"
_ANCHOR_TABLES: Final = (
    "CREATE TABLE IF NOT EXISTS anchor_utxos (outpoint BLOB PRIMARY KEY, output BLOB NOT NULL)"
    " WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS anchor_assets (id BLOB PRIMARY KEY, info BLOB NOT NULL)"
    " WITHOUT ROWID",
)
"""The state after the snapshot's block a store was started from (`install_anchor`): every
restart rebuilds the fork choice from it."""
_SCHEMA = (
    "CREATE TABLE chain (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE blocks (id BLOB PRIMARY KEY, parent BLOB NOT NULL, height INTEGER NOT NULL,"
    " slot INTEGER NOT NULL, data BLOB NOT NULL) WITHOUT ROWID",
    "CREATE INDEX blocks_by_height ON blocks (height)",
    "CREATE INDEX blocks_by_parent ON blocks (parent)",
    "CREATE INDEX blocks_by_slot ON blocks (slot)",
    "CREATE TABLE undo (id BLOB PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE canonical (height INTEGER PRIMARY KEY, id BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE txs (txid BLOB PRIMARY KEY, block BLOB NOT NULL, height INTEGER NOT NULL,"
    " position INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE utxos (outpoint BLOB PRIMARY KEY, output BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE assets (id BLOB PRIMARY KEY, info BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE votes (validator BLOB PRIMARY KEY, vote BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE bans (peer TEXT PRIMARY KEY, until REAL NOT NULL) WITHOUT ROWID",
    "CREATE TABLE metadata (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
    _SUBMITTED_TABLE,
    _SUBMITTED_ORDER,
    _POOLED_VOTES_TABLE,
    _RETIREMENTS_TABLE,
    _KEPT_OFFERS_TABLE,
    _KEPT_OFFERS_ORDER,
    *_ANCHOR_TABLES,
)

Row = tuple[object, ...]


def _blob(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise StorageError(f"corrupt record: expected a blob, got {type(value).__name__}")
    return value


def _real(value: object) -> float:
    if not isinstance(value, float | int):
        raise StorageError(f"corrupt record: expected a number, got {type(value).__name__}")
    return float(value)


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise StorageError(f"corrupt record: expected an integer, got {type(value).__name__}")
    return value


def connect_sqlite_reader(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A read-only connection to an existing database, for reads beside the writer thread.

    Under WAL it never waits for the writer and sees the last committed transaction; each
    query is its own read transaction (autocommit), so it never holds a snapshot open.
    """
    uri = Path(os.fspath(path)).absolute().as_uri() + "?mode=ro"
    try:
        return sqlite3.connect(
            uri, uri=True, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
        )
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open database {os.fspath(path)!r}: {exc}") from exc


def connect_sqlite(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A connection with the durability settings every p2pchain table relies on.

    WAL lets readers run beside the writer; ``synchronous=FULL`` makes a returned COMMIT
    survive power loss, not only a process kill. Autocommit mode (``isolation_level=None``)
    leaves transaction boundaries to explicit BEGIN/COMMIT.
    """
    try:
        connection = sqlite3.connect(
            os.fspath(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=OFF")
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open database {os.fspath(path)!r}: {exc}") from exc
    return connection


@contextmanager
def write_transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One atomic write: BEGIN IMMEDIATE, COMMIT on success, ROLLBACK on any exception."""
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise StorageError(f"cannot start a write: {exc}") from exc
    try:
        yield connection
        connection.execute("COMMIT")
    except BaseException as exc:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise StorageError(f"write failed: {exc}") from exc
        raise


def _decoded(cls: type[W], data: object, read: Callable[[bytes], W] | None = None) -> W:
    """A stored record of type `cls`, decoded by `read` when the type has a faster reader."""
    if not isinstance(data, bytes):
        raise StorageError(f"corrupt {cls.__name__} record: not a blob")
    try:
        return decode(cls, data) if read is None else read(data)
    except DecodeError as exc:
        raise StorageError(f"corrupt {cls.__name__} record: {exc}") from exc


class SqliteChainStore:
    """A `ChainStore` in one SQLite file; every commit is durable when it returns.

    Opening a new file creates the schema and commits the genesis block in one transaction;
    opening an existing one checks its schema version, chain id and genesis block.

    Raises:
        StorageError: the file is not a p2pchain database of this schema, chain and genesis.
    """

    def __init__(self, path: str | os.PathLike[str], *, chain_id: int, genesis: Block) -> None:
        self.path = os.fspath(path)
        self.chain_id = chain_id
        self._genesis = genesis.block_id
        self._db = connect_sqlite(path)
        try:
            self._open_or_create(genesis)
            self._reader = connect_sqlite_reader(path)
            """Serves `get_block`, `canonical_block_id` and `transaction_location`, which other
            threads call while the writer's connection is inside a transaction."""
        except BaseException:
            self._db.close()
            raise

    def _open_or_create(self, genesis: Block) -> None:
        with write_transaction(self._db) as db:
            exists = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'chain'"
            ).fetchone()
            if exists:
                self._check_identity()
                db.execute(_SUBMITTED_TABLE)  # added to schema 1 later: created if missing
                db.execute(_SUBMITTED_ORDER)  # likewise
                db.execute(_POOLED_VOTES_TABLE)  # likewise
                db.execute(_RETIREMENTS_TABLE)  # likewise
                db.execute(_KEPT_OFFERS_TABLE)  # likewise
                db.execute(_KEPT_OFFERS_ORDER)  # likewise
                for statement in _ANCHOR_TABLES:  # likewise
                    db.execute(statement)
            else:
                for statement in _SCHEMA:
                    db.execute(statement)
                self._set("schema_version", str(SCHEMA_VERSION).encode())
                self._set("chain_id", str(self.chain_id).encode())
                self._set("genesis", self._genesis)
                self._set("head", genesis.header.parent)
                self._connect(_genesis_commit(genesis))
        self._head = BlockId(self._require("head"))

    def _check_identity(self) -> None:
        expected = {
            "schema_version": str(SCHEMA_VERSION).encode(),
            "chain_id": str(self.chain_id).encode(),
            "genesis": self._genesis,
        }
        for key, value in expected.items():
            stored = self._get(key)
            if stored != value:
                found = "nothing" if stored is None else repr(stored)
                raise StorageError(f"database {key} is {found}, expected {value!r}")

    # -- small helpers -----------------------------------------------------------------------
    def _query(self, sql: str, args: tuple[object, ...] = (), *, reader: bool = False) -> list[Row]:
        connection = self._reader if reader else self._db
        try:
            rows: list[Row] = connection.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"read failed: {exc}") from exc
        return rows

    def _one(self, sql: str, args: tuple[object, ...] = (), *, reader: bool = False) -> Row | None:
        rows = self._query(sql, args, reader=reader)
        return rows[0] if rows else None

    def _get(self, key: str) -> bytes | None:
        row = self._one("SELECT value FROM chain WHERE key = ?", (key,))
        return None if row is None else _blob(row[0])

    def _require(self, key: str) -> bytes:
        value = self._get(key)
        if value is None:
            raise StorageError(f"database has no {key}")
        return value

    def _set(self, key: str, value: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO chain (key, value) VALUES (?, ?)", (key, value))

    def _checkpoint(self, key: str) -> Checkpoint | None:
        value = self._get(key)
        return None if value is None else _decoded(Checkpoint, value)

    # -- chain -------------------------------------------------------------------------------
    @property
    def genesis(self) -> BlockId:
        return self._genesis

    @property
    def head(self) -> BlockId:
        return self._head

    def commit_block(self, commit: BlockCommit) -> None:
        _check_extends(self._head, commit.block)
        with write_transaction(self._db):
            self._connect(commit)
        self._head = commit.block.block_id

    def _insert_block(self, block: Block) -> None:
        header = block.header
        self._db.execute(
            "INSERT OR IGNORE INTO blocks (id, parent, height, slot, data) VALUES (?, ?, ?, ?, ?)",
            (block.block_id, header.parent, header.height, header.slot, encode(block)),
        )

    def _connect(self, commit: BlockCommit) -> None:
        db, block, block_id = self._db, commit.block, commit.block.block_id
        height = block.header.height
        delta = _block_delta(block, commit.undo)
        self._insert_block(block)
        db.execute(
            "INSERT OR REPLACE INTO undo (id, data) VALUES (?, ?)", (block_id, encode(commit.undo))
        )
        db.execute(
            "INSERT OR REPLACE INTO canonical (height, id) VALUES (?, ?)", (height, block_id)
        )
        db.executemany(
            "INSERT OR REPLACE INTO txs (txid, block, height, position) VALUES (?, ?, ?, ?)",
            [(tx.txid, block_id, height, i) for i, tx in enumerate(block.transactions)],
        )
        db.executemany(
            "INSERT OR REPLACE INTO retirements (asset, height, position, block, txid, amount,"
            " beneficiary, purpose, retired_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r.asset,
                    height,
                    r.location.position,
                    block_id,
                    r.certificate,
                    str(r.amount),
                    r.beneficiary,
                    r.purpose,
                    r.retired_by,
                )
                for r in _retirements_of(block)
            ],
        )
        db.executemany(
            "DELETE FROM utxos WHERE outpoint = ?", [(outpoint_key(op),) for op, _ in delta.spent]
        )
        db.executemany(
            "INSERT OR REPLACE INTO utxos (outpoint, output) VALUES (?, ?)",
            [(outpoint_key(op), encode(output)) for op, output in delta.created],
        )
        db.executemany(
            "INSERT OR REPLACE INTO assets (id, info) VALUES (?, ?)",
            [(info.asset, encode(info)) for info in commit.assets],
        )
        self._set("head", block_id)
        self._write_forkchoice(commit.justified, commit.finalized, commit.votes)

    def _write_forkchoice(
        self, justified: Checkpoint | None, finalized: Checkpoint | None, votes: tuple[Vote, ...]
    ) -> None:
        if justified is not None:
            self._set("justified", encode(justified))
        if finalized is not None:
            self._set("finalized", encode(finalized))
        self._db.executemany(
            "INSERT OR REPLACE INTO votes (validator, vote) VALUES (?, ?)",
            [(vote.validator, encode(vote)) for vote in votes],
        )

    def revert_block(self, block_id: BlockId) -> None:
        if block_id != self._head:
            raise ValueError("only the head block can be reverted")
        if block_id == self._genesis:
            raise ValueError("genesis cannot be reverted")
        finalized = self._checkpoint("finalized")
        if finalized is not None and finalized.block_id == block_id:
            raise ValueError("the finalized block cannot be reverted")
        block, undo = self._block(block_id, reader=False), self._undo(block_id)
        if block is None or undo is None:
            raise StorageError("the head block or its undo data is missing")
        delta = _block_delta(block, undo)
        with write_transaction(self._db) as db:
            db.executemany(
                "DELETE FROM utxos WHERE outpoint = ?",
                [(outpoint_key(op),) for op, _ in delta.created],
            )
            db.executemany(
                "INSERT OR REPLACE INTO utxos (outpoint, output) VALUES (?, ?)",
                [(outpoint_key(op), encode(output)) for op, output in delta.spent],
            )
            for asset, previous in delta.assets_before:
                if previous is None:
                    db.execute("DELETE FROM assets WHERE id = ?", (asset,))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO assets (id, info) VALUES (?, ?)",
                        (asset, encode(previous)),
                    )
            db.execute("DELETE FROM txs WHERE block = ?", (block_id,))
            db.executemany(
                "DELETE FROM retirements WHERE asset = ? AND height = ? AND position = ?",
                [(r.asset, r.location.height, r.location.position) for r in _retirements_of(block)],
            )
            db.execute("DELETE FROM canonical WHERE height = ?", (block.header.height,))
            db.execute("DELETE FROM undo WHERE id = ?", (block_id,))
            self._set("head", block.header.parent)
        self._head = block.header.parent

    def store_block(self, block: Block) -> None:
        with write_transaction(self._db):
            self._insert_block(block)

    def install_anchor(self, anchor: Anchor, view: UtxoView) -> None:
        _check_fresh(self._head, self._genesis)
        block, block_id = anchor.block, anchor.block.block_id
        height = block.header.height
        utxos = [(outpoint_key(op), encode(output)) for op, output in view]
        assets = [(info.asset, encode(info)) for info in view.assets().values()]
        with write_transaction(self._db) as db:
            self._insert_block(block)
            db.execute(
                "INSERT OR REPLACE INTO canonical (height, id) VALUES (?, ?)", (height, block_id)
            )
            db.executemany(
                "INSERT OR REPLACE INTO txs (txid, block, height, position) VALUES (?, ?, ?, ?)",
                [(tx.txid, block_id, height, i) for i, tx in enumerate(block.transactions)],
            )
            db.execute("DELETE FROM utxos")
            db.execute("DELETE FROM assets")
            for table in ("utxos", "anchor_utxos"):
                db.executemany(f"INSERT INTO {table} (outpoint, output) VALUES (?, ?)", utxos)
            for table in ("assets", "anchor_assets"):
                db.executemany(f"INSERT INTO {table} (id, info) VALUES (?, ?)", assets)
            self._set("anchor", encode(anchor))
            self._set("head", block_id)
            self._write_forkchoice(anchor.checkpoint, anchor.checkpoint, ())
        self._head = block_id

    def anchor(self) -> tuple[Anchor, UtxoView] | None:
        data = self._get("anchor")
        if data is None:
            return None
        anchor = _decoded(Anchor, data)
        utxos = [
            (_outpoint_from_key(_blob(key)), _decoded(TxOutput, output))
            for key, output in self._query(
                "SELECT outpoint, output FROM anchor_utxos ORDER BY outpoint"
            )
        ]
        assets = [
            _decoded(AssetInfo, info) for (info,) in self._query("SELECT info FROM anchor_assets")
        ]
        return anchor, anchor_view(anchor, utxos, assets)

    def record_forkchoice(
        self,
        *,
        justified: Checkpoint | None = None,
        finalized: Checkpoint | None = None,
        votes: tuple[Vote, ...] = (),
    ) -> None:
        with write_transaction(self._db):
            self._write_forkchoice(justified, finalized, votes)

    def record_vote_pool(
        self, *, added: tuple[Vote, ...], removed: tuple[Vote, ...], floor_epoch: Epoch
    ) -> None:
        with write_transaction(self._db) as db:
            db.executemany(
                "INSERT OR IGNORE INTO pooled_votes (vote, target) VALUES (?, ?)",
                [(encode(vote), vote.target.epoch) for vote in added],
            )
            db.executemany(
                "DELETE FROM pooled_votes WHERE vote = ?", [(encode(vote),) for vote in removed]
            )
            db.execute("DELETE FROM pooled_votes WHERE target < ?", (floor_epoch,))

    # -- queries -----------------------------------------------------------------------------
    def get_block(self, block_id: BlockId) -> Block | None:
        return self._block(block_id, reader=True)

    def _block(self, block_id: BlockId, *, reader: bool) -> Block | None:
        row = self._one("SELECT data FROM blocks WHERE id = ?", (block_id,), reader=reader)
        return None if row is None else _decoded(Block, row[0], Block.from_bytes)

    def get_header(self, block_id: BlockId) -> BlockHeader | None:
        row = self._one("SELECT data FROM blocks WHERE id = ?", (block_id,), reader=True)
        if row is None:
            return None
        return _decoded(SignedHeader, row[0], read_signed_header).header

    def _undo(self, block_id: BlockId) -> UndoData | None:
        row = self._one("SELECT data FROM undo WHERE id = ?", (block_id,))
        return None if row is None else _decoded(UndoData, row[0])

    def canonical_block_id(self, height: Height) -> BlockId | None:
        row = self._one("SELECT id FROM canonical WHERE height = ?", (height,), reader=True)
        return None if row is None else BlockId(_blob(row[0]))

    def retirements(self, asset: AssetId, *, offset: int, limit: int) -> list[Retirement]:
        rows = self._query(
            "SELECT block, height, position, txid, amount, beneficiary, purpose, retired_by"
            " FROM retirements WHERE asset = ? ORDER BY height, position LIMIT ? OFFSET ?",
            (asset, limit, offset),
            reader=True,
        )
        return [
            Retirement(
                certificate=TxId(_blob(txid)),
                location=TxLocation(
                    block_id=BlockId(_blob(block)), height=Height(_int(height)), position=_int(i)
                ),
                asset=asset,
                amount=Amount(int(str(amount))),
                beneficiary=_blob(beneficiary),
                purpose=_blob(purpose),
                retired_by=Address(_blob(by)),
            )
            for block, height, i, txid, amount, beneficiary, purpose, by in rows
        ]

    def transaction_location(self, txid: TxId) -> TxLocation | None:
        row = self._one(
            "SELECT block, height, position FROM txs WHERE txid = ?", (txid,), reader=True
        )
        if row is None:
            return None
        block, height, position = row
        return TxLocation(
            block_id=BlockId(_blob(block)), height=Height(_int(height)), position=_int(position)
        )

    def load(self) -> StoredChain:
        finalized = self._checkpoint("finalized")
        floor = 0
        if finalized is not None:
            row = self._one("SELECT height FROM blocks WHERE id = ?", (finalized.block_id,))
            floor = 0 if row is None else _int(row[0])
        blocks = tuple(
            _decoded(Block, data, Block.from_bytes)
            for (data,) in self._query(
                "SELECT data FROM blocks WHERE height >= ? ORDER BY height, id", (floor,)
            )
        )
        if not any(block.block_id == self._head for block in blocks):
            raise StorageError("the head block is missing")
        votes = [_decoded(Vote, vote) for (vote,) in self._query("SELECT vote FROM votes")]
        pooled = tuple(
            _decoded(Vote, vote)
            for (vote,) in self._query("SELECT vote FROM pooled_votes ORDER BY target, vote")
        )
        return StoredChain(
            genesis=self._genesis,
            head=self._head,
            blocks=blocks,
            justified=self._checkpoint("justified"),
            finalized=finalized,
            votes={vote.validator: vote for vote in votes},
            pooled_votes=pooled,
        )

    def head_view(self) -> UtxoView:
        head = self._block(self._head, reader=False)
        if head is None:
            raise StorageError("the head block is missing")
        utxos = [
            (_outpoint_from_key(_blob(key)), _decoded(TxOutput, output))
            for key, output in self._query("SELECT outpoint, output FROM utxos ORDER BY outpoint")
        ]
        assets = [_decoded(AssetInfo, info) for (info,) in self._query("SELECT info FROM assets")]
        return restore_view(utxos, assets, self._head, head.header.height)

    # -- peers and metadata ------------------------------------------------------------------
    def ban_peer(self, peer: str, until: float) -> None:
        with write_transaction(self._db) as db:
            db.execute("INSERT OR REPLACE INTO bans (peer, until) VALUES (?, ?)", (peer, until))

    def bans(self, now: float) -> dict[str, float]:
        with write_transaction(self._db) as db:
            db.execute("DELETE FROM bans WHERE until <= ?", (now,))
        rows = self._query("SELECT peer, until FROM bans")
        return {str(peer): _real(until) for peer, until in rows}

    def keep_submitted(self, txid: TxId, raw: bytes) -> None:
        with write_transaction(self._db) as db:
            db.execute(
                "INSERT OR IGNORE INTO submitted (txid, seq, data) VALUES"
                " (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM submitted), ?)",
                (bytes(txid), bytes(raw)),
            )

    def forget_submitted(self, txids: Sequence[TxId]) -> None:
        if not txids:
            return
        with write_transaction(self._db) as db:
            db.executemany("DELETE FROM submitted WHERE txid = ?", [(bytes(t),) for t in txids])

    def submitted(self) -> list[tuple[TxId, bytes]]:
        rows = self._query("SELECT txid, data FROM submitted ORDER BY seq")
        return [(TxId(_blob(txid)), _blob(data)) for txid, data in rows]

    def keep_offer(self, offer_id: Hash32, raw: bytes) -> None:
        with write_transaction(self._db) as db:
            db.execute(
                "INSERT OR IGNORE INTO kept_offers (offer_id, seq, data) VALUES"
                " (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM kept_offers), ?)",
                (bytes(offer_id), bytes(raw)),
            )

    def forget_offers(self, offer_ids: Sequence[Hash32]) -> None:
        if not offer_ids:
            return
        with write_transaction(self._db) as db:
            db.executemany(
                "DELETE FROM kept_offers WHERE offer_id = ?", [(bytes(i),) for i in offer_ids]
            )

    def kept_offers(self) -> list[tuple[Hash32, bytes]]:
        rows = self._query("SELECT offer_id, data FROM kept_offers ORDER BY seq")
        return [(Hash32(_blob(offer_id)), _blob(data)) for offer_id, data in rows]

    def close(self) -> None:
        """Close the connections; committed data is already on disk."""
        self._reader.close()
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
