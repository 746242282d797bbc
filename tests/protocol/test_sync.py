"""Range sync, response shape checks, timeouts, the orphan pool and serving blocks."""

import itertools
import tracemalloc
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchain.errors import ConfigError
from p2pchain.ledger.block import EMPTY_BLOCK_SIGNATURE, Block, compute_body_root
from p2pchain.ledger.crypto import sha256
from p2pchain.ledger.header import BlockHeader
from p2pchain.ledger.types import BlockId, PublicKey
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.protocol.connection import PeerId
from p2pchain.protocol.gossip import Send
from p2pchain.protocol.messages import (
    MAX_BLOCK_IDS_PER_REQUEST,
    MAX_BLOCKS_PER_REQUEST,
    Blocks,
    GetBlocksById,
    GetBlocksByRange,
    Status,
)
from p2pchain.protocol.scoring import Offence, Penalize
from p2pchain.protocol.sync import (
    Import,
    OrphanPool,
    SyncManager,
    SyncParams,
    block_size,
    requested_block_ids,
    serve_blocks,
)

BODY_ROOT = compute_body_root((), ())


def make_chain(
    length: int, *, tag: bytes = b"main", base: list[Block] | None = None
) -> list[Block]:
    """Blocks 0..length-1 with empty bodies; `base` (a prefix) is extended when given."""
    chain = list(base or [])
    while len(chain) < length:
        height = len(chain)
        parent = chain[-1].block_id if chain else BlockId(bytes(32))
        header = BlockHeader(
            parent=parent,
            height=height,
            slot=height,
            proposer=PublicKey(sha256(tag)),
            body_root=BODY_ROOT,
            state_root=BODY_ROOT,
        )
        chain.append(Block(header=header, signature=EMPTY_BLOCK_SIGNATURE))
    return chain


MAIN = make_chain(400)
FORK = make_chain(400, tag=b"fork", base=MAIN[:100])


class MemoryChain:
    """A canonical chain held in a list: the `ChainReader` peers serve from."""

    def __init__(self, blocks: list[Block]) -> None:
        self.blocks = list(blocks)
        self.by_id = {block.block_id: block for block in blocks}

    def canonical_id(self, height: int) -> BlockId | None:
        return self.blocks[height].block_id if 0 <= height < len(self.blocks) else None

    def height_of(self, block_id: BlockId) -> int | None:
        block = self.by_id.get(block_id)
        return None if block is None else block.header.height

    def get_block(self, block_id: BlockId) -> Block | None:
        return self.by_id.get(block_id)

    def status(self) -> Status:
        head = self.blocks[-1]
        return Status(
            head=head.block_id,
            head_height=head.header.height,
            head_slot=head.header.slot,
            finalized=Checkpoint(epoch=0, block_id=self.blocks[0].block_id),
        )


def peer(i: int) -> PeerId:
    return PeerId(sha256(b"sync-peer" + bytes([i])))


def new_manager(**kwargs) -> SyncManager:
    return SyncManager(anchor_height=0, anchor_id=MAIN[0].block_id, params=SyncParams(**kwargs))


def range_requests(actions: list) -> list[tuple[PeerId, GetBlocksByRange]]:
    return [
        (a.peer_id, a.message)
        for a in actions
        if isinstance(a, Send) and isinstance(a.message, GetBlocksByRange)
    ]


def imported(actions: list) -> list[Block]:
    return [block for a in actions if isinstance(a, Import) for block in a.blocks]


def penalties(actions: list) -> list[Penalize]:
    return [a for a in actions if isinstance(a, Penalize)]


