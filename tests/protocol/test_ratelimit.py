"""Per-peer budgets: every message type is charged, volume only slows, abuse is reported."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.errors import ConfigError
from p2pchain.ledger.proofs import QueryKind, StateQuery
from p2pchain.ledger.types import TxId
from p2pchain.protocol.messages import (
    GetBlocksByRange,
    GetFinality,
    GetPeers,
    GetSnapshotManifest,
    GetSnapshotPage,
    GetStateProof,
    GetTxProof,
    Hello,
    IHave,
    IWant,
    Ping,
    Pong,
    Publish,
    Status,
    Topic,
)
from p2pchain.protocol.ratelimit import Budget, RateLimiter, RateLimits, TokenBucket
from p2pchain.testing.link import connection_keys, make_hello

HELLO = make_hello(connection_keys(1).identity)
STATUS = Status(head=HELLO.head, head_height=0, head_slot=0, finalized=HELLO.finalized)
KINDS = {
    "publish": Publish(topic=Topic.TRANSACTION, data=b"tx"),
    "ihave": IHave(topic=Topic.TRANSACTION, message_ids=(bytes(20),)),
    "iwant": IWant(message_ids=(bytes(20),)),
    "ping": Ping(nonce=1),
    "pong": Pong(nonce=1),
    "get_peers": GetPeers(),
    "hello": HELLO,
    "status": STATUS,
    "range": GetBlocksByRange(request_id=1, start_height=0, count=128),
    "finality": GetFinality(request_id=1, trusted=STATUS.finalized),
    "state_proof": GetStateProof(
        request_id=1, block_id=STATUS.head, query=StateQuery(kind=QueryKind.VALIDATORS)
    ),
    "tx_proof": GetTxProof(request_id=1, txid=TxId(bytes(32))),
    "snapshot_manifest": GetSnapshotManifest(request_id=1, block_id=STATUS.head),
    "snapshot_page": GetSnapshotPage(request_id=1, block_id=STATUS.head, subtree=7),
}


def test_a_bucket_refills_at_its_rate_up_to_its_burst():
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert all(bucket.consume(1, 0.0) for _ in range(5))
    assert not bucket.consume(1, 0.0)
    assert bucket.ready_at(0.0) == pytest.approx(0.1)
    assert bucket.consume(1, 0.2)
    assert bucket.ready_at(100.0) == 100.0
    assert all(bucket.consume(1, 100.0) for _ in range(5))  # full again, never more than burst
    assert not bucket.consume(1, 100.0)


@given(
    arrivals=st.lists(
        st.tuples(st.sampled_from(sorted(KINDS)), st.floats(min_value=0, max_value=0.05)),
        max_size=400,
    )
)
def test_no_budget_is_passed_by_what_a_waiting_reader_serves(arrivals):
    """Drive the limiter like the peer driver: read nothing before `ready_at`, and serve
    nothing reported as abuse."""
    limits = RateLimits(messages=Budget(rate=100, burst=50))
    limiter = RateLimiter(limits, 0.0)
    now = 0.0
    served = dict.fromkeys((*KINDS, "all"), 0.0)
    for kind, gap in arrivals:
        now = max(now + gap, limiter.ready_at(now + gap))
        message = KINDS[kind]
        served["all"] += 1
        if not limiter.charge(message, now).abusive:
            served[kind] += message.count if kind == "range" else 1
    budgets = dict(limits.per_type)
    assert served["all"] <= limits.messages.burst + limits.messages.rate * now + 1
    for kind, message in KINDS.items():
        budget = budgets.get(type(message))
        if budget is not None:
            cost = message.count if kind == "range" else 1
            assert served[kind] <= budget.burst + budget.rate * now + cost


class NaiveLimiter:
    """The model of when reading may resume: one bucket per budget, charged alike, and
    `ready_at` the latest of every volume bucket's, asked of each bucket every time."""

    def __init__(self, limits: RateLimits, now: float) -> None:
        self.bytes = TokenBucket(limits.bytes.rate, limits.bytes.burst, now)
        self.messages = TokenBucket(limits.messages.rate, limits.messages.burst, now)
        self.budgets = dict(limits.per_type)
        self.types = {
            kind: TokenBucket(budget.rate, budget.burst, now) for kind, budget in limits.per_type
        }

    def charge(self, message, now: float) -> None:
        self.messages.consume(1, now)
        bucket = self.types.get(type(message))
        if bucket is None:
            return
        cost = message.count if isinstance(message, GetBlocksByRange) else 1
        if not bucket.consume(cost, now) and self.budgets[type(message)].abusive_beyond:
            bucket.tokens = max(bucket.tokens, -bucket.burst)

    def ready_at(self, now: float) -> float:
        volume = [
            self.bytes,
            self.messages,
            *(self.types[k] for k, b in self.budgets.items() if not b.abusive_beyond),
        ]
        return max(bucket.ready_at(now) for bucket in volume)


