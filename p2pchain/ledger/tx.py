"""Transactions: outpoints, inputs with witnesses, multi-asset outputs with locks, and kinds.

Layout of every object is in docs/protocol.md. A transaction's id hashes it *without* witnesses,
so a signature can commit to the id and the id cannot be changed by re-signing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum
from functools import cached_property
from typing import Self

from p2pchain.errors import DecodeError
from p2pchain.ledger.crypto import sha256, tagged_hash
from p2pchain.ledger.encoding import (
    RLPItem,
    budget_for,
    charge,
    decode_item,
    decode_span,
    encode,
    encode_item,
    item_header,
    list_payload,
    read_bytes,
    read_fixed,
    read_list,
    read_uint,
    uint_bytes,
    wrap_list,
)
from p2pchain.ledger.evidence import Evidence, evidence_from_rlp
from p2pchain.ledger.types import (
    Address,
    Amount,
    AssetId,
    Epoch,
    Hash32,
    Height,
    PublicKey,
    TxId,
)
from p2pchain.params import (
    MAX_ASSET_NAME_BYTES,
    MAX_BENEFICIARY_BYTES,
    MAX_PROPOSAL_CHANGES,
    MAX_PURPOSE_BYTES,
)

_TX_SIG_TAG = b"p2pchain/tx"
_OFFER_SIG_TAG = b"p2pchain/offer"
_GOV_VOTE_SIG_TAG = b"p2pchain/gov-vote"
_ASSET_ID_TAG = b"p2pchain/asset"
MAX_OUTPUT_INDEX = 2**32 - 1
EMPTY_KEY = PublicKey(bytes(32))
EMPTY_SIGNATURE = bytes(64)


class LockKind(IntEnum):
    """When and how an output may be spent."""

    NONE = 0
    """Spendable at once."""
    HEIGHT = 1
    """Spendable in a block whose height is >= `value` (reward maturity)."""
    EPOCH = 2
    """Spendable in a block whose epoch is >= `value`."""
    STAKE = 3
    """Bonded stake of validator `key`; spendable only by an UNBOND transaction."""
    UNBONDING = 4
    """Stake leaving validator `key`; spendable from epoch `value`, slashable until spent."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Lock:
    """A spending condition on top of the owner's signature."""

    kind: LockKind = LockKind.NONE
    value: int = 0
    key: bytes = b""

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(self.kind), uint_bytes(self.value), self.key]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        fields = read_list(item, "lock", length=3)
        kind = LockKind(read_uint(fields[0], "lock.kind", max_value=max(LockKind)))
        value = read_uint(fields[1], "lock.value")
        key = read_bytes(fields[2], "lock.key", 32)
        lock = cls(kind=kind, value=value, key=key)
        if not lock.is_well_formed():
            raise DecodeError(f"lock: fields do not fit kind {kind.name}")
        return lock

    def is_well_formed(self) -> bool:
        """Each kind uses exactly the fields it needs; the rest stay empty."""
        has_key = len(self.key) == 32
        match self.kind:
            case LockKind.NONE:
                return self.value == 0 and not self.key
            case LockKind.HEIGHT | LockKind.EPOCH:
                return not self.key
            case LockKind.STAKE:
                return self.value == 0 and has_key
            case LockKind.UNBONDING:
                return has_key


