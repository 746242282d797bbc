"""CLI input mistakes end in one clear line and a non-zero exit, never a traceback, and before
anything is contacted."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from p2pchain import __version__
from p2pchain.cli.commands import cli
from p2pchain.cli.config import write_key
from p2pchain.ledger.crypto import SecretKey


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_version_flag_prints_the_version() -> None:
    assert _invoke("--version") == (0, f"p2pchain {__version__}\n")


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    path = tmp_path / "payer.key"
    write_key(path, SecretKey.from_entropy(bytes(range(32))))
    return str(path)


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("--amount", "-5"), "Invalid value for '--amount': -5"),
        (("--amount", "0"), "Invalid value for '--amount': 0"),
        (("--amount", "5", "--fee", "-1"), "Invalid value for '--fee': -1"),
        (("--amount", "5", "--rpc", "http://127.0.0.1:8645"), "is not a WebSocket URL"),
        (("--amount", "5", "--rpc", "garbage"), "is not a WebSocket URL"),
        (("--amount", "5", "--rpc", "ws://"), "is not a WebSocket URL"),
    ],
)
def test_wallet_send_refuses_bad_flags_in_one_line(
    key_file: str, args: tuple[str, ...], complaint: str
) -> None:
    code, output = _invoke("wallet", "send", "--key", key_file, "--to", "dp2p1x", *args)
    assert code == 2
    assert complaint in output
    assert "Traceback" not in output


def test_issue_asset_refuses_a_negative_cap(key_file: str) -> None:
    code, output = _invoke(
        "wallet", "issue-asset", "--key", key_file, "--name", "CO2", "--amount", "1", "--cap", "-1"
    )
    assert code == 2
    assert "Invalid value for '--cap': -1" in output


def test_a_node_toml_with_an_unknown_key_is_refused_by_name(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('network = "network.toml"\nnode_key_file = "node.key"\nlisten_on = []\n')
    code, output = _invoke("node", "--config", str(config))
    assert code == 1
    assert "unknown key 'listen_on'" in output
    assert output.count("\n") == 1


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        (("[genesis]", "[genesis]\nallocation = []"), "unknown key genesis.allocation"),
        (("[chain]", "comment = 1\n[chain]"), "unknown key comment"),
        (("amount = ", "ammount = 1, amount = "), "unknown key genesis.allocations.ammount"),
        (("stake = ", "stak = 1\nstake = "), "unknown key genesis.validators.stak"),
    ],
)
def test_a_network_toml_with_an_unknown_key_is_refused_by_name(
    tmp_path: Path, edit: tuple[str, str], complaint: str
) -> None:
    """A misspelt key would silently make another network (no allocations, say)."""
    assert _invoke("init", "--dir", str(tmp_path), "--nodes", "1")[0] == 0
    network = tmp_path / "network.toml"
    old, new = edit
    network.write_text(network.read_text().replace(old, new, 1))
    code, output = _invoke("node", "--config", str(tmp_path / "node0" / "node.toml"))
    assert code == 1
    assert complaint in output
    assert output.count("\n") == 1


def test_a_node_toml_that_is_not_utf8_is_refused_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_bytes(b'network = "\xff\xfe"\n')
    code, output = _invoke("node", "--config", str(config))
    assert code == 1
    assert "not UTF-8 text" in output
    assert output.count("\n") == 1


def test_a_node_toml_log_level_must_be_a_known_level(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('network = "n.toml"\nnode_key_file = "k"\nlog_level = "loud"\n')
    code, output = _invoke("node", "--config", str(config))
    assert code == 1
    assert "log_level must be one of debug, info, warning, error" in output


def test_testnet_flags_that_differ_from_the_existing_network_are_refused(tmp_path: Path) -> None:
    assert _invoke("init", "--dir", str(tmp_path), "--nodes", "2", "--slot-ms", "500")[0] == 0
    for flags, complaint in [
        (("--nodes", "3"), "--nodes 3 differs from the network"),
        (("--slot-ms", "1000"), "--slot-ms 1000 differs from the network"),
        (("--slot-ms", "manual"), "--slot-ms manual differs from the network"),
        (("--base-port", "40000"), "--base-port 40000 differs from the network"),
    ]:
        code, output = _invoke("testnet", "--dir", str(tmp_path), "--duration", "0", *flags)
        assert code == 1, output
        assert complaint in output
        assert output.count("\n") == 1


def test_a_second_testnet_on_one_directory_is_refused(tmp_path: Path) -> None:
    """The supervisor holds the network directory's lock: a second one names the holder."""
    from p2pchain.node.datadir import lock_data_dir

    assert _invoke("init", "--dir", str(tmp_path), "--nodes", "1")[0] == 0
    with lock_data_dir(tmp_path):
        code, output = _invoke("testnet", "--dir", str(tmp_path), "--duration", "0")
    assert code == 1
    assert f"{tmp_path} is in use by process" in output
    assert output.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("testnet", "--slot-ms", "0"), "Invalid value for '--slot-ms': 0"),
        (("testnet", "--slot-ms", "soon"), "Invalid value for '--slot-ms': 'soon'"),
        (("testnet", "mine", "0"), "Invalid value for '[SLOTS]': 0"),
        (("testnet", "--slots-per-epoch", "0"), "Invalid value for '--slots-per-epoch': 0"),
        (("testnet", "--nodes", "0"), "Invalid value for '--nodes': 0"),
        (("testnet", "--tx-rate", "-1"), "Invalid value for '--tx-rate': -1"),
        (("testnet", "--duration", "-5"), "Invalid value for '--duration': -5"),
        (("testnet", "--base-port", "70000"), "Invalid value for '--base-port': 70000"),
        (("init", "--slots-per-epoch", "0"), "Invalid value for '--slots-per-epoch': 0"),
        (("init", "--chain-id", "-1"), "Invalid value for '--chain-id': -1"),
        (("init", "--metrics-port", "-1"), "Invalid value for '--metrics-port': -1"),
    ],
)
def test_network_flags_out_of_range_are_one_line(
    tmp_path: Path, args: tuple[str, ...], complaint: str
) -> None:
    code, output = _invoke(*args, "--dir", str(tmp_path / "net"))
    assert code == 2
    assert complaint in output
    assert "Traceback" not in output
    assert not (tmp_path / "net").exists()  # refused before anything was written


