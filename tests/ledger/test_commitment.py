"""The state commitment against a model recomputed from a view's contents and the governance
leaf it is given, and state proofs."""

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.errors import InvalidBlock, InvalidProof, Reason
from p2pchain.ledger import proofs
from p2pchain.ledger.block import Block
from p2pchain.ledger.commitment import GOVERNANCE_KEY, genesis_governance_value
from p2pchain.ledger.encoding import decode, encode
from p2pchain.ledger.proofs import (
    AccountProof,
    AssetProof,
    OutputProof,
    ProofTooLarge,
    ValidatorsProof,
    prove_account,
    prove_asset,
    prove_output,
    prove_validators,
    verify_account,
    verify_asset,
    verify_output,
    verify_validators,
)
from p2pchain.ledger.tx import OutPoint
from p2pchain.ledger.types import AssetId, Hash32, TxId
from p2pchain.ledger.utxo import UtxoView
from p2pchain.ledger.validation import connect_block
from p2pchain.testing import FAST_PARAMS, FundedChain, funded_chain, valid_blocks
from p2pchain.testing.roots import naive_state_root, state_root_after
from p2pchain.testing.strategies import hashes

GENESIS_LEAF = genesis_governance_value(FAST_PARAMS)


def _rerooted(view: UtxoView, block: Block, governance: Hash32 | None) -> Block:
    """`block` with the state root it has after `view` with the governance leaf `governance`
    (None: the view's). The ledger does not check the header's signature."""
    root = state_root_after(view, block.transactions, governance=governance)
    return replace(block, header=replace(block.header, state_root=root))


def _grow(chain: FundedChain, data: st.DataObject, max_blocks: int) -> Hash32:
    """Connect random valid blocks (payments, issues, mints, stake, unbonds), each with a
    governance leaf drawn at random or none (the leaf kept); check each root against the model
    and the block's header. Returns the governance leaf after the last."""
    leaf = chain.view.governance_value
    assert leaf is not None
    for _ in range(data.draw(st.integers(min_value=1, max_value=max_blocks))):
        drawn = data.draw(valid_blocks(chain.view, chain.wallets, proposer=chain.validator))
        governance = data.draw(st.none() | hashes())
        block = _rerooted(chain.view, drawn, governance)
        connect_block(chain.view, block, chain.params, governance=governance)
        leaf = leaf if governance is None else governance
        root = chain.view.state_root()
        assert root == naive_state_root(chain.view, leaf) == block.header.state_root
        assert chain.view.governance_value == leaf
    return leaf


def test_the_genesis_header_carries_the_root_of_the_genesis_state() -> None:
    chain = funded_chain(2, params=FAST_PARAMS)
    assert chain.view.governance_value == GENESIS_LEAF
    assert chain.genesis.header.state_root == naive_state_root(chain.view, GENESIS_LEAF)
    assert chain.genesis.header.state_root != naive_state_root(chain.view, None)
    assert chain.view.state_root() != UtxoView().state_root()
    assert UtxoView().governance_value is None
    assert chain.view.commitment.top.get(GOVERNANCE_KEY) == GENESIS_LEAF


@given(data=st.data())
def test_every_block_commits_to_the_state_after_it_and_undo_restores_the_root(data) -> None:
    chain = funded_chain(3, params=FAST_PARAMS)
    leaf = _grow(chain, data, 2)
    before = chain.view.state_root()
    governance = data.draw(st.none() | hashes())
    drawn = data.draw(valid_blocks(chain.view, chain.wallets, proposer=chain.validator))
    block = _rerooted(chain.view, drawn, governance)
    undo = connect_block(chain.view, block, chain.params, governance=governance)
    assert undo.governance == leaf
    chain.view.undo(block, undo)
    assert chain.view.governance_value == leaf
    assert chain.view.state_root() == before == naive_state_root(chain.view, leaf)
    again = chain.view.apply(block, governance=governance)  # a trusted re-application
    assert again == undo
    assert chain.view.state_root() == block.header.state_root


@given(data=st.data())
def test_a_block_with_any_other_root_is_refused_and_leaves_the_state_alone(data) -> None:
    chain = funded_chain(3, params=FAST_PARAMS)
    leaf = _grow(chain, data, 1)
    before = chain.view.state_root()
    block = data.draw(valid_blocks(chain.view, chain.wallets, proposer=chain.validator))
    wrong = data.draw(st.sampled_from([before, bytes(32), bytes(31) + b"\x01"]))
    forged = replace(block, header=replace(block.header, state_root=wrong))
    with pytest.raises(InvalidBlock) as raised:
        connect_block(chain.view, forged, chain.params)
    assert raised.value.reason is Reason.BAD_STATE_ROOT
    assert chain.view.state_root() == before == naive_state_root(chain.view, leaf)
    assert chain.view.tip == block.header.parent


@given(data=st.data())
def test_a_header_that_omits_or_changes_the_governance_leaf_is_refused(data) -> None:
    """The root must hold the governance value the block is connected with: a root computed
    with the leaf as it was, with another value, or without the leaf is `bad-state-root`, and
    the view keeps its leaf."""
    chain = funded_chain(3, params=FAST_PARAMS)
    leaf = _grow(chain, data, 1)
    before = chain.view.state_root()
    governance = data.draw(hashes().filter(lambda value: value != leaf))
    drawn = data.draw(valid_blocks(chain.view, chain.wallets, proposer=chain.validator))
    other = data.draw(hashes().filter(lambda value: value != governance))
    bare = chain.view.copy()
    bare.set_governance(None)
    for header_root in (
        state_root_after(chain.view, drawn.transactions),  # the leaf as it was
        state_root_after(chain.view, drawn.transactions, governance=other),
        state_root_after(bare, drawn.transactions),  # no leaf at all
    ):
        forged = replace(drawn, header=replace(drawn.header, state_root=header_root))
        with pytest.raises(InvalidBlock) as raised:
            connect_block(chain.view, forged, chain.params, governance=governance)
        assert raised.value.reason is Reason.BAD_STATE_ROOT
        assert chain.view.governance_value == leaf
        assert chain.view.state_root() == before == naive_state_root(chain.view, leaf)
    accepted = _rerooted(chain.view, drawn, governance)
    connect_block(chain.view, accepted, chain.params, governance=governance)
    assert chain.view.governance_value == governance