def run_sync(
    manager: SyncManager,
    servers: dict[PeerId, MemoryChain],
    local: list[Block],
    side_runs: list[tuple[Block, ...]] | None = None,
) -> int:
    """Serve every request in order until quiet; return how many messages went around.

    An import extends `local`, or is a run of another branch (each block the parent of the
    next), handed over for the shell to place; those go to `side_runs`."""
    now = 0.0
    queue = []
    for peer_id, chain in servers.items():
        queue.extend(manager.on_status(peer_id, chain.status(), now))
    exchanged = 0
    while queue:
        action = queue.pop(0)
        now += 0.01
        if isinstance(action, Import):
            run = action.blocks
            pairs = itertools.pairwise(run)
            assert all(child.header.parent == parent.block_id for parent, child in pairs)
            if run[0].header.parent != local[-1].block_id:
                assert side_runs is not None, "a run off the synced chain"
                side_runs.append(run)
                continue
            local.extend(run)
        elif isinstance(action, Send):
            exchanged += 1
            assert isinstance(action.message, GetBlocksByRange)
            response = serve_blocks(action.message, servers[action.peer_id])
            queue.extend(manager.on_blocks(action.peer_id, response, now))
        else:
            pytest.fail(f"unexpected {action}")
    return exchanged


# -- range sync ----------------------------------------------------------------------------


