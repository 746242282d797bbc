"""Catalogue, chain shapes: a valid block that its own votes prune (issue: it once ended the
node with a `KeyError`), gossiped by a raw peer to a node process of that block's network.

The network is the one `build_self_pruning_chain` makes (4 validators, 4 slots per epoch,
``g - h(3) - x(4) - y(6) - z(9)``); the node runs none of its validators, so only the peer's
blocks change its chain. Every block is valid, so none costs the peer anything; `z` is accepted
and pruned by its own votes, leaving `h` finalized and the head.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pchain.cli.config import NetworkFile, NodeFile, dump_network, dump_node, write_key
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.genesis import genesis_block
from p2pchain.protocol.messages import Publish, Topic
from p2pchain.testing.adversary import SecurePeer
from p2pchain.testing.consensus import CONSENSUS_PARAMS, SelfPruningChain, build_self_pruning_chain
from tests.robustness.harness import (
    NodeProcess,
    Sources,
    Verdict,
    free_port,
    spawn_node_process,
    wait_listening,
)

CHAIN = build_self_pruning_chain()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    root = Path(tmp_path_factory.mktemp("self-pruning"))
    dump_network(NetworkFile(params=CONSENSUS_PARAMS, genesis=CHAIN.genesis), root / "network.toml")
    write_key(root / "node.key", SecretKey.from_entropy(sha256(b"self-pruning node")))
    tcp, ws, rpc = free_port(), free_port(), free_port()
    config = root / "node.toml"
    dump_node(
        NodeFile(
            network=root / "network.toml",
            data_dir=root / "data",
            node_key=root / "node.key",
            validator_key=None,
            listen=(f"tcp://127.0.0.1:{tcp}", f"ws://127.0.0.1:{ws}"),
            bootnodes=(),
            rpc=f"127.0.0.1:{rpc}",
            metrics=None,
            log_level="info",
        ),
        config,
    )
    process = NodeProcess(
        process=spawn_node_process(config),
        directory=root,
        log=root / "node.log",
        host="127.0.0.1",
        tcp_port=tcp,
        ws_port=ws,
        rpc_url=f"ws://127.0.0.1:{rpc}",
        params=CONSENSUS_PARAMS,
        genesis=CHAIN.genesis,
        genesis_id=genesis_block(CHAIN.genesis, CONSENSUS_PARAMS).block_id,
        validator_key=CHAIN.keys[0],
        wallet_keys=(),
        wallet_key_files=(),
    )
    wait_listening(process)
    try:
        yield process
    finally:
        process.stop()


async def _finalized_and_head(node: NodeProcess) -> tuple[object, object]:
    finalized = await node.rpc("chain_finalized")
    head = await node.rpc("chain_head")
    assert isinstance(finalized, dict)
    assert isinstance(head, dict)
    return (finalized["epoch"], finalized["blockId"]), head["blockId"]


async def test_a_block_pruned_by_its_own_votes_is_accepted_and_the_node_serves_on(
    node: NodeProcess, sources: Sources
) -> None:
    chain: SelfPruningChain = CHAIN
    verdict = await Verdict.before_attack(node)
    peer = await SecurePeer.connect(node, "tcp", next(sources.group()))
    try:
        assert peer.is_active, peer.ending
        for block in chain.blocks:
            await peer.send(Publish(topic=Topic.BLOCK, data=block.encoded))
        h = "0x" + chain.h.block_id.hex()

        async def settled() -> bool:
            return await _finalized_and_head(node) == ((1, h), h)

        for attempt in range(200):  # a round trip proves the node read what came before;
            assert await peer.ping(1_000 + attempt), peer.ending  # validation may lag behind
            if await settled():
                break
        assert await settled()
        assert await node.peer_scores() == {"0x" + peer.conn.hello.node_key.hex(): 0.0}
        for pruned in (chain.x, chain.y, chain.z):
            assert await node.rpc("chain_getBlock", "0x" + pruned.block_id.hex()) is None
    finally:
        await peer.aclose()
    await verdict.check("tcp", state_changes=True)
    assert await _finalized_and_head(node) == ((1, h), h)
