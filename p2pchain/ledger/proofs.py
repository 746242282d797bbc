"""State proofs: what a full node sends so that a client holding only a state root can check a
balance, an output, an asset record or the validator stake table without trusting the node.

Each proof is a wire object (exact layout in docs/protocol.md, "State proofs"); `prove_*` makes
one from a `UtxoView`, `verify_*` checks one against a root and returns what it proves, or
raises `InvalidProof`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final, Self

from p2pchain.errors import DecodeError, InvalidProof
from p2pchain.ledger.commitment import (
    VALIDATORS_KEY,
    account_key,
    account_trie,
    asset_key,
    asset_value,
    outpoint_key,
    output_value,
    validator_trie,
)
from p2pchain.ledger.encoding import (
    RLPItem,
    encode_item,
    read_fixed,
    read_list,
    read_uint,
    uint_bytes,
)
from p2pchain.ledger.trie import Trie, TrieProof, verify_proof
from p2pchain.ledger.tx import OutPoint, TxOutput
from p2pchain.ledger.types import Address, AssetId, PublicKey
from p2pchain.ledger.utxo import AssetInfo, UtxoView

MAX_PROOF_OUTPUTS: Final = 2_000
"""Outputs an account proof may list (about 220 KiB). An address holding more can still be
proven output by output (`OutputProof`), not as a whole balance."""

MAX_PROOF_VALIDATORS: Final = 10_000
"""Validators a stake-table proof may list (about 420 KiB)."""


class ProofTooLarge(InvalidProof):
    """The account or stake table has more entries than one proof may carry."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountProof:
    """Every unspent output `address` owns, and where its account sits in the top trie."""

    address: Address
    outputs: tuple[tuple[OutPoint, TxOutput], ...]
    """In ascending outpoint order; empty when the address owns nothing."""
    top: TrieProof

    def to_rlp(self) -> RLPItem:
        return [
            self.address,
            [[outpoint.to_rlp(), output.to_rlp()] for outpoint, output in self.outputs],
            self.top.to_rlp(),
        ]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        address, outputs_item, top = read_list(item, "account_proof", length=3)
        entries = read_list(outputs_item, "account_proof.outputs")
        if len(entries) > MAX_PROOF_OUTPUTS:
            raise DecodeError(f"account_proof.outputs: {len(entries)} > {MAX_PROOF_OUTPUTS}")
        outputs = []
        for entry in entries:
            outpoint, output = read_list(entry, "account_proof.outputs[]", length=2)
            outputs.append((OutPoint.from_rlp(outpoint), TxOutput.from_rlp(output)))
        return cls(
            address=Address(read_fixed(address, "account_proof.address", 20)),
            outputs=tuple(outputs),
            top=TrieProof.from_rlp(top),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputProof:
    """Whether one outpoint is unspent: its owner's account root in the top trie, then the
    outpoint in that account trie (present with `output`, or absent)."""

    outpoint: OutPoint
    address: Address
    output: TxOutput | None
    top: TrieProof
    account: TrieProof

    def to_rlp(self) -> RLPItem:
        output: RLPItem = [] if self.output is None else self.output.to_rlp()
        return [
            self.outpoint.to_rlp(),
            self.address,
            output,
            self.top.to_rlp(),
            self.account.to_rlp(),
        ]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        outpoint, address, output, top, account = read_list(item, "output_proof", length=5)
        return cls(
            outpoint=OutPoint.from_rlp(outpoint),
            address=Address(read_fixed(address, "output_proof.address", 20)),
            output=None if output == [] else TxOutput.from_rlp(output),
            top=TrieProof.from_rlp(top),
            account=TrieProof.from_rlp(account),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetProof:
    """An asset's record (None: never issued) and its place in the top trie."""

    asset: AssetId
    info: AssetInfo | None
    top: TrieProof

    def to_rlp(self) -> RLPItem:
        info: RLPItem = [] if self.info is None else self.info.to_rlp()
        return [self.asset, info, self.top.to_rlp()]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        asset, info, top = read_list(item, "asset_proof", length=3)
        return cls(
            asset=AssetId(read_fixed(asset, "asset_proof.asset", 32)),
            info=None if info == [] else AssetInfo.from_rlp(info),
            top=TrieProof.from_rlp(top),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidatorsProof:
    """The whole stake table (key, bonded stake), in ascending key order, and its place in
    the top trie: the validator set that a block's state gives."""

    stakes: tuple[tuple[PublicKey, int], ...]
    top: TrieProof

    def to_rlp(self) -> RLPItem:
        return [[[key, uint_bytes(stake)] for key, stake in self.stakes], self.top.to_rlp()]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        stakes_item, top = read_list(item, "validators_proof", length=2)
        entries = read_list(stakes_item, "validators_proof.stakes")
        if len(entries) > MAX_PROOF_VALIDATORS:
            raise DecodeError(f"validators_proof: {len(entries)} > {MAX_PROOF_VALIDATORS}")
        stakes = []
        for entry in entries:
            key, stake = read_list(entry, "validators_proof.stakes[]", length=2)
            stakes.append(
                (
                    PublicKey(read_fixed(key, "validators_proof.key", 32)),
                    read_uint(stake, "validators_proof.stake"),
                )
            )
        return cls(stakes=tuple(stakes), top=TrieProof.from_rlp(top))


# -- making proofs (full nodes) ---------------------------------------------------------------


def prove_account(view: UtxoView, address: Address) -> AccountProof:
    """Raises `ProofTooLarge` beyond `MAX_PROOF_OUTPUTS` outputs."""
    outputs = view.utxos_of(address)
    if len(outputs) > MAX_PROOF_OUTPUTS:
        raise ProofTooLarge(f"{len(outputs)} outputs; prove them one by one")
    view.state_root()
    return AccountProof(
        address=address,
        outputs=tuple(outputs),
        top=view.commitment.top.prove(account_key(address)),
    )


def prove_output(view: UtxoView, outpoint: OutPoint, address: Address) -> OutputProof:
    """The proof for `outpoint` in `address`'s account: present when unspent and owned by
    `address`, otherwise absent (the caller names the owner it wants the absence shown for)."""
    view.state_root()
    trie = view.commitment.account(address)
    output = view.get(outpoint)
    return OutputProof(
        outpoint=outpoint,
        address=address,
        output=output if output is not None and output.address == address else None,
        top=view.commitment.top.prove(account_key(address)),
        account=(trie or Trie()).prove(outpoint_key(outpoint)),
    )


def prove_asset(view: UtxoView, asset: AssetId) -> AssetProof:
    view.state_root()
    return AssetProof(
        asset=asset, info=view.asset(asset), top=view.commitment.top.prove(asset_key(asset))
    )


def prove_validators(view: UtxoView) -> ValidatorsProof:
    """Raises `ProofTooLarge` beyond `MAX_PROOF_VALIDATORS` keys."""
    stakes = sorted(view.bonded_stake().items())
    if len(stakes) > MAX_PROOF_VALIDATORS:
        raise ProofTooLarge(f"{len(stakes)} validators")
    view.state_root()
    return ValidatorsProof(stakes=tuple(stakes), top=view.commitment.top.prove(VALIDATORS_KEY))


# -- checking proofs (anyone holding a root) --------------------------------------------------


def _expect(root: bytes, key: bytes, proof: TrieProof, value: bytes | None, what: str) -> None:
    if verify_proof(root, key, proof) != value:
        raise InvalidProof(f"{what} does not match the root")


def verify_account(
    root: bytes, address: Address, proof: AccountProof
) -> list[tuple[OutPoint, TxOutput]]:
    """Every output `address` owns in the state `root` commits to."""
    if proof.address != address:
        raise InvalidProof("the proof is for another address")
    outpoints = [outpoint for outpoint, _ in proof.outputs]
    if outpoints != sorted(set(outpoints)):
        raise InvalidProof("outputs out of order or repeated")
    if any(output.address != address for _, output in proof.outputs):
        raise InvalidProof("an output of another address")
    value = account_trie(list(proof.outputs)).root() if proof.outputs else None
    _expect(root, account_key(address), proof.top, value, "the account")
    return list(proof.outputs)


def verify_output(
    root: bytes, outpoint: OutPoint, address: Address, proof: OutputProof
) -> TxOutput | None:
    """The unspent output at `outpoint` owned by `address`, or None: spent, never created, or
    owned by someone else."""
    if proof.outpoint != outpoint or proof.address != address:
        raise InvalidProof("the proof is for another outpoint or owner")
    if proof.output is not None and proof.output.address != address:
        raise InvalidProof("the output belongs to another address")
    account_root = verify_proof(root, account_key(address), proof.top)
    if account_root is None:
        if proof.output is not None:
            raise InvalidProof("the owner has no outputs")
        return None
    expected = None if proof.output is None else output_value(proof.output)
    _expect(account_root, outpoint_key(outpoint), proof.account, expected, "the output")
    return proof.output


def verify_asset(root: bytes, asset: AssetId, proof: AssetProof) -> AssetInfo | None:
    """The record of `asset` (None: it was never issued)."""
    if proof.asset != asset or (proof.info is not None and proof.info.asset != asset):
        raise InvalidProof("the proof is for another asset")
    value = None if proof.info is None else asset_value(encode_item(proof.info.to_rlp()))
    _expect(root, asset_key(asset), proof.top, value, "the asset record")
    return proof.info


def verify_validators(root: bytes, proof: ValidatorsProof) -> dict[PublicKey, int]:
    """The bonded stake of every validator in the state `root` commits to."""
    keys = [key for key, _ in proof.stakes]
    if keys != sorted(set(keys)) or any(stake <= 0 for _, stake in proof.stakes):
        raise InvalidProof("stake table out of order, repeated or with empty stakes")
    value = validator_trie(list(proof.stakes)).root() if proof.stakes else None
    _expect(root, VALIDATORS_KEY, proof.top, value, "the stake table")
    return dict(proof.stakes)


# -- one request, one answer (what the peer protocol and RPC carry) -----------------------------


class QueryKind(IntEnum):
    ACCOUNT = 0
    OUTPUT = 1
    ASSET = 2
    VALIDATORS = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class StateQuery:
    """What to prove: an address's outputs, one outpoint (with the owner whose account it is
    looked up in), an asset record or the stake table."""

    kind: QueryKind
    address: Address | None = None
    outpoint: OutPoint | None = None
    asset: AssetId | None = None

    def __post_init__(self) -> None:
        needs = {
            QueryKind.ACCOUNT: (True, False, False),
            QueryKind.OUTPUT: (True, True, False),
            QueryKind.ASSET: (False, False, True),
            QueryKind.VALIDATORS: (False, False, False),
        }[self.kind]
        given = (self.address is not None, self.outpoint is not None, self.asset is not None)
        if given != needs:
            raise ValueError(f"a {self.kind.name} query takes exactly its own fields")

    def to_rlp(self) -> RLPItem:
        kind = uint_bytes(self.kind)
        if self.kind is QueryKind.ACCOUNT:
            return [kind, self.address]  # type: ignore[list-item]
        if self.kind is QueryKind.OUTPUT:
            assert self.outpoint is not None
            return [kind, self.outpoint.to_rlp(), self.address]  # type: ignore[list-item]
        if self.kind is QueryKind.ASSET:
            return [kind, self.asset]  # type: ignore[list-item]
        return [kind]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        fields = read_list(item, "state_query", max_length=3)
        if not fields:
            raise DecodeError("state_query: empty")
        try:
            kind = QueryKind(read_uint(fields[0], "state_query.kind"))
        except ValueError as exc:
            raise DecodeError("state_query.kind: unknown") from exc
        length = {QueryKind.ACCOUNT: 2, QueryKind.OUTPUT: 3, QueryKind.ASSET: 2}.get(kind, 1)
        if len(fields) != length:
            raise DecodeError(f"state_query: a {kind.name} query has {length} fields")
        if kind is QueryKind.ACCOUNT:
            return cls(kind=kind, address=Address(read_fixed(fields[1], "query.address", 20)))
        if kind is QueryKind.OUTPUT:
            return cls(
                kind=kind,
                outpoint=OutPoint.from_rlp(fields[1]),
                address=Address(read_fixed(fields[2], "query.address", 20)),
            )
        if kind is QueryKind.ASSET:
            return cls(kind=kind, asset=AssetId(read_fixed(fields[1], "query.asset", 32)))
        return cls(kind=kind)


StateProof = AccountProof | OutputProof | AssetProof | ValidatorsProof
ProvenValue = list[tuple[OutPoint, TxOutput]] | TxOutput | AssetInfo | dict[PublicKey, int] | None

_PROOF_TYPES: Final[dict[QueryKind, type[StateProof]]] = {
    QueryKind.ACCOUNT: AccountProof,
    QueryKind.OUTPUT: OutputProof,
    QueryKind.ASSET: AssetProof,
    QueryKind.VALIDATORS: ValidatorsProof,
}


def prove(view: UtxoView, query: StateQuery) -> StateProof:
    """The proof that answers `query` in `view`'s state (`ProofTooLarge` past the limits)."""
    if query.kind is QueryKind.ACCOUNT:
        assert query.address is not None
        return prove_account(view, query.address)
    if query.kind is QueryKind.OUTPUT:
        assert query.outpoint is not None
        assert query.address is not None
        return prove_output(view, query.outpoint, query.address)
    if query.kind is QueryKind.ASSET:
        assert query.asset is not None
        return prove_asset(view, query.asset)
    return prove_validators(view)


def verify(root: bytes, query: StateQuery, proof: StateProof) -> ProvenValue:
    """What `proof` shows for `query` under `root`.

    Raises:
        InvalidProof: the proof is of another kind or does not verify.
    """
    if not isinstance(proof, _PROOF_TYPES[query.kind]):
        raise InvalidProof(f"a {type(proof).__name__} does not answer a {query.kind.name} query")
    if isinstance(proof, AccountProof):
        assert query.address is not None
        return verify_account(root, query.address, proof)
    if isinstance(proof, OutputProof):
        assert query.outpoint is not None
        assert query.address is not None
        return verify_output(root, query.outpoint, query.address, proof)
    if isinstance(proof, AssetProof):
        assert query.asset is not None
        return verify_asset(root, query.asset, proof)
    return verify_validators(root, proof)


def encode_proof(proof: StateProof) -> RLPItem:
    """``[kind, proof]``, the kind being the `QueryKind` the proof answers."""
    kind = next(k for k, cls in _PROOF_TYPES.items() if isinstance(proof, cls))
    return [uint_bytes(kind), proof.to_rlp()]


def decode_proof(item: RLPItem) -> StateProof:
    kind_item, body = read_list(item, "state_proof", length=2)
    try:
        kind = QueryKind(read_uint(kind_item, "state_proof.kind"))
    except ValueError as exc:
        raise DecodeError("state_proof.kind: unknown") from exc
    return _PROOF_TYPES[kind].from_rlp(body)
