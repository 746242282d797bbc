"""A light wallet: check a balance and a payment without a full node, and without trusting one.

Run it with ``python examples/light_wallet.py``. The script first starts three validators on
loopback TCP (`p2pchain.testnet`) and pays a new address from one of their genesis wallets.
The wallet then opens a light client (`open_light_client`): it connects to the validators over
the peer protocol, follows finality from genesis with certificates (headers, the votes of two
thirds of the stake, and the stake table proven against a state root), and reads its balance
and the payment's inclusion from proofs it checks against the finalized headers. It keeps no
chain and no state.
"""

from __future__ import annotations

from dataclasses import replace

import trio

import p2pchain
from p2pchain import TxStatus
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.tx import TxOutput
from p2pchain.ledger.types import AssetId
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Wallet
from p2pchain.light import LightConfig, open_light_client
from p2pchain.params import COIN
from p2pchain.testing import TESTNET_PARAMS

PARAMS = replace(TESTNET_PARAMS, slot_ms=500, slots_per_epoch=4)
AMOUNT = 12 * COIN
TIMEOUT_S = 60.0


def coins(amount: int) -> str:
    return f"{amount / COIN:,.8f}"


async def main() -> None:
    async with p2pchain.testnet(3, params=PARAMS) as net:
        peers = tuple(
            address
            for validator in net.nodes
            for address in validator.info.listen_addresses
            if address.startswith("tcp://")
        )
        payer = net.wallets[0]
        wallet = Wallet(SecretKey.from_entropy(sha256(b"light_wallet example")), PARAMS)
        node = net.nodes[0]
        head = node.head()
        payment = payer.build_transfer(
            node.utxos(payer.address),
            [TxOutput(asset=AssetId(PARAMS.native_asset), amount=AMOUNT, address=wallet.address)],
            fee=10_000,
            context=BlockContext(height=head.height + 1, slot=head.slot + 1),
        )
        txid = await node.submit_transaction(payment)
        print(f"paid {coins(AMOUNT)} to {wallet.address_text} in {txid.hex()[:16]}")
        with trio.fail_after(TIMEOUT_S):
            await node.wait_for_status(txid, TxStatus.FINALIZED)

        # The light wallet: the network's parameters and genesis, and full nodes to ask.
        config = LightConfig(params=net.params, genesis=net.genesis, peers=peers)
        async with open_light_client(config) as client:
            with trio.fail_after(TIMEOUT_S):
                finalized = await client.sync()
                header = client.finalized_header()
                print(f"verified finality up to epoch {finalized.epoch}, height {header.height}")
                print(f"state root {header.state_root.hex()[:16]}")
                print(f"proven balance: {coins(await client.balance(wallet.address))}")
                found = await client.transaction(txid)
                if found is None:
                    raise SystemExit("the payment is not in a block the client verified")
                block, _ = found
                print(
                    f"payment proven in block {block.block_id.hex()[:16]} at height {block.height}"
                )
                stakes = await client.validators()
                print(f"validators: {len(stakes)}, bonded {coins(sum(stakes.values()))}")
        print("light client closed")


if __name__ == "__main__":
    trio.run(main)
