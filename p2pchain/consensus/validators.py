"""Validator sets and the proposer schedule: pure integer functions of stake and a seed.

The set for epoch ``e`` is the bonded stake after the checkpoint block of epoch ``e - 2`` on the
branch in question, and the seed for epoch ``e`` hashes that same block's id. A proposer of
epoch ``e - 1`` or ``e`` therefore cannot change who proposes in epoch ``e``: both inputs were
fixed at least a full epoch before ``e`` starts. (The proposer of the checkpoint block itself can
still try different bodies to bias the draw two epochs ahead; there is no VRF/RANDAO mix.)
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from p2pchain.ledger.block import Block
from p2pchain.ledger.crypto import tagged_hash
from p2pchain.ledger.tx import LockKind
from p2pchain.ledger.types import BlockId, Epoch, Hash32, PublicKey, Slot
from p2pchain.ledger.utxo import UndoData
from p2pchain.params import ChainParams

_SEED_TAG = b"p2pchain/seed"
_PROPOSER_TAG = b"p2pchain/proposer"
_DUTY_TAG = b"p2pchain/vote-duty"


@dataclass(frozen=True, slots=True, eq=False)
class ValidatorSet:
    """Validators and their bonded stake, in ascending key order (the order draws walk)."""

    stakes: Mapping[PublicKey, int]
    keys: tuple[PublicKey, ...]
    cumulative: tuple[int, ...]
    """``cumulative[i]`` is the stake of ``keys[0..i]`` inclusive."""

    @classmethod
    def from_stakes(cls, stakes: Mapping[PublicKey, int]) -> ValidatorSet:
        """Build the set from a stake map; keys with no stake are left out."""
        keys = tuple(sorted(key for key, stake in stakes.items() if stake > 0))
        cumulative: list[int] = []
        running = 0
        for key in keys:
            running += stakes[key]
            cumulative.append(running)
        frozen = MappingProxyType({key: stakes[key] for key in keys})
        return cls(stakes=frozen, keys=keys, cumulative=tuple(cumulative))

    @property
    def total(self) -> int:
        """Total bonded stake: the denominator of every 2/3 threshold."""
        return self.cumulative[-1] if self.cumulative else 0

    def stake_of(self, key: PublicKey) -> int:
        """Stake of `key`, 0 when it is not a validator."""
        return self.stakes.get(key, 0)

    def __contains__(self, key: object) -> bool:
        return key in self.stakes

    def __len__(self) -> int:
        return len(self.keys)

    def with_changes(self, delta: Mapping[PublicKey, int]) -> ValidatorSet:
        """The set after adding `delta` to stakes; `self` when nothing changes."""
        if not any(delta.values()):
            return self
        stakes = dict(self.stakes)
        for key, change in delta.items():
            stakes[key] = stakes.get(key, 0) + change
        return ValidatorSet.from_stakes(stakes)


def compute_stake_delta(block: Block, undo: UndoData) -> dict[PublicKey, int]:
    """How a connected block changed bonded stake: new STAKE outputs minus spent ones.

    Spent outputs come from the undo data, so unbonding and slashing burns are both counted.
    """
    delta: dict[PublicKey, int] = {}
    for tx, tx_undo in zip(block.transactions, undo.txs, strict=True):
        for output in tx.outputs:
            if output.lock.kind is LockKind.STAKE:
                key = PublicKey(output.lock.key)
                delta[key] = delta.get(key, 0) + output.amount
        for _, spent in tx_undo.spent:
            if spent.lock.kind is LockKind.STAKE:
                key = PublicKey(spent.lock.key)
                delta[key] = delta.get(key, 0) - spent.amount
    return delta


def compute_seed(epoch: Epoch, checkpoint_block: BlockId) -> Hash32:
    """Seed of `epoch`: tag, epoch (8 bytes big-endian), id of the epoch-2 checkpoint block."""
    return tagged_hash(_SEED_TAG, epoch.to_bytes(8, "big") + checkpoint_block)


def compute_proposer(validators: ValidatorSet, seed: bytes, slot: Slot) -> PublicKey:
    """Stake-weighted draw for `slot`: the validator whose cumulative-stake interval holds r.

    ``r = sha256(tag || seed || slot) mod total``; the modulo bias is below 2**-190 because the
    total stake is below 2**64.

    Raises:
        ValueError: when the set has no stake (the chain cannot continue).
    """
    if not validators.total:
        raise ValueError("empty validator set")
    digest = tagged_hash(_PROPOSER_TAG, seed + slot.to_bytes(8, "big"))
    draw = int.from_bytes(digest, "big") % validators.total
    return validators.keys[bisect_right(validators.cumulative, draw)]


def compute_vote_slot(params: ChainParams, key: PublicKey, epoch: Epoch) -> Slot:
    """The slot of `epoch` in which validator `key` votes (its duty; one vote per epoch).

    A second, different vote for the same target epoch is slashable (a double vote), so honest
    validators vote once per epoch; spreading the duties over the slots keeps the fork choice fed
    with fresh votes in every slot.
    """
    digest = tagged_hash(_DUTY_TAG, key + epoch.to_bytes(8, "big"))
    offset = int.from_bytes(digest[:8], "big") % params.slots_per_epoch
    return Slot(epoch * params.slots_per_epoch + offset)


def get_duties(params: ChainParams, keys: Iterable[PublicKey], slot: Slot) -> list[PublicKey]:
    """The validators among `keys` whose vote duty falls on `slot`, in key order."""
    epoch = Epoch(slot // params.slots_per_epoch)
    return sorted(key for key in keys if compute_vote_slot(params, key, epoch) == slot)
