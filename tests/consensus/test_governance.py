"""Governance through the real fork-choice store: proposals, votes, tallies and activation,
checked against a naive model that recomputes everything from the chain's blocks."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.consensus import (
    GovernanceState,
    Proposal,
    ProposalStatus,
    Tally,
    get_governance,
    get_head,
    get_head_view,
    get_proposer,
    release_bodies,
)
from p2pchain.consensus.builder import build_block
from p2pchain.consensus.forkchoice import on_block, on_tick, on_vote
from p2pchain.consensus.store import Store
from p2pchain.errors import InvalidBlock, Reason
from p2pchain.ledger.address import address_of
from p2pchain.ledger.block import Block, compute_body_root
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.genesis import genesis_state
from p2pchain.ledger.header import BlockHeader, header_signing_message
from p2pchain.ledger.reward import reward_transaction
from p2pchain.ledger.tx import (
    GovVotePayload,
    ProposePayload,
    Transaction,
    TxKind,
    VoteChoice,
)
from p2pchain.ledger.types import Address, Amount, Epoch, Height, PublicKey, Slot, TxId
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Wallet
from p2pchain.params import COIN, ChainParams
from p2pchain.testing.consensus import CONSENSUS_PARAMS, Simulation, feed_in_order
from p2pchain.testing.roots import state_root_on

PARAMS = replace(CONSENSUS_PARAMS, gov_voting_epochs=2, gov_deposit=5 * COIN)
STAKES = (40 * COIN, 30 * COIN, 20 * COIN, 10 * COIN)
FEE = Amount(10_000)


# -- helpers ------------------------------------------------------------------------------


def _simulation(params: ChainParams = PARAMS) -> Simulation:
    return Simulation.create(list(STAKES), params)


def _keys(sim: Simulation) -> list[SecretKey]:
    """The validators' keys, largest genesis stake first."""
    stakes = sim.store.nodes[sim.store.genesis_id].validator_set
    return sorted(sim.keys.values(), key=lambda key: -stakes.stake_of(key.public_key))


def _epoch(sim: Simulation, slot: int | None = None) -> int:
    return (sim.slot if slot is None else slot) // sim.params.slots_per_epoch


def _context(sim: Simulation) -> BlockContext:
    head = sim.store.nodes[get_head(sim.store)]
    return BlockContext(height=Height(head.height + 1), slot=Slot(sim.slot + 1))


def _spendable(sim: Simulation, key: SecretKey) -> list[tuple[object, object]]:
    """The key's coins at the head not already spent by a pending transaction."""
    pending = {i.outpoint for tx in sim.pending_transactions for i in tx.inputs}
    coins = get_head_view(sim.store).utxos_of(address_of(key.public_key))
    return [coin for coin in coins if coin[0] not in pending]


def _propose(
    sim: Simulation, key: SecretKey, changes: Sequence[tuple[str, int]], delay: int = 1
) -> Transaction:
    tx = Wallet(key=key, params=sim.params).build_propose(
        _spendable(sim, key),  # type: ignore[arg-type]
        changes=changes,
        activation=Epoch(_epoch(sim, sim.slot + 1) + sim.params.gov_voting_epochs + delay),
        fee=FEE,
        context=_context(sim),
    )
    sim.pending_transactions.append(tx)
    return tx


def _proposed(
    sim: Simulation, key: SecretKey, changes: Sequence[tuple[str, int]], delay: int = 1
) -> tuple[Transaction, Proposal]:
    """A proposal by `key` made in the next slot and carried by the one after: the
    transaction and its record at the head."""
    sim.run_slot()
    proposal = _propose(sim, key, changes, delay)
    sim.run_slot()
    record = _head_governance(sim).proposal(proposal.txid)
    assert record is not None
    return proposal, record


def _vote(
    sim: Simulation,
    key: SecretKey,
    proposal: TxId,
    choice: VoteChoice,
    *,
    payer: SecretKey | None = None,
) -> Transaction:
    """Queue `key`'s vote, its fee paid by `payer` (default: the validator itself)."""
    wallet = Wallet(key=key if payer is None else payer, params=sim.params)
    tx = wallet.build_gov_vote(
        _spendable(sim, wallet.key),  # type: ignore[arg-type]
        proposal=proposal,
        choice=choice,
        fee=FEE,
        context=_context(sim),
        validator=key,
    )
    sim.pending_transactions.append(tx)
    return tx


