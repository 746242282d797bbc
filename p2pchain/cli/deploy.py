"""``p2pchain init --deploy compose|k8s``: container deployment files for the network `init`
wrote (docs/deploy.md).

Every node runs the image of the repository's Dockerfile, one node per container or pod, so
all of them use the same ports inside (`P2P_TCP_PORT`, `P2P_WS_PORT`, `RPC_PORT`,
`METRICS_PORT`), listen on 0.0.0.0 and announce the DNS name their peers dial them at. Inside
a container the node reads `CONFIG_DIR` (its node.toml, the network.toml and its keys,
copied there by an init step) and keeps its database in `DATA_DIR`, the image's volume.

Written next to network.toml:

- ``compose``: ``compose.yaml`` (services ``node<i>`` and their one-shot ``node<i>-init``,
  volumes ``node<i>-config`` and ``node<i>-data``) and ``compose/node<i>.toml``;
- ``k8s``: ``k8s/p2pchain.yaml`` (a ConfigMap of the configs, a headless Service, a
  StatefulSet) and ``k8s/secret.yaml`` (the keys; mode 0600).

Keys never enter the image: compose mounts them from the network directory, Kubernetes from
the Secret. The YAML is written by `render_yaml`, which needs no YAML package.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, TypeAlias

import tomli_w

from p2pchain import __version__
from p2pchain.cli.config import NodeFile, load_node, write_private
from p2pchain.cli.network import NetworkLayout
from p2pchain.errors import ConfigError

DEPLOY_KINDS: Final = ("compose", "k8s")
IMAGE: Final = f"p2pchain:{__version__}"
"""The tag docs/deploy.md builds the Dockerfile as; the generated files run it."""
NODE_UID: Final = 10001
"""The image's non-root user and group (numeric, so Kubernetes can check `runAsNonRoot`)."""

CONFIG_DIR: Final = "/etc/p2pchain"
NODE_CONFIG: Final = f"{CONFIG_DIR}/node.toml"
NETWORK_FILE: Final = "network.toml"
NODE_KEY_FILE: Final = "node.key"
VALIDATOR_KEY_FILE: Final = "validator.key"
DATA_DIR: Final = "/var/lib/p2pchain"
"""The node's `data_dir` in a container: the image's VOLUME."""

P2P_TCP_PORT: Final = 30300
P2P_WS_PORT: Final = 30301
RPC_PORT: Final = 8645
METRICS_PORT: Final = 9645

NODE_COMMAND: Final = ("python", "-m", "p2pchain", "node", "--config", NODE_CONFIG)
"""The image's ENTRYPOINT: how the tests start a node, on the container's node.toml."""
HEALTH_COMMAND: Final = ("p2pchain", "rpc", "chain_head", "--rpc", f"ws://127.0.0.1:{RPC_PORT}")
"""The image's HEALTHCHECK and the pods' readiness probe: the node's RPC answers."""
HEALTH_INTERVAL_S: Final = 10
HEALTH_TIMEOUT_S: Final = 5
HEALTH_RETRIES: Final = 3
HEALTH_START_PERIOD_S: Final = 30
STOP_GRACE_S: Final = 30
"""Time from SIGTERM (the node shuts down cleanly) to SIGKILL."""

K8S_NAME: Final = "p2pchain"
"""The StatefulSet and its headless Service: pod `i` is reached as ``p2pchain-<i>.p2pchain``."""
K8S_CONFIG_MAP: Final = f"{K8S_NAME}-config"
K8S_SECRET: Final = f"{K8S_NAME}-keys"
K8S_LABELS: Final = {"app.kubernetes.io/name": K8S_NAME}
K8S_DATA_SIZE: Final = "10Gi"
INIT_CONFIG_DIR: Final = "/init/config"
INIT_KEYS_DIR: Final = "/init/keys"
COMPOSE_INIT_DIR: Final = "/init"

Yaml: TypeAlias = "str | int | bool | Sequence[Yaml] | Mapping[str, Yaml] | None"
"""What `render_yaml` writes: scalars, lists and string-keyed mappings."""


def deployment_paths(root: Path, kind: str, nodes: int) -> tuple[Path, ...]:
    """The files `write_deployment` writes for `kind` into the network directory `root`."""
    if kind == "compose":
        return (root / "compose.yaml", *(root / "compose" / f"node{i}.toml" for i in range(nodes)))
    if kind == "k8s":
        return (root / "k8s" / "p2pchain.yaml", root / "k8s" / "secret.yaml")
    raise ConfigError(f"--deploy must be one of {', '.join(DEPLOY_KINDS)}, got {kind!r}")


