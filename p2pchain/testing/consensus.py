"""Consensus test kit: deterministic validators, a synchronous simulation and scenario strategies.

Use it to fuzz the fork choice (or your own rules layered on it) with hypothesis:

- `validator_keys`, `make_genesis`: deterministic keys and a genesis bonding them.
- `Simulation`: a pure, synchronous network of validators sharing one view. Each `run_slot`
  lets the scheduled proposer build a block and the validators on duty vote; `adversary`
  hooks let a test take over some validators.
- `scenarios()`: a strategy for block trees *with forks* plus valid, non-slashable votes on
  random branches: the raw material of order-independence tests.
- `adversarial_votes()` / `adversarial_blocks()`: valid but hostile messages from the given
  keys (equivocations, votes for losing forks, blocks on stale parents).
- `feed_in_order()`: deliver blocks and votes in any order to a fresh store, buffering what
  arrives before its parent/head, like a node's orphan pool.

Example::

    @given(scenarios(), st.randoms(use_true_random=False))
    def test_my_rule(scenario, random):
        messages = [*scenario.blocks, *scenario.votes]
        random.shuffle(messages)
        store = feed_in_order(scenario.params, scenario.genesis, messages, scenario.last_slot)
        assert my_invariant(store)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from p2pchain.consensus.builder import build_block, make_vote
from p2pchain.consensus.forkchoice import get_head, on_block, on_tick, on_vote
from p2pchain.consensus.store import Store, get_checkpoint, get_forkchoice_store, get_proposer
from p2pchain.consensus.types import compute_epoch_at_slot
from p2pchain.consensus.validators import get_duties
from p2pchain.errors import InvalidBlock, InvalidVote, Reason
from p2pchain.ledger.address import address_of
from p2pchain.ledger.block import Block
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.genesis import Allocation, GenesisConfig, self_bonded_genesis
from p2pchain.ledger.tx import Transaction
from p2pchain.ledger.types import Amount, BlockId, Epoch, PublicKey, Slot
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.params import COIN, ChainParams

CONSENSUS_PARAMS = ChainParams(slots_per_epoch=4, reward_maturity=2, unbonding_epochs=2)
"""Small epochs so that justification and finality happen within a few dozen slots."""

Message = Block | Vote


def validator_keys(count: int, *, label: bytes = b"validator") -> list[SecretKey]:
    """`count` deterministic keys (the same on every run), in no particular order."""
    return [
        SecretKey.from_entropy(sha256(b"p2pchain/testing/" + label + index.to_bytes(4, "big")))
        for index in range(count)
    ]


def make_genesis(
    keys: Sequence[SecretKey],
    stakes: Sequence[int],
    params: ChainParams = CONSENSUS_PARAMS,
    *,
    balance: int = 100 * COIN,
) -> GenesisConfig:
    """A genesis bonding each key with its stake (owned by the key's address), plus `balance`
    spendable coins per key so that tests can send transactions."""
    return self_bonded_genesis(
        chain_id=params.chain_id,
        genesis_time_ms=0,
        stakes=[(key.public_key, stake) for key, stake in zip(keys, stakes, strict=True)],
        allocations=[
            Allocation(address=address_of(key.public_key), amount=Amount(balance)) for key in keys
        ],
    )


def sign_vote_data(
    store: Store,
    key: SecretKey,
    *,
    slot: int,
    head: BlockId,
    source: Checkpoint,
    target: Checkpoint,
) -> Vote:
    """Sign arbitrary vote data with `key` (for hostile or malformed votes)."""
    vote = Vote(
        slot=Slot(slot),
        head=head,
        source=source,
        target=target,
        validator=key.public_key,
        signature=bytes(64),
    )
    signature = key.sign(vote.signing_message(store.params.chain_id))
    return Vote(
        slot=Slot(slot),
        head=head,
        source=source,
        target=target,
        validator=key.public_key,
        signature=signature,
    )


Adversary = Callable[["Simulation", int], list[Message]]
"""Called once per slot with the simulation and the slot; returns hostile messages to deliver."""


@dataclass(eq=False)
class Simulation:
    """Validators in a synchronous network: every message reaches everyone within its slot.

    All honest validators therefore share one view, held in `store`. Validators in `offline`
    neither propose nor vote; validators in `hostile` are skipped by the honest logic and act
    only through `adversary`. Every delivered message is also appended to `messages`.
    """

    params: ChainParams
    keys: dict[PublicKey, SecretKey]
    genesis: GenesisConfig
    store: Store
    slot: int = 0
    offline: set[PublicKey] = field(default_factory=set)
    hostile: set[PublicKey] = field(default_factory=set)
    adversary: Adversary | None = None
    messages: list[Message] = field(default_factory=list)
    finalized_history: list[Checkpoint] = field(default_factory=list)
    pending_votes: list[Vote] = field(default_factory=list)
    pending_transactions: list[Transaction] = field(default_factory=list)
    """Offered to every honest proposer, in order; each leaves once a block includes it."""

    @classmethod
    def create(
        cls,
        stakes: Sequence[int],
        params: ChainParams = CONSENSUS_PARAMS,
        *,
        label: bytes = b"validator",
    ) -> Simulation:
        """Validators with `stakes` (in base units), bonded at genesis."""
        keys = validator_keys(len(stakes), label=label)
        genesis = make_genesis(keys, stakes, params)
        return cls(
            params=params,
            keys={key.public_key: key for key in keys},
            genesis=genesis,
            store=get_forkchoice_store(params, genesis),
            finalized_history=[],
        )

    @property
    def honest(self) -> list[PublicKey]:
        return sorted(set(self.keys) - self.offline - self.hostile)

    def deliver(self, message: Message) -> None:
        """Hand a message to the shared view; invalid ones raise like `on_block`/`on_vote`."""
        if isinstance(message, Block):
            on_block(self.store, message, Slot(self.slot))
        else:
            on_vote(self.store, message, Slot(self.slot))
        self.messages.append(message)

    def run_slot(self) -> None:
        """Advance one slot: proposal, hostile messages, then the votes of the honest on duty."""
        self.slot += 1
        on_tick(self.store, Slot(self.slot))
        head = get_head(self.store)
        proposer = get_proposer(self.store, head, Slot(self.slot))
        if proposer in self.honest:
            block = build_block(
                self.store,
                head,
                Slot(self.slot),
                self.keys[proposer],
                votes=self.pending_votes,
                transactions=self.pending_transactions,
            )
            self.deliver(block)
            self.pending_votes = []
            included = {tx.txid for tx in block.transactions}
            self.pending_transactions = [
                tx for tx in self.pending_transactions if tx.txid not in included
            ]
        if self.adversary is not None:
            for message in self.adversary(self, self.slot):
                try:
                    self.deliver(message)
                except (InvalidBlock, InvalidVote):
                    continue
        for key in get_duties(self.params, self.honest, Slot(self.slot)):
            vote = make_vote(self.store, self.keys[key], Slot(self.slot))
            self.deliver(vote)
            self.pending_votes.append(vote)
        finalized = self.store.finalized_checkpoint
        if not self.finalized_history or self.finalized_history[-1] != finalized:
            self.finalized_history.append(finalized)

    def run_epochs(self, epochs: int) -> None:
        """Run until the end of epoch ``epochs - 1``."""
        while self.slot < epochs * self.params.slots_per_epoch - 1:
            self.run_slot()


# -- scenarios ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """Blocks (a tree with forks) and votes, each valid where it was made, in creation order."""

    params: ChainParams
    genesis: GenesisConfig
    blocks: tuple[Block, ...]
    votes: tuple[Vote, ...]
    last_slot: int


def _recent_blocks(store: Store, slot: int, window: int) -> list[BlockId]:
    nodes = store.nodes
    recent = [
        block_id for block_id in store.tree.block_ids() if nodes[block_id].slot >= slot - window
    ]
    return sorted([*recent, store.tree.root])


@st.composite
def scenarios(
    draw: st.DrawFn,
    *,
    stakes: Sequence[int] = (COIN, 2 * COIN, 3 * COIN, 4 * COIN),
    epochs: int = 4,
    params: ChainParams = CONSENSUS_PARAMS,
    fork_window: int = 3,
) -> Scenario:
    """A block tree with forks and votes, half for the head and some for random recent blocks.

    Each slot, the scheduled proposers of up to two random recent parents build on them (so
    branches appear), and each validator on duty abstains, votes for the current head, or
    votes for a random recent block, using the honest source for that head. No vote is
    slashable: one vote per validator per epoch, and sources never go back. Any block of the
    last ``fork_window`` slots may be built on or voted for.
    """
    keys = validator_keys(len(stakes))
    by_key = {key.public_key: key for key in keys}
    genesis = make_genesis(keys, stakes, params)
    store = get_forkchoice_store(params, genesis)
    blocks: list[Block] = []
    votes: list[Vote] = []
    last_source: dict[PublicKey, int] = {}
    last_slot = epochs * params.slots_per_epoch - 1
    for slot in range(1, last_slot + 1):
        on_tick(store, Slot(slot))
        for _ in range(draw(st.integers(min_value=0, max_value=2))):
            parents = [
                b for b in _recent_blocks(store, slot, fork_window) if store.nodes[b].slot < slot
            ]
            parent = draw(st.sampled_from(parents))
            proposer = get_proposer(store, parent, Slot(slot))
            if proposer is None:
                continue
            block = build_block(store, parent, Slot(slot), by_key[proposer])
            try:
                on_block(store, block, Slot(slot))
            except InvalidBlock:
                continue  # a duplicate, or a branch that finality has just ruled out
            blocks.append(block)
        for key in get_duties(params, by_key, Slot(slot)):
            behaviour = draw(st.sampled_from(["abstain", "stray", "honest", "honest"]))
            if behaviour == "abstain":
                continue
            head = get_head(store)
            if behaviour == "stray":
                head = draw(st.sampled_from(_recent_blocks(store, slot, fork_window)))
            vote = make_vote(store, by_key[key], Slot(slot), head=head)
            if vote.source.epoch < last_source.get(key, 0):
                continue
            last_source[key] = vote.source.epoch
            on_vote(store, vote, Slot(slot))
            votes.append(vote)
    return Scenario(
        params=params,
        genesis=genesis,
        blocks=tuple(blocks),
        votes=tuple(votes),
        last_slot=last_slot,
    )


_RETRY = frozenset(
    {Reason.UNKNOWN_PARENT, Reason.UNKNOWN_VOTE_HEAD, Reason.FUTURE_SLOT, Reason.FUTURE_VOTE}
)


def feed_in_order(
    params: ChainParams,
    genesis: GenesisConfig,
    messages: Iterable[Message],
    current_slot: int,
    *,
    on_refused: Callable[[Message, Reason], None] | None = None,
) -> Store:
    """A fresh store fed `messages` in the given order at `current_slot`.

    A message whose parent or head is not known yet waits in a buffer and is retried after
    every accepted block, as a node's orphan pool would; messages rejected for any other reason
    (for example a block that conflicts with finality reached meanwhile) are dropped and
    reported to `on_refused`.
    """
    store = get_forkchoice_store(params, genesis, current_slot=Slot(current_slot))
    waiting: list[Message] = []
    queue = list(messages)
    while queue:
        message = queue.pop(0)
        try:
            if isinstance(message, Block):
                on_block(store, message, Slot(current_slot))
            else:
                on_vote(store, message, Slot(current_slot))
        except (InvalidBlock, InvalidVote) as exc:
            if exc.reason in _RETRY:
                waiting.append(message)
            elif on_refused is not None:
                on_refused(message, exc.reason)
            continue
        if isinstance(message, Block) and waiting:
            queue = waiting + queue
            waiting = []
    return store


# -- adversaries ----------------------------------------------------------------------------


def adversarial_votes(
    sim: Simulation, keys: Sequence[SecretKey], slot: int
) -> SearchStrategy[list[Vote]]:
    """Valid-but-hostile votes by `keys` at `slot`: random known heads and random earlier
    checkpoints as sources, so double votes and surround votes are both likely. Nothing when
    no block that the fork choice still holds is as old as `slot`."""
    store = sim.store
    heads = sorted(b for b in store.tree.block_ids() if store.nodes[b].slot <= slot)
    epoch = compute_epoch_at_slot(sim.params, Slot(slot))
    if not heads:
        return st.just([])

    @st.composite
    def build(draw: st.DrawFn) -> list[Vote]:
        made: list[Vote] = []
        for key in keys:
            if not draw(st.booleans()):
                continue
            head = draw(st.sampled_from(heads))
            target = get_checkpoint(store, head, epoch)
            source_epoch = draw(st.integers(min_value=0, max_value=max(epoch - 1, 0)))
            source = target if epoch == 0 else get_checkpoint(store, head, Epoch(source_epoch))
            made.append(
                sign_vote_data(store, key, slot=slot, head=head, source=source, target=target)
            )
        return made

    return build()


def adversarial_blocks(sim: Simulation, slot: int) -> SearchStrategy[list[Block]]:
    """Blocks at `slot` by hostile scheduled proposers on random known parents (forks and,
    with several parents, double proposals)."""
    store = sim.store
    parents = sorted(b for b in store.tree.block_ids() if store.nodes[b].slot < slot)

    @st.composite
    def build(draw: st.DrawFn) -> list[Block]:
        made: list[Block] = []
        for parent in draw(st.lists(st.sampled_from(parents), max_size=2, unique=True)):
            proposer = get_proposer(store, parent, Slot(slot))
            if proposer in sim.hostile:
                made.append(build_block(store, parent, Slot(slot), sim.keys[proposer]))
        return made

    return build()


def store_state(store: Store) -> object:
    """Everything observable about a store: compare two to check that a call changed nothing."""
    store.tree.apply_deltas()
    finality = store.finality
    return (
        sorted(store.nodes),
        sorted((block_id, store.tree.weight(block_id)) for block_id in store.tree.block_ids()),
        store.head,
        store.justified_checkpoint,
        store.finalized_checkpoint,
        list(store.conflicting_finalized),
        dict(store.latest_votes),
        set(store.slashed),
        set(finality.justified),
        set(finality.finalized),
        {link: set(tally.voters) for link, tally in finality.links.items()},
        store.current_slot,
        store.view.snapshot(),
        store.view.tip,
        [block.block_id for block in store.undone],
        [block.block_id for block in store.applied],
    )


@dataclass(frozen=True, slots=True)
class SelfPruningChain:
    """Valid ``g - h(3) - x(4) - y(6) - z(9)``, where `z`'s own votes prune `z` (docs/consensus.md).

    `y` carries 3 of 4 votes ``(0,g)->(1,h)`` and `z` 3 of 4 votes ``(1,h)->(2,h)``; importing
    the blocks in order finalizes ``(1,h)``, whose epoch-1 checkpoint conflicts with `x`.
    """

    keys: list[SecretKey]
    genesis: GenesisConfig
    h: Block
    x: Block
    y: Block
    z: Block

    @property
    def blocks(self) -> tuple[Block, ...]:
        return (self.h, self.x, self.y, self.z)


def build_self_pruning_chain(params: ChainParams = CONSENSUS_PARAMS) -> SelfPruningChain:
    """Build `SelfPruningChain` (4 equal validators; `params` must have 4 slots per epoch)."""
    if params.slots_per_epoch != 4:
        raise ValueError("the shape needs 4 slots per epoch")
    keys = validator_keys(4, label=b"self-pruning")
    genesis = make_genesis(keys, [10 * COIN] * 4, params)
    store = get_forkchoice_store(params, genesis)
    by_key = {key.public_key: key for key in keys}

    def child(parent: BlockId, slot: int, votes: Sequence[Vote] = ()) -> Block:
        proposer = get_proposer(store, parent, Slot(slot))
        assert proposer is not None
        on_tick(store, Slot(slot))
        block = build_block(store, parent, Slot(slot), by_key[proposer], votes=votes)
        assert len(block.votes) == len(votes), "build_block dropped a vote of the scenario"
        on_block(store, block, Slot(slot))
        return block

    def votes(slot: int, head: BlockId, source: Checkpoint, target: Checkpoint) -> list[Vote]:
        return [
            sign_vote_data(store, key, slot=slot, head=head, source=source, target=target)
            for key in keys[:3]
        ]

    g = store.genesis_id
    h = child(g, 3)
    x = child(h.block_id, 4)
    h1 = Checkpoint(epoch=Epoch(1), block_id=h.block_id)
    y = child(x.block_id, 6, votes(5, h.block_id, Checkpoint(epoch=Epoch(0), block_id=g), h1))
    z_votes = votes(8, h.block_id, h1, Checkpoint(epoch=Epoch(2), block_id=h.block_id))
    proposer = get_proposer(store, y.block_id, Slot(9))
    assert proposer is not None
    on_tick(store, Slot(9))
    z = build_block(store, y.block_id, Slot(9), by_key[proposer], votes=z_votes)
    assert len(z.votes) == len(z_votes), "build_block dropped a vote of the scenario"
    return SelfPruningChain(keys=keys, genesis=genesis, h=h, x=x, y=y, z=z)
