"""Jepsen-style chaos runs of a real `p2pchain testnet`: node OS processes on loopback, their
links through the supervisor's relays, faults injected through the control port, and a
payment load and a watcher that talk to the nodes only over JSON-RPC, as any client would.

The run records what clients were told (acknowledged transactions, finalized checkpoints and
transaction statuses, per node, over time) and checks it against what the chain did:

- no two nodes ever report different finalized blocks for one epoch, and every finalized block
  stays on the canonical chain; no node's finalized epoch ever moves back, across restarts;
- every transaction a node acknowledged ends finalized (each demo wallet talks to one node, so
  no wallet ever double-spends: a lost payment is the node's fault, never the wallet's);
- a transaction a node reported finalized never has a lower status there afterwards;
- no validator signed two votes with one target epoch or a vote surrounding another (scanned
  in every vote the chain included) and no slashing happened;
- after a heal, every node converges on one head and finality moves again within 2 epochs;
- at the end every node reports one finalized block and one state root for it.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import random
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio
from rich.console import Console

from p2pchain.cli.config import load_network, read_key
from p2pchain.cli.control import RemoteTestnet
from p2pchain.cli.payments import spend_own_coins
from p2pchain.cli.rpc_client import RpcClient, connect_rpc, parse_utxos
from p2pchain.cli.testnet import run_testnet
from p2pchain.errors import InsufficientFunds
from p2pchain.ledger.tx import NO_LOCK, OutPoint, TxOutput
from p2pchain.ledger.types import AssetId
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Wallet
from p2pchain.params import COIN, ChainParams
from tests.cli.test_testnet_processes import _free_port_block

NODES = 4
PARAMS = ChainParams(slot_ms=1000, slots_per_epoch=4)
SLOT_S = PARAMS.slot_ms / 1000
EPOCH_S = SLOT_S * PARAMS.slots_per_epoch
PAYMENT = COIN // 100
FEE = 10_000
POLL_S = 0.2
WAIT_S = 120.0
"""Bound of every wait on a condition: a stuck run fails instead of hanging."""
RANK = {"unknown": 0, "rejected": 0, "pending": 1, "included": 2, "finalized": 3}
TOLERATED_SKEW_MS = PARAMS.slot_ms // 2
"""Within `max_future_slots` (2): the node's blocks and votes are held, not ignored, by peers."""
BEYOND_SKEW_MS = 10 * PARAMS.slot_ms
RESUME_SLOTS = 3 * PARAMS.slots_per_epoch + 1
"""The documented bound on finality after a heal (docs/consensus.md): three epochs, and the
slot in which the last votes of the third one arrive."""


class RunFailed(AssertionError):
    """A check of the run failed."""


@dataclass
class Figures:
    """What a run did and found; the soak run's go into docs/security.md."""

    kills: int = 0
    kills_after_ack: int = 0
    kills_during_recovery: int = 0
    partitions: int = 0
    link_faults: int = 0
    skews: int = 0
    acknowledged: int = 0
    finalized: int = 0
    lost: int = 0
    conflicting_finality: int = 0
    finality_regressions: int = 0
    status_regressions: int = 0
    double_signs: int = 0
    convergence_slots: list[float] = field(default_factory=list)
    """Per heal: slots until one head everywhere."""
    finality_resume_slots: list[float] = field(default_factory=list)
    """Per heal: slots until every node finalized past what it had at the heal."""
    duration_s: float = 0.0
    blocks: int = 0

    def as_json(self) -> dict[str, object]:
        rate = self.finalized / self.duration_s if self.duration_s else 0.0
        return {
            **{name: value for name, value in vars(self).items() if not name.endswith("slots")},
            "convergence_slots_max": max(self.convergence_slots, default=0.0),
            "convergence_slots_median": _median(self.convergence_slots),
            "finality_resume_slots_max": max(self.finality_resume_slots, default=0.0),
            "finality_resume_slots_median": _median(self.finality_resume_slots),
            "finalized_payments_per_s": round(rate, 2),
        }


def _median(values: list[float]) -> float:
    return statistics.median_high(values) if values else 0.0


@dataclass
class Ack:
    txid: str
    node: int


