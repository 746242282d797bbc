"""Finalized history leaves memory and is read back from storage (`NodeLimits.history_blocks`).

A node keeps the bodies of only `history_blocks` finalized blocks below the finalized one;
everything about older blocks (their transactions' status, the blocks themselves for RPC and
for syncing peers, a restart) must keep working from storage.
"""

import gc
import tracemalloc
from dataclasses import replace

import pytest
import trio

from p2pchain import NodeLimits, TxStatus
from p2pchain.errors import GossipIgnore, Reason
from p2pchain.ledger.tx import OutPoint
from p2pchain.ledger.validation import BlockContext
from p2pchain.node import storage
from p2pchain.params import COIN
from p2pchain.protocol.connection import PeerId
from p2pchain.protocol.messages import MAX_BLOCKS_RESPONSE_BYTES, GetBlocksByRange, Topic
from p2pchain.testing.simnet import SimulatedNetwork
from p2pchain.testing.testnet import TESTNET_PARAMS, testnet

EPOCH_S = TESTNET_PARAMS.slot_ms * TESTNET_PARAMS.slots_per_epoch / 1000
LIMIT_S = 60 * EPOCH_S
WINDOW = NodeLimits(history_blocks=4)
FEE = 10_000
PEER = PeerId(b"p" * 32)


def _assert_window(node) -> None:
    chain = node.statistics().chain
    assert chain.history_blocks <= WINDOW.history_blocks
    assert chain.history_bytes <= WINDOW.history_bytes


@pytest.mark.parametrize("on_disk", [False, True])
async def test_old_finalized_blocks_and_transactions_are_served_from_storage(
    autojump_clock, tmp_path, on_disk, monkeypatch
):
    network = SimulatedNetwork(seed=3)
    data_dir = tmp_path if on_disk else None
    async with testnet(4, transport=network, data_dir=data_dir, limits=WINDOW) as net:
        with trio.fail_after(LIMIT_S):
            await net.wait_finalized(1)
            tx = net.transfer(0, net.wallets[1].address, COIN)
            await net.nodes[0].submit_transaction(tx)
            included = await net.nodes[0].wait_for_status(tx.txid, TxStatus.FINALIZED)
            assert included.height is not None
            # Far enough that the block holding `tx` left every node's memory.
            await net.wait_height(included.height + 4 * WINDOW.history_blocks)
            await net.wait_finalized(net.nodes[0].finalized().epoch + 3)
        for node in net.nodes:
            _assert_window(node)
            info = node.get_transaction(tx.txid)
            assert (info.status, info.tx, info.height) == (
                TxStatus.FINALIZED,
                tx,
                included.height,
            )
            block = node.get_block_at_height(included.height)
            assert block is not None
            assert block.block_id == included.block_id
            assert tx in block.transactions
            assert node.get_block(included.block_id) == block
            assert await node.submit_transaction(tx) == tx.txid  # still known as on the chain
            # Replayed by a peer, it is known too, not kept as an orphan of a spent output.
            with pytest.raises(GossipIgnore) as replayed:
                await node.network.host.validate(Topic.TRANSACTION, tx.encoded, PEER)
            assert replayed.value.reason is Reason.ALREADY_KNOWN
            assert node.statistics().mempool.orphan_count == 0
        # A peer's range request over the released blocks: answered from storage, each body
        # read on the storage worker (its thread for a durable store on a real clock; inline
        # on this simulated one), not straight from the event loop.
        reads = []
        on_worker = []
        original_get_block = storage.SqliteChainStore.get_block
        original_run = storage.StorageWorker.run

        def recording(self, block_id):
            reads.append(bool(on_worker))
            return original_get_block(self, block_id)

        async def worker_run(self, function):
            def marked():
                on_worker.append(True)
                try:
                    return function()
                finally:
                    on_worker.pop()

            return await original_run(self, marked)

        monkeypatch.setattr(storage.SqliteChainStore, "get_block", recording)
        monkeypatch.setattr(storage.StorageWorker, "run", worker_run)
        request = GetBlocksByRange(request_id=7, start_height=1, count=included.height)
        answer = await net.nodes[0].network.host.serve_blocks(request, MAX_BLOCKS_RESPONSE_BYTES)
        assert answer.request_id == 7
        assert [b.header.height for b in answer.blocks] == list(range(1, included.height + 1))
        assert answer.blocks[-1] == block
        if on_disk:
            assert reads
            assert all(reads)
        monkeypatch.undo()
        target = net.nodes[0].head().height
        late = await net.add_node()  # syncs from genesis: old blocks come from storage
        with trio.fail_after(LIMIT_S):
            await late.wait_for(lambda node: node.head().height >= target)
        assert late.get_block_at_height(included.height) == block
        assert late.get_transaction(tx.txid).status is TxStatus.FINALIZED
        _assert_window(late)


