"""What a node announces about itself, and how soon it redials the peers it was told to dial."""

import trio

from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.vote import Checkpoint
from p2pchain.net import InboundMessage, PeerConnected, SwarmConfig, open_swarm
from p2pchain.protocol.messages import Status
from p2pchain.testing.link import TEST_CHAIN_ID, TEST_GENESIS
from p2pchain.testing.simnet import SimulatedNetwork

WAIT = 20


def _status():
    return Status(
        head=TEST_GENESIS,
        head_height=0,
        head_slot=0,
        finalized=Checkpoint(epoch=0, block_id=TEST_GENESIS),
    )


def _config(seed, transport, **overrides):
    fields = {
        "identity": SecretKey.from_entropy(sha256(b"addresses" + bytes([seed]))),
        "chain_id": TEST_CHAIN_ID,
        "genesis": TEST_GENESIS,
        "target_outbound": 0,
        "transport": transport,
    }
    fields.update(overrides)
    return SwarmConfig(**fields)


async def _hello_seen_by(hub, peer):
    await peer.connect(SimulatedNetwork.address("hub"))
    async for event in hub.events:
        if isinstance(event, InboundMessage):
            event.release()
        if isinstance(event, PeerConnected) and event.peer_id == peer.peer_id:
            return event.hello
    raise AssertionError("no PeerConnected")


async def test_hello_announces_the_advertised_addresses_not_the_bound_ones(autojump_clock):
    network = SimulatedNetwork(seed=1)
    hub_transport = network.transport("hub")
    public = "sim://public-name"
    with trio.fail_after(WAIT):
        async with (
            open_swarm(
                _config(1, hub_transport, listen=(SimulatedNetwork.address("hub"),)), _status
            ) as hub,
            open_swarm(
                _config(
                    2,
                    network.transport("a"),
                    listen=(SimulatedNetwork.address("a"),),
                    advertise=(public,),
                ),
                _status,
            ) as announcing,
            open_swarm(
                _config(
                    3, network.transport("b"), listen=(SimulatedNetwork.address("b"),), advertise=()
                ),
                _status,
            ) as silent,
            open_swarm(
                _config(4, network.transport("c"), listen=(SimulatedNetwork.address("c"),)),
                _status,
            ) as default,
        ):
            assert (await _hello_seen_by(hub, announcing)).listen_addresses == (public.encode(),)
            assert (await _hello_seen_by(hub, silent)).listen_addresses == ()
            assert (await _hello_seen_by(hub, default)).listen_addresses == (
                SimulatedNetwork.address("c").encode(),
            )
            assert silent.advertised_addresses == ()
            assert default.advertised_addresses == default.listen_addresses


async def _failed_dials_within(seconds, **overrides):
    network = SimulatedNetwork(seed=2)
    config = _config(
        5,
        network.transport("lonely"),
        listen=(SimulatedNetwork.address("lonely"),),
        bootnodes=(SimulatedNetwork.address("nobody-listens"),),
        target_outbound=1,
        backoff_initial=1.0,
        maintenance_interval=1.0,
        **overrides,
    )
    async with open_swarm(config, _status):
        await trio.sleep(seconds)
    return network.statistics().refused


async def test_a_bootnode_is_redialed_at_least_every_bootnode_backoff_max(autojump_clock):
    window = 120.0
    capped = await _failed_dials_within(window, backoff_max=300.0, bootnode_backoff_max=4.0)
    # Exponential backoff alone would try about log2(120) = 7 times; capped at 4 s (plus the
    # 1 s maintenance tick) it keeps trying every few seconds.
    uncapped = await _failed_dials_within(window, backoff_max=300.0, bootnode_backoff_max=300.0)
    assert uncapped <= 8
    assert capped >= window / (4.0 + 1.0 + 1.0) - 2


async def test_two_nodes_told_to_dial_each_other_keep_one_link_without_redialing(autojump_clock):
    network = SimulatedNetwork(seed=3)
    names = ("left", "right")

    def config(seed, name, other):
        return _config(
            seed,
            network.transport(name),
            listen=(SimulatedNetwork.address(name),),
            bootnodes=(SimulatedNetwork.address(other),),
            advertise=(),
            target_outbound=2,
        )

    async with (
        open_swarm(config(6, *names), _status) as left,
        open_swarm(config(7, *reversed(names)), _status) as right,
    ):
        await left.wait_peer_count(1)
        await right.wait_peer_count(1)
        await trio.sleep(30)  # the dials that crossed at the start have been sorted out
        settled = network.statistics().connections
        await trio.sleep(300)
        assert [p.peer_id for p in left.peers()] == [right.peer_id]
        # Each side knows who answers at its bootnode address and that it is connected.
        assert network.statistics().connections == settled
