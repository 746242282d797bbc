"""Four real validator nodes on the simulated network, in virtual time (MockClock).

Every test runs the production node, gossip, sync and storage code; only the transport and the
clock are simulated. `P2PCHAIN_SIM_SEED=N` replays a run with another seed.
"""

from dataclasses import replace

import trio
import trio.testing

from p2pchain import EventKind, TxStatus
from p2pchain.errors import Reason
from p2pchain.ledger.vote import Checkpoint
from p2pchain.params import COIN
from p2pchain.testing.simnet import SimulatedNetwork, seed_from_env
from p2pchain.testing.testnet import TESTNET_PARAMS, testnet

EPOCH_S = TESTNET_PARAMS.slot_ms * TESTNET_PARAMS.slots_per_epoch / 1000
LIMIT_S = 60 * EPOCH_S
"""A virtual-time bound for every wait: a stuck test fails instead of hanging."""


def _network(default_seed):
    return SimulatedNetwork(seed=seed_from_env(default_seed), latency=(0.005, 0.05))


async def test_finality_advances_every_epoch(autojump_clock):
    network = _network(1)
    with network.report_seed():
        async with testnet(4, transport=network) as net:
            finalized = []
            async with net.nodes[0].subscribe([EventKind.FINALIZED]) as events:
                with trio.fail_after(LIMIT_S):
                    async for event in events:
                        assert isinstance(event.data, Checkpoint)
                        finalized.append(event.data.epoch)
                        if event.data.epoch >= 6:
                            break
            assert finalized == [1, 2, 3, 4, 5, 6]
            with trio.fail_after(LIMIT_S):
                await net.wait_finalized(6)
            assert len({node.finalized() for node in net.nodes}) == 1


async def test_transfer_is_finalized_in_the_same_block_everywhere(autojump_clock):
    network = _network(2)
    with network.report_seed():
        async with testnet(4, transport=network) as net:
            with trio.fail_after(LIMIT_S):
                await net.wait_height(2)
            recipient = net.wallets[1].address
            before = net.nodes[3].balance(recipient)
            tx = net.transfer(0, recipient, 7 * COIN)
            txid = await net.nodes[0].submit_transaction(tx)
            assert net.nodes[0].get_transaction(txid).status is TxStatus.PENDING
            with trio.fail_after(LIMIT_S):
                for node in net.nodes:
                    await node.wait_for_status(txid, TxStatus.FINALIZED)
            infos = [node.get_transaction(txid) for node in net.nodes]
            assert {info.block_id for info in infos} == {infos[0].block_id}
            assert all(info.status is TxStatus.FINALIZED for info in infos)
            assert net.nodes[3].balance(recipient) == before + 7 * COIN


async def test_partition_stalls_finality_and_one_of_two_conflicting_spends_survives(
    autojump_clock,
):
    network = _network(3)
    with network.report_seed():
        async with testnet(4, transport=network) as net:
            with trio.fail_after(LIMIT_S):
                await net.wait_finalized(1)
            recipient_a = net.wallets[1].address
            recipient_b = net.wallets[2].address
            spend_a = net.transfer(0, recipient_a, 3 * COIN, node=0)
            spend_b = net.transfer(0, recipient_b, 4 * COIN, node=2)
            assert {i.outpoint for i in spend_a.inputs} & {i.outpoint for i in spend_b.inputs}

            await net.partition([0, 1], [2, 3])
            finalized = {node.finalized() for node in net.nodes}
            heights = [node.head().height for node in net.nodes]
            await net.nodes[0].submit_transaction(spend_a)
            await net.nodes[2].submit_transaction(spend_b)
            # One more payment per side: the losing side's block holding it is dropped, so it
            # must return to the pool and make it onto the surviving chain.
            extra_a = net.transfer(2, recipient_a, COIN, node=0)
            extra_b = net.transfer(3, recipient_b, COIN, node=2)
            await net.nodes[0].submit_transaction(extra_a)
            await net.nodes[2].submit_transaction(extra_b)
            with trio.fail_after(LIMIT_S):
                await net.nodes[1].wait_for_status(spend_a.txid, TxStatus.INCLUDED)
                await net.nodes[3].wait_for_status(spend_b.txid, TxStatus.INCLUDED)
                await net.nodes[1].wait_for_status(extra_a.txid, TxStatus.INCLUDED)
                await net.nodes[3].wait_for_status(extra_b.txid, TxStatus.INCLUDED)
                await trio.sleep(3 * EPOCH_S)  # virtual time: three epochs of split voting
            assert {node.finalized() for node in net.nodes} == finalized
            a, b, c, d = net.nodes
            with trio.fail_after(LIMIT_S):  # each side agrees on its own head
                await net.wait_for(lambda: a.head() == b.head() and c.head() == d.head())
            assert a.head() != c.head()
            assert all(n.head().height > h for n, h in zip(net.nodes, heights, strict=True))

            await net.heal()
            stalled = max(checkpoint.epoch for checkpoint in finalized)
            with trio.fail_after(LIMIT_S):
                await net.wait_finalized(stalled + 2)
                await net.wait_heads_equal()
            on_chain = {TxStatus.INCLUDED, TxStatus.FINALIZED}
            a_on_chain = {
                node.get_transaction(spend_a.txid).status in on_chain for node in net.nodes
            }
            b_on_chain = {
                node.get_transaction(spend_b.txid).status in on_chain for node in net.nodes
            }
            assert len(a_on_chain) == len(b_on_chain) == 1
            assert a_on_chain != b_on_chain
            winner, loser = (spend_a, spend_b) if a_on_chain == {True} else (spend_b, spend_a)
            losing_side = [2, 3] if winner is spend_a else [0, 1]
            assert all(net.nodes[i].statistics().chain.reorgs >= 1 for i in losing_side)
            for index, node in enumerate(net.nodes):
                info = node.get_transaction(loser.txid)
                if index in losing_side:  # it was on their chain: now rejected, with the reason
                    assert info.status is TxStatus.REJECTED
                    assert info.reason is Reason.CONFLICTING_SPEND
                else:
                    assert info.status in {TxStatus.REJECTED, TxStatus.UNKNOWN}
            assert {node.get_transaction(winner.txid).block_id for node in net.nodes} == {
                net.nodes[0].get_transaction(winner.txid).block_id
            }
            with trio.fail_after(LIMIT_S):
                for node in net.nodes:
                    await node.wait_for_status(extra_a.txid, TxStatus.FINALIZED)
                    await node.wait_for_status(extra_b.txid, TxStatus.FINALIZED)


