"""Admission under attack, over real loopback sockets: pending-handshake bounds, per-address and
per-group limits, eviction, address bans, rate limits of every message type.

Attackers use their own sockets, bound to other loopback addresses (127.x.y.z all reach `lo` on
Linux) so that the node sees distinct sources; honest peers come from 127.0.0.1, which is trusted
by default, or from an address of their own. Waits are events and ping barriers, never sleeps.
"""

import itertools

import pytest
import trio
import trio.testing

from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.vote import Checkpoint
from p2pchain.net import InboundMessage, PeerLimits, PeerRefused, SwarmConfig, open_swarm, run_peer
from p2pchain.net.transports import parse_address
from p2pchain.protocol.connection import (
    ConnectionConfig,
)
from p2pchain.protocol.framing import encode_frame
from p2pchain.protocol.messages import (
    DisconnectReason,
    GetBlocksByRange,
    GetPeers,
    Hello,
    Ping,
    Pong,
    Publish,
    Status,
    Topic,
)
from p2pchain.protocol.ratelimit import RateLimits
from p2pchain.testing.adversary import RecordingPeer, open_stream_from, run_junk_peer
from p2pchain.testing.link import (
    TEST_CHAIN_ID,
    TEST_GENESIS,
    RawConnection,
    connection_keys,
    honest_connection,
    make_hello,
)

WAIT = 60  # generous safety bound on every wait; tests never sleep
QUICK = ConnectionConfig(handshake_timeout=2.0)
"""A short handshake deadline, so that the stalls the node keeps pending end sooner."""
_seeds = itertools.count(1_000)


def _status():
    return Status(
        head=TEST_GENESIS,
        head_height=0,
        head_slot=0,
        finalized=Checkpoint(epoch=0, block_id=TEST_GENESIS),
    )


def _config(seed, **overrides):
    fields = {
        "identity": SecretKey.from_entropy(sha256(b"admission-test" + bytes([seed]))),
        "chain_id": TEST_CHAIN_ID,
        "genesis": TEST_GENESIS,
        "target_outbound": 0,
    }
    fields.update(overrides)
    return SwarmConfig(**fields)


def _endpoint(node, scheme="tcp"):
    address = parse_address(next(a for a in node.listen_addresses if a.startswith(scheme)))
    return address.host, address.port


async def _join(nursery, node, source, *, seed=None, conn=None, scheme="tcp"):
    """Connect a `Peer` from `source`; return it with whether the node accepted it."""
    if conn is None:
        conn = honest_connection(
            next(_seeds) if seed is None else seed, initiator=True, now=trio.current_time()
        )
    peer = RecordingPeer(conn)
    stream = await open_stream_from(source, *_endpoint(node, scheme))
    peer.handle = await nursery.start(
        lambda task_status: run_peer(
            stream, conn, peer, address=source, outbound=True, task_status=task_status
        )
    )
    await peer.settled.wait()
    try:
        await peer.handle.ping()  # Hellos cross: only a round trip proves acceptance
    except trio.BrokenResourceError:
        await peer.ended.wait()
        return peer, False
    return peer, True


async def _stall(source, endpoint, first_bytes, done):
    """Slowloris: open, send a few bytes of a handshake, never finish; end when the node
    closes the connection (the node's eviction or deadline, never ours)."""
    try:
        stream = await open_stream_from(source, *endpoint)
    except OSError:
        done.append("refused")
        return
    async with stream:
        await stream.send_all(first_bytes)
        try:
            while await stream.receive_some():
                pass
        except trio.BrokenResourceError:
            pass
    done.append("closed")


async def _flood_of_stalls(node, sources, count, first_bytes, scheme="tcp"):
    """`count` stalling connections from `sources` in turn; return how many the node closed."""
    done = []
    endpoint = _endpoint(node, scheme)
    limiter = trio.CapacityLimiter(256)
    pending_seen = []

    async def one(source):
        async with limiter:
            await _stall(source, endpoint, first_bytes, done)

    async with trio.open_nursery() as nursery:
        for source in itertools.islice(itertools.cycle(sources), count):
            nursery.start_soon(one, source)
            pending_seen.append(node.statistics().pending)
            await trio.lowlevel.checkpoint()
    return done, pending_seen


