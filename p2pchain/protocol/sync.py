"""Sans-IO block sync: range requests to peers that are ahead, an orphan pool, and serving.

`SyncManager` compares each peer's `Status` with what it has fetched, asks peers that are ahead
for consecutive height ranges (`GetBlocksByRange`), checks the *shape* of every `Blocks` answer
(solicited, not too many, contiguous heights, each block's parent the previous one, bounded
bytes) and hands complete runs of blocks to the caller in height order (and runs of another
branch, which the caller places or holds as orphans, so that a fork is found). Whether a
block is valid is for consensus to say; the caller imports what `Import` actions carry and
calls `reset` if an import fails. A peer cannot make us buffer unbounded data (bounded
in-flight requests, bounded pending blocks and bytes) or loop (a peer that returns nothing, or
nothing within `request_timeout`, is no longer asked for that range; bad answers and timeouts
cost score and go to another peer). Time is the `now` argument, in seconds; nothing here reads
a clock, and no deadline or penalty depends on the chain's slot or epoch length.

`OrphanPool` is the one place where blocks whose parent is unknown wait (gossiped ones, and
blocks of a sync answer that did not attach), until the parent is known, bounded in count and
bytes globally and per peer (`QuotaPool`: a peer over its share loses its own oldest, a full
pool the oldest of the peer holding the most) and expiring by `now`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from p2pchain.errors import ConfigError
from p2pchain.ledger.block import Block
from p2pchain.ledger.types import BlockId, Height
from p2pchain.protocol.connection import PeerId
from p2pchain.protocol.gossip import Send
from p2pchain.protocol.messages import (
    MAX_BLOCK_IDS_PER_REQUEST,
    MAX_BLOCKS_PER_REQUEST,
    MAX_BLOCKS_RESPONSE_BYTES,
    Blocks,
    GetBlocksById,
    GetBlocksByRange,
    Status,
)
from p2pchain.protocol.quota import Quota, QuotaPool
from p2pchain.protocol.scoring import Offence, Penalize

EXPIRED_REQUESTS_KEPT: Final = 1_024
"""Ids of our requests that timed out, remembered so that their late answers (a slow peer, or
one behind a link that held its traffic, as a healed partition does) cost nothing twice."""


def block_size(block: Block) -> int:
    """Bytes of the block's canonical encoding, the unit of every byte bound here."""
    return len(block.encoded)


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncParams:
    """Batch sizes, concurrency, deadlines, memory bounds and penalties of block sync."""

    batch_size: int = 64
    """Blocks asked for in one range request (at most `MAX_BLOCKS_PER_REQUEST`)."""
    max_requests_per_peer: int = 2
    max_requests: int = 8
    """Range requests in flight over all peers."""
    request_timeout: float = 10.0
    """Seconds (of `now`) a peer has to answer a request: a fixed time, not a number of slots
    or epochs, so the same whatever the chain's `slot_ms` and `slots_per_epoch`."""
    max_pending_blocks: int = 1_024
    """Blocks requested or received but not yet handed over; no request beyond this."""
    max_pending_bytes: int = 128 * 1024 * 1024
    """Bytes of received blocks held back until the run before them is complete, plus
    `max_response_bytes` reserved for every range request in flight (so no answer can take
    the held bytes past it): the default leaves room for `max_requests` answers."""
    max_response_bytes: int = MAX_BLOCKS_RESPONSE_BYTES
    """Largest `Blocks` answer accepted; a bigger one is a bad answer."""
    bad_response_penalty: float = 25.0
    timeout_penalty: float = 10.0
    """Score lost for every request left unanswered at its deadline, even one issued before a
    `reset` (a reset forgives what an answer holds, not its absence); that peer is then not
    asked at or above that height again until its next `Status`."""
    max_orphans: int = 256
    """Orphan blocks held, from all peers together."""
    max_orphans_per_peer: int = 32
    """Orphan blocks held for one announcing peer; past it, that peer's oldest goes first."""
    max_orphan_bytes: int = 32 * 1024 * 1024
    """Encoded bytes of the orphan blocks held, from all peers together."""
    max_orphan_bytes_per_peer: int = 8 * 1024 * 1024
    """Encoded bytes of the orphans held for one peer; a bigger block is not held."""
    orphan_ttl: float = 600.0
    """Seconds an orphan waits for its parent before it is dropped."""
    max_parent_requests: int = 32
    """`GetBlocksById` requests for orphans' missing parents in flight, over all peers; an
    orphan arriving past it is held without asking (a later one may ask)."""
    max_parent_requests_per_peer: int = 4
    """Such requests in flight to one peer (the orphan's sender)."""

    def __post_init__(self) -> None:
        if not 0 < self.batch_size <= MAX_BLOCKS_PER_REQUEST:
            raise ConfigError("batch_size must be in 1..MAX_BLOCKS_PER_REQUEST")
        if self.max_requests_per_peer < 1 or self.max_requests < 1:
            raise ConfigError("request limits must be positive")
        if not 0 < self.max_parent_requests_per_peer <= self.max_parent_requests:
            raise ConfigError("max_parent_requests_per_peer must be in 1..max_parent_requests")
        if self.max_pending_blocks < self.batch_size:
            raise ConfigError("max_pending_blocks must hold at least one batch")
        if not 0 < self.max_orphans_per_peer <= self.max_orphans:
            raise ConfigError("max_orphans_per_peer must be in 1..max_orphans")
        if not 0 < self.max_orphan_bytes_per_peer <= self.max_orphan_bytes:
            raise ConfigError("max_orphan_bytes_per_peer must be in 1..max_orphan_bytes")
        if not 0 < self.max_response_bytes <= self.max_pending_bytes:
            raise ConfigError("max_pending_bytes must hold at least one answer")


