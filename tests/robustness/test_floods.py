"""Catalogue, floods: connections past every admission limit (inbound, per address, per group,
pending handshakes and WebSocket upgrades), message floods past every rate budget (abuse budgets
end in a ban, volume budgets only pause reading), maximum-size and oversize frames, peer
exchange floods, fresh keys from a banned address, and the node's memory under 10^4 junk items
or more.

Each row asserts the documented reaction (a `Disconnect` reason, a ban, or back-pressure
without a penalty, read from `net_peers` after a ping round trip), that an honest peer from
127.0.0.1 is served while the flood holds the node's slots, and ends, once every attacker
connection is closed, with `Verdict.check`.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from p2pchain.ledger.crypto import sha256
from p2pchain.ledger.proofs import QueryKind, StateQuery
from p2pchain.ledger.types import BlockId, Epoch, TxId
from p2pchain.ledger.vote import Checkpoint
from p2pchain.net import InboundMessage, SwarmConfig, open_swarm
from p2pchain.net.swarm import Swarm
from p2pchain.net.transports import parse_address
from p2pchain.protocol.connection import ConnectionKeys
from p2pchain.protocol.framing import encode_frame
from p2pchain.protocol.messages import (
    MAX_IHAVE_IDS,
    MAX_PAYLOAD_BYTES,
    MAX_PEERS_IN_RESPONSE,
    MESSAGE_ID_BYTES,
    Blocks,
    DisconnectReason,
    Finality,
    GetBlocksById,
    GetBlocksByRange,
    GetFinality,
    GetPeers,
    GetSnapshotManifest,
    GetSnapshotPage,
    GetStateProof,
    GetTxProof,
    IHave,
    IWant,
    Message,
    Peers,
    Ping,
    Pong,
    Publish,
    SnapshotManifestAnswer,
    SnapshotPageAnswer,
    StateProofAnswer,
    Status,
    Topic,
    TxProofAnswer,
)
from p2pchain.testing.adversary import (
    Ending,
    PeerClosed,
    RawStream,
    SecurePeer,
    fresh_keys,
    upgrade_request,
)
from p2pchain.testing.link import TEST_CHAIN_ID, TEST_GENESIS, make_hello
from tests.robustness.harness import (
    HONEST_SOURCE,
    WAIT_S,
    NodeProcess,
    Sources,
    Verdict,
    honest_peer_is_served,
)

soak = pytest.mark.soak

MAX_INBOUND = 32
MAX_INBOUND_PER_ADDRESS = 4
MAX_INBOUND_PER_GROUP = 8
MAX_PENDING = 32
MAX_PENDING_PER_ADDRESS = 4
HANDSHAKE_DEADLINE_S = 5.0
HEARTBEAT_S = 0.7
CHUNK = 1 << 16
"""Bytes per WebSocket frame of our own sends (the node closes frames over 131,072 bytes)."""
MEMORY_HEADROOM = 100 * 1024 * 1024
"""RSS a flood may add to the quiet node: above everything one peer may make the node hold by
design (8 MiB inbox, 32 MiB send queue, 4 MiB of pending verdicts, a maximum frame or two), and
below what the flood's items would take if they were kept (10^6 ids at about 150 bytes each as
Python objects, 150 MB)."""


# -- helpers ---------------------------------------------------------------------------------


def peer_id_of(peer: SecurePeer) -> str:
    return "0x" + peer.conn.hello.node_key.hex()


async def wait_until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll an RPC-side condition until it holds (bounded by `WAIT_S`)."""
    with trio.fail_after(WAIT_S):
        while not await condition():  # noqa: ASYNC110 (another process's state: no event)
            await trio.sleep(0.05)


async def inbound_count(node: NodeProcess) -> int:
    peers = await node.rpc("net_peers")
    assert isinstance(peers, list)
    return sum(1 for p in peers if isinstance(p, dict) and p["direction"] == "inbound")


async def wait_no_peers(node: NodeProcess) -> None:
    """Until the node has noticed that every connection of the row is gone."""

    async def empty() -> bool:
        return await inbound_count(node) == 0

    await wait_until(empty)


async def flush(peer: SecurePeer) -> None:
    """Send what the connection queued, cut into WebSocket frames the node accepts."""
    data = peer.conn.data_to_send()
    for start in range(0, len(data), CHUNK):
        await peer.stream.send(data[start : start + CHUNK])


async def send_frames(peer: SecurePeer, messages: Iterable[Message]) -> None:
    """Frames of any type, written straight into the encrypted stream."""
    peer.conn.send_raw(b"".join(encode_frame(m) for m in messages))
    await flush(peer)


async def barrier(peer: SecurePeer, nonce: int) -> None:
    """A ping round trip: the node has read everything sent before it."""
    assert await peer.ping(nonce), f"no pong: {peer.ending}"


async def score_of(node: NodeProcess, peer: SecurePeer) -> float:
    scores = await node.peer_scores()
    assert peer_id_of(peer) in scores, "the peer is not connected"
    return scores[peer_id_of(peer)]


