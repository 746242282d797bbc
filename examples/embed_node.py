"""Embed a p2pchain node in an application: join a network, pay someone, wait for finality.

Run it with ``python examples/embed_node.py``. To have a network to join, the script first
starts three validators on loopback TCP (`p2pchain.testnet`). The application then opens its
own node with `open_node`: a non-validating node that dials the validators as bootnodes,
syncs their chain and relays the application's transactions over real sockets.
"""

from __future__ import annotations

from dataclasses import replace

import trio

import p2pchain
from p2pchain import NodeConfig, TxStatus, open_node
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.tx import TxOutput
from p2pchain.ledger.types import AssetId
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Wallet
from p2pchain.params import COIN
from p2pchain.testing import TESTNET_PARAMS

PARAMS = replace(TESTNET_PARAMS, slot_ms=500, slots_per_epoch=4)
AMOUNT = 25 * COIN
FEE = 10_000
TIMEOUT_S = 60.0


def coins(amount: int) -> str:
    return f"{amount / COIN:,.8f}"


async def main() -> None:
    async with p2pchain.testnet(3, params=PARAMS) as net:
        bootnodes = tuple(
            address
            for validator in net.nodes
            for address in validator.info.listen_addresses
            if address.startswith("tcp://")
        )

        # The application's node: same genesis and parameters as the network, no validator
        # key, in-memory storage (pass data_dir= to keep the chain across restarts).
        config = NodeConfig(genesis=net.genesis, params=net.params, bootnodes=bootnodes)
        async with open_node(config) as node:
            print(f"app node {node.info.node_id.hex()[:12]} listening on")
            for address in node.info.listen_addresses:
                print(f"  {address}")

            with trio.fail_after(TIMEOUT_S):
                await node.wait_for(lambda n: len(n.peers()) >= len(net.nodes))
                print(f"connected to {len(node.peers())} peers")
                # Catch up with the validators before reading balances.
                await node.wait_for(lambda n: n.head().height >= net.nodes[0].head().height >= 2)
            head = node.head()
            print(f"synced to height {head.height}, head {head.block_id.hex()[:12]}")

            # The payer's wallet was funded in the testnet's genesis; the payee is new.
            payer = net.wallets[0]
            payee = Wallet(SecretKey.from_entropy(sha256(b"embed_node example payee")), PARAMS)
            native = AssetId(PARAMS.native_asset)
            print(f"payer {payer.address_text}: {coins(node.balance(payer.address))}")
            print(f"payee {payee.address_text}: {coins(node.balance(payee.address))}")

            # The wallet is pure: it takes the payer's outputs and the block the payment targets.
            payment = TxOutput(asset=native, amount=AMOUNT, address=payee.address)
            tx = payer.build_transfer(
                node.utxos(payer.address),
                [payment],
                fee=FEE,
                context=BlockContext(height=head.height + 1, slot=head.slot + 1),
            )
            txid = await node.submit_transaction(tx)
            print(f"submitted payment {txid.hex()[:16]}: {node.get_transaction(txid).status}")

            with trio.fail_after(TIMEOUT_S):
                included = await node.wait_for_status(txid, TxStatus.INCLUDED)
                print(f"included at height {included.height}")
                final = await node.wait_for_status(txid, TxStatus.FINALIZED)
            assert final.block_id is not None
            block = node.get_block(final.block_id)
            assert block is not None
            proposer = [k.public_key for k in net.validator_keys].index(block.header.proposer)
            print(f"finalized in block {final.block_id.hex()[:16]} at height {final.height}")
            print(f"  slot {block.header.slot}, {len(block.transactions)} transactions")
            print(f"  proposed by validator {proposer} ({block.header.proposer.hex()[:16]})")
            print(f"  finalized checkpoint: epoch {node.finalized().epoch}")
            print(f"payer {payer.address_text}: {coins(node.balance(payer.address))}")
            print(f"payee {payee.address_text}: {coins(node.balance(payee.address))}")
    print("node closed")


if __name__ == "__main__":
    trio.run(main)
