"""One node on its own (a single validator, so it finalizes alone), in virtual time."""

import random
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import trio
from node_kill_worker import PARAMS, node_config
from solo_node import solo_config

from p2pchain import EventKind, Node, NodeLimits, TxStatus, open_node
from p2pchain.consensus import build_block, get_forkchoice_store, on_tick
from p2pchain.errors import (
    EventHistoryExpired,
    GossipReject,
    InvalidTransaction,
    Reason,
    SlashingProtectionError,
    SubscriptionOverflow,
)
from p2pchain.ledger import validation
from p2pchain.ledger.genesis import genesis_state
from p2pchain.ledger.tx import OutPoint, TxInput
from p2pchain.ledger.types import TxId
from p2pchain.ledger.validation import BlockContext, connect_block
from p2pchain.ledger.wallet import Wallet
from p2pchain.node import protection, storage
from p2pchain.node.events import HeadInfo, TxInfo
from p2pchain.params import COIN
from p2pchain.protocol.connection import PeerId
from p2pchain.protocol.gossip import Verdict
from p2pchain.protocol.messages import Topic
from p2pchain.testing.simnet import SimulatedNetwork
from p2pchain.testing.testnet import TESTNET_PARAMS, derive_key, make_testnet_genesis, testnet

LIMIT_S = 600.0
"""Virtual seconds any wait may take before the test fails instead of hanging."""


def _solo(seed=0, **kwargs):
    return testnet(1, transport=SimulatedNetwork(seed=seed), **kwargs)


async def test_invalid_transactions_raise_their_reason_and_are_recorded(autojump_clock):
    async with _solo() as net:
        node = net.nodes[0]
        good = net.transfer(0, net.wallets[1].address, COIN)
        unsigned = good.with_inputs(tuple(replace(i, signature=bytes(64)) for i in good.inputs))
        with pytest.raises(InvalidTransaction) as bad_signature:
            await node.submit_transaction(unsigned)
        assert bad_signature.value.reason is Reason.BAD_SIGNATURE
        info = node.get_transaction(unsigned.txid)
        assert (info.status, info.reason) == (TxStatus.REJECTED, Reason.BAD_SIGNATURE)

        nowhere = OutPoint(txid=TxId(bytes(32)), index=0)
        missing = net.wallets[0].sign(good.with_inputs((TxInput(outpoint=nowhere),)))
        with pytest.raises(InvalidTransaction) as missing_input:
            await node.submit_transaction(missing)
        assert missing_input.value.reason is Reason.MISSING_INPUT

        await node.submit_transaction(good)
        double = net.transfer(0, net.wallets[2].address, 2 * COIN)
        with pytest.raises(InvalidTransaction) as conflict:
            await node.submit_transaction(double)
        assert conflict.value.reason is Reason.MEMPOOL_CONFLICT
        assert node.get_transaction(good.txid).status is TxStatus.PENDING
        assert node.mempool_size() == 1


async def test_transfer_goes_pending_included_finalized_with_events(autojump_clock):
    async with _solo() as net:
        node = net.nodes[0]
        recipient = net.wallets[1].address
        before = node.balance(recipient)
        tx = net.transfer(0, recipient, 5 * COIN)
        async with node.subscribe([EventKind.TX_STATUS]) as events:
            txid = await node.submit_transaction(tx)
            assert await node.submit_transaction(tx) == txid  # resubmitting is harmless
            seen = []
            with trio.fail_after(LIMIT_S):
                async for event in events:
                    assert isinstance(event.data, TxInfo)
                    if event.data.txid == txid:
                        seen.append(event)
                    if event.data.status is TxStatus.FINALIZED:
                        break
        assert [e.data.status for e in seen] == [
            TxStatus.PENDING,
            TxStatus.INCLUDED,
            TxStatus.FINALIZED,
        ]
        assert [e.seq for e in seen] == sorted({e.seq for e in seen})
        final = node.get_transaction(txid)
        assert final.status is TxStatus.FINALIZED
        assert final.height is not None
        block = node.get_block_at_height(final.height)
        assert block is not None
        assert block.block_id == final.block_id
        assert tx in block.transactions
        assert node.balance(recipient) == before + 5 * COIN
        assert (OutPoint(txid=txid, index=0), tx.outputs[0]) in node.utxos(recipient)


