"""Rules for the peer's `Hello`: is this a node of our chain, and is it who the channel says?"""

from __future__ import annotations

from p2pchain.protocol.messages import DisconnectReason, Hello


def check_hello(ours: Hello, theirs: Hello, expected_key: bytes) -> DisconnectReason | None:
    """The reason to refuse the peer, or None to accept it.

    `expected_key` is the node key proved in the Noise handshake. Checks run in a fixed order so
    both sides of a mismatched pair report the same reason. Duplicate connections are a property
    of the whole peer set, so the swarm checks them, not this function.
    """
    if theirs.protocol_version != ours.protocol_version:
        return DisconnectReason.INCOMPATIBLE_VERSION
    if theirs.chain_id != ours.chain_id:
        return DisconnectReason.WRONG_CHAIN
    if theirs.genesis != ours.genesis:
        return DisconnectReason.WRONG_GENESIS
    if theirs.node_key != expected_key:
        return DisconnectReason.BAD_IDENTITY
    if theirs.node_key == ours.node_key:
        return DisconnectReason.SELF_CONNECTION
    return None