@asynccontextmanager
async def closing(streams: list[SecurePeer | RawStream]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for stream in streams:
            await stream.aclose()


async def connect_active(
    node: NodeProcess, transport: str, source: str, *, keys: ConnectionKeys | None = None
) -> SecurePeer:
    peer = await SecurePeer.connect(node, transport, source, keys=keys)
    assert peer.is_active, peer.ending
    return peer


async def closed_at_accept(node: NodeProcess, transport: str, source: str) -> bool:
    """True if the node closes a new connection from `source` without a byte of handshake."""
    raw = await RawStream.open(node, transport, source, upgrade=False)
    try:
        first = upgrade_request(node) if transport == "ws" else b"\x00\x20" + os.urandom(32)
        try:
            await raw.send_bytes(first)
        except PeerClosed:
            return True
        with trio.fail_after(WAIT_S):
            try:
                data = await raw.stream.receive_some(1 << 16)
            except (trio.BrokenResourceError, OSError):
                return True
        return data == b""
    finally:
        await raw.aclose()


def is_open(raw: RawStream) -> bool:
    """Without waiting: the node has not closed this stream (no EOF, no reset queued)."""
    with socket.socket(fileno=os.dup(raw.stream.socket.fileno())) as sock:
        try:
            data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        except OSError:
            return False
    return data != b""


def rss_bytes(node: NodeProcess) -> int:
    for line in Path(f"/proc/{node.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def status_of(node: NodeProcess) -> Status:
    return Status(
        head=node.genesis_id,
        head_height=0,
        head_slot=0,
        finalized=Checkpoint(epoch=0, block_id=node.genesis_id),
    )


async def stalled(node: NodeProcess, transport: str, source: str) -> RawStream:
    """A connection that stays pending: half a Noise message 1, or half a WebSocket upgrade."""
    raw = await RawStream.open(node, transport, source, upgrade=False)
    await raw.send_bytes(upgrade_request(node)[:40] if transport == "ws" else b"\x00\x20\x01")
    return raw


# -- inbound peers ---------------------------------------------------------------------------


async def test_inbound_past_max_inbound_evicts_and_admits_the_honest_peer(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """32 attackers from 4 groups fill the inbound slots; a 33rd from a fifth group and then the
    honest peer each evict one attacker (TOO_MANY_PEERS), and the inbound count stays 32."""
    verdict = await Verdict.before_attack(node)
    attackers: list[SecurePeer] = []
    async with closing(attackers):  # type: ignore[arg-type]
        for _ in range(MAX_INBOUND // MAX_INBOUND_PER_GROUP):
            group = sources.group()
            for _ in range(MAX_INBOUND_PER_GROUP):
                attackers.append(await connect_active(node, transport, next(group)))
        for nonce, peer in enumerate(attackers):
            await barrier(peer, nonce + 1)
        assert await inbound_count(node) == MAX_INBOUND
        attackers.append(await connect_active(node, transport, next(sources.group())))
        honest = await SecurePeer.connect(node, transport, HONEST_SOURCE)
        try:
            assert honest.is_active, honest.ending
            assert await honest.ping(1), honest.ending
            assert await inbound_count(node) == MAX_INBOUND
        finally:
            await honest.aclose()
        evicted = []
        for nonce, peer in enumerate(attackers):
            if not await peer.ping(100 + nonce):
                evicted.append(peer.ending)
        assert [e.reason for e in evicted if e is not None] == [DisconnectReason.TOO_MANY_PEERS] * 2
    await wait_no_peers(node)
    await verdict.check(transport)


async def test_inbound_past_max_inbound_per_address_is_too_many_peers(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    verdict = await Verdict.before_attack(node)
    source = next(sources.group())
    peers: list[SecurePeer] = []
    async with closing(peers):  # type: ignore[arg-type]
        for _ in range(MAX_INBOUND_PER_ADDRESS):
            peers.append(await connect_active(node, transport, source))
        for nonce, peer in enumerate(peers):
            await barrier(peer, nonce + 1)
        extra = await SecurePeer.connect(node, transport, source)
        peers.append(extra)
        ending = await extra.wait_ended()
        assert ending.reason is DisconnectReason.TOO_MANY_PEERS
        await honest_peer_is_served(node, transport)
        for nonce, peer in enumerate(peers[:-1]):
            await barrier(peer, 10 + nonce)
            assert await score_of(node, peer) == 0.0
    await wait_no_peers(node)
    await verdict.check(transport)


async def test_inbound_past_max_inbound_per_group_is_too_many_peers(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    verdict = await Verdict.before_attack(node)
    group = sources.group()
    peers: list[SecurePeer] = []
    async with closing(peers):  # type: ignore[arg-type]
        for _ in range(MAX_INBOUND_PER_GROUP):
            peers.append(await connect_active(node, transport, next(group)))
        for nonce, peer in enumerate(peers):
            await barrier(peer, nonce + 1)
        extra = await SecurePeer.connect(node, transport, next(group))
        peers.append(extra)
        ending = await extra.wait_ended()
        assert ending.reason is DisconnectReason.TOO_MANY_PEERS
        other_group = await connect_active(node, transport, next(sources.group()))
        peers.append(other_group)
        await barrier(other_group, 1)
        await honest_peer_is_served(node, transport)
    await wait_no_peers(node)
    await verdict.check(transport)


# -- pending handshakes ----------------------------------------------------------------------


async def test_pending_handshakes_past_the_total_close_the_most_crowded_groups_oldest(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """12 stalls from one crowded group and 24 from six others (36 > 32): the crowded group's
    oldest go first, the others stay pending, and the honest peer completes its handshake
    while all 32 slots are held."""
    verdict = await Verdict.before_attack(node)
    crowded: list[RawStream] = []
    others: list[RawStream] = []
    everything: list[RawStream] = []
    async with closing(everything):  # type: ignore[arg-type]
        started = trio.current_time()
        group = sources.group()
        addresses = [next(group) for _ in range(MAX_PENDING_PER_ADDRESS)]
        for _ in range(3):
            for address in addresses:
                crowded.append(await stalled(node, transport, address))
                everything.append(crowded[-1])
        for _ in range(6):
            group = sources.group()
            for _ in range(MAX_PENDING_PER_ADDRESS):
                others.append(await stalled(node, transport, next(group)))
                everything.append(others[-1])
        total = len(crowded) + len(others)
        await honest_peer_is_served(node, transport)
        displaced = total - MAX_PENDING + 1
        for raw in crowded[:displaced]:
            assert await raw.wait_closed()
        if trio.current_time() - started < HANDSHAKE_DEADLINE_S - 1.0:
            assert all(is_open(raw) for raw in others), "a stall outside the crowded group closed"
    await verdict.check(transport)


async def test_pending_handshakes_past_the_per_address_bound_close_that_addresss_oldest(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    verdict = await Verdict.before_attack(node)
    source = next(sources.group())
    stalls: list[RawStream] = []
    async with closing(stalls):  # type: ignore[arg-type]
        started = trio.current_time()
        for _ in range(MAX_PENDING_PER_ADDRESS + 3):
            stalls.append(await stalled(node, transport, source))
        await honest_peer_is_served(node, transport)
        for raw in stalls[:3]:
            assert await raw.wait_closed()
        if trio.current_time() - started < HANDSHAKE_DEADLINE_S - 1.0:
            assert all(is_open(raw) for raw in stalls[3:])
        # A handshake from that address displaces a stall and completes.
        peer = await connect_active(node, transport, source)
        stalls.append(peer)  # type: ignore[arg-type]
        await barrier(peer, 1)
    await verdict.check(transport)


async def test_websocket_upgrades_held_open_count_as_pending(
    node: NodeProcess, sources: Sources
) -> None:
    """Stalled WebSocket upgrades (an HTTP request that never ends) hold pending slots like
    stalled handshakes: a fifth from one address closes the first, and a TCP handshake from
    that address then closes the oldest upgrade left and completes."""
    verdict = await Verdict.before_attack(node)
    source = next(sources.group())
    stalls: list[RawStream] = []
    async with closing(stalls):  # type: ignore[arg-type]
        started = trio.current_time()
        for _ in range(MAX_PENDING_PER_ADDRESS + 1):
            stalls.append(await stalled(node, "ws", source))
        # The WebSocket listener accepts in order: all five were admitted once the first closes.
        assert await stalls[0].wait_closed()
        peer = await connect_active(node, "tcp", source)
        stalls.append(peer)  # type: ignore[arg-type]
        await barrier(peer, 1)
        assert await stalls[1].wait_closed()
        if trio.current_time() - started < HANDSHAKE_DEADLINE_S - 1.0:
            assert all(is_open(raw) for raw in stalls[2 : MAX_PENDING_PER_ADDRESS + 1])
    await verdict.check("ws")


# -- abuse budgets: floods end in a ban --------------------------------------------------------


def _abuse(kind: str, node: NodeProcess, keys: ConnectionKeys, count: int) -> list[Message]:
    if kind == "ping":
        return [Ping(nonce=1_000_000 + i) for i in range(count)]
    if kind == "pong":
        return [Pong(nonce=2_000_000 + i) for i in range(count)]
    if kind == "get-peers":
        return [GetPeers() for _ in range(count)]
    return [make_hello(keys.identity, chain_id=node.chain_id, genesis=node.genesis_id)] * count


ABUSE = {
    # kind: (messages within the burst, with the barrier's ping; messages that pass it by 11+)
    "ping": (150, 100),
    "pong": (150, 100),
    "get-peers": (8, 20),
    "hello": (1, 20),
}


async def _flood_to_a_ban(
    node: NodeProcess, transport: str, source: str, kind: str
) -> tuple[ConnectionKeys, float]:
    """Within the burst: no penalty (the score read after a ping barrier is returned); past
    it: `spam_penalty` each, and LOW_SCORE once the score is below -100."""
    within, past = ABUSE[kind]
    keys = fresh_keys()
    peer = await connect_active(node, transport, source, keys=keys)
    try:
        await send_frames(peer, _abuse(kind, node, keys, within))
        await barrier(peer, 1)
        score = await score_of(node, peer)
        await send_frames(peer, _abuse(kind, node, keys, past))
        ending = await peer.wait_ended()
    finally:
        await peer.aclose()
    assert ending.reason is DisconnectReason.LOW_SCORE, ending
    return keys, score


@pytest.mark.parametrize("kind", list(ABUSE))
async def test_a_flood_past_an_abuse_budget_ends_in_a_ban(
    node: NodeProcess, sources: Sources, transport: str, kind: str
) -> None:
    """Ping (20/s, burst 200), unsolicited Pong (same), GetPeers (1/s, burst 10), repeated
    Hello (0.1/s, burst 2): nothing within the burst, LOW_SCORE soon past it, and the key and
    its address are banned while another address of the same group is still admitted."""
    verdict = await Verdict.before_attack(node)
    group = sources.group()
    source = next(group)
    keys, score = await _flood_to_a_ban(node, transport, source, kind)
    assert score == 0.0
    again = await SecurePeer.connect(node, transport, next(group), keys=keys)
    try:
        ending = await again.wait_ended()
    finally:
        await again.aclose()
    assert ending.reason is DisconnectReason.BANNED, ending
    assert await closed_at_accept(node, transport, source)
    neighbour = await connect_active(node, transport, next(group))
    try:
        await barrier(neighbour, 1)
    finally:
        await neighbour.aclose()
    await wait_no_peers(node)
    await verdict.check(transport)


async def test_fresh_keys_from_a_banned_address_are_closed_at_accept(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """A banned key bans its address for 30 min: ten fresh keys from there are all closed at
    accept, before any handshake work, over either transport."""
    verdict = await Verdict.before_attack(node)
    source = next(sources.group())
    await _flood_to_a_ban(node, transport, source, "ping")
    for other in ("tcp", "ws") * 5:
        assert await closed_at_accept(node, other, source)
    await verdict.check(transport)


async def test_protocol_errors_from_three_fresh_keys_get_their_address_refused(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """Each key makes one protocol error (50): the address reaches -150, below -100, and is
    refused inbound at accept, whatever the key; its neighbours are not."""
    verdict = await Verdict.before_attack(node)
    group = sources.group()
    source = next(group)
    for _ in range(3):
        frame = raw_frame(Ping.TYPE, 2 + MAX_PAYLOAD_BYTES[Ping.TYPE])
        assert await _protocol_error(node, transport, source, frame) is (
            DisconnectReason.PROTOCOL_ERROR
        )
    assert await closed_at_accept(node, transport, source)
    neighbour = await connect_active(node, transport, next(group))
    async with closing([neighbour]):
        await barrier(neighbour, 1)
    await wait_no_peers(node)
    await verdict.check(transport)


async def test_bans_from_five_addresses_of_one_group_refuse_the_whole_group(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """Five Ping floods from five addresses of one /16, each ending in LOW_SCORE (about -110
    each): the group passes -500 and a sixth, fresh address of it is closed at accept, while
    an address of another group is admitted."""
    verdict = await Verdict.before_attack(node)
    group = sources.group()
    for _ in range(5):
        await _flood_to_a_ban(node, transport, next(group), "ping")
    assert await closed_at_accept(node, transport, next(group))
    outsider = await connect_active(node, transport, next(sources.group()))
    async with closing([outsider]):
        await barrier(outsider, 1)
    await wait_no_peers(node)
    await verdict.check(transport)


# -- volume budgets: floods pause reading, never cost score -----------------------------------


async def messages_received(node: NodeProcess, peer: SecurePeer) -> int:
    peers = await node.rpc("net_peers")
    assert isinstance(peers, list)
    for entry in peers:
        if isinstance(entry, dict) and entry["peerId"] == peer_id_of(peer):
            return int(str(entry["messagesReceived"]))
    raise AssertionError("the peer is not connected")


async def test_a_status_flood_is_paused_without_penalty(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """600 Status (50/s, burst 500): the node reads at most the burst plus the refill, serves
    an honest peer meanwhile, and reads the rest later; no penalty, still connected."""
    verdict = await Verdict.before_attack(node)
    peer = await connect_active(node, transport, next(sources.group()))
    async with closing([peer]):
        started = trio.current_time()
        count = 600
        await send_frames(peer, [status_of(node)] * count)
        read = await messages_received(node, peer)
        assert read <= 500 + 50 * (trio.current_time() - started) + 10, read
        await honest_peer_is_served(node, transport)
        await barrier(peer, 1)
        assert await messages_received(node, peer) >= count
        assert await score_of(node, peer) == 0.0
    await wait_no_peers(node)
    await verdict.check(transport)


def _block_requests(kind: str, count: int) -> list[Message]:
    if kind == "by-range":
        return [GetBlocksByRange(request_id=i, start_height=0, count=128) for i in range(count)]
    ids = tuple(BlockId(sha256(b"unknown block %d" % j)) for j in range(64))
    return [GetBlocksById(request_id=i, block_ids=ids) for i in range(count)]


@pytest.mark.parametrize(
    ("kind", "count"), [("by-range", 80), ("by-id", 160)], ids=["by-range", "by-id"]
)
async def test_a_block_request_flood_is_paused_without_penalty(
    node: NodeProcess, sources: Sources, transport: str, kind: str, count: int
) -> None:
    """Block requests are charged per block asked for (2,048/s, burst 8,192): 80 ranges of 128
    or 160 lists of 64 ids pass the burst by 2,048. Reading pauses, every request is answered
    once, and the flooder keeps a score of 0."""
    verdict = await Verdict.before_attack(node)
    peer = await connect_active(node, transport, next(sources.group()))
    async with closing([peer]):
        started = trio.current_time()
        for request in _block_requests(kind, count):
            peer.conn.send(request)
        await flush(peer)
        read = await messages_received(node, peer)
        assert read <= (8_192 + 2_048 * (trio.current_time() - started)) / 64 + 10, read
        await honest_peer_is_served(node, transport)

        def answered() -> bool:
            return sum(isinstance(m, Blocks) for m in peer.received) >= count

        await peer.wait_for(answered)
        assert answered(), peer.ending
        await barrier(peer, 1)
        assert await score_of(node, peer) == 0.0
    await wait_no_peers(node)
    await verdict.check(transport)


def _light_requests(kind: str, count: int) -> list[Message]:
    """`count` requests of `kind`, each of something the node does not have (so each is
    answered at once with an error: the flood tests the budget, not the work behind it)."""
    unknown = BlockId(sha256(b"a block nobody made"))
    if kind == "snapshot-page":
        return [
            GetSnapshotPage(request_id=i, block_id=unknown, subtree=i % 256) for i in range(count)
        ]
    if kind == "snapshot-manifest":
        return [GetSnapshotManifest(request_id=i, block_id=unknown) for i in range(count)]
    if kind == "state-proof":
        query = StateQuery(kind=QueryKind.VALIDATORS)
        return [GetStateProof(request_id=i, block_id=unknown, query=query) for i in range(count)]
    if kind == "tx-proof":
        return [GetTxProof(request_id=i, txid=TxId(sha256(b"tx %d" % i))) for i in range(count)]
    trusted = Checkpoint(epoch=Epoch(3), block_id=unknown)
    return [GetFinality(request_id=i, trusted=trusted) for i in range(count)]


LIGHT_FLOODS = {
    # kind: (rate, burst, the answer's type, requests sent: past the burst by 1.5 s of refill)
    "snapshot-page": (50.0, 600, SnapshotPageAnswer, 675),
    "snapshot-manifest": (1.0, 10, SnapshotManifestAnswer, 12),
    "state-proof": (50.0, 200, StateProofAnswer, 275),
    "tx-proof": (50.0, 200, TxProofAnswer, 275),
    "finality": (2.0, 20, Finality, 23),
}


@pytest.mark.parametrize("kind", list(LIGHT_FLOODS))
async def test_a_light_request_flood_is_paused_without_penalty(
    node: NodeProcess, sources: Sources, transport: str, kind: str
) -> None:
    """Light-client and snapshot requests past their budgets (snapshot pages 50/s, burst 600;
    manifests 1/s, burst 10; state and tx proofs 50/s, burst 200; finality 2/s, burst 20):
    the node reads at most the burst plus the refill, serves an honest peer meanwhile,
    answers every request once, and the flooder keeps a score of 0."""
    rate, burst, answer, count = LIGHT_FLOODS[kind]
    verdict = await Verdict.before_attack(node)
    peer = await connect_active(node, transport, next(sources.group()))
    async with closing([peer]):
        started = trio.current_time()
        for request in _light_requests(kind, count):
            peer.conn.send(request)  # through the connection, which then expects the answers
        await flush(peer)
        read = await messages_received(node, peer)
        assert read <= burst + rate * (trio.current_time() - started) + 10, read
        await honest_peer_is_served(node, transport)

        def answered() -> bool:
            return sum(isinstance(m, answer) for m in peer.received) >= count

        await peer.wait_for(answered)
        assert sum(isinstance(m, answer) for m in peer.received) == count, peer.ending
        await barrier(peer, 1)
        assert await score_of(node, peer) == 0.0
    await wait_no_peers(node)
    await verdict.check(transport)


# -- frames at and past their limits ----------------------------------------------------------


def raw_frame(message_type: int, length: int, body: bytes = b"") -> bytes:
    """A frame header declaring `length` (type byte included), and whatever body follows."""
    return struct.pack("!I", length) + bytes([message_type]) + body


async def _protocol_error(
    node: NodeProcess, transport: str, source: str, plaintext: bytes
) -> DisconnectReason | None:
    peer = await connect_active(node, transport, source)
    async with closing([peer]):
        peer.conn.send_raw(plaintext)
        await flush(peer)
        return (await peer.wait_ended()).reason


async def test_publish_junk_of_the_maximum_publish_size_is_a_protocol_error(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """A Publish frame of exactly its limit (2,100,016 payload bytes) that is not RLP: read
    whole, decoded off the loop, PROTOCOL_ERROR."""
    verdict = await Verdict.before_attack(node)
    size = MAX_PAYLOAD_BYTES[Publish.TYPE]
    frame = raw_frame(Publish.TYPE, 1 + size, b"\x00" * size)
    reason = await _protocol_error(node, transport, next(sources.group()), frame)
    assert reason is DisconnectReason.PROTOCOL_ERROR
    await verdict.check(transport)


async def test_an_unsolicited_blocks_frame_is_refused_at_its_header(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """A Blocks header declaring 16 MiB that answers no request: PROTOCOL_ERROR from the 5
    header bytes, though not one byte of the body follows."""
    verdict = await Verdict.before_attack(node)
    frame = raw_frame(Blocks.TYPE, 1 + MAX_PAYLOAD_BYTES[Blocks.TYPE])
    reason = await _protocol_error(node, transport, next(sources.group()), frame)
    assert reason is DisconnectReason.PROTOCOL_ERROR
    await verdict.check(transport)


@pytest.mark.parametrize(
    "message_type",
    [Ping.TYPE, Status.TYPE, Publish.TYPE, IHave.TYPE, IWant.TYPE, GetPeers.TYPE, Peers.TYPE],
    ids=["ping", "status", "publish", "ihave", "iwant", "get-peers", "peers"],
)
async def test_a_length_over_its_types_limit_is_refused_at_the_header(
    node: NodeProcess, sources: Sources, transport: str, message_type: int
) -> None:
    """One byte over the type's limit, and only 16 bytes of body sent: PROTOCOL_ERROR."""
    verdict = await Verdict.before_attack(node)
    frame = raw_frame(message_type, 2 + MAX_PAYLOAD_BYTES[message_type], b"\xc0" * 16)
    reason = await _protocol_error(node, transport, next(sources.group()), frame)
    assert reason is DisconnectReason.PROTOCOL_ERROR
    await verdict.check(transport)


# -- gossip control and peer exchange floods --------------------------------------------------


class Reader:
    """Reads the node's side of a link in the background while a row floods the other."""

    def __init__(self, peer: SecurePeer) -> None:
        self.peer = peer

    async def run(self) -> None:
        peer = self.peer
        while peer.ending is None:
            try:
                data = await peer.stream.receive()
            except PeerClosed as end:
                peer.ending = Ending(None, str(end))
                return
            peer.conn.receive_data(data)
            peer._drain()


def ihave(seed: int) -> IHave:
    ids = tuple(sha256(b"junk %d %d" % (seed, i))[:MESSAGE_ID_BYTES] for i in range(MAX_IHAVE_IDS))
    return IHave(topic=Topic.TRANSACTION, message_ids=ids)


async def _ihave_flood(node: NodeProcess, peer: SecurePeer, count: int) -> None:
    """`count` IHaves of 5,000 fresh ids each, read back concurrently, then a barrier."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(Reader(peer).run)
        for seed in range(count):
            peer.conn.send_raw(encode_frame(ihave(seed)))
            await flush(peer)
        nursery.cancel_scope.cancel()
    await barrier(peer, 1)


async def test_ihave_floods_with_the_maximum_5000_ids_are_capped(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """30 IHaves of 5,000 ids: at most 10 IHaves a heartbeat are looked at and at most 5,000
    ids asked for; the flooder stays connected."""
    verdict = await Verdict.before_attack(node)
    peer = await connect_active(node, transport, next(sources.group()))
    async with closing([peer]):
        started = trio.current_time()
        await _ihave_flood(node, peer, 30)
        asked = sum(len(m.message_ids) for m in peer.received if isinstance(m, IWant))
        heartbeats = (trio.current_time() - started) / HEARTBEAT_S + 2
        assert 0 < asked <= MAX_IHAVE_IDS * heartbeats, (asked, heartbeats)
        assert await score_of(node, peer) > -100
    await wait_no_peers(node)
    await verdict.check(transport)


_fresh_addresses = itertools.count()


def fresh_peers_message() -> Peers:
    """64 addresses never sent before, on loopback hosts no row attacks from and a port
    nothing listens on, so the node's dials to them fail at once."""
    addresses = []
    for _ in range(MAX_PEERS_IN_RESPONSE):
        i = next(_fresh_addresses)
        scheme = "tcp" if i % 2 else "ws"
        addresses.append(f"{scheme}://127.255.{i // 250 % 250}.{1 + i % 250}:9".encode())
    return Peers(addresses=tuple(addresses))


async def _peers_flood(peer: SecurePeer, count: int) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(Reader(peer).run)
        for start in range(0, count, 10):
            await send_frames(peer, [fresh_peers_message() for _ in range(min(10, count - start))])
        nursery.cancel_scope.cancel()


async def test_a_peers_flood_keeps_the_node_within_its_memory_bound(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """Row peers-flood: 160 unsolicited Peers of 64 fresh addresses (10,240 junk items, each
    dialed in turn by the node): it stays up, serves an honest peer while they arrive, keeps
    the flooder's score at 0 (unsolicited Peers cost nothing), and its RSS stays within quiet
    + `MEMORY_HEADROOM`."""
    verdict = await Verdict.before_attack(node)
    peer = await connect_active(node, transport, next(sources.group()))
    async with closing([peer]):
        await barrier(peer, 1)
        quiet = rss_bytes(node)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(honest_peer_is_served, node, transport)
            await _peers_flood(peer, 160)
        await barrier(peer, 2)
        assert rss_bytes(node) <= quiet + MEMORY_HEADROOM, (rss_bytes(node), quiet)
        assert await score_of(node, peer) == 0.0
    await wait_no_peers(node)
    await verdict.check(transport)


@soak
async def test_an_ihave_flood_of_a_million_ids_keeps_the_node_within_its_memory_bound(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """200 IHaves of 5,000 fresh ids (10^6 junk ids, 21 MB): an honest peer is served during
    the flood, and RSS stays within quiet + `MEMORY_HEADROOM`."""
    verdict = await Verdict.before_attack(node)
    peer = await connect_active(node, transport, next(sources.group()))
    async with closing([peer]):
        await barrier(peer, 1)
        quiet = rss_bytes(node)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(Reader(peer).run)
            nursery.start_soon(honest_peer_is_served, node, transport)
            for seed in range(200):
                peer.conn.send_raw(encode_frame(ihave(10_000 + seed)))
                await flush(peer)
            nursery.cancel_scope.cancel()
        if peer.is_active:
            await peer.ping(2)
        # Broken IWANT promises may cost it its place (LOW_SCORE); nothing else may end it.
        ending = peer.ending
        assert ending is None or ending.reason is DisconnectReason.LOW_SCORE, ending
        assert rss_bytes(node) <= quiet + MEMORY_HEADROOM, (rss_bytes(node), quiet)
    await wait_no_peers(node)
    await verdict.check(transport)


async def test_a_flood_past_the_all_messages_budget_is_paused_without_penalty(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """6,000 IWants for unknown ids (no budget of their own; all messages: 2,000/s, burst
    4,000): reading pauses, nothing is charged to the score, the link stays up."""
    verdict = await Verdict.before_attack(node)
    peer = await connect_active(node, transport, next(sources.group()))
    async with closing([peer]):
        started = trio.current_time()
        count = 6_000
        frame = encode_frame(IWant(message_ids=(bytes(MESSAGE_ID_BYTES),)))
        peer.conn.send_raw(frame * count)
        await flush(peer)
        read = await messages_received(node, peer)
        assert read <= 4_000 + 2_000 * (trio.current_time() - started) + 10, read
        await honest_peer_is_served(node, transport)
        await barrier(peer, 1)
        assert await messages_received(node, peer) >= count
        assert await score_of(node, peer) == 0.0
    await wait_no_peers(node)
    await verdict.check(transport)


async def bytes_received(node: NodeProcess, peer: SecurePeer) -> int:
    peers = await node.rpc("net_peers")
    assert isinstance(peers, list)
    for entry in peers:
        if isinstance(entry, dict) and entry["peerId"] == peer_id_of(peer):
            return int(str(entry["bytesReceived"]))
    raise AssertionError("the peer is not connected")


@soak
async def test_a_flood_past_the_bytes_budget_is_paused_without_penalty(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """800 IWants of 5,000 unknown ids (84 MB; bytes: 16 MiB/s, burst 64 MiB): the node reads
    at most the burst plus the refill, serves an honest peer meanwhile, and the flooder keeps
    a score of 0."""
    verdict = await Verdict.before_attack(node)
    peer = await connect_active(node, transport, next(sources.group()))
    async with closing([peer]):
        frame = encode_frame(
            IWant(message_ids=tuple(sha256(b"%d" % i)[:MESSAGE_ID_BYTES] for i in range(5_000)))
        )
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(honest_peer_is_served, node, transport)
            for _ in range(800):
                peer.conn.send_raw(frame)
                await flush(peer)
            read = await bytes_received(node, peer)
            elapsed = trio.current_time() - started
            assert read <= (64 + 16 * elapsed + 1) * 1024 * 1024, (read, elapsed)
        await barrier(peer, 1)
        assert await score_of(node, peer) == 0.0
    await wait_no_peers(node)
    await verdict.check(transport)


async def test_a_maximum_size_publish_of_junk_is_rejected_with_its_penalty(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """A well-formed Publish whose 2,100,000 data bytes are no transaction: gossip REJECT,
    `GossipReject.penalty` (20), not relayed, and the link stays up."""
    verdict = await Verdict.before_attack(node)
    peer = await connect_active(node, transport, next(sources.group()))
    async with closing([peer]):
        # Fresh bytes each run: a copy of an already rejected message is a duplicate (no blame).
        junk = Publish(topic=Topic.TRANSACTION, data=b"\x00" + os.urandom(2_099_999))
        await send_frames(peer, [junk])
        await barrier(peer, 1)

        async def penalised() -> bool:
            return await score_of(node, peer) < 0

        await wait_until(penalised)
        assert -20.0 <= await score_of(node, peer) <= -19.5
        await barrier(peer, 2)
    await wait_no_peers(node)
    await verdict.check(transport)


@dataclass(frozen=True, slots=True)
class _InProcess:
    """What `SecurePeer.connect` needs to know of a node, for a swarm run in this process."""

    host: str
    tcp_port: int
    ws_port: int
    chain_id: int
    genesis_id: BlockId


def _port(swarm: Swarm, scheme: str) -> int:
    return parse_address(next(a for a in swarm.listen_addresses if a.startswith(scheme))).port


@pytest.mark.parametrize("known", [16, 1_000], ids=["16-known", "default-1000-known"])
async def test_a_peers_flood_keeps_the_known_address_table_within_its_bound(
    sources: Sources, transport: str, known: int
) -> None:
    """Row peers-flood, the table itself: a swarm run in this process (the node process does
    not report it) dials the flooded addresses, which fail at once, while more Peers arrive.
    `SwarmConfig.max_known_addresses` holds after every Peers message is read."""
    status = Status(
        head=TEST_GENESIS,
        head_height=0,
        head_slot=0,
        finalized=Checkpoint(epoch=0, block_id=TEST_GENESIS),
    )
    config = SwarmConfig(
        identity=fresh_keys().identity,
        chain_id=TEST_CHAIN_ID,
        genesis=TEST_GENESIS,
        max_known_addresses=known,
    )
    sizes = []
    async with open_swarm(config, lambda: status) as swarm, trio.open_nursery() as nursery:

        async def drain() -> None:
            async for event in swarm.events:
                if isinstance(event, InboundMessage):
                    event.release()

        nursery.start_soon(drain)
        target = _InProcess(
            "127.0.0.1", _port(swarm, "tcp"), _port(swarm, "ws"), TEST_CHAIN_ID, TEST_GENESIS
        )
        peer = await connect_active(target, transport, next(sources.group()))  # type: ignore[arg-type]
        async with closing([peer]):
            for nonce in range(1, 1 + 2 * known // MAX_PEERS_IN_RESPONSE + 40):
                await send_frames(peer, [fresh_peers_message()])
                await barrier(peer, nonce)
                sizes.append(swarm.statistics().known_addresses)
        nursery.cancel_scope.cancel()
    assert max(sizes) <= known, sizes


# -- soak: floods at scale ---------------------------------------------------------------------


async def _stall_until_closed(node: NodeProcess, transport: str, source: str) -> None:
    try:
        raw = await stalled(node, transport, source)
    except (OSError, PeerClosed):
        return
    try:
        await raw.wait_closed()
    finally:
        await raw.aclose()


@soak
async def test_hundreds_of_stalled_handshakes_from_many_groups_let_every_honest_peer_in(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """400 stalls from 40 addresses in 10 groups, opened as fast as the node accepts them,
    while 10 honest peers from 127.0.0.1 each complete a handshake and a ping."""
    verdict = await Verdict.before_attack(node)
    addresses = []
    for _ in range(10):
        group = sources.group()
        addresses += [next(group) for _ in range(4)]
    served = 0
    async with trio.open_nursery() as nursery:
        limiter = trio.CapacityLimiter(64)

        async def one(source: str) -> None:
            async with limiter:
                await _stall_until_closed(node, transport, source)

        for i in range(400):
            nursery.start_soon(one, addresses[i % len(addresses)])
            if i % 40 == 20:
                await honest_peer_is_served(node, transport)
                served += 1
    assert served == 10
    await verdict.check(transport)


@soak
async def test_inbound_churn_of_fresh_keys_keeps_the_limit_and_admits_honest_peers(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """Fresh keys from 8 groups keep connecting (96 in all) into full inbound slots: each
    newcomer evicts or is refused with TOO_MANY_PEERS, the inbound count never passes 32, and
    an honest peer gets in at every round."""
    verdict = await Verdict.before_attack(node)
    groups = [sources.group() for _ in range(8)]
    addresses = [[next(g) for _ in range(2)] for g in groups]
    peers: list[SecurePeer] = []
    async with closing(peers):  # type: ignore[arg-type]
        for _ in range(3):
            for i in range(MAX_INBOUND):
                group = addresses[i % 8]
                peer = await SecurePeer.connect(node, transport, group[(i // 8) % 2])
                peers.append(peer)
                if peer.is_active:
                    await peer.ping(1)
                if peer.ending is not None:
                    assert peer.ending.reason is DisconnectReason.TOO_MANY_PEERS, peer.ending
            assert await inbound_count(node) <= MAX_INBOUND
            await honest_peer_is_served(node, transport)
        ended = 0
        for peer in peers:
            if peer.is_active and not await peer.ping(2):
                assert peer.ending is not None
                assert peer.ending.reason is DisconnectReason.TOO_MANY_PEERS, peer.ending
            ended += not peer.is_active
        assert ended >= len(peers) - MAX_INBOUND
        assert await inbound_count(node) <= MAX_INBOUND
    await wait_no_peers(node)
    await verdict.check(transport)
