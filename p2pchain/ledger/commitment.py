"""The state commitment: one root over every unspent output, asset record, bonded stake and the
governance state.

A `UtxoView` keeps one `StateCommitment` in step with its contents, so the root after a block
costs what the block changed, not the size of the state. Two levels of `Trie`:

- the *top* trie holds one leaf per address that owns outputs (its value is the root of that
  address's *account* trie, one leaf per output), one leaf per issued asset, one leaf whose
  value is the root of the *validator* trie (one leaf per key with bonded stake) and one leaf
  whose value is the hash of the encoded governance state (`GOVERNANCE_KEY`);
- so a single top-level proof plus the whole of an account (or of the validator set) proves a
  balance (or the stake table) complete: nothing of it can be left out.

Keys and values are tagged hashes (exact bytes in docs/protocol.md, "State commitment").

The ledger does not know the governance rules (they are the consensus layer's): it holds the
governance leaf as a 32-byte value it is given, and knows only the encoding of the state a chain
starts from (`genesis_governance_value`), so that a genesis block is built without them.
"""

from __future__ import annotations

from typing import Final

from p2pchain.ledger.crypto import tagged_hash
from p2pchain.ledger.encoding import RLPItem, encode_item, uint_bytes
from p2pchain.ledger.trie import Trie
from p2pchain.ledger.tx import LockKind, OutPoint, TxOutput
from p2pchain.ledger.types import Address, AssetId, Hash32, PublicKey
from p2pchain.params import GOVERNABLE, ChainParams

ACCOUNT_KEY_TAG: Final = b"p2pchain/state/account"
ASSET_KEY_TAG: Final = b"p2pchain/state/asset"
VALIDATORS_KEY_TAG: Final = b"p2pchain/state/validators"
OUTPOINT_KEY_TAG: Final = b"p2pchain/state/outpoint"
VALIDATOR_KEY_TAG: Final = b"p2pchain/state/validator"
OUTPUT_VALUE_TAG: Final = b"p2pchain/state/output"
ASSET_VALUE_TAG: Final = b"p2pchain/state/asset-info"
STAKE_VALUE_TAG: Final = b"p2pchain/state/stake"
GOVERNANCE_KEY_TAG: Final = b"p2pchain/state/governance"
GOVERNANCE_VALUE_TAG: Final = b"p2pchain/state/governance-state"

_STAKE = LockKind.STAKE

VALIDATORS_KEY: Final = tagged_hash(VALIDATORS_KEY_TAG, b"")
GOVERNANCE_KEY: Final = tagged_hash(GOVERNANCE_KEY_TAG, b"")


def account_key(address: Address) -> Hash32:
    return tagged_hash(ACCOUNT_KEY_TAG, address)


def asset_key(asset: AssetId) -> Hash32:
    return tagged_hash(ASSET_KEY_TAG, asset)


def outpoint_key(outpoint: OutPoint) -> Hash32:
    """``tagged_hash(tag, txid || u32be(index))``: no RLP, it is computed for every output
    created and spent."""
    return tagged_hash(OUTPOINT_KEY_TAG, outpoint.txid + outpoint.index.to_bytes(4, "big"))


def validator_key(key: PublicKey) -> Hash32:
    return tagged_hash(VALIDATOR_KEY_TAG, key)


def output_value(output: TxOutput, encoded: bytes | None = None) -> Hash32:
    """``tagged_hash(tag, rlp(output))``; `encoded` is that RLP when the caller has it."""
    return tagged_hash(
        OUTPUT_VALUE_TAG, encode_item(output.to_rlp()) if encoded is None else encoded
    )


def asset_value(encoded_info: bytes) -> Hash32:
    """The value of an asset's leaf, from the RLP encoding of its `AssetInfo`."""
    return tagged_hash(ASSET_VALUE_TAG, encoded_info)


def governance_value(encoded_state: bytes) -> Hash32:
    """The value of the governance leaf, from the RLP encoding of the governance state."""
    return tagged_hash(GOVERNANCE_VALUE_TAG, encoded_state)


def governed_params_rlp(params: ChainParams) -> list[RLPItem]:
    """The parameters in force as the governance state encodes them: the value of each name of
    `GOVERNABLE`, in that order (the others never change, so they are not encoded)."""
    return [uint_bytes(getattr(params, name)) for name in GOVERNABLE]


def genesis_governance_value(params: ChainParams) -> Hash32:
    """The governance leaf of a chain's genesis state: epoch 0, the genesis parameters, no
    proposal, next order 0. It is what `GovernanceState.at_genesis(params)` encodes to (that
    class is the consensus layer's, which the ledger may not import; a test keeps them equal)."""
    return governance_value(
        encode_item([uint_bytes(0), governed_params_rlp(params), [], [], uint_bytes(0)])
    )


