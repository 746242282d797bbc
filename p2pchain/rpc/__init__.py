"""JSON-RPC 2.0 over WebSocket and Prometheus metrics for a running node (docs/rpc.md,
docs/metrics.md)::

    async with open_node(config) as node, trio.open_nursery() as nursery:
        server = await nursery.start(serve_rpc, node, "127.0.0.1", 0)
        print(server.url)
"""

from p2pchain.rpc.jsonrpc import Dispatcher as Dispatcher
from p2pchain.rpc.jsonrpc import Method as Method
from p2pchain.rpc.jsonrpc import Params as Params
from p2pchain.rpc.jsonrpc import RpcError as RpcError
from p2pchain.rpc.methods import NodeMethods as NodeMethods
from p2pchain.rpc.metrics import MetricsServer as MetricsServer
from p2pchain.rpc.metrics import NodeMetrics as NodeMetrics
from p2pchain.rpc.metrics import start_metrics_server as start_metrics_server
from p2pchain.rpc.server import TOPICS as TOPICS
from p2pchain.rpc.server import RpcLimits as RpcLimits
from p2pchain.rpc.server import RpcServer as RpcServer
from p2pchain.rpc.server import RpcStatistics as RpcStatistics
from p2pchain.rpc.server import serve_rpc as serve_rpc

__all__ = [
    "TOPICS",
    "Dispatcher",
    "Method",
    "MetricsServer",
    "NodeMethods",
    "NodeMetrics",
    "Params",
    "RpcError",
    "RpcLimits",
    "RpcServer",
    "RpcStatistics",
    "serve_rpc",
    "start_metrics_server",
]