# -- item 4: handshake slowloris -----------------------------------------------------------------


NOISE_PREFIX = b"\x00"  # the first byte of a Noise message length: the handshake never advances


@pytest.mark.parametrize(
    ("source", "bound"),
    [("127.0.0.2", "max_pending_per_address"), ("127.0.0.1", "max_pending_handshakes")],
    ids=["ordinary-address", "trusted-loopback"],
)
async def test_a_thousand_stalled_handshakes_from_one_address_leave_room_for_honest_peers(
    source, bound
):
    """From an ordinary address the stalls keep 4 pending slots; from the trusted 127.0.0.1
    (where the honest dialer is too) they fill all 32, and the oldest-first rule still lets
    every honest handshake finish."""
    config = _config(1, connection=QUICK)
    with trio.fail_after(WAIT):
        async with open_swarm(config, _status) as node, trio.open_nursery() as nursery:
            results = []
            flood_done = trio.Event()

            async def flood():
                results.append(await _flood_of_stalls(node, [source], 1_000, NOISE_PREFIX))
                flood_done.set()

            nursery.start_soon(flood)
            honest = []
            async with open_swarm(_config(2), _status) as dialer:
                for _ in range(25):
                    await trio.lowlevel.checkpoint()
                    try:
                        await dialer.connect(f"tcp://{_endpoint(node)[0]}:{_endpoint(node)[1]}")
                        honest.append(True)
                    except PeerRefused:
                        honest.append(False)
                    dialer.disconnect(node.peer_id)
                    await node.wait_peer_count(0)
            await flood_done.wait()
            stats = node.statistics()
            address_score = node.address_score(source)
            nursery.cancel_scope.cancel()
    done, pending_seen = results[0]
    assert honest == [True] * 25
    assert len(done) == 1_000  # the node closed every one of them
    assert max(pending_seen) <= getattr(config, bound) + 1  # + an honest dial
    assert stats.pending_evicted >= 1_000 - config.max_pending_handshakes
    timed_out = 1_000 - stats.pending_evicted  # what was still pending at the deadline
    expected = 0.0 if source == "127.0.0.1" else -config.scoring.timeout_penalty * timed_out
    assert address_score == pytest.approx(expected, rel=1e-3)  # trusted: never scored


async def test_stalled_handshakes_from_many_groups_still_let_honest_peers_in():
    """64 attacking addresses in 16 network groups fill every pending slot; the newest pending
    connection always gets one, taken from the most crowded group, never the honest one."""
    config = _config(3, connection=QUICK)
    sources = [f"127.{group}.0.{host}" for group in range(1, 17) for host in range(1, 5)]
    with trio.fail_after(WAIT):
        async with open_swarm(config, _status) as node, trio.open_nursery() as nursery:
            flood_done = trio.Event()
            outcome = []

            async def flood():
                outcome.append(await _flood_of_stalls(node, sources, 1_200, NOISE_PREFIX))
                flood_done.set()

            nursery.start_soon(flood)
            accepted = []
            for n in range(25):
                peer, ok = await _join(nursery, node, "127.100.0.1", seed=5_000 + n)
                accepted.append(ok)
                peer.handle.close(DisconnectReason.REQUESTED)
                await peer.ended.wait()
            await flood_done.wait()
            nursery.cancel_scope.cancel()
    done, pending_seen = outcome[0]
    assert accepted == [True] * 25
    assert max(pending_seen) <= config.max_pending_handshakes
    assert len(done) == 1_200


# -- item 7: pending WebSocket upgrades count ---------------------------------------------------