def test_late_joiner_reaches_the_same_head():
    servers = {
        peer(1): MemoryChain(MAIN),
        peer(2): MemoryChain(MAIN),
        peer(3): MemoryChain(MAIN[:150]),
    }
    manager = new_manager()
    local = [MAIN[0]]
    exchanged = run_sync(manager, servers, local)
    assert local == MAIN
    assert not manager.is_syncing
    stats = manager.statistics()
    assert stats.blocks_imported == len(MAIN) - 1
    assert stats.in_flight == 0
    assert stats.pending_blocks == 0
    assert exchanged <= (len(MAIN) // SyncParams().batch_size) + 3


def test_not_behind_means_no_requests():
    manager = SyncManager(anchor_height=399, anchor_id=MAIN[399].block_id)
    assert manager.on_status(peer(1), MemoryChain(MAIN).status(), 0.0) == []
    assert not manager.is_syncing


def test_requests_are_bounded_per_peer_and_in_total():
    manager = new_manager(batch_size=16, max_requests_per_peer=2, max_requests=3)
    liar = replace(MemoryChain(MAIN).status(), head_height=10**9)
    requests = range_requests(manager.on_status(peer(1), liar, 0.0))
    assert len(requests) == 2
    assert [r.start_height for _, r in requests] == [1, 17]
    requests = range_requests(manager.on_status(peer(2), liar, 0.0))
    assert len(requests) == 1
    assert manager.statistics().in_flight == 3


def test_pending_blocks_are_bounded():
    manager = new_manager(
        batch_size=16, max_requests=100, max_requests_per_peer=100, max_pending_blocks=40
    )
    liar = replace(MemoryChain(MAIN).status(), head_height=10**9)
    requests = range_requests(manager.on_status(peer(1), liar, 0.0))
    assert sum(r.count for _, r in requests) == 40
    # Answers far ahead of the missing first batch are held, and still count against the bound.
    for peer_id, request in requests[1:]:
        response = serve_blocks(request, MemoryChain(MAIN))
        actions = manager.on_blocks(peer_id, response, 1.0)
        assert imported(actions) == []
        assert range_requests(actions) == []
    assert manager.statistics().pending_blocks == 40


def test_empty_answer_stops_asking_that_peer():
    manager = new_manager()
    boaster = replace(MemoryChain(MAIN).status(), head_height=300)
    ((_, request),) = range_requests(manager.on_status(peer(1), boaster, 0.0))[:1]
    actions = manager.on_blocks(peer(1), Blocks(request_id=request.request_id, blocks=()), 0.1)
    assert penalties(actions) == []
    assert range_requests(actions) == []
    assert manager.target_height < request.start_height + request.count


def test_short_answer_requests_the_rest():
    manager = new_manager(batch_size=10, max_requests_per_peer=1)
    actions = manager.on_status(peer(1), MemoryChain(MAIN[:30]).status(), 0.0)
    ((_, request),) = range_requests(actions)
    response = Blocks(request_id=request.request_id, blocks=tuple(MAIN[1:4]))
    actions = manager.on_blocks(peer(1), response, 0.1)
    assert imported(actions) == MAIN[1:4]
    ((_, follow_up),) = range_requests(actions)
    assert (follow_up.start_height, follow_up.count) == (4, 7)


def first_request(manager: SyncManager) -> GetBlocksByRange:
    actions = manager.on_status(peer(1), MemoryChain(MAIN[:20]).status(), 0.0)
    manager.on_status(peer(2), MemoryChain(MAIN[:20]).status(), 0.0)
    return range_requests(actions)[0][1]


def malformed(request: GetBlocksByRange) -> dict[str, tuple[Block, ...]]:
    good = MAIN[request.start_height : request.start_height + request.count]
    other = make_chain(10, tag=b"x")
    return {
        "gap": (good[0], *good[2:]),
        "wrong order": tuple(reversed(good)),
        "not chaining": (good[0], other[request.start_height + 1], *good[2:]),
        "too many": tuple(MAIN[request.start_height : request.start_height + request.count + 1]),
        "wrong start": tuple(MAIN[request.start_height + 1 : request.start_height + request.count]),
        "other branch": tuple(other[request.start_height : request.start_height + request.count]),
    }


@pytest.mark.parametrize(
    "kind", ["gap", "wrong order", "not chaining", "too many", "wrong start", "other branch"]
)
def test_malformed_answer_is_penalized_and_asked_elsewhere(kind):
    manager = new_manager(batch_size=5, max_requests_per_peer=3)
    request = first_request(manager)
    response = Blocks(request_id=request.request_id, blocks=malformed(request)[kind])
    actions = manager.on_blocks(peer(1), response, 0.1)
    assert penalties(actions) == [
        Penalize(
            peer_id=peer(1), amount=SyncParams().bad_response_penalty, reason=Offence.BAD_RESPONSE
        )
    ]
    assert imported(actions) == []
    retries = [(p, r) for p, r in range_requests(actions) if r.start_height == request.start_height]
    assert [p for p, _ in retries] == [peer(2)]
    assert manager.statistics().bad_responses == 1


def test_an_answer_off_our_anchor_costs_nothing_from_a_peer_that_has_not_finalized_it():
    """After a partition an honest peer may still serve a branch we finalized away: its first
    block does not build on our anchor, but only a peer that named our anchor as its finalized
    block proves malice by that (the "other branch" case above)."""
    manager = SyncManager(
        anchor_height=100,
        anchor_id=MAIN[100].block_id,
        params=SyncParams(batch_size=5, max_requests_per_peer=3),
    )
    behind = MemoryChain(FORK[:151]).status()  # finalized: the shared genesis, not our anchor
    requests = range_requests(manager.on_status(peer(1), behind, 0.0))
    assert requests[0] == (peer(1), GetBlocksByRange(request_id=1, start_height=101, count=5))
    answer = serve_blocks(requests[0][1], MemoryChain(FORK))
    actions = manager.on_blocks(peer(1), answer, 0.1)
    assert penalties(actions) == []
    assert imported(actions) == []
    assert range_requests(actions) == []  # not asked again
    assert manager.statistics().bad_responses == 0
    retried = range_requests(manager.on_status(peer(2), MemoryChain(MAIN[:151]).status(), 0.2))
    assert retried[0][0] == peer(2)
    assert retried[0][1].start_height == 101
    # Its next Status makes it a candidate again.
    manager.remove_peer(peer(2), 0.2)
    again = range_requests(manager.on_status(peer(1), behind, 0.3))
    assert {p for p, _ in again} == {peer(1)}


@pytest.mark.parametrize("wrong", ["unknown id", "other peer's id"])
def test_unsolicited_answer_is_penalized(wrong):
    manager = new_manager(batch_size=5)
    request = first_request(manager)
    request_id = request.request_id + 1000 if wrong == "unknown id" else request.request_id
    sender = peer(3)
    actions = manager.on_blocks(sender, Blocks(request_id=request_id, blocks=tuple(MAIN[1:3])), 0.1)
    assert penalties(actions) == [
        Penalize(
            peer_id=sender, amount=SyncParams().bad_response_penalty, reason=Offence.BAD_RESPONSE
        )
    ]
    assert imported(actions) == []


def test_oversized_answer_is_penalized():
    small = block_size(MAIN[1]) * 3
    manager = new_manager(batch_size=5, max_response_bytes=small)
    request = first_request(manager)
    response = serve_blocks(request, MemoryChain(MAIN))
    assert len(response.blocks) == 5
    assert penalties(manager.on_blocks(peer(1), response, 0.1))


def test_timeout_is_penalized_and_retried_elsewhere():
    manager = new_manager(batch_size=5, max_requests_per_peer=1, request_timeout=10.0)
    request = first_request(manager)
    assert manager.next_deadline() == 10.0
    assert manager.handle_timeouts(9.9) == []
    actions = manager.handle_timeouts(10.0)
    timed_out = [p for p in penalties(actions) if p.reason is Offence.TIMEOUT]
    assert {p.peer_id for p in timed_out} == {peer(1), peer(2)}
    retried = [r for _, r in range_requests(actions) if r.start_height == request.start_height]
    assert len(retried) == 1
    # The late answer to the expired request costs nothing more: the timeout was its cost.
    late = serve_blocks(request, MemoryChain(MAIN))
    assert manager.on_blocks(peer(1), late, 10.5) == []
    assert manager.statistics().timeouts == 2
    # But only once, and only from the peer asked: a replay, or another peer using that id,
    # answers nothing of ours.
    assert penalties(manager.on_blocks(peer(1), late, 10.6))
    other = Blocks(request_id=late.request_id, blocks=())
    assert penalties(manager.on_blocks(peer(3), other, 10.7))


def test_disconnected_peer_requests_go_to_others_without_penalty():
    manager = new_manager(batch_size=5, max_requests_per_peer=3)
    request = first_request(manager)
    actions = manager.remove_peer(peer(1), 1.0)
    assert penalties(actions) == []
    retried = range_requests(actions)
    assert {p for p, _ in retried} == {peer(2)}
    assert [r.start_height for _, r in retried] == [request.start_height, request.start_height + 5]


def test_reset_drops_answers_to_old_requests_without_blame():
    manager = new_manager(batch_size=5, max_requests_per_peer=3)
    request = first_request(manager)
    manager.reset(10, MAIN[10].block_id, 1.0)
    late = serve_blocks(request, MemoryChain(MAIN))
    actions = manager.on_blocks(peer(1), late, 1.1)
    assert penalties(actions) == []
    assert imported(actions) == []


def test_peers_on_two_branches_cannot_make_us_import_a_broken_chain_or_loop():
    servers = {peer(1): MemoryChain(MAIN[:300]), peer(2): MemoryChain(FORK[:300])}
    manager = new_manager(batch_size=30)
    local = [MAIN[0]]
    side_runs: list[tuple[Block, ...]] = []
    exchanged = run_sync(manager, servers, local, side_runs)
    assert len(local) > 100
    assert local in (MAIN[: len(local)], FORK[: len(local)])
    assert exchanged < 50
    # The other branch's runs are handed over too, so the shell can fetch where they fork.
    other = FORK if local[-1] in MAIN else MAIN
    assert side_runs
    assert all(set(run) <= set(other[100:]) for run in side_runs)


ADVERSARIAL_BLOCKS = st.lists(st.sampled_from(MAIN[:40] + FORK[95:110]), max_size=12).map(tuple)


@settings(max_examples=60)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("answer"), st.integers(0, 20), ADVERSARIAL_BLOCKS),
            st.tuples(st.just("status"), st.integers(0, 10**6)),
            st.tuples(st.just("tick"), st.floats(0, 20)),
            st.tuples(st.just("honest"), st.just(0)),
        ),
        max_size=40,
    )
)
def test_adversarial_answers_never_break_bounds_or_order(steps):
    params = SyncParams(
        batch_size=8, max_requests=4, max_requests_per_peer=2, max_pending_blocks=24
    )
    manager = SyncManager(anchor_height=0, anchor_id=MAIN[0].block_id, params=params)
    honest, liar = peer(1), peer(2)
    now = 0.0
    local = [MAIN[0]]
    open_requests: list[tuple[PeerId, GetBlocksByRange]] = []
    actions = manager.on_status(honest, MemoryChain(MAIN[:40]).status(), now)
    for step in steps:
        if step[0] == "answer":
            actions = manager.on_blocks(liar, Blocks(request_id=step[1], blocks=step[2]), now)
        elif step[0] == "status":
            status = replace(MemoryChain(MAIN).status(), head_height=step[1])
            actions = manager.on_status(liar, status, now)
        elif step[0] == "tick":
            now += step[1]
            actions = manager.handle_timeouts(now)
        elif open_requests:
            peer_id, request = open_requests.pop(0)
            response = serve_blocks(request, MemoryChain(MAIN[:40]))
            actions = manager.on_blocks(peer_id, response, now)
        else:
            actions = []
        open_requests.extend((p, r) for p, r in range_requests(actions) if p == honest)
        for block in imported(actions):
            assert block == MAIN[len(local)]
            local.append(block)
        stats = manager.statistics()
        assert stats.in_flight <= params.max_requests
        assert stats.pending_blocks <= params.max_pending_blocks


