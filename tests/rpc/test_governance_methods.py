"""The governance methods over a real WebSocket, on a manual-clock node moved slot by slot with
dev_setTime: a proposal submitted with tx_submit is listed as voting with its window, a
validator's vote shows in the tally, and after the window and the activation epoch
chain_params carries the new value (the proposal keeps its tally, its vote count is null);
hostile params get INVALID_PARAMS, never a crash."""

from dataclasses import fields, replace

import pytest
import trio
from rpc_harness import PARAMS, Client

from p2pchain.cli.wallet import params_from_json
from p2pchain.ledger.tx import VoteChoice
from p2pchain.ledger.types import Amount, Epoch, Height, Slot
from p2pchain.ledger.validation import BlockContext
from p2pchain.params import COIN, ChainParams
from p2pchain.rpc import serve_rpc
from p2pchain.testing.testnet import testnet

pytestmark = pytest.mark.timeout(60)
GOV_PARAMS = replace(PARAMS, slots_per_epoch=2, gov_voting_epochs=1, gov_deposit=3 * COIN)
NEW_REWARD = 2 * COIN
FEE = Amount(10_000)
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
REJECTED = -32000


def hex_of(data: bytes) -> str:
    return "0x" + data.hex()


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


class Chain:
    """One manual-clock node seen through its RPC: moves the clock, reads the head."""

    def __init__(self, client: Client, genesis_ms: int) -> None:
        self.client = client
        self.genesis_ms = genesis_ms
        self.slot = 0

    async def mine(self, slots: int = 1) -> None:
        for _ in range(slots):
            self.slot += 1
            await self.client.call("dev_setTime", self.genesis_ms + self.slot * GOV_PARAMS.slot_ms)

    async def mine_until_epoch(self, epoch: int) -> None:
        """Until the next block falls in `epoch` (what chain_params describes)."""
        while (self.slot + 1) // GOV_PARAMS.slots_per_epoch < epoch:
            await self.mine()

    async def context(self) -> BlockContext:
        head = await self.client.call("chain_head")
        return BlockContext(height=Height(head["height"] + 1), slot=Slot(head["slot"] + 1))


async def test_a_proposal_is_listed_voted_and_enacted_over_rpc() -> None:
    async with (
        testnet(1, params=GOV_PARAMS, manual_clock=True, dev_rpc=True) as net,
        trio.open_nursery() as nursery,
    ):
        node = net.nodes[0]
        server = await nursery.start(serve_rpc, node)
        client = await Client.connect(server.url)
        chain = Chain(client, net.genesis.genesis_time_ms)

        shown = await client.call("chain_params")
        assert set(shown) == {camel(spec.name) for spec in fields(ChainParams)}
        assert shown["slotsPerEpoch"] == 2
        assert shown["govDeposit"] == 3 * COIN
        assert shown["addressPrefix"] == "dp2p"
        assert shown["nativeAsset"] == "0x" + "00" * 32
        assert params_from_json(shown) == GOV_PARAMS  # what the CLI wallet builds with
        assert await client.call("gov_proposals") == []

        await chain.mine()
        proposer = net.wallets[0]
        epoch = (chain.slot + 1) // GOV_PARAMS.slots_per_epoch
        activation = epoch + GOV_PARAMS.gov_voting_epochs + 1  # the first one allowed
        propose = proposer.build_propose(
            node.utxos(proposer.address), changes=[("block_reward", NEW_REWARD)],
            activation=Epoch(activation), fee=FEE, context=await chain.context(),
        )  # fmt: skip
        proposal = hex_of(propose.txid)
        assert await client.call("tx_submit", hex_of(propose.encoded)) == proposal
        assert await client.call("gov_proposal", proposal) is None  # pending: not yet in force
        await chain.mine()
        included = await client.call("tx_get", proposal)
        assert included["status"] == "included"
        assert included["tx"]["kind"] == "propose"
        assert included["tx"]["payload"] == {
            "changes": [{"name": "block_reward", "value": NEW_REWARD}],
            "activation": activation,
            "refund": proposer.address_text,
        }

        (listed,) = await client.call("gov_proposals")
        assert listed["proposalId"] == proposal
        assert listed["status"] == "voting"
        window = (listed["submitted"], listed["start"], listed["end"])
        assert window == (epoch, epoch + 1, epoch + GOV_PARAMS.gov_voting_epochs)
        assert listed["activation"] == activation
        assert listed["changes"] == [{"name": "block_reward", "value": NEW_REWARD}]
        assert (listed["refund"], listed["deposit"]) == (proposer.address_text, str(3 * COIN))
        assert listed["votes"] == 0
        assert listed["tally"]["total"] == "0"  # the window has not opened: no snapshot yet
        assert await client.call("gov_proposals", "voting") == [listed]
        assert await client.call("gov_proposals", status="enacted") == []
        assert await client.call("gov_proposals", None, 0) == []
        assert await client.call("gov_proposal", proposal) == listed
        assert await client.call("gov_proposal", proposalId="0x" + proposal[2:].upper()) == listed
        assert await client.call("gov_tally", proposal) == listed["tally"]
        assert await client.call("gov_proposal", hex_of(bytes(32))) is None
        assert await client.call("gov_tally", hex_of(bytes(32))) is None

        await chain.mine_until_epoch(listed["start"])
        validator = net.validator_keys[0]
        payer = net.wallets[1]

        async def ballot(choice: VoteChoice, voter=validator):
            tx = payer.build_gov_vote(
                node.utxos(payer.address), proposal=propose.txid, choice=choice, fee=FEE,
                context=await chain.context(), validator=voter,
            )  # fmt: skip
            return tx, await client.request("tx_submit", hex_of(tx.encoded))

        outsider = net.wallets[2].key  # no stake in the snapshot
        _, refused = await ballot(VoteChoice.YES, outsider)
        assert refused["error"]["code"] == REJECTED
        assert refused["error"]["data"] == {"reason": "not-a-voter"}
        yes, answer = await ballot(VoteChoice.YES)
        assert answer["result"] == hex_of(yes.txid)
        await chain.mine()
        shown_vote = (await client.call("tx_get", hex_of(yes.txid)))["tx"]
        assert shown_vote["kind"] == "gov_vote"
        assert shown_vote["payload"]["choice"] == "yes"
        assert shown_vote["payload"]["proposal"] == proposal
        assert shown_vote["payload"]["validator"] == hex_of(validator.public_key)
        _, again = await ballot(VoteChoice.NO)
        assert again["error"]["data"] == {"reason": "double-gov-vote"}
        tally = await client.call("gov_tally", proposal)
        stake = tally["total"]
        assert int(stake) > 0
        assert tally == {
            "yes": stake, "no": "0", "abstain": "0", "turnout": stake, "total": stake,
            "quorumReached": True, "passing": True,
        }  # fmt: skip
        assert (await client.call("gov_proposal", proposal))["votes"] == 1

        await chain.mine_until_epoch(activation - 1)
        assert (await client.call("chain_params"))["blockReward"] == GOV_PARAMS.block_reward
        await chain.mine_until_epoch(activation)
        assert (await client.call("chain_params"))["blockReward"] == NEW_REWARD
        (enacted,) = await client.call("gov_proposals", "enacted")
        assert enacted["proposalId"] == proposal
        assert enacted["tally"] == tally  # the final tally, kept
        assert enacted["votes"] is None  # ... and not the votes it was made of
        assert await client.call("gov_proposals", "voting") == []
        await client.close()
        nursery.cancel_scope.cancel()


