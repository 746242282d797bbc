"""The four-validator scenario over real loopback TCP sockets, on the real clock."""

from dataclasses import replace

import trio

from p2pchain import EventKind, NodeLimits, TxStatus
from p2pchain.node import PeerEvent
from p2pchain.params import COIN
from p2pchain.testing.testnet import TESTNET_PARAMS, testnet

PARAMS = replace(TESTNET_PARAMS, slot_ms=500)
WAIT_S = 60.0


async def test_four_validators_over_tcp_finalize_a_transfer_everywhere():
    # Every block and every larger frame is decoded in a worker thread, as big ones are.
    limits = NodeLimits(offload_decode_bytes=128)
    async with testnet(4, params=PARAMS, limits=limits) as net:
        assert all(node.info.listen_addresses for node in net.nodes)
        with trio.fail_after(WAIT_S):
            await net.wait_for(lambda: all(len(node.peers()) == 3 for node in net.nodes))
            await net.wait_finalized(1)
        recipient = net.wallets[1].address
        tx = net.transfer(0, recipient, 2 * COIN)
        txid = await net.nodes[3].submit_transaction(tx)
        with trio.fail_after(WAIT_S):
            for node in net.nodes:
                await node.wait_for_status(txid, TxStatus.FINALIZED)
            await net.wait_finalized(3)
        async with net.nodes[0].subscribe([EventKind.PEER], since=0) as peer_events:
            first = [await peer_events.__anext__() for _ in range(3)]
        assert all(isinstance(e.data, PeerEvent) and e.data.connected for e in first)
        assert {e.data.peer_id for e in first} == {n.info.node_id for n in net.nodes[1:]}
        infos = [node.get_transaction(txid) for node in net.nodes]
        assert len({info.block_id for info in infos}) == 1
        assert len({node.balance(recipient) for node in net.nodes}) == 1
