"""Slashing protection: a validator's own record of what it signed, consulted before signing.

Evidence of a double proposal, a double vote or a surround vote burns the validator's stake, and
a crash between signing and remembering is exactly when a restarted node would sign again. So
the record is written and committed (durably, for `SqliteSlashingProtection`) *before* the
caller may release a signature; a refused request raises `SlashingProtectionError`. The rules
are those of `p2pchain.ledger.evidence`, kept conservative in the way EIP-3076 describes:
blocks are signed at strictly increasing slots, and every vote is checked against every vote the
key signed before.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, Self

from p2pchain.errors import SlashingProtectionError, StorageError
from p2pchain.ledger.crypto import sha256
from p2pchain.ledger.encoding import encode_item
from p2pchain.ledger.types import BlockId, Epoch, Hash32, PublicKey, Slot
from p2pchain.ledger.vote import Vote
from p2pchain.node.storage import connect_sqlite, write_transaction


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedVoteRecord:
    """What the record keeps of a signed vote: its FFG link and a hash of all its data."""

    source_epoch: Epoch
    target_epoch: Epoch
    data_root: Hash32


def vote_data_root(vote: Vote) -> Hash32:
    """A hash of everything a vote says (not its signature): equal roots mean the same vote."""
    return sha256(encode_item(vote.data_rlp()))


def record_of(vote: Vote) -> SignedVoteRecord:
    return SignedVoteRecord(
        source_epoch=vote.source.epoch,
        target_epoch=vote.target.epoch,
        data_root=vote_data_root(vote),
    )


def check_proposal(last: tuple[int, BlockId] | None, slot: Slot, block_id: BlockId) -> bool:
    """Whether signing `block_id` at `slot` is safe after `last`; True when it needs recording.

    Raises:
        SlashingProtectionError: a different block at the last slot, or a slot below it.
    """
    if last is None or slot > last[0]:
        return True
    if slot == last[0] and block_id == last[1]:
        return False
    if slot == last[0]:
        raise SlashingProtectionError(f"already signed another block at slot {slot}")
    raise SlashingProtectionError(f"slot {slot} is below the last signed slot {last[0]}")


def check_vote(signed: Iterable[SignedVoteRecord], new: SignedVoteRecord) -> bool:
    """Whether signing `new` is safe after the `signed` votes; True when it needs recording.

    Raises:
        SlashingProtectionError: `new` is a double vote or a surround vote with one of them.
    """
    for old in signed:
        if old.target_epoch == new.target_epoch:
            if old.data_root == new.data_root:
                return False
            raise SlashingProtectionError(
                f"already signed another vote for target epoch {new.target_epoch}"
            )
        if (old.source_epoch < new.source_epoch and new.target_epoch < old.target_epoch) or (
            new.source_epoch < old.source_epoch and old.target_epoch < new.target_epoch
        ):
            raise SlashingProtectionError(
                f"vote {new.source_epoch}->{new.target_epoch} and signed vote "
                f"{old.source_epoch}->{old.target_epoch} surround one another"
            )
    return True


class SlashingProtection(Protocol):
    """Check-and-record before every signature; a refusal means: do not sign."""

    def check_and_record_proposal(self, key: PublicKey, slot: Slot, block_id: BlockId) -> None:
        """Allow `key` to sign `block_id` at `slot` (recording it), or raise.

        Signing the very block recorded last again is allowed (a restart may resend it).

        Raises:
            SlashingProtectionError: signing could be slashable, or the record failed.
        """
        ...

    def check_and_record_vote(self, vote: Vote) -> None:
        """Allow `vote.validator` to sign `vote` (its signature is ignored), or raise.

        Raises:
            SlashingProtectionError: a double or surround vote, or the record failed.
        """
        ...

    def close(self) -> None: ...


class MemorySlashingProtection:
    """The record in memory: for tests and for validators that keep no data directory."""

    def __init__(self) -> None:
        self._proposals: dict[PublicKey, tuple[int, BlockId]] = {}
        self._votes: dict[PublicKey, dict[int, SignedVoteRecord]] = {}

    def check_and_record_proposal(self, key: PublicKey, slot: Slot, block_id: BlockId) -> None:
        if check_proposal(self._proposals.get(key), slot, block_id):
            self._proposals[key] = (slot, block_id)

    def check_and_record_vote(self, vote: Vote) -> None:
        signed = self._votes.setdefault(vote.validator, {})
        record = record_of(vote)
        if check_vote(signed.values(), record):
            signed[record.target_epoch] = record

    def close(self) -> None:
        """Nothing to release."""


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS signed_blocks (key BLOB PRIMARY KEY, slot INTEGER NOT NULL,"
    " block_id BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS signed_votes (key BLOB NOT NULL, target INTEGER NOT NULL,"
    " source INTEGER NOT NULL, data_root BLOB NOT NULL, PRIMARY KEY (key, target)) WITHOUT ROWID",
)


class SqliteSlashingProtection:
    """The record in SQLite tables (normally in the chain database file), committed durably.

    Each check runs in its own write transaction, so two processes sharing the file cannot both
    be allowed to sign conflicting messages.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._db = connect_sqlite(path)
        try:
            with write_transaction(self._db) as db:
                for statement in _SCHEMA:
                    db.execute(statement)
        except BaseException:
            self._db.close()
            raise

    def check_and_record_proposal(self, key: PublicKey, slot: Slot, block_id: BlockId) -> None:
        try:
            with write_transaction(self._db) as db:
                row = db.execute(
                    "SELECT slot, block_id FROM signed_blocks WHERE key = ?", (key,)
                ).fetchone()
                last = None if row is None else (int(row[0]), BlockId(bytes(row[1])))
                if check_proposal(last, slot, block_id):
                    db.execute(
                        "INSERT OR REPLACE INTO signed_blocks (key, slot, block_id)"
                        " VALUES (?, ?, ?)",
                        (key, slot, block_id),
                    )
        except (StorageError, sqlite3.Error, OverflowError) as exc:
            raise SlashingProtectionError(f"cannot record the proposal: {exc}") from exc

    def check_and_record_vote(self, vote: Vote) -> None:
        new = record_of(vote)
        try:
            with write_transaction(self._db) as db:
                rows = db.execute(
                    "SELECT source, target, data_root FROM signed_votes WHERE key = ? AND"
                    " (target = ? OR (source < ? AND target > ?) OR (source > ? AND target < ?))",
                    (
                        vote.validator,
                        new.target_epoch,
                        new.source_epoch,
                        new.target_epoch,
                        new.source_epoch,
                        new.target_epoch,
                    ),
                ).fetchall()
                signed = [
                    SignedVoteRecord(
                        source_epoch=Epoch(int(source)),
                        target_epoch=Epoch(int(target)),
                        data_root=Hash32(bytes(root)),
                    )
                    for source, target, root in rows
                ]
                if check_vote(signed, new):
                    db.execute(
                        "INSERT INTO signed_votes (key, target, source, data_root)"
                        " VALUES (?, ?, ?, ?)",
                        (vote.validator, new.target_epoch, new.source_epoch, new.data_root),
                    )
        except (StorageError, sqlite3.Error, OverflowError) as exc:
            raise SlashingProtectionError(f"cannot record the vote: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
