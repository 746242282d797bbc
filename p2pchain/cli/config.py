"""Network and node configuration files (TOML), and the key files next to them.

Layout written by ``p2pchain init`` (one directory per network)::

    network.toml          chain parameters and genesis (shared by every node)
    node0/node.toml       one node: data dir, keys, listen addresses, bootnodes, RPC
    node0/node.key        hex secret key files, mode 0600
    node0/validator.key
    wallets/demo0.key     funded demo wallets (publicly known: for local testnets only)

Values are read with stdlib `tomllib`; every mistake is reported as a one-line `ConfigError`
naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import tomli_w

from p2pchain.errors import ConfigError, InvalidAddress
from p2pchain.ledger.address import ADDRESS_BYTES, decode_address, encode_address
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.encoding import MAX_UINT64
from p2pchain.ledger.genesis import Allocation, GenesisConfig, GenesisValidator
from p2pchain.ledger.types import Address, Amount, BlockId, Epoch, PublicKey
from p2pchain.ledger.vote import Checkpoint
from p2pchain.net.transports import check_public_host
from p2pchain.node.config import MAX_CLOCK_SKEW_MS
from p2pchain.params import ChainParams

KEY_FILE_MODE: Final = 0o600
_PARAM_FIELDS: Final = {f.name for f in dataclasses.fields(ChainParams)}
_DEFAULT_PARAMS: Final = ChainParams()


def write_key(path: Path, key: SecretKey) -> None:
    """Write a secret key as hex, readable by the owner only."""
    write_private(path, key.secret.hex() + "\n")


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only (it holds secret keys), created so from the
    start rather than narrowed after writing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, KEY_FILE_MODE)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def read_key(path: Path) -> SecretKey:
    """Read a hex secret key file."""
    try:
        return SecretKey(bytes.fromhex(path.read_text().strip()))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: key file not found") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: not a hex secp256k1 secret key") from exc


def _load_toml(path: Path) -> dict[str, object]:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except RecursionError as exc:  # tomllib recurses once per level of nested arrays or tables
        raise ConfigError(f"{path}: invalid TOML: nested too deeply") from exc


def _table(data: dict[str, object], name: str, path: Path) -> dict[str, object]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    return value


def _int(table: dict[str, object], name: str, path: Path) -> int:
    """An integer that fits the chain's encoding: every integer the ledger stores is a uint64."""
    value = table.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{path}: {name} must be an integer, got {value!r}")
    if not 0 <= value <= MAX_UINT64:
        raise ConfigError(f"{path}: {name} must be in 0..2**64-1, got {value}")
    return value


def _str(table: dict[str, object], name: str, path: Path) -> str:
    value = table.get(name)
    if not isinstance(value, str):
        raise ConfigError(f"{path}: {name} must be a string, got {value!r}")
    return value


def _address(table: dict[str, object], name: str, path: Path, params: ChainParams) -> Address:
    try:
        return decode_address(_str(table, name, path), params.address_prefix)
    except InvalidAddress as exc:
        raise ConfigError(f"{path}: {name}: {exc}") from exc


def _str_list(table: dict[str, object], name: str, path: Path) -> tuple[str, ...]:
    value = table.get(name, [])
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ConfigError(f"{path}: {name} must be a list of strings")
    return tuple(str(x) for x in value)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkFile:
    """The contents of network.toml."""

    params: ChainParams
    genesis: GenesisConfig


def load_network(path: Path, tables: dict[str, object] | None = None) -> NetworkFile:
    """Parse network.toml into chain parameters and a genesis config.

    `tables` is the file's content when it was read already (``{"chain": ..., "genesis":
    ...}``; a consensus step vector's anchor is the same tables as JSON): `path` then only
    names it in errors.
    """
    data = _load_toml(path) if tables is None else tables
    _refuse_unknown(data, _NETWORK_KEYS, "", path)
    chain = _table(data, "chain", path)
    overrides: dict[str, object] = {}
    for name, value in chain.items():
        if name not in _PARAM_FIELDS or name == "native_asset":
            raise ConfigError(f"{path}: unknown chain parameter {name!r}")
        expected = type(getattr(_DEFAULT_PARAMS, name))
        if type(value) is not expected:
            raise ConfigError(f"{path}: chain.{name} must be {expected.__name__}, got {value!r}")
        overrides[name] = _int(chain, name, path) if expected is int else value
    try:
        params = ChainParams(**overrides)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    _check_prefix(params.address_prefix, path)
    genesis_table = _table(data, "genesis", path)
    _refuse_unknown(genesis_table, _GENESIS_KEYS, "genesis.", path)
    allocations = []
    for entry in _records(genesis_table, "allocations", path):
        _refuse_unknown(entry, _ALLOCATION_KEYS, "genesis.allocations.", path)
        address = _address(entry, "address", path, params)
        allocations.append(Allocation(address=address, amount=Amount(_int(entry, "amount", path))))
    validators = []
    for entry in _records(genesis_table, "validators", path):
        _refuse_unknown(entry, _VALIDATOR_KEYS, "genesis.validators.", path)
        try:
            key = PublicKey(bytes.fromhex(_str(entry, "key", path)))
        except ValueError as exc:
            raise ConfigError(f"{path}: validator key must be hex") from exc
        owner = _address(entry, "owner", path, params)
        validators.append(
            GenesisValidator(key=key, owner=owner, stake=Amount(_int(entry, "stake", path)))
        )
    genesis = GenesisConfig(
        chain_id=params.chain_id,
        genesis_time_ms=_int(genesis_table, "genesis_time_ms", path),
        allocations=tuple(allocations),
        validators=tuple(validators),
    )
    return NetworkFile(params=params, genesis=genesis)


