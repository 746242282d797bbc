"""A deterministic chain for storage tests, and a worker process that a crash test kills.

`ChainBuilder` makes real blocks (signed transfers, an asset issue and mints, a reward) on top of
a `UtxoView`; block `h` depends only on the seed and the view it extends, so a restarted worker
continues exactly the sequence a never-killed one would have made. Headers are unsigned: the
store does not check consensus. No consensus layer runs either, so the chain carries its genesis
governance leaf unchanged (`connect_block` without a governance value), and a restarted worker
puts that leaf back on the view it restores (storage keeps outputs and assets only).

Run as ``python -m p2pchain.testing.crash DB SEED TARGET [KILL_AT]``: open (or create) the
store, finish any interrupted side-branch round trip, then commit blocks up to height TARGET,
printing ``ACK <height>`` after each commit returns. With KILL_AT the worker SIGKILLs itself as
SQLite starts its KILL_AT-th statement, which lands inside a transaction far more often than a
kill from outside does.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from unittest import mock

from p2pchain.errors import InsufficientFunds
from p2pchain.ledger.block import EMPTY_BLOCK_SIGNATURE, Block, compute_body_root
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.genesis import Allocation, GenesisConfig, GenesisValidator, genesis_state
from p2pchain.ledger.header import BlockHeader
from p2pchain.ledger.reward import reward_transaction
from p2pchain.ledger.tx import Transaction, TxOutput
from p2pchain.ledger.types import Address, Amount, AssetId, Height, Slot
from p2pchain.ledger.utxo import UndoData, UtxoView
from p2pchain.ledger.validation import BlockContext, connect_block
from p2pchain.ledger.wallet import Wallet
from p2pchain.node.storage import SqliteChainStore
from p2pchain.params import COIN, ChainParams
from p2pchain.testing.roots import state_root_after
from p2pchain.testing.stores import commit_after_apply

PARAMS = ChainParams(reward_maturity=3)
WALLETS = tuple(
    Wallet(SecretKey.from_entropy(bytes([index + 1]) * 32), PARAMS) for index in range(4)
)
VALIDATOR = SecretKey.from_entropy(b"validator" * 4)
SIDE_PROPOSER = SecretKey.from_entropy(b"side-branch" * 3)
"""Proposer of the side blocks the worker commits and reverts; marks them on restart."""
GENESIS_CONFIG = GenesisConfig(
    chain_id=PARAMS.chain_id,
    genesis_time_ms=0,
    allocations=tuple(Allocation(address=w.address, amount=Amount(1_000 * COIN)) for w in WALLETS),
    validators=(
        GenesisValidator(
            key=VALIDATOR.public_key, owner=WALLETS[0].address, stake=Amount(10 * COIN)
        ),
    ),
)
NATIVE = AssetId(PARAMS.native_asset)


def genesis() -> tuple[Block, UtxoView]:
    return genesis_state(GENESIS_CONFIG, PARAMS)


def restored(view: UtxoView) -> UtxoView:
    """`view` (as storage restores it: outputs and assets) with the chain's governance leaf."""
    return UtxoView.from_snapshot(
        view,
        view.assets().values(),
        view.tip,
        view.height,
        governance=genesis()[1].governance_value,
    )


def next_block(
    view: UtxoView,
    transactions: Sequence[Transaction],
    fees: int,
    *,
    proposer: SecretKey = VALIDATOR,
    reward_to: Address = WALLETS[0].address,
) -> Block:
    """The next block on `view`'s tip: the reward (block reward plus `fees`), then
    `transactions`. Unsigned: stores and pools do not check headers."""
    height = Height(view.height + 1)
    reward = reward_transaction(
        height=height,
        amount=Amount(PARAMS.block_reward + fees),
        address=reward_to,
        params=PARAMS,
    )
    body = (reward, *transactions)
    header = BlockHeader(
        parent=view.tip,
        height=height,
        slot=Slot(height),  # one block per slot
        proposer=proposer.public_key,
        body_root=compute_body_root(body, ()),
        state_root=state_root_after(view, body),
    )
    return Block(header=header, signature=EMPTY_BLOCK_SIGNATURE, transactions=body)


