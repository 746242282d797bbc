"""Chain stores: atomic commits and reverts, identity checks, and SQLite behaving like memory."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from p2pchain.consensus.anchor import Anchor
from p2pchain.errors import StorageError
from p2pchain.ledger.block import Block
from p2pchain.ledger.encoding import decode, encode
from p2pchain.ledger.tx import OutPoint, TxKind
from p2pchain.ledger.types import BlockId, PublicKey, TxId
from p2pchain.ledger.utxo import UndoData, UtxoView
from p2pchain.ledger.validation import connect_block
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.node.storage import (
    BlockCommit,
    ChainStore,
    MemoryChainStore,
    SqliteChainStore,
    restore_view,
)
from p2pchain.testing.crash import PARAMS, ChainBuilder, genesis, is_side_block, reference_chain
from p2pchain.testing.stores import commit_after_apply, stored_undo

GENESIS, _ = genesis()


def open_sqlite(path: Path) -> SqliteChainStore:
    return SqliteChainStore(path, chain_id=PARAMS.chain_id, genesis=GENESIS)


def extend(store: ChainStore, builder: ChainBuilder, finalized: Checkpoint | None = None) -> Block:
    block, undo = builder.extend()
    store.commit_block(commit_after_apply(block, undo, builder.view, finalized=finalized))
    return block


def fresh_builder(seed: int) -> ChainBuilder:
    return ChainBuilder(seed, genesis()[1])


def vote(validator: int, slot: int, target: BlockId) -> Vote:
    return Vote(
        slot=slot,
        head=target,
        source=Checkpoint(epoch=0, block_id=GENESIS.block_id),
        target=Checkpoint(epoch=slot // PARAMS.slots_per_epoch, block_id=target),
        validator=PublicKey(bytes([validator]) * 32),
        signature=bytes(64),
    )


def summary(store: ChainStore) -> tuple[object, ...]:
    """Everything observable through `load`, in comparable form."""
    stored, view = store.load(), store.head_view()
    return (
        stored.genesis,
        stored.head,
        stored.blocks,
        view.snapshot(),
        view.tip,
        view.height,
        stored.justified,
        stored.finalized,
        stored.votes,
    )


def replayed_view(store: ChainStore) -> UtxoView:
    """The view got by applying the canonical blocks from genesis, read back from the store."""
    view = UtxoView()
    height = 0
    while (block_id := store.canonical_block_id(height)) is not None:
        block = store.get_block(block_id)
        assert block is not None
        view.apply(block)
        height += 1
    return view


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ChainStore:
    if request.param == "memory":
        return MemoryChainStore(chain_id=PARAMS.chain_id, genesis=GENESIS)
    return open_sqlite(tmp_path / "chain.db")


def test_new_store_holds_genesis_as_head(store: ChainStore) -> None:
    stored = store.load()
    assert stored.head == stored.genesis == GENESIS.block_id
    assert stored.blocks == (GENESIS,)
    view = store.head_view()
    assert view.snapshot() == genesis()[1].snapshot()
    assert (view.tip, view.height) == (GENESIS.block_id, 0)
    assert store.canonical_block_id(0) == GENESIS.block_id


@settings(max_examples=10)
@given(seed=st.integers(0, 2**32), count=st.integers(1, 12))
def test_sqlite_round_trips_through_reopen(seed: int, count: int) -> None:
    builder = fresh_builder(seed)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "chain.db"
        with open_sqlite(path) as store:
            blocks = [extend(store, builder) for _ in range(count)]
            store.record_forkchoice(
                justified=Checkpoint(epoch=1, block_id=blocks[-1].block_id),
                votes=(vote(1, 3, blocks[0].block_id),),
            )
            before = summary(store)
        with open_sqlite(path) as store:
            assert summary(store) == before
            stored = store.load()
            assert stored.head == blocks[-1].block_id
            assert store.head_view().snapshot() == builder.view.snapshot()
            for height, block in enumerate(blocks, start=1):
                assert store.canonical_block_id(height) == block.block_id
                assert store.get_block(block.block_id) == block
                for position, tx in enumerate(block.transactions):
                    location = store.transaction_location(tx.txid)
                    assert location is not None
                    assert (location.block_id, location.height) == (block.block_id, height)
                    assert location.position == position
        raw = sqlite3.connect(path).execute("SELECT id, data FROM blocks").fetchall()
        assert {decode(Block, data).block_id for _, data in raw} == {
            bytes(block_id) for block_id, _ in raw
        }


@settings(max_examples=15)
@given(seed=st.integers(0, 2**32), count=st.integers(1, 10), depth=st.integers(1, 10))
def test_commit_then_revert_restores_the_utxo_table_exactly(
    seed: int, count: int, depth: int
) -> None:
    depth = min(depth, count)
    builder = fresh_builder(seed)
    store = MemoryChainStore(chain_id=PARAMS.chain_id, genesis=GENESIS)
    snapshots = [summary(store)]
    blocks = []
    for _ in range(count):
        blocks.append(extend(store, builder))
        snapshots.append(summary(store))
    for back in range(1, depth + 1):
        store.revert_block(blocks[-back].block_id)
        head_summary, pre_summary = summary(store), snapshots[-back - 1]
        # blocks stay stored after a revert; everything else is exactly as before the commit
        assert head_summary[:2] == pre_summary[:2]
        assert head_summary[3:] == pre_summary[3:]
        assert store.get_block(blocks[-back].block_id) == blocks[-back]
        assert stored_undo(store, blocks[-back].block_id) is None
        for tx in blocks[-back].transactions:
            assert store.transaction_location(tx.txid) is None


@pytest.mark.parametrize("kind", [TxKind.ISSUE, TxKind.MINT])
def test_reverting_asset_blocks_restores_the_registry(tmp_path: Path, kind: TxKind) -> None:
    builder = fresh_builder(3)
    sqlite_store = open_sqlite(tmp_path / "chain.db")
    memory = MemoryChainStore(chain_id=PARAMS.chain_id, genesis=GENESIS)
    while True:
        block, undo = builder.extend()
        for store in (sqlite_store, memory):
            store.commit_block(commit_after_apply(block, undo, builder.view))
        if any(tx.kind is kind for tx in block.transactions):
            break
    registry_before = builder.view.copy()
    builder.view.undo(block, undo)
    assert registry_before.assets() != builder.view.assets()
    for store in (sqlite_store, memory):
        store.revert_block(block.block_id)
        assert store.head_view().snapshot() == builder.view.snapshot()
        assert store.head_view().snapshot() == replayed_view(store).snapshot()
    assert summary(sqlite_store) == summary(memory)


def test_retirements_follow_the_canonical_chain_in_both_stores(tmp_path: Path) -> None:
    """Each RETIRE on the stored chain is listed under its asset, in chain order, with its
    record; a revert takes its block's away; SQLite answers as memory does, also reopened."""
    builder = fresh_builder(5)
    sqlite_store = open_sqlite(tmp_path / "chain.db")
    memory = MemoryChainStore(chain_id=PARAMS.chain_id, genesis=GENESIS)
    retires: list[tuple[Block, int]] = []
    while len(retires) < 3:
        block, undo = builder.extend()
        for store in (sqlite_store, memory):
            store.commit_block(commit_after_apply(block, undo, builder.view))
        retires += [
            (block, i) for i, tx in enumerate(block.transactions) if tx.kind is TxKind.RETIRE
        ]
    last_block = retires[-1][0]
    asset = last_block.transactions[retires[-1][1]].payload.asset  # type: ignore[union-attr]
    expected = [
        (b.transactions[i].txid, b.header.height, i)
        for b, i in retires
        if b.transactions[i].payload.asset == asset  # type: ignore[union-attr]
    ]

    def listed(store: ChainStore, offset: int = 0, limit: int = 100) -> list[object]:
        return [
            (r.certificate, r.location.height, r.location.position)
            for r in store.retirements(asset, offset=offset, limit=limit)
        ]

    for store in (sqlite_store, memory):
        assert listed(store) == expected
        assert listed(store, offset=1, limit=1) == expected[1:2]
        record = store.retirements(asset, offset=len(expected) - 1, limit=1)[0]
        payload = last_block.transactions[retires[-1][1]].payload
        assert (record.amount, record.beneficiary, record.purpose) == (
            payload.amount,  # type: ignore[union-attr]
            payload.beneficiary,  # type: ignore[union-attr]
            payload.purpose,  # type: ignore[union-attr]
        )
    sqlite_store.close()
    sqlite_store = open_sqlite(tmp_path / "chain.db")
    assert listed(sqlite_store) == listed(memory)
    for store in (sqlite_store, memory):
        store.revert_block(last_block.block_id)
        assert listed(store) == [item for item in expected if item[1] < last_block.header.height]


