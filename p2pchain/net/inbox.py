"""`Inbox`: a channel of events bounded in count *and* in the memory the held messages take.

A count alone does not bound memory: 1,024 waiting `IHave` messages of 5,000 ids each hold about
300 MiB of Python objects. Each event is sent with a weight (an estimate of the memory it holds,
`message_weight`); a sender waits while the held weight would pass `max_bytes`, which stops that
peer's reader (TCP back-pressure) instead of buffering more. One event heavier than the bound
still passes when the inbox is empty, so nothing is ever stuck.

Neither side switches tasks per event when it need not: `send` returns at once while there is
room, and `receive_batch` takes everything waiting in one wake-up. A reader therefore hands
every message of one receive to the consumer for the price of one task switch.

`InboxShare` bounds what one sender has in the consumer's hands (in the inbox or taken and not
yet released), so one busy peer is paced rather than dropped and never fills the inbox alone.
"""

from __future__ import annotations

from typing import Final, Generic, Self, TypeVar

import trio

from p2pchain.protocol.messages import Blocks, IHave, IWant, Message, Peers, Prune, Publish

_T = TypeVar("_T")

ID_WEIGHT: Final = 64
"""Memory of one 20-byte id held as a Python bytes object in a tuple (measured: ~60 bytes)."""
ADDRESS_WEIGHT: Final = 192
"""Memory of one address of up to 128 bytes held as a bytes object."""
BASE_WEIGHT: Final = 256
"""Memory of a small message object and its event wrapper."""


def message_weight(message: Message) -> int:
    """An estimate of the memory `message` holds while it waits (not its wire size)."""
    if isinstance(message, Publish):
        return BASE_WEIGHT + len(message.data)
    if isinstance(message, IHave | IWant):
        return BASE_WEIGHT + ID_WEIGHT * len(message.message_ids)
    if isinstance(message, Blocks):
        return BASE_WEIGHT + sum(4 * len(block.encoded) for block in message.blocks)
    if isinstance(message, Peers):
        return BASE_WEIGHT + ADDRESS_WEIGHT * len(message.addresses)
    if isinstance(message, Prune):
        return BASE_WEIGHT + ADDRESS_WEIGHT * len(message.peers)
    return BASE_WEIGHT


class InboxShare:
    """How many of one sender's events the consumer holds; the sender waits at `limit`.

    A waiting sender resumes once half the share is back, not at each release: waking a paced
    reader per released message would cost a task switch per message again.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._waiting = False
        self._room = trio.Event()

    def try_acquire(self) -> bool:
        """Take one unit if the share is below its limit (no task switch, no coroutine: the
        path of nearly every message); False at the limit, where `acquire` waits."""
        if self.held >= self.limit:
            return False
        self.held += 1
        return True

    async def acquire(self) -> None:
        """Take one unit; at the limit, wait until at most half of the share is held."""
        if self.held >= self.limit:
            self._waiting = True
            while self.held > self.limit // 2:
                await self._room.wait()
        self.held += 1

    def release(self) -> None:
        """Give one unit back (exactly once per `acquire`).

        Raises:
            RuntimeError: more releases than acquisitions (a bug of the consumer's).
        """
        if self.held <= 0:
            raise RuntimeError("inbox share released more often than taken")
        self.held -= 1
        if self._waiting and self.held <= self.limit // 2:
            self._waiting = False
            self._room.set()
            self._room = trio.Event()


class Inbox(Generic[_T]):
    """Events from many senders to one consumer; iterate it with ``async for``."""

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._send, self._receive = trio.open_memory_channel[tuple[_T, int]](max_events)
        self._held = 0
        self._room = trio.Event()

    @property
    def held_bytes(self) -> int:
        """The weight of the events waiting now."""
        return self._held

    def try_send(self, event: _T, weight: int = BASE_WEIGHT) -> bool:
        """Queue `event` if there is room for its count and its weight, without waiting;
        False (nothing queued) where `send` would wait."""
        if self._held and self._held + weight > self.max_bytes:
            return False
        try:
            self._send.send_nowait((event, weight))
        except trio.WouldBlock:
            return False
        self._held += weight
        return True

    async def send(self, event: _T, weight: int = BASE_WEIGHT) -> None:
        """Queue `event`; wait while there is no room for its count or its weight.

        With room, it returns without a checkpoint: the caller's next receive is one.
        """
        while self._held and self._held + weight > self.max_bytes:
            await self._room.wait()
        self._held += weight
        try:
            try:
                self._send.send_nowait((event, weight))
            except trio.WouldBlock:
                await self._send.send((event, weight))
        except BaseException:
            self._release(weight)
            raise

    async def receive_batch(self, max_events: int) -> list[_T]:
        """Wait for one event, then take up to `max_events` of those waiting, in order; an
        empty list once the inbox is closed and drained."""
        try:
            batch = [await self.__anext__()]
        except StopAsyncIteration:
            return []
        taken = 0
        while len(batch) < max_events:
            try:
                event, weight = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            taken += weight
            batch.append(event)
        if taken:
            self._release(taken)
        return batch

    def close(self) -> None:
        """No more events: the consumer's iteration ends once it has taken the rest."""
        self._send.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> _T:
        try:
            event, weight = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None
        self._release(weight)
        return event

    def _release(self, weight: int) -> None:
        self._held -= weight
        self._room.set()
        self._room = trio.Event()