@dataclass(frozen=True, slots=True, kw_only=True)
class Import:
    """Action: import `blocks` in this order; each is the parent of the next."""

    blocks: tuple[Block, ...]
    from_peer: PeerId


SyncAction = Send | Penalize | Import


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncStatistics:
    """Counters since creation and current sizes."""

    requests_sent: int
    blocks_imported: int
    bad_responses: int
    timeouts: int
    in_flight: int
    pending_blocks: int
    pending_bytes: int
    """Bytes of received blocks held back (in-flight reservations not included)."""
    orphans: int
    orphan_bytes: int
    target_height: Height
    next_height: int


@dataclass(slots=True)
class _Request:
    peer_id: PeerId
    deadline: float
    start: int = 0
    count: int = 0
    block_ids: tuple[BlockId, ...] = ()
    excluded: frozenset[PeerId] = frozenset()
    stale: bool = False
    """Issued before a `reset`; the answer is dropped without judging the peer."""

    @property
    def by_id(self) -> bool:
        return bool(self.block_ids)


@dataclass(frozen=True, slots=True)
class _Range:
    start: int
    count: int
    excluded: frozenset[PeerId]


@dataclass(slots=True)
class _Counters:
    requests_sent: int = 0
    blocks_imported: int = 0
    bad_responses: int = 0
    timeouts: int = 0


