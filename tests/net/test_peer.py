"""run_peer over in-memory streams with a virtual clock: timers, back-pressure, rate limits."""

import trio
import trio.testing

from p2pchain.net.peer import PeerFailed, PeerLimits, PeerMisbehaved, run_peer
from p2pchain.protocol.connection import (
    ConnectionClosed,
    ConnectionConfig,
    HandshakeComplete,
    MessageReceived,
    PeerConnection,
)
from p2pchain.protocol.messages import DisconnectReason, GetPeers, Ping, Publish, Topic
from p2pchain.protocol.ratelimit import Budget, RateLimits
from p2pchain.protocol.scoring import Offence
from p2pchain.testing.link import connection_keys, honest_connection, make_hello

CONFIG = ConnectionConfig()


class Recorder:
    def __init__(self):
        self.events = []
        self.active = trio.Event()

    async def __call__(self, handle, event):
        self.events.append(event)
        if isinstance(event, HandshakeComplete):
            self.active.set()

    def closed(self):
        return [e for e in self.events if isinstance(e, ConnectionClosed)]


class NoPong(PeerConnection):
    def _on_ping(self, ping):
        del ping


def _no_pong(seed):
    keys = connection_keys(seed)
    return NoPong(
        initiator=False, keys=keys, hello=make_hello(keys.identity), now=trio.current_time()
    )


DEFAULT_LIMITS = PeerLimits()


async def _start(nursery, stream, conn, recorder, limits=DEFAULT_LIMITS, outbound=True):
    return await nursery.start(
        lambda task_status: run_peer(
            stream,
            conn,
            recorder,
            address="memory",
            outbound=outbound,
            limits=limits,
            task_status=task_status,
        )
    )


async def test_silent_peer_dropped_after_ping_timeout(autojump_clock):
    ours, theirs = trio.testing.memory_stream_pair()
    mine, silent = Recorder(), Recorder()
    async with trio.open_nursery() as nursery:
        await _start(nursery, theirs, _no_pong(2), silent, outbound=False)
        peer = await _start(
            nursery, ours, honest_connection(1, initiator=True, now=trio.current_time()), mine
        )
        await peer.wait_closed()
        start = trio.current_time()
    assert peer.close_reason is DisconnectReason.PING_TIMEOUT
    assert mine.closed() == [ConnectionClosed(reason=DisconnectReason.PING_TIMEOUT, by_peer=False)]
    assert silent.closed() == [ConnectionClosed(reason=DisconnectReason.PING_TIMEOUT, by_peer=True)]
    assert start >= CONFIG.ping_interval + CONFIG.pong_timeout


async def test_slowloris_dropped_at_handshake_deadline(autojump_clock):
    ours, theirs = trio.testing.memory_stream_pair()
    recorder = Recorder()
    async with trio.open_nursery() as nursery:
        peer = await _start(
            nursery,
            ours,
            honest_connection(2, initiator=False, now=trio.current_time()),
            recorder,
            outbound=False,
        )
        await peer.wait_closed()
    assert recorder.closed() == [
        ConnectionClosed(reason=DisconnectReason.HANDSHAKE_TIMEOUT, by_peer=False)
    ]
    await theirs.aclose()


async def test_ping_is_a_barrier_and_messages_arrive_in_order(autojump_clock):
    ours, theirs = trio.testing.memory_stream_pair()
    mine, other = Recorder(), Recorder()
    async with trio.open_nursery() as nursery:
        remote = await _start(
            nursery, theirs, honest_connection(2, initiator=False), other, outbound=False
        )
        peer = await _start(nursery, ours, honest_connection(1, initiator=True), mine)
        await mine.active.wait()
        sent = [Publish(topic=Topic.BLOCK, data=bytes([i]) * 100) for i in range(50)]
        for message in sent:
            assert peer.send_nowait(message)
        await peer.ping()
        received = [e.message for e in other.events if isinstance(e, MessageReceived)]
        assert received == sent
        remote.close(DisconnectReason.SHUTDOWN)
        await peer.wait_closed()
    assert mine.closed() == [ConnectionClosed(reason=DisconnectReason.SHUTDOWN, by_peer=True)]
    assert peer.statistics().messages_dropped == 0


