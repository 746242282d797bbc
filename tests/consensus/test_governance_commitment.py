"""The governance state in the state root: its encoding (exact round trip, canonical, hostile
input refused as `DecodeError`), the leaf every header commits to, and its plumbing through the
fork-choice store (reorgs, undo, the proposer, the cost of a quiet block)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import cache
from types import MappingProxyType

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from p2pchain.consensus import GovernanceDraft, GovernanceState, ProposalStatus, Tally
from p2pchain.consensus.builder import build_block
from p2pchain.consensus.forkchoice import get_block_view, get_head, get_head_view, on_block
from p2pchain.consensus.governance import (
    FINISHED_KEPT,
    Proposal,
    advance,
    commitment_after,
)
from p2pchain.consensus.store import Store, get_proposer
from p2pchain.consensus.validators import ValidatorSet
from p2pchain.errors import DecodeError, InvalidBlock, InvalidTransaction, Reason
from p2pchain.ledger.address import address_of
from p2pchain.ledger.block import Block
from p2pchain.ledger.commitment import GOVERNANCE_KEY, genesis_governance_value, governance_value
from p2pchain.ledger.crypto import SecretKey, sha256, tagged_hash
from p2pchain.ledger.encoding import RLPItem, decode_item, encode_item, uint_bytes
from p2pchain.ledger.genesis import genesis_block, genesis_state
from p2pchain.ledger.header import header_signing_message
from p2pchain.ledger.tx import (
    GovVotePayload,
    OutPoint,
    ProposePayload,
    Transaction,
    TxKind,
    TxOutput,
    VoteChoice,
)
from p2pchain.ledger.types import Address, Amount, Epoch, Hash32, Height, PublicKey, Slot, TxId
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Wallet
from p2pchain.params import COIN, GOVERNABLE, ChainParams
from p2pchain.testing import spec
from p2pchain.testing.consensus import CONSENSUS_PARAMS, Simulation
from p2pchain.testing.roots import naive_state_root, state_root_after

PARAMS = ChainParams(gov_voting_epochs=2, gov_max_proposals=3)
KEYS = [SecretKey.from_entropy(sha256(bytes([i]))).public_key for i in range(5)]
REFUND = Address(b"\x07" * 20)
CHANGES = [(name, low) for name in GOVERNABLE for low, _ in [PARAMS.governable_range(name)]]


# -- states built by the real rules, without a chain ----------------------------------------


def _propose(changes: list[tuple[str, int]], activation: int, salt: int) -> Transaction:
    payload = ProposePayload(
        changes=tuple((name.encode(), value) for name, value in changes),
        activation=Epoch(activation),
        refund=Address(salt.to_bytes(20, "big")),  # distinct txids
    )
    return Transaction(kind=TxKind.PROPOSE, payload=payload)


def _vote(proposal: TxId, key: PublicKey, choice: VoteChoice) -> Transaction:
    payload = GovVotePayload(proposal=proposal, choice=choice, validator=key, signature=bytes(64))
    return Transaction(kind=TxKind.GOV_VOTE, payload=payload)


def _stakes(values: list[int]) -> ValidatorSet:
    return ValidatorSet.from_stakes(dict(zip(KEYS, values, strict=False)))


@st.composite
def governance_states(draw: st.DrawFn, params: ChainParams = PARAMS) -> list[GovernanceState]:
    """Every state (after `advance`, after a block's governance transactions) along a random
    history built with the real rules: proposals, votes (many refused by the rules, which is
    how the history stays valid) and epochs passing with random stake tables (some empty)."""
    state = GovernanceState.at_genesis(params)
    states = [state]
    salt = 0
    for _ in range(draw(st.integers(1, 14))):
        action = draw(st.sampled_from(["propose", "vote", "vote", "advance", "advance"]))
        if action == "advance":
            stakes = draw(st.lists(st.integers(0, 10**12), max_size=len(KEYS)))
            state = advance(state, Epoch(state.epoch + draw(st.integers(0, 3))), _stakes(stakes))
        else:
            txs: list[Transaction] = []
            for _ in range(draw(st.integers(1, 3))):
                if action == "propose":
                    salt += 1
                    picked = draw(
                        st.lists(st.sampled_from(CHANGES), min_size=1, max_size=3, unique=True)
                    )
                    changes = [
                        (name, draw(st.integers(*(params.governable_range(name) or (0, 0)))))
                        for name, _ in picked
                    ]
                    delay = draw(st.integers(1, 3))
                    txs.append(
                        _propose(changes, state.epoch + params.gov_voting_epochs + delay, salt)
                    )
                elif state.active:
                    proposal = draw(st.sampled_from(sorted(state.active)))
                    key = draw(st.sampled_from(KEYS))
                    txs.append(_vote(proposal, key, draw(st.sampled_from(VoteChoice))))
            draft = GovernanceDraft(state)
            for tx in txs:
                try:
                    draft.check(tx)
                except InvalidTransaction:
                    continue
                draft.take(tx, tx.txid)
            state = draft.finish()
        states.append(state)
    return states


def _encoded(state: GovernanceState) -> bytes:
    return encode_item(state.to_rlp())


def _decoded(data: bytes, base: ChainParams = PARAMS) -> GovernanceState:
    return GovernanceState.from_rlp(decode_item(data), base)


@given(governance_states())
def test_the_encoding_round_trips_exactly_and_refunds_are_all_it_leaves_out(
    states: list[GovernanceState],
) -> None:
    for state in states:
        decoded = _decoded(_encoded(state))
        assert decoded == replace(state, refunds=())
        assert _encoded(decoded) == _encoded(state)  # canonical: one encoding per state
        assert decoded.commitment() == state.commitment()
        if not state.refunds:
            assert decoded == state
        assert decoded.proposals() == state.proposals()
        for proposal in state.proposals():
            tallied = proposal.status is not ProposalStatus.VOTING
            assert (proposal.tally is not None) is tallied
            if tallied:  # the tally is all it keeps
                assert proposal.snapshot is None
                assert not proposal.votes
            assert decoded.proposal(proposal.proposal_id) == proposal
            assert decoded.proposal(proposal.proposal_id).current_tally() == (  # type: ignore[union-attr]
                proposal.current_tally()
            )


@given(governance_states(), st.integers(0, 3), st.lists(st.integers(0, 10**12), max_size=5))
def test_a_decoded_state_leads_where_the_state_does(
    states: list[GovernanceState], ahead: int, stakes: list[int]
) -> None:
    """Refunds are paid by the one block the state was advanced for: every later state is the
    same from the decoded state (no refunds) as from the original."""
    for state in states:
        later = Epoch(state.epoch + ahead)
        mine = advance(state, later, _stakes(stakes))
        theirs = advance(_decoded(_encoded(state)), later, _stakes(stakes))
        assert theirs == mine
        assert theirs.refunds == mine.refunds


def test_the_histories_reach_every_status_refunds_and_snapshots() -> None:
    """The strategy above is worth its name: some history has each status, a refund, an
    empty snapshot and votes (checked on one fixed history of the rules)."""
    state = GovernanceState.at_genesis(PARAMS)
    draft = GovernanceDraft(state)
    proposals = [_propose([("min_fee_rate", 5 + i)], 3, i) for i in range(3)]
    for tx in proposals:
        draft.take(tx, tx.txid)
    state = advance(draft.finish(), Epoch(1), _stakes([10, 10, 10]))
    draft = GovernanceDraft(state)
    for tx in [
        _vote(proposals[0].txid, KEYS[0], VoteChoice.YES),
        _vote(proposals[0].txid, KEYS[1], VoteChoice.YES),
        _vote(proposals[1].txid, KEYS[0], VoteChoice.NO),
        _vote(proposals[1].txid, KEYS[2], VoteChoice.ABSTAIN),
    ]:
        draft.check(tx)
        draft.take(tx, tx.txid)
    voted = draft.finish()
    passed = advance(voted, Epoch(3), _stakes([]))
    assert {p.status for p in passed.proposals()} == {
        ProposalStatus.ENACTED,
        ProposalStatus.REJECTED,
        ProposalStatus.NO_QUORUM,
    }
    assert passed.refunds
    for state in (voted, passed):
        assert _decoded(_encoded(state)) == replace(state, refunds=())
    waiting = _propose([("block_reward", 1)], 6, 9)
    draft = GovernanceDraft(passed)
    draft.take(waiting, waiting.txid)
    later = advance(draft.finish(), Epoch(4), _stakes([]))  # the window opens on no stake
    record = later.proposal(waiting.txid)
    assert record is not None
    assert record.snapshot is not None
    assert not record.snapshot.total
    assert _decoded(_encoded(later)) == later


# -- the encoding, byte for byte --------------------------------------------------------------


def test_the_genesis_state_encodes_as_documented() -> None:
    """docs/protocol.md: `[epoch, [block_reward, min_fee_rate, reward_maturity,
    unbonding_epochs, max_block_txs], [active…], [finished…], next_order]`."""
    params = ChainParams()
    state = GovernanceState.at_genesis(params)
    assert GOVERNABLE == (
        "block_reward",
        "min_fee_rate",
        "reward_maturity",
        "unbonding_epochs",
        "max_block_txs",
    )
    values = [uint_bytes(v) for v in (5 * COIN, 0, 10, 4, 10_000)]
    assert state.to_rlp() == [b"", values, [], [], b""]
    expected = tagged_hash(b"p2pchain/state/governance-state", encode_item(state.to_rlp()))
    assert state.commitment() == expected == governance_value(_encoded(state))
    assert tagged_hash(b"p2pchain/state/governance", b"") == GOVERNANCE_KEY


def test_a_proposal_encodes_as_documented() -> None:
    """While voting: the snapshot and the votes by ascending key, no tally; once tallied: the
    tally, and the snapshot and the votes empty."""
    snapshot = _stakes([3, 0, 5])
    proposal = Proposal(
        proposal_id=TxId(b"\x01" * 32),
        changes=(("min_fee_rate", 7), ("block_reward", 1)),
        refund=REFUND,
        deposit=PARAMS.gov_deposit,  # type: ignore[arg-type]
        submitted=Epoch(4),
        start=Epoch(5),
        end=Epoch(6),
        activation=Epoch(9),
        order=2,
        snapshot=snapshot,
        votes=MappingProxyType({KEYS[2]: VoteChoice.ABSTAIN, KEYS[0]: VoteChoice.YES}),
    )
    low, high = sorted([KEYS[0], KEYS[2]])
    choice = {KEYS[0]: VoteChoice.YES, KEYS[2]: VoteChoice.ABSTAIN}
    assert proposal.to_rlp() == [
        b"\x01" * 32,
        [[b"min_fee_rate", b"\x07"], [b"block_reward", b"\x01"]],
        REFUND,
        uint_bytes(PARAMS.gov_deposit),
        b"\x04",
        b"\x05",
        b"\x06",
        b"\x09",
        b"\x02",
        b"",  # voting
        [[[low, uint_bytes(snapshot.stake_of(low))], [high, uint_bytes(snapshot.stake_of(high))]]],
        [[low, uint_bytes(choice[low])], [high, uint_bytes(choice[high])]],
        [],
    ]
    assert Proposal.from_rlp(proposal.to_rlp(), PARAMS) == proposal
    assert proposal.current_tally() == Tally(yes=3, no=0, abstain=5, total=8)
    rejected = replace(
        proposal,
        status=ProposalStatus.REJECTED,
        snapshot=None,
        votes=MappingProxyType({}),
        tally=proposal.current_tally(),
    )
    assert rejected.to_rlp()[9:] == [b"\x03", [], [], [b"\x03", b"", b"\x05", b"\x08"]]
    assert Proposal.from_rlp(rejected.to_rlp(), PARAMS) == rejected
    fresh = replace(proposal, snapshot=None, votes={})
    assert fresh.to_rlp()[9:] == [b"", [], [], []]
    assert Proposal.from_rlp(fresh.to_rlp(), PARAMS) == fresh
    empty = replace(fresh, snapshot=_stakes([]))  # opened on no stake: not the same as none
    assert empty.to_rlp()[10] == [[]]
    assert Proposal.from_rlp(empty.to_rlp(), PARAMS) == empty != fresh


def test_the_params_in_force_decode_against_the_base() -> None:
    """A value equal to the base's is always accepted (the base may sit outside a governable
    range: a maturity of 0); any other must be in its range."""
    base = replace(PARAMS, reward_maturity=0)
    state = GovernanceState.at_genesis(base)
    assert _decoded(_encoded(state), base) == state
    item = state.to_rlp()
    assert isinstance(item, list)
    assert isinstance(item[1], list)
    item[1][GOVERNABLE.index("reward_maturity")] = uint_bytes(7)
    assert GovernanceState.from_rlp(item, base).params == replace(base, reward_maturity=7)
    item[1][GOVERNABLE.index("reward_maturity")] = uint_bytes(10_001)  # above its range
    with pytest.raises(DecodeError):
        GovernanceState.from_rlp(item, base)


# -- hostile encodings --------------------------------------------------------------------------


@cache
def _sample() -> GovernanceState:
    """A state with every kind of part: proposals voting (with and without a snapshot, with
    and without votes), passed, and finished three ways, with their tallies."""
    state = GovernanceState.at_genesis(replace(PARAMS, gov_max_proposals=5))
    draft = GovernanceDraft(state)
    first = [_propose([("min_fee_rate", 5 + i), ("block_reward", 9)], 4 + i, i) for i in range(4)]
    for tx in first:
        draft.take(tx, tx.txid)
    state = advance(draft.finish(), Epoch(1), _stakes([10, 10, 10, 10]))
    draft = GovernanceDraft(state)
    for tx in [
        _vote(first[0].txid, KEYS[0], VoteChoice.YES),
        _vote(first[0].txid, KEYS[1], VoteChoice.YES),
        _vote(first[1].txid, KEYS[2], VoteChoice.NO),
        _vote(first[1].txid, KEYS[3], VoteChoice.NO),
        _vote(first[3].txid, KEYS[0], VoteChoice.YES),
        _vote(first[3].txid, KEYS[1], VoteChoice.YES),
    ]:
        draft.take(tx, tx.txid)
    state = advance(draft.finish(), Epoch(3), _stakes([1]))
    draft = GovernanceDraft(state)
    late = [_propose([("max_block_txs", 50)], 7, 10), _propose([("reward_maturity", 3)], 8, 11)]
    for tx in late:
        draft.take(tx, tx.txid)
    state = advance(draft.finish(), Epoch(4), _stakes([2, 3]))  # one proposal enacted
    draft = GovernanceDraft(state)
    newest = _propose([("unbonding_epochs", 2)], 8, 12)
    for tx in [
        newest,
        _vote(late[0].txid, KEYS[1], VoteChoice.NO),
        _vote(late[0].txid, KEYS[0], VoteChoice.YES),
    ]:
        draft.check(tx)
        draft.take(tx, tx.txid)
    state = draft.finish()
    statuses = {p.status for p in state.proposals()}
    assert statuses == set(ProposalStatus), statuses
    assert any(p.snapshot is None for p in state.active.values())
    assert any(p.votes for p in state.active.values())
    return state


SAMPLE_BASE = replace(PARAMS, gov_max_proposals=5)


def _paths(item: RLPItem, path: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    found = [path]
    if isinstance(item, list):
        for index, child in enumerate(item):
            found += _paths(child, (*path, index))
    return found


def _replaced(
    item: RLPItem, path: tuple[int, ...], change: Callable[[RLPItem], RLPItem | None]
) -> RLPItem:
    """`item` with the sub-item at `path` changed (None: removed)."""
    if not path:
        changed = change(item)
        return [] if changed is None else changed
    assert isinstance(item, list)
    head, rest = path[0], path[1:]
    children = list(item)
    if rest:
        children[head] = _replaced(children[head], rest, change)
    else:
        changed = change(children[head])
        if changed is None:
            del children[head]
        else:
            children[head] = changed
    return children


def _refused_or_canonical(item: RLPItem) -> None:
    """Hostile input either fails as `DecodeError` (nothing else) or is the one encoding of
    the state it decodes to."""
    try:
        state = GovernanceState.from_rlp(item, SAMPLE_BASE)
    except DecodeError:
        return
    assert state.to_rlp() == item


garbage = st.recursive(
    st.binary(max_size=40) | st.sampled_from([b"", b"\x00", b"\x01", b"\xff" * 9, b"\x05"]),
    lambda children: st.lists(children, max_size=4),
    max_leaves=12,
)
edits = st.sampled_from(["replace", "delete", "duplicate", "wrap", "unwrap", "bump"])


@given(st.data(), edits, garbage)
def test_a_mutated_encoding_is_refused_or_canonical(data: st.DataObject, edit: str, junk) -> None:
    item = _sample().to_rlp()
    path = data.draw(st.sampled_from(_paths(item)))

    def change(node: RLPItem) -> RLPItem | None:
        if edit == "replace":
            return junk
        if edit == "delete":
            return None
        if edit == "duplicate":
            return [*node, *node] if isinstance(node, list) else node + node
        if edit == "wrap":
            return [node]
        if edit == "unwrap":
            return node[0] if isinstance(node, list) and node else b""
        if isinstance(node, bytes) and node:
            return node[:-1] + bytes([(node[-1] + 1) % 256])
        return node

    _refused_or_canonical(_replaced(item, path, change))


@given(st.data())
def test_flipped_or_cut_bytes_are_refused_or_canonical(data: st.DataObject) -> None:
    encoded = bytearray(_encoded(_sample()))
    if data.draw(st.booleans()):
        position = data.draw(st.integers(0, len(encoded) - 1))
        encoded[position] ^= 1 << data.draw(st.integers(0, 7))
    else:
        encoded = encoded[: data.draw(st.integers(0, len(encoded) - 1))]
    try:
        item = decode_item(bytes(encoded))
    except DecodeError:
        return
    _refused_or_canonical(item)


@given(garbage)
def test_garbage_is_a_decode_error(junk: RLPItem) -> None:
    with pytest.raises(DecodeError):
        GovernanceState.from_rlp(junk, SAMPLE_BASE)


@given(st.binary(max_size=300))
def test_random_bytes_are_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        GovernanceState.from_rlp(decode_item(data), SAMPLE_BASE)


def _active(item: RLPItem) -> list[RLPItem]:
    assert isinstance(item, list)
    assert isinstance(item[2], list)
    return item[2]


def _finished(item: RLPItem) -> list[RLPItem]:
    assert isinstance(item, list)
    assert isinstance(item[3], list)
    return item[3]


def _field(proposal: RLPItem, index: int) -> RLPItem:
    assert isinstance(proposal, list)
    return proposal[index]


def _set(proposal: RLPItem, index: int, value: RLPItem) -> None:
    assert isinstance(proposal, list)
    proposal[index] = value


def _voted(item: RLPItem) -> RLPItem:
    """The first proposal of `item` that has votes."""
    return next(p for p in [*_active(item), *_finished(item)] if _field(p, 11))


def _damage(name: str) -> RLPItem:
    item = _sample().to_rlp()
    assert isinstance(item, list)
    proposal = _finished(item)[0]
    if name == "more in flight than gov_max_proposals":
        first = _active(item)[0]
        extra = [_replaced(first, (0,), lambda _: b"\x09" * 32) for _ in range(6)]
        item[2] = extra
    elif name == "more finished than FINISHED_KEPT":
        item[3] = [proposal] * (FINISHED_KEPT + 1)
    elif name == "a proposal listed twice":
        item[3] = [*_finished(item), proposal]
    elif name == "in flight out of order":
        item[2] = _active(item)[::-1]
    elif name == "an order not below next_order":
        item[4] = b"\x01"
    elif name == "a finished proposal in flight":
        item[2] = [*_active(item), proposal]
        item[3] = _finished(item)[1:]
    elif name == "a voting proposal finished":
        voting = next(p for p in _active(item) if _field(p, 9) == b"")
        item[3] = [*_finished(item), voting]
    elif name == "a name that is not governable":
        _set(proposal, 1, [[b"slot_ms", b"\x01"]])
    elif name == "a name that is not ascii":
        _set(proposal, 1, [[b"\xffblock_reward", b"\x01"]])
    elif name == "a value out of its range":
        _set(proposal, 1, [[b"block_reward", b""]])
    elif name == "a name changed twice":
        _set(proposal, 1, [[b"block_reward", b"\x01"], [b"block_reward", b"\x02"]])
    elif name == "no change":
        _set(proposal, 1, [])
    elif name == "more changes than a proposal carries":
        _set(proposal, 1, [[name.encode(), b"\x01"] for name in GOVERNABLE * 2])
    elif name == "a status out of range":
        _set(proposal, 9, b"\x05")
    elif name == "a tally while voting":
        voting = next(p for p in _active(item) if _field(p, 9) == b"")
        _set(voting, 12, [b"", b"", b"", b""])
    elif name == "no tally once tallied":
        _set(proposal, 12, [])
    elif name == "tallied with a snapshot":
        _set(proposal, 10, _field(_voted(item), 10))
    elif name == "tallied with an empty snapshot":
        _set(proposal, 10, [[]])
    elif name == "tallied with a snapshot and a vote":
        _set(proposal, 10, _field(_voted(item), 10))
        _set(proposal, 11, _field(_voted(item), 11))
    elif name == "a snapshot stake of 0":
        snapshot = _field(_voted(item), 10)
        assert isinstance(snapshot, list)
        assert isinstance(snapshot[0], list)
        _set(_voted(item), 10, [[[KEYS[4], b""], *snapshot[0]]])
    elif name == "a snapshot out of order":
        snapshot = _field(_voted(item), 10)
        assert isinstance(snapshot, list)
        assert isinstance(snapshot[0], list)
        _set(_voted(item), 10, [snapshot[0][::-1]])
    elif name == "votes out of order":
        voted = _voted(item)
        votes = _field(voted, 11)
        assert isinstance(votes, list)
        _set(voted, 11, votes[::-1])
    elif name == "a vote of a key without stake":
        voted = _voted(item)
        votes = _field(voted, 11)
        assert isinstance(votes, list)
        _set(voted, 11, [*votes, [b"\xff" * 32, b""]])
    elif name == "a vote choice out of range":
        voted = _voted(item)
        votes = _field(voted, 11)
        assert isinstance(votes, list)
        assert isinstance(votes[0], list)
        _set(voted, 11, [[votes[0][0], b"\x03"], *votes[1:]])
    elif name == "a governable value out of range":
        values = item[1]
        assert isinstance(values, list)
        values[0] = b""  # block_reward 0
    elif name == "one governable value too few":
        values = item[1]
        assert isinstance(values, list)
        item[1] = values[:-1]
    elif name == "an epoch over 64 bits":
        item[0] = b"\x01" + bytes(8)
    else:
        raise AssertionError(name)
    return item


@pytest.mark.parametrize(
    "name",
    [
        "more in flight than gov_max_proposals",
        "more finished than FINISHED_KEPT",
        "a proposal listed twice",
        "in flight out of order",
        "an order not below next_order",
        "a finished proposal in flight",
        "a voting proposal finished",
        "a name that is not governable",
        "a name that is not ascii",
        "a value out of its range",
        "a name changed twice",
        "no change",
        "more changes than a proposal carries",
        "a status out of range",
        "a tally while voting",
        "no tally once tallied",
        "tallied with a snapshot",
        "tallied with an empty snapshot",
        "tallied with a snapshot and a vote",
        "a snapshot stake of 0",
        "a snapshot out of order",
        "votes out of order",
        "a vote of a key without stake",
        "a vote choice out of range",
        "a governable value out of range",
        "one governable value too few",
        "an epoch over 64 bits",
    ],
)
def test_a_state_the_rules_cannot_make_is_a_decode_error(name: str) -> None:
    assert GovernanceState.from_rlp(_sample().to_rlp(), SAMPLE_BASE) == _sample()
    with pytest.raises(DecodeError):
        GovernanceState.from_rlp(_damage(name), SAMPLE_BASE)


@given(governance_states(), st.data())
def test_a_tallied_proposal_carrying_a_snapshot_or_a_vote_is_refused(
    states: list[GovernanceState], data: st.DataObject
) -> None:
    """Any tallied proposal of a state the rules made, given back a snapshot (a real one, or
    the empty table) or a snapshot and a vote of a key in it, no longer decodes: the only
    encoding of a tallied proposal has neither."""
    tallied = [(s, p) for s in states for p in s.proposals() if p.tally is not None]
    assume(tallied)
    state, target = data.draw(st.sampled_from(tallied))
    stakes = data.draw(st.lists(st.integers(1, 10**12), max_size=len(KEYS)))
    snapshot = _stakes(stakes)
    carried = data.draw(st.sampled_from(["snapshot", "vote"])) if stakes else "snapshot"
    votes = {snapshot.keys[0]: VoteChoice.YES} if carried == "vote" else {}
    damaged = replace(target, snapshot=snapshot, votes=MappingProxyType(votes))
    item = state.to_rlp()
    assert isinstance(item, list)
    for entries in (_active(item), _finished(item)):
        for index, entry in enumerate(entries):
            if _field(entry, 0) == target.proposal_id:
                entries[index] = damaged.to_rlp()
    with pytest.raises(DecodeError, match="keeps a snapshot or votes"):
        GovernanceState.from_rlp(item, state.base)
    with pytest.raises(DecodeError, match="keeps a snapshot or votes"):
        Proposal.from_rlp(damaged.to_rlp(), state.base)


# -- the leaf of every header ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [ChainParams(), PARAMS, replace(CONSENSUS_PARAMS, block_reward=3, reward_maturity=0)],
)
def test_the_ledger_knows_the_genesis_leaf_the_consensus_layer_computes(
    params: ChainParams,
) -> None:
    state = GovernanceState.at_genesis(params)
    assert genesis_governance_value(params) == state.commitment()
    assert spec.governance_leaf(params, 0) == state.commitment()
    for epoch in (1, 7):  # a chain without governance transactions, as the reference has it
        quiet = advance(state, Epoch(epoch), _stakes([1]))
        assert spec.governance_leaf(params, epoch) == quiet.commitment()


def test_the_store_genesis_is_the_ledger_genesis() -> None:
    sim = Simulation.create([10 * COIN, 10 * COIN], CONSENSUS_PARAMS)
    store = sim.store
    genesis = store.nodes[store.genesis_id]
    assert store.genesis_id == genesis_block(sim.genesis, sim.params).block_id
    assert genesis.governance is not None
    assert genesis.governance_root == genesis.governance.commitment()
    assert store.view.governance_value == genesis.governance_root
    _, view = genesis_state(sim.genesis, sim.params)
    assert genesis.block is not None
    assert genesis.block.header.state_root == naive_state_root(view, genesis.governance_root)


GOV_PARAMS = replace(CONSENSUS_PARAMS, gov_voting_epochs=2, gov_deposit=5 * COIN)
STAKES = (40 * COIN, 30 * COIN, 20 * COIN, 10 * COIN)
FEE = Amount(10_000)


def _spendable(sim: Simulation, key: SecretKey) -> list[tuple[OutPoint, TxOutput]]:
    pending = {i.outpoint for tx in sim.pending_transactions for i in tx.inputs}
    coins = get_head_view(sim.store).utxos_of(address_of(key.public_key))
    return [coin for coin in coins if coin[0] not in pending]


def _context(sim: Simulation) -> BlockContext:
    head = sim.store.nodes[get_head(sim.store)]
    return BlockContext(height=Height(head.height + 1), slot=Slot(sim.slot + 1))


def _epoch(sim: Simulation) -> int:
    return sim.slot // sim.params.slots_per_epoch


def _run_until_epoch(sim: Simulation, epoch: int) -> None:
    while _epoch(sim) < epoch:
        sim.run_slot()


def _chain(store: Store) -> list[Block]:
    blocks: list[Block] = []
    node = store.nodes[get_head(store)]
    while node is not None:
        assert node.block is not None
        blocks.append(node.block)
        node = node.parent  # type: ignore[assignment]
    return blocks[::-1]


@settings(max_examples=8)
@given(
    votes=st.lists(
        st.tuples(st.sampled_from([None, *VoteChoice]), st.integers(0, 1)), min_size=4, max_size=4
    ),
    second=st.booleans(),
)
def test_every_header_commits_to_the_governance_after_its_block(votes, second) -> None:
    """A chain with proposals and votes: each block's node caches its governance leaf, the
    header's root is the model's root of the state after it with that leaf, replaying the
    chain with the cached leaves gives every root, and the store's view moved to any block
    (undoing and applying) holds that block's leaf."""
    sim = Simulation.create(list(STAKES), GOV_PARAMS)
    keys = [sim.keys[k] for k in sorted(sim.keys)]
    sim.run_slot()
    proposals = []
    for index, proposer in enumerate(keys[: 1 + second]):
        wallet = Wallet(key=proposer, params=sim.params)
        tx = wallet.build_propose(
            _spendable(sim, proposer),
            changes=[("block_reward", 3 * COIN + index)],
            activation=Epoch(_epoch(sim) + sim.params.gov_voting_epochs + 2),
            fee=FEE,
            context=_context(sim),
        )
        sim.pending_transactions.append(tx)
        proposals.append(tx)
    sim.run_slot()
    start = _epoch(sim) + 1
    for offset in range(2):
        _run_until_epoch(sim, start + offset)
        for key, (choice, when) in zip(keys, votes, strict=True):
            if choice is None or when != offset:
                continue
            for proposal in proposals:  # one at a time: a validator has one coin to pay with
                wallet = Wallet(key=key, params=sim.params)
                tx = wallet.build_gov_vote(
                    _spendable(sim, key),
                    proposal=proposal.txid,
                    choice=choice,
                    fee=FEE,
                    context=_context(sim),
                    validator=key,
                )
                sim.pending_transactions.append(tx)
                for _ in range(4):
                    if not sim.pending_transactions:
                        break
                    sim.run_slot()
    _run_until_epoch(sim, start + 5)
    store = sim.store
    chain = _chain(store)
    governed = [tx for block in chain for tx in block.transactions if tx.kind is TxKind.GOV_VOTE]
    assert all(p.txid in {t.txid for b in chain for t in b.transactions} for p in proposals)
    _, view = genesis_state(sim.genesis, sim.params)
    for block in chain:
        node = store.nodes[block.block_id]
        assert node.governance is not None
        leaf = node.governance.commitment()
        assert node.governance_root == leaf
        if block.header.height:
            view.apply(block, governance=leaf)
        assert view.state_root() == naive_state_root(view, leaf) == block.header.state_root
        if block.block_id in store.tree:
            moved = get_block_view(store, block.block_id)
            assert moved.governance_value == leaf
            assert moved.state_root() == block.header.state_root
    head = store.nodes[get_head(store)]
    assert store.view.governance_value == head.governance_root
    assert len({store.nodes[b.block_id].governance_root for b in chain}) > 3
    if any(choice is not None and when == 0 for choice, when in votes):
        assert governed  # votes reached the chain (a late one may miss its window)


