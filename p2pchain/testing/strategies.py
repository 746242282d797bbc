"""Hypothesis strategies for ledger objects, and a funded chain to run the rules against.

Two families:

- *Structural* strategies (`transactions()`, `blocks()`, `votes()`, ...) draw objects that
  encode and decode canonically but carry arbitrary values (bad signatures, unknown outpoints).
  They drive codec round trips and robustness tests.
- *Stateful* helpers (`funded_chain`, `build_block`, `valid_blocks`, `slashable_evidence`) build
  objects that pass `connect_block` on a given view, for property tests of the ledger rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from p2pchain.consensus.light import AnchorStakes, FinalityCertificate, LinkVotes
from p2pchain.ledger.address import address_of
from p2pchain.ledger.block import Block, InclusionProof, compute_body_root
from p2pchain.ledger.crypto import SecretKey, is_valid_secret, sha256
from p2pchain.ledger.encoding import MAX_UINT64
from p2pchain.ledger.evidence import DoubleProposal, Evidence, VoteEquivocation
from p2pchain.ledger.genesis import (
    Allocation,
    GenesisConfig,
    GenesisValidator,
    genesis_state,
)
from p2pchain.ledger.header import BlockHeader, SignedHeader, header_signing_message
from p2pchain.ledger.offer import Offer
from p2pchain.ledger.partial import PartialTransaction
from p2pchain.ledger.proofs import (
    AccountProof,
    AssetProof,
    OutputProof,
    QueryKind,
    StateProof,
    StateQuery,
    ValidatorsProof,
)
from p2pchain.ledger.reward import reward_transaction
from p2pchain.ledger.trie import ProofStep, TrieProof
from p2pchain.ledger.tx import (
    MAX_OUTPUT_INDEX,
    GovVotePayload,
    IssuePayload,
    Lock,
    LockKind,
    MintPayload,
    OutPoint,
    Payload,
    ProposePayload,
    RetirePayload,
    RewardPayload,
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
from p2pchain.ledger.utxo import AssetInfo, TxUndo, UndoData, UtxoView
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.ledger.wallet import Wallet, is_spendable
from p2pchain.params import (
    COIN,
    GOVERNABLE,
    MAX_ASSET_NAME_BYTES,
    MAX_BENEFICIARY_BYTES,
    MAX_PROPOSAL_CHANGES,
    MAX_PURPOSE_BYTES,
    NATIVE_ASSET,
    ChainParams,
)
from p2pchain.testing.roots import state_root_after

# -- primitives ----------------------------------------------------------------------------


def uint64s() -> SearchStrategy[int]:
    """Integers that fit an RLP integer field (0 .. 2**64-1), biased to the edges by hypothesis."""
    return st.integers(min_value=0, max_value=MAX_UINT64)


def hashes() -> SearchStrategy[Hash32]:
    """Arbitrary 32-byte digests."""
    return st.binary(min_size=32, max_size=32).map(Hash32)


def secret_keys() -> SearchStrategy[SecretKey]:
    """Valid secp256k1 secret keys."""
    return st.binary(min_size=32, max_size=32).filter(is_valid_secret).map(SecretKey)


def public_keys() -> SearchStrategy[PublicKey]:
    """Valid x-only public keys (each is the key of some secret)."""
    return secret_keys().map(lambda key: key.public_key)


def addresses() -> SearchStrategy[Address]:
    """Arbitrary 20-byte addresses."""
    return st.binary(min_size=20, max_size=20).map(Address)


def asset_ids() -> SearchStrategy[AssetId]:
    """The native asset or an arbitrary 32-byte asset id."""
    return st.one_of(st.just(AssetId(NATIVE_ASSET)), hashes().map(AssetId))


def outpoints() -> SearchStrategy[OutPoint]:
    """Outpoints with arbitrary txids and any encodable index."""
    return st.builds(
        OutPoint,
        txid=hashes().map(TxId),
        index=st.integers(min_value=0, max_value=MAX_OUTPUT_INDEX),
    )


def locks() -> SearchStrategy[Lock]:
    """Well-formed locks of every kind (each kind fills exactly the fields it uses)."""
    keys = st.binary(min_size=32, max_size=32)
    return st.one_of(
        st.just(Lock()),
        st.builds(Lock, kind=st.just(LockKind.HEIGHT), value=uint64s()),
        st.builds(Lock, kind=st.just(LockKind.EPOCH), value=uint64s()),
        st.builds(Lock, kind=st.just(LockKind.STAKE), key=keys),
        st.builds(Lock, kind=st.just(LockKind.UNBONDING), value=uint64s(), key=keys),
    )


def tx_outputs(
    assets: SearchStrategy[AssetId] | None = None, amounts: SearchStrategy[int] | None = None
) -> SearchStrategy[TxOutput]:
    """Outputs with any asset, any encodable amount (0 included) and any well-formed lock."""
    return st.builds(
        TxOutput,
        asset=asset_ids() if assets is None else assets,
        amount=uint64s() if amounts is None else amounts,
        address=addresses(),
        lock=locks(),
    )


def tx_inputs() -> SearchStrategy[TxInput]:
    """Inputs with arbitrary (almost surely invalid) witnesses, some of them offers'."""
    return st.builds(
        TxInput,
        outpoint=outpoints(),
        public_key=st.binary(min_size=32, max_size=32).map(PublicKey),
        signature=st.binary(min_size=64, max_size=64),
        offer_until=st.none() | uint64s().map(Height),
    )


