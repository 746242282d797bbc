"""Random wallets make random valid and invalid transactions against one UTXO view.

The machine connects small blocks through `connect_block`, sometimes undoes the tip, and checks
after every step: native supply = genesis + what rewards created, no output is spent twice, no
asset has more units outstanding than were issued, and a rejected block changes nothing.
"""

from collections import defaultdict
from dataclasses import replace

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from p2pchain.errors import InvalidBlock, Reason
from p2pchain.ledger.block import Block
from p2pchain.ledger.tx import OutPoint, Transaction, TxInput, TxOutput
from p2pchain.ledger.types import AssetId
from p2pchain.ledger.utxo import UndoData
from p2pchain.ledger.validation import BlockContext, connect_block
from p2pchain.ledger.wallet import Wallet
from p2pchain.testing import (
    FAST_PARAMS,
    build_block,
    funded_chain,
    native_fee,
    valid_transaction,
    view_state,
)

MUTATIONS = ["signature", "other-chain", "inflate", "spent-input", "conflict", "overpaid-reward"]


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.chain = funded_chain(4, params=FAST_PARAMS, coins_per_wallet=3)
        self.view = self.chain.view
        self.params = self.chain.params
        self.native = AssetId(self.params.native_asset)
        self.expected_native = self._native_supply()
        self.spent: set[OutPoint] = set()
        self.history: list[tuple[Block, UndoData, object, int, set[OutPoint]]] = []

    # -- helpers ---------------------------------------------------------------------------
    def _native_supply(self) -> int:
        return sum(output.amount for _, output in self.view if output.asset == self.native)

    def _context(self) -> BlockContext:
        height = self.view.height + 1
        return BlockContext(height=height, slot=height)

    def _owner(self, tx: Transaction) -> Wallet:
        address = self.view.get(tx.inputs[0].outpoint)
        assert address is not None
        return next(w for w in self.chain.wallets if w.address == address.address)

    def _connect(self, block: Block) -> None:
        before = view_state(self.view)
        fees = native_fee(self.view, block.transactions[1:], self.params)
        undo = connect_block(self.view, block, self.params)
        spent = {outpoint for tx_undo in undo.txs for outpoint, _ in tx_undo.spent}
        assert not spent & self.spent, "an output was spent twice"
        paid = sum(output.amount for output in block.transactions[0].outputs)
        self.history.append((block, undo, before, self.expected_native, spent))
        self.spent |= spent
        self.expected_native += paid - fees

    def _draw_body(self, data: st.DataObject, count: int) -> list[Transaction]:
        work = self.view.copy()
        body: list[Transaction] = []
        for _ in range(count):
            tx = data.draw(valid_transaction(work, self.chain.wallets, self._context()))
            if tx is None:
                break
            work.apply_transaction(tx)
            body.append(tx)
        return body

    # -- rules -----------------------------------------------------------------------------
    @rule(data=st.data(), count=st.integers(min_value=0, max_value=3))
    def valid_block(self, data: st.DataObject, count: int) -> None:
        body = self._draw_body(data, count)
        self._connect(build_block(self.view, self.params, body, proposer=self.chain.validator))

    @rule(data=st.data(), mutation=st.sampled_from(MUTATIONS))
    def invalid_block(self, data: st.DataObject, mutation: str) -> None:
        body = self._draw_body(data, 1)
        if not body:
            return
        tx = body[0]
        reward = None
        owner = self._owner(tx)
        native_outputs = [i for i, o in enumerate(tx.outputs) if o.asset == self.native]
        if mutation == "inflate" and not native_outputs:
            mutation = "signature"
        if mutation == "spent-input" and not self.spent:
            mutation = "other-chain"
        match mutation:
            case "signature":
                first = tx.inputs[0]
                flipped = bytes([first.signature[0] ^ 0x80]) + first.signature[1:]
                bad = [tx.with_inputs((replace(first, signature=flipped), *tx.inputs[1:]))]
                expected = Reason.BAD_SIGNATURE
            case "other-chain":
                other = replace(self.params, chain_id=self.params.chain_id + 1)
                bad = [Wallet(owner.key, other).sign(tx)]
                expected = Reason.BAD_SIGNATURE
            case "inflate":
                index = data.draw(st.sampled_from(native_outputs))
                outputs = list(tx.outputs)
                fee = native_fee(self.view, [tx], self.params)
                outputs[index] = replace(outputs[index], amount=outputs[index].amount + fee + 1)
                bad = [owner.sign(replace(tx, outputs=tuple(outputs)))]
                expected = Reason.NEGATIVE_FEE
            case "spent-input":
                gone = data.draw(st.sampled_from(sorted(self.spent)))
                bad = [owner.sign(tx.with_inputs((*tx.inputs, TxInput(outpoint=gone))))]
                expected = Reason.MISSING_INPUT
            case "conflict":
                change = TxOutput(asset=self.native, amount=1, address=owner.address)
                twin = owner.sign(replace(tx, outputs=(*tx.outputs, change)))
                bad = [tx, twin]
                expected = Reason.CONFLICTING_SPEND
            case _:
                reward = self.params.block_reward + native_fee(self.view, body, self.params) + 1
                bad = body
                expected = Reason.BAD_REWARD
        block = build_block(
            self.view, self.params, bad, proposer=self.chain.validator, reward=reward
        )
        before = view_state(self.view)
        with pytest.raises(InvalidBlock) as info:
            connect_block(self.view, block, self.params)
        assert info.value.reason is expected, (mutation, info.value)
        assert view_state(self.view) == before

    @precondition(lambda self: self.history)
    @rule()
    def undo_tip(self) -> None:
        block, undo, before, expected_native, spent = self.history.pop()
        self.view.undo(block, undo)
        assert view_state(self.view) == before
        self.expected_native = expected_native
        self.spent -= spent

    # -- invariants ------------------------------------------------------------------------
    @invariant()
    def native_supply_is_genesis_plus_created_by_rewards(self) -> None:
        assert self._native_supply() == self.expected_native

    @invariant()
    def spent_outputs_stay_spent(self) -> None:
        assert not any(outpoint in self.view for outpoint in self.spent)

    @invariant()
    def assets_never_exceed_what_was_issued(self) -> None:
        outstanding: defaultdict[AssetId, int] = defaultdict(int)
        for _, output in self.view:
            outstanding[output.asset] += output.amount
        assets = self.view.assets()
        for asset, total in outstanding.items():
            if asset == self.native:
                continue
            info = assets[asset]
            assert total <= info.issued
            assert not info.cap or info.issued <= info.cap


LedgerMachine.TestCase.settings = settings(stateful_step_count=40)
TestLedger = LedgerMachine.TestCase
