"""`p2pchain init --deploy compose|k8s` and the Dockerfile: every generated file parses (with
PyYAML, not the generator's own code), each node's container holds its own config and keys
and loads with the project's config loader, peers dial each other by service name, and the
image, compose file and manifests agree on the command, ports, volume, user and health check.
"""

import json
import os
import shutil
import socket
import stat
import subprocess
from functools import partial
from pathlib import Path, PurePosixPath

import pytest
import trio
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.cli.commands import cli
from p2pchain.cli.config import load_network, load_node, read_key
from p2pchain.cli.deploy import render_yaml, render_yaml_documents
from p2pchain.cli.run import node_config_from, split_host_port
from p2pchain.net.transports import parse_address
from p2pchain.rpc import serve_rpc
from p2pchain.testing.testnet import testnet

REPO = Path(__file__).resolve().parents[2]


def _instructions(text: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (NAME, arguments), continuation lines joined."""
    instructions, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        name, _, arguments = current.partition(" ")
        instructions.append((name.upper(), arguments.strip()))
        current = ""
    return instructions


class Image:
    """What the final stage of the repository's Dockerfile declares."""

    def __init__(self, text: str) -> None:
        everything = _instructions(text)
        self.bases = [arguments.split()[0] for name, arguments in everything if name == "FROM"]
        last_from = max(i for i, (name, _) in enumerate(everything) if name == "FROM")
        self.all = everything
        self.final = everything[last_from:]

    def one(self, instruction: str) -> str:
        found = [arguments for name, arguments in self.final if name == instruction]
        assert len(found) == 1, (instruction, found)
        return found[0]

    @property
    def entrypoint(self) -> list[str]:
        return json.loads(self.one("ENTRYPOINT"))

    @property
    def user(self) -> tuple[int, int]:
        user, _, group = self.one("USER").partition(":")
        return int(user), int(group or user)

    @property
    def volume(self) -> str:
        (volume,) = json.loads(self.one("VOLUME"))
        return volume

    @property
    def exposed(self) -> set[int]:
        return {int(port.removesuffix("/tcp")) for port in self.one("EXPOSE").split()}

    @property
    def healthcheck(self) -> tuple[dict[str, str], list[str]]:
        options_text, _, command = self.one("HEALTHCHECK").partition("CMD ")
        options = dict(option.removeprefix("--").split("=") for option in options_text.split())
        return options, json.loads(command)

    @property
    def rpc_port(self) -> int:
        url = self.healthcheck[1][self.healthcheck[1].index("--rpc") + 1]
        return split_host_port(url.removeprefix("ws://"), "rpc")[1]


@pytest.fixture(scope="module")
def image() -> Image:
    return Image((REPO / "Dockerfile").read_text())


def _init(root: Path, *args: str) -> None:
    result = CliRunner().invoke(cli, ["init", "--dir", str(root), *args])
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------------------- Dockerfile


def test_the_image_runs_a_node_the_way_the_tests_do(image: Image) -> None:
    # tests/robustness/harness.py: [sys.executable, "-m", "p2pchain", "node", "--config", path]
    python, *arguments, config = image.entrypoint
    assert python == "python"
    assert arguments == ["-m", "p2pchain", "node", "--config"]
    assert PurePosixPath(config).name == "node.toml"
    assert PurePosixPath(config).is_absolute()
    assert "CMD" not in [name for name, _ in image.final]  # nothing appended to the command


def test_the_image_is_slim_python_and_runs_as_a_user_with_the_data_dir_a_volume(
    image: Image,
) -> None:
    assert image.bases
    assert set(image.bases) == {"python:3.11-slim"}
    uid, gid = image.user
    assert uid != 0
    assert gid != 0
    assert image.volume == "/var/lib/p2pchain"
    assert image.volume != str(PurePosixPath(image.entrypoint[-1]).parent)  # keys not in it


def test_the_health_check_asks_the_rpc_port_the_image_exposes(image: Image) -> None:
    options, command = image.healthcheck
    assert command[:3] == ["p2pchain", "rpc", "chain_head"]
    assert set(options) == {"interval", "timeout", "start-period", "retries"}
    assert image.rpc_port in image.exposed
    assert len(image.exposed) == 4  # P2P TCP, P2P WebSocket, RPC, metrics


def test_only_the_package_source_enters_the_build_context(image: Image) -> None:
    copied = set()
    for name, arguments in image.all:
        if name == "COPY" and not arguments.startswith("--from"):
            copied.update(part.rstrip("/") for part in arguments.split()[:-1])
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    included = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    assert included == copied == {"pyproject.toml", "README.md", "p2pchain"}
    assert patterns.index("**/*.key") > patterns.index("!p2pchain/")  # no key gets back in
    assert not list((REPO / "p2pchain").rglob("*.key"))
    for name, arguments in image.all:
        if name == "RUN":
            assert "index-url" not in arguments
            assert "http" not in arguments


async def test_the_health_check_passes_on_a_live_node_and_fails_without_one(
    image: Image,
) -> None:
    _options, command = image.healthcheck
    where = command.index("ws://127.0.0.1:" + str(image.rpc_port))

    async def check(url: str) -> tuple[int, str]:
        args = [*command[1:where], url, *command[where + 1 :]]
        result = await trio.to_thread.run_sync(partial(CliRunner().invoke, cli, args))
        return result.exit_code, result.output

    async with testnet(1) as net, trio.open_nursery() as nursery:
        server = await nursery.start(serve_rpc, net.nodes[0], "127.0.0.1", 0)
        code, output = await check(server.url)
        assert code == 0, output
        assert json.loads(output)["height"] >= 0
        nursery.cancel_scope.cancel()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    code, output = await check(f"ws://127.0.0.1:{port}")
    assert code == 1
    assert len(output.strip().splitlines()) == 1, output


# ------------------------------------------------------------------------------ compose


def _compose_container(root: Path, init: dict, into: Path) -> Path:
    """Do what a node's init service does: its bind mounts under /init go into the config
    volume under their own names. Returns that container's node.toml."""
    into.mkdir(parents=True)
    for mount in init["volumes"]:
        if mount["type"] == "bind":
            assert mount["read_only"] is True
            assert not PurePosixPath(mount["source"]).is_absolute()  # relative to compose.yaml
            target = PurePosixPath(mount["target"])
            assert target.parent == PurePosixPath("/init")
            shutil.copy(root / mount["source"], into / target.name)
    return into / "node.toml"


@pytest.mark.parametrize(
    ("args", "nodes", "base_port", "rpc_port", "metrics_port"),
    [
        ((), 4, 30300, 8645, 9645),
        (
            ("--nodes", "2", "--base-port", "40000", "--rpc-port", "41000", "--metrics-port", "0"),
            2,
            40000,
            41000,
            None,
        ),
    ],
)
def test_compose_runs_each_node_on_its_own_volumes_keys_and_ports(
    tmp_path: Path,
    image: Image,
    args: tuple[str, ...],
    nodes: int,
    base_port: int,
    rpc_port: int,
    metrics_port: int | None,
) -> None:
    root = tmp_path / "net"
    _init(root, "--deploy", "compose", *args)
    compose = yaml.safe_load((root / "compose.yaml").read_text())
    names = [f"node{i}" for i in range(nodes)]
    services = compose["services"]
    assert set(services) == {*names, *(f"{name}-init" for name in names)}
    network = load_network(root / "network.toml")
    uid, gid = image.user
    config_dir = str(PurePosixPath(image.entrypoint[-1]).parent)
    volumes_seen: set[str] = set()
    for index, name in enumerate(names):
        service, init = services[name], services[f"{name}-init"]
        assert service["image"] == init["image"]
        assert "entrypoint" not in service
        assert "command" not in service
        assert service["depends_on"] == {
            f"{name}-init": {"condition": "service_completed_successfully"}
        }
        _options, health = image.healthcheck
        assert service["healthcheck"]["test"] == ["CMD", *health]
        mounts = {mount["target"]: mount for mount in service["volumes"]}
        assert set(mounts) == {config_dir, image.volume}
        assert all(mount["type"] == "volume" for mount in mounts.values())
        assert mounts[config_dir]["read_only"] is True
        assert mounts[image.volume].get("read_only", False) is False
        own_volumes = {mount["source"] for mount in mounts.values()}
        assert not own_volumes & volumes_seen  # no two nodes share a volume
        volumes_seen |= own_volumes
        (init_volume,) = [m for m in init["volumes"] if m["type"] == "volume"]
        assert (init_volume["source"], init_volume["target"]) == (
            mounts[config_dir]["source"],
            config_dir,
        )
        assert init["entrypoint"] == [
            "sh",
            "-c",
            f"install -o {uid} -g {gid} -m 0400 /init/* {config_dir}/",
        ]
        assert init["network_mode"] == "none"
        published = {
            port["target"]: (port.get("host_ip"), int(port["published"]))
            for port in service["ports"]
        }
        container = _compose_container(root, init, tmp_path / f"container{index}")
        node = load_node(container)
        assert node.data_dir == Path(image.volume)
        assert load_network(node.network) == network
        assert read_key(node.node_key) == read_key(root / name / "node.key")
        assert node.validator_key is not None
        validator = read_key(node.validator_key).public_key
        assert validator == network.genesis.validators[index].key
        node_config_from(node)  # the whole config, keys and genesis included, loads
        listen = [parse_address(text) for text in node.listen]
        assert {address.host for address in listen} == {"0.0.0.0"}
        tcp_port, ws_port = (address.port for address in listen)
        assert [(a.host, a.port) for a in map(parse_address, node.advertise or ())] == [
            (name, tcp_port),
            (name, ws_port),
        ]
        bootnodes = [parse_address(text) for text in node.bootnodes]
        assert {(b.scheme.value, b.host, b.port) for b in bootnodes} == {
            ("tcp", other, tcp_port) for other in names if other != name
        }
        assert node.rpc is not None
        assert split_host_port(node.rpc, "rpc") == ("0.0.0.0", image.rpc_port)
        assert published[tcp_port] == (None, base_port + 2 * index)
        assert published[ws_port] == (None, base_port + 2 * index + 1)
        assert published[image.rpc_port] == ("127.0.0.1", rpc_port + index)
        assert {tcp_port, ws_port, image.rpc_port} <= image.exposed
        if metrics_port is None:
            assert node.metrics is None
            assert len(published) == 3
        else:
            assert node.metrics is not None
            host, port = split_host_port(node.metrics, "metrics")
            assert host == "0.0.0.0"
            assert port in image.exposed
            assert published[port] == ("127.0.0.1", metrics_port + index)
    assert set(compose["volumes"]) == volumes_seen
    text = (root / "compose.yaml").read_text()
    for key_file in root.glob("node*/*.key"):
        assert read_key(key_file).secret.hex() not in text  # keys by reference only


# ----------------------------------------------------------------------------- Kubernetes


def _k8s(root: Path) -> tuple[dict[str, dict], dict]:
    documents = list(yaml.safe_load_all((root / "k8s" / "p2pchain.yaml").read_text()))
    by_kind = {document["kind"]: document for document in documents}
    assert len(by_kind) == len(documents) == 3
    secret = yaml.safe_load((root / "k8s" / "secret.yaml").read_text())
    return by_kind, secret


def _run_pod_init(
    manifests: dict[str, dict], secret: dict, ordinal: int, into: Path
) -> subprocess.CompletedProcess[str]:
    """Run the StatefulSet's init container script for pod `ordinal` with each of its mounts
    moved under `into`; the config volume ends up in `into/node-config`."""
    pod = manifests["StatefulSet"]["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    (init,) = pod["initContainers"]
    script = init["command"][2]
    assert init["command"][:2] == ["sh", "-c"]
    for mount in sorted(init["volumeMounts"], key=lambda m: -len(m["mountPath"])):
        directory = into / mount["name"]
        directory.mkdir(parents=True, exist_ok=True)
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            assert volume["configMap"]["name"] == manifests["ConfigMap"]["metadata"]["name"]
            files = manifests["ConfigMap"]["data"]
        elif "secret" in volume:
            assert volume["secret"]["secretName"] == secret["metadata"]["name"]
            files = secret["stringData"]
        else:
            assert volume["emptyDir"] == {"medium": "Memory"}  # keys stay off the node's disk
            files = {}
        for file_name, content in files.items():
            (directory / file_name).write_text(content)
        script = script.replace(mount["mountPath"], str(directory))
    name = manifests["StatefulSet"]["metadata"]["name"]
    environment = {"PATH": os.environ["PATH"], "POD_NAME": f"{name}-{ordinal}"}
    return subprocess.run(
        ["sh", "-c", script], env=environment, capture_output=True, text=True, check=False
    )


def test_k8s_pods_take_their_own_keys_and_dial_each_other_through_the_service(
    tmp_path: Path, image: Image
) -> None:
    root = tmp_path / "net"
    _init(root, "--deploy", "k8s")
    manifests, secret = _k8s(root)
    assert stat.S_IMODE((root / "k8s" / "secret.yaml").stat().st_mode) == 0o600
    service, stateful_set = manifests["Service"], manifests["StatefulSet"]
    spec = stateful_set["spec"]
    name, service_name = stateful_set["metadata"]["name"], spec["serviceName"]
    assert service["metadata"]["name"] == service_name
    assert service["spec"]["clusterIP"] == "None"  # headless: one DNS name per pod
    assert service["spec"]["publishNotReadyAddresses"] is True
    pod_labels = spec["template"]["metadata"]["labels"]
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"] == pod_labels
    assert spec["replicas"] == 4
    pod = spec["template"]["spec"]
    uid, gid = image.user
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["fsGroup"]) == (uid, gid)
    (container,) = pod["containers"]
    assert "command" not in container
    assert "args" not in container
    _options, health = image.healthcheck
    assert container["readinessProbe"]["exec"]["command"] == health
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    config_dir = str(PurePosixPath(image.entrypoint[-1]).parent)
    assert mounts[config_dir]["readOnly"] is True
    (claim,) = spec["volumeClaimTemplates"]
    assert mounts[image.volume]["name"] == claim["metadata"]["name"]
    keys = next(volume for volume in pod["volumes"] if "secret" in volume)
    assert keys["secret"]["defaultMode"] & 0o040  # readable by fsGroup, the node's group
    assert {port["containerPort"] for port in container["ports"]} == image.exposed
    network = load_network(root / "network.toml")
    hosts = [f"{name}-{i}.{service_name}" for i in range(4)]
    for ordinal in range(4):
        result = _run_pod_init(manifests, secret, ordinal, tmp_path / f"pod{ordinal}")
        assert result.returncode == 0, result.stderr
        config = tmp_path / f"pod{ordinal}" / "node-config"
        for key_file in config.glob("*.key"):
            assert stat.S_IMODE(key_file.stat().st_mode) == 0o400
        node = load_node(config / "node.toml")
        assert node.data_dir == Path(image.volume)
        assert load_network(node.network) == network
        assert read_key(node.node_key) == read_key(root / f"node{ordinal}" / "node.key")
        assert node.validator_key is not None
        validator = read_key(node.validator_key).public_key
        assert validator == network.genesis.validators[ordinal].key
        node_config_from(node)
        assert {parse_address(text).host for text in node.listen} == {"0.0.0.0"}
        ports = sorted(parse_address(text).port for text in node.listen)
        assert {p["port"] for p in service["spec"]["ports"]} == set(ports)
        assert {parse_address(text).host for text in node.advertise or ()} == {hosts[ordinal]}
        assert {parse_address(text).host for text in node.bootnodes} == set(hosts) - {
            hosts[ordinal]
        }
        assert node.rpc is not None
        assert split_host_port(node.rpc, "rpc") == ("0.0.0.0", image.rpc_port)
    text = (root / "k8s" / "p2pchain.yaml").read_text()
    for key_file in root.glob("node*/*.key"):
        assert read_key(key_file).secret.hex() not in text  # keys only in the Secret


def test_a_pod_past_the_genesis_validators_fails_its_init_step(tmp_path: Path) -> None:
    root = tmp_path / "net"
    _init(root, "--deploy", "k8s", "--nodes", "2")
    manifests, secret = _k8s(root)
    result = _run_pod_init(manifests, secret, 2, tmp_path / "pod2")
    assert result.returncode != 0
    assert "no node 2" in result.stderr
    assert not (tmp_path / "pod2" / "node-config" / "node.toml").exists()


# ----------------------------------------------------------------------------- bad input


def test_an_unknown_deploy_kind_is_one_error_line_and_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "net"
    result = CliRunner().invoke(cli, ["init", "--dir", str(root), "--deploy", "bogus"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert "'--deploy'" in error
    assert "'bogus'" in error
    assert "compose" in error
    assert "k8s" in error
    assert not root.exists()


@pytest.mark.parametrize(("kind", "existing"), [("compose", "compose.yaml"), ("k8s", "k8s")])
def test_deployment_files_of_another_network_are_not_overwritten(
    tmp_path: Path, kind: str, existing: str
) -> None:
    root = tmp_path / "net"
    (root / "k8s").mkdir(parents=True)
    (root / "compose.yaml").write_text("services: {}\n")
    (root / "k8s" / "secret.yaml").write_text("kind: Secret\n")
    result = CliRunner().invoke(cli, ["init", "--dir", str(root), "--deploy", kind])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "exists already" in result.output
    assert not (root / "network.toml").exists()  # refused before anything was written


# ------------------------------------------------------------------------------------ YAML

_lines = st.lists(st.text(st.characters(exclude_characters="\n")), min_size=1)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.sampled_from(["yes", "no", "on", "Off", "null", "~", "0700", "8645:8645", "1e3", "- x"])
    | _lines.map(lambda lines: "\n".join(lines) + "\n")
)
_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text() | st.sampled_from(["on", "y", "a.b/c", "<<"]), children)
    ),
    max_leaves=25,
)


@given(_values)
def test_rendered_yaml_reads_back_as_what_was_rendered(value: object) -> None:
    assert yaml.safe_load(render_yaml(value, comment="a\ncomment")) == value


@given(st.lists(_values, min_size=1, max_size=3))
def test_rendered_documents_read_back_in_order(documents: list[object]) -> None:
    text = render_yaml_documents(documents, comment="header")
    assert list(yaml.safe_load_all(text)) == documents


def test_literal_blocks_keep_multi_line_text_readable() -> None:
    text = render_yaml({"data": {"network.toml": "[chain]\nchain_id = 1\n"}})
    assert text == "data:\n  network.toml: |\n    [chain]\n    chain_id = 1\n"
