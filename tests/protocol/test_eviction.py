"""Bitcoin Core-style inbound eviction as a pure function, over synthetic peers."""

import math
import random

from hypothesis import assume, given
from hypothesis import strategies as st

from p2pchain.protocol.eviction import EvictionCandidate, EvictionParams, select_peer_to_evict

PARAMS = EvictionParams()
SALT = b"node secret"
GROUPS = [f"10.{n}.0.0/16" for n in range(6)]

times = st.floats(min_value=0, max_value=1_000, allow_nan=False)
maybe_time = st.one_of(st.just(-math.inf), times)


@st.composite
def candidates(draw, max_size=40):
    count = draw(st.integers(0, max_size))
    return [
        EvictionCandidate(
            key=n.to_bytes(4, "big"),
            group=draw(st.sampled_from(GROUPS)),
            connected_at=draw(times),
            min_rtt=draw(st.one_of(st.just(math.inf), st.floats(0.0001, 2.0))),
            last_transaction_at=draw(maybe_time),
            last_block_at=draw(maybe_time),
            protected=draw(st.integers(0, 3)) == 0,
        )
        for n in range(count)
    ]


def _best(peers, count, rank):
    return {c.key for c in sorted(peers, key=lambda c: (*rank(c), c.key))[:count]}


@given(peers=candidates())
def test_the_victim_is_never_a_protected_peer(peers):
    victim = select_peer_to_evict(peers, salt=SALT, params=PARAMS)
    open_peers = [c for c in peers if not c.protected]
    if victim is None:
        return
    assert victim in {c.key for c in open_peers}
    assert victim not in _best(open_peers, 8, lambda c: (c.min_rtt, c.connected_at))
    senders = [c for c in open_peers if c.last_transaction_at > -math.inf]
    assert victim not in _best(senders, 4, lambda c: (-c.last_transaction_at, c.connected_at))
    relayers = [c for c in open_peers if c.last_block_at > -math.inf]
    assert victim not in _best(relayers, 4, lambda c: (-c.last_block_at, c.connected_at))


@given(peers=candidates(), seed=st.integers())
def test_the_choice_does_not_depend_on_input_order(peers, seed):
    shuffled = list(peers)
    random.Random(seed).shuffle(shuffled)
    assert select_peer_to_evict(peers, salt=SALT, params=PARAMS) == select_peer_to_evict(
        shuffled, salt=SALT, params=PARAMS
    )


@given(honest=candidates(max_size=20), extra=st.integers(10, 40), rtt=st.floats(0.0001, 5.0))
def test_a_crowd_of_fresh_peers_from_one_group_evicts_one_of_its_own(honest, extra, rtt):
    """Fresh keys cost nothing; they are younger than every honest peer and relay nothing."""
    honest = [c for c in honest if not c.protected]
    newest = max((c.connected_at for c in honest), default=0.0)
    crowd = [
        EvictionCandidate(
            key=b"attacker" + n.to_bytes(4, "big"),
            group="192.0.0.0/16",
            connected_at=newest + 1 + n,
            min_rtt=max([rtt, *(c.min_rtt for c in honest if c.min_rtt < math.inf)]),
        )
        for n in range(len(honest) + extra)
    ]
    victim = select_peer_to_evict(honest + crowd, salt=SALT, params=PARAMS)
    assert victim is not None
    assert victim.startswith(b"attacker")


def test_the_youngest_of_the_largest_group_goes():
    peers = [
        EvictionCandidate(key=bytes([n]), group=GROUPS[n % 2 if n < 30 else 0], connected_at=n)
        for n in range(40)
    ]
    none = EvictionParams(protect_by_group=0, protect_by_rtt=0, protect_longest_fraction=0.0)
    assert select_peer_to_evict(peers, salt=SALT, params=none) == bytes([39])


@given(peers=candidates(max_size=20))
def test_nobody_is_evicted_when_the_rules_protect_everyone(peers):
    everyone = EvictionParams(protect_by_rtt=len(peers))
    assume(peers)
    assert select_peer_to_evict(peers, salt=SALT, params=everyone) is None