# -- orphan pool ---------------------------------------------------------------------------


def test_orphans_are_released_parents_first():
    pool = OrphanPool()
    request = pool.add(MAIN[5], peer(1), 0.0, request_id=1)
    assert request == GetBlocksById(request_id=1, block_ids=(MAIN[4].block_id,))
    assert pool.add(MAIN[5], peer(1), 0.0, request_id=2) is None
    request = pool.add(MAIN[4], peer(1), 0.0, request_id=3)
    assert request == GetBlocksById(request_id=3, block_ids=(MAIN[3].block_id,))
    assert pool.add(FORK[101], peer(2), 0.0, request_id=4) is not None
    pool.add(MAIN[3], peer(2), 0.0, request_id=5)
    assert pool.release(MAIN[2].block_id) == [MAIN[3], MAIN[4], MAIN[5]]
    assert len(pool) == 1
    assert pool.release(MAIN[2].block_id) == []


def test_orphans_waiting_on_a_requested_ancestor_do_not_request_again():
    pool = OrphanPool()
    assert pool.add(MAIN[10], peer(1), 0.0, request_id=1) is not None
    assert pool.add(MAIN[11], peer(1), 0.0, request_id=2) is None


def test_siblings_are_both_released():
    pool = OrphanPool()
    pool.add(MAIN[100], peer(1), 0.0, request_id=1)
    pool.add(FORK[100], peer(2), 0.0, request_id=2)
    pool.add(FORK[101], peer(2), 0.0, request_id=3)
    released = pool.release(MAIN[99].block_id)
    assert set(released[:2]) == {MAIN[100], FORK[100]}
    assert released[2:] == [FORK[101]]


