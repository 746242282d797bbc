"""docs/protocol.md against the code, where the comparison is mechanical.

- every tagged-hash tag the package uses has a row in the tag table (and the table lists no
  tag the code does not use);
- every `ChainParams` field has a row in the "Chain parameters" table, with its default;
- every message type has a row in the "Messages" table, with its class's payload limit (and
  `Publish` states the gossip data bound);
- every key `load_network` reads from network.toml has a row in "Files a network is made of",
  the example network.toml there loads and has the genesis id stated, and the key file format
  described there is what `write_key` writes.

Each check is a function of the document's text, so the tests at the end can show that a row
removed from the document is noticed.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import stat
from pathlib import Path

import pytest

from p2pchain.cli.config import load_network, read_key, write_key
from p2pchain.cli.network import demo_wallet_key
from p2pchain.errors import ConfigError
from p2pchain.ledger.address import address_of, encode_address
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.genesis import genesis_block
from p2pchain.params import ChainParams
from p2pchain.protocol.messages import MAX_GOSSIP_DATA_BYTES, MESSAGE_TYPES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "p2pchain"
DOC = ROOT / "docs" / "protocol.md"
FILES_SECTION = "## Files a network is made of"


# -- reading the document --------------------------------------------------------------------


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The text under `heading` (a whole line such as ``### Chain parameters``) up to the next
    heading of the same or a higher level."""
    lines = text.splitlines()
    level = len(heading) - len(heading.lstrip("#"))
    starts = [i for i, line in enumerate(lines) if line.strip() == heading]
    assert len(starts) == 1, f"{heading!r} appears {len(starts)} times in {DOC.name}"
    body = []
    for line in lines[starts[0] + 1 :]:
        match = re.match(r"(#+) ", line)
        if match and len(match.group(1)) <= level:
            break
        body.append(line)
    return "\n".join(body)


def table_rows(text: str) -> list[list[str]]:
    """The body rows of every Markdown table in `text`, cells stripped (``\\|`` stays in a
    cell; header and separator rows are left out)."""
    tables: list[list[str]] = []
    in_table = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|"):
            if not in_table:
                tables.append([])
            tables[-1].append(stripped)
        in_table = stripped.startswith("|")
    return [
        [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        for table in tables
        for line in table[2:]  # after the header and the separator
    ]


def code_spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def documented_tags(text: str) -> set[str]:
    tags = section(text, "### Hashes, keys and signatures")
    return {
        span
        for row in table_rows(tags)
        for span in code_spans(row[0])
        if span.startswith("p2pchain/")
    }


def documented_params(text: str) -> dict[str, str]:
    """Chain parameter name -> its default cell."""
    params = section(text, "### Chain parameters")
    return {name: row[1] for row in table_rows(params) for name in code_spans(row[0])}


def documented_messages(text: str) -> dict[str, list[str]]:
    """Message class name -> its row of the "Messages" table (type, name, fields, limit)."""
    messages = section(text, "### Messages")
    return {code_spans(row[1])[0]: row for row in table_rows(messages)}


def network_toml_rows(text: str) -> dict[str, list[str]]:
    """Key path (as written, e.g. ``[genesis].allocations[].amount``) -> its row."""
    files = section(section(text, FILES_SECTION), "### network.toml")
    return {span: row for row in table_rows(files) for span in code_spans(row[0])[:1]}


def documented_network_keys(text: str) -> set[str]:
    """The last name of every key path of the network.toml table (a key has its own row)."""
    return {re.findall(r"[A-Za-z_]+", path)[-1] for path in network_toml_rows(text)}


# -- reading the code ------------------------------------------------------------------------


def _module_tag_constants(tree: ast.Module) -> dict[str, bytes]:
    constants: dict[str, bytes] = {}
    for node in tree.body:
        target = value = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if (
            isinstance(target, ast.Name)
            and isinstance(value, ast.Constant)
            and isinstance(value.value, bytes)
        ):
            constants[target.id] = value.value
    return constants


def code_tags() -> set[str]:
    """Every tag the package hashes with: each first argument of `tagged_hash`, and every
    module constant named like a tag (the state root streams its tag into hashlib)."""
    tags: set[str] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = _module_tag_constants(tree)
        for name, value in constants.items():
            if "TAG" in name and value.startswith(b"p2pchain/"):
                tags.add(value.decode())
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "tagged_hash"
            ):
                continue
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, bytes):
                tags.add(first.value.decode())
            elif isinstance(first, ast.Name) and first.id in constants:
                tags.add(constants[first.id].decode())
            else:
                pytest.fail(
                    f"{path.relative_to(ROOT)}:{node.lineno}: tagged_hash with a tag this "
                    "test cannot read; give it a module constant"
                )
    return tags


