"""A sync batch's witnesses are verified one block ahead of its import, in a worker thread."""

import threading
from types import SimpleNamespace

import trio
from hypothesis import given
from hypothesis import strategies as st
from solo_node import solo_config

from p2pchain import open_node
from p2pchain.consensus import build_block, get_forkchoice_store, on_block, on_tick
from p2pchain.ledger import validation
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Wallet
from p2pchain.node import chain as chain_module
from p2pchain.node.host import _VerifyAhead
from p2pchain.params import COIN
from p2pchain.protocol.connection import PeerId
from p2pchain.testing.testnet import TESTNET_PARAMS, derive_key, make_testnet_genesis

PER_BLOCK = 8  # NodeLimits.offload_signatures: enough to go to the worker thread


def _two_blocks(seed):
    """A genesis and two blocks (slots 1 and 2, the second on the first), each with
    `PER_BLOCK` payments."""
    params = TESTNET_PARAMS
    key = derive_key(seed, "validator", 0)
    wallets = [Wallet(derive_key(seed, "wallet", i), params) for i in range(2 * PER_BLOCK)]
    genesis = make_testnet_genesis(
        params, [key], wallets, genesis_time_ms=0, stake=100 * COIN, balance=10 * COIN
    )
    store = get_forkchoice_store(params, genesis)
    blocks = []
    parent = store.genesis_id
    for slot, payers in ((1, wallets[:PER_BLOCK]), (2, wallets[PER_BLOCK:])):
        on_tick(store, slot)
        context = BlockContext(height=slot, slot=slot)
        txs = [
            w.build_transfer(store.view.utxos_of(w.address), [], fee=1_000, context=context)
            for w in payers
        ]
        block = build_block(store, parent, slot, key, transactions=txs)
        on_block(store, block, slot)
        blocks.append(block)
        parent = block.block_id
    return genesis, tuple(blocks)


async def test_the_next_blocks_witnesses_are_checked_while_a_block_imports(monkeypatch):
    """While the event loop runs `on_block` for the first block, the worker thread is already
    verifying the second block's witnesses; each is verified once, and both import."""
    genesis, blocks = _two_blocks(21)
    second = {tx.txid for tx in blocks[1].transactions}
    second_started = threading.Event()
    verified = []
    original_verify = validation.verify_input_signatures

    def recording(tx, txid, chain_id):
        verified.append(txid)
        if txid in second:
            second_started.set()
        return original_verify(tx, txid, chain_id)

    overlapped = []
    original_on_block = chain_module.on_block

    def importing(store, block, slot, **kwargs):
        if block.block_id == blocks[0].block_id:
            overlapped.append(second_started.wait(10))  # blocks the loop, not the thread
        return original_on_block(store, block, slot, **kwargs)

    monkeypatch.setattr(validation, "verify_input_signatures", recording)
    monkeypatch.setattr(chain_module, "on_block", importing)
    config = solo_config(genesis, 21, at_ms=2_500)  # half-way through slot 2
    async with open_node(config) as node:
        result = await node.network.host.import_blocks(blocks, PeerId(bytes(32)))
        assert result.accepted == {block.block_id for block in blocks}
        assert node.head().block_id == blocks[1].block_id
    assert overlapped == [True]
    expected = [tx.txid for block in blocks for tx in block.transactions if tx.inputs]
    assert sorted(verified) == sorted(expected)  # once each: the import found them cached


def _fake_batch(count, unlinked_at):
    """`count` blocks linked from a known block, except block `unlinked_at` whose parent is
    unknown (so it and those after it cannot be imported)."""
    blocks = []
    parent = "known"
    for index in range(count):
        if index == unlinked_at:
            parent = "unknown"
        blocks.append(
            SimpleNamespace(
                header=SimpleNamespace(parent=parent), block_id=index, transactions=(index,)
            )
        )
        parent = index
    return blocks


@given(
    count=st.integers(0, 8),
    fails_at=st.integers(0, 9),
    unlinked_at=st.integers(0, 9),
    verify_yields=st.lists(st.integers(0, 3), min_size=9, max_size=9),
    import_yields=st.integers(0, 3),
)
def test_verification_stays_one_block_ahead_and_stops_with_the_batch(
    count, fails_at, unlinked_at, verify_yields, import_yields
):
    """Against a naive consumer (import in order, stop at the first failure): a block is
    verified before it imports, never more than one block ahead of the one the import waits
    for, never past an unlinked block, and nothing starts verifying after the batch stopped."""
    log = []

    async def verify_off_loop(transactions):
        (index,) = transactions
        log.append(("verify", index))
        for _ in range(verify_yields[index]):
            await trio.lowlevel.checkpoint()
        log.append(("verified", index))

    chain = SimpleNamespace(store=SimpleNamespace(nodes={"known"}), verify_off_loop=verify_off_loop)
    blocks = _fake_batch(count, unlinked_at)

    async def main():
        async with trio.open_nursery() as nursery:
            ahead = _VerifyAhead(chain, blocks)
            nursery.start_soon(ahead.run)
            for index in range(count):
                log.append(("next", index))
                await ahead.verified(index)
                log.append(("import", index))
                for _ in range(import_yields):
                    await trio.lowlevel.checkpoint()
                if index == fails_at:
                    log.append(("stop", index))
                    ahead.stop()
            ahead.stop()

    trio.run(main)
    starts = [index for kind, index in log if kind == "verify"]
    assert starts == list(range(len(starts)))  # in order, each once
    assert all(index < unlinked_at for index in starts)
    for position, (kind, index) in enumerate(log):
        done = log[:position]
        if kind == "verify":
            asked = [i for k, i in done if k == "next"]
            assert index == 0 or (asked and asked[-1] >= index - 1)
            assert not any(k == "stop" for k, _ in done)
        if kind == "import" and index < min(unlinked_at, fails_at + 1):
            assert ("verified", index) in done
