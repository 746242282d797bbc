"""A fork-choice store that starts at a finalized checkpoint instead of genesis.

A node that fetched the state after a finalized block (snapshot sync) has no history below
it, yet the blocks after it are checked against validator sets and proposer seeds drawn from
checkpoints up to `validator_set_lag_epochs` epochs earlier. An `Anchor` carries exactly those:
the finalized block, the governance state after it, and the stake table after each earlier
checkpoint block the next epochs draw from (`AnchorPoint`). The store built from it holds
those points as body-less ancestors of the anchor block, so every query the handlers make of
a block after the anchor answers as it would on a store replayed from genesis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Self

from p2pchain.consensus.finality import FinalityState
from p2pchain.consensus.governance import GovernanceState
from p2pchain.consensus.protoarray import ProtoArray
from p2pchain.consensus.store import BlockNode, Store, stake_path
from p2pchain.consensus.types import compute_start_slot_at_epoch
from p2pchain.consensus.validators import ValidatorSet
from p2pchain.errors import DecodeError, InvalidProof
from p2pchain.ledger.block import Block
from p2pchain.ledger.encoding import (
    RLPItem,
    decode_item,
    read_bytes,
    read_fixed,
    read_list,
    read_uint,
    uint_bytes,
)
from p2pchain.ledger.genesis import GenesisConfig
from p2pchain.ledger.snapshot import MAX_GOVERNANCE_STATE_BYTES
from p2pchain.ledger.types import BlockId, Epoch, Height, PublicKey, Slot
from p2pchain.ledger.utxo import UtxoView
from p2pchain.ledger.vote import Checkpoint
from p2pchain.params import ChainParams

MAX_ANCHOR_VALIDATORS: Final = 10_000
"""Validators one anchor point's stake table may hold (the limit of a stake-table proof)."""
MAX_GOVERNANCE_BYTES: Final = MAX_GOVERNANCE_STATE_BYTES
MAX_ANCHOR_POINTS: Final = 8
"""Anchor points one anchor (or one manifest answer) may carry: one per lag epoch at most."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AnchorPoint:
    """A checkpoint block before the anchor block and the bonded stake after it."""

    block_id: BlockId
    slot: Slot
    height: Height
    stakes: tuple[tuple[PublicKey, int], ...]
    """By key, ascending; every stake positive."""

    def to_rlp(self) -> RLPItem:
        return [
            self.block_id,
            uint_bytes(self.slot),
            uint_bytes(self.height),
            [[key, uint_bytes(stake)] for key, stake in self.stakes],
        ]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        block_id, slot, height, stakes = read_list(item, "anchor_point", length=4)
        table: list[tuple[PublicKey, int]] = []
        for entry in read_list(stakes, "anchor_point.stakes", max_length=MAX_ANCHOR_VALIDATORS):
            key, stake = read_list(entry, "anchor_point.stake", length=2)
            table.append(
                (PublicKey(read_fixed(key, "anchor_point.key", 32)), read_uint(stake, "stake"))
            )
        keys = [key for key, _ in table]
        if keys != sorted(set(keys)) or any(stake <= 0 for _, stake in table):
            raise DecodeError("anchor_point.stakes: not ascending, unique and positive")
        return cls(
            block_id=BlockId(read_fixed(block_id, "anchor_point.block_id", 32)),
            slot=Slot(read_uint(slot, "anchor_point.slot")),
            height=Height(read_uint(height, "anchor_point.height")),
            stakes=tuple(table),
        )

    def validator_set(self) -> ValidatorSet:
        return ValidatorSet.from_stakes(dict(self.stakes))


@dataclass(frozen=True, slots=True, kw_only=True)
class Anchor:
    """Where a store without history starts: a finalized checkpoint's block, the governance
    state after it (`GovernanceState.to_rlp`, encoded) and the earlier checkpoints the next
    epochs draw validators from, oldest first (`anchor_points_needed`)."""

    checkpoint: Checkpoint
    block: Block
    governance: bytes
    history: tuple[AnchorPoint, ...]

    def to_rlp(self) -> RLPItem:
        return [
            self.checkpoint.to_rlp(),
            self.block.encoded,
            self.governance,
            [point.to_rlp() for point in self.history],
        ]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        checkpoint, block, governance, history = read_list(item, "anchor", length=4)
        return cls(
            checkpoint=Checkpoint.from_rlp(checkpoint),
            block=Block.from_bytes(read_bytes(block, "anchor.block", 1 << 26)),
            governance=read_bytes(governance, "anchor.governance", MAX_GOVERNANCE_BYTES),
            history=tuple(
                AnchorPoint.from_rlp(point)
                for point in read_list(history, "anchor.history", max_length=MAX_ANCHOR_POINTS)
            ),
        )


def anchor_epochs(params: ChainParams, epoch: Epoch) -> tuple[Epoch, ...]:
    """The epochs before `epoch` whose checkpoints give the validator sets and seeds of the
    first epochs after a store anchored at `epoch`'s checkpoint, oldest first."""
    lag = params.validator_set_lag_epochs
    return tuple(Epoch(e) for e in range(max(epoch - lag, 0), epoch))


