"""Generate the shipped consensus step vectors: ``python -m p2pchain.testing.vectors.generate DIR``.

Every vector is written by a function below that plays its scenario on a `VectorBuilder`: blocks
are made with the consensus builder (`build_block`) or forged field by field when they must
break a rule, votes are signed with `sign_vote_data` / `make_vote`, and every delivery states
what it must do (`expect`), so a change of the rules that alters a vector makes generation fail
instead of silently recording new behaviour. Output is deterministic (BIP-340 signatures use
fixed auxiliary data), so ``--check`` can tell whether a directory is up to date.

Rules every scenario keeps, so that one real node gives the same results as the pure store
(docs/testing.md): nothing a node holds for a retry (an unknown parent or head, an early slot)
is made valid by a later step; no validator signs two slashable messages unless evidence of
them follows before the next check; invalid blocks of one proposer use distinct slots.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from p2pchain.consensus import (
    Store,
    build_block,
    get_checkpoint,
    get_forkchoice_store,
    get_proposer,
    make_vote,
    on_block,
    on_tick,
)
from p2pchain.errors import Reason
from p2pchain.ledger.address import address_of
from p2pchain.ledger.block import Block, compute_body_root
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.encoding import encode_item, uint_bytes
from p2pchain.ledger.evidence import DoubleProposal, VoteEquivocation
from p2pchain.ledger.genesis import genesis_block
from p2pchain.ledger.header import BlockHeader, header_signing_message
from p2pchain.ledger.reward import reward_transaction
from p2pchain.ledger.tx import (
    OutPoint,
    RetirePayload,
    SlashPayload,
    Transaction,
    TxInput,
    TxKind,
    TxOutput,
    VoteChoice,
)
from p2pchain.ledger.types import (
    Address,
    Amount,
    AssetId,
    BlockId,
    Epoch,
    Hash32,
    Height,
    PublicKey,
    Slot,
    TxId,
)
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.ledger.wallet import Wallet
from p2pchain.params import COIN, ChainParams
from p2pchain.testing.consensus import (
    CONSENSUS_PARAMS,
    Simulation,
    build_self_pruning_chain,
    make_genesis,
    sign_vote_data,
    validator_keys,
)
from p2pchain.testing.roots import state_root_on
from p2pchain.testing.vectors.format import MessageKind, Vector, dump_vector, vector_json
from p2pchain.testing.vectors.record import Expectation, Message, VectorBuilder

PARAMS = CONSENSUS_PARAMS
EPOCH = PARAMS.slots_per_epoch
STAKES = (10 * COIN,) * 4
ZERO_ID = BlockId(bytes(32))


class Scene:
    """One vector in the making: its validators (and two keys that are not validators), the
    builder whose store is the vector's state, and helpers that make blocks and votes on it."""

    def __init__(
        self,
        name: str,
        description: str,
        *,
        stakes: Sequence[int] = STAKES,
        params: ChainParams = PARAMS,
        label: bytes = b"vectors",
    ) -> None:
        self.keys = validator_keys(len(stakes), label=label)
        self.strangers = validator_keys(2, label=label + b"/stranger")
        self.params = params
        self.genesis = make_genesis(self.keys, stakes, params)
        self.builder = VectorBuilder(name, description, params, self.genesis)
        self.signers = {key.public_key: key for key in [*self.keys, *self.strangers]}

    # -- the builder ---------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        return self.builder.store

    @property
    def g(self) -> BlockId:
        return self.store.genesis_id

    def tick(self, slot: int) -> None:
        self.builder.tick(max(slot, self.builder.slot))

    def send(self, message: Message, expect: Expectation | None = "valid") -> None:
        self.builder.send(message, expect)

    def send_raw(self, kind: MessageKind, data: bytes, expect: Expectation) -> None:
        self.builder.deliver(kind, data, expect)

    def check(
        self,
        *,
        head: bool = True,
        weights: Iterable[BlockId] | bool = True,
        validators: int | None = None,
        proposer: Iterable[int] = (),
    ) -> None:
        """Check the head (unless not `head`), the checkpoints, `weights` (True: every block of
        the tree), the set of epoch `validators` and the proposers of the `proposer` slots, as
        they are now."""
        self.builder.check(head=head, weights=weights, validators=validators, proposer=proposer)

    def vector(self) -> Vector:
        return self.builder.vector()

    # -- blocks --------------------------------------------------------------------------------
    def proposer(self, parent: BlockId, slot: int, store: Store | None = None) -> SecretKey:
        key = get_proposer(store or self.store, parent, Slot(slot))
        assert key is not None
        return self.signers[key]

    def make(
        self,
        parent: BlockId,
        slot: int,
        *,
        votes: Sequence[Vote] = (),
        transactions: Sequence[Transaction] = (),
        evidence: Sequence[DoubleProposal | VoteEquivocation] = (),
        store: Store | None = None,
    ) -> Block:
        """A valid block by the scheduled proposer (on `store`, default the vector's)."""
        on = store or self.store
        block = build_block(
            on,
            parent,
            Slot(slot),
            self.proposer(parent, slot, on),
            votes=votes,
            transactions=transactions,
            evidence=evidence,
        )
        assert len(block.votes) == len(votes), "build_block dropped a vote of the scenario"
        assert len(block.transactions) == 1 + len(transactions) + len(evidence)
        return block

    def add(
        self,
        parent: BlockId,
        slot: int,
        *,
        votes: Sequence[Vote] = (),
        transactions: Sequence[Transaction] = (),
        evidence: Sequence[DoubleProposal | VoteEquivocation] = (),
        expect: Expectation = "added",
    ) -> Block:
        """Tick to `slot` if needed, make a valid block and deliver it."""
        self.tick(slot)
        block = self.make(parent, slot, votes=votes, transactions=transactions, evidence=evidence)
        self.send(block, expect)
        return block

    def chain(self, parent: BlockId, slots: Iterable[int]) -> list[Block]:
        blocks = []
        for slot in slots:
            blocks.append(self.add(parent, slot))
            parent = blocks[-1].block_id
        return blocks

    def forge(
        self,
        parent: BlockId,
        slot: int,
        *,
        key: SecretKey | None = None,
        proposer: PublicKey | None = None,
        height: int | None = None,
        transactions: Sequence[Transaction] = (),
        body: Sequence[Transaction] | None = None,
        votes: Sequence[Vote] = (),
        reward: int | None = None,
        body_root: Hash32 | None = None,
        state_root: Hash32 | None = None,
        chain_id: int | None = None,
        signature: bytes | None = None,
    ) -> Block:
        """A block built field by field (to break exactly one rule): by default by the
        scheduled proposer, the reward first, then `transactions`; `body` replaces the whole
        transaction list."""
        params = self.params
        node = self.store.nodes.get(parent)
        if height is None:
            assert node is not None, "a block on an unknown parent needs its height"
            height = node.height + 1
        signer = key or self.proposer(parent, slot)
        if body is None:
            pay = reward_transaction(
                height=Height(height),
                amount=Amount(params.block_reward if reward is None else reward),
                address=address_of(signer.public_key),
                params=params,
            )
            body = (pay, *transactions)
        header = BlockHeader(
            parent=parent,
            height=Height(height),
            slot=Slot(slot),
            proposer=proposer or signer.public_key,
            body_root=body_root or compute_body_root(tuple(body), tuple(votes)),
            state_root=state_root or state_root_on(self.store, parent, body, slot=slot),
        )
        if signature is None:
            message = header_signing_message(chain_id or params.chain_id, header.block_id)
            signature = signer.sign(message)
        return Block(
            header=header, signature=signature, transactions=tuple(body), votes=tuple(votes)
        )

    # -- votes ---------------------------------------------------------------------------------
    def vote(
        self,
        key: SecretKey | int,
        slot: int,
        head: BlockId,
        *,
        source: Checkpoint | None = None,
        target: Checkpoint | None = None,
        store: Store | None = None,
    ) -> Vote:
        """A vote signed by `key` (a validator index or a key): honest source and target for
        `head` on `store` unless given."""
        signer = self.keys[key] if isinstance(key, int) else key
        on = store or self.store
        if source is None and target is None:
            return make_vote(on, signer, Slot(slot), head=head)
        epoch = slot // self.params.slots_per_epoch
        target = target or get_checkpoint(on, head, Epoch(epoch))
        source = source or (target if epoch == 0 else get_checkpoint(on, head, Epoch(0)))
        return sign_vote_data(on, signer, slot=slot, head=head, source=source, target=target)

    def scratch(self, blocks: Iterable[Block]) -> Store:
        """A store of the same genesis that knows only `blocks` (another node's view)."""
        store = get_forkchoice_store(self.params, self.genesis)
        for block in blocks:
            on_tick(store, block.header.slot)
            on_block(store, block, block.header.slot)
        return store

    # -- money ---------------------------------------------------------------------------------
    def wallet(self, index: int) -> Wallet:
        return Wallet(self.keys[index], self.params)

    def genesis_coin(self, index: int) -> tuple[OutPoint, TxOutput]:
        """Validator `index`'s genesis allocation (100 coins, spendable at once)."""
        tx = genesis_block(self.genesis, self.params).transactions[0]
        return OutPoint(txid=tx.txid, index=index), tx.outputs[index]

    def genesis_stake(self, index: int) -> tuple[OutPoint, TxOutput]:
        tx = genesis_block(self.genesis, self.params).transactions[0]
        position = len(self.genesis.allocations) + index
        return OutPoint(txid=tx.txid, index=position), tx.outputs[position]

    def pay(
        self,
        index: int,
        amount: int,
        *,
        to: Address | None = None,
        fee: int = 1_000,
        coin: tuple[OutPoint, TxOutput] | None = None,
    ) -> Transaction:
        """A signed transfer of `amount` from validator `index`'s genesis coin (or `coin`)."""
        payment = TxOutput(
            asset=AssetId(self.params.native_asset),
            amount=Amount(amount),
            address=to or address_of(self.strangers[0].public_key),
        )
        return self.wallet(index).build_transfer(
            [coin or self.genesis_coin(index)],
            [payment],
            fee=Amount(fee),
            context=BlockContext(height=Height(1), slot=Slot(1)),
        )