async def test_slow_peer_is_dropped_not_waited_on(autojump_clock):
    ours, theirs = trio.testing.lockstep_stream_pair()
    mine, other = Recorder(), Recorder()
    limits = PeerLimits(max_send_queue_bytes=30_000, slow_peer_timeout=5.0)
    reader_paused = trio.Event()

    class Stalls(trio.abc.Stream):
        """Passes bytes through until told to stop reading."""

        async def send_all(self, data):
            await theirs.send_all(data)

        async def wait_send_all_might_not_block(self):
            await theirs.wait_send_all_might_not_block()

        async def receive_some(self, max_bytes=None):
            if reader_paused.is_set():
                await trio.sleep_forever()
            return await theirs.receive_some(max_bytes)

        async def aclose(self):
            await theirs.aclose()

    async with trio.open_nursery() as nursery:
        await _start(
            nursery, Stalls(), honest_connection(2, initiator=False), other, outbound=False
        )
        peer = await _start(
            nursery, ours, honest_connection(1, initiator=True), mine, limits=limits
        )
        await mine.active.wait()
        reader_paused.set()
        accepted = 0
        while peer.is_active:
            accepted += peer.send_nowait(Publish(topic=Topic.BLOCK, data=bytes(10_000)))
            await trio.sleep(0.5)
        await peer.wait_closed()
        nursery.cancel_scope.cancel()
    assert peer.close_reason is DisconnectReason.SLOW_PEER
    assert 0 < accepted < 10
    assert peer.statistics().messages_dropped > 0


async def test_volume_over_the_message_budget_is_throttled_not_blamed(autojump_clock):
    ours, theirs = trio.testing.memory_stream_pair()
    mine, other = Recorder(), Recorder()
    limits = PeerLimits(rates=RateLimits(messages=Budget(rate=10, burst=20), per_type=()))
    async with trio.open_nursery() as nursery:
        flooder = await _start(
            nursery, theirs, honest_connection(2, initiator=False), other, outbound=False
        )
        await _start(nursery, ours, honest_connection(1, initiator=True), mine, limits=limits)
        await mine.active.wait()
        start = trio.current_time()
        for n in range(60):
            flooder.send_nowait(Publish(topic=Topic.TRANSACTION, data=bytes([n])))
        await flooder.ping()
        elapsed = trio.current_time() - start
        nursery.cancel_scope.cancel()
    assert not [e for e in mine.events if isinstance(e, PeerMisbehaved)]
    received = [e for e in mine.events if isinstance(e, MessageReceived)]
    assert len(received) == 60
    assert elapsed >= (60 - 20) / 10 - 1  # virtual time: reading paused until the budget refilled


async def test_bytes_over_the_byte_budget_are_read_later_not_blamed(autojump_clock):
    ours, theirs = trio.testing.memory_stream_pair()
    mine, other = Recorder(), Recorder()
    rates = RateLimits(bytes=Budget(rate=10_000, burst=20_000), per_type=())
    async with trio.open_nursery() as nursery:
        sender = await _start(
            nursery, theirs, honest_connection(2, initiator=False), other, outbound=False
        )
        await _start(
            nursery,
            ours,
            honest_connection(1, initiator=True),
            mine,
            limits=PeerLimits(rates=rates),
        )
        await mine.active.wait()
        start = trio.current_time()
        for n in range(10):
            sender.send_nowait(Publish(topic=Topic.BLOCK, data=bytes([n]) * 10_000))
        await sender.ping()
        elapsed = trio.current_time() - start
        nursery.cancel_scope.cancel()
    assert not [e for e in mine.events if isinstance(e, PeerMisbehaved)]
    assert len([e for e in mine.events if isinstance(e, MessageReceived)]) == 10
    assert elapsed >= (100_000 - 20_000) / 10_000 - 1  # virtual time: reads waited for budget


