"""The config of one node alone on a simulated network, its clock set in a given slot."""

from __future__ import annotations

from typing import Any

import trio

from p2pchain import NodeConfig
from p2pchain.ledger.genesis import GenesisConfig
from p2pchain.params import ChainParams
from p2pchain.testing.simnet import SimulatedNetwork
from p2pchain.testing.testnet import TESTNET_PARAMS


def solo_config(
    genesis: GenesisConfig,
    seed: int,
    *,
    at_ms: int,
    params: ChainParams = TESTNET_PARAMS,
    **fields: Any,
) -> NodeConfig:
    """A node on its own simulated network whose clock reads `at_ms` after genesis now
    (a genesis at time 0), with any other `NodeConfig` `fields`."""
    network = SimulatedNetwork(seed=seed)
    return NodeConfig(
        genesis=genesis,
        params=params,
        listen=(network.address("solo"),),
        transport=network.transport("solo"),
        clock_offset_ms=at_ms - round(trio.current_time() * 1000),
        **fields,
    )