def _run_until_epoch(sim: Simulation, epoch: int) -> None:
    while _epoch(sim) < epoch:
        sim.run_slot()


def _head_governance(sim: Simulation) -> GovernanceState:
    return sim.store.nodes[get_head(sim.store)].governance


def _chain(store: Store) -> list[Block]:
    """The canonical blocks after genesis, oldest first."""
    blocks: list[Block] = []
    node = store.nodes[get_head(store)]
    while node.parent is not None:
        assert node.block is not None
        blocks.append(node.block)
        node = node.parent
    return blocks[::-1]


def _forge(sim: Simulation, transactions: Sequence[Transaction]) -> Block:
    """A block by the rightful proposer of the next slot carrying exactly `transactions`
    (each paying FEE), with no governance check: how a hostile proposer would build it."""
    store, slot = sim.store, Slot(sim.slot + 1)
    head = get_head(store)
    proposer = get_proposer(store, head, slot)
    assert proposer is not None
    governance = get_governance(store, head, slot)
    height = Height(store.nodes[head].height + 1)
    reward = reward_transaction(
        height=height,
        amount=Amount(governance.params.block_reward + FEE * len(transactions)),
        address=address_of(proposer),
        params=governance.params,
        refunds=governance.refunds,
    )
    body = (reward, *transactions)
    header = BlockHeader(
        parent=head,
        height=height,
        slot=slot,
        proposer=proposer,
        body_root=compute_body_root(body, ()),
        state_root=state_root_on(store, head, body, slot=slot),
    )
    signature = sim.keys[proposer].sign(
        header_signing_message(sim.params.chain_id, header.block_id)
    )
    return Block(header=header, signature=signature, transactions=body, votes=())


# -- a naive model ---------------------------------------------------------------------------


@dataclass
class _ModelProposal:
    txid: TxId
    changes: tuple[tuple[str, int], ...]
    refund: Address
    submitted: int
    activation: int
    snapshot: dict[PublicKey, int] | None = None
    votes: dict[PublicKey, VoteChoice] | None = None
    status: str = "voting"
    tally: Tally | None = None


def _model(
    params: ChainParams, sim: Simulation, blocks: Sequence[Block]
) -> tuple[list[ChainParams], dict[TxId, _ModelProposal], list[list[tuple[Address, int]]]]:
    """Replay `blocks` from genesis the slow way: the parameters each block was validated
    with, every proposal's fate, and the refunds each block had to carry."""
    _, view = genesis_state(sim.genesis, params)
    proposals: dict[TxId, _ModelProposal] = {}
    in_force: list[ChainParams] = []
    refunds_per_block: list[list[tuple[Address, int]]] = []
    enacted: list[tuple[int, int, _ModelProposal]] = []
    order = 0
    orders: dict[TxId, int] = {}
    for block in blocks:
        epoch = block.header.slot // params.slots_per_epoch
        stakes_before = view.bonded_stake()
        refunds: list[tuple[Address, int]] = []
        for proposal in sorted(proposals.values(), key=lambda p: orders[p.txid]):
            start = proposal.submitted + 1
            end = proposal.submitted + params.gov_voting_epochs
            if proposal.status != "voting":
                continue
            if proposal.snapshot is None and epoch >= start:
                proposal.snapshot = dict(stakes_before)
            if epoch > end:
                snapshot = proposal.snapshot or {}
                votes = proposal.votes or {}
                total = sum(snapshot.values())
                by = {
                    c: sum(snapshot.get(k, 0) for k, v in votes.items() if v is c)
                    for c in VoteChoice
                }
                turnout = sum(by.values())
                quorum = total > 0 and turnout * 10_000 >= params.gov_quorum_bps * total
                yes, no = by[VoteChoice.YES], by[VoteChoice.NO]
                passes = quorum and yes * 10_000 > params.gov_threshold_bps * (yes + no)
                if quorum:
                    refunds.append((proposal.refund, params.gov_deposit))
                proposal.status = "passed" if passes else ("rejected" if quorum else "no-quorum")
                proposal.tally = Tally(yes=yes, no=no, abstain=by[VoteChoice.ABSTAIN], total=total)
                if passes:
                    enacted.append((proposal.activation, orders[proposal.txid], proposal))
        current = params
        for activation, _, proposal in sorted(enacted, key=lambda e: (e[0], e[1])):
            if activation <= epoch:
                current = replace(current, **dict(proposal.changes))  # type: ignore[arg-type]
                proposal.status = "enacted"
        in_force.append(current)
        refunds_per_block.append(refunds)
        for tx in block.transactions:
            payload = tx.payload
            if isinstance(payload, ProposePayload):
                proposals[tx.txid] = _ModelProposal(
                    txid=tx.txid,
                    changes=tuple((n.decode(), v) for n, v in payload.changes),
                    refund=payload.refund,
                    submitted=epoch,
                    activation=payload.activation,
                    votes={},
                )
                orders[tx.txid] = order
                order += 1
            elif isinstance(payload, GovVotePayload):
                record = proposals[payload.proposal]
                assert record.votes is not None
                assert payload.validator not in record.votes, "a double vote reached the chain"
                assert record.submitted + 1 <= epoch <= record.submitted + params.gov_voting_epochs
                record.votes[payload.validator] = payload.choice
        view.apply(block)
    return in_force, proposals, refunds_per_block