class SyncManager:
    """Range sync on top of an anchor block (the finalized block, or the head if trusted).

    Args:
        anchor_height: height of the block to sync on top of.
        anchor_id: its id; the first fetched block must name it as parent.
        params: limits and penalties.
    """

    def __init__(
        self, *, anchor_height: Height, anchor_id: BlockId, params: SyncParams | None = None
    ) -> None:
        self.params = params if params is not None else SyncParams()
        self.orphans = OrphanPool(self.params)
        self._peer_heads: dict[PeerId, int] = {}
        self._peer_finalized: dict[PeerId, BlockId] = {}
        self._requests: dict[int, _Request] = {}
        self._expired: OrderedDict[int, PeerId] = OrderedDict()
        """Requests closed by their deadline, newest last (at most `EXPIRED_REQUESTS_KEPT`): a
        late answer to one was charged as a timeout already and is dropped without blame."""
        self._next_request_id = 1
        self._retry: list[_Range] = []
        self._buffered: dict[int, tuple[tuple[Block, ...], PeerId]] = {}
        self._buffered_bytes = 0
        self._counters = _Counters()
        self._set_anchor(anchor_height, anchor_id)

    def _set_anchor(self, height: Height, block_id: BlockId) -> None:
        self._anchor_height = height
        self._anchor_id = block_id
        self._expected_height = height + 1
        self._expected_parent = block_id
        self._next_height = height + 1
        self._retry.clear()
        self._buffered.clear()
        self._buffered_bytes = 0

    # -- queries -----------------------------------------------------------------------------

    @property
    def target_height(self) -> int:
        """The highest head any peer has claimed (and not contradicted by an empty answer)."""
        return max(self._peer_heads.values(), default=self._expected_height - 1)

    @property
    def is_syncing(self) -> bool:
        """True while some peer is ahead of the blocks handed over so far."""
        return self.target_height >= self._expected_height

    def next_deadline(self) -> float | None:
        """When `handle_timeouts` must next be called, or None if nothing is in flight."""
        return min((request.deadline for request in self._requests.values()), default=None)

    def statistics(self) -> SyncStatistics:
        c = self._counters
        return SyncStatistics(
            requests_sent=c.requests_sent,
            blocks_imported=c.blocks_imported,
            bad_responses=c.bad_responses,
            timeouts=c.timeouts,
            in_flight=len(self._requests),
            pending_blocks=self._pending_blocks(),
            pending_bytes=self._buffered_bytes,
            orphans=len(self.orphans),
            orphan_bytes=self.orphans.bytes,
            target_height=Height(self.target_height),
            next_height=self._expected_height,
        )

    # -- inputs ------------------------------------------------------------------------------

    def on_status(self, peer_id: PeerId, status: Status, now: float) -> list[SyncAction]:
        """Record a peer's head; request ranges if it is ahead of us."""
        self._peer_heads[peer_id] = status.head_height
        self._peer_finalized[peer_id] = status.finalized.block_id
        return self._schedule(now)

    def remove_peer(self, peer_id: PeerId, now: float) -> list[SyncAction]:
        """Forget a disconnected peer and hand its open requests to others."""
        self._peer_heads.pop(peer_id, None)
        self._peer_finalized.pop(peer_id, None)
        for request_id, request in list(self._requests.items()):
            if request.peer_id == peer_id:
                self._close(request_id)
                self._requeue(request, exclude=False)
        return self._schedule(now)

    def reset(self, anchor_height: Height, anchor_id: BlockId, now: float) -> list[SyncAction]:
        """Start over on a new anchor (after a failed import, or to skip blocks gossip brought).

        Answers to requests already in flight are dropped without blame when they arrive; a
        request still unanswered at its deadline costs `timeout_penalty` all the same.
        """
        for request in self._requests.values():
            if not request.by_id:
                request.stale = True
        self._set_anchor(anchor_height, anchor_id)
        return self._schedule(now)

    def is_awaiting(self, peer_id: PeerId, request_id: int) -> bool:
        """True if `request_id` is a request of ours to `peer_id` still waiting for its answer
        (the shell holds only such answers; anything else is unsolicited)."""
        request = self._requests.get(request_id)
        return request is not None and request.peer_id == peer_id

    def on_blocks(self, peer_id: PeerId, response: Blocks, now: float) -> list[SyncAction]:
        """Check an answer's shape; return blocks to import in order, or a penalty and retry."""
        request = self._requests.get(response.request_id)
        if request is None and self._expired.get(response.request_id) == peer_id:
            del self._expired[response.request_id]
            return []  # late: the timeout was its cost
        if request is None or request.peer_id != peer_id:
            return [self._bad_response(peer_id)]
        self._close(response.request_id)
        if request.stale:
            return self._schedule(now)
        if self._shape_problem(request, response.blocks):
            self._requeue(request, exclude=True)
            return [self._bad_response(peer_id), *self._schedule(now)]
        if self._off_anchor(request, response.blocks):
            return self._other_branch(peer_id, request, now)
        if request.by_id:
            actions: list[SyncAction] = []
            if response.blocks:
                actions.append(Import(blocks=response.blocks, from_peer=peer_id))
            return actions
        received = len(response.blocks)
        if received < request.count:
            if received == 0:
                # The peer has nothing from here on: stop asking it, so it cannot make us loop.
                self._lower_head(peer_id, Height(request.start - 1))
            self._retry.append(
                _Range(request.start + received, request.count - received, request.excluded)
            )
        if received:
            self._buffered[request.start] = (response.blocks, peer_id)
            self._buffered_bytes += sum(block_size(block) for block in response.blocks)
        return [*self._release(), *self._schedule(now)]

    def handle_timeouts(self, now: float) -> list[SyncAction]:
        """Penalise peers whose requests passed their deadline (`timeout_penalty` each, also
        for requests made before a `reset`) and ask someone else."""
        actions: list[SyncAction] = []
        for request_id, request in list(self._requests.items()):
            if request.deadline > now:
                continue
            self._close(request_id)
            self._expired[request_id] = request.peer_id
            while len(self._expired) > EXPIRED_REQUESTS_KEPT:
                self._expired.popitem(last=False)
            # Charged even if stale: a reset (our finality moving, once an epoch) must not
            # forgive silence, or epochs shorter than `request_timeout` forgive every timeout.
            self._counters.timeouts += 1
            self._requeue(request, exclude=True)
            if not request.by_id:
                # Like an empty answer: not asked from here on until its next Status, so a
                # peer claiming a high head and answering nothing cannot keep us syncing.
                self._lower_head(request.peer_id, Height(request.start - 1))
            actions.append(
                Penalize(
                    peer_id=request.peer_id,
                    amount=self.params.timeout_penalty,
                    reason=Offence.TIMEOUT,
                )
            )
        return [*actions, *self._schedule(now)]

    def add_orphan(self, block: Block, from_peer: PeerId, now: float) -> list[SyncAction]:
        """Hold a block with an unknown parent (gossiped, or left over from a sync answer);
        ask its sender for the missing one, unless `max_parent_requests` (in all, or to that
        peer) are already out."""
        self.orphans.expire(now)
        asking = [r.peer_id for r in self._requests.values() if r.by_id]
        may_ask = (
            len(asking) < self.params.max_parent_requests
            and asking.count(from_peer) < self.params.max_parent_requests_per_peer
        )
        request_id = self._next_request_id if may_ask else None
        request = self.orphans.add(block, from_peer, now, request_id=request_id)
        if request is None:
            return []
        self._next_request_id += 1
        self._requests[request.request_id] = _Request(
            peer_id=from_peer,
            deadline=now + self.params.request_timeout,
            block_ids=request.block_ids,
        )
        self._counters.requests_sent += 1
        return [Send(peer_id=from_peer, message=request)]

    # -- internals ---------------------------------------------------------------------------

    def _close(self, request_id: int) -> None:
        """End an open request however it ended (answer, timeout, disconnect); a parent
        request's blocks may be asked for again by the next orphan that needs them."""
        request = self._requests.pop(request_id)
        if request.by_id:
            self.orphans.forget_requested(request.block_ids)

    def _off_anchor(self, request: _Request, blocks: tuple[Block, ...]) -> bool:
        """True if a range just above the anchor does not begin with a child of it."""
        return bool(
            not request.by_id
            and blocks
            and request.start == self._anchor_height + 1
            and blocks[0].header.parent != self._anchor_id
        )

    def _other_branch(self, peer_id: PeerId, request: _Request, now: float) -> list[SyncAction]:
        """An answer off our anchor. It is malice only from a peer whose last `Status` named
        our anchor as its finalized block; an honest peer that has not finalized it may still
        be on a branch we finalized away (after a partition), so that peer is only not asked
        at or above the range again until its next `Status`."""
        self._requeue(request, exclude=True)
        if self._peer_finalized.get(peer_id) == self._anchor_id:
            return [self._bad_response(peer_id), *self._schedule(now)]
        self._lower_head(peer_id, Height(request.start - 1))
        return self._schedule(now)

    def _shape_problem(self, request: _Request, blocks: tuple[Block, ...]) -> bool:
        if sum(block_size(block) for block in blocks) > self.params.max_response_bytes:
            return True
        if request.by_id:
            asked = set(request.block_ids)
            ids = [block.block_id for block in blocks]
            heights = [block.header.height for block in blocks]
            return (
                len(ids) > len(asked)
                or len(set(ids)) != len(ids)
                or not asked.issuperset(ids)
                or heights != sorted(heights)
            )
        if len(blocks) > request.count:
            return True
        for offset, block in enumerate(blocks):
            if block.header.height != request.start + offset:
                return True
            if offset and block.header.parent != blocks[offset - 1].block_id:
                return True
        return False

    def _release(self) -> list[SyncAction]:
        actions: list[SyncAction] = []
        while self._expected_height in self._buffered:
            blocks, peer_id = self._buffered.pop(self._expected_height)
            self._buffered_bytes -= sum(block_size(block) for block in blocks)
            if blocks[0].header.parent != self._expected_parent:
                # Another branch than the run before it: not provably malice, so no penalty,
                # and this peer is not asked again above it until its next Status. The run is
                # still handed over: a branch we do not know yet (after a partition heals) is
                # fetched down to where it forks by its orphans' parent requests.
                start = blocks[0].header.height
                self._lower_head(peer_id, Height(start - 1))
                self._retry.append(_Range(start, len(blocks), frozenset({peer_id})))
                actions.append(Import(blocks=blocks, from_peer=peer_id))
                continue
            actions.append(Import(blocks=blocks, from_peer=peer_id))
            self._counters.blocks_imported += len(blocks)
            self._expected_height += len(blocks)
            self._expected_parent = blocks[-1].block_id
        return actions

    def _reserved_bytes(self) -> int:
        """Held bytes plus the largest answer of every range request whose answer would be
        held (a stale one is dropped when it arrives)."""
        answers = sum(1 for r in self._requests.values() if not r.by_id and not r.stale)
        return self._buffered_bytes + answers * self.params.max_response_bytes

    def _pending_blocks(self) -> int:
        in_flight = sum(request.count for request in self._requests.values() if not request.stale)
        buffered = sum(len(blocks) for blocks, _ in self._buffered.values())
        return in_flight + buffered

    def _requeue(self, request: _Request, *, exclude: bool) -> None:
        if request.by_id or request.stale:
            return
        excluded = request.excluded | {request.peer_id} if exclude else request.excluded
        self._retry.append(_Range(request.start, request.count, excluded))

    def _schedule(self, now: float) -> list[SyncAction]:
        params = self.params
        actions: list[SyncAction] = []
        self._retry = [r for r in self._retry if r.start + r.count > self._expected_height]
        self._retry.sort(key=lambda r: r.start)
        while (
            sum(1 for r in self._requests.values() if not r.by_id) < params.max_requests
            and self._pending_blocks() < params.max_pending_blocks
            and self._reserved_bytes() + params.max_response_bytes <= params.max_pending_bytes
        ):
            taken = self._take_work()
            if taken is None:
                break
            work, from_retry = taken
            peer_id = self._pick_peer(work)
            if peer_id is None:
                self._put_back(work, from_retry)
                break
            count = min(
                work.count,
                self._peer_heads[peer_id] - work.start + 1,
                params.max_pending_blocks - self._pending_blocks(),
            )
            if count < work.count:
                self._put_back(
                    _Range(work.start + count, work.count - count, work.excluded), from_retry
                )
            request_id = self._next_request_id
            self._next_request_id += 1
            self._requests[request_id] = _Request(
                peer_id=peer_id,
                deadline=now + params.request_timeout,
                start=work.start,
                count=count,
                excluded=work.excluded,
            )
            self._counters.requests_sent += 1
            message = GetBlocksByRange(
                request_id=request_id, start_height=Height(work.start), count=count
            )
            actions.append(Send(peer_id=peer_id, message=message))
        return actions

    def _take_work(self) -> tuple[_Range, bool] | None:
        """The next range to ask for: a retry first, else the next fresh batch."""
        if self._retry:
            return self._retry.pop(0), True
        start = max(self._next_height, self._expected_height)
        if start > self.target_height:
            return None
        count = min(self.params.batch_size, self.target_height - start + 1)
        self._next_height = start + count
        return _Range(start, count, frozenset()), False

    def _put_back(self, work: _Range, from_retry: bool) -> None:
        if from_retry:
            self._retry.insert(0, work)
        else:
            self._next_height = work.start

    def _pick_peer(self, work: _Range) -> PeerId | None:
        busy: dict[PeerId, int] = {}
        for request in self._requests.values():
            busy[request.peer_id] = busy.get(request.peer_id, 0) + 1
        able = [peer_id for peer_id, head in self._peer_heads.items() if head >= work.start]
        # Prefer peers that have not failed this range; fall back to them only if nobody else
        # has the blocks (a bad peer keeps losing score and is disconnected by the shell).
        fresh = [peer_id for peer_id in able if peer_id not in work.excluded]
        candidates = [
            peer_id
            for peer_id in (fresh or able)
            if busy.get(peer_id, 0) < self.params.max_requests_per_peer
        ]
        if not candidates:
            return None
        return min(candidates, key=lambda peer_id: (busy.get(peer_id, 0), peer_id))

    def _lower_head(self, peer_id: PeerId, height: Height) -> None:
        """Ask `peer_id` for nothing above `height` until its next `Status`."""
        if peer_id in self._peer_heads:
            self._peer_heads[peer_id] = min(self._peer_heads[peer_id], height)

    def _bad_response(self, peer_id: PeerId) -> Penalize:
        self._counters.bad_responses += 1
        return Penalize(
            peer_id=peer_id, amount=self.params.bad_response_penalty, reason=Offence.BAD_RESPONSE
        )