def signed_transaction(key: SecretKey, tx: Transaction, chain_id: int) -> Transaction:
    """`tx` with every input's witness made by `key` (its key and signature)."""
    from p2pchain.ledger.tx import tx_signing_message

    signature = key.sign(tx_signing_message(chain_id, tx.txid))
    return tx.with_inputs(
        tuple(
            TxInput(outpoint=i.outpoint, public_key=key.public_key, signature=signature)
            for i in tx.inputs
        )
    )


def resign_vote(vote: Vote, key: SecretKey, chain_id: int) -> Vote:
    return replace(vote, signature=key.sign(vote.signing_message(chain_id)))


# -- the catalogue -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    make: Callable[[str], Vector]


CATALOGUE: list[Entry] = []


def vector(name: str) -> Callable[[Callable[[str], Vector]], Callable[[str], Vector]]:
    def register(function: Callable[[str], Vector]) -> Callable[[str], Vector]:
        CATALOGUE.append(Entry(name, function))
        return function

    return register


# -- a plain chain ---------------------------------------------------------------------------


@vector("chain-of-blocks")
def _chain_of_blocks(name: str) -> Vector:
    s = Scene(
        name,
        "Three valid blocks in a row on genesis, each by its scheduled proposer, with no votes: "
        "the head follows the newest block, nothing is justified past genesis, every weight is "
        "zero. Also pins the proposers of the next epoch and the genesis validator set.",
    )
    s.check(proposer=range(1, 4), validators=0)
    s.chain(s.g, [1, 2, 3])
    s.check(proposer=range(4, 8), validators=1)
    return s.vector()


# -- block rules, in the order on_block checks them ------------------------------------------


@vector("block-duplicate")
def _block_duplicate(name: str) -> Vector:
    s = Scene(name, "A block delivered twice: the second copy is duplicate-block.")
    block = s.add(s.g, 1)
    s.send(block, Reason.DUPLICATE_BLOCK)
    s.check()
    return s.vector()


@vector("block-unknown-parent")
def _block_unknown_parent(name: str) -> Vector:
    s = Scene(
        name,
        "A block whose parent was never delivered: unknown-parent (a node may hold it; the "
        "parent never comes, so it never counts).",
    )
    other = s.scratch([])
    parent = s.make(s.g, 1, store=other)
    on_tick(other, Slot(1))
    on_block(other, parent, Slot(1))
    on_tick(other, Slot(2))
    child = s.make(parent.block_id, 2, store=other)
    s.tick(2)
    s.send(child, Reason.UNKNOWN_PARENT)
    s.check()
    return s.vector()


@vector("block-future-slot")
def _block_future_slot(name: str) -> Vector:
    s = Scene(
        name,
        "Valid blocks from slots after the current one (one slot ahead and eight ahead): "
        "future-slot. The clock never reaches them afterwards.",
    )
    s.tick(2)
    s.send(s.make(s.g, 3), Reason.FUTURE_SLOT)
    s.send(s.make(s.g, 10), Reason.FUTURE_SLOT)
    s.check()
    return s.vector()


@vector("block-slot-not-after-parent")
def _block_slot_not_after_parent(name: str) -> Vector:
    s = Scene(
        name,
        "Children of a slot-2 block at slot 2 (equal; signed by a key that is not a validator, "
        "since the slot's proposer signing it would be a double proposal) and at slot 1 "
        "(earlier, by its proposer): slot-not-after-parent, the first rule they break.",
    )
    parent = s.add(s.g, 2)
    s.tick(3)
    s.send(s.forge(parent.block_id, 2, key=s.strangers[0]), Reason.SLOT_NOT_AFTER_PARENT)
    s.send(s.forge(parent.block_id, 1), Reason.SLOT_NOT_AFTER_PARENT)
    s.check()
    return s.vector()


@vector("block-bad-height")
def _block_bad_height(name: str) -> Vector:
    s = Scene(
        name,
        "Children of a height-1 block claiming height 3 and height 1: bad-height (each at its "
        "own slot).",
    )
    parent = s.add(s.g, 1)
    s.tick(3)
    s.send(s.forge(parent.block_id, 2, height=3), Reason.BAD_HEIGHT)
    s.send(s.forge(parent.block_id, 3, height=1), Reason.BAD_HEIGHT)
    s.check()
    return s.vector()


def _finalize_epoch_one(s: Scene, voters: Sequence[int]) -> tuple[Block, Block]:
    """c at slot 3, d at slot 8 on it; `voters` justify (1, c) in epoch 1 and finalize it with
    votes for (2, d) in epoch 2. Returns (c, d)."""
    c = s.add(s.g, 3)
    for index, voter in enumerate(voters):
        s.tick(5 + index % 3)
        s.send(s.vote(voter, 5 + index % 3, c.block_id))
    d = s.add(c.block_id, 8)
    for index, voter in enumerate(voters):
        s.tick(9 + index % 3)
        s.send(s.vote(voter, 9 + index % 3, d.block_id))
    return c, d


@vector("block-conflicts-with-finalized")
def _block_conflicts_with_finalized(name: str) -> Vector:
    s = Scene(
        name,
        "After (1, c) is finalized (c at slot 3, so epoch 1 starts after it): a block on "
        "genesis, an ancestor of the finalized block, and a child of c at slot 4 = start(1), "
        "which would become its chain's epoch-1 checkpoint: both conflicts-with-finalized. A "
        "child of c at slot 13 is fine.",
    )
    c, _ = _finalize_epoch_one(s, range(4))
    s.check()
    s.tick(12)
    s.send(s.forge(s.g, 12), Reason.CONFLICTS_WITH_FINALIZED)
    s.send(s.forge(c.block_id, 4), Reason.CONFLICTS_WITH_FINALIZED)
    s.add(c.block_id, 13)
    s.check()
    return s.vector()


def _junk_vote(index: int) -> Vote:
    return Vote(
        slot=Slot(index),
        head=ZERO_ID,
        source=Checkpoint(epoch=Epoch(0), block_id=ZERO_ID),
        target=Checkpoint(epoch=Epoch(0), block_id=ZERO_ID),
        validator=PublicKey(bytes(32)),
        signature=bytes(64),
    )


@vector("block-and-vote-on-a-pruned-block")
def _block_and_vote_on_a_pruned_block(name: str) -> Vector:
    s = Scene(
        name,
        "A side block f on genesis at slot 2, then (1, c) is finalized with c at slot 3 on "
        "genesis, which prunes f. A child of f, and a vote whose head is f, both made while f "
        "was still known, arrive afterwards: conflicts-with-finalized, not unknown-parent / "
        "unknown-vote-head (the store remembers pruned ids), so neither waits for f again.",
    )
    f = s.add(s.g, 2)
    child = s.make(f.block_id, 6)
    vote = s.vote(0, 2, f.block_id)
    _finalize_epoch_one(s, range(4))
    s.check()
    s.tick(12)
    s.send(child, Reason.CONFLICTS_WITH_FINALIZED)
    s.send(vote, Reason.CONFLICTS_WITH_FINALIZED)
    s.check()
    return s.vector()


@vector("vote-for-a-branch-finality-prunes")
def _vote_for_a_branch_finality_prunes(name: str) -> Vector:
    s = Scene(
        name,
        "The order-dependent case of docs/consensus.md (Determinism), in the order where the "
        "vote comes first: validator 4 votes at slot 9 for a side block f (slot 2 on genesis) "
        "while f is still known; then (1, c) is finalized and f pruned. The vote stays "
        "validator 4's latest, with weight 0: its stake is on no block. (Delivered after the "
        "pruning, the same vote would be refused: block-and-vote-on-a-pruned-block.)",
        stakes=(10 * COIN,) * 5,
    )
    f = s.add(s.g, 2)
    c = s.add(s.g, 3)
    for voter in range(4):
        s.tick(5 + voter % 3)
        s.send(s.vote(voter, 5 + voter % 3, c.block_id))
    d = s.add(c.block_id, 8)
    s.tick(9)
    s.send(s.vote(4, 9, f.block_id))
    s.check()
    for voter in range(4):
        s.tick(9 + voter % 3)
        s.send(s.vote(voter, 9 + voter % 3, d.block_id))
    s.check()
    return s.vector()


@vector("block-too-large-votes")
def _block_too_large_votes(name: str) -> Vector:
    params = replace(PARAMS, max_block_votes=2)
    s = Scene(
        name,
        "max_block_votes = 2: a block carrying 3 votes is block-too-large (the count is checked "
        "before the votes themselves, so they may be junk); with 2 junk votes the block gets "
        "past the size rules and fails on its first vote instead (bad-vote-target).",
        params=params,
    )
    s.tick(2)
    votes = [_junk_vote(i) for i in range(3)]
    s.send(s.forge(s.g, 1, votes=votes), Reason.BLOCK_TOO_LARGE)
    s.send(s.forge(s.g, 2, votes=votes[:2]), Reason.BAD_VOTE_TARGET)
    s.check()
    return s.vector()


@vector("block-too-large-bytes")
def _block_too_large_bytes(name: str) -> Vector:
    params = replace(PARAMS, max_block_bytes=1_500)
    s = Scene(
        name,
        "max_block_bytes = 1500: a block whose encoding is longer is block-too-large; a block "
        "just under the limit is valid.",
        params=params,
    )
    s.tick(2)
    small = s.forge(s.g, 1)
    padding = [_junk_vote(i) for i in range(8)]
    big = s.forge(s.g, 2, votes=padding)
    assert len(small.encoded) <= 1_500 < len(big.encoded)
    s.send(big, Reason.BLOCK_TOO_LARGE)
    s.send(small)
    s.check()
    return s.vector()


@vector("block-too-large-txs")
def _block_too_large_txs(name: str) -> Vector:
    params = replace(PARAMS, max_block_txs=1)
    s = Scene(
        name,
        "max_block_txs = 1: a block with its reward and one valid payment is block-too-large "
        "(a ledger rule, checked after proposer, signature and body root); the reward alone is "
        "valid.",
        params=params,
    )
    s.tick(2)
    s.send(s.forge(s.g, 1, transactions=[s.pay(0, COIN)]), Reason.BLOCK_TOO_LARGE)
    s.send(s.forge(s.g, 2))
    s.check()
    return s.vector()


