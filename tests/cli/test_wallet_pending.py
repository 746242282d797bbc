"""The CLI wallet builds on its own pending payments: sends in one slot chain on unconfirmed
change, and parallel sends of one wallet do not collide (a real node process that makes no
blocks, so every payment stays pending)."""

from pathlib import Path

import pytest
import trio

from p2pchain.cli.wallet import send
from p2pchain.ledger.address import address_of, encode_address
from p2pchain.params import COIN
from tests.robustness.harness import start_node

pytestmark = pytest.mark.timeout(120)


async def test_sequential_and_parallel_sends_of_one_wallet_all_go_through(tmp_path: Path) -> None:
    node = start_node(tmp_path)
    try:
        payee = encode_address(address_of(node.wallet_keys[1].public_key), "dp2p")
        key_file = node.wallet_key_files[0]
        txids = [
            await send(node.rpc_url, key_file, payee, COIN, asset=None, fee=10_000, wait=False)
            for _ in range(2)
        ]

        async def pay(amount: int) -> None:
            txid = await send(
                node.rpc_url, key_file, payee, amount, asset=None, fee=10_000, wait=False
            )
            txids.append(txid)

        async with trio.open_nursery() as nursery:
            for amount in (2 * COIN, 3 * COIN, 4 * COIN):
                nursery.start_soon(pay, amount)
        assert len(set(txids)) == 5
        for txid in txids:
            info = await node.rpc("tx_get", txid)
            assert isinstance(info, dict)
            assert info["status"] == "pending", info
        pending = await node.rpc("address_utxos", payee, 1000, True)
        confirmed = await node.rpc("address_utxos", payee)
        assert isinstance(pending, list)
        assert isinstance(confirmed, list)
        assert len(pending) == len(confirmed) + 5  # every payment's output, not yet on chain
    finally:
        node.stop()
