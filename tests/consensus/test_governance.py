"""Governance through the real fork-choice store: proposals, votes, tallies, activation."""

from __future__ import annotations

from dataclasses import replace

import pytest

from p2pchain.consensus import (
    GovernanceState,
    ProposalStatus,
    get_governance,
    get_head,
    get_head_view,
)
from p2pchain.consensus.governance import GovernanceDraft
from p2pchain.errors import InvalidTransaction, Reason
from p2pchain.ledger.address import address_of
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.tx import Transaction, TxKind, VoteChoice
from p2pchain.ledger.types import Amount, Epoch, Height, Slot, TxId
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Wallet
from p2pchain.params import COIN
from p2pchain.testing.consensus import CONSENSUS_PARAMS, Simulation

PARAMS = replace(CONSENSUS_PARAMS, gov_voting_epochs=2, gov_deposit=5 * COIN)
FEE = Amount(10_000)


def _simulation() -> Simulation:
    return Simulation.create([40 * COIN, 30 * COIN, 20 * COIN, 10 * COIN], PARAMS)


def _wallet(sim: Simulation, key: SecretKey) -> Wallet:
    return Wallet(key=key, params=sim.params)


def _context(sim: Simulation) -> BlockContext:
    head = sim.store.nodes[get_head(sim.store)]
    return BlockContext(height=Height(head.height + 1), slot=Slot(sim.slot + 1))


def _coins(sim: Simulation, key: SecretKey) -> list[tuple[object, object]]:
    view = get_head_view(sim.store)
    return view.utxos_of(address_of(key.public_key))  # type: ignore[return-value]


def _propose(sim: Simulation, key: SecretKey, changes: list[tuple[str, int]], delay: int = 1):
    epoch = sim.slot // sim.params.slots_per_epoch
    tx = _wallet(sim, key).build_propose(
        _coins(sim, key),  # type: ignore[arg-type]
        changes=changes,
        activation=Epoch(epoch + sim.params.gov_voting_epochs + delay),
        fee=FEE,
        context=_context(sim),
    )
    sim.pending_transactions.append(tx)
    return tx


def _vote(sim: Simulation, key: SecretKey, proposal: TxId, choice: VoteChoice) -> Transaction:
    tx = _wallet(sim, key).build_gov_vote(
        _coins(sim, key),  # type: ignore[arg-type]
        proposal=proposal,
        choice=choice,
        fee=FEE,
        context=_context(sim),
    )
    sim.pending_transactions.append(tx)
    return tx


def _run_until_epoch(sim: Simulation, epoch: int) -> None:
    while sim.slot // sim.params.slots_per_epoch < epoch:
        sim.run_slot()


def _head_governance(sim: Simulation) -> GovernanceState:
    return sim.store.nodes[get_head(sim.store)].governance


def test_a_passed_proposal_changes_the_reward_at_its_activation_epoch() -> None:
    sim = _simulation()
    keys = sorted(sim.keys.values(), key=lambda k: k.public_key)
    proposer = keys[0]
    sim.run_slot()
    proposal = _propose(sim, proposer, [("block_reward", 7 * COIN)])
    sim.run_slot()
    state = _head_governance(sim)
    record = state.proposal(proposal.txid)
    assert record is not None
    assert record.status is ProposalStatus.VOTING
    _run_until_epoch(sim, record.start)
    for key in keys[:3]:
        _vote(sim, key, proposal.txid, VoteChoice.YES)
    _run_until_epoch(sim, record.end + 1)
    sim.run_slot()
    passed = _head_governance(sim).proposal(proposal.txid)
    assert passed is not None
    assert passed.status in (ProposalStatus.PASSED, ProposalStatus.ENACTED)
    _run_until_epoch(sim, record.activation)
    sim.run_slot()
    sim.run_slot()
    enacted = _head_governance(sim)
    assert enacted.params.block_reward == 7 * COIN
    assert enacted.proposal(proposal.txid).status is ProposalStatus.ENACTED  # type: ignore[union-attr]
    # every block of an epoch before the activation used the old reward; from it, the new one
    node = sim.store.nodes[get_head(sim.store)]
    while node.parent is not None:
        epoch = node.slot // sim.params.slots_per_epoch
        expected = 7 * COIN if epoch >= record.activation else 5 * COIN
        assert node.governance.params.block_reward == expected
        node = node.parent


def test_a_vote_outside_the_window_or_twice_makes_a_block_invalid() -> None:
    sim = _simulation()
    keys = sorted(sim.keys.values(), key=lambda k: k.public_key)
    sim.run_slot()
    proposal = _propose(sim, keys[0], [("min_fee_rate", 1)])
    sim.run_slot()
    record = _head_governance(sim).proposal(proposal.txid)
    assert record is not None
    early = _vote(sim, keys[1], proposal.txid, VoteChoice.YES)
    sim.pending_transactions.clear()
    head = get_head(sim.store)
    slot = Slot(sim.slot + 1)
    governance = get_governance(sim.store, head, slot)
    assert governance.epoch < record.start
    with pytest.raises(InvalidTransaction) as raised:
        GovernanceDraft(governance).check(early)
    assert raised.value.reason is Reason.VOTING_CLOSED
    _run_until_epoch(sim, record.start)
    first = _vote(sim, keys[1], proposal.txid, VoteChoice.YES)
    sim.run_slot()
    assert first.txid not in {tx.txid for tx in sim.pending_transactions}
    second = _vote(sim, keys[1], proposal.txid, VoteChoice.NO)
    draft = GovernanceDraft(get_governance(sim.store, get_head(sim.store), Slot(sim.slot + 1)))
    with pytest.raises(InvalidTransaction) as raised:
        draft.check(second)
    assert raised.value.reason is Reason.DOUBLE_GOV_VOTE
    assert second.kind is TxKind.GOV_VOTE
