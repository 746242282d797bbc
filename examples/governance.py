"""On-chain governance: the validators of a carbon-registry chain vote a lower block reward in.

Run it with ``python examples/governance.py``. The registry's wallet proposes to cut the block
reward from 5 to 2 coin (less new coin for the same work), paying the chain's deposit. Three
validators of equal stake answer in the voting window, two yes and one no, each vote signed
by the validator's key and paid for by some wallet. When the window closes the tally passes
(everyone voted, and two thirds of yes-plus-no is more than half), the deposit comes back in
the next block's reward, and from the activation epoch on every node validates blocks with
the new reward. Nothing is configured on the nodes: the change is decided on the chain.

The three validators run on p2pchain's simulated network with manual clocks (a dev chain:
a slot happens only when `Testnet.mine` moves every node's clock to it) under trio's
MockClock, so the dozen slots the story needs pass in about a second of wall time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import trio
import trio.testing

from p2pchain import Node, TxStatus
from p2pchain.consensus import ProposalStatus
from p2pchain.ledger import Amount, BlockContext, Epoch, Height, Slot, TxId
from p2pchain.ledger.tx import VoteChoice
from p2pchain.params import COIN
from p2pchain.testing import TESTNET_PARAMS, Testnet, testnet
from p2pchain.testing.simnet import SimulatedNetwork

# 1 s slots, 4-slot epochs, and a voting window of one epoch: the whole life of a proposal
# (submitted, voted, tallied, enacted) fits in four epochs.
PARAMS = replace(TESTNET_PARAMS, gov_voting_epochs=1)
NEW_REWARD = 2 * COIN
FEE = Amount(10_000)
BALLOTS = ((0, VoteChoice.YES), (1, VoteChoice.YES), (2, VoteChoice.NO))
"""(validator index, answer): wallet i + 1 pays the fee of validator i's vote."""
MAX_SLOTS = 32  # no step of the story should need more slots than this
TIMEOUT_S = 600.0  # virtual seconds


def coin(amount: int) -> str:
    return f"{amount / COIN:.8f} coin"


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f} %"


def next_block(node: Node) -> BlockContext:
    """The block a transaction built now would land in (locks are checked against it)."""
    head = node.head()
    return BlockContext(height=Height(head.height + 1), slot=Slot(head.slot + 1))


async def mine_until(net: Testnet, condition: Callable[[], bool], what: str) -> None:
    """Mine one slot at a time until `condition()` holds (at most `MAX_SLOTS` slots)."""
    for _ in range(MAX_SLOTS):
        if condition():
            return
        await net.mine(1)
    raise SystemExit(f"{what}: not within {MAX_SLOTS} slots")


async def include(net: Testnet, txids: list[TxId]) -> Height:
    """Wait until every node's pool has `txids` (gossip), then mine until node 0 sees them all
    on the chain; return the height of the last one."""
    with trio.fail_after(TIMEOUT_S):
        await net.wait_for(
            lambda: all(
                n.get_transaction(t).status is not TxStatus.UNKNOWN
                for n in net.nodes
                for t in txids
            )
        )
    node = net.nodes[0]

    def included() -> bool:
        return all(
            node.get_transaction(t).status in (TxStatus.INCLUDED, TxStatus.FINALIZED) for t in txids
        )

    await mine_until(net, included, "inclusion")
    heights = [node.get_transaction(t).height for t in txids]
    return Height(max(h for h in heights if h is not None))


