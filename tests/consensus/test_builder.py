"""Block building: valid blocks, transaction selection, size limit, rewards with maturity."""

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from p2pchain.consensus import (
    build_block,
    get_head,
    get_head_view,
    get_proposer,
    on_block,
)
from p2pchain.consensus.builder import BLOCK_OVERHEAD_BYTES
from p2pchain.ledger.address import address_of
from p2pchain.ledger.encoding import encode
from p2pchain.ledger.tx import LockKind, OutPoint, TxOutput
from p2pchain.ledger.types import AssetId
from p2pchain.ledger.validation import BlockContext, reward_lock
from p2pchain.ledger.wallet import Wallet
from p2pchain.params import COIN
from p2pchain.testing.consensus import CONSENSUS_PARAMS, Simulation

STAKES = [COIN, 2 * COIN, 3 * COIN, 4 * COIN]


def transfers(sim, count, fee):
    """`count` independent transfers (one per funded key), each paying `fee`."""
    view = get_head_view(sim.store)
    height = view.height + 1
    context = BlockContext(height=height, slot=sim.slot + 1)
    made = []
    for key in list(sim.keys.values())[:count]:
        wallet = Wallet(key, sim.params)
        coins = [c for c in view.utxos_of(wallet.address) if c[1].lock.kind is LockKind.NONE]
        payment = TxOutput(
            asset=AssetId(sim.params.native_asset), amount=COIN, address=address_of(bytes(32))
        )
        made.append(wallet.build_transfer(coins, [payment], fee=fee, context=context))
    return made


def propose(sim, **kwargs):
    slot = sim.slot + 1
    head = get_head(sim.store)
    key = sim.keys[get_proposer(sim.store, head, slot)]
    return build_block(sim.store, head, slot, key, **kwargs)


@given(st.integers(min_value=1, max_value=4), st.integers(min_value=0, max_value=10_000))
def test_built_block_is_valid_and_pays_reward_plus_fees(count, fee):
    sim = Simulation.create(STAKES)
    sim.run_slot()
    txs = transfers(sim, count, fee)
    forged = replace(txs[0], inputs=(replace(txs[0].inputs[0], signature=bytes(64)),))
    double_spend = transfers(sim, 1, fee + 1)[0]  # spends the same coin as txs[0]
    block = propose(sim, transactions=[forged, *txs, double_spend])
    assert block.transactions[1:] == tuple(txs)
    on_block(sim.store, block, sim.slot + 1)
    assert get_head(sim.store) == block.block_id
    (reward,) = block.transactions[0].outputs
    assert reward.amount == sim.params.block_reward + count * fee
    assert reward.address == address_of(block.header.proposer)
    assert reward.lock == reward_lock(block.header.height, sim.params)


def test_block_respects_the_byte_limit():
    sim = Simulation.create(STAKES)
    sim.run_slot()
    txs = transfers(sim, 4, 1_000)
    tx_size = txs[0].size
    limit = BLOCK_OVERHEAD_BYTES + 2 * tx_size + tx_size // 2
    small = replace(CONSENSUS_PARAMS, max_block_bytes=limit)
    sim = Simulation.create(STAKES, params=small)
    sim.run_slot()
    block = propose(sim, transactions=transfers(sim, 4, 1_000))
    assert len(block.transactions) == 3
    assert len(encode(block)) <= limit
    on_block(sim.store, block, sim.slot + 1)


def test_reward_is_spendable_only_after_maturity():
    sim = Simulation.create(STAKES)
    sim.run_slot()
    first = get_head(sim.store)
    block = sim.store.nodes[first].block
    reward_tx = block.transactions[0]
    owner = sim.keys[block.header.proposer]
    wallet = Wallet(owner, sim.params)
    coin = (OutPoint(txid=reward_tx.txid, index=0), reward_tx.outputs[0])
    maturity = reward_tx.outputs[0].lock.value
    while True:
        height = get_head_view(sim.store).height + 1
        context = BlockContext(height=height, slot=sim.slot + 1)
        payment = TxOutput(
            asset=AssetId(sim.params.native_asset), amount=COIN, address=address_of(bytes(32))
        )
        spend = wallet.build_transfer(
            [coin], [payment], fee=0, context=replace(context, height=maturity)
        )
        built = propose(sim, transactions=[spend])
        assert (spend in built.transactions) == (height >= maturity)
        if height >= maturity:
            break
        sim.run_slot()
