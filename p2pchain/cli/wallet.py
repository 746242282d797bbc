"""``p2pchain wallet``: keys, addresses, balances and signed transactions, via a node's RPC.

The wallet signs locally; the node only sees signed transactions (`tx_submit`). Chain id and
address prefix come from the node (`p2p_nodeInfo`), so one key file works on any chain.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import trio

from p2pchain.cli.config import read_key, write_key
from p2pchain.cli.rpc_client import RpcClient, connect_rpc, parse_utxos
from p2pchain.errors import ConfigError, Reason
from p2pchain.ledger.address import address_of, decode_address, encode_address
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.tx import NO_LOCK, Transaction, TxOutput
from p2pchain.ledger.types import Amount, AssetId, Height, Slot
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Coin, Wallet
from p2pchain.params import COIN, ChainParams
from p2pchain.rpc import RpcError

FINALITY_POLL_S = 0.5


def new_key(path: Path) -> SecretKey:
    """Create a key file (mode 0600) from the OS's randomness; refuse to overwrite one."""
    if path.exists():
        raise ConfigError(f"{path} exists already; refusing to overwrite a key")
    key = SecretKey.from_entropy(os.urandom(32))
    write_key(path, key)
    return key


@dataclass(frozen=True, slots=True)
class Session:
    """A wallet bound to the chain a node serves."""

    rpc: RpcClient
    wallet: Wallet


async def _session(rpc: RpcClient, key_file: Path) -> Session:
    info = await rpc.call("p2p_nodeInfo")
    if not isinstance(info, dict):
        raise ConfigError("node did not answer p2p_nodeInfo")
    params = ChainParams(
        chain_id=int(str(info["chainId"])), address_prefix=str(info["addressPrefix"])
    )
    return Session(rpc=rpc, wallet=Wallet(read_key(key_file), params))


CONFLICT_RETRIES = 3
"""Rebuilds of a payment whose coins a parallel send of the same wallet took first."""
MAX_WALLET_COINS = 1_000
"""Coins asked for per payment (the node's own limit)."""


def parse_asset(text: str | None, params: ChainParams) -> AssetId:
    """`None` is the native coin; otherwise a 32-byte hex asset id."""
    if text is None:
        return AssetId(params.native_asset)
    try:
        asset = bytes.fromhex(text.removeprefix("0x"))
    except ValueError as exc:
        raise ConfigError(f"asset must be hex, got {text!r}") from exc
    if len(asset) != 32:
        raise ConfigError("asset id must be 32 bytes")
    return AssetId(asset)


async def _spendable(session: Session) -> list[Coin]:
    """Plain coins as the node's pool leaves them: a payment sent a moment ago has taken its
    inputs, and its change can pay the next one (so two sends in one slot both go through)."""
    result = await session.rpc.call(
        "address_utxos", session.wallet.address_text, MAX_WALLET_COINS, True
    )
    coins = parse_utxos(result, session.wallet.address)
    return [coin for coin in coins if coin[1].lock == NO_LOCK]


async def _submit(session: Session, tx: Transaction, *, wait: bool) -> str:
    txid = await session.rpc.call("tx_submit", "0x" + tx.encoded.hex())
    if wait:
        while True:
            info = await session.rpc.call("tx_get", txid)
            if isinstance(info, dict) and info.get("status") in ("finalized", "rejected"):
                return f"{txid} {info['status']} at height {info.get('height')}"
            await trio.sleep(FINALITY_POLL_S)
    return str(txid)


async def balances(rpc_url: str, address: str) -> dict[str, str]:
    """Totals per asset of `address` (bech32m text)."""
    async with connect_rpc(rpc_url) as rpc:
        result = await rpc.call("address_balances", address)
    return {str(k): str(v) for k, v in result.items()} if isinstance(result, dict) else {}


async def address_of_key(rpc_url: str, key_file: Path) -> str:
    """The address of a key file on the chain the node serves."""
    async with connect_rpc(rpc_url) as rpc:
        return (await _session(rpc, key_file)).wallet.address_text


async def send(
    rpc_url: str,
    key_file: Path,
    to: str,
    amount: int,
    *,
    asset: str | None,
    fee: int,
    wait: bool,
) -> str:
    """Pay `amount` base units of `asset` to `to`; returns the txid (and status if waited)."""
    async with connect_rpc(rpc_url) as rpc:
        session = await _session(rpc, key_file)
        params = session.wallet.params
        payment = TxOutput(
            asset=parse_asset(asset, params),
            amount=Amount(amount),
            address=decode_address(to, params.address_prefix),
        )
        conflicts = 0
        while True:
            tx = session.wallet.build_transfer(
                await _spendable(session),
                [payment],
                fee=Amount(fee),
                context=BlockContext(height=Height(0), slot=Slot(0)),
            )
            try:
                return await _submit(session, tx, wait=wait)
            except RpcError as exc:
                # Another send of this wallet took the same coins between our read and our
                # submit: read the pool again and build on what it left.
                conflicts += 1
                if exc.reason != Reason.MEMPOOL_CONFLICT.value or conflicts > CONFLICT_RETRIES:
                    raise


async def issue_asset(
    rpc_url: str,
    key_file: Path,
    name: str,
    amount: int,
    *,
    cap: int,
    fee: int,
    wait: bool,
) -> tuple[str, str]:
    """Issue a new asset owned by this key; returns (asset id hex, txid/status)."""
    async with connect_rpc(rpc_url) as rpc:
        session = await _session(rpc, key_file)
        tx, asset = session.wallet.build_issue(
            await _spendable(session),
            name=name.encode(),
            amount=Amount(amount),
            cap=cap,
            fee=Amount(fee),
            context=BlockContext(height=Height(0), slot=Slot(0)),
        )
        return "0x" + asset.hex(), await _submit(session, tx, wait=wait)


def address_text(key: SecretKey, prefix: str) -> str:
    """The bech32m address of a key under `prefix`."""
    return encode_address(address_of(key.public_key), prefix)


def coins_text(base_units: int) -> str:
    """Base units as coins with all 8 decimals (``150000000`` -> ``1.50000000``)."""
    whole, fraction = divmod(base_units, COIN)
    return f"{whole}.{fraction:08d}"
