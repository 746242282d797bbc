"""Light clients following finality from certificates, against the fork choice's own answer."""

from dataclasses import replace

import pytest
from hypothesis import given, settings

from p2pchain.consensus import get_forkchoice_store, light, make_vote, on_block, on_tick, on_vote
from p2pchain.consensus import store as store_module
from p2pchain.consensus.forkchoice import get_block_view, get_head_view
from p2pchain.consensus.light import (
    FinalityCertificate,
    LightState,
    VoteArchive,
    build_certificate,
)
from p2pchain.consensus.store import Store, release_bodies
from p2pchain.errors import DecodeError, InvalidProof
from p2pchain.ledger.address import address_of
from p2pchain.ledger.block import Block, prove_inclusion
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.encoding import decode, encode
from p2pchain.ledger.evidence import VoteEquivocation
from p2pchain.ledger.proofs import QueryKind, StateQuery, prove
from p2pchain.ledger.tx import LockKind, SlashPayload, Transaction, TxKind
from p2pchain.ledger.types import Amount, Epoch, Height, Slot
from p2pchain.ledger.validation import BlockContext
from p2pchain.ledger.vote import Checkpoint, Vote
from p2pchain.ledger.wallet import Wallet
from p2pchain.params import COIN
from p2pchain.testing.consensus import Simulation, scenarios, sign_vote_data
from p2pchain.testing.light import archive_of, follow, genesis_client, headers_of

STAKES = [COIN, 2 * COIN, 3 * COIN, 4 * COIN]


_archive = archive_of
_headers = headers_of
_client = genesis_client


def _follow(client: LightState, store: Store, archive: VoteArchive) -> list[Checkpoint]:
    """Advance the client with certificates until the node has nothing newer to give; every
    certificate survives its encoding."""
    taken = follow(client, store, archive)
    for certificate, _ in taken:
        assert decode(FinalityCertificate, encode(certificate)) == certificate
    return [checkpoint for _, checkpoint in taken]


def test_a_light_client_follows_finality_to_the_nodes_checkpoint() -> None:
    sim = Simulation.create(STAKES)
    sim.run_epochs(8)
    store = sim.store
    client = _client(store)
    adopted = _follow(client, store, _archive(sim.messages))
    assert adopted
    assert client.finalized == store.finalized_checkpoint
    assert set(adopted) <= set(sim.finalized_history)
    # Everything it verified up to there is the node's finalized chain.
    for block_id, header in client.headers.items():
        node = store.nodes[block_id]
        assert node.block is not None
        assert node.block.header == header


def test_state_and_transactions_are_verified_at_a_finalized_block() -> None:
    sim = Simulation.create(STAKES)
    sim.run_epochs(6)
    store = sim.store
    client = _client(store)
    _follow(client, store, _archive(sim.messages))
    finalized = client.finalized.block_id
    view = get_block_view(store, finalized)
    for key in sim.keys:
        query = StateQuery(kind=QueryKind.ACCOUNT, address=address_of(key))
        outputs = client.verify_state(finalized, query, prove(view, query))
        assert outputs == view.utxos_of(address_of(key))
    table = client.verify_state(
        finalized,
        StateQuery(kind=QueryKind.VALIDATORS),
        prove(view, StateQuery(kind=QueryKind.VALIDATORS)),
    )
    assert table == view.bonded_stake()
    block = store.nodes[finalized].block
    assert block is not None
    client.verify_transaction(finalized, block.transactions[0], prove_inclusion(block, 0))
    other = store.nodes[store.head].block
    assert other is not None
    assert other.block_id != finalized
    with pytest.raises(InvalidProof):  # a block the client has not verified final
        client.verify_transaction(other.block_id, other.transactions[0], prove_inclusion(other, 0))
    with pytest.raises(InvalidProof):  # a branch for another transaction of another block
        client.verify_transaction(finalized, other.transactions[0], prove_inclusion(other, 0))


