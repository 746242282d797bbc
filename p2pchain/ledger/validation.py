"""Ledger rules: when a transaction or a block's transactions may change the UTXO set.

Three steps, cheapest first, each raising `InvalidTransaction` / `InvalidBlock` with a `Reason`:
`check_transaction` (context-free shape), `validate_transaction` (against a `LedgerReader`,
signatures last) and `connect_block` (the whole body, applied atomically: on failure the view is
unchanged).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from p2pchain.errors import InvalidBlock, InvalidTransaction, Reason
from p2pchain.ledger.address import address_of
from p2pchain.ledger.block import Block
from p2pchain.ledger.crypto import is_valid_public_key, sha256, verify
from p2pchain.ledger.tx import (
    GovVotePayload,
    IssuePayload,
    Lock,
    LockKind,
    MintPayload,
    ProposePayload,
    RetirePayload,
    RewardPayload,
    SlashPayload,
    Transaction,
    TxKind,
    TxOutput,
    compute_asset_id,
    gov_vote_signing_message,
    offer_signing_message,
    tx_signing_message,
)
from p2pchain.ledger.types import Address, Amount, AssetId, Epoch, Hash32, Height, Slot, TxId
from p2pchain.ledger.utxo import LedgerReader, TxUndo, UndoData, UtxoView
from p2pchain.params import MAX_BENEFICIARY_BYTES, MAX_PURPOSE_BYTES, ChainParams

SignatureCheck = Callable[[Transaction, TxId], bool]
"""Returns True when every input signature of the transaction is valid (may be cached)."""


@dataclass(frozen=True, slots=True)
class BlockContext:
    """Where a transaction would be included: the block's height and slot."""

    height: Height
    slot: Slot

    def epoch(self, params: ChainParams) -> Epoch:
        return Epoch(self.slot // params.slots_per_epoch)


def _fail(reason: Reason, detail: str = "") -> InvalidTransaction:
    return InvalidTransaction(reason, detail)


def reward_lock(height: Height, params: ChainParams) -> Lock:
    """The lock every output of the reward at `height` must carry (maturity)."""
    return Lock(kind=LockKind.HEIGHT, value=height + params.reward_maturity)


def refund_outputs(
    refunds: Sequence[tuple[Address, Amount]], height: Height, params: ChainParams
) -> tuple[TxOutput, ...]:
    """The outputs that return governance deposits in the reward of the block at `height`."""
    lock = reward_lock(height, params)
    return tuple(
        TxOutput(asset=AssetId(params.native_asset), amount=amount, address=address, lock=lock)
        for address, amount in refunds
    )


def unbonding_lock(key: bytes, epoch: Epoch, params: ChainParams) -> Lock:
    """The lock every output of an UNBOND included in `epoch` must carry."""
    return Lock(kind=LockKind.UNBONDING, value=epoch + params.unbonding_epochs, key=key)


def _sum_by_asset(outputs: Iterable[TxOutput]) -> defaultdict[AssetId, int]:
    totals: defaultdict[AssetId, int] = defaultdict(int)
    for output in outputs:
        totals[output.asset] += output.amount
    return totals


def check_transaction(tx: Transaction, params: ChainParams) -> None:
    """Context-free rules: sizes, counts, amounts, duplicate inputs, locks, the kind's shape."""
    _check_structure(tx, params)


def _check_structure(tx: Transaction, params: ChainParams) -> defaultdict[AssetId, int]:
    """`check_transaction`, returning the outputs' totals by asset (which the value rules of
    `validate_transaction` need again)."""
    if len(tx.inputs) > params.max_tx_inputs:
        raise _fail(Reason.TOO_MANY_INPUTS, f"{len(tx.inputs)} > {params.max_tx_inputs}")
    if len(tx.outputs) > params.max_tx_outputs:
        raise _fail(Reason.TOO_MANY_OUTPUTS, f"{len(tx.outputs)} > {params.max_tx_outputs}")
    if tx.size > params.max_tx_bytes:
        raise _fail(Reason.TX_TOO_LARGE, f"{tx.size} > {params.max_tx_bytes}")
    for index, output in enumerate(tx.outputs):
        if not 0 < output.amount <= params.max_money:
            raise _fail(Reason.AMOUNT_OUT_OF_RANGE, f"output {index}: {output.amount}")
        if not output.lock.is_well_formed():
            raise _fail(Reason.BAD_LOCK, f"output {index}")
    totals = _sum_by_asset(tx.outputs)
    for asset, total in totals.items():
        if total > params.max_money:
            raise _fail(Reason.VALUE_OVERFLOW, f"asset {asset.hex()[:16]}: {total}")
    if len({tx_input.outpoint for tx_input in tx.inputs}) != len(tx.inputs):
        raise _fail(Reason.DUPLICATE_INPUT)
    _check_offers(tx)
    _check_shape(tx, params)
    return totals


def _check_offers(tx: Transaction) -> None:
    """An offer's witness pairs its input with the output at the same index, in a TRANSFER:
    each offer has its own output (no two offers can be paid by one), and no kind with rules
    about its first input (ISSUE, MINT) or its stake (BOND, UNBOND) can be built around it."""
    for index, tx_input in enumerate(tx.inputs):
        if tx_input.offer_until is None:
            continue
        if tx.kind is not TxKind.TRANSFER:
            raise _fail(Reason.BAD_OFFER, f"input {index}: offers are taken by TRANSFER only")
        if index >= len(tx.outputs):
            raise _fail(Reason.BAD_OFFER, f"input {index}: no output {index} to pay the offer")


def _check_shape(tx: Transaction, params: ChainParams) -> None:
    kinds = {output.lock.kind for output in tx.outputs}
    if tx.kind is TxKind.REWARD:
        assert isinstance(tx.payload, RewardPayload)
        expected = reward_lock(tx.payload.height, params)
        if tx.inputs or not tx.outputs:
            raise _fail(Reason.BAD_REWARD, "a reward has no inputs and some outputs")
        if any(o.asset != params.native_asset or o.lock != expected for o in tx.outputs):
            raise _fail(Reason.BAD_REWARD, "reward outputs are native and locked to maturity")
        return
    if tx.kind is TxKind.SLASH:
        if tx.inputs or tx.outputs:
            raise _fail(Reason.BAD_TX_KIND, "a slash transaction has no inputs or outputs")
        return
    if not tx.inputs:
        raise _fail(Reason.NO_INPUTS)
    if not tx.outputs and tx.kind not in (TxKind.PROPOSE, TxKind.GOV_VOTE):
        raise _fail(Reason.NO_OUTPUTS)  # governance may spend everything on deposit and fee
    if LockKind.STAKE in kinds and tx.kind is not TxKind.BOND:
        raise _fail(Reason.BAD_STAKE_OUTPUT, "only BOND creates stake outputs")
    if LockKind.UNBONDING in kinds and tx.kind is not TxKind.UNBOND:
        raise _fail(Reason.BAD_UNBOND, "only UNBOND creates unbonding outputs")
    if tx.kind is TxKind.BOND:
        stakes = [o for o in tx.outputs if o.lock.kind is LockKind.STAKE]
        if not stakes:
            raise _fail(Reason.BAD_STAKE_OUTPUT, "BOND needs a stake output")
        for stake in stakes:
            if stake.asset != params.native_asset or not is_valid_public_key(stake.lock.key):
                raise _fail(Reason.BAD_STAKE_OUTPUT, "stake is native, bonded to a valid key")
            if stake.amount < params.min_stake:
                raise _fail(Reason.STAKE_TOO_SMALL, f"{stake.amount} < {params.min_stake}")
    if tx.kind is TxKind.UNBOND and (
        kinds != {LockKind.UNBONDING} or any(o.asset != params.native_asset for o in tx.outputs)
    ):
        raise _fail(Reason.BAD_UNBOND, "UNBOND outputs are native and unbonding")
    if isinstance(tx.payload, IssuePayload):
        longest = params.max_asset_name_bytes
        if not 0 < len(tx.payload.name) <= longest:
            raise _fail(Reason.BAD_ASSET_NAME, f"name must be 1..{longest} bytes")
        if tx.payload.cap > params.max_money:
            raise _fail(Reason.AMOUNT_OUT_OF_RANGE, f"cap {tx.payload.cap}")
    if isinstance(tx.payload, RetirePayload):
        retired = tx.payload
        if retired.asset == params.native_asset:
            raise _fail(Reason.BAD_RETIREMENT, "only issued assets are retired")
        if not 0 < retired.amount <= params.max_money:
            raise _fail(Reason.AMOUNT_OUT_OF_RANGE, f"retired amount {retired.amount}")
        if len(retired.beneficiary) > MAX_BENEFICIARY_BYTES:
            raise _fail(Reason.BAD_RETIREMENT, f"beneficiary over {MAX_BENEFICIARY_BYTES} bytes")
        if len(retired.purpose) > MAX_PURPOSE_BYTES:
            raise _fail(Reason.BAD_RETIREMENT, f"purpose over {MAX_PURPOSE_BYTES} bytes")
    if isinstance(tx.payload, ProposePayload) and not tx.payload.changes:
        raise _fail(Reason.BAD_PROPOSAL, "a proposal changes at least one parameter")
    if isinstance(tx.payload, GovVotePayload) and not is_valid_public_key(tx.payload.validator):
        raise _fail(Reason.BAD_GOV_VOTE, "the voter is not a valid validator key")


def verify_input_signatures(tx: Transaction, txid: TxId, chain_id: int) -> bool:
    """Every input's witness signs its message (the tx's, or its offer's terms), and a
    governance vote's validator signs the vote; identical witnesses over one message are
    checked once."""
    message = tx_signing_message(chain_id, txid)
    witnesses = set()
    if isinstance(tx.payload, GovVotePayload):
        vote = tx.payload
        signed_vote = gov_vote_signing_message(chain_id, vote.proposal, vote.choice)
        witnesses.add((vote.validator, signed_vote, vote.signature))
    for index, tx_input in enumerate(tx.inputs):
        signed = message
        if tx_input.offer_until is not None:
            if index >= len(tx.outputs):
                return False
            wanted = tx.outputs[index]
            signed = offer_signing_message(
                chain_id, tx_input.outpoint, wanted, tx_input.offer_until
            )
        witnesses.add((tx_input.public_key, signed, tx_input.signature))
    return all(verify(key, signed, signature) for key, signed, signature in witnesses)


class SignatureCache:
    """Remembers transactions whose witnesses verified, so a block's txs already checked in the
    mempool are not verified again on import. Keyed by the full encoding's hash (witnesses
    included), so a re-signed or tampered copy is never taken for a checked one; a failure is
    never remembered. Bounded: the oldest entries go first.

    Safe to share between threads (the node verifies a large block's witnesses in a worker
    thread while the event loop checks pool transactions): lookups and insertions hold a lock,
    the verification itself runs outside it.
    """

    def __init__(self, chain_id: int, max_entries: int = 100_000) -> None:
        self._chain_id = chain_id
        self._max_entries = max_entries
        self._verified: dict[bytes, None] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._verified)

    def knows(self, tx: Transaction) -> bool:
        """True when `tx`, witnesses included, verified before (no lookup is counted)."""
        key = sha256(tx.encoded)
        with self._lock:
            return key in self._verified

    def __call__(self, tx: Transaction, txid: TxId) -> bool:
        """A `SignatureCheck`: True from the cache, else verify and remember a success."""
        key = sha256(tx.encoded)
        with self._lock:
            if key in self._verified:
                self.hits += 1
                return True
            self.misses += 1
        if not verify_input_signatures(tx, txid, self._chain_id):
            return False
        with self._lock:
            self._verified[key] = None
            if len(self._verified) > self._max_entries:
                del self._verified[next(iter(self._verified))]
        return True