@vector("block-wrong-proposer")
def _block_wrong_proposer(name: str) -> Vector:
    s = Scene(
        name,
        "A block at slot 1 signed by a validator that is not slot 1's proposer (its own key in "
        "the header): wrong-proposer; a stranger's block too.",
    )
    s.tick(2)
    scheduled = s.proposer(s.g, 1)
    other = next(key for key in s.keys if key != scheduled)
    s.send(s.forge(s.g, 1, key=other), Reason.WRONG_PROPOSER)
    s.send(s.forge(s.g, 2, key=s.strangers[0]), Reason.WRONG_PROPOSER)
    s.check()
    return s.vector()


@vector("block-bad-proposer-signature")
def _block_bad_proposer_signature(name: str) -> Vector:
    s = Scene(
        name,
        "Blocks naming the scheduled proposer but signed by another key, signed for another "
        "chain id, and with a zero signature: bad-proposer-signature.",
    )
    s.tick(3)
    scheduled = s.proposer(s.g, 1)
    other = next(key for key in s.keys if key != scheduled)
    s.send(
        s.forge(s.g, 1, key=other, proposer=scheduled.public_key),
        Reason.BAD_PROPOSER_SIGNATURE,
    )
    s.send(s.forge(s.g, 2, chain_id=PARAMS.chain_id + 1), Reason.BAD_PROPOSER_SIGNATURE)
    s.send(s.forge(s.g, 3, signature=bytes(64)), Reason.BAD_PROPOSER_SIGNATURE)
    s.check()
    return s.vector()


@vector("block-bad-body-root")
def _block_bad_body_root(name: str) -> Vector:
    s = Scene(
        name,
        "Signed headers whose body root does not commit to the body (a zero root; the root of "
        "the body without its reward): bad-body-root.",
    )
    s.tick(2)
    s.send(s.forge(s.g, 1, body_root=Hash32(bytes(32))), Reason.BAD_BODY_ROOT)
    honest = s.forge(s.g, 2)
    wrong = compute_body_root((), ())
    s.send(s.forge(s.g, 2, body_root=wrong, body=honest.transactions), Reason.BAD_BODY_ROOT)
    s.check()
    return s.vector()


@vector("block-bad-state-root")
def _block_bad_state_root(name: str) -> Vector:
    s = Scene(
        name,
        "Signed blocks whose header's state root is not the root of the state after them (a "
        "zero root; the parent's root, as if the block changed nothing): bad-state-root. Then "
        "the same block with the right root is accepted.",
    )
    s.tick(2)
    s.send(s.forge(s.g, 1, state_root=Hash32(bytes(32))), Reason.BAD_STATE_ROOT)
    genesis = s.store.nodes[s.g].block
    assert genesis is not None
    s.send(s.forge(s.g, 1, state_root=genesis.header.state_root), Reason.BAD_STATE_ROOT)
    s.send(s.forge(s.g, 2))
    s.check()
    return s.vector()


@vector("block-malformed")
def _block_malformed(name: str) -> Vector:
    s = Scene(
        name,
        "Bytes that are not a canonical block: an empty list, a valid block cut short by one "
        "byte, the same with a trailing byte, and a header with a 31-byte parent: malformed.",
    )
    s.tick(1)
    block = s.forge(s.g, 1)
    s.send_raw(MessageKind.BLOCK, b"\xc0", Reason.MALFORMED)
    s.send_raw(MessageKind.BLOCK, block.encoded[:-1], Reason.MALFORMED)
    s.send_raw(MessageKind.BLOCK, block.encoded + b"\x00", Reason.MALFORMED)
    item = block.to_rlp()
    assert isinstance(item, list)
    assert isinstance(item[0], list)
    item[0][0] = bytes(31)
    s.send_raw(MessageKind.BLOCK, encode_item(item), Reason.MALFORMED)
    s.send(block)
    s.check()
    return s.vector()


# -- votes carried inside blocks --------------------------------------------------------------


def _carried_scene(name: str, description: str) -> tuple[Scene, Block, Block]:
    """a (slot 1) and c (slot 5) on it; the clock at 12: bad blocks go on c at slots 6..12."""
    s = Scene(name, description, stakes=(10 * COIN,) * 6)
    a = s.add(s.g, 1)
    c = s.add(a.block_id, 5)
    s.tick(12)
    return s, a, c


@vector("block-vote-future")
def _block_vote_future(name: str) -> Vector:
    s, _a, c = _carried_scene(
        name,
        "A block at slot 6 carrying a vote of slot 6 (not older than the block), and one "
        "carrying a slot-4 vote whose head c is from slot 5: both future-vote. The same block "
        "with a proper slot-5 vote is valid.",
    )
    s.send(s.forge(c.block_id, 6, votes=[s.vote(0, 6, c.block_id)]), Reason.FUTURE_VOTE)
    early = s.vote(1, 4, c.block_id, source=Checkpoint(epoch=Epoch(0), block_id=s.g))
    s.send(s.forge(c.block_id, 7, votes=[early]), Reason.FUTURE_VOTE)
    s.send(s.forge(c.block_id, 8, votes=[s.vote(2, 5, c.block_id)]))
    s.check()
    return s.vector()


@vector("block-vote-bad-target")
def _block_vote_bad_target(name: str) -> Vector:
    s, a, c = _carried_scene(
        name,
        "Blocks carrying a vote whose target epoch is not its slot's epoch, and one whose "
        "target block is not the head chain's checkpoint (c instead of a for epoch 1): "
        "bad-vote-target.",
    )
    g0 = Checkpoint(epoch=Epoch(0), block_id=s.g)
    wrong_epoch = s.vote(
        0, 5, c.block_id, source=g0, target=Checkpoint(epoch=Epoch(2), block_id=a.block_id)
    )
    s.send(s.forge(c.block_id, 6, votes=[wrong_epoch]), Reason.BAD_VOTE_TARGET)
    wrong_block = s.vote(
        1, 5, c.block_id, source=g0, target=Checkpoint(epoch=Epoch(1), block_id=c.block_id)
    )
    s.send(s.forge(c.block_id, 7, votes=[wrong_block]), Reason.BAD_VOTE_TARGET)
    s.check()
    return s.vector()


@vector("block-vote-bad-source")
def _block_vote_bad_source(name: str) -> Vector:
    s, a, c = _carried_scene(
        name,
        "Blocks carrying votes with a bad source: an epoch-0 vote whose source is not its "
        "target, a source in the target's own epoch, and a source that is not the head "
        "chain's checkpoint of its epoch: bad-vote-source.",
    )
    a0 = Checkpoint(epoch=Epoch(0), block_id=a.block_id)
    g0 = Checkpoint(epoch=Epoch(0), block_id=s.g)
    a1 = Checkpoint(epoch=Epoch(1), block_id=a.block_id)
    epoch0 = s.vote(0, 2, a.block_id, source=a0, target=g0)
    s.send(s.forge(c.block_id, 6, votes=[epoch0]), Reason.BAD_VOTE_SOURCE)
    same = s.vote(1, 5, c.block_id, source=a1, target=a1)
    s.send(s.forge(c.block_id, 7, votes=[same]), Reason.BAD_VOTE_SOURCE)
    off_chain = s.vote(2, 5, c.block_id, source=a0, target=a1)
    s.send(s.forge(c.block_id, 8, votes=[off_chain]), Reason.BAD_VOTE_SOURCE)
    s.check()
    return s.vector()


@vector("block-vote-unknown-validator")
def _block_vote_unknown_validator(name: str) -> Vector:
    s, _a, c = _carried_scene(
        name,
        "A block carrying a well-formed vote signed by a key with no stake: unknown-validator.",
    )
    vote = s.vote(s.strangers[0], 5, c.block_id)
    s.send(s.forge(c.block_id, 6, votes=[vote]), Reason.UNKNOWN_VALIDATOR)
    s.check()
    return s.vector()


@vector("block-vote-bad-signature")
def _block_vote_bad_signature(name: str) -> Vector:
    s, _a, c = _carried_scene(
        name,
        "Blocks carrying a validator's vote signed by another validator, and one signed for "
        "another chain id: bad-vote-signature.",
    )
    vote = s.vote(0, 5, c.block_id)
    s.send(
        s.forge(c.block_id, 6, votes=[resign_vote(vote, s.keys[1], PARAMS.chain_id)]),
        Reason.BAD_VOTE_SIGNATURE,
    )
    other = s.vote(2, 5, c.block_id)
    s.send(
        s.forge(c.block_id, 7, votes=[resign_vote(other, s.keys[2], PARAMS.chain_id + 1)]),
        Reason.BAD_VOTE_SIGNATURE,
    )
    s.check()
    return s.vector()


# -- ledger rules inside blocks ----------------------------------------------------------------


def _ledger_scene(name: str, description: str) -> tuple[Scene, Block]:
    """a at slot 1; the clock at 8: bad blocks go on a at slots 2..8."""
    s = Scene(name, description)
    a = s.add(s.g, 1)
    s.tick(8)
    return s, a


@vector("block-bad-reward")
def _block_bad_reward(name: str) -> Vector:
    s, a = _ledger_scene(
        name,
        "Blocks whose reward is wrong: no transactions at all, a payment in the reward's place, "
        "a reward paying one unit more than block_reward plus fees, and a reward whose height "
        "is not the block's: bad-reward.",
    )
    parent = a.block_id
    s.send(s.forge(parent, 2, body=()), Reason.BAD_REWARD)
    s.send(s.forge(parent, 3, body=(s.pay(0, COIN),)), Reason.BAD_REWARD)
    s.send(s.forge(parent, 4, reward=PARAMS.block_reward + 1), Reason.BAD_REWARD)
    key = s.proposer(parent, 5)
    wrong = reward_transaction(  # the reward of another height
        height=Height(3),
        amount=Amount(PARAMS.block_reward),
        address=address_of(key.public_key),
        params=PARAMS,
    )
    s.send(s.forge(parent, 5, body=(wrong,)), Reason.BAD_REWARD)
    s.check()
    return s.vector()