async def test_restart_rebuilds_with_the_history_out_of_memory(autojump_clock, tmp_path):
    network = SimulatedNetwork(seed=4)
    async with testnet(4, transport=network, data_dir=tmp_path, limits=WINDOW) as net:
        with trio.fail_after(LIMIT_S):
            await net.wait_finalized(1)
            tx = net.transfer(0, net.wallets[1].address, COIN)
            await net.nodes[0].submit_transaction(tx)
            included = await net.nodes[0].wait_for_status(tx.txid, TxStatus.FINALIZED)
            await net.wait_finalized(net.nodes[0].finalized().epoch + 4)
        await net.stop_node(3)
        restarted = await net.start_node(3)
        _assert_window(restarted)
        assert restarted.get_transaction(tx.txid).block_id == included.block_id
        with trio.fail_after(LIMIT_S):
            await net.wait_finalized(net.nodes[0].finalized().epoch + 2)
        _assert_window(restarted)


async def test_memory_retained_per_transaction_does_not_grow_with_the_chain(
    autojump_clock, tmp_path
):
    """Retained memory grows by far less than a transaction's decoded size per transaction:
    what stays is bounded caches plus a few hundred bytes per block (its place in the chain).
    Before the history left memory this was 1.7 KB per transaction and node. (On disk: the
    in-memory store keeps everything by design.)"""
    limits = NodeLimits(history_blocks=2, signature_cache=64, event_history=64)
    per_slot, slots = 20, 24
    network = SimulatedNetwork(seed=5)
    async with testnet(
        1, transport=network, data_dir=tmp_path, wallets=per_slot, limits=limits
    ) as net:
        node = net.nodes[0]
        with trio.fail_after(LIMIT_S):
            await net.wait_finalized(1)

        coins = [dict(node.utxos(wallet.address)) for wallet in net.wallets]

        async def pay_one_slot() -> None:
            for wallet, owned in zip(net.wallets, coins, strict=True):
                ((outpoint, coin),) = owned.items()  # one coin each, paid to itself whole
                payment = replace(coin, amount=coin.amount - FEE)
                tx = wallet.build_transfer(
                    [(outpoint, coin)], [payment], fee=FEE, context=BlockContext(height=0, slot=0)
                )
                await node.submit_transaction(tx)
                owned.clear()
                owned[OutPoint(txid=tx.txid, index=0)] = payment
            await trio.sleep(TESTNET_PARAMS.slot_ms / 1000)

        async def run(count: int) -> None:
            for _ in range(count):
                await pay_one_slot()
            with trio.fail_after(LIMIT_S):
                await net.wait_finalized(node.finalized().epoch + 2)

        tracemalloc.start()
        try:
            await run(slots // 2)  # the tree and the history window fill up
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            await run(slots)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        per_tx = grown / (per_slot * slots)
        assert per_tx < 400  # the gossip seen cache (bounded, ~220 B an entry) and little else
