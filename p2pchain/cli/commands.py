"""Click commands. Each turns p2pchain's typed errors into a one-line message and exit code 1."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import click
from click.core import ParameterSource
from trio_websocket import HandshakeError

from p2pchain import __version__
from p2pchain.cli.config import LOG_LEVELS, load_node
from p2pchain.cli.deploy import DEPLOY_KINDS, check_deployment_free, write_deployment
from p2pchain.cli.logs import configure_logging
from p2pchain.cli.network import init_network
from p2pchain.cli.rpc_client import JSON
from p2pchain.consensus import ProposalStatus
from p2pchain.errors import ConfigError, P2PChainError
from p2pchain.ledger.encoding import decode
from p2pchain.ledger.partial import PartialTransaction
from p2pchain.ledger.tx import VoteChoice
from p2pchain.ledger.types import AssetId
from p2pchain.params import MAX_BENEFICIARY_BYTES, MAX_PURPOSE_BYTES, NATIVE_ASSET, ChainParams


def _innermost(exc: BaseException) -> BaseException:
    """The single error inside nested exception groups (trio wraps task errors in them)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class _Group(click.Group):
    """A group whose commands report library and connection errors as one clear line."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            leaf = _innermost(exc)
            if isinstance(leaf, P2PChainError | OSError | HandshakeError):
                cause = leaf.__cause__ or leaf.__context__
                detail = str(leaf) or (f"{type(cause).__name__}: {cause}" if cause else "")
                raise click.ClickException(f"{type(leaf).__name__}: {detail}") from exc
            raise


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="p2pchain", message="%(prog)s %(version)s")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS),
    default="warning",
    show_default=True,
    help="Logging threshold for the p2pchain loggers (`node` takes node.toml's unless given).",
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


COUNT = click.IntRange(min=1)


class _SlotMs(click.ParamType[int | str, object]):
    """A slot length in ms (at least 1), or ``manual``: slots only on `testnet mine`."""

    name = "MS|manual"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int | str:
        if str(value).strip().lower() == "manual":
            return "manual"
        try:
            slot_ms = int(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a number of milliseconds or 'manual'", param, ctx)
        if slot_ms < 1:
            self.fail(f"{slot_ms} is not at least 1 (or 'manual')", param, ctx)
        return slot_ms


MANUAL_SLOT_MS = 1_000
"""The slot length a manual-clock testnet's chain parameters carry (time is in slots there)."""
PORT = click.IntRange(1, 65535)
METRICS_PORT_OPTION = click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=9645,
    show_default=True,
    help="First metrics port (0: no metrics).",
)


@cli.command()
def version() -> None:
    """Print the version."""
    click.echo(f"p2pchain {__version__}")


@cli.command()
@click.option("--dir", "root", type=click.Path(path_type=Path), required=True, help="Output dir.")
@click.option(
    "--nodes", type=COUNT, default=4, show_default=True, help="Number of validator nodes."
)
@click.option("--chain-id", type=click.IntRange(0, 2**64 - 1), default=1337, show_default=True)
@click.option("--slot-ms", type=COUNT, default=1000, show_default=True, help="Slot length in ms.")
@click.option("--slots-per-epoch", type=COUNT, default=8, show_default=True)
@click.option(
    "--base-port", type=PORT, default=30300, show_default=True, help="First P2P port (TCP, WS)."
)
@click.option("--rpc-port", type=PORT, default=8645, show_default=True, help="First JSON-RPC port.")
@METRICS_PORT_OPTION
@click.option(
    "--wallets",
    type=click.IntRange(min=0),
    default=4,
    show_default=True,
    help="Funded demo wallets.",
)
@click.option(
    "--deploy",
    type=click.Choice(DEPLOY_KINDS),
    default=None,
    help="Also write container deployment files: compose.yaml, or Kubernetes manifests in "
    "k8s/ (docs/deploy.md).",
)
def init(
    root: Path,
    nodes: int,
    chain_id: int,
    slot_ms: int,
    slots_per_epoch: int,
    base_port: int,
    rpc_port: int,
    metrics_port: int,
    wallets: int,
    deploy: str | None,
) -> None:
    """Write a genesis, node configs and keys for a new local network."""
    params = ChainParams(chain_id=chain_id, slot_ms=slot_ms, slots_per_epoch=slots_per_epoch)
    if deploy is not None:
        check_deployment_free(root, deploy, nodes)
    layout = init_network(
        root,
        nodes=nodes,
        params=params,
        base_port=base_port,
        rpc_port=rpc_port,
        metrics_port=metrics_port or None,
        wallets=wallets,
    )
    click.echo(f"network: {layout.network}")
    for path in layout.nodes:
        click.echo(f"node:    {path}")
    if deploy is not None:
        deployed = write_deployment(
            layout,
            deploy,
            base_port=base_port,
            rpc_port=rpc_port,
            metrics_port=metrics_port or None,
        )
        for path in deployed:
            click.echo(f"deploy:  {path}")
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
    root = click.get_current_context().find_root()
    if root.get_parameter_source("log_level") is not ParameterSource.COMMANDLINE:
        configure_logging(node_file.log_level, str(root.params["log_format"]))
    trio.run(run_until_signalled, lambda: run_node(node_file))
    click.echo("stopped", err=True)


