"""A node process for the SIGKILL test: one validator on a data directory, busy with payments.

Run as ``python node_kill_worker.py DATA_DIR GENESIS_TIME_MS``: open the node (resuming from
DATA_DIR), keep a payment in the pool at all times, and print ``ACK <height> <block id hex>``
for every new head. A NEW_HEAD event is published only after the head is durable, so every
acknowledged block must survive a SIGKILL at any moment.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import trio

from p2pchain import EventKind, NodeConfig, open_node
from p2pchain.errors import InsufficientFunds, InvalidTransaction
from p2pchain.ledger.genesis import GenesisConfig
from p2pchain.ledger.tx import TxOutput
from p2pchain.ledger.types import AssetId
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Wallet
from p2pchain.node import HeadInfo, Node
from p2pchain.params import COIN
from p2pchain.testing.testnet import TESTNET_PARAMS, derive_key, make_testnet_genesis

PARAMS = replace(TESTNET_PARAMS, slot_ms=100)
VALIDATOR = derive_key(77, "validator", 0)
WALLETS = [Wallet(derive_key(77, "wallet", i), PARAMS) for i in range(2)]


def genesis_config(genesis_time_ms: int) -> GenesisConfig:
    return make_testnet_genesis(
        PARAMS,
        [VALIDATOR],
        WALLETS,
        genesis_time_ms=genesis_time_ms,
        stake=100 * COIN,
        balance=1_000 * COIN,
    )


def node_config(data_dir: Path, genesis_time_ms: int) -> NodeConfig:
    return NodeConfig(
        genesis=genesis_config(genesis_time_ms),
        params=PARAMS,
        data_dir=data_dir,
        listen=("tcp://127.0.0.1:0",),
        validator_key=VALIDATOR,
    )


async def _pay(node: Node, turn: int) -> None:
    payer, payee = WALLETS[turn % 2], WALLETS[(turn + 1) % 2]
    head = node.head()
    context = BlockContext(height=head.height + 1, slot=head.slot + 1)
    payment = TxOutput(asset=AssetId(PARAMS.native_asset), amount=COIN, address=payee.address)
    try:
        tx = payer.build_transfer(node.utxos(payer.address), [payment], fee=1_000, context=context)
        await node.submit_transaction(tx)
    except (InsufficientFunds, InvalidTransaction):
        return  # the payer's change is still in the pool: the other wallet pays next time


async def main(data_dir: Path, genesis_time_ms: int) -> None:
    async with (
        open_node(node_config(data_dir, genesis_time_ms)) as node,
        node.subscribe([EventKind.NEW_HEAD]) as heads,
    ):
        turn = 0
        async for event in heads:
            assert isinstance(event.data, HeadInfo)
            print(f"ACK {event.data.height} {event.data.block_id.hex()}", flush=True)
            if node.mempool_size() == 0:
                await _pay(node, turn)
                turn += 1


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]), int(sys.argv[2]))