_NETWORK_KEYS: Final = frozenset({"chain", "genesis"})
_GENESIS_KEYS: Final = frozenset({"genesis_time_ms", "allocations", "validators"})
_ALLOCATION_KEYS: Final = frozenset({"address", "amount"})
_VALIDATOR_KEYS: Final = frozenset({"key", "owner", "stake"})


def _refuse_unknown(
    table: dict[str, object], known: frozenset[str], where: str, path: Path
) -> None:
    """A misspelt key would silently make another network (`allocation` for `allocations`
    gives a genesis without allocations): name it instead."""
    unknown = sorted(set(table) - known)
    if unknown:
        expected = ", ".join(sorted(known))
        raise ConfigError(f"{path}: unknown key {where}{unknown[0]} (known: {expected})")


def network_from_tables(tables: dict[str, object], source: Path) -> NetworkFile:
    """`load_network` of tables already read; errors name `source`."""
    return load_network(source, tables)


def _check_prefix(prefix: str, path: Path) -> None:
    """The chain's addresses must read back: bech32m limits what a prefix may contain."""
    try:
        decode_address(encode_address(bytes(ADDRESS_BYTES), prefix), prefix)
    except (InvalidAddress, ValueError) as exc:
        raise ConfigError(
            f"{path}: chain.address_prefix {prefix!r} is not a bech32m prefix"
        ) from exc


def _records(table: dict[str, object], name: str, path: Path) -> list[dict[str, object]]:
    value = table.get(name, [])
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        raise ConfigError(f"{path}: genesis.{name} must be an array of tables")
    return value


def dump_network(network: NetworkFile, path: Path) -> None:
    """Write network.toml (chain parameters that differ from the defaults, and genesis)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(network_tables(network)))


def network_tables(network: NetworkFile) -> dict[str, dict[str, object]]:
    """network.toml's tables: chain parameters that differ from the defaults (and the chain id),
    and the genesis; `network_from_tables` reads them back."""
    defaults = ChainParams()
    chain = {
        f.name: getattr(network.params, f.name)
        for f in dataclasses.fields(ChainParams)
        if f.name != "native_asset" and getattr(network.params, f.name) != getattr(defaults, f.name)
    }
    chain["chain_id"] = network.params.chain_id
    prefix = network.params.address_prefix
    genesis = {
        "genesis_time_ms": network.genesis.genesis_time_ms,
        "allocations": [
            {"address": encode_address(a.address, prefix), "amount": a.amount}
            for a in network.genesis.allocations
        ],
        "validators": [
            {"key": v.key.hex(), "owner": encode_address(v.owner, prefix), "stake": v.stake}
            for v in network.genesis.validators
        ],
    }
    return {"chain": chain, "genesis": genesis}


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeFile:
    """The contents of a node.toml, with relative paths resolved against its directory."""

    network: Path
    data_dir: Path | None
    node_key: Path
    validator_key: Path | None
    listen: tuple[str, ...]
    bootnodes: tuple[str, ...]
    rpc: str | None
    metrics: str | None
    log_level: str
    clock_skew_ms: int = 0
    """Added to the wall clock the node reads (testnets skew nodes to test clock tolerance)."""
    advertise: tuple[str, ...] | None = None
    """Addresses announced to peers; None = the listen addresses, () = none."""
    public_addr: str | None = None
    """The IP or DNS name peers on other hosts dial; None = the listen addresses' hosts."""
    dev_rpc: bool = False
    """Serve the dev_* RPC methods (testnets: their supervisor steers the nodes' clocks)."""
    manual_clock: bool = False
    """Consensus time moves only when dev_setTime says (a testnet made with --slot-ms manual)."""
    snapshot_sync: bool = False
    """A fresh node starts from a verified snapshot of the finalized state (`NodeConfig`)."""
    trusted_checkpoint: Checkpoint | None = None
    """Where snapshot sync starts trusting (`NodeConfig.trusted_checkpoint`)."""


LOG_LEVELS: Final = ("debug", "info", "warning", "error")
NODE_KEYS = frozenset(
    {
        "network",
        "data_dir",
        "node_key_file",
        "validator_key_file",
        "listen",
        "bootnodes",
        "rpc",
        "metrics",
        "log_level",
        "clock_skew_ms",
        "advertise",
        "public_addr",
        "dev_rpc",
        "manual_clock",
        "snapshot_sync",
        "trusted_checkpoint",
    }
)
"""Every key a node.toml may hold: a misspelt key is an error, never silently ignored."""