DIR_OPTION = click.option(
    "--dir",
    "root",
    type=click.Path(path_type=Path),
    default=Path("testnet"),
    show_default=True,
    help="Network directory (`testnet` resumes an existing one).",
)


@cli.group(invoke_without_command=True)
@click.option(
    "--nodes", type=COUNT, default=4, show_default=True, help="Validator nodes (OS processes)."
)
@DIR_OPTION
@click.option(
    "--slot-ms",
    type=_SlotMs(),
    default=1000,
    show_default=True,
    help="Slot length (new networks), or `manual`: slots only on `testnet mine [N]`.",
)
@click.option("--slots-per-epoch", type=COUNT, default=8, show_default=True)
@click.option(
    "--tx-rate",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Demo payments per second.",
)
@click.option(
    "--duration", type=click.FloatRange(min=0), default=None, help="Stop after this many seconds."
)
@click.option("--base-port", type=PORT, default=30300, show_default=True)
@click.option("--rpc-port", type=PORT, default=8645, show_default=True)
@METRICS_PORT_OPTION
@click.option("--node-log-level", default="info", show_default=True)
@click.option(
    "--hosts",
    type=click.Choice(["local", "netns"]),
    default="local",
    show_default=True,
    help="local: every node on loopback, links through relays; netns: each node in a Linux "
    "network namespace of its own on 10.77.0.0/24 (root; one such testnet per machine).",
)
def testnet(
    nodes: int,
    root: Path,
    slot_ms: int | str,
    slots_per_epoch: int,
    tx_rate: float,
    duration: float | None,
    base_port: int,
    rpc_port: int,
    metrics_port: int,
    node_log_level: str,
    hosts: str,
) -> None:
    """Run a local multi-validator network with a live status table (Ctrl-C stops it).

    With a subcommand (`accounts`, `faucet`), act on the network directory instead.
    """
    if click.get_current_context().invoked_subcommand is not None:
        return
    import trio
    from rich.console import Console

    from p2pchain.cli.run import run_until_signalled
    from p2pchain.cli.testnet import check_existing_network, run_testnet

    context = click.get_current_context()
    given: dict[str, int | str] = {
        "nodes": nodes,
        "slot-ms": slot_ms,
        "slots-per-epoch": slots_per_epoch,
        "base-port": base_port,
        "rpc-port": rpc_port,
        "hosts": hosts,
    }
    check_existing_network(
        root,
        {
            flag: value
            for flag, value in given.items()
            if context.get_parameter_source(flag.replace("-", "_")) is ParameterSource.COMMANDLINE
        },
    )
    manual = slot_ms == "manual"
    slot_length = MANUAL_SLOT_MS if isinstance(slot_ms, str) else slot_ms
    params = ChainParams(slot_ms=slot_length, slots_per_epoch=slots_per_epoch)
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
            metrics_port=metrics_port or None,
            console=console,
            manual_clock=manual,
            hosts=hosts,
        )

    trio.run(run_until_signalled, main)
    console.print(f"stopped; network directory: {root} (run again to resume)")


@testnet.command("accounts")
@DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
def testnet_accounts(root: Path, as_json: bool) -> None:
    """List the funded demo wallets (address, key file, balance) and each node's log, data
    directory, RPC and metrics URLs; balances come from the first node that answers."""
    import json

    import trio

    from p2pchain.cli.testnet import describe_network

    description = trio.run(describe_network, root)
    if as_json:
        click.echo(json.dumps(description, indent=2))
        return
    for wallet in description["wallets"]:
        balance = "-" if wallet["balance"] is None else wallet["balance"]
        click.echo(f"wallet {wallet['address']}  balance {balance}  key {wallet['keyFile']}")
    for node in description["nodes"]:
        click.echo(
            f"node{node['index']}  rpc {node['rpcUrl']}  metrics {node['metricsUrl'] or '-'}"
            f"  log {node['log']}  data {node['dataDir']}"
        )


def _control(root: Path, request: dict[str, JSON]) -> dict[str, JSON]:
    import trio

    from p2pchain.cli.control import control

    return trio.run(control, root, request)


@testnet.command("status")
@DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
def testnet_status(root: Path, as_json: bool) -> None:
    """Ask the running supervisor which node processes run (pid, exit code, restarts)."""
    import json

    answer = _control(root, {"command": "status"})
    nodes = answer["nodes"]
    assert isinstance(nodes, list)
    if as_json:
        click.echo(json.dumps(nodes, indent=2))
        return
    for node in nodes:
        assert isinstance(node, dict)
        state = "running" if node["running"] else f"exited {node['exitCode']}"
        click.echo(f"node{node['index']}  {state}  pid {node['pid']}  restarts {node['restarts']}")