async def test_slow_subscriber_overflows_then_resumes_without_gaps(autojump_clock):
    async with _solo() as net:
        node = net.nodes[0]
        async with node.subscribe([EventKind.NEW_HEAD], buffer=2) as events:
            with trio.fail_after(LIMIT_S):
                await net.wait_height(node.head().height + 6)  # the node is not held up
            received = [await events.__anext__(), await events.__anext__()]
            with pytest.raises(SubscriptionOverflow) as overflow:
                await events.__anext__()
        assert overflow.value.last_seq == received[-1].seq
        async with node.subscribe([EventKind.NEW_HEAD], since=overflow.value.last_seq) as events:
            resumed = [await events.__anext__() for _ in range(3)]
        heights = [e.data.height for e in received + resumed if isinstance(e.data, HeadInfo)]
        assert heights == list(range(heights[0], heights[0] + 5))
        assert resumed[0].seq > received[-1].seq
        assert node.statistics().subscription_overflows == 1


async def test_resuming_before_the_event_history_fails_loudly(autojump_clock):
    async with _solo(limits=NodeLimits(event_history=3)) as net:
        node = net.nodes[0]
        with trio.fail_after(LIMIT_S):
            await net.wait_height(4)
        with pytest.raises(EventHistoryExpired):
            async with node.subscribe(since=0):
                pass


async def test_restart_resumes_from_the_data_dir(autojump_clock, tmp_path):
    async with _solo(data_dir=tmp_path) as net:
        tx = net.transfer(0, net.wallets[1].address, 3 * COIN)
        await net.nodes[0].submit_transaction(tx)
        with trio.fail_after(LIMIT_S):
            await net.nodes[0].wait_for_status(tx.txid, TxStatus.FINALIZED)
            await net.wait_finalized(3)
        node = net.nodes[0]
        head, finalized = node.head(), node.finalized()
        balances = node.balances(net.wallets[1].address)
        await net.stop_node(0)
        node = await net.start_node(0)
        assert node.head().height >= head.height
        assert node.get_block_at_height(head.height).block_id == head.block_id
        assert node.finalized().epoch >= finalized.epoch
        assert node.get_transaction(tx.txid).status is TxStatus.FINALIZED
        assert node.balances(net.wallets[1].address) == balances
        assert node.peers() == ()  # alone: everything came from its own disk
        with trio.fail_after(LIMIT_S):
            await net.wait_finalized(finalized.epoch + 2)


async def test_checkpoints_are_reported_only_once_they_are_on_disk(autojump_clock, tmp_path):
    """Whenever the node writes a new checkpoint, what it reports at that moment is still the
    previous one (a crash during the write loses nothing that was reported), and right after
    the write it reports the new one; transactions become finalized the same way."""
    async with testnet(4, transport=SimulatedNetwork(seed=8), data_dir=tmp_path) as net:
        node = net.nodes[0]
        storage = node._chain.storage
        record = storage.record_forkchoice
        writes = []

        def checked_record(*, justified=None, finalized=None, votes=()):
            if finalized is not None:
                assert node.finalized() != finalized, "reported before it was written"
            if justified is not None:
                assert node.justified() != justified, "reported before it was written"
            record(justified=justified, finalized=finalized, votes=votes)
            writes.append(finalized)

        storage.record_forkchoice = checked_record
        with trio.fail_after(LIMIT_S):
            await net.wait_finalized(3)
        assert any(w is not None for w in writes)
        assert node.finalized() == storage.load().finalized