NO_LOCK = Lock()
_NO_LOCK_RLP = NO_LOCK.to_rlp()


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class OutPoint:
    """Output number `index` of transaction `txid`."""

    txid: TxId
    index: int

    def __str__(self) -> str:
        """`txid:index` with the txid in hex, as errors and logs show it."""
        return f"{self.txid.hex()}:{self.index}"

    def to_rlp(self) -> RLPItem:
        return [self.txid, uint_bytes(self.index)]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        fields = read_list(item, "outpoint", length=2)
        return cls(
            txid=TxId(read_fixed(fields[0], "outpoint.txid", 32)),
            index=read_uint(fields[1], "outpoint.index", max_value=MAX_OUTPUT_INDEX),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TxInput:
    """Spends `outpoint`; the witness is the owner's x-only key and BIP-340 signature.

    The signature covers the whole transaction, unless `offer_until` is set: then it is a
    standing offer's, covering only this outpoint, the output at this input's own index and
    the last height the offer may be taken at (`offer_signing_message`), so that anyone may
    complete the transaction around it.
    """

    outpoint: OutPoint
    public_key: PublicKey = EMPTY_KEY
    signature: bytes = EMPTY_SIGNATURE
    offer_until: Height | None = None

    def to_rlp(self) -> RLPItem:
        fields: list[RLPItem] = [self.outpoint.to_rlp(), self.public_key, self.signature]
        if self.offer_until is not None:
            fields.append(uint_bytes(self.offer_until))
        return fields

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        fields = read_list(item, "input")
        if len(fields) not in (3, 4):
            raise DecodeError(f"input: expected 3 or 4 fields, got {len(fields)}")
        until = None
        if len(fields) == 4:
            until = Height(read_uint(fields[3], "input.offer_until"))
        return cls(
            outpoint=OutPoint.from_rlp(fields[0]),
            public_key=PublicKey(read_fixed(fields[1], "input.public_key", 32)),
            signature=read_fixed(fields[2], "input.signature", 64),
            offer_until=until,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TxOutput:
    """`amount` base units of `asset`, spendable by `address` once `lock` allows it."""

    asset: AssetId
    amount: Amount
    address: Address
    lock: Lock = NO_LOCK

    def to_rlp(self) -> RLPItem:
        return [self.asset, uint_bytes(self.amount), self.address, self.lock.to_rlp()]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        fields = read_list(item, "output", length=4)
        return cls(
            asset=AssetId(read_fixed(fields[0], "output.asset", 32)),
            amount=Amount(read_uint(fields[1], "output.amount")),
            address=Address(read_fixed(fields[2], "output.address", 20)),
            lock=NO_LOCK if fields[3] == _NO_LOCK_RLP else Lock.from_rlp(fields[3]),
        )


class TxKind(IntEnum):
    """What a transaction does; each kind has its own payload and rules."""

    TRANSFER = 0
    REWARD = 1
    ISSUE = 2
    MINT = 3
    BOND = 4
    UNBOND = 5
    SLASH = 6
    RETIRE = 7
    PROPOSE = 8
    GOV_VOTE = 9


class VoteChoice(IntEnum):
    """A validator's answer to a governance proposal."""

    YES = 0
    NO = 1
    ABSTAIN = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class RewardPayload:
    """The height of the block whose reward this is (makes every reward txid unique)."""

    height: Height


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuePayload:
    """A new asset: its display name and optional supply cap (0 = uncapped)."""

    name: bytes
    cap: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class MintPayload:
    """The asset that this transaction mints more of."""

    asset: AssetId


@dataclass(frozen=True, slots=True, kw_only=True)
class RetirePayload:
    """A public record that `amount` units of `asset` leave the supply for good, on behalf of
    `beneficiary` and for `purpose` (UTF-8 text by convention): a carbon credit's retirement.
    The retiring transaction's id is the certificate."""

    asset: AssetId
    amount: Amount
    beneficiary: bytes
    purpose: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposePayload:
    """A governance proposal: set each named parameter to its value from epoch `activation`
    on, if the stake votes for it; `refund` receives the deposit back when the vote reaches
    quorum. Names are ASCII parameter names (`params.GOVERNABLE`)."""

    changes: tuple[tuple[bytes, int], ...]
    activation: Epoch
    refund: Address


@dataclass(frozen=True, slots=True, kw_only=True)
class GovVotePayload:
    """Validator `validator`'s vote on the proposal whose PROPOSE transaction is `proposal`,
    signed by that validator's key (`gov_vote_signing_message`): whoever pays the fee, only
    the validator decides the vote."""

    proposal: TxId
    choice: VoteChoice
    validator: PublicKey
    signature: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class SlashPayload:
    """Proof that a validator signed two conflicting messages."""

    evidence: Evidence


KindPayload = (
    RewardPayload
    | IssuePayload
    | MintPayload
    | SlashPayload
    | RetirePayload
    | ProposePayload
    | GovVotePayload
)
"""The payload of a kind that has one."""
Payload = KindPayload | None

_PAYLOAD_TYPE: dict[TxKind, type[KindPayload] | None] = {
    TxKind.TRANSFER: None,
    TxKind.REWARD: RewardPayload,
    TxKind.ISSUE: IssuePayload,
    TxKind.MINT: MintPayload,
    TxKind.BOND: None,
    TxKind.UNBOND: None,
    TxKind.SLASH: SlashPayload,
    TxKind.RETIRE: RetirePayload,
    TxKind.PROPOSE: ProposePayload,
    TxKind.GOV_VOTE: GovVotePayload,
}

MAX_PARAM_NAME_BYTES = 32
"""The longest parameter name a proposal's change carries."""


def _payload_to_rlp(payload: Payload) -> RLPItem:
    match payload:
        case None:
            return []
        case RewardPayload(height=height):
            return [uint_bytes(height)]
        case IssuePayload(name=name, cap=cap):
            return [name, uint_bytes(cap)]
        case MintPayload(asset=asset):
            return [asset]
        case SlashPayload(evidence=evidence):
            return [evidence.to_rlp()]
        case RetirePayload(asset=asset, amount=amount, beneficiary=beneficiary, purpose=purpose):
            return [asset, uint_bytes(amount), beneficiary, purpose]
        case ProposePayload(changes=changes, activation=activation, refund=refund):
            return [
                [[name, uint_bytes(value)] for name, value in changes],
                uint_bytes(activation),
                refund,
            ]
        case GovVotePayload(
            proposal=proposal, choice=choice, validator=validator, signature=signature
        ):
            return [proposal, uint_bytes(choice), validator, signature]
    raise TypeError(f"unknown payload {payload!r}")  # pragma: no cover


def _payload_from_rlp(kind: TxKind, item: RLPItem) -> Payload:
    expected = _PAYLOAD_TYPE[kind]
    if expected is None:
        read_list(item, "payload", length=0)
        return None
    if expected is RewardPayload:
        (height,) = read_list(item, "payload", length=1)
        return RewardPayload(height=Height(read_uint(height, "payload.height")))
    if expected is IssuePayload:
        name, cap = read_list(item, "payload", length=2)
        return IssuePayload(
            name=read_bytes(name, "payload.name", MAX_ASSET_NAME_BYTES),
            cap=read_uint(cap, "payload.cap"),
        )
    if expected is MintPayload:
        (asset,) = read_list(item, "payload", length=1)
        return MintPayload(asset=AssetId(read_fixed(asset, "payload.asset", 32)))
    if expected is RetirePayload:
        asset, amount, beneficiary, purpose = read_list(item, "payload", length=4)
        return RetirePayload(
            asset=AssetId(read_fixed(asset, "payload.asset", 32)),
            amount=Amount(read_uint(amount, "payload.amount")),
            beneficiary=read_bytes(beneficiary, "payload.beneficiary", MAX_BENEFICIARY_BYTES),
            purpose=read_bytes(purpose, "payload.purpose", MAX_PURPOSE_BYTES),
        )
    if expected is ProposePayload:
        changes, activation, refund = read_list(item, "payload", length=3)
        pairs = []
        for change in read_list(changes, "payload.changes"):
            name, value = read_list(change, "payload.change", length=2)
            pairs.append(
                (
                    read_bytes(name, "payload.change.name", MAX_PARAM_NAME_BYTES),
                    read_uint(value, "payload.change.value"),
                )
            )
        if len(pairs) > MAX_PROPOSAL_CHANGES:
            raise DecodeError(f"more than {MAX_PROPOSAL_CHANGES} changes")
        return ProposePayload(
            changes=tuple(pairs),
            activation=Epoch(read_uint(activation, "payload.activation")),
            refund=Address(read_fixed(refund, "payload.refund", 20)),
        )
    if expected is GovVotePayload:
        proposal, choice, validator, signature = read_list(item, "payload", length=4)
        choice_value = read_uint(choice, "payload.choice")
        if choice_value > max(VoteChoice):
            raise DecodeError(f"vote choice {choice_value}")
        return GovVotePayload(
            proposal=TxId(read_fixed(proposal, "payload.proposal", 32)),
            choice=VoteChoice(choice_value),
            validator=PublicKey(read_fixed(validator, "payload.validator", 32)),
            signature=read_fixed(signature, "payload.signature", 64),
        )
    (evidence,) = read_list(item, "payload", length=1)
    return SlashPayload(evidence=evidence_from_rlp(evidence))


@dataclass(frozen=True, kw_only=True)
class Transaction:
    """A ledger transaction: ``[kind, inputs, outputs, payload]``.

    Not slotted, so that `txid` and `size` are computed once per object (`cached_property`):
    validation, the mempool and block building each ask for them.
    """

    kind: TxKind
    inputs: tuple[TxInput, ...] = ()
    outputs: tuple[TxOutput, ...] = ()
    payload: Payload = None

    def __post_init__(self) -> None:
        expected = _PAYLOAD_TYPE[self.kind]
        if (expected is None) != (self.payload is None) or (
            expected is not None and not isinstance(self.payload, expected)
        ):
            raise TypeError(f"{self.kind.name} takes payload {expected}, got {self.payload!r}")

    def to_rlp(self) -> RLPItem:
        return [
            uint_bytes(self.kind),
            [tx_input.to_rlp() for tx_input in self.inputs],
            [output.to_rlp() for output in self.outputs],
            _payload_to_rlp(self.payload),
        ]

    @cached_property
    def _encodings(self) -> tuple[bytes, bytes]:
        """(full encoding, encoding without witnesses), sharing the common parts."""
        kind = encode_item(uint_bytes(self.kind))
        outputs = encode_item([output.to_rlp() for output in self.outputs])
        payload = encode_item(_payload_to_rlp(self.payload))
        inputs = encode_item([tx_input.to_rlp() for tx_input in self.inputs])
        outpoints = encode_item([tx_input.outpoint.to_rlp() for tx_input in self.inputs])
        return (
            wrap_list(kind + inputs + outputs + payload),
            wrap_list(kind + outpoints + outputs + payload),
        )

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        fields = read_list(item, "tx", length=4)
        kind = TxKind(read_uint(fields[0], "tx.kind", max_value=max(TxKind)))
        inputs = tuple(TxInput.from_rlp(x) for x in read_list(fields[1], "tx.inputs"))
        outputs = tuple(TxOutput.from_rlp(x) for x in read_list(fields[2], "tx.outputs"))
        return cls(
            kind=kind, inputs=inputs, outputs=outputs, payload=_payload_from_rlp(kind, fields[3])
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Transaction:
        """Decode untrusted bytes, reusing them for `size` and `txid` instead of re-encoding.

        Raises:
            DecodeError: when `data` is not a canonical transaction.
        """
        data = bytes(data)
        return read_transaction(data, 0, len(data), 0, budget_for(data))[0]

    @cached_property
    def txid(self) -> TxId:
        """SHA-256 of the encoding without witnesses."""
        return TxId(sha256(self._encodings[1]))

    @property
    def encoded(self) -> bytes:
        """The canonical encoding with witnesses (computed once)."""
        return self._encodings[0]

    @cached_property
    def size(self) -> int:
        """Encoded size in bytes (with witnesses): what fee rates and limits count."""
        return len(self._encodings[0])

    @cached_property
    def output_encodings(self) -> tuple[bytes, ...]:
        """Each output's canonical encoding, cut from `encoded` rather than re-encoded: the
        state commitment hashes every new output (`commitment.output_value`)."""
        data = self.encoded
        position, stop = list_payload(data, 0, len(data))
        for _ in range(2):  # kind, inputs
            position = item_header(data, position, stop)[2]
        position, end = list_payload(data, position, stop)
        found = []
        while position < end:
            item_end = item_header(data, position, end)[2]
            found.append(data[position:item_end])
            position = item_end
        return tuple(found)

    def with_inputs(self, inputs: tuple[TxInput, ...]) -> Transaction:
        """The same transaction with other inputs (used to attach witnesses)."""
        return replace(self, inputs=inputs)


def read_transaction(
    data: bytes, start: int, end: int, depth: int, budget: int
) -> tuple[Transaction, int]:
    """The transaction encoded in `data[start:end]`, nested `depth` lists deep, and the decode
    budget left (see `decode_span`): the same result and the same errors as the generic decoder,
    but a transaction of the usual shape is read in place, which is over twice as fast.
    """
    raw = data[start:end]
    try:
        tx, inputs, outputs = _read_in_place(raw)
    except (DecodeError, IndexError):  # an unusual shape, or malformed: the generic path decides
        pass
    else:
        return tx, charge(budget, 4 + 2 * inputs + 2 * outputs, 4 + 6 * inputs + 8 * outputs)
    item, budget = decode_span(data, start, end, depth, budget)
    return Transaction.from_rlp(item), budget  # canonical: its encodings are `raw` again


_IN_PLACE_KINDS: dict[int, TxKind] = {
    encode_item(uint_bytes(kind))[0]: kind
    for kind, payload in _PAYLOAD_TYPE.items()
    if payload is None
}
_NO_LOCK_BYTES = encode_item(_NO_LOCK_RLP)


# What `_read_in_place` builds its objects with: `object.__new__` and the slots' own setters.
# The frozen dataclasses' __init__ (`object.__setattr__` per field) was 55 % of the in-place
# read; every field here has been checked by the reader, and these classes have no
# `__post_init__`, so skipping __init__ skips nothing.
_new = object.__new__
_set_txid, _set_index = (OutPoint.__dict__[name].__set__ for name in ("txid", "index"))
_set_outpoint, _set_key, _set_signature, _set_offer_until = (
    TxInput.__dict__[name].__set__
    for name in ("outpoint", "public_key", "signature", "offer_until")
)
_set_asset, _set_amount, _set_address, _set_lock = (
    TxOutput.__dict__[name].__set__ for name in ("asset", "amount", "address", "lock")
)


def _uint_at(data: bytes, position: int, max_bytes: int) -> tuple[int, int]:
    """A canonical integer of at most `max_bytes` bytes at `position`, and where it ends."""
    prefix = data[position]
    if prefix < 0x80:
        if prefix == 0:
            raise DecodeError("integer with leading zero")
        return prefix, position + 1
    length = prefix - 0x80
    if length > max_bytes:
        raise DecodeError("integer too long")
    stop = position + 1 + length
    if length and (data[position + 1] == 0 or (length == 1 and data[position + 1] < 0x80)):
        raise DecodeError("non-canonical integer")
    return int.from_bytes(data[position + 1 : stop], "big"), stop


def _read_in_place(data: bytes) -> tuple[Transaction, int, int]:
    """A transaction without payload whose inputs all carry 32-byte keys, 64-byte signatures
    and no offer terms,
    read straight from its bytes; the id's body is built from the outpoints' own bytes.

    Returns it with its input and output counts. Raises `DecodeError` or `IndexError` for any
    other shape, malformed or not; the caller then decodes `data` the generic way.
    """
    end = len(data)
    body, stop = list_payload(data, 0, end)
    kind = _IN_PLACE_KINDS.get(data[body])
    if kind is None or stop != end:
        raise DecodeError("not an in-place shape")
    position, inputs_end = list_payload(data, body + 1, end)
    inputs: list[TxInput] = []
    outpoints: list[bytes] = []
    while position < inputs_end:
        field, input_end = list_payload(data, position, inputs_end)
        if data[field + 1] != 0xA0:
            raise DecodeError("not an in-place shape")
        index, key = _uint_at(data, field + 34, 4)
        if data[field] != 0xBF + key - field or data[key] != 0xA0 or data[key + 33] != 0xB8:
            raise DecodeError("not an in-place shape")
        if data[key + 34] != 0x40 or key + 99 != input_end:
            raise DecodeError("not an in-place shape")
        outpoints.append(data[field:key])
        outpoint = _new(OutPoint)
        _set_txid(outpoint, data[field + 2 : field + 34])
        _set_index(outpoint, index)
        tx_input = _new(TxInput)
        _set_outpoint(tx_input, outpoint)
        _set_key(tx_input, data[key + 1 : key + 33])
        _set_signature(tx_input, data[key + 35 : input_end])
        _set_offer_until(tx_input, None)
        inputs.append(tx_input)
        position = input_end
    outputs_start = inputs_end
    position, outputs_end = list_payload(data, outputs_start, end)
    outputs: list[TxOutput] = []
    while position < outputs_end:
        field, output_end = list_payload(data, position, outputs_end)
        if data[field] != 0xA0:
            raise DecodeError("not an in-place shape")
        amount, address = _uint_at(data, field + 33, 8)
        if data[address] != 0x94:
            raise DecodeError("not an in-place shape")
        lock_bytes = data[address + 21 : output_end]
        lock = NO_LOCK if lock_bytes == _NO_LOCK_BYTES else Lock.from_rlp(decode_item(lock_bytes))
        output = _new(TxOutput)
        _set_asset(output, data[field + 1 : field + 33])
        _set_amount(output, amount)
        _set_address(output, data[address + 1 : address + 21])
        _set_lock(output, lock)
        outputs.append(output)
        position = output_end
    if outputs_end + 1 != end or data[outputs_end] != 0xC0:
        raise DecodeError("not an in-place shape")
    txid_body = wrap_list(
        data[body : body + 1] + wrap_list(b"".join(outpoints)) + data[outputs_start:end]
    )
    tx = _new(Transaction)  # a payload-free kind with no payload: what __post_init__ checks
    tx.__dict__.update(  # the cached properties primed: each is asked for by every validation
        kind=kind,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        payload=None,
        _encodings=(data, txid_body),
        txid=TxId(sha256(txid_body)),
        size=end,
    )
    return tx, len(inputs), len(outputs)


def tx_signing_message(chain_id: int, txid: bytes) -> Hash32:
    """What every input's key signs: tag, chain id (8 bytes big-endian), txid."""
    return tagged_hash(_TX_SIG_TAG, chain_id.to_bytes(8, "big") + txid)


def offer_signing_message(
    chain_id: int, outpoint: OutPoint, wanted: TxOutput, until: Height
) -> Hash32:
    """What a standing offer's key signs: tag, chain id (8 bytes big-endian) and
    ``rlp([outpoint, wanted, until])``. The signature spends `outpoint` in any transaction that
    pays `wanted` at the same index as the input, in a block at height `until` or lower."""
    terms = encode_item([outpoint.to_rlp(), wanted.to_rlp(), uint_bytes(until)])
    return tagged_hash(_OFFER_SIG_TAG, chain_id.to_bytes(8, "big") + terms)


def gov_vote_signing_message(chain_id: int, proposal: TxId, choice: VoteChoice) -> Hash32:
    """What a validator's key signs to vote: tag, chain id (8 bytes big-endian), the
    proposal's txid and the choice (one byte)."""
    return tagged_hash(
        _GOV_VOTE_SIG_TAG, chain_id.to_bytes(8, "big") + proposal + bytes([int(choice)])
    )


def compute_asset_id(first_input: OutPoint) -> AssetId:
    """An issued asset's id: derived from the issue transaction's first outpoint (spent once)."""
    return AssetId(tagged_hash(_ASSET_ID_TAG, encode(first_input)))
