"""One control API for in-process and multi-process testnets (`TestnetControl`), and its
faults on the simulated network: kill, restart, partition, heal, delay and loss by index."""

import inspect

import pytest
import trio

from p2pchain.cli.control import RemoteTestnet
from p2pchain.errors import ConfigError
from p2pchain.testing import control
from p2pchain.testing.simnet import SimulatedNetwork
from p2pchain.testing.testnet import Testnet, testnet


def _members():
    return [
        name
        for name, value in vars(control.TestnetControl).items()
        if inspect.iscoroutinefunction(value)
    ]


@pytest.mark.parametrize("implementation", [Testnet, RemoteTestnet])
def test_both_testnets_answer_every_control_call_with_the_same_parameters(implementation):
    assert len(_members()) >= 7
    for name in _members():
        shared = inspect.signature(getattr(control.TestnetControl, name))
        method = getattr(implementation, name)
        assert inspect.iscoroutinefunction(method), name
        assert list(inspect.signature(method).parameters) == list(shared.parameters), name


async def test_faults_by_index_on_the_simulated_network(autojump_clock):
    network = SimulatedNetwork(seed=5)
    async with testnet(4, transport=network, seed=5) as net:
        await net.wait_finalized(1)
        await net.partition([0, 1], [2, 3])
        split_at = max(node.finalized().epoch for node in net.nodes)
        await trio.sleep(6 * net.params.slots_per_epoch * net.params.slot_ms / 1000)
        # Half the stake on each side: neither finalizes past what was in flight at the split.
        assert max(node.finalized().epoch for node in net.nodes) <= split_at + 1
        assert len({node.head() for node in net.nodes}) > 1
        await net.heal()
        await net.wait_finalized(split_at + 3)
        await net.wait_heads_equal()

        await net.delay(2, 150)
        await net.drop(3, 20)
        slowed_at = min(node.finalized().epoch for node in net.nodes)
        await net.wait_finalized(slowed_at + 2)
        assert network.statistics().losses > 0

        await net.kill(1)
        assert await net.running() == [True, False, True, True]
        with pytest.raises(ConfigError, match="node 1 is not running"):
            await net.kill(1)
        await net.restart(1)
        assert await net.running() == [True] * 4
        await net.wait_heads_equal(min_height=net.node(0).head().height)

        for call in (net.kill(7), net.delay(0, -1), net.drop(0, 100), net.partition([0, 9])):
            with pytest.raises(ConfigError):
                await call


async def test_link_faults_in_one_process_need_the_simulated_transport():
    async with testnet(1) as net:
        with pytest.raises(ConfigError, match="simulated transport"):
            await net.partition([0], [])
