"""Ledger hot path: transaction decode and validation, block connect, against raw limits.

Baselines (same run): coincurve BIP-340 verify/s with key parse, on one core and on two
processes; SHA-256 of 250 bytes; the `rlp` package's `Serializable` decode and raw decode of the
same 2-in/2-out transaction. Figures: validated tx/s / (verify/s / 2); decode + structural
checks / Serializable decode; block connect cold and with the signature cache (`connect_block`
alone: the undo that puts the state back, and the rehash of what it changed, run untimed
between samples).

Run alone: ``python -m benchmarks.bench_ledger [--quick]``.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from dataclasses import dataclass

import rlp
from rlp.sedes import Binary, CountableList, List, big_endian_int

from benchmarks.harness import Report, measure_rate, measure_seconds, run_alone
from p2pchain.ledger.address import address_of
from p2pchain.ledger.block import Block, compute_body_root
from p2pchain.ledger.crypto import SecretKey, sign, verify
from p2pchain.ledger.genesis import Allocation, GenesisConfig, GenesisValidator, genesis_state
from p2pchain.ledger.header import BlockHeader
from p2pchain.ledger.reward import reward_transaction
from p2pchain.ledger.tx import (
    Transaction,
    TxInput,
    TxKind,
    TxOutput,
    tx_signing_message,
)
from p2pchain.ledger.types import AssetId
from p2pchain.ledger.utxo import UndoData, UtxoView
from p2pchain.ledger.validation import (
    BlockContext,
    SignatureCache,
    check_transaction,
    connect_block,
    validate_transaction,
)
from p2pchain.params import COIN, ChainParams


class _SOutPoint(rlp.Serializable):
    fields = [("txid", Binary.fixed_length(32)), ("index", big_endian_int)]


class _SInput(rlp.Serializable):
    fields = [
        ("outpoint", _SOutPoint),
        ("public_key", Binary.fixed_length(32)),
        ("signature", Binary.fixed_length(64)),
    ]


class _SLock(rlp.Serializable):
    fields = [("kind", big_endian_int), ("value", big_endian_int), ("key", Binary(max_length=32))]


class _SOutput(rlp.Serializable):
    fields = [
        ("asset", Binary.fixed_length(32)),
        ("amount", big_endian_int),
        ("address", Binary.fixed_length(20)),
        ("lock", _SLock),
    ]


class _STransaction(rlp.Serializable):
    """The same layout as p2pchain's transfer, decoded the `rlp.Serializable` way."""

    fields = [
        ("kind", big_endian_int),
        ("inputs", CountableList(_SInput)),
        ("outputs", CountableList(_SOutput)),
        ("payload", List([])),
    ]


@dataclass
class Workload:
    """A chain whose genesis funds `count` independent 2-in/2-out transfers, and those txs."""

    params: ChainParams
    view: UtxoView
    txs: list[Transaction]
    proposer: SecretKey


def make_workload(count: int) -> Workload:
    params = ChainParams(max_block_txs=10_000, max_block_bytes=10_000_000)
    keys = [SecretKey.from_entropy(i.to_bytes(4, "big") * 8) for i in range(2 * count + 1)]
    allocations = tuple(Allocation(address=address_of(k.public_key), amount=COIN) for k in keys)
    proposer = keys[-1]
    config = GenesisConfig(
        chain_id=params.chain_id,
        genesis_time_ms=0,
        allocations=allocations[:-1],
        validators=(
            GenesisValidator(
                key=proposer.public_key, owner=allocations[-1].address, stake=params.min_stake
            ),
        ),
    )
    _, view = genesis_state(config, params)
    native = AssetId(params.native_asset)
    coin_of = {output.address: outpoint for outpoint, output in view if output.lock.value == 0}
    txs = []
    for i in range(count):
        first, second = keys[2 * i], keys[2 * i + 1]
        outputs = (
            TxOutput(asset=native, amount=COIN, address=address_of(second.public_key)),
            TxOutput(asset=native, amount=COIN - 1_000, address=address_of(first.public_key)),
        )
        inputs = tuple(TxInput(outpoint=coin_of[address_of(k.public_key)]) for k in (first, second))
        unsigned = Transaction(kind=TxKind.TRANSFER, inputs=inputs, outputs=outputs)
        message = tx_signing_message(params.chain_id, unsigned.txid)
        signed = tuple(
            TxInput(outpoint=i.outpoint, public_key=k.public_key, signature=k.sign(message))
            for i, k in zip(inputs, (first, second), strict=True)
        )
        txs.append(unsigned.with_inputs(signed))
    return Workload(params=params, view=view, txs=txs, proposer=proposer)