def _assert_matches_model(sim: Simulation, store: Store) -> None:
    blocks = _chain(store)
    in_force, proposals, refunds = _model(sim.params, sim, blocks)
    for block, params, due in zip(blocks, in_force, refunds, strict=True):
        node = store.nodes[block.block_id]
        assert node.governance.params == params
        assert [(a, int(n)) for a, n in node.governance.refunds] == due
        reward = block.transactions[0]
        assert [
            (o.address, o.amount) for o in reward.outputs[len(reward.outputs) - len(due) :]
        ] == due
    head = store.nodes[get_head(store)].governance
    for txid, expected in proposals.items():
        record = head.proposal(txid)
        assert record is not None
        assert record.status.value == expected.status
        assert record.tally == expected.tally
        if expected.tally is not None:  # tallied: the tally is all it keeps
            assert record.snapshot is None
            assert not record.votes


def _comparable(state: GovernanceState) -> list[tuple[object, ...]]:
    """A state's proposals as plain values (validator sets compare by identity)."""
    return [
        (
            p.proposal_id,
            p.status,
            dict(p.votes),
            p.current_tally(),
            None if p.snapshot is None else dict(p.snapshot.stakes),
        )
        for p in state.proposals()
    ]


# -- scenarios -------------------------------------------------------------------------------


def test_a_passed_proposal_changes_the_reward_from_its_activation_epoch_and_refunds() -> None:
    sim = _simulation()
    keys = _keys(sim)
    proposer = keys[3]
    proposal, record = _proposed(sim, proposer, [("block_reward", 7 * COIN)])
    assert record.status is ProposalStatus.VOTING
    _run_until_epoch(sim, record.start)
    for key in keys[:2]:  # 70 % of the stake
        _vote(sim, key, proposal.txid, VoteChoice.YES)
    _run_until_epoch(sim, record.activation + 1)
    sim.run_slot()
    state = _head_governance(sim)
    assert state.params.block_reward == 7 * COIN
    enacted = state.proposal(proposal.txid)
    assert enacted is not None
    assert enacted.status is ProposalStatus.ENACTED
    assert enacted.tally is not None
    assert enacted.tally.yes == STAKES[0] + STAKES[1]
    # every block before the activation epoch paid the old reward, every one from it the new
    for block in _chain(sim.store):
        epoch = block.header.slot // sim.params.slots_per_epoch
        paid = block.transactions[0].outputs[0].amount
        fees = FEE * (len(block.transactions) - 1)
        expected = 7 * COIN if epoch >= record.activation else 5 * COIN
        assert paid == expected + fees
    # the deposit came back to the proposer, in one reward, locked like it
    refunds = [
        output
        for block in _chain(sim.store)
        for output in block.transactions[0].outputs[1:]
        if output.address == address_of(proposer.public_key)
    ]
    assert [output.amount for output in refunds] == [sim.params.gov_deposit]
    _assert_matches_model(sim, sim.store)


