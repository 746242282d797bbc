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
from p2pchain.cli.rpc_client import JSON, RpcClient, connect_rpc, parse_utxos
from p2pchain.errors import ConfigError, Reason
from p2pchain.ledger.address import address_of, decode_address, encode_address
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.encoding import decode, encode
from p2pchain.ledger.offer import Offer
from p2pchain.ledger.partial import PartialTransaction
from p2pchain.ledger.tx import NO_LOCK, OutPoint, Transaction, TxOutput
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


# -- trades ------------------------------------------------------------------------------------
OFFER_INCLUSION_TIMEOUT_S = 120.0
"""How long `wallet offer` waits for the transaction that splits its lots to be included."""


def parse_amount_of(text: str, params: ChainParams) -> tuple[AssetId, int]:
    """``ASSET:AMOUNT``, ASSET ``native`` or a 32-byte hex id, AMOUNT in base units (> 0)."""
    asset_text, sep, amount_text = text.rpartition(":")
    if not sep or not amount_text.isdigit() or int(amount_text) < 1:
        raise ConfigError(f"expected ASSET:AMOUNT (AMOUNT > 0 base units), got {text!r}")
    asset = parse_asset(None if asset_text == "native" else asset_text, params)
    return asset, int(amount_text)


async def _wait_included(session: Session, txid: str, timeout_s: float) -> None:
    with trio.fail_after(timeout_s):
        while True:
            info = await session.rpc.call("tx_get", txid)
            status = info.get("status") if isinstance(info, dict) else None
            if status in ("included", "finalized"):
                return
            if status == "rejected":
                raise ConfigError(f"transaction {txid} was rejected: {info.get('reason')}")  # type: ignore[union-attr]
            await trio.sleep(FINALITY_POLL_S)


async def offer(
    rpc_url: str,
    key_file: Path,
    sell: str,
    wanted: str,
    *,
    lots: int,
    blocks: int,
    fee: int,
) -> list[str]:
    """Offer `sell` (ASSET:AMOUNT) for `wanted` in `lots` equal lots, each takeable for
    `blocks` blocks; return the offer ids. Coins of the lot size are split off first (and
    waited for) when the wallet has too few of them."""
    async with connect_rpc(rpc_url) as rpc:
        session = await _session(rpc, key_file)
        wallet, params = session.wallet, session.wallet.params
        sell_asset, sell_amount = parse_amount_of(sell, params)
        want_asset, want_amount = parse_amount_of(wanted, params)
        if sell_amount % lots or want_amount % lots:
            raise ConfigError(f"{lots} lots must divide both amounts exactly")
        lot, price = sell_amount // lots, want_amount // lots
        confirmed = parse_utxos(
            await rpc.call("address_utxos", wallet.address_text, MAX_WALLET_COINS), wallet.address
        )
        exact = [c for c in confirmed if c[1].asset == sell_asset and c[1].amount == lot]
        exact = [c for c in exact if c[1].lock == NO_LOCK]
        if len(exact) < lots:
            split = [TxOutput(asset=sell_asset, amount=Amount(lot), address=wallet.address)] * (
                lots - len(exact)
            )
            tx = wallet.build_transfer(
                await _spendable(session),
                split,
                fee=Amount(fee),
                context=BlockContext(height=Height(0), slot=Slot(0)),
            )
            txid = await _submit(session, tx, wait=False)
            await _wait_included(session, txid, OFFER_INCLUSION_TIMEOUT_S)
            exact += [
                (OutPoint(txid=tx.txid, index=i), output)
                for i, output in enumerate(tx.outputs[: lots - len(exact)])
            ]
        head = await rpc.call("chain_head")
        until = Height(int(str(head["height"])) + blocks) if isinstance(head, dict) else Height(0)
        want = TxOutput(asset=want_asset, amount=Amount(price), address=wallet.address)
        ids = []
        for coin in exact[:lots]:
            made = wallet.make_offer(coin, want, until=until)
            ids.append(str(await rpc.call("offer_submit", "0x" + encode(made).hex())))
        return ids


