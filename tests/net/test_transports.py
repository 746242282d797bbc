"""Text addresses and the WebSocket stream adapter."""

import socket
import struct

import pytest
import trio
import trio_websocket
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.errors import ConfigError
from p2pchain.net.transports import (
    WS_MAX_MESSAGE_BYTES,
    ClientFrameScanner,
    PeerAddress,
    Scheme,
    WebSocketStream,
    open_peer_stream,
    parse_address,
    serve_peer_streams,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tcp://127.0.0.1:9000", PeerAddress(scheme=Scheme.TCP, host="127.0.0.1", port=9000)),
        ("ws://node.example:80", PeerAddress(scheme=Scheme.WS, host="node.example", port=80)),
        ("tcp://[::1]:0", PeerAddress(scheme=Scheme.TCP, host="::1", port=0)),
    ],
)
def test_addresses_round_trip(text, expected):
    assert parse_address(text) == expected
    assert parse_address(text.encode()) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("127.0.0.1:9000", "lacks a scheme"),
        ("udp://127.0.0.1:9000", "unknown scheme"),
        ("tcp://127.0.0.1", "lacks host:port"),
        ("tcp://:9000", "lacks host:port"),
        ("tcp://127.0.0.1:70000", "port"),
        ("tcp://127.0.0.1:-1", "port"),
        ("ws://a b:1", "bad host"),
        ("tcp://[zz]:1", "IPv6"),
        (b"tcp://\xff:1", "ASCII"),
    ],
)
def test_bad_addresses_are_explained(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_address(text)


async def test_websocket_stream_carries_bytes_both_ways():
    received = []

    async def echo(stream):
        while data := await stream.receive_some(7):
            received.append(data)
            await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve_peer_streams, parse_address("ws://127.0.0.1:0"), echo)
        stream = await open_peer_stream(nursery, bound)
        assert isinstance(stream, WebSocketStream)
        payload = bytes(range(256)) * 600  # several WebSocket messages
        await stream.send_all(payload)
        echoed = b""
        while len(echoed) < len(payload):
            echoed += await stream.receive_some()
        assert echoed == payload
        assert all(len(chunk) <= 7 for chunk in received)
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_text_messages_break_a_binary_link():
    async def send_text(request):
        ws = await request.accept()
        await ws.send_message("not bytes")
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            trio_websocket.serve_websocket, send_text, "127.0.0.1", 0, None
        )
        stream = await open_peer_stream(
            nursery, PeerAddress(scheme=Scheme.WS, host="127.0.0.1", port=server.port)
        )
        with pytest.raises(trio.BrokenResourceError):
            await stream.receive_some()
        await stream.aclose()
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    "junk", [b"not http at all\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n", b"\x00" * 64]
)
async def test_websocket_listener_survives_junk_and_resets(junk):
    """A client that sends garbage and resets must cost only its own connection."""

    async def echo(stream):
        while data := await stream.receive_some():
            await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve_peer_streams, parse_address("ws://127.0.0.1:0"), echo)
        for _ in range(3):
            raw = await trio.open_tcp_stream(bound.host, bound.port)
            await raw.send_all(junk)
            raw.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await raw.aclose()  # RST instead of FIN
        stream = await open_peer_stream(nursery, bound)
        await stream.send_all(b"still serving")
        assert await stream.receive_some() == b"still serving"
        await stream.aclose()
        nursery.cancel_scope.cancel()


