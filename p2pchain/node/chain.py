"""The chain service: the pure fork-choice store, the chain database and the mempool in step.

Every block, vote and piece of evidence enters through one of the `import_*` methods, which
hold one lock while they run the pure handler and then write the outcome to the `ChainStore`:
the canonical UTXO set follows the head (``revert_block`` / ``commit_block`` along
`pop_head_change`), side blocks are stored with ``store_block``, checkpoints and latest votes
with ``record_forkchoice``. Events and status changes are published only after the write
returned, so nothing the node announced can be lost by a crash.

Messages that arrive too early wait in bounded pools (`QuotaPool`: count and bytes, per peer
and in total; the peer holding the most loses first): blocks on a known parent from a slot at
most `NodeLimits.max_future_slots` ahead, votes for an unknown head or from such a slot. They
are retried at every slot tick; a block that can no longer extend the finalized chain leaves.
Messages further ahead are ignored, not held. A block whose parent is unknown is not held here:
`import_block` says `UNKNOWN_PARENT`, and the network's orphan pool keeps it, asks for the
parent and hands it back once the parent is in.

Finalized history costs memory per block, not per transaction: the bodies of finalized blocks
more than `NodeLimits.history_blocks` (or `history_bytes`) below the finalized one are released
from the fork-choice store (`release_bodies`) and read back from the `ChainStore` when a query
or a syncing peer asks for them; the transaction index in memory covers only the blocks whose
bodies are in memory, storage answers for the older ones.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import Final, TypeVar

import trio

from p2pchain.consensus import (
    BlockOutcome,
    GovernanceState,
    HeadChange,
    SlashingDetector,
    Store,
    adopt_checkpoints,
    check_block_header,
    compute_slot_at_time,
    compute_start_slot_at_epoch,
    get_forkchoice_store,
    get_governance,
    on_block,
    on_evidence,
    on_tick,
    on_vote,
    pop_head_change,
    release_bodies,
)
from p2pchain.consensus.anchor import Anchor, get_anchored_store
from p2pchain.consensus.light import FinalityCertificate, VoteArchive, build_certificate
from p2pchain.consensus.store import BlockNode, is_ancestor, move_view, remember_pruned
from p2pchain.errors import (
    DecodeError,
    InvalidBlock,
    InvalidOffer,
    InvalidTransaction,
    InvalidVote,
    Reason,
    StorageError,
)
from p2pchain.ledger.block import Block, InclusionProof, prove_inclusion
from p2pchain.ledger.encoding import decode, encode, encode_item
from p2pchain.ledger.evidence import Evidence, evidence_key
from p2pchain.ledger.genesis import GenesisConfig
from p2pchain.ledger.header import BlockHeader, SignedHeader
from p2pchain.ledger.offer import Offer
from p2pchain.ledger.proofs import StateProof, StateQuery, prove
from p2pchain.ledger.tx import SlashPayload, Transaction, TxKind
from p2pchain.ledger.types import AssetId, BlockId, Epoch, Hash32, Height, PublicKey, Slot, TxId
from p2pchain.ledger.utxo import AssetInfo, UndoData, UtxoView
from p2pchain.ledger.validation import BlockContext, SignatureCache, validate_transaction
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.node.config import NodeLimits
from p2pchain.node.events import EventHub, EventKind, HeadInfo, ReorgInfo, TxInfo, TxStatus
from p2pchain.node.mempool import Mempool, PoolChange
from p2pchain.node.offers import BookEntry, OfferBook
from p2pchain.node.pending import PendingMessages, Source
from p2pchain.node.snapshots import SnapshotServer
from p2pchain.node.storage import BlockCommit, ChainStore, StorageWorker, TxLocation
from p2pchain.node.txindex import TxIndex
from p2pchain.params import ChainParams

_logger = logging.getLogger("p2pchain.chain")

_R = TypeVar("_R")
_RETRY_VOTE = frozenset({Reason.UNKNOWN_VOTE_HEAD, Reason.FUTURE_VOTE})


class Outcome(Enum):
    """What an import did with a message that broke no rule."""

    IMPORTED = "imported"
    KNOWN = "known"
    UNKNOWN_PARENT = "unknown-parent"
    """A block whose parent we do not know: not held (the caller keeps it where blocks wait
    for a parent, the network's orphan pool, and brings it back once the parent is in)."""
    FUTURE_SLOT = "future-slot"
    """A block on a known parent waiting for its slot to start (bounded queue; retried at
    every tick)."""
    QUEUED = "queued"
    """A vote waiting for its head block or its slot."""
    TOO_EARLY = "too-early"
    """A block for a slot more than `NodeLimits.max_future_slots` ahead of our clock: ignored,
    not held (nobody is blamed for a clock difference)."""
    PRUNED = "pruned"
    """A valid block whose own votes finalized a checkpoint off its chain: its votes count,
    the block is not kept (`BlockOutcome.PRUNED`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainStatistics:
    blocks_imported: int
    blocks_invalid: int
    votes_imported: int
    blocks_pruned: int
    """Valid blocks whose own votes finalized a checkpoint off their chain (`Outcome.PRUNED`)."""
    blocks_waiting: int
    votes_waiting: int
    reorgs: int
    signatures_offloaded: int
    """Transaction signatures verified in a worker thread instead of on the event loop."""
    signature_cache_hits: int
    import_seconds_buckets: tuple[tuple[float, int], ...] = ()
    """Cumulative histogram of block import time (validate, apply, commit): (le, count)."""
    import_seconds_sum: float = 0.0
    import_seconds_count: int = 0
    blocks_waiting_bytes: int = 0
    """Encoded bytes of the blocks waiting for their slot."""
    blocks_dropped: int = 0
    """Blocks not held or pushed out of the waiting pool by its bounds, or ignored as too far
    ahead of our clock."""
    votes_dropped: int = 0
    """Votes not held or pushed out of the waiting pool by its bounds."""
    history_blocks: int = 0
    """Finalized blocks below the finalized one whose bodies are still in memory."""
    history_bytes: int = 0
    evidence_pooled: int = 0
    """Slashing evidence waiting for our next block (one per offender)."""


IMPORT_SECONDS_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _Histogram:
    """Counts of observations per upper bound, for the block import time metric."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._counts = [0] * len(bounds)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.total += value
        self.count += 1
        for index, bound in enumerate(self._bounds):
            if value <= bound:
                self._counts[index] += 1
                break

    def cumulative(self) -> tuple[tuple[float, int], ...]:
        running, result = 0, []
        for bound, count in zip(self._bounds, self._counts, strict=True):
            running += count
            result.append((bound, running))
        return tuple(result)


@dataclass(frozen=True, slots=True, kw_only=True)
class _ChangeWrite:
    """What one change of the store writes besides the head change (the path to the new head
    is read from storage on the worker): side blocks, the vote pool's changes, and the new
    checkpoints (None: unchanged) and latest votes."""

    side_blocks: tuple[Block, ...]
    pool_added: tuple[Vote, ...]
    pool_removed: tuple[Vote, ...]
    floor_epoch: Epoch
    justified: Checkpoint | None
    finalized: Checkpoint | None
    votes: tuple[Vote, ...]

    @property
    def moves_checkpoints(self) -> bool:
        return self.justified is not None or self.finalized is not None


def _missing(block_id: BlockId) -> StorageError:
    """A released finalized block not in storage (it is stored before it is released)."""
    return StorageError(f"finalized block {block_id.hex()} is missing from storage")


def _trust_stored(tx: Transaction, txid: TxId) -> bool:
    """Signature check for blocks replayed from our own database (verified before storing)."""
    return True


class ChainService:
    """Fork choice, persistence, mempool, transaction index and chain events of one node."""

    def __init__(
        self,
        *,
        params: ChainParams,
        genesis: GenesisConfig,
        storage: ChainStore,
        storage_worker: StorageWorker,
        offload: bool,
        limits: NodeLimits,
        events: EventHub,
        now_ms: Callable[[], int],
        node_id: bytes = b"",
    ) -> None:
        self.log = logging.LoggerAdapter(_logger, {"node": node_id.hex()[:12]})
        """Chain log lines carry the node's short id as ``node``."""
        self.params = params
        self.genesis = genesis
        self.storage = storage
        self._kept: dict[TxId, None] = {}
        self._kept_offers: dict[Hash32, None] = {}
        """Offers of our clients kept in storage while the book holds them, oldest first."""
        """Submissions of our clients kept in storage until they are settled, oldest first."""
        self.limits = limits
        self.events = events
        self.now_ms = now_ms
        self._offload = offload
        self._storage_worker = storage_worker
        self.store: Store = get_forkchoice_store(params, genesis)
        self.signatures = SignatureCache(params.chain_id, limits.signature_cache)
        self.mempool = Mempool(params, limits.mempool, signatures=self.signatures)
        self.offers = OfferBook(params, limits.offers)
        self.detector = SlashingDetector(params.chain_id)
        self.lock = trio.Lock()
        self.snapshots = SnapshotServer(self)
        """The finalized states this node serves to snapshot-syncing peers."""
        self.vote_archive = VoteArchive()
        """Every vote counted, by link: what light clients' finality certificates quote
        (`certificate`). Not stored as such: `restore` refills it from the votes of the stored
        blocks and the stored latest votes (gossiped votes no block carried are lost)."""
        self._undo: dict[BlockId, UndoData] = {}
        self._index = TxIndex(
            self._body(self.store.nodes[self.store.genesis_id]),
            rejected_history=limits.rejected_history,
        )
        self._pending = PendingMessages(limits)
        """Blocks on a known parent waiting for their slot, votes waiting for their head or
        their slot."""
        self.vote_pool: OrderedDict[bytes, Vote] = OrderedDict()
        self._pool_added: dict[bytes, Vote] = {}
        self._pool_removed: dict[bytes, Vote] = {}
        """Changes to `vote_pool` not yet written (`record_vote_pool`, with the next write)."""
        self.evidence_pool: OrderedDict[bytes, Evidence] = OrderedDict()
        """Evidence for our next block, at most one per offender (`NodeLimits.evidence_pool`)."""
        self._evidence_of: dict[PublicKey, bytes] = {}
        """Offender -> key of its evidence in `evidence_pool`."""
        self._history: deque[tuple[int, int]] = deque()
        """(height, encoded size) of the finalized blocks below the finalized one whose bodies
        are in memory, oldest first."""
        self._history_bytes = 0
        self._history_floor = 0
        """Blocks below this height have released bodies; `_index` does not cover them."""
        self.new_evidence: list[Evidence] = []
        """Evidence found since the caller last took it (to gossip)."""
        self._saved_justified = self.store.justified_checkpoint
        self._saved_finalized = self.store.finalized_checkpoint
        self._reported_head = self.head_info()
        self._changed = trio.Event()
        self._blocks_imported = 0
        self._import_times = _Histogram(IMPORT_SECONDS_BUCKETS)
        self.last_import_s = 0.0
        """Seconds on the node's clock that the last imported block held the lock (the
        proposer's pace counts it; waiting for the lock is not the block's cost)."""
        self._blocks_invalid = 0
        self._blocks_pruned = 0
        self._votes_imported = 0
        self._reorgs = 0
        self._offloaded = 0

    # -- time ----------------------------------------------------------------------------------
    def current_slot(self) -> Slot:
        return compute_slot_at_time(self.params, self.genesis.genesis_time_ms, self.now_ms())

    def next_context(self) -> BlockContext:
        """Where a transaction submitted now would be included: the next block on the head."""
        head = self.head_node()
        return BlockContext(
            height=Height(head.height + 1), slot=Slot(max(self.current_slot(), head.slot + 1))
        )

    def next_governance(self) -> GovernanceState:
        """Governance as the next block on the head starts from: the parameters it is
        validated with (what the pool admits by) and the proposals it may vote on."""
        return get_governance(self.store, self.store.head, self.next_context().slot)

    # -- queries -------------------------------------------------------------------------------
    def head_node(self) -> BlockNode:
        return self.store.nodes[self.store.head]

    def head_info(self) -> HeadInfo:
        node = self.head_node()
        return HeadInfo(block_id=node.block_id, height=node.height, slot=node.slot)

    @property
    def reported_head(self) -> HeadInfo:
        """The head once its blocks are stored, indexed and taken out of the pool: what the
        node reports, so that a block read as the head has its transactions reported
        included (the store's own head moves first, while the write is under way)."""
        return self._reported_head

    def head_view(self) -> UtxoView:
        """The UTXO state at the head (the store's own view: read, never change)."""
        return self.store.view

    def finalized_height(self) -> int:
        return self.store.nodes[self.store.finalized_checkpoint.block_id].height

    @property
    def durable_finalized(self) -> Checkpoint:
        """The finalized checkpoint as last written to storage: what the node reports, so that
        nothing it reported can be lost by a crash (the store may be one write ahead)."""
        return self._saved_finalized

    @property
    def durable_justified(self) -> Checkpoint:
        """The justified checkpoint as last written to storage (see `durable_finalized`)."""
        return self._saved_justified

    def get_block(self, block_id: BlockId) -> Block | None:
        """A block of the fork-choice tree or of the finalized chain (old finalized ones are
        read from storage)."""
        node = self.store.nodes.get(block_id)
        return None if node is None else self._body(node)

    def canonical_block(self, height: Height) -> Block | None:
        block_id = self.canonical_id(height)
        return None if block_id is None else self._body(self.store.nodes[block_id])

    def canonical_id(self, height: Height) -> BlockId | None:
        return self._index.block_id_at(height)

    def height_of(self, block_id: BlockId) -> Height | None:
        """The height of a block `get_block` serves (the tree, the finalized chain), or None."""
        node = self.store.nodes.get(block_id)
        return None if node is None else node.height

    async def bodies(self, block_ids: Sequence[BlockId], max_bytes: int) -> list[Block]:
        """The bodies of the known blocks among `block_ids`, in order, up to and including
        the first that brings their bytes past `max_bytes`. Bodies finality released are read
        on the storage worker (decoded there, their stored bytes kept as their encoding), so
        a peer syncing old history never costs the event loop a database read or a decode.

        Raises:
            StorageError: a released body is not in storage.
        """
        nodes = self.store.nodes
        wanted = [(block_id, nodes[block_id].block) for block_id in block_ids if block_id in nodes]

        def load() -> list[Block]:
            found: list[Block] = []
            total = 0
            for block_id, body in wanted:
                if body is None:
                    body = self._stored_body(block_id)
                found.append(body)
                total += len(body.encoded)
                if total > max_bytes:
                    break
            return found

        if all(body is not None for _, body in wanted):
            return load()  # all in memory: no hand-over
        return await self.run_storage(load)

    def _body(self, node: BlockNode) -> Block:
        """A known block's body: in memory, or from storage once finality released it.

        Raises:
            StorageError: a released body is not in storage (it is stored before release).
        """
        if node.block is not None:
            return node.block
        return self._stored_body(node.block_id)

    def _stored_body(self, block_id: BlockId) -> Block:
        """A released body, read from storage (it is stored before release)."""
        block = self.storage.get_block(block_id)
        if block is None:
            raise _missing(block_id)
        return block

    def _locate(self, txid: TxId) -> TxLocation | None:
        """Where `txid` is on the canonical chain, or None.

        The memory index covers the blocks whose bodies are in memory; storage answers for the
        older, finalized ones.
        """
        return self._index.locate(txid) or self._stored_location(txid)

    def _stored_location(self, txid: TxId) -> TxLocation | None:
        """Where `txid` is in the finalized blocks whose bodies left memory (storage agrees
        with the memory index there, and only there, so its answer is taken below
        `_history_floor` only). A query of the database: ask the memory index first."""
        stored = self.storage.transaction_location(txid)
        if stored is None or stored.height >= self._history_floor:
            return None
        return stored

    def state_root(self, block_id: BlockId) -> Hash32 | None:
        """The state root after `block_id`, as its header carries it; None if unknown."""
        block = self.get_block(block_id)
        return None if block is None else block.header.state_root

    def certificate(self, trusted: Checkpoint) -> FinalityCertificate | None:
        """How a light client trusting `trusted` reaches our finalized checkpoint, from the
        votes we archived (`build_certificate`); None when we cannot tell it anything new."""

        return build_certificate(self.store, self.vote_archive, trusted, self.header_of)

    def header_of(self, block_id: BlockId) -> BlockHeader | None:
        """A known block's header (old finalized ones are read from storage); None when the
        block is unknown or a snapshot's anchor point (held without its block)."""
        node = self.store.nodes.get(block_id)
        if node is None or (node.block is None and node.height <= self.store.anchor_height):
            return None
        if node.block is not None:
            return node.block.header
        header = self.storage.get_header(block_id)  # the header alone: no body decoded
        if header is None:
            raise _missing(block_id)
        return header

    async def prove_state(self, block_id: BlockId, query: StateQuery) -> StateProof:
        """The proof answering `query` in the state after `block_id` (the finalized block or
        a descendant). Made on the store's own cursor, moved there and back to the head: a
        proof costs the blocks between, not a copy of the whole state.

        Raises:
            InvalidBlock: `CONFLICTS_WITH_FINALIZED` for any other block.
            ProofTooLarge: the account or the stake table is past the proof limits.
        """
        store = self.store
        if block_id not in store.tree:
            raise InvalidBlock(Reason.CONFLICTS_WITH_FINALIZED, "state before the finalized block")
        async with self.lock:  # the storage worker reads the cursor while it persists a change
            try:
                return prove(move_view(store, block_id), query)
            finally:
                move_view(store, store.head)

    def prove_transaction(self, txid: TxId) -> tuple[BlockHeader, Transaction, InclusionProof]:
        """The header of the canonical block holding `txid`, the transaction, and the branch
        that places it in the body the header commits to (`verify_inclusion`).

        Raises:
            KeyError: `txid` is not on the canonical chain (pending, unknown, or undone).
            StorageError: its block's body is missing from storage.
        """
        location = self._locate(txid)
        if location is None:
            raise KeyError(f"transaction {txid.hex()} is not on the canonical chain")
        block = self.get_block(location.block_id)  # a released body is read from storage
        if block is None:
            raise StorageError(
                f"block {location.block_id.hex()} of transaction {txid.hex()} is gone"
            )
        position = location.position
        return block.header, block.transactions[position], prove_inclusion(block, position)

    def transaction(self, txid: TxId) -> TxInfo:
        """The status of `txid`: on the canonical chain, in the pool, rejected, or unknown.

        A pool transaction is on no block whose body left memory (its inputs would be spent),
        so the pool answers before the database is asked.
        """
        location = self._index.locate(txid)
        if location is None:
            entry = self.mempool.get(txid)
            if entry is not None:
                return TxInfo(txid=txid, status=TxStatus.PENDING, tx=entry.tx)
            location = self._stored_location(txid)
        if location is not None:
            block_id, height = location.block_id, location.height
            block = self.get_block(block_id)
            if block is None:
                raise StorageError(f"block {block_id.hex()} of transaction {txid.hex()} is gone")
            final = height <= self.store.nodes[self._saved_finalized.block_id].height
            return TxInfo(
                txid=txid,
                status=TxStatus.FINALIZED if final else TxStatus.INCLUDED,
                tx=block.transactions[location.position],
                block_id=block_id,
                height=height,
            )
        if self.mempool.is_orphan(txid):
            return TxInfo(txid=txid, status=TxStatus.PENDING)
        reason = self._index.rejection(txid)
        if reason is not None:
            return TxInfo(txid=txid, status=TxStatus.REJECTED, reason=reason)
        return TxInfo(txid=txid, status=TxStatus.UNKNOWN)

    async def wait_changed(self) -> None:
        """Wait for the next change of the head, finality, the pool or a transaction status."""
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def statistics(self) -> ChainStatistics:
        return ChainStatistics(
            blocks_imported=self._blocks_imported,
            import_seconds_buckets=self._import_times.cumulative(),
            import_seconds_sum=self._import_times.total,
            import_seconds_count=self._import_times.count,
            blocks_invalid=self._blocks_invalid,
            blocks_pruned=self._blocks_pruned,
            votes_imported=self._votes_imported,
            blocks_waiting=self._pending.blocks_waiting,
            blocks_waiting_bytes=self._pending.blocks_waiting_bytes,
            blocks_dropped=self._pending.blocks_dropped,
            votes_waiting=self._pending.votes_waiting,
            votes_dropped=self._pending.votes_dropped,
            history_blocks=len(self._history),
            history_bytes=self._history_bytes,
            evidence_pooled=len(self.evidence_pool),
            reorgs=self._reorgs,
            signatures_offloaded=self._offloaded,
            signature_cache_hits=self.signatures.hits,
        )

    # -- storage -------------------------------------------------------------------------------
    async def run_storage(self, function: Callable[[], _R]) -> _R:
        """Run blocking storage work (chain store, slashing protection) on the storage worker:
        in its thread for a durable store, one call at a time, else inline."""
        return await self._storage_worker.run(function)

    def _commits(self, applied: Sequence[Block]) -> list[BlockCommit]:
        """Commits for `applied` (oldest first) ending at the head view.

        The asset records after a block are the records before the next block that touched
        the asset (from its undo data), or the head's records for the last one.
        """
        view = self.store.view
        after: dict[AssetId, AssetInfo | None] = {}
        commits: list[BlockCommit] = []
        for block in reversed(applied):
            undo = self._undo[block.block_id]
            touched = sorted({asset for tx_undo in undo.txs for asset, _ in tx_undo.assets})
            records: list[AssetInfo] = []
            for asset in touched:
                info = after[asset] if asset in after else view.asset(asset)
                if info is None:
                    raise StorageError(f"asset {asset.hex()} vanished after its block")
                records.append(info)
            commits.append(BlockCommit(block=block, undo=undo, assets=tuple(records)))
            before: dict[AssetId, AssetInfo | None] = {}
            for tx_undo in undo.txs:
                for asset, previous in tx_undo.assets:
                    before.setdefault(asset, previous)
            after.update(before)
        commits.reverse()
        return commits

    def _storage_path(self) -> tuple[list[BlockId], list[Block]]:
        """Blocks to revert (newest first) and to commit (oldest first) so that the stored
        canonical chain ends at the store's head.

        It reads the chain store: call it on the storage worker, with the lock held (so the
        fork-choice store it walks does not change meanwhile).
        """
        store, storage = self.store, self.storage
        target = store.head
        reverts: list[BlockId] = []
        current = storage.head
        while current != storage.genesis and not (
            current in store.nodes and is_ancestor(store, current, target)
        ):
            block = storage.get_block(current)
            if block is None:
                raise StorageError(f"stored head block {current.hex()} is missing")
            reverts.append(current)
            current = block.header.parent
        path: list[Block] = []
        node: BlockNode | None = store.nodes[target]
        while node is not None and node.block_id != current:
            path.append(self._body(node))
            node = node.parent
        path.reverse()
        return reverts, path

    async def _persist(self, side_blocks: Iterable[Block], votes: Iterable[Vote]) -> None:
        justified = self.store.justified_checkpoint
        finalized = self.store.finalized_checkpoint
        latest = self._latest_of(votes)
        write = _ChangeWrite(
            side_blocks=tuple(side_blocks),
            pool_added=tuple(self._pool_added.values()),
            pool_removed=tuple(self._pool_removed.values()),
            floor_epoch=finalized.epoch,
            justified=justified if justified != self._saved_justified else None,
            finalized=finalized if finalized != self._saved_finalized else None,
            votes=latest,
        )
        self._pool_added, self._pool_removed = {}, {}
        await self._write(write)
        self._saved_justified, self._saved_finalized = justified, finalized

    async def _write(self, write: _ChangeWrite) -> None:
        """Hand one change to the storage worker; return once it is durable."""
        await self.run_storage(partial(self._write_blocking, write))

    def _write_blocking(self, write: _ChangeWrite) -> None:
        """Move the stored chain to the store's head (the path is read from storage here, on
        the worker), then write side blocks, the vote pool's changes, and the checkpoints and
        latest votes: each its own transaction."""
        storage = self.storage
        reverts, path = self._storage_path()
        for block_id in reverts:
            storage.revert_block(block_id)
        for commit in self._commits(path):
            storage.commit_block(commit)
        on_chain = {block.block_id for block in path}
        for block in write.side_blocks:
            if block.block_id not in on_chain:
                storage.store_block(block)
        if write.pool_added or write.pool_removed:  # before the checkpoints its votes moved
            storage.record_vote_pool(
                added=write.pool_added, removed=write.pool_removed, floor_epoch=write.floor_epoch
            )
        if write.votes or write.moves_checkpoints:
            storage.record_forkchoice(
                justified=write.justified, finalized=write.finalized, votes=write.votes
            )

    def _latest_of(self, votes: Iterable[Vote]) -> tuple[Vote, ...]:
        """The votes that are now their validator's latest in the fork choice."""
        latest: dict[bytes, Vote] = {}
        for vote in votes:
            counted = self.store.latest_votes.get(vote.validator)
            if counted is not None and counted.data == encode_item(vote.data_rlp()):
                latest[vote.validator] = vote
        return tuple(latest.values())

    # -- restart -------------------------------------------------------------------------------
    def restore(self, slot: Slot) -> None:
        """Rebuild the fork-choice store from the database (blocking: run it on the storage
        worker, before serving).

        Blocks are replayed through `on_block` (witnesses trusted: they were verified before
        they were stored), the finalized chain first, then every stored block above it, then
        the latest votes, at the current `slot` (an argument: this may run in a worker thread,
        where trio's clock cannot be read). The stored canonical chain is then moved to the
        resulting head (a crash in the middle of a reorg leaves it on either branch).
        """
        anchored = self.storage.anchor()
        if anchored is not None:
            self._start_at(*anchored)
        stored = self.storage.load()
        if stored.head == stored.genesis and len(stored.blocks) <= 1 and not stored.votes:
            return
        floor = stored.blocks[0].header.height if stored.blocks else 1
        history = ((block, True) for block in self._stored_history(floor))
        for block, canonical in itertools.chain(history, ((b, False) for b in stored.blocks)):
            if block.block_id in self.store.nodes:
                continue
            on_tick(self.store, Slot(max(slot, block.header.slot)))
            finalized = self.store.finalized_checkpoint
            try:
                outcome = on_block(
                    self.store, block, self.store.current_slot, signatures_valid=_trust_stored
                )
            except InvalidBlock:
                continue  # a side block that finality has ruled out meanwhile
            for vote in block.votes:
                self.vote_archive.add(vote)
            if outcome is BlockOutcome.ADDED and not canonical:
                # Only blocks above the stored finalized one may have to be committed below;
                # the history below it is canonical in storage already.
                self._undo[block.block_id] = self._undo_of(block.block_id)
            if self.store.finalized_checkpoint != finalized:
                # Every replayed block is stored, so the history can leave memory as we go.
                self._release_history()
                self.vote_archive.prune(self.store.finalized_checkpoint.epoch)
        for vote in stored.pooled_votes:  # counted before the crash, carried by no block yet
            with contextlib.suppress(InvalidVote):
                on_vote(self.store, vote, self.store.current_slot)
            self._pool_vote(vote, stored=True)
        for vote in stored.votes.values():
            try:
                on_vote(self.store, vote, self.store.current_slot)
            except InvalidVote:
                continue
            self.vote_archive.add(vote)
            self._pool_vote(vote)  # it may have reached no block before the restart
        if stored.finalized is not None and adopt_checkpoints(
            self.store, stored.justified or stored.finalized, stored.finalized
        ):
            self._release_history()  # what we reported as finalized never moves back
        pop_head_change(self.store)
        reverts, path = self._storage_path()
        for block_id in reverts:
            self.storage.revert_block(block_id)
        for commit in self._commits(path):
            self.storage.commit_block(commit)
        self._saved_justified = self.store.justified_checkpoint
        self._saved_finalized = self.store.finalized_checkpoint
        self._reported_head = self.head_info()
        self.storage.record_forkchoice(
            justified=self._saved_justified, finalized=self._saved_finalized
        )
        self._rebuild_indexes()
        self._prune_undo()

    def _start_at(self, anchor: Anchor, view: UtxoView) -> None:
        """Start the fork choice at the snapshot the store was started from, not genesis."""
        self.store = get_anchored_store(
            self.params, self.genesis, self.store.genesis_id, anchor, view
        )
        self._index = TxIndex(anchor.block, rejected_history=self.limits.rejected_history)
        self._history_floor = anchor.block.header.height
        self._saved_justified = self._saved_finalized = anchor.checkpoint

    def _stored_history(self, floor: int) -> Iterator[Block]:
        """The stored canonical blocks above the store's first one and below `floor`, read
        one at a time.

        Raises:
            StorageError: one of them is missing.
        """
        for height in range(self.store.anchor_height + 1, floor):
            block_id = self.storage.canonical_block_id(Height(height))
            block = None if block_id is None else self.storage.get_block(block_id)
            if block is None:
                raise StorageError(f"canonical block at height {height} is missing")
            yield block

    def _undo_of(self, block_id: BlockId) -> UndoData:
        undo = self.store.nodes[block_id].undo
        if undo is None:
            raise StorageError("the store dropped the undo data of a block it just imported")
        return undo

    def _rebuild_indexes(self) -> None:
        """The canonical ids down to the store's first block (genesis, or a snapshot's); the
        memory tx index above the history floor."""
        node: BlockNode | None = self.head_node()
        ids: list[BlockId] = []
        indexed: list[Block] = []
        while node is not None and node.height >= self.store.anchor_height:
            ids.append(node.block_id)
            if node.height >= self._history_floor:
                indexed.append(self._body(node))
            node = node.parent
        ids.reverse()
        self._index.rebuild(ids, reversed(indexed))

    def _release_history(self) -> None:
        """Keep at most `history_blocks` and `history_bytes` of finalized bodies below the
        finalized block in memory; release the older ones (storage has them: every block is
        stored before finality can pass it) and drop their transactions from the index."""
        limits = self.limits
        finalized = self.store.nodes[self.store.finalized_checkpoint.block_id]
        start = self._history[-1][0] + 1 if self._history else self._history_floor
        fresh: list[BlockNode] = []
        node = finalized.parent
        while node is not None and node.height >= start:
            fresh.append(node)
            node = node.parent
        for node in reversed(fresh):
            size = 0 if node.block is None else len(node.block.encoded)
            self._history.append((node.height, size))
            self._history_bytes += size
        floor = self._history_floor
        while self._history and (
            len(self._history) > limits.history_blocks or self._history_bytes > limits.history_bytes
        ):
            height, size = self._history.popleft()
            self._history_bytes -= size
            floor = height + 1
        if floor <= self._history_floor:
            return
        for block in release_bodies(self.store, Height(floor)):
            self._index.release(block)
        self._history_floor = floor

    def _prune_undo(self) -> None:
        for block_id in [b for b in self._undo if b not in self.store.tree]:
            del self._undo[block_id]

    # -- imports -------------------------------------------------------------------------------
    def tick(self) -> int:
        """Advance the store to the current slot; return it."""
        slot = self.current_slot()
        on_tick(self.store, slot)
        return slot

    def check_header(self, signed: SignedHeader, size: int) -> None:
        """Judge a block by its header (`check_block_header`), against our store at the
        current slot, before its body is decoded. It returns when the header passes, and for
        a block on an unknown parent or for a later slot (judged whole later: the orphan pool
        and the waiting blocks need it decoded) whose proposer's signature holds: that rule
        needs no parent, and honest peers do not forward such a block (it is ignored, not
        relayed). A block that breaks a rule counts as invalid, as it would on import; one on
        a pruned parent is remembered as pruned, so that its descendants need not wait for it.

        Raises:
            InvalidBlock: as `check_block_header`, but for `UNKNOWN_PARENT` and `FUTURE_SLOT`;
                `BAD_PROPOSER_SIGNATURE` also for a block on an unknown parent or a later slot.
        """
        store = self.store
        try:
            check_block_header(
                store, signed, size, Slot(max(store.current_slot, self.current_slot()))
            )
        except InvalidBlock as exc:
            reason = exc.reason
            if reason in (Reason.UNKNOWN_PARENT, Reason.FUTURE_SLOT):
                if signed.is_signature_valid(self.params.chain_id):
                    return
                self._blocks_invalid += 1
                raise InvalidBlock(Reason.BAD_PROPOSER_SIGNATURE) from exc
            if (
                reason is Reason.CONFLICTS_WITH_FINALIZED
                and signed.header.parent not in store.nodes
            ):
                remember_pruned(store, [signed.header.block_id])
            if reason is not Reason.DUPLICATE_BLOCK:
                self._blocks_invalid += 1
            raise

    async def import_block(self, block: Block, *, peer: Source = None) -> Outcome:
        """Validate and import `block` (and the waiting votes it unlocks).

        `peer` sent it (None: our own); a block that has to wait for its slot is charged to
        its quota. A block with an unknown parent is not held (`Outcome.UNKNOWN_PARENT`).

        Raises:
            InvalidBlock: the block breaks a rule (the store and database are unchanged), or
                `CONFLICTS_WITH_FINALIZED` for a block with an unknown parent that is too old
                to extend the finalized chain.
        """
        if block.block_id in self.store.nodes:
            return Outcome.KNOWN
        if block.header.parent in self.store.nodes:
            # Before the lock, so that votes and other blocks need not wait for the thread.
            await self._verify_off_loop(block)
        async with self.lock:
            return await self._import_block_locked(block, peer)

    async def _import_block_locked(self, block: Block, peer: Source) -> Outcome:
        started, clock_started = time.perf_counter(), trio.current_time()
        outcome = await self._import_block_timed(block, peer)
        if outcome is Outcome.IMPORTED:
            self._import_times.observe(time.perf_counter() - started)
            self.last_import_s = trio.current_time() - clock_started
        return outcome

    async def _import_block_timed(self, block: Block, peer: Source) -> Outcome:
        store = self.store
        block_id = block.block_id
        if block_id in store.nodes:
            return Outcome.KNOWN
        slot = self.tick()
        header = block.header
        if header.slot > slot + self.limits.max_future_slots:
            self._pending.ignore_too_early()
            return Outcome.TOO_EARLY
        parent_known = header.parent in store.nodes
        if not parent_known and (
            header.slot <= self._finalized_slot()  # an ancestor of the finalized block is known
            or header.parent in store.pruned
        ):
            remember_pruned(store, [block_id])  # so its descendants need not wait for it
            raise InvalidBlock(Reason.CONFLICTS_WITH_FINALIZED, "its chain conflicts with finality")
        if not parent_known:
            return Outcome.UNKNOWN_PARENT
        if header.slot > slot:
            self._pending.hold_block(block, source=peer)
            return Outcome.FUTURE_SLOT
        outcome = await self._import_one(block, Slot(slot))
        if outcome is None:
            return Outcome.KNOWN
        await self._after_imports([(block, outcome)], Slot(slot))
        return Outcome.IMPORTED if outcome is BlockOutcome.ADDED else Outcome.PRUNED

    def _finalized_slot(self) -> int:
        return self.store.nodes[self.store.finalized_checkpoint.block_id].slot

    async def _after_imports(self, results: list[tuple[Block, BlockOutcome]], slot: Slot) -> None:
        """Persist and publish what a batch of imports did. The votes of a pruned block count
        (they moved finality) even though the block itself is not kept."""
        kept = [block for block, outcome in results if outcome is BlockOutcome.ADDED]
        carried = [vote for block, _ in results for vote in block.votes]
        floor = self.store.finalized_checkpoint.epoch
        for vote in carried:  # kept for our blocks until our own chain carries them
            if vote.target.epoch >= floor:
                self._pool_vote(vote)
        votes = carried + self._retry_votes(slot)
        if results or votes:
            await self._after_change(kept, votes)

    async def _import_one(self, block: Block, slot: Slot) -> BlockOutcome | None:
        """`on_block` plus slashing detection; None for a duplicate.

        Raises:
            InvalidBlock: the block breaks a rule.
        """
        await self._verify_off_loop(block)
        found = self._observe_block(block)
        try:
            outcome = on_block(self.store, block, slot, signatures_valid=self.signatures)
        except InvalidBlock as exc:
            await self._take_evidence(found)
            if exc.reason is Reason.DUPLICATE_BLOCK:
                return None
            self._blocks_invalid += 1
            raise
        self._blocks_imported += 1
        if outcome is BlockOutcome.ADDED:
            self._undo[block.block_id] = self._undo_of(block.block_id)
        else:
            self._blocks_pruned += 1
            self.log.warning(
                "block %s at slot %d finalized a checkpoint off its own chain and was pruned",
                block.block_id.hex()[:16],
                block.header.slot,
            )
        await self._take_evidence(found)
        return outcome

    def _may_be_slashed(self, key: PublicKey) -> bool:
        """True when evidence against `key` could burn something at the head."""
        return bool(self.head_view().slashable_outpoints(key))

    def _is_watched(self, key: PublicKey) -> bool:
        """True when the slashing detector should see what `key` signs: it has stake to burn
        and no evidence in our pool yet. Strangers signing with fresh keys, and an equivocator
        signing pair after pair, cannot make the detector grow."""
        return key not in self._evidence_of and self._may_be_slashed(key)

    def _observe_block(self, block: Block) -> list[Evidence]:
        found: list[Evidence] = []
        if self._is_watched(block.header.proposer):
            found += self.detector.observe_header(block.signed_header)
        for vote in block.votes:
            if self._is_watched(vote.validator):
                found += self.detector.observe_vote(vote)
        return found

    async def _verify_off_loop(self, block: Block) -> None:
        """Verify the witnesses of a block's new transactions in a worker thread."""
        await self.verify_off_loop(block.transactions)

    async def verify_off_loop(self, txs: Iterable[Transaction]) -> None:
        """Verify the witnesses of transactions neither in the pool nor in the signature cache
        in a worker thread, filling the cache, when there are enough of them to be worth the
        hand-over (a block's, or a batch of gossip about to be validated)."""
        if not self._offload:
            return
        cache = self.signatures
        fresh = [
            tx
            for tx in txs
            if tx.inputs
            and tx.kind is not TxKind.REWARD
            and tx.txid not in self.mempool
            and not cache.knows(tx)
        ]
        if len(fresh) < self.limits.offload_signatures:
            return

        def verify_all() -> None:
            for tx in fresh:
                cache(tx, tx.txid)

        await trio.to_thread.run_sync(verify_all)
        self._offloaded += len(fresh)

    async def on_slot(self) -> None:
        """Slot tick: import the waiting blocks whose slot has come, retry the waiting votes,
        drop waiting blocks that can no longer extend the finalized chain."""
        async with self.lock:
            slot = self.tick()
            pending = self._pending
            pending.drop_blocks_through(Slot(self._finalized_slot()))
            due = pending.blocks_due(Slot(slot), self.store.nodes.__contains__)
            results: list[tuple[Block, BlockOutcome]] = []
            for block in due:
                pending.take_block(block.block_id)
                try:
                    outcome = await self._import_one(block, Slot(slot))
                except InvalidBlock:
                    continue
                if outcome is not None:
                    results.append((block, outcome))
            await self._after_imports(results, Slot(slot))

    async def import_vote(self, vote: Vote, *, peer: Source = None) -> Outcome:
        """Count a vote (or queue it when its head or slot is ahead of us).

        `peer` sent it (None: our own); a vote that has to wait is charged to its quota.

        Raises:
            InvalidVote: the vote breaks a rule; `FUTURE_VOTE` also for a vote more than
                `NodeLimits.max_future_slots` ahead (not queued), `BAD_VOTE_SIGNATURE` for a
                vote that would wait with a bad signature.
        """
        async with self.lock:
            slot = self.tick()
            if vote.slot > slot + self.limits.max_future_slots:
                raise InvalidVote(Reason.FUTURE_VOTE, f"slot {vote.slot} is too far ahead")
            found = self.detector.observe_vote(vote) if self._is_watched(vote.validator) else []
            await self._take_evidence(found)
            try:
                on_vote(self.store, vote, Slot(slot))
            except InvalidVote as exc:
                if exc.reason not in _RETRY_VOTE:
                    raise
                if exc.reason is Reason.FUTURE_VOTE and vote.slot <= slot:
                    raise  # its head is newer than the vote: no later slot makes it valid
                if not vote.is_signature_valid(self.params.chain_id):
                    raise InvalidVote(Reason.BAD_VOTE_SIGNATURE) from exc
                self._pending.hold_vote(vote, source=peer)
                return Outcome.QUEUED
            self._votes_imported += 1
            self._pool_vote(vote)
            await self._after_change([], [vote])
            return Outcome.IMPORTED

    def _repool_votes(self, change: HeadChange) -> None:
        """Put back the votes of blocks that left the chain: a vote cast on a branch that lost
        may still be needed for finality, and only a block of the new chain can carry it to
        nodes that never saw that branch."""
        if not change.undone:
            return
        floor = self.store.finalized_checkpoint.epoch
        carried = {encode(vote) for block in change.applied for vote in block.votes}
        for block in change.undone:
            for vote in block.votes:
                if vote.target.epoch >= floor and encode(vote) not in carried:
                    self._pool_vote(vote)

    def _pool_vote(self, vote: Vote, *, stored: bool = False) -> None:
        """Keep `vote` for our next block (`stored`: it is in the database already), within
        `NodeLimits.vote_pool`, the oldest leaving first."""
        key = encode(vote)
        if key in self.vote_pool:
            return
        self.vote_pool[key] = vote
        if not stored:
            self._pool_added[key] = vote
            self._pool_removed.pop(key, None)
        while len(self.vote_pool) > self.limits.vote_pool:
            self._unpool_vote(*self.vote_pool.popitem(last=False))

    def _unpool_vote(self, key: bytes, vote: Vote) -> None:
        self.vote_pool.pop(key, None)
        if self._pool_added.pop(key, None) is None:
            self._pool_removed[key] = vote

    def _retry_votes(self, slot: Slot) -> list[Vote]:
        """Count the waiting votes that became valid; drop those that never will."""
        counted: list[Vote] = []
        pending = self._pending
        for key, vote in pending.votes():
            try:
                on_vote(self.store, vote, slot)
            except InvalidVote as exc:
                if exc.reason not in _RETRY_VOTE:
                    pending.take_vote(key)
                continue
            pending.take_vote(key)
            self._votes_imported += 1
            self._pool_vote(vote)
            counted.append(vote)
        return counted

    async def import_evidence(self, evidence: Evidence) -> Outcome:
        """Stop counting an equivocator's weight and keep the evidence for our next block.

        Raises:
            InvalidTransaction: `BAD_EVIDENCE`; `NOTHING_TO_SLASH` when the offender has no
                stake to burn at the head (a stranger's key, or already slashed): such evidence
                is neither applied nor kept.
        """
        key = evidence_key(evidence)
        if key in self.evidence_pool:
            return Outcome.KNOWN
        async with self.lock:
            if not self._may_be_slashed(evidence.offender):
                raise InvalidTransaction(Reason.NOTHING_TO_SLASH, evidence.offender.hex())
            on_evidence(self.store, evidence)
            self._pool_evidence(key, evidence)
            await self._after_change([], [])
            return Outcome.IMPORTED

    def _pool_evidence(self, key: bytes, evidence: Evidence) -> bool:
        """Keep `evidence` for our next block unless its offender already has some; True if
        kept. When the pool is full the oldest leaves (its offender is slashed in our fork
        choice already; only its inclusion is lost)."""
        offender = evidence.offender
        if offender in self._evidence_of:
            return False
        self.evidence_pool[key] = evidence
        self._evidence_of[offender] = key
        while len(self.evidence_pool) > self.limits.evidence_pool:
            _, oldest = self.evidence_pool.popitem(last=False)
            del self._evidence_of[oldest.offender]
        return True

    async def _take_evidence(self, found: list[Evidence]) -> None:
        for evidence in found:
            key = evidence_key(evidence)
            if key in self.evidence_pool or not self._may_be_slashed(evidence.offender):
                continue
            try:
                on_evidence(self.store, evidence)
            except InvalidTransaction:
                continue
            if self._pool_evidence(key, evidence):
                self.new_evidence.append(evidence)

    # -- transactions --------------------------------------------------------------------------
    def add_transaction(self, tx: Transaction, *, peer: str | None) -> PoolChange:
        """Validate `tx` against the head plus the pool and keep it.

        Raises:
            InvalidTransaction: with the ledger's or the pool's reason (recorded as REJECTED
                for a local submission).
        """
        try:
            self._check_not_on_chain(tx)
            self.mempool.set_rules(self.next_governance())
            change = self.mempool.add(
                tx, self.head_view(), self.next_context(), now=trio.current_time(), peer=peer
            )
        except InvalidTransaction as exc:
            if peer is None and exc.reason is not Reason.ALREADY_KNOWN:
                self.reject(tx.txid, exc.reason)
                self.publish_tx(tx.txid)
                self._notify()
            raise
        self._index.forget_rejection(tx.txid)
        self._publish_pool_change(change)
        self._notify()
        return change

    # -- offers --------------------------------------------------------------------------------
    def add_offer(self, offer: Offer, *, local: bool = False) -> tuple[BookEntry, bool]:
        """Check `offer` against the head (and the pool: a coin a pending transaction spends
        is being spent) and keep it in the book; return its entry and whether it is new.

        Raises:
            InvalidOffer: with the book's or the ledger's reason; the book is unchanged.
        """
        if self.mempool.spender_of(offer.outpoint) is not None:
            raise InvalidOffer(Reason.MEMPOOL_CONFLICT, f"{offer.outpoint} is being spent")
        return self.offers.add(offer, self.head_view(), self.next_context().height, local=local)

    # -- submissions that survive a crash --------------------------------------------------------
    async def keep_submitted(self, tx: Transaction) -> None:
        """Persist a client's transaction before it is acknowledged: a crash does not lose it."""
        if tx.txid not in self._kept:
            await self.run_storage(partial(self.storage.keep_submitted, tx.txid, tx.encoded))
            self._kept[tx.txid] = None

    async def readmit_submitted(self) -> None:
        """Admit the kept submissions again after a restart (call once, before serving).

        Each goes through the normal admission against the restored head, so one that the
        chain meanwhile spent or settled is dropped, not trusted.
        """
        for txid, raw in await self.run_storage(self.storage.submitted):
            with contextlib.suppress(InvalidTransaction, DecodeError):  # settled just below
                self.add_transaction(Transaction.from_bytes(raw), peer=None)
            self._kept[txid] = None
        await self.forget_settled()

    async def forget_settled(self) -> None:
        """Stop keeping submissions that are finalized, rejected or gone from the pool."""
        if settled := self._settled():
            await self.run_storage(partial(self.storage.forget_submitted, settled))

    async def keep_offer(self, offer: Offer) -> None:
        """Persist a client's offer before it is acknowledged: a restart does not lose it."""
        offer_id = offer.offer_id(self.params.chain_id)
        if offer_id not in self._kept_offers:
            await self.run_storage(partial(self.storage.keep_offer, offer_id, encode(offer)))
            self._kept_offers[offer_id] = None

    async def readmit_offers(self) -> None:
        """Put the kept offers in the book again after a restart (call once, before serving);
        one that no longer holds against the restored head is forgotten."""
        for offer_id, raw in await self.run_storage(self.storage.kept_offers):
            with contextlib.suppress(InvalidOffer, DecodeError):  # forgotten just below
                self.add_offer(decode(Offer, raw), local=True)
            self._kept_offers[offer_id] = None
        await self.forget_gone_offers()

    async def forget_gone_offers(self) -> None:
        """Stop keeping the offers the book no longer holds (taken, spent, expired, evicted)."""
        gone = [offer_id for offer_id in self._kept_offers if offer_id not in self.offers]
        for offer_id in gone:
            del self._kept_offers[offer_id]
        if gone:
            await self.run_storage(partial(self.storage.forget_offers, gone))

    def pending_submissions(self, limit: int) -> list[Transaction]:
        """Up to `limit` of our clients' submissions still in the pool, oldest first."""
        pending = []
        for txid in self._kept:
            entry = self.mempool.get(txid)
            if entry is not None:
                pending.append(entry.tx)
                if len(pending) == limit:
                    break
        return pending

    def _settled(self) -> list[TxId]:
        done = (TxStatus.FINALIZED, TxStatus.REJECTED, TxStatus.UNKNOWN)
        settled = [txid for txid in self._kept if self.transaction(txid).status in done]
        for txid in settled:
            del self._kept[txid]
        return settled

    def _check_not_on_chain(self, tx: Transaction) -> None:
        """Refuse a transaction that is on the chain, or that spends an output the chain has
        spent (its parent is on the chain): the pool would otherwise keep it as an orphan.

        Raises:
            InvalidTransaction: `ALREADY_KNOWN` or `CONFLICTING_SPEND`.
        """
        missing = self.missing_inputs(tx)
        if self.may_be_on_chain(tx, missing) and self._locate(tx.txid) is not None:
            raise InvalidTransaction(Reason.ALREADY_KNOWN, "on the chain")
        for index in missing:
            if self._locate(tx.inputs[index].outpoint.txid) is not None:
                raise InvalidTransaction(Reason.CONFLICTING_SPEND, f"input {index} is spent")

    def missing_inputs(self, tx: Transaction) -> list[int]:
        """The indexes of the inputs that spend neither an unspent output at the head nor an
        output of a pool transaction."""
        view, mempool = self.head_view(), self.mempool
        return [
            index
            for index, tx_input in enumerate(tx.inputs)
            if view.get(tx_input.outpoint) is None and tx_input.outpoint.txid not in mempool
        ]

    @staticmethod
    def may_be_on_chain(tx: Transaction, missing: Sequence[int]) -> bool:
        """False when `tx` cannot be on the chain, so that the index need not be asked (for
        old blocks, a database query): a transaction on the chain spent its inputs there and
        its parents are on it, so one whose inputs (`missing`: `missing_inputs`) are all
        unspent at the head or outputs of the pool is not."""
        return bool(missing) or not tx.inputs

    def _reason_off_chain(self, tx: Transaction) -> Reason | None:
        """Why a transaction of a dropped block is neither back in the pool nor on the chain."""
        try:
            self._check_not_on_chain(tx)
            validate_transaction(
                tx,
                self.head_view(),
                self.next_governance().params,
                self.next_context(),
                signatures_valid=_trust_stored,
            )
        except InvalidTransaction as exc:
            return exc.reason
        return None

    def reject(self, txid: TxId, reason: Reason) -> None:
        """Report `txid` as REJECTED for `reason` (within `NodeLimits.rejected_history`)."""
        self._index.reject(txid, reason)

    def publish_tx(self, txid: TxId) -> None:
        self.events.publish(EventKind.TX_STATUS, self.transaction(txid))

    def _publish_pool_change(self, change: PoolChange) -> None:
        for removal in change.removed:
            self.reject(removal.txid, removal.reason)
        for txid in (*change.accepted, *change.orphaned, *(r.txid for r in change.removed)):
            self.publish_tx(txid)

    # -- after every change of the store ------------------------------------------------------
    async def _after_change(self, imported: list[Block], votes: list[Vote]) -> None:
        """Make a change of the store durable, then visible: persist → reindex → reconcile
        the mempool → publish. Each step reads only what the steps before it settled, so
        nothing is announced before it is on disk and indexed."""
        old_finalized = self._saved_finalized
        old_finalized_height = self._finalized_height_indexed()
        change = pop_head_change(self.store)
        archive = self.vote_archive
        for vote in itertools.chain((v for b in imported for v in b.votes), votes):
            archive.add(vote)
        archive.prune(self.store.finalized_checkpoint.epoch)
        await self._persist(imported, votes)
        self._reindex(change)
        touched = self._reconcile_mempool(change)
        if change.old_head != change.new_head:
            self.offers.prune(self.head_view(), self.next_context().height)
        self._publish(change, old_finalized, Height(old_finalized_height), touched)

    def _reindex(self, change: HeadChange) -> None:
        """Move the canonical chain and the transaction index along the head change."""
        for block in change.undone:
            self._index.disconnect(block)
        for block in change.applied:
            self._index.connect(block)

    def _reconcile_mempool(self, change: HeadChange) -> dict[TxId, None]:
        """Take what the new chain carries out of the pools, put back what the old one
        carried, and reject what can no more be included; return the transactions whose
        status may have changed (in order, once each)."""
        touched: dict[TxId, None] = {}
        view, context = self.head_view(), self.next_context()
        self.mempool.set_rules(self.next_governance())
        pool_changes: list[PoolChange] = []
        for block in change.applied:
            pool_changes.append(self.mempool.remove_included(block, view, context))
            for tx in block.transactions:
                if tx.kind is not TxKind.REWARD:
                    touched[tx.txid] = None
                if isinstance(tx.payload, SlashPayload):
                    self._forget_evidence(tx.payload.evidence.offender)
            for vote in block.votes:
                self._unpool_vote(encode(vote), vote)
        self._repool_votes(change)
        if change.undone:
            self._reorgs += 1
            pool_changes.append(self.mempool.readd_after_reorg(change.undone, view, context))
            for block in change.undone:
                for tx in block.transactions:
                    if tx.kind is TxKind.REWARD:
                        continue
                    touched[tx.txid] = None
                    if tx.txid not in self._index and tx.txid not in self.mempool:
                        reason = self._reason_off_chain(tx)
                        if reason is not None:
                            self.reject(tx.txid, reason)
        for pool_change in pool_changes:
            for removal in pool_change.removed:
                self.reject(removal.txid, removal.reason)
                touched[removal.txid] = None
            for txid in pool_change.accepted:
                touched[txid] = None
        return touched

    def _publish(
        self,
        change: HeadChange,
        old_finalized: Checkpoint,
        old_finalized_height: Height,
        touched: dict[TxId, None],
    ) -> None:
        """Report the new head, the reorg and finality, then every `touched` transaction's
        status (with those finality settled), then wake the waiters; drop what finality
        made useless."""
        self._reported_head = self.head_info()
        if change.old_head != change.new_head:
            self._publish_head(change)
        finalized = self.store.finalized_checkpoint
        moved = finalized != old_finalized
        if moved:
            self.log.info(
                "finalized epoch %d block %s", finalized.epoch, finalized.block_id.hex()[:16]
            )
            self.events.publish(EventKind.FINALIZED, finalized)
            for height in range(old_finalized_height + 1, self.finalized_height() + 1):
                final_block = self.canonical_block(Height(height))
                if final_block is not None:
                    for tx in final_block.transactions:
                        if tx.kind is not TxKind.REWARD:
                            touched[tx.txid] = None
            self._prune_undo()
            self._prune_votes()
            self._prune_detector()
        for txid in touched:
            self.publish_tx(txid)
        if moved:
            self._release_history()
        self._notify()

    def _publish_head(self, change: HeadChange) -> None:
        head = self.head_info()
        if change.undone:
            self.log.warning(
                "reorg: %d blocks undone, %d applied, new head %s at height %d",
                len(change.undone),
                len(change.applied),
                head.block_id.hex()[:16],
                head.height,
            )
            self.events.publish(
                EventKind.REORG,
                ReorgInfo(
                    old_head=change.old_head,
                    new_head=change.new_head,
                    undone=tuple(b.block_id for b in change.undone),
                    applied=tuple(b.block_id for b in change.applied),
                ),
            )
        self.log.info(
            "new head %s height=%d slot=%d txs=%d mempool=%d",
            head.block_id.hex()[:16],
            head.height,
            head.slot,
            len(change.applied[-1].transactions) if change.applied else 0,
            len(self.mempool),
        )
        self.events.publish(EventKind.NEW_HEAD, head)

    def _finalized_height_indexed(self) -> int:
        node = self.store.nodes.get(self._saved_finalized.block_id)
        return 0 if node is None else node.height

    def _forget_evidence(self, offender: PublicKey) -> None:
        """Drop pooled evidence against `offender`: a block on our chain slashed it."""
        key = self._evidence_of.pop(offender, None)
        if key is not None:
            del self.evidence_pool[key]

    def _prune_detector(self) -> None:
        window = self.limits.slashing_window_epochs
        epoch = Epoch(max(self.store.finalized_checkpoint.epoch - window, 0))
        self.detector.forget_before(epoch, compute_start_slot_at_epoch(self.params, epoch))

    def _prune_votes(self) -> None:
        floor = self.store.finalized_checkpoint.epoch
        for key in [k for k, vote in self.vote_pool.items() if vote.target.epoch < floor]:
            del self.vote_pool[key]
            self._pool_added.pop(key, None)  # the store drops those below the floor itself
