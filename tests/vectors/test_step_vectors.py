"""Consensus step vectors (docs/testing.md): every shipped vector passes on the pure store and on
a real node, the set covers what it claims, the runner can fail (and says why in one line),
the format is read strictly, and `p2pchain vectors run` reports as documented.

Running all shipped vectors on a node takes well under a second of real time (MockClock,
memory storage), so the node variant runs them all by default.
"""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from p2pchain.cli.commands import cli
from p2pchain.errors import Reason
from p2pchain.testing.vectors import (
    Delivery,
    MessageKind,
    VectorFormatError,
    check_vector,
    dump_vector,
    load_vector,
    parse_vector,
    run_vector,
    run_vector_on_node,
    shipped_directory,
    shipped_vectors,
    vector_json,
    vector_params,
)
from p2pchain.testing.vectors.format import BlockOutcomeName
from p2pchain.testing.vectors.generate import main as generate_main

SHIPPED = shipped_vectors()
BY_NAME = {vector.name: vector for vector in SHIPPED}
DATA = shipped_directory()


@pytest.mark.parametrize("vector", vector_params(DATA))
def test_shipped_vector_passes_on_the_store(vector):
    check_vector(vector)


@pytest.mark.parametrize("vector", vector_params(DATA))
def test_shipped_vector_passes_on_a_node(vector):
    check_vector(vector, node=True)


def test_the_shipped_vectors_are_what_the_generator_makes(capsys):
    assert generate_main([str(DATA), "--check"]) == 0, capsys.readouterr().out


# -- coverage -----------------------------------------------------------------------------------

BLOCK_REASONS = {
    # on_block, in its order
    Reason.DUPLICATE_BLOCK,
    Reason.UNKNOWN_PARENT,
    Reason.FUTURE_SLOT,
    Reason.SLOT_NOT_AFTER_PARENT,
    Reason.BAD_HEIGHT,
    Reason.CONFLICTS_WITH_FINALIZED,
    Reason.BLOCK_TOO_LARGE,
    Reason.WRONG_PROPOSER,
    Reason.BAD_PROPOSER_SIGNATURE,
    Reason.BAD_BODY_ROOT,
    # a carried vote
    Reason.FUTURE_VOTE,
    Reason.BAD_VOTE_TARGET,
    Reason.BAD_VOTE_SOURCE,
    Reason.UNKNOWN_VALIDATOR,
    Reason.BAD_VOTE_SIGNATURE,
    # connect_block's own, and a sample of the transaction rules inside a block
    Reason.BAD_REWARD,
    Reason.DUPLICATE_TX,
    Reason.CONFLICTING_SPEND,
    Reason.MISPLACED_REWARD,
    Reason.MISSING_INPUT,
    Reason.WITNESS_KEY_MISMATCH,
    Reason.BAD_SIGNATURE,
    Reason.IMMATURE,
    Reason.STAKE_LOCKED,
    Reason.NEGATIVE_FEE,
    Reason.BAD_EVIDENCE,
    Reason.NOTHING_TO_SLASH,
    # offers and retirements
    Reason.BAD_OFFER,
    Reason.OFFER_EXPIRED,
    Reason.BAD_RETIREMENT,
    # decoding
    Reason.MALFORMED,
}
VOTE_REASONS = {
    Reason.MALFORMED,
    Reason.FUTURE_VOTE,
    Reason.UNKNOWN_VOTE_HEAD,
    Reason.CONFLICTS_WITH_FINALIZED,
    Reason.STALE_VOTE,
    Reason.BAD_VOTE_TARGET,
    Reason.BAD_VOTE_SOURCE,
    Reason.UNKNOWN_VALIDATOR,
    Reason.BAD_VOTE_SIGNATURE,
}
SCENARIOS = {
    "fork-choice-tie-lowest-id",
    "evidence-double-proposal",
    "evidence-double-vote",
    "evidence-surround-vote",
    "slash-tx-double-proposal",
    "slash-tx-double-vote",
    "slash-tx-surround-vote",
    "finality-across-empty-epochs",
    "reorg-across-epochs",
    "split-cascade-highest-epoch",
    "split-cascade-equal-epochs",
    "self-pruning-block",
    "votes-of-a-losing-branch",
    "block-governance",
}


def _deliveries(kind):
    return [
        step
        for vector in SHIPPED
        for step in vector.steps
        if isinstance(step, Delivery) and step.kind is kind
    ]


def test_at_least_forty_vectors_are_shipped():
    assert len(SHIPPED) >= 40


@pytest.mark.parametrize(
    ("kind", "reasons"),
    [
        (MessageKind.BLOCK, BLOCK_REASONS),
        (MessageKind.VOTE, VOTE_REASONS),
        (MessageKind.EVIDENCE, {Reason.MALFORMED, Reason.BAD_EVIDENCE}),
    ],
)
def test_every_reason_that_wire_bytes_can_cause_is_shipped(kind, reasons):
    shipped = {step.reason for step in _deliveries(kind) if not step.valid}
    assert reasons - shipped == set()