def test_a_header_is_read_as_the_stored_blocks_own_and_a_corrupt_one_is_a_storage_error(
    store: ChainStore,
) -> None:
    builder = fresh_builder(7)
    blocks = [extend(store, builder) for _ in range(3)]
    for block in (GENESIS, *blocks):
        assert store.get_header(block.block_id) == block.header
    assert store.get_header(BlockId(bytes(32))) is None
    if isinstance(store, SqliteChainStore):
        store.close()
        with sqlite3.connect(store.path) as db:
            db.execute("UPDATE blocks SET data = ? WHERE id = ?", (b"\xc0", blocks[0].block_id))
        with open_sqlite(store.path) as reopened, pytest.raises(StorageError, match="corrupt"):
            reopened.get_header(blocks[0].block_id)


def test_commit_must_extend_the_head(store: ChainStore) -> None:
    builder = fresh_builder(5)
    first = extend(store, builder)
    stale = fresh_builder(6)
    block, undo = stale.extend()
    before = summary(store)
    with pytest.raises(ValueError, match="does not extend"):
        store.commit_block(commit_after_apply(block, undo, stale.view))
    assert summary(store) == before
    assert store.head == first.block_id


def test_only_a_non_final_head_can_be_reverted(store: ChainStore) -> None:
    builder = fresh_builder(8)
    first = extend(store, builder)
    second = extend(store, builder, finalized=Checkpoint(epoch=0, block_id=first.block_id))
    with pytest.raises(ValueError, match="head"):
        store.revert_block(first.block_id)
    store.revert_block(second.block_id)
    with pytest.raises(ValueError, match="finalized"):
        store.revert_block(first.block_id)
    assert store.head == first.block_id
    other = MemoryChainStore(chain_id=PARAMS.chain_id, genesis=GENESIS)
    with pytest.raises(ValueError, match="genesis"):
        other.revert_block(GENESIS.block_id)


