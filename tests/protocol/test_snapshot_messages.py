"""Snapshot messages 46-49: exact round trips, strict decoding, size limits, and answers
accepted only while their request is open."""

import pytest
import rlp
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.errors import DecodeError, RemoteProtocolError
from p2pchain.ledger.snapshot import (
    MAX_GOVERNANCE_STATE_BYTES,
    MAX_SNAPSHOT_PAGE_BYTES,
    SUBTREES,
    GovernanceRecord,
    OutputRecord,
    SnapshotManifest,
    encode_record,
    page,
)
from p2pchain.ledger.tx import Lock, LockKind, OutPoint, TxOutput
from p2pchain.ledger.types import Address, AssetId, BlockId, Hash32, TxId
from p2pchain.protocol.connection import MessageReceived
from p2pchain.protocol.framing import encode_frame
from p2pchain.protocol.messages import (
    ANSWER_OF,
    MAX_PAYLOAD_BYTES,
    Finality,
    GetSnapshotManifest,
    GetSnapshotPage,
    LightError,
    SnapshotManifestAnswer,
    SnapshotPageAnswer,
    TxProofAnswer,
    decode_message,
    encode_message,
)
from p2pchain.testing.link import ConnectionPair, RawConnection, connection_keys, make_hello
from p2pchain.testing.link import message_strategies as _message_strategies

SNAPSHOT_TYPES = (GetSnapshotManifest, SnapshotManifestAnswer, GetSnapshotPage, SnapshotPageAnswer)
STRATEGIES = _message_strategies()
BLOCK = bytes(range(32))


def frame(message_type: int, payload: object) -> bytes:
    return bytes([message_type]) + rlp.encode(payload)


