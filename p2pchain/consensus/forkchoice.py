"""Fork-choice handlers: `on_tick`, `on_block`, `on_vote`, `on_evidence` and `get_head`.

Each handler runs every check before its first mutation, so a call that raises leaves the
store as it was. After a successful call the store's head, finality and cursor view are up to
date; `pop_head_change` tells the caller which blocks left and joined the chain since it last
asked (what a mempool needs to re-validate).
"""

from __future__ import annotations

from enum import Enum

from p2pchain.consensus.finality import process_link_vote, prune_finality
from p2pchain.consensus.governance import apply_block, commitment_after
from p2pchain.consensus.store import (
    BlockNode,
    HeadChange,
    LatestVote,
    Store,
    get_checkpoint,
    get_forkchoice_store,
    get_governance,
    get_proposer,
    get_validator_set,
    move_view,
    record_applied,
    remember_pruned,
    stake_path,
)
from p2pchain.consensus.types import compute_start_slot_at_epoch
from p2pchain.consensus.validators import compute_stake_delta
from p2pchain.consensus.votes import is_head_on_chain, validate_included_vote, validate_vote
from p2pchain.errors import InvalidBlock, InvalidVote, Reason
from p2pchain.ledger.block import Block
from p2pchain.ledger.encoding import encode_item
from p2pchain.ledger.evidence import Evidence
from p2pchain.ledger.header import SignedHeader
from p2pchain.ledger.tx import SlashPayload
from p2pchain.ledger.types import BlockId, PublicKey, Slot
from p2pchain.ledger.utxo import UtxoView
from p2pchain.ledger.validation import SignatureCheck, connect_block
from p2pchain.ledger.vote import Checkpoint, Vote

__all__ = [
    "BlockOutcome",
    "get_block_view",
    "get_forkchoice_store",
    "get_head",
    "get_head_view",
    "get_weight",
    "on_block",
    "on_evidence",
    "on_tick",
    "on_vote",
    "pop_head_change",
]


class BlockOutcome(Enum):
    """What `on_block` did with a block that broke no rule."""

    ADDED = "added"
    """The block is in the tree."""
    PRUNED = "pruned"
    """The votes it carries completed a finalization that its own chain conflicts with, so
    the finalization pruned the block (and its branch) in the same call. The votes, the new
    checkpoints and the moved head are kept; the block is not in the tree."""


def on_tick(store: Store, slot: Slot) -> None:
    """Advance the store's clock to `slot` (never backwards)."""
    store.current_slot = max(store.current_slot, slot)


def get_head(store: Store) -> BlockId:
    """LMD-GHOST from the justified checkpoint; equal weights go to the lowest block id."""
    return store.tree.find_head(store.justified_checkpoint.block_id)


def get_weight(store: Store, block_id: BlockId) -> int:
    """Stake of the unslashed validators whose latest vote is `block_id` or a descendant."""
    store.tree.apply_deltas()
    return store.tree.weight(block_id)


def get_head_view(store: Store) -> UtxoView:
    """The UTXO state at the head: the store's own view, valid until the next handler call.

    Read it, never change it; `copy()` it to keep a snapshot.
    """
    return store.view


def get_block_view(store: Store, block_id: BlockId) -> UtxoView:
    """A copy of the UTXO state after `block_id` (the finalized block or a descendant).

    Raises:
        InvalidBlock: `CONFLICTS_WITH_FINALIZED` for a block before the finalized one.
    """
    if block_id not in store.tree:
        raise InvalidBlock(Reason.CONFLICTS_WITH_FINALIZED, "state before the finalized block")
    view = move_view(store, block_id).copy()
    move_view(store, store.head)
    return view


def pop_head_change(store: Store) -> HeadChange:
    """Blocks undone and applied on the way from the last reported head to the current one."""
    change = HeadChange(
        old_head=store.reported_head,
        new_head=store.head,
        undone=tuple(store.undone),
        applied=tuple(store.applied),
    )
    store.undone.clear()
    store.applied.clear()
    store.reported_head = store.head
    return change


