"""State snapshots: the trie's depth-2 subtrees against the definition, records, manifests, and
a state served in pages and assembled, with every one-step corruption of it refused."""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchain.consensus.governance import GovernanceState
from p2pchain.errors import BadSnapshotChunk, BadSnapshotManifest, DecodeError, InvalidProof
from p2pchain.ledger import snapshot
from p2pchain.ledger.commitment import GOVERNANCE_KEY, account_key, governance_value
from p2pchain.ledger.encoding import decode_item, encode_item, uint_bytes
from p2pchain.ledger.snapshot import (
    MAX_GOVERNANCE_STATE_BYTES,
    SUBTREES,
    AssetRecord,
    GovernanceRecord,
    OutputRecord,
    RecordKind,
    SnapshotManifest,
    SubtreeAssembler,
    ValidatorsRecord,
    assemble,
    check_manifest,
    decode_record,
    encode_record,
    manifest_of,
    page,
    snapshot_records,
)
from p2pchain.ledger.trie import EMPTY_ROOT, Trie, root_from_subtrees, subtree_hash
from p2pchain.ledger.tx import Lock, LockKind, OutPoint, TxOutput
from p2pchain.ledger.types import Address, AssetId, BlockId, Height, TxId
from p2pchain.ledger.utxo import AssetInfo, UtxoView
from p2pchain.ledger.validation import connect_block
from p2pchain.testing import FAST_PARAMS, funded_chain, valid_blocks
from p2pchain.testing.roots import naive_trie_root
from p2pchain.testing.strategies import (
    addresses,
    asset_ids,
    asset_infos,
    hashes,
    outpoints,
    tx_outputs,
    view_state,
)

BLOCK = BlockId(bytes(range(32)))
HEIGHT = Height(7)

# -- the trie cut at depth 2 -------------------------------------------------------------------

values = st.binary(min_size=32, max_size=32)
# First bytes from a small set, so that keys often share a first nibble or a first byte.
keys = st.builds(
    lambda first, rest: bytes([first]) + rest,
    st.sampled_from([0x00, 0x01, 0x0F, 0x10, 0x11, 0xAB, 0xFF]) | st.integers(0, 255),
    st.binary(min_size=31, max_size=31),
)
key_sets = st.dictionaries(keys, values, max_size=40)


def _by_first_byte(items: dict[bytes, bytes]) -> list[dict[bytes, bytes]]:
    groups: list[dict[bytes, bytes]] = [{} for _ in range(SUBTREES)]
    for key, value in items.items():
        groups[key[0]][key] = value
    return groups


@given(key_sets)
def test_subtrees_are_the_definitions_depth_2_hashes_and_give_the_root_back(items) -> None:
    trie = Trie(items.items())
    entries = trie.subtrees()
    assert len(entries) == SUBTREES
    for entry, group in zip(entries, _by_first_byte(items), strict=True):
        assert entry == (len(group), naive_trie_root(group, 2))
    assert root_from_subtrees(entries) == trie.root() == naive_trie_root(items)


@given(key_sets, st.data())
def test_subtrees_stay_right_as_keys_come_and_go(items, data) -> None:
    """Read from the incremental trie after deletes (collapsed branches) and new sets."""
    trie = Trie(items.items())
    trie.root()
    gone = data.draw(st.sets(st.sampled_from(sorted(items))) if items else st.just(set()))
    for key in gone:
        trie.delete(key)
        del items[key]
    for key, value in data.draw(key_sets).items():
        trie.set(key, value)
        items[key] = value
    entries = trie.subtrees()
    assert [count for count, _ in entries] == [len(g) for g in _by_first_byte(items)]
    assert root_from_subtrees(entries) == naive_trie_root(items)


@pytest.mark.parametrize(
    "first_bytes",
    [
        [],
        [0x12],
        [0x12, 0x12],  # two keys of one subtree: the root is a chain of branches
        [0x12, 0x13],  # one first nibble, two subtrees
        [0x12, 0x22],  # two first nibbles: a depth-1 node holding one key is its leaf
        [0x12, 0x13, 0x22],
        [0x00, 0xFF],
    ],
)
def test_the_edges_of_the_shape(first_bytes) -> None:
    items = {bytes([b]) + bytes([i]) * 31: bytes([i]) * 32 for i, b in enumerate(first_bytes)}
    trie = Trie(items.items())
    assert root_from_subtrees(trie.subtrees()) == trie.root() == naive_trie_root(items)


