"""SignatureCache: hits skip verification, failures are never remembered, the bound evicts the
oldest entry, the chain id takes part, and threads sharing one cache keep it consistent."""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.ledger import validation
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.tx import OutPoint, Transaction, TxInput, TxKind, TxOutput
from p2pchain.ledger.types import AssetId, TxId
from p2pchain.ledger.validation import SignatureCache
from p2pchain.ledger.wallet import Wallet
from p2pchain.testing import FAST_PARAMS

CHAIN_ID = FAST_PARAMS.chain_id
WALLET = Wallet(SecretKey.from_entropy(b"signature cache" * 2 + b"!!"), FAST_PARAMS)


def signed(nonce: int, wallet: Wallet = WALLET) -> Transaction:
    """A transfer signed by `wallet`; only its witnesses matter to the cache."""
    outpoint = OutPoint(txid=TxId(sha256(b"coin %d" % nonce)), index=0)
    payment = TxOutput(asset=AssetId(FAST_PARAMS.native_asset), amount=1, address=wallet.address)
    unsigned = Transaction(
        kind=TxKind.TRANSFER, inputs=(TxInput(outpoint=outpoint),), outputs=(payment,)
    )
    return wallet.sign(unsigned)


def tampered(tx: Transaction) -> Transaction:
    """`tx` with its first signature's last byte flipped."""
    first = tx.inputs[0]
    signature = first.signature[:-1] + bytes([first.signature[-1] ^ 1])
    forged = TxInput(outpoint=first.outpoint, public_key=first.public_key, signature=signature)
    return tx.with_inputs((forged, *tx.inputs[1:]))


GOOD = [signed(nonce) for nonce in range(6)]
BAD = [tampered(tx) for tx in GOOD[:3]]


def test_a_hit_skips_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = SignatureCache(CHAIN_ID)
    tx = GOOD[0]
    assert cache(tx, tx.txid)
    verified: list[TxId] = []

    def refuse(tx: Transaction, txid: TxId, chain_id: int) -> bool:
        verified.append(txid)
        return False

    monkeypatch.setattr(validation, "verify_input_signatures", refuse)
    assert cache(tx, tx.txid)
    assert verified == []
    assert (cache.hits, cache.misses) == (1, 1)
    other = GOOD[1]
    assert not cache(other, other.txid)  # a miss does verify
    assert verified == [other.txid]


def test_a_bad_signature_is_never_cached_as_good() -> None:
    cache = SignatureCache(CHAIN_ID)
    forged = BAD[0]
    assert not cache(forged, forged.txid)
    assert not cache(forged, forged.txid)
    assert (len(cache), cache.hits, cache.misses) == (0, 0, 2)
    honest = GOOD[0]
    assert honest.txid == forged.txid  # same body, other witness
    assert cache(honest, honest.txid)
    assert not cache(forged, forged.txid)  # the honest copy's entry does not cover it
    assert (len(cache), cache.hits) == (1, 0)


def test_the_bound_evicts_the_oldest_entry() -> None:
    cache = SignatureCache(CHAIN_ID, max_entries=3)
    for tx in GOOD[:5]:
        assert cache(tx, tx.txid)
    assert len(cache) == 3
    for tx in GOOD[2:5]:
        assert cache(tx, tx.txid)
    assert cache.hits == 3
    assert cache(GOOD[0], GOOD[0].txid)
    assert (cache.hits, cache.misses, len(cache)) == (3, 6, 3)
    assert cache(GOOD[2], GOOD[2].txid)  # the oldest, pushed out by GOOD[0]'s return
    assert cache.misses == 7


def test_the_chain_id_is_part_of_the_check() -> None:
    tx = GOOD[0]
    elsewhere = SignatureCache(CHAIN_ID + 1)
    assert not elsewhere(tx, tx.txid)
    assert not elsewhere(tx, tx.txid)
    assert (len(elsewhere), elsewhere.hits) == (0, 0)
    here = SignatureCache(CHAIN_ID)
    assert here(tx, tx.txid)
    foreign = signed(0, Wallet(WALLET.key, replace(FAST_PARAMS, chain_id=CHAIN_ID + 1)))
    assert not here(foreign, foreign.txid)
    assert elsewhere(foreign, foreign.txid)


@given(
    max_entries=st.integers(1, 4),
    checks=st.lists(st.tuples(st.booleans(), st.integers(0, 2)), max_size=30),
)
def test_the_cache_agrees_with_a_naive_first_in_first_out_model(
    max_entries: int, checks: list[tuple[bool, int]]
) -> None:
    cache = SignatureCache(CHAIN_ID, max_entries=max_entries)
    remembered: OrderedDict[bytes, None] = OrderedDict()
    hits = misses = 0
    for good, index in checks:
        tx = GOOD[index] if good else BAD[index]
        key = sha256(tx.encoded)
        if key in remembered:
            hits += 1
        else:
            misses += 1
            if good:
                remembered[key] = None
                if len(remembered) > max_entries:
                    remembered.popitem(last=False)
        assert cache(tx, tx.txid) is good
        assert (cache.hits, cache.misses, len(cache)) == (hits, misses, len(remembered))


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    """Switch threads as often as the interpreter allows, so that races show up."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@pytest.mark.usefixtures("frequent_thread_switches")
def test_threads_sharing_the_cache_keep_it_consistent() -> None:
    max_entries = 4
    cache = SignatureCache(CHAIN_ID, max_entries=max_entries)
    workload = [(tx, True) for tx in GOOD] + [(tx, False) for tx in BAD]
    rounds, threads = 300, 6
    wrong: list[Transaction] = []
    failures: list[BaseException] = []
    start = threading.Barrier(threads)

    def hammer(offset: int) -> None:
        try:
            start.wait()
            for turn in range(rounds):
                shift = (offset + turn) % len(workload)
                for tx, good in workload[shift:] + workload[:shift]:
                    if cache(tx, tx.txid) is not good:
                        wrong.append(tx)
                    if len(cache) > max_entries:
                        failures.append(AssertionError(f"{len(cache)} entries"))
        except BaseException as exc:
            failures.append(exc)

    workers = [threading.Thread(target=hammer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []
    assert wrong == []
    assert cache.hits + cache.misses == threads * rounds * len(workload)
    assert len(cache) == max_entries
    # every bad copy was verified each time it came: none was ever served from the cache
    assert cache.misses >= threads * rounds * len(BAD)
