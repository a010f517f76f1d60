"""The one filesystem seam of the store: every write, rename and fsync of a version goes here.

Only local paths (and `file://` URIs) are implemented. The commit relies on two POSIX
guarantees that object stores do not give: renaming a folder is atomic, and a hard link
fails when its target exists (an exclusive, all-or-nothing create). A remote store would
need its own class with the same methods (e.g. a conditional PUT for `create_exclusive`).
"""

from __future__ import annotations

import os
import shutil
import tempfile


class UnsupportedStore(ValueError):
    """The store URI names a filesystem this version of roleforge cannot commit to."""


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
    """Durable file operations on a local filesystem: fsync, atomic rename, exclusive create."""

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

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
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
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


def store_fs(uri: str) -> tuple[LocalFS, str]:
    """Return the filesystem of a store URI and the store's path on it."""
    return LocalFS(), local_store_path(uri)
