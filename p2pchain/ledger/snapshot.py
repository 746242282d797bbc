"""State snapshots: the state after a finalized block, cut into pages a new node checks as they
arrive against the block's state root, then assembles into a `UtxoView` instead of replaying
the chain.

The top trie of the state commitment is cut at depth 2 into 256 subtrees, one per first key
byte. A `SnapshotManifest` lists each subtree's key count and hash; `check_manifest` recomputes
the state root from the 256 entries alone, so once it holds every entry is authenticated. A
subtree's contents are *records* in one total order (by sort key: the top-trie key, then the
key inside the account), served in pages (`page`) and checked by a `SubtreeAssembler`: order,
prefix and bounds on every page, and once the last page is in, the subtree's rebuilt top-level
leaves must give the manifest's hash. `assemble` builds the view from the 256 subtrees
and checks its root once more. Byte layouts: docs/protocol.md, "Snapshots".
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Final, Self

from p2pchain.errors import BadSnapshotChunk, BadSnapshotManifest, DecodeError
from p2pchain.ledger.commitment import (
    GOVERNANCE_KEY,
    VALIDATORS_KEY,
    account_key,
    account_trie,
    asset_key,
    asset_value,
    governance_value,
    outpoint_key,
    validator_trie,
)
from p2pchain.ledger.encoding import (
    RLPItem,
    decode_item,
    encode_item,
    read_bytes,
    read_fixed,
    read_list,
    read_uint,
    uint_bytes,
)
from p2pchain.ledger.trie import (
    EMPTY_ROOT,
    SUBTREE_DEPTH,
    root_from_subtrees,
    subtree_hash,
)
from p2pchain.ledger.trie import SUBTREES as SUBTREES
from p2pchain.ledger.tx import OutPoint, TxOutput
from p2pchain.ledger.types import BlockId, Hash32, Height
from p2pchain.ledger.utxo import AssetInfo, UtxoView

MAX_GOVERNANCE_STATE_BYTES: Final = 4 * 1024 * 1024
"""Longest encoded governance state a governance record may carry."""

MAX_SNAPSHOT_PAGE_BYTES: Final = 1024 * 1024
"""Encoded records a server puts in one page (`SnapshotPageAnswer`). A page holds more only
when it is a single record larger than this (the governance record may be)."""

MAX_SUBTREE_BYTES: Final = 64 * 1024 * 1024
"""Encoded records one subtree may hold. Nothing but the last page of a subtree shows a lie (a
record left out or made up, with every record well-formed, in order and in the subtree), so
this is the most a lying peer can make us fetch and hold for one subtree before it is found
out. The state of a busy chain stays far below it: 64 MiB is about 600,000 outputs in one
256th of the top trie, 150 million in all."""

SORT_KEY_BYTES: Final = (32, 64)
"""A sort key is a top-trie key (32 bytes), then an output's key in its account (32 more)."""

MANIFEST_ENTRIES: Final = SUBTREES


class RecordKind(IntEnum):
    """The first field of every record."""

    OUTPUT = 0
    ASSET = 1
    VALIDATORS = 2
    GOVERNANCE = 3


def _read_kind(item: RLPItem, name: str, kind: RecordKind, length: int) -> list[RLPItem]:
    fields = read_list(item, name, length=length)
    if read_uint(fields[0], f"{name}.kind") != kind:
        raise DecodeError(f"{name}: not a {kind.name} record")
    return fields


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputRecord:
    """An unspent output, in its owner's account."""

    KIND: ClassVar[RecordKind] = RecordKind.OUTPUT
    outpoint: OutPoint
    output: TxOutput

    def top_key(self) -> Hash32:
        return account_key(self.output.address)

    def sort_key(self) -> bytes:
        """The account's top-trie key, then the output's key in the account trie."""
        return self.top_key() + outpoint_key(self.outpoint)

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(self.KIND), self.outpoint.to_rlp(), self.output.to_rlp()]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        _, outpoint, output = _read_kind(item, "output_record", cls.KIND, 3)
        return cls(outpoint=OutPoint.from_rlp(outpoint), output=TxOutput.from_rlp(output))


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetRecord:
    """An issued asset's record."""

    KIND: ClassVar[RecordKind] = RecordKind.ASSET
    info: AssetInfo

    def top_key(self) -> Hash32:
        return asset_key(self.info.asset)

    def sort_key(self) -> bytes:
        return self.top_key()

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(self.KIND), self.info.to_rlp()]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        _, info = _read_kind(item, "asset_record", cls.KIND, 2)
        return cls(info=AssetInfo.from_rlp(info))


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidatorsRecord:
    """The validator trie's root, as the top trie holds it. A subtree cannot rebuild it (the
    stake outputs are in every subtree): the manifest authenticates it, and `assemble` checks
    it against the stake of all the outputs."""

    KIND: ClassVar[RecordKind] = RecordKind.VALIDATORS
    root: Hash32

    def top_key(self) -> Hash32:
        return VALIDATORS_KEY

    def sort_key(self) -> bytes:
        return VALIDATORS_KEY

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(self.KIND), self.root]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        _, root = _read_kind(item, "validators_record", cls.KIND, 2)
        return cls(root=Hash32(read_fixed(root, "validators_record.root", 32)))


