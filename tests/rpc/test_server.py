"""The RPC server on a running node, driven by the `websockets` package as the client."""

import json
import socket
import struct
from dataclasses import replace

import pytest
import trio
from rpc_harness import PARAMS, WAIT_S, Client
from websockets.exceptions import InvalidStatus

from p2pchain import __version__
from p2pchain.ledger.address import encode_address
from p2pchain.ledger.tx import OutPoint, TxInput
from p2pchain.ledger.types import TxId
from p2pchain.ledger.validation import BlockContext
from p2pchain.node import EventKind, TxStatus
from p2pchain.params import COIN
from p2pchain.rpc import RpcLimits, serve_rpc
from p2pchain.testing.testnet import testnet

INVALID_PARAMS = -32602
REJECTED = -32000
LIMIT_EXCEEDED = -32005


def hx(data: bytes) -> str:
    return "0x" + data.hex()


def text_of(address: bytes) -> str:
    return encode_address(address, PARAMS.address_prefix)


async def test_node_info_head_finalized_syncing_and_mempool(served):
    node, net = served.node, served.net
    client = await Client.connect(served.server.url)
    assert await client.call("p2p_nodeInfo") == {
        "nodeId": hx(node.info.node_id),
        "chainId": PARAMS.chain_id,
        "genesis": hx(node.info.genesis),
        "addressPrefix": PARAMS.address_prefix,
        "listenAddresses": list(node.info.listen_addresses),
        "announcedAddresses": list(node.info.listen_addresses),  # no advertise, no public_addr
        "rpcUrl": served.server.url,
        "validator": hx(net.validator_keys[0].public_key),
        "version": __version__,
    }
    with trio.fail_after(WAIT_S):
        await net.wait_finalized(1)

    head = await client.call("chain_head")
    assert head["height"] >= 1
    block = node.get_block_at_height(head["height"])
    assert head == {
        "blockId": hx(block.block_id),
        "height": block.header.height,
        "slot": block.header.slot,
    }

    finalized = await client.call("chain_finalized")
    assert finalized["epoch"] >= 1
    block = node.get_block(bytes.fromhex(finalized["blockId"][2:]))
    assert finalized["height"] == block.header.height

    syncing = await client.call("chain_syncing")
    assert syncing["syncing"] is False
    assert syncing["targetHeight"] >= syncing["headHeight"] >= head["height"]

    assert await client.call("net_peers") == []
    mempool = await client.call("mempool_status")
    assert mempool["size"] == node.mempool_size() == 0
    assert mempool["fees"] == "0"
    await client.close()


async def test_get_block_by_height_id_and_tag(served):
    node, net = served.node, served.net
    client = await Client.connect(served.server.url)
    with trio.fail_after(WAIT_S):
        await net.wait_height(2)
    block = node.get_block_at_height(2)
    by_height = await client.call("chain_getBlock", 2)
    assert by_height == await client.call("chain_getBlock", hx(block.block_id))
    assert by_height["blockId"] == hx(block.block_id)
    assert by_height["parent"] == hx(node.get_block_at_height(1).block_id)
    assert (by_height["height"], by_height["slot"]) == (2, block.header.slot)
    assert by_height["epoch"] == block.header.slot // PARAMS.slots_per_epoch
    assert by_height["proposer"] == hx(net.validator_keys[0].public_key)
    assert by_height["canonical"] is True
    assert by_height["transactions"] == [hx(tx.txid) for tx in block.transactions]
    assert by_height["votes"] == len(block.votes)

    full = await client.call("chain_getBlock", block=2, full=True)
    reward = full["transactions"][0]
    assert reward["kind"] == "reward"
    assert reward["payload"] == {"height": 2}
    assert reward["raw"] == hx(block.transactions[0].encoded)
    assert len(full["votes"]) == len(block.votes)

    genesis = await client.call("chain_getBlock", 0)
    assert genesis["blockId"] == hx(node.info.genesis)
    assert (await client.call("chain_getBlock", "finalized"))["height"] >= 0
    assert (await client.call("chain_getBlock", "head"))["height"] >= 2
    assert await client.call("chain_getBlock", 10**9) is None
    assert await client.call("chain_getBlock", hx(bytes(32))) is None
    for bad in ("latest", "0x1234", -1, True, None):
        response = await client.request("chain_getBlock", bad)
        assert response["error"]["code"] == INVALID_PARAMS
    await client.close()