@testnet.command("kill")
@DIR_OPTION
@click.argument("node", type=click.IntRange(min=0))
def testnet_kill(root: Path, node: int) -> None:
    """SIGKILL node NODE of the running testnet (no shutdown code runs, as in a crash)."""
    _control(root, {"command": "kill", "node": node})
    click.echo(f"node{node} killed")


@testnet.command("restart")
@DIR_OPTION
@click.argument("node", type=click.IntRange(min=0))
def testnet_restart(root: Path, node: int) -> None:
    """Start node NODE again (killing it first if it runs); it resumes from its data dir."""
    answer = _control(root, {"command": "restart", "node": node})
    described = answer["node"]
    assert isinstance(described, dict)
    click.echo(f"node{node} restarted (pid {described['pid']})")


@testnet.command("skew")
@DIR_OPTION
@click.argument("node", type=click.IntRange(min=0))
@click.argument("skew_ms", metavar="MS", type=click.IntRange(-86_400_000, 86_400_000))
def testnet_skew(root: Path, node: int, skew_ms: int) -> None:
    """Set node NODE's clock MS milliseconds off the wall clock (negative: behind) while it runs
    (a node of an older network is restarted with it); 0 puts it back on time."""
    _control(root, {"command": "skew", "node": node, "ms": skew_ms})
    click.echo(f"node{node}: clock {skew_ms:+d} ms off")


@testnet.command("mine")
@DIR_OPTION
@click.argument("slots", type=click.IntRange(1, 1_000), default=1)
@click.option("--json", "as_json", is_flag=True, help='{"slot": ..., "height": ...}.')
def testnet_mine(root: Path, slots: int, as_json: bool) -> None:
    """Produce the next SLOTS slots of a `--slot-ms manual` testnet now: each slot's proposer
    makes its block, then the validators due vote, so finality follows as usual."""
    import json

    answer = _control(root, {"command": "mine", "slots": slots})
    if as_json:
        click.echo(json.dumps({"slot": answer["slot"], "height": answer["height"]}))
    else:
        click.echo(f"slot {answer['slot']}, head height {answer['height']}")


class _Milliseconds(click.ParamType[int, object]):
    """``300ms``, ``1.5s`` or a bare number of milliseconds."""

    name = "DURATION"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower()
        scale, number = (1, text.removesuffix("ms")) if text.endswith("ms") else (1, text)
        if not text.endswith("ms") and text.endswith("s"):
            scale, number = 1000, text.removesuffix("s")
        try:
            milliseconds = float(number) * scale
        except ValueError:
            self.fail(f"{value!r} is not a duration like 300ms or 1.5s", param, ctx)
        if not 0 <= milliseconds <= 60_000:
            self.fail(f"{value!r} is not between 0 and 60s", param, ctx)
        return round(milliseconds)


class _Percent(click.ParamType[float, object]):
    """``10%`` or ``10``: at least 0 and below 100."""

    name = "PERCENT"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            percent = float(str(value).strip().removesuffix("%"))
        except ValueError:
            self.fail(f"{value!r} is not a percentage like 10%", param, ctx)
        if not 0 <= percent < 100:
            self.fail(f"{value!r} is not at least 0% and below 100%", param, ctx)
        return percent


class _NodeGroup(click.ParamType[list[int], object]):
    """A comma-separated list of node indices: ``0,1``."""

    name = "NODES"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> list[int]:
        try:
            nodes = [int(part) for part in str(value).split(",")]
        except ValueError:
            self.fail(f"{value!r} is not a list of node indices like 0,1", param, ctx)
        if any(node < 0 for node in nodes):
            self.fail(f"{value!r} names a negative node", param, ctx)
        return nodes


def _show_links(answer: dict[str, JSON]) -> None:
    links = answer.get("links")
    assert isinstance(links, dict)
    groups = links["partition"]
    assert isinstance(groups, list)
    text = " | ".join(
        ",".join(str(i) for i in group) for group in groups if isinstance(group, list)
    )
    click.echo(f"partition: {text or 'none'}")
    click.echo(f"delay ms: {links['delayMs'] or 'none'}  loss %: {links['lossPercent'] or 'none'}")


@testnet.command("partition")
@DIR_OPTION
@click.argument("groups", nargs=-1, required=True, type=_NodeGroup())
def testnet_partition(root: Path, groups: tuple[list[int], ...]) -> None:
    """Cut the links between GROUPS of nodes (``0,1 2,3``; nodes not named form one more
    group): open links stall, new ones are refused, until `heal`."""
    answer = _control(
        root, {"command": "partition", "groups": [list[JSON](group) for group in groups]}
    )
    _show_links(answer)


@testnet.command("heal")
@DIR_OPTION
def testnet_heal(root: Path) -> None:
    """Remove the partition: held bytes flow again and refused links can be made."""
    _show_links(_control(root, {"command": "heal"}))


@testnet.command("delay")
@DIR_OPTION
@click.argument("node", type=click.IntRange(min=0))
@click.argument("delay_ms", metavar="DURATION", type=_Milliseconds())
def testnet_delay(root: Path, node: int, delay_ms: int) -> None:
    """Delay every byte to and from node NODE by DURATION (one way: ``300ms``; 0 removes)."""
    _show_links(_control(root, {"command": "delay", "node": node, "ms": delay_ms}))