class ChaosRun:
    """A 4-node testnet in `root` and what its clients saw. Use `run(...)`."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root = root
        self.random = random.Random(seed)
        self.seed = seed
        base = _free_port_block(32)
        self.base_port = base
        self.rpc_urls = [f"ws://127.0.0.1:{base + 24 + i}" for i in range(NODES)]
        self.metrics_port = base + 28
        self.testnet = RemoteTestnet(root)
        self.figures = Figures()
        self.acks: list[Ack] = []
        self.kill_after_ack: set[int] = set()
        self.finalized_at: dict[int, str] = {}
        """Epoch -> the block any node reported finalized for it."""
        self.highest_finalized: list[int] = [0] * NODES
        """Per node, the highest finalized epoch it ever reported (never to move back)."""
        self.status_seen: dict[tuple[int, str], int] = {}
        self.heads: list[str | None] = [None] * NODES
        self.finalized_now: list[int] = [0] * NODES
        self.asked_at: list[float] = [0.0] * NODES
        """Per node, when the latest `chain_finalized` call was sent."""
        self.moved_after: list[float | None] = [None] * NODES
        """Per node, the earliest moment its finality can have moved past `awaited_past`: when
        the last call that still saw the old epoch was sent (what a node reports is observed
        one poll late; the bound is checked against the node, not against the poll)."""
        self.awaited_past: list[int] | None = None
        self.violations: list[str] = []

    # -- the run ------------------------------------------------------------------------------
    async def run(self, steps: Callable[[ChaosRun], Awaitable[None]], *, rate: float) -> Figures:
        """Start the network, run `steps` under a payment load of `rate` per wallet per second,
        then heal everything, wait for the end state and check it."""
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._supervisor)
            await self.until(self._all_answer, "every node answers")
            nursery.start_soon(self._watch)
            await self.until(lambda: self._finalized_at_least(1), "the chain finalizes")
            async with trio.open_nursery() as load:
                wallets = self._wallets()
                for index, wallet in enumerate(wallets):
                    payee = wallets[(index + 1) % len(wallets)]
                    load.start_soon(self._pay, index, wallet, payee, rate)
                await steps(self)
                load.cancel_scope.cancel()  # what was acknowledged so far must all finalize
            await self.settle()
            self.figures.duration_s = trio.current_time() - started
            await self._check_end()
            nursery.cancel_scope.cancel()
        print("chaos figures:", json.dumps(self.figures.as_json()), flush=True)
        if self.violations:
            raise RunFailed("; ".join(self.violations[:20]))
        return self.figures

    async def _supervisor(self) -> None:
        await run_testnet(
            self.root,
            nodes=NODES,
            params=PARAMS,
            tx_rate=0.0,
            duration=None,
            log_level="info",
            base_port=self.base_port,
            rpc_port=self.base_port + 24,
            metrics_port=self.metrics_port,
            console=Console(file=io.StringIO()),
        )

    # -- faults (each counted) ----------------------------------------------------------------
    async def kill_and_restart(self, node: int, *, down_s: float) -> None:
        await self._kill(node)
        await trio.sleep(down_s)
        await self.testnet.restart(node)

    async def kill_right_after_ack(self, node: int) -> None:
        """SIGKILL `node` the moment it acknowledges its wallet's next payment."""
        self.kill_after_ack.add(node)
        await self.until(self._killed_after_ack(node), f"node {node} acknowledges a payment")
        await self.testnet.restart(node)

    async def kill_during_recovery(self, node: int, *, after_s: float) -> None:
        """Restart `node` and SIGKILL it again `after_s` into its startup and recovery."""
        await self._kill(node)
        await self.testnet.restart(node)
        await trio.sleep(after_s)
        await self._kill(node)
        self.figures.kills_during_recovery += 1
        await self.testnet.restart(node)

    async def partition(self, *groups: list[int], epochs: float) -> None:
        """Hold `groups` apart for `epochs`, heal, and time convergence and finality.

        The split starts from a recovered network (every node up, on one head, finalized as
        far as any), so that the time to finality after the heal measures the partition, not
        a restart that happened just before it."""
        await self.until(self._one_head, "one head before the split")
        await self.until(
            lambda: self._finalized_at_least(max(self.finalized_now)), "finality before the split"
        )
        await self.testnet.partition(*groups)
        self.figures.partitions += 1
        await trio.sleep(epochs * EPOCH_S)
        await self.heal_and_measure()

    async def heal_and_measure(self) -> None:
        finalized = list(self.finalized_now)
        self.awaited_past, self.moved_after = finalized, [None] * NODES
        await self.testnet.heal()
        healed = trio.current_time()
        await self.until(self._one_head, "one head after the heal")
        self.figures.convergence_slots.append((trio.current_time() - healed) / SLOT_S)

        def finality_moved() -> bool:
            running = self._running_indices()
            return all(self.finalized_now[i] > finalized[i] for i in running)

        await self.until(finality_moved, "finality after the heal")
        self.awaited_past = None
        slots = (trio.current_time() - healed) / SLOT_S
        self.figures.finality_resume_slots.append(slots)
        # docs/consensus.md, "Liveness after a partition": the rest of the heal's epoch (whose
        # votes went to two branches), then two epochs. A violation is a node whose finality
        # had certainly not moved when the bound ran out.
        moved = [self.moved_after[i] for i in self._running_indices()]
        earliest = max((at for at in moved if at is not None), default=healed)
        earliest_slots = (earliest - healed) / SLOT_S
        allowed = RESUME_SLOTS
        if earliest_slots > allowed:
            self.violations.append(
                f"finality resumed {earliest_slots:.1f} to {slots:.1f} slots after a heal,"
                f" beyond {allowed}"
            )

    async def degrade(
        self, node: int, *, delay_ms: int, loss_percent: float, epochs: float
    ) -> None:
        await self.testnet.delay(node, delay_ms)
        await self.testnet.drop(node, loss_percent)
        self.figures.link_faults += 1
        await trio.sleep(epochs * EPOCH_S)
        await self.testnet.delay(node, 0)
        await self.testnet.drop(node, 0)

    async def skew(self, node: int, ms: int, *, epochs: float) -> None:
        await self.testnet.skew(node, ms)
        self.figures.skews += 1
        await trio.sleep(epochs * EPOCH_S)
        await self.testnet.skew(node, 0)

    async def _kill(self, node: int) -> None:
        if (await self.testnet.running())[node]:
            await self.testnet.kill(node)
            self.figures.kills += 1

    def _killed_after_ack(self, node: int) -> Callable[[], bool]:
        return lambda: node not in self.kill_after_ack

    # -- the end state ------------------------------------------------------------------------
    async def settle(self) -> None:
        """Heal every fault, start every node, and wait until the network agrees again."""
        await self.testnet.heal()
        for node in range(NODES):
            await self.testnet.delay(node, 0)
            await self.testnet.drop(node, 0)
        running = await self.testnet.running()
        for node in range(NODES):
            if running[node]:
                await self.testnet.skew(node, 0)
            else:
                await self.testnet.restart(node)
        await self.until(self._all_answer, "every node answers after the run")
        target = max(self.finalized_now) + 2
        await self.until(lambda: self._finalized_at_least(target), "finality after the run")
        await self.until(self._one_head, "one head after the run")

    async def _check_end(self) -> None:
        figures = self.figures
        figures.acknowledged = len(self.acks)

        async def all_final() -> bool:
            return await self._count_final() == len(self.acks)

        with contextlib.suppress(RunFailed):  # counted as lost below
            await self.until(all_final, "every acknowledged transaction finalized")
        figures.finalized = await self._count_final()
        figures.lost = len(self.acks) - figures.finalized
        if figures.lost:
            self.violations.append(
                f"{figures.lost} acknowledged transactions never finalized: "
                + "; ".join(await self._describe_unfinalized())
            )
        await self._check_finalized_blocks()
        await self._check_votes()
        await self._check_state_roots()

    async def _count_final(self) -> int:
        final = 0
        async with connect_rpc(self.rpc_urls[0]) as rpc:
            for ack in self.acks:
                info = await rpc.call("tx_get", ack.txid)
                final += isinstance(info, dict) and info.get("status") == "finalized"
        return final

    async def _describe_unfinalized(self) -> list[str]:
        """How each node sees the first few acknowledged transactions that did not finalize."""
        described: list[str] = []
        async with connect_rpc(self.rpc_urls[0]) as first:
            for index, ack in enumerate(self.acks):
                info = await first.call("tx_get", ack.txid)
                if isinstance(info, dict) and info.get("status") == "finalized":
                    continue
                views = []
                for url in self.rpc_urls:
                    async with connect_rpc(url) as rpc:
                        view = await rpc.call("tx_get", ack.txid)
                    assert isinstance(view, dict)
                    views.append(f"{view.get('status')}:{view.get('reason')}")
                described.append(f"#{index} {ack.txid[:10]} acked by {ack.node}: {views}")
                if len(described) == 5:
                    break
        return described

    async def _check_finalized_blocks(self) -> None:
        for url in self.rpc_urls:
            async with connect_rpc(url) as rpc:
                for epoch, block_id in sorted(self.finalized_at.items()):
                    block = await rpc.call("chain_getBlock", block_id)
                    if not isinstance(block, dict) or block.get("canonical") is not True:
                        self.figures.conflicting_finality += 1
                        self.violations.append(f"epoch {epoch}'s finalized block left {url}")

    async def _check_votes(self) -> None:
        """Every vote the canonical chain includes: no double vote, no surround vote, and no
        slashing transaction."""
        votes: dict[str, set[tuple[int, int, str]]] = {}
        async with connect_rpc(self.rpc_urls[0]) as rpc:
            head = await rpc.call("chain_head")
            assert isinstance(head, dict)
            for height in range(1, int(str(head["height"])) + 1):
                block = await rpc.call("chain_getBlock", height, True)
                assert isinstance(block, dict)
                self.figures.blocks += 1
                for tx in block["transactions"]:  # type: ignore[union-attr]
                    if isinstance(tx, dict) and tx.get("kind") == "slash":
                        self.figures.double_signs += 1
                        self.violations.append(f"a slashing transaction at height {height}")
                for vote in block["votes"]:  # type: ignore[union-attr]
                    assert isinstance(vote, dict)
                    source, target = vote["source"], vote["target"]
                    assert isinstance(source, dict)
                    assert isinstance(target, dict)
                    votes.setdefault(str(vote["validator"]), set()).add(
                        (int(str(source["epoch"])), int(str(target["epoch"])), json.dumps(vote))
                    )
        for validator, signed in votes.items():
            by_target: dict[int, set[str]] = {}
            for _, target_epoch, vote_json in signed:
                by_target.setdefault(target_epoch, set()).add(vote_json)
            doubles = sum(len(distinct) > 1 for distinct in by_target.values())
            spans = {(source, target) for source, target, _ in signed}
            surrounds = sum(
                s1 < s2 and t2 < t1 for (s1, t1), (s2, t2) in itertools.permutations(spans, 2)
            )
            if doubles or surrounds:
                self.figures.double_signs += doubles + surrounds
                self.violations.append(f"validator {validator[:12]} signed conflicting votes")

    async def _check_state_roots(self) -> None:
        roots = set()
        for url in self.rpc_urls:
            async with connect_rpc(url) as rpc:
                finalized = await rpc.call("chain_finalized")
                assert isinstance(finalized, dict)
                root = await rpc.call("chain_stateRoot", finalized["blockId"])
                assert isinstance(root, dict)
                roots.add((root["blockId"], root["stateRoot"]))
        if len(roots) != 1:
            self.violations.append(f"nodes end on different finalized states: {roots}")

    # -- clients ------------------------------------------------------------------------------
    def _wallets(self) -> list[Wallet]:
        params = load_network(self.root / "network.toml").params
        keys = sorted((self.root / "wallets").glob("*.key"))
        return [Wallet(read_key(path), params) for path in keys][:NODES]

    async def _pay(self, node: int, payer: Wallet, payee: Wallet, rate: float) -> None:
        """Wallet `node` pays through node `node` only (as a user's wallet talks to its own
        node), building on its pending change, which that node keeps across crashes."""
        url = self.rpc_urls[node]
        native = AssetId(payer.params.native_asset)
        while True:
            try:
                async with connect_rpc(url) as rpc:
                    coins = await _spendable(rpc, payer)
                    while True:
                        output = TxOutput(asset=native, amount=PAYMENT, address=payee.address)
                        try:
                            tx = payer.build_transfer(
                                list(coins.items()),
                                [output],
                                fee=FEE,
                                context=BlockContext(height=0, slot=0),
                            )
                        except InsufficientFunds:
                            await trio.sleep(SLOT_S)
                            coins = await _spendable(rpc, payer)
                            continue
                        txid = await rpc.call("tx_submit", "0x" + tx.encoded.hex())
                        self.acks.append(Ack(txid=str(txid), node=node))
                        if node in self.kill_after_ack:
                            await self.testnet.kill(node)
                            self.figures.kills += 1
                            self.figures.kills_after_ack += 1
                            self.kill_after_ack.discard(node)
                        spend_own_coins(coins, tx, payer.address)
                        await trio.sleep(1 / rate)
            except Exception:  # its node is down, restarting or refused: ask again shortly
                await trio.sleep(POLL_S)

    async def _watch(self) -> None:
        async with trio.open_nursery() as nursery:
            for node in range(NODES):
                nursery.start_soon(self._watch_node, node)

    async def _watch_node(self, node: int) -> None:
        """What one node tells clients over time, checked as it is told."""
        url = self.rpc_urls[node]
        while True:
            try:
                async with connect_rpc(url) as rpc:
                    while True:
                        await self._look(rpc, node)
                        await trio.sleep(POLL_S)
            except Exception:  # down or restarting
                self.heads[node] = None
                await trio.sleep(POLL_S)

    async def _look(self, rpc: RpcClient, node: int) -> None:
        asked = trio.current_time()
        finalized = await rpc.call("chain_finalized")
        head = await rpc.call("chain_head")
        assert isinstance(finalized, dict)
        assert isinstance(head, dict)
        epoch, block_id = int(str(finalized["epoch"])), str(finalized["blockId"])
        if epoch < self.highest_finalized[node]:
            self.figures.finality_regressions += 1
            self.violations.append(
                f"node {node} reported finalized epoch {epoch} after {self.highest_finalized[node]}"
            )
        self.highest_finalized[node] = max(self.highest_finalized[node], epoch)
        awaited = self.awaited_past
        if awaited is not None and epoch > awaited[node] and self.moved_after[node] is None:
            self.moved_after[node] = self.asked_at[node]
        self.finalized_now[node] = epoch
        self.asked_at[node] = asked
        known = self.finalized_at.setdefault(epoch, block_id)
        if known != block_id:
            self.figures.conflicting_finality += 1
            self.violations.append(f"epoch {epoch} finalized as {known} and {block_id}")
        self.heads[node] = str(head["blockId"])
        for ack in self.random.sample(self.acks, min(4, len(self.acks))):
            info = await rpc.call("tx_get", ack.txid)
            status = str(info.get("status")) if isinstance(info, dict) else "unknown"
            key = (node, ack.txid)
            if self.status_seen.get(key) == RANK["finalized"] and RANK[status] < RANK["finalized"]:
                self.figures.status_regressions += 1
                self.violations.append(f"node {node}: finalized {ack.txid[:12]} became {status}")
            self.status_seen[key] = max(self.status_seen.get(key, 0), RANK.get(status, 0))

    # -- conditions ---------------------------------------------------------------------------
    async def until(self, condition: Callable[[], bool | Awaitable[bool]], what: str) -> None:
        with trio.move_on_after(WAIT_S):
            while True:
                result = condition()
                if not isinstance(result, bool):
                    result = await result
                if result:
                    return
                await trio.sleep(POLL_S)
        raise RunFailed(f"not within {WAIT_S:.0f} s: {what} (seed {self.seed})")

    def _running_indices(self) -> list[int]:
        return [i for i in range(NODES) if self.heads[i] is not None]

    def _one_head(self) -> bool:
        heads = set(self.heads)
        return len(heads) == 1 and None not in heads

    def _finalized_at_least(self, epoch: int) -> bool:
        return all(finalized >= epoch for finalized in self.finalized_now)

    async def _all_answer(self) -> bool:
        for url in self.rpc_urls:
            try:
                async with connect_rpc(url) as rpc:
                    finalized = await rpc.call("chain_finalized")
            except Exception:
                return False
            assert isinstance(finalized, dict)
        return True


async def _spendable(rpc: RpcClient, wallet: Wallet) -> dict[OutPoint, TxOutput]:
    """The wallet's plain native outputs as its node's pool would leave them."""
    result = await rpc.call("address_utxos", wallet.address_text, 1000, True)
    return {
        outpoint: output
        for outpoint, output in parse_utxos(result, wallet.address)
        if output.asset == wallet.params.native_asset and output.lock == NO_LOCK
    }
