"""Catalogue, after the handshake: frames and payloads that break the framing or the encoding
rules (unknown types, zero and oversize lengths, lying lengths, non-canonical RLP, wrong shapes,
deep nesting, values past their limits), a tampered, replayed or truncated encrypted channel,
and valid messages out of order or repeated.

A broken frame or payload is a protocol error: the node sends `Disconnect(PROTOCOL_ERROR)` and
closes, and the sender's key and address pay `protocol_error_penalty`. Valid messages that are
merely useless are ignored at no cost. Every row then checks the node is alive, logged no
traceback, serves an honest peer, and changed no state.
"""

from __future__ import annotations

import os
import struct

import pytest
import rlp

from p2pchain.ledger.crypto import sha256
from p2pchain.ledger.proofs import QueryKind, StateQuery
from p2pchain.ledger.types import BlockId, Epoch, TxId
from p2pchain.ledger.vote import Checkpoint
from p2pchain.protocol.framing import encode_frame
from p2pchain.protocol.messages import (
    MAX_PAYLOAD_BYTES,
    MESSAGE_ID_BYTES,
    Blocks,
    Disconnect,
    DisconnectReason,
    Finality,
    GetBlocksById,
    GetBlocksByRange,
    GetFinality,
    GetSnapshotManifest,
    GetSnapshotPage,
    GetStateProof,
    GetTxProof,
    Graft,
    IHave,
    IWant,
    LightError,
    Peers,
    Ping,
    Pong,
    Prune,
    Publish,
    SnapshotManifestAnswer,
    SnapshotPageAnswer,
    StateProofAnswer,
    Status,
    Topic,
    TxProofAnswer,
    encode_message,
)
from p2pchain.testing.adversary import SecurePeer, closed_at_accept
from tests.robustness.harness import NodeProcess, Sources, Verdict

soak = pytest.mark.soak


def frame(message_type: int, payload: bytes) -> bytes:
    """A frame as the protocol lays it out: length (type byte + payload), type, payload."""
    return struct.pack("!I", 1 + len(payload)) + bytes([message_type]) + payload


def _deep(depth: int) -> bytes:
    """An RLP list nested `depth` times: c1 c1 ... c0, each prefix exact."""
    item = b"\xc0"
    for _ in range(depth):
        item = rlp.codec.length_prefix(len(item), 0xC0) + item
    return item


PING, PUBLISH, IHAVE = Ping.TYPE, Publish.TYPE, IHave.TYPE

