"""Running a vector against one real node: `open_node` on a `SimulatedNetwork`, a manual clock.

The node gets the vector's genesis and parameters, no validator key (it neither proposes nor
votes) and a manual consensus clock, so that a tick is `Node.advance_clock` to the start of the
slot (its slot loop runs, as it would, before the next step). Every block, vote and piece of
evidence goes through `node.network.host.validate`, the gossip hook the network service calls
with a peer's bytes: decoding, the waiting pools, slashing detection and the chain service's
imports all run as they do for a message off the wire. Checks read the node's reported head
and durable checkpoints; weights, validator sets and proposers (which a node does not publish)
are read from its fork-choice store with the consensus queries.

Where a node may legitimately differ from the pure store, vectors are written so that it does
not show (docs/testing.md): nothing a node holds for a retry is ever made valid later, and
equivocations are followed by their evidence before anything is checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Final

import trio
import trio.testing

from p2pchain.errors import GossipIgnore, GossipReject, Reason
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.types import BlockId, PublicKey
from p2pchain.ledger.vote import Checkpoint
from p2pchain.net import Orphan
from p2pchain.node import Node, NodeConfig, open_node
from p2pchain.protocol.connection import PeerId
from p2pchain.protocol.messages import Topic
from p2pchain.testing.simnet import SimulatedNetwork
from p2pchain.testing.vectors.format import BlockOutcomeName, Delivery, MessageKind, Tick, Vector
from p2pchain.testing.vectors.runner import Failure, Observed, StoreView, step_failures

NODE_NAME: Final = "vector-node"
SENDER: Final = PeerId(sha256(b"p2pchain/testing/vectors/sender"))
"""The peer every delivered message seems to come from."""
NODE_KEY: Final = SecretKey.from_entropy(sha256(b"p2pchain/testing/vectors/node-key"))
TOPICS: Final = {
    MessageKind.BLOCK: Topic.BLOCK,
    MessageKind.VOTE: Topic.VOTE,
    MessageKind.EVIDENCE: Topic.EVIDENCE,
}


class NodeView:
    """`StateView` of a running node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._store = StoreView(node._chain.store)  # no public query for weights and sets

    def head(self) -> BlockId:
        return self.node.head().block_id

    def justified(self) -> Checkpoint:
        return self.node.justified()

    def finalized(self) -> Checkpoint:
        return self.node.finalized()

    def weight(self, block_id: BlockId) -> int | None:
        return self._store.weight(block_id)

    def validators(self, epoch: int) -> Mapping[PublicKey, int]:
        return self._store.validators(epoch)

    def proposer(self, slot: int) -> PublicKey | None:
        return self._store.proposer(slot)


async def deliver_to_node(node: Node, step: Delivery) -> Observed:
    """Hand `step`'s bytes to the node as gossip from `SENDER`; report what it did."""
    pruned = node.statistics().chain.blocks_pruned
    try:
        result = await node.network.host.validate(TOPICS[step.kind], step.data, SENDER)
    except (GossipIgnore, GossipReject) as exc:
        if step.kind is MessageKind.VOTE and exc.reason is Reason.UNKNOWN_VOTE_HEAD:
            return Observed(valid=False, held=True)  # the verdict for every vote it holds
        return Observed(valid=False, reason=exc.reason, detail=str(exc))
    except Exception as exc:
        return Observed(valid=False, crashed=True, detail=f"{type(exc).__name__}: {exc}")
    if isinstance(result, Orphan):  # for the network's orphan pool, which this runner skips
        return Observed(valid=False, reason=Reason.UNKNOWN_PARENT)
    if step.kind is not MessageKind.BLOCK:
        return Observed(valid=True)
    was_pruned = node.statistics().chain.blocks_pruned > pruned
    return Observed(
        valid=True, outcome=BlockOutcomeName.PRUNED if was_pruned else BlockOutcomeName.ADDED
    )


def node_config(vector: Vector, network: SimulatedNetwork) -> NodeConfig:
    """The configuration of the node a vector runs on."""
    return NodeConfig(
        genesis=vector.genesis,
        params=vector.params,
        listen=(network.address(NODE_NAME),),
        transport=network.transport(NODE_NAME),
        node_key=NODE_KEY,
        manual_clock=True,
        offload_blocking=False,
        network_seed=0,
    )


async def run_vector_on_node_async(vector: Vector) -> list[Failure]:
    """`run_vector_on_node` inside a running trio loop (under a `MockClock`, preferably)."""
    network = SimulatedNetwork(seed=0)
    try:
        config = node_config(vector, network)
        async with open_node(config) as node:
            return await _run_steps(node, vector)
    except Exception as exc:  # the node did not start (a genesis that breaks the rules)
        return [Failure(vector.name, None, f"node: {type(exc).__name__}: {exc}")]


async def _run_steps(node: Node, vector: Vector) -> list[Failure]:
    view = NodeView(node)
    start_ms = vector.genesis.genesis_time_ms
    for index, step in enumerate(vector.steps):
        if isinstance(step, Tick):
            await node.advance_clock(start_ms + step.slot * vector.params.slot_ms)
            continue
        observed = await deliver_to_node(node, step) if isinstance(step, Delivery) else None
        if failures := step_failures(vector, index, step, observed, view):
            return failures
    return []


def run_vector_on_node(vector: Vector) -> list[Failure]:
    """Run `vector` against one fresh node in its own trio run on a `MockClock` (call it from
    synchronous code; inside trio, await `run_vector_on_node_async`)."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(partial(run_vector_on_node_async, vector), clock=clock)
