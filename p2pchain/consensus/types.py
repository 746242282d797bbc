"""Slots and epochs: the consensus clock, always computed from times passed in by the caller."""

from __future__ import annotations

from p2pchain.ledger.types import Epoch, Slot
from p2pchain.params import ChainParams

__all__ = [
    "GENESIS_SLOT",
    "Epoch",
    "Slot",
    "compute_epoch_at_slot",
    "compute_slot_at_time",
    "compute_start_slot_at_epoch",
]

GENESIS_SLOT = Slot(0)
"""The genesis block's slot, where a fresh store's clock starts."""


def compute_epoch_at_slot(params: ChainParams, slot: Slot) -> Epoch:
    """The epoch that `slot` belongs to."""
    return Epoch(slot // params.slots_per_epoch)


def compute_start_slot_at_epoch(params: ChainParams, epoch: Epoch) -> Slot:
    """The first slot of `epoch` (where its checkpoint sits)."""
    return Slot(epoch * params.slots_per_epoch)


def compute_slot_at_time(params: ChainParams, genesis_time_ms: int, now_ms: int) -> Slot:
    """The slot in progress at `now_ms` (slot 0 until genesis time has passed)."""
    if now_ms <= genesis_time_ms:
        return Slot(0)
    return Slot((now_ms - genesis_time_ms) // params.slot_ms)
