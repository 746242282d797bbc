"""QuotaPool: count and byte bounds per source and in total, and who loses when it is full."""

import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.errors import ConfigError
from p2pchain.protocol.quota import Quota, QuotaPool

QUOTA = Quota(max_items=64, max_bytes=64_000, max_items_per_source=8, max_bytes_per_source=8_000)
JUNK = 10_000


def _check_bounds(pool: QuotaPool[int, str, bytes], sources: set[str]) -> None:
    quota = pool.quota
    assert len(pool) <= quota.max_items
    assert pool.bytes <= quota.max_bytes
    assert pool.bytes == sum(len(value) for _, value in pool.items())
    for source in sources:
        items, size = pool.usage(source)
        assert items <= quota.max_items_per_source
        assert size <= quota.max_bytes_per_source


def test_one_flooding_source_only_displaces_its_own_items():
    pool: QuotaPool[int, str, bytes] = QuotaPool(QUOTA)
    for key in range(4):
        assert pool.add(key, b"h" * 500, source="honest", size=500) == []
    for key in range(100, 100 + JUNK):
        pool.add(key, b"j" * 900, source="flooder", size=900)
        _check_bounds(pool, {"honest", "flooder"})
    assert [key for key, _ in pool.items() if key < 100] == [0, 1, 2, 3]
    assert pool.usage("flooder")[0] == QUOTA.max_items_per_source
    assert pool.evicted == JUNK - QUOTA.max_items_per_source


def test_many_flooding_sources_push_out_the_largest_holders_first():
    pool: QuotaPool[int, str, bytes] = QuotaPool(QUOTA)
    pool.add(0, b"h" * 100, source="honest", size=100)
    # 16 sources take turns: together they could fill the pool twice over.
    for key in range(1, JUNK + 1):
        source = f"sybil-{key % 16}"
        pool.add(key, b"j" * 1_000, source=source, size=1_000)
        _check_bounds(pool, {"honest", *(f"sybil-{i}" for i in range(16))})
    assert 0 in pool  # it held less than any flooder all along
    assert len(pool) == QUOTA.max_items  # 63 sybil items of 1000 B + the honest 100 B


def test_an_item_over_the_source_byte_quota_is_never_held():
    pool: QuotaPool[int, str, bytes] = QuotaPool(QUOTA)
    big = b"x" * (QUOTA.max_bytes_per_source + 1)
    assert pool.add(1, big, source="a", size=len(big)) == [big]
    assert 1 not in pool
    assert (len(pool), pool.bytes) == (0, 0)


def test_per_source_byte_quota_evicts_the_sources_oldest():
    pool: QuotaPool[int, str, bytes] = QuotaPool(QUOTA)
    for key in range(3):
        pool.add(key, bytes(3_000), source="a", size=3_000)
    assert [key for key, _ in pool.items()] == [1, 2]
    assert pool.usage("a") == (2, 6_000)


def test_pop_releases_the_accounting():
    pool: QuotaPool[int, str, bytes] = QuotaPool(QUOTA)
    pool.add(1, b"abc", source="a", size=3)
    assert pool.pop(1) == b"abc"
    assert pool.pop(1) is None
    assert (len(pool), pool.bytes, pool.usage("a")) == (0, 0, (0, 0))


def test_memory_of_a_flooded_pool_stays_near_its_byte_bound():
    quota = Quota(
        max_items=256, max_bytes=1_000_000, max_items_per_source=32, max_bytes_per_source=200_000
    )
    pool: QuotaPool[int, int, bytes] = QuotaPool(quota)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for key in range(JUNK):
            value = bytes(5_000)
            pool.add(key, value, source=key % 97, size=len(value))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert pool.bytes <= quota.max_bytes
    # The values themselves plus bookkeeping (under 1 KiB per entry the pool can hold, heap
    # included), nothing per item ever offered.
    assert held < quota.max_bytes + 1_024 * quota.max_items


def test_quota_refuses_a_share_larger_than_the_total():
    with pytest.raises(ConfigError, match="max_items_per_source"):
        Quota(max_items=4, max_bytes=10, max_items_per_source=5, max_bytes_per_source=10)
    with pytest.raises(ConfigError, match="max_bytes_per_source"):
        Quota(max_items=4, max_bytes=10, max_items_per_source=4, max_bytes_per_source=11)


@given(
    st.lists(
        st.tuples(st.sampled_from("abcd"), st.integers(1, 9_000), st.booleans()),
        max_size=200,
    )
)
def test_every_eviction_follows_the_policy(operations):
    """Against a naive model: each item pushed out is the oldest of a source over its own
    quota, or (pool over its total) the oldest of a source holding the most."""
    pool: QuotaPool[int, str, int] = QuotaPool(QUOTA)
    model: dict[int, tuple[str, int]] = {}  # key -> (source, size), in arrival order

    def usage(source: str) -> tuple[int, int]:
        sizes = [size for s, size in model.values() if s == source]
        return sum(sizes), len(sizes)

    for key, (source, size, pop_oldest) in enumerate(operations):
        if pop_oldest and model:
            oldest = next(iter(model))
            assert pool.pop(oldest) == oldest
            del model[oldest]
        evicted = pool.add(key, key, source=source, size=size)
        if size > QUOTA.max_bytes_per_source:
            assert evicted == [key]
            continue
        model[key] = (source, size)
        for victim in evicted:
            victim_source, _ = model[victim]
            oldest_of_source = next(k for k, (s, _) in model.items() if s == victim_source)
            assert victim == oldest_of_source
            own_bytes, own_items = usage(victim_source)
            over_own = (
                own_bytes > QUOTA.max_bytes_per_source or own_items > QUOTA.max_items_per_source
            )
            if not over_own:
                assert len(model) > QUOTA.max_items or sum(z for _, z in model.values()) > (
                    QUOTA.max_bytes
                )
                assert usage(victim_source) == max(usage(s) for s in "abcd")
            del model[victim]
        assert [k for k, _ in pool.items()] == list(model)
        assert pool.bytes == sum(size for _, size in model.values())
