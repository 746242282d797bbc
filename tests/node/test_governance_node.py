"""Governance on real nodes: a proposal submitted to one node, voted by the validators through
another, enacted on every node at its activation epoch, and the same after a restart (the node
rebuilds governance by replaying its stored blocks). Virtual time, manual clocks."""

from __future__ import annotations

from dataclasses import replace

import trio

from p2pchain import TxStatus
from p2pchain.consensus import ProposalStatus
from p2pchain.ledger.tx import LockKind, Transaction, VoteChoice
from p2pchain.ledger.types import Amount, Epoch, Height, Slot, TxId
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.wallet import Wallet
from p2pchain.node import Node
from p2pchain.params import COIN
from p2pchain.testing.simnet import SimulatedNetwork
from p2pchain.testing.testnet import TESTNET_PARAMS, Testnet, testnet

PARAMS = replace(TESTNET_PARAMS, gov_voting_epochs=1)
NEW_REWARD = 2 * COIN
LIMIT_S = 600.0
MAX_SLOTS = 32
FEE = Amount(10_000)


def context(node: Node) -> BlockContext:
    head = node.head()
    return BlockContext(height=Height(head.height + 1), slot=Slot(head.slot + 1))


def epoch_of(node: Node) -> int:
    return node.clock_status().slot // PARAMS.slots_per_epoch


async def until_included(net: Testnet, txid: TxId) -> None:
    """Mine until node 0 has `txid` on its chain, for at most `MAX_SLOTS` slots (a manual
    clock moves only when mined, so a bound in time would never be reached)."""
    for _ in range(MAX_SLOTS):
        if net.node(0).get_transaction(txid).status in (TxStatus.INCLUDED, TxStatus.FINALIZED):
            return
        await net.mine(1)
    raise AssertionError(f"{txid.hex()} not included within {MAX_SLOTS} slots")


def vote(net: Testnet, payer: Wallet, proposal: TxId, validator: int, node: Node) -> Transaction:
    return payer.build_gov_vote(
        node.utxos(payer.address),
        proposal=proposal,
        choice=VoteChoice.YES,
        fee=FEE,
        context=context(node),
        validator=net.configs[validator].validator_key,
    )


async def test_a_passed_proposal_is_in_force_on_every_node_and_after_a_restart(
    autojump_clock, tmp_path
) -> None:
    network = SimulatedNetwork(seed=17)
    async with testnet(
        3, params=PARAMS, transport=network, manual_clock=True, data_dir=tmp_path
    ) as net:
        await net.mine(1)
        entry = net.node(0)
        proposer = net.wallets[0]
        activation = epoch_of(entry) + PARAMS.gov_voting_epochs + 2  # room for one late block
        propose = proposer.build_propose(
            entry.utxos(proposer.address),
            changes=[("block_reward", NEW_REWARD)],
            activation=Epoch(activation),
            fee=FEE,
            context=context(entry),
        )
        proposal = propose.txid
        await entry.submit_transaction(propose)
        await until_included(net, proposal)
        record = entry.proposal(proposal)
        assert record is not None
        assert record.status is ProposalStatus.VOTING
        with trio.fail_after(LIMIT_S):
            while epoch_of(entry) < record.start:
                await net.mine(1)

        other = net.node(1)  # the votes reach the block producers by gossip
        # Both cast at once: the window may close a slot or two after its first block.
        ballots = [
            vote(net, payer, proposal, validator, other)
            for validator, payer in [(0, net.wallets[1]), (1, net.wallets[2])]
        ]
        for ballot in ballots:
            await other.submit_transaction(ballot)
        for ballot in ballots:
            await until_included(net, ballot.txid)
        with trio.fail_after(LIMIT_S):
            while epoch_of(entry) <= activation:
                await net.mine(1)
        await net.wait_heads_equal()
        for node in net.nodes:
            assert node.chain_params().block_reward == NEW_REWARD
            enacted = node.proposal(proposal)
            assert enacted is not None
            assert enacted.status is ProposalStatus.ENACTED
            tally = enacted.current_tally()
            assert tally.yes * 3 == tally.total * 2  # two of three equal stakes
        head = entry.get_block(entry.head().block_id)
        assert head is not None
        assert len(head.transactions) == 1  # no fees: the proposer takes the new reward
        assert [o.amount for o in head.transactions[0].outputs] == [NEW_REWARD]
        refunds = [
            output
            for _, output in entry.utxos(proposer.address)
            if output.lock.kind is LockKind.HEIGHT and output.amount == PARAMS.gov_deposit
        ]
        assert len(refunds) == 1  # quorum: the deposit came back in a reward
        first = entry.get_block_at_height(Height(1))
        assert first is not None
        assert first.transactions[0].outputs[0].amount == PARAMS.block_reward

        await net.restart(2)
        restarted = net.node(2)
        assert restarted.chain_params().block_reward == NEW_REWARD
        again = restarted.proposal(proposal)
        assert again is not None
        assert again.status is ProposalStatus.ENACTED
        with trio.fail_after(LIMIT_S):
            await net.mine(PARAMS.slots_per_epoch)
            await net.wait_heads_equal()
