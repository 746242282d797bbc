"""CLI logging: every record has a node field; JSON lines parse; levels filter."""

import json
import logging

import pytest

from p2pchain.cli.logs import configure_logging


@pytest.fixture
def restore_p2pchain_logger():
    logger = logging.getLogger("p2pchain")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.mark.usefixtures("restore_p2pchain_logger")
def test_json_lines_carry_node_and_message(capsys):
    configure_logging("info", "json")
    node_logger = logging.LoggerAdapter(logging.getLogger("p2pchain.chain"), {"node": "abc123"})
    node_logger.info("new head %s height=%d", "ff00", 7)
    logging.getLogger("p2pchain.cli").debug("filtered out")
    logging.getLogger("p2pchain.cli").warning("no node here")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(e["logger"], e["node"], e["msg"], e["level"]) for e in lines] == [
        ("p2pchain.chain", "abc123", "new head ff00 height=7", "info"),
        ("p2pchain.cli", "-", "no node here", "warning"),
    ]
    assert all(e["ts"].endswith("Z") for e in lines)


@pytest.mark.usefixtures("restore_p2pchain_logger")
def test_plain_lines_show_the_node_id(capsys):
    configure_logging("warning", "plain")
    logging.LoggerAdapter(logging.getLogger("p2pchain.net"), {"node": "beef"}).warning("banned")
    err = capsys.readouterr().err
    assert "WARNING" in err
    assert "p2pchain.net [beef] banned" in err


@pytest.mark.usefixtures("restore_p2pchain_logger")
@pytest.mark.parametrize(
    ("flags", "expected"),
    [((), logging.DEBUG), (("--log-level", "error"), logging.ERROR)],
    ids=["from-node-toml", "flag-wins"],
)
def test_node_takes_its_log_level_from_node_toml_unless_the_flag_is_given(
    tmp_path, monkeypatch, flags, expected
):
    from click.testing import CliRunner

    import p2pchain.cli.run
    from p2pchain.cli.commands import cli

    seen = []

    async def fake_run_node(node_file):
        seen.append(logging.getLogger("p2pchain").level)

    monkeypatch.setattr(p2pchain.cli.run, "run_node", fake_run_node)
    config = tmp_path / "node.toml"
    config.write_text('network = "n.toml"\nnode_key_file = "k"\nlog_level = "debug"\n')
    result = CliRunner().invoke(cli, [*flags, "node", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert seen == [expected]
