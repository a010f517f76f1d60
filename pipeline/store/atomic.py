"""The commit toolkit the store and the model registry share (docs/ARCHITECTURE.md,
"The commit protocol").

- Exclusive create: `fs.create_exclusive` of the store's filesystem seam (O_EXCL locally, a
  conditional PUT on an object store): creating a version's manifest, or a promoted-pointer
  generation, is the commit; of two writers one wins.
- Atomic replace (`replace_file`): temp file, fsync, rename over the target, fsync of the
  folder; a reader sees the old file or the new one, never a part.
- The lock: `pipeline.store.lock.file_lock`, a flock the kernel drops when its holder dies.
- Fault injection (`fault_point`): $ROLEFORGE_FAULT=<step> raises InjectedFault at that
  step, $ROLEFORGE_FAULT=kill:<step> SIGKILLs the process there (a crash no handler sees),
  so tests prove that a crash at any step leaves the old state or the new one.
"""

from __future__ import annotations

import os

from pipeline.store.fs import LocalFS

FAULT_ENV = "ROLEFORGE_FAULT"


class InjectedFault(RuntimeError):
    """Raised at a commit step named by $ROLEFORGE_FAULT, to simulate a crash there."""


def fault_point(name: str) -> None:
    """Raise InjectedFault when $ROLEFORGE_FAULT names this step; SIGKILL this process when
    it says `kill:<step>`."""
    fault = os.environ.get(FAULT_ENV)
    if fault == name:
        raise InjectedFault(f"fault injected {name.replace('_', ' ')}")
    if fault == f"kill:{name}":
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def replace_file(path: str, data: bytes, steps: str | None = None) -> None:
    """Replace local file `path` by `data` atomically and durably. With `steps`, the fault
    points `<steps>_temp_written`, `<steps>_replaced` and `<steps>_synced` are offered.

    The temp file is `<path>.tmp-<pid>`: a writer that dies before its rename leaves one,
    which the next writer holding the same lock may remove (`stale_temp_files`)."""

    def step(name: str) -> None:
        if steps is not None:
            fault_point(f"{steps}_{name}")

    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    step("temp_written")
    os.replace(tmp, path)  # the commit point: readers see old or new
    step("replaced")
    LocalFS().fsync_dir(os.path.dirname(path) or ".")
    step("synced")


def stale_temp_files(path: str) -> list[str]:
    """Return the temp files `replace_file` writers of `path` left behind."""
    import glob

    return glob.glob(glob.escape(path) + ".tmp-*")