# -- votes, headers, evidence --------------------------------------------------------------


def checkpoints() -> SearchStrategy[Checkpoint]:
    """Checkpoints with any epoch and block id."""
    return st.builds(Checkpoint, epoch=uint64s(), block_id=hashes().map(BlockId))


def votes() -> SearchStrategy[Vote]:
    """Votes with arbitrary fields and signatures."""
    return st.builds(
        Vote,
        slot=uint64s(),
        head=hashes().map(BlockId),
        source=checkpoints(),
        target=checkpoints(),
        validator=st.binary(min_size=32, max_size=32).map(PublicKey),
        signature=st.binary(min_size=64, max_size=64),
    )


def block_headers() -> SearchStrategy[BlockHeader]:
    """Headers with arbitrary fields."""
    return st.builds(
        BlockHeader,
        parent=hashes().map(BlockId),
        height=uint64s(),
        slot=uint64s(),
        proposer=st.binary(min_size=32, max_size=32).map(PublicKey),
        body_root=hashes(),
        state_root=hashes(),
    )


def signed_headers() -> SearchStrategy[SignedHeader]:
    """Headers with arbitrary signatures."""
    return st.builds(
        SignedHeader, header=block_headers(), signature=st.binary(min_size=64, max_size=64)
    )


def evidence() -> SearchStrategy[Evidence]:
    """Evidence of either kind built from arbitrary halves (structurally valid, rarely true)."""
    return st.one_of(
        st.builds(DoubleProposal, first=signed_headers(), second=signed_headers()),
        st.builds(VoteEquivocation, first=votes(), second=votes()),
    )


def sign_header(header: BlockHeader, key: SecretKey, chain_id: int) -> SignedHeader:
    """`header` signed by `key` for `chain_id`; the header's proposer field is left as it is."""
    signature = key.sign(header_signing_message(chain_id, header.block_id))
    return SignedHeader(header=header, signature=signature)


def sign_vote(vote: Vote, key: SecretKey, chain_id: int) -> Vote:
    """`vote` re-signed by `key` for `chain_id` (the validator field is not changed)."""
    return replace(vote, signature=key.sign(vote.signing_message(chain_id)))


