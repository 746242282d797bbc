"""`NodeClock`: the Unix time (ms) a node's slots follow, which a dev chain can steer.

Normally it is trio's clock plus a fixed offset (the wall clock, or a skewed one). A testnet may
move the offset while the node runs (`set_offset_ms`), or put the clock in manual mode, where
time stands still until `set_time_ms` moves it on: a supervisor then produces slots on demand.
Either change wakes whoever sleeps in `sleep_until_ms`, so the slot loop acts on it at once.
Peer timeouts and rate limits keep trio's own clock: only consensus time moves.
"""

from __future__ import annotations

import trio

from p2pchain.errors import ConfigError


class NodeClock:
    """Unix time in ms = ``trio.current_time() * 1000 + offset_ms``, or the manual time."""

    def __init__(self, offset_ms: int, *, manual_start_ms: int | None = None) -> None:
        self.offset_ms = offset_ms
        self._manual_ms = manual_start_ms
        self._changed = trio.Event()

    @property
    def manual(self) -> bool:
        return self._manual_ms is not None

    def now_ms(self) -> int:
        if self._manual_ms is not None:
            return self._manual_ms
        return round(trio.current_time() * 1000) + self.offset_ms

    def set_offset_ms(self, offset_ms: int) -> None:
        """Move the clock (for a wall clock: skew it) from now on."""
        self.offset_ms = offset_ms
        self._wake()

    def set_time_ms(self, time_ms: int) -> None:
        """Move a manual clock forward to `time_ms`.

        Raises:
            ConfigError: the clock follows trio's, or `time_ms` is before its time (consensus
                time never runs backwards: blocks and votes already made would be from the
                future).
        """
        if self._manual_ms is None:
            raise ConfigError("the clock is not manual (start the node with manual_clock)")
        if time_ms < self._manual_ms:
            raise ConfigError(f"time {time_ms} is before the clock's {self._manual_ms}")
        self._manual_ms = time_ms
        self._wake()

    async def sleep_until_ms(self, time_ms: float) -> None:
        """Return once the clock reads `time_ms` or later, however it got there."""
        while True:
            changed = self._changed
            if self._manual_ms is not None:
                if self._manual_ms >= time_ms:
                    return
                await changed.wait()
                continue
            deadline = (time_ms - self.offset_ms) / 1000  # on trio's clock: no rounding
            if trio.current_time() >= deadline:
                return
            with trio.move_on_at(deadline):
                await changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