@dataclass(frozen=True, slots=True, kw_only=True)
class GovernanceRecord:
    """The encoded governance state (opaque here), whose hash the governance leaf holds."""

    KIND: ClassVar[RecordKind] = RecordKind.GOVERNANCE
    state: bytes

    def top_key(self) -> Hash32:
        return GOVERNANCE_KEY

    def sort_key(self) -> bytes:
        return GOVERNANCE_KEY

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(self.KIND), self.state]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        _, state = _read_kind(item, "governance_record", cls.KIND, 2)
        return cls(state=read_bytes(state, "governance_record.state", MAX_GOVERNANCE_STATE_BYTES))


SnapshotRecord = OutputRecord | AssetRecord | ValidatorsRecord | GovernanceRecord

_RECORD_TYPES: Final[dict[int, type[SnapshotRecord]]] = {
    cls.KIND: cls for cls in (OutputRecord, AssetRecord, ValidatorsRecord, GovernanceRecord)
}


def read_record(item: RLPItem) -> SnapshotRecord:
    """A record from its RLP item, of the kind its first field names.

    Raises:
        DecodeError: not a record of a known kind, or not its canonical form.
    """
    if not isinstance(item, list) or not item:
        raise DecodeError("snapshot_record: expected a non-empty list")
    kind = read_uint(item[0], "snapshot_record.kind", max_value=max(RecordKind))
    return _RECORD_TYPES[kind].from_rlp(item)


def decode_record(data: bytes) -> SnapshotRecord:
    """A record from untrusted bytes, or `DecodeError`."""
    return read_record(decode_item(data))


def encode_record(record: SnapshotRecord) -> bytes:
    return encode_item(record.to_rlp())


# -- the manifest ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotManifest:
    """What the state after `block_id` holds, per subtree of the top trie: 256 entries of
    ``(top-level keys, subtree hash)``, by first key byte (`Trie.subtrees`)."""

    block_id: BlockId
    state_root: Hash32
    entries: tuple[tuple[int, Hash32], ...]

    def to_rlp(self) -> RLPItem:
        return [
            self.block_id,
            self.state_root,
            [uint_bytes(count) for count, _ in self.entries],
            b"".join(digest for _, digest in self.entries),
        ]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        block_id, state_root, counts_item, hashes_item = read_list(item, "manifest", length=4)
        counts = read_list(counts_item, "manifest.counts", length=MANIFEST_ENTRIES)
        hashes = read_fixed(hashes_item, "manifest.hashes", 32 * MANIFEST_ENTRIES)
        return cls(
            block_id=BlockId(read_fixed(block_id, "manifest.block_id", 32)),
            state_root=Hash32(read_fixed(state_root, "manifest.state_root", 32)),
            entries=tuple(
                (read_uint(count, "manifest.count"), Hash32(hashes[32 * i : 32 * i + 32]))
                for i, count in enumerate(counts)
            ),
        )


def manifest_of(view: UtxoView, block_id: BlockId) -> SnapshotManifest:
    """The manifest of `view`'s state, which is the state after `block_id`."""
    root = view.state_root()
    return SnapshotManifest(
        block_id=block_id, state_root=root, entries=view.commitment.top.subtrees()
    )


def check_manifest(manifest: SnapshotManifest, state_root: bytes) -> None:
    """Return if `manifest` is the one of the state `state_root` commits to: after this, every
    entry's hash is authenticated. (That `manifest.block_id` is the block asked about is the
    caller's to check.)

    The root commits to each count only as far as the shape of the top two levels goes (none,
    one, or more keys under a node), so a count may still be wrong: `SubtreeAssembler` finds
    that out once the subtree's records are in.

    Raises:
        BadSnapshotManifest: not 256 entries, an empty subtree with a hash or a non-empty one
            without, or the entries do not give `state_root`.
    """
    if manifest.state_root != state_root:
        raise BadSnapshotManifest("the manifest is of another state root")
    if len(manifest.entries) != MANIFEST_ENTRIES:
        raise BadSnapshotManifest(
            f"{len(manifest.entries)} manifest entries, not {MANIFEST_ENTRIES}"
        )
    for index, (count, digest) in enumerate(manifest.entries):
        if (count == 0) != (digest == EMPTY_ROOT) or count < 0:
            raise BadSnapshotManifest(f"subtree {index}: {count} keys with hash {digest.hex()}")
    if root_from_subtrees(manifest.entries) != state_root:
        raise BadSnapshotManifest("the manifest entries do not give the state root")


