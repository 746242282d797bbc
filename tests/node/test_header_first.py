"""A gossiped block is judged by its header before its body is decoded: a forged or misplaced
block costs the node one signature check, whatever its body holds."""

import pytest
import trio

from p2pchain.errors import GossipReject, Reason
from p2pchain.ledger.crypto import sha256
from p2pchain.ledger.encoding import encode_item
from p2pchain.ledger.header import BlockHeader, header_signing_message
from p2pchain.ledger.types import BlockId, Hash32
from p2pchain.protocol.connection import PeerId
from p2pchain.protocol.messages import Topic
from p2pchain.testing.simnet import SimulatedNetwork
from p2pchain.testing.testnet import testnet

LIMIT_S = 600.0
JUNK_BODY = [[b"not a transaction"], [b"not a vote"]]
"""Fails to decode: a block with this body is malformed, if anyone reads it."""


def _block_bytes(header, signature):
    return encode_item([header.to_rlp(), signature, *JUNK_BODY])


CASES = {
    "wrong-proposer": Reason.WRONG_PROPOSER,
    "bad-signature": Reason.BAD_PROPOSER_SIGNATURE,
    "sound-header": Reason.MALFORMED,  # a sound header does not spare the body
    "orphan-bad-signature": Reason.BAD_PROPOSER_SIGNATURE,  # a signature needs no parent
    "orphan-sound-header": Reason.MALFORMED,  # decoded whole, for the orphan pool
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_blocks_header_is_judged_before_its_body(autojump_clock, case):
    async with testnet(1, transport=SimulatedNetwork(seed=6)) as net:
        node = net.nodes[0]
        with trio.fail_after(LIMIT_S):
            await net.wait_height(2)
        head = node.get_block_at_height(node.head().height)
        parent = node.get_block_at_height(head.header.height - 1)
        validator = net.configs[0].validator_key
        signer = net.wallets[0].key if case == "wrong-proposer" else validator
        orphan = case.startswith("orphan")
        header = BlockHeader(  # a rival of the head: its slot, on its parent (or an unknown one)
            parent=BlockId(sha256(b"a parent nobody knows")) if orphan else parent.block_id,
            height=head.header.height,
            slot=head.header.slot,
            proposer=signer.public_key,
            body_root=Hash32(sha256(b"a body nobody will read")),
            state_root=Hash32(bytes(32)),
        )
        message = header_signing_message(net.params.chain_id, header.block_id)
        signature = bytes(64) if case.endswith("bad-signature") else signer.sign(message)
        invalid_before = node.statistics().chain.blocks_invalid
        with pytest.raises(GossipReject) as rejected:
            await node.network.host.validate(
                Topic.BLOCK, _block_bytes(header, signature), PeerId(bytes(32))
            )
        expected = CASES[case]
        assert rejected.value.reason is expected
        counted = node.statistics().chain.blocks_invalid - invalid_before
        assert counted == (0 if expected is Reason.MALFORMED else 1)
        assert node.head().block_id == head.block_id
