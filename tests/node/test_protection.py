"""Slashing protection refuses exactly what the ledger slashes, and remembers it across restarts."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchain.errors import SlashingProtectionError
from p2pchain.ledger.evidence import is_double_vote, is_surround_vote
from p2pchain.ledger.types import BlockId, PublicKey
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.node.protection import (
    MemorySlashingProtection,
    SlashingProtection,
    SqliteSlashingProtection,
)

KEY_A = PublicKey(b"\x0a" * 32)
KEY_B = PublicKey(b"\x0b" * 32)


def block(n: int) -> BlockId:
    return BlockId(n.to_bytes(32, "big"))


def make_vote(key: PublicKey, source: int, target: int, head: int = 0) -> Vote:
    return Vote(
        slot=target * 8,
        head=block(head),
        source=Checkpoint(epoch=source, block_id=block(source)),
        target=Checkpoint(epoch=target, block_id=block(target)),
        validator=key,
        signature=bytes(64),
    )


@pytest.fixture(params=["memory", "sqlite"])
def protection(request: pytest.FixtureRequest, tmp_path: Path) -> SlashingProtection:
    if request.param == "memory":
        return MemorySlashingProtection()
    return SqliteSlashingProtection(tmp_path / "chain.db")


def test_proposals_only_move_forward(protection: SlashingProtection) -> None:
    protection.check_and_record_proposal(KEY_A, 5, block(1))
    protection.check_and_record_proposal(KEY_A, 5, block(1))  # the same block again is safe
    with pytest.raises(SlashingProtectionError, match="another block at slot 5"):
        protection.check_and_record_proposal(KEY_A, 5, block(2))
    with pytest.raises(SlashingProtectionError, match="below the last signed slot"):
        protection.check_and_record_proposal(KEY_A, 4, block(3))
    protection.check_and_record_proposal(KEY_B, 4, block(3))  # other keys are independent
    protection.check_and_record_proposal(KEY_A, 6, block(2))
    with pytest.raises(SlashingProtectionError):
        protection.check_and_record_proposal(KEY_A, 5, block(1))


def test_double_and_surround_votes_are_refused(protection: SlashingProtection) -> None:
    protection.check_and_record_vote(make_vote(KEY_A, 2, 5))
    protection.check_and_record_vote(make_vote(KEY_A, 2, 5))  # identical data: safe to re-sign
    with pytest.raises(SlashingProtectionError, match="target epoch 5"):
        protection.check_and_record_vote(make_vote(KEY_A, 2, 5, head=9))
    with pytest.raises(SlashingProtectionError, match="surround"):
        protection.check_and_record_vote(make_vote(KEY_A, 3, 4))  # surrounded by 2->5
    with pytest.raises(SlashingProtectionError, match="surround"):
        protection.check_and_record_vote(make_vote(KEY_A, 1, 6))  # surrounds 2->5
    protection.check_and_record_vote(make_vote(KEY_B, 3, 4))
    protection.check_and_record_vote(make_vote(KEY_A, 5, 6))


def test_the_record_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "chain.db"
    with SqliteSlashingProtection(path) as protection:
        protection.check_and_record_proposal(KEY_A, 7, block(1))
        protection.check_and_record_vote(make_vote(KEY_A, 2, 5))
    with SqliteSlashingProtection(path) as protection:
        with pytest.raises(SlashingProtectionError):
            protection.check_and_record_proposal(KEY_A, 7, block(2))
        with pytest.raises(SlashingProtectionError):
            protection.check_and_record_vote(make_vote(KEY_A, 2, 5, head=3))
        with pytest.raises(SlashingProtectionError):
            protection.check_and_record_vote(make_vote(KEY_A, 1, 6))
        protection.check_and_record_proposal(KEY_A, 7, block(1))
        protection.check_and_record_vote(make_vote(KEY_A, 5, 6))


def test_two_connections_to_one_file_share_the_record(tmp_path: Path) -> None:
    first = SqliteSlashingProtection(tmp_path / "chain.db")
    second = SqliteSlashingProtection(tmp_path / "chain.db")
    first.check_and_record_proposal(KEY_A, 3, block(1))
    with pytest.raises(SlashingProtectionError):
        second.check_and_record_proposal(KEY_A, 3, block(2))


votes = st.builds(
    lambda key, source, length, head: make_vote(key, source, source + length, head),
    st.sampled_from([KEY_A, KEY_B]),
    st.integers(0, 6),
    st.integers(1, 4),
    st.integers(0, 2),
)


@settings(max_examples=40)
@given(requests=st.lists(votes, max_size=12))
def test_votes_are_refused_exactly_when_slashable_with_an_accepted_one(
    requests: list[Vote],
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        memory = MemorySlashingProtection()
        durable = SqliteSlashingProtection(Path(directory) / "chain.db")
        accepted: list[Vote] = []
        for vote in requests:
            slashable = any(
                is_double_vote(old, vote) or is_surround_vote(old, vote) for old in accepted
            )
            outcomes = []
            for protection in (memory, durable):
                try:
                    protection.check_and_record_vote(vote)
                    outcomes.append(True)
                except SlashingProtectionError:
                    outcomes.append(False)
            assert outcomes == [not slashable, not slashable]
            if not slashable:
                accepted.append(vote)
        durable.close()
        for a, b in itertools.combinations(accepted, 2):
            assert not is_double_vote(a, b)
            assert not is_surround_vote(a, b)