async def test_late_node_syncs_from_genesis(autojump_clock):
    network = _network(4)
    with network.report_seed():
        async with testnet(4, transport=network) as net:
            with trio.fail_after(LIMIT_S):
                await net.wait_finalized(2)
            target = net.nodes[0].head().height
            late = await net.add_node()
            assert late.head().height == 0
            with trio.fail_after(LIMIT_S):
                await late.wait_for(lambda node: node.head().height >= target)
                await net.wait_heads_equal(min_height=target)
                await net.wait_finalized(3)  # the late node counts the votes it synced
            assert late.get_block_at_height(target) == net.nodes[0].get_block_at_height(target)


async def test_stopped_node_restarts_from_its_data_dir_and_catches_up(autojump_clock, tmp_path):
    network = _network(5)
    with network.report_seed():
        async with testnet(4, transport=network, data_dir=tmp_path) as net:
            with trio.fail_after(LIMIT_S):
                await net.wait_finalized(1)
            stopped_head = net.node(3).head()
            stopped_finalized = net.node(3).finalized()
            await net.stop_node(3)
            with trio.fail_after(LIMIT_S):
                await net.wait_finalized(stopped_finalized.epoch + 2)
            restarted = await net.start_node(3)
            assert restarted.head().height >= stopped_head.height
            assert restarted.finalized().epoch >= stopped_finalized.epoch
            with trio.fail_after(LIMIT_S):
                await net.wait_heads_equal(min_height=net.node(0).head().height)
                await net.wait_finalized(stopped_finalized.epoch + 3)


def _without_timing(chain):
    """Chain statistics minus block import wall-clock times (real seconds, not virtual)."""
    return replace(chain, import_seconds_buckets=(), import_seconds_sum=0.0)


async def _partition_run(seed):
    """A short partition-and-heal run; everything observable about its outcome."""
    async with testnet(4, transport=SimulatedNetwork(seed=seed)) as net:
        start = trio.current_time()
        with trio.fail_after(LIMIT_S):
            await net.wait_finalized(1)
            await net.partition([0, 3], [1, 2])
            await net.nodes[0].submit_transaction(net.transfer(0, net.wallets[1].address, COIN))
            await net.nodes[1].submit_transaction(net.transfer(0, net.wallets[2].address, COIN))
            await trio.sleep(2 * EPOCH_S)
            await net.heal()
            await net.wait_finalized(net.nodes[0].finalized().epoch + 2)
        node = net.nodes[0]
        chain = [node.get_block_at_height(h).block_id for h in range(node.head().height + 1)]
        stats = [
            (_without_timing(n.statistics().chain), n.statistics().network.gossip)
            for n in net.nodes
        ]
        return chain, stats, trio.current_time() - start


def test_the_same_seed_replays_the_same_run():
    seed = seed_from_env(6)
    runs = [
        trio.run(_partition_run, seed, clock=trio.testing.MockClock(autojump_threshold=0))
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