def on_block(
    store: Store,
    block: Block,
    current_slot: Slot,
    *,
    signatures_valid: SignatureCheck | None = None,
) -> BlockOutcome:
    """Add a block, count the votes it carries and apply any slashing evidence in it.

    `signatures_valid` checks the transactions' witnesses (default: verify each one); a node
    passes a `SignatureCache` so that transactions it verified before are not verified again.

    Raises:
        InvalidBlock: `DUPLICATE_BLOCK`, `UNKNOWN_PARENT` and `FUTURE_SLOT` (the caller may
            queue the block and retry), `SLOT_NOT_AFTER_PARENT`, `BAD_HEIGHT`,
            `CONFLICTS_WITH_FINALIZED` (also for a parent that was pruned), `BLOCK_TOO_LARGE`,
            `WRONG_PROPOSER`, `BAD_PROPOSER_SIGNATURE`, `BAD_BODY_ROOT`, a vote reason for an
            invalid carried vote, or the ledger's reason from `connect_block`. The store is
            left unchanged.

    Returns:
        `BlockOutcome.PRUNED` when the block's own votes finalized a checkpoint that rules the
        block out (it is then absent from ``store.nodes``), else `BlockOutcome.ADDED`.
    """
    now = max(store.current_slot, current_slot)
    header = block.header
    block_id = block.block_id
    parent = check_block_header(
        store, block.signed_header, len(block.encoded), now, votes=len(block.votes)
    )
    if not block.has_valid_body_root():
        raise InvalidBlock(Reason.BAD_BODY_ROOT)
    stakes: list[int] = []
    for index, vote in enumerate(block.votes):
        try:
            stakes.append(validate_included_vote(store, vote, parent, header.slot))
        except InvalidVote as exc:
            raise InvalidBlock(exc.reason, f"vote {index}: {exc.detail}") from exc
    on_chain = [is_head_on_chain(store, vote, parent) for vote in block.votes]
    governance = apply_block(get_governance(store, parent.block_id, header.slot), block)
    assert parent.governance is not None  # get_governance refuses a released parent
    governance_root = commitment_after(governance, parent.governance, parent.governance_root)
    move_view(store, parent.block_id)
    try:
        undo = connect_block(
            store.view,
            block,
            governance.params,
            signatures_valid=signatures_valid,
            refunds=governance.refunds,
            governance=governance_root,
        )
    except InvalidBlock:
        move_view(store, store.head)
        raise
    # Every check passed: from here on nothing raises.
    record_applied(store, block)
    validators = parent.validator_set.with_changes(compute_stake_delta(block, undo))
    store.nodes[block_id] = BlockNode.of(
        block, parent, validators, governance, undo, stake_path(store.view), governance_root
    )
    store.tree.add_block(block_id, parent.block_id)
    store.current_slot = now
    for tx in block.transactions:
        if isinstance(tx.payload, SlashPayload):
            _slash(store, tx.payload.evidence.offender)
    for vote, stake, moves_head in zip(block.votes, stakes, on_chain, strict=True):
        # An earlier vote of this block may have finalized a checkpoint that pruned this
        # vote's target: it then conflicts with finality and is no longer counted.
        if (
            vote.target.epoch >= store.finalized_checkpoint.epoch
            and vote.target.block_id in store.nodes
        ):
            _count_vote(store, vote, stake, lmd=moves_head and vote.head in store.tree)
    _update_head(store)
    return BlockOutcome.ADDED if block_id in store.nodes else BlockOutcome.PRUNED