@testnet.command("drop")
@DIR_OPTION
@click.argument("node", type=click.IntRange(min=0))
@click.argument("percent", type=_Percent())
def testnet_drop(root: Path, node: int, percent: float) -> None:
    """Lose PERCENT of the chunks to and from node NODE (``10%``), each lost chunk arriving
    a retransmission timeout late, as TCP makes loss look; 0 removes."""
    _show_links(_control(root, {"command": "drop", "node": node, "percent": percent}))


@testnet.command("faucet")
@DIR_OPTION
@click.argument("address")
@click.argument("amount", type=click.IntRange(min=1))
@click.option("--asset", default=None, help="Asset id (hex); default the native coin.")
def testnet_faucet(root: Path, address: str, amount: int, asset: str | None) -> None:
    """Pay AMOUNT base units to ADDRESS from the first demo wallet that can; print the txid."""
    import trio

    from p2pchain.cli.testnet import faucet

    click.echo(trio.run(partial(faucet, root, address, amount, asset=asset)))


@cli.group()
def wallet() -> None:
    """Keys, balances, payments and trades (signs locally, talks to a node over RPC)."""


def _rpc_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Refuse what cannot be a node's RPC endpoint before trying to connect to it."""
    scheme, _, rest = value.partition("://")
    if scheme not in ("ws", "wss") or not rest or rest.startswith(("/", ":")):
        raise click.BadParameter(f"{value!r} is not a WebSocket URL (ws://host:port)")
    return value


RPC_OPTION = click.option(
    "--rpc",
    "rpc_url",
    default="ws://127.0.0.1:8645",
    show_default=True,
    callback=_rpc_url,
    help="A node's JSON-RPC WebSocket URL.",
)
POSITIVE = click.IntRange(min=1)
NOT_NEGATIVE = click.IntRange(min=0)
KEY_OPTION = click.option(
    "--key", "key_file", type=click.Path(path_type=Path), required=True, help="Key file (hex)."
)


@wallet.command("new")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="New key file.")
@click.option("--prefix", default="dp2p", show_default=True, help="Address prefix to show.")
def wallet_new(out: Path, prefix: str) -> None:
    """Create a new key file (mode 0600) and print its address."""
    from p2pchain.cli.wallet import address_text, new_key

    click.echo(address_text(new_key(out), prefix))


@wallet.command("address")
@KEY_OPTION
@click.option("--prefix", default="dp2p", show_default=True, help="Address prefix (offline).")
@click.option("--json", "as_json", is_flag=True, help='{"address": ..., "publicKey": ...}.')
@RPC_OPTION
def wallet_address(key_file: Path, prefix: str, as_json: bool, rpc_url: str) -> None:
    """Print the address of a key: offline with --prefix, or as the node at --rpc spells it."""
    import json

    from p2pchain.cli.config import read_key
    from p2pchain.cli.wallet import address_of_key, address_text

    key = read_key(key_file)
    context = click.get_current_context()
    if context.get_parameter_source("rpc_url") is not ParameterSource.COMMANDLINE:  # offline
        address = address_text(key, prefix)
    else:
        import trio

        address = trio.run(address_of_key, rpc_url, key_file)
    if as_json:
        click.echo(json.dumps({"address": address, "publicKey": key.public_key.hex()}))
    else:
        click.echo(address)


@wallet.command("balance")
@click.argument("address")
@click.option("--base-units", is_flag=True, help="Native amounts in base units, not coins.")
@click.option("--json", "as_json", is_flag=True, help="{asset id: base units} as JSON.")
@RPC_OPTION
def wallet_balance(address: str, base_units: bool, as_json: bool, rpc_url: str) -> None:
    """Print the balance of ADDRESS per asset: the native coin in coins (8 decimals), issued
    assets in their units."""
    import json

    import trio

    from p2pchain.cli.wallet import balances, coins_text

    totals = trio.run(balances, rpc_url, address)
    if as_json:
        click.echo(json.dumps(totals))
        return
    if not totals:
        click.echo(f"{address} holds nothing")
    native = "0x" + NATIVE_ASSET.hex()
    for asset, amount in totals.items():
        if asset == native and not base_units:
            click.echo(f"native {coins_text(int(amount))} coins")
        else:
            click.echo(f"{asset} {amount}")


@wallet.command("send")
@KEY_OPTION
@click.option("--to", required=True, help="Recipient address.")
@click.option("--amount", type=POSITIVE, required=True, help="Base units.")
@click.option("--asset", default=None, help="Asset id (hex); default the native coin.")
@click.option(
    "--fee",
    type=NOT_NEGATIVE,
    default=None,
    help="Base units (default: 10000, or the chain's min_fee_rate floor if higher).",
)
@click.option("--wait/--no-wait", default=False, help="Wait until finalized or rejected.")
@RPC_OPTION
def wallet_send(
    key_file: Path,
    to: str,
    amount: int,
    asset: str | None,
    fee: int | None,
    wait: bool,
    rpc_url: str,
) -> None:
    """Sign and submit a payment; print its transaction id."""
    import trio

    from p2pchain.cli.wallet import send

    click.echo(
        trio.run(partial(send, rpc_url, key_file, to, amount, asset=asset, fee=fee, wait=wait))
    )


