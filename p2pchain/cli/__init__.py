"""The ``p2pchain`` command: init a network, run a node, run a local testnet, use a wallet.

Every command has ``--help``. Errors are one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

from collections.abc import Sequence

from p2pchain.cli.commands import cli


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `p2pchain` console script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="p2pchain")


__all__ = ["cli", "main"]
