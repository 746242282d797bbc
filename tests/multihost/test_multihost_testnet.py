"""A 4-validator testnet whose nodes run as real `p2pchain node` processes on hosts of their
own (Linux network namespaces on one private subnet; see conftest.py): bootstrap through one
bootnode, peer exchange across hosts, blocks and finality, a late joiner, and a host cut off by
taking its interface down.

Every wait is a bounded poll of conditions over the nodes' RPC; the bounds are generous, since
several node processes share the machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from p2pchain.cli.rpc_client import JSON
from p2pchain.errors import ConfigError
from p2pchain.net.transports import parse_address

if TYPE_CHECKING:
    from conftest import MultiHostNet, Rpc

pytestmark = pytest.mark.timeout(300)

CONNECT_S = 60.0
"""Bound on links forming: peer exchange asks again every 30 s at worst."""
FINALITY_S = 90.0
CATCH_UP_S = 120.0


def _ids(peers: list[dict[str, JSON]]) -> set[str]:
    return {str(peer["peerId"]) for peer in peers}


def _peer_host(address: str) -> str:
    """The host of a `net_peers` address: the dialed address of an outbound link, the source
    host of an inbound one."""
    try:
        return parse_address(address).host
    except ConfigError:
        return address


class Finality:
    """Every finalized checkpoint any node reported, checked as it is reported: one block per
    epoch across all nodes, and no node's finalized epoch moving back."""

    def __init__(self, rpc: Rpc, nodes: list[int]) -> None:
        self.rpc = rpc
        self.nodes = nodes
        self.blocks: dict[int, str] = {}
        """Epoch -> the block finalized for it."""
        self.highest = dict.fromkeys(nodes, 0)
        """Per node, the highest finalized epoch it reported."""

    async def poll(self, nodes: list[int] | None = None) -> dict[int, tuple[int, str]]:
        """Each node's finalized (epoch, block id) now."""
        now = {}
        for node in self.nodes if nodes is None else nodes:
            finalized = await self.rpc.dict(node, "chain_finalized")
            epoch, block_id = int(str(finalized["epoch"])), str(finalized["blockId"])
            known = self.blocks.setdefault(epoch, block_id)
            assert known == block_id, f"epoch {epoch} finalized as {known} and {block_id}"
            assert epoch >= self.highest[node], f"node {node}'s finality moved back to {epoch}"
            self.highest[node] = epoch
            now[node] = (epoch, block_id)
        return now

    async def agreed(self, at_least: int) -> tuple[int, str] | None:
        """The finalized checkpoint when every node reports the same one, at `at_least` or
        later; else None."""
        now = await self.poll()
        checkpoints = set(now.values())
        if len(checkpoints) == 1:
            (checkpoint,) = checkpoints
            if checkpoint[0] >= at_least:
                return checkpoint
        return None

    async def check_canonical_everywhere(self) -> None:
        """Every block ever reported finalized is on every node's canonical chain."""
        for node in self.nodes:
            for epoch, block_id in sorted(self.blocks.items()):
                block = await self.rpc.dict(node, "chain_getBlock", block_id)
                assert block["canonical"] is True, f"node {node}: epoch {epoch}'s {block_id}"


async def _check_peer_addresses(net: MultiHostNet, rpc: Rpc, nodes: range | list[int]) -> None:
    """Every link of every node is with a host on the subnet, and no node ever dialed another
    node's loopback address."""
    for node in nodes:
        for peer in await rpc.peers(node):
            host = _peer_host(str(peer["address"]))
            assert net.in_subnet(host), f"node {node} has a peer at {peer['address']}"
    assert net.check_loopback_dials() == []


async def test_every_node_connects_through_its_one_bootnode(net: MultiHostNet) -> None:
    await net.start_validators()
    others = [node for node in net.validators if node != 0]
    async with net.open_rpc() as rpc:

        async def connected() -> bool:
            to_bootnode = _ids(await rpc.peers(0))
            reached = [net.node_ids[0] in _ids(await rpc.peers(node)) for node in others]
            return all(reached) and {net.node_ids[node] for node in others} <= to_bootnode

        await net.wait_until(connected, "nodes 1-3 connected to node 0", CONNECT_S)
        await _check_peer_addresses(net, rpc, net.validators)


async def test_peer_exchange_links_nodes_never_told_of_each_other(net: MultiHostNet) -> None:
    """Node 3 was told of node 0 only; it ends linked to 1 and 2, and every node to every
    other, all at their subnet addresses: no loopback address crossed a host."""
    await net.start_validators()
    async with net.open_rpc() as rpc:

        async def meshed() -> bool:
            for node in net.validators:
                others = {net.node_ids[other] for other in net.validators if other != node}
                if not others <= _ids(await rpc.peers(node)):
                    return False
            return True

        await net.wait_until(meshed, "every validator linked to every other", CONNECT_S)
        node3 = _ids(await rpc.peers(3))
        assert {net.node_ids[1], net.node_ids[2]} <= node3
        await _check_peer_addresses(net, rpc, net.validators)