@wallet.command("issue-asset")
@KEY_OPTION
@click.option("--name", required=True, help="Asset name (1..32 bytes UTF-8).")
@click.option("--amount", type=POSITIVE, required=True, help="Units created now.")
@click.option(
    "--cap", type=NOT_NEGATIVE, default=0, show_default=True, help="Supply cap (0 = none)."
)
@click.option(
    "--fee",
    type=NOT_NEGATIVE,
    default=None,
    help="Base units (default: 10000, or the chain's min_fee_rate floor if higher).",
)
@click.option("--wait/--no-wait", default=False, help="Wait until finalized or rejected.")
@RPC_OPTION
def wallet_issue_asset(
    key_file: Path, name: str, amount: int, cap: int, fee: int | None, wait: bool, rpc_url: str
) -> None:
    """Issue a new asset owned by this key; print its asset id and transaction id."""
    import trio

    from p2pchain.cli.wallet import issue_asset

    asset, status = trio.run(
        partial(issue_asset, rpc_url, key_file, name, amount, cap=cap, fee=fee, wait=wait)
    )
    click.echo(f"asset {asset}")
    click.echo(status)


class _Asset(click.ParamType[AssetId, object]):
    """``native`` or a 32-byte hex asset id (``0x`` optional); only the latter when `issued`."""

    name = "ASSET"

    def __init__(self, *, issued: bool = False) -> None:
        self.issued = issued

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> AssetId:
        from p2pchain.cli.wallet import parse_asset

        if self.issued and value == "native":
            self.fail("the native coin is not an issued asset", param, ctx)
        try:
            return parse_asset(str(value), ChainParams())
        except ConfigError:
            kinds = "a" if self.issued else "native or a"
            self.fail(f"{value!r} is not {kinds} 32-byte hex asset id", param, ctx)


class _AssetAmount(click.ParamType[tuple[AssetId, int], object]):
    """``ASSET:AMOUNT``: ASSET ``native`` or a hex asset id, AMOUNT base units (at least 1)."""

    name = "ASSET:AMOUNT"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[AssetId, int]:
        asset, sep, amount = str(value).rpartition(":")
        if not sep or not amount.isdigit() or int(amount) < 1:
            self.fail(f"{value!r} is not ASSET:AMOUNT with AMOUNT >= 1 base unit", param, ctx)
        return _Asset().convert(asset, param, ctx), int(amount)


class _Id(click.ParamType[bytes, object]):
    """A 32-byte id in hex (``0x`` optional)."""

    name = "ID"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> bytes:
        try:
            data = bytes.fromhex(str(value).removeprefix("0x"))
        except ValueError:
            self.fail(f"{value!r} is not hex", param, ctx)
        if len(data) != 32:
            self.fail(f"{value!r} is {len(data)} bytes, not 32", param, ctx)
        return data


class _Partial(click.ParamType[PartialTransaction, object]):
    """A partially signed transaction: the hex (``0x`` optional) of its encoding."""

    name = "RAW"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> PartialTransaction:
        try:
            return decode(PartialTransaction, bytes.fromhex(str(value).removeprefix("0x")))
        except (ValueError, P2PChainError) as exc:
            self.fail(f"not a partially signed transaction ({exc})", param, ctx)


def _at_most_bytes(limit: int) -> Callable[[click.Context, click.Parameter, str], str]:
    """A callback refusing text longer than `limit` bytes of UTF-8 (a retirement's fields)."""

    def check(ctx: click.Context, param: click.Parameter, value: str) -> str:
        size = len(value.encode())
        if size > limit:
            raise click.BadParameter(f"{size} bytes of UTF-8, over the limit of {limit}")
        return value

    return check


FEE_OPTION = click.option(
    "--fee",
    type=NOT_NEGATIVE,
    default=None,
    help="Base units (default: 10000, or the chain's min_fee_rate floor if higher).",
)
WAIT_OPTION = click.option(
    "--wait/--no-wait", default=False, help="Wait until finalized or rejected."
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="The node's answer as JSON.")


