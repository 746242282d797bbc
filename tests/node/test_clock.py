"""`NodeClock`: the consensus clock a dev chain steers (skewed or manual), against a model."""

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.errors import ConfigError
from p2pchain.node.clock import NodeClock

MOVES = st.lists(st.integers(min_value=-5_000, max_value=5_000), max_size=30)


@given(start=st.integers(min_value=0, max_value=10**13), moves=MOVES)
def test_a_manual_clock_only_moves_forward_and_reads_what_it_was_set_to(start, moves):
    clock = NodeClock(0, manual_start_ms=start)
    model = start
    for move in moves:
        target = model + move
        if move < 0:
            with pytest.raises(ConfigError, match="before the clock's"):
                clock.set_time_ms(target)
        else:
            clock.set_time_ms(target)
            model = target
        assert clock.now_ms() == model


def test_a_wall_clock_cannot_be_set():
    with pytest.raises(ConfigError, match="not manual"):
        NodeClock(0).set_time_ms(10)
    assert not NodeClock(0).manual
    assert NodeClock(0, manual_start_ms=0).manual


async def test_a_sleeper_on_a_manual_clock_wakes_exactly_when_time_reaches_it(autojump_clock):
    clock = NodeClock(0, manual_start_ms=1_000)
    woke: list[int] = []

    async def sleeper() -> None:
        await clock.sleep_until_ms(2_000)
        woke.append(clock.now_ms())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sleeper)
        await trio.sleep(3_600)  # an hour of trio time: a manual clock does not follow it
        assert woke == []
        clock.set_time_ms(1_999)
        await trio.testing.wait_all_tasks_blocked()
        assert woke == []
        clock.set_time_ms(2_500)
    assert woke == [2_500]


@given(
    offset=st.integers(min_value=-(10**6), max_value=10**6),
    wait=st.integers(min_value=1, max_value=10**5),
    skew=st.integers(min_value=-(10**5), max_value=10**5),
)
def test_a_skew_while_sleeping_moves_the_wake_up_to_the_skewed_time(offset, wait, skew):
    async def run() -> tuple[int, float]:
        clock = NodeClock(offset)
        target = clock.now_ms() + wait
        async with trio.open_nursery() as nursery:
            nursery.start_soon(clock.sleep_until_ms, target)
            await trio.testing.wait_all_tasks_blocked()
            clock.set_offset_ms(offset + skew)
        return target, trio.current_time() * 1000 + offset + skew

    target, woke_at_ms = trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    # Woken at the first moment the skewed clock reads the target: never before it, and at
    # once if the skew already took the clock past it.
    assert woke_at_ms >= target - 1e-6
    assert woke_at_ms <= max(target, target - wait + skew) + 1e-6