async def test_hostile_governance_params_are_invalid_params_never_a_crash(served) -> None:
    client = await Client.connect(served.server.url)
    good = hex_of(bytes(32))
    wrong = [
        ("gov_proposal", ["0xzz"], "not valid hex"),
        ("gov_proposal", ["0x00"], "must be 32 bytes"),
        ("gov_proposal", [good[:-1]], "not valid hex"),
        ("gov_proposal", [good + "00"], "must be 32 bytes"),
        ("gov_proposal", [good[2:]], "0x-prefixed"),
        ("gov_proposal", [5], "must be a string"),
        ("gov_proposal", [{"id": good}], "must be a string"),
        ("gov_proposal", [[good]], "must be a string"),
        ("gov_proposal", [], "proposalId is required"),
        ("gov_proposal", [good, good], "at most 1 params"),
        ("gov_proposal", {"proposal": good}, "unknown param"),
        ("gov_tally", ["0x" + "g" * 64], "not valid hex"),
        ("gov_tally", [None], "proposalId is required"),
        ("gov_tally", [True], "must be a string"),
        ("gov_proposals", ["bogus"], "status must be one of voting, passed, enacted"),
        ("gov_proposals", ["VOTING"], "status must be one of"),
        ("gov_proposals", [3], "status must be a string"),
        ("gov_proposals", [{"status": "voting"}], "status must be a string"),
        ("gov_proposals", [None, 10**30], "limit must be at most 1000"),
        ("gov_proposals", [None, 1_001], "limit must be at most 1000"),
        ("gov_proposals", [None, -1], "non-negative integer"),
        ("gov_proposals", [None, 2.5], "non-negative integer"),
        ("gov_proposals", [None, "10"], "non-negative integer"),
        ("gov_proposals", {"limit": True}, "non-negative integer"),
        ("chain_params", [1], "at most 0 params"),
    ]
    for method, params, complaint in wrong:
        await client.send_json({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        response = await client.response()
        assert response["error"]["code"] == INVALID_PARAMS, (method, params, response)
        assert complaint in response["error"]["message"], (method, params, response)
    for params in ("0x" + "00" * 32, 7, True):  # not an array or an object: the envelope's
        await client.send_json({"jsonrpc": "2.0", "id": 2, "method": "gov_tally", "params": params})
        assert (await client.response())["error"]["code"] == INVALID_REQUEST
    assert await client.call("gov_proposals", None, 1_000) == []
    assert (await client.call("chain_params"))["chainId"] == served.node.params.chain_id
    await client.close()