@given(st.integers(0, 4), st.binary(min_size=2, max_size=2), st.data())
def test_subtree_hash_is_the_definitions_hash_at_any_depth(depth, prefix, data) -> None:
    """Keys sharing their first `depth` nibbles (the prefix's)."""
    raw = data.draw(st.dictionaries(st.binary(min_size=32, max_size=32), values, max_size=12))
    shared = prefix.hex()[:depth]

    def pinned(key: bytes) -> bytes:
        return bytes.fromhex((shared + key.hex()[depth:])[:64])

    items = {pinned(key): value for key, value in raw.items()}
    assert subtree_hash(sorted(items.items()), depth) == naive_trie_root(items, depth)


def test_subtree_hash_refuses_items_out_of_order_or_not_sharing_the_prefix() -> None:
    a, b = (bytes([0x12]) + bytes(31), 32 * b"\x01"), (bytes([0x13]) + bytes(31), 32 * b"\x02")
    assert subtree_hash([a, b], 1) == naive_trie_root(dict([a, b]), 1)
    with pytest.raises(ValueError, match="order"):
        subtree_hash([b, a], 1)
    with pytest.raises(ValueError, match="order"):
        subtree_hash([a, a], 1)
    with pytest.raises(ValueError, match="share"):
        subtree_hash([a, b], 2)
    with pytest.raises(ValueError, match="256"):
        root_from_subtrees([(0, EMPTY_ROOT)] * 255)


# -- records -----------------------------------------------------------------------------------

records = st.one_of(
    st.builds(OutputRecord, outpoint=outpoints(), output=tx_outputs()),
    st.builds(AssetRecord, info=asset_infos()),
    st.builds(ValidatorsRecord, root=hashes()),
    st.builds(GovernanceRecord, state=st.binary(max_size=200)),
)


@given(records)
def test_records_round_trip_exactly(record) -> None:
    encoded = encode_record(record)
    assert decode_record(encoded) == record
    assert encode_item(decode_item(encoded)) == encoded
    assert record.sort_key()[:32] == record.top_key()
    assert len(record.sort_key()) == (64 if isinstance(record, OutputRecord) else 32)


@given(records, st.data())
def test_a_record_with_a_changed_kind_or_a_field_more_or_less_is_refused(record, data) -> None:
    fields = decode_item(encode_record(record))
    assert isinstance(fields, list)
    unknown = data.draw(st.integers(0, 300).filter(lambda k: k not in set(RecordKind)))
    for junk in (
        [uint_bytes(unknown), *fields[1:]],
        [*fields, b""],
        fields[:-1],
        [b"\x00", *fields[1:]],  # a kind with a leading zero
        b"\x05",
    ):
        with pytest.raises(DecodeError):
            decode_record(encode_item(junk))


@given(records, st.sampled_from(RecordKind))
def test_a_record_under_another_known_kind_is_refused_or_read_as_that_kind(record, kind) -> None:
    """Fields that fit two kinds (a validators root is also a governance state of 32 bytes)
    decode under the kind they are sent with, never as the record they were."""
    fields = decode_item(encode_record(record))
    assert isinstance(fields, list)
    try:
        decoded = decode_record(encode_item([uint_bytes(kind), *fields[1:]]))
    except DecodeError:
        assert kind != record.KIND
    else:
        assert decoded.KIND is kind
        assert (decoded == record) == (kind == record.KIND)


def test_a_governance_record_is_bounded() -> None:
    longest = GovernanceRecord(state=bytes(MAX_GOVERNANCE_STATE_BYTES))
    assert decode_record(encode_record(longest)) == longest
    with pytest.raises(DecodeError, match="exceeds"):
        decode_record(encode_record(GovernanceRecord(state=bytes(MAX_GOVERNANCE_STATE_BYTES + 1))))


# -- states ------------------------------------------------------------------------------------

STAKE_KEYS = [bytes([i]) * 32 for i in range(1, 4)]
stake_locks = st.builds(Lock, kind=st.just(LockKind.STAKE), key=st.sampled_from(STAKE_KEYS))