@dataclass
class ChainBuilder:
    """Builds block after block on `view`; `seed` picks senders, receivers, amounts and fees."""

    seed: int
    view: UtxoView

    def build(self, *, side: bool = False) -> Block:
        """The next block on the view's tip (not applied); `side` makes a distinct sibling."""
        height = self.view.height + 1
        rng = random.Random(f"{self.seed}:{height}:{side}")
        context = BlockContext(height=Height(height), slot=Slot(height))
        scratch = self.view.copy()
        txs: list[Transaction] = []
        fees = 0
        for _ in range(rng.randint(0, 3)):
            fee = rng.randint(1, 2_000)
            try:
                tx = self._random_tx(rng, scratch, context, fee)
            except InsufficientFunds:
                continue
            scratch.apply_transaction(tx)
            txs.append(tx)
            fees += fee
        return next_block(
            self.view,
            txs,
            fees,
            proposer=SIDE_PROPOSER if side else VALIDATOR,
            reward_to=rng.choice(WALLETS).address,
        )

    def _random_tx(
        self, rng: random.Random, view: UtxoView, context: BlockContext, fee: int
    ) -> Transaction:
        sender, receiver = rng.choice(WALLETS), rng.choice(WALLETS)
        coins = view.utxos_of(sender.address)
        issued = [a for a, info in view.assets().items() if info.issuer == sender.address]
        choice = rng.random()
        if choice < 0.08 and not issued:
            tx, _ = sender.build_issue(
                coins,
                name=b"carbon",
                amount=Amount(1_000),
                cap=10**9,
                fee=Amount(fee),
                context=context,
            )
            return tx
        if choice < 0.16 and issued:
            return sender.build_mint(
                coins,
                asset=issued[0],
                amount=Amount(rng.randint(1, 500)),
                fee=Amount(fee),
                context=context,
            )
        assets = sorted({output.asset for _, output in coins if output.asset != NATIVE})
        if choice < 0.22 and assets:
            return sender.build_retire(
                coins,
                asset=assets[0],
                amount=Amount(rng.randint(1, 5)),
                beneficiary=b"beneficiary %d" % rng.randint(0, 9),
                purpose=b"offset",
                fee=Amount(fee),
                context=context,
            )
        asset = rng.choice(assets) if assets and choice < 0.4 else NATIVE
        amount = rng.randint(1, 50) if asset != NATIVE else rng.randint(1, 20 * COIN)
        payment = TxOutput(asset=asset, amount=Amount(amount), address=receiver.address)
        return sender.build_transfer(coins, [payment], fee=Amount(fee), context=context)

    def extend(self, *, side: bool = False) -> tuple[Block, UndoData]:
        """Build the next block and connect it to the view (validating it); return its undo."""
        block = self.build(side=side)
        return block, connect_block(self.view, block, PARAMS)


def reference_chain(seed: int, height: int) -> list[Block]:
    """The blocks from genesis to `height` that an uninterrupted worker commits."""
    block, view = genesis()
    builder = ChainBuilder(seed, view)
    blocks = [block]
    while view.height < height:
        blocks.append(builder.extend()[0])
    return blocks


def is_side_block(block: Block) -> bool:
    return block.header.proposer == SIDE_PROPOSER.public_key


def kill_at_statement(count: int) -> None:
    """SIGKILL this process when SQLite (any connection opened later) runs statement `count`."""
    original_connect = sqlite3.connect
    seen = 0

    def trace(_statement: str) -> None:
        nonlocal seen
        seen += 1
        if seen >= count:
            os.kill(os.getpid(), signal.SIGKILL)

    def connect(
        database: str,
        *,
        uri: bool = False,
        isolation_level: Literal["DEFERRED", "EXCLUSIVE", "IMMEDIATE"] | None = "DEFERRED",
        check_same_thread: bool = True,
        timeout: float = 5.0,
    ) -> sqlite3.Connection:
        """`sqlite3.connect` with the options the stores pass, and the trace installed."""
        connection = original_connect(
            database,
            uri=uri,
            isolation_level=isolation_level,
            check_same_thread=check_same_thread,
            timeout=timeout,
        )
        connection.set_trace_callback(trace)
        return connection

    mock.patch.object(sqlite3, "connect", new=connect).start()  # until the process dies


def run(path: str, seed: int, target: int) -> None:
    """Commit blocks up to `target`; every fifth height first commits and reverts a side block."""
    genesis_block, _ = genesis()
    with SqliteChainStore(path, chain_id=PARAMS.chain_id, genesis=genesis_block) as store:
        head = store.get_block(store.head)
        if head is not None and is_side_block(head):
            store.revert_block(head.block_id)
        builder = ChainBuilder(seed, restored(store.head_view()))
        while builder.view.height < target:
            if (builder.view.height + 1) % 5 == 0:
                side, undo = builder.extend(side=True)
                store.commit_block(commit_after_apply(side, undo, builder.view))
                builder.view.undo(side, undo)
                store.revert_block(side.block_id)
            block, undo = builder.extend()
            store.commit_block(commit_after_apply(block, undo, builder.view))
            print(f"ACK {block.header.height}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 4:
        kill_at_statement(int(sys.argv[4]))
    run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