async def test_a_block_is_reported_as_the_head_only_with_its_transactions_included(
    autojump_clock, tmp_path
):
    """While a new head is being written, the node still reports the old one; once it reports
    the new one, every transaction in it is reported included, never pending or unknown."""
    async with _solo(data_dir=tmp_path) as net:
        node = net.nodes[0]
        storage = node._chain.storage
        commit = storage.commit_block
        heads_written = []

        def checked_commit(block_commit):
            assert node.head().block_id != block_commit.block.block_id, "reported before stored"
            commit(block_commit)
            heads_written.append(block_commit.block.block_id)

        storage.commit_block = checked_commit
        txs = [net.transfer(0, net.wallets[1].address, COIN)]
        await node.submit_transaction(txs[0])
        with trio.fail_after(LIMIT_S):
            await node.wait_for_status(txs[0].txid, TxStatus.INCLUDED)
        head = node.get_block(node.head().block_id)
        assert head is not None
        for tx in head.transactions:
            assert node.get_transaction(tx.txid).status in (
                TxStatus.INCLUDED,
                TxStatus.FINALIZED,
            )
        assert heads_written


async def test_restarts_at_any_moment_never_move_the_checkpoints_back(autojump_clock, tmp_path):
    """A node reports finalized and justified checkpoints reached with votes that may not be in
    any block yet; restarted at any slot and any point within it, it reports them again (or
    later ones), never earlier ones, and as a validator it goes on voting."""
    rng = random.Random(5)
    async with testnet(4, transport=SimulatedNetwork(seed=4), data_dir=tmp_path) as net:
        with trio.fail_after(LIMIT_S):
            await net.wait_finalized(1)
        for _ in range(12):
            await trio.sleep(rng.uniform(0.1, 2.5))
            node = net.node(1)
            reported = (node.justified(), node.finalized())
            await net.stop_node(1)
            node = await net.start_node(1)
            assert node.finalized().epoch >= reported[1].epoch, (reported, node.finalized())
            assert node.justified().epoch >= reported[0].epoch, (reported, node.justified())
        restarted = net.node(1)
        with trio.fail_after(LIMIT_S):
            await net.wait_finalized(restarted.finalized().epoch + 2)
        # Its vote sources never moved back either, so slashing protection never silenced it.
        assert restarted.statistics().votes_cast > 0
        assert restarted.statistics().signatures_refused == 0


async def test_restart_in_the_same_slot_never_signs_a_conflicting_block_or_vote(
    autojump_clock, tmp_path
):
    async with _solo(data_dir=tmp_path) as net:
        with trio.fail_after(LIMIT_S):
            await net.wait_finalized(2)
        await net.stop_node(0)
        node = await net.start_node(0)
        duties = node._duties
        assert duties is not None
        head = node.get_block_at_height(node.head().height)
        assert head is not None
        # Something new in the pool makes a re-built block for the same slot differ.
        await node.submit_transaction(net.transfer(0, net.wallets[1].address, COIN))
        with pytest.raises(SlashingProtectionError):
            await duties.propose(head.header.slot, parent=head.header.parent)
        assert node.head().block_id == head.block_id
        epoch_one_duty = next(s for s in range(4, 8) if duties.is_vote_slot(s))
        genesis_id = node.get_block_at_height(0).block_id
        with pytest.raises(SlashingProtectionError):
            await duties.vote(epoch_one_duty, head=genesis_id)
        assert node.statistics().signatures_refused == 2


def _twelve_payments(seed):
    """A one-validator genesis funding 12 wallets, and one payment from each (for slot 1)."""
    params = TESTNET_PARAMS
    key = derive_key(seed, "validator", 0)
    wallets = [Wallet(derive_key(seed, "wallet", i), params) for i in range(12)]
    genesis = make_testnet_genesis(
        params, [key], wallets, genesis_time_ms=0, stake=100 * COIN, balance=10 * COIN
    )
    store = get_forkchoice_store(params, genesis)
    on_tick(store, 1)
    context = BlockContext(height=1, slot=1)
    txs = [
        w.build_transfer(store.view.utxos_of(w.address), [], fee=1_000, context=context)
        for w in wallets
    ]
    return key, genesis, store, txs


