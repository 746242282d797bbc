"""Chain parameters: everything two nodes must agree on, as one frozen value.

No module-level mutable state: every function that needs a parameter takes a `ChainParams`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
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

MAX_PROPOSAL_CHANGES: Final = 8
"""The most parameter changes one governance proposal carries."""

MAX_FEE_RATE: Final = 1_000_000
"""The highest `min_fee_rate` (base units per byte) governance may set."""

GOVERNABLE: Final[tuple[str, ...]] = (
    "block_reward",
    "min_fee_rate",
    "reward_maturity",
    "unbonding_epochs",
    "max_block_txs",
)
"""The parameters a governance proposal may change (ranges in `governable_range`). The others
stay fixed for the life of a chain: time, identity, wire-format bounds and governance itself."""


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
    # fees
    min_fee_rate: int = 0
    """Base units of native fee per encoded byte that every transaction in a block pays."""
    # governance (docs/governance.md)
    gov_deposit: int = 10 * COIN
    """Native units a proposal locks away; refunded when the vote reaches quorum, else burned."""
    gov_voting_epochs: int = 2
    """Length of a voting window, which opens in the epoch after the proposal's block."""
    gov_max_activation_delay: int = 64
    """The latest a change may activate, in epochs after its voting window ends."""
    gov_quorum_bps: int = 4_000
    """Share of the snapshot stake (basis points) that must vote, abstentions included."""
    gov_threshold_bps: int = 5_000
    """Share of the yes-plus-no stake (basis points) that yes must exceed to pass."""
    gov_max_proposals: int = 16
    """Proposals in flight at once (voting, or passed and waiting to activate)."""

    def __post_init__(self) -> None:
        if not 0 <= self.chain_id < 2**64:
            raise ConfigError("chain_id must fit in 64 bits")
        if self.slots_per_epoch < 1 or self.slot_ms < 1:
            raise ConfigError("slot_ms and slots_per_epoch must be positive")
        if not 0 < self.block_reward <= self.max_money:
            raise ConfigError("block_reward must be in (0, max_money]")
        if not 1 <= self.max_asset_name_bytes <= MAX_ASSET_NAME_BYTES:
            raise ConfigError(f"max_asset_name_bytes must be 1..{MAX_ASSET_NAME_BYTES}")
        if not 0 <= self.min_fee_rate <= MAX_FEE_RATE:
            raise ConfigError(f"min_fee_rate must be 0..{MAX_FEE_RATE}")
        if not 0 < self.gov_deposit <= self.max_money:
            raise ConfigError("gov_deposit must be in (0, max_money]")
        if self.gov_voting_epochs < 1 or self.gov_max_activation_delay < 1:
            raise ConfigError("gov_voting_epochs and gov_max_activation_delay must be positive")
        if not 0 < self.gov_quorum_bps <= 10_000 or not 0 < self.gov_threshold_bps < 10_000:
            raise ConfigError("gov_quorum_bps must be 1..10000, gov_threshold_bps 1..9999")
        if not 1 <= self.gov_max_proposals <= 1_024:
            raise ConfigError("gov_max_proposals must be 1..1024")

    def with_changes(self, changes: Iterable[tuple[str, int]]) -> ChainParams:
        """These parameters with governable ones changed (what an enacted proposal does).

        Raises:
            ConfigError: a name is not governable or a value is out of its range.
        """
        values: dict[str, int] = {}
        for name, value in changes:
            bounds = self.governable_range(name)
            if bounds is None or not bounds[0] <= value <= bounds[1]:
                raise ConfigError(f"{name} = {value} is not a governable value")
            values[name] = value
        return replace(self, **values)  # type: ignore[arg-type]  # names checked above

    def governable_range(self, name: str) -> tuple[int, int] | None:
        """The values a proposal may give parameter `name` on this chain; None when `name` is
        not governable. The ranges do not depend on the current values, so a change can always
        be undone by another."""
        match name:
            case "block_reward":
                return 1, self.max_money
            case "min_fee_rate":
                return 0, MAX_FEE_RATE
            case "reward_maturity":
                return 1, 10_000
            case "unbonding_epochs":
                return 1, 1_024
            case "max_block_txs":
                return 2, 100_000
        return None