@st.composite
def states(draw: st.DrawFn) -> UtxoView:
    """States with outputs over few or many addresses (so accounts of one or many outputs),
    assets, and stake bonded to a few keys."""
    owners = draw(st.lists(addresses(), min_size=1, max_size=draw(st.sampled_from([1, 3, 30]))))
    output = st.builds(
        TxOutput,
        asset=asset_ids(),
        amount=st.integers(1, 10**12),
        address=st.sampled_from(owners),
        lock=st.one_of(st.just(Lock()), stake_locks),
    )
    utxos = draw(
        st.lists(st.tuples(outpoints(), output), max_size=40, unique_by=lambda entry: entry[0])
    )
    assets = draw(st.lists(asset_infos(), max_size=4, unique_by=lambda info: info.asset))
    return UtxoView.from_snapshot(utxos, assets, BLOCK, HEIGHT)


def _pages(
    subtree: list[tuple[bytes, bytes]], max_bytes: int
) -> list[tuple[tuple[bytes, ...], bool]]:
    """Every page of a subtree, as a client asking `after` the last key it got sees them."""
    pages = []
    after = b""
    while True:
        records_, done = page(subtree, after, max_bytes)
        pages.append((records_, done))
        if done:
            return pages
        assert records_  # a page that is not the last is never empty
        after = decode_record(records_[-1]).sort_key()


def _add_pages(assembler: SubtreeAssembler, pages: list[tuple[tuple[bytes, ...], bool]]) -> None:
    for records_, done in pages:
        assembler.add_page(records_, done)


def _fetch(
    subtrees: list[list[bytes]], manifest: SnapshotManifest, cuts: st.DataObject | None = None
) -> list[SubtreeAssembler]:
    """Feed each subtree's encoded records to its assembler, in pages cut at random."""
    assemblers = []
    for index, encoded in enumerate(subtrees):
        assembler = SubtreeAssembler(index, manifest.entries[index])
        position = 0
        while True:
            size = 1 if cuts is None else cuts.draw(st.integers(1, 4), label="page")
            chunk = encoded[position : position + size]
            position += size
            assembler.add_page(chunk, done=position >= len(encoded))
            if position >= len(encoded):
                break
        assert assembler.done
        assemblers.append(assembler)
    return assemblers


def _served(view: UtxoView) -> tuple[SnapshotManifest, list[list[bytes]]]:
    manifest = manifest_of(view, BLOCK)
    return manifest, [[encoded for _, encoded in sub] for sub in snapshot_records(view)]


@settings(max_examples=60)
@given(states(), st.integers(1, 600))
def test_a_state_served_in_pages_assembles_into_the_same_state(view, max_bytes) -> None:
    manifest = manifest_of(view, BLOCK)
    assert (manifest.block_id, manifest.state_root) == (BLOCK, view.state_root())
    check_manifest(manifest, view.state_root())
    served = snapshot_records(view)
    assemblers = []
    for index, subtree in enumerate(served):
        assembler = SubtreeAssembler(index, manifest.entries[index])
        for records_, done in _pages(subtree, max_bytes):
            assert sum(map(len, records_)) <= max_bytes or len(records_) == 1
            after = assembler.add_page(records_, done)
            assert after == (decode_record(records_[-1]).sort_key() if records_ else after)
        assert assembler.done
        assemblers.append(assembler)
    rebuilt, governance = assemble(assemblers, BLOCK, HEIGHT, view.state_root())
    assert governance is None
    assert view_state(rebuilt) == view_state(view)


@settings(max_examples=10, deadline=None)
@given(st.data())
def test_a_state_grown_by_valid_blocks_assembles_back(data) -> None:
    chain = funded_chain(3, params=FAST_PARAMS)
    for _ in range(data.draw(st.integers(1, 3))):
        block = data.draw(valid_blocks(chain.view, chain.wallets, proposer=chain.validator))
        connect_block(chain.view, block, chain.params)
    view = chain.view
    governance = encode_item(GovernanceState.at_genesis(chain.params).to_rlp())
    assert view.governance_value == governance_value(governance)  # blocks left it as it was
    manifest = manifest_of(view, BLOCK)
    served = [[encoded for _, encoded in sub] for sub in snapshot_records(view, governance)]
    rebuilt, state = assemble(
        _fetch(served, manifest, data), view.tip, view.height, view.state_root()
    )
    assert view_state(rebuilt) == view_state(view)
    assert state == governance
    assert rebuilt.governance_value == view.governance_value