def _record_verifying_threads(monkeypatch):
    verified_on = []
    original = validation.verify_input_signatures

    def recording(tx, txid, chain_id):
        verified_on.append(threading.get_ident())
        return original(tx, txid, chain_id)

    monkeypatch.setattr(validation, "verify_input_signatures", recording)
    return verified_on


def _solo_config(genesis, seed):
    return solo_config(genesis, seed, at_ms=1_500)  # half-way through slot 1


async def test_block_signatures_are_verified_off_the_event_loop(monkeypatch):
    key, genesis, store, txs = _twelve_payments(9)
    block = build_block(store, store.genesis_id, 1, key, transactions=txs)
    verified_on = _record_verifying_threads(monkeypatch)
    async with open_node(_solo_config(genesis, 9)) as node:
        result = await node.network.host.import_blocks((block,), PeerId(bytes(32)))
        assert result.accepted == {block.block_id}
        assert node.head().block_id == block.block_id
        assert len(verified_on) == len(txs)
        assert threading.get_ident() not in verified_on
        assert node.statistics().chain.signatures_offloaded == len(txs)


async def test_a_blocks_signatures_are_verified_before_the_chain_lock_is_taken(monkeypatch):
    """While a block's witnesses are checked in a thread, the chain is not locked: votes and
    other imports do not queue behind that thread. The block then imports from the cache."""
    key, genesis, store, txs = _twelve_payments(12)
    block = build_block(store, store.genesis_id, 1, key, transactions=txs)
    started, proceed = threading.Event(), threading.Event()
    verified = []
    original = validation.verify_input_signatures

    def gated(tx, txid, chain_id):
        started.set()
        proceed.wait(30)
        verified.append(txid)
        return original(tx, txid, chain_id)

    monkeypatch.setattr(validation, "verify_input_signatures", gated)
    async with open_node(_solo_config(genesis, 12)) as node:
        results = []

        async def import_it():
            results.append(await node.network.host.import_blocks((block,), PeerId(bytes(32))))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(import_it)
            try:
                await trio.to_thread.run_sync(started.wait, 30)
                assert not node._chain.lock.locked()
            finally:
                proceed.set()  # a failing check must not leave the thread waiting
        assert results[0].accepted == {block.block_id}
        assert node.head().block_id == block.block_id
        assert sorted(verified) == sorted(tx.txid for tx in txs)  # once each, then cached


async def test_a_gossip_batch_has_its_signatures_verified_together_off_the_event_loop(
    monkeypatch,
):
    """`prepare` verifies a batch's witnesses in a worker thread; validating each transaction
    then finds them in the signature cache, and every one is admitted."""
    _, genesis, _, txs = _twelve_payments(11)
    verified_on = _record_verifying_threads(monkeypatch)
    async with open_node(_solo_config(genesis, 11)) as node:
        host = node.network.host
        batch = [(Topic.TRANSACTION, tx.encoded) for tx in txs]
        await host.prepare([*batch, (Topic.TRANSACTION, b"not a transaction")])
        assert len(verified_on) == len(txs)
        assert threading.get_ident() not in verified_on
        for topic, data in batch:
            assert await host.validate(topic, data, PeerId(bytes(32))) is Verdict.ACCEPT
        assert len(verified_on) == len(txs)  # nothing verified twice
        assert node.mempool_size() == len(txs)
        assert all(node.get_transaction(tx.txid).status is TxStatus.PENDING for tx in txs)
        stats = node.statistics().chain
        assert stats.signatures_offloaded == len(txs)
        assert stats.signature_cache_hits >= len(txs)