def load_network_keys() -> set[str]:
    """Every key `load_network` reads: the names handed to its field readers, `.get` and
    subscripts, plus the chain parameters it accepts in [chain]."""
    tree = ast.parse((PACKAGE / "cli" / "config.py").read_text(encoding="utf-8"))
    function = next(
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == "load_network"
    )
    keys: set[str] = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            func = node.func
            args = node.args
            if isinstance(func, ast.Name) and func.id.startswith("_") and len(args) >= 2:
                candidate = args[1]
            elif isinstance(func, ast.Attribute) and func.attr == "get" and args:
                candidate = args[0]
            else:
                continue
        elif isinstance(node, ast.Subscript):
            candidate = node.slice
        else:
            continue
        if isinstance(candidate, ast.Constant) and isinstance(candidate.value, str):
            keys.add(candidate.value)
    params = {f.name for f in dataclasses.fields(ChainParams)} - {"native_asset"}
    return keys | params


# -- the checks ------------------------------------------------------------------------------


def missing_tags(text: str) -> set[str]:
    return code_tags() - documented_tags(text)


def missing_params(text: str) -> set[str]:
    return {f.name for f in dataclasses.fields(ChainParams)} - set(documented_params(text))


def missing_network_keys(text: str) -> set[str]:
    return load_network_keys() - documented_network_keys(text)


def wrong_message_rows(text: str) -> set[str]:
    """Message types without a row, or whose row's type id or payload limit is not the code's."""
    rows = documented_messages(text)
    wrong = set()
    for message_type, cls in MESSAGE_TYPES.items():
        row = rows.get(cls.__name__)
        if row is None or _number(row[0]) != message_type or _size(row[3]) != cls.MAX_PAYLOAD_BYTES:
            wrong.add(cls.__name__)
    return wrong


def _number(cell: str) -> int:
    return int(re.sub(r"[ ,`]", "", cell))


def _size(cell: str) -> int:
    """A byte count as the document writes it: ``2,136`` or ``16 MiB``."""
    if cell.endswith(" MiB"):
        return _number(cell.removesuffix(" MiB")) * 1024 * 1024
    return _number(cell)


# -- tests -----------------------------------------------------------------------------------


def test_the_code_uses_the_tags_this_test_knows_to_look_for():
    tags = code_tags()
    assert {"p2pchain/tx", "p2pchain/state/account", "p2pchain/noise-identity"} <= tags
    assert "p2pchain/noise/1" not in tags  # the Noise prologue, not a hash tag


def test_every_tagged_hash_tag_is_in_the_tag_table():
    assert missing_tags(doc_text()) == set()


def test_the_tag_table_lists_no_tag_the_code_does_not_use():
    assert documented_tags(doc_text()) - code_tags() == set()


def test_every_chain_parameter_is_in_the_parameter_table_with_its_default():
    text = doc_text()
    assert missing_params(text) == set()
    documented = documented_params(text)
    assert set(documented) == {f.name for f in dataclasses.fields(ChainParams)}
    defaults = ChainParams()
    for name, cell in documented.items():
        value = getattr(defaults, name)
        if isinstance(value, int):
            assert _number(cell) == value, name
        elif isinstance(value, str):
            assert code_spans(cell) == [value], name
        else:
            assert value == bytes(32)
            assert cell == "32 zero bytes", name


def test_every_message_type_is_in_the_message_table_with_its_payload_limit():
    text = doc_text()
    assert wrong_message_rows(text) == set()
    assert set(documented_messages(text)) == {cls.__name__ for cls in MESSAGE_TYPES.values()}
    publish = documented_messages(text)["Publish"][2]
    assert f"data (≤ {MAX_GOSSIP_DATA_BYTES:,} bytes)" in publish


