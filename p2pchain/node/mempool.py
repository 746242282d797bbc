"""The mempool: valid unconfirmed transactions waiting for a block, and orphans waiting for parents.

Pure Python and synchronous: the node passes in the UTXO view at its head, the context of the
next block and the time, so every rule here can be tested without trio. Policy (documented in
docs/storage.md): the first-seen of two conflicting spends wins; a full pool evicts the lowest fee
rate (fee / size), always together with the descendants that would lose their inputs; each peer
has a quota; orphans are few, expire and are retried when a parent arrives; every transaction is
validated by `p2pchain.ledger.validation` against the head plus the pool.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction

from p2pchain.consensus.governance import GovernanceDraft, GovernanceState, is_governance
from p2pchain.errors import ConfigError, InvalidTransaction, Reason
from p2pchain.ledger.address import address_of
from p2pchain.ledger.block import Block
from p2pchain.ledger.tx import (
    GovVotePayload,
    IssuePayload,
    LockKind,
    MintPayload,
    OutPoint,
    Transaction,
    TxKind,
    TxOutput,
    compute_asset_id,
)
from p2pchain.ledger.types import Amount, AssetId, PublicKey, TxId
from p2pchain.ledger.utxo import AssetInfo, LedgerReader
from p2pchain.ledger.validation import (
    BlockContext,
    SignatureCheck,
    check_transaction,
    validate_transaction,
)
from p2pchain.params import ChainParams
from p2pchain.protocol.quota import Quota, QuotaPool


@dataclass(frozen=True, slots=True, kw_only=True)
class MempoolLimits:
    """Node-local policy (not consensus): every quantity a remote peer can make us hold."""

    max_bytes: int = 5_000_000
    """Total encoded size of the pool; beyond it the lowest fee rate is evicted."""
    max_txs_per_peer: int = 500
    """Pool entries plus orphans attributed to one peer (local submissions are not counted)."""
    max_orphans: int = 100
    """Transactions held while their parents are unknown, from all peers together."""
    max_orphan_bytes: int = 1_000_000
    """Encoded bytes of those orphans, from all peers together."""
    max_orphans_per_peer: int = 25
    """Orphans held for one peer (at most `max_orphans`); past it, that peer's oldest leaves.
    When the orphans are full, the oldest of the peer holding the most bytes leaves."""
    max_orphan_bytes_per_peer: int = 250_000
    """Encoded bytes of the orphans held for one peer (at most `max_orphan_bytes`); a bigger
    transaction is not held."""
    orphan_ttl: float = 60.0
    """Seconds an orphan waits for its parents."""
    min_fee_per_kb: int = 0
    """Lowest fee rate accepted, in base units per 1000 bytes."""

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_txs_per_peer < 1 or self.max_orphans < 0:
            raise ConfigError("mempool limits must be positive")
        if (
            min(self.max_orphan_bytes, self.max_orphans_per_peer, self.max_orphan_bytes_per_peer)
            < 1
        ):
            raise ConfigError("orphan limits must be positive")

    def orphan_quota(self) -> Quota:
        """The orphans' bounds (shares capped at the totals; `max_orphans` 0 holds none)."""
        items = max(self.max_orphans, 1)
        return Quota(
            max_items=items,
            max_bytes=self.max_orphan_bytes,
            max_items_per_source=min(self.max_orphans_per_peer, items),
            max_bytes_per_source=min(self.max_orphan_bytes_per_peer, self.max_orphan_bytes),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MempoolEntry:
    """A pool transaction with what policy needs to know about it."""

    tx: Transaction
    txid: TxId
    fee: Amount
    size: int
    peer: str | None
    sequence: int
    """Arrival order; ties in fee rate go to the earlier transaction."""

    @property
    def fee_rate(self) -> Fraction:
        return Fraction(self.fee, self.size)


@dataclass(frozen=True, slots=True, kw_only=True)
class Removal:
    """A transaction that left the pool (or the orphan pool) without being included."""

    txid: TxId
    reason: Reason


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolChange:
    """What one call did: transactions accepted (in order), stored as orphans, or removed."""

    accepted: tuple[TxId, ...] = ()
    orphaned: tuple[TxId, ...] = ()
    removed: tuple[Removal, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class MempoolStatistics:
    tx_count: int
    total_bytes: int
    max_bytes: int
    total_fees: int
    orphan_count: int
    not_gossiped: int
    orphan_bytes: int = 0


@dataclass(slots=True, eq=False)
class _Orphan:
    tx: Transaction
    peer: str | None
    expires: float
    missing: set[TxId]


@dataclass(slots=True)
class _Links:
    parents: set[TxId] = field(default_factory=set)
    children: set[TxId] = field(default_factory=set)


def _signatures_already_checked(tx: Transaction, txid: TxId) -> bool:
    """Signature check for transactions whose witnesses were verified when they first arrived."""
    return True


class _PoolView:
    """The head's state as the pool sees it: a `LedgerReader` answering from `Mempool`'s public
    queries, with pool outputs spendable, pool-spent outputs gone and pool issues and mints
    counted in the asset records."""

    def __init__(self, head: LedgerReader, pool: Mempool) -> None:
        self._head = head
        self._pool = pool

    def get(self, outpoint: OutPoint) -> TxOutput | None:
        if self._pool.spender_of(outpoint) is not None:
            return None
        entry = self._pool.get(outpoint.txid)
        if entry is not None:
            outputs = entry.tx.outputs
            return outputs[outpoint.index] if outpoint.index < len(outputs) else None
        return self._head.get(outpoint)

    def asset(self, asset: AssetId) -> AssetInfo | None:
        issue = self._pool.issue_of(asset)
        info = self._head.asset(asset) if issue is None else _issued_record(issue.tx, asset)
        if info is None:
            return None
        return replace(info, issued=info.issued + self._pool.minted(asset))

    def slashable_outpoints(self, key: PublicKey) -> list[OutPoint]:
        created = (
            OutPoint(txid=entry.txid, index=index)
            for entry in self._pool.entries()
            for index, output in enumerate(entry.tx.outputs)
            if output.lock.kind in (LockKind.STAKE, LockKind.UNBONDING) and output.lock.key == key
        )
        return sorted(
            outpoint
            for outpoint in (*self._head.slashable_outpoints(key), *created)
            if self._pool.spender_of(outpoint) is None
        )


def _issued_record(issue: Transaction, asset: AssetId) -> AssetInfo:
    """The asset record `issue` creates once it is applied (its first input's key issues)."""
    assert isinstance(issue.payload, IssuePayload)
    return AssetInfo(
        asset=asset,
        name=issue.payload.name,
        issuer=address_of(issue.inputs[0].public_key),
        cap=issue.payload.cap,
        issued=sum(o.amount for o in issue.outputs if o.asset == asset),
    )


def _issued_asset(tx: Transaction) -> AssetId:
    return compute_asset_id(tx.inputs[0].outpoint)


class Mempool:
    """Unconfirmed transactions by fee rate, with chains, conflicts, quotas and orphans.

    Every pool transaction is valid on top of the head view plus the pool transactions it
    depends on, for the next block's context; `select_for_block` relies on that.
    """

    def __init__(
        self,
        params: ChainParams,
        limits: MempoolLimits | None = None,
        *,
        signatures: SignatureCheck | None = None,
    ) -> None:
        """`signatures` verifies new transactions' witnesses (default: verify each time); a node
        passes the `SignatureCache` it shares with block import."""
        self.params = params
        self.limits = limits or MempoolLimits()
        self._signatures = signatures
        self._entries: dict[TxId, MempoolEntry] = {}
        self._links: dict[TxId, _Links] = {}
        self._spent_by: dict[OutPoint, TxId] = {}
        # each pool MINT's asset and units created, and their sum per asset (kept as MINTs
        # enter and leave, so that an asset query never scans the pool)
        self._mints: dict[TxId, tuple[AssetId, int]] = {}
        self._minted: Counter[AssetId] = Counter()
        self._issues: dict[AssetId, TxId] = {}
        self._offers_until: dict[TxId, int] = {}
        """Pool transactions taking offers, with the earliest `offer_until` of their inputs."""
        self.governance = GovernanceState.at_genesis(params)
        """Governance as the next block starts from (`set_rules`)."""
        self._gov_votes: dict[tuple[TxId, PublicKey], TxId] = {}
        """Pool GOV_VOTEs by (proposal, validator): one each, as a block may carry."""
        self._proposals: set[TxId] = set()
        """Pool PROPOSE transactions (they count against the proposals in flight)."""
        self._per_peer: Counter[str] = Counter()
        self._bytes = 0
        self._sequence = 0
        self._quiet: dict[TxId, None] = {}
        """Pool transactions not gossiped yet, in arrival order (so that announcing them
        costs what is new, not a scan of the pool)."""
        self._orphans: QuotaPool[TxId, str | None, _Orphan] = QuotaPool(self.limits.orphan_quota())
        self._orphans_by_parent: dict[TxId, set[TxId]] = {}
        self._epoch: int | None = None

    def set_rules(self, governance: GovernanceState) -> None:
        """Validate from now on for a block starting from `governance` (its parameters and
        proposals); the node calls it before every admission and head change, and the pool is
        re-checked whenever the epoch changes, which is the only time parameters change."""
        self.governance = governance
        self.params = governance.params

    # -- queries -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, txid: object) -> bool:
        return txid in self._entries

    def get(self, txid: TxId) -> MempoolEntry | None:
        return self._entries.get(txid)

    def entries(self) -> list[MempoolEntry]:
        """Every pool entry in arrival order."""
        return list(self._entries.values())

    def is_orphan(self, txid: TxId) -> bool:
        return txid in self._orphans

    def spender_of(self, outpoint: OutPoint) -> TxId | None:
        """The pool transaction spending `outpoint`, if any."""
        return self._spent_by.get(outpoint)

    def issue_of(self, asset: AssetId) -> MempoolEntry | None:
        """The pool's ISSUE creating `asset`, if any."""
        txid = self._issues.get(asset)
        return None if txid is None else self._entries[txid]

    def minted(self, asset: AssetId) -> int:
        """Units of `asset` that the pool's MINT transactions create, together."""
        return self._minted[asset]

    def overlay(self, head: LedgerReader) -> LedgerReader:
        """The state `head` would be in with every pool transaction applied, as the ledger
        rules read it: what a new transaction is validated against."""
        return _PoolView(head, self)

    def statistics(self) -> MempoolStatistics:
        return MempoolStatistics(
            tx_count=len(self._entries),
            total_bytes=self._bytes,
            max_bytes=self.limits.max_bytes,
            total_fees=sum(entry.fee for entry in self._entries.values()),
            orphan_count=len(self._orphans),
            orphan_bytes=self._orphans.bytes,
            not_gossiped=len(self._quiet),
        )

    # -- gossip ------------------------------------------------------------------------------
    def mark_gossiped(self, txid: TxId) -> bool:
        """Record that `txid` was gossiped; True the first time (gossip it), False after."""
        if txid not in self._quiet:
            return False
        del self._quiet[txid]
        return True

    def not_gossiped(self) -> list[TxId]:
        """Pool transactions never gossiped yet, in arrival order."""
        return list(self._quiet)

    # -- admission ---------------------------------------------------------------------------
    def add(
        self,
        tx: Transaction,
        view: LedgerReader,
        context: BlockContext,
        *,
        now: float,
        peer: str | None = None,
    ) -> PoolChange:
        """Validate `tx` for the block at `context` on top of `view` and the pool; keep it.

        A transaction whose inputs are unknown is kept as an orphan (not relayed) until its
        parents arrive or it expires. Accepting a transaction retries the orphans waiting for it.

        Raises:
            InvalidTransaction: with the ledger's reason, or a pool one: ALREADY_KNOWN,
                MEMPOOL_CONFLICT (an earlier pool tx spends the same output), MEMPOOL_FULL,
                FEE_TOO_LOW, PEER_LIMIT, BAD_TX_KIND (slashing evidence has its own path).
        """
        removed = list(self.expire_orphans(now))
        txid = tx.txid
        if txid in self._entries or txid in self._orphans:
            raise InvalidTransaction(Reason.ALREADY_KNOWN, txid.hex())
        if peer is not None and self._per_peer[peer] >= self.limits.max_txs_per_peer:
            raise InvalidTransaction(Reason.PEER_LIMIT, f"{peer} has too many transactions")
        missing = self._missing_parents(tx, view)
        if missing:
            self._check_static(tx)
            check_transaction(tx, self.params)
            if self.limits.max_orphans == 0:
                raise InvalidTransaction(Reason.MISSING_INPUT, "parents unknown")
            dropped = self._add_orphan(tx, txid, peer, now + self.limits.orphan_ttl, missing)
            return PoolChange(orphaned=(txid,), removed=(*removed, *dropped))
        if self._epoch is None:
            self._epoch = context.epoch(self.params)
        change = self._admit(tx, txid, view, context, peer, signatures_checked=False)
        accepted, more_removed = self._adopt_orphans([txid], view, context)
        return PoolChange(accepted=(txid, *accepted), removed=(*removed, *change, *more_removed))

    def _check_static(self, tx: Transaction) -> None:
        if tx.kind is TxKind.SLASH:
            raise InvalidTransaction(Reason.BAD_TX_KIND, "slashing evidence is not pooled")
        if tx.kind is TxKind.REWARD:
            raise InvalidTransaction(Reason.MISPLACED_REWARD, "rewards are not pooled")

    def _missing_parents(self, tx: Transaction, view: LedgerReader) -> set[TxId]:
        """Parents of inputs found neither in the view nor in the pool (orphan candidates)."""
        return {
            i.outpoint.txid
            for i in tx.inputs
            if i.outpoint.txid not in self._entries
            and i.outpoint not in self._spent_by
            and view.get(i.outpoint) is None
        }

    def _admit(
        self,
        tx: Transaction,
        txid: TxId,
        view: LedgerReader,
        context: BlockContext,
        peer: str | None,
        *,
        signatures_checked: bool,
    ) -> list[Removal]:
        """Validate and insert; return the entries evicted to make room."""
        self._check_static(tx)
        for tx_input in tx.inputs:
            spender = self._spent_by.get(tx_input.outpoint)
            if spender is not None:
                raise InvalidTransaction(
                    Reason.MEMPOOL_CONFLICT, f"{tx_input.outpoint} is spent by {spender.hex()}"
                )
        if is_governance(tx):
            self._check_governance(tx)
        pool_view = self.overlay(view)
        fee = validate_transaction(
            tx,
            pool_view,
            self.params,
            context,
            signatures_valid=_signatures_already_checked
            if signatures_checked
            else self._signatures,
        )
        minted = 0
        if isinstance(tx.payload, MintPayload):
            asset = tx.payload.asset
            spent = [pool_view.get(i.outpoint) for i in tx.inputs]
            minted = sum(o.amount for o in tx.outputs if o.asset == asset) - sum(
                o.amount for o in spent if o is not None and o.asset == asset
            )
        size = tx.size
        if fee * 1000 < self.limits.min_fee_per_kb * size:
            raise InvalidTransaction(Reason.FEE_TOO_LOW, f"fee {fee} for {size} bytes")
        parents = self._pool_parents(tx)
        evict = self._eviction_for(size, Fraction(fee, size), parents)
        removed = [r for victim in evict for r in self._remove_tree(victim, Reason.MEMPOOL_FULL)]
        self._insert(
            MempoolEntry(
                tx=tx, txid=txid, fee=Amount(fee), size=size, peer=peer, sequence=self._sequence
            ),
            parents,
            minted,
        )
        self._sequence += 1
        return removed

    def _check_governance(self, tx: Transaction) -> None:
        """The governance rules for the next block, with the pool's own proposals and votes
        counted as if they were in it."""
        GovernanceDraft(self.governance).check(tx)
        payload = tx.payload
        if isinstance(payload, GovVotePayload):
            earlier = self._gov_votes.get((payload.proposal, payload.validator))
            if earlier is not None:
                raise InvalidTransaction(Reason.DOUBLE_GOV_VOTE, f"pool has {earlier.hex()}")
        elif len(self.governance.active) + len(self._proposals) >= self.params.gov_max_proposals:
            raise InvalidTransaction(Reason.GOVERNANCE_FULL, "with the pool's proposals")

    def _pool_parents(self, tx: Transaction) -> set[TxId]:
        parents = {i.outpoint.txid for i in tx.inputs if i.outpoint.txid in self._entries}
        if isinstance(tx.payload, MintPayload) and tx.payload.asset in self._issues:
            parents.add(self._issues[tx.payload.asset])
        return parents

    def _eviction_for(self, size: int, rate: Fraction, parents: set[TxId]) -> list[TxId]:
        """The lowest-rate entries (with descendants) to evict so that `size` more bytes fit.

        Raises:
            InvalidTransaction: MEMPOOL_FULL when room can only be made by evicting something
                paying at least `rate`, or one of the new transaction's own ancestors.
        """
        excess = self._bytes + size - self.limits.max_bytes
        if excess <= 0:
            return []
        protected = self._ancestors(parents)
        candidates = sorted(
            (e for e in self._entries.values() if e.txid not in protected),
            key=lambda e: (e.fee_rate, -e.sequence),
        )
        chosen: list[TxId] = []
        gone: set[TxId] = set()
        for entry in candidates:
            if excess <= 0:
                break
            if entry.txid in gone:
                continue
            if entry.fee_rate >= rate:
                break
            tree = self._descendants(entry.txid)
            gone |= tree
            excess -= sum(self._entries[t].size for t in tree)
            chosen.append(entry.txid)
        if excess > 0:
            raise InvalidTransaction(Reason.MEMPOOL_FULL, f"fee rate {float(rate):.3f} too low")
        return chosen

    def _ancestors(self, parents: Iterable[TxId]) -> set[TxId]:
        seen: set[TxId] = set()
        stack = list(parents)
        while stack:
            txid = stack.pop()
            if txid not in seen:
                seen.add(txid)
                stack.extend(self._links[txid].parents)
        return seen

    def _descendants(self, txid: TxId) -> set[TxId]:
        seen: set[TxId] = set()
        stack = [txid]
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self._links[current].children)
        return seen

    def _insert(self, entry: MempoolEntry, parents: set[TxId], minted: int) -> None:
        txid, tx = entry.txid, entry.tx
        self._entries[txid] = entry
        self._quiet[txid] = None
        self._links[txid] = _Links(parents=set(parents))
        for parent in parents:
            self._links[parent].children.add(txid)
        for tx_input in tx.inputs:
            self._spent_by[tx_input.outpoint] = txid
        if isinstance(tx.payload, IssuePayload):
            self._issues[_issued_asset(tx)] = txid
        offers = [i.offer_until for i in tx.inputs if i.offer_until is not None]
        if offers:
            self._offers_until[txid] = min(offers)
        if isinstance(tx.payload, GovVotePayload):
            self._gov_votes[(tx.payload.proposal, tx.payload.validator)] = txid
        elif tx.kind is TxKind.PROPOSE:
            self._proposals.add(txid)
        if isinstance(tx.payload, MintPayload):
            self._mints[txid] = (tx.payload.asset, minted)
            self._minted[tx.payload.asset] += minted
        if entry.peer is not None:
            self._per_peer[entry.peer] += 1
        self._bytes += entry.size

    def _remove(self, txid: TxId) -> MempoolEntry:
        entry = self._entries.pop(txid)
        links = self._links.pop(txid)
        for parent in links.parents:
            if parent in self._links:
                self._links[parent].children.discard(txid)
        for child in links.children:
            if child in self._links:
                self._links[child].parents.discard(txid)
        for tx_input in entry.tx.inputs:
            if self._spent_by.get(tx_input.outpoint) == txid:
                del self._spent_by[tx_input.outpoint]
        if isinstance(entry.tx.payload, IssuePayload):
            self._issues.pop(_issued_asset(entry.tx), None)
        self._offers_until.pop(txid, None)
        if isinstance(entry.tx.payload, GovVotePayload):
            del self._gov_votes[(entry.tx.payload.proposal, entry.tx.payload.validator)]
        self._proposals.discard(txid)
        mint = self._mints.pop(txid, None)
        if mint is not None:
            asset, minted = mint
            self._minted[asset] -= minted
            if not self._minted[asset]:
                del self._minted[asset]
        if entry.peer is not None:
            self._per_peer[entry.peer] -= 1
            if not self._per_peer[entry.peer]:
                del self._per_peer[entry.peer]
        self._bytes -= entry.size
        self._quiet.pop(txid, None)
        return entry

    def _remove_tree(self, txid: TxId, reason: Reason) -> list[Removal]:
        """Remove `txid` and every pool transaction depending on it."""
        tree = self._descendants(txid)
        for member in tree:
            self._remove(member)
        ordered = [txid, *sorted(tree - {txid})]
        return [Removal(txid=member, reason=reason) for member in ordered]

    # -- orphans -----------------------------------------------------------------------------
    def _add_orphan(
        self, tx: Transaction, txid: TxId, peer: str | None, expires: float, missing: set[TxId]
    ) -> list[Removal]:
        """Hold `tx` until its parents arrive; return the orphans the bounds pushed out (the
        newcomer itself when it is larger than a peer's byte share)."""
        orphan = _Orphan(tx=tx, peer=peer, expires=expires, missing=missing)
        evicted = self._orphans.add(txid, orphan, source=peer, size=tx.size)
        dropped: list[Removal] = []
        for gone in evicted:
            gone_txid = gone.tx.txid
            if gone is not orphan:
                self._unlink_orphan(gone)
            dropped.append(Removal(txid=gone_txid, reason=Reason.MEMPOOL_FULL))
        if txid not in self._orphans:
            return dropped
        for parent in missing:
            self._orphans_by_parent.setdefault(parent, set()).add(txid)
        if peer is not None:
            self._per_peer[peer] += 1
        return dropped

    def _drop_orphan(self, txid: TxId) -> _Orphan:
        orphan = self._orphans.pop(txid)
        assert orphan is not None  # callers check membership first
        self._unlink_orphan(orphan)
        return orphan

    def _unlink_orphan(self, orphan: _Orphan) -> None:
        """Forget an orphan that left the pool in the parent index and the peer's count."""
        txid = orphan.tx.txid
        for parent in orphan.missing:
            waiting = self._orphans_by_parent.get(parent)
            if waiting is not None:
                waiting.discard(txid)
                if not waiting:
                    del self._orphans_by_parent[parent]
        if orphan.peer is not None:
            self._per_peer[orphan.peer] -= 1
            if not self._per_peer[orphan.peer]:
                del self._per_peer[orphan.peer]

    def expire_orphans(self, now: float) -> tuple[Removal, ...]:
        """Drop the orphans whose parents did not arrive in time."""
        expired = [txid for txid, orphan in self._orphans.items() if orphan.expires <= now]
        for txid in expired:
            self._drop_orphan(txid)
        return tuple(Removal(txid=txid, reason=Reason.MISSING_INPUT) for txid in expired)

    def _adopt_orphans(
        self, arrived: Iterable[TxId], view: LedgerReader, context: BlockContext
    ) -> tuple[list[TxId], list[Removal]]:
        """Retry the orphans waiting for `arrived` (and, transitively, for what they unlock)."""
        accepted: list[TxId] = []
        removed: list[Removal] = []
        queue = list(arrived)
        while queue:
            parent = queue.pop(0)
            for txid in sorted(self._orphans_by_parent.get(parent, ())):
                if txid not in self._orphans:
                    continue
                orphan = self._drop_orphan(txid)
                missing = self._missing_parents(orphan.tx, view)
                if missing:
                    removed += self._add_orphan(
                        orphan.tx, txid, orphan.peer, orphan.expires, missing
                    )
                    continue
                try:
                    removed += self._admit(
                        orphan.tx, txid, view, context, orphan.peer, signatures_checked=False
                    )
                except InvalidTransaction as exc:
                    removed.append(Removal(txid=txid, reason=exc.reason))
                    continue
                accepted.append(txid)
                queue.append(txid)
        return accepted, removed

    # -- blocks ------------------------------------------------------------------------------
    def select_for_block(self, max_bytes: int, max_count: int) -> list[Transaction]:
        """The best transactions for a block body: highest fee rate first, parents first.

        Greedy by fee rate among the transactions whose pool parents are already chosen; a
        transaction that does not fit is skipped along with everything depending on it.
        """
        waiting = {txid: len(self._links[txid].parents) for txid in self._entries}
        ready = [self._rank(txid) for txid, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        chosen: list[Transaction] = []
        used = 0
        while ready and len(chosen) < max_count:
            _, _, txid = heapq.heappop(ready)
            entry = self._entries[txid]
            if used + entry.size > max_bytes:
                continue
            chosen.append(entry.tx)
            used += entry.size
            for child in self._links[txid].children:
                waiting[child] -= 1
                if waiting[child] == 0:
                    heapq.heappush(ready, self._rank(child))
        return chosen

    def _rank(self, txid: TxId) -> tuple[Fraction, int, TxId]:
        entry = self._entries[txid]
        return (-entry.fee_rate, entry.sequence, txid)

    def remove_included(
        self, block: Block, view: LedgerReader, context: BlockContext
    ) -> PoolChange:
        """Forget the block's transactions and evict what now conflicts with it.

        `view` and `context` are the new head's view and the next block's context. Orphans
        waiting for the block's transactions are retried. When the epoch changed or the block
        minted (UNBOND outputs are bound to their epoch; mint caps are shared with the chain),
        the whole pool is re-checked (`revalidate`).
        """
        removed: list[Removal] = []
        txids = [tx.txid for tx in block.transactions]
        for txid in txids:
            if txid in self._entries:
                self._remove(txid)
        for tx in block.transactions:
            for tx_input in tx.inputs:
                spender = self._spent_by.get(tx_input.outpoint)
                if spender is not None:
                    removed += self._remove_tree(spender, Reason.CONFLICTING_SPEND)
        accepted, adopted_removed = self._adopt_orphans(txids, view, context)
        removed += adopted_removed
        minted = any(tx.kind is TxKind.MINT for tx in block.transactions)
        if minted or self._epoch != context.epoch(self.params):
            change = self.revalidate(view, context)
            accepted = [t for t in accepted if t in self._entries]
            removed += change.removed
        # Heights only ever unlock outputs, except an offer's: past its height it expires.
        for txid, until in list(self._offers_until.items()):
            if until < context.height and txid in self._entries:
                removed += self._remove_tree(txid, Reason.OFFER_EXPIRED)
        accepted = [t for t in accepted if t in self._entries]
        return PoolChange(accepted=tuple(accepted), removed=tuple(removed))

    def revalidate(self, view: LedgerReader, context: BlockContext) -> PoolChange:
        """Re-check every pool transaction, in arrival order, against `view` at `context`.

        Signatures are not verified again. The ones that fail leave with their reason.
        """
        return self._rebuild([], view, context)

    def readd_after_reorg(
        self, undone_blocks: Sequence[Block], view: LedgerReader, context: BlockContext
    ) -> PoolChange:
        """Return the transactions of blocks a reorg dropped, then re-check the whole pool.

        Call it after `remove_included` for each block of the new branch, with the new head's
        view. The dropped blocks' transactions come first (they were seen first), so a pool
        transaction conflicting with one of them leaves. Those that cannot return are not
        reported: they are either in the new branch or invalid now, which the caller tells apart
        from the new branch's blocks. `undone_blocks` must have been validated (their
        signatures are not checked again).
        """
        returning = [
            tx
            for block in undone_blocks
            for tx in block.transactions
            if tx.kind is not TxKind.REWARD
        ]
        return self._rebuild(returning, view, context)

    def _rebuild(
        self, returning: list[Transaction], view: LedgerReader, context: BlockContext
    ) -> PoolChange:
        previous = list(self._entries.values())
        previous_ids = {entry.txid for entry in previous}
        gossiped = previous_ids - self._quiet.keys()
        for entry in previous:
            self._remove(entry.txid)
        self._epoch = context.epoch(self.params)
        accepted: list[TxId] = []
        removed: list[Removal] = []
        candidates = [(tx, tx.txid, None, False) for tx in returning] + [
            (entry.tx, entry.txid, entry.peer, True) for entry in previous
        ]
        for tx, txid, peer, was_pooled in candidates:
            if txid in self._entries:
                continue
            try:
                removed += self._admit(tx, txid, view, context, peer, signatures_checked=True)
            except InvalidTransaction as exc:
                if was_pooled:
                    removed.append(Removal(txid=txid, reason=exc.reason))
                continue
            if was_pooled and txid in gossiped:
                self._quiet.pop(txid, None)
            elif not was_pooled:
                accepted.append(txid)
        removed = [r for r in removed if r.txid in previous_ids and r.txid not in self._entries]
        accepted = [txid for txid in accepted if txid in self._entries]
        orphans_accepted, orphans_removed = self._adopt_orphans(
            [parent for parent in list(self._orphans_by_parent) if parent in self._entries],
            view,
            context,
        )
        return PoolChange(
            accepted=(*accepted, *orphans_accepted), removed=(*removed, *orphans_removed)
        )
