"""`NodeLimits` refuses every bound that would disable itself: a program embedding a node gets
a `ConfigError` naming the setting, not a node that holds without limit or never times out."""

from __future__ import annotations

from dataclasses import fields

import pytest

from p2pchain.errors import ConfigError
from p2pchain.node.config import NodeLimits

POSITIVE = [
    "subscriber_buffer",
    "event_history",
    "event_history_bytes",
    "pending_blocks",
    "pending_block_bytes",
    "pending_votes",
    "vote_pool",
    "evidence_pool",
    "history_bytes",
    "rejected_history",
    "signature_cache",
    "offload_signatures",
    "offload_decode_bytes",
    "rebroadcast_slots",
    "max_inbound_per_address",
    "max_inbound_per_group",
    "max_pending_handshakes",
    "max_pending_per_address",
]
NATURAL = [
    "target_outbound",
    "max_inbound",
    "max_future_slots",
    "slashing_window_epochs",
    "history_blocks",
    "max_rebroadcast",
]


@pytest.mark.parametrize("name", POSITIVE)
def test_a_bound_below_one_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="limits must be positive"):
        NodeLimits(**{name: 0})  # type: ignore[arg-type]
    NodeLimits(**{name: 10**12})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NATURAL)
def test_a_count_may_be_zero_but_not_negative(name: str) -> None:
    NodeLimits(**{name: 0})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="limits must be positive"):
        NodeLimits(**{name: -1})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["handshake_timeout", "snapshot_request_timeout"])
@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan")])
def test_a_timeout_that_is_not_positive_is_refused(name: str, seconds: float) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be positive"):
        NodeLimits(**{name: seconds})  # type: ignore[arg-type]


@pytest.mark.parametrize("budget", [0.0, -0.5, 1.01, float("nan")])
def test_a_proposal_budget_outside_the_slot_is_refused(budget: float) -> None:
    with pytest.raises(ConfigError, match="proposal_budget"):
        NodeLimits(proposal_budget=budget)


@pytest.mark.parametrize(
    ("per_peer", "total"),
    [
        ("pending_blocks_per_peer", "pending_blocks"),
        ("pending_block_bytes_per_peer", "pending_block_bytes"),
        ("pending_votes_per_peer", "pending_votes"),
    ],
)
def test_a_per_peer_bound_above_its_total_is_refused(per_peer: str, total: str) -> None:
    limit = getattr(NodeLimits(), total)
    NodeLimits(**{per_peer: limit})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="per-peer limit"):
        NodeLimits(**{per_peer: limit + 1})  # type: ignore[arg-type]


def test_every_numeric_bound_is_checked_by_one_of_these_tests() -> None:
    """A bound added to `NodeLimits` without a refusal rule (and a row here) fails this."""
    checked = {
        *POSITIVE,
        *NATURAL,
        "handshake_timeout",
        "snapshot_request_timeout",
        "proposal_budget",
        "pending_blocks_per_peer",
        "pending_block_bytes_per_peer",
        "pending_votes_per_peer",
    }
    numeric = {
        field.name
        for field in fields(NodeLimits)
        if isinstance(getattr(NodeLimits(), field.name), int | float)
    }
    assert numeric == checked