def test_ports_past_65535_for_all_the_nodes_are_refused(tmp_path: Path) -> None:
    code, output = _invoke("init", "--dir", str(tmp_path), "--nodes", "4", "--base-port", "65530")
    assert code == 1
    assert "--base-port: 4 nodes need ports up to 65537, past 65535" in output


def test_a_network_that_allows_names_longer_than_the_wire_format_is_refused(tmp_path: Path) -> None:
    """Names over 32 bytes never decode, so such a chain parameter would be a lie."""
    assert _invoke("init", "--dir", str(tmp_path), "--nodes", "1")[0] == 0
    network = tmp_path / "network.toml"
    network.write_text(network.read_text().replace("[chain]", "[chain]\nmax_asset_name_bytes = 64"))
    code, output = _invoke("node", "--config", str(tmp_path / "node0" / "node.toml"))
    assert code == 1
    assert "max_asset_name_bytes must be 1..32" in output
    assert output.count("\n") == 1


@pytest.mark.parametrize("key", ["dev_rpc", "manual_clock"])
def test_a_node_toml_flag_that_is_not_a_boolean_is_refused_by_name(
    tmp_path: Path, key: str
) -> None:
    config = tmp_path / "node.toml"
    config.write_text(f'network = "n.toml"\nnode_key_file = "k"\n{key} = "yes"\n')
    code, output = _invoke("node", "--config", str(config))
    assert code == 1
    assert f"{key} must be true or false" in output
    assert output.count("\n") == 1


ASSET = "0x" + "ab" * 32
UNREACHABLE = ("--rpc", "ws://127.0.0.1:1")  # a flag accepted would end in a connection error


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("offer", "--sell", "gold", "--for", "native:1"), "'gold' is not ASSET:AMOUNT"),
        (("offer", "--sell", "gold:5", "--for", "native:1"), "'gold' is not native or a 32-byte"),
        (("offer", "--sell", "0xabcd:5", "--for", "native:1"), "'0xabcd' is not native or a"),
        (("offer", "--sell", "native:0", "--for", f"{ASSET}:1"), "'native:0' is not ASSET:AMOUNT"),
        (("offer", "--sell", "native:5", "--for", f"{ASSET}:-1"), "is not ASSET:AMOUNT"),
        (("offer", "--sell", "native:5", "--for", f"{ASSET}:1", "--lots", "0"), "'--lots': 0"),
        (("offer", "--sell", "native:5", "--for", f"{ASSET}:1", "--blocks", "0"), "'--blocks'"),
        (("offers", "--sell", "gold", "--for", "native"), "'gold' is not native or a 32-byte"),
        (("take", "0x1234"), "'0x1234' is 2 bytes, not 32"),
        (("take", "offer-1"), "'offer-1' is not hex"),
        (("retire", "--asset", "native", "--amount", "1", "--beneficiary", "b", "--purpose", "p"),
         "the native coin is not an issued asset"),
        (("retire", "--asset", ASSET, "--amount", "0", "--beneficiary", "b", "--purpose", "p"),
         "Invalid value for '--amount': 0"),
        (("retire", "--asset", ASSET, "--amount", "1", "--beneficiary", "b" * 65, "--purpose",
          "p"), "65 bytes of UTF-8, over the limit of 64"),
        (("retire", "--asset", ASSET, "--amount", "1", "--beneficiary", "b", "--purpose",
          "ü" * 129), "258 bytes of UTF-8, over the limit of 256"),
        (("retirements", "--asset", ASSET, "--limit", "1001"), "'--limit': 1001"),
        (("swap", "--give", "native", "--get", f"{ASSET}:1", "--with", "x"), "'--give'"),
        (("partial", "inspect", "0xzz"), "not a partially signed transaction"),
        (("partial", "inspect", "0xc0"), "not a partially signed transaction"),
        (("partial", "sign", "0x"), "not a partially signed transaction"),
        (("partial", "submit", "0xc26f6b"), "not a partially signed transaction"),
        (("partial", "combine", "0xc0"), "not a partially signed transaction"),
        (("partial", "combine"), "Missing argument 'RAW...'"),
    ],
)  # fmt: skip
def test_trade_commands_refuse_bad_values_before_contacting_the_node(
    key_file: str, args: tuple[str, ...], complaint: str
) -> None:
    keyed = args[0] in ("offer", "take", "retire", "swap") or args[:2] == ("partial", "sign")
    offline = args[:2] == ("partial", "combine")
    extra = (*(("--key", key_file) if keyed else ()), *(() if offline else UNREACHABLE))
    code, output = _invoke("wallet", *args, *extra)
    assert code == 2, output
    assert complaint in output
    assert "Traceback" not in output


def test_lots_that_do_not_divide_the_amounts_are_refused_before_contacting_the_node(
    key_file: str,
) -> None:
    code, output = _invoke(
        "wallet", "offer", "--key", key_file, "--sell", f"{ASSET}:600", "--for", "native:10",
        "--lots", "4", *UNREACHABLE,
    )  # fmt: skip
    assert code == 1
    assert output == "Error: ConfigError: --lots 4 does not divide both 600 and 10 exactly\n"
