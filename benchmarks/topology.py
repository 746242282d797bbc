"""The seeded random connected topology every gossip benchmark uses, so that p2pchain and
py-libp2p are measured on the same graph (the same one the simulated network tests use)."""

from p2pchain.testing.simnet import random_topology as random_connected_topology

__all__ = ["random_connected_topology"]
