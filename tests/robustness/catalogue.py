"""The hostile-input catalogue as a table, from the tests themselves.

``python -m tests.robustness.catalogue`` prints it; ``--write`` puts it into docs/testing.md
between the catalogue markers; ``--check`` exits non-zero if the page is out of date (a test
runs this, so the page cannot drift from the tests).

A *kind* of bad input is one test function with one choice of its parameters other than the
transport; each kind runs over every transport it lists. A row without the `transport` fixture
runs over one transport: WebSocket if its name says "websocket", else TCP.
"""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "testing.md"
BEGIN = "<!-- catalogue: begin (python -m tests.robustness.catalogue --write) -->"
END = "<!-- catalogue: end -->"
MIN_KINDS = 60


@dataclass
class Kind:
    module: str
    test: str
    variant: str
    transports: set[str] = field(default_factory=set)
    soak: bool = False


class _Collector:
    def __init__(self) -> None:
        self.items: list[pytest.Item] = []

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.items = list(session.items)


def collect() -> list[Kind]:
    collector = _Collector()
    args = ["--collect-only", "-qq", "-p", "no:cacheprovider", "-m", "soak or not soak"]
    with contextlib.redirect_stdout(io.StringIO()):
        code = pytest.main([*args, str(ROOT / "tests" / "robustness")], plugins=[collector])
    if code != 0:
        raise SystemExit(f"collecting the catalogue failed ({code})")
    kinds: dict[tuple[str, str, str], Kind] = {}
    for item in collector.items:
        assert isinstance(item, pytest.Function)
        params = dict(item.callspec.params) if hasattr(item, "callspec") else {}
        transport = str(params.pop("transport", "ws" if "websocket" in item.name else "tcp"))
        ident = item.callspec.id if hasattr(item, "callspec") else ""
        variant = "-".join(part for part in ident.split("-") if part not in ("tcp", "ws"))
        if not params:
            variant = ""
        module = Path(str(item.path)).name
        if module == Path(__file__).name.replace("catalogue", "test_catalogue"):
            continue  # the check of this table is not a kind of bad input
        key = (module, item.originalname, variant)
        kind = kinds.setdefault(key, Kind(module, item.originalname, variant))
        kind.transports.add(transport)
        kind.soak = kind.soak or item.get_closest_marker("soak") is not None
    return list(kinds.values())


def table(kinds: list[Kind]) -> str:
    quick = sum(not kind.soak for kind in kinds)
    lines = [
        BEGIN,
        "",
        f"{len(kinds)} kinds of bad input ({quick} in the quick subset, {len(kinds) - quick} "
        "more with `-m soak`), each over the transports listed.",
        "",
        "| file | row | variant | transports | run |",
        "|---|---|---|---|---|",
    ]
    for kind in sorted(kinds, key=lambda k: (k.module, k.test, k.variant)):
        row = kind.test.removeprefix("test_").replace("_", " ")
        variant = f"`{kind.variant}`" if kind.variant else ""
        run = "soak" if kind.soak else "quick"
        transports = ", ".join(sorted(kind.transports))
        lines.append(f"| `{kind.module}` | {row} | {variant} | {transports} | {run} |")
    lines += ["", END]
    return "\n".join(lines)


def page_with(text: str, new_table: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + new_table + text[end:]


def main(argv: list[str]) -> int:
    kinds = collect()
    new_table = table(kinds)
    if "--write" in argv:
        PAGE.write_text(page_with(PAGE.read_text(), new_table))
        return 0
    if "--check" in argv:
        if len(kinds) < MIN_KINDS:
            print(f"the catalogue has {len(kinds)} kinds, fewer than {MIN_KINDS}")
            return 1
        if page_with(PAGE.read_text(), new_table) != PAGE.read_text():
            print("docs/testing.md is out of date: python -m tests.robustness.catalogue --write")
            return 1
        return 0
    print(new_table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
