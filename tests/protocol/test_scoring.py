"""Peer scores (penalties, decay, threshold) and timed bans."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.errors import ConfigError, GossipIgnore, GossipReject, Reason
from p2pchain.protocol.connection import PeerId
from p2pchain.protocol.scoring import (
    BanEntry,
    BanKind,
    BanList,
    Offence,
    PeerScores,
    Penalize,
    ScoringParams,
)

ALICE = PeerId(b"a" * 32)
BOB = PeerId(b"b" * 32)


def test_unknown_peer_scores_zero_and_stays_connected():
    scores = PeerScores()
    assert scores.score(ALICE, 100.0) == 0.0
    assert not scores.should_disconnect(ALICE, 100.0)


def test_penalty_by_verdict_class_not_message_text():
    scores = PeerScores()
    scores.penalize_error(ALICE, GossipReject(Reason.BAD_SIGNATURE, "some text"), 0.0)
    scores.penalize_error(BOB, GossipIgnore(Reason.DUPLICATE_BLOCK), 0.0)
    assert scores.score(ALICE, 0.0) == -GossipReject.penalty
    assert scores.score(BOB, 0.0) == -GossipIgnore.penalty == 0


def test_subclass_penalty_is_used():
    class Forgery(GossipReject):
        penalty = 70

    scores = PeerScores()
    scores.penalize_error(ALICE, Forgery(Reason.BAD_SIGNATURE), 0.0)
    assert scores.score(ALICE, 0.0) == -70


def test_score_halves_every_half_life():
    scores = PeerScores(ScoringParams(half_life_s=10.0))
    scores.penalize(ALICE, 80.0, 0.0)
    assert scores.score(ALICE, 10.0) == pytest.approx(-40.0)
    assert scores.score(ALICE, 30.0) == pytest.approx(-10.0)


def test_repeated_offences_cross_threshold_then_recover():
    params = ScoringParams(disconnect_threshold=-100.0, half_life_s=60.0)
    scores = PeerScores(params)
    for second in range(4):
        scores.apply(Penalize(peer_id=ALICE, amount=30.0, reason=Offence.SPAM), float(second))
    assert scores.should_disconnect(ALICE, 4.0)
    assert not scores.should_disconnect(BOB, 4.0)
    assert not scores.should_disconnect(ALICE, 4.0 + 5 * 60.0)


@given(
    amounts=st.lists(st.floats(min_value=0, max_value=1e6), max_size=20),
    gaps=st.lists(st.floats(min_value=0, max_value=1e4), min_size=20, max_size=20),
)
def test_score_never_positive_and_decays_monotonically_to_zero(amounts, gaps):
    scores = PeerScores()
    now = 0.0
    for amount, gap in zip(amounts, gaps, strict=False):
        now += gap
        scores.penalize(ALICE, amount, now)
    before = scores.score(ALICE, now)
    later = scores.score(ALICE, now + 100.0)
    assert before <= later <= 0.0
    assert math.isclose(scores.score(ALICE, now + 1e9), 0.0, abs_tol=1e-9)


def test_negative_penalty_is_refused():
    with pytest.raises(ValueError, match="non-negative"):
        PeerScores().penalize(ALICE, -1.0, 0.0)


def test_tracked_scores_are_bounded():
    scores = PeerScores(ScoringParams(max_tracked_peers=3))
    for i in range(10):
        scores.penalize(PeerId(bytes([i]) * 32), float(i + 1), 0.0)
    assert len(scores) == 3
    # The worst offenders are the ones remembered; the mildest make room.
    remembered = [scores.score(PeerId(bytes([i]) * 32), 0.0) for i in range(10)]
    assert remembered == [0.0] * 7 + [-8.0, -9.0, -10.0]


def test_forget_recovered_drops_only_decayed_entries():
    scores = PeerScores(ScoringParams(half_life_s=1.0))
    scores.penalize(ALICE, 1.0, 0.0)
    scores.penalize(BOB, 1.0, 100.0)
    assert scores.forget_recovered(100.0) == 1
    assert len(scores) == 1
    assert scores.score(BOB, 100.0) == -1.0


def test_a_score_is_forgotten_only_below_a_thousandth():
    scores = PeerScores(ScoringParams())
    scores.penalize(ALICE, 1e-3, 0.0)
    scores.penalize(BOB, 0.999e-3, 0.0)
    assert scores.forget_recovered(0.0) == 1
    assert scores.score(ALICE, 0.0) == -1e-3


def test_ban_by_peer_and_by_address_expires():
    bans = BanList()
    bans.ban_peer(ALICE, until=50.0)
    bans.ban_address(b"tcp://10.0.0.1:9000", until=80.0)
    assert bans.is_banned(10.0, peer_id=ALICE)
    assert not bans.is_banned(10.0, peer_id=BOB)
    assert bans.is_banned(10.0, peer_id=BOB, address=b"tcp://10.0.0.1:9000")
    assert not bans.is_banned(50.0, peer_id=ALICE)
    assert bans.is_banned(79.9, address=b"tcp://10.0.0.1:9000")
    assert not bans.is_banned(80.0, address=b"tcp://10.0.0.1:9000")
    assert bans.expire(60.0) == 1
    assert len(bans) == 1


def test_a_shorter_ban_does_not_shorten_a_longer_one():
    bans = BanList()
    bans.ban_peer(ALICE, until=100.0)
    bans.ban_peer(ALICE, until=10.0)
    assert bans.is_banned(50.0, peer_id=ALICE)


def test_bans_survive_export_and_load():
    bans = BanList()
    bans.ban_peer(ALICE, until=100.0)
    bans.ban_address(b"ws://example:1", until=200.0)
    restored = BanList(bans.entries())
    assert set(restored.entries()) == {
        BanEntry(kind=BanKind.PEER, value=ALICE, until=100.0),
        BanEntry(kind=BanKind.ADDRESS, value=b"ws://example:1", until=200.0),
    }
    assert restored.is_banned(150.0, address=b"ws://example:1")
    assert not restored.is_banned(150.0, peer_id=ALICE)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"disconnect_threshold": 0.0},
        {"address_disconnect_threshold": 1.0},
        {"half_life_s": 0.0},
        {"address_ban_duration_s": 0.0},
        {"max_tracked_peers": 0},
        {"max_bans": 0},
    ],
)
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ConfigError, match="must be"):
        ScoringParams(**kwargs)


def test_source_and_group_bans_refuse_inbound_only():
    bans = BanList()
    bans.ban_source(b"203.0.113.5", until=100.0)
    bans.ban_group(b"198.51.0.0/16", until=100.0)
    assert bans.is_refused_inbound(50.0, host=b"203.0.113.5", group=b"203.0.0.0/16")
    assert bans.is_refused_inbound(50.0, host=b"198.51.7.7", group=b"198.51.0.0/16")
    assert not bans.is_refused_inbound(50.0, host=b"203.0.113.6", group=b"203.0.0.0/16")
    assert not bans.is_refused_inbound(100.0, host=b"203.0.113.5", group=b"203.0.0.0/16")
    assert not bans.is_banned(50.0, address=b"203.0.113.5")  # we may still dial it
    bans.ban_address(b"192.0.2.1", until=100.0)
    assert bans.is_refused_inbound(50.0, host=b"192.0.2.1", group=b"192.0.0.0/16")


@given(untils=st.lists(st.floats(min_value=0, max_value=1e6), max_size=200))
def test_the_ban_list_is_bounded_and_keeps_the_longest_bans(untils):
    bans = BanList(max_entries=10)
    for n, until in enumerate(untils):
        bans.ban_source(str(n).encode(), until)
    kept = sorted(entry.until for entry in bans.entries())
    assert len(kept) == min(10, len(untils))
    assert kept == sorted(untils)[len(untils) - len(kept) :]


def test_a_ban_ends_at_its_until_and_expire_drops_it_then():
    bans = BanList()
    bans.ban_source(b"203.0.113.5", until=80.0)
    assert bans.expire(79.9) == 0
    assert bans.expire(80.0) == 1
    assert len(bans) == 0


def test_restored_bans_keep_their_kind_value_and_end():
    saved = BanList()
    saved.ban_peer(ALICE, until=100.0)
    saved.ban_group(b"198.51.0.0/16", until=300.0)
    restored = BanList()
    restored.ban_peer(ALICE, until=50.0)  # a shorter ban is lengthened, never the reverse
    restored.restore(saved.entries())
    assert set(restored.entries()) == set(saved.entries())


def test_a_full_ban_list_keeps_its_bans_against_one_that_ends_no_later():
    bans = BanList(max_entries=1)
    bans.ban_source(b"first", until=10.0)
    bans.ban_source(b"second", until=10.0)
    assert [entry.value for entry in bans.entries()] == [b"first"]
    bans.ban_source(b"third", until=10.5)
    assert [entry.value for entry in bans.entries()] == [b"third"]


def test_one_tracked_peer_and_one_ban_are_enough():
    params = ScoringParams(max_tracked_peers=1, max_bans=1)
    assert (params.max_tracked_peers, params.max_bans) == (1, 1)


def test_scores_keyed_by_address_use_their_own_threshold():
    params = ScoringParams(address_disconnect_threshold=-30.0)
    by_address = PeerScores(params, threshold=params.address_disconnect_threshold)
    for _ in range(3):
        by_address.penalize(b"203.0.113.5", 10.0, 0.0)
    assert not by_address.should_disconnect(b"203.0.113.5", 0.0)
    by_address.penalize(b"203.0.113.5", 1.0, 0.0)
    assert by_address.should_disconnect(b"203.0.113.5", 0.0)