def test_the_empty_state_assembles() -> None:
    view = UtxoView.from_snapshot([], [], BLOCK, HEIGHT)
    manifest, served = _served(view)
    assert manifest.entries == ((0, EMPTY_ROOT),) * SUBTREES
    rebuilt, _ = assemble(_fetch(served, manifest), BLOCK, HEIGHT, EMPTY_ROOT)
    assert view_state(rebuilt) == view_state(view)


def test_page_bisects_and_takes_at_least_one_record() -> None:
    subtree = [(bytes([7]) + bytes([i]) * 31, bytes([i]) * (10 + i)) for i in range(5)]
    assert page(subtree, b"", 1) == ((subtree[0][1],), False)
    assert page(subtree, subtree[1][0], 12 + 13) == ((subtree[2][1], subtree[3][1]), False)
    assert page(subtree, subtree[1][0][:-1] + b"\xff", 10**6)[0][0] == subtree[2][1]
    assert page(subtree, subtree[3][0], 10**6) == ((subtree[4][1],), True)
    assert page(subtree, subtree[4][0], 10**6) == ((), True)
    assert page([], b"", 10) == ((), True)


# -- corruptions -------------------------------------------------------------------------------

REFUSED = (BadSnapshotChunk, BadSnapshotManifest, DecodeError)


def _refused(subtrees: list[list[bytes]], manifest: SnapshotManifest, view: UtxoView, data) -> None:
    """The corrupted snapshot never assembles: some page, some last page, or the assembly of
    the whole refuses it."""
    with pytest.raises(REFUSED):
        assemble(_fetch(subtrees, manifest, data), BLOCK, HEIGHT, view.state_root())


def _pick(subtrees: list[list[bytes]], data, at_least: int = 1) -> int:
    candidates = [i for i, sub in enumerate(subtrees) if len(sub) >= at_least]
    return data.draw(st.sampled_from(candidates), label="subtree")


def _nonempty_states(at_least: int = 1) -> st.SearchStrategy[UtxoView]:
    return states().filter(lambda view: len(view) >= at_least)


@given(_nonempty_states(), st.data())
def test_a_dropped_record_is_refused(view, data) -> None:
    manifest, subtrees = _served(view)
    index = _pick(subtrees, data)
    del subtrees[index][data.draw(st.integers(0, len(subtrees[index]) - 1))]
    _refused(subtrees, manifest, view, data)


@given(_nonempty_states(), st.data())
def test_a_duplicated_record_is_refused(view, data) -> None:
    manifest, subtrees = _served(view)
    index = _pick(subtrees, data)
    position = data.draw(st.integers(0, len(subtrees[index]) - 1))
    subtrees[index].insert(position, subtrees[index][position])
    _refused(subtrees, manifest, view, data)


@given(states().filter(lambda view: any(len(s) >= 2 for s in snapshot_records(view))), st.data())
def test_two_records_swapped_are_refused(view, data) -> None:
    manifest, subtrees = _served(view)
    index = _pick(subtrees, data, at_least=2)
    sub = subtrees[index]
    i = data.draw(st.integers(0, len(sub) - 2))
    j = data.draw(st.integers(i + 1, len(sub) - 1))
    sub[i], sub[j] = sub[j], sub[i]
    _refused(subtrees, manifest, view, data)


@given(_nonempty_states(), st.integers(1, 10**6), st.data())
def test_a_changed_amount_is_refused(view, change, data) -> None:
    manifest, subtrees = _served(view)
    outputs = [
        (index, position)
        for index, sub in enumerate(subtrees)
        for position, encoded in enumerate(sub)
        if isinstance(decode_record(encoded), OutputRecord)
    ]
    index, position = data.draw(st.sampled_from(outputs))
    sub = subtrees[index]
    record = decode_record(sub[position])
    assert isinstance(record, OutputRecord)
    output = replace(record.output, amount=record.output.amount + change)
    sub[position] = encode_record(replace(record, output=output))
    _refused(subtrees, manifest, view, data)


@given(_nonempty_states(), st.data())
def test_a_record_moved_to_another_subtree_is_refused(view, data) -> None:
    manifest, subtrees = _served(view)
    index = _pick(subtrees, data)
    moved = subtrees[index].pop(data.draw(st.integers(0, len(subtrees[index]) - 1)))
    target = data.draw(st.integers(0, SUBTREES - 1).filter(lambda i: i != index))
    subtrees[target].insert(data.draw(st.integers(0, len(subtrees[target]))), moved)
    _refused(subtrees, manifest, view, data)