async def test_a_submitted_transfer_goes_pending_included_finalized(served):
    node, net = served.node, served.net
    client = await Client.connect(served.server.url)
    subscription = await client.call("p2p_subscribe", "txStatus")
    recipient = net.wallets[1]
    tx = net.transfer(0, recipient.address, 3 * COIN)
    txid = await client.call("tx_submit", hx(tx.encoded))
    assert txid == hx(tx.txid)

    statuses = []
    with trio.fail_after(WAIT_S):
        while not statuses or statuses[-1] != "finalized":
            notification = await client.notification()
            assert notification["subscription"] == subscription
            if notification["result"]["txid"] == txid:
                statuses.append(notification["result"]["status"])
    assert statuses == ["pending", "included", "finalized"]

    info = node.get_transaction(tx.txid)
    got = await client.call("tx_get", txid)
    assert got["status"] == "finalized"
    assert (got["blockId"], got["height"], got["reason"]) == (hx(info.block_id), info.height, None)
    assert got["tx"]["raw"] == hx(tx.encoded)
    assert got["tx"]["kind"] == "transfer"
    assert {"address": recipient.address_text, "amount": str(3 * COIN)}.items() <= got["tx"][
        "outputs"
    ][0].items()
    block = await client.call("chain_getBlock", info.height)
    assert txid in block["transactions"]

    balances = await client.call("address_balances", recipient.address_text)
    assert balances == {hx(PARAMS.native_asset): str(node.balance(recipient.address))}
    utxos = await client.call("address_utxos", recipient.address_text)
    assert [(u["txid"], u["index"], u["amount"]) for u in utxos] == [
        (hx(op.txid), op.index, str(out.amount)) for op, out in node.utxos(recipient.address)
    ]
    assert any(u["txid"] == txid and u["amount"] == str(3 * COIN) for u in utxos)
    assert len(await client.call("address_utxos", recipient.address_text, 1)) == 1
    unknown = await client.call("tx_get", hx(bytes(32)))
    assert unknown == {
        "txid": hx(bytes(32)),
        "status": "unknown",
        "blockId": None,
        "height": None,
        "reason": None,
        "tx": None,
    }
    for bad in ("dp2p1qqqq", text_of(bytes(20)).replace("dp2p", "tp2p", 1), 5):
        response = await client.request("address_balances", bad)
        assert response["error"]["code"] == INVALID_PARAMS
    await client.close()


async def test_invalid_transactions_are_rejected_with_their_reason_code(served):
    node, net = served.node, served.net
    client = await Client.connect(served.server.url)
    good = net.transfer(0, net.wallets[1].address, COIN)
    unsigned = good.with_inputs(tuple(replace(i, signature=bytes(64)) for i in good.inputs))
    response = await client.request("tx_submit", hx(unsigned.encoded))
    assert response["error"]["code"] == REJECTED
    assert response["error"]["data"] == {"reason": "bad-signature"}
    got = await client.call("tx_get", hx(unsigned.txid))
    assert (got["status"], got["reason"]) == ("rejected", "bad-signature")

    nowhere = net.wallets[0].sign(
        good.with_inputs((TxInput(outpoint=OutPoint(txid=TxId(bytes(32)), index=0)),))
    )
    response = await client.request("tx_submit", hx(nowhere.encoded))
    assert response["error"]["data"] == {"reason": "missing-input"}

    response = await client.request("tx_submit", "0xc0")
    assert response["error"]["code"] == REJECTED
    assert response["error"]["data"] == {"reason": "malformed"}
    for not_hex in ("c0", "0xc", "0xzz", 12):
        response = await client.request("tx_submit", not_hex)
        assert response["error"]["code"] == INVALID_PARAMS
    assert node.mempool_size() == 0
    await client.close()