@vector("block-misplaced-reward")
def _block_misplaced_reward(name: str) -> Vector:
    s, a = _ledger_scene(
        name, "A block with a second reward transaction after its own: misplaced-reward."
    )
    first = s.forge(a.block_id, 2)
    paid = first.transactions[0].outputs[0]
    extra = reward_transaction(
        height=Height(7), amount=paid.amount, address=paid.address, params=PARAMS
    )
    s.send(s.forge(a.block_id, 2, transactions=[extra]), Reason.MISPLACED_REWARD)
    s.check()
    return s.vector()


@vector("block-duplicate-tx")
def _block_duplicate_tx(name: str) -> Vector:
    s, a = _ledger_scene(name, "A block holding one valid payment twice: duplicate-tx.")
    tx = s.pay(0, COIN)
    s.send(s.forge(a.block_id, 2, transactions=[tx, tx]), Reason.DUPLICATE_TX)
    s.send(s.forge(a.block_id, 3, transactions=[tx], reward=PARAMS.block_reward + 1_000))
    s.check()
    return s.vector()


@vector("block-conflicting-spend")
def _block_conflicting_spend(name: str) -> Vector:
    s, a = _ledger_scene(
        name, "A block holding two different payments from the same coin: conflicting-spend."
    )
    first = s.pay(0, COIN)
    second = s.pay(0, 2 * COIN)
    s.send(s.forge(a.block_id, 2, transactions=[first, second]), Reason.CONFLICTING_SPEND)
    s.check()
    return s.vector()


@vector("block-missing-input")
def _block_missing_input(name: str) -> Vector:
    s, a = _ledger_scene(
        name, "A block with a payment spending an output that does not exist: missing-input."
    )
    _, output = s.genesis_coin(0)
    ghost = OutPoint(txid=TxId(sha256(b"no such transaction")), index=0)
    s.send(
        s.forge(a.block_id, 2, transactions=[s.pay(0, COIN, coin=(ghost, output))]),
        Reason.MISSING_INPUT,
    )
    s.check()
    return s.vector()


@vector("block-bad-signature")
def _block_bad_signature(name: str) -> Vector:
    s, a = _ledger_scene(
        name,
        "A block with a payment whose witness signature is for another chain id: bad-signature.",
    )
    tx = s.pay(0, COIN)
    unsigned = tx.with_inputs(tuple(TxInput(outpoint=i.outpoint) for i in tx.inputs))
    forged = signed_transaction(s.keys[0], unsigned, PARAMS.chain_id + 1)
    s.send(s.forge(a.block_id, 2, transactions=[forged]), Reason.BAD_SIGNATURE)
    s.check()
    return s.vector()


@vector("block-witness-key-mismatch")
def _block_witness_key_mismatch(name: str) -> Vector:
    s, a = _ledger_scene(
        name,
        "A block with a payment from validator 0's coin signed by validator 1 with its own key "
        "as the witness: witness-key-mismatch.",
    )
    tx = s.pay(0, COIN)
    unsigned = tx.with_inputs(tuple(TxInput(outpoint=i.outpoint) for i in tx.inputs))
    stolen = signed_transaction(s.keys[1], unsigned, PARAMS.chain_id)
    s.send(s.forge(a.block_id, 2, transactions=[stolen]), Reason.WITNESS_KEY_MISMATCH)
    s.check()
    return s.vector()


@vector("block-immature")
def _block_immature(name: str) -> Vector:
    s, a = _ledger_scene(
        name,
        "A block at height 2 spending the reward of block 1, which reward_maturity = 2 locks "
        "until height 3: immature.",
    )
    reward = a.transactions[0]
    index = next(i for i, key in enumerate(s.keys) if key.public_key == a.header.proposer)
    coin = (OutPoint(txid=reward.txid, index=0), reward.outputs[0])
    spend = s.wallet(index).build_transfer(
        [coin],
        [
            TxOutput(
                asset=AssetId(PARAMS.native_asset),
                amount=Amount(COIN),
                address=address_of(s.strangers[0].public_key),
            )
        ],
        fee=Amount(1_000),
        context=BlockContext(height=Height(3), slot=Slot(3)),
    )
    s.send(s.forge(a.block_id, 2, transactions=[spend]), Reason.IMMATURE)
    s.check()
    return s.vector()


@vector("block-stake-locked")
def _block_stake_locked(name: str) -> Vector:
    s, a = _ledger_scene(
        name,
        "A block with a plain payment spending a validator's bonded genesis stake: stake-locked.",
    )
    outpoint, output = s.genesis_stake(0)
    payment = TxOutput(
        asset=AssetId(PARAMS.native_asset), amount=Amount(COIN), address=output.address
    )
    tx = Transaction(kind=TxKind.TRANSFER, inputs=(TxInput(outpoint=outpoint),), outputs=(payment,))
    s.send(s.forge(a.block_id, 2, transactions=[s.wallet(0).sign(tx)]), Reason.STAKE_LOCKED)
    s.check()
    return s.vector()


@vector("block-negative-fee")
def _block_negative_fee(name: str) -> Vector:
    s, a = _ledger_scene(
        name, "A block with a payment whose outputs exceed its input: negative-fee."
    )
    outpoint, output = s.genesis_coin(0)
    payment = TxOutput(
        asset=AssetId(PARAMS.native_asset), amount=Amount(output.amount + 1), address=output.address
    )
    tx = Transaction(kind=TxKind.TRANSFER, inputs=(TxInput(outpoint=outpoint),), outputs=(payment,))
    s.send(s.forge(a.block_id, 2, transactions=[s.wallet(0).sign(tx)]), Reason.NEGATIVE_FEE)
    s.check()
    return s.vector()


@vector("block-offers")
def _block_offers(name: str) -> Vector:
    s, a = _ledger_scene(
        name,
        "Validator 0 offers its genesis coin for 7 coins, takeable up to height 2; validator 1 "
        "takes it. Refused first: the payment cut by one unit (bad-signature), the offer's "
        "input in a BOND (bad-offer) and the take at height 3 (offer-expired, on a valid block "
        "at height 2 that does not touch the coin); then the take at height 2 is valid.",
    )
    maker, taker = s.wallet(0), s.wallet(1)
    coin = s.genesis_coin(0)
    wanted = TxOutput(
        asset=AssetId(PARAMS.native_asset), amount=Amount(7 * COIN), address=maker.address
    )
    offer = maker.make_offer(coin, wanted, until=Height(2))
    context = BlockContext(height=Height(2), slot=Slot(2))
    take = taker.build_take([(offer, coin[1])], [s.genesis_coin(1)], fee=Amount(0), context=context)
    cut = replace(take.outputs[0], amount=Amount(7 * COIN - 1))
    cheat = taker.sign(replace(take, outputs=(cut, *take.outputs[1:])))
    s.send(s.forge(a.block_id, 2, transactions=[cheat]), Reason.BAD_SIGNATURE)
    bond = taker.sign(replace(take, kind=TxKind.BOND))
    s.send(s.forge(a.block_id, 3, transactions=[bond]), Reason.BAD_OFFER)
    b = s.add(a.block_id, 4, transactions=[s.pay(2, COIN)])
    s.send(s.forge(b.block_id, 5, transactions=[take]), Reason.OFFER_EXPIRED)
    s.send(s.forge(a.block_id, 6, transactions=[take]))
    s.check(head=False)
    return s.vector()


@vector("block-retirement")
def _block_retirement(name: str) -> Vector:
    s, a = _ledger_scene(
        name,
        "Validator 0 issues 100 units of an asset (height 2) and retires 30 of them for a named "
        "beneficiary (height 3). Refused on the way: a retirement recording 31 units while "
        "burning 30 (bad-retirement) and one of the native coin (bad-retirement).",
    )
    holder = s.wallet(0)
    issue_context = BlockContext(height=Height(2), slot=Slot(2))
    issue, asset = holder.build_issue(
        [s.genesis_coin(0)], name=b"CO2-t", amount=Amount(100), fee=Amount(0), context=issue_context
    )
    b = s.add(a.block_id, 2, transactions=[issue])
    coins = [(OutPoint(txid=issue.txid, index=i), o) for i, o in enumerate(issue.outputs)]
    context = BlockContext(height=Height(3), slot=Slot(3))
    retire = holder.build_retire(
        coins,
        asset=asset,
        amount=Amount(30),
        beneficiary="Zürich Tram AG".encode(),
        purpose=b"fleet 2026",
        fee=Amount(0),
        context=context,
    )
    payload = retire.payload
    assert isinstance(payload, RetirePayload)
    overstated = holder.sign(replace(retire, payload=replace(payload, amount=Amount(31))))
    s.send(s.forge(b.block_id, 3, transactions=[overstated]), Reason.BAD_RETIREMENT)
    native = holder.sign(
        replace(retire, payload=replace(payload, asset=AssetId(PARAMS.native_asset)))
    )
    s.send(s.forge(b.block_id, 4, transactions=[native]), Reason.BAD_RETIREMENT)
    s.send(s.forge(b.block_id, 5, transactions=[retire]))
    s.check(head=False)
    return s.vector()


GOVERNANCE_PARAMS = replace(PARAMS, gov_voting_epochs=1, gov_deposit=10 * COIN)
"""One-epoch voting windows, so that a proposal passes and activates within three epochs."""