@wallet.command("offer")
@KEY_OPTION
@click.option("--sell", type=_AssetAmount(), required=True, help="What you give, in all.")
@click.option("--for", "wanted", type=_AssetAmount(), required=True, help="What you get, in all.")
@click.option("--lots", type=POSITIVE, default=1, show_default=True, help="Equal offers.")
@click.option(
    "--blocks", type=POSITIVE, default=1_000, show_default=True, help="Takeable for this long."
)
@click.option(
    "--fee",
    type=NOT_NEGATIVE,
    default=None,
    help="Fee of a split (default: 10000, or the chain's min_fee_rate floor if higher).",
)
@RPC_OPTION
def wallet_offer(
    key_file: Path,
    sell: tuple[AssetId, int],
    wanted: tuple[AssetId, int],
    lots: int,
    blocks: int,
    fee: int | None,
    rpc_url: str,
) -> None:
    """Post standing offers of --sell for --for in --lots equal lots; print their ids.

    Anyone may take a lot until --blocks blocks past the head, paying its share of --for,
    without talking to you. Each lot is one coin of the lot size: when the wallet lacks them,
    a transfer to itself splits them off first, and the offers wait until it is included.
    """
    import trio

    from p2pchain.cli.wallet import offer

    run = partial(offer, rpc_url, key_file, sell, wanted, lots=lots, blocks=blocks, fee=fee)
    for offer_id in trio.run(run):
        click.echo(f"offer {offer_id}")


@wallet.command("offers")
@click.option("--sell", type=_Asset(), required=True, help="Asset offered (native or hex).")
@click.option("--for", "wanted", type=_Asset(), required=True, help="Asset wanted.")
@JSON_OPTION
@RPC_OPTION
def wallet_offers(sell: AssetId, wanted: AssetId, as_json: bool, rpc_url: str) -> None:
    """List the node's offers giving --sell for --for, best price for a taker first."""
    import json

    import trio

    from p2pchain.cli.wallet import list_offers

    book = trio.run(list_offers, rpc_url, sell, wanted)
    if as_json:
        click.echo(json.dumps(book))
        return
    if not book:
        click.echo("no offers")
    for entry in book:
        offered, want = entry["offered"], entry["wanted"]
        assert isinstance(offered, dict)
        assert isinstance(want, dict)
        click.echo(
            f"{entry['offerId']} {offered['amount']} for {want['amount']}"
            f" (price {entry['price']}) by {entry['maker']} until height {entry['until']}"
        )


@wallet.command("take")
@click.argument("offer_id", type=_Id())
@KEY_OPTION
@FEE_OPTION
@WAIT_OPTION
@RPC_OPTION
def wallet_take(offer_id: bytes, key_file: Path, fee: int | None, wait: bool, rpc_url: str) -> None:
    """Take OFFER_ID from the node's book: pay what it wants and receive its coin in one
    transaction; print the transaction id."""
    import trio

    from p2pchain.cli.wallet import take

    click.echo(trio.run(partial(take, rpc_url, key_file, offer_id, fee=fee, wait=wait)))


@wallet.command("retire")
@KEY_OPTION
@click.option("--asset", type=_Asset(issued=True), required=True, help="Asset id (hex).")
@click.option("--amount", type=POSITIVE, required=True, help="Units retired.")
@click.option(
    "--beneficiary",
    required=True,
    callback=_at_most_bytes(MAX_BENEFICIARY_BYTES),
    help=f"On whose behalf (at most {MAX_BENEFICIARY_BYTES} bytes of UTF-8).",
)
@click.option(
    "--purpose",
    required=True,
    callback=_at_most_bytes(MAX_PURPOSE_BYTES),
    help=f"What for (at most {MAX_PURPOSE_BYTES} bytes of UTF-8).",
)
@FEE_OPTION
@WAIT_OPTION
@RPC_OPTION
def wallet_retire(
    key_file: Path,
    asset: AssetId,
    amount: int,
    beneficiary: str,
    purpose: str,
    fee: int | None,
    wait: bool,
    rpc_url: str,
) -> None:
    """Retire (burn) units of an issued asset with a public record; print the transaction id,
    which is the retirement's certificate."""
    import trio

    from p2pchain.cli.wallet import retire

    run = partial(retire, rpc_url, key_file, asset, amount, beneficiary=beneficiary)
    click.echo(trio.run(partial(run, purpose=purpose, fee=fee, wait=wait)))


@wallet.command("retirements")
@click.option("--asset", type=_Asset(issued=True), required=True, help="Asset id (hex).")
@click.option("--offset", type=NOT_NEGATIVE, default=0, show_default=True, help="Skip these.")
@click.option(
    "--limit", type=click.IntRange(1, 1_000), default=100, show_default=True, help="List these."
)
@JSON_OPTION
@RPC_OPTION
def wallet_retirements(
    asset: AssetId, offset: int, limit: int, as_json: bool, rpc_url: str
) -> None:
    """List the retirements of an asset on the node's chain, oldest first: certificate,
    amount, beneficiary, purpose, height, and whether it is final."""
    import json

    import trio

    from p2pchain.cli.wallet import list_retirements

    found = trio.run(partial(list_retirements, rpc_url, asset, offset=offset, limit=limit))
    if as_json:
        click.echo(json.dumps(found))
        return
    if not found:
        click.echo("no retirements")
    for entry in found:
        click.echo(
            f"{entry['certificate']} {entry['amount']} for {entry['beneficiary']!r}:"
            f" {entry['purpose']!r} at height {entry['height']}"
            f"{' (final)' if entry['final'] else ''}"
        )


