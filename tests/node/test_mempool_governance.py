"""The pool's governance rules: it holds what one next block could carry (one vote per
validator and proposal, proposals within the bound counting its own), and what a closing window
turns invalid leaves it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from p2pchain.consensus import GovernanceDraft, GovernanceState
from p2pchain.consensus.governance import advance
from p2pchain.consensus.validators import ValidatorSet
from p2pchain.errors import InvalidTransaction, Reason
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.tx import Transaction, VoteChoice
from p2pchain.ledger.types import Amount, Epoch, TxId
from p2pchain.ledger.utxo import UtxoView
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Wallet
from p2pchain.node.mempool import Mempool, Removal
from p2pchain.params import COIN
from p2pchain.testing.crash import PARAMS, VALIDATOR, WALLETS, genesis

FEE = Amount(2_000)
STAKES = ValidatorSet.from_stakes({VALIDATOR.public_key: 10 * COIN})


def context(view: UtxoView) -> BlockContext:
    return BlockContext(height=view.height + 1, slot=view.height + 1)


def propose(view: UtxoView, payer: Wallet, value: int = 3 * COIN) -> Transaction:
    return payer.build_propose(
        view.utxos_of(payer.address),
        changes=[("block_reward", value)],
        activation=Epoch(PARAMS.gov_voting_epochs + 2),  # valid in epochs 0 and 1
        fee=FEE,
        context=context(view),
    )


def vote(
    view: UtxoView,
    payer: Wallet,
    proposal: TxId,
    choice: VoteChoice = VoteChoice.YES,
    voter: SecretKey = VALIDATOR,
) -> Transaction:
    return payer.build_gov_vote(
        view.utxos_of(payer.address),
        proposal=proposal,
        choice=choice,
        fee=FEE,
        context=context(view),
        validator=voter,
    )


def open_window(view: UtxoView, *proposers: Wallet) -> tuple[GovernanceState, list[TxId]]:
    """A state in epoch 1 where the proposals `proposers` made in epoch 0 take votes."""
    draft = GovernanceDraft(GovernanceState.at_genesis(PARAMS))
    ids = []
    for payer in proposers:
        tx = propose(view, payer)
        draft.check(tx)
        draft.take(tx, tx.txid)
        ids.append(tx.txid)
    return advance(draft.finish(), Epoch(1), STAKES), ids


def admit(pool: Mempool, view: UtxoView, tx: Transaction) -> None:
    pool.add(tx, view, context(view), now=0.0)


def refusal(pool: Mempool, view: UtxoView, tx: Transaction) -> Reason:
    with pytest.raises(InvalidTransaction) as raised:
        admit(pool, view, tx)
    return raised.value.reason


def test_the_pool_holds_one_vote_per_validator_and_proposal() -> None:
    view = genesis()[1]
    state, (first, second) = open_window(view, WALLETS[0], WALLETS[3])
    pool = Mempool(PARAMS)
    pool.set_rules(state)
    admit(pool, view, vote(view, WALLETS[1], first))
    # the same validator again, paid by someone else and with another answer
    assert refusal(pool, view, vote(view, WALLETS[2], first, VoteChoice.NO)) is (
        Reason.DOUBLE_GOV_VOTE
    )
    admit(pool, view, vote(view, WALLETS[2], second, VoteChoice.NO))  # another proposal
    assert len(pool) == 2


def test_a_vote_needs_snapshot_stake_and_a_known_proposal() -> None:
    view = genesis()[1]
    state, (proposal,) = open_window(view, WALLETS[0])
    pool = Mempool(PARAMS)
    pool.set_rules(state)
    outsider = SecretKey.from_entropy(sha256(b"no stake"))
    assert refusal(pool, view, vote(view, WALLETS[1], proposal, voter=outsider)) is (
        Reason.NOT_A_VOTER
    )
    unknown = TxId(sha256(b"never proposed"))
    assert refusal(pool, view, vote(view, WALLETS[1], unknown)) is Reason.UNKNOWN_PROPOSAL
    assert len(pool) == 0


def test_proposals_in_the_pool_count_against_the_bound() -> None:
    view = genesis()[1]
    params = replace(PARAMS, gov_max_proposals=2)
    state, _ = open_window(view, WALLETS[0])
    pool = Mempool(params)
    pool.set_rules(replace(state, base=params, params=params))
    admit(pool, view, propose(view, WALLETS[1]))  # one in flight, one in the pool: full
    assert refusal(pool, view, propose(view, WALLETS[2], 4 * COIN)) is Reason.GOVERNANCE_FULL


def test_votes_leave_the_pool_when_their_window_closes() -> None:
    view = genesis()[1]
    state, (proposal,) = open_window(view, WALLETS[0])
    pool = Mempool(PARAMS)
    pool.set_rules(state)
    ballot = vote(view, WALLETS[1], proposal)
    admit(pool, view, ballot)
    closed = advance(state, Epoch(PARAMS.gov_voting_epochs + 1), STAKES)
    pool.set_rules(closed)
    change = pool.revalidate(view, context(view))
    assert change.removed == (Removal(txid=ballot.txid, reason=Reason.VOTING_CLOSED),)
    assert len(pool) == 0
