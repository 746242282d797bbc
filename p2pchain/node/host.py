"""`ChainHost`: the node as its network service sees it (a `NetworkHost`).

The network service reads the chain through it (status, blocks to serve) and calls its hooks:
gossip validation, which imports what it accepts before it is relayed (a block with an unknown
parent comes back as `Orphan`, for the service's orphan pool), delivery, and sync imports. It
also gossips what the node produces: its own blocks and votes, evidence the chain found and
transactions new to the pool. `Node` keeps only its documented API; this object is internal.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import trio

from p2pchain.errors import (
    DecodeError,
    GossipIgnore,
    GossipReject,
    InvalidBlock,
    InvalidOffer,
    InvalidTransaction,
    InvalidVote,
    Reason,
)
from p2pchain.ledger.block import Block, read_signed_header
from p2pchain.ledger.encoding import decode, encode, encode_item
from p2pchain.ledger.evidence import decode_evidence
from p2pchain.ledger.offer import MAX_OFFER_BYTES, Offer
from p2pchain.ledger.proofs import ProofTooLarge
from p2pchain.ledger.tx import Transaction
from p2pchain.ledger.types import BlockId
from p2pchain.ledger.validation import check_transaction
from p2pchain.ledger.vote import Vote
from p2pchain.net.service import ImportResult, NetworkService, Orphan
from p2pchain.node.chain import ChainService, Outcome
from p2pchain.params import ChainParams
from p2pchain.protocol.connection import PeerId
from p2pchain.protocol.gossip import Verdict
from p2pchain.protocol.messages import (
    Blocks,
    Finality,
    GetBlocksById,
    GetBlocksByRange,
    GetFinality,
    GetSnapshotManifest,
    GetSnapshotPage,
    GetStateProof,
    LightAnswer,
    LightError,
    LightRequest,
    SnapshotManifestAnswer,
    SnapshotPageAnswer,
    StateProofAnswer,
    Status,
    Topic,
    TxProofAnswer,
)
from p2pchain.protocol.sync import bounded_answer, requested_block_ids

_IGNORED_TX = frozenset(
    {
        Reason.ALREADY_KNOWN,
        Reason.MEMPOOL_CONFLICT,
        Reason.MEMPOOL_FULL,
        Reason.FEE_TOO_LOW,
        Reason.PEER_LIMIT,
        Reason.MISSING_INPUT,
        Reason.IMMATURE,
        Reason.LOCKED,
        Reason.OFFER_EXPIRED,
        Reason.CONFLICTING_SPEND,
        Reason.BAD_ACTIVATION,
        Reason.GOVERNANCE_FULL,
        Reason.UNKNOWN_PROPOSAL,
        Reason.VOTING_CLOSED,
        Reason.NOT_A_VOTER,
        Reason.DOUBLE_GOV_VOTE,
        Reason.CAP_EXCEEDED,
        Reason.VALUE_OVERFLOW,
        Reason.UNKNOWN_ASSET,
        Reason.BAD_UNBOND,
    }
)
"""Transaction failures that depend on our view (a reorg or a race), so nobody is blamed."""
_IGNORED_OFFER = frozenset(
    {
        Reason.MISSING_INPUT,
        Reason.OFFER_EXPIRED,
        Reason.OFFER_BOOK_FULL,
        Reason.MEMPOOL_CONFLICT,
    }
)
"""Offer failures that depend on our view or our book's room, so nobody is blamed."""
_IGNORED_BLOCK = frozenset({Reason.CONFLICTS_WITH_FINALIZED, Reason.DUPLICATE_BLOCK})
_IGNORED_VOTE = frozenset(
    {
        Reason.STALE_VOTE,
        Reason.CONFLICTS_WITH_FINALIZED,
        Reason.UNKNOWN_VOTE_HEAD,
        Reason.FUTURE_VOTE,
    }
)


def _gossip_error(
    exc: InvalidTransaction | InvalidBlock | InvalidVote | InvalidOffer,
    ignored: Collection[Reason],
) -> GossipIgnore | GossipReject:
    """The gossip verdict for a rule a message broke: ignored (not the sender's fault) for the
    reasons in `ignored`, rejected (penalised) for the rest."""
    if exc.reason in ignored:
        return GossipIgnore(exc.reason, exc.detail)
    return GossipReject(exc.reason, exc.detail)