def test_orphan_pool_bounds():
    params = SyncParams(max_orphans=10, max_orphans_per_peer=4)
    pool = OrphanPool(params)
    for height in range(1, 10):
        pool.add(MAIN[height * 2], peer(1), float(height), request_id=height)
    assert pool.count_from(peer(1)) == 4
    assert len(pool) == 4
    for i in range(2, 6):
        for height in range(3):
            pool.add(make_chain(4, tag=bytes([i]))[height + 1], peer(i), float(i), request_id=0)
    assert len(pool) == params.max_orphans
    # The oldest orphans made room.
    assert MAIN[2].block_id not in pool


def test_orphans_expire():
    pool = OrphanPool(SyncParams(orphan_ttl=60.0))
    pool.add(MAIN[5], peer(1), 0.0, request_id=1)
    pool.add(MAIN[9], peer(1), 30.0, request_id=2)
    assert pool.expire(59.0) == 0
    assert pool.expire(60.0) == 1
    assert MAIN[9].block_id in pool
    # The expired orphan's parent may be requested again.
    assert pool.add(MAIN[5], peer(1), 61.0, request_id=3) is not None


@given(order=st.permutations(list(range(1, 30))))
def test_release_returns_a_connectable_sequence_for_any_arrival_order(order):
    pool = OrphanPool(SyncParams(max_orphans=64, max_orphans_per_peer=64))
    for height in order:
        pool.add(MAIN[height], peer(1), 0.0, request_id=height)
    assert pool.release(MAIN[0].block_id) == MAIN[1:30]
    assert len(pool) == 0


