"""The trio shell of the peer network: transports, the peer driver, the swarm and the service."""

from p2pchain.net.peer import PeerHandle as PeerHandle
from p2pchain.net.peer import PeerLimits as PeerLimits
from p2pchain.net.peer import PeerMisbehaved as PeerMisbehaved
from p2pchain.net.peer import PeerStatistics as PeerStatistics
from p2pchain.net.peer import run_peer as run_peer
from p2pchain.net.service import ImportResult as ImportResult
from p2pchain.net.service import NetworkConfig as NetworkConfig
from p2pchain.net.service import NetworkHost as NetworkHost
from p2pchain.net.service import NetworkService as NetworkService
from p2pchain.net.service import NetworkStatistics as NetworkStatistics
from p2pchain.net.service import Orphan as Orphan
from p2pchain.net.service import open_network as open_network
from p2pchain.net.swarm import InboundMessage as InboundMessage
from p2pchain.net.swarm import PeerConnected as PeerConnected
from p2pchain.net.swarm import PeerDisconnected as PeerDisconnected
from p2pchain.net.swarm import PeerInfo as PeerInfo
from p2pchain.net.swarm import PeerRefused as PeerRefused
from p2pchain.net.swarm import Swarm as Swarm
from p2pchain.net.swarm import SwarmConfig as SwarmConfig
from p2pchain.net.swarm import SwarmEvent as SwarmEvent
from p2pchain.net.swarm import SwarmStatistics as SwarmStatistics
from p2pchain.net.swarm import open_swarm as open_swarm
from p2pchain.net.transports import PeerAddress as PeerAddress
from p2pchain.net.transports import Scheme as Scheme
from p2pchain.net.transports import SocketTransport as SocketTransport
from p2pchain.net.transports import Transport as Transport
from p2pchain.net.transports import WebSocketStream as WebSocketStream
from p2pchain.net.transports import parse_address as parse_address

__all__ = [
    "ImportResult",
    "InboundMessage",
    "NetworkConfig",
    "NetworkHost",
    "NetworkService",
    "NetworkStatistics",
    "Orphan",
    "PeerAddress",
    "PeerConnected",
    "PeerDisconnected",
    "PeerHandle",
    "PeerInfo",
    "PeerLimits",
    "PeerMisbehaved",
    "PeerRefused",
    "PeerStatistics",
    "Scheme",
    "SocketTransport",
    "Swarm",
    "SwarmConfig",
    "SwarmEvent",
    "SwarmStatistics",
    "Transport",
    "WebSocketStream",
    "open_network",
    "open_swarm",
    "parse_address",
    "run_peer",
]
