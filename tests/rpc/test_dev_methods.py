"""The dev_* clock methods over a real WebSocket: served only with ``dev_rpc``, they move a
manual clock (the node makes the slot's block before answering) or skew a wall clock, and
answer every wrong parameter with INVALID_PARAMS."""

import pytest
import trio
from rpc_harness import PARAMS, Client

from p2pchain.node.config import MAX_CLOCK_SKEW_MS, MAX_CLOCK_TIME_MS
from p2pchain.rpc import serve_rpc
from p2pchain.testing.testnet import testnet

INVALID_PARAMS = -32602
METHOD_NOT_FOUND = -32601
DEV_METHODS = ("dev_clock", "dev_setClockSkew", "dev_setTime")


async def test_a_manual_node_makes_a_block_for_each_slot_it_is_moved_to():
    async with (
        testnet(1, params=PARAMS, manual_clock=True, dev_rpc=True) as net,
        trio.open_nursery() as nursery,
    ):
        server = await nursery.start(serve_rpc, net.nodes[0])
        client = await Client.connect(server.url)
        genesis_ms = net.genesis.genesis_time_ms
        clock = await client.call("dev_clock")
        assert clock == {"nowMs": genesis_ms, "skewMs": 0, "manual": True, "slot": 0}
        assert (await client.call("chain_head"))["height"] == 0

        for slot in (1, 2, 5):  # a jump over slots 3 and 4 leaves them empty
            moved = await client.call("dev_setTime", genesis_ms + slot * PARAMS.slot_ms)
            assert moved["slot"] == slot
            head = await client.call("chain_head")  # answered after the block was made
            assert head["slot"] == slot
        assert head["height"] == 3

        wrong = [
            ("dev_setTime", [genesis_ms], "before the clock's"),
            ("dev_setTime", [-1], "non-negative integer"),
            ("dev_setTime", ["soon"], "non-negative integer"),
            ("dev_setTime", [True], "non-negative integer"),
            ("dev_setTime", [MAX_CLOCK_TIME_MS + 1], f"at most {MAX_CLOCK_TIME_MS}"),
            ("dev_setTime", [], "ms is required"),
            ("dev_setClockSkew", [100], "manual clock has no skew"),
        ]
        for method, params, complaint in wrong:
            response = await client.request(method, *params)
            assert response["error"]["code"] == INVALID_PARAMS, (method, params)
            assert complaint in response["error"]["message"], (method, params)
        assert (await client.call("dev_clock"))["slot"] == 5  # nothing moved it
        await client.close()
        nursery.cancel_scope.cancel()


async def test_a_wall_clock_node_is_skewed_while_it_runs():
    async with (
        testnet(1, params=PARAMS, dev_rpc=True) as net,
        trio.open_nursery() as nursery,
    ):
        server = await nursery.start(serve_rpc, net.nodes[0])
        client = await Client.connect(server.url)
        before = await client.call("dev_clock")
        assert before["manual"] is False
        assert before["skewMs"] == 0
        skewed = await client.call("dev_setClockSkew", 40 * PARAMS.slot_ms)
        assert skewed["skewMs"] == 40 * PARAMS.slot_ms
        assert skewed["slot"] >= before["slot"] + 40
        assert (await client.call("dev_setClockSkew", -3))["skewMs"] == -3
        for params in ([MAX_CLOCK_SKEW_MS + 1], ["1s"], [1.5], [None], [False]):
            response = await client.request("dev_setClockSkew", *params)
            assert response["error"]["code"] == INVALID_PARAMS, params
        response = await client.request("dev_setTime", before["nowMs"] + 10**6)
        assert "not manual" in response["error"]["message"]
        assert (await client.call("dev_clock"))["skewMs"] == -3
        await client.close()
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("method", DEV_METHODS)
async def test_without_dev_rpc_the_dev_methods_do_not_exist(served, method):
    client = await Client.connect(served.server.url)
    response = await client.request(method, 1)
    assert response["error"]["code"] == METHOD_NOT_FOUND
    await client.close()
