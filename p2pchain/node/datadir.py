"""An exclusive lock on a data directory, so that two nodes never share one database.

Two processes writing one chain database corrupt it for good (and the second one, replaying
a half-written chain, misbehaves towards its peers). Like Bitcoin Core's ``.lock`` and LevelDB's
``LOCK``, the node holds an OS-level exclusive lock on `LOCK_FILE` inside the directory while it
runs. The operating system releases it when the process ends, however it ends, so a crash never
leaves a stale lock behind. The holder writes its process id into the file so that a second
process can name it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from p2pchain.errors import StorageError

LOCK_FILE: Final = ".lock"
"""Inside the data directory; holds the pid of the node that has the directory."""


@contextlib.contextmanager
def lock_data_dir(data_dir: Path) -> Iterator[None]:
    """Hold the exclusive lock on `data_dir` (created if missing) for the duration.

    Raises:
        StorageError: another process holds the lock (the message names the directory and
            that process's id), or the lock file cannot be opened.
    """
    path = data_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(f"cannot open the lock file {path}: {exc.strerror}") from exc
    try:
        if not _try_lock(fd):
            holder = _read_pid(fd)
            who = f"process {holder}" if holder else "another process"
            raise StorageError(f"data directory {data_dir} is in use by {who}")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # the lock itself goes with the descriptor
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def _try_lock(fd: int) -> bool:
    """Take the lock without waiting (flock: per open file, released when the process ends)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