def test_block_commit_refuses_mismatched_parts() -> None:
    builder = fresh_builder(9)
    block, undo = builder.extend()
    with pytest.raises(ValueError, match="undo data"):
        BlockCommit(block=block, undo=UndoData())
    with pytest.raises(ValueError, match="tip"):
        commit_after_apply(GENESIS, undo, builder.view)


def test_load_returns_blocks_from_the_finalized_height_including_side_blocks(
    store: ChainStore,
) -> None:
    builder = fresh_builder(10)
    blocks = [extend(store, builder) for _ in range(4)]
    side = builder.build(side=True)
    store.store_block(side)
    store.store_block(side)
    store.record_forkchoice(finalized=Checkpoint(epoch=0, block_id=blocks[1].block_id))
    stored = store.load()
    assert stored.head == blocks[-1].block_id
    assert {b.block_id for b in stored.blocks} == {
        *(b.block_id for b in blocks[1:]),
        side.block_id,
    }
    assert store.canonical_block_id(side.header.height) is None
    assert stored.finalized == Checkpoint(epoch=0, block_id=blocks[1].block_id)


def test_a_failed_sqlite_commit_changes_nothing(tmp_path: Path) -> None:
    builder = fresh_builder(11)
    store = open_sqlite(tmp_path / "chain.db")
    extend(store, builder)
    before = summary(store)
    raw = sqlite3.connect(tmp_path / "chain.db")
    raw.execute(
        "CREATE TRIGGER fail BEFORE INSERT ON votes BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    )
    raw.commit()
    block, undo = builder.extend()
    commit = commit_after_apply(block, undo, builder.view, votes=(vote(1, 1, block.block_id),))
    with pytest.raises(StorageError, match="disk on fire"):
        store.commit_block(commit)
    assert summary(store) == before
    store.close()
    assert summary(open_sqlite(tmp_path / "chain.db")) == before


def test_sqlite_refuses_another_chain_genesis_or_schema(tmp_path: Path) -> None:
    path = tmp_path / "chain.db"
    open_sqlite(path).close()
    with pytest.raises(StorageError, match="chain_id"):
        SqliteChainStore(path, chain_id=PARAMS.chain_id + 1, genesis=GENESIS)
    other_genesis = fresh_builder(1).build()
    with pytest.raises(StorageError, match="genesis"):
        SqliteChainStore(path, chain_id=PARAMS.chain_id, genesis=other_genesis)
    raw = sqlite3.connect(path)
    raw.execute("UPDATE chain SET value = ? WHERE key = 'schema_version'", (b"999",))
    raw.commit()
    raw.close()
    with pytest.raises(StorageError, match="schema_version"):
        open_sqlite(path)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError):
        open_sqlite(garbage)


