"""``p2pchain init``: generate a local network — genesis, node configs, keys, demo wallets."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from p2pchain.cli.config import NetworkFile, NodeFile, dump_network, dump_node, write_key
from p2pchain.errors import ConfigError
from p2pchain.ledger.address import address_of
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.genesis import Allocation, self_bonded_genesis
from p2pchain.ledger.types import Amount
from p2pchain.net.relay import relay_port
from p2pchain.params import COIN, ChainParams

DEMO_WALLET_COINS = 1_000
VALIDATOR_STAKE_COINS = 100


def demo_wallet_key(index: int) -> SecretKey:
    """Deterministic, publicly known demo keys (like Anvil's accounts): local testnets only."""
    return SecretKey.from_entropy(f"p2pchain demo wallet {index}".encode().ljust(32, b"."))


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkLayout:
    """Where `init` put things."""

    root: Path
    network: Path
    nodes: tuple[Path, ...]
    wallets: tuple[Path, ...]


def node_config_path(root: Path, index: int) -> Path:
    return root / f"node{index}" / "node.toml"


def relay_bootnodes(base_port: int, nodes: int, index: int) -> tuple[str, ...]:
    """Where node `index` of a relayed testnet dials each other node."""
    return tuple(
        f"tcp://127.0.0.1:{relay_port(base_port, nodes, index, other)}"
        for other in range(nodes)
        if other != index
    )


def init_network(
    root: Path,
    *,
    nodes: int,
    params: ChainParams,
    base_port: int,
    rpc_port: int,
    wallets: int,
    metrics_port: int | None = None,
    genesis_delay_s: float = 3.0,
    supervised: bool = False,
    manual_clock: bool = False,
    addresses: Sequence[str] | None = None,
) -> NetworkLayout:
    """Write a fresh network with `nodes` validators into `root` (which must not hold one);
    node `i` serves RPC on `rpc_port + i` and, unless `metrics_port` is None, metrics on
    `metrics_port + i`.

    `supervised` makes a network for the testnet supervisor: every link goes through its relays
    (`relay_port`; node `i` dials node `j` only at its relay and announces no address, so links
    can be cut) and the nodes serve the dev RPC methods it steers their clocks with;
    `manual_clock` stops their clocks until it moves them (slots on demand).

    `addresses` puts node `i` on a host of its own at `addresses[i]` (``testnet --hosts
    netns``): it listens, serves RPC and metrics on that address, on the same ports as on
    loopback, and dials every other node there directly (no relays, whatever `supervised`).
    """
    if nodes < 1:
        raise ConfigError("--nodes must be at least 1")
    if addresses is not None and len(addresses) != nodes:
        raise ConfigError(f"{nodes} nodes need {nodes} host addresses, got {len(addresses)}")
    relayed = supervised and addresses is None and nodes > 1
    relays = [
        relay_port(base_port, nodes, a, b) for a in range(nodes) for b in range(nodes) if a != b
    ]
    last_p2p = max([base_port + 2 * nodes - 1] + (relays if relayed else []))
    ranges = {
        "--base-port": (base_port, last_p2p),
        "--rpc-port": (rpc_port, rpc_port + nodes - 1),
    }
    if metrics_port is not None:
        ranges["--metrics-port"] = (metrics_port, metrics_port + nodes - 1)
    for flag, (first, last) in ranges.items():
        if last > 65535:
            raise ConfigError(f"{flag}: {nodes} nodes need ports up to {last}, past 65535")
        for other, (other_first, other_last) in ranges.items():
            if other < flag and first <= other_last and other_first <= last:
                raise ConfigError(
                    f"{flag} {first}..{last} overlaps {other} {other_first}..{other_last}"
                )
    network_path = root / "network.toml"
    if network_path.exists():
        raise ConfigError(f"{network_path} exists already: choose another --dir")
    validator_keys = [SecretKey.from_entropy(os.urandom(32)) for _ in range(nodes)]
    node_keys = [SecretKey.from_entropy(os.urandom(32)) for _ in range(nodes)]
    demo_keys = [demo_wallet_key(i) for i in range(wallets)]
    genesis = self_bonded_genesis(
        chain_id=params.chain_id,
        genesis_time_ms=int((time.time() + genesis_delay_s) * 1000),
        stakes=[(key.public_key, VALIDATOR_STAKE_COINS * COIN) for key in validator_keys],
        allocations=[
            Allocation(address=address_of(key.public_key), amount=Amount(DEMO_WALLET_COINS * COIN))
            for key in demo_keys
        ],
    )
    dump_network(NetworkFile(params=params, genesis=genesis), network_path)
    wallet_paths = []
    for index, key in enumerate(demo_keys):
        path = root / "wallets" / f"demo{index}.key"
        write_key(path, key)
        wallet_paths.append(path)
    node_paths = []
    hosts = ["127.0.0.1"] * nodes if addresses is None else list(addresses)
    bootnode = f"tcp://127.0.0.1:{base_port}"
    for index in range(nodes):
        directory = root / f"node{index}"
        write_key(directory / "node.key", node_keys[index])
        write_key(directory / "validator.key", validator_keys[index])
        host = hosts[index]
        if addresses is not None:
            bootnodes = tuple(
                f"tcp://{hosts[other]}:{base_port + 2 * other}"
                for other in range(nodes)
                if other != index
            )
        elif supervised:
            bootnodes = relay_bootnodes(base_port, nodes, index)
        else:
            bootnodes = () if index == 0 else (bootnode,)
        node = NodeFile(
            network=network_path,
            data_dir=directory / "data",
            node_key=directory / "node.key",
            validator_key=directory / "validator.key",
            listen=(
                f"tcp://{host}:{base_port + 2 * index}",
                f"ws://{host}:{base_port + 2 * index + 1}",
            ),
            bootnodes=bootnodes,
            advertise=() if supervised and addresses is None else None,
            dev_rpc=supervised,
            manual_clock=manual_clock,
            rpc=f"{host}:{rpc_port + index}",
            metrics=None if metrics_port is None else f"{host}:{metrics_port + index}",
            log_level="info",
        )
        path = node_config_path(root, index)
        dump_node(node, path)
        node_paths.append(path)
    return NetworkLayout(
        root=root, network=network_path, nodes=tuple(node_paths), wallets=tuple(wallet_paths)
    )