@vector("block-governance")
def _block_governance(name: str) -> Vector:
    s = Scene(
        name,
        "Validator 0 proposes block_reward = 2 coins from epoch 2 (height 1, epoch 0: window "
        "epoch 1, deposit 10 coins); validators 0 and 1 vote yes in epoch 1 (half the stake: "
        "quorum, and yes above half of yes plus no), so the first block of epoch 2 returns "
        "the deposit after its own reward and pays at most the new block reward. Refused on "
        "the way: a proposal of slot_ms (bad-proposal), a vote in the proposal's own epoch "
        "(voting-closed), validator 0 "
        "voting again (double-gov-vote), a key without stake voting (not-a-voter), in epoch 1 "
        "a proposal activating in epoch 2 (bad-activation), and in "
        "epoch 2 a reward at the old amount, and one without the refund (bad-reward).",
        params=GOVERNANCE_PARAMS,
    )
    params = GOVERNANCE_PARAMS
    proposer_wallet, voter = s.wallet(0), s.wallet(1)

    def at(slot: int) -> BlockContext:
        return BlockContext(height=Height(1), slot=Slot(slot))

    def propose(changes: Sequence[tuple[str, int]], activation: int) -> Transaction:
        return proposer_wallet.build_propose(
            [s.genesis_coin(0)],
            changes=changes,
            activation=Epoch(activation),
            fee=Amount(0),
            context=at(1),
        )

    proposal = propose([("block_reward", 2 * COIN)], 2)
    s.tick(3)
    s.send(s.forge(s.g, 1, transactions=[propose([("slot_ms", 1)], 2)]), Reason.BAD_PROPOSAL)
    a = s.add(s.g, 2, transactions=[proposal])

    def vote(
        wallet: Wallet, coin: tuple[OutPoint, TxOutput], validator: SecretKey | None = None
    ) -> Transaction:
        return wallet.build_gov_vote(
            [coin],
            proposal=proposal.txid,
            choice=VoteChoice.YES,
            fee=Amount(0),
            context=at(4),
            validator=validator,
        )

    change = (OutPoint(txid=proposal.txid, index=0), proposal.outputs[0])
    first = vote(proposer_wallet, change)
    second = vote(voter, s.genesis_coin(1))
    s.tick(2 * EPOCH - 1)
    s.send(s.forge(a.block_id, EPOCH - 1, transactions=[second]), Reason.VOTING_CLOSED)
    b = s.add(a.block_id, EPOCH, transactions=[first, second])
    again = vote(s.wallet(2), s.genesis_coin(2), s.keys[0])
    s.send(s.forge(b.block_id, EPOCH + 1, transactions=[again]), Reason.DOUBLE_GOV_VOTE)
    outsider = vote(s.wallet(3), s.genesis_coin(3), s.strangers[0])
    s.send(s.forge(b.block_id, EPOCH + 2, transactions=[outsider]), Reason.NOT_A_VOTER)
    late = s.wallet(3).build_propose(  # epoch 1: activation must be 3 or later
        [s.genesis_coin(3)],
        changes=[("block_reward", 1)],
        activation=Epoch(2),
        fee=Amount(0),
        context=at(EPOCH),
    )
    s.send(s.forge(b.block_id, EPOCH + 3, transactions=[late]), Reason.BAD_ACTIVATION)

    slot = 2 * EPOCH
    s.tick(slot + 2)
    height = Height(b.header.height + 1)
    refund = (proposer_wallet.address, Amount(params.gov_deposit))

    def reward(amount: int, refunds: Sequence[tuple[Address, Amount]]) -> Transaction:
        return reward_transaction(
            height=height,
            amount=Amount(amount),
            address=address_of(s.proposer(b.block_id, slot).public_key),
            params=params,
            refunds=refunds,
        )

    old = params.block_reward
    s.send(s.forge(b.block_id, slot, body=(reward(old, [refund]),)), Reason.BAD_REWARD)
    s.send(s.forge(b.block_id, slot + 1, body=(reward(2 * COIN, []),)), Reason.BAD_REWARD)
    s.send(s.forge(b.block_id, slot + 2, body=(reward(2 * COIN, [refund]),)))
    s.check()
    return s.vector()


def _slash_tx(evidence: DoubleProposal | VoteEquivocation) -> Transaction:
    return Transaction(kind=TxKind.SLASH, payload=SlashPayload(evidence=evidence))


@vector("block-slash-bad-evidence")
def _block_slash_bad_evidence(name: str) -> Vector:
    s, a = _ledger_scene(
        name,
        "A block with a SLASH transaction whose evidence is one vote twice (not an offence): "
        "bad-evidence.",
    )
    vote = s.vote(0, 1, a.block_id)
    s.send(
        s.forge(a.block_id, 2, transactions=[_slash_tx(VoteEquivocation(first=vote, second=vote))]),
        Reason.BAD_EVIDENCE,
    )
    s.check()
    return s.vector()


@vector("block-slash-nothing-to-slash")
def _block_slash_nothing_to_slash(name: str) -> Vector:
    s, a = _ledger_scene(
        name,
        "A block with a SLASH transaction proving a double vote by a key that has no stake: "
        "nothing-to-slash.",
    )
    stranger = s.strangers[0]
    first = s.vote(stranger, 1, a.block_id)
    second = s.vote(stranger, 1, s.g)
    evidence = VoteEquivocation(first=first, second=second)
    s.send(s.forge(a.block_id, 2, transactions=[_slash_tx(evidence)]), Reason.NOTHING_TO_SLASH)
    s.check()
    return s.vector()


# -- gossiped votes -----------------------------------------------------------------------------


def _vote_scene(name: str, description: str) -> tuple[Scene, Block, Block]:
    """Six validators; a (slot 1) and b (slot 2) on it; the clock at 5 (epoch 1)."""
    s = Scene(name, description, stakes=(10 * COIN,) * 6)
    a = s.add(s.g, 1)
    b = s.add(a.block_id, 2)
    s.tick(5)
    return s, a, b


@vector("vote-valid")
def _vote_valid(name: str) -> Vector:
    s, a, b = _vote_scene(
        name,
        "Valid votes: two for b and one for a in epoch 0, then one for b in epoch 1. Each "
        "moves its validator's stake to its head's branch; the head stays b.",
    )
    s.send(s.vote(0, 2, b.block_id))
    s.send(s.vote(1, 3, b.block_id))
    s.send(s.vote(2, 3, a.block_id))
    s.check()
    s.send(s.vote(3, 5, b.block_id))
    s.check()
    return s.vector()


@vector("vote-malformed")
def _vote_malformed(name: str) -> Vector:
    s, _a, b = _vote_scene(
        name,
        "Bytes that are not a canonical vote: an empty list, a vote cut short, a vote with a "
        "31-byte head, a vote with a trailing byte: malformed.",
    )
    vote = s.vote(0, 3, b.block_id)
    kind, data = MessageKind.VOTE, encode_item(vote.to_rlp())
    s.send_raw(kind, b"\xc0", Reason.MALFORMED)
    s.send_raw(kind, data[:-1], Reason.MALFORMED)
    item = vote.to_rlp()
    assert isinstance(item, list)
    assert isinstance(item[0], list)
    item[0][1] = bytes(31)
    s.send_raw(kind, encode_item(item), Reason.MALFORMED)
    s.send_raw(kind, data + b"\x00", Reason.MALFORMED)
    s.send(vote)
    s.check()
    return s.vector()


@vector("vote-future-slot")
def _vote_future_slot(name: str) -> Vector:
    s, _a, b = _vote_scene(
        name,
        "Valid-looking votes from slots after the current one (slot 6 and slot 12 at slot 5): "
        "future-vote. The clock never reaches them afterwards.",
    )
    s.send(s.vote(0, 6, b.block_id), Reason.FUTURE_VOTE)
    s.send(s.vote(1, 12, b.block_id), Reason.FUTURE_VOTE)
    s.check()
    return s.vector()


@vector("vote-head-newer-than-vote")
def _vote_head_newer(name: str) -> Vector:
    s, _a, b = _vote_scene(
        name,
        "A vote of slot 1 whose head b is from slot 2: future-vote (rule 5, after the head is "
        "found and the checkpoint rules).",
    )
    g0 = Checkpoint(epoch=Epoch(0), block_id=s.g)
    s.send(s.vote(0, 1, b.block_id, source=g0, target=g0), Reason.FUTURE_VOTE)
    s.check()
    return s.vector()


@vector("vote-unknown-head")
def _vote_unknown_head(name: str) -> Vector:
    s, a, _b = _vote_scene(
        name,
        "Votes for a head that was never delivered (a block another node made, and 32 random "
        "bytes): unknown-vote-head (a node may hold them; the head never comes).",
    )
    other = s.scratch([a])
    hidden = s.make(a.block_id, 3, store=other)
    on_tick(other, Slot(3))
    on_block(other, hidden, Slot(3))
    s.send(s.vote(0, 3, hidden.block_id, store=other), Reason.UNKNOWN_VOTE_HEAD)
    g0 = Checkpoint(epoch=Epoch(0), block_id=s.g)
    nowhere = BlockId(sha256(b"nowhere"))
    s.send(s.vote(1, 3, nowhere, source=g0, target=g0), Reason.UNKNOWN_VOTE_HEAD)
    s.check()
    return s.vector()


@vector("vote-conflicts-with-finalized")
def _vote_conflicts_with_finalized(name: str) -> Vector:
    s = Scene(
        name,
        "After (1, c) is finalized: a vote whose head is genesis, an ancestor of the finalized "
        "block: conflicts-with-finalized.",
        stakes=(10 * COIN,) * 5,
    )
    _finalize_epoch_one(s, range(4))
    s.tick(13)
    s.send(
        s.vote(4, 13, s.g, source=Checkpoint(epoch=Epoch(0), block_id=s.g)),
        Reason.CONFLICTS_WITH_FINALIZED,
    )
    s.check()
    return s.vector()


@vector("vote-stale")
def _vote_stale(name: str) -> Vector:
    s = Scene(
        name,
        "After (1, c) is finalized: a vote of epoch 0 for c (its target epoch 0 is before the "
        "finalized epoch): stale-vote.",
        stakes=(10 * COIN,) * 5,
    )
    c, _ = _finalize_epoch_one(s, range(4))
    s.tick(13)
    g0 = Checkpoint(epoch=Epoch(0), block_id=s.g)
    s.send(s.vote(4, 3, c.block_id, source=g0, target=g0), Reason.STALE_VOTE)
    s.check()
    return s.vector()


@vector("vote-bad-target")
def _vote_bad_target(name: str) -> Vector:
    s, a, b = _vote_scene(
        name,
        "A slot-3 vote with an epoch-1 target, and a slot-5 vote whose epoch-1 target is a, "
        "not the checkpoint b: bad-vote-target.",
    )
    g0 = Checkpoint(epoch=Epoch(0), block_id=s.g)
    s.send(
        s.vote(0, 3, b.block_id, source=g0, target=Checkpoint(epoch=Epoch(1), block_id=b.block_id)),
        Reason.BAD_VOTE_TARGET,
    )
    s.send(
        s.vote(1, 5, b.block_id, source=g0, target=Checkpoint(epoch=Epoch(1), block_id=a.block_id)),
        Reason.BAD_VOTE_TARGET,
    )
    s.check()
    return s.vector()


