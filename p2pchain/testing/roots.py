"""State roots for blocks built by hand in tests and vectors.

A block meant to break one rule must pass every rule checked before it, and `state-root` is
checked last: these helpers give a hand-built body the root `connect_block` expects, or 32
zero bytes when the body does not even apply (it is then refused by an earlier rule).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from p2pchain.consensus.store import Store, move_view
from p2pchain.ledger.commitment import (
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
from p2pchain.ledger.types import Address, BlockId, Hash32
from p2pchain.ledger.utxo import UtxoView


def state_root_after(view: UtxoView, body: Sequence[Transaction]) -> Hash32:
    """The root after `body` on a copy of `view` (`view` is not changed)."""
    trial = view.copy()
    try:
        for tx in body:
            trial.apply_transaction(tx)
    except (KeyError, ValueError):  # spends what is not there: refused before the root
        return EMPTY_ROOT
    return trial.state_root()


def state_root_on(store: Store, parent: BlockId, body: Sequence[Transaction]) -> Hash32:
    """`state_root_after` on the state after `parent` (zeros when the store has no such state)."""
    if parent not in store.tree:
        return EMPTY_ROOT
    root = state_root_after(move_view(store, parent), body)
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


def naive_state_root(view: UtxoView) -> Hash32:
    """`UtxoView.state_root` recomputed from the view's contents alone."""
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
    return naive_trie_root(top)
