"""The optimized store against the executable reference (`p2pchain.testing.spec`).

Both get the same messages (blocks with forks, votes for any branch, hostile double and
surround votes, slashing evidence, broken blocks and votes) in a random delivery order under a
clock that moves forward at random. Messages rejected as unknown-parent, unknown-vote-head,
future-slot or future-vote wait and are retried after the next accepted block, as a node's
orphan pool would (`feed_in_order`). After every delivery the two must agree on the outcome or
the reason, the known blocks and the fork-choice tree, the head, the justified and finalized
checkpoints, the conflicting finalized checkpoints, the slashed keys, the weight of every block
of the tree, the checkpoints of the head's chain, and the validator sets and proposers of the
next slots.
"""

from __future__ import annotations

import random as random_module
from dataclasses import dataclass, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.consensus import (
    BlockOutcome,
    SlashingDetector,
    Store,
    build_block,
    compute_vote_slot,
    get_checkpoint,
    get_duties,
    get_forkchoice_store,
    get_head,
    get_proposer,
    get_validator_set,
    get_weight,
    make_vote,
    on_block,
    on_evidence,
    on_tick,
    on_vote,
)
from p2pchain.errors import InvalidBlock, InvalidTransaction, InvalidVote, Reason
from p2pchain.ledger.block import Block, compute_body_root
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.evidence import Evidence, VoteEquivocation
from p2pchain.ledger.genesis import GenesisConfig
from p2pchain.ledger.header import header_signing_message
from p2pchain.ledger.tx import Transaction
from p2pchain.ledger.types import BlockId, PublicKey
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.params import COIN, ChainParams
from p2pchain.testing import spec
from p2pchain.testing.consensus import (
    CONSENSUS_PARAMS,
    Simulation,
    adversarial_blocks,
    adversarial_votes,
    build_self_pruning_chain,
    make_genesis,
    scenarios,
    sign_vote_data,
    validator_keys,
)

Message = Block | Vote | Evidence

KEYS = {key.public_key: key for key in validator_keys(8)}
"""The keys `scenarios` and `Simulation.create` bond (the same labels), to re-sign messages."""
OUTSIDER = validator_keys(1, label=b"outsider")[0]
RETRY = frozenset(
    {Reason.UNKNOWN_PARENT, Reason.UNKNOWN_VOTE_HEAD, Reason.FUTURE_SLOT, Reason.FUTURE_VOTE}
)


# -- running both ---------------------------------------------------------------------------


def _deliver_store(store: Store, message: Message, slot: int) -> str:
    try:
        if isinstance(message, Block):
            return on_block(store, message, slot).value
        if isinstance(message, Vote):
            on_vote(store, message, slot)
            return "counted"
        on_evidence(store, message)
        return "slashed"
    except (InvalidBlock, InvalidVote, InvalidTransaction) as exc:
        return exc.reason.value


def _deliver_spec(store: spec.SpecStore, message: Message, slot: int) -> str:
    try:
        if isinstance(message, Block):
            return spec.on_block(store, message, slot).value
        if isinstance(message, Vote):
            spec.on_vote(store, message, slot)
            return "counted"
        spec.on_evidence(store, message)
        return "slashed"
    except (InvalidBlock, InvalidVote, InvalidTransaction) as exc:
        return exc.reason.value