def validate_transaction(
    tx: Transaction,
    view: LedgerReader,
    params: ChainParams,
    context: BlockContext,
    *,
    signatures_valid: SignatureCheck | None = None,
) -> int:
    """Check `tx` against `view` for inclusion at `context`; return its native fee.

    Raises:
        InvalidTransaction: with the reason of the first rule broken. The view is not changed.
    """
    outs = _check_structure(tx, params)
    if tx.kind is TxKind.REWARD:
        raise _fail(Reason.MISPLACED_REWARD, "a reward is only valid as a block's first tx")
    txid = tx.txid
    if isinstance(tx.payload, SlashPayload):
        tx.payload.evidence.validate(params.chain_id)
        if not view.slashable_outpoints(tx.payload.evidence.offender):
            raise _fail(Reason.NOTHING_TO_SLASH)
        return 0
    epoch = context.epoch(params)
    spent: list[TxOutput] = []
    for index, tx_input in enumerate(tx.inputs):
        output = view.get(tx_input.outpoint)
        if output is None:
            raise _fail(Reason.MISSING_INPUT, f"input {index}")
        if address_of(tx_input.public_key) != output.address:
            raise _fail(Reason.WITNESS_KEY_MISMATCH, f"input {index}")
        if tx_input.offer_until is not None and context.height > tx_input.offer_until:
            raise _fail(Reason.OFFER_EXPIRED, f"input {index}: until {tx_input.offer_until}")
        _check_spendable(tx, output, context.height, epoch, index)
        spent.append(output)
    fee = _check_value(tx, spent, outs, view, params)
    if fee < params.min_fee_rate * tx.size:
        raise _fail(Reason.FEE_TOO_LOW, f"fee {fee} < {params.min_fee_rate} per byte")
    if tx.kind is TxKind.UNBOND:
        _check_unbond(tx, spent, epoch, params)
    if signatures_valid is None:
        valid = verify_input_signatures(tx, txid, params.chain_id)
    else:
        valid = signatures_valid(tx, txid)
    if not valid:
        raise _fail(Reason.BAD_SIGNATURE)
    return fee


