"""The light client against real node code on the simulated network: it follows finality,
reads proven state, and is not fooled by a lying peer (whom it penalises)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import trio

from p2pchain import TxStatus
from p2pchain.consensus import light
from p2pchain.errors import NoHonestPeer
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.proofs import AccountProof
from p2pchain.ledger.types import Address, Amount
from p2pchain.ledger.wallet import Wallet
from p2pchain.light import LightConfig, open_light_client
from p2pchain.net.swarm import (
    InboundMessage,
    PeerConnected,
    PeerDisconnected,
    SwarmConfig,
    open_swarm,
)
from p2pchain.node import Node
from p2pchain.protocol.messages import (
    DisconnectReason,
    Finality,
    GetFinality,
    GetStateProof,
    LightError,
    StateProofAnswer,
    Status,
)
from p2pchain.testing.simnet import SimulatedNetwork
from p2pchain.testing.testnet import TESTNET_PARAMS, Testnet, testnet

LIMIT_S = 60 * TESTNET_PARAMS.slot_ms * TESTNET_PARAMS.slots_per_epoch / 1000
"""A bound on virtual time that turns a hang into a failure; no test asserts on time."""


def _config(net: Testnet, network: SimulatedNetwork, name: str, *peers: str) -> LightConfig:
    return LightConfig(
        params=net.params,
        genesis=net.genesis,
        peers=peers or tuple(SimulatedNetwork.address(f"node{i}") for i in range(len(net.nodes))),
        transport=network.transport(name),
        request_timeout=5.0,
    )


async def _settle(net: Testnet, node: Node, amount: int, to: Address) -> bytes:
    tx = net.transfer(0, to, amount)
    await node.submit_transaction(tx)
    await node.wait_for_status(tx.txid, TxStatus.FINALIZED)
    return tx.txid


async def test_a_light_client_follows_finality_and_reads_proven_state(autojump_clock) -> None:
    network = SimulatedNetwork(seed=11)
    async with testnet(4, transport=network, seed=11) as net:
        node = net.nodes[0]
        payee = Wallet(SecretKey.from_entropy(b"light payee".ljust(32, b".")), net.params)
        with trio.fail_after(LIMIT_S):
            txid = await _settle(net, node, 3 * 10**8, payee.address)
            async with open_light_client(_config(net, network, "light0")) as client:
                finalized = await client.sync()
                assert finalized.epoch >= 1
                assert node.get_block(finalized.block_id) is not None  # the nodes' own chain
                assert await client.balance(payee.address) == 3 * 10**8
                outputs = await client.outputs(payee.address)
                assert [o.amount for _, o in outputs] == [3 * 10**8]
                outpoint, output = outputs[0]
                assert await client.output(outpoint, payee.address) == output
                assert await client.output(outpoint, net.wallets[1].address) is None
                stakes = await client.validators()
                assert stakes == {key.public_key: 100 * 10**8 for key in net.validator_keys}
                found = await client.transaction(txid)
                assert found is not None
                header, tx = found
                assert tx.txid == txid
                assert header.height == node.get_transaction(txid).height
                # It keeps following as the chain goes on.
                later = await client.wait_finalized(finalized.epoch + 2)
                assert later.epoch >= finalized.epoch + 2
                assert client.state.header(finalized.block_id) is not None


def _status_of(node: Node) -> Status:
    head = node.head()
    return Status(
        head=head.block_id, head_height=head.height, head_slot=head.slot, finalized=node.finalized()
    )


async def _serve_lies(net: Testnet, network: SimulatedNetwork, ready: trio.Event) -> None:
    """A peer that answers light requests with honest answers of node 0, each changed a
    little: a certificate missing most of its last link's votes, an account with an inflated
    output."""
    honest = net.nodes[0]
    config = SwarmConfig(
        identity=SecretKey.from_entropy(b"liar".ljust(32, b".")),
        chain_id=net.params.chain_id,
        genesis=honest.get_block_at_height(0).block_id,
        listen=(SimulatedNetwork.address("liar"),),
        transport=network.transport("liar"),
    )
    async with open_swarm(config, lambda: _status_of(honest)) as swarm:
        ready.set()
        while batch := await swarm.events.receive_batch(16):
            for event in batch:
                if isinstance(event, PeerConnected) or not isinstance(event, InboundMessage):
                    continue
                message = event.message
                event.release()
                if isinstance(message, GetFinality):
                    real = honest._chain.certificate(message.trusted)
                    if real is None:  # nothing to lie about
                        swarm.send(
                            event.peer_id,
                            Finality(
                                request_id=message.request_id,
                                certificate=None,
                                error=LightError.NOTHING_NEWER,
                            ),
                        )
                        continue
                    last = real.links[-1]
                    thin = replace(last, votes=last.votes[:1])
                    forged = replace(real, links=(*real.links[:-1], thin))
                    swarm.send(
                        event.peer_id, Finality(request_id=message.request_id, certificate=forged)
                    )
                elif isinstance(message, GetStateProof):
                    proof = await honest._chain.prove_state(message.block_id, message.query)
                    assert isinstance(proof, AccountProof)
                    inflated = tuple(
                        (op, replace(out, amount=Amount(out.amount * 2)))
                        for op, out in proof.outputs
                    )
                    swarm.send(
                        event.peer_id,
                        StateProofAnswer(
                            request_id=message.request_id, proof=replace(proof, outputs=inflated)
                        ),
                    )


async def test_a_lying_peer_is_caught_penalised_and_routed_around(autojump_clock) -> None:
    network = SimulatedNetwork(seed=12)
    async with testnet(4, transport=network, seed=12) as net, trio.open_nursery() as nursery:
        payee = Wallet(SecretKey.from_entropy(b"light payee 2".ljust(32, b".")), net.params)
        ready = trio.Event()
        with trio.fail_after(LIMIT_S):
            await _settle(net, net.nodes[0], 5 * 10**8, payee.address)
            nursery.start_soon(_serve_lies, net, network, ready)
            await ready.wait()
            liar = SimulatedNetwork.address("liar")
            alone = _config(net, network, "light1", liar)
            async with open_light_client(alone) as client:
                with pytest.raises(NoHonestPeer):
                    await client.sync()
                assert client.finalized.epoch == 0  # nothing of the lie was adopted
                (peer,) = client._swarm.peers()
                assert peer.score < 0
            both = _config(net, network, "light2", liar, SimulatedNetwork.address("node1"))
            async with open_light_client(both) as client:
                finalized = await client.sync()
                assert finalized.epoch >= 1
                assert await client.balance(payee.address) == 5 * 10**8
        nursery.cancel_scope.cancel()


async def test_a_node_refuses_light_answers_nobody_asked_for(autojump_clock) -> None:
    """An unsolicited `Finality` (up to 8 MiB) is refused from its frame header."""
    network = SimulatedNetwork(seed=13)
    async with testnet(2, transport=network, seed=13) as net:
        node = net.nodes[0]
        config = SwarmConfig(
            identity=SecretKey.from_entropy(b"pusher".ljust(32, b".")),
            chain_id=net.params.chain_id,
            genesis=node.get_block_at_height(0).block_id,
            listen=(),
            bootnodes=(SimulatedNetwork.address("node0"),),
            transport=network.transport("pusher"),
        )
        with trio.fail_after(LIMIT_S):
            async with open_swarm(config, lambda: _status_of(node)) as swarm:
                (event,) = await swarm.events.receive_batch(1)
                assert isinstance(event, PeerConnected)
                swarm.send(
                    event.peer_id,
                    Finality(request_id=1, certificate=None, error=LightError.NOTHING_NEWER),
                )
                events = []
                while not any(isinstance(e, PeerDisconnected) for e in events):
                    events += await swarm.events.receive_batch(16)
                (gone,) = [e for e in events if isinstance(e, PeerDisconnected)]
                assert gone.reason is DisconnectReason.PROTOCOL_ERROR
                assert gone.by_peer


async def test_a_checkpoint_older_than_the_nodes_keep_is_refused_with_a_clear_error(
    autojump_clock, monkeypatch
) -> None:
    """Nodes keep link votes for `ARCHIVE_EPOCHS` below finality: a client trusting an older
    checkpoint is told to pick a newer one, and blames nobody."""
    monkeypatch.setattr(light, "ARCHIVE_EPOCHS", 1)
    network = SimulatedNetwork(seed=14)
    async with testnet(3, transport=network, seed=14) as net:
        with trio.fail_after(LIMIT_S):
            await net.wait_finalized(4)
            async with open_light_client(_config(net, network, "light3")) as client:
                with pytest.raises(NoHonestPeer, match="newer trusted checkpoint"):
                    await client.sync()
                assert client.finalized.epoch == 0
                assert all(peer.score >= 0 for peer in client._swarm.peers())
            # From the nodes' own finalized checkpoint it follows on.
            node = net.nodes[0]
            trusted = node.finalized()
            config = replace(_config(net, network, "light4"), trusted=trusted)
            async with open_light_client(config) as client:
                assert client.finalized == trusted
                later = await client.wait_finalized(trusted.epoch + 1)
                assert later.epoch > trusted.epoch


async def test_a_restarted_node_still_certifies_the_finality_it_had(
    autojump_clock, tmp_path
) -> None:
    """The vote archive is not stored as such: a restart refills it from the stored blocks'
    votes, so a client asking only that node follows finality reached before the restart."""
    network = SimulatedNetwork(seed=15)
    async with testnet(3, transport=network, seed=15, data_dir=tmp_path) as net:
        with trio.fail_after(LIMIT_S):
            await net.wait_finalized(3)
            await net.restart(0)
            node = net.nodes[0]
            before = node.finalized()
            assert before.epoch >= 3
            only = _config(net, network, "light5", SimulatedNetwork.address("node0"))
            async with open_light_client(only) as client:
                finalized = await client.sync()
                assert finalized.epoch >= before.epoch


async def test_a_client_with_no_reachable_peer_says_so(autojump_clock) -> None:
    """No peers configured, or none answering at the addresses given: every call ends in
    `NoHonestPeer` within the request timeout, and nothing is trusted beyond genesis."""
    network = SimulatedNetwork(seed=16)
    async with testnet(1, transport=network, seed=16) as net:
        for peers in ((), (SimulatedNetwork.address("nobody-here"),)):
            config = replace(_config(net, network, f"light-alone-{len(peers)}"), peers=peers)
            with trio.fail_after(LIMIT_S):
                async with open_light_client(config) as client:
                    with pytest.raises(NoHonestPeer, match="no full node connected"):
                        await client.sync()
                    with pytest.raises(NoHonestPeer):
                        await client.balance(net.wallets[0].address)
                    assert client.finalized.epoch == 0
