"""State roots for blocks built by hand in tests and vectors.

A block meant to break one rule must pass every rule checked before it, and `state-root` is
checked last: these helpers give a hand-built body the root `connect_block` expects, or 32
zero bytes when the body does not even apply (it is then refused by an earlier rule).

The root commits to the governance state after the block too. `state_root_on` computes it as a
fork-choice store does (the parent's governance advanced to the block's slot, then the body's
governance transactions); `state_root_after`, on a bare view, keeps the view's governance leaf
unless given one, as `connect_block` does for a chain driven by the ledger alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from p2pchain.consensus.governance import apply_transactions
from p2pchain.consensus.store import Store, get_governance, move_view
from p2pchain.errors import InvalidBlock
from p2pchain.ledger.commitment import (
    GOVERNANCE_KEY,
    VALIDATORS_KEY,
    account_key,
    asset_key,
    asset_value,
    outpoint_key,
    output_value,
    stake_value,
    validator_key,
)
from p2pchain.ledger.encoding import encode_item
from p2pchain.ledger.trie import EMPTY_ROOT, branch_hash, leaf_hash, nibble
from p2pchain.ledger.tx import Transaction
from p2pchain.ledger.types import Address, BlockId, Hash32, Slot
from p2pchain.ledger.utxo import UtxoView


def state_root_after(
    view: UtxoView, body: Sequence[Transaction], *, governance: Hash32 | None = None
) -> Hash32:
    """The root after `body` on a copy of `view` (`view` is not changed), with the governance
    leaf `governance` (None: the view's own)."""
    trial = view.copy()
    try:
        for tx in body:
            trial.apply_transaction(tx)
    except (KeyError, ValueError):  # spends what is not there: refused before the root
        return EMPTY_ROOT
    if governance is not None:
        trial.set_governance(governance)
    return trial.state_root()


def governance_root_on(
    store: Store, parent: BlockId, body: Sequence[Transaction], *, slot: int
) -> Hash32 | None:
    """The governance leaf after a block at `slot` on `parent` carrying `body`, recomputed from
    the parent's governance state (no cached value); None when the store would refuse the
    block before its state root (a released parent, a slot before the parent's epoch, a
    governance rule broken)."""
    try:
        state = apply_transactions(get_governance(store, parent, Slot(slot)), body)
    except (InvalidBlock, ValueError):
        return None
    return state.commitment()


def state_root_on(
    store: Store, parent: BlockId, body: Sequence[Transaction], *, slot: int
) -> Hash32:
    """The root `on_block` expects of a block at `slot` on `parent` carrying `body`: the
    ledger state after `parent` with `body` applied and the governance leaf
    `governance_root_on` gives (zeros when the store would refuse the block earlier)."""
    if parent not in store.tree:
        return EMPTY_ROOT
    governance = governance_root_on(store, parent, body, slot=slot)
    if governance is None:
        return EMPTY_ROOT
    root = state_root_after(move_view(store, parent), body, governance=governance)
    move_view(store, store.head)
    return root


def naive_trie_root(items: Mapping[bytes, bytes], depth: int = 0) -> Hash32:
    """The trie root of `items` straight from the definition (docs/protocol.md), with no
    incremental state: the model `Trie` is tested against."""
    if not items:
        return EMPTY_ROOT
    if len(items) == 1:
        ((key, value),) = items.items()
        return leaf_hash(key, value)
    groups: list[dict[bytes, bytes]] = [{} for _ in range(16)]
    for key, value in items.items():
        groups[nibble(key, depth)][key] = value
    return branch_hash(naive_trie_root(group, depth + 1) for group in groups)


def naive_state_root(view: UtxoView, governance: Hash32 | None) -> Hash32:
    """`UtxoView.state_root` recomputed from the view's contents alone and the governance
    leaf's value `governance` (None: no such leaf), which the model is given, not read."""
    utxos, assets = view.snapshot()
    accounts: defaultdict[Address, dict[bytes, bytes]] = defaultdict(dict)
    for outpoint, output in utxos.items():
        accounts[output.address][outpoint_key(outpoint)] = output_value(output)
    top: dict[bytes, bytes] = {
        account_key(address): naive_trie_root(leaves) for address, leaves in accounts.items()
    }
    for asset, info in assets.items():
        top[asset_key(asset)] = asset_value(encode_item(info.to_rlp()))
    stakes = view.bonded_stake()
    if stakes:
        top[VALIDATORS_KEY] = naive_trie_root(
            {validator_key(key): stake_value(stake) for key, stake in stakes.items()}
        )
    if governance is not None:
        top[GOVERNANCE_KEY] = governance
    return naive_trie_root(top)
