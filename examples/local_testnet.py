"""Start four validators on loopback TCP in this process and watch them finalize epochs.

Run it with ``python examples/local_testnet.py [--epochs N]``. Every node is a full
`p2pchain` node with its own listener on 127.0.0.1; they find each other through bootnodes,
gossip blocks and votes, and finalize a checkpoint every epoch (2 s here).
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import trio

import p2pchain
from p2pchain import EventKind, Node
from p2pchain.ledger.vote import Checkpoint
from p2pchain.testing import TESTNET_PARAMS

# Half-second slots and four-slot epochs: a new epoch every 2 s of wall time.
PARAMS = replace(TESTNET_PARAMS, slot_ms=500, slots_per_epoch=4)
VALIDATORS = 4
TIMEOUT_S = 60.0


async def print_finality(node: Node, epochs: int, start: float) -> Checkpoint:
    """Print each checkpoint `node` finalizes; return the first one at `epochs` or later."""
    async with node.subscribe([EventKind.FINALIZED]) as events:
        async for event in events:
            # A FINALIZED event carries the node's new finalized checkpoint.
            assert isinstance(event.data, Checkpoint)
            checkpoint = event.data
            elapsed = trio.current_time() - start
            print(
                f"[{elapsed:5.1f} s] finalized epoch {checkpoint.epoch} "
                f"at block {checkpoint.block_id.hex()[:12]}"
            )
            if checkpoint.epoch >= epochs:
                return checkpoint
    raise RuntimeError("the node stopped")


async def main(epochs: int) -> None:
    async with p2pchain.testnet(VALIDATORS, params=PARAMS) as net:
        start = trio.current_time()
        for index, node in enumerate(net.nodes):
            print(f"node{index} listening on {', '.join(node.info.listen_addresses)}")

        with trio.fail_after(TIMEOUT_S):
            # A testnet boots every node with the others as bootnodes; wait for a full mesh.
            await net.wait_for(lambda: all(len(n.peers()) == VALIDATORS - 1 for n in net.nodes))
            print(f"all {VALIDATORS} nodes connected after {trio.current_time() - start:.1f} s")

            target = await print_finality(net.nodes[0], epochs, start)

            # The other nodes finalize the same checkpoint (gossip may lag by a moment).
            await net.wait_finalized(epochs)

        print("node   head height  head block    justified  finalized  peers")
        for index, node in enumerate(net.nodes):
            head = node.head()
            print(
                f"node{index}  {head.height:>11}  {head.block_id.hex()[:12]}  "
                f"{node.justified().epoch:>9}  {node.finalized().epoch:>9}  {len(node.peers()):>5}"
            )

        # Finality means agreement: node 0's finalized block is canonical on every node.
        block = net.nodes[0].get_block(target.block_id)
        assert block is not None
        agree = [
            (canonical := node.get_block_at_height(block.header.height)) is not None
            and canonical.block_id == target.block_id
            for node in net.nodes
        ]
        print(f"block {target.block_id.hex()[:12]} canonical on {sum(agree)}/{len(agree)} nodes")
    print("testnet stopped")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="stop after finalizing this epoch")
    trio.run(main, parser.parse_args().epochs)
