"""Catalogue, chain level: gossiped transactions breaking each ledger rule a peer can reach,
gossiped blocks and votes that break consensus rules, orphan and future-slot blocks, slashing
evidence and an equivocating proposer, lying answers to our sync requests, and IHAVE / IWANT /
GRAFT / PRUNE abuse.

Every object is built with the ledger's own types and signed with the keys the node would
accept (the validator key, the demo wallets of the genesis), then broken in one way. Each row
asserts the documented reaction read from the node: the `Disconnect` reason, the score change
in `net_peers` (a REJECT costs `GossipReject.penalty`, a bad sync answer
`bad_response_penalty`, ...), a ban, or "ignored, no penalty"; then that the node is alive,
serves an honest peer and (but for the equivocation and orphan-transaction rows, which assert
their own state) changed no state.
"""

from __future__ import annotations

import itertools
import os
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import pytest
import trio

from p2pchain.consensus import build_block, get_forkchoice_store, make_vote, on_block, on_tick
from p2pchain.consensus.governance import GovernanceDraft, is_governance
from p2pchain.consensus.store import Store, get_governance
from p2pchain.errors import (
    DecodeError,
    GossipReject,
    InvalidBlock,
    InvalidOffer,
    InvalidTransaction,
    Reason,
)
from p2pchain.ledger.block import Block, compute_body_root
from p2pchain.ledger.crypto import SecretKey, sha256, sign
from p2pchain.ledger.encoding import encode, encode_item
from p2pchain.ledger.evidence import DoubleProposal, decode_evidence
from p2pchain.ledger.genesis import genesis_state
from p2pchain.ledger.header import BlockHeader, SignedHeader, header_signing_message
from p2pchain.ledger.offer import MAX_OFFER_BYTES, Offer, check_offer, sign_offer
from p2pchain.ledger.tx import (
    GovVotePayload,
    IssuePayload,
    Lock,
    LockKind,
    MintPayload,
    OutPoint,
    ProposePayload,
    RetirePayload,
    RewardPayload,
    SlashPayload,
    Transaction,
    TxInput,
    TxKind,
    TxOutput,
    VoteChoice,
    compute_asset_id,
    gov_vote_signing_message,
)
from p2pchain.ledger.types import AssetId, BlockId, Epoch, Height, TxId
from p2pchain.ledger.validation import BlockContext, validate_transaction
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.ledger.wallet import Wallet
from p2pchain.protocol.gossip import GossipParams
from p2pchain.protocol.messages import (
    MAX_BLOCKS_RESPONSE_BYTES,
    MAX_GOSSIP_DATA_BYTES,
    MAX_IWANT_IDS,
    MESSAGE_ID_BYTES,
    Blocks,
    DisconnectReason,
    GetBlocksById,
    GetBlocksByRange,
    Graft,
    IHave,
    IWant,
    Prune,
    Publish,
    Status,
    Topic,
)
from p2pchain.protocol.sync import SyncParams
from p2pchain.rpc import RpcError
from p2pchain.testing.roots import state_root_on
from tests.robustness.harness import (
    WAIT_S,
    NodeProcess,
    SecurePeer,
    Sources,
    Verdict,
    closed_at_accept,
    fresh_keys,
)

soak = pytest.mark.soak

REJECT = float(GossipReject.penalty)
BEHAVIOUR = GossipParams().behaviour_penalty
BAD_RESPONSE = SyncParams().bad_response_penalty
SYNC_TIMEOUT = SyncParams().timeout_penalty
TOLERANCE = 0.5
POLL_S = 0.1
"""Scores decay (half-life 600 s): a row's few seconds move a penalty by far less than this."""
COIN = 100_000_000
FEE = 1_000_000


# -- the ledger and chain as the node sees them ----------------------------------------------


