"""`open_node`: a running node — chain, storage, mempool, network, validator duties, events.

``async with open_node(config) as node:`` restores the chain from `config.data_dir` (or starts
in memory), opens the network service, and runs the slot clock and the validator duties until
the block exits. All queries are synchronous reads of in-memory state; the actions that wait
are `submit_transaction`, `wait_for_status` and reading a subscription.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

import trio

from p2pchain._version import __version__
from p2pchain.consensus.governance import GovernanceState, Proposal
from p2pchain.errors import (
    ConfigError,
    InvalidTransaction,
    NoHonestPeer,
    Reason,
    SlashingProtectionError,
    StorageError,
)
from p2pchain.ledger.block import Block, InclusionProof
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.encoding import encode
from p2pchain.ledger.genesis import genesis_block
from p2pchain.ledger.header import BlockHeader
from p2pchain.ledger.offer import Offer
from p2pchain.ledger.proofs import StateProof, StateQuery
from p2pchain.ledger.tx import OutPoint, Transaction, TxOutput
from p2pchain.ledger.types import Address, AssetId, BlockId, Hash32, Height, PublicKey, Slot, TxId
from p2pchain.ledger.utxo import AssetInfo
from p2pchain.ledger.validation import check_transaction
from p2pchain.ledger.vote import Checkpoint
from p2pchain.light.client import LightConfig, open_light_client
from p2pchain.light.snapshot import fetch_snapshot
from p2pchain.net.faults import Where
from p2pchain.net.service import (
    NetworkConfig,
    NetworkService,
    NetworkStatistics,
    open_network,
)
from p2pchain.net.swarm import PeerInfo, SwarmConfig
from p2pchain.net.transports import SocketTransport
from p2pchain.node.chain import ChainService, ChainStatistics
from p2pchain.node.clock import NodeClock
from p2pchain.node.config import (
    DATABASE_FILE,
    MAX_CLOCK_SKEW_MS,
    MAX_CLOCK_TIME_MS,
    NODE_KEY_FILE,
    NodeConfig,
)
from p2pchain.node.datadir import lock_data_dir
from p2pchain.node.duties import ValidatorDuties
from p2pchain.node.events import (
    EventHub,
    EventKind,
    HeadInfo,
    PeerEvent,
    Subscription,
    TxInfo,
    TxStatus,
)
from p2pchain.node.host import ChainHost
from p2pchain.node.mempool import MempoolStatistics
from p2pchain.node.offers import BookEntry, OfferBookStatistics
from p2pchain.node.protection import (
    MemorySlashingProtection,
    SlashingProtection,
    SqliteSlashingProtection,
)
from p2pchain.node.storage import (
    ChainStore,
    MemoryChainStore,
    Retirement,
    SqliteChainStore,
    StorageWorker,
)
from p2pchain.params import ChainParams
from p2pchain.protocol.connection import ConnectionConfig, PeerId
from p2pchain.protocol.messages import Publish, Topic
from p2pchain.protocol.scoring import BanEntry, BanKind

MAX_LISTED: Final = 1_000
"""Most offers or retirement records one `Node.offers` or `Node.retirements` call returns."""
PEER_POLL_INTERVAL: Final = 1.0
"""Seconds between two looks at the peer set for PEER events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockStatus:
    """What the node's slot clock reads (`Node.clock_status`)."""

    now_ms: int
    skew_ms: int
    """Its offset from the wall clock (0 for a manual clock started on time: not meaningful)."""
    manual: bool
    slot: Slot


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeInfo:
    node_id: bytes
    chain_id: int
    genesis: BlockId
    listen_addresses: tuple[str, ...]
    """The bound listeners (a port 0 in the configuration is the real one here)."""
    announced_addresses: tuple[str, ...]
    """What Hello tells peers (`advertise`, or the listeners with `public_addr` as host)."""
    rpc_url: str | None
    validator: PublicKey | None
    version: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncState:
    syncing: bool
    head_height: Height
    target_height: Height


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatistics:
    chain: ChainStatistics
    mempool: MempoolStatistics
    offers: OfferBookStatistics
    network: NetworkStatistics
    blocks_proposed: int
    votes_cast: int
    signatures_refused: int
    """Blocks or votes the slashing-protection record refused to let us sign."""
    events_published: int
    subscribers: int
    subscription_overflows: int