def _check_spendable(
    tx: Transaction, output: TxOutput, height: Height, epoch: Epoch, i: int
) -> None:
    lock = output.lock
    if lock.kind is LockKind.HEIGHT and height < lock.value:
        raise _fail(Reason.IMMATURE, f"input {i}: spendable at height {lock.value}")
    if lock.kind in (LockKind.EPOCH, LockKind.UNBONDING) and epoch < lock.value:
        raise _fail(Reason.LOCKED, f"input {i}: spendable at epoch {lock.value}")
    if lock.kind is LockKind.STAKE and tx.kind is not TxKind.UNBOND:
        raise _fail(Reason.STAKE_LOCKED, f"input {i}: bonded stake needs UNBOND")


def _check_value(
    tx: Transaction,
    spent: list[TxOutput],
    outs: defaultdict[AssetId, int],
    view: LedgerReader,
    params: ChainParams,
) -> int:
    """Per-asset conservation with issue/mint exceptions (`outs`: the outputs' totals by
    asset); return the native fee."""
    ins = _sum_by_asset(spent)
    created: AssetId | None = None
    if isinstance(tx.payload, IssuePayload):
        created = compute_asset_id(tx.inputs[0].outpoint)
        if view.asset(created) is not None:  # pragma: no cover - outpoints are spent once
            raise _fail(Reason.UNKNOWN_ASSET, "asset already exists")
        cap = tx.payload.cap
        if cap and outs[created] > cap:
            raise _fail(Reason.CAP_EXCEEDED, f"{outs[created]} > cap {cap}")
    elif isinstance(tx.payload, MintPayload):
        created = tx.payload.asset
        info = view.asset(created)
        if info is None:
            raise _fail(Reason.UNKNOWN_ASSET, created.hex())
        if spent[0].address != info.issuer:
            raise _fail(Reason.NOT_ISSUER, "the first input must belong to the issuer")
        minted = outs[created] - ins[created]
        if minted <= 0:
            raise _fail(Reason.VALUE_NOT_CONSERVED, "a mint must create new units")
        if info.issued + minted > params.max_money:
            raise _fail(Reason.VALUE_OVERFLOW, f"issued would be {info.issued + minted}")
        if info.cap and info.issued + minted > info.cap:
            raise _fail(Reason.CAP_EXCEEDED, f"{info.issued + minted} > cap {info.cap}")
    elif isinstance(tx.payload, RetirePayload):
        retired = tx.payload
        if view.asset(retired.asset) is None:
            raise _fail(Reason.UNKNOWN_ASSET, retired.asset.hex())
        burned = ins[retired.asset] - outs[retired.asset]
        if burned != retired.amount:
            raise _fail(Reason.BAD_RETIREMENT, f"burns {burned}, records {retired.amount}")
    for asset, total_out in outs.items():
        if asset == created or asset == params.native_asset:
            continue
        if ins[asset] < total_out:
            reason = Reason.VALUE_NOT_CONSERVED if ins[asset] else Reason.UNKNOWN_ASSET
            raise _fail(reason, f"asset {asset.hex()[:16]}: in {ins[asset]} < out {total_out}")
    native = AssetId(params.native_asset)
    fee = ins[native] - outs[native]
    if tx.kind is TxKind.PROPOSE:
        fee -= params.gov_deposit
        if fee < 0:
            raise _fail(Reason.BAD_PROPOSAL, f"pays {fee + params.gov_deposit} of the deposit")
    if fee < 0:
        raise _fail(Reason.NEGATIVE_FEE, f"native in {ins[native]} < out {outs[native]}")
    return fee


