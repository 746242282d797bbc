"""The event history stays within `NodeLimits.event_history` events and `event_history_bytes`."""

import tracemalloc

import pytest

from p2pchain.errors import EventHistoryExpired
from p2pchain.ledger.crypto import sha256
from p2pchain.ledger.tx import OutPoint, Transaction, TxInput, TxKind, TxOutput
from p2pchain.ledger.types import Address, AssetId, TxId
from p2pchain.node.events import EventHub, EventKind, TxInfo, TxStatus, event_size
from p2pchain.params import ChainParams

JUNK = 10_000
NATIVE = AssetId(ChainParams().native_asset)


def _transaction(nonce: int) -> Transaction:
    outpoint = OutPoint(txid=TxId(sha256(b"%d" % nonce)), index=0)
    outputs = tuple(
        TxOutput(asset=NATIVE, amount=1 + i, address=Address(bytes(20))) for i in range(20)
    )
    return Transaction(kind=TxKind.TRANSFER, inputs=(TxInput(outpoint=outpoint),), outputs=outputs)


async def test_transaction_events_are_bounded_in_bytes_and_count():
    hub = EventHub(history=4_096, history_bytes=200_000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for nonce in range(JUNK):
            tx = _transaction(nonce)  # the hub is the only one left holding it
            hub.publish(EventKind.TX_STATUS, TxInfo(txid=tx.txid, status=TxStatus.PENDING, tx=tx))
            assert hub.history_bytes <= 200_000
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    size = event_size(TxInfo(txid=tx.txid, status=TxStatus.PENDING, tx=tx))
    kept = hub.history(JUNK - 200_000 // size)
    assert len(kept) == 200_000 // size
    with pytest.raises(EventHistoryExpired):
        hub.history(JUNK - 200_000 // size - 1)
    # Decoded transactions cost a few times their encoding; nothing is kept per event gone.
    assert held < 10 * 200_000


async def test_small_events_are_bounded_by_count():
    hub = EventHub(history=100, history_bytes=10**9)
    for nonce in range(JUNK):
        info = TxInfo(txid=TxId(sha256(b"%d" % nonce)), status=TxStatus.UNKNOWN)
        hub.publish(EventKind.TX_STATUS, info)
    assert len(hub.history(JUNK - 100)) == 100
    assert hub.history_bytes == 100 * event_size(info)
