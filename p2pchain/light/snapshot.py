"""The fetching side of snapshot sync: a verified state at a finalized checkpoint, from peers.

It starts as a light client does, from genesis (`LightClient.sync`: finality certificates
checked by the FFG rule), so the checkpoint it fetches the state of is one it proved final
itself. Then, each piece checked on arrival against what the checkpoint's header commits to:

1. the checkpoint's block (its header's id, its body against the header's body root);
2. the manifest: 256 subtree entries whose recomputed root is the header's state root, with
   the stake tables of the earlier checkpoints the next epochs draw validators from;
3. the 256 subtrees, each from one peer in pages, checked against its manifest entry when it
   is complete (a peer that sends a wrong one loses score and the next peer is asked);
4. the whole state, whose root is the header's.

A peer that no longer holds the state (finality moved on past what it keeps) is passed over;
if every peer has moved on, the client follows finality again and starts over, keeping the
subtrees whose entries did not change.
"""

from __future__ import annotations

from typing import Final

import trio

from p2pchain.consensus.anchor import Anchor, AnchorPoint
from p2pchain.consensus.light import verify_anchor_points
from p2pchain.errors import DecodeError, InvalidProof, NoHonestPeer
from p2pchain.ledger.block import Block
from p2pchain.ledger.header import BlockHeader
from p2pchain.ledger.snapshot import (
    SUBTREES,
    SnapshotManifest,
    SubtreeAssembler,
    assemble,
    check_manifest,
)
from p2pchain.ledger.types import BlockId
from p2pchain.ledger.utxo import UtxoView
from p2pchain.ledger.vote import Checkpoint
from p2pchain.light.client import (
    BAD_ANSWER_PENALTY,
    LightClient,
    _NobodyKnew,
    _Pass,
    only_block,
)
from p2pchain.protocol.connection import PeerId
from p2pchain.protocol.messages import (
    Blocks,
    GetBlocksById,
    GetSnapshotManifest,
    GetSnapshotPage,
    LightError,
    SnapshotManifestAnswer,
    SnapshotPageAnswer,
)
from p2pchain.protocol.scoring import Offence

FETCHERS: Final = 4
"""Subtrees fetched at once (from different peers when there are several)."""
ATTEMPTS: Final = 4
"""Times the client follows finality again when every peer moved past its checkpoint."""
TIMEOUT_PENALTY: Final = 10.0


class _Moved(Exception):
    """No peer holds the state of the checkpoint any more."""


async def fetch_snapshot(client: LightClient) -> tuple[Anchor, UtxoView] | None:
    """The anchor and state at the newest checkpoint `client` proves final, verified; None
    while only genesis is final (there is nothing to skip).

    Raises:
        NoHonestPeer: no peer served a piece that verifies, or finality kept moving past
            every peer's kept states `ATTEMPTS` times.
    """
    kept: dict[int, tuple[tuple[int, bytes], SubtreeAssembler]] = {}
    for _ in range(ATTEMPTS):
        checkpoint = await client.sync()
        if checkpoint.epoch == 0:
            return None
        try:
            return await _fetch_at(client, checkpoint, kept)
        except _Moved:
            continue
    raise NoHonestPeer(f"finality moved past every peer's snapshot {ATTEMPTS} times")


async def _fetch_at(
    client: LightClient,
    checkpoint: Checkpoint,
    kept: dict[int, tuple[tuple[int, bytes], SubtreeAssembler]],
) -> tuple[Anchor, UtxoView]:
    header = client.state.header(checkpoint.block_id)
    assert header is not None  # the client's own finalized checkpoint
    block = await _block(client, header)
    manifest, points = await _manifest(client, checkpoint, header)
    subtrees: dict[int, SubtreeAssembler] = {}
    wanted: list[int] = []
    for index, entry in enumerate(manifest.entries):
        reused = kept.get(index)
        if reused is not None and reused[0] == entry:
            subtrees[index] = reused[1]
        else:
            wanted.append(index)
    send, receive = trio.open_memory_channel[int](len(wanted))
    for index in wanted:
        send.send_nowait(index)
    send.close()
    moved: list[int] = []
    failed: list[NoHonestPeer] = []

    async def fetcher(offset: int, cancel: trio.CancelScope) -> None:
        async for index in receive:
            try:
                assembler = await _subtree(client, manifest, index, offset)
            except NoHonestPeer as exc:
                failed.append(exc)
                cancel.cancel()  # the state cannot be completed: stop the others
                return
            if assembler is None:
                moved.append(index)
                continue
            subtrees[index] = assembler
            kept[index] = (manifest.entries[index], assembler)

    async with trio.open_nursery() as nursery:
        for offset in range(FETCHERS):
            nursery.start_soon(fetcher, offset, nursery.cancel_scope)
    if failed:
        raise failed[0]
    if moved:
        raise _Moved
    view, governance = assemble(
        [subtrees[index] for index in range(SUBTREES)],
        block.block_id,
        block.header.height,
        header.state_root,
    )
    if governance is None:
        raise InvalidProof("the state holds no governance record")
    return Anchor(checkpoint=checkpoint, block=block, governance=governance, history=points), view