def check_deployment_free(root: Path, kind: str, nodes: int) -> None:
    """Refuse, before anything is written, to overwrite deployment files of another network."""
    for path in deployment_paths(root, kind, nodes):
        if path.exists():
            raise ConfigError(f"{path} exists already: choose another --dir")


def write_deployment(
    layout: NetworkLayout, kind: str, *, base_port: int, rpc_port: int, metrics_port: int | None
) -> tuple[Path, ...]:
    """Write the `kind` deployment of the network `init_network` made; return the paths.

    Compose publishes node `i`'s ports on the host as `init` numbered them: P2P on
    `base_port + 2i` (TCP) and `+ 1` (WebSocket) on every interface, RPC on `rpc_port + i` and
    metrics on `metrics_port + i` on 127.0.0.1 only. Without `metrics_port` no node serves
    metrics.
    """
    nodes = [load_node(path) for path in layout.nodes]
    paths = deployment_paths(layout.root, kind, len(nodes))
    metrics = metrics_port is not None
    if kind == "compose":
        hosts = [f"node{i}" for i in range(len(nodes))]
        compose = compose_file(
            layout, nodes, base_port=base_port, rpc_port=rpc_port, metrics_port=metrics_port
        )
        paths[0].write_text(render_yaml(compose, comment=_COMPOSE_COMMENT))
        for index, (node, path) in enumerate(zip(nodes, paths[1:], strict=True)):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(tomli_w.dumps(deploy_node_tables(node, index, hosts, metrics=metrics)))
        return paths
    hosts = [f"{K8S_NAME}-{i}.{K8S_NAME}" for i in range(len(nodes))]
    configs = {NETWORK_FILE: layout.network.read_text()}
    for index, node in enumerate(nodes):
        tables = deploy_node_tables(node, index, hosts, metrics=metrics)
        configs[f"node{index}.toml"] = tomli_w.dumps(tables)
    manifests = [config_map(configs), headless_service(), stateful_set(len(nodes), metrics=metrics)]
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    paths[0].write_text(render_yaml_documents(manifests, comment=_K8S_COMMENT))
    write_private(paths[1], render_yaml(key_secret(nodes), comment=_SECRET_COMMENT))
    return paths


def deploy_node_tables(
    node: NodeFile, index: int, hosts: Sequence[str], *, metrics: bool
) -> dict[str, object]:
    """The node.toml of node `index` in a container, where node `j` is reached at `hosts[j]`:
    it listens on every interface, announces `hosts[index]` and dials every other node."""
    own = hosts[index]
    tables: dict[str, object] = {"network": NETWORK_FILE, "node_key_file": NODE_KEY_FILE}
    if node.validator_key is not None:
        tables["validator_key_file"] = VALIDATOR_KEY_FILE
    tables["data_dir"] = DATA_DIR
    tables["listen"] = [f"tcp://0.0.0.0:{P2P_TCP_PORT}", f"ws://0.0.0.0:{P2P_WS_PORT}"]
    tables["advertise"] = [f"tcp://{own}:{P2P_TCP_PORT}", f"ws://{own}:{P2P_WS_PORT}"]
    tables["bootnodes"] = [f"tcp://{host}:{P2P_TCP_PORT}" for host in hosts if host != own]
    tables["rpc"] = f"0.0.0.0:{RPC_PORT}"
    if metrics:
        tables["metrics"] = f"0.0.0.0:{METRICS_PORT}"
    tables["log_level"] = node.log_level
    return tables


def _container_files(node: NodeFile, config: Path) -> dict[str, Path]:
    """What node `node`'s CONFIG_DIR holds, by file name, and where each comes from."""
    files = {NETWORK_FILE: node.network, "node.toml": config, NODE_KEY_FILE: node.node_key}
    if node.validator_key is not None:
        files[VALIDATOR_KEY_FILE] = node.validator_key
    return files


