"""One real node process per catalogue module, and fresh loopback network groups for its rows."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.robustness.harness import NodeProcess, Sources, start_node

TRANSPORTS = ("tcp", "ws")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = start_node(Path(tmp_path_factory.mktemp("robustness")))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def sources() -> Sources:
    return Sources()


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)