@vector("vote-bad-source")
def _vote_bad_source(name: str) -> Vector:
    s, a, b = _vote_scene(
        name,
        "An epoch-0 vote whose source is not its target, an epoch-1 vote whose source is its "
        "target, and an epoch-1 vote whose epoch-0 source is not the head chain's checkpoint: "
        "bad-vote-source.",
    )
    g0 = Checkpoint(epoch=Epoch(0), block_id=s.g)
    a0 = Checkpoint(epoch=Epoch(0), block_id=a.block_id)
    b1 = Checkpoint(epoch=Epoch(1), block_id=b.block_id)
    s.send(s.vote(0, 3, b.block_id, source=a0, target=g0), Reason.BAD_VOTE_SOURCE)
    s.send(s.vote(1, 5, b.block_id, source=b1, target=b1), Reason.BAD_VOTE_SOURCE)
    s.send(s.vote(2, 5, b.block_id, source=a0, target=b1), Reason.BAD_VOTE_SOURCE)
    s.check()
    return s.vector()


@vector("vote-unknown-validator")
def _vote_unknown_validator(name: str) -> Vector:
    s, _a, b = _vote_scene(
        name, "A well-formed, properly signed vote by a key with no stake: unknown-validator."
    )
    s.send(s.vote(s.strangers[0], 3, b.block_id), Reason.UNKNOWN_VALIDATOR)
    s.check()
    return s.vector()


@vector("vote-bad-signature")
def _vote_bad_signature(name: str) -> Vector:
    s, _a, b = _vote_scene(
        name,
        "A validator's vote with a zero signature, one signed by another validator, and one "
        "signed for another chain id: bad-vote-signature.",
    )
    s.send(replace(s.vote(0, 3, b.block_id), signature=bytes(64)), Reason.BAD_VOTE_SIGNATURE)
    s.send(
        resign_vote(s.vote(1, 3, b.block_id), s.keys[2], PARAMS.chain_id), Reason.BAD_VOTE_SIGNATURE
    )
    s.send(
        resign_vote(s.vote(3, 3, b.block_id), s.keys[3], PARAMS.chain_id + 1),
        Reason.BAD_VOTE_SIGNATURE,
    )
    s.check()
    return s.vector()


# -- evidence -----------------------------------------------------------------------------------


@vector("evidence-malformed")
def _evidence_malformed(name: str) -> Vector:
    s = Scene(
        name,
        "Bytes that are not canonical evidence: an empty list, evidence of kind 2, and valid "
        "double-vote evidence cut short: malformed.",
    )
    s.tick(2)
    first, second = s.vote(0, 1, s.g), s.vote(0, 2, s.g)
    item = VoteEquivocation(first=first, second=second).to_rlp()
    assert isinstance(item, list)
    s.send_raw(MessageKind.EVIDENCE, b"\xc0", Reason.MALFORMED)
    s.send_raw(MessageKind.EVIDENCE, encode_item([uint_bytes(2), *item[1:]]), Reason.MALFORMED)
    s.send_raw(MessageKind.EVIDENCE, encode_item(item)[:-1], Reason.MALFORMED)
    s.check()
    return s.vector()


@vector("evidence-not-an-offence")
def _evidence_not_an_offence(name: str) -> Vector:
    s = Scene(
        name,
        "Evidence that proves nothing: one vote twice, two votes by different validators, "
        "votes of different target epochs that do not surround, two headers of different "
        "slots, and a double vote with one signature broken: bad-evidence. Nobody loses weight.",
    )
    a = s.add(s.g, 1)
    b = s.add(a.block_id, 2)
    s.tick(5)
    mine = s.vote(0, 2, b.block_id)
    s.send(mine)
    s.check()
    bad = Reason.BAD_EVIDENCE
    s.send(VoteEquivocation(first=mine, second=mine), bad)
    s.send(VoteEquivocation(first=mine, second=s.vote(1, 2, a.block_id)), bad)
    s.send(VoteEquivocation(first=mine, second=s.vote(0, 5, b.block_id)), bad)
    s.send(DoubleProposal(first=a.signed_header, second=b.signed_header), bad)
    broken = replace(s.vote(0, 2, a.block_id), signature=bytes(64))
    s.send(VoteEquivocation(first=mine, second=broken), bad)
    s.check()
    return s.vector()


def _heavy_scene(name: str, description: str) -> Scene:
    """Validator 0 holds 30 coins, the others 10 each: its vote decides between two branches."""
    return Scene(name, description, stakes=(30 * COIN, 10 * COIN, 10 * COIN, 10 * COIN))


@vector("evidence-double-proposal")
def _evidence_double_proposal(name: str) -> Vector:
    s = Scene(
        name,
        "Slot 2's proposer P makes two blocks, x on genesis and y on a (slot 1), and votes for "
        "x; another validator votes for y. P's weight keeps x the head until the double "
        "proposal's evidence arrives: P's stake stops counting and y's branch wins.",
        stakes=(30 * COIN, 20 * COIN, 20 * COIN, 20 * COIN),
    )
    proposer = s.proposer(s.g, 2)
    index = s.keys.index(proposer)
    voter = next(i for i in range(4) if i != index and s.proposer(s.g, 1) != s.keys[i])
    a = s.add(s.g, 1)
    x = s.add(s.g, 2)
    s.tick(3)
    s.send(s.vote(index, 3, x.block_id))
    s.check()
    y = s.add(a.block_id, 2)
    s.send(s.vote(voter, 3, y.block_id))
    s.send(DoubleProposal(first=x.signed_header, second=y.signed_header))
    s.check()
    return s.vector()


@vector("evidence-double-vote")
def _evidence_double_vote(name: str) -> Vector:
    s = _heavy_scene(
        name,
        "Validator 0 (30 coins) votes for x in slot 3, then for y in slot 3 of the same epoch "
        "(a double vote); two others vote for y. Once the evidence is delivered validator 0 "
        "weighs nothing and y's branch wins.",
    )
    x = s.add(s.g, 1)
    y = s.add(s.g, 2)
    s.tick(3)
    first = s.vote(0, 3, x.block_id)
    s.send(first)
    s.send(s.vote(1, 3, y.block_id))
    s.send(s.vote(2, 3, y.block_id))
    s.check()
    second = s.vote(0, 3, y.block_id)
    s.send(second)
    s.send(VoteEquivocation(first=first, second=second))
    s.check()
    return s.vector()


@vector("evidence-surround-vote")
def _evidence_surround_vote(name: str) -> Vector:
    s = _heavy_scene(
        name,
        "Validator 0 (30 coins) keeps x the head with its vote; evidence of two of its votes "
        "where (0 -> 3) surrounds (1 -> 2) is delivered (neither vote needs to be valid for the "
        "fork choice): its weight goes and y, with one other vote, wins.",
    )
    x = s.add(s.g, 1)
    y = s.add(s.g, 2)
    s.tick(3)
    s.send(s.vote(0, 3, x.block_id))
    s.send(s.vote(1, 3, y.block_id))
    s.check()
    outer = s.vote(
        0,
        12,
        x.block_id,
        source=Checkpoint(epoch=Epoch(0), block_id=s.g),
        target=Checkpoint(epoch=Epoch(3), block_id=x.block_id),
    )
    inner = s.vote(
        0,
        8,
        x.block_id,
        source=Checkpoint(epoch=Epoch(1), block_id=x.block_id),
        target=Checkpoint(epoch=Epoch(2), block_id=x.block_id),
    )
    s.send(VoteEquivocation(first=outer, second=inner))
    s.check()
    return s.vector()


# -- slashing through SLASH transactions ------------------------------------------------------


def _slot_not_of(
    s: Scene, parent: BlockId, slot: int, offender: int, *, avoid: Sequence[int] = ()
) -> int:
    """The first slot from `slot` on whose proposer on `parent` is not the offender, skipping
    the slots in `avoid` (where another block by the same schedule would make its proposer a
    double proposer)."""
    while s.proposer(parent, slot) == s.keys[offender] or slot in avoid:
        slot += 1
    return slot


def _slash_in_block(
    s: Scene, offender: int, evidence: DoubleProposal | VoteEquivocation, parent: BlockId
) -> None:
    """Put `evidence` in a block of epoch 1 after its first slot (by someone other than the
    offender), then build on into epoch 3; check the validator sets on either side of the
    slashing (epoch 3's is anchored before it, epoch 4's after) and the proposers of epoch 4."""
    slot = _slot_not_of(s, parent, max(s.builder.slot + 1, EPOCH + 1), offender)
    assert slot < 2 * EPOCH
    block = s.add(parent, slot, evidence=[evidence])
    s.check(validators=3)
    tip = block.block_id
    for start in (2 * EPOCH + 1, 3 * EPOCH + 1):
        tip = s.add(tip, _slot_not_of(s, tip, start, offender)).block_id
    s.check(validators=3)
    s.check(validators=4, proposer=range(4 * EPOCH, 5 * EPOCH), weights=False)


@vector("slash-tx-double-proposal")
def _slash_tx_double_proposal(name: str) -> Vector:
    s = Scene(
        name,
        "Slot 2's proposer makes two blocks (on genesis and on a); the next block by someone "
        "else carries a SLASH transaction with the double proposal. Its stake is burned: its "
        "weight goes at once, and it leaves the validator sets anchored after the slashing "
        "(epoch 4 onwards), so the epoch-4 proposers are drawn without it.",
    )
    offender = s.keys.index(s.proposer(s.g, 2))
    a = s.add(s.g, 1)
    x = s.add(s.g, 2)
    y = s.add(a.block_id, 2)
    s.tick(3)
    s.send(s.vote(offender, 3, y.block_id))
    _slash_in_block(
        s, offender, DoubleProposal(first=x.signed_header, second=y.signed_header), y.block_id
    )
    return s.vector()


@vector("slash-tx-double-vote")
def _slash_tx_double_vote(name: str) -> Vector:
    s = Scene(
        name,
        "Validator 0 signs two votes for epoch 0 (for a and for genesis); neither is delivered, "
        "a later block carries them as a SLASH transaction: validator 0's stake is burned and "
        "it leaves the validator sets from epoch 4.",
    )
    a = s.add(s.g, 1)
    s.tick(2)
    s.send(s.vote(0, 2, a.block_id))
    evidence = VoteEquivocation(first=s.vote(0, 1, a.block_id), second=s.vote(0, 1, s.g))
    _slash_in_block(s, 0, evidence, a.block_id)
    return s.vector()


