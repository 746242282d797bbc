"""Gossip over real loopback TCP: 10 `NetworkService` nodes, validation stubbed to ACCEPT.

- Propagation latency: publish one message, time until every other node delivered it (median
  over messages), as a ratio to the raw trio TCP round trip measured in the same run.
- Delivered-to-all throughput: a burst of 300-byte messages from one node, messages/s until
  every node has all of them, as a ratio to raw single-send TCP frames/s.
- Duplicates per message and node, and every drop counter (expected 0).

Run alone: ``python -m benchmarks.bench_gossip [--quick]``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from functools import partial

import trio

from benchmarks import bench_libp2p
from benchmarks.bench_transport import tcp_frames_per_second, tcp_round_trip_seconds
from benchmarks.harness import Report, measure_rate, run_alone
from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.encoding import decode, encode
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.net import NetworkConfig, NetworkService, SwarmConfig, open_network
from p2pchain.protocol.gossip import Verdict
from p2pchain.protocol.messages import Topic
from p2pchain.testing.link import TEST_CHAIN_ID, TEST_GENESIS
from p2pchain.testing.simnet import (
    BatchValidator,
    GossipHost,
    Validator,
    accept_all,
    random_topology,
)

NODES = 10
TOPIC = Topic.TRANSACTION


@dataclass(frozen=True, slots=True)
class GossipRun:
    latency_s: float
    throughput: float
    duplicates_per_delivery: float
    drops: int


async def _open(
    stack: AsyncExitStack,
    count: int,
    scheme: str = "tcp",
    validator: Validator = accept_all,
    batch_validator: BatchValidator | None = None,
) -> list[tuple[NetworkService, GossipHost]]:
    nodes = []
    for index in range(count):
        host = GossipHost(TEST_GENESIS, validator, batch_validator=batch_validator)
        swarm = SwarmConfig(
            identity=SecretKey.from_entropy(sha256(b"bench-gossip" + bytes([index]))),
            chain_id=TEST_CHAIN_ID,
            genesis=TEST_GENESIS,
            listen=(f"{scheme}://127.0.0.1:0",),
            target_outbound=0,
        )
        service = await stack.enter_async_context(
            open_network(NetworkConfig(swarm=swarm, seed=index), host)
        )
        nodes.append((service, host))
    for a, b in random_topology(count, 4, seed=1):
        await nodes[a][0].swarm.connect(nodes[b][0].swarm.listen_addresses[0])
    return nodes


async def _wait_all(
    nodes: list[tuple[NetworkService, GossipHost]], publisher: int, data: bytes
) -> None:
    for index, (_, host) in enumerate(nodes):
        if index != publisher:
            await host.wait_delivered(TOPIC, data)


async def gossip_run(
    messages: int,
    burst: int,
    count: int = NODES,
    *,
    scheme: str = "tcp",
    validator: Validator = accept_all,
    batch_validator: BatchValidator | None = None,
    payloads: list[bytes] | None = None,
) -> GossipRun:
    """Latency over `messages` single messages, then throughput of a `burst`, on `count` nodes
    linked over `scheme` (tcp or ws); `payloads` (messages + burst of them) replaces the
    default junk payloads when the validator needs real objects."""
    async with AsyncExitStack() as stack:
        nodes = await _open(stack, count, scheme, validator, batch_validator)
        await trio.sleep(1.5)  # two heartbeats: meshes form (benchmark warm-up, not a test)
        latencies = []
        if payloads is None:
            payloads = [b"latency %d" % k for k in range(messages)]
            payloads += [b"%-300d" % k for k in range(burst)]
        for k in range(messages):
            data = payloads[k]
            start = time.perf_counter()
            nodes[k % count][0].publish(TOPIC, data)
            await _wait_all(nodes, k % count, data)
            latencies.append(time.perf_counter() - start)
        burst_payloads = payloads[messages : messages + burst]
        start = time.perf_counter()
        for data in burst_payloads:
            nodes[0][0].publish(TOPIC, data)
        for data in burst_payloads:
            await _wait_all(nodes, 0, data)
        elapsed = time.perf_counter() - start
        stats = [service.statistics() for service, _ in nodes]
        deliveries = sum(s.gossip.delivered for s in stats)
        drops = sum(
            s.validations_dropped + s.deliveries_dropped + s.sends_dropped + s.gossip.dropped
            for s in stats
        )
        duplicates = sum(s.gossip.duplicates for s in stats)
        return GossipRun(
            latency_s=statistics.median(latencies),
            throughput=burst / elapsed,
            duplicates_per_delivery=duplicates / max(deliveries, 1),
            drops=drops,
        )


def run(quick: bool = False) -> Report:
    report = Report()
    print("gossip", flush=True)
    rtt = trio.run(tcp_round_trip_seconds, 200 if quick else 2_000)
    frames = trio.run(tcp_frames_per_second, 2_000 if quick else 16_000, 1)
    report.baseline("trio TCP ping-pong round trip (us)", f"{rtt * 1e6:.1f}")
    report.baseline("trio TCP 300 B frames/s, 1 per send_all", f"{frames:.0f}")
    result = trio.run(gossip_run, 10 if quick else 50, 200 if quick else 2_000)
    report.baseline(
        f"gossip {NODES} nodes: median propagation (ms)", f"{result.latency_s * 1e3:.2f}"
    )
    report.baseline(f"gossip {NODES} nodes: delivered-to-all msgs/s", f"{result.throughput:.0f}")
    report.figure(
        "gossip propagation / TCP round trip",
        result.latency_s / rtt,
        "report",
        True,
        f"({NODES} nodes, degree 4, validation stubbed)",
    )
    report.figure(
        "gossip delivered-to-all rate / TCP frame rate",
        result.throughput / frames,
        "report",
        True,
        "(every node validates, delivers and relays each message)",
    )
    report.figure(
        "duplicate copies per delivery",
        result.duplicates_per_delivery,
        "< d_high (12), no drops",
        result.duplicates_per_delivery < 12 and result.drops == 0,
        f"(drops counted: {result.drops})",
    )
    _compare_with_libp2p(report, result.latency_s, result.throughput, quick=quick)
    _websocket_and_signatures(report, result, quick=quick)
    latencies = [(NODES, result.latency_s * 1e3)]
    for count in () if quick else (20,):
        larger = trio.run(gossip_run, 50, 0, count)
        report.baseline(
            f"gossip {count} nodes: median propagation (ms)", f"{larger.latency_s * 1e3:.2f}"
        )
        latencies.append((count, larger.latency_s * 1e3))
    report.curve("gossip propagation, degree 4", "nodes", "median ms to reach all", latencies)
    return report


def _signed_votes(count: int) -> list[bytes]:
    """Distinct votes, each signed by its own key: one real signature check per message."""
    votes = []
    for index in range(count):
        key = SecretKey.from_entropy(sha256(b"bench-vote" + index.to_bytes(4, "big")))
        checkpoint = Checkpoint(epoch=0, block_id=TEST_GENESIS)
        unsigned = Vote(
            slot=index,
            head=TEST_GENESIS,
            source=checkpoint,
            target=checkpoint,
            validator=key.public_key,
            signature=bytes(64),
        )
        signature = key.sign(unsigned.signing_message(TEST_CHAIN_ID))
        votes.append(encode(replace(unsigned, signature=signature)))
    return votes


def _verify_vote(topic: Topic, data: bytes) -> Verdict:
    """Decode the vote and check its BIP-340 signature: the real per-message cost."""
    vote = decode(Vote, data)
    return Verdict.ACCEPT if vote.is_signature_valid(TEST_CHAIN_ID) else Verdict.REJECT


def _verify_votes(batch: Sequence[tuple[Topic, bytes]]) -> list[Verdict]:
    """`_verify_vote` over a whole batch: what each node runs in a worker thread."""
    return [_verify_vote(topic, data) for topic, data in batch]


def _websocket_and_signatures(report: Report, tcp: GossipRun, *, quick: bool) -> None:
    """The same graph over WebSocket, and over TCP with every node checking a signature."""
    burst = 200 if quick else 2_000
    ws = trio.run(partial(gossip_run, 5 if quick else 20, burst, scheme="ws"))
    report.figure(
        "gossip delivered-to-all rate, WebSocket / TCP",
        ws.throughput / tcp.throughput,
        "report",
        True,
        f"({ws.throughput:.0f} msgs/s; median latency {ws.latency_s * 1e3:.2f} ms)",
    )
    votes = _signed_votes(burst + 2)
    verify_rate = measure_rate(
        lambda: [_verify_vote(Topic.VOTE, data) for data in votes[:200]], ops=200, repeat=3
    )
    report.baseline("vote decode + signature check, 1 core", verify_rate)
    ceiling = verify_rate.median / (NODES - 1)
    inline = trio.run(partial(gossip_run, 1, burst, validator=_verify_vote, payloads=votes[:burst]))
    report.baseline(
        "gossip with signatures checked on the event loop / (verify/s / (N-1))",
        f"{inline.throughput / ceiling:.3f} ({inline.throughput:.0f} msgs/s)",
    )
    signed = trio.run(
        partial(gossip_run, 1, burst, batch_validator=_verify_votes, payloads=votes[:burst])
    )
    ratio = signed.throughput / ceiling
    report.figure(
        "gossip with signature validation / (verify/s / (N-1)), one process",
        ratio,
        ">= 0.5",
        ratio >= 0.5,
        f"({signed.throughput:.0f} msgs/s, every node checks every vote, each batch in a worker "
        f"thread; drops {signed.drops})",
    )


def _compare_with_libp2p(
    report: Report, latency_s: float, throughput: float, *, quick: bool
) -> None:
    """py-libp2p gossipsub on the same topology in the same run (when the `bench` extra is
    installed): latency and delivered-to-all throughput ratios. Its spam limit is off, so the
    comparison is with its capacity rather than with its 10 msgs/s limiter."""
    if not bench_libp2p.is_available():
        report.baseline("py-libp2p comparison", "skipped: pip install -e .[bench]")
        return
    theirs = bench_libp2p.measure_libp2p(NODES, 20 if quick else 100, seed=1, spam_protection=False)
    report.baseline("py-libp2p gossipsub setup", bench_libp2p.gossipsub_setup())
    report.baseline(
        f"py-libp2p {NODES} nodes: median latency (ms), delivered-to-all msgs/s, silent drops",
        f"{theirs.latency_median_s * 1e3:.1f}, {theirs.throughput_msgs_per_s:.1f}, "
        f"{theirs.silent_drops}",
    )
    ratio = latency_s / theirs.latency_median_s
    report.figure("gossip median latency / py-libp2p's", ratio, "<= 0.1", ratio <= 0.1)
    ratio = throughput / max(theirs.throughput_msgs_per_s, 1e-9)
    report.figure(
        "gossip delivered-to-all throughput / py-libp2p's",
        ratio,
        ">= 100",
        ratio >= 100,
        f"(py-libp2p burst delivered {theirs.delivered_fraction:.0%})",
    )


if __name__ == "__main__":
    run_alone(run, __doc__)
