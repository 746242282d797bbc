"""The `served` fixture: a running single-validator node with its RPC server."""

import pytest
import trio
from rpc_harness import PARAMS, Served

from p2pchain.rpc import serve_rpc
from p2pchain.testing.testnet import testnet


@pytest.fixture
async def served():
    async with testnet(1, params=PARAMS) as net, trio.open_nursery() as nursery:
        server = await nursery.start(serve_rpc, net.nodes[0])
        yield Served(net=net, server=server, nursery=nursery)
        nursery.cancel_scope.cancel()
