"""An executable reference of the consensus rules: plain, slow, written from the docs.

Each function mirrors a passage of docs/protocol.md ("Consensus") or docs/consensus.md and names
it in its docstring; read them side by side. Nothing here uses `p2pchain.consensus`: there is no
proto-array, no running tally and no cache. `SpecStore` keeps only what the rules are a function
of, and every query recomputes its answer from that:

- the accepted blocks, each with the ledger state after it (from the ledger's `connect_block`,
  which is what `stake_after` reads);
- the counted votes, in the order they were counted, with their stake;
- the validators known to be slashed;
- the finalized checkpoint `F`, because the rules define the next `F` from the previous one.

Pruned blocks stay in `blocks`; whether a block is pruned, known or in the fork-choice tree is
recomputed from `F` each time it is asked. The store in `p2pchain.consensus` must give the same
answers (tests/consensus/test_spec.py checks it after every message); this module is meant to be
obviously right, not fast.

There is no governance model: the reference follows chains that carry no governance
transaction (PROPOSE, GOV_VOTE), whose governance state after a block is the genesis one at the
block's epoch, and computes that state's leaf of the state root from protocol.md
(`governance_leaf`). A chain with governance transactions is beyond what it can check: it
would refuse such a block as `bad-state-root`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from p2pchain.errors import InvalidBlock, InvalidVote, Reason
from p2pchain.ledger.block import Block, compute_body_root
from p2pchain.ledger.crypto import tagged_hash, verify
from p2pchain.ledger.encoding import RLPItem, encode_item, uint_bytes
from p2pchain.ledger.evidence import Evidence
from p2pchain.ledger.genesis import GenesisConfig, genesis_state
from p2pchain.ledger.header import header_signing_message
from p2pchain.ledger.tx import LockKind, SlashPayload
from p2pchain.ledger.types import BlockId, Epoch, Hash32, PublicKey
from p2pchain.ledger.utxo import UtxoView
from p2pchain.ledger.validation import connect_block
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.params import GOVERNABLE, ChainParams

__all__ = [
    "AcceptedBlock",
    "CountedVote",
    "Outcome",
    "SpecStore",
    "checkpoint_block",
    "children",
    "epoch_of",
    "ffg_checkpoints",
    "get_checkpoint",
    "get_head",
    "get_justified_checkpoint",
    "get_latest_votes",
    "get_proposer",
    "get_seed",
    "get_spec_store",
    "get_validator_set",
    "get_vote_duty_slot",
    "get_weight",
    "get_weights",
    "governance_leaf",
    "is_in_tree",
    "is_known",
    "is_pruned",
    "known_blocks",
    "link_tallies",
    "on_block",
    "on_evidence",
    "on_tick",
    "on_vote",
    "stake_after",
    "start_of",
    "tree_blocks",
    "validate_block",
    "validate_carried_vote",
    "validate_vote",
]


@dataclass(frozen=True, slots=True)
class AcceptedBlock:
    """A block that passed every rule, and the ledger state right after it (never changed)."""

    block: Block
    state: UtxoView


@dataclass(frozen=True, slots=True)
class CountedVote:
    """A vote that counts: always for its link tally, for the fork choice when `lmd` is set."""

    vote: Vote
    stake: int
    lmd: bool


class Outcome(Enum):
    """What `on_block` did with a valid block (docs/consensus.md, "A block pruned by its own
    votes")."""

    ADDED = "added"
    PRUNED = "pruned"


@dataclass(eq=False, kw_only=True)
class SpecStore:
    """The messages that counted, and `F`; everything else is derived on demand."""

    params: ChainParams
    genesis_id: BlockId
    current_slot: int
    blocks: dict[BlockId, AcceptedBlock]
    """Every block ever accepted, pruned ones included."""
    votes: list[CountedVote] = field(default_factory=list)
    slashed: set[PublicKey] = field(default_factory=set)
    finalized: Checkpoint
    conflicting_finalized: list[Checkpoint] = field(default_factory=list)


def get_spec_store(
    params: ChainParams, genesis_config: GenesisConfig, *, current_slot: int = 0
) -> SpecStore:
    """The genesis block alone; the genesis checkpoint is justified and finalized.

    protocol.md, "Genesis" (the block and its state) and "Finality" (its checkpoint).
    """
    genesis, state = genesis_state(genesis_config, params, governance=governance_leaf(params, 0))
    return SpecStore(
        params=params,
        genesis_id=genesis.block_id,
        current_slot=current_slot,
        blocks={genesis.block_id: AcceptedBlock(genesis, state)},
        finalized=Checkpoint(epoch=Epoch(0), block_id=genesis.block_id),
    )


# -- Time ----------------------------------------------------------------------------------


def epoch_of(params: ChainParams, slot: int) -> int:
    """protocol.md, "Time": `epoch(slot) = slot // slots_per_epoch`."""
    return slot // params.slots_per_epoch


def start_of(params: ChainParams, epoch: int) -> int:
    """protocol.md, "Time": `start(epoch) = epoch * slots_per_epoch`."""
    return epoch * params.slots_per_epoch


def governance_leaf(params: ChainParams, epoch: int) -> Hash32:
    """protocol.md, "State commitment" (the governance leaf), for a chain without governance
    transactions: after a block of `epoch` its state is `[epoch, the genesis values of the
    governable parameters, [], [], 0]`, and the leaf's value is
    `tagged_hash("p2pchain/state/governance-state", rlp(state))`."""
    state: list[RLPItem] = [
        uint_bytes(epoch),
        [uint_bytes(getattr(params, name)) for name in GOVERNABLE],
        [],
        [],
        uint_bytes(0),
    ]
    return tagged_hash(b"p2pchain/state/governance-state", encode_item(state))


def _u64be(value: int) -> bytes:
    return value.to_bytes(8, "big")


def _slot(store: SpecStore, block_id: BlockId) -> int:
    return store.blocks[block_id].block.header.slot


def _parent(store: SpecStore, block_id: BlockId) -> BlockId | None:
    """The parent of an accepted block; None for genesis, whose parent field is a config hash."""
    if block_id == store.genesis_id:
        return None
    return store.blocks[block_id].block.header.parent


def _chain(store: SpecStore, block_id: BlockId) -> list[BlockId]:
    """The chain ending at `block_id`: the block first, genesis last."""
    chain: list[BlockId] = []
    current: BlockId | None = block_id
    while current is not None:
        chain.append(current)
        current = _parent(store, current)
    return chain


def _is_on_chain(store: SpecStore, ancestor: BlockId, block_id: BlockId) -> bool:
    """`ancestor` is `block_id` or one of its ancestors."""
    return ancestor in _chain(store, block_id)


def checkpoint_block(store: SpecStore, block_id: BlockId, epoch: int) -> BlockId:
    """protocol.md, "Time": the checkpoint block of `epoch` on the chain ending at `block_id`
    is the last block of that chain (walking parents, the block included) with
    `slot <= start(epoch)`."""
    start = start_of(store.params, epoch)
    for candidate in _chain(store, block_id):
        if _slot(store, candidate) <= start:
            return candidate
    raise AssertionError("genesis has slot 0")


def get_checkpoint(store: SpecStore, block_id: BlockId, epoch: int) -> Checkpoint:
    """protocol.md, "Time": the checkpoint is `Checkpoint(E, that block's id)`."""
    return Checkpoint(epoch=Epoch(epoch), block_id=checkpoint_block(store, block_id, epoch))


def _has_on_chain(store: SpecStore, later: Checkpoint, earlier: Checkpoint) -> bool:
    """Checkpoint `later` has `earlier` on its chain: `earlier` is the checkpoint of its epoch
    on `later`'s chain (protocol.md, "Finality": "has the previous F on its chain")."""
    return (
        later.epoch >= earlier.epoch
        and checkpoint_block(store, later.block_id, earlier.epoch) == earlier.block_id
    )


def _conflict(store: SpecStore, a: Checkpoint, b: Checkpoint) -> bool:
    """Neither checkpoint has the other on its chain."""
    return not (_has_on_chain(store, a, b) or _has_on_chain(store, b, a))


# -- Validator sets and the proposer schedule ---------------------------------------------


def stake_after(store: SpecStore, block_id: BlockId) -> dict[PublicKey, int]:
    """protocol.md, "Validator sets and the proposer schedule": bonded stake per key after the
    block, the sum of the unspent outputs with `Lock(STAKE, key)`; UNBONDING does not count."""
    stakes: dict[PublicKey, int] = {}
    for _, output in store.blocks[block_id].state:
        if output.lock.kind is LockKind.STAKE:
            key = PublicKey(output.lock.key)
            stakes[key] = stakes.get(key, 0) + output.amount
    return stakes


def _anchor(store: SpecStore, block_id: BlockId, epoch: int) -> BlockId:
    """protocol.md, "Validator sets and the proposer schedule": `anchor(E, B)` is the checkpoint
    block of epoch `max(E - validator_set_lag_epochs, 0)` on `B`'s chain."""
    lagged = max(epoch - store.params.validator_set_lag_epochs, 0)
    return checkpoint_block(store, block_id, lagged)


def get_validator_set(store: SpecStore, block_id: BlockId, epoch: int) -> dict[PublicKey, int]:
    """protocol.md, "Validator sets and the proposer schedule": `stake_after(anchor(E, B))`,
    keys with zero stake left out, in ascending key order."""
    stakes = stake_after(store, _anchor(store, block_id, epoch))
    return {key: stakes[key] for key in sorted(stakes) if stakes[key] > 0}


def get_seed(store: SpecStore, block_id: BlockId, epoch: int) -> bytes:
    """protocol.md, "Validator sets and the proposer schedule":
    `seed(E, B) = tagged_hash("p2pchain/seed", u64be(E) || anchor(E, B).block_id)`."""
    return tagged_hash(b"p2pchain/seed", _u64be(epoch) + _anchor(store, block_id, epoch))


def get_proposer(store: SpecStore, parent_id: BlockId, slot: int) -> PublicKey | None:
    """protocol.md, "Validator sets and the proposer schedule": with the set and seed of
    `epoch(s)` on the parent's chain, `r = int_be(tagged_hash("p2pchain/proposer", seed ||
    u64be(s))) mod total`; the proposer is `k_i` for the smallest `i` with `cum_i > r`. An empty
    set has no proposer."""
    epoch = epoch_of(store.params, slot)
    validators = get_validator_set(store, parent_id, epoch)
    total = sum(validators.values())
    if total == 0:
        return None
    seed = get_seed(store, parent_id, epoch)
    draw = int.from_bytes(tagged_hash(b"p2pchain/proposer", seed + _u64be(slot)), "big") % total
    cumulative = 0
    for key, stake in validators.items():
        cumulative += stake
        if cumulative > draw:
            return key
    raise AssertionError("draw < total")


def get_vote_duty_slot(params: ChainParams, key: PublicKey, epoch: int) -> int:
    """protocol.md, "Validator sets and the proposer schedule" (vote duty, a convention):
    `start(E) + int_be(tagged_hash("p2pchain/vote-duty", k || u64be(E))[0:8]) mod
    slots_per_epoch`."""
    digest = tagged_hash(b"p2pchain/vote-duty", key + _u64be(epoch))
    return start_of(params, epoch) + int.from_bytes(digest[0:8], "big") % params.slots_per_epoch


# -- Which blocks are still there ---------------------------------------------------------


def is_in_tree(store: SpecStore, block_id: BlockId) -> bool:
    """protocol.md, "Finality": a block stays (is not pruned) when its chain has `F` as its
    checkpoint of `F.epoch`; these are `F` and the descendants the fork choice walks."""
    finalized = store.finalized
    return checkpoint_block(store, block_id, finalized.epoch) == finalized.block_id


def is_known(store: SpecStore, block_id: BlockId) -> bool:
    """An accepted block that was not pruned: the tree, plus the ancestors of `F`, which stay
    as history (docs/consensus.md, "Pruning")."""
    if block_id not in store.blocks:
        return False
    return is_in_tree(store, block_id) or _is_on_chain(store, block_id, store.finalized.block_id)


def is_pruned(store: SpecStore, block_id: BlockId) -> bool:
    """protocol.md, "Finality": an accepted block whose chain does not have `F` as its
    checkpoint of `F.epoch`, and which is not `F`'s history (docs/consensus.md, "Pruning").

    The reference remembers every pruned block; a store remembers the last `PRUNED_IDS_KEPT`
    (protocol.md, "Block validity", rule 2), which no test here comes near.
    """
    return block_id in store.blocks and not is_known(store, block_id)


def known_blocks(store: SpecStore) -> set[BlockId]:
    """Every known block (see `is_known`)."""
    return {block_id for block_id in store.blocks if is_known(store, block_id)}


def tree_blocks(store: SpecStore) -> set[BlockId]:
    """Every block of the fork-choice tree (see `is_in_tree`)."""
    return {block_id for block_id in store.blocks if is_in_tree(store, block_id)}


# -- Finality ------------------------------------------------------------------------------


def link_tallies(
    votes: list[CountedVote],
) -> dict[tuple[Checkpoint, Checkpoint], dict[PublicKey, int]]:
    """protocol.md, "Finality": for each link `(source, target)`, the distinct validators with a
    counted vote for exactly that link and their stake (each validator once)."""
    tallies: dict[tuple[Checkpoint, Checkpoint], dict[PublicKey, int]] = {}
    for counted in votes:
        vote = counted.vote
        voters = tallies.setdefault((vote.source, vote.target), {})
        voters.setdefault(vote.validator, counted.stake)
    return tallies


def _is_supermajority(store: SpecStore, target: Checkpoint, voters: dict[PublicKey, int]) -> bool:
    """protocol.md, "Finality": `3 * tally >= 2 * total` and `total > 0`, where `total` is the
    stake of the set of `target.epoch` on `target.block_id`'s chain."""
    total = sum(get_validator_set(store, target.block_id, target.epoch).values())
    return total > 0 and 3 * sum(voters.values()) >= 2 * total


def ffg_checkpoints(
    store: SpecStore, votes: list[CountedVote]
) -> tuple[set[Checkpoint], set[Checkpoint]]:
    """The justified and the finalized checkpoints that `votes` give (protocol.md, "Finality").

    The genesis checkpoint is justified and finalized; a checkpoint is justified when a
    supermajority link reaches it from a justified source (applied until nothing changes); a
    justified `C` is finalized when a supermajority link `C -> D` with `D.epoch == C.epoch + 1`
    exists.
    """
    genesis = Checkpoint(epoch=Epoch(0), block_id=store.genesis_id)
    links = [
        link
        for link, voters in link_tallies(votes).items()
        if _is_supermajority(store, link[1], voters)
    ]
    justified = {genesis}
    changed = True
    while changed:
        changed = False
        for source, target in links:
            if source in justified and target not in justified:
                justified.add(target)
                changed = True
    finalized = {genesis} | {
        source
        for source, target in links
        if source in justified and target.epoch == source.epoch + 1
    }
    return justified, finalized


def get_justified_checkpoint(store: SpecStore) -> Checkpoint:
    """protocol.md, "Finality": the highest-epoch justified checkpoint that has `F` on its
    chain (ties: lowest block id)."""
    justified, _ = ffg_checkpoints(store, store.votes)
    return min(
        (cp for cp in justified if _has_on_chain(store, cp, store.finalized)),
        key=lambda cp: (-cp.epoch, cp.block_id),
    )


def _count_vote(store: SpecStore, vote: Vote, stake: int, *, lmd: bool) -> None:
    """Count a vote and move `F` as protocol.md, "Finality" says.

    The candidates are the checkpoints this vote finalized (finalized with it and not without
    it: a cascade may finalize several) that have the previous `F` on their chain; `F` becomes
    the one with the highest epoch, among equal epochs the lowest block id. Every checkpoint it
    finalized that conflicts with the new `F` is recorded as conflicting, never adopted.
    """
    _, before = ffg_checkpoints(store, store.votes)
    store.votes.append(CountedVote(vote, stake, lmd))
    _, after = ffg_checkpoints(store, store.votes)
    finalized_now = after - before
    previous = store.finalized
    candidates = [cp for cp in finalized_now if _has_on_chain(store, cp, previous)]
    if candidates:
        store.finalized = min(candidates, key=lambda cp: (-cp.epoch, cp.block_id))
    for checkpoint in sorted(finalized_now):
        if _conflict(store, checkpoint, store.finalized):
            store.conflicting_finalized.append(checkpoint)


# -- Fork choice ---------------------------------------------------------------------------


def _is_later(vote: Vote, other: Vote) -> bool:
    """`vote` beats `other` as a latest vote: a higher slot, or the same slot and a lower
    `rlp(VoteData)`."""
    if vote.slot != other.slot:
        return vote.slot > other.slot
    return encode_item(vote.data_rlp()) < encode_item(other.data_rlp())


def get_latest_votes(store: SpecStore) -> dict[PublicKey, CountedVote]:
    """protocol.md, "Fork choice": a validator's latest vote is, among its votes counted for the
    fork choice, the one with the highest `slot`; for equal slots the one whose `rlp(VoteData)`
    is lexicographically lowest."""
    latest: dict[PublicKey, CountedVote] = {}
    for counted in store.votes:
        if not counted.lmd:
            continue
        best = latest.get(counted.vote.validator)
        if best is None or _is_later(counted.vote, best.vote):
            latest[counted.vote.validator] = counted
    return latest


def _weight(store: SpecStore, block_id: BlockId, latest: dict[PublicKey, CountedVote]) -> int:
    weight = 0
    for key, counted in latest.items():
        head = counted.vote.head
        if key in store.slashed or not is_in_tree(store, head):
            continue
        if _is_on_chain(store, block_id, head):
            weight += counted.stake
    return weight


def get_weight(store: SpecStore, block_id: BlockId) -> int:
    """protocol.md, "Fork choice": the stakes of the unslashed validators whose latest vote's
    head is `block_id` or a descendant of it. A latest vote whose head was pruned adds nothing
    (docs/consensus.md, "Pruning": pruned blocks are dropped with their latest-vote weights)."""
    return _weight(store, block_id, get_latest_votes(store))


def get_weights(store: SpecStore) -> dict[BlockId, int]:
    """`get_weight` of every block of the tree."""
    latest = get_latest_votes(store)
    return {block_id: _weight(store, block_id, latest) for block_id in tree_blocks(store)}


def children(store: SpecStore, block_id: BlockId) -> list[BlockId]:
    """The children of `block_id` in the tree, by ascending block id."""
    return sorted(
        child
        for child in store.blocks
        if _parent(store, child) == block_id and is_in_tree(store, child)
    )


def get_head(store: SpecStore) -> BlockId:
    """protocol.md, "Fork choice": start at the justified block; while it has children, go to
    the child with the highest weight, among equal weights the lowest block id."""
    latest = get_latest_votes(store)
    head = get_justified_checkpoint(store).block_id
    while True:
        options = children(store, head)
        if not options:
            return head
        # `options` is in ascending id order and `max` keeps the first of equal weights.
        head = max(options, key=lambda child: _weight(store, child, latest))


# -- Votes ---------------------------------------------------------------------------------


def _check_vote_on_chain(
    store: SpecStore, vote: Vote, tip: BlockId, *, check_head_slot: bool
) -> int:
    """protocol.md, "Votes", rules 5-9, with "`head`'s chain" read as the chain ending at
    `tip`; rule 5 only with `check_head_slot`. Returns the vote's stake."""
    params = store.params
    target, source = vote.target, vote.source
    if check_head_slot and _slot(store, vote.head) > vote.slot:
        raise InvalidVote(Reason.FUTURE_VOTE, "head is newer than the vote")  # rule 5
    if target.epoch != epoch_of(params, vote.slot):
        raise InvalidVote(Reason.BAD_VOTE_TARGET, "target epoch")  # rule 6
    if target.block_id != checkpoint_block(store, tip, target.epoch):
        raise InvalidVote(Reason.BAD_VOTE_TARGET, "target block")  # rule 6
    if target.epoch == 0:
        if source != target:
            raise InvalidVote(Reason.BAD_VOTE_SOURCE, "epoch 0")  # rule 7
    elif source.epoch >= target.epoch:
        raise InvalidVote(Reason.BAD_VOTE_SOURCE, "source epoch")  # rule 7
    elif source.block_id != checkpoint_block(store, tip, source.epoch):
        raise InvalidVote(Reason.BAD_VOTE_SOURCE, "source block")  # rule 7
    stake = get_validator_set(store, tip, target.epoch).get(vote.validator, 0)
    if stake == 0:
        raise InvalidVote(Reason.UNKNOWN_VALIDATOR)  # rule 8
    if not vote.is_signature_valid(params.chain_id):
        raise InvalidVote(Reason.BAD_VOTE_SIGNATURE)  # rule 9
    return stake


def validate_vote(store: SpecStore, vote: Vote, current_slot: int) -> int:
    """protocol.md, "Votes", rules 1-9 for a gossiped vote; returns its stake."""
    if vote.slot > current_slot:
        raise InvalidVote(Reason.FUTURE_VOTE)  # rule 1
    if not is_known(store, vote.head):
        if is_pruned(store, vote.head):
            raise InvalidVote(Reason.CONFLICTS_WITH_FINALIZED, "head was pruned")  # rule 2
        raise InvalidVote(Reason.UNKNOWN_VOTE_HEAD)  # rule 2
    if not is_in_tree(store, vote.head):
        raise InvalidVote(Reason.CONFLICTS_WITH_FINALIZED)  # rule 3
    if vote.target.epoch < store.finalized.epoch:
        raise InvalidVote(Reason.STALE_VOTE)  # rule 4
    return _check_vote_on_chain(store, vote, vote.head, check_head_slot=True)


def validate_carried_vote(
    store: SpecStore, vote: Vote, parent_id: BlockId, block_slot: int
) -> tuple[int, bool]:
    """protocol.md, "Votes" (a vote inside a block): `slot < block.slot`, then rules 5-9 on the
    head's chain when the head is the block's parent or an ancestor of it, else rules 6-9 on the
    block's own chain. Returns the stake and whether the head is on the block's chain.

    The block's own chain is its parent's plus the block; the block itself is never the
    checkpoint of an epoch that a vote older than it may name, so the parent's chain answers.
    """
    if vote.slot >= block_slot:
        raise InvalidVote(Reason.FUTURE_VOTE, "not older than the block")
    if vote.head in _chain(store, parent_id):
        return _check_vote_on_chain(store, vote, vote.head, check_head_slot=True), True
    return _check_vote_on_chain(store, vote, parent_id, check_head_slot=False), False


# -- Block validity ------------------------------------------------------------------------


def validate_block(
    store: SpecStore, block: Block, current_slot: int
) -> tuple[UtxoView, list[tuple[Vote, int, bool]]]:
    """protocol.md, "Block validity", rules 1-12 in order; returns the ledger state after the
    block and, per carried vote, its stake and whether its head is on the block's chain."""
    params = store.params
    header = block.header
    if is_known(store, block.block_id):
        raise InvalidBlock(Reason.DUPLICATE_BLOCK)  # rule 1
    if not is_known(store, header.parent):
        if is_pruned(store, header.parent):
            raise InvalidBlock(Reason.CONFLICTS_WITH_FINALIZED, "parent was pruned")  # rule 2
        raise InvalidBlock(Reason.UNKNOWN_PARENT)  # rule 2
    if header.slot > current_slot:
        raise InvalidBlock(Reason.FUTURE_SLOT)  # rule 3
    parent = store.blocks[header.parent].block.header
    if header.slot <= parent.slot:
        raise InvalidBlock(Reason.SLOT_NOT_AFTER_PARENT)  # rule 4
    if header.height != parent.height + 1:
        raise InvalidBlock(Reason.BAD_HEIGHT)  # rule 5
    finalized = store.finalized
    if not is_in_tree(store, header.parent) or (
        header.parent == finalized.block_id and header.slot <= start_of(params, finalized.epoch)
    ):
        raise InvalidBlock(Reason.CONFLICTS_WITH_FINALIZED)  # rule 6
    if (
        len(block.votes) > params.max_block_votes
        or len(encode_item(block.to_rlp())) > params.max_block_bytes
    ):
        raise InvalidBlock(Reason.BLOCK_TOO_LARGE)  # rule 7
    if get_proposer(store, header.parent, header.slot) != header.proposer:
        raise InvalidBlock(Reason.WRONG_PROPOSER)  # rule 8
    message = header_signing_message(params.chain_id, block.block_id)
    if not verify(header.proposer, message, block.signature):
        raise InvalidBlock(Reason.BAD_PROPOSER_SIGNATURE)  # rule 9
    if header.body_root != compute_body_root(block.transactions, block.votes):
        raise InvalidBlock(Reason.BAD_BODY_ROOT)  # rule 10
    carried: list[tuple[Vote, int, bool]] = []
    for vote in block.votes:
        try:
            stake, on_chain = validate_carried_vote(store, vote, header.parent, header.slot)
        except InvalidVote as exc:
            raise InvalidBlock(exc.reason, exc.detail) from exc  # rule 11
        carried.append((vote, stake, on_chain))
    state = store.blocks[header.parent].state.copy()
    governance = governance_leaf(params, epoch_of(params, header.slot))
    connect_block(state, block, params, governance=governance)  # rule 12: the ledger's reason
    return state, carried


# -- Handlers ------------------------------------------------------------------------------


def on_tick(store: SpecStore, slot: int) -> None:
    """The store's clock only moves forward."""
    store.current_slot = max(store.current_slot, slot)


def on_block(store: SpecStore, block: Block, current_slot: int) -> Outcome:
    """Accept a valid block (protocol.md, "Block validity"), slash the offenders of its SLASH
    transactions (protocol.md, "Fork choice" and "Slashing"), then count its votes in order
    (protocol.md, "Votes": a vote whose target epoch is at least the finalized epoch counts for
    finality; for the fork choice only if its head is on the block's chain and still descends
    from the finalized block). `PRUNED` when those votes pruned the block itself."""
    now = max(store.current_slot, current_slot)
    state, carried = validate_block(store, block, now)
    block_id = block.block_id
    store.blocks[block_id] = AcceptedBlock(block, state)
    store.current_slot = now
    for tx in block.transactions:
        if isinstance(tx.payload, SlashPayload):
            store.slashed.add(tx.payload.evidence.offender)
    for vote, stake, on_chain in carried:
        if vote.target.epoch >= store.finalized.epoch:
            lmd = on_chain and is_in_tree(store, vote.head)
            _count_vote(store, vote, stake, lmd=lmd)
    return Outcome.ADDED if is_in_tree(store, block_id) else Outcome.PRUNED


def on_vote(store: SpecStore, vote: Vote, current_slot: int) -> None:
    """Count a valid gossiped vote (protocol.md, "Votes") for the fork choice and finality."""
    now = max(store.current_slot, current_slot)
    stake = validate_vote(store, vote, now)
    store.current_slot = now
    _count_vote(store, vote, stake, lmd=True)


def on_evidence(store: SpecStore, evidence: Evidence) -> None:
    """protocol.md, "Fork choice": a validator is slashed once valid evidence against it is
    known. The evidence rules are the ledger's ("Votes, headers, evidence, blocks"); invalid
    evidence raises `InvalidTransaction(bad-evidence)`."""
    evidence.validate(store.params.chain_id)
    store.slashed.add(evidence.offender)