async def test_a_flood_past_an_abuse_budget_is_reported_and_not_served(autojump_clock):
    ours, theirs = trio.testing.memory_stream_pair()
    mine, other = Recorder(), Recorder()
    budget = Budget(rate=10, burst=10, abusive_beyond=True)
    limits = PeerLimits(rates=RateLimits(per_type=((GetPeers, budget), (Ping, budget))))
    async with trio.open_nursery() as nursery:
        flooder = await _start(
            nursery, theirs, honest_connection(2, initiator=False), other, outbound=False
        )
        await _start(nursery, ours, honest_connection(1, initiator=True), mine, limits=limits)
        await mine.active.wait()
        for _ in range(60):
            flooder.send_nowait(GetPeers())
        for nonce in range(30):
            flooder.send_nowait(Ping(nonce=nonce))
        await flooder.ping()  # answered: a Pong to our own ping is never over a budget
        nursery.cancel_scope.cancel()
    spam = [e for e in mine.events if isinstance(e, PeerMisbehaved)]
    assert [e.detail for e in spam] == ["GetPeers rate"] * 50 + ["Ping rate"] * 21
    assert all(e.offence is Offence.SPAM for e in spam)
    received = [e.message for e in mine.events if isinstance(e, MessageReceived)]
    assert received == [GetPeers()] * 10  # the rest dropped; Pings are charged, never passed on


class BrokenOnGetPeers(PeerConnection):
    """A connection with a bug: it fails on GetPeers instead of returning an event."""

    def _on_message(self, message):
        if isinstance(message, GetPeers):
            raise KeyError("injected")
        super()._on_message(message)


async def test_a_fault_in_the_connection_ends_this_link_only(autojump_clock):
    ours, theirs = trio.testing.memory_stream_pair()
    mine, broken = Recorder(), Recorder()
    keys = connection_keys(2)
    conn = BrokenOnGetPeers(
        initiator=False, keys=keys, hello=make_hello(keys.identity), now=trio.current_time()
    )
    async with trio.open_nursery() as nursery:
        await _start(nursery, theirs, conn, broken, outbound=False)
        peer = await _start(
            nursery, ours, honest_connection(1, initiator=True, now=trio.current_time()), mine
        )
        await mine.active.wait()
        assert peer.send_nowait(GetPeers())
        await peer.wait_closed()
    failures = [e for e in broken.events if isinstance(e, PeerFailed)]
    assert [(f.where, type(f.error)) for f in failures] == [("connection", KeyError)]
    assert [e.reason for e in broken.closed()] == [DisconnectReason.INTERNAL_ERROR]
    assert [(e.reason, e.by_peer) for e in mine.closed()] == [
        (DisconnectReason.INTERNAL_ERROR, True)
    ]


class FailingStream(trio.abc.Stream):
    """A stream whose writes fail with something that is not a broken-stream error."""

    def __init__(self, inner):
        self.inner = inner

    async def send_all(self, data):
        raise ValueError("injected")

    async def wait_send_all_might_not_block(self):
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes=None):
        return await self.inner.receive_some(max_bytes)

    async def aclose(self):
        await self.inner.aclose()


async def test_a_fault_in_the_stream_ends_this_link_only(autojump_clock):
    ours, _theirs = trio.testing.memory_stream_pair()
    recorder = Recorder()
    conn = honest_connection(1, initiator=True, now=trio.current_time())
    async with trio.open_nursery() as nursery:
        peer = await _start(nursery, FailingStream(ours), conn, recorder)
        await peer.wait_closed()
    failures = [e for e in recorder.events if isinstance(e, PeerFailed)]
    assert [(f.where, type(f.error)) for f in failures] == [("transport", ValueError)]
    assert [e.reason for e in recorder.closed()] == [DisconnectReason.INTERNAL_ERROR]


async def test_large_frames_are_decoded_off_the_loop_and_delivered_in_order():
    config = ConnectionConfig(inline_decode_bytes=1_000)
    ours, theirs = trio.testing.memory_stream_pair()
    sender, receiver = Recorder(), Recorder()
    messages = [
        Publish(topic=Topic.VOTE, data=bytes([n]) * (10 if n % 2 else 5_000)) for n in range(6)
    ]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            keys = connection_keys(2)
            listener = PeerConnection(
                initiator=False,
                keys=keys,
                hello=make_hello(keys.identity),
                now=trio.current_time(),
                config=config,
            )
            await _start(nursery, theirs, listener, receiver, outbound=False)
            peer = await _start(
                nursery, ours, honest_connection(1, initiator=True, now=trio.current_time()), sender
            )
            await sender.active.wait()
            for message in messages:
                assert peer.send_nowait(message)
            await peer.ping()
            peer.close(DisconnectReason.REQUESTED)
    received = [e.message for e in receiver.events if isinstance(e, MessageReceived)]
    assert received == messages
