"""The file format of consensus step vectors (docs/testing.md, "Consensus step vectors").

One vector is one JSON object: a `description`, an `anchor` (network.toml's ``[chain]`` and
``[genesis]`` tables, read by the same code as network.toml), and `steps` run in order: ticks,
wire bytes of blocks, votes and evidence with the expected outcome of each, and checks of the
fork-choice state. Parsing is strict: an unknown key, a wrong type or a reason code that does
not exist is a `VectorFormatError` naming the file and the step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final

from p2pchain.cli.config import NetworkFile, network_from_tables, network_tables
from p2pchain.errors import ConfigError, P2PChainError, Reason
from p2pchain.ledger.genesis import GenesisConfig
from p2pchain.ledger.types import BlockId, Epoch, PublicKey
from p2pchain.ledger.vote import Checkpoint
from p2pchain.params import ChainParams

FORMAT_VERSION: Final = 1
"""The `version` a vector file carries; a reader refuses any other."""
VECTOR_SUFFIX: Final = ".json"


class VectorFormatError(P2PChainError, ValueError):
    """A vector file that is not valid JSON or does not follow the format (one line)."""


class MessageKind(StrEnum):
    """What a delivery step hands over, as the network carries it."""

    BLOCK = "block"
    VOTE = "vote"
    EVIDENCE = "evidence"


class BlockOutcomeName(StrEnum):
    """What a valid block became (`p2pchain.consensus.BlockOutcome`)."""

    ADDED = "added"
    PRUNED = "pruned"


@dataclass(frozen=True, slots=True)
class Tick:
    """``{"tick": slot}``: the current slot becomes `slot` (never decreasing)."""

    slot: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """``{"block" | "vote" | "evidence": "0x..", "valid": ..}``: wire bytes and what they do."""

    kind: MessageKind
    data: bytes
    valid: bool
    reason: Reason | None = None
    """The rule broken, for an invalid message (required then, absent otherwise)."""
    outcome: BlockOutcomeName | None = None
    """For a valid block only: "added" (the default) or "pruned"."""


@dataclass(frozen=True, slots=True)
class ValidatorsCheck:
    """The validator set of `epoch` on the head's chain: key -> stake."""

    epoch: int
    stakes: Mapping[PublicKey, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class Checks:
    """``{"checks": {..}}``: each present field must equal the state after the steps so far."""

    head: BlockId | None = None
    justified: Checkpoint | None = None
    finalized: Checkpoint | None = None
    weights: Mapping[BlockId, int] | None = None
    validators: ValidatorsCheck | None = None
    proposer: Mapping[int, PublicKey] | None = None
    """Slot -> the proposer of a block at that slot on top of the head."""


Step = Tick | Delivery | Checks


@dataclass(frozen=True, slots=True, kw_only=True)
class Vector:
    """One parsed vector; `name` is its file's stem."""

    name: str
    description: str
    params: ChainParams
    genesis: GenesisConfig
    steps: tuple[Step, ...] = field(default=())


# -- reading ---------------------------------------------------------------------------------

_TOP_KEYS: Final = frozenset({"version", "description", "anchor", "steps"})
_CHECK_KEYS: Final = frozenset(
    {"head", "justified", "finalized", "weights", "validators", "proposer"}
)
_REASONS: Final = {reason.value: reason for reason in Reason}


class _Reader:
    """Typed access to decoded JSON; every error names the file and where in it."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> VectorFormatError:
        return VectorFormatError(f"{self.source}: {where}: {message}" if where else message)

    def mapping(self, value: object, where: str) -> dict[str, object]:
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            raise self.fail(where, f"expected an object, got {_kind(value)}")
        return value

    def keys(self, value: dict[str, object], allowed: frozenset[str], where: str) -> None:
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.fail(
                where, f"unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})"
            )

    def integer(self, value: object, where: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
            raise self.fail(where, f"expected an integer in 0..2**64-1, got {value!r}")
        return value

    def boolean(self, value: object, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, f"expected true or false, got {value!r}")
        return value

    def text(self, value: object, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(where, f"expected a string, got {_kind(value)}")
        return value

    def hex_bytes(self, value: object, where: str, length: int | None = None) -> bytes:
        text = self.text(value, where)
        if not text.startswith("0x"):
            raise self.fail(where, f"expected 0x-prefixed hex, got {_short(text)!r}")
        try:
            data = bytes.fromhex(text[2:])
        except ValueError:
            raise self.fail(where, f"not hex: {_short(text)!r}") from None
        if length is not None and len(data) != length:
            raise self.fail(where, f"expected {length} bytes, got {len(data)}")
        return data

    def checkpoint(self, value: object, where: str) -> Checkpoint:
        table = self.mapping(value, where)
        self.keys(table, frozenset({"epoch", "block_id"}), where)
        if "epoch" not in table or "block_id" not in table:
            raise self.fail(where, "a checkpoint has an epoch and a block_id")
        return Checkpoint(
            epoch=Epoch(self.integer(table["epoch"], f"{where}.epoch")),
            block_id=BlockId(self.hex_bytes(table["block_id"], f"{where}.block_id", 32)),
        )


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def parse_vector(data: object, *, name: str, source: str | None = None) -> Vector:
    """A `Vector` from decoded JSON (`source` names it in errors; default `name`).

    Raises:
        VectorFormatError: the data does not follow the format.
    """
    reader = _Reader(source or name)
    top = reader.mapping(data, "")
    reader.keys(top, _TOP_KEYS, "top level")
    for required in ("description", "anchor", "steps"):
        if required not in top:
            raise reader.fail("top level", f"missing {required!r}")
    version = top.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise reader.fail("version", f"this reader knows version {FORMAT_VERSION}, not {version!r}")
    description = reader.text(top["description"], "description")
    network = _parse_anchor(reader, top["anchor"])
    raw_steps = top["steps"]
    if not isinstance(raw_steps, list):
        raise reader.fail("steps", f"expected a list, got {_kind(raw_steps)}")
    steps: list[Step] = []
    last_tick = 0
    for index, raw in enumerate(raw_steps):
        step = _parse_step(reader, raw, f"steps[{index}]")
        if isinstance(step, Tick):
            if step.slot < last_tick:
                raise reader.fail(f"steps[{index}]", f"tick {step.slot} is before tick {last_tick}")
            last_tick = step.slot
        steps.append(step)
    return Vector(
        name=name,
        description=description,
        params=network.params,
        genesis=network.genesis,
        steps=tuple(steps),
    )


def _parse_anchor(reader: _Reader, value: object) -> NetworkFile:
    anchor = reader.mapping(value, "anchor")
    reader.keys(anchor, frozenset({"chain", "genesis"}), "anchor")
    if "genesis" not in anchor:
        raise reader.fail("anchor", "missing 'genesis'")
    try:
        return network_from_tables(anchor, Path(f"{reader.source}: anchor"))
    except ConfigError as exc:
        raise VectorFormatError(str(exc)) from exc


def _parse_step(reader: _Reader, value: object, where: str) -> Step:
    step = reader.mapping(value, where)
    if "tick" in step:
        reader.keys(step, frozenset({"tick"}), where)
        return Tick(reader.integer(step["tick"], f"{where}.tick"))
    if "checks" in step:
        reader.keys(step, frozenset({"checks"}), where)
        return _parse_checks(reader, step["checks"], f"{where}.checks")
    kinds = [kind for kind in MessageKind if kind.value in step]
    if len(kinds) != 1:
        raise reader.fail(where, "a step is one of tick, block, vote, evidence or checks")
    kind = kinds[0]
    allowed = {kind.value, "valid", "reason"} | (
        {"outcome"} if kind is MessageKind.BLOCK else set()
    )
    reader.keys(step, frozenset(allowed), where)
    data = reader.hex_bytes(step[kind.value], f"{where}.{kind.value}")
    valid = reader.boolean(step.get("valid", True), f"{where}.valid")
    reason: Reason | None = None
    outcome: BlockOutcomeName | None = None
    if valid:
        if "reason" in step:
            raise reader.fail(where, "a valid message has no reason")
        if "outcome" in step:
            text = reader.text(step["outcome"], f"{where}.outcome")
            try:
                outcome = BlockOutcomeName(text)
            except ValueError:
                raise reader.fail(f"{where}.outcome", f"{text!r} is not added or pruned") from None
    else:
        if "outcome" in step:
            raise reader.fail(where, "an invalid block has a reason, not an outcome")
        if "reason" not in step:
            raise reader.fail(where, "an invalid message needs a reason")
        text = reader.text(step["reason"], f"{where}.reason")
        if text not in _REASONS:
            raise reader.fail(f"{where}.reason", f"{text!r} is not a reason code")
        reason = _REASONS[text]
    return Delivery(kind=kind, data=data, valid=valid, reason=reason, outcome=outcome)


def _parse_checks(reader: _Reader, value: object, where: str) -> Checks:
    table = reader.mapping(value, where)
    reader.keys(table, _CHECK_KEYS, where)
    head = justified = finalized = None
    weights: dict[BlockId, int] | None = None
    validators: ValidatorsCheck | None = None
    proposer: dict[int, PublicKey] | None = None
    if "head" in table:
        head = BlockId(reader.hex_bytes(table["head"], f"{where}.head", 32))
    if "justified" in table:
        justified = reader.checkpoint(table["justified"], f"{where}.justified")
    if "finalized" in table:
        finalized = reader.checkpoint(table["finalized"], f"{where}.finalized")
    if "weights" in table:
        raw = reader.mapping(table["weights"], f"{where}.weights")
        weights = {
            BlockId(reader.hex_bytes(key, f"{where}.weights key", 32)): reader.integer(
                stake, f"{where}.weights[{key}]"
            )
            for key, stake in raw.items()
        }
    if "validators" in table:
        raw = reader.mapping(table["validators"], f"{where}.validators")
        reader.keys(raw, frozenset({"epoch", "stakes"}), f"{where}.validators")
        if "epoch" not in raw or "stakes" not in raw:
            raise reader.fail(f"{where}.validators", "needs an epoch and stakes")
        stakes = reader.mapping(raw["stakes"], f"{where}.validators.stakes")
        validators = ValidatorsCheck(
            epoch=reader.integer(raw["epoch"], f"{where}.validators.epoch"),
            stakes={
                PublicKey(reader.hex_bytes(key, f"{where}.validators.stakes key", 32)): (
                    reader.integer(stake, f"{where}.validators.stakes[{key}]")
                )
                for key, stake in stakes.items()
            },
        )
    if "proposer" in table:
        raw = reader.mapping(table["proposer"], f"{where}.proposer")
        proposer = {}
        for slot_text, key in raw.items():
            if not slot_text.isdigit() or (slot_text != "0" and slot_text.startswith("0")):
                raise reader.fail(f"{where}.proposer", f"{slot_text!r} is not a slot number")
            proposer[int(slot_text)] = PublicKey(
                reader.hex_bytes(key, f"{where}.proposer[{slot_text}]", 32)
            )
    return Checks(
        head=head,
        justified=justified,
        finalized=finalized,
        weights=weights,
        validators=validators,
        proposer=proposer,
    )


def load_vector(path: Path) -> Vector:
    """Read and parse one vector file.

    Raises:
        VectorFormatError: the file cannot be read, is not JSON, or breaks the format.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise VectorFormatError(f"{path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise VectorFormatError(f"{path}: not UTF-8 text") from exc
    try:
        data: object = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise VectorFormatError(f"{path}: invalid JSON: {exc}") from exc
    return parse_vector(data, name=path.stem, source=str(path))


def vector_files(directory: Path) -> list[Path]:
    """The vector files of `directory` (``*.json``, not recursive), by name.

    Raises:
        VectorFormatError: `directory` is not a directory.
    """
    if not directory.is_dir():
        raise VectorFormatError(f"{directory}: no such directory")
    return sorted(path for path in directory.iterdir() if path.suffix == VECTOR_SUFFIX)


# -- writing ---------------------------------------------------------------------------------


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _checkpoint_json(checkpoint: Checkpoint) -> dict[str, object]:
    return {"epoch": checkpoint.epoch, "block_id": _hex(checkpoint.block_id)}


def step_json(step: Step) -> dict[str, object]:
    """The JSON object of one step."""
    if isinstance(step, Tick):
        return {"tick": step.slot}
    if isinstance(step, Delivery):
        item: dict[str, object] = {step.kind.value: _hex(step.data), "valid": step.valid}
        if step.reason is not None:
            item["reason"] = step.reason.value
        if step.outcome is not None and step.outcome is not BlockOutcomeName.ADDED:
            item["outcome"] = step.outcome.value
        return item
    checks: dict[str, object] = {}
    if step.head is not None:
        checks["head"] = _hex(step.head)
    if step.justified is not None:
        checks["justified"] = _checkpoint_json(step.justified)
    if step.finalized is not None:
        checks["finalized"] = _checkpoint_json(step.finalized)
    if step.weights is not None:
        checks["weights"] = {_hex(block): stake for block, stake in sorted(step.weights.items())}
    if step.validators is not None:
        checks["validators"] = {
            "epoch": step.validators.epoch,
            "stakes": {_hex(key): stake for key, stake in sorted(step.validators.stakes.items())},
        }
    if step.proposer is not None:
        checks["proposer"] = {str(slot): _hex(key) for slot, key in sorted(step.proposer.items())}
    return {"checks": checks}


def vector_json(vector: Vector) -> dict[str, object]:
    """The JSON object of a vector (what `parse_vector` reads back)."""
    return {
        "version": FORMAT_VERSION,
        "description": vector.description,
        "anchor": network_tables(NetworkFile(params=vector.params, genesis=vector.genesis)),
        "steps": [step_json(step) for step in vector.steps],
    }


def dump_vector(vector: Vector, path: Path) -> Path:
    """Write `vector` to `path` (indented JSON, one step per line); return the path."""
    document = vector_json(vector)
    steps = document.pop("steps")
    assert isinstance(steps, list)
    head = json.dumps(document, indent=2)
    lines = ",\n".join("    " + json.dumps(step, separators=(", ", ": ")) for step in steps)
    text = head[:-2] + ',\n  "steps": [\n' + lines + "\n  ]\n}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