def test_known_parents_release_their_orphans_as_runs_charged_to_each_sender():
    pool = OrphanPool()
    for block, sender in ((MAIN[5], 1), (MAIN[6], 1), (MAIN[7], 2), (FORK[120], 3)):
        pool.add(block, peer(sender), 0.0, request_id=None)
    known = {MAIN[4].block_id}
    assert pool.release_known(known.__contains__) == [
        Import(blocks=(MAIN[5], MAIN[6]), from_peer=peer(1)),
        Import(blocks=(MAIN[7],), from_peer=peer(2)),
    ]
    assert len(pool) == 1
    assert pool.release_known(known.__contains__) == []
    # A held orphan is no known parent, even to a predicate that claims it is.
    pool.add(FORK[121], peer(3), 0.0, request_id=None)
    assert pool.release_known(lambda block_id: block_id == FORK[120].block_id) == []
    assert pool.release_known(lambda block_id: block_id == FORK[119].block_id) == [
        Import(blocks=(FORK[120], FORK[121]), from_peer=peer(3))
    ]


@given(order=st.permutations(list(range(1, 20))), senders=st.lists(st.integers(1, 3), min_size=19))
def test_released_runs_connect_in_order_whatever_the_arrival_order(order, senders):
    pool = OrphanPool(SyncParams(max_orphans=64, max_orphans_per_peer=64))
    for height in order:
        pool.add(MAIN[height], peer(senders[height - 1]), 0.0, request_id=None)
    imports = pool.release_known(lambda block_id: block_id == MAIN[0].block_id)
    assert [block for action in imports for block in action.blocks] == MAIN[1:20]
    assert all(
        action.from_peer == peer(senders[block.header.height - 1])
        for action in imports
        for block in action.blocks
    )
    assert all(a.from_peer != b.from_peer for a, b in itertools.pairwise(imports))
    assert len(pool) == 0


def test_sync_manager_asks_the_announcer_for_a_missing_parent():
    manager = new_manager()
    actions = manager.add_orphan(MAIN[50], peer(4), 0.0)
    ((sent),) = actions
    assert sent.peer_id == peer(4)
    assert isinstance(sent.message, GetBlocksById)
    assert sent.message.block_ids == (MAIN[49].block_id,)
    reply = serve_blocks(sent.message, MemoryChain(MAIN))
    assert imported(manager.on_blocks(peer(4), reply, 0.1)) == [MAIN[49]]
    # Blocks that were not asked for are a bad answer.
    again = manager.add_orphan(MAIN[70], peer(4), 0.2)[0].message
    wrong = Blocks(request_id=again.request_id, blocks=(MAIN[3],))
    assert penalties(manager.on_blocks(peer(4), wrong, 0.3))


@pytest.mark.parametrize("ending", ["timeout", "empty answer", "disconnect"])
def test_a_parent_request_that_ended_unanswered_is_asked_again_by_the_next_orphan(ending):
    """A lost answer must not leave every orphan above it waiting until it expires (after a
    heal this kept a node on its own branch for many epochs)."""
    manager = new_manager(request_timeout=10.0)
    (first,) = manager.add_orphan(MAIN[50], peer(4), 0.0)
    assert manager.add_orphan(MAIN[51], peer(4), 1.0) == []  # its ancestor is asked for
    if ending == "timeout":
        assert penalties(manager.handle_timeouts(10.0))
    elif ending == "empty answer":
        reply = Blocks(request_id=first.message.request_id, blocks=())
        assert manager.on_blocks(peer(4), reply, 2.0) == []
    else:
        manager.remove_peer(peer(4), 2.0)
    (again,) = manager.add_orphan(MAIN[52], peer(5), 11.0)
    assert again.peer_id == peer(5)
    assert again.message.block_ids == (MAIN[49].block_id,)


# -- serving -------------------------------------------------------------------------------