class Pair:
    """The optimized store and the reference, fed the same messages."""

    def __init__(self, params: ChainParams, genesis: GenesisConfig) -> None:
        self.params = params
        self.store = get_forkchoice_store(params, genesis)
        self.spec = spec.get_spec_store(params, genesis)
        self.log: list[str] = []

    def deliver(self, message: Message, slot: int) -> str:
        on_tick(self.store, slot)
        spec.on_tick(self.spec, slot)
        expected = _deliver_spec(self.spec, message, slot)
        got = _deliver_store(self.store, message, slot)
        self.log.append(f"{_describe(message)} at slot {slot}: {expected}")
        assert got == expected, self._context(f"store said {got}, reference {expected}")
        self.check(slot)
        return got

    def _context(self, what: str) -> str:
        return "\n".join([*self.log[-12:], what])

    def check(self, slot: int) -> None:
        store, ref, params = self.store, self.spec, self.params
        tree = set(store.tree.block_ids())
        assert set(store.nodes) == spec.known_blocks(ref), self._context("known blocks")
        assert tree == spec.tree_blocks(ref), self._context("fork-choice tree")
        assert store.finalized_checkpoint == ref.finalized, self._context("finalized")
        assert store.justified_checkpoint == spec.get_justified_checkpoint(ref), self._context(
            "justified"
        )
        assert set(store.conflicting_finalized) == set(ref.conflicting_finalized)
        assert store.slashed == ref.slashed
        weights = {block_id: get_weight(store, block_id) for block_id in tree}
        assert weights == spec.get_weights(ref), self._context("weights")
        head = get_head(store)
        assert head == spec.get_head(ref), self._context("head")
        epoch = slot // params.slots_per_epoch
        for e in range(epoch + 2):
            assert get_checkpoint(store, head, e) == spec.get_checkpoint(ref, head, e)
        for e in range(epoch + 3):
            ours = dict(get_validator_set(store, head, e).stakes)
            assert ours == spec.get_validator_set(ref, head, e), self._context(f"set {e}")
        for s in range(slot + 1, slot + 1 + params.slots_per_epoch):
            assert get_proposer(store, head, s) == spec.get_proposer(ref, head, s)
        for block_id in tree:
            assert get_proposer(store, block_id, slot + 1) == spec.get_proposer(
                ref, block_id, slot + 1
            )


def _describe(message: Message) -> str:
    if isinstance(message, Block):
        h = message.header
        return f"block {message.block_id.hex()[:8]} slot {h.slot} on {h.parent.hex()[:8]}"
    if isinstance(message, Vote):
        return (
            f"vote {message.validator.hex()[:6]} slot {message.slot} head {message.head.hex()[:8]}"
            f" {message.source.epoch}->{message.target.epoch}"
        )
    return f"evidence against {message.offender.hex()[:6]}"


def feed_both(
    params: ChainParams,
    genesis: GenesisConfig,
    messages: list[Message],
    last_slot: int,
    random: random_module.Random,
) -> Pair:
    """Deliver `messages` in the given order to both, the clock starting at a random slot and
    moving forward at random; what waits for a parent, a head or its slot is retried after
    every accepted block, and once more with the clock at `last_slot` when nothing else is left.
    """
    pair = Pair(params, genesis)
    slot = random.randint(0, last_slot)
    queue = list(messages)
    waiting: list[Message] = []
    while queue or waiting:
        if not queue:
            if slot == last_slot:
                break  # what still waits can never be accepted
            slot = last_slot
            queue, waiting = waiting, []
            continue
        message = queue.pop(0)
        result = pair.deliver(message, slot)
        if result in RETRY:
            waiting.append(message)
        elif isinstance(message, Block) and result in ("added", "pruned") and waiting:
            queue, waiting = waiting + queue, []
        slot = min(last_slot, slot + random.choice((0, 0, 0, 1, 2)))
    return pair


# -- hostile and broken messages -----------------------------------------------------------


def _sign_vote(key: SecretKey, vote: Vote, params: ChainParams) -> Vote:
    unsigned = replace(vote, validator=key.public_key, signature=bytes(64))
    return replace(unsigned, signature=key.sign(unsigned.signing_message(params.chain_id)))


def _sign_block(key: SecretKey, block: Block, params: ChainParams, **header: object) -> Block:
    new_header = replace(block.header, proposer=key.public_key, **header)  # type: ignore[arg-type]
    message = header_signing_message(params.chain_id, new_header.block_id)
    return replace(block, header=new_header, signature=key.sign(message))


def _with_body(key: SecretKey, block: Block, params: ChainParams, **body: object) -> Block:
    rebuilt = replace(block, **body)  # type: ignore[arg-type]
    root = compute_body_root(rebuilt.transactions, rebuilt.votes)
    return _sign_block(key, rebuilt, params, body_root=root)


