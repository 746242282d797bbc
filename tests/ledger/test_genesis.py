"""Genesis: a deterministic block from a config, and the config checks."""

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.errors import ConfigError
from p2pchain.ledger.address import address_of
from p2pchain.ledger.commitment import GOVERNANCE_KEY, genesis_governance_value
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.genesis import (
    Allocation,
    GenesisConfig,
    GenesisValidator,
    genesis_state,
    self_bonded_genesis,
)
from p2pchain.ledger.tx import Lock, LockKind
from p2pchain.ledger.types import Address, AssetId, Hash32, PublicKey
from p2pchain.params import COIN, ChainParams
from p2pchain.testing import addresses

PARAMS = ChainParams()
VALIDATOR = SecretKey.from_entropy(b"genesis-test-validator-entropy-32")
OWNER = Address(b"\x11" * 20)
GENESIS_ID = "cb45520783174d14ace020a404b49ad9fc2cff9b88381e1cebeba04f77d53272"
"""Since the state root commits to the governance state (its genesis leaf included); before
that, the same config gave ffc0f600…18156, which the header with the root of the outputs alone
still gives (`test_the_genesis_root_commits_to_the_genesis_governance_leaf`)."""
GENESIS_ID_WITHOUT_GOVERNANCE = "ffc0f60060ac18e6e00aad7414fa37e4c10ad71ef8a9e95fe307844030c18156"


def config(**changes: object) -> GenesisConfig:
    base = GenesisConfig(
        chain_id=PARAMS.chain_id,
        genesis_time_ms=1_700_000_000_000,
        allocations=(Allocation(address=Address(b"\x22" * 20), amount=50 * COIN),),
        validators=(GenesisValidator(key=VALIDATOR.public_key, owner=OWNER, stake=10 * COIN),),
    )
    return replace(base, **changes)


def test_genesis_hash_is_pinned() -> None:
    """A fixed vector: any change to the encoding or the genesis layout changes this hash."""
    block, _ = genesis_state(config(), PARAMS)
    assert block.block_id.hex() == GENESIS_ID


def test_the_genesis_root_commits_to_the_genesis_governance_leaf() -> None:
    """The genesis state holds the governance leaf of the state every chain starts from; the
    block without it is the one of before the leaf existed, and another leaf is another
    genesis."""
    block, view = genesis_state(config(), PARAMS)
    assert view.governance_value == genesis_governance_value(PARAMS)
    assert view.commitment.top.get(GOVERNANCE_KEY) == genesis_governance_value(PARAMS)
    bare = view.copy()
    bare.set_governance(None)
    without = replace(block.header, state_root=bare.state_root())
    assert without.block_id.hex() == GENESIS_ID_WITHOUT_GOVERNANCE
    other, other_view = genesis_state(config(), PARAMS, governance=Hash32(b"\x01" * 32))
    assert other.block_id != block.block_id
    assert other_view.governance_value == b"\x01" * 32
    assert genesis_governance_value(PARAMS) != genesis_governance_value(
        replace(PARAMS, block_reward=PARAMS.block_reward + 1)
    )
    assert genesis_governance_value(PARAMS) == genesis_governance_value(
        replace(PARAMS, slot_ms=PARAMS.slot_ms + 1)  # not governable: not in the leaf
    )


def test_genesis_view_holds_allocations_and_bonded_stake() -> None:
    block, view = genesis_state(config(), PARAMS)
    native = AssetId(PARAMS.native_asset)
    assert view.tip == block.block_id
    assert view.height == 0
    assert view.balance(Address(b"\x22" * 20), native) == 50 * COIN
    assert view.bonded_stake() == {VALIDATOR.public_key: 10 * COIN}
    ((_, stake),) = view.utxos_of(OWNER)
    assert stake.lock == Lock(kind=LockKind.STAKE, key=VALIDATOR.public_key)
    assert block.has_valid_body_root()


def test_a_self_bonded_validator_owns_its_stake() -> None:
    """Each key's stake is bonded to it and spendable (unbondable) by the key's own address."""
    other = SecretKey.from_entropy(b"genesis-test-second-validator-32")
    genesis = self_bonded_genesis(
        chain_id=PARAMS.chain_id,
        genesis_time_ms=0,
        stakes=[(VALIDATOR.public_key, 10 * COIN), (other.public_key, 20 * COIN)],
    )
    _, view = genesis_state(genesis, PARAMS)
    assert view.bonded_stake() == {VALIDATOR.public_key: 10 * COIN, other.public_key: 20 * COIN}
    for key in (VALIDATOR, other):
        ((_, stake),) = view.utxos_of(address_of(key.public_key))
        assert stake.lock == Lock(kind=LockKind.STAKE, key=key.public_key)


@given(time_ms=st.integers(min_value=0, max_value=2**64 - 1), address=addresses())
def test_genesis_hash_commits_to_the_config(time_ms: int, address: Address) -> None:
    reference, _ = genesis_state(config(), PARAMS)
    changed = config(
        genesis_time_ms=time_ms,
        allocations=(Allocation(address=address, amount=50 * COIN),),
    )
    block, _ = genesis_state(changed, PARAMS)
    assert (block.block_id == reference.block_id) == (changed == config())
    again, _ = genesis_state(changed, PARAMS)
    assert again == block


def test_genesis_hash_commits_to_the_chain_id() -> None:
    other = ChainParams(chain_id=PARAMS.chain_id + 1)
    first, _ = genesis_state(config(), PARAMS)
    second, _ = genesis_state(config(chain_id=other.chain_id), other)
    assert first.block_id != second.block_id


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"chain_id": 1}, "chain id"),
        ({"validators": ()}, "at least one validator"),
        ({"allocations": (Allocation(address=OWNER, amount=0),)}, "allocation amount"),
        (
            {"validators": (GenesisValidator(key=VALIDATOR.public_key, owner=OWNER, stake=1),)},
            "stake",
        ),
        (
            {"validators": (GenesisValidator(key=PublicKey(bytes(32)), owner=OWNER, stake=COIN),)},
            "not on the curve",
        ),
        (
            {"allocations": (Allocation(address=OWNER, amount=PARAMS.max_money),)},
            "exceeds max_money",
        ),
    ],
)
def test_bad_configs_are_refused(changes: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        genesis_state(config(**changes), PARAMS)
