"""The UTXO set, the asset registry and the stake index, with exact apply/undo.

`UtxoView.apply` trusts its input: `validation.connect_block` is the checked entry point.
Undo data records what a block consumed (spent outputs, prior asset records, the governance
leaf before it) so that `undo` restores the view exactly; it is a wire object because storage
persists it. `LedgerReader` is the read-only part the validation rules need, which views over
other state (the mempool's) implement too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, Self

from p2pchain.errors import DecodeError
from p2pchain.ledger.block import Block
from p2pchain.ledger.commitment import StateCommitment
from p2pchain.ledger.encoding import (
    RLPItem,
    encode_item,
    read_bytes,
    read_fixed,
    read_list,
    read_uint,
    uint_bytes,
)
from p2pchain.ledger.tx import (
    IssuePayload,
    LockKind,
    MintPayload,
    OutPoint,
    SlashPayload,
    Transaction,
    TxOutput,
    compute_asset_id,
)
from p2pchain.ledger.types import Address, AssetId, BlockId, Hash32, Height, PublicKey, TxId

GENESIS_PARENT_HEIGHT = Height(-1)


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetInfo:
    """An issued asset: who may mint it, its cap (0 = none) and how much was ever issued."""

    asset: AssetId
    name: bytes
    issuer: Address
    cap: int
    issued: int

    def to_rlp(self) -> RLPItem:
        return [self.asset, self.name, self.issuer, uint_bytes(self.cap), uint_bytes(self.issued)]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        fields = read_list(item, "asset_info", length=5)
        return cls(
            asset=AssetId(read_fixed(fields[0], "asset_info.asset", 32)),
            name=read_bytes(fields[1], "asset_info.name", 32),
            issuer=Address(read_fixed(fields[2], "asset_info.issuer", 20)),
            cap=read_uint(fields[3], "asset_info.cap"),
            issued=read_uint(fields[4], "asset_info.issued"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TxUndo:
    """What one transaction consumed: the outputs it spent and the asset records it replaced."""

    spent: tuple[tuple[OutPoint, TxOutput], ...] = ()
    assets: tuple[tuple[AssetId, AssetInfo | None], ...] = ()

    def to_rlp(self) -> RLPItem:
        return [
            [[outpoint.to_rlp(), output.to_rlp()] for outpoint, output in self.spent],
            [[asset, [] if info is None else info.to_rlp()] for asset, info in self.assets],
        ]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        spent_items, asset_items = read_list(item, "undo", length=2)
        spent = []
        for entry in read_list(spent_items, "undo.spent"):
            outpoint, output = read_list(entry, "undo.spent[]", length=2)
            spent.append((OutPoint.from_rlp(outpoint), TxOutput.from_rlp(output)))
        assets: list[tuple[AssetId, AssetInfo | None]] = []
        for entry in read_list(asset_items, "undo.assets"):
            asset, info = read_list(entry, "undo.assets[]", length=2)
            previous = None if info == [] else AssetInfo.from_rlp(info)
            assets.append((AssetId(read_fixed(asset, "undo.asset", 32)), previous))
        return cls(spent=tuple(spent), assets=tuple(assets))


@dataclass(frozen=True, slots=True, kw_only=True)
class UndoData:
    """How to reverse one block: a `TxUndo` per transaction, in block order, and the value the
    governance leaf had before the block."""

    txs: tuple[TxUndo, ...] = ()
    governance: Hash32 | None = None
    """The governance leaf before the block; None when the view held none (genesis applied on
    an empty view)."""

    def to_rlp(self) -> RLPItem:
        return [
            [tx_undo.to_rlp() for tx_undo in self.txs],
            [] if self.governance is None else self.governance,
        ]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        txs, governance = read_list(item, "undo", length=2)
        if isinstance(governance, list) and governance:
            raise DecodeError("undo.governance: expected 32 bytes or an empty list")
        return cls(
            txs=tuple(TxUndo.from_rlp(x) for x in read_list(txs, "undo.txs")),
            governance=(
                None
                if isinstance(governance, list)
                else Hash32(read_fixed(governance, "undo.governance", 32))
            ),
        )


def _is_slashable(output: TxOutput) -> bool:
    return output.lock.kind in (LockKind.STAKE, LockKind.UNBONDING)


class LedgerReader(Protocol):
    """The queries `validation.validate_transaction` makes of the state it checks against.

    Kept to exactly what the rules read, so that a view layered over other state (the mempool's
    head-plus-pool view) must answer every one of them: a query the rules start making is a
    type error there until that view answers it, never a silent read of nothing.
    """

    def get(self, outpoint: OutPoint) -> TxOutput | None:
        """The unspent output at `outpoint`; None when it is spent or never existed."""

    def asset(self, asset: AssetId) -> AssetInfo | None:
        """The record of an issued asset (issuer, cap, units issued so far); None if unknown."""

    def slashable_outpoints(self, key: PublicKey) -> list[OutPoint]:
        """The unspent stake and unbonding outputs bonded to `key`, in outpoint order."""


class UtxoView:
    """Unspent outputs plus indexes by address and by validator key, at one tip.

    A `LedgerReader`. The view owns its tip: only `finish_block` (the end of every applied
    block) and `undo` move it. Every change goes through `_add`, `_remove`, `_set_asset` and
    `set_governance`, which keep the state commitment in step.

    The governance leaf is a value the view is given (by the consensus layer, which knows the
    governance rules), never one it computes: a block applied without one keeps the leaf as it
    was, which is how chains driven by the ledger alone (tests, tools) carry their genesis leaf.
    """

    def __init__(self) -> None:
        self.commitment = StateCommitment()
        self._utxos: dict[OutPoint, TxOutput] = {}
        self._assets: dict[AssetId, AssetInfo] = {}
        self._by_address: defaultdict[Address, set[OutPoint]] = defaultdict(set)
        self._by_validator: defaultdict[PublicKey, set[OutPoint]] = defaultdict(set)
        self.tip: BlockId = BlockId(bytes(32))
        self.height: Height = GENESIS_PARENT_HEIGHT
        self._governance: Hash32 | None = None

    # -- queries ---------------------------------------------------------------------------
    def get(self, outpoint: OutPoint) -> TxOutput | None:
        return self._utxos.get(outpoint)

    def __contains__(self, outpoint: object) -> bool:
        return outpoint in self._utxos

    def __len__(self) -> int:
        return len(self._utxos)

    def __iter__(self) -> Iterator[tuple[OutPoint, TxOutput]]:
        return iter(self._utxos.items())

    def asset(self, asset: AssetId) -> AssetInfo | None:
        return self._assets.get(asset)

    def assets(self) -> dict[AssetId, AssetInfo]:
        return dict(self._assets)

    def utxos_of(self, address: Address) -> list[tuple[OutPoint, TxOutput]]:
        """Every unspent output owned by `address`, in outpoint order."""
        return sorted((op, self._utxos[op]) for op in self._by_address.get(address, ()))

    def balance(self, address: Address, asset: AssetId) -> int:
        """Total of `asset` owned by `address`, locked outputs included."""
        return sum(output.amount for _, output in self.utxos_of(address) if output.asset == asset)

    def balances(self, address: Address) -> dict[AssetId, int]:
        """Every asset `address` holds, with totals."""
        totals: defaultdict[AssetId, int] = defaultdict(int)
        for _, output in self.utxos_of(address):
            totals[output.asset] += output.amount
        return dict(totals)

    def bonded_stake(self) -> dict[PublicKey, int]:
        """Bonded (STAKE-locked) native amount per validator key; unbonding stake excluded."""
        stakes: dict[PublicKey, int] = {}
        for key, outpoints in self._by_validator.items():
            total = sum(
                self._utxos[op].amount
                for op in outpoints
                if self._utxos[op].lock.kind is LockKind.STAKE
            )
            if total:
                stakes[key] = total
        return stakes

    def slashable_outpoints(self, key: PublicKey) -> list[OutPoint]:
        """The stake and unbonding outputs that evidence against `key` would burn."""
        return sorted(self._by_validator.get(key, ()))

    @property
    def governance_value(self) -> Hash32 | None:
        """The governance leaf: the hash of the encoded governance state after the tip
        (docs/protocol.md, "State commitment"); None in a view that holds no state."""
        return self._governance

    def snapshot(self) -> tuple[dict[OutPoint, TxOutput], dict[AssetId, AssetInfo]]:
        """A copy of the contents, for comparing two views."""
        return dict(self._utxos), dict(self._assets)

    @classmethod
    def from_snapshot(
        cls,
        utxos: Iterable[tuple[OutPoint, TxOutput]],
        assets: Iterable[AssetInfo],
        tip: BlockId,
        height: Height,
        *,
        governance: Hash32 | None = None,
    ) -> UtxoView:
        """A view holding exactly `utxos` and `assets` at `tip` (e.g. loaded from storage), and
        the governance leaf `governance` (None: no leaf; its root is then no header's)."""
        view = cls()
        for outpoint, output in utxos:
            view._add(outpoint, output)
        for info in assets:
            view._set_asset(info.asset, info)
        view.set_governance(governance)
        view.tip, view.height = tip, height
        return view

    def state_root(self) -> Hash32:
        """The root every header commits to: the UTXO set, the asset registry, the bonded
        stake and the governance leaf, the same on every node holding this state (`commitment`;
        docs/protocol.md). Costs what changed since the last call."""
        return self.commitment.root()

    def copy(self) -> UtxoView:
        view = UtxoView()
        view._utxos = dict(self._utxos)
        view._assets = dict(self._assets)
        for address, owned in self._by_address.items():
            view._by_address[address] = set(owned)
        for key, staked in self._by_validator.items():
            view._by_validator[key] = set(staked)
        view.commitment = self.commitment.copy()
        view._governance = self._governance
        view.tip, view.height = self.tip, self.height
        return view

    # -- changes ---------------------------------------------------------------------------
    def _add(self, outpoint: OutPoint, output: TxOutput, encoded: bytes | None = None) -> None:
        self._utxos[outpoint] = output
        self.commitment.add_output(outpoint, output, encoded)
        self._by_address[output.address].add(outpoint)
        if _is_slashable(output):
            self._by_validator[PublicKey(output.lock.key)].add(outpoint)

    def _remove(self, outpoint: OutPoint) -> TxOutput:
        output = self._utxos.pop(outpoint)
        self.commitment.remove_output(outpoint, output)
        owned = self._by_address[output.address]
        owned.discard(outpoint)
        if not owned:
            del self._by_address[output.address]
        if _is_slashable(output):
            key = PublicKey(output.lock.key)
            staked = self._by_validator[key]
            staked.discard(outpoint)
            if not staked:
                del self._by_validator[key]
        return output

    def _set_asset(self, asset: AssetId, info: AssetInfo | None) -> None:
        if info is None:
            self._assets.pop(asset, None)
            self.commitment.set_asset(asset, None)
        else:
            self._assets[asset] = info
            self.commitment.set_asset(asset, encode_item(info.to_rlp()))

    def set_governance(self, value: Hash32 | None) -> None:
        """Set the governance leaf to `value`, the hash of the encoded governance state after
        the block being applied (None removes it)."""
        self._governance = value
        self.commitment.set_governance(value)

    def apply_transaction(self, tx: Transaction, txid: TxId | None = None) -> TxUndo:
        """Spend the inputs, create the outputs, update assets; return how to reverse it."""
        txid = tx.txid if txid is None else txid
        spent: list[tuple[OutPoint, TxOutput]] = []
        for tx_input in tx.inputs:
            spent.append((tx_input.outpoint, self._remove(tx_input.outpoint)))
        assets: list[tuple[AssetId, AssetInfo | None]] = []
        payload = tx.payload
        if isinstance(payload, SlashPayload):
            for outpoint in self.slashable_outpoints(payload.evidence.offender):
                spent.append((outpoint, self._remove(outpoint)))
        elif isinstance(payload, IssuePayload):
            asset = compute_asset_id(tx.inputs[0].outpoint)
            issued = sum(o.amount for o in tx.outputs if o.asset == asset)
            assets.append((asset, self._assets.get(asset)))
            self._set_asset(
                asset,
                AssetInfo(
                    asset=asset,
                    name=payload.name,
                    issuer=spent[0][1].address,
                    cap=payload.cap,
                    issued=issued,
                ),
            )
        elif isinstance(payload, MintPayload):
            asset = payload.asset
            previous = self._assets[asset]
            minted = sum(o.amount for o in tx.outputs if o.asset == asset) - sum(
                o.amount for _, o in spent if o.asset == asset
            )
            assets.append((asset, previous))
            self._set_asset(
                asset,
                AssetInfo(
                    asset=asset,
                    name=previous.name,
                    issuer=previous.issuer,
                    cap=previous.cap,
                    issued=previous.issued + minted,  # > 0: validation refuses a MINT of nothing
                ),
            )
        encodings = tx.output_encodings
        for index, output in enumerate(tx.outputs):
            self._add(OutPoint(txid=txid, index=index), output, encodings[index])
        return TxUndo(spent=tuple(spent), assets=tuple(assets))

    def undo_transaction(self, tx: Transaction, undo: TxUndo, txid: TxId | None = None) -> None:
        """Exactly reverse `apply_transaction(tx)`."""
        txid = tx.txid if txid is None else txid
        for index in range(len(tx.outputs)):
            self._remove(OutPoint(txid=txid, index=index))
        for asset, previous in reversed(undo.assets):
            self._set_asset(asset, previous)
        for outpoint, output in undo.spent:
            self._add(outpoint, output)

    def root_after(
        self, transactions: Sequence[Transaction], *, governance: Hash32 | None = None
    ) -> Hash32:
        """The state root once `transactions` (valid, in order) are applied on this view with
        the governance leaf `governance` (None: as it is); the view is left as it was. What a
        proposer puts in its header."""
        before = self._governance
        undos = [(tx, self.apply_transaction(tx)) for tx in transactions]
        if governance is not None:
            self.set_governance(governance)
        root = self.state_root()
        self.set_governance(before)
        for tx, undo in reversed(undos):
            self.undo_transaction(tx, undo)
        return root

    def apply(self, block: Block, *, governance: Hash32 | None = None) -> UndoData:
        """Apply a block known to be valid on top of this view, with `governance` the
        governance leaf after it (None: the leaf stays as it is); return its undo data."""
        if block.header.parent != self.tip and self.height != GENESIS_PARENT_HEIGHT:
            raise ValueError("block does not extend this view's tip")
        before = self._governance
        txs = [self.apply_transaction(tx) for tx in block.transactions]
        if governance is not None:
            self.set_governance(governance)
        return self.finish_block(block, txs, governance_before=before)

    def finish_block(
        self, block: Block, txs: Sequence[TxUndo], *, governance_before: Hash32 | None
    ) -> UndoData:
        """Make `block` the tip once all its transactions are applied (and the governance leaf
        set); return its undo data.

        `txs` holds one `TxUndo` per transaction, in block order; `governance_before` is the
        governance leaf the view had before the block, which `undo` puts back. This is the one
        place the tip moves forward. The view owns it, not `validation.connect_block`, so that
        `apply` is a complete state transition by itself (genesis and the replay of stored
        blocks use it) and `tip` and `height` always name the block whose effects the view
        holds, however the block was applied: whole by `apply`, or transaction by transaction
        by `connect_block`, which checks each one against the state the earlier ones left.
        """
        if len(txs) != len(block.transactions):
            raise ValueError(f"{len(txs)} undo records for {len(block.transactions)} transactions")
        self.tip, self.height = block.block_id, block.header.height
        return UndoData(txs=tuple(txs), governance=governance_before)

    def undo(self, block: Block, undo: UndoData) -> None:
        """Reverse `apply(block)` using the undo data it returned."""
        if block.block_id != self.tip:
            raise ValueError("can only undo the tip block")
        if len(undo.txs) != len(block.transactions):  # checked first: undo is all or nothing
            raise ValueError(
                f"{len(undo.txs)} undo records for {len(block.transactions)} transactions"
            )
        for tx, tx_undo in zip(reversed(block.transactions), reversed(undo.txs), strict=True):
            self.undo_transaction(tx, tx_undo)
        self.set_governance(undo.governance)
        self.tip, self.height = block.header.parent, Height(block.header.height - 1)