def _broken_votes(vote: Vote, params: ChainParams, last_slot: int) -> list[Vote]:
    """One vote breaking each rule that a hostile sender can break on purpose."""
    key = KEYS[vote.validator]
    epoch = vote.slot // params.slots_per_epoch
    broken = [
        replace(vote, signature=bytes(64)),  # bad-vote-signature
        _sign_vote(OUTSIDER, vote, params),  # unknown-validator
        _sign_vote(key, replace(vote, slot=last_slot + 1), params),  # future-vote
        _sign_vote(key, replace(vote, target=replace(vote.target, block_id=vote.head)), params),
        _sign_vote(key, replace(vote, target=replace(vote.target, epoch=epoch + 1)), params),
    ]
    if epoch > 0:
        broken.append(_sign_vote(key, replace(vote, source=vote.target), params))
        earlier = replace(vote.source, block_id=vote.target.block_id)
        broken.append(_sign_vote(key, replace(vote, source=earlier), params))
    if vote.slot > 0:  # older than its head (or a target of the wrong epoch)
        broken.append(_sign_vote(key, replace(vote, slot=vote.slot - 1), params))
    return broken


def _broken_blocks(
    block: Block, parent_slot: int, params: ChainParams, last_slot: int, votes: list[Vote]
) -> list[Block]:
    """Variants of `block` that break one block validity rule each."""
    header = block.header
    key = KEYS[header.proposer]
    other = next(k for pk, k in sorted(KEYS.items()) if pk != header.proposer)
    reward = block.transactions[0]
    overpaid = Transaction(
        kind=reward.kind,
        outputs=(replace(reward.outputs[0], amount=reward.outputs[0].amount + 1),),
        payload=reward.payload,
    )
    broken = [
        replace(block, signature=bytes(64)),  # bad-proposer-signature
        _sign_block(key, block, params, height=header.height + 1),  # bad-height
        _sign_block(key, block, params, slot=parent_slot),  # slot-not-after-parent
        _sign_block(key, block, params, slot=last_slot + 1),  # future-slot
        _sign_block(other, block, params),  # wrong-proposer (or a lucky draw)
        _sign_block(key, replace(block, transactions=()), params),  # bad-body-root
        _with_body(key, block, params, transactions=(overpaid, *block.transactions[1:])),
        _with_body(key, block, params, transactions=()),  # bad-reward
    ]
    if votes:
        carried = (*block.votes, *votes[:2])
        broken.append(_with_body(key, block, params, votes=carried))  # votes of any kind
        bad = replace(votes[0], signature=bytes(64))
        broken.append(_with_body(key, block, params, votes=(bad,)))  # bad-vote-signature
    return broken


@dataclass(frozen=True, slots=True)
class Deliveries:
    params: ChainParams
    genesis: GenesisConfig
    messages: list[Message]
    last_slot: int


def _evidence(messages: list[Message], params: ChainParams) -> list[Evidence]:
    detector = SlashingDetector(params.chain_id)
    for message in messages:
        if isinstance(message, Block):
            detector.observe_block(message)
        elif isinstance(message, Vote):
            detector.observe_vote(message)
    return detector.evidence


@st.composite
def _with_trouble(
    draw: st.DrawFn,
    params: ChainParams,
    genesis: GenesisConfig,
    messages: list[Message],
    last_slot: int,
) -> Deliveries:
    """`messages` plus evidence, broken variants of a few of them, and re-deliveries."""
    blocks = [m for m in messages if isinstance(m, Block)]
    votes = [m for m in messages if isinstance(m, Vote)]
    slots = {m.block_id: m.header.slot for m in blocks}
    extra: list[Message] = []
    found = _evidence(messages, params)
    extra += draw(st.lists(st.sampled_from(found), unique_by=id, max_size=4)) if found else []
    if votes:
        vote = draw(st.sampled_from(votes))
        extra.append(VoteEquivocation(first=vote, second=vote))  # bad-evidence
        for vote in draw(st.lists(st.sampled_from(votes), max_size=2)):
            broken = _broken_votes(vote, params, last_slot)
            extra += draw(st.lists(st.sampled_from(broken), max_size=3))
    if blocks:
        for block in draw(st.lists(st.sampled_from(blocks), max_size=2)):
            parent_slot = slots.get(block.header.parent, 0)
            broken_blocks = _broken_blocks(block, parent_slot, params, last_slot, votes)
            extra += draw(st.lists(st.sampled_from(broken_blocks), max_size=3))
        extra += draw(st.lists(st.sampled_from(blocks), max_size=2))  # duplicates
    return Deliveries(params, genesis, [*messages, *extra], last_slot)