class ChainHost:
    """The node's chain behind its network service: reads, gossip hooks and our own gossip.

    Args:
        chain: the chain service every import goes to.
        params: the chain's parameters (for the context-free transaction rules).
        offload_decode_bytes: gossiped blocks longer than this are decoded in a worker
            thread; None (simulations) decodes every block inline.
    """

    def __init__(
        self, chain: ChainService, params: ChainParams, *, offload_decode_bytes: int | None
    ) -> None:
        self._chain = chain
        self.params = params
        self.offload_decode_bytes = offload_decode_bytes
        self._decoded: dict[bytes, Transaction] = {}
        """The transactions of the batch last prepared, by their bytes, until validated."""
        self.network: NetworkService | None = None
        """The service this host sits behind, once `attach` bound it (gossip waits for it)."""

    def attach(self, network: NetworkService) -> None:
        """Bind the network service opened on this host: from now on our gossip goes out."""
        self.network = network

    def get_status(self) -> Status:
        """Our head and finalized checkpoint, as announced to peers."""
        head = self._chain.head_node()
        return Status(
            head=head.block_id,
            head_height=head.height,
            head_slot=head.slot,
            finalized=self._chain.store.finalized_checkpoint,
        )

    def get_block(self, block_id: BlockId) -> Block | None:
        """Any block of the tree or the finalized chain, for sync."""
        return self._chain.get_block(block_id)

    async def serve_blocks(
        self, request: GetBlocksByRange | GetBlocksById, max_bytes: int
    ) -> Blocks:
        """A peer's block request answered with the blocks `requested_block_ids` picks,
        loaded first (`bodies`: old ones on the storage worker), within `max_bytes`."""
        chain = self._chain
        loaded = await chain.bodies(requested_block_ids(request, chain), max_bytes)
        return bounded_answer(request.request_id, loaded, max_bytes)

    async def serve_light(self, request: LightRequest) -> LightAnswer:
        """A light client's request, answered from the fork-choice store, the vote archive and
        the state cursor (`ChainService.certificate`, `prove_state`, `prove_transaction`), or
        a snapshot-syncing node's, from the prepared finalized states (`snapshots`)."""
        chain = self._chain
        if isinstance(request, GetFinality):
            certificate = chain.certificate(request.trusted)
            error = None
            if certificate is None:
                newer = chain.store.finalized_checkpoint.epoch > request.trusted.epoch
                error = LightError.CANNOT_CERTIFY if newer else LightError.NOTHING_NEWER
            return Finality(request_id=request.request_id, certificate=certificate, error=error)
        if isinstance(request, GetSnapshotManifest):
            prepared = await chain.snapshots.get(request.block_id)
            if prepared is None:
                return SnapshotManifestAnswer(
                    request_id=request.request_id,
                    manifest=None,
                    error=LightError.SNAPSHOT_UNAVAILABLE,
                )
            return SnapshotManifestAnswer(
                request_id=request.request_id,
                manifest=prepared.manifest,
                anchors=prepared.anchors,
                headers=prepared.headers,
            )
        if isinstance(request, GetSnapshotPage):
            cut = await chain.snapshots.page(request.block_id, request.subtree, request.after)
            if cut is None:
                return SnapshotPageAnswer(
                    request_id=request.request_id, error=LightError.SNAPSHOT_UNAVAILABLE
                )
            return SnapshotPageAnswer(request_id=request.request_id, records=cut[0], done=cut[1])
        if isinstance(request, GetStateProof):
            try:
                proof = await chain.prove_state(request.block_id, request.query)
            except InvalidBlock:
                return StateProofAnswer(
                    request_id=request.request_id, proof=None, error=LightError.UNKNOWN_BLOCK
                )
            except ProofTooLarge:
                return StateProofAnswer(
                    request_id=request.request_id, proof=None, error=LightError.TOO_LARGE
                )
            return StateProofAnswer(request_id=request.request_id, proof=proof)
        try:
            header, tx, inclusion = chain.prove_transaction(request.txid)
        except KeyError:
            header = None
        if header is None or header.height > chain.finalized_height():
            return TxProofAnswer(
                request_id=request.request_id,
                block_id=None,
                transaction=None,
                proof=None,
                error=LightError.NOT_FOUND,  # light clients know finalized blocks only
            )
        return TxProofAnswer(
            request_id=request.request_id,
            block_id=header.block_id,
            transaction=tx,
            proof=inclusion,
        )

    async def prepare(self, batch: Sequence[tuple[Topic, bytes]]) -> None:
        """Verify the witnesses of the batch's transactions together, in a worker thread
        when there are enough (`NodeLimits.offload_signatures`); `validate` then finds them in
        the signature cache, and takes each one as decoded here."""
        decoded: dict[bytes, Transaction] = {}
        for topic, data in batch:
            if topic is Topic.TRANSACTION:
                try:
                    decoded[data] = Transaction.from_bytes(data)
                except DecodeError:
                    continue  # `validate` rejects it
        self._decoded.update(decoded)  # each one is validated (and popped) next
        await self._chain.verify_off_loop(decoded.values())

    async def validate(self, topic: Topic, data: bytes, from_peer: PeerId) -> Verdict | Orphan:
        """Gossip validation: a valid message is also imported here, before it is relayed; a
        block with an unknown parent comes back as `Orphan`, for the network's orphan pool."""
        try:
            if topic is Topic.TRANSACTION:
                tx = self._decoded.pop(data, None) or Transaction.from_bytes(data)
                return self._validate_transaction(tx, from_peer)
            if topic is Topic.BLOCK:
                self._check_header_first(data)
                return await self._validate_block(await self._decode_block(data), from_peer)
            if topic is Topic.VOTE:
                return await self._validate_vote(decode(Vote, data), from_peer)
            if topic is Topic.OFFER:
                return self._validate_offer(data)
            await self._chain.import_evidence(decode_evidence(data))
        except DecodeError as exc:
            raise GossipReject(Reason.MALFORMED, str(exc)) from exc
        except InvalidTransaction as exc:
            # NOTHING_TO_SLASH: already slashed, or not a validator.
            raise _gossip_error(exc, {Reason.NOTHING_TO_SLASH}) from exc
        finally:
            self.gossip_news()
        return Verdict.ACCEPT

    def _check_header_first(self, data: bytes) -> None:
        """Judge a gossiped block by its header before its body is decoded: a block on a
        known parent with a wrong proposer, a bad signature or too many bytes costs us one
        signature check, not the decode and validation of up to `max_block_bytes`. A block
        on an unknown parent or for a later slot is judged whole, as before (the orphan pool
        and the waiting blocks need it decoded), once its proposer's signature holds."""
        try:
            self._chain.check_header(read_signed_header(data), len(data))
        except InvalidBlock as exc:
            raise _gossip_error(exc, _IGNORED_BLOCK) from exc

    async def _decode_block(self, data: bytes) -> Block:
        """Decode a gossiped block; a large one in a worker thread, off the event loop."""
        limit = self.offload_decode_bytes
        if limit is None or len(data) <= limit:
            return Block.from_bytes(data)
        return await trio.to_thread.run_sync(Block.from_bytes, data)

    def _validate_transaction(self, tx: Transaction, from_peer: PeerId) -> Verdict:
        try:
            # A context-free rule fails in every view: that is always the sender's fault,
            # whatever the reason code (value-overflow also names a view-dependent mint rule).
            check_transaction(tx, self.params)
        except InvalidTransaction as exc:
            raise GossipReject(exc.reason, exc.detail) from exc
        try:
            change = self._chain.add_transaction(tx, peer=from_peer.hex())
        except InvalidTransaction as exc:
            raise _gossip_error(exc, _IGNORED_TX) from exc
        if tx.txid not in change.accepted:
            raise GossipIgnore(Reason.MISSING_INPUT, "kept as an orphan")
        self._chain.mempool.mark_gossiped(tx.txid)
        return Verdict.ACCEPT

    async def _validate_block(self, block: Block, from_peer: PeerId) -> Verdict | Orphan:
        try:
            outcome = await self._chain.import_block(block, peer=from_peer)
        except InvalidBlock as exc:
            raise _gossip_error(exc, _IGNORED_BLOCK) from exc
        if outcome in (Outcome.IMPORTED, Outcome.PRUNED):
            return Verdict.ACCEPT  # a pruned block is relayed: peers need its votes too
        if outcome is Outcome.UNKNOWN_PARENT:
            return Orphan(block)
        if outcome in (Outcome.FUTURE_SLOT, Outcome.TOO_EARLY):
            raise GossipIgnore(Reason.FUTURE_SLOT)
        raise GossipIgnore(Reason.DUPLICATE_BLOCK)

    def _validate_offer(self, data: bytes) -> Verdict:
        if len(data) > MAX_OFFER_BYTES:
            raise GossipReject(Reason.MALFORMED, f"{len(data)}-byte offer")
        try:
            _, new = self._chain.add_offer(decode(Offer, data))
        except InvalidOffer as exc:
            raise _gossip_error(exc, _IGNORED_OFFER) from exc
        if not new:
            raise GossipIgnore(Reason.ALREADY_KNOWN)
        return Verdict.ACCEPT

    async def _validate_vote(self, vote: Vote, from_peer: PeerId) -> Verdict:
        try:
            outcome = await self._chain.import_vote(vote, peer=from_peer)
        except InvalidVote as exc:
            raise _gossip_error(exc, _IGNORED_VOTE) from exc
        if outcome is not Outcome.IMPORTED:
            raise GossipIgnore(Reason.UNKNOWN_VOTE_HEAD)
        return Verdict.ACCEPT

    async def deliver(self, topic: Topic, data: bytes) -> None:
        """Accepted gossip was already imported by `validate`; nothing is left to do."""
        await trio.lowlevel.checkpoint()

    async def import_blocks(self, blocks: tuple[Block, ...], from_peer: PeerId) -> ImportResult:
        """Blocks from sync: import in order; report which are in the tree and which broke a
        rule. Blocks from a future slot wait in our queue and count as accepted, and so do
        blocks too far ahead of our clock to be held (dropped without blaming the peer for a
        clock difference; nor are they orphans to fetch parents for). A block with an unknown
        parent is neither: the network keeps it in its orphan pool."""
        accepted: set[BlockId] = set()
        invalid: set[BlockId] = set()
        async with trio.open_nursery() as nursery:
            ahead = _VerifyAhead(self._chain, blocks)
            nursery.start_soon(ahead.run)
            for index, block in enumerate(blocks):
                await ahead.verified(index)
                try:
                    outcome = await self._chain.import_block(block, peer=from_peer)
                except InvalidBlock as exc:
                    ahead.stop()  # a batch that broke a rule gets no more of our CPU ahead
                    if exc.reason is not Reason.CONFLICTS_WITH_FINALIZED:
                        invalid.add(block.block_id)
                    continue
                if outcome is not Outcome.UNKNOWN_PARENT:
                    accepted.add(block.block_id)
            ahead.stop()
        self.gossip_news()
        return ImportResult(accepted=frozenset(accepted), invalid=frozenset(invalid))

    def gossip_news(self) -> None:
        """Gossip what the last import produced: new evidence and pool transactions."""
        network = self.network
        if network is None:
            return
        chain = self._chain
        evidence, chain.new_evidence = chain.new_evidence, []
        for found in evidence:
            network.publish(Topic.EVIDENCE, encode_item(found.to_rlp()))
        self.gossip_pool()

    def gossip_pool(self) -> None:
        """Announce each pool transaction once (again after a reorg brought it back)."""
        network = self.network
        if network is None:
            return
        mempool = self._chain.mempool
        for txid in mempool.not_gossiped():
            entry = mempool.get(txid)
            if entry is not None and mempool.mark_gossiped(txid):
                network.publish(Topic.TRANSACTION, entry.tx.encoded)

    # -- our own blocks and votes ---------------------------------------------------------------
    async def publish_block(self, block: Block) -> None:
        """Gossip our block (imported already), announce the new status, gossip the news."""
        network = self.network
        if network is None:
            raise RuntimeError("the network is not open")
        network.publish(Topic.BLOCK, encode(block))
        network.announce_status()
        self.gossip_news()
        await trio.lowlevel.checkpoint()

    def publish_offer(self, offer: Offer) -> None:
        """Gossip an offer our book took from a client."""
        if self.network is None:
            raise RuntimeError("the network is not open")
        self.network.publish(Topic.OFFER, encode(offer))

    async def publish_vote(self, vote: Vote) -> None:
        """Gossip our vote (counted already), then the news."""
        if self.network is None:
            raise RuntimeError("the network is not open")
        self.network.publish(Topic.VOTE, encode(vote))
        self.gossip_news()
        await trio.lowlevel.checkpoint()