async def test_pending_websocket_upgrades_are_bounded_like_handshakes():
    config = _config(4, connection=QUICK)
    with trio.fail_after(WAIT):
        async with open_swarm(config, _status) as node, trio.open_nursery() as nursery:
            outcome = []
            flood_done = trio.Event()

            async def flood():
                request = b"GET / HTTP/1.1\r\nHost: node\r\n"  # never finished
                outcome.append(await _flood_of_stalls(node, ["127.0.0.3"], 600, request, "ws"))
                flood_done.set()

            nursery.start_soon(flood)
            async with open_swarm(_config(5), _status) as honest:
                host, port = _endpoint(node, "ws")
                assert await honest.connect(f"ws://{host}:{port}") == node.peer_id
            await flood_done.wait()
            nursery.cancel_scope.cancel()
    done, pending_seen = outcome[0]
    # every upgrade beyond the address's share was closed by the node (not left holding a socket)
    assert len(done) == 600
    assert max(pending_seen) <= config.max_pending_per_address + 1


# -- item 7: fresh keys, per-address and per-group limits, eviction ------------------------------


async def test_thirty_fresh_keys_from_one_address_get_only_that_address_share():
    config = _config(6)
    with trio.fail_after(WAIT):
        async with open_swarm(config, _status) as node, trio.open_nursery() as nursery:
            results = [await _join(nursery, node, "127.0.0.4") for _ in range(30)]
            accepted = [peer for peer, ok in results if ok]
            assert len(accepted) == config.max_inbound_per_address
            for peer, ok in results:
                if not ok:
                    assert peer.closed() == [(DisconnectReason.TOO_MANY_PEERS, True)]
            same_group = [await _join(nursery, node, f"127.0.0.{n}") for n in range(10, 20)]
            in_group = sum(ok for _, ok in same_group)
            assert in_group == config.max_inbound_per_group - config.max_inbound_per_address
            _, ok = await _join(nursery, node, "127.5.0.1")
            assert ok
            assert node.statistics().inbound == config.max_inbound_per_group + 1
            nursery.cancel_scope.cancel()


async def test_a_full_node_evicts_a_fresh_identity_for_an_honest_newcomer():
    """Core's eviction: old peers that brought new transactions and blocks stay; the youngest
    of the most crowded group makes room. (The per-group limit is lifted so that one group can
    fill the node; `tests/protocol/test_eviction.py` covers the rules over every shape.)"""
    config = _config(7, max_inbound_per_group=32)
    with trio.fail_after(WAIT):
        async with open_swarm(config, _status) as node, trio.open_nursery() as nursery:
            veterans = []
            for n in range(4):
                peer, ok = await _join(nursery, node, f"127.{200 + n}.0.1")
                assert ok
                node.credit(peer.key, Topic.TRANSACTION if n % 2 else Topic.BLOCK)
                veterans.append(peer)
            sybils = []
            for n in range(config.max_inbound - len(veterans)):
                peer, ok = await _join(nursery, node, f"127.1.0.{1 + n}")
                assert ok
                sybils.append(peer)
            assert node.statistics().inbound == config.max_inbound
            for n in range(6):
                _, ok = await _join(nursery, node, f"127.{150 + n}.0.1")
                assert ok
                assert node.statistics().inbound == config.max_inbound
            connected = {info.peer_id for info in node.peers()}
            assert {peer.key for peer in veterans} <= connected
            evicted = [peer for peer in sybils if peer.key not in connected]
            assert len(evicted) == 6 == node.statistics().evicted
            for peer in evicted:
                await peer.ended.wait()
                assert peer.closed() == [(DisconnectReason.TOO_MANY_PEERS, True)]
            nursery.cancel_scope.cancel()


# -- item 7: bans and scores follow the source address -------------------------------------------


def _oversize_frame():
    """A Blocks frame header declaring 17 MiB: refused before any of it is buffered."""
    return (17 * 1024 * 1024 + 1).to_bytes(4, "big") + bytes([22])


