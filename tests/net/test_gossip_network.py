"""Gossip among 10 and 20 `NetworkService` nodes on real loopback sockets, TCP and WebSocket.

Waits are conditions: a delivery event per message, and `wait_all_tasks_blocked` as a global
barrier (loopback bytes are readable as soon as `send_all` returns, so once every task in the
process is blocked, nothing is in flight).
"""

from contextlib import AsyncExitStack
from random import Random

import trio
import trio.lowlevel
import trio.testing

from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.net import NetworkConfig, SwarmConfig, open_network
from p2pchain.protocol.gossip import GossipParams, Verdict
from p2pchain.protocol.messages import Topic
from p2pchain.testing.link import TEST_CHAIN_ID, TEST_GENESIS
from p2pchain.testing.simnet import GossipHost, random_topology

WAIT = 20  # safety bound on every wait; nothing sleeps
TOPIC = Topic.TRANSACTION
# A small mesh in a denser graph, so the duplicate bound is set by the mesh, not by the degree.
PARAMS = GossipParams(d=3, d_low=2, d_high=6, d_lazy=3, d_out=1)


def _reject_bad(topic, data):
    return Verdict.REJECT if data.startswith(b"bad") else Verdict.ACCEPT


async def _open_nodes(stack, size, seed, degree):
    """`size` services wired along a seeded random topology, each edge TCP or WebSocket."""
    nodes = []
    for index in range(size):
        host = GossipHost(TEST_GENESIS, _reject_bad)
        swarm = SwarmConfig(
            identity=SecretKey.from_entropy(sha256(b"gossip-network" + bytes([index]))),
            chain_id=TEST_CHAIN_ID,
            genesis=TEST_GENESIS,
            target_outbound=0,
            max_inbound=size,
        )
        config = NetworkConfig(swarm=swarm, gossip=PARAMS, seed=seed * 1000 + index)
        service = await stack.enter_async_context(open_network(config, host))
        nodes.append((service, host))
    edges = random_topology(size, degree, seed)
    rng = Random(seed)
    schemes = set()
    for a, b in edges:
        scheme = rng.choice(("tcp://", "ws://"))
        schemes.add(scheme)
        dialer, listener = nodes[a][0], nodes[b][0]
        address = next(x for x in listener.swarm.listen_addresses if x.startswith(scheme))
        await dialer.swarm.connect(address)
    assert schemes == {"tcp://", "ws://"}
    neighbours = {i: {b if a == i else a for a, b in edges if i in (a, b)} for i in range(size)}
    return nodes, neighbours


async def _wait_for_meshes(nodes, neighbours):
    """Poll (checkpoints only) until every mesh holds d_low peers (or all neighbours), at most
    d_high, and is symmetric: GRAFTs and PRUNEs have landed and no node keeps grafting."""
    ids = [service.peer_id for service, _ in nodes]

    def formed():
        meshes = [service.mesh_peers(TOPIC) for service, _ in nodes]
        return all(
            min(PARAMS.d_low, len(neighbours[i])) <= len(mesh) <= PARAMS.d_high
            and all(ids[i] in meshes[ids.index(peer)] for peer in mesh)
            for i, mesh in enumerate(meshes)
        )

    while not formed():
        await trio.lowlevel.checkpoint()


def _counts(nodes):
    stats = [service.statistics().gossip for service, _ in nodes]
    return [(s.duplicates, s.iwant_sent) for s in stats]


async def _publish_and_count_copies(nodes, publisher, data):
    """Publish, wait until every other node delivered it and the network is quiet; return
    the full copies each node received and the IWANTs it sent meanwhile."""
    before = _counts(nodes)
    assert nodes[publisher][0].publish(TOPIC, data) > 0
    for index, (_, host) in enumerate(nodes):
        if index != publisher:
            await host.wait_delivered(TOPIC, data)
    await trio.testing.wait_all_tasks_blocked()
    after = _counts(nodes)
    copies = [after[i][0] - before[i][0] + (0 if i == publisher else 1) for i in range(len(nodes))]
    return copies, [after[i][1] - before[i][1] for i in range(len(nodes))]


async def _check_delivery_and_duplicates(size, seed, degree, messages):
    with trio.fail_after(WAIT):
        async with AsyncExitStack() as stack:
            nodes, neighbours = await _open_nodes(stack, size, seed, degree)
            await _wait_for_meshes(nodes, neighbours)
            rng = Random(seed)
            for k in range(messages):
                publisher = rng.randrange(size)
                await _wait_for_meshes(nodes, neighbours)
                copies, iwants = await _publish_and_count_copies(nodes, publisher, b"tx %d" % k)
                # Full copies come from mesh peers (at most d_high), the publisher's flood copy,
                # and answers to IWANTs sent before the message arrived; never one per neighbour.
                assert all(
                    c <= PARAMS.d_high + 1 + w for c, w in zip(copies, iwants, strict=True)
                ), (copies, iwants)
                assert all(
                    host.has(TOPIC, b"tx %d" % k)
                    for i, (_, host) in enumerate(nodes)
                    if i != publisher
                )
            for service, host in nodes:
                stats = service.statistics()
                assert len(host.delivered) == messages - stats.gossip.published
                assert stats.validations_dropped == stats.deliveries_dropped == 0
                assert stats.sends_dropped == 0


async def test_ten_nodes_deliver_every_message_a_bounded_number_of_times():
    await _check_delivery_and_duplicates(10, seed=1, degree=8, messages=6)


async def test_twenty_nodes_deliver_every_message_a_bounded_number_of_times():
    await _check_delivery_and_duplicates(20, seed=2, degree=9, messages=6)


async def test_rejected_message_stops_at_the_first_hop_and_costs_the_sender():
    with trio.fail_after(WAIT):
        async with AsyncExitStack() as stack:
            nodes, neighbours = await _open_nodes(stack, 10, seed=3, degree=4)
            await _wait_for_meshes(nodes, neighbours)
            liar = max(range(10), key=lambda i: (len(neighbours[i]) < 9, i))
            liar_id = nodes[liar][0].peer_id
            first_hop = neighbours[liar]
            assert len(first_hop) < 9  # some nodes are two hops away
            assert nodes[liar][0].publish(TOPIC, b"bad tx") == len(first_hop)

            def validated_bad(host):
                return any(data == b"bad tx" for _, data, _ in host.validated)

            while not all(validated_bad(nodes[i][1]) for i in first_hop):
                await trio.lowlevel.checkpoint()
            await trio.testing.wait_all_tasks_blocked()
            for index, (service, host) in enumerate(nodes):
                assert not host.has(TOPIC, b"bad tx")
                if index in first_hop:
                    assert [p for _, d, p in host.validated if d == b"bad tx"] == [liar_id]
                    assert service.swarm.score(liar_id) < 0
                    assert service.statistics().gossip.rejected == 1
                elif index != liar:
                    assert not validated_bad(host)

            # Everyone, the liar included, is still served: a valid message reaches all nodes.
            copies, _ = await _publish_and_count_copies(nodes, liar, b"good tx")
            assert min(copies[i] for i in range(10) if i != liar) >= 1
