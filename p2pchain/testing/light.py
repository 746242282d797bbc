"""Light clients against a pure fork-choice store: the node's side (votes archived, headers
served) and the client's, in one process, for tests, fuzzing and benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from p2pchain.consensus.light import (
    FinalityCertificate,
    LightState,
    VoteArchive,
    build_certificate,
)
from p2pchain.consensus.store import Store
from p2pchain.ledger.block import Block
from p2pchain.ledger.header import BlockHeader
from p2pchain.ledger.types import BlockId, Epoch
from p2pchain.ledger.vote import Checkpoint, Vote


def archive_of(messages: Iterable[Block | Vote]) -> VoteArchive:
    """Every vote among `messages`, gossiped or carried by a block (as a node archives them)."""
    archive = VoteArchive()
    for message in messages:
        for vote in message.votes if isinstance(message, Block) else (message,):
            archive.add(vote)
    return archive


def headers_of(store: Store) -> Callable[[BlockId], BlockHeader | None]:
    """The `header_of` a store answers from the bodies it still holds."""

    def header_of(block_id: BlockId) -> BlockHeader | None:
        node = store.nodes.get(block_id)
        return None if node is None or node.block is None else node.block.header

    return header_of


def genesis_client(store: Store) -> LightState:
    """A light client trusting the store's genesis."""
    genesis = store.nodes[store.genesis_id].block
    assert genesis is not None, "genesis is never released"
    checkpoint = Checkpoint(epoch=Epoch(0), block_id=store.genesis_id)
    return LightState.from_checkpoint(store.params, checkpoint, genesis.header)


def follow(
    client: LightState, store: Store, archive: VoteArchive
) -> list[tuple[FinalityCertificate, Checkpoint]]:
    """Advance `client` with the store's certificates until it has nothing newer; each
    certificate with the checkpoint it made final."""
    taken = []
    while (
        certificate := build_certificate(store, archive, client.finalized, headers_of(store))
    ) is not None:
        taken.append((certificate, client.advance(certificate)))
    return taken
