"""A split cascade: one vote completes finalizations on two branches at once (possible only
when a third of the stake double-votes). The store adopts what docs/protocol.md ("Finality")
says: the highest-epoch finalized checkpoint that has the previous one on its chain (equal
epochs: the lowest block id), and records every other as conflicting."""

from p2pchain.consensus import build_block, get_forkchoice_store, on_block, on_tick, on_vote
from p2pchain.consensus.store import Store, get_checkpoint, get_proposer
from p2pchain.ledger.block import Block
from p2pchain.ledger.types import BlockId
from p2pchain.ledger.vote import Checkpoint
from p2pchain.params import COIN
from p2pchain.testing.consensus import (
    CONSENSUS_PARAMS,
    make_genesis,
    sign_vote_data,
    validator_keys,
)

EPOCH = CONSENSUS_PARAMS.slots_per_epoch
KEYS = validator_keys(4)


def _store() -> Store:
    return get_forkchoice_store(CONSENSUS_PARAMS, make_genesis(KEYS, [COIN] * 4))


def _block(store: Store, parent: BlockId, slot: int) -> Block:
    on_tick(store, slot)
    proposer = get_proposer(store, parent, slot)
    key = next(k for k in KEYS if k.public_key == proposer)
    block = build_block(store, parent, slot, key)
    on_block(store, block, slot)
    return block


def _vote(store: Store, key_index: int, slot: int, head: BlockId, source: Checkpoint) -> None:
    epoch = slot // EPOCH
    target = get_checkpoint(store, head, epoch)
    vote = sign_vote_data(
        store, KEYS[key_index], slot=slot, head=head, source=source, target=target
    )
    on_vote(store, vote, store.current_slot)


def _branch(store: Store, parent: BlockId, slots: list[int]) -> list[Block]:
    blocks = []
    for slot in slots:
        blocks.append(_block(store, parent, slot))
        parent = blocks[-1].block_id
    return blocks


def test_one_vote_finalizing_two_branches_adopts_the_highest_epoch():
    store = _store()
    genesis = store.finalized_checkpoint
    base = _branch(store, genesis.block_id, [EPOCH])[0]  # the checkpoint of epoch 1
    c1 = Checkpoint(epoch=1, block_id=base.block_id)
    x = _branch(store, base.block_id, [2 * EPOCH, 3 * EPOCH])  # epochs 2, 3
    y = _branch(store, base.block_id, [2 * EPOCH + 1, 3 * EPOCH + 1, 4 * EPOCH + 1])
    on_tick(store, 5 * EPOCH)
    x2 = get_checkpoint(store, x[-1].block_id, 2)
    y2 = get_checkpoint(store, y[-1].block_id, 2)
    y3 = get_checkpoint(store, y[-1].block_id, 3)
    for voter in range(3):  # links waiting for c1 to be justified: X finalizes 2, Y 2 and 3
        _vote(store, voter, 2 * EPOCH + 2, x[0].block_id, c1)
        _vote(store, voter, 3 * EPOCH + 2, x[1].block_id, x2)
        _vote(store, voter, 2 * EPOCH + 2, y[0].block_id, c1)
        _vote(store, voter, 3 * EPOCH + 2, y[1].block_id, y2)
        _vote(store, voter, 4 * EPOCH + 2, y[2].block_id, y3)
    for voter in range(2):
        _vote(store, voter, EPOCH + 1, base.block_id, genesis)
    assert store.finalized_checkpoint == genesis
    _vote(store, 2, EPOCH + 1, base.block_id, genesis)  # completes g -> c1: the cascade

    assert store.finalized_checkpoint == y3
    assert x2 in store.conflicting_finalized
    assert y2 not in store.conflicting_finalized  # on y3's chain
    assert x[0].block_id not in store.nodes  # X's branch was pruned


def test_two_finalized_checkpoints_of_one_epoch_go_to_the_lower_block_id():
    store = _store()
    genesis = store.finalized_checkpoint
    base = _branch(store, genesis.block_id, [EPOCH])[0]
    c1 = Checkpoint(epoch=1, block_id=base.block_id)
    x = _branch(store, base.block_id, [2 * EPOCH, 3 * EPOCH])
    y = _branch(store, base.block_id, [2 * EPOCH + 1, 3 * EPOCH + 1])
    on_tick(store, 4 * EPOCH)
    x2 = get_checkpoint(store, x[-1].block_id, 2)
    y2 = get_checkpoint(store, y[-1].block_id, 2)
    for voter in range(3):
        _vote(store, voter, 2 * EPOCH + 2, x[0].block_id, c1)
        _vote(store, voter, 3 * EPOCH + 2, x[1].block_id, x2)
        _vote(store, voter, 2 * EPOCH + 2, y[0].block_id, c1)
        _vote(store, voter, 3 * EPOCH + 2, y[1].block_id, y2)
    for voter in range(3):
        _vote(store, voter, EPOCH + 1, base.block_id, genesis)

    low, high = sorted([x2, y2], key=lambda cp: cp.block_id)
    assert store.finalized_checkpoint == low
    assert high in store.conflicting_finalized