def _signed_forgeries(
    certificate: FinalityCertificate, sim: Simulation
) -> dict[str, FinalityCertificate]:
    """Forgeries whose votes carry valid signatures: a stranger's vote, a vote for the same
    source and another target, a duplicate, a link to a block that is not the checkpoint of
    its epoch, a link that stands still."""
    links = list(certificate.links)
    last = links[-1]
    vote = last.votes[0]
    stranger = SecretKey.from_entropy(b"not a validator".ljust(32, b"."))

    def signed(v: Vote, key: SecretKey, source: Checkpoint, target: Checkpoint) -> Vote:
        return sign_vote_data(
            sim.store, key, slot=v.slot, head=v.head, source=source, target=target
        )

    strangers_vote = signed(vote, stranger, vote.source, vote.target)
    elsewhere = Checkpoint(epoch=vote.target.epoch, block_id=vote.head)
    misdirected = signed(vote, sim.keys[vote.validator], vote.source, elsewhere)
    skipping_target = Checkpoint(epoch=Epoch(last.target.epoch + 1), block_id=last.target.block_id)
    skipping = tuple(
        signed(v, sim.keys[v.validator], last.source, skipping_target) for v in last.votes
    )
    standing = tuple(signed(v, sim.keys[v.validator], last.source, last.source) for v in last.votes)
    return {
        "a stranger's vote that would reach two thirds": replace(
            certificate,
            links=(*links[:-1], replace(last, votes=(*last.votes[1:], strangers_vote))),
        ),
        "a validator's vote for another target": replace(
            certificate, links=(*links[:-1], replace(last, votes=(*last.votes[1:], misdirected)))
        ),
        "the real votes plus one counted twice": replace(
            certificate, links=(*links[:-1], replace(last, votes=(*last.votes, vote)))
        ),
        "a link to a block that is not its epoch's checkpoint": replace(
            certificate,
            links=(
                *links[:-1],
                replace(last, target=skipping_target, votes=skipping),
            ),
        ),
        "a link that stands still (after the real ones)": replace(
            certificate,
            links=(*links, replace(last, target=last.source, votes=standing)),
        ),
    }


def _forgeries(certificate: FinalityCertificate) -> dict[str, FinalityCertificate]:
    links = list(certificate.links)
    last = links[-1]
    vote = last.votes[0]
    outsider = links[0].votes[0] if len(links) > 1 else replace(vote, source=vote.target)
    anchors = list(certificate.anchors)
    table = anchors[0].proof
    key, stake = table.stakes[0]
    inflated = replace(table, stakes=((key, stake * 100), *table.stakes[1:]))
    headers = list(certificate.headers)
    middle = len(headers) // 2
    return {
        "short of two thirds": replace(
            certificate, links=(*links[:-1], replace(last, votes=last.votes[:1]))
        ),
        "a vote counted twice": replace(
            certificate, links=(*links[:-1], replace(last, votes=(vote, *last.votes[:1], vote)))
        ),
        "a forged signature": replace(
            certificate,
            links=(
                *links[:-1],
                replace(last, votes=(replace(vote, signature=bytes(64)), *last.votes[1:])),
            ),
        ),
        "a vote for another link": replace(
            certificate, links=(*links[:-1], replace(last, votes=(outsider, *last.votes[1:])))
        ),
        "an inflated stake table": replace(
            certificate, anchors=(replace(anchors[0], proof=inflated), *anchors[1:])
        ),
        "no stake tables": replace(certificate, anchors=()),
        "a header left out": replace(
            certificate, headers=(*headers[:middle], *headers[middle + 1 :])
        ),
        "a header changed": replace(
            certificate,
            headers=(
                *headers[:middle],
                replace(headers[middle], body_root=headers[middle].state_root),
                *headers[middle + 1 :],
            ),
        ),
        "no links": replace(certificate, links=()),
        "the justifying links skipped": replace(certificate, links=links[-1:])
        if len(links) > 1
        else replace(certificate, links=()),
        "without our checkpoint": replace(certificate, headers=tuple(headers[-3:])),
    }


def _certified(
    stakes: list[int], epochs: int
) -> tuple[Simulation, LightState, FinalityCertificate]:
    """A simulation run for `epochs`, a client at genesis and the first certificate for it."""
    sim = Simulation.create(stakes)
    sim.run_epochs(epochs)
    client = _client(sim.store)
    archive = _archive(sim.messages)
    certificate = build_certificate(sim.store, archive, client.finalized, _headers(sim.store))
    assert certificate is not None
    return sim, client, certificate


def test_a_certificate_that_breaks_any_rule_is_refused_and_changes_nothing() -> None:
    sim, client, certificate = _certified(STAKES, 6)
    for name, forged in {**_forgeries(certificate), **_signed_forgeries(certificate, sim)}.items():
        with pytest.raises(InvalidProof):
            client.advance(forged)
        assert client.finalized.epoch == 0, name
        assert len(client.headers) == 1, name
    client.advance(certificate)
    with pytest.raises(InvalidProof):  # the same again finalizes nothing newer
        client.advance(certificate)