@st.composite
def scenario_deliveries(draw: st.DrawFn, *, epochs: int = 5, deep: bool = False) -> Deliveries:
    """`scenarios()`: a block tree with forks and (non-slashable) votes on random branches."""
    stakes = draw(
        st.sampled_from([(COIN, 2 * COIN, 3 * COIN, 4 * COIN), (COIN,) * 4, (COIN, COIN, 5 * COIN)])
    )
    window = draw(st.integers(2, 5 if deep else 3))
    scenario = draw(scenarios(stakes=stakes, epochs=epochs, fork_window=window))
    messages: list[Message] = [*scenario.blocks, *scenario.votes]
    return draw(_with_trouble(scenario.params, scenario.genesis, messages, scenario.last_slot))


@st.composite
def hostile_deliveries(draw: st.DrawFn, *, epochs: int = 5) -> Deliveries:
    """A `Simulation` where some validators (up to all but one) send `adversarial_votes` and
    `adversarial_blocks` every slot, sometimes with their honest duty vote as well (a double
    vote) or all for one random head, and, when scheduled, propose blocks that carry earlier
    votes of either kind and the slashing evidence found so far."""
    stakes = draw(st.sampled_from([(COIN,) * 4, (COIN, 2 * COIN, 3 * COIN, 4 * COIN), (COIN,) * 3]))
    sim = Simulation.create(stakes)
    hostile = draw(st.lists(st.sampled_from(sorted(sim.keys)), min_size=1, max_size=3, unique=True))
    sim.hostile = set(hostile)
    hostile_keys = [sim.keys[key] for key in hostile]
    detector = SlashingDetector(sim.params.chain_id)
    observed = [0]

    def adversary(sim: Simulation, slot: int) -> list[Message]:
        for message in sim.messages[observed[0] :]:
            if isinstance(message, Block):
                detector.observe_block(message)
            else:
                detector.observe_vote(message)
        observed[0] = len(sim.messages)
        made: list[Message] = []
        behaviour = draw(st.sampled_from(["random", "on duty", "together"]))
        if behaviour == "on duty":  # the honest vote, which the random ones then contradict
            for key in get_duties(sim.params, hostile, slot):
                made.append(make_vote(sim.store, sim.keys[key], slot))
        elif behaviour == "together":  # one head on any branch, honest source and target
            heads = sorted(b for b in sim.store.tree.block_ids() if sim.store.nodes[b].slot <= slot)
            head = draw(st.sampled_from(heads))
            made += [make_vote(sim.store, key, slot, head=head) for key in hostile_keys]
        made += draw(adversarial_votes(sim, hostile_keys, slot))
        made += draw(adversarial_blocks(sim, slot))
        if draw(st.booleans()):
            made += _carrying_block(draw, sim, slot, set(hostile), detector)
        return made

    sim.adversary = adversary
    sim.run_epochs(draw(st.integers(3, epochs)))
    messages: list[Message] = list(sim.messages)
    return draw(_with_trouble(sim.params, sim.genesis, messages, sim.slot))


def _carrying_block(
    draw: st.DrawFn, sim: Simulation, slot: int, hostile: set[PublicKey], detector: SlashingDetector
) -> list[Message]:
    store = sim.store
    parents = sorted(b for b in store.tree.block_ids() if store.nodes[b].slot < slot)
    parent = draw(st.sampled_from(parents))
    proposer = get_proposer(store, parent, slot)
    if proposer not in hostile:
        return []
    votes = [m for m in sim.messages if isinstance(m, Vote) and m.slot < slot]
    chosen = draw(st.lists(st.sampled_from(votes), max_size=6)) if votes else []
    return [
        build_block(
            store, parent, slot, sim.keys[proposer], votes=chosen, evidence=detector.evidence
        )
    ]


# -- the properties ------------------------------------------------------------------------


@given(scenario_deliveries(), st.randoms(use_true_random=False))
def test_store_agrees_with_the_reference_on_forks_and_stray_votes(deliveries, random):
    _run(deliveries, random)


@given(hostile_deliveries(), st.randoms(use_true_random=False))
def test_store_agrees_with_the_reference_under_hostile_validators(deliveries, random):
    _run(deliveries, random)


