"""Genesis: the initial allocations and bonded validators, as a deterministic first block.

The genesis block's `parent` field holds the hash of the encoded `GenesisConfig`, so its id (the
genesis hash that peers compare in the handshake) commits to the chain id, the start time and
every allocation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from p2pchain.errors import ConfigError
from p2pchain.ledger.address import address_of
from p2pchain.ledger.block import EMPTY_BLOCK_SIGNATURE, Block, compute_body_root
from p2pchain.ledger.commitment import genesis_governance_value
from p2pchain.ledger.crypto import is_valid_public_key, tagged_hash
from p2pchain.ledger.encoding import (
    RLPItem,
    encode,
    read_fixed,
    read_list,
    read_uint,
    uint_bytes,
)
from p2pchain.ledger.header import BlockHeader
from p2pchain.ledger.tx import NO_LOCK, Lock, LockKind, RewardPayload, Transaction, TxKind, TxOutput
from p2pchain.ledger.types import Address, Amount, AssetId, BlockId, Hash32, Height, PublicKey, Slot
from p2pchain.ledger.utxo import UtxoView
from p2pchain.params import ChainParams

_GENESIS_TAG = b"p2pchain/genesis"
NO_PROPOSER = PublicKey(bytes(32))


@dataclass(frozen=True, slots=True, kw_only=True)
class Allocation:
    """Native coins given to `address` at genesis."""

    address: Address
    amount: Amount

    def to_rlp(self) -> RLPItem:
        return [self.address, uint_bytes(self.amount)]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        address, amount = read_list(item, "allocation", length=2)
        return cls(
            address=Address(read_fixed(address, "allocation.address", 20)),
            amount=Amount(read_uint(amount, "allocation.amount")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class GenesisValidator:
    """A validator bonded at genesis: its signing key, the owner who may unbond, the stake."""

    key: PublicKey
    owner: Address
    stake: Amount

    def to_rlp(self) -> RLPItem:
        return [self.key, self.owner, uint_bytes(self.stake)]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        key, owner, stake = read_list(item, "validator", length=3)
        return cls(
            key=PublicKey(read_fixed(key, "validator.key", 32)),
            owner=Address(read_fixed(owner, "validator.owner", 20)),
            stake=Amount(read_uint(stake, "validator.stake")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class GenesisConfig:
    """Everything needed to build the same genesis block on every node."""

    chain_id: int
    genesis_time_ms: int
    allocations: tuple[Allocation, ...] = ()
    validators: tuple[GenesisValidator, ...] = ()

    def to_rlp(self) -> RLPItem:
        return [
            uint_bytes(self.chain_id),
            uint_bytes(self.genesis_time_ms),
            [allocation.to_rlp() for allocation in self.allocations],
            [validator.to_rlp() for validator in self.validators],
        ]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        chain_id, time_ms, allocations, validators = read_list(item, "genesis", length=4)
        return cls(
            chain_id=read_uint(chain_id, "genesis.chain_id"),
            genesis_time_ms=read_uint(time_ms, "genesis.genesis_time_ms"),
            allocations=tuple(Allocation.from_rlp(x) for x in read_list(allocations, "allocs")),
            validators=tuple(GenesisValidator.from_rlp(x) for x in read_list(validators, "vals")),
        )


def self_bonded_genesis(
    *,
    chain_id: int,
    genesis_time_ms: int,
    stakes: Sequence[tuple[PublicKey, int]],
    allocations: Sequence[Allocation] = (),
) -> GenesisConfig:
    """A genesis bonding each validator key with its stake, owned by the key's own address
    (so the validator itself may unbond): how testnets and simulations start a chain."""
    return GenesisConfig(
        chain_id=chain_id,
        genesis_time_ms=genesis_time_ms,
        allocations=tuple(allocations),
        validators=tuple(
            GenesisValidator(key=key, owner=address_of(key), stake=Amount(stake))
            for key, stake in stakes
        ),
    )


def _check_config(config: GenesisConfig, params: ChainParams) -> None:
    if config.chain_id != params.chain_id:
        raise ConfigError(f"genesis chain id {config.chain_id} != params {params.chain_id}")
    if not config.validators:
        raise ConfigError("genesis needs at least one validator")
    total = 0
    for allocation in config.allocations:
        if not 0 < allocation.amount <= params.max_money:
            raise ConfigError(f"allocation amount {allocation.amount} out of range")
        total += allocation.amount
    for validator in config.validators:
        if validator.stake < params.min_stake or validator.stake > params.max_money:
            raise ConfigError(f"validator stake {validator.stake} out of range")
        if not is_valid_public_key(validator.key):
            raise ConfigError(f"validator key {validator.key.hex()} is not on the curve")
        total += validator.stake
    if total > params.max_money:
        raise ConfigError(f"genesis supply {total} exceeds max_money {params.max_money}")


def genesis_block(config: GenesisConfig, params: ChainParams) -> Block:
    """The deterministic block at height 0 (unsigned; never validated, only applied)."""
    return genesis_state(config, params)[0]


def genesis_state(
    config: GenesisConfig, params: ChainParams, *, governance: Hash32 | None = None
) -> tuple[Block, UtxoView]:
    """The genesis block and the UTXO view right after it (whose root its header carries).

    `governance` is the governance leaf of the genesis state; by default the value of the
    state every chain starts from (`genesis_governance_value`). The fork-choice store passes
    the hash of its own `GovernanceState.at_genesis`, which is the same value.
    """
    _check_config(config, params)
    native = AssetId(params.native_asset)
    outputs = [
        TxOutput(asset=native, amount=a.amount, address=a.address, lock=NO_LOCK)
        for a in config.allocations
    ] + [
        TxOutput(
            asset=native,
            amount=v.stake,
            address=v.owner,
            lock=Lock(kind=LockKind.STAKE, key=v.key),
        )
        for v in config.validators
    ]
    tx = Transaction(
        kind=TxKind.REWARD, outputs=tuple(outputs), payload=RewardPayload(height=Height(0))
    )
    view = UtxoView()
    undo = view.apply_transaction(tx)
    view.set_governance(genesis_governance_value(params) if governance is None else governance)
    header = BlockHeader(
        parent=BlockId(tagged_hash(_GENESIS_TAG, encode(config))),
        height=Height(0),
        slot=Slot(0),
        proposer=NO_PROPOSER,
        body_root=compute_body_root((tx,), ()),
        state_root=view.state_root(),
    )
    block = Block(header=header, signature=EMPTY_BLOCK_SIGNATURE, transactions=(tx,))
    view.finish_block(block, [undo], governance_before=None)
    return block, view