def compose_file(
    layout: NetworkLayout,
    nodes: Sequence[NodeFile],
    *,
    base_port: int,
    rpc_port: int,
    metrics_port: int | None,
) -> Mapping[str, Yaml]:
    """compose.yaml: per node a one-shot ``node<i>-init`` that copies its configs and keys
    (bind-mounted from the network directory) into its config volume, owned by the image's
    user, and ``node<i>``, which runs the image on that volume and its data volume."""
    root = layout.root.resolve()

    def relative(path: Path) -> str:
        return "./" + Path(os.path.relpath(path.resolve(), root)).as_posix()

    services: dict[str, Yaml] = {}
    volumes: dict[str, Yaml] = {}
    for index, node in enumerate(nodes):
        name = f"node{index}"
        config_volume, data_volume = f"{name}-config", f"{name}-data"
        config = layout.root / "compose" / f"{name}.toml"
        mounts: list[Yaml] = [
            {
                "type": "bind",
                "source": relative(source),
                "target": f"{COMPOSE_INIT_DIR}/{file_name}",
                "read_only": True,
            }
            for file_name, source in _container_files(node, config).items()
        ]
        mounts.append({"type": "volume", "source": config_volume, "target": CONFIG_DIR})
        install = f"install -o {NODE_UID} -g {NODE_UID} -m 0400 {COMPOSE_INIT_DIR}/* {CONFIG_DIR}/"
        services[f"{name}-init"] = {
            "image": IMAGE,
            "user": "0:0",
            "entrypoint": ["sh", "-c", install],
            "network_mode": "none",
            "restart": "no",
            "volumes": mounts,
        }
        ports: list[Yaml] = [
            _port(P2P_TCP_PORT, base_port + 2 * index, None),
            _port(P2P_WS_PORT, base_port + 2 * index + 1, None),
            _port(RPC_PORT, rpc_port + index, "127.0.0.1"),
        ]
        if metrics_port is not None:
            ports.append(_port(METRICS_PORT, metrics_port + index, "127.0.0.1"))
        services[name] = {
            "image": IMAGE,
            "depends_on": {f"{name}-init": {"condition": "service_completed_successfully"}},
            "restart": "unless-stopped",
            "stop_grace_period": f"{STOP_GRACE_S}s",
            "ports": ports,
            "volumes": [
                {
                    "type": "volume",
                    "source": config_volume,
                    "target": CONFIG_DIR,
                    "read_only": True,
                },
                {"type": "volume", "source": data_volume, "target": DATA_DIR},
            ],
            "healthcheck": {
                "test": ["CMD", *HEALTH_COMMAND],
                "interval": f"{HEALTH_INTERVAL_S}s",
                "timeout": f"{HEALTH_TIMEOUT_S}s",
                "retries": HEALTH_RETRIES,
                "start_period": f"{HEALTH_START_PERIOD_S}s",
            },
        }
        volumes[config_volume] = {}
        volumes[data_volume] = {}
    return {"services": services, "volumes": volumes}


def _port(target: int, published: int, host_ip: str | None) -> Mapping[str, Yaml]:
    port: dict[str, Yaml] = {"target": target, "published": str(published), "protocol": "tcp"}
    if host_ip is not None:
        port["host_ip"] = host_ip
    return port


def config_map(configs: Mapping[str, str]) -> Mapping[str, Yaml]:
    """The network.toml and every node's container node.toml (``node<i>.toml``)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": K8S_CONFIG_MAP, "labels": K8S_LABELS},
        "data": dict(configs),
    }


def key_secret(nodes: Sequence[NodeFile]) -> Mapping[str, Yaml]:
    """Every node's keys as ``node<i>.key`` and ``validator<i>.key``."""
    keys: dict[str, Yaml] = {}
    for index, node in enumerate(nodes):
        keys[f"node{index}.key"] = node.node_key.read_text()
        if node.validator_key is not None:
            keys[f"validator{index}.key"] = node.validator_key.read_text()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": K8S_SECRET, "labels": K8S_LABELS},
        "type": "Opaque",
        "stringData": keys,
    }


def headless_service() -> Mapping[str, Yaml]:
    """Gives pod `i` the DNS name ``p2pchain-<i>.p2pchain``, published before it is ready:
    peers must find each other while they start."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": K8S_NAME, "labels": K8S_LABELS},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": K8S_LABELS,
            "ports": [
                {"name": "p2p-tcp", "port": P2P_TCP_PORT, "targetPort": P2P_TCP_PORT},
                {"name": "p2p-ws", "port": P2P_WS_PORT, "targetPort": P2P_WS_PORT},
            ],
        },
    }


K8S_INIT_SCRIPT: Final = f"""\
set -eu
i="${{POD_NAME##*-}}"
if [ ! -f "{INIT_CONFIG_DIR}/node$i.toml" ]; then
  echo "$POD_NAME: the network has no node $i (new validators need a genesis entry or a STAKE)" >&2
  exit 1
