"""Validator duties: propose in our scheduled slots, vote once per epoch in our duty slot.

Nothing we sign leaves the node before the slashing-protection record has accepted it and
(for the SQLite record) made that durable: the record is the last line of defence when a
restarted node would otherwise sign a second, different block for a slot or vote for an epoch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import trio

from p2pchain.consensus import (
    build_block,
    compute_epoch_at_slot,
    compute_vote_slot,
    get_governance,
    get_head,
    get_proposer,
    make_vote,
)
from p2pchain.consensus.builder import BLOCK_OVERHEAD_BYTES
from p2pchain.errors import InvalidBlock, InvalidVote, SlashingProtectionError
from p2pchain.ledger.block import Block
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.types import BlockId, Slot
from p2pchain.ledger.vote import Vote
from p2pchain.node.chain import ChainService, Outcome
from p2pchain.node.protection import SlashingProtection


@dataclass(slots=True)
class DutyStatistics:
    proposed: int = 0
    voted: int = 0
    refused: int = 0
    """Signatures the slashing-protection record refused."""


@dataclass(slots=True)
class ProposalPace:
    """What our proposals cost per transaction, so that the next one fits its time budget.

    The cost counted is what grows with the block: building it (validating and applying each
    transaction) and importing it, each timed once it holds the chain lock, so that a wait
    for the lock or a slow moment does not make a small block look expensive per transaction
    and shrink the next ones for long.
    """

    budget_s: float
    seconds_per_tx: float = 0.0
    """The last proposal's; 0 before any, or when the clock did not move (no cap)."""

    def cap(self, most: int) -> int:
        """Transactions the next proposal may take, at most `most` and at least one."""
        if self.seconds_per_tx <= 0:
            return most
        return max(1, min(most, int(self.budget_s / self.seconds_per_tx)))

    def observe(self, seconds: float, transactions: int) -> None:
        self.seconds_per_tx = seconds / max(1, transactions)


class ValidatorDuties:
    """Proposes and votes for one validator key on top of a `ChainService`."""

    def __init__(
        self,
        chain: ChainService,
        key: SecretKey,
        protection: SlashingProtection,
        *,
        publish_block: Callable[[Block], Awaitable[None]],
        publish_vote: Callable[[Vote], Awaitable[None]],
    ) -> None:
        self.chain = chain
        self.key = key
        self.protection = protection
        self._publish_block = publish_block
        self._publish_vote = publish_vote
        self.counts = DutyStatistics()
        self.pace = ProposalPace(chain.limits.proposal_budget * chain.params.slot_ms / 1000)

    def is_proposer(self, slot: Slot, parent: BlockId | None = None) -> bool:
        store = self.chain.store
        parent_id = get_head(store) if parent is None else parent
        return get_proposer(store, parent_id, slot) == self.key.public_key

    def is_vote_slot(self, slot: Slot) -> bool:
        epoch = compute_epoch_at_slot(self.chain.params, slot)
        return compute_vote_slot(self.chain.params, self.key.public_key, epoch) == slot

    async def propose(self, slot: Slot, *, parent: BlockId | None = None) -> Block | None:
        """Build, record, import and publish our block for `slot` on `parent` (the head).

        Returns None when it is not our slot there or the head is already at `slot`.

        Raises:
            SlashingProtectionError: we signed another block for this slot (or a later one).
        """
        chain = self.chain
        async with chain.lock:
            store = chain.store
            parent_id = get_head(store) if parent is None else parent
            node = store.nodes.get(parent_id)
            if node is None or node.slot >= slot or not self.is_proposer(slot, parent_id):
                return None
            params = get_governance(store, parent_id, slot).params
            started = trio.current_time()
            transactions = chain.mempool.select_for_block(
                params.max_block_bytes - BLOCK_OVERHEAD_BYTES,
                self.pace.cap(params.max_block_txs - 1),
            )
            try:
                block = build_block(
                    store,
                    parent_id,
                    slot,
                    self.key,
                    transactions=transactions,
                    votes=list(chain.vote_pool.values()),
                    evidence=list(chain.evidence_pool.values()),
                    signatures_valid=chain.signatures,
                )
            except InvalidBlock:
                return None
            build_s = trio.current_time() - started
            record = partial(
                self.protection.check_and_record_proposal,
                self.key.public_key,
                slot,
                block.block_id,
            )
            try:
                await chain.run_storage(record)
            except SlashingProtectionError:
                self.counts.refused += 1
                raise
        try:
            outcome = await chain.import_block(block)
        except InvalidBlock:
            return None  # finality moved past our parent meanwhile: the block is useless
        cost_s = build_s + chain.last_import_s
        if outcome is Outcome.IMPORTED:
            self.pace.observe(cost_s, len(transactions))
        self.counts.proposed += 1
        chain.log.info(
            "proposed block %s height=%d slot=%d txs=%d (built and imported in %.0f ms)",
            block.block_id.hex()[:16],
            block.header.height,
            slot,
            len(block.transactions),
            cost_s * 1000,
        )
        await self._publish_block(block)
        return block

    async def vote(self, slot: Slot, *, head: BlockId | None = None) -> Vote | None:
        """Sign, record, count and publish our vote for `slot` (for the fork-choice head).

        Raises:
            SlashingProtectionError: the vote would be a double or surround vote.
        """
        chain = self.chain
        async with chain.lock:
            vote = make_vote(chain.store, self.key, slot, head=head)
            try:
                await chain.run_storage(partial(self.protection.check_and_record_vote, vote))
            except SlashingProtectionError:
                self.counts.refused += 1
                raise
        try:
            await chain.import_vote(vote)
        except InvalidVote:
            return None
        self.counts.voted += 1
        await self._publish_vote(vote)
        return vote
