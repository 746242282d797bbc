"""A client's submission is not lost: it survives a crash of the node that acknowledged it,
and it reaches peers that connect after it was accepted.

A real node process with a data directory (no validator key, so nothing is ever included)
acknowledges a payment over JSON-RPC and is SIGKILLed at once; started again on the same
directory, it holds the payment as pending. Kept submissions are admitted again like new ones,
so one that became invalid meanwhile is dropped rather than trusted.
"""

import contextlib
import sqlite3
from pathlib import Path

import pytest

from p2pchain.cli.wallet import send
from p2pchain.ledger.address import address_of, encode_address
from p2pchain.ledger.encoding import encode
from p2pchain.ledger.genesis import genesis_block
from p2pchain.ledger.tx import OutPoint, Transaction, TxOutput
from p2pchain.ledger.types import Amount, AssetId, Height
from p2pchain.ledger.wallet import Wallet
from p2pchain.node.config import DATABASE_FILE
from p2pchain.params import COIN
from p2pchain.protocol.messages import Publish, Topic
from p2pchain.testing.adversary import SecurePeer
from tests.robustness.harness import HONEST_SOURCE, restart_node, start_node

pytestmark = pytest.mark.timeout(120)


async def test_a_payment_acknowledged_right_before_a_sigkill_is_pending_after_restart(
    tmp_path: Path,
) -> None:
    node = start_node(tmp_path)
    try:
        prefix = node.params.address_prefix
        addresses = [encode_address(address_of(key.public_key), prefix) for key in node.wallet_keys]
        txids = [
            await send(
                node.rpc_url,
                key_file,
                addresses[1 - index],
                (index + 1) * COIN,
                asset=None,
                fee=10_000,
                wait=False,
            )
            for index, key_file in enumerate(node.wallet_key_files[:2])
        ]
        node.kill()  # no shutdown code runs
        database = node.directory / "data" / DATABASE_FILE
        with contextlib.closing(sqlite3.connect(database)) as db, db:
            db.execute(
                "INSERT INTO submitted (txid, seq, data) VALUES (?, 99, ?)", (bytes(32), b"junk")
            )
        restart_node(node)
        for txid in txids:
            info = await node.rpc("tx_get", txid)
            assert isinstance(info, dict)
            assert info["status"] == "pending", info
        status = await node.rpc("mempool_status")
        assert isinstance(status, dict)
        assert status["size"] == len(txids) == 2
        with contextlib.closing(sqlite3.connect(database)) as db:
            kept = {"0x" + row[0].hex() for row in db.execute("SELECT txid FROM submitted")}
        assert kept == set(txids)  # the undecodable one was dropped, not trusted
    finally:
        node.stop()


async def test_a_submission_accepted_without_peers_reaches_the_first_peer_that_connects(
    tmp_path: Path,
) -> None:
    """The node had nobody to gossip to when it accepted the payment; a peer connecting later
    (a raw peer of the test's own) is sent it without asking."""
    node = start_node(tmp_path)
    try:
        prefix = node.params.address_prefix
        payee = encode_address(address_of(node.wallet_keys[1].public_key), prefix)
        txid = await send(
            node.rpc_url, node.wallet_key_files[0], payee, COIN, asset=None, fee=10_000, wait=False
        )
        info = await node.rpc("tx_get", txid)
        assert isinstance(info, dict)
        peer = await SecurePeer.connect(node, "tcp", HONEST_SOURCE)
        try:

            def got_it() -> bool:
                return any(
                    isinstance(m, Publish)
                    and m.topic is Topic.TRANSACTION
                    and "0x" + Transaction.from_bytes(m.data).txid.hex() == txid
                    for m in peer.received
                )

            await peer.wait_for(got_it)
            assert got_it(), peer.ending
        finally:
            await peer.aclose()
    finally:
        node.stop()


async def test_an_offer_acknowledged_right_before_a_sigkill_is_in_the_book_after_restart(
    tmp_path: Path,
) -> None:
    """`offer_submit`'s answer is a promise too: the offer is on disk before it, a restarted
    node puts it in its book again, and a kept row that no longer holds is forgotten."""
    node = start_node(tmp_path)
    try:
        reward = genesis_block(node.genesis, node.params).transactions[0]
        maker = Wallet(node.wallet_keys[0], node.params)
        index = next(i for i, o in enumerate(reward.outputs) if o.address == maker.address)
        coin = (OutPoint(txid=reward.txid, index=index), reward.outputs[index])
        wanted = TxOutput(
            asset=AssetId(node.params.native_asset), amount=Amount(COIN), address=maker.address
        )
        offer = maker.make_offer(coin, wanted, until=Height(10**6))
        offer_id = await node.rpc("offer_submit", "0x" + encode(offer).hex())
        node.kill()  # no shutdown code runs
        database = node.directory / "data" / DATABASE_FILE
        with contextlib.closing(sqlite3.connect(database)) as db, db:
            assert db.execute("SELECT COUNT(*) FROM kept_offers").fetchone() == (1,)
            db.execute(
                "INSERT INTO kept_offers (offer_id, seq, data) VALUES (?, 99, ?)",
                (bytes(32), b"junk"),
            )
        restart_node(node)
        entry = await node.rpc("offer_get", offer_id)
        assert isinstance(entry, dict)
        assert entry["raw"] == "0x" + encode(offer).hex()
        with contextlib.closing(sqlite3.connect(database)) as db:
            kept = db.execute("SELECT offer_id FROM kept_offers").fetchall()
        assert kept == [(bytes.fromhex(str(offer_id)[2:]),)]
    finally:
        node.stop()
