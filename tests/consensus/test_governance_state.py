"""The pure governance rules without a chain: tallies, snapshots, calendar, bounds."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.consensus import GovernanceDraft, GovernanceState, ProposalStatus, Tally
from p2pchain.consensus.governance import FINISHED_KEPT, advance, check_proposal
from p2pchain.consensus.validators import ValidatorSet
from p2pchain.errors import InvalidTransaction, Reason
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.encoding import decode_item, encode_item
from p2pchain.ledger.tx import (
    GovVotePayload,
    ProposePayload,
    Transaction,
    TxKind,
    VoteChoice,
)
from p2pchain.ledger.types import Address, Epoch, PublicKey, TxId
from p2pchain.params import GOVERNABLE, ChainParams

PARAMS = ChainParams(gov_voting_epochs=2, gov_max_proposals=3)
KEYS = [SecretKey.from_entropy(sha256(bytes([i]))).public_key for i in range(6)]
VALIDATORS = [SecretKey.from_entropy(sha256(bytes([i]))).public_key for i in range(64)]
REFUND = Address(bytes(20))


def _propose(changes: list[tuple[str, int]], activation: int) -> Transaction:
    payload = ProposePayload(
        changes=tuple((name.encode(), value) for name, value in changes),
        activation=Epoch(activation),
        refund=REFUND,
    )
    return Transaction(kind=TxKind.PROPOSE, payload=payload)


def _vote(proposal: TxId, key: PublicKey, choice: VoteChoice) -> Transaction:
    payload = GovVotePayload(proposal=proposal, choice=choice, validator=key, signature=bytes(64))
    return Transaction(kind=TxKind.GOV_VOTE, payload=payload)


def _take(state: GovernanceState, *txs: Transaction) -> GovernanceState:
    draft = GovernanceDraft(state)
    for tx in txs:
        draft.check(tx)
        draft.take(tx, tx.txid)
    return draft.finish()


def _stakes(values: list[int]) -> ValidatorSet:
    return ValidatorSet.from_stakes(dict(zip(KEYS, values, strict=False)))


def test_quorum_and_threshold_at_their_exact_boundaries() -> None:
    params = PARAMS  # quorum 40 %, threshold 50 %
    assert Tally(yes=40, total=100).reaches_quorum(params)
    assert not Tally(yes=39, abstain=0, total=100).reaches_quorum(params)
    assert Tally(abstain=40, total=100).reaches_quorum(params)
    assert not Tally(abstain=40, total=100).passes(params)  # quorum, but no yes
    assert not Tally(yes=25, no=25, total=100).passes(params)  # exactly half is not more
    assert Tally(yes=26, no=25, total=100).passes(params)
    assert not Tally().reaches_quorum(params)  # no stake: never


@given(
    early=st.lists(st.integers(1, 10**12), min_size=3, max_size=6),
    later=st.lists(st.lists(st.integers(0, 10**12), min_size=6, max_size=6), max_size=4),
    choices=st.lists(st.sampled_from(VoteChoice), min_size=3, max_size=3),
)
def test_stake_moved_after_the_snapshot_does_not_change_the_tally(
    early: list[int], later: list[list[int]], choices: list[VoteChoice]
) -> None:
    """The snapshot is the stake handed to `advance` when the window opens; every stake map
    passed after that (stake bonded, unbonded, slashed) leaves the tally as it was."""
    state = _take(GovernanceState.at_genesis(PARAMS), _propose([("block_reward", 1)], 4))
    proposal = next(iter(state.active))
    snapshot = _stakes(early)
    state = advance(state, Epoch(1), snapshot)
    votes = [_vote(proposal, key, choice) for key, choice in zip(KEYS, choices, strict=False)]
    state = _take(state, *votes)
    for stakes in later:
        state = advance(state, Epoch(state.epoch), _stakes(stakes))  # same epoch
    state = advance(state, Epoch(2), _stakes(later[0] if later else [1] * 6))
    state = advance(state, Epoch(3), _stakes(later[-1] if later else [1] * 6))
    record = state.proposal(proposal)
    assert record is not None
    assert record.tally is not None
    expected = {choice: 0 for choice in VoteChoice}
    for key, choice in zip(KEYS, choices, strict=False):
        expected[choice] += snapshot.stake_of(key)
    assert (record.tally.yes, record.tally.no, record.tally.abstain) == (
        expected[VoteChoice.YES],
        expected[VoteChoice.NO],
        expected[VoteChoice.ABSTAIN],
    )
    assert record.tally.total == snapshot.total


def test_a_proposal_is_refused_for_unknown_parameters_bad_values_and_bad_activation() -> None:
    base = PARAMS
    for changes, activation in [
        ([("slot_ms", 1)], 4),  # not governable
        ([("block_reward", 0)], 4),  # out of range
        ([("block_reward", 1), ("block_reward", 2)], 4),  # twice
        ([("block_reward", 1)], 2),  # activates inside its own window
        ([("block_reward", 1)], 3 + base.gov_max_activation_delay),  # too late
    ]:
        tx = _propose(changes, activation)
        assert isinstance(tx.payload, ProposePayload)
        with pytest.raises(InvalidTransaction) as raised:
            check_proposal(tx.payload, Epoch(0), base)
        timing = activation != 4
        assert raised.value.reason is (Reason.BAD_ACTIVATION if timing else Reason.BAD_PROPOSAL)
    for name in GOVERNABLE:
        low, high = base.governable_range(name) or (0, 0)
        for value in (low, high):
            tx = _propose([(name, value)], 3)
            assert isinstance(tx.payload, ProposePayload)
            check_proposal(tx.payload, Epoch(0), base)


def test_proposals_in_flight_are_bounded() -> None:
    state = GovernanceState.at_genesis(PARAMS)
    proposals = [_propose([("block_reward", 1 + i)], 3) for i in range(PARAMS.gov_max_proposals)]
    state = _take(state, *proposals)
    with pytest.raises(InvalidTransaction) as raised:
        _take(state, _propose([("block_reward", 99)], 3))
    assert raised.value.reason is Reason.GOVERNANCE_FULL
    # once they are tallied (no votes: no quorum), there is room again
    state = advance(state, Epoch(3), _stakes([1, 1, 1]))
    assert not state.active
    assert {p.status for p in state.finished} == {ProposalStatus.NO_QUORUM}
    _take(state, _propose([("block_reward", 99)], 6))


def test_finished_proposals_kept_are_bounded() -> None:
    """More proposals finish than a state keeps: the newest `FINISHED_KEPT` stay, and a vote
    on a forgotten one is `unknown-proposal` rather than `voting-closed`."""
    params = replace(PARAMS, gov_max_proposals=100)
    state = GovernanceState.at_genesis(params)
    submitted: list[TxId] = []
    for round_ in range(FINISHED_KEPT // 100 + 2):
        epoch = 3 * round_
        batch = [_propose([("block_reward", epoch * 100 + i + 1)], epoch + 3) for i in range(100)]
        state = _take(state, *batch)
        submitted += [tx.txid for tx in batch]
        state = advance(state, Epoch(epoch + 3), _stakes([1]))  # tallied: no quorum
    assert len(submitted) > FINISHED_KEPT
    assert [p.proposal_id for p in state.finished] == submitted[-FINISHED_KEPT:]
    for proposal_id, reason in [
        (submitted[0], Reason.UNKNOWN_PROPOSAL),
        (submitted[-1], Reason.VOTING_CLOSED),
    ]:
        with pytest.raises(InvalidTransaction) as raised:
            _take(state, _vote(proposal_id, KEYS[0], VoteChoice.YES))
        assert raised.value.reason is reason


def test_the_calendar_only_moves_forward_and_never_inside_an_epoch() -> None:
    state = _take(GovernanceState.at_genesis(PARAMS), _propose([("min_fee_rate", 5)], 3))
    proposal = next(iter(state.active))
    state = advance(state, Epoch(1), _stakes([10, 10]))
    state = _take(state, _vote(proposal, KEYS[0], VoteChoice.YES))
    with pytest.raises(ValueError, match="before"):
        advance(state, Epoch(0), _stakes([10, 10]))
    assert advance(state, Epoch(1), _stakes([1, 1])) is state  # same epoch: nothing moves
    passed = advance(state, Epoch(3), _stakes([10, 10]))
    assert passed.params.min_fee_rate == 5  # activation 3 reached in the same step
    assert passed.refunds == ((REFUND, PARAMS.gov_deposit),)
    again = advance(passed, Epoch(3), _stakes([10, 10]))
    assert again.refunds == ()  # a refund is due in one block only
    assert again.params.min_fee_rate == 5


def test_a_vote_needs_snapshot_stake_and_an_open_window() -> None:
    state = _take(GovernanceState.at_genesis(PARAMS), _propose([("min_fee_rate", 5)], 3))
    proposal = next(iter(state.active))
    cases = [
        (state, _vote(proposal, KEYS[0], VoteChoice.YES), Reason.VOTING_CLOSED),  # not open yet
        (
            advance(state, Epoch(1), _stakes([10])),
            _vote(proposal, KEYS[1], VoteChoice.YES),
            Reason.NOT_A_VOTER,
        ),
        (
            advance(state, Epoch(1), _stakes([10])),
            _vote(TxId(bytes(32)), KEYS[0], VoteChoice.YES),
            Reason.UNKNOWN_PROPOSAL,
        ),
        (
            advance(state, Epoch(3), _stakes([10])),
            _vote(proposal, KEYS[0], VoteChoice.YES),
            Reason.VOTING_CLOSED,
        ),
    ]
    for at, vote, reason in cases:
        with pytest.raises(InvalidTransaction) as raised:
            _take(at, vote)
        assert raised.value.reason is reason


def test_quorum_needs_stake_and_is_counted_without_rounding() -> None:
    params = PARAMS
    assert Tally(yes=1, total=1).reaches_quorum(params)  # any stake at all can reach it
    assert not Tally(yes=39_999_999, total=100_000_000).reaches_quorum(params)  # 1 unit short
    assert Tally(yes=40_000_000, total=100_000_000).reaches_quorum(params)


def test_the_governable_names_are_exactly_those_with_a_range() -> None:
    for name in [field.name for field in dataclasses.fields(ChainParams)]:
        assert (PARAMS.governable_range(name) is not None) == (name in GOVERNABLE), name


def test_a_name_that_is_not_ascii_is_a_bad_proposal_not_a_crash() -> None:
    payload = ProposePayload(
        changes=((b"\xffblock_reward", 1),), activation=Epoch(3), refund=REFUND
    )
    with pytest.raises(InvalidTransaction) as raised:
        check_proposal(payload, Epoch(0), PARAMS)
    assert raised.value.reason is Reason.BAD_PROPOSAL


def test_the_latest_activation_allowed_is_inclusive() -> None:
    latest = PARAMS.gov_voting_epochs + PARAMS.gov_max_activation_delay
    tx = _propose([("block_reward", 1)], latest)
    assert isinstance(tx.payload, ProposePayload)
    check_proposal(tx.payload, Epoch(0), PARAMS)


def test_proposals_are_numbered_in_submission_order_across_blocks() -> None:
    state = _take(
        GovernanceState.at_genesis(PARAMS),
        _propose([("block_reward", 1)], 3),
        _propose([("block_reward", 2)], 3),
    )
    state = _take(state, _propose([("block_reward", 3)], 3))  # a later block, same epoch
    records = state.proposals()
    assert [p.order for p in records] == [0, 1, 2]
    assert [p.changes for p in records] == [(("block_reward", v),) for v in (1, 2, 3)]
    assert {(p.submitted, p.start, p.end) for p in records} == {(0, 1, 2)}
    assert state.next_order == 3


def test_changes_due_together_apply_in_activation_order_then_submission_order() -> None:
    """An older proposal activating later wins over a newer one activating earlier, when no
    block came in between to enact them one by one; proposals() lists them as submitted."""
    state = _take(
        GovernanceState.at_genesis(PARAMS),
        _propose([("min_fee_rate", 1)], 5),
        _propose([("min_fee_rate", 2)], 4),
        _propose([("min_fee_rate", 3)], 3),
    )
    ids = [p.proposal_id for p in state.proposals()]
    state = advance(state, Epoch(1), _stakes([10]))
    state = _take(state, *[_vote(i, KEYS[0], VoteChoice.YES) for i in ids])
    enacted = advance(state, Epoch(6), _stakes([10]))  # epochs 2..5 had no block
    assert enacted.params.min_fee_rate == 1
    assert [p.proposal_id for p in enacted.finished] == ids[::-1]  # enacted 3, then 4, then 5
    assert [p.proposal_id for p in enacted.proposals()] == ids
    assert {p.status for p in enacted.proposals()} == {ProposalStatus.ENACTED}


def test_an_epoch_boundary_with_nothing_new_shares_its_parents_lists() -> None:
    """The store keeps one state per epoch for good: quiet epochs must not copy the lists."""
    state = _take(GovernanceState.at_genesis(PARAMS), _propose([("min_fee_rate", 5)], 60))
    state = advance(state, Epoch(3), _stakes([10]))  # no votes: tallied, finished
    assert len(state.finished) == 1
    for epoch in range(4, 20):
        quiet = advance(state, Epoch(epoch), _stakes([10]))
        assert quiet.finished is state.finished
        assert quiet.active is state.active
        assert (quiet.epoch, quiet.params, quiet.refunds) == (epoch, state.params, ())
        state = quiet


def test_a_vote_in_the_last_epoch_of_the_window_counts_and_the_refund_is_due_once() -> None:
    state = _take(GovernanceState.at_genesis(PARAMS), _propose([("min_fee_rate", 7)], 40))
    proposal = next(iter(state.active))
    end = PARAMS.gov_voting_epochs  # the window is epochs 1..end
    state = advance(state, Epoch(1), _stakes([10, 10]))
    # a second proposal whose window opens at the first's last epoch: that epoch moves
    state = _take(state, _propose([("min_fee_rate", 8)], 40))
    state = advance(state, Epoch(end), _stakes([10, 10]))
    state = _take(state, _vote(proposal, KEYS[0], VoteChoice.YES))  # the last epoch
    tallied = advance(state, Epoch(end + 1), _stakes([10, 10]))
    record = tallied.proposal(proposal)
    assert record is not None
    assert record.status is ProposalStatus.PASSED
    assert record.tally == Tally(yes=10, total=20)
    assert tallied.refunds == ((REFUND, PARAMS.gov_deposit),)
    later = advance(tallied, Epoch(end + 2), _stakes([10, 10]))  # the second one tallied
    assert later.refunds == ()  # without quorum: burned
    quiet = advance(later, Epoch(end + 3), _stakes([10, 10]))  # nothing moves
    assert quiet.finished is later.finished
    assert quiet.refunds == ()


def test_a_refund_is_not_due_again_in_a_quiet_epoch() -> None:
    state = _take(GovernanceState.at_genesis(PARAMS), _propose([("min_fee_rate", 7)], 40))
    proposal = next(iter(state.active))
    state = advance(state, Epoch(1), _stakes([10]))
    state = _take(state, _vote(proposal, KEYS[0], VoteChoice.NO))  # quorum, rejected
    tallied = advance(state, Epoch(3), _stakes([10]))
    assert tallied.refunds == ((REFUND, PARAMS.gov_deposit),)
    quiet = advance(tallied, Epoch(4), _stakes([10]))  # nothing left to move
    assert quiet.finished is tallied.finished
    assert quiet.refunds == ()


@given(
    stakes=st.lists(st.integers(1, 10**12), min_size=1, max_size=6),
    choices=st.lists(st.sampled_from([None, *VoteChoice]), min_size=6, max_size=6),
    last_epoch_block=st.booleans(),
    gap=st.integers(0, 3),
)
def test_a_tallied_proposal_keeps_the_tally_it_had_and_drops_its_snapshot_and_votes(
    stakes: list[int], choices: list[VoteChoice | None], last_epoch_block: bool, gap: int
) -> None:
    """Whatever the votes, and however many epochs go by without a block: the tally is the
    `current_tally()` of the last state before the window ended, and the tallied proposal
    (passed, then enacted; or rejected, or without quorum) keeps no snapshot and no votes, in
    memory and through its encoding."""
    activation = PARAMS.gov_voting_epochs + 2
    state = _take(GovernanceState.at_genesis(PARAMS), _propose([("min_fee_rate", 5)], activation))
    proposal = next(iter(state.active))
    state = advance(state, Epoch(1), _stakes(stakes))
    voters = zip(KEYS[: len(stakes)], choices[: len(stakes)], strict=True)
    state = _take(state, *[_vote(proposal, key, c) for key, c in voters if c is not None])
    if last_epoch_block:
        state = advance(state, Epoch(PARAMS.gov_voting_epochs), _stakes([1] * 6))
    voting = state.proposal(proposal)
    assert voting is not None
    assert voting.status is ProposalStatus.VOTING
    assert voting.snapshot is not None
    before = voting.current_tally()
    for epoch in (PARAMS.gov_voting_epochs + 1 + gap, activation + gap):
        state = advance(state, Epoch(epoch), _stakes([7] * 6))
        record = state.proposal(proposal)
        assert record is not None
        assert record.status is not ProposalStatus.VOTING
        assert record.tally == before
        assert record.snapshot is None
        assert dict(record.votes) == {}
        assert record.current_tally() == before
        decoded = GovernanceState.from_rlp(decode_item(encode_item(state.to_rlp())), PARAMS)
        assert decoded.proposal(proposal) == record
    outcomes = {  # (passes, reaches quorum): where the proposal ends once activation passed
        (True, True): ProposalStatus.ENACTED,
        (False, True): ProposalStatus.REJECTED,
        (False, False): ProposalStatus.NO_QUORUM,
    }
    expected = outcomes[before.passes(PARAMS), before.reaches_quorum(PARAMS)]
    assert [p.status for p in state.finished] == [expected]
    assert (state.params.min_fee_rate == 5) is before.passes(PARAMS)


def _snapshot_of(validators: int) -> ValidatorSet:
    """`validators` keys holding 10**12 between them, whatever their number."""
    keys = VALIDATORS[:validators]
    return ValidatorSet.from_stakes({key: 1 for key in keys} | {keys[0]: 10**12 - validators + 1})


def _voted(validators: int, choices: list[VoteChoice | None]) -> GovernanceState:
    """One proposal per choice, its window open on `_snapshot_of(validators)`, every validator
    having answered it with that choice (none for None)."""
    params = replace(PARAMS, gov_max_proposals=len(choices))
    txs = [_propose([("min_fee_rate", 1 + i)], 4) for i in range(len(choices))]
    snapshot = _snapshot_of(validators)
    state = advance(_take(GovernanceState.at_genesis(params), *txs), Epoch(1), snapshot)
    votes = [
        _vote(tx.txid, key, choice)
        for tx, choice in zip(txs, choices, strict=True)
        if choice is not None
        for key in snapshot.keys
    ]
    return _take(state, *votes)


def _finished(validators: int, choices: list[VoteChoice | None]) -> GovernanceState:
    """`_voted` after the windows: tallied, and the passed ones enacted."""
    return advance(_voted(validators, choices), Epoch(4), _snapshot_of(validators))


@given(
    validators=st.integers(1, 64),
    choices=st.lists(st.sampled_from([None, *VoteChoice]), min_size=1, max_size=4),
)
def test_finished_proposals_encode_the_same_whatever_the_number_of_validators(
    validators: int, choices: list[VoteChoice | None]
) -> None:
    """A finished proposal is its terms and its tally: 64 validators voting leave the same
    bytes as one, so the encoded state grows with the proposals in flight, not with history."""
    many, one = _finished(validators, choices), _finished(1, choices)
    assert not many.active
    assert len(many.finished) == len(choices)
    assert [p.tally for p in many.finished] == [p.tally for p in one.finished]
    assert [encode_item(p.to_rlp()) for p in many.finished] == [
        encode_item(p.to_rlp()) for p in one.finished
    ]
    assert encode_item(many.to_rlp()) == encode_item(one.to_rlp())


def test_the_encoded_state_with_finished_proposals_does_not_grow_with_validators() -> None:
    """4 or 64 validators all voting on every proposal: while voting the state carries every
    snapshot entry and vote, once finished the same number of bytes."""
    choices = [VoteChoice.YES, VoteChoice.NO, VoteChoice.ABSTAIN, None]
    voting = {n: len(encode_item(_voted(n, choices).to_rlp())) for n in (4, 64)}
    finished = {n: _finished(n, choices) for n in (4, 64)}
    assert {p.status for p in finished[64].finished} == {
        ProposalStatus.ENACTED,
        ProposalStatus.REJECTED,
        ProposalStatus.NO_QUORUM,
    }
    sizes = {n: len(encode_item(state.to_rlp())) for n, state in finished.items()}
    assert voting[64] > voting[4] + 60 * len(choices) * 35  # a snapshot entry per proposal
    assert sizes[4] == sizes[64] < voting[4]