@given(
    events=st.lists(
        st.tuples(
            st.sampled_from([*sorted(KINDS), "bytes"]),
            st.floats(min_value=0, max_value=0.05),
            st.integers(1, 20_000),
        ),
        max_size=300,
    )
)
def test_ready_at_is_the_latest_of_every_volume_budget_as_a_naive_model_says(events):
    """`ready_at` skips the budgets that never went below zero; it must still give the time
    asking every volume budget gives, whatever was charged, whenever it is asked."""
    limits = RateLimits(
        messages=Budget(rate=100, burst=50), bytes=Budget(rate=100_000, burst=50_000)
    )
    limiter, model = RateLimiter(limits, 0.0), NaiveLimiter(limits, 0.0)
    now = 0.0
    for kind, gap, size in events:
        now += gap
        if kind == "bytes":
            limiter.charge_bytes(size, now)
            model.bytes.consume(size, now)
        else:
            limiter.charge(KINDS[kind], now)
            model.charge(KINDS[kind], now)
        assert limiter.ready_at(now) == pytest.approx(model.ready_at(now))
        later = now + gap * 3
        assert limiter.ready_at(later) == pytest.approx(model.ready_at(later))


def test_ping_flood_is_abuse_and_honest_pings_are_not():
    limiter = RateLimiter(RateLimits(), 0.0)
    honest = [limiter.charge(Ping(nonce=n), n * 15.0).abusive for n in range(100)]
    assert not any(honest)
    flood = [limiter.charge(Ping(nonce=n), 1_500.0).abusive for n in range(20_000)]
    assert flood.index(True) == 200  # the burst, then every one is over
    # paced as volume only (20,000 messages against a burst of 4,000 at 2,000/s)
    assert limiter.ready_at(1_500.0) == pytest.approx(1_500.0 + (20_000 - 4_000) / 2_000)
    assert not limiter.charge(Ping(nonce=0), 1_520.0).abusive  # the debt was capped
    assert not limiter.charge(Pong(nonce=7), 1_500.0, solicited=True).abusive


@pytest.mark.parametrize(
    "kind", ["publish", "ihave", "iwant", "status", "range", "finality", "state_proof", "tx_proof"]
)
def test_volume_is_never_abuse(kind):
    limiter = RateLimiter(RateLimits(), 0.0)
    assert not any(limiter.charge(KINDS[kind], 0.0).abusive for _ in range(10_000))
    assert limiter.ready_at(0.0) > 0.0  # but reading pauses
    assert limiter.over_limit > 0


def test_honest_relay_at_500_tx_per_second_stays_within_every_budget():
    """One link of a node relaying 500 tx/s: a Publish per tx, IHAVE and IWANT per heartbeat
    and topic, a vote per slot, a Status per head change, liveness pings, peer exchange."""
    limiter = RateLimiter(RateLimits(), 0.0)
    events = []
    for ms in range(60_000):
        now = ms / 1000
        if ms % 2 == 0:
            events.append((now, KINDS["publish"]))
        if ms % 700 == 0:
            events += [(now, KINDS["ihave"])] * 4 + [(now, KINDS["iwant"])] * 4
        if ms % 1000 == 0:
            events += [(now, KINDS["status"]), (now, KINDS["publish"])]
        if ms % 15_000 == 0:
            events += [(now, KINDS["ping"]), (now, KINDS["pong"])]
        if ms % 30_000 == 0:
            events.append((now, KINDS["get_peers"]))
    for now, message in events:
        assert limiter.ready_at(now) <= now
        assert not limiter.charge(message, now).abusive
    assert limiter.over_limit == 0


def test_a_type_has_one_budget():
    budget = Budget(rate=1, burst=1)
    with pytest.raises(ConfigError, match="one budget"):
        RateLimits(per_type=((Ping, budget), (Ping, budget)))
    with pytest.raises(ConfigError, match="positive rate"):
        Budget(rate=0, burst=1)
    assert Hello in dict(RateLimits().per_type)


@pytest.mark.parametrize(
    ("kind", "burst"),
    [
        ("finality", 20),
        ("state_proof", 200),
        ("tx_proof", 200),
        ("snapshot_manifest", 10),
        ("snapshot_page", 600),
    ],
)
def test_light_requests_pause_reading_past_their_own_burst(kind, burst):
    """Each light request costs the node a certificate, a proof, a snapshot's preparation or
    a page: past its burst the asker waits (well before the all-message budget of 4,000
    would make it)."""
    limiter = RateLimiter(RateLimits(), 0.0)
    for _ in range(burst):
        limiter.charge(KINDS[kind], 0.0)
    assert limiter.ready_at(0.0) == 0.0
    limiter.charge(KINDS[kind], 0.0)
    assert limiter.ready_at(0.0) > 0.0
