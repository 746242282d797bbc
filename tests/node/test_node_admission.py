"""The admission knobs of `NodeLimits` reach a node's swarm (real loopback TCP, real clock)."""

import pytest
import trio

from p2pchain import NodeLimits
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.net import PeerRefused, SwarmConfig, open_swarm
from p2pchain.protocol.messages import DisconnectReason
from p2pchain.testing.testnet import testnet

WAIT_S = 60.0


async def test_node_limits_set_the_per_address_limit_and_the_handshake_deadline():
    limits = NodeLimits(
        trusted_networks=(),  # limit 127.0.0.1 like any address
        max_inbound_per_address=1,
        handshake_timeout=0.5,
        target_outbound=0,
    )
    async with testnet(1, limits=limits) as net:
        node = net.nodes[0]
        address = next(a for a in node.info.listen_addresses if a.startswith("tcp://"))

        def peer_config(n):
            return SwarmConfig(
                identity=SecretKey.from_entropy(sha256(b"node-admission" + bytes([n]))),
                chain_id=node.info.chain_id,
                genesis=node.info.genesis,
                target_outbound=0,
            )

        with trio.fail_after(WAIT_S):
            async with (
                open_swarm(peer_config(1), node.network.host.get_status) as first,
                open_swarm(peer_config(2), node.network.host.get_status) as second,
            ):
                assert await first.connect(address) == node.info.node_id
                with pytest.raises(PeerRefused) as refused:
                    await second.connect(address)
                assert refused.value.reason is DisconnectReason.TOO_MANY_PEERS
            host, _, port = address.removeprefix("tcp://").rpartition(":")
            stalled = await trio.open_tcp_stream(host, int(port))
            async with stalled:
                await stalled.send_all(b"\x00")  # a Noise length byte, and nothing after it
                # closed by the node's deadline: well before the 5 s default would close it
                with trio.fail_after(5 * limits.handshake_timeout):
                    assert await stalled.receive_some() == b""