def make_block(work: Workload, txs: list[Transaction]) -> Block:
    fees = 1_000 * len(txs)
    reward = reward_transaction(
        height=1,
        amount=work.params.block_reward + fees,
        address=address_of(work.proposer.public_key),
        params=work.params,
    )
    body = (reward, *txs)
    header = BlockHeader(
        parent=work.view.tip,
        height=1,
        slot=1,
        proposer=work.proposer.public_key,
        body_root=compute_body_root(body, ()),
        state_root=work.view.root_after(body),
    )
    return Block(header=header, signature=bytes(64), transactions=body)


def _verify_many(count: int) -> int:
    key = SecretKey.from_entropy(b"k" * 32)
    message = hashlib.sha256(b"m").digest()
    signature = sign(key.secret, message)
    public = bytes(key.public_key)
    return sum(verify(public, message, signature) for _ in range(count))


def run(quick: bool = False) -> Report:
    report = Report()
    count = 50 if quick else 1_000
    repeat = 3 if quick else 5
    print("ledger", flush=True)

    verify_rate = measure_rate(lambda: _verify_many(count), ops=count, repeat=repeat)
    report.baseline("schnorr verify (with key parse), 1 core", verify_rate)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_verify_many, [10, 10])
        two_core = measure_rate(
            lambda: pool.map(_verify_many, [count, count]), ops=2 * count, repeat=repeat
        )
    report.baseline("schnorr verify, 2 processes", two_core)
    data = b"x" * 250
    sha_rate = measure_rate(
        lambda: [hashlib.sha256(data).digest() for _ in range(count * 10)],
        ops=count * 10,
        repeat=repeat,
    )
    report.baseline("sha256 of 250 B", sha_rate)

    work = make_workload(count)
    raws = [tx.encoded for tx in work.txs]
    serializable = measure_rate(
        lambda: [rlp.decode(raw, _STransaction) for raw in raws], ops=count, repeat=repeat
    )
    report.baseline("rlp Serializable decode of a 2-in/2-out tx", serializable)
    raw_decode = measure_rate(lambda: [rlp.decode(raw) for raw in raws], ops=count, repeat=repeat)
    report.baseline("rlp raw decode of the same tx", raw_decode)

    def decode_and_check() -> None:
        for raw in raws:
            check_transaction(Transaction.from_bytes(raw), work.params)

    lean = measure_rate(decode_and_check, ops=count, repeat=repeat)
    report.figure(
        "tx decode + structural checks / rlp Serializable decode",
        lean.median / serializable.median,
        ">= 8",
        lean.median / serializable.median >= 8,
        f"({lean})",
    )

    context = BlockContext(height=1, slot=1)

    def decode_and_validate() -> None:
        for raw in raws:
            validate_transaction(Transaction.from_bytes(raw), work.view, work.params, context)

    validated = measure_rate(decode_and_validate, ops=count, repeat=repeat)
    ratio = validated.median / (verify_rate.median / 2)
    report.figure(
        "validated 2-in/2-out tx/s / (verify/s / 2), 1 core",
        ratio,
        ">= 0.8",
        ratio >= 0.8,
        f"({validated})",
    )

    sizes = [100] if quick else [100, 1_000]
    connect_ms: list[tuple[float, float]] = []
    undos: list[UndoData] = []  # of the connect just timed, for the untimed undo after it
    for size in sizes:
        block = make_block(work, work.txs[:size])

        def connect(cache: SignatureCache | None, block: Block = block) -> None:
            undos.append(connect_block(work.view, block, work.params, signatures_valid=cache))

        def disconnect(block: Block = block) -> None:
            """Untimed: the undo, and the rehash of what it changed (which the next connect's
            state root would otherwise pay for)."""
            work.view.undo(block, undos.pop())
            work.view.state_root()

        cold = measure_seconds(lambda: connect(None), repeat=repeat, reset=disconnect)
        cache = SignatureCache(work.params.chain_id)
        connect(cache)
        disconnect()
        warm = measure_seconds(lambda cache=cache: connect(cache), repeat=repeat, reset=disconnect)
        tx_rate = size / cold.median
        connect_ms.append((size, cold.median * 1e3))
        report.figure(
            f"connect {size}-tx block: tx/s / (verify/s / 2)",
            tx_rate / (verify_rate.median / 2),
            "report",
            True,
            f"(cold {cold.median * 1e3:.1f} ms)",
        )
        report.figure(
            f"connect {size}-tx block with signature cache / cold",
            warm.median / cold.median,
            "<= 0.2",
            warm.median / cold.median <= 0.2,
            f"(warm {warm.median * 1e3:.1f} ms)",
        )
    report.curve("block connect, cold", "transactions in the block", "ms", connect_ms)
    return report


if __name__ == "__main__":
    run_alone(run, __doc__)