# -- serving -----------------------------------------------------------------------------------

SubtreeRecords = list[tuple[bytes, bytes]]
"""One subtree's records as ``(sort key, encoded record)``, in ascending sort key."""


def snapshot_records(view: UtxoView, governance: bytes | None = None) -> list[SubtreeRecords]:
    """Every record of `view`'s state, by subtree (256 lists), what a server serves pages of.

    Args:
        view: the state.
        governance: the encoded governance state, when the state commits to one (the view
            holds only its hash); None when it commits to none.

    Raises:
        ValueError: `governance` is not what the state commits to, or is too long to send.
    """
    view.state_root()
    top = view.commitment.top
    committed = top.get(GOVERNANCE_KEY)
    if committed is None:
        if governance is not None:
            raise ValueError("the state commits to no governance state")
    elif governance is None or governance_value(governance) != committed:
        raise ValueError("the governance state is not the one the state commits to")
    if governance is not None and len(governance) > MAX_GOVERNANCE_STATE_BYTES:
        raise ValueError(f"a governance state of {len(governance)} bytes")
    records: list[SnapshotRecord] = [
        OutputRecord(outpoint=outpoint, output=output) for outpoint, output in view
    ]
    records.extend(AssetRecord(info=info) for info in view.assets().values())
    validators = top.get(VALIDATORS_KEY)
    if validators is not None:
        records.append(ValidatorsRecord(root=Hash32(validators)))
    if governance is not None:
        records.append(GovernanceRecord(state=governance))
    subtrees: list[SubtreeRecords] = [[] for _ in range(SUBTREES)]
    for record in records:
        key = record.sort_key()
        subtrees[key[0]].append((key, encode_record(record)))
    for subtree in subtrees:
        subtree.sort()
    return subtrees


def page(records: SubtreeRecords, after: bytes, max_bytes: int) -> tuple[tuple[bytes, ...], bool]:
    """The encoded records of one subtree whose sort key is above `after` (``b""``: from the
    start), up to `max_bytes` in all but at least one if any are left; and whether they are
    the last ones. Found by bisection: the cost is the page's, not the subtree's.
    """
    start = bisect_right(records, after, key=lambda entry: entry[0])
    taken: list[bytes] = []
    size = 0
    for position in range(start, len(records)):
        encoded = records[position][1]
        if taken and size + len(encoded) > max_bytes:
            break
        taken.append(encoded)
        size += len(encoded)
    return tuple(taken), start + len(taken) == len(records)


# -- fetching ----------------------------------------------------------------------------------


class SubtreeAssembler:
    """One subtree of a snapshot as its pages arrive, checked against its manifest entry.

    `add_page` refuses a page at once when a record is malformed, out of order or repeated,
    outside the subtree, or past `MAX_SUBTREE_BYTES`; a refused page changes nothing, so the
    same page may be asked of another peer. Once the last page is in, the subtree's top-level
    leaves are rebuilt from the records and must hash to the manifest's entry (its count is a
    progress hint: the root commits to it only as none, one or more); when they do not, the
    assembler starts over empty (which page lied cannot be known) and the subtree is fetched
    again.

    Args:
        index: the subtree (the first byte of its keys), 0 to 255.
        entry: its manifest entry ``(top-level keys, hash)``, from a manifest that passed
            `check_manifest`.
    """

    def __init__(self, index: int, entry: tuple[int, bytes]) -> None:
        if not 0 <= index < SUBTREES:
            raise ValueError(f"subtree {index}")
        self.index = index
        self.count, self.hash = entry
        self._records: list[SnapshotRecord] = []
        self._last = b""
        self._last_is_output = False
        self._bytes = 0
        self.done = False
        """True once the last page is in and the subtree matched its manifest entry."""

    def _clear(self) -> None:
        self._records = []
        self._last, self._last_is_output = b"", False
        self._bytes = 0

    @property
    def after(self) -> bytes:
        """The sort key to ask the next page after (``b""`` before the first)."""
        return self._last

    @property
    def records(self) -> tuple[SnapshotRecord, ...]:
        """The records accepted so far, in sort key order."""
        return tuple(self._records)

    def add_page(self, records: Sequence[bytes], done: bool) -> bytes:
        """Take the next page (encoded records); `done` when the server says no records are
        left after it. Returns `after`, the sort key to ask the next page after.

        Raises:
            DecodeError: a record is malformed (nothing of the page is taken).
            BadSnapshotChunk: the page breaks a rule (nothing of it is taken), or, at the last
                page, the subtree does not hash to its manifest entry (the assembler is reset).
            ValueError: the subtree is already done.
        """
        if self.done:
            raise ValueError(f"subtree {self.index} is already complete")
        if not records and not done:
            raise BadSnapshotChunk(f"subtree {self.index}: an empty page that is not the last")
        last, last_is_output = self._last, self._last_is_output
        size = self._bytes
        decoded: list[SnapshotRecord] = []
        for encoded in records:
            size += len(encoded)
            if size > MAX_SUBTREE_BYTES:
                raise BadSnapshotChunk(f"subtree {self.index}: over {MAX_SUBTREE_BYTES} bytes")
            record = decode_record(encoded)
            key = record.sort_key()
            if key[0] != self.index:
                raise BadSnapshotChunk(f"subtree {self.index}: a record of subtree {key[0]}")
            if key <= last:
                raise BadSnapshotChunk(f"subtree {self.index}: records out of order or repeated")
            is_output = isinstance(record, OutputRecord)
            if key[:32] == last[:32] and not (is_output and last_is_output):
                raise BadSnapshotChunk(
                    f"subtree {self.index}: two kinds of record for one top-level key"
                )
            decoded.append(record)
            last, last_is_output = key, is_output
        self._records.extend(decoded)
        self._last, self._last_is_output = last, last_is_output
        self._bytes = size
        if done:
            self._finish()
        return self._last

    def _finish(self) -> None:
        leaves = _top_leaves(self._records)
        if subtree_hash(leaves, SUBTREE_DEPTH) == self.hash:
            # The hash authenticates the records; a manifest count beyond none/one/more is
            # not committed to (a progress hint only), so a wrong one blames nobody.
            self.done = True
            return
        count = len(leaves)
        self._clear()
        raise BadSnapshotChunk(
            f"subtree {self.index}: {count} keys that do not hash to the manifest's entry"
        )