@wallet.command("swap")
@KEY_OPTION
@click.option("--give", type=_AssetAmount(), required=True, help="What you pay them.")
@click.option("--get", "get_", type=_AssetAmount(), required=True, help="What they pay you.")
@click.option("--with", "counterparty", required=True, help="The counterparty's address.")
@click.option(
    "--fee",
    type=NOT_NEGATIVE,
    default=None,
    help="You pay it (default: 10000, or the chain's min_fee_rate floor if higher).",
)
@RPC_OPTION
def wallet_swap(
    key_file: Path,
    give: tuple[AssetId, int],
    get_: tuple[AssetId, int],
    counterparty: str,
    fee: int | None,
    rpc_url: str,
) -> None:
    """Build a two-party swap from both sides' coins on the node's chain, signed by you; print
    it as a partially signed transaction for the counterparty to check (`wallet partial
    inspect`), sign (`wallet partial sign`) and submit (`wallet partial submit`)."""
    import trio

    from p2pchain.cli.wallet import swap

    click.echo(trio.run(partial(swap, rpc_url, key_file, give, get_, counterparty, fee=fee)))


@wallet.group("partial")
def wallet_partial() -> None:
    """Partially signed transactions (RAW: their hex): inspect, sign, combine, submit."""


@wallet_partial.command("inspect")
@click.argument("raw", type=_Partial())
@JSON_OPTION
@RPC_OPTION
def wallet_partial_inspect(raw: PartialTransaction, as_json: bool, rpc_url: str) -> None:
    """Show what RAW does, checked against the node's chain: what each address gives and gets,
    whose signatures are missing, and any input whose claimed coin the chain lacks."""
    import json

    import trio

    from p2pchain.cli.wallet import inspect_partial

    report = trio.run(inspect_partial, rpc_url, raw)
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"{report['kind']} {report['txid']}, fee {report['fee']}")
    flows = report["flows"]
    assert isinstance(flows, dict)
    for address, changes in flows.items():
        assert isinstance(changes, dict)
        text = ", ".join(f"{int(str(n)):+d} {asset}" for asset, n in changes.items())
        click.echo(f"  {address}: {text or 'nothing'}")
    inputs = report["inputs"]
    assert isinstance(inputs, list)
    for index, shown in enumerate(inputs):
        assert isinstance(shown, dict)
        if not shown["onChain"]:
            click.echo(f"  WARNING: input {index} spends no such coin on the node's chain")
    needed = report["signersNeeded"]
    assert isinstance(needed, list)
    click.echo(f"needs signatures of: {', '.join(map(str, needed))}" if needed else "signed")


@wallet_partial.command("sign")
@click.argument("raw", type=_Partial())
@KEY_OPTION
@RPC_OPTION
def wallet_partial_sign(raw: PartialTransaction, key_file: Path, rpc_url: str) -> None:
    """Sign the inputs of RAW that --key owns, after checking their claimed coins against the
    node's chain; print the new RAW (and, on stderr, how many inputs were signed)."""
    import trio

    from p2pchain.cli.wallet import sign_partial

    signed, count = trio.run(sign_partial, rpc_url, key_file, raw)
    click.echo(signed)
    click.echo(f"signed {count} input(s)", err=True)


@wallet_partial.command("combine")
@click.argument("raws", metavar="RAW...", nargs=-1, required=True, type=_Partial())
def wallet_partial_combine(raws: tuple[PartialTransaction, ...]) -> None:
    """Combine copies of one partially signed transaction, signed by different parties, into
    one RAW with every signature (offline)."""
    from p2pchain.ledger.encoding import encode
    from p2pchain.ledger.partial import combine

    click.echo("0x" + encode(combine(raws)).hex())


@wallet_partial.command("submit")
@click.argument("raw", type=_Partial())
@WAIT_OPTION
@RPC_OPTION
def wallet_partial_submit(raw: PartialTransaction, wait: bool, rpc_url: str) -> None:
    """Submit RAW once every input is signed; print the transaction id."""
    import trio

    from p2pchain.cli.wallet import submit_partial

    click.echo(trio.run(partial(submit_partial, rpc_url, raw, wait=wait)))


@wallet.command("propose")
@KEY_OPTION
@click.option(
    "--set",
    "settings",
    metavar="NAME=VALUE",
    multiple=True,
    required=True,
    help="A governable parameter's new value (repeatable): block_reward, min_fee_rate,"
    " reward_maturity, unbonding_epochs, max_block_txs.",
)
@click.option(
    "--activation",
    type=NOT_NEGATIVE,
    default=None,
    help="Epoch the changes take effect from (default: two epochs after the voting window"
    " ends, so an epoch that ends before the proposal lands does not void it).",
)
@click.option("--refund", default=None, help="Address the deposit returns to (default: --key's).")
@click.option(
    "--fee",
    type=NOT_NEGATIVE,
    default=None,
    help="Base units (default: 10000, or the chain's min_fee_rate floor if higher).",
)
@WAIT_OPTION
@RPC_OPTION
def wallet_propose(
    key_file: Path,
    settings: tuple[str, ...],
    activation: int | None,
    refund: str | None,
    fee: int | None,
    wait: bool,
    rpc_url: str,
) -> None:
    """Propose new values for governable chain parameters, paying the chain's deposit
    (returned if the vote reaches quorum); print the proposal id (its transaction id).

    Validators vote in the epochs after the proposal's block (`wallet vote`); a passed
    proposal takes effect from its activation epoch."""
    import trio

    from p2pchain.cli.wallet import parse_changes, propose

    parse_changes(settings)  # refuse a bad name or value before connecting
    run = partial(propose, rpc_url, key_file, settings, activation=activation, refund=refund)
    txid, about = trio.run(partial(run, fee=fee, wait=wait))
    click.echo(txid)
    click.echo(about, err=True)


