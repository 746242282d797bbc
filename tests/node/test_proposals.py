"""The proposer keeps time: its block fits the slot's proposal budget, and building it does not
verify again the witnesses the pool verified."""

import pytest
import trio
from hypothesis import example, given
from hypothesis import strategies as st

from p2pchain import NodeLimits
from p2pchain.errors import ConfigError
from p2pchain.ledger import validation
from p2pchain.node.duties import ProposalPace
from p2pchain.params import COIN
from p2pchain.testing.simnet import SimulatedNetwork
from p2pchain.testing.testnet import testnet

LIMIT_S = 600.0


@given(
    budget_ms=st.integers(50, 2_000),
    fixed_share=st.floats(0.0, 0.4),
    per_tx_us=st.floats(1.0, 2_000.0),
    first=st.integers(1, 10_000),
)
@example(budget_ms=50, fixed_share=0.0625, per_tx_us=1732.0, first=1)  # settles at ideal - 1.06
@example(budget_ms=89, fixed_share=0.17398998829893403, per_tx_us=1590.75, first=1)
def test_the_pace_settles_on_the_block_that_takes_its_budget(
    budget_ms, fixed_share, per_tx_us, first
):
    """Proposals costing ``fixed + n * per_tx`` (`fixed` a share of the budget) from a full
    pool: whatever the first block, the cap converges on the n whose proposal takes the
    budget, never past `most` or below 1.

    The cap is a whole number, so it settles on a fixed point m of ``floor(f(n))``, where
    ``f(n) = budget * n / (fixed + n * per_tx)``: m <= f(m) gives m <= ideal, and
    f(m) < m + 1 gives ideal - m < 1 + fixed / (m * per_tx). (A linear approximation of f
    gave the bound 1 / (1 - fixed / budget), which an example at 89 ms just passes.)"""
    most = 9_999
    budget = budget_ms / 1000
    fixed, per_tx = fixed_share * budget, per_tx_us / 1e6
    pace = ProposalPace(budget)
    assert pace.cap(most) == most  # nothing measured yet: no cap
    taken = first
    for _ in range(60):
        pace.observe(fixed + taken * per_tx, taken)
        taken = pace.cap(most)
        assert 1 <= taken <= most
    ideal = (budget - fixed) / per_tx
    if 2 <= ideal <= most:
        slack = 1e-9 * ideal  # float rounding of budget / seconds_per_tx
        assert ideal - 1 - fixed / (taken * per_tx) - slack < taken <= ideal + slack
        assert fixed + taken * per_tx <= budget * (1 + 1e-9)


async def test_a_proposal_takes_only_what_its_pace_allows(autojump_clock, monkeypatch):
    async with testnet(1, transport=SimulatedNetwork(seed=4), wallets=8) as net:
        node = net.nodes[0]
        duties = node._duties
        assert duties is not None
        with trio.fail_after(LIMIT_S):
            await net.wait_height(1)
        height = node.head().height
        payments = [net.transfer(i, net.wallets[(i + 1) % 8].address, COIN) for i in range(8)]
        verified = []
        original = validation.verify_input_signatures

        def recording(tx, txid, chain_id):
            verified.append(txid)
            return original(tx, txid, chain_id)

        monkeypatch.setattr(validation, "verify_input_signatures", recording)
        for tx in payments:
            await node.submit_transaction(tx)
        assert sorted(verified) == sorted(tx.txid for tx in payments)  # once, at admission
        duties.pace.seconds_per_tx = duties.pace.budget_s / 3  # three transactions fit
        with trio.fail_after(LIMIT_S):
            await net.wait_height(height + 1)
        block = node.get_block_at_height(height + 1)
        assert block is not None
        assert len(block.transactions) == 1 + 3  # the reward and three payments
        assert node.mempool_size() == 5
        assert sorted(verified) == sorted(tx.txid for tx in payments)  # not again to build


@pytest.mark.parametrize("budget", [0.0, -0.5, 1.5, float("nan")])
def test_a_proposal_budget_outside_the_slot_is_refused(budget):
    with pytest.raises(ConfigError, match="proposal_budget"):
        NodeLimits(proposal_budget=budget)
