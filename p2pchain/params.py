"""Chain parameters: everything two nodes must agree on, as one frozen value.

No module-level mutable state: every function that needs a parameter takes a `ChainParams`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from p2pchain.errors import ConfigError

NATIVE_ASSET: Final = bytes(32)
"""Asset id of the native coin: 32 zero bytes (no issue transaction can derive it)."""

COIN: Final = 100_000_000
"""Base units per native coin."""

DEFAULT_MAX_BLOCK_BYTES: Final = 2_000_000
"""The default `ChainParams.max_block_bytes`; the gossip bound on one message derives from it."""

MAX_ASSET_NAME_BYTES: Final = 32
"""The longest asset name the wire format decodes; `ChainParams.max_asset_name_bytes` may only
lower it."""

MAX_BENEFICIARY_BYTES: Final = 64
"""The longest beneficiary a retirement record carries (UTF-8 by convention)."""

MAX_PURPOSE_BYTES: Final = 256
"""The longest purpose a retirement record carries (UTF-8 by convention)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainParams:
    """Consensus parameters of one chain. Changing any of them makes a different chain."""

    chain_id: int = 1337
    address_prefix: str = "dp2p"
    # time
    slot_ms: int = 2_000
    slots_per_epoch: int = 8
    # money
    max_money: int = 21_000_000 * COIN
    block_reward: int = 5 * COIN
    reward_maturity: int = 10
    # staking
    min_stake: int = 1 * COIN
    unbonding_epochs: int = 4
    validator_set_lag_epochs: int = 2
    # size limits (bytes and counts an attacker controls)
    max_tx_bytes: int = 100_000
    max_tx_inputs: int = 1_000
    max_tx_outputs: int = 1_000
    max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES
    max_block_txs: int = 10_000
    max_block_votes: int = 4_096
    max_asset_name_bytes: int = MAX_ASSET_NAME_BYTES
    native_asset: bytes = field(default=NATIVE_ASSET)

    def __post_init__(self) -> None:
        if not 0 <= self.chain_id < 2**64:
            raise ConfigError("chain_id must fit in 64 bits")
        if self.slots_per_epoch < 1 or self.slot_ms < 1:
            raise ConfigError("slot_ms and slots_per_epoch must be positive")
        if not 0 < self.block_reward <= self.max_money:
            raise ConfigError("block_reward must be in (0, max_money]")
        if not 1 <= self.max_asset_name_bytes <= MAX_ASSET_NAME_BYTES:
            raise ConfigError(f"max_asset_name_bytes must be 1..{MAX_ASSET_NAME_BYTES}")