def test_serve_by_range_stops_at_the_head_and_at_the_byte_bound():
    chain = MemoryChain(MAIN[:10])
    response = serve_blocks(GetBlocksByRange(request_id=7, start_height=5, count=20), chain)
    assert response == Blocks(request_id=7, blocks=tuple(MAIN[5:10]))
    budget = block_size(MAIN[1]) * 2
    bounded = serve_blocks(GetBlocksByRange(request_id=8, start_height=1, count=9), chain, budget)
    assert bounded.blocks == tuple(MAIN[1:3])


def test_serve_by_id_skips_unknown_and_sorts_by_height():
    chain = MemoryChain(MAIN[:10])
    request = GetBlocksById(
        request_id=3, block_ids=(MAIN[7].block_id, FORK[150].block_id, MAIN[2].block_id)
    )
    assert serve_blocks(request, chain).blocks == (MAIN[2], MAIN[7])
    assert serve_blocks(request, chain, max_bytes=block_size(MAIN[1])).blocks == (MAIN[2],)


@given(
    chain_length=st.integers(1, 400),
    start=st.integers(0, 500),
    count=st.integers(0, 2 * MAX_BLOCKS_PER_REQUEST),
)
def test_a_range_answer_is_the_canonical_run_from_its_start(chain_length, start, count):
    chain = MemoryChain(MAIN[:chain_length])
    request = GetBlocksByRange(request_id=1, start_height=start, count=count)
    ids = requested_block_ids(request, chain)
    expected = MAIN[start : min(chain_length, start + min(count, MAX_BLOCKS_PER_REQUEST))]
    assert ids == [block.block_id for block in expected]
    assert serve_blocks(request, chain).blocks == tuple(expected)


@given(
    chain_length=st.integers(1, 400),
    named=st.lists(st.integers(0, 399), max_size=2 * MAX_BLOCK_IDS_PER_REQUEST),
    from_fork=st.lists(st.integers(100, 399), max_size=20),
)
def test_an_id_answer_is_the_known_named_blocks_once_by_height(chain_length, named, from_fork):
    """Unknown ids (fork blocks we never saw) are skipped, duplicates count once, only the
    first `MAX_BLOCK_IDS_PER_REQUEST` named are looked at, and the answer is by height."""
    chain = MemoryChain(MAIN[:chain_length])
    block_ids = [MAIN[h].block_id for h in named] + [FORK[h].block_id for h in from_fork]
    request = GetBlocksById(request_id=2, block_ids=tuple(block_ids))
    looked_at = block_ids[:MAX_BLOCK_IDS_PER_REQUEST]
    known = {block_id for block_id in looked_at if block_id in chain.by_id}
    expected = sorted(known, key=lambda block_id: chain.by_id[block_id].header.height)
    assert requested_block_ids(request, chain) == expected
    budget = 3 * block_size(MAIN[1])
    blocks = [chain.by_id[block_id] for block_id in expected]
    fitting = max(n for n in range(len(blocks) + 1) if sum(map(block_size, blocks[:n])) <= budget)
    assert serve_blocks(request, chain, max_bytes=budget).blocks == tuple(blocks[:fitting])


def test_bad_parameters_are_refused():
    with pytest.raises(ConfigError, match="batch_size"):
        SyncParams(batch_size=1000)
    with pytest.raises(ConfigError, match="max_pending_blocks"):
        SyncParams(batch_size=64, max_pending_blocks=10)


# -- memory bounds under floods ------------------------------------------------------------

JUNK = 10_000


def _padded_orphan(nonce: int, votes: int) -> Block:
    """A block with an unknown parent, made bigger by `votes` junk votes."""
    filler = Vote(
        slot=0,
        head=BlockId(bytes(32)),
        source=Checkpoint(epoch=0, block_id=BlockId(bytes(32))),
        target=Checkpoint(epoch=0, block_id=BlockId(bytes(32))),
        validator=PublicKey(bytes(32)),
        signature=bytes(64),
    )
    header = BlockHeader(
        parent=BlockId(sha256(b"missing %d" % nonce)),
        height=5,
        slot=5,
        proposer=PublicKey(sha256(b"junk")),
        body_root=BODY_ROOT,
        state_root=BODY_ROOT,
    )
    return Block(header=header, signature=EMPTY_BLOCK_SIGNATURE, votes=(filler,) * votes)


