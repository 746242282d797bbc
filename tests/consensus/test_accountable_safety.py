"""Accountable safety as docs/consensus.md ("Safety") states it: when two conflicting
checkpoints are finalized on branches whose validator sets differ only by stake one branch
burnt for proven offences, the validators that signed conflicting votes together with those
burnt offenders hold at least 1/3 of the larger set's stake. Proposal offenders count: here no
validator votes on both branches, so the vote evidence alone convicts nobody."""

from p2pchain.consensus import (
    SlashingDetector,
    build_block,
    get_forkchoice_store,
    on_block,
    on_tick,
    on_vote,
)
from p2pchain.consensus.store import Store, get_checkpoint, get_proposer, get_validator_set
from p2pchain.ledger.block import Block
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.evidence import DoubleProposal
from p2pchain.ledger.genesis import genesis_block
from p2pchain.ledger.tx import OutPoint, Transaction, TxOutput
from p2pchain.ledger.types import AssetId, BlockId, PublicKey
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Wallet
from p2pchain.params import COIN
from p2pchain.testing.consensus import (
    CONSENSUS_PARAMS,
    make_genesis,
    sign_vote_data,
    validator_keys,
)

EPOCH = CONSENSUS_PARAMS.slots_per_epoch
KEYS = validator_keys(2, label=b"accountable")
BIG, SMALL = KEYS  # 3 coins and 1 coin: the big one alone is above 2/3
GENESIS = make_genesis(KEYS, [3 * COIN, COIN])
BY_KEY = {key.public_key: key for key in KEYS}


def _proposer(store: Store, parent: BlockId, slot: int) -> SecretKey:
    key = get_proposer(store, parent, slot)
    assert key is not None
    return BY_KEY[key]


def _block(store: Store, parent: BlockId, slot: int, **body) -> Block:
    on_tick(store, slot)
    block = build_block(store, parent, slot, _proposer(store, parent, slot), **body)
    on_block(store, block, slot)
    return block


def _payment() -> Transaction:
    """BIG pays a coin from its genesis allocation (output 0 of the genesis transaction)."""
    allocation = genesis_block(GENESIS, CONSENSUS_PARAMS).transactions[0]
    coin = (OutPoint(txid=allocation.txid, index=0), allocation.outputs[0])
    payment = TxOutput(
        asset=AssetId(CONSENSUS_PARAMS.native_asset),
        amount=COIN,
        address=allocation.outputs[1].address,
    )
    wallet = Wallet(BIG, CONSENSUS_PARAMS)
    return wallet.build_transfer(
        [coin], [payment], fee=1_000, context=BlockContext(height=1, slot=1)
    )


def _finalize(store: Store, voter: SecretKey, first_epoch: int, detector: SlashingDetector):
    """One block per epoch from `first_epoch` on, and `voter`'s votes along them, until the
    branch finalizes `first_epoch + 1`."""
    head = store.nodes[store.head]
    source = store.justified_checkpoint
    for epoch in range(first_epoch, first_epoch + 3):
        block = _block(store, head.block_id, epoch * EPOCH + 1)
        head = store.nodes[block.block_id]
        target = get_checkpoint(store, head.block_id, epoch)
        slot = epoch * EPOCH + 2
        on_tick(store, slot)
        vote = sign_vote_data(
            store, voter, slot=slot, head=head.block_id, source=source, target=target
        )
        on_vote(store, vote, slot)
        detector.observe_vote(vote)
        source = target
    return store.finalized_checkpoint


def test_conflicting_finality_after_a_burn_is_accounted_for_by_the_burnt_proposer():
    detector = SlashingDetector(CONSENSUS_PARAMS.chain_id)
    y = get_forkchoice_store(CONSENSUS_PARAMS, GENESIS)
    x = get_forkchoice_store(CONSENSUS_PARAMS, GENESIS)
    genesis = x.genesis_id
    total = get_validator_set(x, genesis, 0).total

    # Branch X: the big validator signs two blocks for one slot; the next block burns it.
    slot = next(s for s in range(1, 50) if get_proposer(x, genesis, s) == BIG.public_key)
    on_tick(x, slot)
    first = build_block(x, genesis, slot, BIG)
    second = build_block(x, genesis, slot, BIG, transactions=[_payment()])
    assert second.block_id != first.block_id
    on_block(x, first, slot)
    headers = [first.signed_header, second.signed_header]
    for header in headers:
        detector.observe_header(header)
    evidence = DoubleProposal(first=headers[0], second=headers[1])
    burn_slot = slot + 1
    while get_proposer(x, first.block_id, burn_slot) is None:
        burn_slot += 1
    _block(x, first.block_id, burn_slot, evidence=[evidence])
    later = (burn_slot // EPOCH + 3) * EPOCH  # sets anchored after the burn hold SMALL alone
    assert get_validator_set(x, x.head, later // EPOCH).stake_of(BIG.public_key) == 0

    finalized_y = _finalize(y, BIG, 1, detector)  # BIG alone is 3/4 >= 2/3 of Y's set
    finalized_x = _finalize(x, SMALL, later // EPOCH, detector)  # SMALL is X's whole set

    assert finalized_y.epoch >= 1
    assert finalized_x.epoch > finalized_y.epoch
    assert get_checkpoint(x, finalized_x.block_id, finalized_y.epoch) != finalized_y
    assert BIG.public_key in detector.offenders  # by its two headers
    voters_convicted: set[PublicKey] = detector.offenders - {BIG.public_key}
    assert voters_convicted == set()  # nobody voted on both branches: votes alone prove nothing
    burnt = {BIG.public_key}
    accountable = sum(get_validator_set(y, y.head, 0).stake_of(k) for k in burnt | voters_convicted)
    assert 3 * accountable >= total  # the larger set is Y's, all of the genesis stake
