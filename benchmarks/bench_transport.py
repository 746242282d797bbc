"""Raw trio limits on loopback, the ceilings every network figure is a ratio to.

- TCP, 300-byte frames: one `send_all` per frame, and 64 frames coalesced per `send_all`.
- Ping-pong round trip of a 16-byte message over TCP.
- trio-websocket binary messages/s of 300 bytes.

Run alone: ``python -m benchmarks.bench_transport [--quick]``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable

import trio
from trio_websocket import open_websocket_url, serve_websocket

from benchmarks.harness import Rate, Report, run_alone

FRAME = b"\x00" * 300


async def _tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream, trio.SocketListener]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    listener = listeners[0]
    port = listener.socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listener.accept()
    return client, server, listener


async def _drain(stream: trio.SocketStream, total: int) -> None:
    received = 0
    while received < total:
        data = await stream.receive_some(1 << 16)
        if not data:
            return
        received += len(data)


async def tcp_frames_per_second(frames: int, per_send: int) -> float:
    """300-byte frames/s through one loopback TCP connection, `per_send` frames per send_all."""
    client, server, listener = await _tcp_pair()
    batch = FRAME * per_send
    sends = max(1, frames // per_send)
    async with client, server, listener:
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain, server, sends * len(batch))
            for _ in range(sends):
                await client.send_all(batch)
        return sends * per_send / (time.perf_counter() - start)


async def tcp_round_trip_seconds(rounds: int) -> float:
    """Median seconds for a 16-byte ping and its echo over loopback TCP."""
    client, server, listener = await _tcp_pair()
    samples = []

    async def echo() -> None:
        while data := await server.receive_some(16):
            await server.send_all(data)

    async with client, server, listener, trio.open_nursery() as nursery:
        nursery.start_soon(echo)
        for _ in range(rounds):
            start = time.perf_counter()
            await client.send_all(b"p" * 16)
            received = 0
            while received < 16:
                received += len(await client.receive_some(16))
            samples.append(time.perf_counter() - start)
        nursery.cancel_scope.cancel()
    return statistics.median(samples)


async def websocket_messages_per_second(messages: int) -> float:
    """300-byte binary messages/s from a trio-websocket client to a trio-websocket server."""
    done = trio.Event()

    async def handler(request: object) -> None:
        connection = await request.accept()  # type: ignore[attr-defined]
        for _ in range(messages):
            await connection.get_message()
        done.set()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        port = server.port
        async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            start = time.perf_counter()
            for _ in range(messages):
                await ws.send_message(FRAME)
            await done.wait()
            elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    return messages / elapsed


def _repeat(fn: Callable[[], Awaitable[float]], repeat: int) -> Rate:
    values = [trio.run(fn) for _ in range(repeat)]
    return Rate(median=statistics.median(values), low=min(values), high=max(values))


def run(quick: bool = False) -> Report:
    report = Report()
    frames = 2_000 if quick else 64_000
    repeat = 2 if quick else 5
    print("transport", flush=True)
    single = _repeat(lambda: tcp_frames_per_second(frames // 4, 1), repeat)
    report.baseline("trio TCP 300 B frames, 1 per send_all", single)
    coalesced = _repeat(lambda: tcp_frames_per_second(frames, 64), repeat)
    report.baseline("trio TCP 300 B frames, 64 per send_all", coalesced)
    rtt = _repeat(lambda: tcp_round_trip_seconds(200 if quick else 2_000), repeat)
    report.baseline("trio TCP ping-pong round trip (us)", f"{rtt.median * 1e6:.1f}")
    websocket = _repeat(lambda: websocket_messages_per_second(500 if quick else 10_000), repeat)
    report.baseline("trio-websocket 300 B messages", websocket)
    report.figure(
        "coalesced / single-send TCP frames",
        coalesced.median / single.median,
        "report",
        True,
        "(why a per-peer writer coalesces frames)",
    )
    return report


if __name__ == "__main__":
    run_alone(run, __doc__)