@st.composite
def slashable_evidence(draw: st.DrawFn, key: SecretKey, chain_id: int) -> Evidence:
    """True, correctly signed evidence against `key`: double proposal, double vote or surround."""
    kind = draw(st.sampled_from(["double-proposal", "double-vote", "surround"]))
    if kind == "double-proposal":
        first = replace(draw(block_headers()), proposer=key.public_key)
        second = replace(first, body_root=sha256(first.body_root))
        return DoubleProposal(
            first=sign_header(first, key, chain_id), second=sign_header(second, key, chain_id)
        )
    base = replace(draw(votes()), validator=key.public_key)
    if kind == "double-vote":
        other = replace(base, head=BlockId(sha256(base.head)))
    else:
        epochs = sorted(draw(st.lists(uint64s(), min_size=4, max_size=4, unique=True)))
        outer_source, inner_source, inner_target, outer_target = epochs
        base = replace(
            base,
            source=replace(base.source, epoch=Epoch(outer_source)),
            target=replace(base.target, epoch=Epoch(outer_target)),
        )
        other = replace(
            base,
            source=replace(base.source, epoch=Epoch(inner_source)),
            target=replace(base.target, epoch=Epoch(inner_target)),
        )
    return VoteEquivocation(
        first=sign_vote(base, key, chain_id), second=sign_vote(other, key, chain_id)
    )


# -- transactions and blocks ---------------------------------------------------------------


def payloads(kind: TxKind) -> SearchStrategy[Payload]:
    """A payload of the shape `kind` requires, with arbitrary values."""
    match kind:
        case TxKind.REWARD:
            return st.builds(RewardPayload, height=uint64s())
        case TxKind.ISSUE:
            return st.builds(
                IssuePayload, name=st.binary(max_size=MAX_ASSET_NAME_BYTES), cap=uint64s()
            )
        case TxKind.MINT:
            return st.builds(MintPayload, asset=hashes().map(AssetId))
        case TxKind.SLASH:
            return st.builds(SlashPayload, evidence=evidence())
        case TxKind.RETIRE:
            return st.builds(
                RetirePayload,
                asset=hashes().map(AssetId),
                amount=uint64s().map(Amount),
                beneficiary=st.binary(max_size=MAX_BENEFICIARY_BYTES),
                purpose=st.binary(max_size=MAX_PURPOSE_BYTES),
            )
        case TxKind.PROPOSE:
            change = st.tuples(
                st.one_of(
                    st.sampled_from([n.encode() for n in GOVERNABLE]), st.binary(max_size=32)
                ),
                uint64s(),
            )
            return st.builds(
                ProposePayload,
                changes=st.lists(change, max_size=MAX_PROPOSAL_CHANGES).map(tuple),
                activation=uint64s().map(Epoch),
                refund=addresses(),
            )
        case TxKind.GOV_VOTE:
            return st.builds(
                GovVotePayload,
                proposal=hashes().map(TxId),
                choice=st.sampled_from(VoteChoice),
                validator=public_keys(),
                signature=st.binary(min_size=64, max_size=64),
            )
        case _:
            return st.none()


@st.composite
def transactions(
    draw: st.DrawFn,
    kinds: SearchStrategy[TxKind] | None = None,
    *,
    max_inputs: int = 3,
    max_outputs: int = 3,
) -> Transaction:
    """Transactions of any kind with the right payload shape and arbitrary contents."""
    kind = draw(st.sampled_from(TxKind) if kinds is None else kinds)
    return Transaction(
        kind=kind,
        inputs=tuple(draw(st.lists(tx_inputs(), max_size=max_inputs))),
        outputs=tuple(draw(st.lists(tx_outputs(), max_size=max_outputs))),
        payload=draw(payloads(kind)),
    )


def offers() -> SearchStrategy[Offer]:
    """Standing offers with arbitrary fields and (almost surely invalid) signatures."""
    return st.builds(
        Offer,
        outpoint=outpoints(),
        public_key=st.binary(min_size=32, max_size=32).map(PublicKey),
        signature=st.binary(min_size=64, max_size=64),
        wanted=tx_outputs(),
        until=uint64s().map(Height),
    )


@st.composite
def partial_transactions(draw: st.DrawFn) -> PartialTransaction:
    """Partially signed transactions: any transaction and one claimed output per input."""
    tx = draw(transactions())
    spent = draw(st.lists(tx_outputs(), min_size=len(tx.inputs), max_size=len(tx.inputs)))
    return PartialTransaction(tx=tx, spent=tuple(spent))