ATTACKER_LIMITS = PeerLimits(rates=RateLimits(per_type=()))
"""The attacker counts every answer it gets (no per-type budgets of its own)."""


async def _junk_peer(node, source, junk):
    """A fresh key from `source` that completes the handshake and sends `junk` inside the
    encrypted stream; an empty record if the node refuses the TCP connection itself."""
    keys = connection_keys(next(_seeds))
    conn = RawConnection(
        initiator=True, keys=keys, hello=make_hello(keys.identity), now=trio.current_time()
    )
    try:
        stream = await open_stream_from(source, *_endpoint(node))
    except OSError:
        return RecordingPeer(conn)
    return await run_junk_peer(stream, conn, junk, address=source, limits=ATTACKER_LIMITS)


async def test_fresh_keys_cannot_outrun_an_address_ban():
    """A fresh key per oversize frame used to evade the ban: now the address sinks too."""
    config = _config(8)
    with trio.fail_after(WAIT):
        async with (
            open_swarm(config, _status) as node,
            open_swarm(_config(9), _status) as honest,
            trio.open_nursery() as nursery,
        ):
            host, port = _endpoint(node)
            await honest.connect(f"tcp://{host}:{port}")
            outcomes = []
            for _ in range(4):
                peer = await _junk_peer(node, "127.0.0.5", _oversize_frame())
                outcomes.append(peer.closed())
                await honest.ping(node.peer_id)
            assert outcomes[:3] == [[(DisconnectReason.PROTOCOL_ERROR, True)]] * 3
            assert outcomes[3] == [(None, True)]  # closed at accept: no handshake at all
            assert node.is_refused("127.0.0.5")
            assert node.address_score("127.0.0.5") < config.scoring.address_disconnect_threshold
            assert not node.is_refused("127.0.0.6")
            _, ok = await _join(nursery, node, "127.0.0.6")
            assert ok
            nursery.cancel_scope.cancel()