@given(states().filter(lambda view: bool(view.bonded_stake())), hashes(), st.data())
def test_a_wrong_validators_root_is_refused(view, wrong, data) -> None:
    manifest, subtrees = _served(view)
    for sub in subtrees:
        for position, encoded in enumerate(sub):
            record = decode_record(encoded)
            if isinstance(record, ValidatorsRecord) and record.root != wrong:
                sub[position] = encode_record(ValidatorsRecord(root=wrong))
    _refused(subtrees, manifest, view, data)


def test_a_record_of_another_kind_under_an_accounts_key_is_refused(monkeypatch) -> None:
    """Only outputs share a top-level key (an account's). An asset record whose key is an
    account's would take a hash collision; forged here by patching its key."""
    view = UtxoView.from_snapshot([_output(0)], [], BLOCK, HEIGHT)
    manifest, subtrees = _served(view)
    (output_record,) = [encoded for sub in subtrees for encoded in sub]
    key = decode_record(output_record).top_key()
    monkeypatch.setattr(AssetRecord, "top_key", lambda self: key)
    monkeypatch.setattr(AssetRecord, "sort_key", lambda self: key)
    forged = encode_record(
        AssetRecord(
            info=AssetInfo(
                asset=AssetId(bytes(32)), name=b"", issuer=Address(bytes(20)), cap=0, issued=0
            )
        )
    )
    assembler = SubtreeAssembler(key[0], manifest.entries[key[0]])
    with pytest.raises(BadSnapshotChunk, match="two kinds"):
        assembler.add_page([forged, output_record], done=True)
    with pytest.raises(BadSnapshotChunk, match="order"):
        assembler.add_page([output_record, forged], done=True)
    assert assembler.after == b""  # refused pages change nothing
    assert not assembler.records


@given(_nonempty_states(), st.data())
def test_a_wrong_manifest_entry_is_refused_by_the_manifest_check_or_the_subtree(view, data) -> None:
    manifest, subtrees = _served(view)
    index = _pick(subtrees, data)
    count, digest = manifest.entries[index]
    wrong = data.draw(
        st.one_of(
            st.builds(lambda c: (c, digest), st.integers(0, 50).filter(lambda c: c != count)),
            st.builds(lambda h: (count, h), hashes().filter(lambda h: h != digest)),
        )
    )
    entries = list(manifest.entries)
    entries[index] = wrong
    forged = replace(manifest, entries=tuple(entries))
    root = view.state_root()
    if wrong[1] != digest or (wrong[0] == 0) != (count == 0):
        with pytest.raises(BadSnapshotManifest):
            check_manifest(forged, root)  # the hashes and empty subtrees are the root's
    assembler = SubtreeAssembler(index, wrong)
    pages = _pages(snapshot_records(view)[index], 200)
    if wrong[1] == digest:
        # Counts are not committed beyond none/one/more: the hash authenticates the records,
        # so the true ones are taken whatever count the manifest gave.
        _add_pages(assembler, pages)
        assert assembler.done
        assert [encode_record(r) for r in assembler.records] == [
            e for _, e in snapshot_records(view)[index]
        ]
        return
    with pytest.raises(REFUSED):
        _add_pages(assembler, pages)
    assert not assembler.done


@given(states(), st.data())
def test_check_manifest_refuses_every_changed_hash_and_every_emptied_or_filled_subtree(
    view, data
) -> None:
    manifest = manifest_of(view, BLOCK)
    root = view.state_root()
    check_manifest(manifest, root)
    index = data.draw(st.integers(0, SUBTREES - 1))
    count, digest = manifest.entries[index]
    other = hashes().filter(lambda h: h not in (digest, EMPTY_ROOT))
    changes = [(count, data.draw(other)), (count + 1, EMPTY_ROOT)]
    changes.append((0, digest) if count else (data.draw(st.integers(1, 9)), data.draw(other)))
    for wrong in changes:
        entries = list(manifest.entries)
        entries[index] = wrong
        with pytest.raises(BadSnapshotManifest):
            check_manifest(replace(manifest, entries=tuple(entries)), root)
    with pytest.raises(BadSnapshotManifest):
        check_manifest(replace(manifest, entries=manifest.entries[:-1]), root)
    with pytest.raises(BadSnapshotManifest):
        check_manifest(manifest, bytes(31) + b"\x01")
    assert issubclass(BadSnapshotManifest, InvalidProof)


