"""The testnet's link relays: faults as a model (`LinkFaults`), and bytes over real sockets."""

import os
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.errors import ConfigError
from p2pchain.net.relay import MAX_CONNECTIONS_PER_LINK, LinkFaults, Relays, relay_port

WAIT = 20


@st.composite
def partitions(draw):
    nodes = draw(st.integers(2, 8))
    labels = draw(st.lists(st.integers(0, 3), min_size=nodes, max_size=nodes))
    named = draw(st.lists(st.booleans(), min_size=nodes, max_size=nodes))
    groups = {}
    for node, (label, is_named) in enumerate(zip(labels, named, strict=True)):
        if is_named:
            groups.setdefault(label, []).append(node)
    return nodes, list(groups.values())


@given(partitions())
def test_a_partition_cuts_exactly_the_pairs_in_different_groups(case):
    nodes, groups = case
    faults = LinkFaults(nodes)
    named = {node for group in groups for node in group}
    effective = [set(group) for group in groups] + (
        [set(range(nodes)) - named] * bool(set(range(nodes)) - named)
    )
    if len([g for g in effective if g]) < 2:
        with pytest.raises(ConfigError):
            faults.partition(groups)
        return
    faults.partition(groups)
    group_of = {node: i for i, group in enumerate(effective) for node in group}
    for a in range(nodes):
        for b in range(nodes):
            assert faults.is_cut(a, b) == (group_of[a] != group_of[b])
    faults.heal()
    assert not any(faults.is_cut(a, b) for a in range(nodes) for b in range(nodes))


def test_bad_partitions_delays_and_losses_are_refused():
    faults = LinkFaults(4)
    for groups in ([[0, 1], [1, 2]], [[0, 4]], [[0, 1, 2, 3]]):
        with pytest.raises(ConfigError):
            faults.partition(groups)
    with pytest.raises(ConfigError):
        faults.set_delay(0, -1)
    with pytest.raises(ConfigError):
        faults.set_delay(4, 10)
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ConfigError):
            faults.set_loss(0, bad)
    assert faults.groups == ()


@given(st.floats(0, 0.99), st.floats(0, 0.99), st.integers(0, 1000), st.integers(0, 1000))
def test_faults_of_both_ends_add_up(loss_a, loss_b, delay_a, delay_b):
    faults = LinkFaults(2)
    faults.set_loss(0, loss_a)
    faults.set_loss(1, loss_b)
    faults.set_delay(0, delay_a)
    faults.set_delay(1, delay_b)
    assert (
        faults.one_way_delay_s(0, 1) == faults.one_way_delay_s(1, 0) == (delay_a + delay_b) / 1000
    )
    assert max(loss_a, loss_b) - 1e-12 <= faults.loss_between(0, 1) < 1


async def _echo(stream):
    async with stream:
        try:
            while data := await stream.receive_some(65536):
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass


@asynccontextmanager
async def _relayed_echo_servers(count):
    """`count` echo servers on loopback and the relays between them (ports chosen free)."""
    async with trio.open_nursery() as nursery:
        targets, scopes = [], []
        for _ in range(count):
            scope = trio.CancelScope()
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            targets.append(("127.0.0.1", listeners[0].socket.getsockname()[1]))

            async def serve(listeners=listeners, scope=scope):
                with scope:
                    await trio.serve_listeners(_echo, listeners)

            nursery.start_soon(serve)
            scopes.append(scope)
        free = []
        for _ in range(count * count):
            probe = await trio.open_tcp_listeners(0, host="127.0.0.1")
            free.append(probe[0].socket.getsockname()[1])
            await probe[0].aclose()
        relays = Relays(targets, lambda a, b: free[a * count + b], seed=1)
        await nursery.start(relays.serve)
        yield relays, scopes
        nursery.cancel_scope.cancel()


async def _dial(relays, source, target):
    port = int(relays.address(source, target).rsplit(":", 1)[1])
    return await trio.open_tcp_stream("127.0.0.1", port)


async def _receive_exactly(stream, size):
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        assert chunk, "closed early"
        data += chunk
    return bytes(data)


async def test_bytes_cross_a_relay_both_ways_intact_through_delay_and_loss():
    payload = os.urandom(1_000_000)
    with trio.fail_after(WAIT):
        async with _relayed_echo_servers(2) as (relays, _):
            relays.faults.set_loss(0, 0.3)
            relays.faults.set_delay(1, 2)
            stream = await _dial(relays, 0, 1)
            async with stream, trio.open_nursery() as nursery:
                nursery.start_soon(stream.send_all, payload)
                assert await _receive_exactly(stream, len(payload)) == payload
    assert relays.statistics.losses > 0
    assert relays.statistics.connections == 1


async def test_a_partition_holds_open_links_refuses_new_ones_and_heal_releases_them():
    with trio.fail_after(WAIT):
        async with _relayed_echo_servers(3) as (relays, _):
            held = await _dial(relays, 0, 2)
            await held.send_all(b"before")
            assert await _receive_exactly(held, 6) == b"before"
            relays.faults.partition([[0, 1], [2]])
            relays.changed()
            await held.send_all(b"during")
            refused = await _dial(relays, 1, 2)
            assert await refused.receive_some(10) == b""  # closed at once, as a REJECT does
            same_side = await _dial(relays, 1, 0)
            await same_side.send_all(b"inside")
            assert await _receive_exactly(same_side, 6) == b"inside"
            await trio.testing.wait_all_tasks_blocked(0.05)
            with trio.move_on_after(0):
                assert await held.receive_some(10) == b"", "a held byte crossed the partition"
            relays.faults.heal()
            relays.changed()
            assert await _receive_exactly(held, 6) == b"during"
            for stream in (held, refused, same_side):
                await stream.aclose()
    assert relays.statistics.refused == 1


async def test_a_dead_node_closes_the_dialers_link_and_links_are_bounded():
    with trio.fail_after(WAIT):
        async with _relayed_echo_servers(2) as (relays, scopes):
            streams = [await _dial(relays, 0, 1) for _ in range(MAX_CONNECTIONS_PER_LINK)]
            for stream in streams:
                await stream.send_all(b"x")
                assert await _receive_exactly(stream, 1) == b"x"
            extra = await _dial(relays, 0, 1)
            assert await extra.receive_some(10) == b""
            scopes[1].cancel()  # node 1 stops listening; its open connections close too
            for stream in streams:
                await stream.aclose()
            late = await _dial(relays, 0, 1)
            assert await late.receive_some(10) == b""


async def test_a_relay_port_in_use_is_named():
    taken = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = taken[0].socket.getsockname()[1]
    relays = Relays([("127.0.0.1", 1), ("127.0.0.1", 2)], lambda a, b: port)
    with pytest.raises(OSError, match=f"127.0.0.1:{port} is in use"):
        await relays.serve()
    await taken[0].aclose()


def test_relay_ports_follow_the_nodes_ports_without_overlap():
    ports = {relay_port(30300, 4, a, b) for a in range(4) for b in range(4) if a != b}
    assert len(ports) == 12
    assert min(ports) > 30300 + 2 * 4 - 1