@wallet.command("vote")
@click.argument("proposal_id", type=_Id())
@click.argument("choice", type=click.Choice([choice.name.lower() for choice in VoteChoice]))
@KEY_OPTION
@click.option(
    "--validator-key",
    type=click.Path(path_type=Path),
    default=None,
    help="The voting validator's key file, e.g. nodeN/validator.key (default: --key).",
)
@click.option(
    "--fee",
    type=NOT_NEGATIVE,
    default=None,
    help="Base units, paid by --key (default: 10000, or the chain's floor if higher).",
)
@WAIT_OPTION
@RPC_OPTION
def wallet_vote(
    proposal_id: bytes,
    choice: str,
    key_file: Path,
    validator_key: Path | None,
    fee: int | None,
    wait: bool,
    rpc_url: str,
) -> None:
    """Vote CHOICE on PROPOSAL_ID as a validator (signed with --validator-key, the fee paid
    by --key); print the transaction id."""
    import trio

    from p2pchain.cli.wallet import vote

    run = partial(vote, rpc_url, key_file, proposal_id, choice, validator_key=validator_key)
    click.echo(trio.run(partial(run, fee=fee, wait=wait)))


@wallet.command("proposals")
@click.option(
    "--status",
    type=click.Choice([status.value for status in ProposalStatus]),
    default=None,
    help="Only proposals with this status.",
)
@JSON_OPTION
@RPC_OPTION
def wallet_proposals(status: str | None, as_json: bool, rpc_url: str) -> None:
    """List the governance proposals the node knows, oldest first: id, status, voting
    window, activation epoch, votes as shares of the voting stake, and the changes."""
    import json

    import trio

    from p2pchain.cli.wallet import list_proposals, proposals_table

    found = trio.run(list_proposals, rpc_url, status)
    if as_json:
        click.echo(json.dumps(found))
        return
    if not found:
        click.echo("no proposals")
        return
    for line in proposals_table(found):
        click.echo(line.rstrip())


@cli.command("rpc")
@click.argument("method")
@click.argument("params", nargs=-1)
@RPC_OPTION
def rpc_call(method: str, params: tuple[str, ...], rpc_url: str) -> None:
    """Call any JSON-RPC METHOD (docs/rpc.md) and print its result as JSON.

    Each of PARAMS is parsed as JSON when it is valid JSON (numbers, true, null, lists,
    objects, quoted strings) and passed as a string otherwise, so hex ids need no quotes.
    """
    import json

    import trio

    from p2pchain.cli.rpc_client import connect_rpc

    def parse(text: str) -> object:
        try:
            return json.loads(text)
        except ValueError:
            return text

    async def call() -> object:
        async with connect_rpc(rpc_url) as client:
            return await client.call(method, *[parse(p) for p in params])  # type: ignore[arg-type]

    click.echo(json.dumps(trio.run(call), indent=2))


@cli.group()
def vectors() -> None:
    """Consensus step vectors (docs/testing.md): hold an implementation to p2pchain's rules."""


@vectors.command("run")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option(
    "--node",
    "on_node",
    is_flag=True,
    help="Also run each vector against a real node on a simulated network.",
)
def vectors_run(directory: Path, on_node: bool) -> None:
    """Run every vector file (*.json) of DIRECTORY against the pure consensus store (and a
    node with --node); print one line per vector and a summary, exit 1 if any failed."""
    from contextlib import nullcontext

    from p2pchain.cli.vectors import quiet_node_logs, run_directory
    from p2pchain.testing.vectors import VectorFormatError

    context = click.get_current_context()
    root = context.find_root()
    explicit = root.get_parameter_source("log_level") is ParameterSource.COMMANDLINE
    try:
        with nullcontext() if explicit else quiet_node_logs():  # a given --log-level is kept
            summary = run_directory(directory, node=on_node, echo=click.echo)
    except VectorFormatError as exc:
        raise click.ClickException(str(exc)) from exc
    total = summary.passed + summary.failed
    where = "the store and a node" if on_node else "the store"
    click.echo(f"{total} vectors on {where}: {summary.passed} passed, {summary.failed} failed")
    if summary.failed or not total:
        if not total:
            click.echo(f"no vector files (*.json) in {directory}", err=True)
        context.exit(1)
