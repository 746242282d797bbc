"""Snapshot sync against real node code on the simulated network: a node started from a
verified snapshot of the finalized state holds what a fully synced node holds, follows the
chain from there, restarts from its anchor, and is not fooled by a peer serving a lie."""

from __future__ import annotations

import dataclasses

import pytest
import trio

from p2pchain import TxStatus
from p2pchain.errors import NoHonestPeer
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.snapshot import OutputRecord, decode_record, encode_record
from p2pchain.ledger.types import Address, Amount
from p2pchain.ledger.wallet import Wallet
from p2pchain.light import LightConfig, open_light_client
from p2pchain.light.snapshot import fetch_snapshot
from p2pchain.net.swarm import InboundMessage, SwarmConfig, open_swarm
from p2pchain.node import Node
from p2pchain.node.snapshots import SNAPSHOTS_KEPT
from p2pchain.protocol.messages import (
    GetBlocksById,
    GetSnapshotPage,
    LightRequest,
    SnapshotPageAnswer,
    Status,
)
from p2pchain.testing.simnet import SimulatedNetwork
from p2pchain.testing.testnet import TESTNET_PARAMS, Testnet, testnet

LIMIT_S = 80 * TESTNET_PARAMS.slot_ms * TESTNET_PARAMS.slots_per_epoch / 1000
"""A bound on virtual time that turns a hang into a failure; no test asserts on time."""


async def _settle(net: Testnet, node: Node, amount: int, to: Address) -> None:
    tx = net.transfer(0, to, amount)
    await node.submit_transaction(tx)
    await node.wait_for_status(tx.txid, TxStatus.FINALIZED)


def _state(node: Node) -> tuple[object, ...]:
    view = node._chain.head_view()
    return (view.tip, view.snapshot(), view.state_root())


async def _same_head(net: Testnet, *nodes: Node) -> None:
    """Until `nodes` and node 0 hold the same head (the chain keeps growing meanwhile)."""
    await net.wait_for(lambda: len({n.head().block_id for n in (net.nodes[0], *nodes)}) == 1)


async def test_a_snapshot_synced_node_holds_what_a_fully_synced_one_holds(autojump_clock) -> None:
    network = SimulatedNetwork(seed=31)
    async with testnet(4, transport=network, seed=31) as net:
        payee = Wallet(SecretKey.from_entropy(b"snapshot payee".ljust(32, b".")), net.params)
        with trio.fail_after(LIMIT_S):
            await _settle(net, net.nodes[0], 7 * 10**8, payee.address)
            await net.wait_finalized(3)
            fresh = await net.add_node(snapshot_sync=True)
            full = await net.add_node()
            await _same_head(net, fresh, full)
            anchor = fresh._chain.store.anchor_height
            assert anchor > 0  # it did start from a snapshot, not from genesis
            assert fresh.get_block_at_height(anchor - 1) is None  # and holds no history
            assert full._chain.store.anchor_height == 0
            assert _state(fresh) == _state(full) == _state(net.nodes[0])
            assert fresh._chain.head_view().balance(payee.address, net.params.native_asset) == (
                7 * 10**8
            )
            head = fresh.head().block_id
            assert fresh._chain.next_governance() == full._chain.next_governance()
            # It follows the chain and finality on from its anchor, like any node.
            epoch = net.nodes[0].finalized().epoch
            await net.wait_finalized(epoch + 2)
            await _same_head(net, fresh)
            assert fresh.finalized().epoch >= epoch + 2
            assert fresh.head().block_id != head
            assert _state(fresh) == _state(net.nodes[0])


async def test_a_snapshot_synced_node_restarts_from_its_anchor(autojump_clock, tmp_path) -> None:
    network = SimulatedNetwork(seed=32)
    async with testnet(4, transport=network, seed=32, data_dir=tmp_path) as net:
        with trio.fail_after(LIMIT_S):
            await net.wait_finalized(3)
            fresh = await net.add_node(snapshot_sync=True)
            index = len(net.configs) - 1
            await _same_head(net, fresh)
            anchor = fresh._chain.store.anchor_height
            assert anchor > 0
            await net.wait_finalized(net.nodes[0].finalized().epoch + 1)
            await net.stop_node(index)
            again = await net.start_node(index)
            assert again._chain.store.anchor_height == anchor  # rebuilt from its anchor
            await _same_head(net, again)
            assert _state(again) == _state(net.nodes[0])


async def test_before_anything_is_final_a_snapshot_node_syncs_from_genesis(
    autojump_clock,
) -> None:
    network = SimulatedNetwork(seed=33)
    async with testnet(4, transport=network, seed=33) as net:
        with trio.fail_after(LIMIT_S):
            fresh = await net.add_node(snapshot_sync=True)
            assert fresh._chain.store.anchor_height == 0
            await net.wait_finalized(1)
            await _same_head(net, fresh)
            assert _state(fresh) == _state(net.nodes[0])


