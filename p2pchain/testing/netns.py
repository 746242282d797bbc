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

- `Hosts.run` starts a process inside a host (``ip netns exec``);
- `Hosts.link_down` / `Hosts.link_up` take a host's interface down and up: the host is cut off
  as by a pulled cable (its processes and its loopback go on), and reachable again after;
- `Hosts.connect` and `Hosts.listen` make sockets inside a host from this process (setns(2) in a
  short-lived thread): a test reaches a node's RPC on the host's own loopback this way, with
  the host's link up or down.

Leaving the context stops the processes that `run` started (SIGTERM, then SIGKILL) and deletes
every namespace it made, which deletes their interfaces, also when the body raised. Namespaces a
killed run left behind (named after a pid that no longer runs) are deleted, with the processes
still inside them, by the next `open_hosts`.

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
STOP_GRACE_S: Final = 10.0
"""How long a process stopped with SIGTERM has to exit before it is killed."""
NETNS_DIR: Final = Path("/var/run/netns")
"""Where ``ip netns`` keeps the namespaces it names (a file per namespace, for setns(2))."""
_CLONE_NEWNET: Final = 0x40000000
_UNAVAILABLE: Final = "multi-host tests need Linux network namespaces"
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

    def __getitem__(self, index: int) -> Host:
        return self.hosts[index]

    def __len__(self) -> int:
        return len(self.hosts)

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts)

    def _build(self, count: int) -> None:
        addresses = list(itertools.islice(self.subnet.hosts(), count))
        if count < 1 or len(addresses) < count:
            raise ValueError(f"{count} hosts do not fit {self.subnet}")
        self._add_namespace(self._hub)
        self._ip_in(self._hub, "link", "add", BRIDGE, "type", "bridge")
        self._ip_in(self._hub, "link", "set", BRIDGE, "up")
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
            [self._ip, "netns", "exec", host.namespace, *argv],
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
def open_hosts(count: int, *, subnet: str = DEFAULT_SUBNET) -> Iterator[Hosts]:
    """`count` hosts on `subnet` (the first `count` addresses of it), torn down on exit.

    Raises:
        NetnsError: the machine cannot (`unavailable_reason`), or an ``ip`` command failed.
    """
    reason = unavailable_reason()
    if reason is not None:
        raise NetnsError(reason)
    ip = find_ip()
    assert ip is not None  # unavailable_reason() found it
    remove_stale_namespaces(ip)
    hosts = Hosts(ip, ipaddress.IPv4Network(subnet), _new_name())
    try:
        hosts._build(count)
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
        pids = subprocess.run(
            [ip, "netns", "pids", name], capture_output=True, text=True, check=False
        )
        for pid in pids.stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(NetnsError):
            _run_ip(ip, "netns", "delete", name)
            removed.append(name)
    return removed


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


def _run_ip(ip: str, *args: str) -> None:
    result = subprocess.run([ip, *args], capture_output=True, text=True, check=False)
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
