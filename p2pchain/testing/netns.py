"""Hosts on one private subnet made of Linux network namespaces: multi-host tests without
containers.

``with open_hosts(4) as hosts:`` makes a *hub* namespace holding a bridge and, per host, a
namespace whose ``eth0`` has its own address on one private subnet (``10.77.0.1``,
``10.77.0.2``, … of ``10.77.0.0/24``) and whose loopback is up. Each ``eth0`` is one end of a
veth pair whose other end is a port of the hub's bridge, so the hosts reach each other as
machines on one switch do, and each has a loopback of its own that no other host can reach.
Every interface lives inside a namespace made here: the root namespace's interfaces, routes and
firewall are left alone, and two runs at once (each names its namespaces after its pid and a
counter) can use the same subnet.

``open_hosts(n, attach_root=True)`` also plugs the root namespace into the bridge, as one more
machine on the switch: a veth pair with one end in the hub's bridge and the other in the root
namespace, holding the subnet's first address (``10.77.0.1``; the hosts then take ``10.77.0.2``
on), so that the processes of the machine itself reach every host. That adds an interface and
the route of the subnet to the root namespace, and so only one such network per subnet runs on
a machine at a time: `open_hosts` refuses a subnet the root namespace already has an address or
a route in.

- `Hosts.run` starts a process inside a host (``ip netns exec``);
- `Hosts.link_down` / `Hosts.link_up` take a host's interface down and up: the host is cut off
  as by a pulled cable (its processes and its loopback go on), and reachable again after;
- `Hosts.partition` / `Hosts.heal` separate groups of hosts from each other (routes in each host
  mark the other groups' addresses unreachable), and join them again;
- `Hosts.connect` and `Hosts.listen` make sockets inside a host from this process (setns(2) in a
  short-lived thread): a test reaches a node's RPC on the host's own loopback this way, with
  the host's link up or down.

Leaving the context stops the processes that `run` started (SIGTERM, then SIGKILL), kills any
other process still inside a host, and deletes the root namespace's veth and every namespace it
made, which deletes their interfaces, also when the body raised. Namespaces a killed run left
behind (named after a pid that no longer runs) are deleted, with the processes still inside
them, by the next `open_hosts`; deleting its hub deletes its root veth too (the pair's other end
was a port of the hub's bridge).

All of this needs root on Linux and the ``ip`` command of iproute2; `unavailable_reason` says
why this machine cannot do it, for a test to skip with.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import ipaddress
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, TypeVar

from p2pchain.errors import P2PChainError

NAMESPACE_PREFIX: Final = "p2pnet-"
"""Every namespace made here is named ``p2pnet-<pid>-<n>-…``: unique per run, and a leftover
of a run that no longer exists is recognised by its pid."""
DEFAULT_SUBNET: Final = "10.77.0.0/24"
INTERFACE: Final = "eth0"
"""The name of each host's interface inside its namespace."""
BRIDGE: Final = "br0"
ROOT_PORT: Final = "vroot"
"""The hub's end of the root namespace's veth pair (`open_hosts(attach_root=True)`)."""
ROOT_LINK_PREFIX: Final = "p2p"
"""The root namespace's end is named ``p2p<pid>-<n>``, after the run (at most 15 characters)."""
STOP_GRACE_S: Final = 10.0
"""How long a process stopped with SIGTERM has to exit before it is killed."""
NETNS_DIR: Final = Path("/var/run/netns")
"""Where ``ip netns`` keeps the namespaces it names (a file per namespace, for setns(2))."""
_CLONE_NEWNET: Final = 0x40000000
_UNAVAILABLE: Final = "namespaced hosts need Linux network namespaces"
_STALE_NAME: Final = re.compile(rf"^{re.escape(NAMESPACE_PREFIX)}(\d+)-")
_serials = itertools.count()

T = TypeVar("T")