_NodePredicate = Callable[["Node"], bool]


class Node:
    """A running node. Create with `open_node`; every query reads in-memory state."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        chain: ChainService,
        events: EventHub,
        node_key: SecretKey,
        clock: NodeClock,
        base_offset_ms: int,
        host: ChainHost,
        network: NetworkService,
        duties: ValidatorDuties | None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._base_offset_ms = base_offset_ms
        """trio's clock + this = the unskewed clock (the clock's offset minus this is its skew)."""
        self._clock_waits_for: float | None = None
        """The clock time the slot loop sleeps until; None while it works."""
        self._clock_progress = trio.Event()
        self.params: ChainParams = config.params
        self._chain = chain
        self._events = events
        self._node_key = node_key
        self._host = host
        """The chain as the network sees it; it also gossips what the node produces."""
        self._network = network
        self._duties = duties
        self._rpc_url: str | None = None
        self._peers_seen: dict[PeerId, str] = {}
        self._saved_bans: dict[str, float] = {}
        """Bans as last written to storage (key "kind:hex" -> Unix time)."""

    # -- identity ------------------------------------------------------------------------------
    @property
    def info(self) -> NodeInfo:
        network = self._network
        validator = self.config.validator_key
        return NodeInfo(
            node_id=self._node_key.public_key,
            chain_id=self.params.chain_id,
            genesis=self._chain.store.genesis_id,
            listen_addresses=network.swarm.listen_addresses,
            announced_addresses=network.swarm.advertised_addresses,
            rpc_url=self._rpc_url,
            validator=None if validator is None else validator.public_key,
            version=__version__,
        )

    def set_rpc_url(self, url: str | None) -> None:
        """Record where the JSON-RPC server of this node listens (reported in `info`)."""
        self._rpc_url = url

    @property
    def network(self) -> NetworkService:
        """The network service (peers, gossip, sync) this node runs on."""
        return self._network

    # -- chain queries -------------------------------------------------------------------------
    def head(self) -> HeadInfo:
        return self._chain.reported_head

    def finalized(self) -> Checkpoint:
        """The finalized checkpoint, once it is on disk: it never moves back, even across a
        crash."""
        return self._chain.durable_finalized

    def justified(self) -> Checkpoint:
        """The justified checkpoint, once it is on disk."""
        return self._chain.durable_justified

    def get_block(self, block_id: bytes) -> Block | None:
        return self._chain.get_block(BlockId(bytes(block_id)))

    def get_block_at_height(self, height: Height) -> Block | None:
        """The canonical block at `height`, or None above the head."""
        return self._chain.canonical_block(height)

    def get_transaction(self, txid: bytes) -> TxInfo:
        """Status of a transaction; UNKNOWN if this node never saw it (or forgot a rejection)."""
        return self._chain.transaction(TxId(bytes(txid)))

    def utxos(self, address: bytes, *, pending: bool = False) -> list[tuple[OutPoint, TxOutput]]:
        """Unspent outputs of `address` at the head, in outpoint order; with `pending`, as
        the pool would leave them: outputs pending transactions spend are left out and the
        ones they create are added (so a wallet can chain payments on unconfirmed change)."""
        owner = Address(bytes(address))
        confirmed = self._chain.head_view().utxos_of(owner)
        if not pending:
            return confirmed
        pool = self._chain.mempool
        coins = [(op, out) for op, out in confirmed if pool.spender_of(op) is None]
        for entry in pool.entries():
            for index, output in enumerate(entry.tx.outputs):
                outpoint = OutPoint(txid=entry.txid, index=index)
                if output.address == owner and pool.spender_of(outpoint) is None:
                    coins.append((outpoint, output))
        return sorted(coins)

    def balance(self, address: bytes, asset: bytes | None = None) -> int:
        """Total of `asset` (default: the native coin) held by `address` at the head, locked
        outputs included."""
        asset_id = self.params.native_asset if asset is None else asset
        return self._chain.head_view().balance(Address(bytes(address)), AssetId(asset_id))

    def balances(self, address: bytes) -> dict[AssetId, int]:
        return self._chain.head_view().balances(Address(bytes(address)))

    def asset(self, asset: bytes) -> AssetInfo | None:
        return self._chain.head_view().asset(AssetId(bytes(asset)))

    def retirements(
        self, asset: bytes, *, offset: int = 0, limit: int = MAX_LISTED
    ) -> list[Retirement]:
        """The canonical chain's retirements of `asset`, oldest first (at most `limit`, after
        skipping `offset`); each one's `certificate` is its RETIRE transaction's id."""
        limit = max(0, min(limit, MAX_LISTED))
        return self._chain.storage.retirements(
            AssetId(bytes(asset)), offset=max(0, offset), limit=limit
        )

    def offers(self, offered: bytes, wanted: bytes, *, limit: int = MAX_LISTED) -> list[BookEntry]:
        """Standing offers in this node's book giving `offered` for `wanted`, the best price
        for a taker (fewest wanted units per offered unit) first."""
        limit = max(0, min(limit, MAX_LISTED))
        return self._chain.offers.matching(AssetId(bytes(offered)), AssetId(bytes(wanted)), limit)

    def get_offer(self, offer_id: bytes) -> BookEntry | None:
        return self._chain.offers.get(Hash32(bytes(offer_id)))

    def governance(self) -> GovernanceState:
        """Governance as the next block on the head starts from: the chain parameters in
        force (`.params`), the proposals in flight and the recently finished ones."""
        return self._chain.next_governance()

    def chain_params(self) -> ChainParams:
        """The parameters the next block is validated with: the genesis ones with every
        enacted governance change applied (what a wallet must build transactions for)."""
        return self._chain.next_governance().params

    def proposal(self, proposal_id: bytes) -> Proposal | None:
        """A governance proposal in flight or recently finished (the newest
        `FINISHED_KEPT`), by its PROPOSE transaction's id; None otherwise."""
        return self._chain.next_governance().proposal(TxId(bytes(proposal_id)))

    def state_root(self, block_id: bytes) -> Hash32 | None:
        """The state root after `block_id`, from its header (None for an unknown block):
        nodes that agree on a block agree on this."""
        return self._chain.state_root(BlockId(bytes(block_id)))

    async def state_proof(self, query: StateQuery, block_id: bytes) -> StateProof:
        """The proof that answers `query` (an address's outputs, one outpoint, an asset record
        or the stake table) in the state after `block_id`, so that a client holding only that
        block's header can check it (`proofs.verify` against ``header.state_root``) without
        trusting this node.

        Raises:
            InvalidBlock: `CONFLICTS_WITH_FINALIZED` for an unknown block or one below the
                finalized one (whose state is no longer kept).
            ProofTooLarge: the address holds more than `MAX_PROOF_OUTPUTS` outputs (prove
                them one by one) or the stake table has more than `MAX_PROOF_VALIDATORS`.
        """
        return await self._chain.prove_state(BlockId(bytes(block_id)), query)

    def transaction_proof(self, txid: bytes) -> tuple[BlockHeader, Transaction, InclusionProof]:
        """The header of the canonical block that holds `txid`, the transaction and its
        inclusion proof, so that a client can check the transaction is in that block
        (`verify_inclusion` against ``header.body_root``) holding the header alone.

        Raises:
            KeyError: `txid` is not on the canonical chain (pending, unknown or undone).
        """
        return self._chain.prove_transaction(TxId(bytes(txid)))

    def peers(self) -> tuple[PeerInfo, ...]:
        return self._network.swarm.peers()

    def sync_state(self) -> SyncState:
        head = self._chain.head_node().height
        target = max(head, self._network.statistics().sync.target_height)
        return SyncState(
            syncing=self._network.is_syncing and target > head,
            head_height=head,
            target_height=target,
        )

    def mempool_size(self) -> int:
        return len(self._chain.mempool)

    def statistics(self) -> NodeStatistics:
        duties = self._duties
        return NodeStatistics(
            chain=self._chain.statistics(),
            mempool=self._chain.mempool.statistics(),
            offers=self._chain.offers.statistics(),
            network=self.network.statistics(),
            blocks_proposed=0 if duties is None else duties.counts.proposed,
            votes_cast=0 if duties is None else duties.counts.voted,
            signatures_refused=0 if duties is None else duties.counts.refused,
            events_published=self._events.published,
            subscribers=self._events.subscriber_count,
            subscription_overflows=self._events.overflows,
        )

    # -- actions -------------------------------------------------------------------------------
    async def submit_transaction(self, tx: Transaction) -> TxId:
        """Validate `tx` against the head plus the pool, keep it, gossip it once.

        Submitting a transaction that is already pending or on the chain again returns its id.

        Raises:
            InvalidTransaction: with the reason code; the status is recorded as REJECTED.
        """
        chain = self._chain
        txid = tx.txid
        mempool = chain.mempool
        if txid in mempool or mempool.is_orphan(txid):
            return txid
        try:
            # The context-free rules come first, as for a gossiped transaction.
            check_transaction(tx, self.params)
            missing = chain.missing_inputs(tx)
            if chain.may_be_on_chain(tx, missing) and chain.transaction(txid).status in (
                TxStatus.INCLUDED,
                TxStatus.FINALIZED,
            ):
                return txid
            if missing:
                raise InvalidTransaction(Reason.MISSING_INPUT, f"input {missing[0]}")
        except InvalidTransaction as exc:
            chain.reject(txid, exc.reason)
            chain.publish_tx(txid)
            raise
        chain.add_transaction(tx, peer=None)
        await chain.keep_submitted(tx)
        self._host.gossip_pool()
        await trio.lowlevel.checkpoint()
        return txid

    async def submit_offer(self, offer: Offer) -> Hash32:
        """Check `offer` against the head and the pool, keep it in the book and gossip it;
        return its id. Submitting an offer already in the book returns its id again.

        Raises:
            InvalidOffer: with the reason (docs/protocol.md, "Offers").
        """
        entry, new = self._chain.add_offer(offer, local=True)
        await self._chain.keep_offer(offer)
        if new:
            self._host.publish_offer(offer)
        await trio.lowlevel.checkpoint()
        return entry.offer_id

    async def wait_for_status(self, txid: bytes, status: TxStatus) -> TxInfo:
        """Wait until the transaction reaches `status` (FINALIZED also satisfies INCLUDED).

        Raises:
            InvalidTransaction: it was rejected while waiting for another status.
        """
        key = TxId(bytes(txid))
        while True:
            info = self._chain.transaction(key)
            if info.status is status or (
                status is TxStatus.INCLUDED and info.status is TxStatus.FINALIZED
            ):
                return info
            if info.status is TxStatus.REJECTED and info.reason is not None:
                raise InvalidTransaction(info.reason, "rejected while waiting")
            await self._chain.wait_changed()

    async def wait_for(self, predicate: _NodePredicate) -> None:
        """Wait until `predicate(node)` is true; it is re-checked after every chain change."""
        while not predicate(self):
            await self._chain.wait_changed()

    async def wait_changed(self) -> None:
        """Wait for the next change of the head, finality, the mempool or a transaction status."""
        await self._chain.wait_changed()

    def subscribe(
        self,
        kinds: Iterable[EventKind] | None = None,
        *,
        since: int | None = None,
        buffer: int | None = None,
    ) -> AbstractAsyncContextManager[Subscription]:
        """Events of `kinds` (all when None) from now on, or after sequence number `since`.

        The buffer holds `buffer` (default `NodeLimits.subscriber_buffer`) unread events; when
        it is full the subscription ends with `SubscriptionOverflow` after the buffered ones.

        Raises:
            EventHistoryExpired: (on entering) `since` is older than the event history.
        """
        size = self.config.limits.subscriber_buffer if buffer is None else buffer
        return self._events.subscribe(kinds, since=since, buffer=size)

    # -- clock (dev chains steer it) -----------------------------------------------------------
    def clock_status(self) -> ClockStatus:
        clock = self._clock
        return ClockStatus(
            now_ms=clock.now_ms(),
            skew_ms=clock.offset_ms - self._base_offset_ms,
            manual=clock.manual,
            slot=Slot(self._chain.current_slot()),
        )

    def set_clock_skew(self, skew_ms: int) -> None:
        """Run the slot clock `skew_ms` off the wall clock from now on (0: on time).

        Raises:
            ConfigError: the clock is manual, or the skew is beyond ±1 day.
        """
        if self._clock.manual:
            raise ConfigError("a manual clock has no skew: set its time")
        if abs(skew_ms) > MAX_CLOCK_SKEW_MS:
            raise ConfigError(f"skew must be within ±{MAX_CLOCK_SKEW_MS} ms, got {skew_ms}")
        self._clock.set_offset_ms(self._base_offset_ms + skew_ms)

    async def advance_clock(self, time_ms: int) -> None:
        """Move a manual clock to `time_ms` and return once the slot loop has done every duty
        due by then (a proposal built, imported and published; a vote signed and published).

        Raises:
            ConfigError: the clock is not manual, or `time_ms` is before its time or after
                `MAX_CLOCK_TIME_MS`.
        """
        if time_ms > MAX_CLOCK_TIME_MS:
            raise ConfigError(f"time must be at most {MAX_CLOCK_TIME_MS} ms, got {time_ms}")
        self._clock.set_time_ms(time_ms)
        while self._clock_waits_for is None or self._clock_waits_for <= time_ms:
            await self._clock_progress.wait()

    def _slot_start_ms(self, slot: Slot, fraction: float = 0.0) -> float:
        """The clock time at which `slot` (plus `fraction` of a slot) starts."""
        return self.config.genesis.genesis_time_ms + (slot + fraction) * self.params.slot_ms

    async def _sleep_until_ms(self, time_ms: float) -> None:
        self._clock_waits_for = time_ms
        self._clock_progress.set()
        self._clock_progress = trio.Event()
        try:
            await self._clock.sleep_until_ms(time_ms)
        finally:
            self._clock_waits_for = None

    async def _until_head_at(self, slot: Slot, deadline_ms: float) -> None:
        """Return once our head is a block of `slot`, or at `deadline_ms` if none comes: a vote
        goes out as soon as the slot's block is in (it has the most time to reach the next
        proposer), and never later than the deadline for a block that is late or missing."""
        chain = self._chain
        async with trio.open_nursery() as nursery:

            async def watch_head() -> None:
                while chain.head_node().slot < slot:
                    await chain.wait_changed()
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_head)
            await self._sleep_until_ms(deadline_ms)
            nursery.cancel_scope.cancel()

    async def _run_clock(self) -> None:
        """Each slot: release waiting blocks and votes, propose at its start, vote once the
        slot's block is in or half-way through the slot, whichever comes first."""
        chain = self._chain
        last = -1
        while True:
            slot = max(chain.current_slot(), last + 1)
            last = slot
            network = self.network
            try:
                await chain.on_slot()
            except StorageError:
                raise
            except Exception as exc:  # a waiting block from some peer hit our bug: it is gone
                network.faults.record(Where.IMPORT, exc)
            network.announce_status()
            await chain.forget_settled()
            await chain.forget_gone_offers()
            await self._save_bans()
            if slot % self.config.limits.rebroadcast_slots == 0:
                self._send_pending_submissions(peer.peer_id for peer in network.swarm.peers())
            duties = self._duties
            if duties is not None and slot > 0:
                with contextlib.suppress(SlashingProtectionError):  # counted; never sign around
                    await duties.propose(Slot(slot))
                half_way = self._slot_start_ms(Slot(slot), 0.5)
                if duties.is_vote_slot(Slot(slot)):
                    await self._until_head_at(Slot(slot), half_way)
                    with contextlib.suppress(SlashingProtectionError):
                        await duties.vote(Slot(slot))
                else:
                    await self._sleep_until_ms(half_way)
            self._host.gossip_news()
            await self._sleep_until_ms(self._slot_start_ms(Slot(slot + 1)))

    def _wall_offset_s(self) -> float:
        """Seconds to add to trio's clock to get this node's Unix time."""
        return self._clock.offset_ms / 1000

    async def _save_bans(self) -> None:
        """Write bans that are new or longer since the last slot, in Unix time, so that a
        restart keeps them (a crash loses at most one slot's bans); expired rows go too."""
        offset = self._wall_offset_s()
        current = {
            f"{entry.kind.value}:{entry.value.hex()}": entry.until + offset
            for entry in self.network.swarm.ban_entries()
        }
        changed = {
            key: until for key, until in current.items() if self._saved_bans.get(key) != until
        }
        if not changed:
            return
        storage = self._chain.storage
        now = trio.current_time() + offset

        def write() -> None:
            for key, until in changed.items():
                storage.ban_peer(key, until)
            storage.bans(now)

        await self._chain.run_storage(write)
        self._saved_bans = current

    async def _restore_bans(self) -> None:
        """Load the bans an earlier run saved (call once the network is open)."""
        offset = self._wall_offset_s()
        saved = await self._chain.run_storage(
            partial(self._chain.storage.bans, trio.current_time() + offset)
        )
        entries = []
        for key, until in saved.items():
            kind, _, value = key.partition(":")
            try:
                entries.append(
                    BanEntry(kind=BanKind(kind), value=bytes.fromhex(value), until=until - offset)
                )
            except ValueError:
                continue  # not a ban this code writes
        self.network.swarm.restore_bans(entries)
        self._saved_bans = saved

    def _send_pending_submissions(self, peers: Iterable[PeerId]) -> None:
        """Send our clients' pending submissions and their offers still in the book to
        `peers`, bypassing the seen cache: a peer that connected after we gossiped them (or
        that gossip missed) learns them this way, and one that has them ignores the
        duplicates at no cost."""
        limit = self.config.limits.max_rebroadcast
        pending = self._chain.pending_submissions(limit)
        offers = self._chain.offers.local_offers(limit)
        if not pending and not offers:
            return
        swarm = self.network.swarm
        messages = [Publish(topic=Topic.TRANSACTION, data=tx.encoded) for tx in pending]
        messages += [Publish(topic=Topic.OFFER, data=encode(offer)) for offer in offers]
        for peer_id in peers:
            for message in messages:
                swarm.send(peer_id, message)

    async def _run_peer_watch(self) -> None:
        while True:
            current = {info.peer_id: info.address for info in self.network.swarm.peers()}
            newcomers = [peer_id for peer_id in current if peer_id not in self._peers_seen]
            self._send_pending_submissions(newcomers)
            for peer_id, address in current.items():
                if peer_id not in self._peers_seen:
                    self._events.publish(
                        EventKind.PEER,
                        PeerEvent(peer_id=peer_id, address=address, connected=True),
                    )
            for peer_id, address in self._peers_seen.items():
                if peer_id not in current:
                    self._events.publish(
                        EventKind.PEER,
                        PeerEvent(peer_id=peer_id, address=address, connected=False),
                    )
            self._peers_seen = current
            await trio.sleep(PEER_POLL_INTERVAL)


