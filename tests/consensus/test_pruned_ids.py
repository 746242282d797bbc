"""Blocks and votes that build on a pruned block are refused as `conflicts-with-finalized`
(they can never be placed), not parked as `unknown-parent` / `unknown-vote-head` waiting for a
parent that will never come. The store remembers a bounded number of pruned ids."""

import pytest

from p2pchain.consensus import build_block, get_proposer, make_vote, on_block, on_vote
from p2pchain.consensus.store import PRUNED_IDS_KEPT, remember_pruned
from p2pchain.consensus.types import compute_epoch_at_slot
from p2pchain.errors import InvalidBlock, InvalidVote, Reason
from p2pchain.ledger.types import BlockId
from p2pchain.params import COIN
from p2pchain.testing.consensus import Simulation
from p2pchain.testing.simnet import SimulatedNetwork
from p2pchain.testing.testnet import testnet

STAKES = [COIN, 2 * COIN, 3 * COIN, 4 * COIN]


def _fork_then_finality():
    """A simulation whose store saw a side block `fork` at slot 2 (on genesis), a child of it
    and a vote for it, before finality pruned it; the child and the vote are held back."""
    sim = Simulation.create(STAKES)
    sim.run_slot()
    store = sim.store
    genesis = sim.store.genesis_id
    fork = build_block(store, genesis, 2, sim.keys[get_proposer(store, genesis, 2)])
    on_block(store, fork, 2)
    child = build_block(store, fork.block_id, 3, sim.keys[get_proposer(store, fork.block_id, 3)])
    voter = next(iter(sim.keys))
    vote = make_vote(store, sim.keys[voter], 2, head=fork.block_id)
    sim.run_epochs(4)
    assert store.finalized_checkpoint.epoch >= 2
    assert fork.block_id not in store.nodes
    return sim, fork, child, vote


def test_a_child_of_a_pruned_block_and_a_vote_for_one_conflict_with_finality():
    sim, fork, child, vote = _fork_then_finality()
    assert fork.block_id in sim.store.pruned
    with pytest.raises(InvalidBlock) as block_info:
        on_block(sim.store, child, sim.slot)
    assert block_info.value.reason is Reason.CONFLICTS_WITH_FINALIZED
    with pytest.raises(InvalidVote) as vote_info:
        on_vote(sim.store, vote, sim.slot)
    assert vote_info.value.reason is Reason.CONFLICTS_WITH_FINALIZED


def test_a_parent_never_seen_is_still_unknown_and_forgotten_ids_fall_back_to_it():
    sim, fork, child, _ = _fork_then_finality()
    remember_pruned(sim.store, (BlockId(i.to_bytes(32, "big")) for i in range(PRUNED_IDS_KEPT)))
    assert len(sim.store.pruned) == PRUNED_IDS_KEPT
    assert fork.block_id not in sim.store.pruned  # the oldest went first
    with pytest.raises(InvalidBlock) as info:
        on_block(sim.store, child, sim.slot)
    assert info.value.reason is Reason.UNKNOWN_PARENT


def _own_slot(store, key, parent: BlockId, after: int) -> int:
    """The first slot after `after` that `key` may propose at on top of `parent`."""
    slot = after + 1
    while get_proposer(store, parent, slot) != key.public_key:
        slot += 1
    return slot


async def test_a_node_refuses_a_whole_branch_on_a_pruned_block(autojump_clock):
    network = SimulatedNetwork(seed=4)
    async with testnet(4, transport=network, seed=4) as net:
        await net.wait_height(2)
        await net.kill(3)  # its key builds the side branch: no double proposal
        node = net.nodes[0]
        chain = node._chain
        store = chain.store
        key = net.validator_keys[3]
        parent = store.nodes[node.head().block_id]
        fork_slot = _own_slot(store, key, parent.block_id, node.head().slot + 1)
        await node.wait_for(lambda _: chain.current_slot() >= fork_slot)
        fork = build_block(store, parent.block_id, fork_slot, key)
        await chain.import_block(fork)
        # Built at once (a builder does not look at the clock): the fork may be pruned
        # before its child's slot comes.
        child_slot = _own_slot(store, key, fork.block_id, fork_slot)
        child = build_block(store, fork.block_id, child_slot, key)
        await net.wait_finalized(compute_epoch_at_slot(net.params, child_slot) + 2)
        assert fork.block_id not in store.nodes
        with pytest.raises(InvalidBlock) as info:
            await chain.import_block(child)
        assert info.value.reason is Reason.CONFLICTS_WITH_FINALIZED
        assert child.block_id in store.pruned  # so its descendants are refused too