def load_node(path: Path) -> NodeFile:
    """Parse a node.toml."""
    data = _load_toml(path)
    unknown = sorted(set(data) - NODE_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(NODE_KEYS))})"
        )
    log_level = _str(data, "log_level", path) if "log_level" in data else "info"
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"{path}: log_level must be one of {', '.join(LOG_LEVELS)}")
    base = path.parent

    def optional_path(name: str) -> Path | None:
        return base / _str(data, name, path) if name in data else None

    return NodeFile(
        network=base / _str(data, "network", path),
        data_dir=optional_path("data_dir"),
        node_key=base / _str(data, "node_key_file", path),
        validator_key=optional_path("validator_key_file"),
        listen=_str_list(data, "listen", path),
        bootnodes=_str_list(data, "bootnodes", path),
        rpc=_str(data, "rpc", path) if "rpc" in data else None,
        metrics=_str(data, "metrics", path) if "metrics" in data else None,
        log_level=log_level,
        clock_skew_ms=_skew(data, path),
        advertise=_str_list(data, "advertise", path) if "advertise" in data else None,
        public_addr=_public_addr(data, path),
        dev_rpc=_bool(data, "dev_rpc", path),
        manual_clock=_bool(data, "manual_clock", path),
        snapshot_sync=_bool(data, "snapshot_sync", path),
        trusted_checkpoint=_checkpoint(data, path),
    )


def _public_addr(data: dict[str, object], path: Path) -> str | None:
    if "public_addr" not in data:
        return None
    host = _str(data, "public_addr", path)
    try:
        check_public_host(host)
    except ConfigError as exc:
        raise ConfigError(f"{path}: public_addr: {exc}") from exc
    if "advertise" in data:
        raise ConfigError(f"{path}: set advertise or public_addr, not both")
    return host


def _bool(data: dict[str, object], name: str, path: Path) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{path}: {name} must be true or false, got {value!r}")
    return value


def parse_checkpoint(text: str) -> Checkpoint:
    """``EPOCH:BLOCK_ID`` (decimal epoch, 64 hex digits, ``0x`` allowed: `chain_finalized`'s
    ``epoch`` and ``blockId``) as a `Checkpoint`.

    Raises:
        ValueError: not of that form.
    """
    epoch, sep, block = text.partition(":")
    block = block.removeprefix("0x")
    if not sep or not epoch.isdigit() or len(block) != 64:
        raise ValueError(f"expected EPOCH:BLOCK_ID (64 hex digits), got {text!r}")
    if int(epoch) > MAX_UINT64:
        raise ValueError(f"epoch {epoch} is out of range")
    return Checkpoint(epoch=Epoch(int(epoch)), block_id=BlockId(bytes.fromhex(block)))


def _checkpoint(data: dict[str, object], path: Path) -> Checkpoint | None:
    if "trusted_checkpoint" not in data:
        return None
    try:
        return parse_checkpoint(_str(data, "trusted_checkpoint", path))
    except ValueError as exc:
        raise ConfigError(f"{path}: trusted_checkpoint: {exc}") from None


def _skew(data: dict[str, object], path: Path) -> int:
    value = data.get("clock_skew_ms", 0)
    if not isinstance(value, int) or isinstance(value, bool) or abs(value) > MAX_CLOCK_SKEW_MS:
        raise ConfigError(f"{path}: clock_skew_ms must be an integer within ±1 day, got {value!r}")
    return value


def dump_node(node: NodeFile, path: Path) -> None:
    """Write a node.toml with paths relative to its directory."""
    base = path.parent.resolve()

    def relative(target: Path) -> str:
        return os.path.relpath(target.resolve(), base)

    data: dict[str, object] = {
        "network": relative(node.network),
        "node_key_file": relative(node.node_key),
        "listen": list(node.listen),
        "bootnodes": list(node.bootnodes),
        "log_level": node.log_level,
    }
    if node.data_dir is not None:
        data["data_dir"] = relative(node.data_dir)
    if node.validator_key is not None:
        data["validator_key_file"] = relative(node.validator_key)
    if node.rpc is not None:
        data["rpc"] = node.rpc
    if node.metrics is not None:
        data["metrics"] = node.metrics
    if node.clock_skew_ms:
        data["clock_skew_ms"] = node.clock_skew_ms
    if node.advertise is not None:
        data["advertise"] = list(node.advertise)
    if node.public_addr is not None:
        data["public_addr"] = node.public_addr
    if node.dev_rpc:
        data["dev_rpc"] = True
    if node.manual_clock:
        data["manual_clock"] = True
    if node.snapshot_sync:
        data["snapshot_sync"] = True
    if node.trusted_checkpoint is not None:
        checkpoint = node.trusted_checkpoint
        data["trusted_checkpoint"] = f"{checkpoint.epoch}:{checkpoint.block_id.hex()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(data))


def address_text(address: Address, params: ChainParams) -> str:
    """The bech32m form of an address on this chain."""
    return encode_address(address, params.address_prefix)