def _output(n: int) -> tuple[OutPoint, TxOutput]:
    address = Address(n.to_bytes(20, "big"))
    output = TxOutput(asset=AssetId(bytes(32)), amount=1, address=address, lock=Lock())
    return OutPoint(txid=TxId(bytes(32)), index=n), output


def test_a_count_the_root_does_not_commit_to_blames_nobody() -> None:
    """Two accounts alone in one subtree: counting them as three leaves the root as it is (one
    would not: a lone key's leaf sits higher), so a manifest may say so; the honest records
    still verify against the hash, and their server is not blamed for a count nobody checks."""
    seen: dict[int, int] = {}
    for n in range(1, 1000):
        first = account_key(_output(n)[1].address)[0]
        if first in seen:
            break
        seen[first] = n
    view = UtxoView.from_snapshot([_output(seen[first]), _output(n)], [], BLOCK, HEIGHT)
    manifest, subtrees = _served(view)
    assert manifest.entries[first][0] == 2
    for wrong_count in (3, 7):
        entries = list(manifest.entries)
        entries[first] = (wrong_count, entries[first][1])
        forged = replace(manifest, entries=tuple(entries))
        check_manifest(forged, view.state_root())  # the root cannot tell 2 keys from more
        assembler = SubtreeAssembler(first, forged.entries[first])
        assembler.add_page(subtrees[first], done=True)
        assert assembler.done
        assert len({r.top_key() for r in assembler.records}) == 2


# -- governance ----------------------------------------------------------------------------------


def test_a_governance_record_is_checked_against_the_governance_leaf() -> None:
    """The state holds the governance leaf beside the accounts (built here by hand: the view
    does not commit to governance yet); its subtree assembles only with the right state."""
    view = UtxoView.from_snapshot([], [], BLOCK, HEIGHT)
    state = b"\xc3\x01\x02\x03"
    top = Trie([(GOVERNANCE_KEY, governance_value(state))])
    entries = top.subtrees()
    index = GOVERNANCE_KEY[0]
    assembler = SubtreeAssembler(index, entries[index])
    assembler.add_page([encode_record(GovernanceRecord(state=state))], done=True)
    assert assembler.done
    assert assembler.records == (GovernanceRecord(state=state),)
    other = SubtreeAssembler(index, entries[index])
    with pytest.raises(BadSnapshotChunk):
        other.add_page([encode_record(GovernanceRecord(state=state + b"\x00"))], done=True)
    with pytest.raises(ValueError, match="no governance"):
        snapshot_records(view, state)


def test_a_state_with_governance_assembles_with_its_governance_state() -> None:
    state = b"\xc3\x01\x02\x03"
    view = UtxoView.from_snapshot([], [], BLOCK, HEIGHT, governance=governance_value(state))
    manifest = manifest_of(view, BLOCK)
    served = [[encoded for _, encoded in sub] for sub in snapshot_records(view, state)]
    rebuilt, governance = assemble(_fetch(served, manifest), BLOCK, HEIGHT, view.state_root())
    assert governance == state
    assert rebuilt.state_root() == view.state_root()
    assert rebuilt.governance_value == governance_value(state)


@given(_nonempty_states(), st.data())
def test_a_refused_page_changes_nothing_so_the_right_one_can_follow(view, data) -> None:
    manifest, subtrees = _served(view)
    index = _pick(subtrees, data)
    sub = subtrees[index]
    assembler = SubtreeAssembler(index, manifest.entries[index])
    cut = data.draw(st.integers(0, len(sub) - 1))
    if cut:
        assembler.add_page(sub[:cut], done=False)
    before = (assembler.after, assembler.records)
    bad = data.draw(
        st.sampled_from(
            [
                [*sub[cut:], sub[cut]],  # a repeat
                [sub[cut], b"\xc0"],  # junk after a good record
                [],  # empty but not the last
                [*sub[:cut], *sub[cut:]] if cut else [sub[cut], sub[cut]],  # back to the start
            ]
        )
    )
    with pytest.raises(REFUSED):
        assembler.add_page(bad, done=False)
    assert (assembler.after, assembler.records) == before
    assembler.add_page(sub[cut:], done=True)
    assert assembler.done
    with pytest.raises(ValueError, match="already complete"):
        assembler.add_page([], done=True)