def test_without_quorum_the_deposit_is_burned_and_nothing_changes() -> None:
    sim = _simulation()
    keys = _keys(sim)
    proposal, record = _proposed(sim, keys[3], [("min_fee_rate", 3)])
    _run_until_epoch(sim, record.start)
    _vote(sim, keys[2], proposal.txid, VoteChoice.YES)  # 20 % < 40 % quorum
    _run_until_epoch(sim, record.activation + 1)
    state = _head_governance(sim)
    finished = state.proposal(proposal.txid)
    assert finished is not None
    assert finished.status is ProposalStatus.NO_QUORUM
    assert state.params.min_fee_rate == 0
    assert all(len(block.transactions[0].outputs) == 1 for block in _chain(sim.store))
    _assert_matches_model(sim, sim.store)


def test_votes_outside_the_window_and_double_votes_make_a_block_invalid() -> None:
    sim = _simulation()
    keys = _keys(sim)
    proposal, record = _proposed(sim, keys[0], [("unbonding_epochs", 3)])
    early = _vote(sim, keys[1], proposal.txid, VoteChoice.YES)
    sim.pending_transactions.clear()
    assert _epoch(sim, sim.slot + 1) < record.start
    with pytest.raises(InvalidBlock) as raised:
        on_block(sim.store, _forge(sim, [early]), Slot(sim.slot + 1))
    assert raised.value.reason is Reason.VOTING_CLOSED
    _run_until_epoch(sim, record.start)
    first = _vote(sim, keys[1], proposal.txid, VoteChoice.YES)
    while first in sim.pending_transactions:
        sim.run_slot()
    second = _vote(sim, keys[1], proposal.txid, VoteChoice.NO)
    sim.pending_transactions.clear()
    head = get_head(sim.store)
    with pytest.raises(InvalidBlock) as raised:
        on_block(sim.store, _forge(sim, [second]), Slot(sim.slot + 1))
    assert raised.value.reason is Reason.DOUBLE_GOV_VOTE
    assert get_head(sim.store) == head
    both = [
        _vote(sim, keys[2], proposal.txid, VoteChoice.YES),
        _vote(sim, keys[2], proposal.txid, VoteChoice.NO, payer=keys[3]),
    ]
    sim.pending_transactions.clear()
    with pytest.raises(InvalidBlock) as raised:
        on_block(sim.store, _forge(sim, both), Slot(sim.slot + 1))
    assert raised.value.reason is Reason.DOUBLE_GOV_VOTE
    _run_until_epoch(sim, record.end + 1)
    late = _vote(sim, keys[3], proposal.txid, VoteChoice.YES)
    sim.pending_transactions.clear()
    with pytest.raises(InvalidBlock) as raised:
        on_block(sim.store, _forge(sim, [late]), Slot(sim.slot + 1))
    assert raised.value.reason is Reason.VOTING_CLOSED
    stranger = SecretKey.from_entropy(bytes(range(32)))
    forged = Wallet(key=keys[3], params=sim.params).build_gov_vote(
        _spendable(sim, keys[3]),  # type: ignore[arg-type]
        proposal=proposal.txid,
        choice=VoteChoice.YES,
        fee=FEE,
        context=_context(sim),
        validator=stranger,
    )
    assert forged.kind is TxKind.GOV_VOTE
    with pytest.raises(InvalidBlock) as raised:
        on_block(sim.store, _forge(sim, [forged]), Slot(sim.slot + 1))
    assert raised.value.reason in (Reason.VOTING_CLOSED, Reason.NOT_A_VOTER)
    final = _head_governance(sim).proposal(proposal.txid)
    assert final is not None
    assert final.tally is not None
    assert final.tally.turnout == STAKES[1]  # only the first vote counted


choices = st.sampled_from([None, VoteChoice.YES, VoteChoice.NO, VoteChoice.ABSTAIN])


