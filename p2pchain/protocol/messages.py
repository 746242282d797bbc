"""Every peer-to-peer message: frozen wire objects, their type ids and per-type size limits.

A frame carries one message: ``type (1 byte) || RLP payload``. The registry `MESSAGE_TYPES` maps
type ids to classes; each class's `MAX_PAYLOAD_BYTES` is the hard limit of its type (the
module's `MAX_PAYLOAD_BYTES` maps type ids to them), which the frame decoder checks before it
buffers a body (docs/protocol.md, Network section).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Final, Self

from p2pchain.consensus.anchor import MAX_ANCHOR_POINTS
from p2pchain.consensus.light import MAX_CERTIFICATE_HEADERS, AnchorStakes, FinalityCertificate
from p2pchain.errors import DecodeError
from p2pchain.ledger.block import Block, InclusionProof, read_block
from p2pchain.ledger.crypto import sha256
from p2pchain.ledger.encoding import (
    COST_ALLOWANCE,
    RLPItem,
    charge,
    decode_item,
    decode_span,
    encode_item,
    item_header,
    list_payload,
    read_bytes,
    read_fixed,
    read_list,
    read_uint,
    uint_bytes,
    wrap_list,
)
from p2pchain.ledger.header import BlockHeader
from p2pchain.ledger.proofs import StateProof, StateQuery, decode_proof, encode_proof
from p2pchain.ledger.snapshot import (
    MAX_GOVERNANCE_STATE_BYTES,
    SORT_KEY_BYTES,
    SUBTREES,
    SnapshotManifest,
)
from p2pchain.ledger.tx import Transaction
from p2pchain.ledger.types import BlockId, Height, Slot, TxId
from p2pchain.ledger.vote import Checkpoint
from p2pchain.params import DEFAULT_MAX_BLOCK_BYTES

PROTOCOL_VERSION: Final = 2
MESSAGE_ID_BYTES: Final = 20
MAX_ADDRESS_BYTES: Final = 128
MAX_LISTEN_ADDRESSES: Final = 8
MAX_IHAVE_IDS: Final = 5_000
MAX_IWANT_IDS: Final = 5_000
MAX_PX_PEERS: Final = 16
MAX_PEERS_IN_RESPONSE: Final = 64
MAX_BLOCKS_PER_REQUEST: Final = 128
MAX_BLOCK_IDS_PER_REQUEST: Final = 64
MAX_DETAIL_BYTES: Final = 256
MAX_GOSSIP_DATA_BYTES: Final = DEFAULT_MAX_BLOCK_BYTES + DEFAULT_MAX_BLOCK_BYTES // 20
"""The largest gossiped object: a block of the default `ChainParams.max_block_bytes` plus 5%,
so that a block a little over the limit still arrives whole and is judged (block-too-large)."""
MAX_BLOCKS_RESPONSE_BYTES: Final = 16 * 1024 * 1024


class Topic(IntEnum):
    """Gossip topics; the payload is the canonical encoding of one object of that kind."""

    TRANSACTION = 0
    BLOCK = 1
    VOTE = 2
    EVIDENCE = 3
    OFFER = 4


class DisconnectReason(IntEnum):
    """Why a connection was closed; sent to the peer in `Disconnect` and logged."""

    REQUESTED = 0
    PROTOCOL_ERROR = 1
    WRONG_CHAIN = 2
    WRONG_GENESIS = 3
    BAD_IDENTITY = 4
    SELF_CONNECTION = 5
    DUPLICATE_CONNECTION = 6
    HANDSHAKE_TIMEOUT = 7
    PING_TIMEOUT = 8
    BANNED = 9
    TOO_MANY_PEERS = 10
    INCOMPATIBLE_VERSION = 11
    SLOW_PEER = 12
    LOW_SCORE = 13
    SHUTDOWN = 14
    INTERNAL_ERROR = 15
    """Our own code failed while handling the peer's input: a bug of ours, not a verdict."""


def _read_address(item: RLPItem, name: str) -> bytes:
    return read_bytes(item, name, MAX_ADDRESS_BYTES)


