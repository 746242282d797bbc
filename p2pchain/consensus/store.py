"""The fork-choice store: every known block since the finalized checkpoint, votes, finality.

Besides the block tree, the store keeps one `UtxoView` (the *cursor*) that always sits at the
current head, plus the undo data of every block above the finalized checkpoint. Any other
block's state is reached by undoing back to the common ancestor and applying forward, which is
also how a reorg is reported (`pop_head_change`). The cursor never undoes the finalized block.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from p2pchain.consensus.finality import FinalityState
from p2pchain.consensus.governance import GovernanceState, advance
from p2pchain.consensus.protoarray import ProtoArray
from p2pchain.consensus.types import (
    GENESIS_SLOT,
    compute_epoch_at_slot,
    compute_start_slot_at_epoch,
)
from p2pchain.consensus.validators import ValidatorSet, compute_proposer, compute_seed
from p2pchain.errors import InvalidBlock, Reason
from p2pchain.ledger.block import Block
from p2pchain.ledger.commitment import VALIDATORS_KEY
from p2pchain.ledger.genesis import GenesisConfig, genesis_state
from p2pchain.ledger.trie import TrieProof
from p2pchain.ledger.types import BlockId, Epoch, Hash32, Height, PublicKey, Slot
from p2pchain.ledger.utxo import UndoData, UtxoView
from p2pchain.ledger.vote import Checkpoint
from p2pchain.params import ChainParams

GENESIS_HEIGHT: Final = Height(0)

STAKE_PATHS_KEPT: Final = 4_096
"""Finalized checkpoint blocks whose stake path (`BlockNode.stake_path`, about 2.4 KiB) a store
keeps for light clients: a client whose trusted checkpoint is older re-anchors on a newer one."""

NO_GOVERNANCE_ROOT: Final = Hash32(bytes(32))
"""`BlockNode.governance_root` of a node made without a governance state."""

PRUNED_IDS_KEPT: Final = 16_384
"""Ids of blocks known to conflict with the finalized checkpoint that a store remembers (about
1.5 MiB), so that a child of one, or a vote for one, is refused as `conflicts-with-finalized`
instead of waiting for a parent that will never come; the oldest are forgotten first."""


@dataclass(slots=True, eq=False)
class BlockNode:
    """A known block's place in the chain, the bonded stake and governance after it and how
    to undo it.

    `block` is the body; `release_bodies` drops it for finalized blocks the caller keeps
    elsewhere (its database), so the finalized history costs a few hundred bytes per block
    instead of the block's transactions. Checkpoint and ancestry queries need only the node.
    """

    block_id: BlockId
    slot: Slot
    height: Height
    parent: BlockNode | None
    validator_set: ValidatorSet
    governance: GovernanceState | None
    """None once released with the body: no block may build on a finalized block's ancestor,
    and its proposals' vote maps would otherwise stay in memory for good."""
    undo: UndoData | None
    block: Block | None
    stake_path: TrieProof | None = None
    """Where the validator trie sits in the top trie of the state after this block: with
    `validator_set` it proves the stake table to a light client holding only the header.
    Kept while the block is in the tree, then only for checkpoint blocks (`release_bodies`),
    the last `STAKE_PATHS_KEPT` of them."""
    governance_root: Hash32 = NO_GOVERNANCE_ROOT
    """`governance.commitment()`, the governance leaf of the state after the block, computed
    once and kept after `governance` is released (`move_view` re-applies blocks with it).
    Zeros for a node made without a governance state (a body-less ancestor)."""

    @classmethod
    def of(
        cls,
        block: Block,
        parent: BlockNode | None,
        validator_set: ValidatorSet,
        governance: GovernanceState,
        undo: UndoData | None,
        stake_path: TrieProof | None = None,
        governance_root: Hash32 | None = None,
    ) -> BlockNode:
        """`governance_root` is `governance.commitment()` when the caller has it."""
        header = block.header
        return cls(
            block.block_id,
            header.slot,
            header.height,
            parent,
            validator_set,
            governance,
            undo,
            block,
            stake_path,
            governance.commitment() if governance_root is None else governance_root,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LatestVote:
    """A validator's latest vote as the fork choice counts it."""

    slot: Slot
    data: bytes
    """Encoded vote data: among votes of one slot, the lowest wins (order-independent)."""
    head: BlockId
    weight: int
    """Weight this vote currently adds to `head`'s branch (0 once the validator is slashed)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadChange:
    """How the head moved since the last report: blocks to roll back, then to roll forward."""

    old_head: BlockId
    new_head: BlockId
    undone: tuple[Block, ...]
    """Blocks taken off the chain, newest first."""
    applied: tuple[Block, ...]
    """Blocks put on the chain, oldest first."""


@dataclass(slots=True, eq=False, kw_only=True)
class Store:
    """Fork-choice state. Mutate it only through the `on_*` handlers of `forkchoice`."""

    params: ChainParams
    genesis_time_ms: int
    genesis_id: BlockId
    current_slot: Slot
    nodes: dict[BlockId, BlockNode]
    """The finalized chain back to genesis plus every block descending from the finalized one."""
    tree: ProtoArray
    finality: FinalityState
    finalized_checkpoint: Checkpoint
    justified_checkpoint: Checkpoint
    conflicting_finalized: list[Checkpoint] = field(default_factory=list)
    """Checkpoints that met the finality rule on a branch conflicting with the finalized one.

    Non-empty only if validators holding 1/3 of the stake are slashable; never adopted.
    """
    latest_votes: dict[PublicKey, LatestVote] = field(default_factory=dict)
    slashed: set[PublicKey] = field(default_factory=set)
    view: UtxoView
    head: BlockId
    reported_head: BlockId
    undone: list[Block] = field(default_factory=list)
    applied: list[Block] = field(default_factory=list)
    checkpoint_cache: dict[tuple[BlockId, int], BlockNode] = field(default_factory=dict)
    pruned: OrderedDict[BlockId, None] = field(default_factory=OrderedDict)
    """Recently pruned block ids, oldest first (at most `PRUNED_IDS_KEPT`)."""
    stake_paths: deque[BlockNode] = field(default_factory=deque)
    """Released checkpoint blocks still holding their stake path, oldest first."""
    anchor_height: Height = GENESIS_HEIGHT
    """Height of the lowest block the store holds a body and state for: 0 (genesis) for a
    store replayed from genesis, the anchor block's for one started from a snapshot
    (`anchor.get_anchored_store`); the nodes below it carry only what checkpoint queries
    need."""


def get_forkchoice_store(
    params: ChainParams, genesis_config: GenesisConfig, *, current_slot: Slot = GENESIS_SLOT
) -> Store:
    """A store holding only the genesis block, which is justified and finalized."""
    governance = GovernanceState.at_genesis(params)
    governance_root = governance.commitment()
    genesis, view = genesis_state(genesis_config, params, governance=governance_root)
    genesis_id = genesis.block_id
    validators = ValidatorSet.from_stakes(view.bonded_stake())
    checkpoint = Checkpoint(epoch=Epoch(0), block_id=genesis_id)
    return Store(
        params=params,
        genesis_time_ms=genesis_config.genesis_time_ms,
        genesis_id=genesis_id,
        current_slot=current_slot,
        nodes={
            genesis_id: BlockNode.of(
                genesis,
                None,
                validators,
                governance,
                None,
                stake_path(view),
                governance_root,
            )
        },
        tree=ProtoArray(genesis_id),
        finality=FinalityState.at_genesis(checkpoint),
        finalized_checkpoint=checkpoint,
        justified_checkpoint=checkpoint,
        view=view,
        head=genesis_id,
        reported_head=genesis_id,
    )


def stake_path(view: UtxoView) -> TrieProof:
    """The proof of the validator trie's leaf in `view`'s top trie (root already computed)."""
    view.state_root()
    return view.commitment.top.prove(VALIDATORS_KEY)


# -- chain queries ---------------------------------------------------------------------------


def remember_pruned(store: Store, block_ids: Iterable[BlockId]) -> None:
    """Record blocks that conflict with the finalized checkpoint (pruned ones, or a child of
    one that was refused), forgetting the oldest beyond `PRUNED_IDS_KEPT`."""
    pruned = store.pruned
    for block_id in block_ids:
        pruned[block_id] = None
        pruned.move_to_end(block_id)
    while len(pruned) > PRUNED_IDS_KEPT:
        pruned.popitem(last=False)


def get_ancestor_at_height(node: BlockNode, height: Height) -> BlockNode | None:
    """The ancestor (or `node` itself) at `height`, None above `node`."""
    if height > node.height:
        return None
    current: BlockNode | None = node
    while current is not None and current.height > height:
        current = current.parent
    return current


def is_ancestor(store: Store, ancestor: BlockId, block_id: BlockId) -> bool:
    """True when `ancestor` is `block_id` or one of its ancestors (both must be known)."""
    high = store.nodes[block_id]
    low = store.nodes[ancestor]
    found = get_ancestor_at_height(high, low.height)
    return found is low


def get_checkpoint_node(store: Store, block_id: BlockId, epoch: Epoch) -> BlockNode:
    """The block at, or last before, the first slot of `epoch` on `block_id`'s chain."""
    key = (block_id, epoch)
    cached = store.checkpoint_cache.get(key)
    if cached is not None:
        return cached
    start = compute_start_slot_at_epoch(store.params, epoch)
    node = store.nodes[block_id]
    while node.slot > start and node.parent is not None:
        node = node.parent
    store.checkpoint_cache[key] = node
    return node


def get_checkpoint(store: Store, block_id: BlockId, epoch: Epoch) -> Checkpoint:
    """The checkpoint of `epoch` on `block_id`'s chain."""
    return Checkpoint(epoch=epoch, block_id=get_checkpoint_node(store, block_id, epoch).block_id)


def _lag_epoch(store: Store, epoch: Epoch) -> int:
    return max(epoch - store.params.validator_set_lag_epochs, 0)


def get_validator_set(store: Store, block_id: BlockId, epoch: Epoch) -> ValidatorSet:
    """Validators of `epoch` on `block_id`'s chain: stake after the epoch-2 checkpoint block."""
    return get_checkpoint_node(store, block_id, Epoch(_lag_epoch(store, epoch))).validator_set


def get_governance(store: Store, parent_id: BlockId, slot: Slot) -> GovernanceState:
    """Governance as a block at `slot` on top of `parent_id` starts from: the parameters it is
    validated with and the deposits its reward returns."""
    parent = store.nodes[parent_id]
    if parent.governance is None:
        raise ValueError(
            f"block {parent_id.hex()[:16]} is a released ancestor of the finalized one"
        )
    epoch = compute_epoch_at_slot(store.params, slot)
    return advance(parent.governance, epoch, parent.validator_set)


def get_seed(store: Store, block_id: BlockId, epoch: Epoch) -> Hash32:
    """The proposer seed of `epoch` on `block_id`'s chain (from the epoch-2 checkpoint)."""
    anchor = get_checkpoint_node(store, block_id, Epoch(_lag_epoch(store, epoch)))
    return compute_seed(epoch, anchor.block_id)


def get_proposer(store: Store, parent_id: BlockId, slot: Slot) -> PublicKey | None:
    """Who may propose at `slot` on top of `parent_id`; None if the set has no stake."""
    epoch = compute_epoch_at_slot(store.params, slot)
    validators = get_validator_set(store, parent_id, epoch)
    if not validators.total:
        return None
    return compute_proposer(validators, get_seed(store, parent_id, epoch), slot)


# -- the state cursor ------------------------------------------------------------------------


def _reorg_path(store: Store, source: BlockId, target: BlockId) -> tuple[list[BlockNode], ...]:
    a, b = store.nodes[source], store.nodes[target]
    undo: list[BlockNode] = []
    apply: list[BlockNode] = []
    while a.height > b.height:
        undo.append(a)
        a = a.parent  # type: ignore[assignment]
    while b.height > a.height:
        apply.append(b)
        b = b.parent  # type: ignore[assignment]
    while a is not b:
        undo.append(a)
        apply.append(b)
        a, b = a.parent, b.parent  # type: ignore[assignment]
    apply.reverse()
    return undo, apply


def move_view(store: Store, target: BlockId) -> UtxoView:
    """Move the cursor to `target` by undo/apply and return it (the store's own view).

    Raises:
        InvalidBlock: `CONFLICTS_WITH_FINALIZED` when the move would undo the finalized block;
            the cursor is not moved.
    """
    undo, apply = _reorg_path(store, store.view.tip, target)
    finalized_height = store.nodes[store.finalized_checkpoint.block_id].height
    if any(node.height <= finalized_height or node.undo is None for node in undo):
        raise InvalidBlock(Reason.CONFLICTS_WITH_FINALIZED, "move would undo the finalized block")
    for node in undo:
        assert node.undo is not None
        assert node.block is not None  # above the finalized block: never released
        store.view.undo(node.block, node.undo)
        if store.applied:
            store.applied.pop()
        else:
            store.undone.append(node.block)
    for node in apply:
        assert node.block is not None  # in the tree: bodies are released only below its root
        store.view.apply(node.block, governance=node.governance_root)
        record_applied(store, node.block)
    return store.view


def release_bodies(store: Store, height: Height) -> list[Block]:
    """Drop the bodies of the finalized block's ancestors below `height`; return them, oldest
    first (those released by an earlier call are not returned again).

    The caller keeps them elsewhere (a node has them in its database). Blocks from the
    finalized one up are never released: reorgs and the state cursor need them. The nodes
    stay, so checkpoint, validator-set and ancestry queries answer as before; their governance
    states go with the bodies (nothing builds on them any more).
    """
    finalized = store.nodes[store.finalized_checkpoint.block_id]
    node = get_ancestor_at_height(finalized, Height(min(height, finalized.height) - 1))
    released: list[Block] = []
    child: BlockNode | None = None if node is None else _child_on_path(finalized, node)
    kept: list[BlockNode] = []
    while node is not None and node.block is not None:
        released.append(node.block)
        node.block = None
        node.governance = None
        if child is not None and _is_checkpoint(store.params, node, child):
            kept.append(node)
        else:
            node.stake_path = None
        node, child = node.parent, node
    store.stake_paths.extend(reversed(kept))
    while len(store.stake_paths) > STAKE_PATHS_KEPT:
        store.stake_paths.popleft().stake_path = None
    released.reverse()
    return released


def _child_on_path(descendant: BlockNode, node: BlockNode) -> BlockNode | None:
    """The child of `node` on the way to `descendant` (None when they are the same)."""
    child = None
    current: BlockNode | None = descendant
    while current is not None and current is not node:
        child, current = current, current.parent
    return child


def _is_checkpoint(params: ChainParams, node: BlockNode, child: BlockNode) -> bool:
    """True when `node` is the checkpoint block of some epoch on its child's chain: an epoch
    starts after `node`'s slot and no later than the slot before `child`'s."""
    spe = params.slots_per_epoch
    first_start_at_or_after = -(-node.slot // spe) * spe
    return first_start_at_or_after < child.slot


def record_applied(store: Store, block: Block) -> None:
    """Note in the head-change journal that the cursor applied `block`."""
    if not store.applied and store.undone and store.undone[-1].block_id == block.block_id:
        store.undone.pop()
    else:
        store.applied.append(block)