def blocks(*, max_txs: int = 3, max_votes: int = 2) -> SearchStrategy[Block]:
    """Blocks with arbitrary headers, signatures, transactions and votes."""
    return st.builds(
        Block,
        header=block_headers(),
        signature=st.binary(min_size=64, max_size=64),
        transactions=st.lists(transactions(), max_size=max_txs).map(tuple),
        votes=st.lists(votes(), max_size=max_votes).map(tuple),
    )


# -- state records -------------------------------------------------------------------------


def asset_infos() -> SearchStrategy[AssetInfo]:
    """Asset registry records with arbitrary values."""
    return st.builds(
        AssetInfo,
        asset=hashes().map(AssetId),
        name=st.binary(max_size=MAX_ASSET_NAME_BYTES),
        issuer=addresses(),
        cap=uint64s(),
        issued=uint64s(),
    )


def tx_undos() -> SearchStrategy[TxUndo]:
    """Undo records of one transaction with arbitrary contents."""
    return st.builds(
        TxUndo,
        spent=st.lists(st.tuples(outpoints(), tx_outputs()), max_size=3).map(tuple),
        assets=st.lists(
            st.tuples(hashes().map(AssetId), st.none() | asset_infos()), max_size=2
        ).map(tuple),
    )


def undo_data() -> SearchStrategy[UndoData]:
    """Undo records of one block with arbitrary contents, in the shape blocks give them: the
    reward's (which spends nothing) maybe first, then records of transactions that spent, and
    the governance leaf before the block (None only before genesis)."""
    reward = st.just(TxUndo(spent=(), assets=()))
    spent_something = tx_undos().filter(lambda undo: bool(undo.spent))
    return st.builds(
        lambda first, rest, governance: UndoData(txs=(*first, *rest), governance=governance),
        st.lists(reward, max_size=1),
        st.lists(spent_something, max_size=3),
        st.none() | hashes(),
    )


def genesis_configs() -> SearchStrategy[GenesisConfig]:
    """Genesis configurations with arbitrary (not necessarily acceptable) values."""
    return st.builds(
        GenesisConfig,
        chain_id=uint64s(),
        genesis_time_ms=uint64s(),
        allocations=st.lists(
            st.builds(Allocation, address=addresses(), amount=uint64s()), max_size=3
        ).map(tuple),
        validators=st.lists(
            st.builds(
                GenesisValidator,
                key=st.binary(min_size=32, max_size=32).map(PublicKey),
                owner=addresses(),
                stake=uint64s(),
            ),
            max_size=3,
        ).map(tuple),
    )


# -- a funded chain ------------------------------------------------------------------------

FAST_PARAMS: Final = ChainParams(reward_maturity=3, slots_per_epoch=4, unbonding_epochs=2)
"""Chain parameters with short maturity and epochs, so that locks expire within a few blocks."""