class NetnsError(P2PChainError, OSError):
    """An ``ip`` command or a namespace switch failed: the machine refused, not the test."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Host:
    """One namespace of a `Hosts` network."""

    index: int
    namespace: str
    address: str
    """Its IPv4 address on the subnet (on `INTERFACE`)."""


def host_addresses(
    count: int, *, subnet: str = DEFAULT_SUBNET, attach_root: bool = False
) -> tuple[str, ...]:
    """The addresses `open_hosts(count, subnet=subnet, attach_root=attach_root)` gives its
    hosts, in order (known before the hosts exist: configurations can name them).

    Raises:
        ValueError: `count` is below 1, or that many hosts do not fit `subnet`.
    """
    skip = 1 if attach_root else 0
    network = ipaddress.IPv4Network(subnet)
    addresses = [str(a) for a in itertools.islice(network.hosts(), skip, skip + count)]
    if count < 1 or len(addresses) < count:
        raise ValueError(f"{count} hosts do not fit {subnet}" + (" with the root" * skip))
    return tuple(addresses)


def find_ip() -> str | None:
    """The ``ip`` command (iproute2): on PATH, else in /usr/sbin or /sbin; None if missing."""
    found = shutil.which("ip")
    if found is not None:
        return found
    for directory in ("/usr/sbin", "/sbin"):
        candidate = Path(directory) / "ip"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@functools.cache
def unavailable_reason() -> str | None:
    """Why this machine cannot make namespaced hosts (not Linux, not root, no ``ip``, or the
    kernel refuses a namespace, a bridge or a veth pair), or None when it can. The probe runs
    once per process and leaves nothing behind."""
    if sys.platform != "linux":
        return f"{_UNAVAILABLE}: this is {sys.platform}"
    if os.geteuid() != 0:
        return f"{_UNAVAILABLE}, which need root: running as uid {os.geteuid()}"
    ip = find_ip()
    if ip is None:
        return f"{_UNAVAILABLE}: no `ip` command (iproute2) on PATH, in /usr/sbin or /sbin"
    probe = _new_name("probe")
    try:
        _run_ip(ip, "netns", "add", probe)
    except NetnsError as exc:
        return f"{_UNAVAILABLE}: {exc}"
    try:
        _run_ip(ip, "-n", probe, "link", "add", BRIDGE, "type", "bridge")
        _run_ip(ip, "-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", INTERFACE)
    except NetnsError as exc:
        return f"{_UNAVAILABLE} with bridges and veth pairs: {exc}"
    finally:
        with contextlib.suppress(NetnsError):
            _run_ip(ip, "netns", "delete", probe)
    return None


class Hosts:
    """Namespaced hosts on one bridge (made by `open_hosts`). Indexing gives a `Host`."""

    def __init__(self, ip: str, subnet: ipaddress.IPv4Network, serial: str) -> None:
        self.subnet = subnet
        self.hosts: tuple[Host, ...] = ()
        self._ip = ip
        self._serial = serial
        self._hub = f"{serial}-hub"
        self._namespaces: list[str] = []
        """Made so far, in order: the hub first. `close` deletes them."""
        self._processes: list[subprocess.Popen[bytes]] = []
        self.root_address: str | None = None
        """The root namespace's address on the subnet, when it is attached (`attach_root`)."""
        self._root_link: str | None = None
        self._cut: dict[int, frozenset[str]] = {}
        """Per host index, the addresses `partition` made unreachable from it."""

    def __getitem__(self, index: int) -> Host:
        return self.hosts[index]

    def __len__(self) -> int:
        return len(self.hosts)

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts)

    def _build(self, count: int, *, attach_root: bool = False) -> None:
        addresses = host_addresses(count, subnet=str(self.subnet), attach_root=attach_root)
        if attach_root:
            self._check_root_free()
        self._add_namespace(self._hub)
        self._ip_in(self._hub, "link", "add", BRIDGE, "type", "bridge")
        self._ip_in(self._hub, "link", "set", BRIDGE, "up")
        if attach_root:
            self._attach_root(str(next(self.subnet.hosts())))
        hosts = []
        for index, address in enumerate(addresses):
            namespace = f"{self._serial}-h{index}"
            port = f"v{index}"
            self._add_namespace(namespace)
            peer = ("peer", "name", INTERFACE, "netns", namespace)
            self._ip_in(self._hub, "link", "add", port, "type", "veth", *peer)
            self._ip_in(self._hub, "link", "set", port, "master", BRIDGE, "up")
            self._ip_in(
                namespace, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", INTERFACE
            )
            self._ip_in(namespace, "link", "set", INTERFACE, "up")
            self._ip_in(namespace, "link", "set", "lo", "up")
            hosts.append(Host(index=index, namespace=namespace, address=str(address)))
        self.hosts = tuple(hosts)

    def _check_root_free(self) -> None:
        """Refuse a subnet the root namespace already uses (an address or a route in it)."""
        for what in ("addr", "route"):
            listing = subprocess.run(
                [self._ip, "-4", "-o", what, "show"], capture_output=True, text=True, check=False
            )
            for line in listing.stdout.splitlines():
                words = line.split()
                if what == "addr":  # "2: eth0    inet 10.0.0.5/24 brd ..."
                    text, device = (words[3], words[1]) if len(words) > 3 else ("", "")
                else:  # "10.0.0.0/24 dev eth0 proto kernel ...", "default via ..."
                    text = words[0] if words else ""
                    device = words[words.index("dev") + 1] if "dev" in words[:-1] else "?"
                try:
                    network = ipaddress.IPv4Network(text, strict=False)
                except ValueError:  # "default", "unreachable", ...
                    continue
                if network.overlaps(self.subnet):
                    raise NetnsError(
                        f"{self.subnet} is in use in the root namespace already ({what} "
                        f"{text} on {device}): one network attached to the root namespace per "
                        "subnet runs on a machine at a time"
                    )

    def _attach_root(self, address: str) -> None:
        link = f"{ROOT_LINK_PREFIX}{os.getpid()}-{self._serial.rsplit('-', 1)[1]}"[:15]
        peer = ("peer", "name", ROOT_PORT, "netns", self._hub)
        _run_ip(self._ip, "link", "add", link, "type", "veth", *peer)
        self._root_link = link
        self._ip_in(self._hub, "link", "set", ROOT_PORT, "master", BRIDGE, "up")
        _run_ip(self._ip, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", link)
        _run_ip(self._ip, "link", "set", link, "up")
        self.root_address = address

    def exec_prefix(self, host: Host) -> list[str]:
        """The command that runs what follows it inside `host` (``ip netns exec NAME``), for
        a process that something other than `run` starts and stops."""
        return [self._ip, "netns", "exec", host.namespace]

    # -- processes ----------------------------------------------------------------------------

    def run(
        self,
        host: Host,
        argv: Sequence[str],
        *,
        stdout: int | IO[bytes] | None = None,
        stderr: int | IO[bytes] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` inside `host` (``ip netns exec``, which execs it: the process's pid is
        the program's). Leaving the context stops it if it still runs."""
        process = subprocess.Popen(
            [*self.exec_prefix(host), *argv],
            stdout=stdout,
            stderr=stderr,
            env=env,
            cwd=cwd,
        )
        self._processes.append(process)
        return process

    def stop(self, *processes: subprocess.Popen[bytes], grace: float = STOP_GRACE_S) -> None:
        """SIGTERM each of `processes` still running, all at once, and SIGKILL those still
        running `grace` seconds later; return once all are gone (`returncode` is set)."""
        running = [process for process in processes if process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    # -- links --------------------------------------------------------------------------------

    def link_down(self, host: Host) -> None:
        """Cut `host` off: its interface goes down (and with it its route to the subnet)."""
        self._ip_in(host.namespace, "link", "set", INTERFACE, "down")

    def link_up(self, host: Host) -> None:
        """Connect `host` again after `link_down`."""
        self._ip_in(host.namespace, "link", "set", INTERFACE, "up")

    def partition(self, *groups: Sequence[Host]) -> None:
        """Separate `groups` of hosts (those named in none form one more group), replacing an
        earlier partition: in each host, a route marks every other group's addresses
        unreachable, so a dial between groups fails at once and open connections stall, as
        behind a cut cable, until `heal`. Links stay up; the root namespace (`attach_root`)
        still reaches every host.

        Raises:
            ValueError: a host is in two groups, or is not one of these hosts.
        """
        group_of: dict[int, int] = {}
        for number, group in enumerate(groups):
            for host in group:
                if host not in self.hosts:
                    raise ValueError(f"{host} is not one of these hosts")
                if host.index in group_of:
                    raise ValueError(f"host {host.index} is in two groups")
                group_of[host.index] = number
        for host in self.hosts:
            mine = group_of.get(host.index, len(groups))
            self._set_cut(
                host,
                frozenset(
                    other.address
                    for other in self.hosts
                    if group_of.get(other.index, len(groups)) != mine
                ),
            )

    def heal(self) -> None:
        """Undo `partition`: every host reaches every other again."""
        for host in self.hosts:
            self._set_cut(host, frozenset())

    def _set_cut(self, host: Host, addresses: frozenset[str]) -> None:
        current = self._cut.get(host.index, frozenset())
        commands = [f"route del unreachable {a}/32" for a in sorted(current - addresses)]
        commands += [f"route add unreachable {a}/32" for a in sorted(addresses - current)]
        if commands:
            _run_ip(self._ip, "-n", host.namespace, "-batch", "-", input="\n".join(commands))
        self._cut[host.index] = addresses

    # -- sockets inside a host ----------------------------------------------------------------

    def connect(
        self, host: Host, address: str, port: int, *, timeout: float = 5.0
    ) -> socket.socket:
        """A TCP socket connected from inside `host` to `address:port` (its loopback, say),
        blocking; it stays in `host`'s namespace for its life, whatever thread uses it."""

        def make() -> socket.socket:
            return socket.create_connection((address, port), timeout=timeout)

        return self._inside(host, make)

    def listen(self, host: Host, address: str, port: int, *, backlog: int = 64) -> socket.socket:
        """A TCP socket listening inside `host` on `address:port`."""

        def make() -> socket.socket:
            return socket.create_server((address, port), backlog=backlog)

        return self._inside(host, make)

    def _inside(self, host: Host, make: Callable[[], T]) -> T:
        """`make()` run by a fresh thread that entered `host`'s network namespace; the thread
        ends with it, so no other code ever runs in the wrong namespace."""
        results: list[T] = []
        errors: list[BaseException] = []

        def target() -> None:
            try:
                _enter_namespace(host.namespace)
                results.append(make())
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=target, name=f"netns {host.namespace}", daemon=True)
        thread.start()
        thread.join()
        if errors:
            raise errors[0]
        return results[0]

    # -- teardown -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every process `run` started and delete every namespace made (their interfaces
        go with them). Tries everything, then raises `NetnsError` if anything failed."""
        failures: list[str] = []
        try:
            self.stop(*self._processes)
        except OSError as exc:
            failures.append(f"stopping processes: {exc}")
        self._processes.clear()
        for namespace in self._namespaces:
            _kill_inside(self._ip, namespace)
        if self._root_link is not None:
            try:
                _run_ip(self._ip, "link", "delete", self._root_link)
            except NetnsError as exc:
                failures.append(str(exc))
            self._root_link = self.root_address = None
        for namespace in reversed(self._namespaces):
            try:
                _run_ip(self._ip, "netns", "delete", namespace)
            except NetnsError as exc:
                failures.append(str(exc))
        self._namespaces.clear()
        if failures:
            raise NetnsError("; ".join(failures))

    def _add_namespace(self, namespace: str) -> None:
        _run_ip(self._ip, "netns", "add", namespace)
        self._namespaces.append(namespace)

    def _ip_in(self, namespace: str, *args: str) -> None:
        _run_ip(self._ip, "-n", namespace, *args)


@contextmanager
def open_hosts(
    count: int, *, subnet: str = DEFAULT_SUBNET, attach_root: bool = False
) -> Iterator[Hosts]:
    """`count` hosts on `subnet` (the first `count` addresses of it), torn down on exit.

    With `attach_root`, the root namespace joins the bridge on the subnet's first address
    (`Hosts.root_address`) and the hosts take the `count` after it (`host_addresses`).

    Raises:
        NetnsError: the machine cannot (`unavailable_reason`), an ``ip`` command failed, or
            (`attach_root`) the root namespace uses `subnet` already.
        ValueError: `count` hosts do not fit `subnet`.
    """
    reason = unavailable_reason()
    if reason is not None:
        raise NetnsError(reason)
    ip = find_ip()
    assert ip is not None  # unavailable_reason() found it
    remove_stale_namespaces(ip)
    hosts = Hosts(ip, ipaddress.IPv4Network(subnet), _new_name())
    try:
        hosts._build(count, attach_root=attach_root)
        yield hosts
    finally:
        hosts.close()


def remove_stale_namespaces(ip: str) -> list[str]:
    """Delete the namespaces of runs whose process no longer exists, killing what still runs
    inside them (a test run that was itself killed cannot clean up); the names deleted."""
    listing = subprocess.run([ip, "netns", "list"], capture_output=True, text=True, check=False)
    removed = []
    for line in listing.stdout.splitlines():
        name = line.split(" ", 1)[0]
        match = _STALE_NAME.match(name)
        if match is None or _pid_exists(int(match.group(1))):
            continue
        _kill_inside(ip, name)
        with contextlib.suppress(NetnsError):
            _run_ip(ip, "netns", "delete", name)
            removed.append(name)
    return removed


def _kill_inside(ip: str, namespace: str) -> None:
    """SIGKILL every process inside `namespace` (a namespace outlives its name while one
    runs in it, and so do its interfaces)."""
    pids = subprocess.run(
        [ip, "netns", "pids", namespace], capture_output=True, text=True, check=False
    )
    for pid in pids.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def _new_name(suffix: str | None = None) -> str:
    name = f"{NAMESPACE_PREFIX}{os.getpid()}-{next(_serials)}"
    return name if suffix is None else f"{name}-{suffix}"


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_ip(ip: str, *args: str, input: str | None = None) -> None:
    result = subprocess.run([ip, *args], capture_output=True, text=True, check=False, input=input)
    if result.returncode != 0:
        detail = result.stderr.strip() or f"exit code {result.returncode}"
        raise NetnsError(f"`ip {' '.join(args)}` failed: {detail}")


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _enter_namespace(namespace: str) -> None:
    """Move the calling thread into `namespace`'s network namespace (setns(2))."""
    descriptor = os.open(NETNS_DIR / namespace, os.O_RDONLY)
    try:
        if _libc().setns(descriptor, _CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise NetnsError(error, f"setns into {namespace}: {os.strerror(error)}")
    finally:
        os.close(descriptor)