@dataclass(slots=True, eq=False)
class _Orphan:
    block: Block
    from_peer: PeerId
    expires: float


class OrphanPool:
    """Blocks waiting for an unknown parent, bounded in count and bytes globally and per peer,
    expiring by `now`."""

    def __init__(self, params: SyncParams | None = None) -> None:
        self.params = params if params is not None else SyncParams()
        self._pool: QuotaPool[BlockId, PeerId, _Orphan] = QuotaPool(
            Quota(
                max_items=self.params.max_orphans,
                max_bytes=self.params.max_orphan_bytes,
                max_items_per_source=self.params.max_orphans_per_peer,
                max_bytes_per_source=self.params.max_orphan_bytes_per_peer,
            )
        )
        self._children: dict[BlockId, list[BlockId]] = {}
        self._requested: set[BlockId] = set()
        """Missing ancestors already asked for; always parents of held orphans."""

    def __len__(self) -> int:
        return len(self._pool)

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._pool

    @property
    def bytes(self) -> int:
        """Encoded bytes of the held orphans."""
        return self._pool.bytes

    def count_from(self, peer_id: PeerId) -> int:
        """Orphans held on behalf of `peer_id`."""
        return self._pool.usage(peer_id)[0]

    def add(
        self, block: Block, from_peer: PeerId, now: float, *, request_id: int | None
    ) -> GetBlocksById | None:
        """Hold `block`; return a request for the oldest missing ancestor, unless one is out
        or `request_id` is None (the caller may not ask now).

        A block already held, or one larger than a peer's byte share, is not stored (returns
        None). Past `from_peer`'s share its oldest orphan leaves; when the pool is full, the
        oldest orphan of the peer holding the most bytes does.
        """
        block_id = block.block_id
        if block_id in self._pool:
            return None
        orphan = _Orphan(block, from_peer, now + self.params.orphan_ttl)
        evicted = self._pool.add(block_id, orphan, source=from_peer, size=block_size(block))
        if any(gone is orphan for gone in evicted):
            self._unlink_all([gone for gone in evicted if gone is not orphan])
            return None
        self._children.setdefault(block.header.parent, []).append(block_id)
        self._unlink_all(evicted)
        if request_id is None:
            return None
        missing = block.header.parent
        while (held := self._pool.get(missing)) is not None:
            missing = held.block.header.parent
        if missing in self._requested:
            return None
        self._requested.add(missing)
        return GetBlocksById(request_id=request_id, block_ids=(missing,))

    def forget_requested(self, block_ids: Iterable[BlockId]) -> None:
        """A request for `block_ids` ended: a later orphan may ask for them again (else one
        lost answer would leave every orphan above it waiting until it expires)."""
        self._requested.difference_update(block_ids)

    def release(self, parent_id: BlockId) -> list[Block]:
        """Remove and return every held descendant of a block that just became known.

        Parents come before their children, so the list can be imported in order.
        """
        return [orphan.block for orphan in self._release(parent_id)]

    def release_known(self, is_known: Callable[[BlockId], bool]) -> list[Import]:
        """Remove every held descendant of the missing blocks that `is_known` now, however
        they became known (gossip, sync, a slot tick, our own proposal).

        Returns imports in order, parents before children; each is a run of orphans from one
        sender, charged to it (an invalid one costs that peer, not the parent's sender).
        """
        missing = [parent for parent in self._children if parent not in self._pool]
        imports: list[Import] = []
        for parent in missing:
            if not is_known(parent):
                continue
            for orphan in self._release(parent):
                if imports and imports[-1].from_peer == orphan.from_peer:
                    last = imports[-1]
                    imports[-1] = Import(
                        blocks=(*last.blocks, orphan.block), from_peer=last.from_peer
                    )
                else:
                    imports.append(Import(blocks=(orphan.block,), from_peer=orphan.from_peer))
        return imports

    def _release(self, parent_id: BlockId) -> list[_Orphan]:
        self._requested.discard(parent_id)
        released: list[_Orphan] = []
        frontier = [parent_id]
        while frontier:
            parent = frontier.pop(0)
            for child_id in sorted(self._children.pop(parent, [])):
                orphan = self._pool.pop(child_id)
                if orphan is None:
                    continue
                self._unlink(orphan.block)
                released.append(orphan)
                frontier.append(child_id)
        return released

    def expire(self, now: float) -> int:
        """Drop orphans whose time ran out; return how many."""
        expired = [key for key, orphan in self._pool.items() if orphan.expires <= now]
        for key in expired:
            orphan = self._pool.pop(key)
            if orphan is not None:
                self._unlink(orphan.block)
        return len(expired)

    def _unlink_all(self, orphans: list[_Orphan]) -> None:
        for orphan in orphans:
            self._unlink(orphan.block)

    def _unlink(self, block: Block) -> None:
        """Forget a block that left the pool in the parent index and the request set."""
        parent = block.header.parent
        siblings = self._children.get(parent)
        if siblings is not None and block.block_id in siblings:
            siblings.remove(block.block_id)
            if not siblings:
                del self._children[parent]
        if parent not in self._children:
            self._requested.discard(parent)