fi
install -m 0400 "{INIT_CONFIG_DIR}/{NETWORK_FILE}" "{CONFIG_DIR}/{NETWORK_FILE}"
install -m 0400 "{INIT_CONFIG_DIR}/node$i.toml" "{NODE_CONFIG}"
install -m 0400 "{INIT_KEYS_DIR}/node$i.key" "{CONFIG_DIR}/{NODE_KEY_FILE}"
if [ -f "{INIT_KEYS_DIR}/validator$i.key" ]; then
  install -m 0400 "{INIT_KEYS_DIR}/validator$i.key" "{CONFIG_DIR}/{VALIDATOR_KEY_FILE}"
fi
"""
"""Pod `<name>-<i>` takes node `i`'s config and keys into its in-memory config volume."""


def stateful_set(replicas: int, *, metrics: bool) -> Mapping[str, Yaml]:
    """One pod per node: an init container copies node `i`'s files out of the ConfigMap and
    the Secret, the node keeps its database on its own volume claim."""
    ports: list[Yaml] = [
        {"name": "p2p-tcp", "containerPort": P2P_TCP_PORT},
        {"name": "p2p-ws", "containerPort": P2P_WS_PORT},
        {"name": "rpc", "containerPort": RPC_PORT},
    ]
    if metrics:
        ports.append({"name": "metrics", "containerPort": METRICS_PORT})
    locked_down: Mapping[str, Yaml] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": K8S_NAME, "labels": K8S_LABELS},
        "spec": {
            "serviceName": K8S_NAME,
            "replicas": replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": K8S_LABELS},
            "template": {
                "metadata": {"labels": K8S_LABELS},
                "spec": {
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": STOP_GRACE_S,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": NODE_UID,
                        "runAsGroup": NODE_UID,
                        "fsGroup": NODE_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "initContainers": [
                        {
                            "name": "configure",
                            "image": IMAGE,
                            "command": ["sh", "-c", K8S_INIT_SCRIPT],
                            "env": [
                                {
                                    "name": "POD_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                }
                            ],
                            "securityContext": locked_down,
                            "volumeMounts": [
                                {"name": "configs", "mountPath": INIT_CONFIG_DIR, "readOnly": True},
                                {"name": "keys", "mountPath": INIT_KEYS_DIR, "readOnly": True},
                                {"name": "node-config", "mountPath": CONFIG_DIR},
                            ],
                        }
                    ],
                    "containers": [
                        {
                            "name": "node",
                            "image": IMAGE,
                            "ports": ports,
                            "readinessProbe": {
                                "exec": {"command": list(HEALTH_COMMAND)},
                                "initialDelaySeconds": 5,
                                "periodSeconds": HEALTH_INTERVAL_S,
                                "timeoutSeconds": HEALTH_TIMEOUT_S,
                                "failureThreshold": HEALTH_RETRIES,
                            },
                            "securityContext": locked_down,
                            "volumeMounts": [
                                {"name": "node-config", "mountPath": CONFIG_DIR, "readOnly": True},
                                {"name": "data", "mountPath": DATA_DIR},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "configs", "configMap": {"name": K8S_CONFIG_MAP}},
                        # 0440: group-readable, the group being fsGroup, the node's group.
                        {
                            "name": "keys",
                            "secret": {"secretName": K8S_SECRET, "defaultMode": 0o440},
                        },
                        {"name": "node-config", "emptyDir": {"medium": "Memory"}},
                    ],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": K8S_DATA_SIZE}},
                    },
                }
            ],
        },
    }


_COMPOSE_COMMENT: Final = f"""\
Written by `p2pchain init --deploy compose` (docs/deploy.md). Build the image from the p2pchain
source tree first (docker build -t {IMAGE} .), then run `docker compose up -d` here.
The node<i>-init services copy each node's keys from this directory into its config volume."""
_K8S_COMMENT: Final = f"""\
Written by `p2pchain init --deploy k8s` (docs/deploy.md): `kubectl apply -f k8s/` after
pushing the image {IMAGE} where the cluster pulls from (and naming it here)."""
_SECRET_COMMENT: Final = """\
Written by `p2pchain init --deploy k8s` (docs/deploy.md). SECRET: every node's identity and
validator keys. Keep this file out of version control; apply it, then delete or vault it."""