def test_a_node_without_the_votes_has_no_certificate_to_give() -> None:
    sim = Simulation.create(STAKES)
    sim.run_epochs(6)
    client = _client(sim.store)
    assert (
        build_certificate(sim.store, VoteArchive(), client.finalized, _headers(sim.store)) is None
    )
    votes = [m for m in sim.messages if isinstance(m, Vote)]
    thin = _archive(votes[: len(votes) // 8])  # the first few votes: nothing final yet
    assert build_certificate(sim.store, thin, client.finalized, _headers(sim.store)) is None


def test_the_client_follows_a_validator_set_that_changes_by_slashing() -> None:
    sim = Simulation.create(STAKES)
    sim.run_epochs(2)
    offender = sim.keys[sorted(sim.keys)[-1]]  # the largest stake: its loss changes 2/3
    first = make_vote(sim.store, offender, sim.slot)
    other_head = sim.store.nodes[first.head].parent
    assert other_head is not None
    second = make_vote(sim.store, offender, sim.slot, head=other_head.block_id)
    evidence = VoteEquivocation(first=first, second=second)
    sim.pending_transactions.append(
        Transaction(kind=TxKind.SLASH, payload=SlashPayload(evidence=evidence))
    )
    sim.hostile.add(offender.public_key)  # it stops voting once caught
    sim.run_epochs(10)
    store = sim.store
    assert offender.public_key not in store.view.bonded_stake()
    client = _client(store)
    _follow(client, store, _archive(sim.messages))
    assert client.finalized == store.finalized_checkpoint
    assert client.finalized.epoch >= 6


@settings(max_examples=10, deadline=None)
@given(scenarios(epochs=6))
def test_on_any_block_tree_a_client_never_finalizes_what_the_node_did_not(scenario) -> None:
    """Forks, stray votes and abstentions: every checkpoint a client adopts is one the fork
    choice finalized, and it ends at the node's own finalized checkpoint."""
    store = get_forkchoice_store(scenario.params, scenario.genesis)
    finalized_seen = {store.finalized_checkpoint}
    archive = VoteArchive()
    pending = sorted(
        [(block.header.slot, 0, block) for block in scenario.blocks]
        + [(vote.slot, 1, vote) for vote in scenario.votes],
        key=lambda item: (item[0], item[1]),
    )
    for slot, _, message in pending:
        on_tick(store, slot)
        try:
            if isinstance(message, Block):
                on_block(store, message, slot)
                for vote in message.votes:
                    archive.add(vote)
            else:
                on_vote(store, message, slot)
                archive.add(message)
        except Exception:
            continue
        finalized_seen.add(store.finalized_checkpoint)
    client = _client(store)
    for adopted in _follow(client, store, archive):
        assert adopted in finalized_seen
    assert (
        client.finalized == store.finalized_checkpoint
        or build_certificate(store, archive, client.finalized, _headers(store)) is None
    )


def test_a_certificate_past_its_header_limit_does_not_decode(monkeypatch) -> None:
    sim, _, certificate = _certified(STAKES, 4)
    monkeypatch.setattr(light, "MAX_CERTIFICATE_HEADERS", len(certificate.headers) - 1)
    with pytest.raises(DecodeError):
        decode(FinalityCertificate, encode(certificate))
    # And a node does not build one that long: it certifies less, or nothing.
    shorter = build_certificate(
        sim.store, _archive(sim.messages), _client(sim.store).finalized, _headers(sim.store)
    )
    assert shorter is None or len(shorter.headers) < len(certificate.headers)


def test_a_client_keeps_at_most_its_header_bound(monkeypatch) -> None:
    monkeypatch.setattr(light, "MAX_HEADERS_KEPT", 5)
    sim = Simulation.create(STAKES)
    sim.run_epochs(8)
    client = _client(sim.store)
    _follow(client, sim.store, _archive(sim.messages))
    assert client.finalized == sim.store.finalized_checkpoint
    assert len(client.headers) == 5
    assert client.finalized.block_id in client.headers  # the newest are kept


def test_the_archive_forgets_links_far_below_finality() -> None:
    sim = Simulation.create(STAKES)
    sim.run_epochs(6)
    archive = _archive(sim.messages)
    epochs = {target.epoch for _, target in archive.links}
    archive.prune(Epoch(max(epochs) + light.ARCHIVE_EPOCHS))
    assert {target.epoch for _, target in archive.links} == {max(epochs)}
    archive.prune(Epoch(max(epochs) + light.ARCHIVE_EPOCHS + 1))
    assert len(archive) == 0


def test_released_blocks_keep_stake_paths_only_for_checkpoints_and_only_the_newest(
    monkeypatch,
) -> None:
    monkeypatch.setattr(store_module, "STAKE_PATHS_KEPT", 3)
    sim = Simulation.create(STAKES)
    sim.run_epochs(10)
    store = sim.store
    finalized = store.nodes[store.finalized_checkpoint.block_id]
    released = release_bodies(store, finalized.height)
    assert released
    kept = [node for node in store.nodes.values() if node.block is None and node.stake_path]
    assert len(kept) == 3
    assert kept == list(store.stake_paths)
    spe = store.params.slots_per_epoch
    for node in kept:  # each is the last block at or before an epoch's first slot
        child = next(n for n in store.nodes.values() if n.parent is node)
        assert any(node.slot <= e * spe < child.slot for e in range(child.slot // spe + 1))
    newest = max(kept, key=lambda node: node.height)
    assert all(
        node.stake_path is None
        for node in store.nodes.values()
        if node.block is None and node.height > newest.height and node not in kept
    )


def test_the_client_follows_validators_leaving_and_joining() -> None:
    """One validator unbonds (and goes quiet), a new one is bonded by another's coins and
    starts voting once its stake counts: the client's stake tables follow both changes."""
    sim = Simulation.create([2 * COIN] * 5)
    sim.run_epochs(2)
    store = sim.store
    leaver, sponsor = sorted(sim.keys)[:2]
    newcomer = SecretKey.from_entropy(b"light newcomer".ljust(32, b"."))
    view = get_head_view(store)
    context = BlockContext(height=Height(view.height + 1), slot=Slot(sim.slot + 1))
    owner = Wallet(sim.keys[leaver], sim.params)
    staked = [c for c in view.utxos_of(owner.address) if c[1].lock.kind is LockKind.STAKE]
    unbond = owner.build_unbond(staked, fee=Amount(10_000), context=context)
    funder = Wallet(sim.keys[sponsor], sim.params)
    coins = [c for c in view.utxos_of(funder.address) if c[1].lock.kind is LockKind.NONE]
    bond = funder.build_bond(
        coins,
        validator=newcomer.public_key,
        amount=Amount(2 * COIN),
        fee=Amount(10_000),
        context=context,
    )
    sim.pending_transactions += [unbond, bond]
    sim.offline.add(leaver)
    sim.run_epochs(6)
    stakes = get_head_view(store).bonded_stake()
    assert leaver not in stakes
    assert newcomer.public_key in stakes
    sim.keys[newcomer.public_key] = newcomer  # in the set from here on: it votes
    sim.run_epochs(12)
    client = _client(store)
    _follow(client, store, _archive(sim.messages))
    assert client.finalized == store.finalized_checkpoint
    assert client.finalized.epoch >= 8
    query = StateQuery(kind=QueryKind.VALIDATORS)
    final_view = get_block_view(store, client.finalized.block_id)
    table = client.verify_state(client.finalized.block_id, query, prove(final_view, query))
    assert isinstance(table, dict)
    assert newcomer.public_key in table
    assert leaver not in table


def test_exactly_two_thirds_of_the_stake_is_enough_and_a_half_is_not() -> None:
    """`3 * voted >= 2 * total`: with three equal stakes, two votes finalize; with four, two
    do not."""
    for stakes, voters, enough in (([COIN] * 3, 2, True), ([COIN] * 4, 2, False)):
        _, client, certificate = _certified(stakes, 6)
        links = tuple(replace(link, votes=link.votes[:voters]) for link in certificate.links)
        cut = replace(certificate, links=links)
        if enough:
            adopted = client.advance(cut)
            assert adopted == client.finalized
            assert adopted.epoch > 0
        else:
            with pytest.raises(InvalidProof, match="short of two thirds"):
                client.advance(cut)


def test_a_client_keeps_every_finalized_header_it_crossed() -> None:
    sim = Simulation.create(STAKES)
    sim.run_epochs(8)
    store = sim.store
    client = _client(store)
    _follow(client, store, _archive(sim.messages))
    chain = []
    node = store.nodes[client.finalized.block_id]
    while node is not None:
        chain.append(node.block_id)
        node = node.parent
    assert list(client.headers) == chain[::-1]
