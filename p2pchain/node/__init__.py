"""The embeddable node: ``async with open_node(config) as node:`` (see docs/api.md)."""

from p2pchain.node.config import NodeConfig as NodeConfig
from p2pchain.node.config import NodeLimits as NodeLimits
from p2pchain.node.events import Event as Event
from p2pchain.node.events import EventKind as EventKind
from p2pchain.node.events import HeadInfo as HeadInfo
from p2pchain.node.events import PeerEvent as PeerEvent
from p2pchain.node.events import ReorgInfo as ReorgInfo
from p2pchain.node.events import Subscription as Subscription
from p2pchain.node.events import TxInfo as TxInfo
from p2pchain.node.events import TxStatus as TxStatus
from p2pchain.node.mempool import MempoolLimits as MempoolLimits
from p2pchain.node.node import ClockStatus as ClockStatus
from p2pchain.node.node import Node as Node
from p2pchain.node.node import NodeInfo as NodeInfo
from p2pchain.node.node import NodeStatistics as NodeStatistics
from p2pchain.node.node import SyncState as SyncState
from p2pchain.node.node import open_node as open_node
from p2pchain.node.offers import BookEntry as BookEntry
from p2pchain.node.offers import OfferBookLimits as OfferBookLimits
from p2pchain.node.storage import Retirement as Retirement

__all__ = [
    "BookEntry",
    "ClockStatus",
    "Event",
    "EventKind",
    "HeadInfo",
    "MempoolLimits",
    "Node",
    "NodeConfig",
    "NodeInfo",
    "NodeLimits",
    "NodeStatistics",
    "OfferBookLimits",
    "PeerEvent",
    "ReorgInfo",
    "Retirement",
    "Subscription",
    "SyncState",
    "TxInfo",
    "TxStatus",
    "open_node",
]