async def main() -> None:
    network = SimulatedNetwork(seed=2026, latency=(0.005, 0.05))
    async with testnet(3, params=PARAMS, transport=network, manual_clock=True) as net:
        node = net.nodes[0]
        registry = net.wallets[0]
        print(
            f"a carbon-registry chain: {len(net.nodes)} validators, "
            f"{PARAMS.slots_per_epoch}-slot epochs, manual clocks on a simulated network"
        )
        print(
            f"governance: deposit {coin(PARAMS.gov_deposit)}, "
            f"voting window {PARAMS.gov_voting_epochs} epoch, "
            f"quorum {PARAMS.gov_quorum_bps / 100:.2f} %, "
            f"threshold {PARAMS.gov_threshold_bps / 100:.2f} % of yes + no"
        )
        await net.mine(1)
        before = node.chain_params().block_reward
        print(
            f"\nblock_reward in force for the next block (epoch {node.governance().epoch}): "
            f"{coin(before)}"
        )

        # 1. Propose. The activation epoch must come after the voting window, which opens in
        #    the epoch after the proposal's block; one epoch more leaves the passed proposal
        #    waiting a while, as a real chain would give wallets time to adapt.
        epoch = node.governance().epoch  # the epoch of the next block
        activation = Epoch(epoch + PARAMS.gov_voting_epochs + 2)
        start_balance = node.balance(registry.address)
        propose = registry.build_propose(
            node.utxos(registry.address),
            changes=[("block_reward", NEW_REWARD)],
            activation=activation,
            fee=FEE,
            context=next_block(node),
        )
        proposal_id = await node.submit_transaction(propose)
        print(
            f"\nregistry proposes block_reward = {coin(NEW_REWARD)} from epoch {activation}"
            f" (proposal {proposal_id.hex()[:12]})"
        )
        height = await include(net, [proposal_id])
        record = node.proposal(proposal_id)
        assert record is not None
        print(
            f"  included at height {height}, epoch {record.submitted}: status {record.status},"
            f" votes count in epochs {record.start}..{record.end}"
        )
        paid = start_balance - node.balance(registry.address)
        assert paid == PARAMS.gov_deposit + FEE
        print(f"  registry paid the {coin(PARAMS.gov_deposit)} deposit and a {coin(FEE)} fee")

        # 2. Vote. Once the next block is in the window, the proposal has its snapshot of the
        #    stake, and each validator's vote counts with its snapshot stake. The votes go to
        #    node 1 and reach the block producers by gossip.
        start = record.start
        await mine_until(net, lambda: node.governance().epoch >= start, "window")
        record = node.proposal(proposal_id)
        assert record is not None
        assert record.snapshot is not None
        print(
            f"\nepoch {node.governance().epoch}: the window is open"
            f" (snapshot: {coin(record.snapshot.total)} of stake)"
        )
        ballots: list[TxId] = []
        for validator, choice in BALLOTS:
            payer = net.wallets[validator + 1]
            ballot = payer.build_gov_vote(
                node.utxos(payer.address),
                proposal=proposal_id,
                choice=choice,
                fee=FEE,
                context=next_block(node),
                validator=net.validator_keys[validator],
            )
            ballots.append(await net.nodes[1].submit_transaction(ballot))
            print(
                f"  validator {validator} votes {choice.name.lower()}"
                f" (wallet {validator + 1} pays the fee)"
            )
        height = await include(net, ballots)
        record = node.proposal(proposal_id)
        assert record is not None
        tally = record.current_tally()
        print(f"  the votes are on the chain by height {height}")
        print(
            f"  tally so far: yes {coin(tally.yes)}, no {coin(tally.no)},"
            f" abstain {coin(tally.abstain)} of {coin(tally.total)}"
        )

        # 3. Tally. The first block after the window starts from the tallied state and returns
        #    the deposit in its reward (quorum was reached), after the proposer's own output.
        def tallied() -> bool:
            found = node.proposal(proposal_id)
            return found is not None and found.status is not ProposalStatus.VOTING

        await mine_until(net, tallied, "tally")
        record = node.proposal(proposal_id)
        assert record is not None
        assert record.tally is not None
        tally = record.tally
        print(
            f"\nepoch {node.governance().epoch}: the window closed: {record.status}"
            f" (turnout {percent(tally.turnout, tally.total)},"
            f" yes {percent(tally.yes, tally.yes + tally.no)} of yes + no)"
        )
        await net.mine(1)
        refund_block = node.get_block(node.head().block_id)
        assert refund_block is not None
        reward = refund_block.transactions[0]
        refund = reward.outputs[-1]
        assert len(reward.outputs) == 2  # the proposer's output, then the refund
        assert refund.address == registry.address
        assert refund.amount == PARAMS.gov_deposit
        print(
            f"  block {refund_block.header.height} paid its proposer"
            f" {coin(reward.outputs[0].amount)} and returned the {coin(refund.amount)} deposit"
            f" to registry (locked until height {refund.lock.value})"
        )
        assert start_balance - node.balance(registry.address) == FEE
        print(
            f"  block_reward in force for the next block (epoch {node.governance().epoch}):"
            f" {coin(node.chain_params().block_reward)}"
        )

        # 4. Activation. From the first block of the activation epoch on, every node validates
        #    with the new reward; nothing changes inside an epoch.
        def enacted() -> bool:
            found = node.proposal(proposal_id)
            return found is not None and found.status is ProposalStatus.ENACTED

        await mine_until(net, enacted, "activation")
        print(f"\nepoch {node.governance().epoch}: proposal {proposal_id.hex()[:12]} enacted")
        await net.mine(1)
        with trio.fail_after(TIMEOUT_S):
            await net.wait_heads_equal()
        for index, other in enumerate(net.nodes):
            in_force = other.chain_params().block_reward
            assert in_force == NEW_REWARD
            print(f"  block_reward in force on node {index}: {coin(in_force)}")
        head = node.get_block(node.head().block_id)
        assert head is not None
        assert len(head.transactions) == 1  # no fees: the reward is the block reward alone
        epoch_of_head = head.header.slot // PARAMS.slots_per_epoch
        print(
            f"  block {head.header.height} (epoch {epoch_of_head}) paid its proposer"
            f" {coin(head.transactions[0].outputs[0].amount)}"
        )
        print(
            f"\nblock_reward: {coin(before)} before, {coin(node.chain_params().block_reward)} after"
        )


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