async def test_every_sqlite_statement_of_the_writer_runs_off_the_event_loop(monkeypatch, tmp_path):
    """Opening, restoring, a reorg (the path to write is read from storage), closing: no
    statement on the writer connections nor on the reader runs on the event loop's thread."""
    params = TESTNET_PARAMS
    key = derive_key(10, "validator", 0)
    genesis = make_testnet_genesis(
        params, [key], [], genesis_time_ms=0, stake=100 * COIN, balance=COIN
    )
    store = get_forkchoice_store(params, genesis)
    on_tick(store, 2)
    branches = sorted(
        (build_block(store, store.genesis_id, slot, key) for slot in (1, 2)),
        key=lambda block: block.block_id,
    )
    loop_thread = threading.get_ident()
    ran_on: list[int] = []

    def traced(connect):
        def connect_traced(*args, **kwargs):
            connection = connect(*args, **kwargs)
            connection.set_trace_callback(lambda _sql: ran_on.append(threading.get_ident()))
            return connection

        return connect_traced

    monkeypatch.setattr(storage, "connect_sqlite", traced(storage.connect_sqlite))
    monkeypatch.setattr(storage, "connect_sqlite_reader", traced(storage.connect_sqlite_reader))
    monkeypatch.setattr(protection, "connect_sqlite", traced(protection.connect_sqlite))
    # half-way through slot 2
    config = solo_config(genesis, 10, at_ms=2_500, params=params, data_dir=tmp_path)
    async with open_node(config) as node:
        for block in reversed(branches):  # the higher id first: the lower one wins the tie
            result = await node.network.host.import_blocks((block,), PeerId(bytes(32)))
            assert result.accepted == {block.block_id}
        assert node.head().block_id == branches[0].block_id
        assert node.statistics().chain.reorgs == 1
    async with open_node(config) as node:
        assert node.head().block_id == branches[0].block_id
    assert ran_on  # the trace saw the statements
    assert loop_thread not in ran_on


def test_the_node_shows_only_what_docs_api_md_documents():
    """Every public name of `Node` is named in docs/api.md's sections on the node and its
    events; the network-host hooks live on `node.network.host`, not on the node."""
    text = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    sections = text[text.index("## The `Node`") : text.index("## Validator duties")]
    documented = set(re.findall(r"`(?:await )?(?:node\.)?([a-z_]+)", sections))
    public = {name for name in dir(Node) if not name.startswith("_")}
    assert public <= documented, public - documented
    hooks = {"get_status", "serve_blocks", "validate", "deliver", "import_blocks"}
    assert not hooks & public


def _task_count():
    def count(task):
        return 1 + sum(count(child) for n in task.child_nurseries for child in n.child_tasks)

    return count(trio.lowlevel.current_root_task())


async def test_leaving_the_node_stops_every_task_and_closes_storage(autojump_clock, tmp_path):
    before = _task_count()
    async with _solo(data_dir=tmp_path) as net:
        with trio.fail_after(LIMIT_S):
            await net.wait_height(3)
        assert _task_count() > before
        config = net.configs[0]
    assert _task_count() == before
    last_head = None
    async with open_node(config) as node:
        last_head = node.head()
    assert last_head.height >= 3


def _acknowledged_until_killed(data_dir, genesis_time_ms, count):
    """Run the worker until it acknowledged `count` heads, SIGKILL it, return the heads."""
    script = Path(__file__).with_name("node_kill_worker.py")
    command = [sys.executable, str(script), str(data_dir), str(genesis_time_ms)]
    worker = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    acked = []
    try:
        assert worker.stdout is not None
        for line in worker.stdout:
            _, height, block_id = line.split()
            acked.append((int(height), bytes.fromhex(block_id)))
            if len(acked) >= count:
                break
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert worker.returncode == -signal.SIGKILL
    return acked


