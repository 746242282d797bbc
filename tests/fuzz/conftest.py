"""Deep fuzz variants (`-m fuzz`) are long by design: an hour each, not the suite's 300 s.

Under the `fuzz` profile a deep property draws 5,000 examples, and pytest-timeout's limit,
meant to catch hangs, would otherwise fire inside Hypothesis and be reported as a flaky failure.
"""

import pytest

DEEP_TIMEOUT_S = 3_600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("fuzz") is not None:
            item.add_marker(pytest.mark.timeout(DEEP_TIMEOUT_S))