class ChainIndex(Protocol):
    """Which blocks a node has, by height on its canonical chain and by id: what deciding an
    answer to a block request reads (the bodies may still have to be loaded)."""

    def canonical_id(self, height: Height) -> BlockId | None: ...

    def height_of(self, block_id: BlockId) -> Height | None:
        """The height of a block we can serve, or None."""
        ...


class ChainReader(ChainIndex, Protocol):
    """Read access to the local chain, for serving peers."""

    def get_block(self, block_id: BlockId) -> Block | None: ...


def requested_block_ids(
    request: GetBlocksByRange | GetBlocksById, chain: ChainIndex
) -> list[BlockId]:
    """The blocks that answer `request`, in answer order, before the byte bound: for a range,
    the canonical blocks from its start up to the first we lack (at most
    `MAX_BLOCKS_PER_REQUEST`); for ids, the known ones among the first
    `MAX_BLOCK_IDS_PER_REQUEST` named, each once, ascending by height."""
    if isinstance(request, GetBlocksByRange):
        ids: list[BlockId] = []
        for offset in range(min(request.count, MAX_BLOCKS_PER_REQUEST)):
            block_id = chain.canonical_id(Height(request.start_height + offset))
            if block_id is None:
                break
            ids.append(block_id)
        return ids
    heights = {
        block_id: height
        for block_id in dict.fromkeys(request.block_ids[:MAX_BLOCK_IDS_PER_REQUEST])
        if (height := chain.height_of(block_id)) is not None
    }
    return sorted(heights, key=heights.__getitem__)


def bounded_answer(
    request_id: int, blocks: Iterable[Block], max_bytes: int = MAX_BLOCKS_RESPONSE_BYTES
) -> Blocks:
    """The `Blocks` answer carrying `blocks` in order up to the last that fits `max_bytes`."""
    chosen: list[Block] = []
    total = 0
    for block in blocks:
        total += block_size(block)
        if total > max_bytes:
            break
        chosen.append(block)
    return Blocks(request_id=request_id, blocks=tuple(chosen))


def serve_blocks(
    request: GetBlocksByRange | GetBlocksById,
    chain_reader: ChainReader,
    max_bytes: int = MAX_BLOCKS_RESPONSE_BYTES,
) -> Blocks:
    """Answer either kind of block request from `chain_reader` (`requested_block_ids`, then
    `bounded_answer`), stopping at the first body the reader lacks."""
    found: list[Block] = []
    for block_id in requested_block_ids(request, chain_reader):
        block = chain_reader.get_block(block_id)
        if block is None:
            break
        found.append(block)
    return bounded_answer(request.request_id, found, max_bytes)