def test_the_named_scenarios_are_shipped_and_a_block_is_pruned():
    assert SCENARIOS - set(BY_NAME) == set()
    outcomes = {step.outcome for step in _deliveries(MessageKind.BLOCK) if step.valid}
    assert BlockOutcomeName.PRUNED in outcomes


# -- the runner can fail ----------------------------------------------------------------------


def _corrupt(name, change):
    """The shipped vector `name` with `change` applied to its JSON."""
    document = vector_json(BY_NAME[name])
    change(document["steps"])
    return parse_vector(document, name=f"{name}-corrupted")


def _wrong_head(steps):
    last = next(step for step in reversed(steps) if "checks" in step)
    last["checks"]["head"] = "0x" + "ab" * 32


def _wrong_reason(steps):
    step = next(step for step in steps if step.get("reason") == "duplicate-block")
    step["reason"] = "unknown-parent"


def _valid_said_invalid(steps):
    step = next(step for step in steps if step.get("valid") is True and "block" in step)
    step["valid"] = False
    step["reason"] = "bad-body-root"


def _wrong_weight(steps):
    last = next(step for step in reversed(steps) if "checks" in step)
    block = next(iter(last["checks"]["weights"]))
    last["checks"]["weights"][block] += 1


@pytest.mark.parametrize("run", [run_vector, run_vector_on_node], ids=["store", "node"])
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_wrong_head, "head: expected 0xabab"),
        (
            _wrong_reason,
            "expected invalid (unknown-parent), got invalid (duplicate-block",
        ),
        (_valid_said_invalid, "expected invalid (bad-body-root), got valid (added)"),
        (_wrong_weight, "weight of 0x"),
    ],
    ids=["head", "reason", "validity", "weight"],
)
def test_a_corrupted_vector_fails_with_a_clear_message(run, change, message):
    vector = _corrupt("block-duplicate", change)
    failures = run(vector)
    assert len(failures) == 1
    text = str(failures[0])
    assert text.startswith("block-duplicate-corrupted: step ")
    assert message in text
    assert "\n" not in text
    with pytest.raises(AssertionError, match="block-duplicate-corrupted"):
        check_vector(vector)


def test_a_run_stops_at_the_first_failing_step_with_every_field_that_differs():
    def two_wrong(steps):
        first = next(step for step in steps if "checks" in step)
        first["checks"]["head"] = "0x" + "cd" * 32
        first["checks"]["finalized"] = {"epoch": 9, "block_id": "0x" + "cd" * 32}
        _wrong_head(steps)

    failures = run_vector(_corrupt("block-duplicate", two_wrong))
    assert [failure.message.split(":")[0] for failure in failures] == ["head", "finalized"]
    assert len({failure.step for failure in failures}) == 1


def test_a_node_holding_a_vote_matches_only_the_reasons_it_may_hold_for():
    """A node answers every vote it holds with unknown-vote-head, so a vector expecting
    future-vote passes on it; one expecting a rule the node names (bad-vote-target) does not."""
    vector = BY_NAME["vote-future-slot"]
    assert run_vector_on_node(vector) == []

    def other_reason(steps):
        step = next(step for step in steps if step.get("reason") == "future-vote")
        step["reason"] = "bad-vote-target"

    failures = run_vector_on_node(_corrupt("vote-future-slot", other_reason))
    assert "got held for a retry" in str(failures[0])


# -- the format --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_a_vector_reads_back_as_written(name, tmp_path):
    vector = BY_NAME[name]
    assert parse_vector(vector_json(vector), name=name) == vector
    assert load_vector(dump_vector(vector, tmp_path / f"{name}.json")) == vector


def _document():
    return vector_json(BY_NAME["block-duplicate"])


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda d: d.pop("anchor"), "top level: missing 'anchor'"),
        (lambda d: d.update(extra=1), "unknown key 'extra'"),
        (lambda d: d.update(version=2), "this reader knows version 1"),
        (lambda d: d["anchor"]["genesis"].pop("genesis_time_ms"), "genesis_time_ms must be"),
        (lambda d: d["anchor"]["chain"].update(slot_ms="fast"), "chain.slot_ms must be int"),
        (lambda d: d["steps"].append({"tick": 0}), "tick 0 is before tick 1"),
        (lambda d: d["steps"].append({"tock": 0}), "a step is one of tick, block, vote"),
        (lambda d: d["steps"][1].update(block="00"), "expected 0x-prefixed hex"),
        (lambda d: d["steps"][1].update(block="0xzz"), "not hex"),
        (lambda d: d["steps"][2].update(reason="no-such-rule"), "is not a reason code"),
        (lambda d: d["steps"][2].pop("reason"), "an invalid message needs a reason"),
        (lambda d: d["steps"][1].update(reason="malformed"), "a valid message has no reason"),
        (lambda d: d["steps"][1].update(outcome="kept"), "is not added or pruned"),
        (lambda d: d["steps"][3]["checks"].update(head="0x00"), "expected 32 bytes, got 1"),
        (lambda d: d["steps"][3]["checks"].update(proposer={"x": "0x"}), "is not a slot"),
        (lambda d: d["steps"][3]["checks"].update(height=1), "unknown key 'height'"),
    ],
)
def test_a_malformed_vector_is_one_line_naming_the_file_and_place(change, complaint):
    document = _document()
    change(document)
    with pytest.raises(VectorFormatError) as caught:
        parse_vector(document, name="broken", source="broken.json")
    message = str(caught.value)
    assert complaint in message
    assert message.startswith("broken.json")
    assert "\n" not in message