@pytest.mark.fuzz
@pytest.mark.timeout(3_600)  # as tests/fuzz/conftest.py: the `fuzz` profile's examples take long
@given(
    st.one_of(scenario_deliveries(epochs=7, deep=True), hostile_deliveries(epochs=7)),
    st.randoms(use_true_random=False),
)
def test_store_agrees_with_the_reference_deep(deliveries, random):
    _run(deliveries, random)


def _run(deliveries: Deliveries, random: random_module.Random) -> None:
    messages = list(deliveries.messages)
    random.shuffle(messages)
    feed_both(deliveries.params, deliveries.genesis, messages, deliveries.last_slot, random)


# -- fixed shapes the random ones rarely reach -------------------------------------------


def test_a_block_pruned_by_its_own_votes():
    chain = build_self_pruning_chain()
    pair = Pair(CONSENSUS_PARAMS, chain.genesis)
    results = [pair.deliver(block, 9) for block in chain.blocks]
    assert results == ["added", "added", "added", BlockOutcome.PRUNED.value]
    assert pair.deliver(chain.z, 9) == Reason.CONFLICTS_WITH_FINALIZED.value


def test_a_split_cascade_adopts_the_highest_epoch():
    """tests/consensus/test_split_cascade.py's shape, replayed into both."""
    epoch = CONSENSUS_PARAMS.slots_per_epoch
    keys = validator_keys(4)
    genesis = make_genesis(keys, [COIN] * 4)
    builder = get_forkchoice_store(CONSENSUS_PARAMS, genesis)
    messages: list[Message] = []

    def block(parent: BlockId, slot: int) -> BlockId:
        on_tick(builder, slot)
        proposer = get_proposer(builder, parent, slot)
        made = build_block(builder, parent, slot, next(k for k in keys if k.public_key == proposer))
        on_block(builder, made, slot)
        messages.append(made)
        return made.block_id

    def vote(voter: int, slot: int, head: BlockId, source: Checkpoint) -> None:
        target = get_checkpoint(builder, head, slot // epoch)
        made = sign_vote_data(
            builder, keys[voter], slot=slot, head=head, source=source, target=target
        )
        on_vote(builder, made, builder.current_slot)
        messages.append(made)

    g = builder.finalized_checkpoint
    base = block(g.block_id, epoch)
    c1 = Checkpoint(epoch=1, block_id=base)
    x = [block(base, 2 * epoch)]
    x.append(block(x[-1], 3 * epoch))
    y = [block(base, 2 * epoch + 1)]
    y += [block(y[-1], 3 * epoch + 1)]
    y += [block(y[-1], 4 * epoch + 1)]
    on_tick(builder, 5 * epoch)
    x2, y2, y3 = (get_checkpoint(builder, b, e) for b, e in ((x[1], 2), (y[2], 2), (y[2], 3)))
    for voter in range(3):
        vote(voter, 2 * epoch + 2, x[0], c1)
        vote(voter, 3 * epoch + 2, x[1], x2)
        vote(voter, 2 * epoch + 2, y[0], c1)
        vote(voter, 3 * epoch + 2, y[1], y2)
        vote(voter, 4 * epoch + 2, y[2], y3)
    for voter in range(3):
        vote(voter, epoch + 1, base, g)
    pair = Pair(CONSENSUS_PARAMS, genesis)
    for message in messages:
        assert pair.deliver(message, 5 * epoch) in ("added", "counted")
    assert pair.spec.finalized == y3
    assert x2 in pair.spec.conflicting_finalized


def test_a_block_with_too_many_votes():
    sim = Simulation.create([COIN] * 4)
    sim.run_epochs(1)
    vote = next(m for m in sim.messages if isinstance(m, Vote))
    block = next(m for m in sim.messages if isinstance(m, Block))
    crowded = replace(block, votes=(vote,) * (sim.params.max_block_votes + 1))
    pair = Pair(sim.params, sim.genesis)
    assert pair.deliver(crowded, sim.slot) == Reason.BLOCK_TOO_LARGE.value


def test_vote_duty_slots_agree():
    for key in KEYS:
        for epoch in range(6):
            assert compute_vote_slot(CONSENSUS_PARAMS, key, epoch) == spec.get_vote_duty_slot(
                CONSENSUS_PARAMS, key, epoch
            )