def _status_of(node: Node) -> Status:
    head = node.head()
    return Status(
        head=head.block_id, head_height=head.height, head_slot=head.slot, finalized=node.finalized()
    )


async def _serve_lies(net: Testnet, network: SimulatedNetwork, ready: trio.Event) -> None:
    """A peer answering as node 0 does, except that in every page it serves one output is
    worth twice what it is."""
    honest = net.nodes[0]
    config = SwarmConfig(
        identity=SecretKey.from_entropy(b"snapshot liar".ljust(32, b".")),
        chain_id=net.params.chain_id,
        genesis=honest.get_block_at_height(0).block_id,
        listen=(SimulatedNetwork.address("liar"),),
        transport=network.transport("liar"),
    )
    host = honest._host
    async with open_swarm(config, lambda: _status_of(honest)) as swarm:
        ready.set()
        while batch := await swarm.events.receive_batch(16):
            for event in batch:
                if not isinstance(event, InboundMessage):
                    continue
                message = event.message
                event.release()
                if isinstance(message, GetBlocksById):
                    swarm.send(event.peer_id, await host.serve_blocks(message, 1 << 24))
                elif isinstance(message, LightRequest):
                    answer = await host.serve_light(message)
                    if isinstance(message, GetSnapshotPage):
                        assert isinstance(answer, SnapshotPageAnswer)
                        answer = _inflated(answer)
                    swarm.send(event.peer_id, answer)


def _inflated(answer: SnapshotPageAnswer) -> SnapshotPageAnswer:
    records = list(answer.records)
    for position, encoded in enumerate(records):
        record = decode_record(encoded)
        if isinstance(record, OutputRecord):
            output = dataclasses.replace(record.output, amount=Amount(record.output.amount * 2))
            records[position] = encode_record(dataclasses.replace(record, output=output))
            break
    return dataclasses.replace(answer, records=tuple(records))


def _light(net: Testnet, network: SimulatedNetwork, name: str, *peers: str) -> LightConfig:
    return LightConfig(
        params=net.params,
        genesis=net.genesis,
        peers=peers,
        transport=network.transport(name),
        request_timeout=5.0,
    )


async def test_a_peer_serving_a_false_snapshot_is_penalised_and_routed_around(
    autojump_clock,
) -> None:
    network = SimulatedNetwork(seed=34)
    async with testnet(4, transport=network, seed=34) as net, trio.open_nursery() as nursery:
        ready = trio.Event()
        with trio.fail_after(LIMIT_S):
            await net.wait_finalized(3)
            nursery.start_soon(_serve_lies, net, network, ready)
            await ready.wait()
            liar = SimulatedNetwork.address("liar")
            async with open_light_client(_light(net, network, "fetch1", liar)) as client:
                with pytest.raises(NoHonestPeer):
                    await fetch_snapshot(client)
                (peer,) = client._swarm.peers()
                assert peer.score < 0
            both = (liar, SimulatedNetwork.address("node1"))
            async with open_light_client(_light(net, network, "fetch2", *both)) as client:
                fetched = await fetch_snapshot(client)
                assert fetched is not None
                anchor, view = fetched
                assert view.state_root() == anchor.block.header.state_root
                scores = {p.address: p.score for p in client._swarm.peers()}
                assert scores.get(liar, 0.0) < 0 <= min(s for a, s in scores.items() if a != liar)
        nursery.cancel_scope.cancel()


async def test_a_node_keeps_the_last_snapshots_it_prepared_and_no_more(autojump_clock) -> None:
    network = SimulatedNetwork(seed=35)
    async with testnet(4, transport=network, seed=35) as net:
        node = net.nodes[0]
        server = node._chain.snapshots
        with trio.fail_after(LIMIT_S):
            await net.wait_finalized(2)
            prepared = []
            for _ in range(SNAPSHOTS_KEPT + 1):
                checkpoint = node.finalized()
                snapshot = await server.get(checkpoint.block_id)
                assert snapshot is not None
                assert await server.get(checkpoint.block_id) is snapshot  # prepared once
                assert snapshot.manifest.block_id == checkpoint.block_id
                prepared.append(checkpoint.block_id)
                await net.wait_finalized(checkpoint.epoch + 1)
            assert list(server._prepared) == prepared[-SNAPSHOTS_KEPT:]
            assert await server.get(prepared[0]) is None  # dropped, and no longer finalized
            assert await server.page(prepared[0], 0, b"") is None
            assert await server.get(node.head().block_id) is None or (
                node.head().block_id == node.finalized().block_id
            )
