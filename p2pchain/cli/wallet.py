"""``p2pchain wallet``: keys, addresses, balances and signed transactions, via a node's RPC.

The wallet signs locally; the node only sees signed transactions (`tx_submit`). The chain's
parameters in force (chain id, address prefix, reward maturity, governance deposit, fee floor)
come from the node (`chain_params`), so one key file works on any chain.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
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
from p2pchain.ledger.tx import (
    NO_LOCK,
    OutPoint,
    Transaction,
    TxOutput,
    VoteChoice,
    compute_asset_id,
)
from p2pchain.ledger.types import Address, Amount, AssetId, Epoch, Height, Slot, TxId
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Coin, Wallet
from p2pchain.node.node import MAX_LISTED
from p2pchain.params import COIN, GOVERNABLE, MAX_PROPOSAL_CHANGES, ChainParams
from p2pchain.rpc import RpcError
from p2pchain.rpc.jsonrpc import INTERNAL_ERROR, camel_case, to_hex

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


def params_from_json(result: JSON) -> ChainParams:
    """The `chain_params` answer as `ChainParams` (fields it lacks keep their defaults; keys
    this version does not know are ignored).

    Raises:
        RpcError: the answer does not have that shape.
    """
    if not isinstance(result, dict):
        raise RpcError(INTERNAL_ERROR, f"unexpected chain_params answer {result!r}")
    defaults = ChainParams()
    values: dict[str, object] = {}
    for spec in fields(ChainParams):
        value = result.get(camel_case(spec.name))
        if value is None:
            continue
        default = getattr(defaults, spec.name)
        if isinstance(default, bytes) and isinstance(value, str) and value.startswith("0x"):
            values[spec.name] = bytes.fromhex(value[2:])
        elif type(value) is type(default):
            values[spec.name] = value
        else:
            raise RpcError(INTERNAL_ERROR, f"unexpected chain_params {spec.name} {value!r}")
    try:
        return ChainParams(**values)  # type: ignore[arg-type]  # each value has its field's type
    except (ConfigError, ValueError) as exc:
        raise RpcError(INTERNAL_ERROR, f"unexpected chain_params answer: {exc}") from exc


async def _session(rpc: RpcClient, key_file: Path) -> Session:
    params = params_from_json(await rpc.call("chain_params"))
    return Session(rpc=rpc, wallet=Wallet(read_key(key_file), params))


CONFLICT_RETRIES = 3
"""Rebuilds of a payment whose coins a parallel send of the same wallet took first."""
MAX_WALLET_COINS = 1_000
"""Coins asked for per payment (the node's own limit)."""


def parse_asset(text: str | None, params: ChainParams) -> AssetId:
    """`None` or ``native`` is the native coin; otherwise a 32-byte hex asset id."""
    if text is None or text == "native":
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
    txid = await session.rpc.call("tx_submit", to_hex(tx.encoded))
    return await _final(session.rpc, txid, wait=wait)


async def _final(rpc: RpcClient, txid: JSON, *, wait: bool) -> str:
    """`txid`; with `wait`, once the node has finalized or rejected it, with that status."""
    if wait:
        while True:
            info = await rpc.call("tx_get", txid)
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
    fee: int | None,
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
            tx = _with_fee(
                session.wallet,
                functools.partial(_transfer, session.wallet, await _spendable(session), payment),
                fee,
            )
            try:
                return await _submit(session, tx, wait=wait)
            except RpcError as exc:
                # Another send of this wallet took the same coins between our read and our
                # submit: read the pool again and build on what it left.
                conflicts += 1
                if exc.reason != Reason.MEMPOOL_CONFLICT.value or conflicts > CONFLICT_RETRIES:
                    raise


def _transfer(wallet: Wallet, coins: list[Coin], payment: TxOutput, fee: Amount) -> Transaction:
    return wallet.build_transfer(coins, [payment], fee=fee, context=ANY_BLOCK)


async def issue_asset(
    rpc_url: str,
    key_file: Path,
    name: str,
    amount: int,
    *,
    cap: int,
    fee: int | None,
    wait: bool,
) -> tuple[str, str]:
    """Issue a new asset owned by this key; returns (asset id hex, txid/status)."""
    async with connect_rpc(rpc_url) as rpc:
        session = await _session(rpc, key_file)
        coins = await _spendable(session)
        tx = _with_fee(
            session.wallet,
            lambda paid: session.wallet.build_issue(
                coins,
                name=name.encode(),
                amount=Amount(amount),
                cap=cap,
                fee=paid,
                context=ANY_BLOCK,
            )[0],
            fee,
        )
        asset = compute_asset_id(tx.inputs[0].outpoint)
        return "0x" + asset.hex(), await _submit(session, tx, wait=wait)


def address_text(key: SecretKey, prefix: str) -> str:
    """The bech32m address of a key under `prefix`."""
    return encode_address(address_of(key.public_key), prefix)


def coins_text(base_units: int) -> str:
    """Base units as coins with all 8 decimals (``150000000`` -> ``1.50000000``)."""
    whole, fraction = divmod(base_units, COIN)
    return f"{whole}.{fraction:08d}"


# -- trades ------------------------------------------------------------------------------------
INCLUSION_TIMEOUT_S = 120.0
"""How long `wallet offer` waits for the transaction splitting off its lots to be included."""
ANY_BLOCK = BlockContext(height=Height(0), slot=Slot(0))
"""The context for choosing among plain coins, which no lock holds back."""


def _object(result: JSON, method: str) -> dict[str, JSON]:
    """An object in a node's answer, checked: an answer of another shape is not followed."""
    if not isinstance(result, dict):
        raise RpcError(INTERNAL_ERROR, f"unexpected {method} answer {result!r}")
    return result


def _objects(result: JSON, method: str) -> list[dict[str, JSON]]:
    if not isinstance(result, list):
        raise RpcError(INTERNAL_ERROR, f"unexpected {method} answer {result!r}")
    return [_object(entry, method) for entry in result]


def _int(value: JSON) -> int:
    return int(str(value))


def lot_sizes(sell: int, wanted: int, lots: int) -> tuple[int, int]:
    """Each lot's share of `sell` and of `wanted`: both must split into `lots` whole parts.

    Raises:
        ConfigError: `lots` does not divide both amounts.
    """
    if sell % lots or wanted % lots:
        raise ConfigError(f"--lots {lots} does not divide both {sell} and {wanted} exactly")
    return sell // lots, wanted // lots


async def _settled(session: Session, address: Address) -> list[Coin]:
    """Plain coins of `address` at the head that no pending transaction spends: the node
    checks an offer's coin at the head, and a swap's signer checks the claimed inputs against
    the head (`partial_inspect`'s ``onChain``), so coins still in the pool will not do."""
    text = encode_address(address, session.wallet.params.address_prefix)
    confirmed = await session.rpc.call("address_utxos", text, MAX_WALLET_COINS)
    pending = await session.rpc.call("address_utxos", text, MAX_WALLET_COINS, True)
    unspent = set(parse_utxos(pending, address))
    return [c for c in parse_utxos(confirmed, address) if c in unspent and c[1].lock == NO_LOCK]


async def _wait_included(rpc: RpcClient, txid: str) -> None:
    """Return once the node has `txid` in a block.

    Raises:
        ConfigError: the node rejected it, or did not include it within INCLUSION_TIMEOUT_S.
    """
    with trio.move_on_after(INCLUSION_TIMEOUT_S):
        while True:
            info = _object(await rpc.call("tx_get", txid), "tx_get")
            if info["status"] in ("included", "finalized"):
                return
            if info["status"] == "rejected":
                raise ConfigError(f"transaction {txid} was rejected ({info['reason']})")
            await trio.sleep(FINALITY_POLL_S)
    raise ConfigError(f"transaction {txid} was not included within {INCLUSION_TIMEOUT_S:.0f} s")


async def _split(
    session: Session, asset: AssetId, lot: int, lots: int, fee: int | None
) -> list[Coin]:
    """Pay `lots` coins of `lot` units of `asset` to this wallet; return them once included."""
    wallet = session.wallet
    coins = [TxOutput(asset=asset, amount=Amount(lot), address=wallet.address)] * lots
    spendable = await _spendable(session)
    tx = _with_fee(
        wallet,
        lambda paid: wallet.build_transfer(spendable, coins, fee=paid, context=ANY_BLOCK),
        fee,
    )
    await _wait_included(session.rpc, await _submit(session, tx, wait=False))
    return [(OutPoint(txid=tx.txid, index=index), coin) for index, coin in enumerate(coins)]


async def offer(
    rpc_url: str,
    key_file: Path,
    sell: tuple[AssetId, int],
    wanted: tuple[AssetId, int],
    *,
    lots: int,
    blocks: int,
    fee: int | None,
) -> list[str]:
    """Offer `sell` (asset, amount) for `wanted` in `lots` equal lots, each takeable until
    `blocks` blocks past the head; return the offer ids.

    Each offer is one coin of exactly the lot size. Unless the wallet has `lots` such coins
    that no offer of this pair in the node's book holds already, one transfer to itself first
    splits off `lots` new ones, and the offers wait until it is included (the node checks an
    offer's coin at the head).
    """
    (sell_asset, sell_amount), (want_asset, want_amount) = sell, wanted
    lot, price = lot_sizes(sell_amount, want_amount, lots)
    async with connect_rpc(rpc_url) as rpc:
        session = await _session(rpc, key_file)
        wallet = session.wallet
        book = await rpc.call("offer_list", to_hex(sell_asset), to_hex(want_asset), MAX_LISTED)
        held = {(str(e["txid"]), _int(e["index"])) for e in _objects(book, "offer_list")}
        coins = [
            (outpoint, output)
            for outpoint, output in await _settled(session, wallet.address)
            if output.asset == sell_asset
            and output.amount == lot
            and (to_hex(outpoint.txid), outpoint.index) not in held
        ]
        if len(coins) < lots:
            coins = await _split(session, sell_asset, lot, lots, fee)
        head = _object(await rpc.call("chain_head"), "chain_head")
        until = Height(_int(head["height"]) + blocks)
        want = TxOutput(asset=want_asset, amount=Amount(price), address=wallet.address)
        ids = []
        for coin in coins[:lots]:
            made = wallet.make_offer(coin, want, until=until)
            ids.append(str(await rpc.call("offer_submit", to_hex(encode(made)))))
        return ids


async def list_offers(rpc_url: str, sell: AssetId, wanted: AssetId) -> list[dict[str, JSON]]:
    """The node's book of offers giving `sell` for `wanted`, best price first."""
    async with connect_rpc(rpc_url) as rpc:
        book = await rpc.call("offer_list", to_hex(sell), to_hex(wanted), MAX_LISTED)
    return _objects(book, "offer_list")


async def take(
    rpc_url: str, key_file: Path, offer_id: bytes, *, fee: int | None, wait: bool
) -> str:
    """Take the offer `offer_id` of the node's book: pay what it wants from this wallet's
    coins (and the fee), receive its coin; return the txid (and status if waited).

    Raises:
        ConfigError: the offer is not in the book, or the node answered with another one.
    """
    async with connect_rpc(rpc_url) as rpc:
        session = await _session(rpc, key_file)
        wallet = session.wallet
        entry = await rpc.call("offer_get", to_hex(offer_id))
        if entry is None:
            raise ConfigError(f"offer {to_hex(offer_id)} is not in the node's book (any more)")
        entry = _object(entry, "offer_get")
        made = decode(Offer, bytes.fromhex(str(entry["raw"]).removeprefix("0x")))
        if made.offer_id(wallet.params.chain_id) != offer_id:
            raise ConfigError(f"the node answered offer_get {to_hex(offer_id)} with another offer")
        # The coin as the node has it; the chain checks it again when the take is included.
        outpoint: dict[str, JSON] = {
            "txid": to_hex(made.outpoint.txid),
            "index": made.outpoint.index,
        }
        coin: JSON = [{**_object(entry["offered"], "offer_get"), **outpoint}]
        ((_, offered),) = parse_utxos(coin, address_of(made.public_key))
        spendable = await _spendable(session)
        tx = _with_fee(
            wallet,
            lambda paid: wallet.build_take(
                [(made, offered)], spendable, fee=paid, context=ANY_BLOCK
            ),
            fee,
        )
        return await _submit(session, tx, wait=wait)


async def retire(
    rpc_url: str,
    key_file: Path,
    asset: AssetId,
    amount: int,
    *,
    beneficiary: str,
    purpose: str,
    fee: int | None,
    wait: bool,
) -> str:
    """Retire `amount` units of `asset` for `beneficiary` and `purpose` (stored as UTF-8);
    return the txid, which is the certificate (and the status if waited)."""
    async with connect_rpc(rpc_url) as rpc:
        session = await _session(rpc, key_file)
        coins = await _spendable(session)
        tx = _with_fee(
            session.wallet,
            lambda paid: session.wallet.build_retire(
                coins,
                asset=asset,
                amount=Amount(amount),
                beneficiary=beneficiary.encode(),
                purpose=purpose.encode(),
                fee=paid,
                context=ANY_BLOCK,
            ),
            fee,
        )
        return await _submit(session, tx, wait=wait)


async def list_retirements(
    rpc_url: str, asset: AssetId, *, offset: int, limit: int
) -> list[dict[str, JSON]]:
    """The retirements of `asset` on the node's chain, oldest first."""
    async with connect_rpc(rpc_url) as rpc:
        found = await rpc.call("asset_retirements", to_hex(asset), offset, limit)
    return _objects(found, "asset_retirements")


async def swap(
    rpc_url: str,
    key_file: Path,
    give: tuple[AssetId, int],
    get: tuple[AssetId, int],
    counterparty: str,
    *,
    fee: int | None,
) -> str:
    """A swap with `counterparty` (address text), signed by this key: we pay `give` (asset,
    amount) and the fee, they pay `get`. Returns the partially signed transaction as hex,
    for them to inspect, sign and submit.

    Raises:
        ConfigError: `counterparty` is this key's own address.
    """
    async with connect_rpc(rpc_url) as rpc:
        session = await _session(rpc, key_file)
        wallet = session.wallet
        theirs = decode_address(counterparty, wallet.params.address_prefix)
        if theirs == wallet.address:
            raise ConfigError("--with is this key's own address: a swap needs two parties")
        ours, their_coins = await _settled(session, wallet.address), await _settled(session, theirs)
        built: list[PartialTransaction] = []

        def build(paid: Amount) -> Transaction:
            built.append(
                wallet.build_swap(
                    ours,
                    their_coins,
                    give=TxOutput(asset=give[0], amount=Amount(give[1]), address=theirs),
                    get=TxOutput(asset=get[0], amount=Amount(get[1]), address=wallet.address),
                    fee=paid,
                    context=ANY_BLOCK,
                )
            )
            return built[-1].tx  # empty witnesses have the size of real ones

        _with_fee(wallet, build, fee)
        return to_hex(encode(built[-1]))


async def _inspect(rpc: RpcClient, partial: PartialTransaction) -> dict[str, JSON]:
    return _object(await rpc.call("partial_inspect", to_hex(encode(partial))), "partial_inspect")


async def inspect_partial(rpc_url: str, partial: PartialTransaction) -> dict[str, JSON]:
    """The node's `partial_inspect` of `partial`: claims checked, flows, missing signers."""
    async with connect_rpc(rpc_url) as rpc:
        return await _inspect(rpc, partial)


async def sign_partial(
    rpc_url: str, key_file: Path, partial: PartialTransaction
) -> tuple[str, int]:
    """Sign this key's unsigned inputs of `partial`; return the new hex and how many.

    Raises:
        ConfigError: an input this key would sign claims an output that the node's head does
            not have there (the flows shown would be a lie), or the key signs no input.
    """
    async with connect_rpc(rpc_url) as rpc:
        session = await _session(rpc, key_file)
        wallet = session.wallet
        inputs = (await _inspect(rpc, partial))["inputs"]
        for index, shown in enumerate(_objects(inputs, "partial_inspect")):
            if partial.spent[index].address == wallet.address and not shown["onChain"]:
                raise ConfigError(
                    f"input {index} claims an output the node's head does not have unspent at"
                    f" {shown['txid']}:{shown['index']}; not signing"
                )
        signed, count = partial.sign(wallet.key, wallet.params.chain_id)
        if not count:
            raise ConfigError(f"{wallet.address_text} owns none of the unsigned inputs")
        return to_hex(encode(signed)), count


async def submit_partial(rpc_url: str, partial: PartialTransaction, *, wait: bool) -> str:
    """Submit a fully signed `partial`; return the txid (and status if waited)."""
    async with connect_rpc(rpc_url) as rpc:
        txid = await rpc.call("partial_submit", to_hex(encode(partial)))
        return await _final(rpc, txid, wait=wait)


# -- governance --------------------------------------------------------------------------------
DEFAULT_FEE = 10_000
"""The fee governance transactions pay unless the chain's fee floor asks more (or --fee)."""
_FEE_ROUNDS = 8
"""Rebuilds to meet the fee floor (a higher fee can change the size by a byte or two)."""


def parse_changes(texts: Sequence[str], params: ChainParams | None = None) -> list[tuple[str, int]]:
    """``NAME=VALUE`` settings as a proposal's changes: distinct governable parameters
    (`params.GOVERNABLE`), each with a whole value in its range on `params` (the default
    parameters before a node is asked).

    Raises:
        ConfigError: one line naming what is wrong.
    """
    chain = ChainParams() if params is None else params
    if not texts:
        raise ConfigError("a proposal needs at least one --set NAME=VALUE")
    if len(texts) > MAX_PROPOSAL_CHANGES:
        raise ConfigError(f"a proposal changes at most {MAX_PROPOSAL_CHANGES} parameters")
    changes: dict[str, int] = {}
    for text in texts:
        name, sep, raw = text.partition("=")
        name = name.strip()
        bounds = chain.governable_range(name)
        if not sep:
            raise ConfigError(f"--set {text!r} is not NAME=VALUE")
        if bounds is None:
            raise ConfigError(f"{name!r} is not governable (only {', '.join(GOVERNABLE)})")
        if name in changes:
            raise ConfigError(f"--set {name} given twice")
        try:
            value = int(raw.strip().replace("_", ""), 10)
        except ValueError:
            raise ConfigError(f"--set {name}: {raw!r} is not a whole number") from None
        low, high = bounds
        if not low <= value <= high:
            raise ConfigError(f"--set {name}: {value} is outside {low}..{high}")
        changes[name] = value
    return list(changes.items())


def _with_fee(
    wallet: Wallet, build: Callable[[Amount], Transaction], fee: int | None
) -> Transaction:
    """`build(fee)` paying at least the chain's floor (`min_fee_rate` per byte): `fee` as
    given, or `DEFAULT_FEE` raised to the floor.

    Raises:
        ConfigError: a given `fee` is below the floor.
    """
    rate = wallet.params.min_fee_rate
    if fee is not None:
        tx = build(Amount(fee))
        if fee < rate * tx.size:
            raise ConfigError(
                f"--fee {fee} is below the chain's floor of {rate * tx.size}"
                f" ({rate} per byte, {tx.size} bytes)"
            )
        return tx
    paid = DEFAULT_FEE
    for _ in range(_FEE_ROUNDS):
        tx = build(Amount(paid))
        if paid >= rate * tx.size:
            return tx
        paid = rate * tx.size
    raise ConfigError(f"no fee met the floor of {rate} per byte; pass --fee")


async def next_epoch(rpc: RpcClient, params: ChainParams) -> Epoch:
    """The epoch of the next block on the node's head (at the earliest)."""
    head = _object(await rpc.call("chain_head"), "chain_head")
    return Epoch((_int(head["slot"]) + 1) // params.slots_per_epoch)


async def propose(
    rpc_url: str,
    key_file: Path,
    settings: Sequence[str],
    *,
    activation: int | None,
    refund: str | None,
    fee: int | None,
    wait: bool,
) -> tuple[str, str]:
    """Propose the ``NAME=VALUE`` `settings` (`parse_changes`) from epoch `activation` on
    (default: one epoch after the first one allowed, so an epoch ending before the proposal
    lands does not void it), paying the chain's
    deposit and the fee; return (txid/status, a line describing the proposal).

    Raises:
        ConfigError: a value is out of range on this chain, or the fee is below its floor.
    """
    async with connect_rpc(rpc_url) as rpc:
        session = await _session(rpc, key_file)
        wallet, params = session.wallet, session.wallet.params
        checked = parse_changes(settings, params)
        refund_to = None if refund is None else decode_address(refund, params.address_prefix)
        if activation is None:
            # one epoch of margin: the proposal stays valid if an epoch ends before it lands
            activation = await next_epoch(rpc, params) + params.gov_voting_epochs + 2
        coins = await _spendable(session)
        tx = _with_fee(
            wallet,
            lambda paid: wallet.build_propose(
                coins,
                changes=checked,
                activation=Epoch(activation),
                fee=paid,
                context=ANY_BLOCK,
                refund=refund_to,
            ),
            fee,
        )
        settings = ", ".join(f"{name}={value}" for name, value in checked)
        about = (
            f"proposal {settings} from epoch {activation};"
            f" deposit {coins_text(params.gov_deposit)} coins"
        )
        return await _submit(session, tx, wait=wait), about


async def vote(
    rpc_url: str,
    key_file: Path,
    proposal: bytes,
    choice: str,
    *,
    validator_key: Path | None,
    fee: int | None,
    wait: bool,
) -> str:
    """Vote `choice` (``yes``, ``no`` or ``abstain``) on `proposal` as the validator whose key
    is in `validator_key` (default: `key_file`'s own key), this wallet paying the fee;
    return the txid (and the status if waited).

    Raises:
        ConfigError: the node does not know the proposal, or voting on it is over.
    """
    async with connect_rpc(rpc_url) as rpc:
        session = await _session(rpc, key_file)
        wallet = session.wallet
        found = await rpc.call("gov_proposal", to_hex(proposal))
        if found is None:
            raise ConfigError(f"the node knows no proposal {to_hex(proposal)}")
        status = _object(found, "gov_proposal")["status"]
        if status != "voting":
            raise ConfigError(f"proposal {to_hex(proposal)} is {status}: voting is over")
        voter = None if validator_key is None else read_key(validator_key)
        coins = await _spendable(session)
        tx = _with_fee(
            wallet,
            lambda paid: wallet.build_gov_vote(
                coins,
                proposal=TxId(proposal),
                choice=VoteChoice[choice.upper()],
                fee=paid,
                context=ANY_BLOCK,
                validator=voter,
            ),
            fee,
        )
        return await _submit(session, tx, wait=wait)


async def list_proposals(rpc_url: str, status: str | None) -> list[dict[str, JSON]]:
    """The governance proposals the node knows (with `status` only, when given), oldest
    first."""
    async with connect_rpc(rpc_url) as rpc:
        found = await rpc.call("gov_proposals", status, MAX_LISTED)
    return _objects(found, "gov_proposals")


def _share(part: JSON, total: int) -> str:
    return "-" if not total else f"{100 * _int(part) / total:.1f}%"


def proposals_table(proposals: Sequence[dict[str, JSON]]) -> list[str]:
    """`gov_proposals` entries as aligned lines: id, status, voting window, activation epoch,
    yes/no/abstain as shares of the snapshot stake, votes (``-`` once tallied), and the
    changes."""
    header = ("PROPOSAL", "STATUS", "WINDOW", "ACTIVATION", "YES", "NO", "ABSTAIN", "VOTES")
    rows = [header]
    changes = ["CHANGES"]
    for entry in proposals:
        tally = _object(entry["tally"], "gov_proposals")
        total = _int(tally["total"])
        rows.append(
            (
                str(entry["proposalId"]),
                str(entry["status"]),
                f"{entry['start']}..{entry['end']}",
                str(entry["activation"]),
                _share(tally["yes"], total),
                _share(tally["no"], total),
                _share(tally["abstain"], total),
                "-" if entry["votes"] is None else str(entry["votes"]),  # null once tallied
            )
        )
        changed = _objects(entry["changes"], "gov_proposals")
        changes.append(" ".join(f"{c['name']}={c['value']}" for c in changed))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + f"  {more}"
        for row, more in zip(rows, changes, strict=True)
    ]
