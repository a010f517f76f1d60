"""Opening, listing and hashing source files by location, local or on an object store.

Readers work on locations (`pipeline.record.location`); `SourceFS` opens them: local ones
with `os` (symlinks and FIFOs are judged by the local rules of `readers/files.py`), remote ones through the store's
filesystem seam (`pipeline.store.fs`), so a source on S3 is read by ranged GETs from the
task that reads it, with the credentials and endpoint the store uses. A record's id depends
only on the file's key relative to the source's folder, so the same corpus read from disk
or from a bucket gives the same records and the same `content_id`.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import stat
from typing import Any

from pipeline.record.location import dirname, is_remote, local_path, scheme_of, split_uri

_CHUNK = 1 << 20


class _NativeRaw(io.RawIOBase):
    """A pyarrow random-access file as a raw Python stream, so `io.BufferedReader` gives it
    `readline` and line iteration (pyarrow's NativeFile has neither)."""

    def __init__(self, native: Any):
        self._native = native

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._native.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._native.seek(offset, whence)

    def tell(self) -> int:
        return self._native.tell()

    def close(self) -> None:
        self._native.close()
        super().close()


class SourceFS:
    """Opens, lists and hashes source files by location, local or on an object store.

    Picklable: a Ray ingest task receives the driver's, with the object-store filesystems
    made there (from the options given here and the usual environment variables, AWS_* or
    GCS's, as the store's are); their clients are rebuilt in the task.
    """

    def __init__(self, options: dict[str, str] | None = None, schemes: tuple[str, ...] = ()):
        self.options = dict(options or {})
        self._remote: dict[str, Any] = {}
        # Stamps of objects listed by `prefetch_stamps`, by location.
        self._stamps: dict[str, tuple[int, int] | None] = {}
        # The sha256 of each object this instance read whole (see `read_within`).
        self._digests: dict[str, str] = {}
        # Made now, in this process: each reads its credentials and endpoint from the
        # environment here and carries them when pickled, so a Ray task on a node without
        # those variables reads the sources the driver was told to read.
        for scheme in schemes:
            self._store(f"{scheme}://")

    @classmethod
    def of(cls, recipe: Any) -> SourceFS:
        """Return the SourceFS of a recipe's sources: its `store_options` reach remote
        sources too (one set of options per recipe)."""
        locations = [
            recipe.resolve(p)
            for s in recipe.sources
            for p in [s.path, *s.characters_files, s.persona, s.media_dir]
            if p
        ]
        schemes = sorted({scheme_of(p) for p in locations} - {None})
        return cls(recipe.store_options.fs_kwargs(), tuple(schemes))  # type: ignore[arg-type]

    def _store(self, location: str) -> tuple[Any, str]:
        from pipeline.store.store_fs import store_fs

        scheme, path = split_uri(location)
        if scheme not in self._remote:
            self._remote[scheme] = store_fs(f"{scheme}://source", **self.options)[0]
        return self._remote[scheme], path.strip("/")

    # ---- what is there ----

    def exists(self, location: str) -> bool:
        if not is_remote(location):
            return os.path.exists(local_path(location))
        fs, path = self._store(location)
        return bool(path) and fs.exists(path)

    def isdir(self, location: str) -> bool:
        """Return whether a location is a folder: locally a directory, on an object store a
        prefix with objects under it."""
        if not is_remote(location):
            return os.path.isdir(local_path(location))
        fs, path = self._store(location)
        return bool(path) and not fs.is_file(path) and fs.exists(path)

    def is_regular_file(self, location: str) -> bool:
        """Return whether a location is a regular file: a FIFO, device or socket never is a
        source; on an object store every object is one."""
        if not is_remote(location):
            try:
                return stat.S_ISREG(os.stat(local_path(location)).st_mode)
            except OSError:
                return False
        fs, path = self._store(location)
        return bool(path) and fs.is_file(path)

    def size(self, location: str) -> int | None:
        """Return a regular file's size in bytes, None when there is no such file."""
        if not is_remote(location):
            try:
                st = os.stat(local_path(location))
            except OSError:
                return None
            return st.st_size if stat.S_ISREG(st.st_mode) else None
        fs, path = self._store(location)
        try:
            return fs.size(path)
        except (FileNotFoundError, OSError):
            return None

    def files_under(self, location: str) -> list[str]:
        """Return the locations of every file under a folder, sorted, skipping (as a local
        walk does) the folders whose names start with `.` or `_`."""
        if not is_remote(location):
            found = []
            for folder, dirs, files in os.walk(local_path(location)):
                dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
                found.extend(os.path.abspath(os.path.join(folder, n)) for n in files)
            return sorted(found)
        fs, path = self._store(location)
        scheme = scheme_of(location)
        out = []
        for entry in fs.files(path):
            rel = posixpath.relpath(entry.path, path)
            if any(part.startswith((".", "_")) for part in rel.split("/")[:-1]):
                continue
            out.append(f"{scheme}://{entry.path}")
        return sorted(out)

    # ---- reading ----

    def open(self, location: str) -> Any:
        """Return a seekable binary file over a location, with `readline` and line
        iteration (a remote one reads by ranged GETs, buffered)."""
        if not is_remote(location):
            return open(local_path(location), "rb")
        fs, path = self._store(location)
        return io.BufferedReader(_NativeRaw(fs.open_input(path)), buffer_size=_CHUNK)

    def open_arrow(self, location: str) -> Any:
        """Return a pyarrow random-access file over a location (memory-mapped when local)."""
        import pyarrow as pa

        if not is_remote(location):
            return pa.memory_map(local_path(location), "r")
        fs, path = self._store(location)
        return fs.open_input(path)

    def read_bytes(self, location: str) -> bytes:
        """Return a file's bytes; raise FileNotFoundError when there is no such file."""
        size, data = self.read_within(location, None)
        if size is None or data is None:
            raise FileNotFoundError(location)
        return data

    def read_within(self, location: str, max_bytes: int | None) -> tuple[int | None, bytes | None]:
        """Return (size, bytes) of a file, bytes None when it is over `max_bytes` (never
        read); (None, None) when there is no such file. On an object store that is one HEAD
        and one GET, and the sha256 of what was read is kept: pinning the object afterwards
        (`sha256`) hashes the bytes this process ingested instead of fetching them again."""
        if not is_remote(location):
            size = self.size(location)
            if size is None or (max_bytes is not None and size > max_bytes):
                return size, None
            with open(local_path(location), "rb") as f:
                return size, f.read()
        fs, path = self._store(location)
        try:
            f = fs.open_input(path)
        except FileNotFoundError:
            return None, None
        with f:
            size = f.size()
            if max_bytes is not None and size > max_bytes:
                return size, None
            data = f.read()
        self._digests[location] = hashlib.sha256(data).hexdigest()
        return size, data

    def sha256(self, location: str) -> str:
        if not is_remote(location):
            from pipeline.record import ids

            return ids.file_sha256(local_path(location))
        if location in self._digests:
            return self._digests[location]
        h = hashlib.sha256()
        with self.open(location) as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        return h.hexdigest()

    def stamp(self, location: str) -> tuple[int, ...] | None:
        """Return what changes when a file's bytes change, None when it is no regular file:
        (size, mtime in ns, ...) with device, inode and ctime locally."""
        if not is_remote(location):
            try:
                st = os.stat(local_path(location))
            except OSError:
                return None
            if not stat.S_ISREG(st.st_mode):
                return None
            return (st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, st.st_ctime_ns)
        if location in self._stamps:
            return self._stamps[location]
        fs, path = self._store(location)
        # One listing call answers both (a HEAD each would be two round trips).
        entries = [e for e in fs.files(path) if e.path.strip("/") == path]
        return _object_stamp(entries[0]) if entries else None

    def prefetch_stamps(self, locations: list[str]) -> None:
        """List the folders of these remote locations once each, so `stamp` answers for
        every object under them without a request of its own (checking 100,000 images
        then costs a hundred listing pages, not 100,000 round trips)."""
        folders = sorted({dirname(loc) for loc in locations if is_remote(loc)})
        # A folder under another one in the set is listed with it (listings recurse).
        tops = [f for f in folders if not any(f.startswith(t + "/") for t in folders)]
        for folder in tops:
            fs, path = self._store(folder)
            scheme = scheme_of(folder)
            for entry in fs.files(path):
                self._stamps[f"{scheme}://{entry.path}"] = _object_stamp(entry)
        for loc in locations:
            # Listed folders hold every object there is: one not seen there is missing.
            if is_remote(loc) and any(loc.startswith(t + "/") for t in tops):
                self._stamps.setdefault(loc, None)


def _object_stamp(entry: Any) -> tuple[int, int]:
    """Return an object's stamp from its listing entry: (size, last-modified in ns)."""
    return (entry.size, int(entry.mtime * 1e9))


# The local-only SourceFS: for callers that read files on this machine.
LOCAL = SourceFS()
