"""One seeded random connected topology, shared by every gossip benchmark so that p2pchain and
py-libp2p are measured on the same graph."""

from __future__ import annotations

import random


def random_connected_topology(nodes: int, degree: int, seed: int) -> list[tuple[int, int]]:
    """Undirected edges (i < j): a random spanning tree plus random extra edges until the mean
    degree reaches `degree` (or the graph is complete)."""
    rng = random.Random(seed)
    order = list(range(nodes))
    rng.shuffle(order)
    edges: set[tuple[int, int]] = set()
    for position in range(1, nodes):
        a, b = order[position], order[rng.randrange(position)]
        edges.add((min(a, b), max(a, b)))
    wanted = min(nodes * degree // 2, nodes * (nodes - 1) // 2)
    while len(edges) < wanted:
        a, b = rng.sample(range(nodes), 2)
        edges.add((min(a, b), max(a, b)))
    return sorted(edges)