def test_every_key_load_network_reads_is_in_the_files_section():
    keys = load_network_keys()
    assert {"chain", "genesis", "genesis_time_ms", "allocations", "stake"} <= keys
    assert missing_network_keys(doc_text()) == set()


def test_the_network_toml_table_lists_only_keys_the_loader_reads():
    assert documented_network_keys(doc_text()) - load_network_keys() == set()


def test_the_chain_rows_of_network_toml_have_the_parameter_defaults(tmp_path):
    rows = network_toml_rows(doc_text())
    defaults = ChainParams()
    chain_rows = {path.removeprefix("[chain]."): row for path, row in rows.items()}
    for f in dataclasses.fields(ChainParams):
        if f.name == "native_asset":
            continue
        default = chain_rows[f.name][4]
        value = getattr(defaults, f.name)
        if isinstance(value, int):
            assert _number(default) == value, f.name
        else:
            assert code_spans(default) == [f'"{value}"'], f.name
        # and the loader takes the key as documented: its default, written out, is accepted
        path = tmp_path / f"{f.name}.toml"
        literal = f'"{value}"' if isinstance(value, str) else str(value)
        path.write_text(f"[chain]\n{f.name} = {literal}\n[genesis]\ngenesis_time_ms = 0\n")
        assert load_network(path).params == defaults
    refused = tmp_path / "native.toml"
    refused.write_text('[chain]\nnative_asset = "00"\n[genesis]\ngenesis_time_ms = 0\n')
    with pytest.raises(ConfigError, match="native_asset"):
        load_network(refused)


def test_the_example_network_toml_has_the_genesis_id_stated(tmp_path):
    files = section(doc_text(), FILES_SECTION)
    (example,) = re.findall(r"```toml\n(.*?)```", files, flags=re.DOTALL)
    (stated,) = re.findall(r"Its genesis id is `([0-9a-f]{64})`", files)
    path = tmp_path / "network.toml"
    path.write_text(example)
    network = load_network(path)
    assert genesis_block(network.genesis, network.params).block_id.hex() == stated


def test_key_files_are_as_the_files_section_describes(tmp_path):
    files = section(doc_text(), FILES_SECTION)
    key = SecretKey(bytes(31) + b"\x01")
    path = tmp_path / "k.key"
    write_key(path, key)
    raw = path.read_bytes()
    assert "exactly 65 bytes" in files
    assert len(raw) == 65
    assert re.fullmatch(rb"[0-9a-f]{64}\n", raw)
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
    path.write_text("  " + key.secret.hex().upper() + "\r\n")
    assert read_key(path) == key
    path.write_text("0x" + key.secret.hex() + "\n")
    with pytest.raises(ConfigError):
        read_key(path)
    demo = demo_wallet_key(0)
    assert f"demo wallet 0: `{demo.secret.hex()}`" in files
    assert encode_address(address_of(demo.public_key), "dp2p") in files


@pytest.mark.parametrize(
    ("check", "row_start", "missing"),
    [
        (missing_tags, "| `p2pchain/seed` |", "p2pchain/seed"),
        (missing_tags, "| `p2pchain/state/account` |", "p2pchain/state/account"),
        (missing_params, "| `max_block_votes` |", "max_block_votes"),
        (missing_params, "| `validator_set_lag_epochs` |", "validator_set_lag_epochs"),
        (wrong_message_rows, "| 21 | `GetBlocksById` |", "GetBlocksById"),
        (wrong_message_rows, "| 22 | `Blocks` |", "Blocks"),
        (missing_network_keys, "| `[genesis].validators[].stake` |", "stake"),
        (missing_network_keys, "| `[genesis]` |", "genesis"),
        (missing_network_keys, "| `[chain].slot_ms` |", "slot_ms"),
    ],
)
def test_a_row_removed_from_the_document_is_noticed(check, row_start, missing):
    text = doc_text()
    assert check(text) == set()
    lines = text.splitlines(keepends=True)
    kept = [line for line in lines if not line.lstrip().startswith(row_start)]
    assert len(kept) == len(lines) - 1, f"no single row starts with {row_start!r}"
    assert check("".join(kept)) == {missing}
