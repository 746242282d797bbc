"""`TxIndex` against a naive model: the canonical chain as a list, scanned on every query."""

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from p2pchain.errors import Reason
from p2pchain.ledger.block import Block
from p2pchain.ledger.crypto import sha256
from p2pchain.ledger.header import BlockHeader
from p2pchain.ledger.tx import OutPoint, Transaction, TxInput, TxKind
from p2pchain.ledger.types import BlockId, Hash32, PublicKey, TxId
from p2pchain.node.storage import TxLocation
from p2pchain.node.txindex import TxIndex

REJECTED_HISTORY = 4
TXS = [
    Transaction(
        kind=TxKind.TRANSFER,
        inputs=(TxInput(outpoint=OutPoint(txid=TxId(sha256(b"%d" % i)), index=0)),),
    )
    for i in range(8)
]
REASONS = [Reason.BAD_SIGNATURE, Reason.MISSING_INPUT, Reason.FEE_TOO_LOW]


def _block(parent: BlockId, height: int, nonce: int, txs: tuple[Transaction, ...]) -> Block:
    header = BlockHeader(
        parent=parent,
        height=height,
        slot=nonce,
        proposer=PublicKey(bytes(32)),
        body_root=Hash32(bytes(32)),
        state_root=Hash32(bytes(32)),
    )
    return Block(header=header, signature=bytes(64), transactions=txs)


GENESIS = _block(BlockId(bytes(32)), 0, 0, ())


class TxIndexMachine(RuleBasedStateMachine):
    """Blocks connect, reorgs replace the top of the chain (the same transactions may come
    back in the new branch), finality releases the oldest bodies, restarts rebuild."""

    @initialize()
    def start(self) -> None:
        self.index = TxIndex(GENESIS, rejected_history=REJECTED_HISTORY)
        self.chain = [GENESIS]
        self.floor = 0
        """Blocks below it were released (finalized: never disconnected)."""
        self.rejected: list[tuple[TxId, Reason]] = []
        self.nonce = 0

    def _new_block(self, picks: list[int]) -> Block:
        on_chain = {tx.txid for block in self.chain for tx in block.transactions}
        txs = tuple(TXS[i] for i in dict.fromkeys(picks) if TXS[i].txid not in on_chain)
        self.nonce += 1
        return _block(self.chain[-1].block_id, len(self.chain), self.nonce, txs)

    @rule(picks=st.lists(st.integers(0, len(TXS) - 1), max_size=3))
    def extend(self, picks: list[int]) -> None:
        block = self._new_block(picks)
        self.index.connect(block)
        self.chain.append(block)

    @rule(depth=st.integers(1, 3), picks=st.lists(st.integers(0, len(TXS) - 1), max_size=3))
    def reorg(self, depth: int, picks: list[int]) -> None:
        depth = min(depth, len(self.chain) - max(self.floor, 1))
        for block in reversed(self.chain[len(self.chain) - depth :]):
            self.index.disconnect(block)
        del self.chain[len(self.chain) - depth :]
        block = self._new_block(picks)
        self.index.connect(block)
        self.chain.append(block)

    @rule()
    def release_oldest(self) -> None:
        if self.floor < len(self.chain) - 1:
            self.index.release(self.chain[self.floor])
            self.floor += 1

    @rule()
    def restart(self) -> None:
        self.index.rebuild([block.block_id for block in self.chain], self.chain[self.floor :])

    @rule(i=st.integers(0, len(TXS) - 1), reason=st.sampled_from(REASONS))
    def reject(self, i: int, reason: Reason) -> None:
        txid = TXS[i].txid
        self.index.reject(txid, reason)
        self.rejected = [entry for entry in self.rejected if entry[0] != txid]
        self.rejected.append((txid, reason))
        self.rejected = self.rejected[-REJECTED_HISTORY:]

    @rule(i=st.integers(0, len(TXS) - 1))
    def accept(self, i: int) -> None:
        self.index.forget_rejection(TXS[i].txid)
        self.rejected = [entry for entry in self.rejected if entry[0] != TXS[i].txid]

    @invariant()
    def canonical_ids_match_the_chain(self) -> None:
        assert self.index.height == len(self.chain) - 1
        for height in range(-1, len(self.chain) + 2):
            expected = self.chain[height].block_id if 0 <= height < len(self.chain) else None
            assert self.index.block_id_at(height) == expected

    @invariant()
    def locations_match_a_scan_of_the_held_blocks(self) -> None:
        for tx in TXS:
            expected = None
            for block in self.chain[self.floor :]:
                for position, included in enumerate(block.transactions):
                    if included.txid == tx.txid:
                        expected = TxLocation(
                            block_id=block.block_id,
                            height=block.header.height,
                            position=position,
                        )
            assert self.index.locate(tx.txid) == expected
            assert (tx.txid in self.index) == (expected is not None)

    @invariant()
    def rejections_are_the_newest_ones(self) -> None:
        reasons = dict(self.rejected)
        for tx in TXS:
            assert self.index.rejection(tx.txid) == reasons.get(tx.txid)


TestTxIndex = TxIndexMachine.TestCase