def stake_value(stake: int) -> Hash32:
    return tagged_hash(STAKE_VALUE_TAG, uint_bytes(stake))


def account_trie(outputs: list[tuple[OutPoint, TxOutput]]) -> Trie:
    """An account trie built from scratch (how a verifier checks a whole account)."""
    return Trie((outpoint_key(op), output_value(output)) for op, output in outputs)


def validator_trie(stakes: list[tuple[PublicKey, int]]) -> Trie:
    """A validator trie built from scratch (how a verifier checks a whole stake table)."""
    return Trie((validator_key(key), stake_value(stake)) for key, stake in stakes)


class StateCommitment:
    """The tries behind the root, updated as outputs, assets, stake and the governance leaf
    change.

    Account and validator roots are folded into the top trie lazily, at `root()`, once per
    account touched since the last call.
    """

    __slots__ = (
        "_account_keys",
        "_accounts",
        "_dirty",
        "_stakes",
        "_top",
        "_validators",
        "_validators_dirty",
    )

    def __init__(self) -> None:
        self._top = Trie()
        self._accounts: dict[Address, Trie] = {}
        self._account_keys: dict[Address, Hash32] = {}
        """`account_key` of each address in `_accounts`: hashed once, not at every root."""
        self._dirty: set[Address] = set()
        self._validators = Trie()
        self._stakes: dict[PublicKey, int] = {}
        self._validators_dirty = False

    def copy(self) -> StateCommitment:
        self.root()
        clone = StateCommitment()
        clone._top = self._top.copy()
        clone._accounts = {address: trie.copy() for address, trie in self._accounts.items()}
        clone._account_keys = dict(self._account_keys)
        clone._validators = self._validators.copy()
        clone._stakes = dict(self._stakes)
        return clone

    def add_output(
        self, outpoint: OutPoint, output: TxOutput, encoded: bytes | None = None
    ) -> None:
        """`encoded` is the output's RLP when the caller has it (cut from its transaction)."""
        address = output.address
        trie = self._accounts.get(address)
        if trie is None:
            trie = self._accounts[address] = Trie()
            self._account_keys[address] = account_key(address)
        trie.set(outpoint_key(outpoint), output_value(output, encoded))
        self._dirty.add(address)
        lock = output.lock
        if lock.kind is _STAKE:
            self._add_stake(PublicKey(lock.key), output.amount)

    def remove_output(self, outpoint: OutPoint, output: TxOutput) -> None:
        address = output.address
        self._accounts[address].delete(outpoint_key(outpoint))
        self._dirty.add(address)
        lock = output.lock
        if lock.kind is _STAKE:
            self._add_stake(PublicKey(lock.key), -output.amount)

    def set_asset(self, asset: AssetId, encoded_info: bytes | None) -> None:
        """Record an asset's `AssetInfo` (its RLP encoding), or forget it (None)."""
        key = asset_key(asset)
        if encoded_info is None:
            if self._top.get(key) is not None:
                self._top.delete(key)
        else:
            self._top.set(key, asset_value(encoded_info))

    def set_governance(self, value: Hash32 | None) -> None:
        """Set the governance leaf to `value` (the hash of the encoded governance state), or
        remove it (None: only a view holding no state at all lacks it)."""
        current = self._top.get(GOVERNANCE_KEY)
        if value is None:
            if current is not None:
                self._top.delete(GOVERNANCE_KEY)
        elif current != value:
            self._top.set(GOVERNANCE_KEY, value)

    def _add_stake(self, key: PublicKey, change: int) -> None:
        stake = self._stakes.get(key, 0) + change
        trie_key = validator_key(key)
        if stake:
            self._stakes[key] = stake
            self._validators.set(trie_key, stake_value(stake))
        else:
            del self._stakes[key]
            self._validators.delete(trie_key)
        self._validators_dirty = True

    def root(self) -> Hash32:
        """The state root: the top trie's, after folding in every account changed since."""
        top, keys = self._top, self._account_keys
        for address in self._dirty:
            trie = self._accounts[address]
            if len(trie):
                top.set(keys[address], trie.root())
            else:
                del self._accounts[address]
                key = keys.pop(address)
                if top.get(key) is not None:  # not there when it came and went since
                    top.delete(key)
        self._dirty.clear()
        if self._validators_dirty:
            if len(self._validators):
                top.set(VALIDATORS_KEY, self._validators.root())
            elif top.get(VALIDATORS_KEY) is not None:
                top.delete(VALIDATORS_KEY)
            self._validators_dirty = False
        return top.root()

    # -- what proofs are made of --------------------------------------------------------------
    @property
    def top(self) -> Trie:
        """The top trie, current as of the last `root()` call."""
        return self._top

    def account(self, address: Address) -> Trie | None:
        return self._accounts.get(address)
