"""Sync request timeouts whatever the chain's parameters: a silent peer is charged and dropped.

The node runs the sans-IO `SyncManager` the way `NetworkService` does: its own chain finalizes
once per epoch (`slots_per_epoch` slots of `slot_ms`), and every time finality passes what sync
handed over, the service calls `reset` on the new anchor. With epochs shorter than
`request_timeout`, every request used to be reset before its deadline and its timeout forgiven,
so a peer that claims a high head and never answers kept the node syncing forever.
"""

import heapq

from hypothesis import given
from hypothesis import strategies as st

from p2pchain.ledger.crypto import sha256
from p2pchain.ledger.types import BlockId
from p2pchain.ledger.vote import Checkpoint
from p2pchain.protocol.connection import PeerId
from p2pchain.protocol.gossip import Send
from p2pchain.protocol.messages import GetBlocksByRange, Status
from p2pchain.protocol.scoring import Offence, Penalize
from p2pchain.protocol.sync import SyncAction, SyncManager, SyncParams, serve_blocks
from tests.protocol.test_sync import MAIN, MemoryChain

PARAMS = SyncParams()
"""The documented defaults: `request_timeout` 10 s, `timeout_penalty` 10."""
SILENT = PeerId(sha256(b"silent sync peer"))
HONEST = PeerId(sha256(b"honest sync peer"))
LATENCY = 0.05
"""Seconds the honest peer takes to answer."""

SLOTS_PER_EPOCH = st.integers(1, 64)
SLOT_MS = st.sampled_from([10, 100, 500, 1_000, 2_000, 6_000, 12_000])


def anchor_id(height: int) -> BlockId:
    """The id of our own block at `height` (only compared, never fetched)."""
    return BlockId(sha256(b"own block" + height.to_bytes(8, "big")))


def boast(height: int = 10**6) -> Status:
    return Status(
        head=sha256(b"a head nobody has"),
        head_height=height,
        head_slot=height,
        finalized=Checkpoint(epoch=0, block_id=anchor_id(0)),
    )


class Shell:
    """Drives a `SyncManager` on virtual time, as `NetworkService._run_sync` does: deadlines
    via `next_deadline`, answers before timeouts, and a `reset` whenever our own finalized
    block passes what sync handed over (`NetworkService.announce_status`)."""

    def __init__(
        self, *, slots_per_epoch: int, slot_ms: int, own_chain: bool, genesis: BlockId
    ) -> None:
        self.epoch_s = slots_per_epoch * slot_ms / 1000
        self.slots_per_epoch = slots_per_epoch
        self.own_chain = own_chain
        """Whether our own chain grows and finalizes (else we are a late joiner)."""
        self.manager = SyncManager(anchor_height=0, anchor_id=genesis, params=PARAMS)
        self.now = 0.0
        self.epoch = 0
        self.sent: list[tuple[float, PeerId, GetBlocksByRange]] = []
        self.penalties: list[tuple[float, Penalize]] = []
        self.answers: list[tuple[float, int, GetBlocksByRange]] = []
        self.imported: list[int] = []

    def run(self, actions: list[SyncAction]) -> None:
        for action in actions:
            if isinstance(action, Penalize):
                self.penalties.append((self.now, action))
            elif isinstance(action, Send) and isinstance(action.message, GetBlocksByRange):
                self.sent.append((self.now, action.peer_id, action.message))
                if action.peer_id == HONEST:
                    request = action.message
                    heapq.heappush(self.answers, (self.now + LATENCY, request.request_id, request))
            elif isinstance(action, Send):
                raise AssertionError(f"unexpected {action}")
            else:
                self.imported.extend(block.header.height for block in action.blocks)

    def advance(self, until: float) -> None:
        """Handle every answer, deadline and epoch boundary up to `until`, in time order."""
        while True:
            deadline = self.manager.next_deadline()
            next_epoch = (self.epoch + 1) * self.epoch_s if self.own_chain else None
            answer = self.answers[0][0] if self.answers else None
            due = [t for t in (deadline, next_epoch, answer) if t is not None and t <= until]
            if not due:
                self.now = until
                return
            self.now = min(due)
            while self.answers and self.answers[0][0] <= self.now:
                _, _, request = heapq.heappop(self.answers)
                response = serve_blocks(request, MemoryChain(MAIN))
                self.run(self.manager.on_blocks(HONEST, response, self.now))
            self.run(self.manager.handle_timeouts(self.now))
            if next_epoch is not None and self.now >= next_epoch:
                self.epoch += 1
                # Our own blocks: epoch e-1's first block is finalized when epoch e begins.
                finalized = max(0, (self.epoch - 1) * self.slots_per_epoch)
                if finalized >= self.manager.statistics().next_height:
                    self.run(self.manager.reset(finalized, anchor_id(finalized), self.now))

    def charged(self, peer_id: PeerId) -> list[float]:
        """When `peer_id` was charged the timeout penalty."""
        expected = Penalize(peer_id=peer_id, amount=PARAMS.timeout_penalty, reason=Offence.TIMEOUT)
        return [at for at, penalty in self.penalties if penalty == expected]

    def asked(self, peer_id: PeerId) -> list[tuple[float, GetBlocksByRange]]:
        return [(at, request) for at, p, request in self.sent if p == peer_id]


