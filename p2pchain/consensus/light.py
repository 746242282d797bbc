"""Light clients: following finality from headers, votes and stake proofs alone.

A full node hands a light client a `FinalityCertificate`: a run of consecutive headers that
contains the client's finalized block, the supermajority links (with every vote) that justify
checkpoints from there on and finalize a newer one, and for each link the stake table of its
target epoch, proven against the state root of that epoch's anchor block (the checkpoint of
``epoch - validator_set_lag_epochs``, as the fork choice uses). `LightState.advance` checks all
of it with the FFG rule of `p2pchain.consensus.finality`, trusting nothing but its checkpoint.

The server side keeps what it needs in a `VoteArchive` (every counted vote, by link) and in
`BlockNode.stake_path`; `build_certificate` assembles an answer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, Self

from p2pchain.consensus.anchor import AnchorPoint, anchor_epochs
from p2pchain.consensus.store import BlockNode, Store, get_checkpoint_node, is_ancestor
from p2pchain.consensus.types import compute_start_slot_at_epoch
from p2pchain.errors import InvalidProof
from p2pchain.ledger.block import InclusionProof, verify_inclusion
from p2pchain.ledger.encoding import RLPItem, read_fixed, read_list
from p2pchain.ledger.header import BlockHeader
from p2pchain.ledger.proofs import (
    MAX_PROOF_VALIDATORS,
    ProvenValue,
    StateProof,
    StateQuery,
    ValidatorsProof,
    verify,
    verify_validators,
)
from p2pchain.ledger.tx import Transaction
from p2pchain.ledger.types import BlockId, Epoch, PublicKey, Slot
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.params import ChainParams

MAX_CERTIFICATE_HEADERS: Final = 4_096
"""Headers one certificate carries (about 800 KiB): a longer stall is crossed in steps."""
MAX_CERTIFICATE_LINKS: Final = 64
MAX_HEADERS_KEPT: Final = 65_536
"""Finalized headers a light client remembers (about 13 MiB), newest kept."""
ARCHIVE_EPOCHS: Final = 64
"""Epochs below the finalized one whose link votes a `VoteArchive` keeps."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkVotes:
    """One supermajority link and the votes that make it one."""

    source: Checkpoint
    target: Checkpoint
    votes: tuple[Vote, ...]

    def to_rlp(self) -> RLPItem:
        return [self.source.to_rlp(), self.target.to_rlp(), [v.to_rlp() for v in self.votes]]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        source, target, votes = read_list(item, "link", length=3)
        entries = read_list(votes, "link.votes", max_length=MAX_PROOF_VALIDATORS)
        return cls(
            source=Checkpoint.from_rlp(source),
            target=Checkpoint.from_rlp(target),
            votes=tuple(Vote.from_rlp(vote) for vote in entries),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AnchorStakes:
    """The stake table after an anchor block, proven against that block's state root."""

    anchor: BlockId
    proof: ValidatorsProof

    def to_rlp(self) -> RLPItem:
        return [self.anchor, self.proof.to_rlp()]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        anchor, proof = read_list(item, "anchor_stakes", length=2)
        return cls(
            anchor=BlockId(read_fixed(anchor, "anchor_stakes.anchor", 32)),
            proof=ValidatorsProof.from_rlp(proof),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalityCertificate:
    """Everything `LightState.advance` needs to move its finalized checkpoint forward."""

    headers: tuple[BlockHeader, ...]
    links: tuple[LinkVotes, ...]
    anchors: tuple[AnchorStakes, ...]

    def to_rlp(self) -> RLPItem:
        return [
            [header.to_rlp() for header in self.headers],
            [link.to_rlp() for link in self.links],
            [anchor.to_rlp() for anchor in self.anchors],
        ]

    @classmethod
    def from_rlp(cls, item: RLPItem) -> Self:
        headers, links, anchors = read_list(item, "certificate", length=3)
        return cls(
            headers=tuple(
                BlockHeader.from_rlp(h)
                for h in read_list(
                    headers, "certificate.headers", max_length=MAX_CERTIFICATE_HEADERS
                )
            ),
            links=tuple(
                LinkVotes.from_rlp(link)
                for link in read_list(links, "certificate.links", max_length=MAX_CERTIFICATE_LINKS)
            ),
            anchors=tuple(
                AnchorStakes.from_rlp(a)
                for a in read_list(anchors, "certificate.anchors", max_length=MAX_CERTIFICATE_LINKS)
            ),
        )


# -- the client ---------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class LightState:
    """A light client's whole knowledge: its finalized checkpoint and the finalized headers up
    to it (the newest `MAX_HEADERS_KEPT`)."""

    params: ChainParams
    finalized: Checkpoint
    headers: OrderedDict[BlockId, BlockHeader] = field(default_factory=OrderedDict)

    @classmethod
    def from_checkpoint(
        cls, params: ChainParams, checkpoint: Checkpoint, header: BlockHeader
    ) -> LightState:
        """Trust `checkpoint` (a finalized block known out of band, or genesis) with its header.

        Raises:
            InvalidProof: the header is not the checkpoint's block.
        """
        if header.block_id != checkpoint.block_id:
            raise InvalidProof("the header is not the trusted checkpoint's block")
        return cls(params, checkpoint, OrderedDict([(header.block_id, header)]))

    @property
    def finalized_header(self) -> BlockHeader:
        return self.headers[self.finalized.block_id]

    def header(self, block_id: BlockId) -> BlockHeader | None:
        """A finalized header this client verified, or None."""
        return self.headers.get(block_id)

    def advance(self, certificate: FinalityCertificate) -> Checkpoint:
        """Check `certificate` and adopt the newest checkpoint it finalizes; return it.

        Raises:
            InvalidProof: anything in it does not hold, or it finalizes nothing newer. The
                state is unchanged then.
        """
        headers = certificate.headers
        index = _index_chain(headers)
        start = index.get(self.finalized.block_id)
        if start is None:
            raise InvalidProof("the headers do not contain our finalized block")
        stakes = self._anchor_stakes(certificate, index)
        justified = {self.finalized}
        newest = self.finalized
        for link in certificate.links:
            if link.source not in justified:
                raise InvalidProof(f"link from an unjustified source (epoch {link.source.epoch})")
            if link.target.epoch <= link.source.epoch:
                raise InvalidProof("a link must go forward in epochs")
            position = index.get(link.target.block_id)
            if position is None or position < start:
                raise InvalidProof("a link's target is not on the certified chain")
            if _checkpoint_at(self.params, headers, position, link.target.epoch) != position:
                raise InvalidProof("a link's target is not its epoch's checkpoint")
            if not _follows_checkpoint(self.params, headers, position, link.target.epoch):
                raise InvalidProof("the chain after a link's target has another checkpoint")
            anchor = _checkpoint_at(self.params, headers, position, self._lag(link.target.epoch))
            table = stakes.get(headers[anchor].block_id) if anchor is not None else None
            if table is None:
                raise InvalidProof(f"no stake table for epoch {link.target.epoch}")
            self._check_votes(link, table)
            justified.add(link.target)
            if link.target.epoch == link.source.epoch + 1 and link.source.epoch >= newest.epoch:
                newest = link.source
        if newest == self.finalized:
            raise InvalidProof("the certificate finalizes nothing newer")
        self._adopt(headers[start + 1 : index[newest.block_id] + 1], newest)
        return newest

    def verify_state(self, block_id: BlockId, query: StateQuery, proof: StateProof) -> ProvenValue:
        """What `proof` shows for `query` in the state after a finalized block we verified.

        Raises:
            InvalidProof: unknown block, or the proof does not verify.
        """
        header = self.headers.get(block_id)
        if header is None:
            raise InvalidProof("not a finalized block this client verified")
        return verify(header.state_root, query, proof)

    def verify_transaction(self, block_id: BlockId, tx: Transaction, proof: InclusionProof) -> None:
        """Check that `tx` is in a finalized block we verified.

        Raises:
            InvalidProof: unknown block or a branch that does not lead to its body root.
        """
        header = self.headers.get(block_id)
        if header is None:
            raise InvalidProof("not a finalized block this client verified")
        if not verify_inclusion(header.body_root, tx, proof):
            raise InvalidProof("the transaction is not in that block's body")

    def _lag(self, epoch: Epoch) -> Epoch:
        return Epoch(max(epoch - self.params.validator_set_lag_epochs, 0))

    def _anchor_stakes(
        self, certificate: FinalityCertificate, index: dict[BlockId, int]
    ) -> dict[BlockId, dict[PublicKey, int]]:
        tables: dict[BlockId, dict[PublicKey, int]] = {}
        for entry in certificate.anchors:
            position = index.get(entry.anchor)
            header = (
                certificate.headers[position]
                if position is not None
                else self.headers.get(entry.anchor)
            )
            if header is None:
                raise InvalidProof("a stake table for a block not in the certificate")
            tables[entry.anchor] = verify_validators(header.state_root, entry.proof)
        return tables

    def _check_votes(self, link: LinkVotes, table: dict[PublicKey, int]) -> None:
        total = sum(table.values())
        voted = 0
        seen: set[PublicKey] = set()
        for vote in link.votes:
            if vote.source != link.source or vote.target != link.target:
                raise InvalidProof("a vote for another link")
            stake = table.get(vote.validator, 0)
            if not stake or vote.validator in seen:
                raise InvalidProof("a vote by a non-validator or counted twice")
            if not vote.is_signature_valid(self.params.chain_id):
                raise InvalidProof("a vote with a bad signature")
            seen.add(vote.validator)
            voted += stake
        if not (total > 0 and 3 * voted >= 2 * total):
            raise InvalidProof(f"link to epoch {link.target.epoch} short of two thirds")

    def _adopt(self, headers: Iterable[BlockHeader], finalized: Checkpoint) -> None:
        for header in headers:
            self.headers[header.block_id] = header
        while len(self.headers) > MAX_HEADERS_KEPT:
            self.headers.popitem(last=False)
        self.finalized = finalized


def _index_chain(headers: tuple[BlockHeader, ...]) -> dict[BlockId, int]:
    """Positions by block id, once the headers are checked to be one chain."""
    index: dict[BlockId, int] = {}
    for position, header in enumerate(headers):
        if position:
            previous = headers[position - 1]
            if (
                header.parent != previous.block_id
                or header.height != previous.height + 1
                or header.slot <= previous.slot
            ):
                raise InvalidProof(f"header {position} does not extend the one before it")
        index[header.block_id] = position
    return index


def _checkpoint_at(
    params: ChainParams, headers: tuple[BlockHeader, ...], position: int, epoch: Epoch
) -> int | None:
    """The position of `epoch`'s checkpoint on the chain ending at `position` (the last block
    at or before the epoch's first slot), None when it lies before the first header."""
    start = compute_start_slot_at_epoch(params, epoch)
    while position >= 0 and headers[position].slot > start:
        position -= 1
    return position if position >= 0 else None


def _follows_checkpoint(
    params: ChainParams, headers: tuple[BlockHeader, ...], position: int, epoch: Epoch
) -> bool:
    """True unless the next header on the chain is also at or before `epoch`'s first slot."""
    following = position + 1
    start = compute_start_slot_at_epoch(params, epoch)
    return following >= len(headers) or headers[following].slot > start


# -- the server -----------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class VoteArchive:
    """Every counted vote, by link and validator (the first of each), for the links whose
    target is at most `ARCHIVE_EPOCHS` below the finalized epoch: what certificates quote."""

    links: dict[tuple[Checkpoint, Checkpoint], dict[PublicKey, Vote]] = field(default_factory=dict)

    def add(self, vote: Vote) -> None:
        """Record a vote the fork choice accepted (its checks are not repeated here)."""
        if vote.source == vote.target:
            return  # epoch-0 votes justify nothing
        self.links.setdefault((vote.source, vote.target), {}).setdefault(vote.validator, vote)

    def prune(self, finalized_epoch: Epoch) -> None:
        floor = finalized_epoch - ARCHIVE_EPOCHS
        for key in [key for key in self.links if key[1].epoch < floor]:
            del self.links[key]

    def __len__(self) -> int:
        return sum(map(len, self.links.values()))


def build_certificate(
    store: Store,
    archive: VoteArchive,
    trusted: Checkpoint,
    header_of: Callable[[BlockId], BlockHeader | None],
) -> FinalityCertificate | None:
    """A certificate taking a client from `trusted` to the newest checkpoint this node can
    certify (within `MAX_CERTIFICATE_HEADERS`), or None: `trusted` is not on our finalized
    chain, nothing newer is final, or the votes or stake paths it needs are gone."""
    finalized = store.finalized_checkpoint
    if trusted.block_id not in store.nodes or trusted.epoch >= finalized.epoch:
        return None
    if not is_ancestor(store, trusted.block_id, finalized.block_id):
        return None
    params = store.params
    first_anchor = get_checkpoint_node(
        store, trusted.block_id, Epoch(max(trusted.epoch - params.validator_set_lag_epochs, 0))
    )
    paths = _finality_paths(
        _supermajority_links(store, archive),
        trusted,
        lambda checkpoint: is_ancestor(store, checkpoint.block_id, finalized.block_id),
    )
    fitting = (
        path
        for path in paths
        if store.nodes[path[-1][1].block_id].height - first_anchor.height < MAX_CERTIFICATE_HEADERS
    )
    path = next(fitting, None)
    if path is None:
        return None
    tip = store.nodes[path[-1][1].block_id]
    chain: list[BlockHeader] = []
    node = tip
    while True:
        header = header_of(node.block_id)
        if header is None:
            return None
        chain.append(header)
        if node is first_anchor or node.parent is None:
            break
        node = node.parent
    chain.reverse()
    links: list[LinkVotes] = []
    anchors: dict[BlockId, AnchorStakes] = {}
    for source, target in path:
        votes = archive.links[(source, target)]
        links.append(
            LinkVotes(source=source, target=target, votes=tuple(votes[k] for k in sorted(votes)))
        )
        lag = Epoch(max(target.epoch - params.validator_set_lag_epochs, 0))
        anchor = get_checkpoint_node(store, target.block_id, lag)
        entry = _stakes_of(anchor)
        if entry is None:
            return None
        anchors[anchor.block_id] = entry
    return FinalityCertificate(
        headers=tuple(chain), links=tuple(links), anchors=tuple(anchors.values())
    )


def verify_anchor_points(
    params: ChainParams,
    checkpoint: Checkpoint,
    header: BlockHeader,
    before: tuple[BlockHeader, ...],
    stakes: Iterable[AnchorStakes],
) -> tuple[AnchorPoint, ...]:
    """The earlier checkpoints a store anchored at `checkpoint` (final, with the verified
    `header`) needs (`anchor_epochs`), with their stake tables: `before` are the consecutive
    headers that end at the header's parent and reach back to the oldest of them, `stakes`
    their tables, each proven against its block's state root.

    Raises:
        InvalidProof: the headers do not lead to `header`, do not reach back far enough, or a
            needed table is missing or does not verify.
    """
    if header.block_id != checkpoint.block_id:
        raise InvalidProof("the header is not the checkpoint's block")
    chain = (*before, header)
    _index_chain(chain)  # consecutive, ending at the verified header
    offered = {entry.anchor: entry.proof for entry in stakes}
    points: dict[BlockId, AnchorPoint] = {}
    for epoch in anchor_epochs(params, checkpoint.epoch):
        position = _checkpoint_at(params, chain, len(chain) - 1, epoch)
        if position is None:  # consecutive headers: the last at or before the start is it
            raise InvalidProof(f"the headers do not reach epoch {epoch}'s checkpoint")
        anchor = chain[position]
        if anchor.block_id == header.block_id or anchor.block_id in points:
            continue
        proof = offered.get(anchor.block_id)
        if proof is None:
            raise InvalidProof(f"no stake table for epoch {epoch}'s checkpoint")
        table = verify_validators(anchor.state_root, proof)
        points[anchor.block_id] = AnchorPoint(
            block_id=anchor.block_id,
            slot=Slot(anchor.slot),
            height=anchor.height,
            stakes=tuple(sorted(table.items())),
        )
    return tuple(sorted(points.values(), key=lambda point: point.height))


def anchor_evidence(
    store: Store,
    checkpoint: Checkpoint,
    header_of: Callable[[BlockId], BlockHeader | None],
) -> tuple[tuple[AnchorStakes, ...], tuple[BlockHeader, ...]] | None:
    """What `verify_anchor_points` needs for a store anchored at `checkpoint` (a block of the
    store): the stake tables of the earlier checkpoints the next epochs draw from, proven
    against their state roots, and the headers from the oldest of them to the checkpoint's
    parent. None when a stake path or a header is gone."""
    found: dict[BlockId, AnchorStakes] = {}
    oldest = store.nodes[checkpoint.block_id]
    for epoch in anchor_epochs(store.params, checkpoint.epoch):
        node = get_checkpoint_node(store, checkpoint.block_id, epoch)
        if node.block_id == checkpoint.block_id or node.block_id in found:
            continue
        entry = _stakes_of(node)
        if entry is None:
            return None
        found[node.block_id] = entry
        if node.height < oldest.height:
            oldest = node
    headers: list[BlockHeader] = []
    current = store.nodes[checkpoint.block_id].parent
    while current is not None and current.height >= oldest.height:
        header = header_of(current.block_id)
        if header is None or len(headers) >= MAX_CERTIFICATE_HEADERS:
            return None
        headers.append(header)
        current = current.parent
    headers.reverse()
    return tuple(found.values()), tuple(headers)


def _stakes_of(node: BlockNode) -> AnchorStakes | None:
    """`node`'s stake table proven against its state root; None without its stake path."""
    if node.stake_path is None:
        return None
    return AnchorStakes(
        anchor=node.block_id,
        proof=ValidatorsProof(
            stakes=tuple(sorted(node.validator_set.stakes.items())), top=node.stake_path
        ),
    )


def _supermajority_links(store: Store, archive: VoteArchive) -> dict[Checkpoint, list[Checkpoint]]:
    """Archived links on our chain that reach two thirds, by source."""
    graph: dict[Checkpoint, list[Checkpoint]] = {}
    for (source, target), votes in archive.links.items():
        node = store.nodes.get(target.block_id)
        if node is None or source.block_id not in store.nodes:
            continue
        validators = get_checkpoint_node(
            store,
            target.block_id,
            Epoch(max(target.epoch - store.params.validator_set_lag_epochs, 0)),
        ).validator_set
        voted = sum(validators.stake_of(key) for key in votes)
        if validators.total and 3 * voted >= 2 * validators.total:
            graph.setdefault(source, []).append(target)
    return graph


def _finality_paths(
    graph: dict[Checkpoint, list[Checkpoint]],
    trusted: Checkpoint,
    is_final: Callable[[Checkpoint], bool],
) -> list[list[tuple[Checkpoint, Checkpoint]]]:
    """For each checkpoint newer than `trusted` that `is_final` accepts and a link of the
    graph finalizes (``target.epoch == source.epoch + 1``), links from `trusted` through
    justified checkpoints to it, then that finalizing link: newest first."""
    into: dict[Checkpoint, tuple[Checkpoint, Checkpoint] | None] = {trusted: None}
    frontier = [trusted]
    finalizing: dict[Checkpoint, tuple[Checkpoint, Checkpoint]] = {}
    while frontier:
        source = frontier.pop()
        for target in sorted(graph.get(source, ())):
            if target.epoch <= source.epoch:
                continue
            if target.epoch == source.epoch + 1 and source != trusted and is_final(source):
                finalizing.setdefault(source, (source, target))
            if target not in into:
                into[target] = (source, target)
                frontier.append(target)
    paths = []
    for source in sorted(finalizing, key=lambda checkpoint: checkpoint.epoch, reverse=True):
        path = [finalizing[source]]
        step = into[source]
        while step is not None:
            path.append(step)
            step = into[step[0]]
        path.reverse()
        paths.append(path)
    return paths