class _VerifyAhead:
    """Verifies the witnesses of a sync batch one block ahead of its import: the worker
    thread checks block k+1's signatures (outside the GIL) while the event loop imports block
    k, where each block used to wait idle for its own. Only blocks that extend the batch's
    chain from a known block are verified, never more than one ahead of the import (so a
    batch that breaks a rule costs at most one block's checks more), and `stop` ends it."""

    def __init__(self, chain: ChainService, blocks: Sequence[Block]) -> None:
        self._chain = chain
        self._blocks = blocks
        self._verified = 0
        self._importing = 0
        self._stopped = False
        self._changed = trio.Event()
        self._cancel = trio.CancelScope()

    async def run(self) -> None:
        with self._cancel:
            known = self._chain.store.nodes
            previous: BlockId | None = None
            for index, block in enumerate(self._blocks):
                if block.header.parent != previous and block.header.parent not in known:
                    break  # it cannot be imported yet, so its witnesses can wait
                while self._importing < index - 1 and not self._stopped:
                    await self._changed.wait()
                if self._stopped:  # woken by the import's last notice before its stop
                    break
                await self._chain.verify_off_loop(block.transactions)
                previous = block.block_id
                self._verified = index + 1
                self._notify()
        self.stop()

    async def verified(self, index: int) -> None:
        """Say that block `index` is next to import; wait until it is verified, or until
        nothing more will be."""
        self._importing = index
        self._notify()
        while self._verified <= index and not self._stopped:
            await self._changed.wait()

    def stop(self) -> None:
        self._stopped = True
        self._cancel.cancel()
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