@vector("slash-tx-surround-vote")
def _slash_tx_surround_vote(name: str) -> Vector:
    s = Scene(
        name,
        "Validator 1 signs (0 -> 3) and (1 -> 2) links, a surround vote; a block carries them "
        "as a SLASH transaction: its stake is burned and it leaves the sets from epoch 4.",
    )
    a = s.add(s.g, 1)
    s.tick(2)
    s.send(s.vote(1, 2, a.block_id))
    outer = s.vote(
        1,
        12,
        a.block_id,
        source=Checkpoint(epoch=Epoch(0), block_id=s.g),
        target=Checkpoint(epoch=Epoch(3), block_id=a.block_id),
    )
    inner = s.vote(
        1,
        8,
        a.block_id,
        source=Checkpoint(epoch=Epoch(1), block_id=a.block_id),
        target=Checkpoint(epoch=Epoch(2), block_id=a.block_id),
    )
    _slash_in_block(s, 1, VoteEquivocation(first=outer, second=inner), a.block_id)
    return s.vector()


@vector("slash-tx-already-slashed")
def _slash_tx_already_slashed(name: str) -> Vector:
    s = Scene(
        name,
        "A block slashes validator 0 for a double vote; a block on it carrying evidence of "
        "another double vote by validator 0 is nothing-to-slash (its stake is gone); the same "
        "evidence in a block on a branch without the first slashing is valid.",
    )
    a = s.add(s.g, 1)
    s.tick(3)
    first = VoteEquivocation(first=s.vote(0, 1, a.block_id), second=s.vote(0, 1, s.g))
    again = VoteEquivocation(
        first=s.vote(0, 5, a.block_id),
        second=s.vote(
            0,
            6,
            s.g,
            source=Checkpoint(epoch=Epoch(0), block_id=s.g),
            target=Checkpoint(epoch=Epoch(1), block_id=s.g),
        ),
    )
    slashing = s.add(a.block_id, _slot_not_of(s, a.block_id, 2, 0), evidence=[first])
    later = _slot_not_of(s, slashing.block_id, slashing.header.slot + 1, 0)
    s.tick(later)
    s.send(
        s.forge(slashing.block_id, later, transactions=[_slash_tx(again)]),
        Reason.NOTHING_TO_SLASH,
    )
    sibling = _slot_not_of(s, a.block_id, later + 1, 0)
    s.add(a.block_id, sibling, evidence=[again])
    s.check(validators=3)
    return s.vector()


# -- fork choice --------------------------------------------------------------------------------


@vector("fork-choice-tie-lowest-id")
def _fork_choice_tie(name: str) -> Vector:
    s = Scene(
        name,
        "Two children of genesis: with no votes the head is the one with the lower block id; "
        "a vote for the other makes it the head; an equal vote for the first makes a tie again, "
        "which the lower id wins.",
    )
    x = s.add(s.g, 1)
    y = s.add(s.g, 2)
    s.check()
    low, high = sorted([x.block_id, y.block_id])
    s.tick(3)
    s.send(s.vote(0, 3, high))
    s.check()
    s.send(s.vote(1, 3, low))
    s.check()
    return s.vector()


@vector("fork-choice-latest-vote")
def _fork_choice_latest_vote(name: str) -> Vector:
    s = Scene(
        name,
        "A validator's weight follows its latest vote: validators 0 and 1 vote for x in epoch 0, "
        "validator 2 for y; in epoch 1 validator 0 votes for y, its vote for x stops counting "
        "and the head moves to y.",
    )
    x = s.add(s.g, 1)
    y = s.add(s.g, 2)
    s.tick(3)
    s.send(s.vote(0, 3, x.block_id))
    s.send(s.vote(1, 3, x.block_id))
    s.send(s.vote(2, 3, y.block_id))
    s.check()
    s.tick(5)
    s.send(s.vote(0, 5, y.block_id))
    s.check()
    return s.vector()


@vector("reorg-across-epochs")
def _reorg_across_epochs(name: str) -> Vector:
    s = Scene(
        name,
        "Two branches from c (slot 2): A with blocks at 3, 4 and 6, B at 5, 7 and 9. Two votes "
        "in epoch 1 make A the head; in epoch 2 three validators vote for B's tip, moving the "
        "head three blocks back and three forward across the epoch boundary (and justifying "
        "B's epoch-2 checkpoint).",
    )
    c = s.add(s.g, 2)
    branch_a = s.chain(c.block_id, [3, 4, 6])
    s.tick(7)
    s.send(s.vote(0, 6, branch_a[-1].block_id))
    s.send(s.vote(1, 7, branch_a[-1].block_id))
    branch_b = []
    parent = c.block_id
    for slot in (5, 7, 9):
        s.tick(slot)
        block = s.make(parent, slot)
        s.send(block)
        branch_b.append(block)
        parent = block.block_id
    s.check()
    s.tick(10)
    for voter in (0, 2, 3):
        s.send(s.vote(voter, 10, branch_b[-1].block_id))
    s.check()
    return s.vector()


# -- justification and finality -------------------------------------------------------------


@vector("finality-simulation")
def _finality_simulation(name: str) -> Vector:
    sim = Simulation.create([10 * COIN] * 4)
    sim.run_epochs(5)
    s = Scene(
        name,
        "Five epochs of four honest validators (p2pchain.testing.consensus.Simulation): a block "
        "every slot carrying the previous slot's votes, each validator voting once per epoch. "
        "Epoch after epoch is justified and the one before it finalized; checks at every epoch "
        "boundary.",
        label=b"validator",
    )
    assert s.genesis == sim.genesis
    for message in sim.messages:
        slot = message.header.slot if isinstance(message, Block) else message.slot
        if slot > s.builder.slot and slot % EPOCH == 0:
            s.check(weights=False)
        s.tick(slot)
        s.send(message)
    s.check()
    return s.vector()


@vector("finality-across-empty-epochs")
def _finality_across_empty_epochs(name: str) -> Vector:
    s = Scene(
        name,
        "Blocks only in epochs 0 and 1 (b4 at slot 4), then no blocks in epochs 2 and 3. Votes "
        "in epoch 1 justify (1, b4); votes in epoch 3 target (3, b4), the checkpoint of an "
        "empty epoch, and justify it from (1, b4) without finalizing anything (not consecutive); "
        "votes in epoch 4 for (4, b4) finalize (3, b4). A block at slot 17 then extends it.",
    )
    blocks = s.chain(s.g, [1, 2, 3, 4])
    tip = blocks[-1].block_id
    for epoch in (1, 3, 4):
        for voter in range(4):
            slot = epoch * EPOCH + 1 + voter % 2
            s.tick(slot)
            s.send(s.vote(voter, slot, tip))
        s.check()
    s.add(tip, 17)
    s.check(proposer=range(18, 20))
    return s.vector()


@vector("finality-threshold")
def _finality_threshold(name: str) -> Vector:
    s = Scene(
        name,
        "Stakes 3, 3, 2 and 1 coins (9): votes holding 5 coins for (0, g) -> (1, c) do not "
        "justify (1, c); the 1-coin vote brings them to 6 = 2/3 exactly, which does "
        "(3 * 6 >= 2 * 9). In epoch 2 the same 6 coins finalize (1, c).",
        stakes=(3 * COIN, 3 * COIN, 2 * COIN, COIN),
    )
    c = s.add(s.g, 4)
    s.tick(5)
    s.send(s.vote(0, 5, c.block_id))
    s.send(s.vote(2, 5, c.block_id))
    s.check()
    s.send(s.vote(3, 5, c.block_id))
    s.check()
    d = s.add(c.block_id, 8)
    s.tick(9)
    s.send(s.vote(0, 9, d.block_id))
    s.send(s.vote(2, 9, d.block_id))
    s.check()
    s.send(s.vote(3, 9, d.block_id))
    s.check()
    return s.vector()


# -- the split cascade, the self-pruning block, votes of a losing branch ------------------------


