"""Catalogue, before and during the handshake: bytes that are not a Noise handshake, every
low-order point, lying Noise lengths, bad identity proofs, replays, truncation, trickling, bad
Hellos, and WebSocket upgrades and frames that lie.

Before the Noise handshake completes the node can send nothing, so its reaction is to close the
socket; after it, to send `Disconnect` with the documented reason. Every row then checks the
node is alive, logged no traceback, serves an honest peer, and changed no state.
"""

from __future__ import annotations

import dataclasses
import os
import struct

import pytest
import trio

from p2pchain.cli.config import read_key
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.protocol.connection import ConnectionKeys, State
from p2pchain.protocol.messages import PROTOCOL_VERSION, DisconnectReason, Ping, encode_message
from p2pchain.protocol.noise import IdentityProof, NoiseSession, frame_noise_message
from p2pchain.testing.adversary import (
    NO_TIMERS,
    RawStream,
    SecurePeer,
    SilentConnection,
    fresh_keys,
    upgrade_request,
    ws_header,
)
from p2pchain.testing.hostile import LOW_ORDER_POINTS
from p2pchain.testing.link import RawConnection, make_hello
from tests.robustness.harness import WAIT_S, NodeProcess, Sources, Verdict, honest_peer_is_served

soak = pytest.mark.soak
HANDSHAKE_DEADLINE_S = 5.0
"""The node's documented handshake deadline (`ConnectionConfig.handshake_timeout`)."""


def _msg1(ephemeral_public: bytes, payload: bytes = b"") -> bytes:
    return frame_noise_message(ephemeral_public + payload)


def _honest_msg1() -> bytes:
    keys = fresh_keys()
    session = NoiseSession(
        initiator=True,
        static_private=keys.noise_static,
        ephemeral_private=keys.noise_ephemeral,
        identity_proof=IdentityProof(node_key=bytes(32), signature=bytes(64)),
    )
    return frame_noise_message(session.write_handshake())


async def _closed_before_channel(
    node: NodeProcess, transport: str, source: str, data: bytes
) -> str:
    """Send `data` from the first byte and read until the node closes; how it closed."""
    raw = await RawStream.open(node, transport, source)
    try:
        await raw.send(data)
        return await raw.wait_closed()
    finally:
        await raw.aclose()


# -- before the handshake --------------------------------------------------------------------


@pytest.mark.parametrize(
    "junk",
    [
        pytest.param(b"\x00\x00", id="noise-length-zero"),
        pytest.param(b"\xff\xff" + os.urandom(600), id="noise-length-over-512"),
        pytest.param(b"GET / HTTP/1.1\r\n\r\n" * 4, id="http-to-the-noise-port"),
        pytest.param(b"\x00\x20" + os.urandom(32) + b"\x00\x20" + os.urandom(32), id="random-e"),
        pytest.param(os.urandom(4096), id="random-bytes"),
    ],
)
async def test_junk_before_the_handshake_is_closed(
    node: NodeProcess, sources: Sources, transport: str, junk: bytes
) -> None:
    verdict = await Verdict.before_attack(node)
    ending = await _closed_before_channel(node, transport, next(sources.group()), junk)
    assert ending in ("closed", "reset") or ending.startswith("websocket close")
    await verdict.check(transport)


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p.hex()[:8] + p.hex()[-2:])
async def test_every_low_order_ephemeral_key_is_a_handshake_failure(
    node: NodeProcess, sources: Sources, transport: str, point: bytes
) -> None:
    verdict = await Verdict.before_attack(node)
    ending = await _closed_before_channel(node, transport, next(sources.group()), _msg1(point))
    assert ending in ("closed", "reset") or ending.startswith("websocket close")
    await verdict.check(transport)


