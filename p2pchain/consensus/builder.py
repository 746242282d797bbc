"""Block and vote production for validators: what a proposer and a voter sign.

Both take the store and the validator's key, and return objects that the store's own handlers
accept: `build_block` output passes `on_block`, `make_vote` output passes `on_vote`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from p2pchain.consensus.forkchoice import get_head
from p2pchain.consensus.governance import GovernanceDraft, commitment_after
from p2pchain.consensus.store import (
    Store,
    get_checkpoint,
    get_governance,
    get_proposer,
    move_view,
)
from p2pchain.consensus.types import compute_epoch_at_slot
from p2pchain.consensus.votes import validate_included_vote
from p2pchain.errors import InvalidBlock, InvalidTransaction, InvalidVote, Reason
from p2pchain.ledger.address import address_of
from p2pchain.ledger.block import Block, compute_body_root
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.encoding import encode
from p2pchain.ledger.evidence import Evidence
from p2pchain.ledger.header import BlockHeader, header_signing_message
from p2pchain.ledger.reward import reward_transaction
from p2pchain.ledger.tx import SlashPayload, Transaction, TxKind
from p2pchain.ledger.types import Amount, BlockId, Epoch, Height, Slot
from p2pchain.ledger.utxo import TxUndo
from p2pchain.ledger.validation import BlockContext, SignatureCheck, validate_transaction
from p2pchain.ledger.vote import Checkpoint, Vote

BLOCK_OVERHEAD_BYTES = 1_024
"""Room kept for the header, signature, reward transaction and list prefixes."""

REFUND_BYTES = 80
"""Room kept per governance refund the reward carries (one output: 70 bytes encoded)."""


def build_block(
    store: Store,
    parent_id: BlockId,
    slot: Slot,
    proposer_key: SecretKey,
    *,
    transactions: Iterable[Transaction] = (),
    votes: Iterable[Vote] = (),
    evidence: Iterable[Evidence] = (),
    signatures_valid: SignatureCheck | None = None,
) -> Block:
    """A signed block on `parent_id` at `slot` that `on_block` accepts.

    Evidence becomes SLASH transactions, placed first; then candidate transactions are taken in
    the given order (dependants after what they spend), skipping any that do not validate on
    the state built so far or would break the size limits. Votes that are not valid inside this
    block are skipped too. The reward pays ``block_reward + fees`` to the proposer's address,
    locked until ``height + reward_maturity``. `signatures_valid` checks the candidates'
    witnesses (default: verify each); a node passes the cache its pool filled, so that building
    a block does not verify again what admission verified.

    Raises:
        InvalidBlock: `UNKNOWN_PARENT`, `SLOT_NOT_AFTER_PARENT` or `WRONG_PROPOSER` when this
            key may not build here.
    """
    parent = store.nodes.get(parent_id)
    if parent is None or parent_id not in store.tree:
        raise InvalidBlock(Reason.UNKNOWN_PARENT, parent_id.hex())
    if slot <= parent.slot:
        raise InvalidBlock(Reason.SLOT_NOT_AFTER_PARENT, f"{slot} <= {parent.slot}")
    proposer = proposer_key.public_key
    if get_proposer(store, parent_id, slot) != proposer:
        raise InvalidBlock(Reason.WRONG_PROPOSER, f"slot {slot} is not {proposer.hex()}'s")
    height = Height(parent.height + 1)
    governance = get_governance(store, parent_id, slot)
    params = governance.params
    refunds = governance.refunds
    budget = params.max_block_bytes - BLOCK_OVERHEAD_BYTES - REFUND_BYTES * len(refunds)
    slashes = [Transaction(kind=TxKind.SLASH, payload=SlashPayload(evidence=e)) for e in evidence]
    draft = GovernanceDraft(governance)
    chosen, fees, used = _select_transactions(
        store,
        draft,
        parent_id,
        BlockContext(height=height, slot=slot),
        [*slashes, *transactions],
        budget,
        signatures_valid,
    )
    included: list[Vote] = []
    seen_votes: set[bytes] = set()
    for vote in votes:
        if len(included) >= params.max_block_votes:
            break
        encoded = encode(vote)
        if encoded in seen_votes or used + len(encoded) > budget:
            continue
        try:
            validate_included_vote(store, vote, parent, slot)
        except InvalidVote:
            continue
        seen_votes.add(encoded)
        included.append(vote)
        used += len(encoded)
    reward = reward_transaction(
        height=height,
        amount=Amount(params.block_reward + fees),
        address=address_of(proposer),
        params=params,
        refunds=refunds,
    )
    body = (reward, *chosen)
    assert parent.governance is not None  # get_governance refuses a released parent
    governance_root = commitment_after(draft.finish(), parent.governance, parent.governance_root)
    state_root = move_view(store, parent_id).root_after(body, governance=governance_root)
    move_view(store, store.head)
    header = BlockHeader(
        parent=parent_id,
        height=height,
        slot=slot,
        proposer=proposer,
        body_root=compute_body_root(body, tuple(included)),
        state_root=state_root,
    )
    signature = proposer_key.sign(header_signing_message(params.chain_id, header.block_id))
    return Block(header=header, signature=signature, transactions=body, votes=tuple(included))


def _select_transactions(
    store: Store,
    governance: GovernanceDraft,
    parent_id: BlockId,
    context: BlockContext,
    candidates: list[Transaction],
    budget: int,
    signatures_valid: SignatureCheck | None,
) -> tuple[list[Transaction], int, int]:
    """Greedy in-order selection on the parent's state (ledger and governance); the ledger
    state is restored afterwards."""
    params = governance.state.params
    view = move_view(store, parent_id)
    applied: list[tuple[Transaction, TxUndo]] = []
    txids: set[bytes] = set()
    fees = used = 0
    try:
        for tx in candidates:
            if len(applied) + 1 >= params.max_block_txs:
                break
            txid = tx.txid
            if txid in txids or used + tx.size > budget:
                continue
            try:
                governance.check(tx)
                fee = validate_transaction(
                    tx, view, params, context, signatures_valid=signatures_valid
                )
            except InvalidTransaction:
                continue
            if params.block_reward + fees + fee > params.max_money:
                continue
            governance.take(tx, txid)
            applied.append((tx, view.apply_transaction(tx, txid)))
            txids.add(txid)
            fees += fee
            used += tx.size
    finally:
        for tx, undo in reversed(applied):
            view.undo_transaction(tx, undo)
        move_view(store, store.head)
    return [tx for tx, _ in applied], fees, used


def get_vote_source(store: Store, head: BlockId, target_epoch: Epoch) -> Checkpoint:
    """The source an honest vote uses: the latest justified checkpoint before `target_epoch`
    on `head`'s chain (the genesis checkpoint for epoch-0 votes)."""
    if target_epoch == 0:
        return get_checkpoint(store, head, Epoch(0))
    floor = store.finalized_checkpoint.epoch
    justified = [cp for cp in store.finality.justified if cp.epoch < target_epoch]
    recent = [cp for cp in justified if cp.epoch >= floor]
    for candidates in (recent, justified):
        for checkpoint in sorted(candidates, key=lambda cp: (-cp.epoch, cp.block_id)):
            if get_checkpoint(store, head, checkpoint.epoch) == checkpoint:
                return checkpoint
    return get_checkpoint(store, head, Epoch(0))


def make_vote(store: Store, key: SecretKey, slot: Slot, *, head: BlockId | None = None) -> Vote:
    """A signed vote for `slot`: the fork-choice head (or `head`), with honest source/target."""
    head_id = get_head(store) if head is None else head
    epoch = compute_epoch_at_slot(store.params, slot)
    vote = Vote(
        slot=slot,
        head=head_id,
        source=get_vote_source(store, head_id, epoch),
        target=get_checkpoint(store, head_id, epoch),
        validator=key.public_key,
        signature=bytes(64),
    )
    return replace(vote, signature=key.sign(vote.signing_message(store.params.chain_id)))
