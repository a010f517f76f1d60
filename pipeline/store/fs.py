"""The one filesystem seam of the store: every write, rename and fsync of a version goes here.

Only local paths (and `file://` URIs) are implemented. The commit relies on two POSIX
guarantees that object stores do not give: renaming a folder is atomic, and a hard link
fails when its target exists (an exclusive, all-or-nothing create). A remote store would
need its own class with the same methods (e.g. a conditional PUT for `create_exclusive`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from typing import Any


class UnsupportedStore(ValueError):
    """The store URI names a filesystem this version of roleforge cannot commit to."""


class StoreNotWritable(OSError):
    """A folder the run must write (store, cards) cannot be created or written."""

    def __init__(self, path: str, reason: str):
        super().__init__(errno.EACCES, f"cannot write to {path}: {reason}")
        self.path = path

    def __str__(self) -> str:
        return str(self.strerror)


def local_store_path(uri: str) -> str:
    """Return the local folder of a store URI; raise UnsupportedStore for remote schemes."""
    if uri.startswith("file://"):
        return uri[len("file://") :]
    if "://" in uri:
        scheme = uri.split("://", 1)[0]
        raise UnsupportedStore(
            f"store {uri!r}: {scheme}:// stores are not supported yet; use a local or "
            "shared (NFS) path, which every Ray node must see"
        )
    return uri


class LocalFS:
    """Durable file operations on a local filesystem: fsync, atomic rename, exclusive create.

    Data files (staging parts, cache parts, shards) go through `open_input` / `open_output`,
    which return pyarrow files, so the same code writes to a local disk or an object store.
    An instance is picklable: Ray tasks receive it and write their own parts.
    """

    @property
    def arrow(self) -> Any:
        """Return the pyarrow filesystem of this store (for pyarrow readers and writers)."""
        import pyarrow.fs

        return pyarrow.fs.LocalFileSystem(use_mmap=True)

    def open_input(self, path: str) -> Any:
        """Return a random-access pyarrow file over `path` (memory-mapped locally)."""
        import pyarrow as pa

        return pa.memory_map(path, "r")

    def open_output(self, path: str) -> Any:
        """Return a new pyarrow output stream at `path` (its folder is created); closing it
        makes the file whole. Not durable until `fsync_file`."""
        import pyarrow as pa

        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return pa.OSFile(path, "wb")

    def open_output_whole(self, path: str) -> Any:
        """Like `open_output`, but the file appears at `path` only when closed, whole: a
        reader that has `path` open (memory-mapped) keeps the old bytes, never sees a
        half-written file. (An object store's PUT already behaves so.)"""
        return _ReplaceOnClose(self, path)

    def read_bytes(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write a small file whole: readers see the old content or the new, never part."""
        folder = os.path.dirname(path) or "."
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".tmp-{secrets.token_hex(8)}")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def uri(self, path: str) -> str:
        """Return the address other tools open `path` by (a plain path for a local store)."""
        return path

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def check_writable(self, path: str) -> None:
        """Create folder `path` if needed; raise StoreNotWritable unless this process can
        add files to it (checked before any work, so a read-only store fails in one line)."""
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise StoreNotWritable(path, exc.strerror or str(exc)) from None
        if not os.path.isdir(path):
            raise StoreNotWritable(path, "not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise StoreNotWritable(path, "permission denied")

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except FileNotFoundError:
            return []

    def fsync_file(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def fsync_dir(self, path: str) -> None:
        # A rename or a new file is durable only once its folder's entry is on disk.
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def rename_dir(self, src: str, dst: str) -> None:
        """Move folder `src` to `dst` atomically; raise FileExistsError when `dst` exists."""
        # rename(2) silently replaces an *empty* target folder, so check first; a competing
        # committer only ever renames non-empty folders, so the check-then-rename gap cannot
        # lose a version.
        if os.path.lexists(dst):
            raise FileExistsError(dst)
        try:
            os.rename(src, dst)
        except OSError as exc:
            if os.path.lexists(dst):
                raise FileExistsError(dst) from exc
            raise
        self.fsync_dir(os.path.dirname(dst))

    def create_exclusive(self, path: str, data: bytes) -> None:
        """Create `path` holding `data`, all or nothing; raise FileExistsError if it exists."""
        folder = os.path.dirname(path)
        tmp = os.path.join(folder, f".tmp-{secrets.token_hex(8)}")
        # Mode 0666 filtered by the umask, like every other file of the store (mkstemp would
        # make it 0600, unreadable to the rest of a team sharing the store).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            # link(2) fails when the name exists: exclusive like open(..., "x"), but the
            # name appears only with its complete content.
            os.link(tmp, path)
        finally:
            os.unlink(tmp)
        self.fsync_dir(folder)

    def copy_file(self, src: str, dst: str) -> None:
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        shutil.copyfile(src, dst)

    def remove_tree(self, path: str) -> None:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)

    def size(self, path: str) -> int:
        return os.path.getsize(path)


class _ReplaceOnClose:
    """An output stream to a temp file beside `path`, renamed over `path` on close."""

    def __init__(self, fs: LocalFS, path: str):
        self.path = path
        self._tmp = os.path.join(os.path.dirname(path) or ".", f".tmp-{secrets.token_hex(8)}")
        self._raw = fs.open_output(self._tmp)
        self.closed = False

    def write(self, data: Any) -> int:
        return self._raw.write(data)

    def tell(self) -> int:
        return self._raw.tell()

    def flush(self) -> None:
        self._raw.flush()

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
            os.replace(self._tmp, self.path)
            self.closed = True

    def abort(self) -> None:
        self._raw.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)
        self.closed = True


def store_fs(uri: str) -> tuple[LocalFS, str]:
    """Return the filesystem of a store URI and the store's path on it."""
    return LocalFS(), local_store_path(uri)
