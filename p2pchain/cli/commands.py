"""Click commands. Each turns p2pchain's typed errors into a one-line message and exit code 1."""

from __future__ import annotations

from pathlib import Path

import click

from p2pchain import __version__
from p2pchain.cli.config import load_node
from p2pchain.cli.logs import configure_logging
from p2pchain.cli.network import init_network
from p2pchain.errors import P2PChainError
from p2pchain.params import ChainParams


class _Group(click.Group):
    """A group whose commands report library errors as one clear line, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (P2PChainError, OSError) as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
    help="Logging threshold for the p2pchain loggers.",
)
@click.option(
    "--log-format",
    type=click.Choice(["plain", "json"]),
    default="plain",
    show_default=True,
    help="Plain text lines, or one JSON object per line (ts, level, logger, node, msg).",
)
def cli(log_level: str, log_format: str) -> None:
    """p2pchain: a proof-of-stake UTXO chain. Start with `p2pchain testnet`."""
    configure_logging(log_level, log_format)


@cli.command()
def version() -> None:
    """Print the version."""
    click.echo(f"p2pchain {__version__}")


@cli.command()
@click.option("--dir", "root", type=click.Path(path_type=Path), required=True, help="Output dir.")
@click.option("--nodes", default=4, show_default=True, help="Number of validator nodes.")
@click.option("--chain-id", default=1337, show_default=True)
@click.option("--slot-ms", default=1000, show_default=True, help="Slot length in ms.")
@click.option("--slots-per-epoch", default=8, show_default=True)
@click.option("--base-port", default=30300, show_default=True, help="First P2P port (TCP, WS).")
@click.option("--rpc-port", default=8645, show_default=True, help="First JSON-RPC port.")
@click.option("--wallets", default=4, show_default=True, help="Funded demo wallets.")
def init(
    root: Path,
    nodes: int,
    chain_id: int,
    slot_ms: int,
    slots_per_epoch: int,
    base_port: int,
    rpc_port: int,
    wallets: int,
) -> None:
    """Write a genesis, node configs and keys for a new local network."""
    params = ChainParams(chain_id=chain_id, slot_ms=slot_ms, slots_per_epoch=slots_per_epoch)
    layout = init_network(
        root,
        nodes=nodes,
        params=params,
        base_port=base_port,
        rpc_port=rpc_port,
        wallets=wallets,
    )
    click.echo(f"network: {layout.network}")
    for path in layout.nodes:
        click.echo(f"node:    {path}")
    click.echo("demo wallet keys (publicly known, for local testnets only):")
    for path in layout.wallets:
        click.echo(f"  {path}")


@cli.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    required=True,
    help="node.toml written by `p2pchain init`.",
)
def node(config_path: Path) -> None:
    """Run one node until Ctrl-C (JSON-RPC and metrics as configured)."""
    import trio

    from p2pchain.cli.run import run_node, run_until_signalled

    node_file = load_node(config_path)
    trio.run(run_until_signalled, lambda: run_node(node_file))
    click.echo("stopped", err=True)


@cli.command()
@click.option("--nodes", default=4, show_default=True, help="Validator nodes (OS processes).")
@click.option(
    "--dir",
    "root",
    type=click.Path(path_type=Path),
    default=Path("testnet"),
    show_default=True,
    help="Network directory; an existing one is resumed.",
)
@click.option("--slot-ms", default=1000, show_default=True, help="Slot length (new networks).")
@click.option("--slots-per-epoch", default=8, show_default=True)
@click.option("--tx-rate", default=1.0, show_default=True, help="Demo payments per second.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--base-port", default=30300, show_default=True)
@click.option("--rpc-port", default=8645, show_default=True)
@click.option("--node-log-level", default="info", show_default=True)
def testnet(
    nodes: int,
    root: Path,
    slot_ms: int,
    slots_per_epoch: int,
    tx_rate: float,
    duration: float | None,
    base_port: int,
    rpc_port: int,
    node_log_level: str,
) -> None:
    """Run a local multi-validator network with a live status table (Ctrl-C stops it)."""
    import trio
    from rich.console import Console

    from p2pchain.cli.run import run_until_signalled
    from p2pchain.cli.testnet import run_testnet

    params = ChainParams(slot_ms=slot_ms, slots_per_epoch=slots_per_epoch)
    console = Console()

    async def main() -> None:
        await run_testnet(
            root,
            nodes=nodes,
            params=params,
            tx_rate=tx_rate,
            duration=duration,
            log_level=node_log_level,
            base_port=base_port,
            rpc_port=rpc_port,
            console=console,
        )

    trio.run(run_until_signalled, main)
    console.print(f"stopped; network directory: {root} (run again to resume)")