@pytest.mark.parametrize("cls", SNAPSHOT_TYPES, ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_every_snapshot_message_round_trips_exactly(cls, data) -> None:
    message = data.draw(STRATEGIES[cls])
    body = encode_message(message)
    assert body[0] == cls.TYPE
    assert decode_message(body) == message
    assert encode_message(decode_message(body)) == body
    assert len(body) - 1 <= MAX_PAYLOAD_BYTES[cls.TYPE]


def test_the_type_ids_and_answer_pairs() -> None:
    assert [cls.TYPE for cls in SNAPSHOT_TYPES] == [46, 47, 48, 49]
    assert ANSWER_OF[GetSnapshotManifest] is SnapshotManifestAnswer
    assert ANSWER_OF[GetSnapshotPage] is SnapshotPageAnswer
    assert LightError.SNAPSHOT_UNAVAILABLE == 6


MALFORMED = {
    "manifest-request-short-block": frame(46, [1, bytes(31)]),
    "manifest-request-extra-field": frame(46, [1, BLOCK, b""]),
    "page-request-subtree-256": frame(48, [1, BLOCK, 256, b""]),
    "page-request-after-31-bytes": frame(48, [1, BLOCK, 3, bytes(31)]),
    "page-request-after-33-bytes": frame(48, [1, BLOCK, 3, bytes(33)]),
    "page-request-after-65-bytes": frame(48, [1, BLOCK, 3, bytes(65)]),
    "page-request-after-a-list": frame(48, [1, BLOCK, 3, []]),
    "page-request-subtree-leading-zero": frame(48, [1, BLOCK, b"\x00\x03", b""]),
    "manifest-255-counts": frame(47, [1, [BLOCK, BLOCK, [b""] * 255, bytes(32 * 255)], b""]),
    "manifest-257-counts": frame(47, [1, [BLOCK, BLOCK, [b""] * 257, bytes(32 * 256)], b""]),
    "manifest-hashes-short": frame(47, [1, [BLOCK, BLOCK, [b""] * 256, bytes(32 * 256 - 1)], b""]),
    "manifest-count-too-large": frame(
        47, [1, [BLOCK, BLOCK, [bytes([1]) * 9] + [b""] * 255, bytes(32 * 256)], b""]
    ),
    "manifest-answer-and-error": frame(47, [1, [BLOCK, BLOCK, [b""] * 256, bytes(32 * 256)], 2]),
    "manifest-unknown-error": frame(47, [1, [], 7]),
    "manifest-error-zero": frame(47, [1, [], b""]),
    "page-done-2": frame(49, [1, [[], 2], b""]),
    "page-three-fields": frame(49, [1, [[], 1, b""], b""]),
    "page-record-a-list": frame(49, [1, [[[b"\x01"]], 1], b""]),
    "page-records-not-a-list": frame(49, [1, [b"", 1], b""]),
    "page-answer-and-error": frame(49, [1, [[], 1], 6]),
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_snapshot_messages_are_refused(body) -> None:
    with pytest.raises(DecodeError):
        decode_message(body)


def test_an_error_answer_carries_no_records() -> None:
    with pytest.raises(ValueError, match="no records"):
        SnapshotPageAnswer(request_id=1, records=(b"\x01",), error=LightError.NOT_FOUND)
    refused = SnapshotPageAnswer(request_id=1, error=LightError.SNAPSHOT_UNAVAILABLE)
    assert decode_message(encode_message(refused)) == refused


def test_the_largest_answers_fit_their_limits() -> None:
    manifest = SnapshotManifest(
        block_id=BlockId(BLOCK),
        state_root=Hash32(BLOCK),
        entries=((2**64 - 1, Hash32(bytes([1]) * 32)),) * SUBTREES,
    )
    body = encode_message(SnapshotManifestAnswer(request_id=2**64 - 1, manifest=manifest))
    assert len(body) - 1 <= SnapshotManifestAnswer.MAX_PAYLOAD_BYTES
    lone = encode_record(GovernanceRecord(state=bytes(MAX_GOVERNANCE_STATE_BYTES)))
    body = encode_message(SnapshotPageAnswer(request_id=2**64 - 1, records=(lone,), done=True))
    assert len(body) - 1 <= SnapshotPageAnswer.MAX_PAYLOAD_BYTES
    # A full page of the smallest records (the most record headers per byte).
    output = TxOutput(asset=AssetId(bytes(32)), amount=1, address=Address(bytes(20)), lock=Lock())
    small = [
        (
            bytes([i % 256]) * 64,
            encode_record(
                OutputRecord(outpoint=OutPoint(txid=TxId(bytes(32)), index=i), output=output)
            ),
        )
        for i in range(MAX_SNAPSHOT_PAGE_BYTES // 70 + 10)
    ]
    small.sort()
    records, done = page(small, b"", MAX_SNAPSHOT_PAGE_BYTES)
    assert not done
    body = encode_message(SnapshotPageAnswer(request_id=2**64 - 1, records=records))
    assert len(body) - 1 <= SnapshotPageAnswer.MAX_PAYLOAD_BYTES
    staked = TxOutput(
        asset=AssetId(bytes(32)),
        amount=2**64 - 1,
        address=Address(bytes(20)),
        lock=Lock(kind=LockKind.UNBONDING, value=2**64 - 1, key=bytes(32)),
    )
    largest_output = encode_record(
        OutputRecord(outpoint=OutPoint(txid=TxId(bytes(32)), index=2**16 - 1), output=staked)
    )
    assert len(largest_output) < 200  # far below a page: one record never needs more


# -- pairing on a connection -------------------------------------------------------------------


def _raw_pair() -> ConnectionPair:
    keys = connection_keys(1)
    dialer = RawConnection(initiator=True, keys=keys, hello=make_hello(keys.identity), now=0.0)
    pair = ConnectionPair(dialer=dialer)
    pair.exchange()
    return pair


ANSWERS = [
    (
        GetSnapshotManifest(request_id=1, block_id=BlockId(BLOCK)),
        SnapshotManifestAnswer(request_id=1, manifest=None, error=LightError.SNAPSHOT_UNAVAILABLE),
    ),
    (
        GetSnapshotPage(request_id=2, block_id=BlockId(BLOCK), subtree=255, after=bytes(64)),
        SnapshotPageAnswer(request_id=2, records=(b"\xc0",), done=True),
    ),
]


@pytest.mark.parametrize(("request_", "answer"), ANSWERS, ids=["manifest", "page"])
def test_each_snapshot_request_allows_exactly_one_answer(request_, answer) -> None:
    pair = _raw_pair()
    pair.listener.send(request_)
    seen = pair.deliver_to_dialer()
    assert [e.message for e in seen if isinstance(e, MessageReceived)] == [request_]
    pair.dialer.send(answer)
    seen = pair.deliver_to_listener()
    assert [e.message for e in seen if isinstance(e, MessageReceived)] == [answer]
    pair.dialer.send_raw(encode_frame(answer))  # a second: unasked
    with pytest.raises(RemoteProtocolError, match="answers no request"):
        pair.deliver_to_listener()


@pytest.mark.parametrize("answer", [a for _, a in ANSWERS], ids=["manifest", "page"])
def test_an_unsolicited_snapshot_answer_is_refused_from_its_header(answer) -> None:
    pair = _raw_pair()
    limit = MAX_PAYLOAD_BYTES[answer.TYPE]
    pair.dialer.send_raw((limit + 1).to_bytes(4, "big") + bytes([answer.TYPE]))
    with pytest.raises(RemoteProtocolError):  # over the limit, and unasked: header alone
        pair.deliver_to_listener()
    pair = _raw_pair()
    pair.dialer.send_raw(limit.to_bytes(4, "big") + bytes([answer.TYPE]))
    with pytest.raises(RemoteProtocolError, match="answers no request"):
        pair.deliver_to_listener()


def test_a_manifest_answer_does_not_answer_a_page_request() -> None:
    pair = _raw_pair()
    pair.listener.send(ANSWERS[1][0])
    pair.deliver_to_dialer()
    pair.dialer.send_raw(encode_frame(ANSWERS[0][1]))
    with pytest.raises(RemoteProtocolError, match="answers no request"):
        pair.deliver_to_listener()


def test_an_answer_with_neither_a_body_nor_an_error_is_refused_where_it_is_made() -> None:
    """It would encode error 0, which every receiver refuses as malformed."""
    with pytest.raises(ValueError, match="body or an error"):
        encode_message(Finality(request_id=1, certificate=None))
    with pytest.raises(ValueError, match="body or an error"):
        encode_message(TxProofAnswer(request_id=1, block_id=None, transaction=None, proof=None))
    with pytest.raises(ValueError, match="manifest or an error"):
        SnapshotManifestAnswer(request_id=1, manifest=None)