async def test_many_addresses_of_one_group_misbehaving_get_the_group_refused():
    """Each address stays above its own threshold (one protocol error each); their network
    group sinks below `group_disconnect_threshold` and is refused as a whole."""
    config = _config(16)
    errors_needed = int(-config.scoring.group_disconnect_threshold // 50) + 1
    with trio.fail_after(WAIT):
        async with open_swarm(config, _status) as node, trio.open_nursery() as nursery:
            for n in range(errors_needed):
                peer = await _junk_peer(node, f"127.30.0.{n + 1}", _oversize_frame())
                assert peer.closed() == [(DisconnectReason.PROTOCOL_ERROR, True)]
                assert not node.is_refused(f"127.30.0.{n + 1}") or n == errors_needed - 1
            assert node.is_refused("127.30.200.200")  # an address never seen, same group
            assert not node.is_refused("127.31.0.1")
            _, ok = await _join(nursery, node, "127.30.200.200")
            assert not ok
            _, ok = await _join(nursery, node, "127.31.0.1")
            assert ok
            nursery.cancel_scope.cancel()


async def test_a_banned_key_bans_its_address_for_inbound():
    config = _config(10)
    with trio.fail_after(WAIT):
        async with open_swarm(config, _status) as node, trio.open_nursery() as nursery:
            peer, ok = await _join(nursery, node, "127.0.0.7")
            assert ok
            node.ban_peer(peer.key, 60.0)
            await peer.ended.wait()
            assert peer.closed() == [(DisconnectReason.BANNED, True)]
            fresh, ok = await _join(nursery, node, "127.0.0.7")  # a fresh key, same address
            assert not ok
            assert fresh.closed() == [(None, True)]
            assert not node.is_refused("127.0.0.1")  # trusted loopback is never banned by address
            nursery.cancel_scope.cancel()


# -- item 5: every message type is rate-limited; floods are punished, volume is not -------------


def _many(message, count):
    return encode_frame(message) * count


@pytest.mark.parametrize(
    ("message", "count"),
    [(Ping(nonce=7), 20_000), (Pong(nonce=7), 20_000), (GetPeers(), 2_000), (None, 100)],
    ids=["ping", "unsolicited-pong", "get-peers", "repeated-hello"],
)
async def test_a_flood_of_cheap_messages_gets_the_flooder_banned(message, count):
    """None stands for the flooder's own Hello, repeated."""
    config = _config(11)
    with trio.fail_after(WAIT):
        async with (
            open_swarm(config, _status) as node,
            open_swarm(_config(12), _status) as honest,
            trio.open_nursery() as nursery,
        ):
            host, port = _endpoint(node)
            await honest.connect(f"tcp://{host}:{port}")
            flooder = await _junk_peer(
                node,
                "127.0.0.8",
                lambda conn: _many(conn.hello if message is None else message, count),
            )
            assert flooder.closed() == [(DisconnectReason.LOW_SCORE, True)]
            assert node.is_banned(flooder.key)
            assert node.is_refused("127.0.0.8")
            budget = dict(config.limits.rates.per_type)[Hello if message is None else type(message)]
            answered = len(flooder.received(Pong)) if isinstance(message, Ping) else 0
            assert answered <= budget.burst + 11  # the burst, then 11 penalties end it
            await honest.ping(node.peer_id)  # the node kept serving everyone else
            assert honest.score(node.peer_id) == 0
            nursery.cancel_scope.cancel()


async def test_honest_volume_past_the_budgets_is_slowed_never_scored():
    """Back-pressure, not penalties, for mere volume (the 2b lesson): 6,000 gossip messages,
    600 Status and 150 range requests of 64 blocks in one burst, past three budgets."""
    with trio.fail_after(WAIT):
        async with (
            open_swarm(_config(13), _status) as node,
            open_swarm(_config(14), _status) as busy,
            trio.open_nursery() as nursery,
        ):
            host, port = _endpoint(node)
            await busy.connect(f"tcp://{host}:{port}")
            received = []

            async def consume():
                async for event in node.events:
                    if isinstance(event, InboundMessage):
                        event.release()
                        received.append(event.message)

            nursery.start_soon(consume)
            burst = [
                Publish(topic=Topic.TRANSACTION, data=n.to_bytes(4, "big")) for n in range(6_000)
            ]
            burst += [_status()] * 600
            burst += [GetBlocksByRange(request_id=n, start_height=0, count=64) for n in range(150)]
            for message in burst:
                while not busy.send(node.peer_id, message):
                    await trio.testing.wait_all_tasks_blocked()
            await busy.ping(node.peer_id)
            assert len(received) == len(burst)
            assert node.score(busy.peer_id) == 0
            assert [p.peer_id for p in node.peers()] == [busy.peer_id]
            nursery.cancel_scope.cancel()


# -- item 8: an impossible WebSocket frame -------------------------------------------------------


async def test_a_websocket_frame_declaring_2_to_the_62_is_closed_and_counted():
    request = (
        b"GET / HTTP/1.1\r\nHost: node\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    config = _config(15)
    with trio.fail_after(WAIT):
        async with open_swarm(config, _status) as node:
            stream = await open_stream_from("127.0.0.9", *_endpoint(node, "ws"))
            async with stream:
                await stream.send_all(request)
                reply = b""
                while b"\r\n\r\n" not in reply:
                    reply += await stream.receive_some()
                assert b" 101 " in reply
                await stream.send_all(bytes([0x82, 0xFF]) + (2**62).to_bytes(8, "big") + bytes(4))
                rest = reply.partition(b"\r\n\r\n")[2]
                while chunk := await stream.receive_some():
                    rest += chunk
            assert rest[:1] == b"\x88"
            assert int.from_bytes(rest[2:4], "big") == 1009
            while node.statistics().protocol_errors == 0:
                await trio.testing.wait_all_tasks_blocked()
            penalty = config.scoring.protocol_error_penalty
            assert node.address_score("127.0.0.9") == pytest.approx(-penalty, rel=1e-3)
