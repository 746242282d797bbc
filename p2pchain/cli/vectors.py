"""`p2pchain vectors run DIR`: run consensus step vectors and report one line per vector."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from p2pchain.testing.vectors import (
    Failure,
    VectorFormatError,
    load_vector,
    run_vector,
    run_vector_on_node,
    vector_files,
)


@dataclass(frozen=True, slots=True)
class Summary:
    passed: int
    failed: int


@contextmanager
def quiet_node_logs() -> Iterator[None]:
    """Keep the node's own warnings (reorgs, pruned blocks) out of the report."""
    logger = logging.getLogger("p2pchain")
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)


def _first(failures: list[Failure], where: str) -> str:
    first = failures[0]
    step = "" if first.step is None else f"step {first.step}: "
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    return f"{where}{step}{first.message}{more}"


def run_directory(directory: Path, *, node: bool, echo: Callable[[str], None]) -> Summary:
    """Run every vector file of `directory` on the store (and a node), one line each.

    Raises:
        VectorFormatError: `directory` is not a directory.
    """
    paths = vector_files(directory)
    passed = failed = 0
    for path in paths:
        try:
            vector = load_vector(path)
        except VectorFormatError as exc:
            failed += 1
            echo(f"FAIL  {path.stem}: malformed vector: {exc}")
            continue
        problems: list[str] = []
        store_failures = run_vector(vector)
        if store_failures:
            problems.append(_first(store_failures, "store: " if node else ""))
        if node:
            node_failures = run_vector_on_node(vector)
            if node_failures:
                problems.append(_first(node_failures, "node: "))
        if problems:
            failed += 1
            echo(f"FAIL  {vector.name}: {'; '.join(problems)}")
        else:
            passed += 1
            echo(f"ok    {vector.name}")
    return Summary(passed=passed, failed=failed)
