"""Two `PeerConnection`s joined by an in-memory link, plus deterministic keys and hellos.

The pair moves bytes only when a test asks (`deliver_to_listener`, `deliver_to_dialer`,
`exchange`), so sans-IO tests and Hypothesis state machines control every interleaving without
sockets or a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.snapshot import (
    SUBTREES,
    AssetRecord,
    GovernanceRecord,
    OutputRecord,
    SnapshotManifest,
    ValidatorsRecord,
    encode_record,
)
from p2pchain.ledger.trie import EMPTY_ROOT
from p2pchain.ledger.types import BlockId, Epoch, Height, TxId
from p2pchain.ledger.vote import Checkpoint
from p2pchain.protocol.connection import (
    NEED_DATA,
    ConnectionConfig,
    ConnectionKeys,
    Event,
    PeerConnection,
)
from p2pchain.protocol.messages import (
    MAX_ADDRESS_BYTES,
    MAX_BLOCKS_PER_REQUEST,
    MAX_DETAIL_BYTES,
    MAX_LISTEN_ADDRESSES,
    MESSAGE_ID_BYTES,
    PROTOCOL_VERSION,
    Blocks,
    Disconnect,
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
    Graft,
    Hello,
    IHave,
    IWant,
    LightError,
    Message,
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
)
from p2pchain.testing.strategies import (
    anchor_stakes,
    asset_infos,
    blocks,
    checkpoints,
    finality_certificates,
    hashes,
    inclusion_proofs,
    outpoints,
    state_proofs,
    state_queries,
    transactions,
    tx_outputs,
    uint64s,
)

TEST_CHAIN_ID = 1337
TEST_GENESIS = BlockId(sha256(b"p2pchain test genesis"))
DEFAULT_CONFIG = ConnectionConfig()


def connection_keys(seed: int, connection: int = 0) -> ConnectionKeys:
    """Deterministic keys: identity and Noise static key from `seed`, ephemeral per connection."""
    base = seed.to_bytes(8, "big")
    return ConnectionKeys(
        identity=SecretKey.from_entropy(sha256(b"identity" + base)),
        noise_static=sha256(b"noise-static" + base),
        noise_ephemeral=sha256(b"noise-ephemeral" + base + connection.to_bytes(8, "big")),
    )


def make_hello(
    identity: SecretKey,
    *,
    chain_id: int = TEST_CHAIN_ID,
    genesis: BlockId = TEST_GENESIS,
    protocol_version: int = PROTOCOL_VERSION,
    listen_addresses: tuple[bytes, ...] = (),
) -> Hello:
    """A Hello for a node at genesis."""
    return Hello(
        protocol_version=protocol_version,
        chain_id=chain_id,
        genesis=genesis,
        node_key=identity.public_key,
        listen_addresses=listen_addresses,
        head=genesis,
        head_height=Height(0),
        finalized=Checkpoint(epoch=Epoch(0), block_id=genesis),
    )


def drain_events(conn: PeerConnection) -> list[Event]:
    """Every event `conn` can produce from the bytes it has (may raise RemoteProtocolError)."""
    events: list[Event] = []
    while (event := conn.next_event()) is not NEED_DATA:
        events.append(event)
    return events


@dataclass(kw_only=True)
class Exchange:
    """Events each side saw during `ConnectionPair.exchange`."""

    dialer: list[Event] = field(default_factory=list)
    listener: list[Event] = field(default_factory=list)


class ConnectionPair:
    """A dialer and a listener wired through a fake link (cf. h11's ConnectionPair).

    Args:
        now: clock at creation.
        dialer / listener: ready-made connections; by default honest ones with keys from seeds 1
            and 2 and matching hellos.
    """

    def __init__(
        self,
        *,
        now: float = 0.0,
        dialer: PeerConnection | None = None,
        listener: PeerConnection | None = None,
        config: ConnectionConfig = DEFAULT_CONFIG,
    ) -> None:
        if dialer is None:
            dialer = honest_connection(1, initiator=True, now=now, config=config)
        if listener is None:
            listener = honest_connection(2, initiator=False, now=now, config=config)
        self.dialer = dialer
        self.listener = listener

    def deliver_to_listener(self) -> list[Event]:
        """Move the dialer's pending bytes to the listener; return the listener's events."""
        if data := self.dialer.data_to_send():
            self.listener.receive_data(data)
        return drain_events(self.listener)

    def deliver_to_dialer(self) -> list[Event]:
        """Move the listener's pending bytes to the dialer; return the dialer's events."""
        if data := self.listener.data_to_send():
            self.dialer.receive_data(data)
        return drain_events(self.dialer)

    def exchange(self) -> Exchange:
        """Move bytes both ways until neither side has anything to send."""
        seen = Exchange()
        seen.dialer += drain_events(self.dialer)
        seen.listener += drain_events(self.listener)
        while self.dialer.pending_bytes or self.listener.pending_bytes:
            seen.listener += self.deliver_to_listener()
            seen.dialer += self.deliver_to_dialer()
        return seen

    def handle_timers(self, now: float) -> Exchange:
        """Fire both sides' timers at `now`, then exchange bytes until quiet."""
        self.dialer.handle_timer(now)
        self.listener.handle_timer(now)
        return self.exchange()


def honest_connection(
    seed: int,
    *,
    initiator: bool,
    now: float = 0.0,
    config: ConnectionConfig = DEFAULT_CONFIG,
    chain_id: int = TEST_CHAIN_ID,
    genesis: BlockId = TEST_GENESIS,
) -> PeerConnection:
    """A connection for the node of `seed` whose Hello says it is at `genesis` of `chain_id`."""
    keys = connection_keys(seed)
    return PeerConnection(
        initiator=initiator,
        keys=keys,
        hello=make_hello(keys.identity, chain_id=chain_id, genesis=genesis),
        now=now,
        config=config,
    )


class RawConnection(PeerConnection):
    """A connection that can also put arbitrary bytes into its encrypted stream (for junk tests)."""

    @property
    def is_channel_up(self) -> bool:
        """True once the Noise handshake is done on this side, so `send_raw` can encrypt."""
        return self._noise.is_complete

    def send_raw(self, plaintext: bytes) -> None:
        """Encrypt `plaintext` as stream bytes, bypassing framing and state checks."""
        self._write_plaintext(plaintext)


def message_strategies() -> dict[type[Message], SearchStrategy[Message]]:
    """A strategy per message type, with arbitrary field values within the wire limits."""
    ids = st.binary(min_size=MESSAGE_ID_BYTES, max_size=MESSAGE_ID_BYTES)
    topics = st.sampled_from(Topic)
    small = st.integers(min_value=0, max_value=2**64 - 1)
    block_ids = hashes().map(BlockId)
    addresses = st.binary(max_size=MAX_ADDRESS_BYTES)
    return {
        Hello: st.builds(
            Hello,
            protocol_version=small,
            chain_id=small,
            genesis=block_ids,
            node_key=hashes(),
            listen_addresses=st.lists(addresses, max_size=MAX_LISTEN_ADDRESSES).map(tuple),
            head=block_ids,
            head_height=small,
            finalized=checkpoints(),
        ),
        Disconnect: st.builds(
            Disconnect,
            reason=st.sampled_from(DisconnectReason),
            detail=st.binary(max_size=MAX_DETAIL_BYTES),
        ),
        Ping: st.builds(Ping, nonce=small),
        Pong: st.builds(Pong, nonce=small),
        Status: st.builds(
            Status, head=block_ids, head_height=small, head_slot=small, finalized=checkpoints()
        ),
        Publish: st.builds(Publish, topic=topics, data=st.binary(max_size=2_000)),
        IHave: st.builds(IHave, topic=topics, message_ids=st.lists(ids, max_size=5).map(tuple)),
        IWant: st.builds(IWant, message_ids=st.lists(ids, max_size=5).map(tuple)),
        Graft: st.builds(Graft, topic=topics),
        Prune: st.builds(
            Prune,
            topic=topics,
            backoff_s=st.integers(min_value=0, max_value=86_400),
            peers=st.lists(addresses, max_size=3).map(tuple),
        ),
        GetBlocksByRange: st.builds(
            GetBlocksByRange,
            request_id=small,
            start_height=small,
            count=st.integers(min_value=0, max_value=MAX_BLOCKS_PER_REQUEST),
        ),
        GetBlocksById: st.builds(
            GetBlocksById, request_id=small, block_ids=st.lists(block_ids, max_size=3).map(tuple)
        ),
        Blocks: st.builds(
            Blocks,
            request_id=small,
            blocks=st.lists(blocks(max_txs=1, max_votes=1), max_size=1).map(tuple),
        ),
        GetPeers: st.just(GetPeers()),
        Peers: st.builds(Peers, addresses=st.lists(addresses, max_size=3).map(tuple)),
        GetFinality: st.builds(GetFinality, request_id=small, trusted=checkpoints()),
        Finality: st.one_of(
            st.builds(Finality, request_id=small, certificate=finality_certificates()),
            st.builds(
                Finality, request_id=small, certificate=st.none(), error=st.sampled_from(LightError)
            ),
        ),
        GetStateProof: st.builds(
            GetStateProof, request_id=small, block_id=block_ids, query=state_queries()
        ),
        StateProofAnswer: st.one_of(
            st.builds(StateProofAnswer, request_id=small, proof=state_proofs()),
            st.builds(
                StateProofAnswer,
                request_id=small,
                proof=st.none(),
                error=st.sampled_from(LightError),
            ),
        ),
        GetTxProof: st.builds(GetTxProof, request_id=small, txid=hashes().map(TxId)),
        TxProofAnswer: st.one_of(
            st.builds(
                TxProofAnswer,
                request_id=small,
                block_id=block_ids,
                transaction=transactions(),
                proof=inclusion_proofs(),
            ),
            st.builds(
                TxProofAnswer,
                request_id=small,
                block_id=st.none(),
                transaction=st.none(),
                proof=st.none(),
                error=st.sampled_from(LightError),
            ),
        ),
        **_snapshot_messages(),
    }


def snapshot_manifests() -> SearchStrategy[SnapshotManifest]:
    """Manifests with arbitrary entries (not necessarily of any state): a few subtrees of any
    count and hash, the others empty."""
    return st.builds(
        lambda block_id, state_root, filled: SnapshotManifest(
            block_id=block_id,
            state_root=state_root,
            entries=tuple(filled.get(i, (0, EMPTY_ROOT)) for i in range(SUBTREES)),
        ),
        hashes().map(BlockId),
        hashes(),
        st.dictionaries(
            st.integers(min_value=0, max_value=SUBTREES - 1),
            st.tuples(uint64s(), hashes()),
            max_size=4,
        ),
    )


def encoded_snapshot_records() -> SearchStrategy[bytes]:
    """Encodings of records of every kind, with arbitrary contents."""
    return st.one_of(
        st.builds(OutputRecord, outpoint=outpoints(), output=tx_outputs()),
        st.builds(AssetRecord, info=asset_infos()),
        st.builds(ValidatorsRecord, root=hashes()),
        st.builds(GovernanceRecord, state=st.binary(max_size=300)),
    ).map(encode_record)


def _snapshot_messages() -> dict[type[Message], SearchStrategy[Message]]:
    small = uint64s()
    block_ids = hashes().map(BlockId)
    errors = st.sampled_from(LightError)
    return {
        GetSnapshotManifest: st.builds(GetSnapshotManifest, request_id=small, block_id=block_ids),
        SnapshotManifestAnswer: st.one_of(
            st.builds(
                SnapshotManifestAnswer,
                request_id=small,
                manifest=snapshot_manifests(),
                anchors=st.lists(anchor_stakes(), max_size=2).map(tuple),
            ),
            st.builds(SnapshotManifestAnswer, request_id=small, manifest=st.none(), error=errors),
        ),
        GetSnapshotPage: st.builds(
            GetSnapshotPage,
            request_id=small,
            block_id=block_ids,
            subtree=st.integers(min_value=0, max_value=SUBTREES - 1),
            after=st.sampled_from([0, 32, 64]).flatmap(
                lambda size: st.binary(min_size=size, max_size=size)
            ),
        ),
        SnapshotPageAnswer: st.one_of(
            st.builds(
                SnapshotPageAnswer,
                request_id=small,
                records=st.lists(encoded_snapshot_records(), max_size=4).map(tuple),
                done=st.booleans(),
            ),
            st.builds(SnapshotPageAnswer, request_id=small, error=errors),
        ),
    }


_CONNECTION_MESSAGES = (Hello, Disconnect, Ping, Pong)


def link_messages() -> SearchStrategy[Message]:
    """Messages the layer above may send on an ACTIVE link (everything but Hello, Disconnect,
    Ping and Pong, which the connection handles itself)."""
    return st.one_of(
        [
            strategy
            for cls, strategy in message_strategies().items()
            if cls not in _CONNECTION_MESSAGES
        ]
    )


def wire_messages() -> SearchStrategy[Message]:
    """Messages of every type, including the ones the connection writes itself: what a decoder
    may meet on the wire."""
    return st.one_of(list(message_strategies().values()))