def check_anchor_history(params: ChainParams, anchor: Anchor) -> None:
    """The points must be distinct checkpoint blocks below the anchor block, in chain order,
    at most one per needed epoch (the others are the anchor block itself).

    Raises:
        InvalidProof: they are not.
    """
    header = anchor.block.header
    if header.block_id != anchor.checkpoint.block_id:
        raise InvalidProof("the anchor block is not its checkpoint's block")
    if header.slot > compute_start_slot_at_epoch(params, anchor.checkpoint.epoch):
        raise InvalidProof("the anchor block is after its checkpoint epoch's first slot")
    needed = anchor_epochs(params, anchor.checkpoint.epoch)
    if len(anchor.history) > len(needed):
        raise InvalidProof(f"{len(anchor.history)} anchor points for {len(needed)} epochs")
    above = (header.slot, header.height)
    for point in reversed(anchor.history):
        if not (point.slot < above[0] and point.height < above[1]):
            raise InvalidProof("anchor points are not in chain order below the anchor block")
        above = (point.slot, point.height)


def get_anchored_store(
    params: ChainParams,
    genesis_config: GenesisConfig,
    genesis_id: BlockId,
    anchor: Anchor,
    view: UtxoView,
) -> Store:
    """A store whose finalized and justified checkpoint is `anchor.checkpoint`, holding the
    state `view` after the anchor block (the store takes the view over).

    The anchor must come verified: the checkpoint final (a finality certificate), the points
    the chain's checkpoint blocks with proven stake tables. What is checked here is that the
    pieces fit each other.

    Raises:
        InvalidProof: the view is not the anchor block's state (tip or state root), the
            governance state does not decode, or the points are out of order.
        DecodeError: the governance state is malformed.
    """
    check_anchor_history(params, anchor)
    block = anchor.block
    if view.tip != block.block_id or view.height != block.header.height:
        raise InvalidProof("the state is not the anchor block's")
    if view.state_root() != block.header.state_root:
        raise InvalidProof("the state does not have the anchor block's state root")
    governance = GovernanceState.from_rlp(decode_item(anchor.governance), params)
    if view.governance_value != governance.commitment():
        raise InvalidProof("the governance state is not the one the state root commits to")
    parent: BlockNode | None = None
    for point in anchor.history:
        parent = BlockNode(
            point.block_id,
            point.slot,
            point.height,
            parent,
            point.validator_set(),
            None,
            None,
            None,
        )
    root = BlockNode.of(
        block,
        parent,
        ValidatorSet.from_stakes(view.bonded_stake()),
        governance,
        None,
        stake_path(view),
    )
    checkpoint = anchor.checkpoint
    nodes = {root.block_id: root}
    node = parent
    while node is not None:
        nodes[node.block_id] = node
        node = node.parent
    return Store(
        params=params,
        genesis_time_ms=genesis_config.genesis_time_ms,
        genesis_id=genesis_id,
        current_slot=block.header.slot,
        nodes=nodes,
        tree=ProtoArray(root.block_id),
        finality=FinalityState.at_genesis(checkpoint),
        finalized_checkpoint=checkpoint,
        justified_checkpoint=checkpoint,
        view=view,
        head=root.block_id,
        reported_head=root.block_id,
        anchor_height=block.header.height,
    )
