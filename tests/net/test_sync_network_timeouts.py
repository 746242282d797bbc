"""A sync peer that never answers costs `timeout_penalty` per request whatever the epoch length.

A real validator node (`testnet(1)`, finalizing its own chain every epoch) on the simulated
network, in virtual time; a hostile swarm claims a far higher head and answers nothing. The
same row as the robustness catalogue's ``test_no_answer_to_a_sync_request_costs_the_timeout_
penalty``, but with finality moving: each finalized epoch makes the service `reset` sync, and
with epochs shorter than `request_timeout` (4 slots of 1 s) that used to forgive every timeout.
"""

import pytest
import trio

from p2pchain.ledger.crypto import SecretKey, sha256
from p2pchain.ledger.vote import Checkpoint
from p2pchain.net import InboundMessage, SwarmConfig, open_swarm
from p2pchain.params import ChainParams
from p2pchain.protocol.messages import GetBlocksByRange, Status
from p2pchain.protocol.sync import SyncParams
from p2pchain.testing.simnet import SimulatedNetwork, seed_from_env
from p2pchain.testing.testnet import testnet

TIMEOUT = SyncParams().request_timeout
PENALTY = SyncParams().timeout_penalty
TOLERANCE = 0.5
"""Scores decay (half-life 600 s): a second or so moves a penalty by far less."""
MARGIN = 0.5
"""Virtual seconds past a deadline for the penalty to be applied (link latency is 5-20 ms)."""


@pytest.mark.parametrize(
    ("slots_per_epoch", "slot_ms"),
    [(4, 1_000), (8, 1_000), (8, 2_000), (1, 500), (2, 12_000), (64, 100)],
)
async def test_no_answer_to_a_sync_request_costs_the_timeout_penalty(
    autojump_clock, slots_per_epoch, slot_ms
):
    params = ChainParams(slot_ms=slot_ms, slots_per_epoch=slots_per_epoch, reward_maturity=2)
    network = SimulatedNetwork(seed=seed_from_env(5), latency=(0.005, 0.02))
    epoch_s = slot_ms * slots_per_epoch / 1000
    with network.report_seed(), trio.fail_after(10 * TIMEOUT + 20 * epoch_s):
        async with testnet(1, params=params, transport=network) as net:
            node = net.nodes[0]
            await net.wait_finalized(2)  # finality moves: sync is reset every epoch
            genesis = node.network.swarm.config.genesis
            claimed = Status(
                head=sha256(b"a head nobody has"),
                head_height=10**6,
                head_slot=10**6,
                finalized=Checkpoint(epoch=0, block_id=genesis),
            )
            config = SwarmConfig(
                identity=SecretKey.from_entropy(sha256(b"silent sync peer")),
                chain_id=params.chain_id,
                genesis=genesis,
                listen=(),
                target_outbound=0,
                transport=network.transport("silent"),
            )
            asked: list[float] = []
            first = trio.Event()

            async def listen(swarm):
                async for event in swarm.events:
                    if isinstance(event, InboundMessage):
                        event.release()
                    if isinstance(event, InboundMessage) and isinstance(
                        event.message, GetBlocksByRange
                    ):
                        asked.append(trio.current_time())
                        first.set()

            async with open_swarm(config, lambda: claimed) as swarm, trio.open_nursery() as tasks:
                tasks.start_soon(listen, swarm)
                node_id = await swarm.connect(SimulatedNetwork.address("node0"))
                silent = swarm.peer_id
                swarm.send(node_id, claimed)
                await first.wait()
                assert node.network.is_syncing
                # Charged by the first request's deadline, and no longer a sync peer.
                await trio.sleep_until(asked[0] + TIMEOUT + MARGIN)
                due = [at for at in asked if at + TIMEOUT + MARGIN <= trio.current_time()]
                assert node.network.statistics().sync.timeouts == len(due)
                score = node.network.swarm.score(silent)
                assert score == pytest.approx(-PENALTY * len(due), abs=TOLERANCE)
                assert not node.network.is_syncing
                assert not node.sync_state().syncing
                # Never asked again (until its next Status); every request it had cost it
                # the penalty once; still connected.
                await trio.sleep(3 * TIMEOUT + 2 * epoch_s)
                assert all(at < asked[0] + TIMEOUT for at in asked)
                assert node.network.statistics().sync.timeouts == len(asked)
                assert node.network.swarm.score(silent) >= score  # only decayed since
                assert silent in {peer.peer_id for peer in node.network.swarm.peers()}
                tasks.cancel_scope.cancel()