def _resign(sim: Simulation, block: Block, state_root: Hash32) -> Block:
    header = replace(block.header, state_root=state_root)
    key = sim.keys[header.proposer]
    signature = key.sign(header_signing_message(sim.params.chain_id, header.block_id))
    return replace(block, header=header, signature=signature)


def test_a_header_without_the_governance_leaf_it_must_hold_is_refused() -> None:
    """At an epoch boundary the leaf moves (the state's epoch): a block whose root keeps the
    parent's leaf, has none, or has another value is `bad-state-root`; the store is left as
    it was, and the proposer's own block is accepted."""
    sim = Simulation.create(list(STAKES), GOV_PARAMS)
    spe = sim.params.slots_per_epoch
    while True:
        sim.run_slot()
        if (sim.slot + 1) % spe == 0:
            break
    store, slot = sim.store, Slot(sim.slot + 1)
    parent = get_head(store)
    proposer = get_proposer(store, parent, slot)
    assert proposer is not None
    block = build_block(store, parent, slot, sim.keys[proposer])
    parent_view = get_block_view(store, parent)
    leaf = parent_view.governance_value
    assert leaf == store.nodes[parent].governance_root
    bare = parent_view.copy()
    bare.set_governance(None)
    wrong_roots = [
        state_root_after(parent_view, block.transactions),  # the parent's leaf kept
        state_root_after(bare, block.transactions),  # no leaf
        state_root_after(parent_view, block.transactions, governance=Hash32(b"\x05" * 32)),
    ]
    assert block.header.state_root not in wrong_roots
    head, before = get_head(store), store.view.state_root()
    for root in wrong_roots:
        with pytest.raises(InvalidBlock) as raised:
            on_block(store, _resign(sim, block, root), slot)
        assert raised.value.reason is Reason.BAD_STATE_ROOT
        assert get_head(store) == head
        assert store.view.state_root() == before
    on_block(store, block, slot)
    node = store.nodes[block.block_id]
    assert node.governance is not None
    assert node.governance.epoch == slot // spe
    assert node.governance_root == node.governance.commitment() != leaf


