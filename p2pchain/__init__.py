"""p2pchain: a proof-of-stake UTXO value-transfer chain with a trio gossip network.

Embed a node with ``async with p2pchain.open_node(config) as node:``; start a local multi-node
network for tests and examples with ``async with p2pchain.testnet(4) as net:``.
"""

from typing import TYPE_CHECKING

from p2pchain import errors as errors
from p2pchain._version import __version__ as __version__
from p2pchain.node import EventKind as EventKind
from p2pchain.node import Node as Node
from p2pchain.node import NodeConfig as NodeConfig
from p2pchain.node import NodeLimits as NodeLimits
from p2pchain.node import TxStatus as TxStatus
from p2pchain.node import open_node as open_node
from p2pchain.params import ChainParams as ChainParams

if TYPE_CHECKING:
    from p2pchain.testing.testnet import testnet as testnet

__all__ = [
    "ChainParams",
    "EventKind",
    "Node",
    "NodeConfig",
    "NodeLimits",
    "TxStatus",
    "__version__",
    "errors",
    "open_node",
    "testnet",
]


def __getattr__(name: str) -> object:
    """`testnet` lives in the test kit, which is imported only when it is asked for."""
    if name == "testnet":
        from p2pchain.testing.testnet import testnet

        return testnet
    raise AttributeError(f"module 'p2pchain' has no attribute {name!r}")