def now_slot(node: NodeProcess) -> int:
    now_ms = time.time_ns() // 1_000_000
    return max(0, (now_ms - node.genesis.genesis_time_ms) // node.params.slot_ms)


class Ledger:
    """The genesis state of the node's chain, with the keys that may spend it."""

    def __init__(self, node: NodeProcess, transport: str = "tcp") -> None:
        self.node = node
        self.params = node.params
        self.genesis, self.view = genesis_state(node.genesis, node.params)
        self.reward = self.genesis.transactions[0]
        self.wallets = [Wallet(key, node.params) for key in node.wallet_keys]
        if transport == "ws":
            # The other transport's row sends the mirror image, not the same bytes again
            # (which the node would drop unjudged as a duplicate).
            self.wallets.reverse()
        self.validator = Wallet(node.validator_key, node.params)
        self.native = AssetId(node.params.native_asset)

    def coin(self, wallet: int) -> tuple[OutPoint, TxOutput]:
        """Wallet `wallet`'s genesis allocation."""
        address = self.wallets[wallet].address
        for index, output in enumerate(self.reward.outputs):
            if output.address == address and output.lock.kind is LockKind.NONE:
                return OutPoint(txid=self.reward.txid, index=index), output
        raise AssertionError("no allocation for that wallet")

    @property
    def stake_coin(self) -> tuple[OutPoint, TxOutput]:
        index = len(self.node.genesis.allocations)
        outpoint = OutPoint(txid=self.reward.txid, index=index)
        assert self.reward.outputs[index].lock.kind is LockKind.STAKE
        return outpoint, self.reward.outputs[index]

    def context(self) -> BlockContext:
        return BlockContext(height=1, slot=max(1, now_slot(self.node)))

    def pay(self, wallet: int = 0, amount: int = COIN) -> TxOutput:
        return TxOutput(asset=self.native, amount=amount, address=self.wallets[wallet].address)

    def transfer(self, wallet: int = 0, *, amount: int = COIN, fee: int = FEE) -> Transaction:
        """A valid transfer of wallet `wallet`'s genesis coin to the other wallet."""
        return self.wallets[wallet].build_transfer(
            [self.coin(wallet)], [self.pay(1 - wallet, amount)], fee=fee, context=self.context()
        )

    def spend(
        self,
        coins: Sequence[tuple[OutPoint, TxOutput]],
        outputs: Sequence[TxOutput],
        *,
        kind: TxKind = TxKind.TRANSFER,
        payload: object = None,
        signer: Wallet | None = None,
    ) -> Transaction:
        inputs = tuple(TxInput(outpoint=outpoint) for outpoint, _ in coins)
        tx = Transaction(kind=kind, inputs=inputs, outputs=tuple(outputs), payload=payload)  # type: ignore[arg-type]
        return (signer or self.wallets[0]).sign(tx)

    def reason(self, tx: Transaction) -> Reason | None:
        """The verdict of the governance and ledger rules (in the node's order) on `tx`
        against the genesis state, computed here."""
        try:
            if is_governance(tx):
                store = local_store(self.node)
                slot = self.context().slot
                GovernanceDraft(get_governance(store, store.genesis_id, slot)).check(tx)
            validate_transaction(tx, self.view.copy(), self.params, self.context())
        except InvalidTransaction as exc:
            return exc.reason
        return None


def local_store(node: NodeProcess) -> Store:
    """A fork-choice store at the node's genesis, ticked to the current slot."""
    store = get_forkchoice_store(node.params, node.genesis)
    on_tick(store, now_slot(node))
    return store


def resign(
    node: NodeProcess, block: Block, key: SecretKey | None = None, **header: object
) -> Block:
    """`block` with header fields replaced and the body and state roots recomputed (the state
    root on the node's genesis state when the block's parent is known here), signed by `key` with
    fresh auxiliary randomness: the same header signed twice gives two signatures, so that two
    rows gossiping one header (a block with no transactions has no salted reward) never send
    the same bytes (a repeat would be a duplicate, dropped unjudged)."""
    key = key or node.validator_key
    new_header = replace(
        block.header,
        body_root=compute_body_root(block.transactions, block.votes),
        state_root=state_root_on(
            local_store(node), block.header.parent, block.transactions, slot=block.header.slot
        ),
        **header,  # type: ignore[arg-type]
    )
    message = header_signing_message(node.params.chain_id, new_header.block_id)
    signature = sign(key.secret, message, os.urandom(32))
    return replace(block, header=new_header, signature=signature)


_salts = itertools.count(1)


def proposal(node: NodeProcess, *, slot: int | None = None) -> Block:
    """A valid block on genesis for the current slot, signed by the proposer. Its reward pays
    a little less than it may, by a different amount each time, so that no two rows gossip the
    same bytes (a repeat would be a duplicate, dropped unjudged)."""
    store = local_store(node)
    if slot is None:
        slot = max(1, now_slot(node))
    on_tick(store, slot)
    block = build_block(store, store.genesis_id, slot, node.validator_key)
    reward = block.transactions[0]
    paid = replace(reward.outputs[0], amount=reward.outputs[0].amount - next(_salts))
    return resign(node, replace(block, transactions=(replace(reward, outputs=(paid,)),)))


# -- the raw peer's side of a row ------------------------------------------------------------


class Attacker:
    """A handshaken raw peer with a known key, and its score as the node reports it."""

    def __init__(self, node: NodeProcess, peer: SecurePeer, key: SecretKey) -> None:
        self.node = node
        self.peer = peer
        self.key = key
        self.peer_id = "0x" + bytes(key.public_key).hex()
        self._nonce = 1_000

    @classmethod
    async def connect(cls, node: NodeProcess, transport: str, source: str) -> Attacker:
        keys = fresh_keys()
        peer = await SecurePeer.connect(node, transport, source, keys=keys)
        assert peer.is_active, peer.ending
        return cls(node, peer, keys.identity)

    async def barrier(self) -> None:
        """A Ping round trip: the node has read everything sent before it."""
        self._nonce += 1
        assert await self.peer.ping(self._nonce), self.peer.ending

    async def score(self) -> float:
        await self.barrier()
        scores = await self.node.peer_scores()
        assert self.peer_id in scores, f"not connected: {self.peer.ending}"
        return scores[self.peer_id]

    async def wait_score(self, below: float, *, within: float = WAIT_S) -> float:
        """Until the score drops below `below` (bounded, polled at most 10 times a second to
        stay inside the Ping budget); the score then."""
        with trio.fail_after(within):
            while (score := await self.score()) >= below:
                await self.idle(POLL_S)
        return score

    async def idle(self, seconds: float) -> None:
        """Read (and answer) what the node sends for `seconds`: the pace of a poll."""
        with trio.move_on_after(seconds):
            await self.peer.wait_for(lambda: False)

    async def publish(self, topic: Topic, data: bytes) -> None:
        await self.peer.send(Publish(topic=topic, data=data))

    async def costs(self, topic: Topic, data: bytes, expected: float) -> bool:
        """Publish `data`, then a malformed message of the same topic whose REJECT is the
        barrier: True if `data` cost `expected`. Validations run in a pool and may finish in
        any order, so this waits until both penalties could have landed, then reads again."""
        before = await self.score()
        await self.publish(topic, data)
        await self.publish(topic, b"\xc2" + os.urandom(8))  # junk: always a REJECT
        await self.wait_score(before - expected - REJECT + TOLERANCE)
        cost = before - await self.score() - REJECT
        assert abs(cost - expected) < TOLERANCE, f"cost {cost}, expected {expected}"
        return True

    async def aclose(self) -> None:
        await self.peer.aclose()


def penalty(cost: float, expected: float) -> bool:
    return abs(cost - expected) < TOLERANCE


# -- an equivocating proposer (first: it changes the head) --------------------------------


async def test_an_equivocating_proposer_is_caught_and_its_evidence_gossiped(
    node: NodeProcess, sources: Sources
) -> None:
    """Two valid blocks of the proposer for one slot: both join the block tree (each is valid
    on its own), relaying them costs nothing, and the node gossips the double-proposal
    evidence to its peers (flood publish, so to this one too).

    First in the module and over TCP only: the node convicts a key once (it then stops
    watching what that key signs), and every later row of the module signs with that key
    without having to keep its headers apart by slot.
    """
    slot = max(1, now_slot(node))
    first, second = proposal(node, slot=slot), proposal(node, slot=slot)
    assert first.block_id != second.block_id
    verdict = await Verdict.before_attack(node)
    attacker = await Attacker.connect(node, "tcp", next(sources.group()))
    peer = attacker.peer

    def evidence() -> list[bytes]:
        return [
            m.data for m in peer.received if isinstance(m, Publish) and m.topic is Topic.EVIDENCE
        ]

    try:
        before = await attacker.score()
        await attacker.publish(Topic.BLOCK, first.encoded)
        await attacker.publish(Topic.BLOCK, second.encoded)
        await peer.wait_for(lambda: bool(evidence()))
        assert evidence(), peer.ending
        found = decode_evidence(evidence()[0])
        assert isinstance(found, DoubleProposal)
        assert {found.first.header.block_id, found.second.header.block_id} == {
            first.block_id,
            second.block_id,
        }
        assert penalty(before - await attacker.score(), 0.0)
    finally:
        await attacker.aclose()
    for block in (first, second):
        got = await node.rpc("chain_getBlock", "0x" + bytes(block.block_id).hex())
        assert isinstance(got, dict)
        assert got["height"] == 1
    await verdict.check("tcp", state_changes=True)
    head = await node.rpc("chain_head")
    assert isinstance(head, dict)
    assert head["height"] == 1
    assert await node.snapshot() == {**verdict.before, "head": head}


# -- transactions ------------------------------------------------------------------------------


def _lock(kind: LockKind, value: int = 0, key: bytes = b"") -> Lock:
    return Lock(kind=kind, value=value, key=key)


def _random_outpoint() -> OutPoint:
    return OutPoint(txid=TxId(os.urandom(32)), index=0)


def _unknown(ledger: Ledger, count: int) -> list[tuple[OutPoint, TxOutput]]:
    return [(_random_outpoint(), ledger.pay()) for _ in range(count)]


TxCase = Callable[[Ledger], Transaction | bytes]


def _too_many_inputs(ledger: Ledger) -> Transaction:
    return ledger.spend(_unknown(ledger, ledger.params.max_tx_inputs + 1), [ledger.pay(1)])


def _too_many_outputs(ledger: Ledger) -> Transaction:
    outputs = [ledger.pay(1, 1) for _ in range(ledger.params.max_tx_outputs + 1)]
    return ledger.spend([ledger.coin(0)], outputs)


def _tx_too_large(ledger: Ledger) -> Transaction:
    count = ledger.params.max_tx_bytes // 130 + 1  # each signed input takes ~140 bytes
    return ledger.spend(_unknown(ledger, count), [ledger.pay(1)])


def _output(ledger: Ledger, **fields: object) -> Transaction:
    return ledger.spend([ledger.coin(0)], [replace(ledger.pay(1), **fields)])  # type: ignore[arg-type]


def _slash_evidence(node: NodeProcess, valid: bool) -> DoubleProposal:
    """Two headers of the validator for one slot; signed (valid) or with zero signatures."""
    headers = [
        BlockHeader(
            parent=node.genesis_id,
            height=1,
            slot=1,
            proposer=node.validator_key.public_key,
            body_root=sha256(os.urandom(32)),
            state_root=sha256(os.urandom(32)),
        )
        for _ in range(2)
    ]

    def signed(header: BlockHeader) -> SignedHeader:
        message = header_signing_message(node.params.chain_id, header.block_id)
        signature = node.validator_key.sign(message) if valid else bytes(64)
        return SignedHeader(header=header, signature=signature)

    return DoubleProposal(first=signed(headers[0]), second=signed(headers[1]))


def _take(ledger: Ledger, *, until: int = 10**6, kind: TxKind = TxKind.TRANSFER) -> Transaction:
    """Wallet 1 takes wallet 0's offer of its genesis coin (as `kind`)."""
    maker, taker = ledger.wallets
    coin = ledger.coin(0)
    offer = maker.make_offer(coin, ledger.pay(0, COIN + next(_salts)), until=Height(until))
    tx = taker.build_take([(offer, coin[1])], [ledger.coin(1)], fee=FEE, context=ledger.context())
    return taker.sign(replace(tx, kind=kind))


def _propose(
    ledger: Ledger,
    changes: Sequence[tuple[str, int]] = (("block_reward", COIN),),
    *,
    activation: int | None = None,
    short: int = 0,
) -> Transaction:
    """Wallet 0 proposes `changes`, paying the deposit less `short` base units; the default
    activation is valid in this epoch and the next (a row may cross an epoch boundary)."""
    params = ledger.params
    if activation is None:
        activation = ledger.context().epoch(params) + params.gov_voting_epochs + 2
    coin = ledger.coin(0)
    fee = -short if short else FEE + next(_salts)
    change = ledger.pay(0, coin[1].amount - params.gov_deposit - fee)
    payload = ProposePayload(
        changes=tuple((name.encode(), value) for name, value in changes),
        activation=Epoch(activation),
        refund=ledger.wallets[0].address,
    )
    return ledger.spend([coin], [change], kind=TxKind.PROPOSE, payload=payload)


def _gov_vote(ledger: Ledger) -> Transaction:
    """The validator's yes on a proposal nobody made, wallet 0 paying."""
    proposal = TxId(os.urandom(32))
    key = ledger.node.validator_key
    message = gov_vote_signing_message(ledger.params.chain_id, proposal, VoteChoice.YES)
    payload = GovVotePayload(
        proposal=proposal,
        choice=VoteChoice.YES,
        validator=key.public_key,
        signature=key.sign(message),
    )
    change = ledger.pay(0, ledger.coin(0)[1].amount - FEE)
    return ledger.spend([ledger.coin(0)], [change], kind=TxKind.GOV_VOTE, payload=payload)


def _retire_native(ledger: Ledger) -> Transaction:
    payload = RetirePayload(
        asset=ledger.native, amount=COIN, beneficiary=b"anyone", purpose=b"nothing"
    )
    return ledger.spend([ledger.coin(0)], [ledger.pay(0)], kind=TxKind.RETIRE, payload=payload)


REJECTED_TXS: dict[str, tuple[Reason, TxCase]] = {
    "offer-taken-in-a-bond": (Reason.BAD_OFFER, lambda x: _take(x, kind=TxKind.BOND)),
    "retirement-of-the-native-coin": (Reason.BAD_RETIREMENT, _retire_native),
    "proposal-short-of-its-deposit": (Reason.BAD_PROPOSAL, lambda x: _propose(x, short=1)),
    "proposal-without-changes": (Reason.BAD_PROPOSAL, lambda x: _propose(x, ())),
    "proposal-of-a-fixed-parameter": (
        Reason.BAD_PROPOSAL,
        lambda x: _propose(x, (("slot_ms", 1),)),
    ),
    "proposal-out-of-range": (Reason.BAD_PROPOSAL, lambda x: _propose(x, (("block_reward", 0),))),
    "too-many-inputs": (Reason.TOO_MANY_INPUTS, _too_many_inputs),
    "too-many-outputs": (Reason.TOO_MANY_OUTPUTS, _too_many_outputs),
    "tx-too-large": (Reason.TX_TOO_LARGE, _tx_too_large),
    "amount-zero": (Reason.AMOUNT_OUT_OF_RANGE, lambda x: _output(x, amount=0)),
    "amount-over-max-money": (
        Reason.AMOUNT_OUT_OF_RANGE,
        lambda x: _output(x, amount=x.params.max_money + 1),
    ),
    "value-overflow": (
        Reason.VALUE_OVERFLOW,
        lambda x: x.spend([x.coin(0)], [x.pay(1, x.params.max_money)] * 2),
    ),
    "duplicate-input": (
        Reason.DUPLICATE_INPUT,
        lambda x: x.spend([x.coin(0), x.coin(0)], [x.pay(1)]),
    ),
    "no-inputs": (Reason.NO_INPUTS, lambda x: x.spend([], [x.pay(1)])),
    "no-outputs": (Reason.NO_OUTPUTS, lambda x: x.spend([x.coin(0)], [])),
    "stake-output-in-a-transfer": (
        Reason.BAD_STAKE_OUTPUT,
        lambda x: _output(x, lock=_lock(LockKind.STAKE, key=x.node.validator_key.public_key)),
    ),
    "bond-without-stake": (
        Reason.BAD_STAKE_OUTPUT,
        lambda x: x.spend([x.coin(0)], [x.pay(0)], kind=TxKind.BOND),
    ),
    "bond-to-an-invalid-key": (
        Reason.BAD_STAKE_OUTPUT,
        lambda x: x.spend(
            [x.coin(0)],
            [replace(x.pay(0), lock=_lock(LockKind.STAKE, key=b"\xff" * 32))],
            kind=TxKind.BOND,
        ),
    ),
    "unbonding-output-in-a-transfer": (
        Reason.BAD_UNBOND,
        lambda x: _output(x, lock=_lock(LockKind.UNBONDING, 9, x.node.validator_key.public_key)),
    ),
    "stake-too-small": (
        Reason.STAKE_TOO_SMALL,
        lambda x: x.spend(
            [x.coin(0)],
            [
                replace(
                    x.pay(0, x.params.min_stake - 1),
                    lock=_lock(LockKind.STAKE, key=x.node.validator_key.public_key),
                )
            ],
            kind=TxKind.BOND,
        ),
    ),
    "issue-empty-name": (
        Reason.BAD_ASSET_NAME,
        lambda x: x.spend(
            [x.coin(0)], [x.pay(0)], kind=TxKind.ISSUE, payload=IssuePayload(name=b"", cap=0)
        ),
    ),
    "issue-cap-over-max-money": (
        Reason.AMOUNT_OUT_OF_RANGE,
        lambda x: x.spend(
            [x.coin(0)],
            [x.pay(0)],
            kind=TxKind.ISSUE,
            payload=IssuePayload(name=b"name", cap=x.params.max_money + 1),
        ),
    ),
    "reward-with-an-input": (
        Reason.BAD_REWARD,
        lambda x: x.spend(
            [x.coin(0)], [x.pay(0)], kind=TxKind.REWARD, payload=RewardPayload(height=1)
        ),
    ),
    "reward-outside-a-block": (
        Reason.MISPLACED_REWARD,
        lambda x: Transaction(
            kind=TxKind.REWARD,
            outputs=(replace(x.pay(0), lock=_lock(LockKind.HEIGHT, 1 + x.params.reward_maturity)),),
            payload=RewardPayload(height=1),
        ),
    ),
    "slash-with-outputs": (
        Reason.BAD_TX_KIND,
        lambda x: Transaction(
            kind=TxKind.SLASH,
            outputs=(x.pay(0),),
            payload=SlashPayload(evidence=_slash_evidence(x.node, valid=True)),
        ),
    ),
    "witness-key-mismatch": (
        Reason.WITNESS_KEY_MISMATCH,
        lambda x: x.spend([x.coin(0)], [x.pay(1)], signer=x.wallets[1]),
    ),
    "stake-locked": (
        Reason.STAKE_LOCKED,
        lambda x: x.spend([x.stake_coin], [x.pay(1)], signer=x.validator),
    ),
    "negative-fee": (
        Reason.NEGATIVE_FEE,
        lambda x: x.spend([x.coin(0)], [x.pay(1, x.coin(0)[1].amount + 1)]),
    ),
    "bad-signature": (
        Reason.BAD_SIGNATURE,
        lambda x: x.transfer().with_inputs(
            tuple(replace(i, signature=bytes(64)) for i in x.transfer().inputs)
        ),
    ),
    "signed-for-another-chain": (
        Reason.BAD_SIGNATURE,
        lambda x: Wallet(x.wallets[0].key, replace(x.params, chain_id=x.params.chain_id + 1)).sign(
            x.transfer()
        ),
    ),
}


def _with_lock_bytes(ledger: Ledger) -> bytes:
    """A transfer whose NONE lock carries a value: `bad-lock`, refused while decoding."""
    return encode(_output(ledger, lock=_lock(LockKind.NONE, 5)))


def _with_long_name(ledger: Ledger) -> bytes:
    tx = ledger.spend(
        [ledger.coin(0)],
        [ledger.pay(0)],
        kind=TxKind.ISSUE,
        payload=IssuePayload(name=b"n" * 33, cap=0),
    )
    return encode(tx)


MALFORMED_TXS: dict[str, Callable[[Ledger], bytes]] = {
    "junk": lambda x: os.urandom(64),
    "unknown-kind": lambda x: encode(x.transfer())[:2] + b"\x08" + encode(x.transfer())[3:],
    "bad-lock": _with_lock_bytes,
    "asset-name-past-32-bytes": _with_long_name,
    "trailing-bytes": lambda x: encode(x.transfer()) + b"\x00",
    "short-signature": lambda x: encode(x.transfer())[:-60],
}


@pytest.mark.parametrize("case", sorted(REJECTED_TXS))
async def test_a_gossiped_transaction_breaking_a_rule_is_rejected(
    node: NodeProcess, sources: Sources, transport: str, case: str
) -> None:
    """A rule that holds in every view: REJECT, `GossipReject.penalty`, never pooled."""
    reason, build = REJECTED_TXS[case]
    ledger = Ledger(node, transport)
    tx = build(ledger)
    assert isinstance(tx, Transaction)
    assert ledger.reason(tx) is reason  # the case breaks exactly the rule it names
    verdict = await Verdict.before_attack(node)
    attacker = await Attacker.connect(node, transport, next(sources.group()))
    try:
        assert await attacker.costs(Topic.TRANSACTION, encode(tx), REJECT)
    finally:
        await attacker.aclose()
    with pytest.raises(RpcError) as refused:  # and the node names the same reason
        await node.rpc("tx_submit", "0x" + encode(tx).hex())
    assert refused.value.reason == reason.value
    await verdict.check(transport)


@pytest.mark.parametrize("case", sorted(MALFORMED_TXS))
async def test_a_malformed_gossiped_transaction_is_rejected(
    node: NodeProcess, sources: Sources, transport: str, case: str
) -> None:
    data = MALFORMED_TXS[case](Ledger(node, transport))
    with pytest.raises(DecodeError):
        Transaction.from_bytes(data)
    verdict = await Verdict.before_attack(node)
    attacker = await Attacker.connect(node, transport, next(sources.group()))
    try:
        assert await attacker.costs(Topic.TRANSACTION, data, REJECT)
    finally:
        await attacker.aclose()
    await verdict.check(transport)


def _cap_exceeded(ledger: Ledger) -> Transaction:
    asset = compute_asset_id(ledger.coin(0)[0])
    minted = TxOutput(asset=asset, amount=10, address=ledger.wallets[0].address)
    change = ledger.pay(0, ledger.coin(0)[1].amount - FEE)
    return ledger.spend(
        [ledger.coin(0)],
        [minted, change],
        kind=TxKind.ISSUE,
        payload=IssuePayload(name=b"capped", cap=5),
    )


def _mint_unknown_asset(ledger: Ledger) -> Transaction:
    asset = AssetId(os.urandom(32))
    minted = TxOutput(asset=asset, amount=10, address=ledger.wallets[0].address)
    return ledger.spend(
        [ledger.coin(0)], [minted], kind=TxKind.MINT, payload=MintPayload(asset=asset)
    )


def _unbond_of_a_plain_coin(ledger: Ledger) -> Transaction:
    epoch = ledger.context().epoch(ledger.params) + ledger.params.unbonding_epochs
    lock = _lock(LockKind.UNBONDING, epoch, ledger.node.validator_key.public_key)
    out = replace(ledger.pay(0, ledger.coin(0)[1].amount - FEE), lock=lock)
    return ledger.spend([ledger.coin(0)], [out], kind=TxKind.UNBOND)


def _spent_on_the_chain(ledger: Ledger) -> Transaction:
    """An output index the genesis reward never had: its transaction is on the chain."""
    gone = (OutPoint(txid=ledger.reward.txid, index=99), ledger.pay(0))
    return ledger.spend([gone], [ledger.pay(1)])


IGNORED_TXS: dict[str, tuple[Reason, Reason, TxCase]] = {
    # case: (the ledger's reason, the reason `tx_submit` gives, the transaction)
    # an offer expired at our next height may still be takeable at a peer's (a race)
    "offer-expired": (Reason.OFFER_EXPIRED, Reason.OFFER_EXPIRED, lambda x: _take(x, until=0)),
    "cap-exceeded": (Reason.CAP_EXCEEDED, Reason.CAP_EXCEEDED, _cap_exceeded),
    "mint-of-an-unknown-asset": (Reason.UNKNOWN_ASSET, Reason.UNKNOWN_ASSET, _mint_unknown_asset),
    "unbond-of-a-plain-coin": (Reason.BAD_UNBOND, Reason.BAD_UNBOND, _unbond_of_a_plain_coin),
    # governance moves with the epoch and the branch: a peer may judge it differently
    "proposal-activating-in-its-window": (
        Reason.BAD_ACTIVATION,
        Reason.BAD_ACTIVATION,
        lambda x: _propose(x, activation=x.context().epoch(x.params) + 1),
    ),
    "gov-vote-on-an-unknown-proposal": (
        Reason.UNKNOWN_PROPOSAL,
        Reason.UNKNOWN_PROPOSAL,
        _gov_vote,
    ),
    # Gossip: an outpoint of a transaction on the chain that is not unspent; a local
    # submission checks for unknown inputs first.
    "spends-what-the-chain-spent": (
        Reason.MISSING_INPUT,
        Reason.MISSING_INPUT,
        _spent_on_the_chain,
    ),
}


@pytest.mark.parametrize("case", sorted(IGNORED_TXS))
async def test_a_gossiped_transaction_failing_in_our_view_is_ignored(
    node: NodeProcess, sources: Sources, transport: str, case: str
) -> None:
    """A failure that depends on the view: IGNORE, no penalty, not pooled."""
    reason, submitted, build = IGNORED_TXS[case]
    ledger = Ledger(node, transport)
    tx = build(ledger)
    assert isinstance(tx, Transaction)
    assert ledger.reason(tx) is reason
    verdict = await Verdict.before_attack(node)
    attacker = await Attacker.connect(node, transport, next(sources.group()))
    try:
        assert await attacker.costs(Topic.TRANSACTION, encode(tx), 0.0)
    finally:
        await attacker.aclose()
    with pytest.raises(RpcError) as refused:
        await node.rpc("tx_submit", "0x" + encode(tx).hex())
    assert refused.value.reason == submitted.value
    await verdict.check(transport)


# -- standing offers ---------------------------------------------------------------------------


def _offer(
    ledger: Ledger,
    *,
    coin: tuple[OutPoint, TxOutput] | None = None,
    wanted: TxOutput | None = None,
    until: int = 10**6,
    signer: SecretKey | None = None,
) -> Offer:
    """An offer of wallet 0's genesis coin for a salted amount (no two rows send the same
    bytes), signed by `signer` (wallet 0's key by default)."""
    wallet = ledger.wallets[0]
    coin = coin or ledger.coin(0)
    wanted = wanted or ledger.pay(0, COIN + next(_salts))
    return sign_offer(signer or wallet.key, ledger.params.chain_id, coin[0], wanted, Height(until))


def _forged_offer(ledger: Ledger) -> Offer:
    offer = _offer(ledger)
    return replace(offer, signature=_offer(ledger).signature)


def _offer_by_a_stranger(ledger: Ledger) -> Offer:
    return _offer(ledger, signer=_stranger())


def _offer_wanting_stake(ledger: Ledger) -> Offer:
    lock = Lock(kind=LockKind.STAKE, key=ledger.node.validator_key.public_key)
    return _offer(ledger, wanted=replace(ledger.pay(0, COIN + next(_salts)), lock=lock))


OFFER_CASES: dict[str, tuple[Reason, Callable[[Ledger], Offer], float]] = {
    # case: (the rules' reason, the offer, what gossiping it costs its sender)
    "bad-signature": (Reason.BAD_SIGNATURE, _forged_offer, REJECT),
    "signed-by-a-stranger": (Reason.WITNESS_KEY_MISMATCH, _offer_by_a_stranger, REJECT),
    "wants-a-stake-output": (Reason.BAD_OFFER, _offer_wanting_stake, REJECT),
    # failures that depend on the view: ignored
    "expired": (Reason.OFFER_EXPIRED, lambda x: _offer(x, until=0), 0.0),
    "coin-not-unspent": (
        Reason.MISSING_INPUT,
        lambda x: _offer(x, coin=(OutPoint(txid=x.reward.txid, index=99), x.pay(0))),
        0.0,
    ),
}


def _offer_verdict(ledger: Ledger, offer: Offer) -> Reason | None:
    """What the rules say of `offer` against the genesis state, computed here."""
    offered = ledger.view.get(offer.outpoint)
    if offered is None:
        return Reason.MISSING_INPUT
    try:
        check_offer(offer, offered, ledger.params, Height(1))
    except InvalidOffer as exc:
        return exc.reason
    return None


async def _gossip_costs(
    node: NodeProcess, sources: Sources, transport: str, data: bytes, expected: float
) -> None:
    """A raw peer gossips `data` as an offer: it costs `expected`, the node changes nothing."""
    verdict = await Verdict.before_attack(node)
    attacker = await Attacker.connect(node, transport, next(sources.group()))
    try:
        assert await attacker.costs(Topic.OFFER, data, expected)
    finally:
        await attacker.aclose()
    await verdict.check(transport)


@pytest.mark.parametrize("case", sorted(OFFER_CASES))
async def test_a_gossiped_offer_that_cannot_be_taken_is_refused(
    node: NodeProcess, sources: Sources, transport: str, case: str
) -> None:
    reason, build, cost = OFFER_CASES[case]
    ledger = Ledger(node, transport)
    offer = build(ledger)
    assert _offer_verdict(ledger, offer) is reason  # the case breaks exactly the rule it names
    await _gossip_costs(node, sources, transport, encode(offer), cost)


async def test_an_oversize_offer_is_rejected_before_decoding(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    data = encode(_offer(Ledger(node, transport))) + bytes(MAX_OFFER_BYTES)
    await _gossip_costs(node, sources, transport, data, REJECT)


# -- evidence and votes ------------------------------------------------------------------------


async def test_evidence_with_bad_signatures_is_rejected(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    data = encode_item(_slash_evidence(node, valid=False).to_rlp())
    verdict = await Verdict.before_attack(node)
    attacker = await Attacker.connect(node, transport, next(sources.group()))
    try:
        assert await attacker.costs(Topic.EVIDENCE, data, REJECT)
    finally:
        await attacker.aclose()
    await verdict.check(transport)


async def test_evidence_against_a_key_without_stake_is_ignored(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    evidence = _slash_evidence(replace_key(node, _stranger()), valid=True)
    verdict = await Verdict.before_attack(node)
    attacker = await Attacker.connect(node, transport, next(sources.group()))
    try:
        assert await attacker.costs(Topic.EVIDENCE, encode_item(evidence.to_rlp()), 0.0)
    finally:
        await attacker.aclose()
    await verdict.check(transport)


def replace_key(node: NodeProcess, key: SecretKey) -> NodeProcess:
    """`node` as seen by a signer holding `key` instead of the validator key."""
    return replace(node, validator_key=key)


def _vote(node: NodeProcess, **fields: object) -> Vote:
    """A vote of the validator for genesis at the current slot, signature replaced."""
    store = local_store(node)
    vote = make_vote(store, node.validator_key, max(1, now_slot(node)))
    return replace(vote, **fields)  # type: ignore[arg-type]


def _signed_by(node: NodeProcess, key: SecretKey, vote: Vote) -> Vote:
    vote = replace(vote, validator=key.public_key)
    return replace(vote, signature=key.sign(vote.signing_message(node.params.chain_id)))


def _stranger() -> SecretKey:
    return SecretKey.from_entropy(os.urandom(32))


def _signature_of_another_vote(node: NodeProcess) -> Vote:
    vote = _vote(node)
    other = _signed_by(node, node.validator_key, replace(vote, head=BlockId(os.urandom(32))))
    return replace(vote, signature=other.signature)


def _bad_target(node: NodeProcess) -> Vote:
    target = Checkpoint(epoch=1_000 + int.from_bytes(os.urandom(3)), block_id=node.genesis_id)
    return _signed_by(node, node.validator_key, _vote(node, target=target))


def _far_future_vote(node: NodeProcess) -> Vote:
    slot = now_slot(node) + 1_000 + int.from_bytes(os.urandom(3))
    return _signed_by(node, node.validator_key, _vote(node, slot=slot))


VOTES: dict[str, tuple[float, Callable[[NodeProcess], Vote | bytes]]] = {
    # Each case is random in some field: the tcp and ws rows never send the same bytes.
    "bad-signature": (REJECT, lambda n: _vote(n, signature=os.urandom(64))),
    "signature-of-another-vote": (REJECT, _signature_of_another_vote),
    "unknown-validator": (REJECT, lambda n: _signed_by(n, _stranger(), _vote(n))),
    "bad-target": (REJECT, _bad_target),
    "unknown-head": (
        0.0,
        lambda n: _signed_by(n, n.validator_key, _vote(n, head=BlockId(os.urandom(32)))),
    ),
    "far-future-slot": (0.0, _far_future_vote),
    "malformed": (REJECT, lambda n: encode(_vote(n)) + os.urandom(3)),
}


@pytest.mark.parametrize("case", sorted(VOTES))
async def test_a_bad_gossiped_vote(
    node: NodeProcess, sources: Sources, transport: str, case: str
) -> None:
    """A vote breaking a rule is a REJECT; one that may become valid later (unknown head,
    a slot ahead of our clock) is ignored without blame. Never counted: finality unchanged."""
    expected, build = VOTES[case]
    vote = build(node)
    data = vote if isinstance(vote, bytes) else encode(vote)
    verdict = await Verdict.before_attack(node)
    attacker = await Attacker.connect(node, transport, next(sources.group()))
    try:
        assert await attacker.costs(Topic.VOTE, data, expected)
    finally:
        await attacker.aclose()
    await verdict.check(transport)


# -- blocks ------------------------------------------------------------------------------------


def _with_body(node: NodeProcess, *txs: Transaction, votes: Sequence[Vote] = ()) -> Block:
    """A proposal whose body gets `txs` after its reward (and `votes`), re-signed."""
    block = proposal(node)
    body = (block.transactions[0], *txs)
    return resign(node, replace(block, transactions=body, votes=tuple(votes)))


def _bad_reward(node: NodeProcess) -> Block:
    block = proposal(node)
    reward = block.transactions[0]
    more = replace(reward.outputs[0], amount=node.params.block_reward + 1)
    return resign(node, replace(block, transactions=(replace(reward, outputs=(more,)),)))


def _reward_not_first(node: NodeProcess) -> Block:
    return resign(node, replace(proposal(node), transactions=(Ledger(node).transfer(),)))


def _duplicate_tx(node: NodeProcess) -> Block:
    tx = Ledger(node).transfer()
    return _with_body(node, tx, tx)


def _conflicting_spend(node: NodeProcess) -> Block:
    ledger = Ledger(node)
    return _with_body(node, ledger.transfer(), ledger.transfer(amount=2 * COIN))


def _invalid_transaction(node: NodeProcess) -> Block:
    ledger = Ledger(node)
    return _with_body(node, ledger.spend([ledger.coin(0)], [ledger.pay(1, 10**15)]))


def _too_many_votes(node: NodeProcess) -> Block:
    vote = _vote(node)
    votes = [replace(vote, slot=i) for i in range(node.params.max_block_votes + 1)]
    return _with_body(node, votes=votes)


def _too_many_bytes(node: NodeProcess) -> Block:
    """Over `max_block_bytes`, yet inside one gossip message."""
    ledger = Ledger(node)
    filler = [ledger.spend(_unknown(ledger, 600), [ledger.pay(1)]) for _ in range(25)]
    block = _with_body(node, *filler)
    assert node.params.max_block_bytes < len(block.encoded) < MAX_GOSSIP_DATA_BYTES
    return block


def _bad_body_root(node: NodeProcess) -> Block:
    block = proposal(node)
    return replace(block, transactions=(*block.transactions, Ledger(node).transfer()))


def _wrong_proposer(node: NodeProcess) -> Block:
    key = node.wallet_keys[0]
    return resign(node, proposal(node), key, proposer=key.public_key)


def _bad_signature(node: NodeProcess) -> Block:
    return replace(proposal(node), signature=bytes(64))


def _signed_for_another_chain(node: NodeProcess) -> Block:
    block = proposal(node)
    message = header_signing_message(node.params.chain_id + 1, block.block_id)
    return replace(block, signature=node.validator_key.sign(message))


def _invalid_vote_inside(node: NodeProcess) -> Block:
    """A vote for genesis at slot 0, well formed but with a signature that is not its own."""
    vote = make_vote(local_store(node), node.validator_key, 0)
    return _with_body(node, votes=[replace(vote, signature=os.urandom(64))])


BLOCKS: dict[str, tuple[Reason, Callable[[NodeProcess], Block]]] = {
    "bad-reward-overpaid": (Reason.BAD_REWARD, _bad_reward),
    "bad-reward-not-first": (Reason.BAD_REWARD, _reward_not_first),
    "bad-reward-no-transactions": (
        Reason.BAD_REWARD,
        lambda n: resign(n, replace(proposal(n), transactions=())),
    ),
    "duplicate-tx": (Reason.DUPLICATE_TX, _duplicate_tx),
    "conflicting-spend": (Reason.CONFLICTING_SPEND, _conflicting_spend),
    "invalid-transaction": (Reason.NEGATIVE_FEE, _invalid_transaction),
    "block-too-large-votes": (Reason.BLOCK_TOO_LARGE, _too_many_votes),
    "block-too-large-bytes": (Reason.BLOCK_TOO_LARGE, _too_many_bytes),
    "bad-body-root": (Reason.BAD_BODY_ROOT, _bad_body_root),
    "bad-height": (Reason.BAD_HEIGHT, lambda n: resign(n, proposal(n), height=2)),
    "slot-not-after-parent": (
        Reason.SLOT_NOT_AFTER_PARENT,
        lambda n: resign(n, proposal(n), slot=0),
    ),
    "wrong-proposer": (Reason.WRONG_PROPOSER, _wrong_proposer),
    "bad-proposer-signature": (Reason.BAD_PROPOSER_SIGNATURE, _bad_signature),
    "signed-for-another-chain": (Reason.BAD_PROPOSER_SIGNATURE, _signed_for_another_chain),
    "invalid-vote-inside": (Reason.BAD_VOTE_SIGNATURE, _invalid_vote_inside),
}


@pytest.mark.parametrize("case", sorted(BLOCKS))
async def test_a_gossiped_block_breaking_a_rule_is_rejected(
    node: NodeProcess, sources: Sources, transport: str, case: str
) -> None:
    """A block for the current slot on genesis that breaks one rule (checked here against a
    store of our own): REJECT, the penalty, and the head stays where it was."""
    reason, build = BLOCKS[case]
    block = build(node)
    with pytest.raises(InvalidBlock) as invalid:
        on_block(local_store(node), block, max(1, now_slot(node)))
    assert invalid.value.reason is reason
    verdict = await Verdict.before_attack(node)
    attacker = await Attacker.connect(node, transport, next(sources.group()))
    try:
        assert await attacker.costs(Topic.BLOCK, block.encoded, REJECT)
    finally:
        await attacker.aclose()
    assert await node.rpc("chain_getBlock", "0x" + bytes(block.block_id).hex()) is None
    await verdict.check(transport)


FAR_AHEAD_SLOTS = 6
"""Past `max_future_slots` (2) with room for our clock and the node's to disagree."""


async def _far_future_block(node: NodeProcess, attacker: Attacker) -> Block:
    block = proposal(node, slot=now_slot(node) + FAR_AHEAD_SLOTS)
    assert await attacker.costs(Topic.BLOCK, block.encoded, 0.0)
    assert await node.rpc("chain_getBlock", "0x" + bytes(block.block_id).hex()) is None
    return block


async def test_a_block_far_ahead_of_our_clock_is_ignored(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    verdict = await Verdict.before_attack(node)
    attacker = await Attacker.connect(node, transport, next(sources.group()))
    try:
        await _far_future_block(node, attacker)
    finally:
        await attacker.aclose()
    await verdict.check(transport)


@soak
async def test_a_block_far_ahead_of_our_clock_is_not_held_until_its_slot(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """Once its slot has come, the block is still unknown: it was dropped, not kept."""
    verdict = await Verdict.before_attack(node)
    attacker = await Attacker.connect(node, transport, next(sources.group()))
    try:
        block = await _far_future_block(node, attacker)
        with trio.fail_after(WAIT_S):
            while now_slot(node) <= block.header.slot:
                await attacker.idle(POLL_S)
        assert penalty(await attacker.score(), -REJECT)
    finally:
        await attacker.aclose()
    assert await node.rpc("chain_getBlock", "0x" + bytes(block.block_id).hex()) is None
    await verdict.check(transport)


async def test_an_orphan_flood_is_ignored_and_its_parent_requests_bounded(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """Blocks with unknown parents, three times a peer's share of the orphan pools: ignored
    without blame, and the node asks this announcer for at most `max_parent_requests_per_peer`
    (4) missing parents at once."""
    per_peer = SyncParams().max_parent_requests_per_peer
    share = SyncParams().max_orphans_per_peer
    block = proposal(node)
    verdict = await Verdict.before_attack(node)
    attacker = await Attacker.connect(node, transport, next(sources.group()))
    try:
        for _ in range(3 * share - 1):
            orphan = resign(node, block, parent=BlockId(os.urandom(32)))
            await attacker.publish(Topic.BLOCK, orphan.encoded)
        last = resign(node, block, parent=BlockId(os.urandom(32)))
        assert await attacker.costs(Topic.BLOCK, last.encoded, 0.0)
        asked = [m for m in attacker.peer.received if isinstance(m, GetBlocksById)]
        assert 1 <= len(asked) <= per_peer, asked
        assert attacker.peer.is_active
    finally:
        await attacker.aclose()
    await verdict.check(transport)


# -- sync: lying answers to our range requests -----------------------------------------------


async def _asked_for_range(attacker: Attacker, height: int = 3) -> GetBlocksByRange:
    """Claim a head `height` blocks up; the node's range request for it."""
    node = attacker.node
    status = Status(
        head=BlockId(os.urandom(32)),
        head_height=height,
        head_slot=max(height, now_slot(node)),
        finalized=Checkpoint(epoch=0, block_id=node.genesis_id),
    )
    peer = attacker.peer
    seen = sum(isinstance(m, GetBlocksByRange) for m in peer.received)
    await peer.send(status)

    def requests() -> list[GetBlocksByRange]:
        return [m for m in peer.received if isinstance(m, GetBlocksByRange)][seen:]

    await peer.wait_for(lambda: bool(requests()))
    assert requests(), peer.ending
    return requests()[0]


def _chain(node: NodeProcess, count: int) -> list[Block]:
    """`count` valid blocks from genesis, one per slot (for answers; never all imported)."""
    store = get_forkchoice_store(node.params, node.genesis)
    on_tick(store, count + 1)
    blocks: list[Block] = []
    parent = store.genesis_id
    for slot in range(1, count + 1):
        block = build_block(store, parent, slot, node.validator_key)
        on_block(store, block, count + 1)
        blocks.append(block)
        parent = block.block_id
    return blocks


def _relink(node: NodeProcess, blocks: list[Block]) -> list[Block]:
    """The same blocks, each re-pointed at the previous one's (new) id and re-signed."""
    out: list[Block] = []
    for block in blocks:
        parent = out[-1].block_id if out else block.header.parent
        out.append(resign(node, block, parent=parent))
    return out


LYING_ANSWERS: dict[str, Callable[[NodeProcess, GetBlocksByRange], Blocks]] = {
    "wrong-request-id": lambda n, r: Blocks(request_id=r.request_id + 1_000, blocks=()),
    "too-many-blocks": lambda n, r: Blocks(
        request_id=r.request_id, blocks=tuple(_chain(n, r.count + 1))
    ),
    "a-gap": lambda n, r: Blocks(
        request_id=r.request_id, blocks=(_chain(n, 3)[0], _chain(n, 3)[2])
    ),
    "not-chaining": lambda n, r: Blocks(
        request_id=r.request_id,
        blocks=tuple(
            resign(n, b, parent=BlockId(os.urandom(32))) if b.header.height == 2 else b
            for b in _chain(n, 3)
        ),
    ),
    "not-starting-at-the-anchor": lambda n, r: Blocks(
        request_id=r.request_id,
        blocks=tuple(_relink(n, [resign(n, _chain(n, 1)[0], parent=BlockId(os.urandom(32)))])),
    ),
    "wrong-start-height": lambda n, r: Blocks(
        request_id=r.request_id, blocks=tuple(_chain(n, 3)[1:])
    ),
}


@pytest.mark.parametrize("case", sorted(LYING_ANSWERS))
async def test_a_malformed_sync_answer_costs_the_bad_response_penalty(
    node: NodeProcess, sources: Sources, transport: str, case: str
) -> None:
    verdict = await Verdict.before_attack(node)
    attacker = await Attacker.connect(node, transport, next(sources.group()))
    try:
        request = await _asked_for_range(attacker)
        assert request.start_height == 1
        before = await attacker.score()
        await attacker.peer.send(LYING_ANSWERS[case](node, request))
        score = await attacker.wait_score(before - BAD_RESPONSE + TOLERANCE)
        assert penalty(before - score, BAD_RESPONSE)
        assert attacker.peer.is_active
    finally:
        await attacker.aclose()
    await verdict.check(transport)


async def test_a_second_answer_to_one_request_is_a_protocol_error(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    verdict = await Verdict.before_attack(node)
    attacker = await Attacker.connect(node, transport, next(sources.group()))
    try:
        request = await _asked_for_range(attacker)
        await attacker.peer.send(Blocks(request_id=request.request_id, blocks=()))
        await attacker.peer.send(Blocks(request_id=request.request_id, blocks=()))
        ending = await attacker.peer.wait_ended()
    finally:
        await attacker.aclose()
    assert ending.reason is DisconnectReason.PROTOCOL_ERROR, ending
    await verdict.check(transport)


async def test_an_oversize_sync_answer_is_refused_from_its_header(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """An answer to an open request declaring more than `max_response_bytes`: a protocol error
    before the body is read."""
    verdict = await Verdict.before_attack(node)
    attacker = await Attacker.connect(node, transport, next(sources.group()))
    try:
        await _asked_for_range(attacker)
        header = struct.pack("!I", 1 + MAX_BLOCKS_RESPONSE_BYTES + 1) + bytes([Blocks.TYPE])
        await attacker.peer.send_plaintext(header)
        ending = await attacker.peer.wait_ended()
    finally:
        await attacker.aclose()
    assert ending.reason is DisconnectReason.PROTOCOL_ERROR, ending
    await verdict.check(transport)


async def test_an_invalid_block_served_by_sync_bans_the_peer(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """A well-shaped answer whose block breaks a rule: `invalid_block_penalty` (200), a ban at
    once; the key is refused on reconnect and a fresh key from the address closed at accept."""
    source = next(sources.group())
    verdict = await Verdict.before_attack(node)
    keys = fresh_keys()
    peer = await SecurePeer.connect(node, transport, source, keys=keys)
    attacker = Attacker(node, peer, keys.identity)
    try:
        request = await _asked_for_range(attacker)
        bad = replace(_chain(node, 1)[0], signature=bytes(64))
        await peer.send(Blocks(request_id=request.request_id, blocks=(bad,)))
        ending = await peer.wait_ended()
    finally:
        await attacker.aclose()
    assert ending.reason is DisconnectReason.LOW_SCORE, ending
    # The key is banned (from anywhere), and so is the address it came from.
    elsewhere = next(sources.group())
    renewed = replace(fresh_keys(), identity=keys.identity)
    again = await SecurePeer.connect(node, transport, elsewhere, keys=renewed)
    try:
        ending = await again.wait_ended()
    finally:
        await again.aclose()
    assert ending.reason is DisconnectReason.BANNED, ending
    assert await closed_at_accept(node, transport, source)
    await verdict.check(transport)


async def test_an_empty_sync_answer_costs_nothing_and_is_not_asked_again(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """No penalty, and no new request to that peer until its next `Status`."""
    verdict = await Verdict.before_attack(node)
    attacker = await Attacker.connect(node, transport, next(sources.group()))
    try:
        request = await _asked_for_range(attacker)
        before = await attacker.score()
        await attacker.peer.send(Blocks(request_id=request.request_id, blocks=()))
        # A junk publish as the barrier: its REJECT is the only cost.
        await attacker.publish(Topic.TRANSACTION, os.urandom(16))
        score = await attacker.wait_score(before - REJECT + TOLERANCE)
        assert penalty(before - score, REJECT)
        asked = [m for m in attacker.peer.received if isinstance(m, GetBlocksByRange)]
        assert asked == [request]
        again = await _asked_for_range(attacker)  # a new Status: asked again
        assert again.request_id != request.request_id
        assert again.start_height == request.start_height
    finally:
        await attacker.aclose()
    await verdict.check(transport)


@soak
async def test_no_answer_to_a_sync_request_costs_the_timeout_penalty(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """Silence past `request_timeout` (10 s): `timeout_penalty`, still connected."""
    verdict = await Verdict.before_attack(node)
    attacker = await Attacker.connect(node, transport, next(sources.group()))
    try:
        await _asked_for_range(attacker)
        before = await attacker.score()
        within = SyncParams().request_timeout + WAIT_S
        score = await attacker.wait_score(before - SYNC_TIMEOUT + TOLERANCE, within=within)
        assert penalty(before - score, SYNC_TIMEOUT)
        assert attacker.peer.is_active
    finally:
        await attacker.aclose()
    await verdict.check(transport)


# -- IHAVE / IWANT / GRAFT / PRUNE -------------------------------------------------------------


def _ids(count: int) -> tuple[bytes, ...]:
    return tuple(os.urandom(MESSAGE_ID_BYTES) for _ in range(count))


@soak
async def test_an_ihave_promise_never_kept_costs_the_behaviour_penalty(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """The node asks with IWANT; nothing comes within `iwant_followup_time` (3 s)."""
    verdict = await Verdict.before_attack(node)
    attacker = await Attacker.connect(node, transport, next(sources.group()))
    try:
        before = await attacker.score()
        ids = _ids(5)
        await attacker.peer.send(IHave(topic=Topic.TRANSACTION, message_ids=ids))
        peer = attacker.peer
        await peer.wait_for(lambda: any(isinstance(m, IWant) for m in peer.received))
        wanted = [m for m in peer.received if isinstance(m, IWant)]
        assert wanted, peer.ending
        assert set(wanted[0].message_ids) <= set(ids), wanted
        score = await attacker.wait_score(before - BEHAVIOUR + TOLERANCE)
        assert penalty(before - score, BEHAVIOUR)
    finally:
        await attacker.aclose()
    await verdict.check(transport)


async def test_an_iwant_flood_of_unknown_ids_is_ignored(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    verdict = await Verdict.before_attack(node)
    attacker = await Attacker.connect(node, transport, next(sources.group()))
    try:
        before = await attacker.score()
        for _ in range(10):
            await attacker.peer.send(IWant(message_ids=_ids(MAX_IWANT_IDS)))
        assert penalty(before - await attacker.score(), 0.0)
        assert not [m for m in attacker.peer.received if isinstance(m, Publish)]
        assert attacker.peer.is_active
    finally:
        await attacker.aclose()
    await verdict.check(transport)


async def test_a_graft_during_backoff_costs_the_behaviour_penalty_and_is_pruned(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    verdict = await Verdict.before_attack(node)
    attacker = await Attacker.connect(node, transport, next(sources.group()))
    peer = attacker.peer
    try:
        before = await attacker.score()
        await peer.send(Graft(topic=Topic.BLOCK))
        await peer.send(Prune(topic=Topic.BLOCK, backoff_s=60))
        assert penalty(before - await attacker.score(), 0.0)  # an honest graft, then a prune
        await peer.send(Graft(topic=Topic.BLOCK))  # inside the backoff we just started
        score = await attacker.wait_score(before - BEHAVIOUR + TOLERANCE)
        assert penalty(before - score, BEHAVIOUR)
        await peer.wait_for(
            lambda: any(isinstance(m, Prune) and m.topic is Topic.BLOCK for m in peer.received)
        )
        assert any(isinstance(m, Prune) for m in peer.received), peer.ending
    finally:
        await attacker.aclose()
    await verdict.check(transport)


async def test_a_prune_with_junk_peer_addresses_is_ignored(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    junk = (b"", b"\x00" * 128, b"tcp://999.1.1.1:0", os.urandom(100), b"ws://[::1", b"\xff")
    verdict = await Verdict.before_attack(node)
    attacker = await Attacker.connect(node, transport, next(sources.group()))
    try:
        before = await attacker.score()
        for topic in Topic:
            await attacker.peer.send(Prune(topic=topic, backoff_s=1, peers=junk))
        assert penalty(before - await attacker.score(), 0.0)
        assert attacker.peer.is_active
    finally:
        await attacker.aclose()
    await verdict.check(transport)


# -- a row that changes the mempool's orphans (last) -----------------------------------------


async def test_a_gossiped_transaction_with_unknown_inputs_waits_as_an_orphan(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """`missing-input`: ignored without blame and held (bounded, not relayed) in the orphan
    pool: only the orphan count changes."""
    ledger = Ledger(node)
    tx = ledger.spend(_unknown(ledger, 1), [ledger.pay(1)])
    assert ledger.reason(tx) is Reason.MISSING_INPUT
    verdict = await Verdict.before_attack(node)
    attacker = await Attacker.connect(node, transport, next(sources.group()))
    try:
        assert await attacker.costs(Topic.TRANSACTION, encode(tx), 0.0)
    finally:
        await attacker.aclose()
    await verdict.check(transport, state_changes=True)
    after = await node.snapshot()
    before = verdict.before
    assert (after["head"], after["finalized"]) == (before["head"], before["finalized"])
    mempool_before, mempool_after = before["mempool"], after["mempool"]
    assert isinstance(mempool_before, dict)
    assert isinstance(mempool_after, dict)
    assert mempool_after["size"] == mempool_before["size"]
    assert mempool_after["orphans"] == mempool_before["orphans"] + 1  # type: ignore[operator]