def render_yaml(value: Yaml, *, comment: str = "") -> str:
    """`value` as block-style YAML that any YAML 1.1 or 1.2 parser reads back as `value`:
    strings are double-quoted (so ``no``, ``0700`` or ``8645:8645`` stay strings), except
    that multi-line text is a literal block (``|``) when it reads back unchanged. `comment`
    goes first, as ``#`` lines."""
    return "\n".join([*_comment(comment), *_block(value, 0)]) + "\n"


def render_yaml_documents(documents: Sequence[Yaml], *, comment: str = "") -> str:
    """Several YAML documents in one stream, each after ``---``."""
    lines = _comment(comment)
    for document in documents:
        lines += ["---", *_block(document, 0)]
    return "\n".join(lines) + "\n"


def _comment(text: str) -> list[str]:
    return [f"# {line}".rstrip() for line in text.splitlines()]


def _block(value: Yaml, indent: int) -> list[str]:
    pad = " " * indent
    lines = []
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            lines += _entry(f"{pad}{_key(key)}:", item, indent)
    elif isinstance(value, Sequence) and not isinstance(value, str) and value:
        for item in value:
            if _is_collection(item):
                inner = _block(item, indent + 2)
                lines.append(f"{pad}- {inner[0][indent + 2 :]}")
                lines += inner[1:]
            else:
                lines += _entry(f"{pad}-", item, indent)
    else:
        lines.append(pad + _inline(value))
    return lines


def _entry(head: str, item: Yaml, indent: int) -> list[str]:
    """`head` (a key and its colon, or a dash) followed by `item`."""
    if _is_collection(item):
        return [head, *_block(item, indent + 2)]
    if isinstance(item, str) and _is_literal(item):
        body = " " * (indent + 2)
        return [f"{head} |", *(body + line if line else "" for line in item[:-1].split("\n"))]
    return [f"{head} {_inline(item)}"]


def _is_collection(value: Yaml) -> bool:
    """A mapping or list with something in it (written as a block; empty ones inline)."""
    return isinstance(value, Mapping | Sequence) and not isinstance(value, str) and bool(value)


def _inline(value: Yaml) -> str:
    """A scalar, or an empty mapping or list."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, str):
        return _quote(value)
    return "{}" if isinstance(value, Mapping) else "[]"


_PLAIN_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_YAML11_WORDS: Final = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})
"""Booleans and null in YAML 1.1 (which Kubernetes' parser follows), in any case."""


def _key(key: str) -> str:
    if _PLAIN_KEY.fullmatch(key) and key.lower() not in _YAML11_WORDS:
        return key
    return _quote(key)


_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _plain_char(char: str) -> bool:
    """Whether `char` may stand for itself in a quoted scalar or a literal block: YAML's
    printable characters, less those YAML 1.1 reads as line breaks and the byte order mark."""
    code = ord(char)
    if char in "\x85\u2028\u2029\ufeff":
        return False
    return (
        0x20 <= code <= 0x7E or 0xA0 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or code > 0xFFFF
    )


def _quote(text: str) -> str:
    parts = ['"']
    for char in text:
        if char in _ESCAPES:
            parts.append(_ESCAPES[char])
        elif _plain_char(char):
            parts.append(char)
        elif ord(char) <= 0xFF:
            parts.append(f"\\x{ord(char):02x}")
        else:
            parts.append(f"\\u{ord(char):04x}")
    parts.append('"')
    return "".join(parts)


def _is_literal(text: str) -> bool:
    """Whether `text` reads back unchanged from a literal block (``|``, clip chomping): lines
    of printable characters (tabs too) ending in exactly one newline, the first not blank nor
    indented (a parser takes the first line's indentation for the block's)."""
    if not text.endswith("\n") or text.endswith("\n\n"):
        return False
    lines = text[:-1].split("\n")
    if not all(_plain_char(char) or char == "\t" for line in lines for char in line):
        return False
    return lines[0].strip(" \t") != "" and not lines[0].startswith((" ", "\t"))