def test_a_file_that_is_not_json_is_one_line(tmp_path):
    path = tmp_path / "half.json"
    path.write_text('{"steps": [')
    with pytest.raises(VectorFormatError, match=r"half\.json: invalid JSON"):
        load_vector(path)


# -- the command and the pytest plugin ------------------------------------------------------------


def _invoke(*args):
    result = CliRunner().invoke(cli, ["vectors", "run", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_cli_runs_the_shipped_vectors_one_line_each():
    code, output = _invoke(str(DATA))
    lines = output.splitlines()
    assert code == 0
    assert lines[:-1] == [f"ok    {vector.name}" for vector in SHIPPED]
    assert lines[-1] == f"{len(SHIPPED)} vectors on the store: {len(SHIPPED)} passed, 0 failed"


def _some_vectors(directory, *names):
    directory.mkdir()
    for name in names:
        dump_vector(BY_NAME[name], directory / f"{name}.json")
    return directory


def test_cli_with_node_runs_each_vector_on_a_node_too(tmp_path):
    directory = _some_vectors(tmp_path / "v", "self-pruning-block", "vote-unknown-head")
    code, output = _invoke(str(directory), "--node")
    assert code == 0
    assert output.splitlines() == [
        "ok    self-pruning-block",
        "ok    vote-unknown-head",
        "2 vectors on the store and a node: 2 passed, 0 failed",
    ]


def test_cli_reports_a_failure_and_a_malformed_file_in_one_line_each_and_exits_1(tmp_path):
    directory = _some_vectors(tmp_path / "v", "block-duplicate")
    corrupted = _corrupt("block-duplicate", _wrong_head)
    dump_vector(corrupted, directory / f"{corrupted.name}.json")
    (directory / "truncated.json").write_text('{"description": "x", "anchor"')
    document = _document()
    document["steps"][2]["reason"] = "no-such-rule"
    (directory / "unknown-reason.json").write_text(json.dumps(document))
    code, output = _invoke(str(directory), "--node")
    lines = output.splitlines()
    assert code == 1
    assert lines[0].startswith("FAIL  block-duplicate-corrupted: store: step 3: head: expected")
    assert "; node: step 3: head: expected" in lines[0]
    assert lines[1] == "ok    block-duplicate"
    assert lines[2].startswith("FAIL  truncated: malformed vector: ")
    assert "invalid JSON" in lines[2]
    assert lines[3].startswith("FAIL  unknown-reason: malformed vector: ")
    assert "'no-such-rule' is not a reason code" in lines[3]
    assert lines[4] == "4 vectors on the store and a node: 1 passed, 3 failed"
    assert "Traceback" not in output


def test_cli_missing_directory_is_one_line(tmp_path):
    code, output = _invoke(str(tmp_path / "nowhere"))
    assert code == 1
    assert output == f"Error: {tmp_path / 'nowhere'}: no such directory\n"


def test_cli_empty_directory_fails(tmp_path):
    code, output = _invoke(str(tmp_path))
    assert code == 1
    assert "no vector files (*.json) in" in output


def test_pytest_plugin_collects_a_directory_of_vectors(tmp_path):
    directory = _some_vectors(tmp_path / "v", "block-duplicate", "fork-choice-tie-lowest-id")
    corrupted = _corrupt("block-duplicate", _wrong_head)
    dump_vector(corrupted, directory / f"{corrupted.name}.json")
    (directory / "not-a-vector.json").write_text('{"name": "something else"}')
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "p2pchain.testing.vectors.pytest_plugin",
            "--vectors-node",
            "-p",
            "no:cacheprovider",
            "-q",
            str(directory),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 failed, 4 passed" in result.stdout
    assert "FAILED v/block-duplicate-corrupted.json::store" in result.stdout
    assert "FAILED v/block-duplicate-corrupted.json::node" in result.stdout
    assert "block-duplicate-corrupted: step 3: head: expected 0xabab" in result.stdout
