"""Text addresses and the WebSocket stream adapter."""

import socket
import struct

import pytest
import trio
import trio_websocket

from p2pchain.errors import ConfigError
from p2pchain.net.transports import (
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
