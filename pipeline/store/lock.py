"""Who may change a dataset's folder now: a commit lock, and one lease per live run.

Both are `flock(2)` locks on small files under `<store>/<name>/_locks/`. The kernel drops a
flock when its holder dies, SIGKILL included, so a crashed run or committer never leaves a
stale lock behind and nothing has to guess from timestamps whether a process is alive.

- The commit lock (`commit.lock`, exclusive) is held while a committer picks a version
  number and parent, moves its folder into `versions/` and creates the manifest, and while
  `gc` lists and removes. So `gc` never sees a half-made version, and concurrent committers
  publish one after another: each one's parent is the version before it.
- A run lease (`run-<run_id>.lock`, exclusive, taken before the run creates anything) says
  "this run is alive": `gc` spares its staging folder and quarantine file while it is held.

flock works on local filesystems and on NFS (Linux maps it to byte-range locks there).

An object store has no flock. For a Store on one, the lock files live on this machine
(under the temp dir, one folder per store URI): processes on one machine still commit one
after another and gc spares their live runs, but processes on different machines do not
see each other's locks. What keeps the store correct across machines is the conditional
PUT: a committer claims `versions/v<N>/` and creates `v<N>.json` only if absent, so two
racing for N end with one winner and the other at N+1 (their parents may then both be
N-1: the chain is linear only among committers that share a lock). gc's `min_age_s`
spares the staging of runs it cannot see.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from typing import Any

LOCKS_DIR = "_locks"
COMMIT_LOCK = "commit.lock"
# How long a committer or gc waits for the commit lock before giving up with a clear error.
COMMIT_LOCK_TIMEOUT_S = 600.0
_POLL_S = 0.05
LEASE_FILE = re.compile(r"^run-(.+)\.lock$")  # a run's lease in locks_dir


class StoreBusy(RuntimeError):
    """The dataset's commit lock stayed taken for longer than the caller would wait."""


def lock_root(target: Any) -> str:
    """Return the local folder whose `_locks/` holds the locks of `target`: a dataset's
    local root path, or a Store (its root, or a folder on this machine for an object
    store, named after the store's URI)."""
    if isinstance(target, str):
        return target
    if target.fs.is_local:
        return target.root
    uri = target.fs.uri(target.root)
    digest = hashlib.sha256(uri.encode("utf-8")).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), "roleforge-locks", f"{target.name}-{digest}")


def locks_dir(root: Any) -> str:
    """Return the folder that holds a dataset's lock files (`root`: see `lock_root`)."""
    return os.path.join(lock_root(root), LOCKS_DIR)


def lease_path(root: Any, run_id: str) -> str:
    """Return the lease file of run `run_id` of the dataset at `root` (see `lock_root`)."""
    return os.path.join(locks_dir(root), f"run-{run_id}.lock")


def _open(path: str) -> int:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


@contextlib.contextmanager
def file_lock(path: str, timeout_s: float, busy: str) -> Iterator[None]:
    """Hold an exclusive flock on the local file `path` for the `with` block; raise
    StoreBusy(`busy`) after `timeout_s`. The kernel drops it when its holder dies."""
    fd = _open(path)
    try:
        deadline = time.monotonic() + timeout_s
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                raise StoreBusy(busy)
            time.sleep(_POLL_S)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


@contextlib.contextmanager
def commit_lock(root: Any, timeout_s: float = COMMIT_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the dataset's commit lock for the `with` block; raise StoreBusy after `timeout_s`."""
    label = root if isinstance(root, str) else root.fs.uri(root.root)
    busy = (
        f"{label}: another commit or gc has held the store's lock for over "
        f"{timeout_s:g} s; try again later"
    )
    with file_lock(os.path.join(locks_dir(root), COMMIT_LOCK), timeout_s, busy):
        yield


class RunLease:
    """Held by a live run from before its first file until it ends (or its process dies)."""

    def __init__(self, root: Any, run_id: str):
        self.path = lease_path(root, run_id)
        self._fd: int | None = None

    def acquire(self) -> RunLease:
        fd = _open(self.path)
        if not _try_lock(fd):
            os.close(fd)
            raise StoreBusy(f"run {os.path.basename(self.path)} is already running")
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __enter__(self) -> RunLease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def run_is_live(root: Any, run_id: str) -> bool:
    """Return whether some process holds the lease of run `run_id` right now."""
    path = lease_path(root, run_id)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        if _try_lock(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        return True
    finally:
        os.close(fd)


def live_runs(root: Any) -> list[str]:
    """Return the ids of the runs whose lease some process on this machine holds now."""
    try:
        names = os.listdir(locks_dir(root))
    except FileNotFoundError:
        return []
    runs = [m.group(1) for n in names if (m := LEASE_FILE.match(n))]
    return sorted(r for r in runs if run_is_live(root, r))