async def test_a_message_1_with_a_payload_is_refused(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    verdict = await Verdict.before_attack(node)
    data = _msg1(os.urandom(32), payload=b"hello")
    assert await _closed_before_channel(node, transport, next(sources.group()), data)
    await verdict.check(transport)


async def test_a_replayed_message_1_is_refused(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """A second message 1 where message 3 belongs: it fails to decrypt as message 3."""
    verdict = await Verdict.before_attack(node)
    msg1 = _honest_msg1()
    assert await _closed_before_channel(node, transport, next(sources.group()), msg1 + msg1)
    await verdict.check(transport)


class _ForgedProof(RawConnection):
    """An identity proof signed over some other Noise static key."""

    def _identity_proof(self, keys: ConnectionKeys) -> IdentityProof:
        return IdentityProof(
            node_key=keys.identity.public_key,
            signature=keys.identity.sign(sha256(b"some other static key")),
        )


class _ZeroProof(RawConnection):
    def _identity_proof(self, keys: ConnectionKeys) -> IdentityProof:
        return IdentityProof(node_key=keys.identity.public_key, signature=bytes(64))


@pytest.mark.parametrize("forged", [_ForgedProof, _ZeroProof], ids=["other-static", "zero-sig"])
async def test_a_bad_identity_proof_ends_with_bad_identity(
    node: NodeProcess, sources: Sources, transport: str, forged: type[RawConnection]
) -> None:
    verdict = await Verdict.before_attack(node)
    keys = fresh_keys()
    hello = make_hello(keys.identity, chain_id=node.chain_id, genesis=node.genesis_id)
    conn = forged(initiator=True, keys=keys, hello=hello, now=trio.current_time(), config=NO_TIMERS)
    peer = SecurePeer(await RawStream.open(node, transport, next(sources.group())), conn)
    try:
        ending = await peer.wait_ended()
    finally:
        await peer.aclose()
    assert ending.reason is DisconnectReason.BAD_IDENTITY
    await verdict.check(transport)


async def test_a_message_3_replayed_on_another_connection_is_refused(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """Record an honest handshake's message 3, then offer it to a second connection."""
    verdict = await Verdict.before_attack(node)
    source = next(sources.group())
    first = await SecurePeer.connect(node, transport, source, handshake=False)
    recorded: list[bytes] = []
    first.stream.sent = recorded
    try:
        await first.flush()
        await first.wait_for(lambda: first.conn.state is not State.NOISE_HANDSHAKE)
    finally:
        await first.aclose()
    msg1, msg3 = recorded[0], recorded[1][: 2 + int.from_bytes(recorded[1][:2], "big")]
    assert await _closed_before_channel(node, transport, source, msg1 + msg3)
    await verdict.check(transport)


@pytest.mark.parametrize(
    "cut",
    [pytest.param(1, marks=soak), pytest.param(2, marks=soak), pytest.param(20, marks=soak), 33],
    ids=lambda c: f"first-{c}-bytes",
)
async def test_a_truncated_handshake_is_closed_at_the_deadline(
    node: NodeProcess, sources: Sources, transport: str, cut: int
) -> None:
    verdict = await Verdict.before_attack(node)
    raw = await RawStream.open(node, transport, next(sources.group()))
    try:
        await raw.send(_honest_msg1()[:cut])
        started = trio.current_time()
        assert await raw.wait_closed()
        assert trio.current_time() - started < HANDSHAKE_DEADLINE_S + WAIT_S / 2
    finally:
        await raw.aclose()
    await verdict.check(transport)


@soak
async def test_a_handshake_trickled_a_byte_at_a_time_is_closed_at_the_deadline(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """A slow-loris: one byte every 0.5 s would take 17 s for message 1 alone; the node closes
    it at the 5 s deadline, and serves an honest peer while it trickles."""
    verdict = await Verdict.before_attack(node)
    raw = await RawStream.open(node, transport, next(sources.group()))
    msg1 = _honest_msg1()
    closed = trio.Event()

    async def trickle() -> None:
        for byte in msg1:
            try:
                await raw.send(bytes([byte]))
            except Exception:
                return
            with trio.move_on_after(0.5):
                await closed.wait()
            if closed.is_set():
                return

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trickle)
            await honest_peer_is_served(node, transport)
            assert await raw.wait_closed()
            closed.set()
    finally:
        await raw.aclose()
    await verdict.check(transport)


async def test_silence_after_the_noise_handshake_ends_with_handshake_timeout(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """The channel comes up, but no Hello ever follows."""
    verdict = await Verdict.before_attack(node)
    peer = await SecurePeer.connect(
        node, transport, next(sources.group()), handshake=False, connection=SilentConnection
    )
    try:
        await peer.open_channel()
        ending = await peer.wait_ended()
    finally:
        await peer.aclose()
    assert ending.reason is DisconnectReason.HANDSHAKE_TIMEOUT
    await verdict.check(transport)


# -- the Hello -------------------------------------------------------------------------------


def _hello_cases(node: NodeProcess) -> dict[str, tuple[dict[str, object], DisconnectReason]]:
    return {
        "wrong-version": (
            {"protocol_version": PROTOCOL_VERSION + 1},
            DisconnectReason.INCOMPATIBLE_VERSION,
        ),
        "wrong-chain": ({"chain_id": node.chain_id + 1}, DisconnectReason.WRONG_CHAIN),
        "wrong-genesis": ({"genesis": sha256(b"another genesis")}, DisconnectReason.WRONG_GENESIS),
        "other-node-key": (
            {"node_key": SecretKey.from_entropy(sha256(b"not me")).public_key},
            DisconnectReason.BAD_IDENTITY,
        ),
    }


@pytest.mark.parametrize(
    "case", ["wrong-version", "wrong-chain", "wrong-genesis", "other-node-key"]
)
async def test_a_bad_hello_ends_with_its_reason(
    node: NodeProcess, sources: Sources, transport: str, case: str
) -> None:
    verdict = await Verdict.before_attack(node)
    changes, reason = _hello_cases(node)[case]
    keys = fresh_keys()
    hello = make_hello(keys.identity, chain_id=node.chain_id, genesis=node.genesis_id)
    peer = await SecurePeer.connect(
        node,
        transport,
        next(sources.group()),
        keys=keys,
        hello=dataclasses.replace(hello, **changes),
    )
    try:
        ending = await peer.wait_ended()
    finally:
        await peer.aclose()
    assert ending.reason is reason
    await verdict.check(transport)


async def test_a_peer_claiming_the_nodes_own_key_ends_with_self_connection(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """Whoever holds the node's key file can prove its identity; the node still refuses itself."""
    verdict = await Verdict.before_attack(node)
    own = read_key(node.directory / "node.key")
    keys = dataclasses.replace(fresh_keys(), identity=own)
    peer = await SecurePeer.connect(node, transport, next(sources.group()), keys=keys)
    try:
        ending = await peer.wait_ended()
    finally:
        await peer.aclose()
    assert ending.reason is DisconnectReason.SELF_CONNECTION
    await verdict.check(transport)


async def test_a_frame_other_than_hello_first_is_a_protocol_error(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    verdict = await Verdict.before_attack(node)
    peer = await SecurePeer.connect(
        node, transport, next(sources.group()), handshake=False, connection=SilentConnection
    )
    try:
        await peer.open_channel()
        body = encode_message(Ping(nonce=1))
        await peer.send_plaintext(struct.pack("!I", len(body)) + body)
        ending = await peer.wait_ended()
    finally:
        await peer.aclose()
    assert ending.reason is DisconnectReason.PROTOCOL_ERROR
    await verdict.check(transport)


# -- WebSocket upgrades and frames -------------------------------------------------------------


async def _ws_raw(node: NodeProcess, source: str, data: bytes) -> str:
    raw = await RawStream.open(node, "ws", source, upgrade=False)
    try:
        await raw.send_bytes(data)
        return await raw.wait_closed()
    finally:
        await raw.aclose()


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"\x00\x20" + os.urandom(32), id="noise-to-the-websocket-port"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="plain-http-get"),
        pytest.param(b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 70_000, id="endless-header"),
    ],
)
async def test_a_bad_websocket_upgrade_is_closed(
    node: NodeProcess, sources: Sources, request_bytes: bytes
) -> None:
    verdict = await Verdict.before_attack(node)
    assert await _ws_raw(node, next(sources.group()), request_bytes)
    await verdict.check("ws")


async def test_a_stalled_websocket_upgrade_is_closed_at_the_deadline(
    node: NodeProcess, sources: Sources
) -> None:
    verdict = await Verdict.before_attack(node)
    raw = await RawStream.open(node, "ws", next(sources.group()), upgrade=False)
    try:
        await raw.send_bytes(upgrade_request(node)[:40])
        assert await raw.wait_closed()
    finally:
        await raw.aclose()
    await verdict.check("ws")


@pytest.mark.parametrize(
    ("declared", "when"),
    [(2**62, "before-handshake"), (2**62, "after-handshake"), (131_073, "after-handshake")],
    ids=["2^62-first", "2^62-active", "limit+1-active"],
)
async def test_a_websocket_frame_declaring_too_much_is_closed_with_1009(
    node: NodeProcess, sources: Sources, declared: int, when: str
) -> None:
    verdict = await Verdict.before_attack(node)
    source = next(sources.group())
    if when == "before-handshake":
        raw = await RawStream.open(node, "ws", source)
    else:
        peer = await SecurePeer.connect(node, "ws", source)
        assert peer.is_active
        raw = peer.stream
    try:
        await raw.send_bytes(ws_header(0x2, declared) + os.urandom(64))
        ending = await raw.wait_closed()
    finally:
        await raw.aclose()
    assert raw.close_code == 1009, ending
    await verdict.check("ws")


async def test_a_websocket_text_frame_breaks_the_binary_link(
    node: NodeProcess, sources: Sources
) -> None:
    verdict = await Verdict.before_attack(node)
    raw = await RawStream.open(node, "ws", next(sources.group()))
    try:
        await raw.send_bytes(ws_header(0x1, 5) + b"hello")
        assert await raw.wait_closed()
    finally:
        await raw.aclose()
    await verdict.check("ws")