@given(slots_per_epoch=SLOTS_PER_EPOCH, slot_ms=SLOT_MS, offset=st.floats(0, 1))
def test_a_silent_peer_is_charged_within_the_timeout_whatever_the_epoch_length(
    slots_per_epoch, slot_ms, offset
):
    """The node produces and finalizes its own chain; a peer claims a far higher head and
    never answers. Every request to it costs `timeout_penalty` by its deadline, and once
    charged it is not asked again (until its next `Status`): the node stops syncing."""
    shell = Shell(
        slots_per_epoch=slots_per_epoch, slot_ms=slot_ms, own_chain=True, genesis=anchor_id(0)
    )
    # The peer turns up at some point within an epoch.
    shell.advance(offset * shell.epoch_s)
    shell.run(shell.manager.on_status(SILENT, boast(), shell.now))
    first_asked = shell.now
    assert shell.asked(SILENT)
    shell.advance(first_asked + PARAMS.request_timeout)
    charged = shell.charged(SILENT)
    assert charged, "a request was left unanswered past its deadline without a penalty"
    assert charged[0] <= first_asked + PARAMS.request_timeout
    assert not shell.manager.is_syncing
    # Later on: nothing more is asked of it, every request it had is charged once, by its
    # deadline, and nothing else is held against it.
    shell.advance(first_asked + 5 * PARAMS.request_timeout + 2 * shell.epoch_s)
    asked = shell.asked(SILENT)
    assert all(at < charged[0] for at, _ in asked)
    assert len(shell.charged(SILENT)) == len(asked) == len(shell.penalties)
    deadlines = sorted(at + PARAMS.request_timeout for at, _ in asked)
    assert all(
        at <= deadline for at, deadline in zip(shell.charged(SILENT), deadlines, strict=True)
    )
    assert not shell.manager.is_syncing
    assert shell.manager.statistics().in_flight == 0
    assert shell.manager.statistics().timeouts == len(asked)
    # A new Status makes it a sync peer again, and its silence costs it again.
    shell.run(shell.manager.on_status(SILENT, boast(), shell.now))
    again = len(shell.asked(SILENT))
    assert again > len(asked)
    shell.advance(shell.now + PARAMS.request_timeout)
    assert len(shell.charged(SILENT)) == again


@given(slots_per_epoch=SLOTS_PER_EPOCH, slot_ms=SLOT_MS)
def test_a_silent_peer_is_charged_and_an_honest_one_serves_its_ranges(slots_per_epoch, slot_ms):
    """A late joiner with a silent and an honest peer: the ranges the silent one left
    unanswered are charged within the timeout and fetched from the honest one."""
    shell = Shell(
        slots_per_epoch=slots_per_epoch, slot_ms=slot_ms, own_chain=False, genesis=MAIN[0].block_id
    )
    shell.run(shell.manager.on_status(SILENT, boast(len(MAIN) - 1), 0.0))
    shell.run(shell.manager.on_status(HONEST, MemoryChain(MAIN).status(), 0.0))
    assert shell.asked(SILENT)
    shell.advance(PARAMS.request_timeout)
    assert shell.charged(SILENT)
    assert all(at <= PARAMS.request_timeout for at in shell.charged(SILENT))
    shell.advance(3 * PARAMS.request_timeout)
    assert shell.imported == list(range(1, len(MAIN)))
    assert not shell.manager.is_syncing
    assert len(shell.charged(SILENT)) == len(shell.asked(SILENT)) == len(shell.penalties)


def test_an_answer_in_time_after_a_reset_is_dropped_without_blame():
    """`reset` forgives the content of an answer to an older request, not its absence."""
    manager = SyncManager(anchor_height=0, anchor_id=MAIN[0].block_id, params=PARAMS)
    actions = manager.on_status(HONEST, MemoryChain(MAIN[:20]).status(), 0.0)
    (request,) = [a.message for a in actions if isinstance(a, Send)]
    manager.reset(10, MAIN[10].block_id, 1.0)
    response = serve_blocks(request, MemoryChain(MAIN))
    assert not [a for a in manager.on_blocks(HONEST, response, 2.0) if isinstance(a, Penalize)]
    assert not [
        a for a in manager.handle_timeouts(PARAMS.request_timeout) if isinstance(a, Penalize)
    ]
    assert manager.statistics().timeouts == 0


def test_no_answer_after_a_reset_is_still_charged():
    manager = SyncManager(anchor_height=0, anchor_id=MAIN[0].block_id, params=PARAMS)
    actions = manager.on_status(SILENT, boast(), 0.0)
    assert [a for a in actions if isinstance(a, Send)]
    manager.reset(10, anchor_id(10), 1.0)
    actions = manager.handle_timeouts(PARAMS.request_timeout)
    charged = [a for a in actions if isinstance(a, Penalize)]
    assert charged
    assert set(charged) == {
        Penalize(peer_id=SILENT, amount=PARAMS.timeout_penalty, reason=Offence.TIMEOUT)
    }
    assert not [a for a in actions if isinstance(a, Send)]
    assert not manager.is_syncing
