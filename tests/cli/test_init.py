"""`p2pchain init` writes a network that loads back identically; config mistakes are one line."""

from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from p2pchain.cli.commands import cli
from p2pchain.cli.config import dump_node, load_network, load_node, read_key
from p2pchain.errors import ConfigError
from p2pchain.ledger.address import address_of
from p2pchain.ledger.genesis import genesis_block
from p2pchain.ledger.vote import Checkpoint


def test_init_writes_a_loadable_network(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["init", "--dir", str(tmp_path), "--nodes", "3", "--slot-ms", "500"]
    )
    assert result.exit_code == 0, result.output
    network = load_network(tmp_path / "network.toml")
    assert network.params.slot_ms == 500
    assert len(network.genesis.validators) == 3
    genesis_block(network.genesis, network.params)  # a valid genesis
    nodes = [load_node(tmp_path / f"node{i}" / "node.toml") for i in range(3)]
    assert nodes[0].bootnodes == ()
    assert all(node.bootnodes == (nodes[0].listen[0],) for node in nodes[1:])
    assert len({node.rpc for node in nodes}) == 3
    validator_keys = {
        read_key(node.validator_key).public_key for node in nodes if node.validator_key
    }
    assert validator_keys == {v.key for v in network.genesis.validators}
    for node in nodes:
        assert (node.node_key.stat().st_mode & 0o777) == 0o600
    wallets = sorted((tmp_path / "wallets").glob("*.key"))
    funded = {a.address for a in network.genesis.allocations}
    assert {address_of(read_key(w).public_key) for w in wallets} == funded


def test_init_refuses_an_existing_network(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["init", "--dir", str(tmp_path)]).exit_code == 0
    result = runner.invoke(cli, ["init", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "exists already" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("[chain\n", ConfigError, "invalid TOML"),
        ("[chain]\nbogus = 1\n[genesis]\ngenesis_time_ms = 0\n", ConfigError, "unknown chain"),
        ("[chain]\nslot_ms = 'x'\n", ConfigError, "slot_ms"),
        ("[genesis]\ngenesis_time_ms = 'soon'\n", ConfigError, "genesis_time_ms"),
        (
            "[genesis]\ngenesis_time_ms = 0\n[[genesis.allocations]]\naddress = 'dp2p1xyz'\n"
            "amount = 5\n",
            ConfigError,
            "address: not bech32m",
        ),
    ],
)
def test_bad_network_files_raise_typed_errors(
    tmp_path: Path, text: str, error: type[Exception], message: str
) -> None:
    path = tmp_path / "network.toml"
    path.write_text(text)
    with pytest.raises(error, match=message):
        load_network(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_network(tmp_path / "nope.toml")


def _refused_naming_the_file(tmp_path: Path, line: str, message: str) -> None:
    """`line` appended to an initialised node.toml is refused with `message`, naming it."""
    assert CliRunner().invoke(cli, ["init", "--dir", str(tmp_path)]).exit_code == 0
    path = tmp_path / "node0" / "node.toml"
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(ConfigError, match=message) as raised:
        load_node(path)
    assert str(path) in str(raised.value)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("public_addr = '127.0.0.1'", "public_addr: .* is loopback"),
        ("public_addr = '0.0.0.0'", "public_addr: .* is unspecified"),
        ("public_addr = 'two words'", "public_addr: .*bad host"),
        ("public_addr = 7", "public_addr"),
        ("public_addr = '203.0.113.8'\nadvertise = []", "advertise or public_addr, not both"),
    ],
)
def test_a_public_address_peers_cannot_use_is_refused_naming_the_file(
    tmp_path: Path, line: str, message: str
) -> None:
    _refused_naming_the_file(tmp_path, line, message)


def test_a_public_address_survives_a_round_trip(tmp_path: Path) -> None:
    assert CliRunner().invoke(cli, ["init", "--dir", str(tmp_path)]).exit_code == 0
    path = tmp_path / "node0" / "node.toml"
    node = replace(load_node(path), public_addr="node-0.validators.example")
    dump_node(node, path)
    assert load_node(path) == node


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("trusted_checkpoint = '12'", "trusted_checkpoint: expected EPOCH:BLOCK_ID"),
        ("trusted_checkpoint = '-1:" + "00" * 32 + "'", "trusted_checkpoint: expected"),
        ("trusted_checkpoint = '3:" + "0" * 63 + "'", "trusted_checkpoint: expected"),
        ("trusted_checkpoint = '3:" + "zz" * 32 + "'", "trusted_checkpoint: non-hex"),
        ("trusted_checkpoint = '" + "9" * 21 + ":" + "00" * 32 + "'", "out of range"),
        ("trusted_checkpoint = 3", "trusted_checkpoint"),
        ("snapshot_sync = 'yes'", "snapshot_sync"),
    ],
)
def test_a_bad_snapshot_setting_is_refused_naming_the_file(
    tmp_path: Path, line: str, message: str
) -> None:
    _refused_naming_the_file(tmp_path, line, message)


def test_snapshot_settings_survive_a_round_trip_and_take_chain_finalized_ids(
    tmp_path: Path,
) -> None:
    assert CliRunner().invoke(cli, ["init", "--dir", str(tmp_path)]).exit_code == 0
    path = tmp_path / "node0" / "node.toml"
    block = "ab" * 32
    path.write_text(
        path.read_text() + f"snapshot_sync = true\ntrusted_checkpoint = '7:0x{block}'\n"
    )
    node = load_node(path)
    assert node.snapshot_sync
    assert node.trusted_checkpoint == Checkpoint(epoch=7, block_id=bytes.fromhex(block))
    dump_node(node, path)
    assert load_node(path) == node


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("gov_quorum_bps = 0", "gov_quorum_bps must be 1..10000"),
        ("gov_quorum_bps = 10001", "gov_quorum_bps must be 1..10000"),
        ("gov_threshold_bps = 10000", "gov_threshold_bps 1..9999"),
        ("gov_max_proposals = 0", "gov_max_proposals must be 1..1024"),
        ("gov_max_proposals = 1025", "gov_max_proposals must be 1..1024"),
        ("min_fee_rate = 1000001", "min_fee_rate must be 0..1000000"),
        ("gov_deposit = 0", "gov_deposit must be in"),
        ("gov_voting_epochs = 0", "must be positive"),
        ("gov_max_activation_delay = 0", "must be positive"),
        ("gov_deposit = 'ten'", "gov_deposit"),
    ],
)
def test_governance_parameters_out_of_range_are_refused_naming_the_file(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "network.toml"
    path.write_text(f"[chain]\n{line}\n[genesis]\ngenesis_time_ms = 0\n")
    with pytest.raises(ConfigError, match=message) as raised:
        load_network(path)
    assert str(path) in str(raised.value)
