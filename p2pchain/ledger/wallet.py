"""A pure wallet: coin selection and signed transactions, with change and an explicit fee.

The wallet never reads the network or the clock: the caller passes the outputs it owns (for
example `UtxoView.utxos_of(wallet.address)`) and the block context the transaction targets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from p2pchain.errors import InsufficientFunds
from p2pchain.ledger.address import address_of, encode_address
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.offer import Offer, sign_offer
from p2pchain.ledger.partial import PartialTransaction
from p2pchain.ledger.tx import (
    GovVotePayload,
    IssuePayload,
    Lock,
    LockKind,
    MintPayload,
    OutPoint,
    Payload,
    ProposePayload,
    RetirePayload,
    Transaction,
    TxInput,
    TxKind,
    TxOutput,
    VoteChoice,
    compute_asset_id,
    gov_vote_signing_message,
    tx_signing_message,
)
from p2pchain.ledger.types import Address, Amount, AssetId, Epoch, Height, PublicKey, TxId
from p2pchain.ledger.validation import BlockContext, unbonding_lock
from p2pchain.params import ChainParams

Coin = tuple[OutPoint, TxOutput]


def is_spendable(output: TxOutput, context: BlockContext, params: ChainParams) -> bool:
    """True when a plain spend of `output` may be included at `context`."""
    lock = output.lock
    match lock.kind:
        case LockKind.NONE:
            return True
        case LockKind.HEIGHT:
            return context.height >= lock.value
        case LockKind.EPOCH | LockKind.UNBONDING:
            return context.epoch(params) >= lock.value
        case LockKind.STAKE:
            return False


def select_coins(coins: Iterable[Coin], asset: AssetId, target: int) -> list[Coin]:
    """Largest-first selection of `asset` coins covering `target` (fewest inputs, no dust walk).

    Raises:
        InsufficientFunds: when all the coins together are not enough.
    """
    candidates = sorted(
        (coin for coin in coins if coin[1].asset == asset),
        key=lambda coin: (-coin[1].amount, coin[0]),
    )
    chosen: list[Coin] = []
    total = 0
    for coin in candidates:
        if total >= target:
            break
        chosen.append(coin)
        total += coin[1].amount
    if total < target:
        raise InsufficientFunds(f"need {target} of {asset.hex()[:16]}, have {total}")
    return chosen


def fund(
    coins: Sequence[Coin],
    owner: Address,
    needs: dict[AssetId, int],
    context: BlockContext,
    params: ChainParams,
) -> tuple[list[Coin], list[TxOutput]]:
    """Choose `owner`'s inputs for every asset in `needs`; return them and the change to
    `owner`. At least one native coin is chosen when nothing is needed, because every
    non-reward transaction has inputs (and an issue derives its asset id from the first).

    Raises:
        InsufficientFunds: when the spendable coins do not cover an asset's need.
    """
    native = AssetId(params.native_asset)
    spendable = [c for c in coins if is_spendable(c[1], context, params)]
    chosen: list[Coin] = []
    for asset, amount in sorted(needs.items()):
        have = sum(c[1].amount for c in chosen if c[1].asset == asset)
        rest = [c for c in spendable if c not in chosen]
        if amount > have:
            chosen += select_coins(rest, asset, amount - have)
    if not chosen:
        chosen = select_coins(spendable, native, 1)
    change = []
    for asset in sorted({c[1].asset for c in chosen}):
        excess = sum(c[1].amount for c in chosen if c[1].asset == asset) - needs.get(asset, 0)
        if excess > 0:
            change.append(TxOutput(asset=asset, amount=Amount(excess), address=owner))
    return chosen, change


@dataclass(frozen=True, slots=True)
class Wallet:
    """One key and the chain it signs for."""

    key: SecretKey
    params: ChainParams

    @property
    def public_key(self) -> PublicKey:
        return self.key.public_key

    @property
    def address(self) -> Address:
        return address_of(self.key.public_key)

    @property
    def address_text(self) -> str:
        return encode_address(self.address, self.params.address_prefix)

    def sign(self, tx: Transaction) -> Transaction:
        """Attach this key's witness to every input that has no offer's witness."""
        signature = self.key.sign(tx_signing_message(self.params.chain_id, tx.txid))
        inputs = tuple(
            i
            if i.offer_until is not None
            else TxInput(outpoint=i.outpoint, public_key=self.public_key, signature=signature)
            for i in tx.inputs
        )
        return tx.with_inputs(inputs)

    def _fund(
        self,
        coins: Sequence[Coin],
        context: BlockContext,
        needs: dict[AssetId, int],
        fee: Amount,
    ) -> tuple[list[Coin], list[TxOutput]]:
        native = AssetId(self.params.native_asset)
        needs = dict(needs)
        needs[native] = needs.get(native, 0) + fee
        return fund(coins, self.address, needs, context, self.params)

    def _build(
        self,
        kind: TxKind,
        chosen: list[Coin],
        outputs: list[TxOutput],
        payload: Payload = None,
    ) -> Transaction:
        inputs = tuple(TxInput(outpoint=outpoint) for outpoint, _ in chosen)
        tx = Transaction(kind=kind, inputs=inputs, outputs=tuple(outputs), payload=payload)
        return self.sign(tx)

    def build_transfer(
        self,
        coins: Sequence[Coin],
        payments: Sequence[TxOutput],
        *,
        fee: Amount,
        context: BlockContext,
    ) -> Transaction:
        """Pay each of `payments` from `coins`, returning change to this wallet."""
        needs: dict[AssetId, int] = {}
        for payment in payments:
            needs[payment.asset] = needs.get(payment.asset, 0) + payment.amount
        chosen, change = self._fund(coins, context, needs, fee)
        return self._build(TxKind.TRANSFER, chosen, [*payments, *change])

    def build_issue(
        self,
        coins: Sequence[Coin],
        *,
        name: bytes,
        amount: Amount,
        cap: int = 0,
        fee: Amount,
        context: BlockContext,
    ) -> tuple[Transaction, AssetId]:
        """Create a new asset with `amount` units owned by this wallet; return the tx and id."""
        chosen, change = self._fund(coins, context, {}, fee)
        asset = compute_asset_id(chosen[0][0])
        minted = TxOutput(asset=asset, amount=amount, address=self.address)
        tx = self._build(TxKind.ISSUE, chosen, [minted, *change], IssuePayload(name=name, cap=cap))
        return tx, asset

    def build_mint(
        self,
        coins: Sequence[Coin],
        *,
        asset: AssetId,
        amount: Amount,
        fee: Amount,
        context: BlockContext,
    ) -> Transaction:
        """Mint `amount` more of an asset this wallet issued."""
        chosen, change = self._fund(coins, context, {}, fee)
        minted = TxOutput(asset=asset, amount=amount, address=self.address)
        return self._build(TxKind.MINT, chosen, [minted, *change], MintPayload(asset=asset))

    def build_bond(
        self,
        coins: Sequence[Coin],
        *,
        validator: PublicKey,
        amount: Amount,
        fee: Amount,
        context: BlockContext,
    ) -> Transaction:
        """Bond `amount` as stake of `validator`; this wallet stays the owner who may unbond."""
        native = AssetId(self.params.native_asset)
        chosen, change = self._fund(coins, context, {native: amount}, fee)
        stake = TxOutput(
            asset=native,
            amount=amount,
            address=self.address,
            lock=Lock(kind=LockKind.STAKE, key=validator),
        )
        return self._build(TxKind.BOND, chosen, [stake, *change])

    def build_unbond(
        self, stakes: Sequence[Coin], *, fee: Amount, context: BlockContext
    ) -> Transaction:
        """Unbond stake outputs of one validator; the value unlocks after the unbonding period."""
        keys = {output.lock.key for _, output in stakes}
        if len(keys) != 1 or any(o.lock.kind is not LockKind.STAKE for _, o in stakes):
            raise ValueError("unbond stake outputs of exactly one validator")
        total = sum(output.amount for _, output in stakes)
        if total <= fee:
            raise InsufficientFunds(f"stake {total} does not cover fee {fee}")
        lock = unbonding_lock(keys.pop(), context.epoch(self.params), self.params)
        released = TxOutput(
            asset=AssetId(self.params.native_asset),
            amount=Amount(total - fee),
            address=self.address,
            lock=lock,
        )
        return self._build(TxKind.UNBOND, list(stakes), [released])

    def build_retire(
        self,
        coins: Sequence[Coin],
        *,
        asset: AssetId,
        amount: Amount,
        beneficiary: bytes,
        purpose: bytes,
        fee: Amount,
        context: BlockContext,
    ) -> Transaction:
        """Retire (burn) `amount` units of an issued asset on behalf of `beneficiary`, with the
        record on chain; the txid is the retirement's certificate."""
        chosen, change = self._fund(coins, context, {asset: amount}, fee)
        payload = RetirePayload(
            asset=asset, amount=amount, beneficiary=beneficiary, purpose=purpose
        )
        return self._build(TxKind.RETIRE, chosen, change, payload)

    def build_propose(
        self,
        coins: Sequence[Coin],
        *,
        changes: Sequence[tuple[str, int]],
        activation: Epoch,
        fee: Amount,
        context: BlockContext,
        refund: Address | None = None,
    ) -> Transaction:
        """Propose setting governable parameters from epoch `activation` on, paying the
        chain's deposit (returned to `refund`, default this wallet, if the vote reaches
        quorum) and `fee`."""
        deposit = Amount(self.params.gov_deposit)
        chosen, change = self._fund(coins, context, {}, Amount(fee + deposit))
        payload = ProposePayload(
            changes=tuple((name.encode("ascii"), value) for name, value in changes),
            activation=activation,
            refund=self.address if refund is None else refund,
        )
        return self._build(TxKind.PROPOSE, chosen, change, payload)

    def build_gov_vote(
        self,
        coins: Sequence[Coin],
        *,
        proposal: TxId,
        choice: VoteChoice,
        fee: Amount,
        context: BlockContext,
        validator: SecretKey | None = None,
    ) -> Transaction:
        """Vote `choice` on `proposal` as `validator` (default: this wallet's key, which is
        how a validator's own wallet votes), this wallet paying the fee."""
        voter = self.key if validator is None else validator
        message = gov_vote_signing_message(self.params.chain_id, proposal, choice)
        payload = GovVotePayload(
            proposal=proposal,
            choice=choice,
            validator=voter.public_key,
            signature=voter.sign(message),
        )
        chosen, change = self._fund(coins, context, {}, fee)
        return self._build(TxKind.GOV_VOTE, chosen, change, payload)

    def make_offer(self, coin: Coin, wanted: TxOutput, *, until: Height) -> Offer:
        """Offer the coin `coin` (this wallet's) to whoever pays `wanted`, up to height `until`.

        Raises:
            ValueError: the coin is not this wallet's.
        """
        outpoint, output = coin
        if output.address != self.address:
            raise ValueError(f"{outpoint} is not this wallet's coin")
        return sign_offer(self.key, self.params.chain_id, outpoint, wanted, until)

    def build_take(
        self,
        offers: Sequence[tuple[Offer, TxOutput]],
        coins: Sequence[Coin],
        *,
        fee: Amount,
        context: BlockContext,
    ) -> Transaction:
        """Take each `(offer, offered coin)` of `offers` in one transaction: the makers' inputs
        and wanted outputs first (index by index, as offers require), then this wallet's
        inputs paying for them and the fee, and one output per asset bringing the offered
        coins and the change to this wallet."""
        if not offers:
            raise ValueError("no offer to take")
        needs: dict[AssetId, int] = {}
        for offer, _ in offers:
            needs[offer.wanted.asset] = needs.get(offer.wanted.asset, 0) + offer.wanted.amount
        taken = {offer.outpoint for offer, _ in offers}
        chosen, change = self._fund([c for c in coins if c[0] not in taken], context, needs, fee)
        received: dict[AssetId, int] = {}
        for output in [*(offered for _, offered in offers), *change]:
            received[output.asset] = received.get(output.asset, 0) + output.amount
        inputs = [offer.as_input() for offer, _ in offers]
        inputs += [TxInput(outpoint=outpoint) for outpoint, _ in chosen]
        outputs = [offer.wanted for offer, _ in offers]
        outputs += [
            TxOutput(asset=asset, amount=Amount(amount), address=self.address)
            for asset, amount in sorted(received.items())
        ]
        tx = Transaction(kind=TxKind.TRANSFER, inputs=tuple(inputs), outputs=tuple(outputs))
        return self.sign(tx)

    def build_swap(
        self,
        coins: Sequence[Coin],
        their_coins: Sequence[Coin],
        *,
        give: TxOutput,
        get: TxOutput,
        fee: Amount,
        context: BlockContext,
    ) -> PartialTransaction:
        """A two-party swap, signed by this wallet: `give` (paid to the counterparty) from our
        coins and the fee, `get` (paid to us) from theirs. The counterparty checks `flows`,
        signs its inputs (`PartialTransaction.sign`) and submits the finished transaction."""
        if get.address != self.address:
            raise ValueError("`get` must pay this wallet")
        their_address = give.address
        native = AssetId(self.params.native_asset)
        our_needs: dict[AssetId, int] = {give.asset: give.amount}
        our_needs[native] = our_needs.get(native, 0) + fee
        ours, our_change = fund(coins, self.address, our_needs, context, self.params)
        theirs, their_change = fund(
            [c for c in their_coins if c[1].address == their_address],
            their_address,
            {get.asset: get.amount},
            context,
            self.params,
        )
        chosen = ours + theirs
        tx = Transaction(
            kind=TxKind.TRANSFER,
            inputs=tuple(TxInput(outpoint=outpoint) for outpoint, _ in chosen),
            outputs=(give, get, *our_change, *their_change),
        )
        partial = PartialTransaction.unsigned(tx, [output for _, output in chosen])
        return partial.sign(self.key, self.params.chain_id)[0]