async def test_blocks_and_finality_agree_on_every_host(net: MultiHostNet) -> None:
    await net.start_validators()
    async with net.open_rpc() as rpc:
        finality = Finality(rpc, list(net.validators))
        _, block_id = await net.wait_until(
            lambda: finality.agreed(at_least=2), "one finalized block of epoch 2+", FINALITY_S
        )
        await finality.check_canonical_everywhere()
        final = await rpc.dict(0, "chain_getBlock", block_id)
        height = int(str(final["height"]))
        proposers = set()
        for at in range(1, height + 1):
            blocks = [await rpc.dict(node, "chain_getBlock", at) for node in net.validators]
            ids = {str(block["blockId"]) for block in blocks}
            assert len(ids) == 1, f"the nodes hold different blocks at finalized height {at}"
            proposers.add(str(blocks[0]["proposer"]))
        assert len(proposers) >= 2, "every block came from one host"
        for node in net.validators:
            head = await rpc.dict(node, "chain_head")
            assert int(str(head["height"])) >= height
        await _check_peer_addresses(net, rpc, net.validators)


async def test_a_late_joiner_syncs_from_scratch(net: MultiHostNet) -> None:
    """Node 4 (no validator key, told of node 0 only) starts once the chain has finalized
    epoch 3, and reaches the same finalized block from an empty data directory."""
    await net.start_validators()
    late = net.late_joiner
    async with net.open_rpc() as rpc:
        finality = Finality(rpc, list(net.validators))
        await net.wait_until(lambda: finality.agreed(at_least=3), "epoch 3 finalized", FINALITY_S)
        target = int(str((await rpc.dict(0, "chain_head"))["height"]))
        await net.start(late)
        joined = Finality(rpc, [0, late])

        async def caught_up() -> tuple[int, str] | None:
            checkpoint = await joined.agreed(at_least=3)
            head = await rpc.dict(late, "chain_head")
            return checkpoint if int(str(head["height"])) >= target else None

        _, block_id = await net.wait_until(caught_up, "node 4 catches up", CATCH_UP_S)
        final = await rpc.dict(late, "chain_getBlock", block_id)
        assert final["canonical"] is True
        for at in (1, int(str(final["height"]))):
            ours = await rpc.dict(late, "chain_getBlock", at)
            theirs = await rpc.dict(0, "chain_getBlock", at)
            assert ours["blockId"] == theirs["blockId"], f"height {at}"
        await _check_peer_addresses(net, rpc, [*net.validators, late])


async def _partition(net: MultiHostNet, *, until_links_time_out: bool) -> None:
    """Cut node 3's host off; the other three finalize two more epochs (75 % of the stake),
    node 3 finalizes nothing that conflicts; after link up it reaches their finalized block.

    With `until_links_time_out`, the cut lasts until node 3 has no link left (ping timeout),
    so that it comes back only by dialing again."""
    await net.start_validators()
    isolated, majority = 3, [0, 1, 2]
    host = net.hosts[isolated]
    async with net.open_rpc() as rpc:
        finality = Finality(rpc, list(net.validators))
        cut_at, _ = await net.wait_until(
            lambda: finality.agreed(at_least=1), "one finalized block before the cut", FINALITY_S
        )
        net.hosts.link_down(host)
        try:

            async def majority_finalizes() -> bool:
                await finality.poll([isolated])
                now = await finality.poll(majority)
                return all(epoch >= cut_at + 2 for epoch, _ in now.values())

            await net.wait_until(
                majority_finalizes, "nodes 0-2 finalize without node 3", FINALITY_S
            )
            if until_links_time_out:

                async def alone() -> bool:
                    await finality.poll()
                    return not await rpc.peers(isolated)

                await net.wait_until(alone, "node 3's links time out", CATCH_UP_S)
        finally:
            net.hosts.link_up(host)
        healed_at = max(epoch for epoch, _ in (await finality.poll(majority)).values())
        alone_at = finality.highest[isolated]
        await net.wait_until(
            lambda: finality.agreed(at_least=healed_at), "node 3 catches up", CATCH_UP_S
        )
        await finality.check_canonical_everywhere()
        assert alone_at <= cut_at + 1, f"node 3 finalized epoch {alone_at} alone"
        await _check_peer_addresses(net, rpc, net.validators)


async def test_a_host_cut_off_catches_up_after_link_up(net: MultiHostNet) -> None:
    await _partition(net, until_links_time_out=False)


async def test_a_host_cut_off_past_the_ping_timeout_dials_back(net: MultiHostNet) -> None:
    await _partition(net, until_links_time_out=True)
