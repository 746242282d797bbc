"""`Inbox`: bounded in count and in the estimated memory of what waits in it."""

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchain.net.inbox import ID_WEIGHT, Inbox, InboxShare, message_weight
from p2pchain.protocol.messages import MAX_IHAVE_IDS, IHave, Ping, Publish, Topic


def test_weights_follow_what_a_message_holds():
    big = IHave(topic=Topic.TRANSACTION, message_ids=(bytes(20),) * MAX_IHAVE_IDS)
    assert message_weight(big) >= ID_WEIGHT * MAX_IHAVE_IDS
    assert message_weight(Publish(topic=Topic.BLOCK, data=bytes(1_000_000))) > 1_000_000
    assert message_weight(Ping(nonce=1)) < 1_000


async def test_senders_wait_while_the_held_weight_would_pass_the_bound(autojump_clock):
    inbox = Inbox[int](max_events=10_000, max_bytes=1_000)
    sent = []

    async def sender(start):
        for n in range(start, start + 100):
            await inbox.send(n, 300)
            sent.append(n)

    async with trio.open_nursery() as nursery:
        for start in (0, 1_000, 2_000):
            nursery.start_soon(sender, start)
        await trio.testing.wait_all_tasks_blocked()
        assert len(sent) == 3  # 900 of 1,000 held: every sender waits for room
        assert inbox.held_bytes == 900
        received = []
        async for event in inbox:
            received.append(event)
            assert inbox.held_bytes <= 1_000
            if len(received) == 300:
                break
    assert sorted(received) == sorted(sent)
    assert inbox.held_bytes == 0


async def test_one_event_heavier_than_the_bound_still_passes_an_empty_inbox():
    inbox = Inbox[str](max_events=4, max_bytes=10)
    await inbox.send("huge", 1_000)
    inbox.close()
    assert [event async for event in inbox] == ["huge"]


async def test_a_batch_takes_what_waits_in_order_up_to_its_size_and_frees_its_weight():
    inbox = Inbox[int](max_events=100, max_bytes=1_000)
    for n in range(5):
        await inbox.send(n, 200)
    blocked = []

    async def late_sender():
        await inbox.send(99, 200)
        blocked.append(99)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(late_sender)
        await trio.testing.wait_all_tasks_blocked()
        assert blocked == []  # 1,000 held: no room for a sixth
        assert await inbox.receive_batch(3) == [0, 1, 2]
        assert inbox.held_bytes == 400
        await trio.testing.wait_all_tasks_blocked()
        assert blocked == [99]
    assert await inbox.receive_batch(10) == [3, 4, 99]
    assert inbox.held_bytes == 0
    inbox.close()
    assert await inbox.receive_batch(10) == []


async def test_sending_into_room_does_not_switch_tasks():
    """A reader hands a whole receive's messages over without yielding between them."""
    inbox = Inbox[int](max_events=10, max_bytes=10_000)
    ran = []

    async def other():
        ran.append(True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        for n in range(10):
            await inbox.send(n)
        assert ran == []  # no checkpoint yet: the other task has not run
        await trio.testing.wait_all_tasks_blocked()
        assert ran == [True]
    assert await inbox.receive_batch(20) == list(range(10))


@settings(deadline=None)
@given(limit=st.integers(1, 12), releases=st.integers(0, 60))
def test_a_paced_sender_resumes_only_when_half_its_share_is_back(limit, releases):
    """Against a model: a sender that always has more to send fills its share, waits at the
    limit, and refills it only once at most half is held (one wake-up per half share)."""

    async def scenario():
        share = InboxShare(limit)
        taken = 0

        async def greedy_sender():
            nonlocal taken
            while True:
                await share.acquire()
                taken += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(greedy_sender)
            await trio.testing.wait_all_tasks_blocked()
            model_held, model_taken = limit, limit
            assert (share.held, taken) == (model_held, model_taken)
            for _ in range(releases):
                share.release()
                model_held -= 1
                if model_held <= limit // 2:
                    model_taken += limit - model_held
                    model_held = limit
                await trio.testing.wait_all_tasks_blocked()
                assert (share.held, taken) == (model_held, model_taken)
            nursery.cancel_scope.cancel()

    trio.run(scenario)


def test_releasing_more_than_was_taken_is_a_bug_that_raises():
    share = InboxShare(2)
    with pytest.raises(RuntimeError, match="released more often"):
        share.release()


@settings(max_examples=60)
@given(
    max_events=st.integers(1, 6),
    max_bytes=st.integers(1, 2_000),
    weights=st.lists(st.integers(1, 1_500), max_size=20),
)
async def test_try_send_queues_exactly_when_send_would_not_wait(max_events, max_bytes, weights):
    """The reader's no-coroutine path: `try_send` takes an event iff there is room for its
    count and weight (or the inbox is empty), and a refusal changes nothing."""
    inbox: Inbox[int] = Inbox(max_events, max_bytes)
    queued: list[int] = []
    held = 0
    for index, weight in enumerate(weights):
        room = len(queued) < max_events and (held == 0 or held + weight <= max_bytes)
        assert inbox.try_send(index, weight) is room
        if room:
            queued.append(index)
            held += weight
        assert inbox.held_bytes == held
    taken = await inbox.receive_batch(len(queued)) if queued else []
    assert taken == queued
    assert inbox.held_bytes == 0


@given(limit=st.integers(1, 8), steps=st.lists(st.booleans(), max_size=40))
def test_try_acquire_takes_a_unit_below_the_limit_and_nothing_at_it(limit, steps):
    share = InboxShare(limit)
    held = 0
    for take in steps:
        if take:
            assert share.try_acquire() is (held < limit)
            held += held < limit
        elif held:
            share.release()
            held -= 1
        assert share.held == held