def test_bans_expire_and_persist(tmp_path: Path) -> None:
    path = tmp_path / "chain.db"
    with open_sqlite(path) as store:
        store.ban_peer("peer-a", 100.0)
        store.ban_peer("10.0.0.1:9000", 50.0)
    with open_sqlite(path) as store:
        assert store.bans(10.0) == {"peer-a": 100.0, "10.0.0.1:9000": 50.0}
        assert store.bans(60.0) == {"peer-a": 100.0}
    with open_sqlite(path) as store:
        assert store.bans(0.0) == {"peer-a": 100.0}


def test_restore_view_keeps_indexes() -> None:
    builder = fresh_builder(12)
    for _ in range(10):
        builder.extend()
    view = builder.view
    utxos = sorted(view)
    restored = restore_view(utxos, list(view.assets().values()), view.tip, view.height)
    assert restored.snapshot() == view.snapshot()
    assert restored.bonded_stake() == view.bonded_stake()
    for wallet_output in utxos:
        address = wallet_output[1].address
        assert restored.utxos_of(address) == view.utxos_of(address)
    assert restored.get(OutPoint(txid=utxos[0][0].txid, index=utxos[0][0].index)) is not None


WORKER = [sys.executable, "-m", "p2pchain.testing.crash"]


def spawn_worker(path: Path, seed: int, target: int, *extra: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*WORKER, str(path), str(seed), str(target), *map(str, extra)],
        stdout=subprocess.PIPE,
        text=True,
    )


def acknowledged(line: str) -> int:
    word, height = line.split()
    assert word == "ACK"
    return int(height)


def check_consistent(path: Path, last_ack: int, reference: list[Block]) -> int:
    """The reopened store has every acknowledged block and a UTXO set matching its blocks; returns
    the height of its last main-chain block (the head may be an unacknowledged side block that a
    killed worker had not reverted yet)."""
    with open_sqlite(path) as store:
        stored, view = store.load(), store.head_view()
        assert view.height >= last_ack
        assert store.canonical_block_id(last_ack) == reference[last_ack].block_id
        assert view.snapshot() == replayed_view(store).snapshot()
        assert store.canonical_block_id(view.height) == stored.head
        assert store.canonical_block_id(view.height + 1) is None
        for height in range(1, view.height + 1):
            block = store.get_block(store.canonical_block_id(height) or BlockId(b""))
            assert block is not None
            assert block.header.parent == store.canonical_block_id(height - 1)
            assert stored_undo(store, block.block_id) is not None
        head = store.get_block(stored.head)
        assert head is not None
        main_height = view.height - is_side_block(head)
        for height in range(main_height + 1):
            assert store.canonical_block_id(height) == reference[height].block_id
        return main_height


def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    seed, final = 77, 120
    reference = reference_chain(seed, final)
    path = tmp_path / "chain.db"
    rng = random.Random(2024)
    last_ack = 0
    heights = []
    for round_number in range(12):
        if round_number % 2:
            # killed from outside after a random number of acknowledgements
            worker = spawn_worker(path, seed, final)
            assert worker.stdout is not None
            for _ in range(rng.randint(0, 12)):
                line = worker.stdout.readline()
                if not line:
                    break
                last_ack = acknowledged(line)
            worker.kill()
        else:
            # killing itself at a random SQL statement: usually mid-transaction
            worker = spawn_worker(path, seed, final, rng.randint(1, 150))
        assert worker.stdout is not None
        assert worker.wait() == -signal.SIGKILL
        # lines the worker wrote before it died were acknowledged to the outside world too
        for line in worker.stdout:
            if line.endswith("\n"):
                last_ack = acknowledged(line)
        worker.stdout.close()
        heights.append(check_consistent(path, last_ack, reference))
    assert heights == sorted(heights)
    finished = subprocess.run(
        [*WORKER, str(path), str(seed), str(final)],
        capture_output=True,
        text=True,
        check=True,
    )
    resumed = [acknowledged(line) for line in finished.stdout.splitlines()]
    assert resumed == list(range(resumed[0], final + 1))
    assert last_ack < resumed[0] <= heights[-1] + 1
    assert check_consistent(path, final, reference) == final
    with open_sqlite(path) as store:
        assert store.head == reference[-1].block_id
        assert store.head_view().snapshot() == reference_view(reference).snapshot()