def _split_cascade(s: Scene, y_slots: Sequence[int]) -> None:
    """tests/consensus/test_split_cascade.py as steps. The three voters double-vote, which a
    node may detect and punish on its own at once, so only checkpoints are checked until the
    evidence of each double vote has been delivered; then everything is."""
    genesis = Checkpoint(epoch=Epoch(0), block_id=s.g)
    base = s.add(s.g, EPOCH)
    c1 = Checkpoint(epoch=Epoch(1), block_id=base.block_id)
    x = s.chain(base.block_id, [2 * EPOCH, 3 * EPOCH])
    y = s.chain(base.block_id, y_slots)
    s.tick(y_slots[-1] + 3)
    x2 = get_checkpoint(s.store, x[-1].block_id, Epoch(2))
    y2 = get_checkpoint(s.store, y[-1].block_id, Epoch(2))
    votes: dict[int, list[Vote]] = {voter: [] for voter in range(3)}

    def cast(voter: int, slot: int, head: BlockId, source: Checkpoint) -> None:
        vote = s.vote(
            voter,
            slot,
            head,
            source=source,
            target=get_checkpoint(s.store, head, Epoch(slot // EPOCH)),
        )
        s.send(vote)
        votes[voter].append(vote)

    for voter in range(3):
        cast(voter, 2 * EPOCH + 2, x[0].block_id, c1)
        cast(voter, 3 * EPOCH + 2, x[1].block_id, x2)
        cast(voter, 2 * EPOCH + 2, y[0].block_id, c1)
        cast(voter, 3 * EPOCH + 2, y[1].block_id, y2)
        if len(y) > 2:
            y3 = get_checkpoint(s.store, y[-1].block_id, Epoch(3))
            cast(voter, 4 * EPOCH + 2, y[2].block_id, y3)
    s.check(head=False, weights=False)
    for voter in range(2):
        cast(voter, EPOCH + 1, base.block_id, genesis)
    s.check(head=False, weights=False)
    cast(2, EPOCH + 1, base.block_id, genesis)  # completes g -> c1: the cascade
    for voter in range(3):
        first, second = votes[voter][0], votes[voter][2]  # epoch 2 for x, then for y
        s.send(VoteEquivocation(first=first, second=second))
    s.check()


@vector("split-cascade-highest-epoch")
def _split_cascade_highest(name: str) -> Vector:
    s = Scene(
        name,
        "A split cascade: three of four validators double-vote on two branches X and Y from "
        "(1, c1); links wait for c1 until the last vote for (0, g) -> (1, c1) justifies it, "
        "which at once finalizes (2, x2) on X and (2, y2) and (3, y3) on Y. The store adopts "
        "the highest epoch, (3, y3), prunes X and records (2, x2) as conflicting. Evidence of "
        "the double votes follows.",
        stakes=(COIN,) * 4,
        label=b"validator",
    )
    _split_cascade(s, [2 * EPOCH + 1, 3 * EPOCH + 1, 4 * EPOCH + 1])
    assert s.store.finalized_checkpoint.epoch == 3
    assert s.store.conflicting_finalized
    return s.vector()


@vector("split-cascade-equal-epochs")
def _split_cascade_equal(name: str) -> Vector:
    s = Scene(
        name,
        "A split cascade finalizing (2, x2) and (2, y2) at once, equal epochs on two branches: "
        "the store adopts the one with the lower block id and prunes the other branch. "
        "Evidence of the double votes follows.",
        stakes=(COIN,) * 4,
        label=b"validator",
    )
    _split_cascade(s, [2 * EPOCH + 1, 3 * EPOCH + 1])
    finalized = s.store.finalized_checkpoint
    assert finalized.epoch == 2
    assert all(
        cp.epoch == 2 and cp.block_id > finalized.block_id for cp in s.store.conflicting_finalized
    )
    return s.vector()


@vector("self-pruning-block")
def _self_pruning_block(name: str) -> Vector:
    chain = build_self_pruning_chain(PARAMS)
    s = Scene(
        name,
        "g - h(3) - x(4) - y(6) - z(9) (p2pchain.testing.consensus.build_self_pruning_chain): "
        "y carries 3 of 4 votes (0, g) -> (1, h), z carries 3 of 4 votes (1, h) -> (2, h). "
        "Importing z finalizes (1, h), whose chain does not hold x (x at slot 4 is x's chain's "
        "epoch-1 checkpoint), so z's own votes prune x, y and z: z is valid, outcome pruned, "
        "the head goes back to h.",
        stakes=(10 * COIN,) * 4,
        label=b"self-pruning",
    )
    assert s.genesis == chain.genesis
    for block in chain.blocks[:-1]:
        s.tick(block.header.slot)
        s.send(block, "added")
    s.check()
    s.tick(chain.z.header.slot)
    s.send(chain.z, "pruned")
    s.check()
    return s.vector()


@vector("self-pruning-block-with-a-vote-it-pruned")
def _self_pruning_block_with_a_vote_it_pruned(name: str) -> Vector:
    chain = build_self_pruning_chain(PARAMS)
    s = Scene(
        name,
        "self-pruning-block, with z carrying a fourth vote after its three: validator 3's "
        "(1, x) -> (2, y) (head y, slot 8). The first three finalize (1, h) and prune x, y and "
        "z; the fourth's target y is gone by then, so it is not counted: outcome pruned, the "
        "head goes back to h (a store that looked y up crashed half-way).",
        stakes=(10 * COIN,) * 4,
        label=b"self-pruning",
    )
    assert s.genesis == chain.genesis
    for block in chain.blocks[:-1]:
        s.tick(block.header.slot)
        s.send(block, "added")
    s.tick(chain.z.header.slot)
    fourth = s.vote(
        3,
        8,
        chain.y.block_id,
        source=Checkpoint(epoch=Epoch(1), block_id=chain.x.block_id),
        target=Checkpoint(epoch=Epoch(2), block_id=chain.y.block_id),
    )
    z = s.make(chain.y.block_id, chain.z.header.slot, votes=[*chain.z.votes, fourth])
    s.send(z, "pruned")
    s.check()
    return s.vector()


@vector("slash-in-a-branch-finality-prunes")
def _slash_in_a_branch_finality_prunes(name: str) -> Vector:
    s = Scene(
        name,
        "The other order-dependent case of docs/consensus.md (Determinism), SLASH first: a side "
        "block f on genesis carries a SLASH of slot 2's proposer's double proposal (its two "
        "blocks are never delivered). f is imported, so the offender's fork-choice weight goes; "
        "then the others finalize (1, c) on a - c, which prunes f. The offender stays slashed "
        "for the fork choice: its later vote for d adds nothing (refused after the pruning, f "
        "would not have slashed it; the burn itself needs a SLASH on the canonical chain).",
        stakes=(10 * COIN,) * 5,
    )
    offender = s.keys.index(s.proposer(s.g, 2))
    voters = [i for i in range(5) if i != offender]
    a = s.add(s.g, 1)
    first, second = s.make(s.g, 2), s.make(a.block_id, 2)
    evidence = DoubleProposal(first=first.signed_header, second=second.signed_header)
    # Not at c's slot: on genesis and on a, slot 4 has one proposer, who would then have made
    # two blocks for it (a node's detector convicts that, this store does not).
    f = s.add(s.g, _slot_not_of(s, s.g, 3, offender, avoid=(4,)), evidence=[evidence])
    s.check()
    c = s.add(a.block_id, 4)
    for index, voter in enumerate(voters):
        s.tick(5 + index % 3)
        s.send(s.vote(voter, 5 + index % 3, c.block_id))
    d = s.add(c.block_id, 8)
    for index, voter in enumerate(voters):
        s.tick(9 + index % 3)
        s.send(s.vote(voter, 9 + index % 3, d.block_id))
    assert f.block_id not in s.store.nodes
    s.send(s.vote(offender, 11, d.block_id))
    s.check()
    return s.vector()


@vector("votes-of-a-losing-branch")
def _votes_of_a_losing_branch(name: str) -> Vector:
    s = Scene(
        name,
        "A split in epoch 1 (tests/consensus/test_partition_votes.py in small): validators 0 "
        "and 1 (60 %) build and vote on branch A, validators 2 and 3 (40 %) on branch B, which "
        "this store never sees. A's votes alone do not justify (1, c). A block of A carries B's "
        "votes: their head is unknown here, but their source and target are checkpoints of A's "
        "chain, so they count for finality (justifying (1, c)) and not for the fork choice.",
        stakes=(3 * COIN, 3 * COIN, 2 * COIN, 2 * COIN),
    )
    c = s.add(s.g, 4)
    side_a = {0, 1}
    slot = 5
    while s.keys.index(s.proposer(c.block_id, slot)) not in side_a:
        slot += 1
    a = s.add(c.block_id, slot)
    other = s.scratch([c])
    b_slot = 5
    while s.keys.index(s.proposer(c.block_id, b_slot, other)) in side_a or b_slot == slot:
        b_slot += 1
    on_tick(other, Slot(b_slot))
    b = s.make(c.block_id, b_slot, store=other)
    on_block(other, b, Slot(b_slot))
    vote_slot = max(slot, b_slot)
    assert vote_slot < 2 * EPOCH, "both sides propose in epoch 1"
    s.tick(vote_slot)
    for voter in side_a:
        s.send(s.vote(voter, vote_slot, a.block_id))
    b_votes = [s.vote(voter, vote_slot, b.block_id, store=other) for voter in (2, 3)]
    s.check()
    carrier_slot = vote_slot + 1
    while s.keys.index(s.proposer(a.block_id, carrier_slot)) not in side_a:
        carrier_slot += 1
    s.add(a.block_id, carrier_slot, votes=b_votes)
    s.check()
    return s.vector()


@vector("validator-set-bond")
def _validator_set_bond(name: str) -> Vector:
    s = Scene(
        name,
        "Validator 0 bonds 50 coins to a new key in a block at slot 2 (epoch 0). The validator "
        "set of epoch E is the stake after the checkpoint block of epoch E - 2: the new key is "
        "not in epoch 2's set (anchored at genesis) and is in epoch 3's (anchored at the epoch-1 "
        "checkpoint), with proposers drawn accordingly.",
    )
    newcomer = s.strangers[1]
    bond = s.wallet(0).build_bond(
        [s.genesis_coin(0)],
        validator=newcomer.public_key,
        amount=Amount(50 * COIN),
        fee=Amount(1_000),
        context=BlockContext(height=Height(2), slot=Slot(2)),
    )
    a = s.add(s.g, 1)
    b = s.add(a.block_id, 2, transactions=[bond])
    c = s.add(b.block_id, 5)
    s.check(validators=2, weights=False)
    s.check(validators=3, proposer=range(12, 16), weights=False)
    del c
    return s.vector()


# -- main ------------------------------------------------------------------------------------


def generate() -> list[Vector]:
    """Every vector of the catalogue, by name."""
    names = [entry.name for entry in CATALOGUE]
    assert len(names) == len(set(names)), "two vectors share a name"
    return sorted((entry.make(entry.name) for entry in CATALOGUE), key=lambda v: v.name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m p2pchain.testing.vectors.generate",
        description="Write the consensus step vectors (one JSON file each) to DIR.",
    )
    parser.add_argument("directory", type=Path, metavar="DIR")
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 unless DIR holds exactly the vectors generated now",
    )
    args = parser.parse_args(argv)
    vectors = generate()
    directory: Path = args.directory
    if args.check:
        return _check(vectors, directory)
    for item in vectors:
        dump_vector(item, directory / f"{item.name}.json")
    print(f"wrote {len(vectors)} vectors to {directory}")
    return 0


def _check(vectors: list[Vector], directory: Path) -> int:
    import json

    stale = []
    for item in vectors:
        path = directory / f"{item.name}.json"
        try:
            current = json.loads(path.read_text())
        except (OSError, ValueError):
            stale.append(item.name)
            continue
        if current != json.loads(json.dumps(vector_json(item))):
            stale.append(item.name)
    names = {item.name for item in vectors}
    extra = sorted(p.stem for p in directory.glob("*.json") if p.stem not in names)
    for name in stale:
        print(f"out of date: {name}")
    for name in extra:
        print(f"not generated: {name}")
    if stale or extra:
        print(f"regenerate with: python -m p2pchain.testing.vectors.generate {directory}")
        return 1
    print(f"{len(vectors)} vectors up to date in {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
