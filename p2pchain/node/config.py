"""Configuration of an embedded node: what it stores, where it listens, whom it signs for."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from p2pchain.errors import ConfigError
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.genesis import GenesisConfig
from p2pchain.ledger.vote import Checkpoint
from p2pchain.net.swarm import DEFAULT_LISTEN
from p2pchain.net.transports import Transport
from p2pchain.node.mempool import MempoolLimits
from p2pchain.node.offers import OfferBookLimits
from p2pchain.params import ChainParams
from p2pchain.protocol.admission import DEFAULT_TRUSTED_NETWORKS, parse_networks

DATABASE_FILE: Final = "chain.sqlite"
"""The chain database (blocks, UTXO set, fork choice, slashing protection) inside `data_dir`."""
NODE_KEY_FILE: Final = "node.key"
"""The node's network identity inside `data_dir` (32 secret bytes, created on first start)."""
MAX_CLOCK_SKEW_MS: Final = 86_400_000
"""The furthest a dev chain may skew a node's clock off the wall clock (one day)."""
MAX_CLOCK_TIME_MS: Final = 2**53 - 1
"""The latest time a manual clock may be set to: the largest integer every JSON client keeps
exact (its slots still fit the block header's 64 bits)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeLimits:
    """Node-local bounds on everything that peers or subscribers can make the node hold."""

    mempool: MempoolLimits = field(default_factory=MempoolLimits)
    offers: OfferBookLimits = field(default_factory=OfferBookLimits)
    target_outbound: int = 8
    max_inbound: int = 32
    """Inbound peers; a newcomer beyond it evicts one (Bitcoin Core's rules) or is refused."""
    max_inbound_per_address: int = 4
    """Inbound peers from one source address (node keys are free; addresses are not)."""
    max_inbound_per_group: int = 8
    """Inbound peers from one network group (IPv4 /16, IPv6 /32)."""
    max_pending_handshakes: int = 32
    """Inbound connections between TCP accept and the end of Hello, WebSocket upgrades
    included; a newcomer beyond it closes the oldest pending one of the most crowded group."""
    max_pending_per_address: int = 4
    """Pending inbound connections from one source address."""
    handshake_timeout: float = 5.0
    """Seconds from TCP accept (or dial) to the end of the Hello exchange."""
    snapshot_request_timeout: float = 10.0
    """Seconds a peer has to answer one snapshot-sync request (`NodeConfig.snapshot_sync`)
    before it is penalised and the next peer is asked."""
    trusted_networks: tuple[str, ...] = DEFAULT_TRUSTED_NETWORKS
    """Sources exempt from the per-address and per-group limits and address bans: by default
    127.0.0.1 and ::1, which every node of a local testnet shares. () limits loopback too."""
    subscriber_buffer: int = 256
    """Default buffer of one subscription (events not yet read); overflow ends it."""
    event_history: int = 4_096
    """Events kept for resuming subscriptions with ``since=``."""
    event_history_bytes: int = 16 * 1024 * 1024
    """Approximate bytes of those events (transaction events count their transaction's
    encoding); the oldest leave first when either bound is reached."""
    pending_blocks: int = 256
    """Blocks on a known parent waiting for their slot, from all peers together (blocks with
    an unknown parent wait in the network's orphan pool, `SyncParams.max_orphans`)."""
    pending_block_bytes: int = 64 * 1024 * 1024
    """Encoded bytes of the waiting blocks, from all peers together."""
    pending_blocks_per_peer: int = 32
    """Waiting blocks one peer may have us hold; past it, that peer's oldest goes first. When
    the total is full, the oldest block of the peer holding the most bytes goes."""
    pending_block_bytes_per_peer: int = 16 * 1024 * 1024
    """Encoded bytes of the waiting blocks one peer may have us hold (8 blocks of the maximum
    size); a bigger block is not held at all."""
    max_future_slots: int = 2
    """A block or vote at most this many slots ahead of our clock waits for its slot (clock
    disparity); one further ahead is ignored, not held (Ethereum's
    ``MAXIMUM_GOSSIP_CLOCK_DISPARITY`` idea, in slots)."""
    pending_votes: int = 4_096
    """Votes for an unknown head or a future slot held for a retry, from all peers together
    (signature checked first); the peer holding the most goes first when it is full."""
    pending_votes_per_peer: int = 512
    """Waiting votes one peer may have us hold; past it, that peer's oldest goes first."""
    vote_pool: int = 4_096
    """Valid votes kept for inclusion in our next block; the oldest go first."""
    evidence_pool: int = 256
    """Slashing evidence kept for our next block: one per offender with stake to slash."""
    slashing_window_epochs: int = 64
    """Epochs below the finalized one whose signed votes and headers the slashing detector
    remembers (to catch double and surround votes); older ones are forgotten."""
    history_blocks: int = 64
    """Finalized blocks below the finalized checkpoint whose bodies stay in memory; older
    blocks and their transactions are read from storage when asked for."""
    history_bytes: int = 32 * 1024 * 1024
    """Encoded bytes of those finalized bodies in memory (the smaller bound wins)."""
    rejected_history: int = 10_000
    """Rejected transactions whose reason `get_transaction` still reports."""
    signature_cache: int = 100_000
    """Transactions whose verified witnesses are remembered (32-byte keys), so a block's
    transactions already checked in the mempool are not verified again."""
    offload_signatures: int = 8
    """A block with at least this many unverified transaction signatures has them checked in
    a worker thread (fewer are cheaper to check inline than to hand over)."""
    offload_decode_bytes: int = 256 * 1024
    """Peer frames and gossiped blocks longer than this are decoded in a worker thread, so
    that one peer's large message never stalls the event loop (and every other peer)."""
    proposal_budget: float = 0.25
    """Fraction of a slot our proposal may take to select, build, sign and import: its
    transactions are capped at what the cost per transaction of our last proposals (measured
    on the node's clock) fits in it, so that a saturated pool does not make the block late
    for the slot's votes."""
    rebroadcast_slots: int = 8
    """Every this many slots, our clients' submissions still pending are sent to every peer
    again (gossip may have lost them, or no peer was connected when they came)."""
    max_rebroadcast: int = 500
    """Pending submissions sent per peer at a rebroadcast and to each newly connected peer
    (oldest first): what one peer can cost us in sends."""

    def __post_init__(self) -> None:
        values = (
            self.subscriber_buffer,
            self.event_history,
            self.event_history_bytes,
            self.pending_blocks,
            self.pending_block_bytes,
            self.pending_blocks_per_peer,
            self.pending_block_bytes_per_peer,
            self.pending_votes,
            self.pending_votes_per_peer,
            self.vote_pool,
            self.evidence_pool,
            self.history_bytes,
            self.rejected_history,
            self.signature_cache,
            self.offload_signatures,
            self.offload_decode_bytes,
            self.rebroadcast_slots,
        )
        per_source = (
            self.max_inbound_per_address,
            self.max_inbound_per_group,
            self.max_pending_handshakes,
            self.max_pending_per_address,
        )
        naturals = (
            self.target_outbound,
            self.max_inbound,
            self.max_future_slots,
            self.slashing_window_epochs,
            self.history_blocks,
            self.max_rebroadcast,
        )
        if min(values + per_source) < 1 or min(naturals) < 0:
            raise ConfigError("node limits must be positive")
        if not 0 < self.proposal_budget <= 1:
            raise ConfigError("proposal_budget must be a fraction of the slot in (0, 1]")
        if not self.handshake_timeout > 0:
            raise ConfigError("handshake_timeout must be positive")
        if not self.snapshot_request_timeout > 0:
            raise ConfigError("snapshot_request_timeout must be positive")
        if (
            self.pending_blocks_per_peer > self.pending_blocks
            or self.pending_block_bytes_per_peer > self.pending_block_bytes
            or self.pending_votes_per_peer > self.pending_votes
        ):
            raise ConfigError("a per-peer limit must not exceed its total")
        parse_networks(self.trusted_networks)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """Everything `open_node` needs. Only `genesis` is required."""

    genesis: GenesisConfig
    params: ChainParams = field(default_factory=ChainParams)
    data_dir: Path | None = None
    """Where the chain database and node key live; None keeps everything in memory."""
    listen: tuple[str, ...] = DEFAULT_LISTEN
    bootnodes: tuple[str, ...] = ()
    advertise: tuple[str, ...] | None = None
    """Addresses announced to peers (`SwarmConfig.advertise`); None = the listen addresses."""
    public_addr: str | None = None
    """The IP or DNS name peers on other hosts dial (`SwarmConfig.public_addr`)."""
    node_key: SecretKey | None = None
    """Network identity; None = the one saved in `data_dir`, or a fresh one."""
    validator_key: SecretKey | None = None
    """Proposes and votes with this key when set."""
    limits: NodeLimits = field(default_factory=NodeLimits)
    transport: Transport | None = None
    """How peers are reached; None = TCP and WebSocket (tests pass a simulated network's)."""
    clock_offset_ms: int | None = None
    """Unix time in ms = ``trio.current_time() * 1000 + clock_offset_ms``. None = read the
    wall clock once at startup. Simulations fix it so that slots follow trio's MockClock."""
    manual_clock: bool = False
    """Consensus time stands still until `Node.advance_clock` moves it (a dev chain that makes
    blocks on demand); it starts at the later of genesis and the stored head's slot."""
    snapshot_sync: bool = False
    """On a fresh database, start from the state at the newest finalized checkpoint the
    bootnodes prove (docs/snapshot-sync.md) instead of replaying the chain from genesis; the
    history below it is then not held. Ignored once the database holds blocks."""
    trusted_checkpoint: Checkpoint | None = None
    """Where snapshot sync starts trusting: a recent finalized checkpoint known out of band
    (`chain_finalized` on a node you trust, an explorer). None: genesis, which only works while the
    nodes still keep the votes that certify every epoch since (`ARCHIVE_EPOCHS`)."""
    dev_rpc: bool = False
    """Serve the dev_* RPC methods that move this node's clock. Never on a public node: any
    RPC caller could then make it propose early or refuse valid blocks."""
    network_seed: int | None = None
    """Seed of the gossip router's peer choices; None draws one (simulations fix it)."""
    offload_blocking: bool = True
    """Run database writes and large signature batches in worker threads. Simulations under
    trio's MockClock turn it off: its autojump advances virtual time while a thread works."""

    def __post_init__(self) -> None:
        if self.genesis.chain_id != self.params.chain_id:
            raise ConfigError(
                f"genesis chain id {self.genesis.chain_id} != params {self.params.chain_id}"
            )
