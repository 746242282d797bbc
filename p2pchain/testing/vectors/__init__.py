"""Consensus step vectors: files that hold any implementation of p2pchain's consensus to the
same results, their runners, their generator and an exporter (docs/testing.md, "Consensus step
vectors").

- `load_vector` / `parse_vector` / `dump_vector`: the JSON format.
- `run_vector(vector)`: against the pure fork-choice store; `run_vector_on_node(vector)`:
  against one real node fed the same wire bytes through its gossip hook. Both return a list of
  `Failure` ([] when the vector passes).
- `shipped_vectors()`: the vectors that come with p2pchain (`data/`, made by
  ``python -m p2pchain.testing.vectors.generate DIR``).
- `export_vector` / `vector_on_failure`: write a property test's example as a vector.
- `vector_params(directory)`: pytest parameters, one per file, for a suite of your own; or
  ``pytest -p p2pchain.testing.vectors.pytest_plugin DIR`` to collect vector files directly.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from p2pchain.testing.vectors.format import FORMAT_VERSION as FORMAT_VERSION
from p2pchain.testing.vectors.format import Checks as Checks
from p2pchain.testing.vectors.format import Delivery as Delivery
from p2pchain.testing.vectors.format import MessageKind as MessageKind
from p2pchain.testing.vectors.format import Step as Step
from p2pchain.testing.vectors.format import Tick as Tick
from p2pchain.testing.vectors.format import ValidatorsCheck as ValidatorsCheck
from p2pchain.testing.vectors.format import Vector as Vector
from p2pchain.testing.vectors.format import VectorFormatError as VectorFormatError
from p2pchain.testing.vectors.format import dump_vector as dump_vector
from p2pchain.testing.vectors.format import load_vector as load_vector
from p2pchain.testing.vectors.format import parse_vector as parse_vector
from p2pchain.testing.vectors.format import vector_files as vector_files
from p2pchain.testing.vectors.format import vector_json as vector_json
from p2pchain.testing.vectors.node import run_vector_on_node as run_vector_on_node
from p2pchain.testing.vectors.node import run_vector_on_node_async as run_vector_on_node_async
from p2pchain.testing.vectors.record import VectorBuilder as VectorBuilder
from p2pchain.testing.vectors.record import build_export as build_export
from p2pchain.testing.vectors.record import export_vector as export_vector
from p2pchain.testing.vectors.record import vector_on_failure as vector_on_failure
from p2pchain.testing.vectors.runner import Failure as Failure
from p2pchain.testing.vectors.runner import run_vector as run_vector


def shipped_directory() -> Path:
    """The directory of the vectors shipped with p2pchain (package data)."""
    return Path(str(resources.files("p2pchain.testing.vectors") / "data"))


def shipped_vectors() -> list[Vector]:
    """Every shipped vector, by name."""
    return [load_vector(path) for path in vector_files(shipped_directory())]


def load_vectors(directory: Path) -> list[Vector]:
    """Every vector file of `directory`, by name.

    Raises:
        VectorFormatError: the directory is missing or a file breaks the format.
    """
    return [load_vector(path) for path in vector_files(directory)]


def check_vector(vector: Vector | VectorFormatError, *, node: bool = False) -> None:
    """Run `vector` (on the store, or on a node) and raise `AssertionError` listing every
    failure: the body of a test over vector files (a file that could not be read arrives as
    its `VectorFormatError` and fails with it)."""
    if isinstance(vector, VectorFormatError):
        raise AssertionError(str(vector))
    failures = run_vector_on_node(vector) if node else run_vector(vector)
    if failures:
        raise AssertionError("\n".join(str(failure) for failure in failures))


def vector_params(directory: Path | str) -> list[object]:
    """One ``pytest.param(vector, id=name)`` per vector file of `directory`, for
    ``@pytest.mark.parametrize("vector", vector_params(DIR))`` with `check_vector` as the test
    body; a file that breaks the format is passed as its `VectorFormatError`, so that its test
    fails with the one-line error.

    Raises:
        VectorFormatError: `directory` is not a directory.
    """
    import pytest

    params: list[object] = []
    for path in vector_files(Path(directory)):
        try:
            vector: Vector | VectorFormatError = load_vector(path)
        except VectorFormatError as exc:
            vector = exc
        params.append(pytest.param(vector, id=path.stem))
    return params


__all__ = [
    "FORMAT_VERSION",
    "Checks",
    "Delivery",
    "Failure",
    "MessageKind",
    "Step",
    "Tick",
    "ValidatorsCheck",
    "Vector",
    "VectorBuilder",
    "VectorFormatError",
    "build_export",
    "check_vector",
    "dump_vector",
    "export_vector",
    "load_vector",
    "load_vectors",
    "parse_vector",
    "run_vector",
    "run_vector_on_node",
    "run_vector_on_node_async",
    "shipped_directory",
    "shipped_vectors",
    "vector_files",
    "vector_json",
    "vector_on_failure",
    "vector_params",
]
