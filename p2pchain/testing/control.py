"""`TestnetControl`: the calls that steer a testnet, whether its nodes run in this process
(`p2pchain.testnet(n, transport=SimulatedNetwork(seed))`) or as the OS processes of a running
``p2pchain testnet`` (`p2pchain.cli.control.RemoteTestnet(dir)`), so that one fault scenario
runs against both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class TestnetControl(Protocol):
    """Faults by node index; every call raises `ConfigError` for an unknown node or value."""

    async def running(self) -> list[bool]:
        """Which nodes run, by index."""

    async def kill(self, node: int) -> None:
        """Stop the node at once (a SIGKILL for a process)."""

    async def restart(self, node: int) -> None:
        """Start the node again from its data directory (stopping it first if it runs)."""

    async def partition(self, *groups: Sequence[int]) -> None:
        """Hold the bytes between groups and refuse new links between them, until `heal`."""

    async def heal(self) -> None:
        """Remove the partition."""

    async def delay(self, node: int, ms: int) -> None:
        """Delay every byte to or from the node by `ms`, one way (0 removes it)."""

    async def drop(self, node: int, percent: float) -> None:
        """Lose `percent` of the chunks to or from the node, each arriving a retransmission
        timeout late (0 removes it)."""

    async def skew(self, node: int, ms: int) -> None:
        """Run the node's slot clock `ms` off the wall clock from now on (0: on time)."""

    async def mine(self, slots: int = 1) -> None:
        """On manual clocks: make the next `slots` slots happen now (blocks, then votes)."""
