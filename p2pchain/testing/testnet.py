# ruff: noqa: PT028  (`testnet` is named like a pytest test but is a fixture factory)
"""`testnet(n)`: n validator nodes in one trio run, with a fresh genesis and funded wallets.

Over real loopback TCP by default, or over a `SimulatedNetwork` (pass ``transport=``) where trio's
MockClock drives the slots, so that epochs of consensus take milliseconds and repeat exactly::

    async with testnet(4, transport=SimulatedNetwork(seed=1)) as net:
        await net.wait_finalized(2)
        tx = net.transfer(0, net.wallets[1].address, 5 * COIN)
        await net.nodes[0].submit_transaction(tx)
        await net.wait_for(lambda: all(n.get_transaction(tx.txid).status == "finalized"
                                       for n in net.nodes))

Waiting helpers re-check their condition whenever some node's chain changes: no fixed sleeps.
Nodes can be stopped, restarted (from their data directory when the testnet has one) and added
late.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from p2pchain.errors import ConfigError
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.genesis import Allocation, GenesisConfig, self_bonded_genesis
from p2pchain.ledger.tx import Transaction, TxOutput
from p2pchain.ledger.types import Address, Amount, AssetId, Height, Slot
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Wallet
from p2pchain.node import Node, NodeConfig, NodeLimits, open_node
from p2pchain.params import COIN, ChainParams
from p2pchain.testing.simnet import SimulatedNetwork

BLOCK_WAIT_S = 5.0
"""How long `Testnet.mine` waits for a slot's block to reach every node (its proposer may be
stopped or partitioned away)."""
TESTNET_PARAMS = ChainParams(slot_ms=1_000, slots_per_epoch=4, reward_maturity=2)
"""Small, fast parameters: 1 s slots, 4-slot epochs (finality every 4 s)."""


def derive_key(seed: int, role: str, index: int) -> SecretKey:
    """A deterministic key for `role` number `index` of the testnet with `seed`."""
    return SecretKey.from_entropy(sha256(f"p2pchain/testnet/{seed}/{role}/{index}".encode()))


@dataclass(slots=True)
class _Running:
    node: Node
    scope: trio.CancelScope
    done: trio.Event


@dataclass(slots=True, kw_only=True)
class Testnet:
    """The running nodes, their configs, the funded wallets, and helpers to wait on them."""

    __test__ = False  # not a pytest test class, despite the name

    params: ChainParams
    genesis: GenesisConfig
    configs: list[NodeConfig]
    wallets: list[Wallet]
    validator_keys: list[SecretKey]
    transport: SimulatedNetwork | None
    seed: int
    _nursery: trio.Nursery
    _running: dict[int, _Running] = field(default_factory=dict)

    @property
    def nodes(self) -> list[Node]:
        """The running nodes, by index."""
        return [self._running[i].node for i in sorted(self._running)]

    def node(self, index: int) -> Node:
        return self._running[index].node

    # -- lifecycle -----------------------------------------------------------------------------
    async def start_node(self, index: int) -> Node:
        """Start node `index` from its config (a restart resumes from its data directory)."""
        if index in self._running:
            raise RuntimeError(f"node {index} is running")
        config = self._with_bootnodes(self.configs[index], index)
        running: _Running = await self._nursery.start(_run_node, config)
        self._running[index] = running
        return running.node

    async def stop_node(self, index: int) -> None:
        """Stop node `index` (cleanly: its data directory stays consistent) and wait."""
        running = self._running.pop(index)
        running.scope.cancel()
        await running.done.wait()

    async def add_node(
        self, *, validator_key: SecretKey | None = None, snapshot_sync: bool = False
    ) -> Node:
        """Start one more node (a late joiner that syncs from genesis, or with
        `snapshot_sync` from a snapshot of the finalized state); returns it."""
        base = self.configs[0]
        index = len(self.configs)
        self.configs.append(
            NodeConfig(
                genesis=base.genesis,
                params=base.params,
                data_dir=None if base.data_dir is None else base.data_dir.parent / f"node{index}",
                listen=_listen(self.transport, index),
                node_key=derive_key(self.seed, "node", index),
                validator_key=validator_key,
                limits=base.limits,
                transport=None
                if self.transport is None
                else self.transport.transport(_name(index)),
                clock_offset_ms=base.clock_offset_ms,
                network_seed=None if base.network_seed is None else base.network_seed + index,
                offload_blocking=base.offload_blocking,
                manual_clock=base.manual_clock,
                dev_rpc=base.dev_rpc,
                snapshot_sync=snapshot_sync,
            )
        )
        return await self.start_node(index)

    def _with_bootnodes(self, config: NodeConfig, index: int) -> NodeConfig:
        if self.transport is not None:
            others = [SimulatedNetwork.address(_name(i)) for i in range(len(self.configs))]
            bootnodes = tuple(a for a in others if a != SimulatedNetwork.address(_name(index)))
        else:
            bootnodes = tuple(
                address
                for i, running in self._running.items()
                if i != index
                for address in running.node.info.listen_addresses
                if address.startswith("tcp://")
            )
        return dataclasses.replace(config, bootnodes=bootnodes)

    # -- the control API it shares with `p2pchain testnet` (`TestnetControl`) -------------------
    async def kill(self, node: int) -> None:
        """Stop node `node` at once: its tasks are cancelled (in one process this is as abrupt
        as a stop gets; what it had made durable survives, as after a crash)."""
        if node not in self._running:
            raise ConfigError(f"node {node} is not running")
        await self.stop_node(node)

    async def restart(self, node: int) -> None:
        """Stop node `node` if it runs, then start it again (from its data directory)."""
        self._check_node(node)
        if node in self._running:
            await self.stop_node(node)
        await self.start_node(node)

    async def partition(self, *groups: Sequence[int]) -> None:
        """Hold every byte between `groups` of node indices (nodes in none form one more
        group) until `heal`; new links between groups are refused."""
        for group in groups:
            for node in group:
                self._check_node(node)
        self._simulated().partition(*[[_name(i) for i in group] for group in groups])

    async def heal(self) -> None:
        self._simulated().heal()

    async def delay(self, node: int, ms: int) -> None:
        """Delay every byte to or from node `node` by `ms` more, one way (0 removes it)."""
        self._check_node(node)
        if not 0 <= ms <= 60_000:
            raise ConfigError(f"delay must be 0..60000 ms, got {ms}")
        self._simulated().set_delay(_name(node), ms / 1000)

    async def drop(self, node: int, percent: float) -> None:
        """Lose `percent` of the chunks to or from node `node` (each one a retransmission)."""
        self._check_node(node)
        if not 0 <= percent < 100:
            raise ConfigError(f"loss must be at least 0 % and below 100 %, got {percent}")
        self._simulated().set_loss(_name(node), percent / 100)

    async def skew(self, node: int, ms: int) -> None:
        """Run node `node`'s slot clock `ms` off the wall clock from now on."""
        if node not in self._running:
            self._check_node(node)
            raise ConfigError(f"node {node} is not running")
        self.node(node).set_clock_skew(ms)

    async def mine(self, slots: int = 1) -> None:
        """Make the next `slots` slots happen now on manual clocks (``manual_clock=True``):
        each running node moves to the slot's start (its proposer proposes), the block spreads
        (waited for up to `BLOCK_WAIT_S`), then to half-way (the validators due vote)."""
        nodes = self.nodes
        if not nodes or not all(node.clock_status().manual for node in nodes):
            raise ConfigError("mining needs manual clocks: testnet(..., manual_clock=True)")
        if not 1 <= slots <= 1_000:
            raise ConfigError(f"slots must be 1..1000, got {slots}")
        slot = max(node.clock_status().slot for node in nodes)
        for _ in range(slots):
            slot = Slot(slot + 1)
            start = self.genesis.genesis_time_ms + slot * self.params.slot_ms
            await self._advance_all(start)
            with trio.move_on_after(BLOCK_WAIT_S):
                await self.wait_for(functools.partial(self._all_reached, slot))
            await self._advance_all(start + self.params.slot_ms // 2)

    def _all_reached(self, slot: int) -> bool:
        return all(node.head().slot >= slot for node in self.nodes)

    async def _advance_all(self, time_ms: int) -> None:
        async with trio.open_nursery() as nursery:
            for node in self.nodes:
                nursery.start_soon(node.advance_clock, time_ms)

    async def running(self) -> list[bool]:
        """Which nodes run, by index."""
        return [index in self._running for index in range(len(self.configs))]

    def _check_node(self, node: int) -> None:
        if not 0 <= node < len(self.configs):
            raise ConfigError(f"no node {node} (0..{len(self.configs) - 1})")

    def _simulated(self) -> SimulatedNetwork:
        if self.transport is None:
            raise ConfigError(
                "link faults in one process need the simulated transport "
                "(`testnet(n, transport=SimulatedNetwork(seed))`); `p2pchain testnet` has them "
                "over real sockets"
            )
        return self.transport

    # -- wallets -------------------------------------------------------------------------------
    def transfer(
        self,
        wallet: int,
        to: Address,
        amount: int,
        *,
        fee: int = 10_000,
        node: int | None = None,
        asset: AssetId | None = None,
    ) -> Transaction:
        """A signed transfer from wallet `wallet`, funded by its outputs at `node`'s head."""
        source = self.node(min(self._running) if node is None else node)
        head = source.head()
        payer = self.wallets[wallet]
        payment = TxOutput(
            asset=AssetId(self.params.native_asset if asset is None else asset),
            amount=Amount(amount),
            address=to,
        )
        return payer.build_transfer(
            source.utxos(payer.address),
            [payment],
            fee=Amount(fee),
            context=BlockContext(height=Height(head.height + 1), slot=Slot(head.slot + 1)),
        )

    # -- waiting -------------------------------------------------------------------------------
    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Wait until `condition()` holds; re-checked whenever a running node's chain, pool or
        transaction statuses change (at least once a slot while validators run)."""
        if not self._running:
            raise RuntimeError("no node is running")
        while not condition():
            async with trio.open_nursery() as nursery:
                for node in self.nodes:
                    nursery.start_soon(_wait_then_cancel, node, nursery.cancel_scope)

    async def wait_heads_equal(self, *, min_height: int = 0) -> None:
        """Wait until every running node has the same head, at `min_height` or above."""

        def equal() -> bool:
            heads = {node.head() for node in self.nodes}
            return len(heads) == 1 and next(iter(heads)).height >= min_height

        await self.wait_for(equal)

    async def wait_finalized(self, epoch: int) -> None:
        """Wait until every running node has finalized `epoch` or a later one."""
        await self.wait_for(lambda: all(n.finalized().epoch >= epoch for n in self.nodes))

    async def wait_height(self, height: int) -> None:
        """Wait until every running node's head is at `height` or above."""
        await self.wait_for(lambda: all(n.head().height >= height for n in self.nodes))


async def _wait_then_cancel(node: Node, scope: trio.CancelScope) -> None:
    await node.wait_changed()
    scope.cancel()


async def _run_node(
    config: NodeConfig, *, task_status: trio.TaskStatus[_Running] = trio.TASK_STATUS_IGNORED
) -> None:
    done = trio.Event()
    try:
        with trio.CancelScope() as scope:
            async with open_node(config) as node:
                task_status.started(_Running(node=node, scope=scope, done=done))
                await trio.sleep_forever()
    finally:
        done.set()


def _name(index: int) -> str:
    return f"node{index}"


def _listen(transport: SimulatedNetwork | None, index: int) -> tuple[str, ...]:
    if transport is None:
        return ("tcp://127.0.0.1:0",)
    return (SimulatedNetwork.address(_name(index)),)


def make_testnet_genesis(
    params: ChainParams,
    validators: Sequence[SecretKey],
    wallets: Sequence[Wallet],
    *,
    genesis_time_ms: int,
    stake: int,
    balance: int,
) -> GenesisConfig:
    """Each validator bonded with `stake` (owned by its own address); each wallet `balance`."""
    return self_bonded_genesis(
        chain_id=params.chain_id,
        genesis_time_ms=genesis_time_ms,
        stakes=[(key.public_key, stake) for key in validators],
        allocations=[Allocation(address=w.address, amount=Amount(balance)) for w in wallets],
    )


@asynccontextmanager
async def testnet(
    n: int,
    *,
    params: ChainParams | None = None,
    seed: int = 0,
    transport: SimulatedNetwork | None = None,
    data_dir: Path | None = None,
    wallets: int = 4,
    balance: int = 1_000 * COIN,
    stake: int = 100 * COIN,
    limits: NodeLimits | None = None,
    manual_clock: bool = False,
    dev_rpc: bool = False,
) -> AsyncIterator[Testnet]:
    """Start `n` validator nodes with a fresh genesis; stop them all on exit.

    Args:
        transport: a `SimulatedNetwork` to run on (use trio's MockClock); None = loopback TCP
            on the real clock.
        data_dir: where node ``i`` keeps ``node{i}/``; None = in memory (no restarts from disk).
        wallets: funded wallets, each with `balance` native base units (`Testnet.wallets`).
        manual_clock: slots happen only on `Testnet.mine` (a dev chain, on any transport).
        dev_rpc: an RPC server on a node (`serve_rpc`) also serves the dev_* clock methods.
    """
    chain_params = TESTNET_PARAMS if params is None else params
    keys = [derive_key(seed, "validator", i) for i in range(n)]
    funded = [Wallet(derive_key(seed, "wallet", i), chain_params) for i in range(wallets)]
    if transport is None:
        genesis_time_ms = int(time.time() * 1000)
        offset: int | None = None
    else:
        genesis_time_ms = 0
        offset = -round(trio.current_time() * 1000)
    genesis = make_testnet_genesis(
        chain_params, keys, funded, genesis_time_ms=genesis_time_ms, stake=stake, balance=balance
    )
    configs = [
        NodeConfig(
            genesis=genesis,
            params=chain_params,
            data_dir=None if data_dir is None else data_dir / _name(i),
            listen=_listen(transport, i),
            node_key=derive_key(seed, "node", i),
            validator_key=keys[i],
            limits=NodeLimits() if limits is None else limits,
            transport=None if transport is None else transport.transport(_name(i)),
            clock_offset_ms=offset,
            network_seed=None if transport is None else seed * 1_000 + i,
            offload_blocking=transport is None,
            manual_clock=manual_clock,
            dev_rpc=dev_rpc,
        )
        for i in range(n)
    ]
    async with trio.open_nursery() as nursery:
        net = Testnet(
            params=chain_params,
            genesis=genesis,
            configs=configs,
            wallets=funded,
            validator_keys=keys,
            transport=transport,
            seed=seed,
            _nursery=nursery,
        )
        try:
            for index in range(n):
                await net.start_node(index)
            yield net
        finally:
            for running in net._running.values():
                running.scope.cancel()


testnet.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, despite the name