def _read_ids(item: RLPItem, name: str, max_length: int) -> tuple[bytes, ...]:
    return tuple(
        read_fixed(x, f"{name}[]", MESSAGE_ID_BYTES)
        for x in read_list(item, name, max_length=max_length)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """First message inside the secure channel, both ways: who we are and where our chain is."""

    TYPE: ClassVar[int] = 1
    MAX_PAYLOAD_BYTES: ClassVar[int] = 4_096
    protocol_version: int
    chain_id: int
    genesis: BlockId
    node_key: bytes
    listen_addresses: tuple[bytes, ...]
    head: BlockId
    head_height: Height
    finalized: Checkpoint

    def to_rlp(self) -> RLPItem:
        return [
            uint_bytes(self.protocol_version),
            uint_bytes(self.chain_id),
            self.genesis,
            self.node_key,
            list(self.listen_addresses),
            self.head,
            uint_bytes(self.head_height),
            self.finalized.to_rlp(),
        ]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        f = read_list(item, "hello", length=8)
        return cls(
            protocol_version=read_uint(f[0], "hello.protocol_version"),
            chain_id=read_uint(f[1], "hello.chain_id"),
            genesis=BlockId(read_fixed(f[2], "hello.genesis", 32)),
            node_key=read_fixed(f[3], "hello.node_key", 32),
            listen_addresses=tuple(
                _read_address(x, "hello.listen_addresses[]")
                for x in read_list(f[4], "hello.listen_addresses", max_length=MAX_LISTEN_ADDRESSES)
            ),
            head=BlockId(read_fixed(f[5], "hello.head", 32)),
            head_height=Height(read_uint(f[6], "hello.head_height")),
            finalized=Checkpoint.from_rlp(f[7]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnect:
    """Last message before closing: a reason code and a short human-readable detail."""

    TYPE: ClassVar[int] = 2
    MAX_PAYLOAD_BYTES: ClassVar[int] = 512
    reason: DisconnectReason
    detail: bytes = b""

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(self.reason), self.detail]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        f = read_list(item, "disconnect", length=2)
        code = read_uint(f[0], "disconnect.reason", max_value=max(DisconnectReason))
        return cls(
            reason=DisconnectReason(code),
            detail=read_bytes(f[1], "disconnect.detail", MAX_DETAIL_BYTES),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """Liveness probe; the peer must answer with a `Pong` carrying the same nonce."""

    TYPE: ClassVar[int] = 3
    MAX_PAYLOAD_BYTES: ClassVar[int] = 16
    nonce: int

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(self.nonce)]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        (nonce,) = read_list(item, "ping", length=1)
        return cls(nonce=read_uint(nonce, "ping.nonce"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong:
    """Answer to `Ping`."""

    TYPE: ClassVar[int] = 4
    MAX_PAYLOAD_BYTES: ClassVar[int] = 16
    nonce: int

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(self.nonce)]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        (nonce,) = read_list(item, "pong", length=1)
        return cls(nonce=read_uint(nonce, "pong.nonce"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """The sender's current head and finalized checkpoint (sent after Hello and on change)."""

    TYPE: ClassVar[int] = 5
    MAX_PAYLOAD_BYTES: ClassVar[int] = 256
    head: BlockId
    head_height: Height
    head_slot: Slot
    finalized: Checkpoint

    def to_rlp(self) -> RLPItem:
        return [
            self.head,
            uint_bytes(self.head_height),
            uint_bytes(self.head_slot),
            self.finalized.to_rlp(),
        ]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        f = read_list(item, "status", length=4)
        return cls(
            head=BlockId(read_fixed(f[0], "status.head", 32)),
            head_height=Height(read_uint(f[1], "status.head_height")),
            head_slot=Slot(read_uint(f[2], "status.head_slot")),
            finalized=Checkpoint.from_rlp(f[3]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Publish:
    """A full gossip message: the canonical encoding of one object of `topic`."""

    TYPE: ClassVar[int] = 10
    MAX_PAYLOAD_BYTES: ClassVar[int] = MAX_GOSSIP_DATA_BYTES + 16
    topic: Topic
    data: bytes

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(self.topic), self.data]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        f = read_list(item, "publish", length=2)
        return cls(
            topic=Topic(read_uint(f[0], "publish.topic", max_value=max(Topic))),
            data=read_bytes(f[1], "publish.data", MAX_GOSSIP_DATA_BYTES),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class IHave:
    """Lazy gossip: ids of messages of `topic` the sender has (20-byte message ids)."""

    TYPE: ClassVar[int] = 11
    MAX_PAYLOAD_BYTES: ClassVar[int] = 8 + MAX_IHAVE_IDS * (MESSAGE_ID_BYTES + 1) + 8
    topic: Topic
    message_ids: tuple[bytes, ...]

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(self.topic), list(self.message_ids)]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        f = read_list(item, "ihave", length=2)
        return cls(
            topic=Topic(read_uint(f[0], "ihave.topic", max_value=max(Topic))),
            message_ids=_read_ids(f[1], "ihave.message_ids", MAX_IHAVE_IDS),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class IWant:
    """Request for full messages announced by `IHave`."""

    TYPE: ClassVar[int] = 12
    MAX_PAYLOAD_BYTES: ClassVar[int] = MAX_IWANT_IDS * (MESSAGE_ID_BYTES + 1) + 8
    message_ids: tuple[bytes, ...]

    def to_rlp(self) -> RLPItem:
        return [list(self.message_ids)]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        (ids,) = read_list(item, "iwant", length=1)
        return cls(message_ids=_read_ids(ids, "iwant.message_ids", MAX_IWANT_IDS))


@dataclass(frozen=True, slots=True, kw_only=True)
class Graft:
    """Ask the receiver to add the sender to its mesh for `topic`."""

    TYPE: ClassVar[int] = 13
    MAX_PAYLOAD_BYTES: ClassVar[int] = 16
    topic: Topic

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(self.topic)]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        (topic,) = read_list(item, "graft", length=1)
        return cls(topic=Topic(read_uint(topic, "graft.topic", max_value=max(Topic))))


@dataclass(frozen=True, slots=True, kw_only=True)
class Prune:
    """Leave the receiver's mesh for `topic`; don't re-graft for `backoff_s`; other peers (PX)."""

    TYPE: ClassVar[int] = 14
    MAX_PAYLOAD_BYTES: ClassVar[int] = 32 + MAX_PX_PEERS * (MAX_ADDRESS_BYTES + 2)
    topic: Topic
    backoff_s: int
    peers: tuple[bytes, ...] = ()

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(self.topic), uint_bytes(self.backoff_s), list(self.peers)]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        f = read_list(item, "prune", length=3)
        return cls(
            topic=Topic(read_uint(f[0], "prune.topic", max_value=max(Topic))),
            backoff_s=read_uint(f[1], "prune.backoff_s", max_value=86_400),
            peers=tuple(
                _read_address(x, "prune.peers[]")
                for x in read_list(f[2], "prune.peers", max_length=MAX_PX_PEERS)
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class GetBlocksByRange:
    """Request up to `count` canonical blocks from `start_height` upward."""

    TYPE: ClassVar[int] = 20
    MAX_PAYLOAD_BYTES: ClassVar[int] = 64
    request_id: int
    start_height: Height
    count: int

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(self.request_id), uint_bytes(self.start_height), uint_bytes(self.count)]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        f = read_list(item, "get_blocks_by_range", length=3)
        return cls(
            request_id=read_uint(f[0], "get_blocks_by_range.request_id"),
            start_height=Height(read_uint(f[1], "get_blocks_by_range.start_height")),
            count=read_uint(f[2], "get_blocks_by_range.count", max_value=MAX_BLOCKS_PER_REQUEST),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class GetBlocksById:
    """Request specific blocks (used to fetch unknown parents)."""

    TYPE: ClassVar[int] = 21
    MAX_PAYLOAD_BYTES: ClassVar[int] = 16 + MAX_BLOCK_IDS_PER_REQUEST * 33 + 8
    request_id: int
    block_ids: tuple[BlockId, ...]

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(self.request_id), list(self.block_ids)]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        f = read_list(item, "get_blocks_by_id", length=2)
        ids = read_list(f[1], "get_blocks_by_id.block_ids", max_length=MAX_BLOCK_IDS_PER_REQUEST)
        return cls(
            request_id=read_uint(f[0], "get_blocks_by_id.request_id"),
            block_ids=tuple(
                BlockId(read_fixed(x, "get_blocks_by_id.block_ids[]", 32)) for x in ids
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Blocks:
    """Response to a block request: blocks in ascending height order (maybe fewer than asked)."""

    TYPE: ClassVar[int] = 22
    MAX_PAYLOAD_BYTES: ClassVar[int] = MAX_BLOCKS_RESPONSE_BYTES
    request_id: int
    blocks: tuple[Block, ...]

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(self.request_id), [block.to_rlp() for block in self.blocks]]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        f = read_list(item, "blocks", length=2)
        items = read_list(f[1], "blocks.blocks", max_length=MAX_BLOCKS_PER_REQUEST)
        return cls(
            request_id=read_uint(f[0], "blocks.request_id"),
            blocks=tuple(Block.from_rlp(x) for x in items),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class GetPeers:
    """Peer exchange request."""

    TYPE: ClassVar[int] = 30
    MAX_PAYLOAD_BYTES: ClassVar[int] = 8

    def to_rlp(self) -> RLPItem:
        return []

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        read_list(item, "get_peers", length=0)
        return cls()


@dataclass(frozen=True, slots=True, kw_only=True)
class Peers:
    """Peer exchange response: dialable addresses such as ``tcp://127.0.0.1:9000``."""

    TYPE: ClassVar[int] = 31
    MAX_PAYLOAD_BYTES: ClassVar[int] = 8 + MAX_PEERS_IN_RESPONSE * (MAX_ADDRESS_BYTES + 2)
    addresses: tuple[bytes, ...]

    def to_rlp(self) -> RLPItem:
        return [list(self.addresses)]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        (addresses,) = read_list(item, "peers", length=1)
        return cls(
            addresses=tuple(
                _read_address(x, "peers.addresses[]")
                for x in read_list(addresses, "peers.addresses", max_length=MAX_PEERS_IN_RESPONSE)
            )
        )


MAX_LIGHT_RESPONSE_BYTES: Final = 8 * 1024 * 1024
"""Largest answer to a light client's request (a finality certificate of
`MAX_CERTIFICATE_HEADERS` headers, or a proof of `MAX_PROOF_OUTPUTS` outputs, fits)."""


class LightError(IntEnum):
    """Why a light request got no answer: nothing newer is final here, the block is not one we
    hold the state of, the proof would pass the protocol's limits, no such transaction is
    final here, or we cannot certify from that checkpoint (unknown to us, or older than the
    votes and stake paths we keep); and for snapshots, we hold no snapshot of that block (not
    yet prepared, or dropped for a newer finalized one)."""

    NOTHING_NEWER = 1
    UNKNOWN_BLOCK = 2
    TOO_LARGE = 3
    NOT_FOUND = 4
    CANNOT_CERTIFY = 5
    SNAPSHOT_UNAVAILABLE = 6


def _write_answer(request_id: int, body: RLPItem | None, error: LightError | None) -> RLPItem:
    """The envelope `_read_answer` reads: the body, or `[]` and the error code.

    Raises:
        ValueError: neither a body nor an error (it would encode error 0, which every
            receiver refuses as malformed: a sender's bug, caught where it is made).
    """
    if body is None:
        if error is None:
            raise ValueError("a light answer carries a body or an error")
        return [uint_bytes(request_id), [], uint_bytes(error)]
    return [uint_bytes(request_id), body, b""]


def _read_answer(item: RLPItem, name: str) -> tuple[int, RLPItem | None, LightError | None]:
    """``[request_id, body, ""]`` or ``[request_id, [], error]``: the envelope of every light
    answer, as (request id, body or None, error or None)."""
    request_id_item, body, error = read_list(item, name, length=3)
    request_id = read_uint(request_id_item, f"{name}.request_id")
    if body == []:
        try:
            return request_id, None, LightError(read_uint(error, f"{name}.error"))
        except ValueError as exc:
            raise DecodeError(f"{name}.error: unknown error code") from exc
    if error != b"":
        raise DecodeError(f"{name}: an answer and an error")
    return request_id, body, None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetFinality:
    """A light client asks how to move its finalized checkpoint on from `trusted`."""

    TYPE: ClassVar[int] = 40
    MAX_PAYLOAD_BYTES: ClassVar[int] = 64
    request_id: int
    trusted: Checkpoint

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(self.request_id), self.trusted.to_rlp()]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        f = read_list(item, "get_finality", length=2)
        return cls(
            request_id=read_uint(f[0], "get_finality.request_id"),
            trusted=Checkpoint.from_rlp(f[1]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Finality:
    """The answer: a certificate, or why there is none (`LightError`)."""

    TYPE: ClassVar[int] = 41
    MAX_PAYLOAD_BYTES: ClassVar[int] = MAX_LIGHT_RESPONSE_BYTES
    request_id: int
    certificate: FinalityCertificate | None
    error: LightError | None = None

    def to_rlp(self) -> RLPItem:
        body = None if self.certificate is None else self.certificate.to_rlp()
        return _write_answer(self.request_id, body, self.error)

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        request_id, body, error = _read_answer(item, "finality")
        if body is None:
            return cls(request_id=request_id, certificate=None, error=error)
        return cls(request_id=request_id, certificate=FinalityCertificate.from_rlp(body))


@dataclass(frozen=True, slots=True, kw_only=True)
class GetStateProof:
    """A light client asks for a proof of `query` in the state after `block_id`."""

    TYPE: ClassVar[int] = 42
    MAX_PAYLOAD_BYTES: ClassVar[int] = 256
    request_id: int
    block_id: BlockId
    query: StateQuery

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(self.request_id), self.block_id, self.query.to_rlp()]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        f = read_list(item, "get_state_proof", length=3)
        return cls(
            request_id=read_uint(f[0], "get_state_proof.request_id"),
            block_id=BlockId(read_fixed(f[1], "get_state_proof.block_id", 32)),
            query=StateQuery.from_rlp(f[2]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StateProofAnswer:
    """The answer: the proof, or why there is none."""

    TYPE: ClassVar[int] = 43
    MAX_PAYLOAD_BYTES: ClassVar[int] = MAX_LIGHT_RESPONSE_BYTES
    request_id: int
    proof: StateProof | None
    error: LightError | None = None

    def to_rlp(self) -> RLPItem:
        body = None if self.proof is None else encode_proof(self.proof)
        return _write_answer(self.request_id, body, self.error)

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        request_id, body, error = _read_answer(item, "state_proof_answer")
        if body is None:
            return cls(request_id=request_id, proof=None, error=error)
        return cls(request_id=request_id, proof=decode_proof(body))


@dataclass(frozen=True, slots=True, kw_only=True)
class GetTxProof:
    """A light client asks where a transaction is on the finalized chain."""

    TYPE: ClassVar[int] = 44
    MAX_PAYLOAD_BYTES: ClassVar[int] = 64
    request_id: int
    txid: TxId

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(self.request_id), self.txid]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        f = read_list(item, "get_tx_proof", length=2)
        return cls(
            request_id=read_uint(f[0], "get_tx_proof.request_id"),
            txid=TxId(read_fixed(f[1], "get_tx_proof.txid", 32)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TxProofAnswer:
    """The answer: the finalized block holding the transaction, the transaction and its
    branch to the block's body root; or why there is none."""

    TYPE: ClassVar[int] = 45
    MAX_PAYLOAD_BYTES: ClassVar[int] = DEFAULT_MAX_BLOCK_BYTES + 4_096
    request_id: int
    block_id: BlockId | None
    transaction: Transaction | None
    proof: InclusionProof | None
    error: LightError | None = None

    def to_rlp(self) -> RLPItem:
        if self.block_id is None or self.transaction is None or self.proof is None:
            return _write_answer(self.request_id, None, self.error)
        found: RLPItem = [self.block_id, self.transaction.to_rlp(), self.proof.to_rlp()]
        return _write_answer(self.request_id, found, self.error)

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        request_id, body, error = _read_answer(item, "tx_proof_answer")
        if body is None:
            return cls(
                request_id=request_id, block_id=None, transaction=None, proof=None, error=error
            )
        block_id, tx, proof = read_list(body, "tx_proof_answer.found", length=3)
        return cls(
            request_id=request_id,
            block_id=BlockId(read_fixed(block_id, "tx_proof_answer.block_id", 32)),
            transaction=Transaction.from_rlp(tx),
            proof=InclusionProof.from_rlp(proof),
        )


MAX_SNAPSHOT_ANSWER_BYTES: Final = MAX_GOVERNANCE_STATE_BYTES + 4_096
"""Largest `SnapshotPageAnswer`: a page is at most `MAX_SNAPSHOT_PAGE_BYTES` (1 MiB) of
records, or one record larger than that, which only the governance record (up to 4 MiB) can
be; 4 KiB covers the envelope and the records' own headers."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetSnapshotManifest:
    """A new node asks for the manifest of the state after `block_id` (a finalized block)."""

    TYPE: ClassVar[int] = 46
    MAX_PAYLOAD_BYTES: ClassVar[int] = 64
    request_id: int
    block_id: BlockId

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(self.request_id), self.block_id]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        f = read_list(item, "get_snapshot_manifest", length=2)
        return cls(
            request_id=read_uint(f[0], "get_snapshot_manifest.request_id"),
            block_id=BlockId(read_fixed(f[1], "get_snapshot_manifest.block_id", 32)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotManifestAnswer:
    """The answer: the manifest (`ledger.snapshot.check_manifest` checks it against the
    block's state root), the stake tables of the earlier checkpoints a store anchored at that
    block needs (`consensus.anchor.anchor_epochs`; each proven against its own block's state
    root) and the consecutive headers from the oldest of those blocks to the block's parent
    (`consensus.light.verify_anchor_points` checks both); or why there is none."""

    TYPE: ClassVar[int] = 47
    MAX_PAYLOAD_BYTES: ClassVar[int] = MAX_LIGHT_RESPONSE_BYTES
    request_id: int
    manifest: SnapshotManifest | None
    anchors: tuple[AnchorStakes, ...] = ()
    headers: tuple[BlockHeader, ...] = ()
    error: LightError | None = None

    def __post_init__(self) -> None:
        if (self.manifest is None) == (self.error is None):
            raise ValueError("an answer carries a manifest or an error, not both or neither")

    def to_rlp(self) -> RLPItem:
        body: RLPItem | None = None
        if self.manifest is not None:
            body = [
                self.manifest.to_rlp(),
                [anchor.to_rlp() for anchor in self.anchors],
                [header.to_rlp() for header in self.headers],
            ]
        return _write_answer(self.request_id, body, self.error)

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        request_id, body, error = _read_answer(item, "snapshot_manifest_answer")
        if body is None:
            return cls(request_id=request_id, manifest=None, error=error)
        manifest, anchors, headers = read_list(body, "snapshot_manifest_answer.body", length=3)
        return cls(
            request_id=request_id,
            manifest=SnapshotManifest.from_rlp(manifest),
            anchors=tuple(
                AnchorStakes.from_rlp(anchor)
                for anchor in read_list(
                    anchors, "snapshot_manifest_answer.anchors", max_length=MAX_ANCHOR_POINTS
                )
            ),
            headers=tuple(
                BlockHeader.from_rlp(header)
                for header in read_list(
                    headers, "snapshot_manifest_answer.headers", max_length=MAX_CERTIFICATE_HEADERS
                )
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class GetSnapshotPage:
    """The next page of one subtree of the state after `block_id`: its records whose sort key
    is above `after` (empty: from the first)."""

    TYPE: ClassVar[int] = 48
    MAX_PAYLOAD_BYTES: ClassVar[int] = 160
    request_id: int
    block_id: BlockId
    subtree: int
    after: bytes = b""

    def to_rlp(self) -> RLPItem:
        return [uint_bytes(self.request_id), self.block_id, uint_bytes(self.subtree), self.after]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        f = read_list(item, "get_snapshot_page", length=4)
        after = read_bytes(f[3], "get_snapshot_page.after", max(SORT_KEY_BYTES))
        if after and len(after) not in SORT_KEY_BYTES:
            raise DecodeError(f"get_snapshot_page.after: a sort key of {len(after)} bytes")
        return cls(
            request_id=read_uint(f[0], "get_snapshot_page.request_id"),
            block_id=BlockId(read_fixed(f[1], "get_snapshot_page.block_id", 32)),
            subtree=read_uint(f[2], "get_snapshot_page.subtree", max_value=SUBTREES - 1),
            after=after,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotPageAnswer:
    """The answer: encoded records in ascending sort key, and whether they are the subtree's
    last (`done`); or why there are none. The records are carried as byte strings, decoded
    and checked by `ledger.snapshot.SubtreeAssembler.add_page` (a server sends the encodings
    it prepared, unchanged)."""

    TYPE: ClassVar[int] = 49
    MAX_PAYLOAD_BYTES: ClassVar[int] = MAX_SNAPSHOT_ANSWER_BYTES
    request_id: int
    records: tuple[bytes, ...] = ()
    done: bool = False
    error: LightError | None = None

    def __post_init__(self) -> None:
        if self.error is not None and (self.records or self.done):
            raise ValueError("an error answer carries no records")

    def to_rlp(self) -> RLPItem:
        if self.error is not None:
            return _write_answer(self.request_id, None, self.error)
        body: RLPItem = [list(self.records), uint_bytes(self.done)]
        return _write_answer(self.request_id, body, None)

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        request_id, body, error = _read_answer(item, "snapshot_page_answer")
        if body is None:
            return cls(request_id=request_id, error=error)
        records, done = read_list(body, "snapshot_page_answer.page", length=2)
        return cls(
            request_id=request_id,
            records=tuple(
                read_bytes(record, "snapshot_page_answer.records[]", MAX_SNAPSHOT_ANSWER_BYTES)
                for record in read_list(records, "snapshot_page_answer.records")
            ),
            done=bool(read_uint(done, "snapshot_page_answer.done", max_value=1)),
        )


LightRequest = GetFinality | GetStateProof | GetTxProof | GetSnapshotManifest | GetSnapshotPage
"""Requests of clients that hold no chain: light clients and nodes fetching a snapshot."""
LightAnswer = (
    Finality | StateProofAnswer | TxProofAnswer | SnapshotManifestAnswer | SnapshotPageAnswer
)
ANSWER_OF: Final[dict[type[LightRequest], type[LightAnswer]]] = {
    GetFinality: Finality,
    GetStateProof: StateProofAnswer,
    GetTxProof: TxProofAnswer,
    GetSnapshotManifest: SnapshotManifestAnswer,
    GetSnapshotPage: SnapshotPageAnswer,
}
"""The answer type of each request type answered by one typed answer (besides `Blocks`): a
connection accepts an answer only while a request of its kind is open."""


Message = (
    Hello
    | Disconnect
    | Ping
    | Pong
    | Status
    | Publish
    | IHave
    | IWant
    | Graft
    | Prune
    | GetBlocksByRange
    | GetBlocksById
    | Blocks
    | GetPeers
    | Peers
    | GetFinality
    | Finality
    | GetStateProof
    | StateProofAnswer
    | GetTxProof
    | TxProofAnswer
    | GetSnapshotManifest
    | SnapshotManifestAnswer
    | GetSnapshotPage
    | SnapshotPageAnswer
)

MESSAGE_TYPES: Final[dict[int, type[Message]]] = {
    cls.TYPE: cls
    for cls in (
        Hello,
        Disconnect,
        Ping,
        Pong,
        Status,
        Publish,
        IHave,
        IWant,
        Graft,
        Prune,
        GetBlocksByRange,
        GetBlocksById,
        Blocks,
        GetPeers,
        Peers,
        GetFinality,
        Finality,
        GetStateProof,
        StateProofAnswer,
        GetTxProof,
        TxProofAnswer,
        GetSnapshotManifest,
        SnapshotManifestAnswer,
        GetSnapshotPage,
        SnapshotPageAnswer,
    )
}

MAX_PAYLOAD_BYTES: Final[dict[int, int]] = {
    message_type: cls.MAX_PAYLOAD_BYTES for message_type, cls in MESSAGE_TYPES.items()
}
"""Each type's payload limit (its class's `MAX_PAYLOAD_BYTES`), for the frame decoder."""


def encode_message(message: Message) -> bytes:
    """``type byte || RLP payload``: the body of one frame."""
    if isinstance(message, Blocks):  # sync's bulk: reuse each block's cached tx encodings
        blocks = wrap_list(b"".join(block.encoded for block in message.blocks))
        payload = wrap_list(encode_item(uint_bytes(message.request_id)) + blocks)
        return bytes([message.TYPE]) + payload
    return bytes([message.TYPE]) + encode_item(message.to_rlp())


def decode_message(body: bytes) -> Message:
    """Parse one frame body, or raise `DecodeError` (unknown type, oversize, malformed RLP)."""
    if not body:
        raise DecodeError("empty frame")
    cls = MESSAGE_TYPES.get(body[0])
    if cls is None:
        raise DecodeError(f"unknown message type {body[0]}")
    if len(body) - 1 > MAX_PAYLOAD_BYTES[body[0]]:
        raise DecodeError(f"{cls.__name__} payload of {len(body) - 1} bytes exceeds its limit")
    if cls is Publish:
        publish = _read_common_publish(body)
        if publish is not None:
            return publish
    if cls is Blocks:
        return _read_blocks(body)
    return cls.from_rlp(decode_item(body[1:]))


def _read_blocks(body: bytes) -> Blocks:
    """A `Blocks` frame body walked in place, each block read by `read_block`: the same result
    and budget as the generic decoder, without first building every transaction as lists (or
    copying the payload out of the body)."""
    end = len(body)
    budget = end - 1 + COST_ALLOWANCE
    position, stop = list_payload(body, 1, end)
    if stop != end:
        raise DecodeError(f"invalid RLP: {end - stop} trailing bytes")
    budget = charge(budget, 1, 2)
    request_end = item_header(body, position, stop)[2]
    request_id, budget = decode_span(body, position, request_end, 1, budget)
    block_position, blocks_end = list_payload(body, request_end, stop)
    if blocks_end != stop:
        raise DecodeError("blocks: expected 2 fields, got more")
    budget = charge(budget, 1, 0)
    blocks: list[Block] = []
    while block_position < blocks_end:
        if len(blocks) == MAX_BLOCKS_PER_REQUEST:
            raise DecodeError(f"blocks.blocks: more than {MAX_BLOCKS_PER_REQUEST} elements")
        block_end = item_header(body, block_position, blocks_end)[2]
        block, budget = read_block(body, block_position, block_end, 2, budget)
        blocks.append(block)
        block_position = block_end
    charge(budget, 0, len(blocks))
    return Blocks(request_id=read_uint(request_id, "blocks.request_id"), blocks=tuple(blocks))


_TOPIC_BY_ENCODING: Final = {encode_item(uint_bytes(topic))[0]: topic for topic in Topic}


def _read_common_publish(body: bytes) -> Publish | None:
    """A Publish frame body of the usual shape (a topic, then data of 2 bytes or more), read
    in place: most frames are these, and the generic decoder builds lists to get there.
    None for any other shape, which the generic decoder then accepts or refuses, so the two
    paths cannot disagree (`tests/fuzz/test_fuzz_messages.py` checks that they do not)."""
    end = len(body)
    if end < 5:
        return None
    prefix = body[1]
    if 0xC0 <= prefix < 0xF8:
        start = 2
        length = prefix - 0xC0
    elif 0xF8 <= prefix < 0xFB:
        start = 2 + prefix - 0xF7
        if body[2] == 0:
            return None
        length = int.from_bytes(body[2:start], "big")
        if length < 56:
            return None
    else:
        return None
    if start + length != end:  # with `end >= 5`, at least the topic and a data header remain
        return None
    topic = _TOPIC_BY_ENCODING.get(body[start])
    data_prefix = body[start + 1]
    if topic is None or not 0x82 <= data_prefix < 0xC0:
        return None
    if data_prefix < 0xB8:
        data_start = start + 2
        data_length = data_prefix - 0x80
    else:
        data_start = start + 2 + data_prefix - 0xB7
        if data_start > end or body[start + 2] == 0:
            return None
        data_length = int.from_bytes(body[start + 2 : data_start], "big")
        if data_length < 56:
            return None
    if data_start + data_length != end or data_length > MAX_GOSSIP_DATA_BYTES:
        return None
    return Publish(topic=topic, data=body[data_start:end])


def compute_message_id(topic: Topic, data: bytes) -> bytes:
    """20-byte gossip message id: the first bytes of SHA-256(topic byte || data)."""
    return sha256(bytes([topic]) + data)[:MESSAGE_ID_BYTES]