BROKEN_FRAMES = {
    "unknown-type-6": frame(6, b"\xc0"),
    "unknown-type-255": frame(255, b"\xc0"),
    "length-zero": struct.pack("!I", 0),
    "ping-declaring-past-its-limit": struct.pack("!I", 1 + MAX_PAYLOAD_BYTES[PING] + 1)
    + bytes([PING])
    + b"\xc1\x05",
    "lying-length-short": struct.pack("!I", 2) + bytes([PING]) + b"\xc1\x05",
    "lying-length-long": struct.pack("!I", 9) + bytes([PING]) + b"\xc1\x05" + bytes(6),
    "ping-nonce-leading-zero": frame(PING, b"\xc3\x82\x00\x05"),
    "ping-long-form-length": frame(PING, b"\xf8\x01\x05"),
    "ping-single-byte-as-string": frame(PING, b"\xc2\x81\x05"),
    "ping-trailing-bytes": frame(PING, b"\xc1\x05\x00"),
    "ping-two-fields": frame(PING, b"\xc2\x05\x05"),
    "ping-no-fields": frame(PING, b"\xc0"),
    "ping-not-a-list": frame(PING, b"\x05"),
    "ping-nonce-2^64": frame(PING, rlp.encode([2**64])),
    "ping-nonce-is-a-list": frame(PING, b"\xc2\xc1\x05"),
    "publish-unknown-topic": frame(PUBLISH, rlp.encode([9, b"data"])),
    "publish-truncated-string": frame(PUBLISH, b"\xc5\x00\x85ab"),
    "ihave-5001-ids": frame(
        IHAVE, rlp.encode([int(Topic.TRANSACTION), [os.urandom(MESSAGE_ID_BYTES)] * 5_001])
    ),
    "ihave-short-id": frame(IHAVE, rlp.encode([int(Topic.TRANSACTION), [b"\x01" * 19]])),
    "peers-address-past-128-bytes": frame(Peers.TYPE, rlp.encode([[b"tcp://" + b"a" * 200]])),
    "getblocks-count-past-128": frame(GetBlocksByRange.TYPE, rlp.encode([1, 0, 129])),
    "status-deep-nesting": frame(Status.TYPE, _deep(60)),
    "disconnect-unknown-reason": frame(Disconnect.TYPE, rlp.encode([200, b""])),
    "graft-unknown-topic": frame(Graft.TYPE, rlp.encode([7])),
    "prune-backoff-past-a-day": frame(Prune.TYPE, rlp.encode([0, 86_401, []])),
    "state-proof-unknown-query-kind": frame(GetStateProof.TYPE, rlp.encode([1, bytes(32), [9]])),
    "state-proof-query-with-extra-field": frame(
        GetStateProof.TYPE, rlp.encode([1, bytes(32), [3, b"x"]])
    ),
    "tx-proof-short-txid": frame(GetTxProof.TYPE, rlp.encode([1, bytes(31)])),
    "unsolicited-finality-answer": frame(Finality.TYPE, rlp.encode([1, [], 1])),
    "unsolicited-state-proof-answer": frame(StateProofAnswer.TYPE, rlp.encode([1, [], 2])),
    "unsolicited-tx-proof-answer": frame(TxProofAnswer.TYPE, rlp.encode([1, [], 4])),
    "snapshot-manifest-short-block-id": frame(GetSnapshotManifest.TYPE, rlp.encode([1, bytes(31)])),
    "snapshot-page-subtree-256": frame(GetSnapshotPage.TYPE, rlp.encode([1, bytes(32), 256, b""])),
    "snapshot-page-after-31-bytes": frame(
        GetSnapshotPage.TYPE, rlp.encode([1, bytes(32), 0, bytes(31)])
    ),
    "snapshot-page-with-extra-field": frame(
        GetSnapshotPage.TYPE, rlp.encode([1, bytes(32), 0, b"", b"x"])
    ),
    "unsolicited-snapshot-manifest-answer": frame(
        SnapshotManifestAnswer.TYPE, rlp.encode([1, [], 6])
    ),
    "unsolicited-snapshot-page-answer": frame(SnapshotPageAnswer.TYPE, rlp.encode([1, [], 6])),
}


@pytest.mark.parametrize("name", sorted(BROKEN_FRAMES))
async def test_a_broken_frame_is_a_protocol_error(
    node: NodeProcess, sources: Sources, transport: str, name: str
) -> None:
    verdict = await Verdict.before_attack(node)
    peer = await SecurePeer.connect(node, transport, next(sources.group()))
    try:
        assert peer.is_active, peer.ending
        await peer.send_plaintext(BROKEN_FRAMES[name])
        ending = await peer.wait_ended()
    finally:
        await peer.aclose()
    if name == "disconnect-unknown-reason":
        # The peer said goodbye, however badly: the node closes without a reason of its own.
        assert ending.reason in (None, DisconnectReason.PROTOCOL_ERROR), ending
    else:
        assert ending.reason is DisconnectReason.PROTOCOL_ERROR, ending
    await verdict.check(transport)