async def list_offers(rpc_url: str, sell: str, wanted: str) -> JSON:
    """The node's offers giving asset `sell` for asset `wanted` (``native`` or hex ids)."""
    async with connect_rpc(rpc_url) as rpc:
        params = ChainParams()
        offered = parse_asset(None if sell == "native" else sell, params)
        want = parse_asset(None if wanted == "native" else wanted, params)
        return await rpc.call("offer_list", "0x" + offered.hex(), "0x" + want.hex())


async def take(rpc_url: str, key_file: Path, offer_id: str, *, fee: int, wait: bool) -> str:
    """Take the offer `offer_id` from the node's book; return the txid (and status if waited)."""
    async with connect_rpc(rpc_url) as rpc:
        session = await _session(rpc, key_file)
        params = session.wallet.params
        entry = await rpc.call("offer_get", offer_id)
        if not isinstance(entry, dict):
            raise ConfigError(f"offer {offer_id} is not in the node's book")
        made = decode(Offer, bytes.fromhex(str(entry["raw"]).removeprefix("0x")))
        offered_json = entry["offered"]
        assert isinstance(offered_json, dict)
        maker = decode_address(str(entry["maker"]), params.address_prefix)
        ((_, offered),) = parse_utxos(
            [{"txid": entry["txid"], "index": entry["index"], **offered_json}], maker
        )
        tx = session.wallet.build_take(
            [(made, offered)],
            await _spendable(session),
            fee=Amount(fee),
            context=BlockContext(height=Height(0), slot=Slot(0)),
        )
        return await _submit(session, tx, wait=wait)


async def retire(
    rpc_url: str,
    key_file: Path,
    asset: str,
    amount: int,
    *,
    beneficiary: str,
    purpose: str,
    fee: int,
    wait: bool,
) -> str:
    """Retire `amount` units of `asset` for `beneficiary` and `purpose` (UTF-8 text)."""
    async with connect_rpc(rpc_url) as rpc:
        session = await _session(rpc, key_file)
        wallet = session.wallet
        tx = wallet.build_retire(
            await _spendable(session),
            asset=parse_asset(asset, wallet.params),
            amount=Amount(amount),
            beneficiary=beneficiary.encode(),
            purpose=purpose.encode(),
            fee=Amount(fee),
            context=BlockContext(height=Height(0), slot=Slot(0)),
        )
        return await _submit(session, tx, wait=wait)


async def list_retirements(rpc_url: str, asset: str) -> JSON:
    async with connect_rpc(rpc_url) as rpc:
        return await rpc.call("asset_retirements", "0x" + parse_asset(asset, ChainParams()).hex())


async def swap(
    rpc_url: str, key_file: Path, give: str, get: str, counterparty: str, *, fee: int
) -> str:
    """A swap with `counterparty` signed by this key (we pay `give` and the fee; they pay
    `get`), as the hex of a partially signed transaction for them to sign."""
    async with connect_rpc(rpc_url) as rpc:
        session = await _session(rpc, key_file)
        wallet, params = session.wallet, session.wallet.params
        their_address = decode_address(counterparty, params.address_prefix)
        give_asset, give_amount = parse_amount_of(give, params)
        get_asset, get_amount = parse_amount_of(get, params)
        theirs = parse_utxos(
            await rpc.call("address_utxos", counterparty, MAX_WALLET_COINS, True), their_address
        )
        partial = wallet.build_swap(
            await _spendable(session),
            [coin for coin in theirs if coin[1].lock == NO_LOCK],
            give=TxOutput(asset=give_asset, amount=Amount(give_amount), address=their_address),
            get=TxOutput(asset=get_asset, amount=Amount(get_amount), address=wallet.address),
            fee=Amount(fee),
            context=BlockContext(height=Height(0), slot=Slot(0)),
        )
        return "0x" + encode(partial).hex()


async def sign_partial(rpc_url: str, key_file: Path, raw: str) -> tuple[str, int]:
    """Sign this key's inputs of a partially signed transaction: the new hex and the count."""
    async with connect_rpc(rpc_url) as rpc:
        session = await _session(rpc, key_file)
        try:
            partial = decode(PartialTransaction, bytes.fromhex(raw.removeprefix("0x")))
        except ValueError as exc:
            raise ConfigError(f"not a partially signed transaction: {exc}") from exc
        signed, count = partial.sign(session.wallet.key, session.wallet.params.chain_id)
        return "0x" + encode(signed).hex(), count
