"""The real services on `SimulatedNetwork`: gossip properties in virtual time, determinism,
partitions. Virtual time passes only when every task waits, so `trio.sleep` here runs the
network for that long without taking real time."""

from contextlib import AsyncExitStack

import pytest
import trio
import trio.testing

from p2pchain.errors import ConfigError
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.net import NetworkConfig, PeerRefused, SwarmConfig, open_network
from p2pchain.net.transports import parse_address
from p2pchain.protocol.gossip import GossipParams
from p2pchain.protocol.messages import Topic
from p2pchain.testing.link import TEST_CHAIN_ID, TEST_GENESIS
from p2pchain.testing.simnet import GossipHost, SimulatedNetwork, random_topology, seed_from_env

TOPIC = Topic.VOTE
PARAMS = GossipParams(d=3, d_low=2, d_high=6, d_lazy=3, d_out=1)


def _name(index):
    return f"node{index}"


def _config(network, index, size, seed):
    swarm = SwarmConfig(
        identity=SecretKey.from_entropy(sha256(b"simnet-test" + bytes([index]))),
        chain_id=TEST_CHAIN_ID,
        genesis=TEST_GENESIS,
        listen=(network.address(_name(index)),),
        transport=network.transport(_name(index)),
        target_outbound=0,
        max_inbound=size,
    )
    return NetworkConfig(swarm=swarm, gossip=PARAMS, seed=seed * 1000 + index)


async def _open_nodes(stack, network, size, edges, seed):
    nodes = []
    for index in range(size):
        host = GossipHost(TEST_GENESIS)
        service = await stack.enter_async_context(
            open_network(_config(network, index, size, seed), host)
        )
        nodes.append((service, host))
    for a, b in edges:
        await nodes[a][0].swarm.connect(network.address(_name(b)))
    return nodes


def _counts(nodes):
    stats = [service.statistics().gossip for service, _ in nodes]
    return [(s.duplicates, s.iwant_sent) for s in stats]


async def test_every_message_reaches_every_node_a_bounded_number_of_times(autojump_clock):
    seed = seed_from_env(11)
    network = SimulatedNetwork(seed, latency=(0.01, 0.08), loss=0.02, reorder=0.1)
    size = 20
    with network.report_seed(), trio.fail_after(600):  # virtual seconds: fail, never hang
        async with AsyncExitStack() as stack:
            nodes = await _open_nodes(stack, network, size, random_topology(size, 9, seed), seed)
            await trio.sleep(5)  # a few heartbeats: meshes form
            for k in range(8):
                publisher = k * 7 % size
                data = b"vote %d" % k
                before = _counts(nodes)
                assert nodes[publisher][0].publish(TOPIC, data) > 0
                for index, (_, host) in enumerate(nodes):
                    if index != publisher:
                        await host.wait_delivered(TOPIC, data)
                await trio.sleep(10)  # everything in flight lands, retransmissions included
                after = _counts(nodes)
                for index in range(size):
                    copies = after[index][0] - before[index][0] + (index != publisher)
                    iwants = after[index][1] - before[index][1]
                    assert 1 <= copies + (index == publisher) <= PARAMS.d_high + 1 + iwants
            assert network.statistics().losses > 0
            for service, _ in nodes:
                stats = service.statistics()
                assert stats.validations_dropped == stats.sends_dropped == 0


async def _trace_scenario(seed):
    """Publish a few messages on a lossy network; return who got what when (relative)."""
    network = SimulatedNetwork(seed, latency=(0.01, 0.1), loss=0.05, reorder=0.2)
    start = trio.current_time()
    size = 8
    with trio.fail_after(120):
        async with AsyncExitStack() as stack:
            nodes = await _open_nodes(stack, network, size, random_topology(size, 4, seed), seed)
            await trio.sleep(3)
            for k in range(4):
                nodes[k][0].publish(TOPIC, b"message %d" % k)
                await trio.sleep(0.3)
            await trio.sleep(5)
            return [
                (index, round(delivery.time - start, 9), delivery.message_id)
                for index, (_, host) in enumerate(nodes)
                for delivery in host.delivered
            ], network.statistics()


def _run_traced(seed):
    return trio.run(_trace_scenario, seed, clock=trio.testing.MockClock(autojump_threshold=0))


def test_the_same_seed_replays_the_same_run():
    seed = seed_from_env(5)
    first, first_stats = _run_traced(seed)
    second, second_stats = _run_traced(seed)
    assert len(first) == 4 * 7  # every message reached the 7 other nodes
    assert first == second
    assert first_stats == second_stats
    other, _ = _run_traced(seed + 1)
    assert other != first


async def test_a_partition_stops_gossip_between_groups_until_healed(autojump_clock):
    seed = seed_from_env(3)
    network = SimulatedNetwork(seed, latency=(0.01, 0.05))
    left, right = range(4), range(4, 8)
    # A ring in each group, plus two links across.
    edges = [(a, a + 1) for a in (0, 1, 2, 4, 5, 6)] + [(0, 3), (4, 7), (0, 4), (2, 6)]
    with network.report_seed(), trio.fail_after(600):  # virtual seconds: fail, never hang
        async with AsyncExitStack() as stack:
            nodes = await _open_nodes(stack, network, 8, edges, seed)
            await trio.sleep(3)
            network.partition([_name(i) for i in left], [_name(i) for i in right])
            # Node 0 floods its own message to every peer, node 4 across the cut included:
            # that copy waits in the cut link.
            nodes[0][0].publish(TOPIC, b"left only")
            await trio.sleep(5)
            assert [nodes[i][1].has(TOPIC, b"left only") for i in range(8)] == [
                False, True, True, True, False, False, False, False,
            ]  # fmt: skip
            with pytest.raises(PeerRefused):
                await nodes[3][0].swarm.connect(network.address(_name(5)))

            network.heal()
            for i in right:
                await nodes[i][1].wait_delivered(TOPIC, b"left only")
            nodes[6][0].publish(TOPIC, b"after healing")
            for i in left:
                await nodes[i][1].wait_delivered(TOPIC, b"after healing")
            assert network.statistics().refused == 1


def test_sim_addresses_need_the_sim_transport():
    assert str(parse_address("sim://node-1")) == "sim://node-1"
    with pytest.raises(ConfigError, match="transport"):
        SwarmConfig(
            identity=SecretKey.from_entropy(sha256(b"x")),
            chain_id=TEST_CHAIN_ID,
            genesis=TEST_GENESIS,
            listen=("sim://node1",),
        )


async def test_a_cancelled_receive_loses_no_bytes(autojump_clock):
    """Like a socket: a `receive_some` that is cancelled consumed nothing, also when its bytes
    had already arrived (a lost chunk broke Noise frames when a peer's timer had expired)."""
    network = SimulatedNetwork(seed=3, latency=(0.05, 0.05))
    client, server = network.connect("a", "b")
    sent = b"".join(bytes([i]) * 100 for i in range(5))
    for i in range(5):
        await client.send_all(sent[i * 100 : (i + 1) * 100])
    await trio.sleep(1.0)  # everything has arrived
    for _ in range(3):
        with trio.move_on_at(trio.current_time()):  # a deadline that has already passed
            await server.receive_some()
            raise AssertionError("an expired receive returned")
    received = b""
    with trio.move_on_after(10):
        while len(received) < len(sent):
            received += await server.receive_some()
    assert received == sent