def _top_leaves(records: Sequence[SnapshotRecord]) -> list[tuple[bytes, bytes]]:
    """The top-trie leaves ``(key, value)`` of records in sort key order."""
    leaves: list[tuple[bytes, bytes]] = []
    account: list[tuple[OutPoint, TxOutput]] = []
    account_top = b""

    def close_account() -> None:
        if account:
            leaves.append((account_top, account_trie(account).root()))
            account.clear()

    for record in records:
        if isinstance(record, OutputRecord):
            top = record.top_key()
            if top != account_top:
                close_account()
                account_top = top
            account.append((record.outpoint, record.output))
            continue
        close_account()
        if isinstance(record, AssetRecord):
            value = asset_value(encode_item(record.info.to_rlp()))
        elif isinstance(record, ValidatorsRecord):
            value = record.root
        else:
            value = governance_value(record.state)
        leaves.append((record.top_key(), value))
    close_account()
    return leaves


def assemble(
    assemblers: Sequence[SubtreeAssembler], block_id: BlockId, height: Height, state_root: bytes
) -> tuple[UtxoView, bytes | None]:
    """The state after block `block_id` (at `height`) from its 256 completed subtrees, and
    its encoded governance state (None when the state commits to none).

    Raises:
        BadSnapshotChunk: an outpoint in two accounts, a validators record that is not the
            root of the stake the outputs bond, or the state does not have `state_root`.
        ValueError: not the 256 subtrees in order, or one not done.
    """
    if [assembler.index for assembler in assemblers] != list(range(SUBTREES)):
        raise ValueError("assemble takes the 256 subtrees in order")
    if not all(assembler.done for assembler in assemblers):
        raise ValueError("a subtree is not complete")
    utxos: list[tuple[OutPoint, TxOutput]] = []
    assets: list[AssetInfo] = []
    validators: Hash32 | None = None
    governance: bytes | None = None
    for assembler in assemblers:
        for record in assembler.records:
            if isinstance(record, OutputRecord):
                utxos.append((record.outpoint, record.output))
            elif isinstance(record, AssetRecord):
                assets.append(record.info)
            elif isinstance(record, ValidatorsRecord):
                validators = record.root
            else:
                governance = record.state
    if len({outpoint for outpoint, _ in utxos}) != len(utxos):
        raise BadSnapshotChunk("an outpoint in two accounts")
    view = UtxoView.from_snapshot(
        utxos,
        assets,
        block_id,
        height,
        governance=None if governance is None else governance_value(governance),
    )
    stakes = sorted(view.bonded_stake().items())
    bonded = validator_trie(stakes).root() if stakes else None
    if bonded != validators:
        raise BadSnapshotChunk("the validators record is not the stake the outputs bond")
    if view.state_root() != state_root:
        raise BadSnapshotChunk("the assembled state does not have the block's state root")
    return view, governance
