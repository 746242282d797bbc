"""Method handlers behind the envelope, on a simulated node in virtual time (no sockets)."""

import json
import random

from p2pchain.errors import Reason
from p2pchain.rpc import Dispatcher, NodeMethods
from p2pchain.testing.simnet import SimulatedNetwork
from p2pchain.testing.testnet import testnet

REASONS = {reason.value for reason in Reason}


def mutate(data: bytes, rng: random.Random) -> bytes:
    mutated = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        position = rng.randrange(len(mutated))
        choice = rng.random()
        if choice < 0.6:
            mutated[position] = rng.randrange(256)
        elif choice < 0.8:
            del mutated[position]
        else:
            mutated.insert(position, rng.randrange(256))
    return bytes(mutated)


async def test_corrupted_transactions_are_rejected_with_a_reason_never_an_internal_error(
    autojump_clock,
):
    async with testnet(1, transport=SimulatedNetwork(seed=5)) as net:
        node = net.nodes[0]
        dispatcher = Dispatcher(NodeMethods(node).table())
        raw = net.transfer(0, net.wallets[1].address, 10**8).encoded
        rng = random.Random(7)
        outcomes = set()
        for request_id in range(400):
            data = mutate(raw, rng)
            request = {"jsonrpc": "2.0", "id": request_id, "method": "tx_submit"}
            request["params"] = ["0x" + data.hex()]
            response = json.loads(await dispatcher.handle(json.dumps(request)))
            assert response["id"] == request_id
            if "error" in response:
                assert response["error"]["code"] == -32000, response
                assert response["error"]["data"]["reason"] in REASONS
                outcomes.add(response["error"]["data"]["reason"])
            else:
                assert node.get_transaction(bytes.fromhex(response["result"][2:])).status in (
                    "pending",
                    "included",
                    "finalized",
                )
        assert {"malformed", "bad-signature"} <= outcomes


async def test_nodes_that_agree_on_the_finalized_block_report_one_state_root(autojump_clock):
    async with testnet(3, transport=SimulatedNetwork(seed=6)) as net:
        await net.wait_finalized(2)
        tx = net.transfer(0, net.wallets[1].address, 10**8)
        await net.nodes[0].submit_transaction(tx)
        await net.wait_for(
            lambda: all(n.get_transaction(tx.txid).status == "finalized" for n in net.nodes)
        )
        roots = {}
        for node in net.nodes:
            dispatcher = Dispatcher(NodeMethods(node).table())
            request = {"jsonrpc": "2.0", "id": 1, "method": "chain_stateRoot", "params": [0]}
            below = json.loads(await dispatcher.handle(json.dumps(request)))["result"]
            genesis = node.get_block_at_height(0)
            assert genesis is not None  # an old block's root comes from its header
            assert below["stateRoot"] == "0x" + genesis.header.state_root.hex()
            request["params"] = ["finalized"]
            result = json.loads(await dispatcher.handle(json.dumps(request)))["result"]
            roots[result["blockId"]] = roots.get(result["blockId"], set()) | {result["stateRoot"]}
            assert result["stateRoot"] == "0x" + node.state_root(node.finalized().block_id).hex()
        assert all(len(found) == 1 for found in roots.values()), roots