@given(
    reward=st.integers(1, 20 * COIN),
    votes=st.lists(st.tuples(choices, st.integers(-1, 2)), min_size=4, max_size=4),
    delay=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_order_of_delivery_enacts_the_same_parameters_at_the_same_epoch(
    reward: int, votes: list[tuple[VoteChoice | None, int]], delay: int, seed: int
) -> None:
    """Whatever the vote pattern (some too early: they wait; some too late: never counted),
    the store matches the naive model, and a store fed the same messages in a random order
    ends with the same head and the same governance at every block."""
    sim = _simulation()
    keys = _keys(sim)
    proposal, record = _proposed(sim, keys[3], [("block_reward", reward)], delay)
    for offset in range(-1, sim.params.gov_voting_epochs + 1):
        _run_until_epoch(sim, record.start + offset)
        for key, (choice, when) in zip(keys, votes, strict=True):
            if choice is not None and when == offset:
                _vote(sim, key, proposal.txid, choice)
    _run_until_epoch(sim, record.activation + 1)
    _assert_matches_model(sim, sim.store)
    messages = list(sim.messages)
    random.Random(seed).shuffle(messages)
    other = feed_in_order(sim.params, sim.genesis, messages, sim.slot)
    assert get_head(other) == get_head(sim.store)
    for block in _chain(sim.store):
        mine, theirs = sim.store.nodes[block.block_id], other.nodes[block.block_id]
        assert theirs.governance.params == mine.governance.params
        assert _comparable(theirs.governance) == _comparable(mine.governance)


def test_a_reorg_takes_the_governance_of_the_branch_it_moves_to() -> None:
    """Two branches from one block: on one the validators vote the change through, on the
    other nobody votes. A store on the silent branch keeps the old parameters; when the voted
    branch reaches it and wins the fork choice, the head's parameters are the voted ones."""
    sim = _simulation()
    keys = _keys(sim)
    proposal, record = _proposed(sim, keys[3], [("block_reward", 9 * COIN)])
    _run_until_epoch(sim, record.start)
    prefix, fork_slot = list(sim.messages), sim.slot
    for key in keys[:3]:
        _vote(sim, key, proposal.txid, VoteChoice.YES)
    _run_until_epoch(sim, record.activation + 1)
    assert _head_governance(sim).params.block_reward == 9 * COIN
    other = feed_in_order(sim.params, sim.genesis, prefix, fork_slot)
    parent, slot = get_head(other), fork_slot
    while slot // sim.params.slots_per_epoch <= record.activation:
        slot += 1
        on_tick(other, Slot(slot))
        proposer = get_proposer(other, parent, Slot(slot))
        if proposer is None:
            continue
        block = build_block(other, parent, Slot(slot), sim.keys[proposer])
        on_block(other, block, Slot(slot))
        parent = block.block_id
    assert get_head(other) == parent
    silent = other.nodes[parent].governance
    assert silent.params.block_reward == 5 * COIN
    finished = silent.proposal(proposal.txid)
    assert finished is not None
    assert finished.status is ProposalStatus.NO_QUORUM
    on_tick(other, Slot(sim.slot))
    for message in sim.messages[len(prefix) :]:
        if isinstance(message, Block):
            on_block(other, message, Slot(sim.slot))
        else:
            on_vote(other, message, Slot(sim.slot))
    assert get_head(other) == get_head(sim.store)
    assert other.nodes[get_head(other)].governance.params.block_reward == 9 * COIN


def test_released_history_keeps_no_governance_and_the_chain_goes_on() -> None:
    """A finalized block's ancestors drop their governance with their bodies (their vote maps
    would otherwise stay for good); nothing reads it again, and blocks keep coming."""
    sim = _simulation()
    keys = _keys(sim)
    proposal, record = _proposed(sim, keys[3], [("min_fee_rate", 1)])
    _run_until_epoch(sim, record.start)
    for key in keys[:2]:
        _vote(sim, key, proposal.txid, VoteChoice.YES)
    _run_until_epoch(sim, record.activation + 2)
    finalized = sim.store.nodes[sim.store.finalized_checkpoint.block_id]
    assert finalized.height > 2
    released = release_bodies(sim.store, finalized.height)
    assert released
    ancestors = [sim.store.nodes[block.block_id] for block in released]
    assert all(node.governance is None for node in ancestors)
    assert finalized.governance is not None
    with pytest.raises(ValueError, match="released"):
        get_governance(sim.store, ancestors[-1].block_id, Slot(sim.slot + 1))
    height = sim.store.nodes[sim.store.head].height
    sim.run_slot()
    sim.run_slot()
    assert sim.store.nodes[sim.store.head].height > height
    assert _head_governance(sim).params.min_fee_rate == 1