async def test_an_issued_asset_is_described_and_counted_per_asset(served):
    node, net = served.node, served.net
    client = await Client.connect(served.server.url)
    issuer = net.wallets[2]
    head = node.head()
    tx, asset = issuer.build_issue(
        node.utxos(issuer.address),
        name=b"carbon-t",
        amount=1_000,
        cap=5_000,
        fee=10_000,
        context=BlockContext(height=head.height + 1, slot=head.slot + 1),
    )
    assert await client.call("asset_get", hx(asset)) is None
    await client.call("tx_submit", hx(tx.encoded))
    with trio.fail_after(WAIT_S):
        await node.wait_for_status(tx.txid, TxStatus.INCLUDED)
    assert await client.call("asset_get", hx(asset)) == {
        "asset": hx(asset),
        "name": "carbon-t",
        "nameHex": hx(b"carbon-t"),
        "issuer": issuer.address_text,
        "cap": "5000",
        "issued": "1000",
    }
    balances = await client.call("address_balances", issuer.address_text)
    assert balances[hx(asset)] == "1000"
    assert balances[hx(PARAMS.native_asset)] == str(node.balance(issuer.address))
    issue = (await client.call("tx_get", hx(tx.txid)))["tx"]
    assert issue["kind"] == "issue"
    assert issue["payload"] == {"name": "carbon-t", "nameHex": hx(b"carbon-t"), "cap": "5000"}
    await client.close()


async def test_batches_and_protocol_errors_over_the_socket(served):
    client = await Client.connect(served.server.url)
    await client.send_json(
        [
            {"jsonrpc": "2.0", "id": "a", "method": "chain_head"},
            {"jsonrpc": "2.0", "method": "chain_head"},
            {"jsonrpc": "2.0", "id": "b", "method": "no_such_method"},
            {"jsonrpc": "2.0", "id": "c", "method": "tx_get", "params": ["0x12"]},
        ]
    )
    responses = await client.response()
    assert [r["id"] for r in responses] == ["a", "b", "c"]
    assert responses[0]["result"]["height"] >= 0
    assert responses[1]["error"]["code"] == -32601
    assert responses[2]["error"]["code"] == INVALID_PARAMS

    await client.send("{oops")
    assert await client.response() == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32700, "message": "parse error"},
    }
    await client.send_json([])
    assert (await client.response())["error"]["code"] == -32600
    await client.send_json(
        [{"jsonrpc": "2.0", "id": i, "method": "chain_head"} for i in range(101)]
    )
    assert (await client.response())["error"]["code"] == LIMIT_EXCEEDED
    oversize = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "x", "params": ["y" * (1 << 20)]})
    await client.send(oversize)
    assert (await client.response())["error"]["code"] == LIMIT_EXCEEDED
    assert (await client.call("chain_syncing"))["syncing"] is False  # the session goes on

    await client.send("z" * ((2 << 20) + 1))  # above the WebSocket frame limit: the server hangs up
    closed = await client.wait_closed()
    assert closed.rcvd.code == 1009
    await client.close()


async def test_new_heads_and_finalized_subscriptions(served):
    node = served.node
    client = await Client.connect(served.server.url)
    heads = await client.call("p2p_subscribe", "newHeads")
    finalized = await client.call("p2p_subscribe", "finalized")
    assert heads != finalized
    seen_heads, seen_finalized = [], []
    with trio.fail_after(WAIT_S):
        while len(seen_heads) < 3 or not seen_finalized:
            notification = await client.notification()
            if notification["subscription"] == heads:
                seen_heads.append(notification["result"])
            else:
                assert notification["subscription"] == finalized
                seen_finalized.append(notification["result"])
    for head in seen_heads:
        block = node.get_block(bytes.fromhex(head["blockId"][2:]))
        assert (head["height"], head["slot"]) == (block.header.height, block.header.slot)
    heights = [head["height"] for head in seen_heads]
    assert heights == sorted(set(heights))
    assert seen_finalized[0]["epoch"] >= 1
    assert node.get_block(bytes.fromhex(seen_finalized[0]["blockId"][2:])) is not None

    assert await client.call("p2p_unsubscribe", heads) is True
    assert await client.call("p2p_unsubscribe", heads) is False
    assert await client.call("p2p_unsubscribe", finalized) is True
    client.notifications.clear()  # sent before the unsubscriptions were answered
    again = await client.call("p2p_subscribe", topic="newHeads")
    with trio.fail_after(WAIT_S):
        later = [await client.notification() for _ in range(2)]
    assert {n["subscription"] for n in later} == {again}
    response = await client.request("p2p_subscribe", "everything")
    assert response["error"]["code"] == INVALID_PARAMS
    await client.close()