def test_sigkilled_node_restarts_with_everything_it_acknowledged(tmp_path):
    genesis_time_ms = int(time.time() * 1000)
    acked = []
    for count in random.Random(5).sample(range(3, 12), 3):
        acked += _acknowledged_until_killed(tmp_path, genesis_time_ms, count)

    async def check():
        async with open_node(node_config(tmp_path, genesis_time_ms)) as node:
            for height, block_id in acked:  # one validator: no forks, every ack stays canonical
                assert node.get_block_at_height(height).block_id == block_id
            chain = node._chain
            assert chain.storage.head == node.head().block_id
            assert chain.storage.head_view().snapshot() == chain.head_view().snapshot()
            _, replayed = genesis_state(node_config(tmp_path, genesis_time_ms).genesis, PARAMS)
            for height in range(1, node.head().height + 1):
                block = node.get_block_at_height(height)
                governance = chain.store.nodes[block.block_id].governance_root  # the leaf after it
                connect_block(replayed, block, PARAMS, governance=governance)
            assert replayed.snapshot() == chain.head_view().snapshot()

    trio.run(check)


async def test_a_gossiped_transaction_breaking_a_context_free_rule_is_rejected(autojump_clock):
    """Outputs whose sum overflows are invalid in any view: the sender is blamed, unlike a
    rule that depends on our view (an issuance above max_money, a missing input)."""
    async with _solo() as net:
        node = net.nodes[0]
        good = net.transfer(0, net.wallets[1].address, COIN)
        half = net.params.max_money // 2 + 1
        outputs = tuple(replace(good.outputs[0], amount=half) for _ in range(2))
        overflow = net.wallets[0].sign(replace(good, outputs=outputs))
        peer = PeerId(bytes(32))
        with pytest.raises(GossipReject) as rejected:
            await node.network.host.validate(Topic.TRANSACTION, overflow.encoded, peer)
        assert rejected.value.reason is Reason.VALUE_OVERFLOW
        assert node.mempool_size() == 0


async def test_the_memory_of_rejected_transactions_is_bounded(autojump_clock):
    async with _solo(limits=NodeLimits(rejected_history=100)) as net:
        node = net.nodes[0]
        good = net.transfer(0, net.wallets[1].address, COIN)
        unsigned = good.with_inputs(tuple(replace(i, signature=bytes(64)) for i in good.inputs))
        rejected = []
        for n in range(10_000):
            outputs = (replace(unsigned.outputs[0], amount=COIN + n), *unsigned.outputs[1:])
            tx = replace(unsigned, outputs=outputs)
            with pytest.raises(InvalidTransaction):
                await node.submit_transaction(tx)
            rejected.append(tx.txid)
        statuses = [node.get_transaction(txid).status for txid in rejected]
        assert statuses[-100:] == [TxStatus.REJECTED] * 100
        assert set(statuses[:-100]) == {TxStatus.UNKNOWN}


async def test_bans_survive_a_restart(autojump_clock, tmp_path):
    """A key, an address and a group banned before a restart are still refused after it, and
    a ban ends when it would have ended without the restart."""
    async with _solo(data_dir=tmp_path) as net:
        node = net.nodes[0]
        swarm = node.network.swarm
        key = PeerId(bytes(range(32)))
        swarm.ban_peer(key, 600)
        swarm.ban_address("tcp://203.0.113.5:30300", 1200)
        await trio.sleep(3 * TESTNET_PARAMS.slot_ms / 1000)  # virtual: a few slots save them
        saved = {(e.kind, e.value): e.until for e in swarm.ban_entries()}
        await net.stop_node(0)
        restarted = await net.start_node(0)
        restored = {(e.kind, e.value): e.until for e in restarted.network.swarm.ban_entries()}
        assert restarted.network.swarm.is_banned(key)
        for ban, until in saved.items():
            assert restored[ban] == pytest.approx(until, abs=0.01)
        await trio.sleep(601)
        assert not restarted.network.swarm.is_banned(key)