def _check_unbond(
    tx: Transaction, spent: list[TxOutput], epoch: Epoch, params: ChainParams
) -> None:
    keys = {output.lock.key for output in spent}
    if any(o.lock.kind is not LockKind.STAKE for o in spent) or len(keys) != 1:
        raise _fail(Reason.BAD_UNBOND, "UNBOND spends stake of exactly one validator")
    expected = unbonding_lock(keys.pop(), epoch, params)
    if any(output.lock != expected for output in tx.outputs):
        raise _fail(Reason.BAD_UNBOND, f"outputs must be locked as {expected}")


def connect_block(
    view: UtxoView,
    block: Block,
    params: ChainParams,
    *,
    signatures_valid: SignatureCheck | None = None,
    refunds: Sequence[tuple[Address, Amount]] = (),
    governance: Hash32 | None = None,
) -> UndoData:
    """Validate the block's transactions in order and apply them; all or nothing.

    Transactions may spend outputs of earlier transactions in the same block. The first
    transaction must be the reward, paying at most the block reward plus the fees; its last
    outputs must be exactly `refunds` (governance deposits returned in this block, decided by
    the consensus layer), each locked like the rest of the reward.

    The header's `state_root` must be the view's root once every transaction is applied and
    the governance leaf set to `governance`: the hash of the encoded governance state after the
    block, which the consensus layer computes (None leaves the leaf as it is: a chain driven by
    the ledger alone). On success the view's tip is the block (`UtxoView.finish_block` moves
    it).

    Raises:
        InvalidBlock: with the failing rule's reason; the view is left exactly as it was.
    """
    header = block.header
    if view.height != header.height - 1 or view.tip != header.parent:
        raise InvalidBlock(Reason.BAD_PARENT, "block does not extend the view's tip")
    if len(block.transactions) > params.max_block_txs:
        raise InvalidBlock(Reason.BLOCK_TOO_LARGE, f"{len(block.transactions)} transactions")
    if not block.transactions or block.transactions[0].kind is not TxKind.REWARD:
        raise InvalidBlock(Reason.BAD_REWARD, "the first transaction must be the reward")
    reward = block.transactions[0]
    assert isinstance(reward.payload, RewardPayload)
    if reward.payload.height != header.height:
        raise InvalidBlock(Reason.BAD_REWARD, "reward height differs from block height")
    try:
        check_transaction(reward, params)
    except InvalidTransaction as exc:
        raise InvalidBlock(exc.reason, f"reward: {exc}") from exc
    context = BlockContext(height=header.height, slot=header.slot)
    applied: list[tuple[Transaction, TxUndo]] = []
    txids: set[TxId] = set()
    fees = 0
    governance_before = view.governance_value
    try:
        for index, tx in enumerate(block.transactions[1:], start=1):
            txid = tx.txid
            if txid in txids:
                raise InvalidBlock(Reason.DUPLICATE_TX, f"tx {index}")
            txids.add(txid)
            try:
                fees += validate_transaction(
                    tx, view, params, context, signatures_valid=signatures_valid
                )
            except InvalidTransaction as exc:
                reason = Reason.CONFLICTING_SPEND if _spends_spent(tx, applied) else exc.reason
                raise InvalidBlock(reason, f"tx {index}: {exc}") from exc
            applied.append((tx, view.apply_transaction(tx, txid)))
        kept = len(reward.outputs) - len(refunds)
        if kept < 1 or reward.outputs[kept:] != refund_outputs(refunds, header.height, params):
            raise InvalidBlock(Reason.BAD_REWARD, f"the reward must end in {len(refunds)} refunds")
        paid = sum(output.amount for output in reward.outputs[:kept])
        if paid > params.block_reward + fees:
            raise InvalidBlock(
                Reason.BAD_REWARD, f"{paid} > reward + fees {params.block_reward + fees}"
            )
        applied.insert(0, (reward, view.apply_transaction(reward)))
        if governance is not None:
            view.set_governance(governance)
        root = view.state_root()
        if root != header.state_root:
            raise InvalidBlock(Reason.BAD_STATE_ROOT, f"the state after it is {root.hex()}")
    except InvalidBlock:
        view.set_governance(governance_before)
        _roll_back(view, applied)
        raise
    return view.finish_block(
        block, [undo for _, undo in applied], governance_before=governance_before
    )


def _spends_spent(tx: Transaction, applied: list[tuple[Transaction, TxUndo]]) -> bool:
    """True when `tx` spends an outpoint an earlier transaction of the block already spent."""
    spent = {outpoint for _, undo in applied for outpoint, _ in undo.spent}
    return any(tx_input.outpoint in spent for tx_input in tx.inputs)


def _roll_back(view: UtxoView, applied: list[tuple[Transaction, TxUndo]]) -> None:
    for tx, undo in reversed(applied):
        view.undo_transaction(tx, undo)