def _client_frame(payload, *, opcode=0x2, mask=b"\x01\x02\x03\x04"):
    """A masked client frame, as a browser or trio-websocket would send it."""
    size = len(payload)
    if size < 126:
        header = bytes([0x80 | opcode, 0x80 | size])
    elif size < 2**16:
        header = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + size.to_bytes(8, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


UPGRADE_REQUEST = (
    b"GET / HTTP/1.1\r\nHost: node\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@given(
    sizes=st.lists(st.sampled_from([0, 1, 125, 126, 127, 65_535, 65_536, 131_072]), max_size=8),
    cuts=st.lists(st.integers(min_value=1, max_value=70_000), max_size=20),
)
def test_the_frame_scanner_passes_any_chunking_of_frames_within_the_limit(sizes, cuts):
    stream = UPGRADE_REQUEST + b"".join(_client_frame(bytes(size)) for size in sizes)
    scanner = ClientFrameScanner()
    position = 0
    for cut in [*cuts, len(stream)]:
        assert scanner.feed(stream[position : position + cut]) is None
        position += cut
    assert scanner.feed(stream[position:]) is None
    assert scanner.upgraded


@given(
    before=st.lists(st.integers(min_value=0, max_value=300), max_size=3),
    declared=st.integers(min_value=WS_MAX_MESSAGE_BYTES + 1, max_value=2**63 - 1),
    split=st.integers(min_value=1, max_value=13),
)
def test_the_frame_scanner_flags_an_oversize_frame_at_its_header(before, declared, split):
    header = bytes([0x82, 0xFF]) + declared.to_bytes(8, "big") + b"\x00\x00\x00\x00"
    frames = b"".join(_client_frame(bytes(size)) for size in before)
    scanner = ClientFrameScanner()
    assert scanner.feed(UPGRADE_REQUEST + frames + header[:split]) is None
    assert "declared" in scanner.feed(header[split:])  # no payload byte needed


def test_the_frame_scanner_refuses_an_endless_upgrade_request():
    scanner = ClientFrameScanner()
    header_line = b"X-Padding: " + b"a" * 1_000 + b"\r\n"
    verdicts = [scanner.feed(b"GET / HTTP/1.1\r\n")] + [
        scanner.feed(header_line) for _ in range(17)
    ]
    assert verdicts[:-1] == [None] * 17
    assert verdicts[-1] == "http upgrade request too large"
    assert not scanner.upgraded


async def _read_until(stream, marker):
    data = b""
    while marker not in data:
        chunk = await stream.receive_some()
        assert chunk, f"closed before {marker!r}: {data!r}"
        data += chunk
    return data


async def test_a_frame_declaring_2_to_the_62_bytes_is_closed_with_1009_at_once():
    handler_done = trio.Event()
    seen = []

    async def echo(stream):
        while data := await stream.receive_some():
            seen.append(data)
        seen.append(stream.violation)
        handler_done.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(serve_peer_streams, parse_address("ws://127.0.0.1:0"), echo)
            raw = await trio.open_tcp_stream(bound.host, bound.port)
            await raw.send_all(UPGRADE_REQUEST)
            assert b" 101 " in await _read_until(raw, b"\r\n\r\n")
            await raw.send_all(bytes([0x82, 0xFF]) + (2**62).to_bytes(8, "big") + bytes(4))
            reply = b""
            while chunk := await raw.receive_some():
                reply += chunk
            assert reply[:1] == b"\x88"  # a close frame, then the connection ends
            assert int.from_bytes(reply[2:4], "big") == 1009
            await handler_done.wait()
            assert seen == ["frame of 4611686018427387904 bytes declared (limit 131072)"]
            await raw.aclose()
            nursery.cancel_scope.cancel()


async def test_an_accepted_websocket_reaches_the_handler_before_its_upgrade():
    """So that the swarm can count a pending upgrade like any pending handshake."""
    reached, failed = trio.Event(), trio.Event()

    async def handler(stream):
        assert isinstance(stream, WebSocketStream)
        assert stream.remote_host == "127.0.0.1"
        reached.set()
        with pytest.raises(trio.BrokenResourceError, match="left before the upgrade"):
            await stream.receive_some()  # the client never finishes the upgrade
        failed.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(
                serve_peer_streams, parse_address("ws://127.0.0.1:0"), handler
            )
            raw = await trio.open_tcp_stream(bound.host, bound.port)
            await raw.send_all(b"GET / HTTP/1.1\r\n")
            await reached.wait()
            await raw.aclose()  # ends the pending upgrade at once, not at its timeout
            await failed.wait()
            nursery.cancel_scope.cancel()