def test_a_block_in_a_quiet_epoch_reuses_its_parents_leaf(monkeypatch) -> None:
    """Hashing the governance state costs nothing for a block with no governance transaction
    in its parent's epoch: the parent's cached leaf is reused, nothing is encoded."""
    sim = Simulation.create(list(STAKES), GOV_PARAMS)
    sim.run_slot()
    encoded: list[int] = []
    original = GovernanceState.to_rlp

    def counting(self: GovernanceState) -> RLPItem:
        encoded.append(self.epoch)
        return original(self)

    monkeypatch.setattr(GovernanceState, "to_rlp", counting)
    spe = sim.params.slots_per_epoch
    for _ in range(3 * spe):
        parent = sim.store.nodes[get_head(sim.store)]
        before = len(encoded)
        sim.run_slot()
        head = sim.store.nodes[get_head(sim.store)]
        if head is parent:
            continue
        assert head.governance is not None
        assert parent.governance is not None
        same_epoch = head.slot // spe == parent.slot // spe
        # the proposer and on_block each encode once when the epoch moved, never otherwise
        assert len(encoded) - before == (0 if same_epoch else 2)
        assert head.governance_root == original_commitment(head.governance, original)


def original_commitment(
    state: GovernanceState, to_rlp: Callable[[GovernanceState], RLPItem]
) -> Hash32:
    return governance_value(encode_item(to_rlp(state)))


def test_commitment_after_reuses_only_when_nothing_encoded_changed() -> None:
    state = GovernanceState.at_genesis(PARAMS)
    root = state.commitment()
    assert commitment_after(state, state, Hash32(b"\x01" * 32)) == b"\x01" * 32  # reused
    refunded = replace(state, refunds=((REFUND, 1),))
    assert commitment_after(refunded, state, root) == root  # refunds are not encoded
    later = advance(state, Epoch(1), _stakes([1]))
    assert commitment_after(later, state, root) == later.commitment() != root
