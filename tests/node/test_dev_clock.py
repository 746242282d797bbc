"""A dev chain's clock, on four real nodes in virtual time: manual clocks make slots only on
`mine` (one block per mined slot, votes and finality as usual), and a skew moves a running
node's slots at once."""

import pytest
import trio

from p2pchain import TxStatus
from p2pchain.consensus.store import get_proposer
from p2pchain.errors import ConfigError
from p2pchain.node.config import MAX_CLOCK_SKEW_MS
from p2pchain.params import COIN
from p2pchain.testing.simnet import SimulatedNetwork
from p2pchain.testing.testnet import TESTNET_PARAMS, testnet

SLOT_S = TESTNET_PARAMS.slot_ms / 1000
LIMIT_S = 600.0


async def test_manual_clocks_make_exactly_the_slots_mined_and_finality_follows(
    autojump_clock, tmp_path
):
    network = SimulatedNetwork(seed=8)
    async with testnet(4, transport=network, manual_clock=True, data_dir=tmp_path) as net:
        await trio.sleep(50 * SLOT_S)  # trio time passes; consensus time stands still
        assert {node.head().height for node in net.nodes} == {0}
        assert {node.clock_status().slot for node in net.nodes} == {0}

        with trio.fail_after(LIMIT_S):
            await net.mine(3)
        heads = {node.head() for node in net.nodes}
        assert len(heads) == 1
        (head,) = heads
        assert (head.slot, head.height) == (3, 3)  # every proposer is up: one block a slot

        recipient = net.wallets[1].address
        txid = await net.nodes[0].submit_transaction(net.transfer(0, recipient, 5 * COIN))
        await trio.sleep(50 * SLOT_S)
        assert net.nodes[3].head().height == 3  # a pending payment does not make a block

        epochs = 4
        with trio.fail_after(LIMIT_S):
            await net.mine(epochs * TESTNET_PARAMS.slots_per_epoch)
        assert {node.head().height for node in net.nodes} == {3 + 16}
        assert min(node.finalized().epoch for node in net.nodes) >= epochs - 1
        assert {node.get_transaction(txid).status for node in net.nodes} == {TxStatus.FINALIZED}

        killed_key = net.configs[2].validator_key.public_key
        await net.kill(2)  # its slots stay empty; the others still make theirs
        empty = 0
        last_made = 0
        for _ in range(8):
            store = net.nodes[0]._chain.store
            head = net.nodes[0].head()
            mined = net.nodes[0].clock_status().slot + 1  # after an empty slot, not head + 1
            skipped = get_proposer(store, head.block_id, mined) == killed_key
            empty += skipped
            last_made = last_made if skipped else mined
            with trio.fail_after(LIMIT_S):
                await net.mine(1)
        head = net.nodes[0].head()
        assert net.nodes[0].clock_status().slot == 3 + 16 + 8
        assert head.slot == last_made  # the last slot may be the killed validator's
        assert head.height == 3 + 16 + 8 - empty

        await net.restart(2)  # it resumes at its stored head, not at genesis
        assert net.node(2).clock_status().slot >= 3 + 16
        with trio.fail_after(LIMIT_S):
            await net.mine(4)
            await net.wait_heads_equal()

        with pytest.raises(ConfigError, match="manual clock has no skew"):
            await net.skew(0, 1_000)
        with pytest.raises(ConfigError, match="slots must be"):
            await net.mine(0)
        with pytest.raises(ConfigError, match="before the clock's"):
            await net.node(0).advance_clock(0)


async def test_a_skew_moves_a_running_nodes_slots_at_once(autojump_clock):
    async with testnet(2, transport=SimulatedNetwork(seed=9)) as net:
        with trio.fail_after(LIMIT_S):
            await net.wait_height(2)
        before = net.node(1).clock_status()
        assert before.skew_ms == 0
        assert not before.manual
        await net.skew(1, 5 * TESTNET_PARAMS.slot_ms)
        after = net.node(1).clock_status()
        assert after.skew_ms == 5 * TESTNET_PARAMS.slot_ms
        assert after.slot - net.node(0).clock_status().slot in (5, 6)
        assert after.now_ms - before.now_ms >= 5 * TESTNET_PARAMS.slot_ms

        await net.skew(1, 0)
        with trio.fail_after(LIMIT_S):
            await net.wait_finalized(net.node(0).finalized().epoch + 2)
        for wrong in (MAX_CLOCK_SKEW_MS + 1, -MAX_CLOCK_SKEW_MS - 1):
            with pytest.raises(ConfigError, match="skew must be within"):
                await net.skew(0, wrong)
        with pytest.raises(ConfigError, match="mining needs manual clocks"):
            await net.mine(1)
        await net.kill(1)
        with pytest.raises(ConfigError, match="node 1 is not running"):
            await net.skew(1, 10)


async def test_a_vote_goes_out_when_its_slots_block_is_in_and_at_half_way_without_one(
    autojump_clock,
):
    """On manual clocks nothing moves between the slot's start and half-way but the block:
    the validator due votes once the block reached it, before half-way; when the slot's
    proposer is down, it votes at half-way, for the head it has."""
    network = SimulatedNetwork(seed=5)
    async with testnet(4, transport=network, manual_clock=True) as net:
        with trio.fail_after(LIMIT_S):
            await net.mine(2)
        slot_ms, genesis_ms = TESTNET_PARAMS.slot_ms, net.genesis.genesis_time_ms
        proposer_down = False
        for slot in range(3, 3 + 4 * TESTNET_PARAMS.slots_per_epoch):
            running = net.nodes
            head = running[0].head()
            due = [n for n in running if n._duties is not None and n._duties.is_vote_slot(slot)]
            proposer = get_proposer(running[0]._chain.store, head.block_id, slot)
            has_proposer = any(n._duties.key.public_key == proposer for n in running)
            votes_before = [n._duties.counts.voted for n in due]
            for node in running:
                await node.advance_clock(genesis_ms + slot * slot_ms)
            with trio.fail_after(LIMIT_S):
                if has_proposer:
                    await net.wait_for(lambda s=slot, r=running: all(n.head().slot == s for n in r))
                    await net.wait_for(
                        lambda d=due, v=votes_before: (
                            [n._duties.counts.voted for n in d] == [c + 1 for c in v]
                        )
                    )
                else:
                    proposer_down = True
                    await trio.sleep(10 * slot_ms / 1000)  # consensus time stands still
                    assert [n._duties.counts.voted for n in due] == votes_before
            for node in running:
                await node.advance_clock(genesis_ms + slot * slot_ms + slot_ms // 2)
            assert [n._duties.counts.voted for n in due] == [c + 1 for c in votes_before]
            if slot == 6 and not proposer_down:
                await net.kill(3)  # some later slots have no block
        assert proposer_down
