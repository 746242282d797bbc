"""The catalogue's table in docs/testing.md is the one the tests make, and it has at least 60
kinds of bad input."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_documented_catalogue_is_the_tests_catalogue() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.robustness.catalogue", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