@given(data=st.data())
def test_a_copy_keeps_its_own_commitment(data) -> None:
    chain = funded_chain(3, params=FAST_PARAMS)
    leaf = _grow(chain, data, 1)
    copy = chain.view.copy()
    root = copy.state_root()
    _grow(chain, data, 1)
    assert copy.governance_value == leaf
    assert copy.state_root() == root == naive_state_root(copy, leaf)


@given(data=st.data())
def test_proofs_show_exactly_what_the_state_holds(data) -> None:
    chain = funded_chain(3, params=FAST_PARAMS)
    _grow(chain, data, 3)
    view = chain.view
    root = view.state_root()
    for wallet in chain.wallets:
        proof = prove_account(view, wallet.address)
        assert decode(AccountProof, encode(proof)) == proof
        assert verify_account(root, wallet.address, proof) == view.utxos_of(wallet.address)
        for outpoint, output in view.utxos_of(wallet.address):
            shown = prove_output(view, outpoint, wallet.address)
            assert decode(OutputProof, encode(shown)) == shown
            assert verify_output(root, outpoint, wallet.address, shown) == output
            other = chain.wallets[(chain.wallets.index(wallet) + 1) % len(chain.wallets)]
            assert (
                verify_output(
                    root, outpoint, other.address, prove_output(view, outpoint, other.address)
                )
                is None
            )
    missing = OutPoint(txid=TxId(bytes(32)), index=7)
    for wallet in chain.wallets:
        absent = prove_output(view, missing, wallet.address)
        assert verify_output(root, missing, wallet.address, absent) is None
    for asset in [*view.assets(), AssetId(b"\x07" * 32)]:
        shown_asset = prove_asset(view, asset)
        assert decode(AssetProof, encode(shown_asset)) == shown_asset
        assert verify_asset(root, asset, shown_asset) == view.asset(asset)
    table = prove_validators(view)
    assert decode(ValidatorsProof, encode(table)) == table
    assert verify_validators(root, table) == view.bonded_stake()


@given(data=st.data())
def test_a_proof_that_hides_or_changes_anything_is_refused(data) -> None:
    chain = funded_chain(3, params=FAST_PARAMS)
    _grow(chain, data, 2)
    view, root = chain.view, chain.view.state_root()
    owner = chain.wallets[0].address  # holds the validator's stake: never empty
    account = prove_account(view, owner)
    outputs = list(account.outputs)
    index = data.draw(st.integers(min_value=0, max_value=len(outputs) - 1))
    outpoint, output = outputs[index]
    forgeries = [
        replace(account, outputs=tuple(outputs[:index] + outputs[index + 1 :])),  # hides one
        replace(  # inflates one
            account,
            outputs=(
                *outputs[:index],
                (outpoint, replace(output, amount=output.amount + 1)),
                *outputs[index + 1 :],
            ),
        ),
        replace(account, outputs=tuple(reversed(outputs))) if len(outputs) > 1 else None,
        replace(account, outputs=()),
    ]
    for forged in forgeries:
        if forged is None:
            continue
        with pytest.raises(InvalidProof):
            verify_account(root, owner, forged)
    with pytest.raises(InvalidProof):  # the proof of one address is not another's
        verify_account(root, chain.wallets[1].address, account)
    shown = prove_output(view, outpoint, owner)
    with pytest.raises(InvalidProof):  # an unspent output claimed spent
        verify_output(root, outpoint, owner, replace(shown, output=None))
    with pytest.raises(InvalidProof):
        verify_output(
            root, outpoint, owner, replace(shown, output=replace(output, amount=output.amount + 1))
        )
    table = prove_validators(view)
    if table.stakes:  # everything may have been unbonded
        key, stake = table.stakes[0]
        for stakes in [(), ((key, stake + 1), *table.stakes[1:]), table.stakes[1:]]:
            with pytest.raises(InvalidProof):
                verify_validators(root, replace(table, stakes=stakes))


@given(data=st.data())
def test_a_proof_of_an_older_state_does_not_verify_against_a_newer_root(data) -> None:
    chain = funded_chain(3, params=FAST_PARAMS)
    owner = chain.wallets[1].address
    old_root, old = chain.view.state_root(), prove_account(chain.view, owner)
    _grow(chain, data, 2)
    with pytest.raises(InvalidProof):  # every block changes the root (its reward at least)
        verify_account(chain.view.state_root(), owner, old)
    assert verify_account(old_root, owner, old) == list(old.outputs)


def test_an_account_or_table_past_the_proof_limit_is_refused_not_truncated(monkeypatch) -> None:
    chain = funded_chain(2, params=FAST_PARAMS)
    owner = chain.wallets[0].address
    held = len(chain.view.utxos_of(owner))
    monkeypatch.setattr(proofs, "MAX_PROOF_OUTPUTS", held - 1)
    with pytest.raises(ProofTooLarge):
        prove_account(chain.view, owner)
    monkeypatch.setattr(proofs, "MAX_PROOF_VALIDATORS", 0)
    with pytest.raises(ProofTooLarge):
        prove_validators(chain.view)