async def _block(client: LightClient, header: BlockHeader) -> Block:
    """The body of a verified header's block."""

    def check(answer: Blocks) -> Block:
        block = only_block(answer, header.block_id, "the checkpoint's block")
        if not block.has_valid_body_root():
            raise InvalidProof("the checkpoint's body does not match its header")
        return block

    return await client._ask_each(
        lambda: GetBlocksById(request_id=client._next_id(), block_ids=(header.block_id,)),
        Blocks,
        check,
    )


async def _manifest(
    client: LightClient, checkpoint: Checkpoint, header: BlockHeader
) -> tuple[SnapshotManifest, tuple[AnchorPoint, ...]]:
    """The manifest of the checkpoint's state and the anchor points before it, verified."""

    def check(answer: SnapshotManifestAnswer) -> tuple[SnapshotManifest, tuple[AnchorPoint, ...]]:
        if answer.manifest is None:
            raise _Pass(answer.error)
        if answer.manifest.block_id != checkpoint.block_id:
            raise InvalidProof("a manifest of another block")
        check_manifest(answer.manifest, header.state_root)
        points = verify_anchor_points(
            client.config.params, checkpoint, header, answer.headers, answer.anchors
        )
        return answer.manifest, points

    try:
        return await client._ask_each(
            lambda: GetSnapshotManifest(request_id=client._next_id(), block_id=header.block_id),
            SnapshotManifestAnswer,
            check,
        )
    except _NobodyKnew as nobody:
        raise _Moved from nobody


async def _subtree(
    client: LightClient, manifest: SnapshotManifest, index: int, offset: int
) -> SubtreeAssembler | None:
    """Subtree `index`, all pages from one peer, trying peers in turn from `offset`; None
    when every peer that answered no longer holds the state."""
    entry = manifest.entries[index]
    assembler = SubtreeAssembler(index, entry)
    if entry[0] == 0:
        assembler.add_page((), True)
        return assembler
    peers = list(client._peers)
    if not peers:
        await client._wait_peer()
        peers = list(client._peers)
    start = offset % len(peers)
    passed = False
    for peer in peers[start:] + peers[:start]:
        try:
            result = await _subtree_from(client, peer, manifest.block_id, index, entry)
        except _Pass:
            passed = True
            continue
        if result is not None:
            return result
    if passed:
        return None
    raise NoHonestPeer(f"no peer served subtree {index} of the snapshot so that it verifies")


async def _subtree_from(
    client: LightClient, peer: PeerId, block_id: BlockId, index: int, entry: tuple[int, bytes]
) -> SubtreeAssembler | None:
    """The subtree from `peer`; None (after a penalty) when it lies or stalls."""
    assembler = SubtreeAssembler(index, entry)
    after = b""
    while True:
        request = GetSnapshotPage(
            request_id=client._next_id(), block_id=block_id, subtree=index, after=after
        )
        answer = await client._request(peer, request, SnapshotPageAnswer)
        if answer is None:
            client._swarm.penalize(peer, TIMEOUT_PENALTY, Offence.TIMEOUT)
            return None
        if answer.error is not None:
            if answer.error is LightError.SNAPSHOT_UNAVAILABLE:
                raise _Pass(answer.error)
            client._swarm.penalize(peer, BAD_ANSWER_PENALTY, Offence.BAD_RESPONSE)
            return None
        try:
            after = assembler.add_page(answer.records, answer.done)
        except (InvalidProof, DecodeError):
            client._swarm.penalize(peer, BAD_ANSWER_PENALTY, Offence.BAD_RESPONSE)
            return None
        if answer.done:
            return assembler
