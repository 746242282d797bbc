"""The ledger's part of governance: the deposit, the fee floor, the vote's own signature, the
outputs governance transactions may leave out and the refunds a reward must carry.

The calendar and tallies live in the consensus layer (tests/consensus/test_governance*.py);
here every rule is one transaction or one block against a UTXO state.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.errors import DecodeError, InvalidBlock, InvalidTransaction, Reason
from p2pchain.ledger.address import address_of
from p2pchain.ledger.block import Block, compute_body_root
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.encoding import RLPItem, decode, decode_item, encode, encode_item
from p2pchain.ledger.reward import reward_transaction
from p2pchain.ledger.tx import (
    GovVotePayload,
    ProposePayload,
    Transaction,
    TxKind,
    TxOutput,
    VoteChoice,
    gov_vote_signing_message,
)
from p2pchain.ledger.types import Address, Amount, AssetId, Epoch, Height, TxId
from p2pchain.ledger.utxo import UtxoView
from p2pchain.ledger.validation import BlockContext, connect_block, validate_transaction
from p2pchain.params import COIN, MAX_PROPOSAL_CHANGES, ChainParams
from p2pchain.testing.roots import state_root_after
from p2pchain.testing.strategies import (
    FAST_PARAMS,
    FundedChain,
    build_block,
    funded_chain,
    sign_header,
)

PROPOSAL = TxId(sha256(b"some proposal"))
CHANGES = [("block_reward", 3 * COIN)]


def context(view: UtxoView) -> BlockContext:
    return BlockContext(height=Height(view.height + 1), slot=view.height + 1)


def refused(chain: FundedChain, tx: Transaction, params: ChainParams | None = None) -> Reason:
    with pytest.raises(InvalidTransaction) as raised:
        validate_transaction(tx, chain.view, params or chain.params, context(chain.view))
    return raised.value.reason


def fee_of(chain: FundedChain, tx: Transaction, params: ChainParams | None = None) -> int:
    return validate_transaction(tx, chain.view, params or chain.params, context(chain.view))


def propose(chain: FundedChain, fee: int = 1_000, wallet: int = 1) -> Transaction:
    payer = chain.wallets[wallet]
    return payer.build_propose(
        chain.view.utxos_of(payer.address),
        changes=CHANGES,
        activation=Epoch(5),
        fee=Amount(fee),
        context=context(chain.view),
    )


def vote(chain: FundedChain, voter: SecretKey, choice: VoteChoice = VoteChoice.YES) -> Transaction:
    payer = chain.wallets[1]
    return payer.build_gov_vote(
        chain.view.utxos_of(payer.address),
        proposal=PROPOSAL,
        choice=choice,
        fee=Amount(500),
        context=context(chain.view),
        validator=voter,
    )


def test_a_proposal_pays_the_deposit_on_top_of_its_fee_and_the_deposit_is_not_a_fee() -> None:
    chain = funded_chain(2, params=FAST_PARAMS)
    tx = propose(chain, fee=1_000)
    assert fee_of(chain, tx) == 1_000
    spent = sum(chain.view.get(i.outpoint).amount for i in tx.inputs)  # type: ignore[union-attr]
    assert spent - sum(o.amount for o in tx.outputs) == 1_000 + FAST_PARAMS.gov_deposit
    # the same coins and change, one base unit short of the deposit
    change = tx.outputs[-1]
    short = chain.wallets[1].sign(
        replace(tx, outputs=(*tx.outputs[:-1], replace(change, amount=change.amount + 1_001)))
    )
    assert refused(chain, short) is Reason.BAD_PROPOSAL
    # a block may not count the deposit as a fee: the proposer claiming it is refused
    greedy = build_block(
        chain.view,
        chain.params,
        [tx],
        proposer=chain.validator,
        reward=chain.params.block_reward + 1_000 + chain.params.gov_deposit,
    )
    with pytest.raises(InvalidBlock) as raised:
        connect_block(chain.view, greedy, chain.params)
    assert raised.value.reason is Reason.BAD_REWARD
    honest = build_block(chain.view, chain.params, [tx], proposer=chain.validator)
    assert honest.transactions[0].outputs[0].amount == chain.params.block_reward + 1_000
    connect_block(chain.view, honest, chain.params)


def test_governance_transactions_may_spend_everything_other_kinds_may_not() -> None:
    chain = funded_chain(
        2, params=FAST_PARAMS, coins_per_wallet=1, coin_amount=FAST_PARAMS.gov_deposit
    )
    payer = chain.wallets[1]
    tx = propose(chain, fee=0)
    assert tx.outputs == ()  # the one coin is exactly the deposit
    assert fee_of(chain, tx) == 0
    transfer = payer.sign(Transaction(kind=TxKind.TRANSFER, inputs=tx.inputs))
    assert refused(chain, transfer) is Reason.NO_OUTPUTS
    ballot = payer.sign(replace(vote(chain, chain.validator), outputs=()))
    assert ballot.outputs == ()
    assert fee_of(chain, ballot) == FAST_PARAMS.gov_deposit


def test_a_proposal_changes_at_least_one_parameter() -> None:
    chain = funded_chain(2, params=FAST_PARAMS)
    tx = propose(chain)
    assert isinstance(tx.payload, ProposePayload)
    empty = chain.wallets[1].sign(replace(tx, payload=replace(tx.payload, changes=())))
    assert refused(chain, empty) is Reason.BAD_PROPOSAL


@given(rate=st.integers(min_value=1, max_value=50), short=st.booleans())
def test_every_transaction_pays_the_fee_rate_in_force_per_byte(rate: int, short: bool) -> None:
    """`fee >= min_fee_rate * size`, at the boundary: one base unit less is `fee-too-low`."""
    params = replace(FAST_PARAMS, min_fee_rate=rate)
    chain = funded_chain(2, params=params)
    payer = chain.wallets[1]
    probe = payer.build_transfer(
        chain.view.utxos_of(payer.address),
        [TxOutput(asset=AssetId(params.native_asset), amount=Amount(COIN), address=payer.address)],
        fee=Amount(10**6),
        context=context(chain.view),
    )
    needed = rate * probe.size  # amounts of the same byte length keep the size
    tx = payer.build_transfer(
        chain.view.utxos_of(payer.address),
        [TxOutput(asset=AssetId(params.native_asset), amount=Amount(COIN), address=payer.address)],
        fee=Amount(needed - 1 if short else needed),
        context=context(chain.view),
    )
    assert tx.size == probe.size
    if short:
        assert refused(chain, tx) is Reason.FEE_TOO_LOW
        assert fee_of(chain, tx, FAST_PARAMS) == needed - 1  # the rate is the only reason
    else:
        assert fee_of(chain, tx) == needed


def test_only_the_validator_key_signs_a_vote_for_this_chain_and_this_choice() -> None:
    chain = funded_chain(2, params=FAST_PARAMS)
    good = vote(chain, chain.validator)
    assert fee_of(chain, good) == 500
    payload = good.payload
    assert isinstance(payload, GovVotePayload)
    payer = chain.wallets[1]
    stranger = SecretKey.from_entropy(sha256(b"not the validator"))
    forgeries = {
        "another key's signature": replace(
            payload,
            signature=stranger.sign(
                gov_vote_signing_message(FAST_PARAMS.chain_id, PROPOSAL, VoteChoice.YES)
            ),
        ),
        "the choice changed": replace(payload, choice=VoteChoice.NO),
        "another proposal": replace(payload, proposal=TxId(sha256(b"another"))),
        "another chain": replace(
            payload,
            signature=chain.validator.sign(
                gov_vote_signing_message(FAST_PARAMS.chain_id + 1, PROPOSAL, VoteChoice.YES)
            ),
        ),
    }
    for case, forged in forgeries.items():
        tx = payer.sign(replace(good, payload=forged))  # the payer's own signatures are good
        assert refused(chain, tx) is Reason.BAD_SIGNATURE, case
    not_a_key = payer.sign(replace(good, payload=replace(payload, validator=bytes(32))))
    assert refused(chain, not_a_key) is Reason.BAD_GOV_VOTE


def test_a_reward_ends_in_exactly_the_refunds_it_is_given() -> None:
    chain = funded_chain(2, params=FAST_PARAMS)
    params = chain.params
    height = Height(chain.view.height + 1)
    refund_to = Address(address_of(chain.wallets[1].public_key))
    refunds = [(refund_to, Amount(params.gov_deposit))]
    proposer = address_of(chain.validator.public_key)

    def block(*extra: tuple[Address, Amount], amount: int = params.block_reward) -> Block:
        reward = reward_transaction(
            height=height, amount=Amount(amount), address=proposer, params=params, refunds=extra
        )
        template = build_block(chain.view, params, proposer=chain.validator)
        header = replace(
            template.header,
            body_root=compute_body_root((reward,), ()),
            state_root=state_root_after(chain.view, (reward,)),
        )
        signed = sign_header(header, chain.validator, params.chain_id)
        return replace(template, header=header, signature=signed.signature, transactions=(reward,))

    cases = {
        "no refund": block(),
        "refund short": block((refund_to, Amount(params.gov_deposit - 1))),
        "refund elsewhere": block((proposer, Amount(params.gov_deposit))),
        "refund twice": block(*refunds, *refunds),
        "proposer paid more": block(*refunds, amount=params.block_reward + 1),
    }
    for case, candidate in cases.items():
        with pytest.raises(InvalidBlock) as raised:
            connect_block(chain.view, candidate, params, refunds=refunds)
        assert raised.value.reason is Reason.BAD_REWARD, case
    connect_block(chain.view, block(*refunds), params, refunds=refunds)
    assert chain.view.utxos_of(refund_to)[-1][1].amount == params.gov_deposit


@pytest.mark.parametrize(
    ("kind", "payload_item"),
    [
        (  # too many changes
            TxKind.PROPOSE,
            [[[b"block_reward", b"\x01"]] * (MAX_PROPOSAL_CHANGES + 1), b"\x05", bytes(20)],
        ),
        (TxKind.PROPOSE, [[[b"x" * 33, b"\x01"]], b"\x05", bytes(20)]),  # a name over 32 bytes
        (TxKind.PROPOSE, [[[b"block_reward", b"\x01"]], b"\x05", bytes(19)]),  # short refund
        (TxKind.PROPOSE, [[[b"block_reward"]], b"\x05", bytes(20)]),  # a change without value
        (TxKind.GOV_VOTE, [bytes(32), b"\x03", bytes(32), bytes(64)]),  # choice 3
        (TxKind.GOV_VOTE, [bytes(32), b"", bytes(32), bytes(63)]),  # short signature
        (TxKind.GOV_VOTE, [bytes(32), b"", bytes(32)]),  # no signature
    ],
)
def test_governance_payloads_out_of_shape_do_not_decode(
    kind: TxKind, payload_item: RLPItem
) -> None:
    chain = funded_chain(2, params=FAST_PARAMS)
    valid = propose(chain) if kind is TxKind.PROPOSE else vote(chain, chain.validator)
    item = decode_item(encode(valid))
    assert isinstance(item, list)
    assert decode(Transaction, encode_item(item)) == valid
    with pytest.raises(DecodeError):
        decode(Transaction, encode_item([*item[:3], payload_item]))


def test_a_wallet_votes_as_its_own_key_by_default() -> None:
    """A validator's own wallet votes without naming its key; the vote checks out."""
    chain = funded_chain(2, params=FAST_PARAMS)
    voter = chain.wallets[1]
    tx = voter.build_gov_vote(
        chain.view.utxos_of(voter.address),
        proposal=PROPOSAL,
        choice=VoteChoice.ABSTAIN,
        fee=Amount(0),
        context=context(chain.view),
    )
    assert isinstance(tx.payload, GovVotePayload)
    assert tx.payload.validator == voter.public_key
    assert fee_of(chain, tx) == 0