async def test_connection_and_subscription_limits(served):
    server = await served.start_server(RpcLimits(max_connections=1, max_subscriptions=1))
    first = await Client.connect(server.url)
    with pytest.raises(InvalidStatus) as refused:
        await Client.connect(server.url)
    assert refused.value.response.status_code == 503
    assert server.statistics().connections_refused == 1
    await first.call("p2p_subscribe", "peers")
    response = await first.request("p2p_subscribe", "newHeads")
    assert response["error"]["code"] == LIMIT_EXCEEDED
    assert server.statistics().subscriptions == 1
    await first.close()
    with trio.fail_after(WAIT_S):
        await served.net.wait_for(lambda: server.statistics().connections == 0)
    second = await Client.connect(server.url)
    assert (await second.call("chain_head"))["height"] >= 0
    await second.close()


async def test_a_slow_client_is_dropped_and_others_keep_up(served):
    node, net = served.node, served.net
    server = await served.start_server(RpcLimits(send_queue=4))
    steady = await Client.connect(server.url)
    steady_heads = await steady.call("p2p_subscribe", "newHeads")
    slow = await Client.connect(server.url, small_receive_buffer=True, max_queue=1)
    await slow.call("p2p_subscribe", "newHeads")
    batch = json.dumps([{"jsonrpc": "2.0", "id": i, "method": "p2p_nodeInfo"} for i in range(50)])
    for _ in range(30):  # ~600 kB of answers it never reads
        await slow.send(batch)
    with trio.fail_after(WAIT_S):
        await net.wait_for(lambda: server.statistics().clients_dropped == 1)
    dropped_at = node.head().height
    await slow.wait_closed()
    with trio.fail_after(WAIT_S):
        while True:
            notification = await steady.notification()
            assert notification["subscription"] == steady_heads
            if notification["result"]["height"] > dropped_at + 1:
                break
    assert server.statistics().connections == 1
    await steady.close()
    await slow.close()


async def test_peers_are_listed_and_peer_events_notified():
    async with testnet(2, params=PARAMS) as net, trio.open_nursery() as nursery:
        first, second = net.nodes
        server = await nursery.start(serve_rpc, first)
        client = await Client.connect(server.url)
        with trio.fail_after(WAIT_S):
            async with first.subscribe([EventKind.PEER], since=0) as events:
                connected = await events.__anext__()  # the node noticed the peer (it polls)
        assert connected.data.connected is True
        [peer] = await client.call("net_peers")
        assert peer["peerId"] == hx(second.info.node_id)
        assert peer["direction"] in ("inbound", "outbound")
        second_id = second.info.node_id
        subscription = await client.call("p2p_subscribe", "peers")
        await net.stop_node(1)
        with trio.fail_after(WAIT_S):
            notification = await client.notification()
        assert notification == {
            "subscription": subscription,
            "result": {"peerId": hx(second_id), "address": peer["address"], "connected": False},
        }
        await client.close()
        nursery.cancel_scope.cancel()


def _vanishing_clients(url: str) -> None:
    """Clients that leave at awkward moments: mid-handshake, and right after asking."""
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    upgrade = (
        f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    for payload in (b"", b"GET / HTT", upgrade, b"not http at all\r\n\r\n"):
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(payload)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def test_clients_that_vanish_do_not_disturb_the_server(served):
    for _ in range(5):
        await trio.to_thread.run_sync(_vanishing_clients, served.server.url)
    leaving = await Client.connect(served.server.url)
    await leaving.call("p2p_subscribe", "newHeads")
    await leaving.send_json({"jsonrpc": "2.0", "id": 1, "method": "p2p_nodeInfo"})
    await leaving.close()
    client = await Client.connect(served.server.url)
    assert (await client.call("chain_head"))["height"] >= 0
    with trio.fail_after(WAIT_S):
        await served.net.wait_for(lambda: served.server.statistics().connections == 1)
    await client.close()