def _load_node_key(config: NodeConfig, storage_dir: Path | None) -> SecretKey:
    """The configured key, else the one saved in the data directory, else a new one (saved)."""
    if config.node_key is not None:
        return config.node_key
    if storage_dir is None:
        return SecretKey.from_entropy(os.urandom(32))
    path = storage_dir / NODE_KEY_FILE
    if path.exists():
        try:
            return SecretKey(path.read_bytes())
        except ValueError as exc:
            raise StorageError(f"{path} does not hold a node key") from exc
    key = SecretKey.from_entropy(os.urandom(32))
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(key.secret)
    os.chmod(temporary, 0o600)
    temporary.replace(path)
    return key


_logger = logging.getLogger("p2pchain.node")


async def _start_from_snapshot(
    config: NodeConfig, storage: ChainStore, worker: StorageWorker
) -> None:
    """Fill a fresh store with the state at the newest checkpoint the bootnodes prove final
    (`fetch_snapshot`, as a light client from `trusted_checkpoint` or genesis); leave it as it
    is when only genesis is final or no peer could serve one (the node then syncs from
    genesis as usual)."""
    light = LightConfig(
        params=config.params,
        genesis=config.genesis,
        peers=config.bootnodes,
        trusted=config.trusted_checkpoint,
        transport=config.transport,
        request_timeout=config.limits.snapshot_request_timeout,
    )
    try:
        async with open_light_client(light) as client:
            fetched = await fetch_snapshot(client)
    except NoHonestPeer as exc:
        _logger.warning("snapshot sync failed (%s): syncing from genesis", exc)
        return
    if fetched is None:
        _logger.info("snapshot sync: only genesis is final, syncing from genesis")
        return
    anchor, view = fetched
    await worker.run(partial(storage.install_anchor, anchor, view))
    _logger.info(
        "snapshot sync: started at epoch %d, height %d (%d outputs)",
        anchor.checkpoint.epoch,
        anchor.block.header.height,
        len(view),
    )