def test_orphan_flood_stays_within_count_and_bytes_and_spares_the_honest_orphan():
    params = SyncParams(
        max_orphans=64,
        max_orphans_per_peer=8,
        max_orphan_bytes=40_000,
        max_orphan_bytes_per_peer=5_000,
    )
    pool = OrphanPool(params)
    honest = MAIN[50]
    pool.add(honest, peer(200), 0.0, request_id=0)
    blocks = [_padded_orphan(nonce, nonce % 7) for nonce in range(JUNK)]
    # Ids and encodings are cached on the blocks themselves: compute them before measuring.
    assert len({(block.block_id, block.encoded) for block in blocks}) == JUNK
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for nonce, block in enumerate(blocks):
            pool.add(block, peer(nonce % 12), float(nonce), request_id=nonce + 1)
            assert len(pool) <= params.max_orphans
            assert pool.bytes <= params.max_orphan_bytes
            assert all(pool.count_from(peer(i)) <= params.max_orphans_per_peer for i in range(12))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert honest.block_id in pool  # it held less than every flooder
    assert held < 2_000 * params.max_orphans  # bookkeeping of what it holds, none per junk block
    assert pool.release(MAIN[49].block_id) == [honest]


def test_held_sync_bytes_never_exceed_max_pending_bytes():
    big = make_chain(1_200, tag=b"big")
    size = block_size(big[1])
    params = SyncParams(
        batch_size=8,
        max_requests=100,
        max_requests_per_peer=100,
        max_pending_blocks=1_000,
        max_response_bytes=8 * size,
        max_pending_bytes=3 * 8 * size,
    )
    manager = SyncManager(anchor_height=0, anchor_id=big[0].block_id, params=params)
    chain = MemoryChain(big)
    requests = range_requests(manager.on_status(peer(1), chain.status(), 0.0))
    # Room for three answers in flight; the first is never answered, so the rest are held.
    assert len(requests) == 3
    held_back, *answered = requests
    handed = 0
    for step in range(JUNK):
        if not answered:
            # A flooding peer answers again and again: unsolicited, never held.
            stale = serve_blocks(held_back[1], chain)
            assert penalties(manager.on_blocks(peer(2), stale, float(step)))
        else:
            peer_id, request = answered.pop(0)
            actions = manager.on_blocks(peer_id, serve_blocks(request, chain), 0.0)
            handed += len(imported(actions))
            answered += [r for r in range_requests(actions) if r[1] != held_back[1]]
        stats = manager.statistics()
        assert stats.pending_bytes <= params.max_pending_bytes
    assert handed == 0  # nothing attaches before the first range
    assert manager.statistics().pending_bytes == 2 * 8 * size


def test_orphan_floods_cannot_make_us_send_unbounded_parent_requests():
    params = SyncParams(max_parent_requests=16, max_parent_requests_per_peer=2)
    manager = SyncManager(anchor_height=0, anchor_id=MAIN[0].block_id, params=params)
    sent: list[PeerId] = []
    for nonce in range(JUNK):
        # One peer floods first, then a crowd.
        sender = peer(0) if nonce < JUNK // 2 else peer(1 + nonce % 50)
        actions = manager.add_orphan(_padded_orphan(nonce, 0), sender, 0.0)
        sent += [a.peer_id for a in actions if isinstance(a, Send)]
        assert manager.statistics().in_flight <= params.max_parent_requests
    assert len(sent) == params.max_parent_requests
    assert sent.count(peer(0)) == params.max_parent_requests_per_peer
    # Requests that time out (or are answered) free their slots: the next orphan asks.
    manager.handle_timeouts(params.request_timeout)
    (ask,) = manager.add_orphan(MAIN[20], peer(1), params.request_timeout)
    assert ask.message.block_ids == (MAIN[19].block_id,)
