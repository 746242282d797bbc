"""A valid block that its own votes prune (docs/consensus.md) must not break a node.

Before `on_block` reported `BlockOutcome.PRUNED`, the chain service looked the pruned block up
to store its undo data and raised `KeyError`, which ended the node on the gossip path and broke
sync on the import path.
"""

import pytest
import trio

from p2pchain import NodeConfig, open_node
from p2pchain.ledger.encoding import encode
from p2pchain.ledger.vote import Checkpoint
from p2pchain.protocol.connection import PeerId
from p2pchain.protocol.gossip import Verdict
from p2pchain.protocol.messages import Topic
from p2pchain.testing.consensus import CONSENSUS_PARAMS, build_self_pruning_chain
from p2pchain.testing.simnet import SimulatedNetwork

PEER = PeerId(bytes(range(32)))


def _config(chain, network):
    slot_ms = CONSENSUS_PARAMS.slot_ms
    return NodeConfig(
        genesis=chain.genesis,
        params=CONSENSUS_PARAMS,
        listen=(network.address("node"),),
        transport=network.transport("node"),
        # slot 10 now: every block of the scenario is from the past
        clock_offset_ms=10 * slot_ms - round(trio.current_time() * 1000),
        offload_blocking=False,
    )


def _assert_pruned_outcome(node, chain):
    assert node.finalized() == Checkpoint(epoch=1, block_id=chain.h.block_id)
    assert node.head().block_id == chain.h.block_id
    for pruned in (chain.x, chain.y, chain.z):
        assert node.get_block(pruned.block_id) is None
    assert node.statistics().chain.blocks_pruned == 1


@pytest.mark.parametrize("path", ["gossip", "sync"])
async def test_self_pruning_block_is_accepted_and_the_node_keeps_serving(autojump_clock, path):
    chain = build_self_pruning_chain()
    network = SimulatedNetwork(seed=1)
    async with open_node(_config(chain, network)) as node:
        if path == "gossip":
            for block in chain.blocks:
                verdict = await node.network.host.validate(Topic.BLOCK, encode(block), PEER)
                assert verdict is Verdict.ACCEPT  # z too: peers need its votes
        else:
            result = await node.network.host.import_blocks(chain.blocks, PEER)
            assert result.invalid == frozenset()
            assert result.accepted == frozenset(b.block_id for b in chain.blocks)
        _assert_pruned_outcome(node, chain)
        await trio.sleep(3 * CONSENSUS_PARAMS.slot_ms / 1000)  # slot ticks run on the new state
        _assert_pruned_outcome(node, chain)