def check_block_header(
    store: Store, signed: SignedHeader, size: int, current_slot: Slot, *, votes: int = 0
) -> BlockNode:
    """The rules of `on_block` that a block's header, its signature and its encoded `size`
    decide (and its count of `votes`: 0 when the body is not decoded yet), in `on_block`'s
    order; the block's parent when they pass. A receiver checks them before it decodes a
    body, so that a forged or misplaced block costs it one signature check.

    Raises:
        InvalidBlock: `DUPLICATE_BLOCK`, `UNKNOWN_PARENT`, `FUTURE_SLOT`,
            `SLOT_NOT_AFTER_PARENT`, `BAD_HEIGHT`, `CONFLICTS_WITH_FINALIZED`,
            `BLOCK_TOO_LARGE`, `WRONG_PROPOSER` or `BAD_PROPOSER_SIGNATURE`.
    """
    params = store.params
    header = signed.header
    block_id = header.block_id
    if block_id in store.nodes:
        raise InvalidBlock(Reason.DUPLICATE_BLOCK, block_id.hex())
    parent = store.nodes.get(header.parent)
    if parent is None:
        if header.parent in store.pruned:
            raise InvalidBlock(Reason.CONFLICTS_WITH_FINALIZED, "parent was pruned")
        raise InvalidBlock(Reason.UNKNOWN_PARENT, header.parent.hex())
    if header.slot > current_slot:
        raise InvalidBlock(Reason.FUTURE_SLOT, f"slot {header.slot} > current {current_slot}")
    if header.slot <= parent.slot:
        raise InvalidBlock(Reason.SLOT_NOT_AFTER_PARENT, f"{header.slot} <= {parent.slot}")
    if header.height != parent.height + 1:
        raise InvalidBlock(Reason.BAD_HEIGHT, f"{header.height} != {parent.height + 1}")
    if not _extends_finalized(store, parent, header.slot):
        raise InvalidBlock(Reason.CONFLICTS_WITH_FINALIZED)
    if votes > params.max_block_votes:
        raise InvalidBlock(Reason.BLOCK_TOO_LARGE, f"{votes} votes")
    if size > params.max_block_bytes:
        raise InvalidBlock(Reason.BLOCK_TOO_LARGE, f"more than {params.max_block_bytes} bytes")
    if get_proposer(store, parent.block_id, header.slot) != header.proposer:
        raise InvalidBlock(Reason.WRONG_PROPOSER, header.proposer.hex())
    if not signed.is_signature_valid(params.chain_id):
        raise InvalidBlock(Reason.BAD_PROPOSER_SIGNATURE)
    return parent


def on_vote(store: Store, vote: Vote, current_slot: Slot) -> None:
    """Count a gossiped vote for the fork choice and for finality.

    Raises:
        InvalidVote: see `validate_vote`; the store is left unchanged.
    """
    now = max(store.current_slot, current_slot)
    stake = validate_vote(store, vote, now)
    store.current_slot = now
    _count_vote(store, vote, stake)
    _update_head(store)


def on_evidence(store: Store, evidence: Evidence) -> None:
    """Stop counting the fork-choice weight of a validator proven to have equivocated.

    Raises:
        InvalidTransaction: `BAD_EVIDENCE` when the evidence does not prove an offence.
    """
    evidence.validate(store.params.chain_id)
    _slash(store, evidence.offender)
    _update_head(store)


# -- internals: called only after every check has passed ------------------------------------


def adopt_checkpoints(store: Store, justified: Checkpoint, finalized: Checkpoint) -> bool:
    """Take back the checkpoints a node had reached before it restarted; True if they moved.

    A restarting node replays its stored blocks and each validator's latest vote, not every
    vote it ever counted, so the replay can end below the checkpoints it had persisted (votes
    that justified a checkpoint without reaching a block are gone). Those were reached under
    the rules, and what a node reported as finalized must never move back, so they are adopted
    when both blocks are known, each checkpoint is its chain's checkpoint for its epoch, and
    they extend the replay's finalized chain. Anything else leaves the store unchanged.
    """
    if justified.epoch < finalized.epoch:
        return False
    for checkpoint in (finalized, justified):
        if checkpoint.block_id not in store.nodes:
            return False
        if get_checkpoint(store, checkpoint.block_id, checkpoint.epoch) != checkpoint:
            return False
    if not _is_consistent(store, finalized, justified) or not _is_consistent(
        store, store.finalized_checkpoint, finalized
    ):
        return False
    before = (store.justified_checkpoint, store.finalized_checkpoint)
    store.finality.justified.update((finalized, justified))
    store.finality.finalized.add(finalized)
    _update_checkpoints(store, [finalized])
    _update_head(store)
    return (store.justified_checkpoint, store.finalized_checkpoint) != before


def _extends_finalized(store: Store, parent: BlockNode, slot: Slot) -> bool:
    """A child of `parent` at `slot` keeps the finalized checkpoint on its chain."""
    finalized = store.finalized_checkpoint
    if parent.block_id not in store.tree:
        return False
    start = compute_start_slot_at_epoch(store.params, finalized.epoch)
    return parent.block_id != finalized.block_id or slot > start