def view_state(view: UtxoView) -> object:
    """Everything observable about a view, indexes included: compare two to check equality."""
    utxos, assets = view.snapshot()
    owners = {output.address for output in utxos.values()}
    keys = {PublicKey(output.lock.key) for output in utxos.values() if output.lock.key}
    return (
        utxos,
        assets,
        view.tip,
        view.height,
        {owner: view.utxos_of(owner) for owner in owners},
        {key: view.slashable_outpoints(key) for key in keys},
        view.bonded_stake(),
        view.state_root(),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class FundedChain:
    """A genesis state with funded wallets and one bonded validator, ready for blocks."""

    params: ChainParams
    config: GenesisConfig
    genesis: Block
    view: UtxoView
    wallets: tuple[Wallet, ...]
    validator: SecretKey
    """The genesis validator's signing key; its stake is owned by `wallets[0]`."""


def funded_chain(
    n_wallets: int,
    *,
    params: ChainParams | None = None,
    coins_per_wallet: int = 2,
    coin_amount: int = 10 * COIN,
) -> FundedChain:
    """A deterministic genesis giving each of `n_wallets` wallets `coins_per_wallet` coins."""
    if n_wallets < 1:
        raise ValueError("need at least one wallet")
    params = ChainParams() if params is None else params
    wallets = tuple(
        Wallet(SecretKey.from_entropy(b"p2pchain/testing/wallet" + i.to_bytes(9, "big")), params)
        for i in range(n_wallets)
    )
    validator = SecretKey.from_entropy(b"p2pchain/testing/validator/00000")
    config = GenesisConfig(
        chain_id=params.chain_id,
        genesis_time_ms=0,
        allocations=tuple(
            Allocation(address=wallet.address, amount=Amount(coin_amount))
            for wallet in wallets
            for _ in range(coins_per_wallet)
        ),
        validators=(
            GenesisValidator(
                key=validator.public_key,
                owner=wallets[0].address,
                stake=Amount(2 * params.min_stake),
            ),
        ),
    )
    genesis, view = genesis_state(config, params)
    return FundedChain(
        params=params,
        config=config,
        genesis=genesis,
        view=view,
        wallets=wallets,
        validator=validator,
    )


def native_fee(view: UtxoView, transactions: Sequence[Transaction], params: ChainParams) -> int:
    """Sum of native in minus native out (minus a proposal's deposit) over `transactions`
    (negative differences count 0).

    Inputs are looked up in `view` or among the outputs of earlier transactions in the list;
    unknown inputs count as zero, so this is meaningful for invalid transactions too.
    """
    created: dict[OutPoint, TxOutput] = {}
    total = 0
    for tx in transactions:
        native_in = 0
        for tx_input in tx.inputs:
            output = view.get(tx_input.outpoint) or created.get(tx_input.outpoint)
            if output is not None and output.asset == params.native_asset:
                native_in += output.amount
        native_out = sum(o.amount for o in tx.outputs if o.asset == params.native_asset)
        deposit = params.gov_deposit if tx.kind is TxKind.PROPOSE else 0
        total += max(native_in - native_out - deposit, 0)
        txid = tx.txid
        created.update(
            (OutPoint(txid=txid, index=i), output) for i, output in enumerate(tx.outputs)
        )
    return total


def build_block(
    view: UtxoView,
    params: ChainParams,
    transactions: Sequence[Transaction] = (),
    *,
    proposer: SecretKey,
    slot: int | None = None,
    reward: int | None = None,
    reward_to: Address | None = None,
    votes: Sequence[Vote] = (),
) -> Block:
    """A signed block on `view`'s tip: a reward transaction, then `transactions`. Its state
    root keeps `view`'s governance leaf, as `connect_block` without a governance value does
    (the chain is driven by the ledger alone; a fork-choice store computes the leaf from its
    governance state, whose epoch moves with the slot).

    Args:
        view: the state the block extends (its tip and height give parent and height).
        params: chain parameters (reward, maturity, chain id).
        transactions: the body after the reward, used as given (valid or not).
        proposer: signs the header; its address receives the reward unless `reward_to` is set.
        slot: defaults to the block height (one block per slot).
        reward: amount paid; defaults to the block reward plus `native_fee` of the body. Zero
            gives a reward transaction without outputs.
        reward_to: the reward's recipient.
        votes: votes carried in the body.
    """
    height = view.height + 1
    if reward is None:
        reward = params.block_reward + native_fee(view, transactions, params)
    recipient = address_of(proposer.public_key) if reward_to is None else reward_to
    pay = (
        reward_transaction(
            height=Height(height), amount=Amount(reward), address=recipient, params=params
        )
        if reward
        else Transaction(kind=TxKind.REWARD, payload=RewardPayload(height=Height(height)))
    )
    body = (pay, *transactions)
    header = BlockHeader(
        parent=view.tip,
        height=Height(height),
        slot=Slot(height if slot is None else slot),
        proposer=proposer.public_key,
        body_root=compute_body_root(body, tuple(votes)),
        state_root=state_root_after(view, body),
    )
    signed = sign_header(header, proposer, params.chain_id)
    return Block(header=header, signature=signed.signature, transactions=body, votes=tuple(votes))


def _spendable(view: UtxoView, wallet: Wallet, context: BlockContext) -> list[TxOutput]:
    return [
        output
        for _, output in view.utxos_of(wallet.address)
        if is_spendable(output, context, wallet.params)
    ]


@st.composite
def valid_transaction(
    draw: st.DrawFn,
    view: UtxoView,
    wallets: Sequence[Wallet],
    context: BlockContext,
    *,
    max_fee: int = 1_000,
) -> Transaction | None:
    """A transaction valid on `view` at `context`: a transfer, issue, mint, bond or unbond.

    Returns None when the drawn action is impossible (no wallet can pay the fee, or the asset
    to mint is at its cap). Fees are native and at most `max_fee`; payments may be in any asset
    the sender holds.
    """
    params = wallets[0].params
    native = AssetId(params.native_asset)
    fee = draw(st.integers(min_value=0, max_value=max_fee))
    options: list[tuple[str, Wallet]] = []
    for wallet in wallets:
        spendable = _spendable(view, wallet, context)
        native_balance = sum(o.amount for o in spendable if o.asset == native)
        if native_balance > fee:
            options += [("transfer", wallet), ("issue", wallet)]
            if native_balance >= fee + params.min_stake:
                options.append(("bond", wallet))
            if any(info.issuer == wallet.address for info in view.assets().values()):
                options.append(("mint", wallet))
        if any(o.lock.kind is LockKind.STAKE for _, o in view.utxos_of(wallet.address)):
            options.append(("unbond", wallet))
    if not options:
        return None
    action, wallet = draw(st.sampled_from(options))
    coins = view.utxos_of(wallet.address)
    if action == "transfer":
        spendable = _spendable(view, wallet, context)
        assets = sorted({o.asset for o in spendable})
        asset = draw(st.sampled_from(assets))
        balance = sum(o.amount for o in spendable if o.asset == asset)
        available = balance - fee if asset == native else balance
        amount = draw(st.integers(min_value=1, max_value=available))
        to = draw(st.sampled_from(wallets)).address
        payment = TxOutput(asset=asset, amount=Amount(amount), address=to)
        return wallet.build_transfer(coins, [payment], fee=Amount(fee), context=context)
    if action == "issue":
        amount = draw(st.integers(min_value=1, max_value=10**9))
        cap = draw(st.just(0) | st.integers(min_value=amount, max_value=2 * 10**9))
        name = draw(st.binary(min_size=1, max_size=params.max_asset_name_bytes))
        tx, _ = wallet.build_issue(
            coins, name=name, amount=Amount(amount), cap=cap, fee=Amount(fee), context=context
        )
        return tx
    if action == "mint":
        issued = [info for info in view.assets().values() if info.issuer == wallet.address]
        info = draw(st.sampled_from(sorted(issued, key=lambda i: i.asset)))
        room = (info.cap or params.max_money) - info.issued
        if room < 1:
            return None
        amount = draw(st.integers(min_value=1, max_value=min(room, 10**9)))
        return wallet.build_mint(
            coins, asset=info.asset, amount=Amount(amount), fee=Amount(fee), context=context
        )
    if action == "bond":
        spendable = _spendable(view, wallet, context)
        native_balance = sum(o.amount for o in spendable if o.asset == native)
        amount = draw(st.integers(min_value=params.min_stake, max_value=native_balance - fee))
        validator = draw(st.sampled_from(wallets)).public_key
        return wallet.build_bond(
            coins, validator=validator, amount=Amount(amount), fee=Amount(fee), context=context
        )
    stakes = [c for c in coins if c[1].lock.kind is LockKind.STAKE]
    key = draw(st.sampled_from(sorted({o.lock.key for _, o in stakes})))
    of_key = [c for c in stakes if c[1].lock.key == key]
    total = sum(o.amount for _, o in of_key)
    return wallet.build_unbond(of_key, fee=Amount(min(fee, total - 1)), context=context)


@st.composite
def valid_blocks(
    draw: st.DrawFn,
    view: UtxoView,
    wallets: Sequence[Wallet],
    *,
    proposer: SecretKey,
    min_txs: int = 0,
    max_txs: int = 4,
) -> Block:
    """A block that `connect_block` accepts on `view`; later transactions may spend earlier ones.

    The body has between `min_txs` and `max_txs` transactions after the reward (fewer only
    when no wallet can afford another one). `view` is not changed: the transactions are drawn
    against a copy.
    """
    params = wallets[0].params
    height = view.height + 1
    context = BlockContext(height=Height(height), slot=Slot(height))
    work = view.copy()
    body: list[Transaction] = []
    for _ in range(draw(st.integers(min_value=min_txs, max_value=max_txs))):
        tx = draw(valid_transaction(work, wallets, context))
        if tx is None:
            break
        work.apply_transaction(tx)
        body.append(tx)
    return build_block(view, params, body, proposer=proposer)


# -- state proofs and light-client messages ---------------------------------------------------


def state_queries() -> SearchStrategy[StateQuery]:
    """Queries of every kind with arbitrary fields."""
    return st.one_of(
        st.builds(StateQuery, kind=st.just(QueryKind.ACCOUNT), address=addresses()),
        st.builds(
            StateQuery, kind=st.just(QueryKind.OUTPUT), outpoint=outpoints(), address=addresses()
        ),
        st.builds(StateQuery, kind=st.just(QueryKind.ASSET), asset=asset_ids()),
        st.just(StateQuery(kind=QueryKind.VALIDATORS)),
    )


@st.composite
def trie_proofs(draw: st.DrawFn) -> TrieProof:
    """Structurally valid proofs (a few steps, any siblings): rarely true of any root."""
    steps = []
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        present = draw(st.integers(min_value=0, max_value=0xFFFF))
        siblings = tuple(draw(hashes()) for _ in range(present.bit_count()))
        steps.append(ProofStep(present=present, siblings=siblings))
    leaf = draw(st.none() | st.tuples(hashes(), hashes()))
    return TrieProof(steps=tuple(steps), leaf=leaf)


def state_proofs() -> SearchStrategy[StateProof]:
    """Proofs of every kind with arbitrary contents."""
    entries = st.lists(st.tuples(outpoints(), tx_outputs()), max_size=2).map(tuple)
    stakes = st.lists(
        st.tuples(public_keys(), st.integers(min_value=1, max_value=2**64 - 1)), max_size=2
    ).map(tuple)
    return st.one_of(
        st.builds(AccountProof, address=addresses(), outputs=entries, top=trie_proofs()),
        st.builds(
            OutputProof,
            outpoint=outpoints(),
            address=addresses(),
            output=st.none() | tx_outputs(),
            top=trie_proofs(),
            account=trie_proofs(),
        ),
        st.builds(AssetProof, asset=asset_ids(), info=st.none() | asset_infos(), top=trie_proofs()),
        st.builds(ValidatorsProof, stakes=stakes, top=trie_proofs()),
    )


def inclusion_proofs() -> SearchStrategy[InclusionProof]:
    return st.builds(
        InclusionProof,
        index=uint64s(),
        count=uint64s(),
        siblings=st.lists(hashes(), max_size=4).map(tuple),
        votes_hash=hashes(),
    )


def anchor_stakes() -> SearchStrategy[AnchorStakes]:
    """Stake tables with a path, of arbitrary blocks (structurally valid)."""
    return st.builds(
        AnchorStakes,
        anchor=hashes().map(BlockId),
        proof=st.builds(
            ValidatorsProof,
            stakes=st.lists(
                st.tuples(public_keys(), st.integers(min_value=1, max_value=2**64 - 1)),
                max_size=2,
            ).map(tuple),
            top=trie_proofs(),
        ),
    )


def finality_certificates() -> SearchStrategy[FinalityCertificate]:
    """Certificates of arbitrary headers, links and stake tables (structurally valid)."""
    links = st.builds(
        LinkVotes,
        source=checkpoints(),
        target=checkpoints(),
        votes=st.lists(votes(), max_size=2).map(tuple),
    )
    anchors = anchor_stakes()
    return st.builds(
        FinalityCertificate,
        headers=st.lists(block_headers(), max_size=3).map(tuple),
        links=st.lists(links, max_size=2).map(tuple),
        anchors=st.lists(anchors, max_size=2).map(tuple),
    )
