"""pytest plugin: collect consensus step vector files as tests.

``pytest -p p2pchain.testing.vectors.pytest_plugin path/to/vectors`` makes every ``*.json`` file
that looks like a vector (it mentions ``"anchor"`` and ``"steps"``) one test run against the
pure store, plus one against a node with ``--vectors-node``. A failure shows the vector's
failures, one per line; a file that breaks the format fails with its one-line error. To run a
directory from a test module of your own instead, parametrize over
`p2pchain.testing.vectors.vector_params` and call `check_vector`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pchain.testing.vectors.format import VectorFormatError, load_vector
from p2pchain.testing.vectors.node import run_vector_on_node
from p2pchain.testing.vectors.runner import Failure, run_vector


class VectorFailed(Exception):
    """A vector whose run differed from it (or that could not be read)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("p2pchain-vectors", "p2pchain consensus step vectors")
    group.addoption(
        "--vectors-node",
        action="store_true",
        default=False,
        help="also run every collected vector against a node on a simulated network",
    )


def _looks_like_vector(path: Path) -> bool:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return False
    return '"anchor"' in text and '"steps"' in text


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.suffix == ".json" and _looks_like_vector(file_path):
        return VectorFile.from_parent(parent, path=file_path)
    return None


class VectorFile(pytest.File):
    """One vector file: a "store" test, and a "node" test with ``--vectors-node``."""

    def collect(self) -> Iterator[pytest.Item]:
        yield VectorItem.from_parent(self, name="store")
        if self.config.getoption("vectors_node"):
            yield VectorItem.from_parent(self, name="node")


class VectorItem(pytest.Item):
    """Run the parent's vector on the store (name "store") or on a node (name "node")."""

    def runtest(self) -> None:
        try:
            vector = load_vector(self.path)
        except VectorFormatError as exc:
            raise VectorFailed(str(exc)) from exc
        failures: list[Failure] = (
            run_vector_on_node(vector) if self.name == "node" else run_vector(vector)
        )
        if failures:
            raise VectorFailed("\n".join(str(failure) for failure in failures))

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: object = None,
    ) -> str:
        if isinstance(excinfo.value, VectorFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"vector {self.path.stem} on the {self.name}"