def _slash(store: Store, key: PublicKey) -> None:
    if key in store.slashed:
        return
    store.slashed.add(key)
    latest = store.latest_votes.get(key)
    if latest is not None and latest.weight:
        store.tree.add_weight(latest.head, -latest.weight)
        store.latest_votes[key] = LatestVote(
            slot=latest.slot, data=latest.data, head=latest.head, weight=0
        )


def _count_vote(store: Store, vote: Vote, stake: int, *, lmd: bool = True) -> None:
    """Count `vote` for its link and, with `lmd`, as its validator's latest head vote."""
    key = vote.validator
    data = encode_item(vote.data_rlp())
    latest = store.latest_votes.get(key)
    if lmd and (
        latest is None
        or vote.slot > latest.slot
        or (vote.slot == latest.slot and data < latest.data)
    ):
        if latest is not None and latest.weight:
            store.tree.add_weight(latest.head, -latest.weight)
        weight = 0 if key in store.slashed else stake
        store.tree.add_weight(vote.head, weight)
        store.latest_votes[key] = LatestVote(
            slot=vote.slot, data=data, head=vote.head, weight=weight
        )
    total = get_validator_set(store, vote.target.block_id, vote.target.epoch).total
    justified = len(store.finality.justified)
    finalized = process_link_vote(store.finality, vote.source, vote.target, key, stake, total)
    if finalized or len(store.finality.justified) != justified:
        _update_checkpoints(store, finalized)


def _is_consistent(store: Store, finalized: Checkpoint, checkpoint: Checkpoint) -> bool:
    """True when `checkpoint` and `finalized` lie on one chain of checkpoints."""
    if checkpoint.epoch >= finalized.epoch:
        return get_checkpoint(store, checkpoint.block_id, finalized.epoch) == finalized
    return get_checkpoint(store, finalized.block_id, checkpoint.epoch) == checkpoint


def _update_checkpoints(store: Store, finalized_now: list[Checkpoint]) -> None:
    """Adopt the highest-epoch checkpoint just finalized that has the finalized one on its
    chain (equal epochs: the lowest block id); record the others that conflict with it."""
    previous = store.finalized_checkpoint
    finalized = min(
        (
            cp
            for cp in finalized_now
            if cp.epoch > previous.epoch and _is_consistent(store, previous, cp)
        ),
        key=lambda cp: (-cp.epoch, cp.block_id),
        default=previous,
    )
    for checkpoint in finalized_now:
        if not _is_consistent(store, finalized, checkpoint):
            store.conflicting_finalized.append(checkpoint)
    justified = min(
        (
            cp
            for cp in store.finality.justified
            if cp.epoch >= finalized.epoch and _is_consistent(store, finalized, cp)
        ),
        key=lambda cp: (-cp.epoch, cp.block_id),
    )
    if finalized != store.finalized_checkpoint:
        _prune(store, finalized)
    store.justified_checkpoint = justified


def _prune(store: Store, finalized: Checkpoint) -> None:
    """Make `finalized` the tree root and forget every block that conflicts with it."""
    old_root = store.nodes[store.tree.root]
    root = store.nodes[finalized.block_id]
    start = compute_start_slot_at_epoch(store.params, finalized.epoch)
    early = [
        child for child in store.tree.children(root.block_id) if store.nodes[child].slot <= start
    ]
    removed = store.tree.set_root(root.block_id, early)
    if store.view.tip not in store.tree:
        move_view(store, root.block_id)
    history = root.parent
    while history is not None and history.height >= old_root.height:
        removed.discard(history.block_id)
        history.undo = None
        history = history.parent
    for block_id in removed:
        del store.nodes[block_id]
    remember_pruned(store, removed)
    store.finalized_checkpoint = finalized
    store.checkpoint_cache.clear()
    prune_finality(store.finality, store.nodes, finalized.epoch)
    for key, latest in list(store.latest_votes.items()):
        if latest.weight and latest.head not in store.tree:
            store.latest_votes[key] = LatestVote(
                slot=latest.slot, data=latest.data, head=latest.head, weight=0
            )


def _update_head(store: Store) -> None:
    head = get_head(store)
    move_view(store, head)
    store.head = head
