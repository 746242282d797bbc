"""The `p2pchain` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from p2pchain import __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `p2pchain` console script."""
    parser = argparse.ArgumentParser(prog="p2pchain", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("version", help="print the version")
    args = parser.parse_args(argv)
    if args.command == "version":
        print(f"p2pchain {__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
