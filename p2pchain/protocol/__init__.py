"""The peer protocol as sans-IO state machines: bytes and events in, bytes and actions out.

`PeerConnection` runs one link (Noise channel, Hello, framing, pings) with every state change in
`TRANSITIONS`; `GossipRouter` and `SyncManager` decide what to send and what to import; scoring,
rate limits, quotas and admission bound what a peer can make us do. No trio, no clock, no
randomness of their own: time, nonces and keys are arguments (docs/protocol.md).
"""

from p2pchain.protocol.admission import PendingSlots as PendingSlots
from p2pchain.protocol.admission import check_inbound as check_inbound
from p2pchain.protocol.connection import NEED_DATA as NEED_DATA
from p2pchain.protocol.connection import TRANSITIONS as TRANSITIONS
from p2pchain.protocol.connection import ConnectionClosed as ConnectionClosed
from p2pchain.protocol.connection import ConnectionConfig as ConnectionConfig
from p2pchain.protocol.connection import ConnectionKeys as ConnectionKeys
from p2pchain.protocol.connection import Event as Event
from p2pchain.protocol.connection import FrameToDecode as FrameToDecode
from p2pchain.protocol.connection import HandshakeComplete as HandshakeComplete
from p2pchain.protocol.connection import MessageReceived as MessageReceived
from p2pchain.protocol.connection import NeedData as NeedData
from p2pchain.protocol.connection import PeerConnection as PeerConnection
from p2pchain.protocol.connection import PeerId as PeerId
from p2pchain.protocol.connection import State as State
from p2pchain.protocol.eviction import EvictionCandidate as EvictionCandidate
from p2pchain.protocol.eviction import EvictionParams as EvictionParams
from p2pchain.protocol.eviction import select_peer_to_evict as select_peer_to_evict
from p2pchain.protocol.framing import FrameDecoder as FrameDecoder
from p2pchain.protocol.framing import encode_frame as encode_frame
from p2pchain.protocol.gossip import Deliver as Deliver
from p2pchain.protocol.gossip import GossipAction as GossipAction
from p2pchain.protocol.gossip import GossipMessage as GossipMessage
from p2pchain.protocol.gossip import GossipParams as GossipParams
from p2pchain.protocol.gossip import GossipRouter as GossipRouter
from p2pchain.protocol.gossip import GossipStatistics as GossipStatistics
from p2pchain.protocol.gossip import Send as Send
from p2pchain.protocol.gossip import Validate as Validate
from p2pchain.protocol.gossip import Verdict as Verdict
from p2pchain.protocol.hello import check_hello as check_hello
from p2pchain.protocol.messages import MESSAGE_TYPES as MESSAGE_TYPES
from p2pchain.protocol.messages import PROTOCOL_VERSION as PROTOCOL_VERSION
from p2pchain.protocol.messages import Blocks as Blocks
from p2pchain.protocol.messages import Disconnect as Disconnect
from p2pchain.protocol.messages import DisconnectReason as DisconnectReason
from p2pchain.protocol.messages import GetBlocksById as GetBlocksById
from p2pchain.protocol.messages import GetBlocksByRange as GetBlocksByRange
from p2pchain.protocol.messages import GetPeers as GetPeers
from p2pchain.protocol.messages import Graft as Graft
from p2pchain.protocol.messages import Hello as Hello
from p2pchain.protocol.messages import IHave as IHave
from p2pchain.protocol.messages import IWant as IWant
from p2pchain.protocol.messages import Message as Message
from p2pchain.protocol.messages import Peers as Peers
from p2pchain.protocol.messages import Ping as Ping
from p2pchain.protocol.messages import Pong as Pong
from p2pchain.protocol.messages import Prune as Prune
from p2pchain.protocol.messages import Publish as Publish
from p2pchain.protocol.messages import Status as Status
from p2pchain.protocol.messages import Topic as Topic
from p2pchain.protocol.messages import compute_message_id as compute_message_id
from p2pchain.protocol.messages import decode_message as decode_message
from p2pchain.protocol.messages import encode_message as encode_message
from p2pchain.protocol.noise import NoiseSession as NoiseSession
from p2pchain.protocol.quota import Quota as Quota
from p2pchain.protocol.quota import QuotaPool as QuotaPool
from p2pchain.protocol.ratelimit import Budget as Budget
from p2pchain.protocol.ratelimit import RateLimiter as RateLimiter
from p2pchain.protocol.ratelimit import RateLimits as RateLimits
from p2pchain.protocol.scoring import BanEntry as BanEntry
from p2pchain.protocol.scoring import BanKind as BanKind
from p2pchain.protocol.scoring import BanList as BanList
from p2pchain.protocol.scoring import Offence as Offence
from p2pchain.protocol.scoring import PeerScores as PeerScores
from p2pchain.protocol.scoring import Penalize as Penalize
from p2pchain.protocol.scoring import ScoringParams as ScoringParams
from p2pchain.protocol.sync import ChainIndex as ChainIndex
from p2pchain.protocol.sync import ChainReader as ChainReader
from p2pchain.protocol.sync import Import as Import
from p2pchain.protocol.sync import SyncAction as SyncAction
from p2pchain.protocol.sync import SyncManager as SyncManager
from p2pchain.protocol.sync import SyncParams as SyncParams
from p2pchain.protocol.sync import SyncStatistics as SyncStatistics
from p2pchain.protocol.sync import bounded_answer as bounded_answer
from p2pchain.protocol.sync import requested_block_ids as requested_block_ids
from p2pchain.protocol.sync import serve_blocks as serve_blocks

__all__ = [
    "MESSAGE_TYPES",
    "NEED_DATA",
    "PROTOCOL_VERSION",
    "TRANSITIONS",
    "BanEntry",
    "BanKind",
    "BanList",
    "Blocks",
    "Budget",
    "ChainIndex",
    "ChainReader",
    "ConnectionClosed",
    "ConnectionConfig",
    "ConnectionKeys",
    "Deliver",
    "Disconnect",
    "DisconnectReason",
    "Event",
    "EvictionCandidate",
    "EvictionParams",
    "FrameDecoder",
    "FrameToDecode",
    "GetBlocksById",
    "GetBlocksByRange",
    "GetPeers",
    "GossipAction",
    "GossipMessage",
    "GossipParams",
    "GossipRouter",
    "GossipStatistics",
    "Graft",
    "HandshakeComplete",
    "Hello",
    "IHave",
    "IWant",
    "Import",
    "Message",
    "MessageReceived",
    "NeedData",
    "NoiseSession",
    "Offence",
    "PeerConnection",
    "PeerId",
    "PeerScores",
    "Peers",
    "Penalize",
    "PendingSlots",
    "Ping",
    "Pong",
    "Prune",
    "Publish",
    "Quota",
    "QuotaPool",
    "RateLimiter",
    "RateLimits",
    "ScoringParams",
    "Send",
    "State",
    "Status",
    "SyncAction",
    "SyncManager",
    "SyncParams",
    "SyncStatistics",
    "Topic",
    "Validate",
    "Verdict",
    "bounded_answer",
    "check_hello",
    "check_inbound",
    "compute_message_id",
    "decode_message",
    "encode_frame",
    "encode_message",
    "requested_block_ids",
    "select_peer_to_evict",
    "serve_blocks",
]