@given(_nonempty_states(), st.data())
def test_a_subtree_that_fails_its_hash_starts_over_and_then_takes_the_honest_pages(
    view, data
) -> None:
    """A last page that leaves the subtree short of its hash resets the assembler to empty:
    the honest pages that follow (from another peer) are taken from the start, with the
    byte bound counted afresh (set here to exactly the honest subtree's bytes)."""
    manifest, subtrees = _served(view)
    index = _pick(subtrees, data)
    sub = subtrees[index]
    assembler = SubtreeAssembler(index, manifest.entries[index])
    with pytest.raises(BadSnapshotChunk, match="do not hash"):
        assembler.add_page(sub[:-1], done=True)  # the last record withheld
    assert (assembler.after, assembler.records, assembler.done) == (b"", (), False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(snapshot, "MAX_SUBTREE_BYTES", sum(map(len, sub)))
        assembler.add_page(sub, done=True)
    assert assembler.done
    assert assembler.records == tuple(decode_record(record) for record in sub)


def test_records_are_served_only_with_the_governance_state_the_root_commits_to() -> None:
    state = b"\xc3\x01\x02\x03"
    view = UtxoView.from_snapshot(
        [_output(1)], [], BLOCK, HEIGHT, governance=governance_value(state)
    )
    assert any(snapshot_records(view, state))
    for wrong in (None, state + b"\x00", b""):
        with pytest.raises(ValueError, match="not the one the state commits to"):
            snapshot_records(view, wrong)
    for size, served in (
        (MAX_GOVERNANCE_STATE_BYTES, True),
        (MAX_GOVERNANCE_STATE_BYTES + 1, False),
    ):
        longest = bytes(size)
        view = UtxoView.from_snapshot([], [], BLOCK, HEIGHT, governance=governance_value(longest))
        if served:
            assert any(snapshot_records(view, longest))
        else:
            with pytest.raises(ValueError, match="a governance state of"):
                snapshot_records(view, longest)


def test_assemble_takes_the_256_subtrees_in_order_and_done() -> None:
    view = UtxoView.from_snapshot([_output(1)], [], BLOCK, HEIGHT)
    manifest, served = _served(view)
    assemblers = _fetch(served, manifest)
    with pytest.raises(ValueError, match="in order"):
        assemble(assemblers[::-1], BLOCK, HEIGHT, view.state_root())
    with pytest.raises(ValueError, match="in order"):
        assemble(assemblers[:-1], BLOCK, HEIGHT, view.state_root())
    fresh = [SubtreeAssembler(i, manifest.entries[i]) for i in range(SUBTREES)]
    with pytest.raises(ValueError, match="not complete"):
        assemble(fresh, BLOCK, HEIGHT, view.state_root())
    with pytest.raises(BadSnapshotChunk, match="state root"):
        assemble(assemblers, BLOCK, HEIGHT, bytes(31) + b"\x01")
    with pytest.raises(ValueError, match="subtree 256"):
        SubtreeAssembler(256, (0, EMPTY_ROOT))


def test_a_subtree_past_its_byte_bound_is_refused_before_its_last_page(monkeypatch) -> None:
    """A lying server can stream made-up records that only the last page would show false;
    `MAX_SUBTREE_BYTES` caps what it makes us take (lowered here to three records' worth)."""
    outputs = [_output(n) for n in range(1, 400)]
    view = UtxoView.from_snapshot(outputs, [], BLOCK, HEIGHT)
    manifest, subtrees = _served(view)
    index = max(range(SUBTREES), key=lambda i: len(subtrees[i]))
    records = subtrees[index]
    assert len(records) >= 4
    monkeypatch.setattr(snapshot, "MAX_SUBTREE_BYTES", sum(len(r) for r in records[:3]))
    assembler = SubtreeAssembler(index, manifest.entries[index])
    assembler.add_page(records[:3], False)  # exactly at the bound: taken
    with pytest.raises(BadSnapshotChunk, match="over"):
        assembler.add_page(records[3:4], False)
    assert len(assembler.records) == 3  # the refused page took nothing