@asynccontextmanager
async def open_node(config: NodeConfig) -> AsyncIterator[Node]:
    """Start a node; leaving the block stops its tasks, says goodbye to peers, closes storage.

    On an existing `data_dir` the chain is rebuilt from the database first (no download).

    Raises:
        StorageError: the data directory belongs to another chain, is corrupt, or is in use
            by another process (named in the message).
        ConfigError: an inconsistent configuration (for example an unreachable address).
    """
    params = config.params
    genesis = genesis_block(config.genesis, params)
    wall_offset = round(time.time() * 1000 - trio.current_time() * 1000)
    offset = wall_offset if config.clock_offset_ms is None else config.clock_offset_ms
    genesis_ms = config.genesis.genesis_time_ms
    clock = NodeClock(offset, manual_start_ms=genesis_ms if config.manual_clock else None)
    events = EventHub(config.limits.event_history, config.limits.event_history_bytes)
    async with AsyncExitStack() as stack:
        storage: ChainStore
        protection: SlashingProtection
        data_dir = config.data_dir
        worker = StorageWorker(in_thread=data_dir is not None and config.offload_blocking)
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
            stack.enter_context(lock_data_dir(data_dir))
            database = data_dir / DATABASE_FILE
            sqlite_store = await worker.run(
                partial(SqliteChainStore, database, chain_id=params.chain_id, genesis=genesis)
            )
            stack.push_async_callback(worker.close, sqlite_store.close)
            sqlite_protection = await worker.run(partial(SqliteSlashingProtection, database))
            stack.push_async_callback(worker.close, sqlite_protection.close)
            storage, protection = sqlite_store, sqlite_protection
        else:
            storage = MemoryChainStore(chain_id=params.chain_id, genesis=genesis)
            protection = MemorySlashingProtection()
        node_key = _load_node_key(config, data_dir)
        if config.snapshot_sync and storage.head == storage.genesis:
            await _start_from_snapshot(config, storage, worker)
        chain = ChainService(
            params=params,
            genesis=config.genesis,
            storage=storage,
            storage_worker=worker,
            offload=config.offload_blocking,
            limits=config.limits,
            events=events,
            now_ms=clock.now_ms,
            node_id=node_key.public_key,
        )
        await worker.run(partial(chain.restore, chain.current_slot()))
        await chain.readmit_submitted()
        await chain.readmit_offers()
        if clock.manual:  # never before blocks we already hold
            head_start = genesis_ms + chain.head_info().slot * params.slot_ms
            clock.set_time_ms(max(clock.now_ms(), head_start))
        host = ChainHost(
            chain,
            params,
            offload_decode_bytes=(
                config.limits.offload_decode_bytes if config.offload_blocking else None
            ),
        )
        swarm = SwarmConfig(
            identity=node_key,
            chain_id=params.chain_id,
            genesis=genesis.block_id,
            listen=config.listen,
            bootnodes=config.bootnodes,
            advertise=config.advertise,
            public_addr=config.public_addr,
            target_outbound=config.limits.target_outbound,
            max_inbound=config.limits.max_inbound,
            max_inbound_per_address=config.limits.max_inbound_per_address,
            max_inbound_per_group=config.limits.max_inbound_per_group,
            max_pending_handshakes=config.limits.max_pending_handshakes,
            max_pending_per_address=config.limits.max_pending_per_address,
            trusted_networks=config.limits.trusted_networks,
            connection=ConnectionConfig(
                handshake_timeout=config.limits.handshake_timeout,
                inline_decode_bytes=host.offload_decode_bytes,
            ),
            transport=config.transport or SocketTransport(),
        )
        network = await stack.enter_async_context(
            open_network(NetworkConfig(swarm=swarm, seed=config.network_seed), host)
        )
        host.attach(network)
        duties = None
        if config.validator_key is not None:
            duties = ValidatorDuties(
                chain,
                config.validator_key,
                protection,
                publish_block=host.publish_block,
                publish_vote=host.publish_vote,
            )
        node = Node(
            config,
            chain=chain,
            events=events,
            node_key=node_key,
            clock=clock,
            base_offset_ms=offset,
            host=host,
            network=network,
            duties=duties,
        )
        await node._restore_bans()
        nursery = await stack.enter_async_context(trio.open_nursery())
        nursery.start_soon(node._run_clock)
        nursery.start_soon(node._run_peer_watch)
        try:
            yield node
        finally:
            nursery.cancel_scope.cancel()
            events.close()