async def test_an_oversize_frame_is_refused_from_its_header(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """A Publish header declaring one byte past its limit: the node closes before any body."""
    verdict = await Verdict.before_attack(node)
    peer = await SecurePeer.connect(node, transport, next(sources.group()))
    try:
        header = struct.pack("!I", 1 + MAX_PAYLOAD_BYTES[PUBLISH] + 1) + bytes([PUBLISH])
        await peer.send_plaintext(header)
        ending = await peer.wait_ended()
    finally:
        await peer.aclose()
    assert ending.reason is DisconnectReason.PROTOCOL_ERROR
    await verdict.check(transport)


async def test_an_unsolicited_blocks_frame_is_refused_from_its_header(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    verdict = await Verdict.before_attack(node)
    peer = await SecurePeer.connect(node, transport, next(sources.group()))
    try:
        body = encode_message(Blocks(request_id=1, blocks=()))
        await peer.send_plaintext(struct.pack("!I", len(body)) + body[:1])  # header only
        ending = await peer.wait_ended()
    finally:
        await peer.aclose()
    assert ending.reason is DisconnectReason.PROTOCOL_ERROR
    await verdict.check(transport)


# -- the encrypted channel -------------------------------------------------------------------


def _transport_message(peer: SecurePeer, message: Ping) -> bytes:
    """One encrypted transport message carrying `message`, as the stream would carry it."""
    peer.conn.send(message)
    return peer.conn.data_to_send()


@pytest.mark.parametrize("where", ["length-prefix", "ciphertext", "tag"])
async def test_a_tampered_transport_message_ends_the_link(
    node: NodeProcess, sources: Sources, transport: str, where: str
) -> None:
    verdict = await Verdict.before_attack(node)
    peer = await SecurePeer.connect(node, transport, next(sources.group()))
    try:
        data = bytearray(_transport_message(peer, Ping(nonce=7)))
        index = {"length-prefix": 1, "ciphertext": 4, "tag": len(data) - 1}[where]
        data[index] ^= 0x01
        await peer.stream.send(bytes(data))
        ending = await peer.wait_ended()
    finally:
        await peer.aclose()
    assert ending.reason in (None, DisconnectReason.PROTOCOL_ERROR), ending
    await verdict.check(transport)


async def test_a_replayed_transport_message_ends_the_link(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """The same ciphertext twice: the second fails under the next nonce."""
    verdict = await Verdict.before_attack(node)
    peer = await SecurePeer.connect(node, transport, next(sources.group()))
    try:
        data = _transport_message(peer, Ping(nonce=8))
        await peer.stream.send(data)
        await peer.stream.send(data)
        ending = await peer.wait_ended()
    finally:
        await peer.aclose()
    assert ending.reason in (None, DisconnectReason.PROTOCOL_ERROR), ending
    assert any(isinstance(m, Pong) and m.nonce == 8 for m in peer.received)
    await verdict.check(transport)


async def test_a_transport_message_cut_short_by_a_close_costs_nothing_else(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    verdict = await Verdict.before_attack(node)
    peer = await SecurePeer.connect(node, transport, next(sources.group()))
    data = _transport_message(peer, Ping(nonce=9))
    await peer.stream.send(data[: len(data) // 2])
    await peer.aclose()
    await verdict.check(transport)


async def test_a_frame_cut_short_by_a_close_costs_nothing_else(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """Half a Publish frame (a valid channel), then the connection ends."""
    verdict = await Verdict.before_attack(node)
    peer = await SecurePeer.connect(node, transport, next(sources.group()))
    body = encode_message(Publish(topic=Topic.TRANSACTION, data=os.urandom(5_000)))
    await peer.send_plaintext((struct.pack("!I", len(body)) + body)[:2_000])
    await peer.aclose()
    await verdict.check(transport)


# -- valid messages, out of order or repeated ------------------------------------------------


async def _score_of(node: NodeProcess, peer: SecurePeer) -> float:
    """The node's score for `peer`, after a ping round trip proves earlier frames were read."""
    assert await peer.ping(int.from_bytes(os.urandom(4), "big")), peer.ending
    scores = await node.peer_scores()
    return scores["0x" + peer.conn.hello.node_key.hex()]


USELESS = {
    "second-hello": "a Hello on an active link (ignored, within its burst)",
    "unsolicited-pong": "a Pong that answers no ping (within its budget)",
    "range-past-the-head": "GetBlocksByRange far past the head (answered empty)",
    "unknown-block-ids": "GetBlocksById of unknown ids (answered empty)",
    "iwant-unknown-ids": "IWant of ids nobody announced (nothing to serve)",
    "duplicate-getblocks": "the same request id twice (each answered)",
    "finality-from-an-unknown-checkpoint": "GetFinality from a checkpoint the node never saw "
    "(answered with an error)",
    "state-proof-of-an-unknown-block": "GetStateProof at a block the node never saw (answered "
    "with an error)",
    "tx-proof-of-an-unknown-transaction": "GetTxProof of a transaction nobody made (answered "
    "with an error)",
    "snapshot-manifest-of-an-unknown-block": "GetSnapshotManifest of a block that is not the "
    "finalized checkpoint (answered with an error)",
    "snapshot-page-of-an-unknown-block": "GetSnapshotPage of a block that is not the finalized "
    "checkpoint (answered with an error)",
}

LIGHT_ROWS = {
    # row: (the answer's type, the error it carries)
    "finality-from-an-unknown-checkpoint": (Finality, LightError.NOTHING_NEWER),
    "state-proof-of-an-unknown-block": (StateProofAnswer, LightError.UNKNOWN_BLOCK),
    "tx-proof-of-an-unknown-transaction": (TxProofAnswer, LightError.NOT_FOUND),
    "snapshot-manifest-of-an-unknown-block": (
        SnapshotManifestAnswer,
        LightError.SNAPSHOT_UNAVAILABLE,
    ),
    "snapshot-page-of-an-unknown-block": (SnapshotPageAnswer, LightError.SNAPSHOT_UNAVAILABLE),
}


@pytest.mark.parametrize("name", sorted(USELESS))
async def test_a_useless_valid_message_is_ignored_at_no_cost(
    node: NodeProcess, sources: Sources, transport: str, name: str
) -> None:
    verdict = await Verdict.before_attack(node)
    peer = await SecurePeer.connect(node, transport, next(sources.group()))
    try:
        assert peer.is_active, peer.ending
        messages: list[object]
        if name == "second-hello":
            messages = []
            await peer.send_plaintext(encode_frame(peer.conn.hello))
        elif name == "unsolicited-pong":
            messages = [Pong(nonce=123_456)]
        elif name == "range-past-the-head":
            messages = [GetBlocksByRange(request_id=1, start_height=10**9, count=128)]
        elif name == "unknown-block-ids":
            ids = tuple(sha256(os.urandom(8)) for _ in range(64))
            messages = [GetBlocksById(request_id=2, block_ids=ids)]  # type: ignore[arg-type]
        elif name == "iwant-unknown-ids":
            messages = [IWant(message_ids=tuple(os.urandom(MESSAGE_ID_BYTES) for _ in range(500)))]
        elif name == "finality-from-an-unknown-checkpoint":
            unknown = Checkpoint(epoch=Epoch(3), block_id=BlockId(os.urandom(32)))
            messages = [GetFinality(request_id=4, trusted=unknown)]
        elif name == "state-proof-of-an-unknown-block":
            query = StateQuery(kind=QueryKind.VALIDATORS)
            messages = [GetStateProof(request_id=5, block_id=BlockId(os.urandom(32)), query=query)]
        elif name == "tx-proof-of-an-unknown-transaction":
            messages = [GetTxProof(request_id=6, txid=TxId(os.urandom(32)))]
        elif name == "snapshot-manifest-of-an-unknown-block":
            messages = [GetSnapshotManifest(request_id=7, block_id=BlockId(os.urandom(32)))]
        elif name == "snapshot-page-of-an-unknown-block":
            unknown_block = BlockId(os.urandom(32))
            messages = [GetSnapshotPage(request_id=8, block_id=unknown_block, subtree=0)]
        else:
            request = GetBlocksByRange(request_id=3, start_height=0, count=1)
            messages = [request, request]
        for message in messages:
            peer.conn.send(message)  # type: ignore[arg-type]
        await peer.flush()
        assert await _score_of(node, peer) == 0.0
        if name in ("range-past-the-head", "unknown-block-ids", "duplicate-getblocks"):
            expected = 2 if name == "duplicate-getblocks" else 1

            def answers() -> list[Blocks]:
                return [m for m in peer.received if isinstance(m, Blocks)]

            await peer.wait_for(lambda: len(answers()) >= expected)  # sending is not answering
            assert len(answers()) == expected
            if name != "duplicate-getblocks":
                assert answers()[0].blocks == ()
        if name in LIGHT_ROWS:
            kind, error = LIGHT_ROWS[name]

            def light_answers() -> list[object]:
                return [m for m in peer.received if isinstance(m, kind)]

            await peer.wait_for(lambda: bool(light_answers()))
            (answer,) = light_answers()
            assert answer.error is error, answer  # type: ignore[attr-defined]
        assert peer.is_active
    finally:
        await peer.aclose()
    await verdict.check(transport)


async def test_three_protocol_errors_from_fresh_keys_ban_their_address(
    node: NodeProcess, sources: Sources, transport: str
) -> None:
    """Each protocol error costs the source address 50 as well as the key: after the third
    (-150, below -100) a fresh key from that address is closed at accept, before any
    handshake, while another address of the same group is still served."""
    verdict = await Verdict.before_attack(node)
    group = sources.group()
    address = next(group)
    for _ in range(3):
        peer = await SecurePeer.connect(node, transport, address)
        try:
            assert peer.is_active, peer.ending
            await peer.send_plaintext(BROKEN_FRAMES["unknown-type-6"])
            assert (await peer.wait_ended()).reason is DisconnectReason.PROTOCOL_ERROR
        finally:
            await peer.aclose()
    assert await closed_at_accept(node, transport, address)
    neighbour = await SecurePeer.connect(node, transport, next(group))
    try:
        assert neighbour.is_active, neighbour.ending
    finally:
        await neighbour.aclose()
    await verdict.check(transport)