def reference_view(blocks: list[Block]) -> UtxoView:
    view = UtxoView()
    for block in blocks:
        view.apply(block)
    return view


class StoresAgree(RuleBasedStateMachine):
    """Random commits, side blocks, reverts and fork-choice updates give equal stores."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.sqlite = open_sqlite(Path(self.directory.name) / "chain.db")
        self.memory = MemoryChainStore(chain_id=PARAMS.chain_id, genesis=GENESIS)
        self.builder = fresh_builder(0)
        self.applied: list[tuple[Block, UndoData]] = []
        self.side: list[Block] = []

    @initialize(seed=st.integers(0, 2**16))
    def choose_seed(self, seed: int) -> None:
        self.builder.seed = seed

    def both(self) -> tuple[ChainStore, ChainStore]:
        return self.sqlite, self.memory

    @rule()
    def extend_head(self) -> None:
        block, undo = self.builder.extend()
        self.applied.append((block, undo))
        for store in self.both():
            store.commit_block(commit_after_apply(block, undo, self.builder.view))

    @rule()
    def store_side_block(self) -> None:
        block = self.builder.build(side=True)
        self.side.append(block)
        for store in self.both():
            store.store_block(block)

    @precondition(lambda self: any(b.header.parent == self.builder.view.tip for b in self.side))
    @rule()
    def connect_side_block(self) -> None:
        block = next(b for b in self.side if b.header.parent == self.builder.view.tip)
        undo = connect_block(self.builder.view, block, PARAMS)
        self.applied.append((block, undo))
        for store in self.both():
            store.commit_block(commit_after_apply(block, undo, self.builder.view))

    @precondition(lambda self: self.applied)
    @rule()
    def revert_head(self) -> None:
        block, undo = self.applied.pop()
        self.builder.view.undo(block, undo)
        for store in self.both():
            store.revert_block(block.block_id)

    @rule(validator=st.integers(1, 4), slot=st.integers(0, 100), justify=st.booleans())
    def record_forkchoice(self, validator: int, slot: int, justify: bool) -> None:
        target = self.builder.view.tip
        justified = Checkpoint(epoch=slot // 8, block_id=target) if justify else None
        for store in self.both():
            store.record_forkchoice(justified=justified, votes=(vote(validator, slot, target),))

    @rule(peer=st.sampled_from(["a", "b", "c"]), until=st.floats(0, 100), now=st.floats(0, 100))
    def ban(self, peer: str, until: float, now: float) -> None:
        for store in self.both():
            store.ban_peer(peer, until)
        assert self.sqlite.bans(now) == self.memory.bans(now)

    @invariant()
    def stores_agree_with_the_model(self) -> None:
        assert summary(self.sqlite) == summary(self.memory)
        stored = self.memory.load()
        assert self.memory.head_view().snapshot() == self.builder.view.snapshot()
        assert stored.head == self.builder.view.tip == self.sqlite.head

    def teardown(self) -> None:
        self.sqlite.close()
        self.directory.cleanup()


TestStoresAgree = StoresAgree.TestCase
TestStoresAgree.settings = settings(max_examples=25, stateful_step_count=15)


@given(
    operations=st.lists(
        st.tuples(st.booleans(), st.integers(min_value=0, max_value=7)), max_size=40
    )
)
@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_kept_submissions_match_a_naive_model_across_reopens(
    tmp_path_factory: pytest.TempPathFactory, operations: list[tuple[bool, int]]
) -> None:
    """Keep/forget in any order: the store lists what a dict in insertion order would, oldest
    first, and a reopened SQLite store lists the same."""
    path = tmp_path_factory.mktemp("submitted") / "chain.db"
    memory = MemoryChainStore(chain_id=PARAMS.chain_id, genesis=GENESIS)
    model: dict[TxId, bytes] = {}
    with open_sqlite(path) as sqlite:
        for keep, index in operations:
            txid = TxId(bytes([index]) * 32)
            for store in (memory, sqlite):
                if keep:
                    store.keep_submitted(txid, b"raw%d" % index)
                else:
                    store.forget_submitted([txid])
            if keep:
                model.setdefault(txid, b"raw%d" % index)
            else:
                model.pop(txid, None)
            assert memory.submitted() == sqlite.submitted() == list(model.items())
    with open_sqlite(path) as reopened:
        assert reopened.submitted() == list(model.items())


def test_a_database_of_schema_1_without_the_submitted_table_gains_it(tmp_path: Path) -> None:
    path = tmp_path / "chain.db"
    with open_sqlite(path) as store:
        store.keep_submitted(TxId(bytes(32)), b"x")
    connection = sqlite3.connect(path)
    connection.execute("DROP TABLE submitted")
    connection.commit()
    connection.close()
    with open_sqlite(path) as store:
        assert store.submitted() == []
        store.keep_submitted(TxId(bytes(32)), b"y")
        assert store.submitted() == [(TxId(bytes(32)), b"y")]


@given(
    steps=st.lists(
        st.tuples(
            st.lists(st.tuples(st.integers(0, 5), st.integers(0, 40)), max_size=4),
            st.lists(st.integers(0, 7), max_size=3),
            st.integers(0, 10),
        ),
        max_size=8,
    )
)
@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_vote_pool_is_kept_as_a_model_says_and_survives_a_reopen(
    tmp_path_factory: pytest.TempPathFactory, steps
) -> None:
    """Added votes stay until removed or until their target epoch falls below the floor."""
    path = tmp_path_factory.mktemp("pool") / "chain.db"
    stores = [MemoryChainStore(chain_id=PARAMS.chain_id, genesis=GENESIS), open_sqlite(path)]
    model: dict[bytes, Vote] = {}
    history: list[Vote] = []
    for additions, removals, floor in steps:
        added = tuple(vote(v, slot, GENESIS.block_id) for v, slot in additions)
        history += added
        removed = tuple(history[i] for i in removals if i < len(history))
        for store in stores:
            store.record_vote_pool(added=added, removed=removed, floor_epoch=floor)
        model.update((encode(v), v) for v in added)
        for v in removed:
            model.pop(encode(v), None)
        model = {k: v for k, v in model.items() if v.target.epoch >= floor}
        for store in stores:
            assert sorted(map(encode, store.load().pooled_votes)) == sorted(model)
    stores[1].close()
    reopened = open_sqlite(path)
    assert sorted(map(encode, reopened.load().pooled_votes)) == sorted(model)
    reopened.close()


def test_a_fresh_store_installs_a_snapshot_and_gives_its_state_back(store: ChainStore) -> None:
    builder = fresh_builder(7)
    blocks = [builder.extend()[0] for _ in range(3)]
    view, top = builder.view, blocks[-1]
    anchor = Anchor(
        checkpoint=Checkpoint(epoch=1, block_id=top.block_id),
        block=top,
        governance=b"\xc0",
        history=(),
    )
    assert store.anchor() is None
    store.install_anchor(anchor, view)
    assert store.head == top.block_id
    anchored = store.anchor()
    assert anchored is not None
    got, state = anchored
    assert got == anchor
    assert (state.snapshot(), state.tip, state.height) == (view.snapshot(), view.tip, view.height)
    stored = store.load()
    assert store.head_view().snapshot() == view.snapshot()
    assert stored.finalized == stored.justified == anchor.checkpoint
    assert store.canonical_block_id(top.header.height) == top.block_id
    assert store.canonical_block_id(1) is None  # no history below the anchor
    assert store.transaction_location(top.transactions[0].txid) is not None
    with pytest.raises(StorageError, match="nothing but genesis"):
        store.install_anchor(anchor, view)  # once only


def test_a_store_holding_blocks_refuses_a_snapshot(store: ChainStore) -> None:
    builder = fresh_builder(8)
    block = extend(store, builder)
    anchor = Anchor(
        checkpoint=Checkpoint(epoch=0, block_id=block.block_id),
        block=block,
        governance=b"\xc0",
        history=(),
    )
    before = summary(store)
    with pytest.raises(StorageError, match="nothing but genesis"):
        store.install_anchor(anchor, builder.view)
    assert summary(store) == before
    assert store.anchor() is None
