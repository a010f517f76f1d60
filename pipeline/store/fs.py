"""The one filesystem seam of the store: every write, rename and fsync of a version goes here.

Two implementations with the same methods:
- `LocalFS` for local paths and `file://` URIs. The commit relies on two POSIX guarantees:
  renaming a folder is atomic, and a hard link fails when its target exists (an exclusive,
  all-or-nothing create).
- `ObjectStoreFS` for `s3://bucket/prefix` (and S3-compatible stores through an endpoint
  URL). Paths on it are `bucket/prefix/...` strings. An object store renames nothing, so
  `rename_dir` copies server-side and then deletes (readers trust only manifests, and the
  manifest is created after the copy); `create_exclusive` is a conditional PUT
  (`If-None-Match: *`), which fails when the key exists: the commit point, as `link` is
  locally. fsyncs are no-ops: a PUT is durable once it returns.
- `GcsFS` (pipeline/store/gcs.py) for `gs://bucket/prefix`: ObjectStoreFS with Google Cloud
  Storage's filesystem and client; its exclusive create is an upload with the precondition
  `ifGenerationMatch=0`.
`store_fs` (pipeline/store/store_fs.py) picks one for a store URI.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from typing import Any, Protocol

# Threads of `LocalFS.sync_tree`: enough to keep a disk's queue fed with fsyncs.
SYNC_THREADS = 8


class UnsupportedStore(ValueError):
    """The store URI names a filesystem this version of roleforge cannot commit to."""


class StoreNotWritable(OSError):
    """A folder the run must write (store, cards) cannot be created or written."""

    def __init__(self, path: str, reason: str):
        super().__init__(errno.EACCES, f"cannot write to {path}: {reason}")
        self.path = path

    def __str__(self) -> str:
        return str(self.strerror)


OBJECT_SCHEMES = ("s3", "gs")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    """One file under a folder of a store: its path, size and last modification time."""

    path: str
    size: int
    mtime: float


def local_store_path(uri: str) -> str:
    """Return the local folder of a store URI; raise UnsupportedStore for remote schemes."""
    if uri.startswith("file://"):
        return uri[len("file://") :]
    if "://" in uri:
        scheme = uri.split("://", 1)[0]
        raise UnsupportedStore(
            f"store {uri!r}: {scheme}:// stores are not supported; use a local path, "
            f"file://, or {', '.join(s + '://' for s in OBJECT_SCHEMES)}"
        )
    return uri


def _upload_tree(fs: Any, local_dir: str, path: str, skip: frozenset[str] = frozenset()) -> None:
    """Copy every file under local folder `local_dir` below `path` in the store, in name
    order, but those whose path relative to `local_dir` is in `skip` or under a folder in it
    (`upload_tree` of both filesystems: their `upload_file` differs, the walk does not)."""
    for rel in _tree_files(local_dir, skip):
        fs.upload_file(os.path.join(local_dir, rel), os.path.join(path, rel))


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
        return _replace_on_close(path)

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

    def sync_tree(self, path: str) -> None:
        """Make every file under folder `path`, and every folder entry, durable: one fsync
        per file (in threads: fsync releases the GIL, and the disk queues several at once),
        then each folder, deepest first.

        The shard tasks write without fsync (each file's writeback was started as it was
        written, `start_writeback`), so the disk flushes one shard while the next is
        encoded; the commit calls this once over the staged version before it publishes."""
        from concurrent.futures import ThreadPoolExecutor

        files, folders = [], []
        for folder, _, names in os.walk(path):
            folders.append(folder)
            files.extend(os.path.join(folder, name) for name in names)
        if files:
            with ThreadPoolExecutor(min(SYNC_THREADS, len(files))) as pool:
                # list(): an fsync that fails (EIO, a full disk) raises here.
                list(pool.map(self.fsync_file, files))
        for folder in sorted(folders, key=lambda f: f.count(os.sep), reverse=True):
            self.fsync_dir(folder)

    def start_writeback(self, stream: Any, start: int, stop: int) -> None:
        """Ask the kernel to start writing bytes [start, stop) of an `open_output` stream
        to disk, without waiting; durability still comes from `fsync_file`.

        The kernel otherwise holds a fresh file's pages until the fsync, so the disk sits
        idle while the writer computes and the fsync then waits for every byte; started
        batch by batch, the writes overlap the writer's own work and the fsync waits for
        the tail (RocksDB's and PostgreSQL's `sync_file_range` pacing). Linux only; a
        no-op elsewhere.
        """
        call = _linux_libc("sync_file_range")
        if call is not None and stop > start:
            call(stream.fileno(), start, stop - start, _SYNC_FILE_RANGE_WRITE)

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

    def link_file(self, src: str, dst: str) -> None:
        """Give the immutable file `src` the second name `dst`: a hard link (no byte
        copied), or a copy where the filesystem refuses one (another device, no links).
        Nothing may write into either name afterwards: the two are one file."""
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        try:
            os.link(src, dst)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP):
                raise
            shutil.copyfile(src, dst)

    def remove_tree(self, path: str) -> None:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)

    def size(self, path: str) -> int:
        return os.path.getsize(path)

    def is_file(self, path: str) -> bool:
        return os.path.isfile(path)

    def sha256(self, path: str) -> str:
        from pipeline.record.ids import file_sha256

        return file_sha256(path)

    def files(self, path: str) -> list[FileEntry]:
        """Return every file under `path` (or `path` itself when it is a file or a link),
        links not followed; an absent path has none."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return []
        if not os.path.isdir(path) or os.path.islink(path):
            return [FileEntry(path, st.st_size, st.st_mtime)]
        entries = []
        for root, _dirs, names in os.walk(path):
            for name in names:
                full = os.path.join(root, name)
                try:
                    st = os.lstat(full)
                except FileNotFoundError:  # removed while we walk: not ours to count
                    continue
                entries.append(FileEntry(full, st.st_size, st.st_mtime))
        return entries

    def mtime(self, path: str) -> float:
        """Return when `path` or any folder under it last changed (a folder's time moves
        when an entry is added, so an empty new subfolder counts as recent)."""
        newest = os.lstat(path).st_mtime
        if os.path.isdir(path) and not os.path.islink(path):
            for root, dirs, _files in os.walk(path):
                for name in dirs:
                    try:
                        newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
                    except FileNotFoundError:
                        continue
        return newest

    @property
    def is_local(self) -> bool:
        return True

    def upload_file(self, local_path: str, path: str) -> None:
        """Copy the local file `local_path` to `path` in the store, whole."""
        self.copy_file(local_path, path)

    upload_tree = _upload_tree

    def download_tree(self, path: str, local_dir: str) -> None:
        """Copy every file under folder `path` of the store into local folder `local_dir`."""
        shutil.copytree(path, local_dir, dirs_exist_ok=True)


_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of dirty pages, do not wait


_MADV_DONTNEED = 4  # <sys/mman.h>


@functools.cache
def _linux_libc(name: str) -> Any:
    """Return libc's function `name` (Linux), typed, or None where there is none."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        # The symbols this process already has loaded (libc's among them), not
        # `ctypes.util.find_library("c")`: that runs `ldconfig -p` in a child process, a fork
        # of this one (a worker of ~300 MB, once per name), which a process-tree RSS sampler
        # counts as that much again (the memory figure's spikes of +275 MB).
        call = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    signatures = {
        "madvise": [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int],
        "malloc_trim": [ctypes.c_size_t],
        "sync_file_range": [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint],
    }
    call.argtypes = signatures[name]
    call.restype = ctypes.c_int
    return call


def drop_mapped_pages(address: int, length: int) -> None:
    """Unmap from this process the pages of a read-only file mapping at `address` (they stay
    in the page cache, and a later read maps them again): what a mapping touched stops
    counting as this process's memory. A no-op where `madvise` is missing."""
    call = _linux_libc("madvise")
    if call is not None and length > 0:
        call(address, length, _MADV_DONTNEED)


def release_free_memory() -> None:
    """Hand back to the system the pages this process's allocators keep after frees: Arrow's
    pool (mimalloc keeps them for reuse) and glibc's heaps, every arena (`malloc_trim`;
    `cluster.WORKER_ENV` has glibc keep up to 256 MB at a heap's top, so a worker that ran
    media tasks holds what they freed). The next allocations fault pages in again, so call
    it where a task's memory peaks, not per batch."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    call = _linux_libc("malloc_trim")
    if call is not None:
        call(0)


def _tree_files(local_dir: str, skip: frozenset[str]) -> list[str]:
    """Return the files under `local_dir` relative to it, sorted, without those in `skip` or
    under a folder in it."""
    out = []
    for root, dirs, names in os.walk(local_dir):
        rel_root = os.path.relpath(root, local_dir)
        rel_root = "" if rel_root == "." else rel_root
        dirs[:] = sorted(d for d in dirs if os.path.join(rel_root, d) not in skip)
        out += [os.path.join(rel_root, n) for n in names if os.path.join(rel_root, n) not in skip]
    return sorted(out)


@functools.cache
def _replace_on_close_class() -> type:
    """Return the class of `open_output_whole`'s streams (built on first use: pyarrow is
    imported lazily here)."""
    import pyarrow as pa

    class ReplaceOnClose(pa.OSFile):
        """An output stream to a temp file beside `path`, renamed over `path` on close.

        A pyarrow OSFile itself, not a Python object wrapping one: an IPC writer given a
        Python file calls back into Python (under the GIL) for every buffer it writes, a
        part's ~200 per table, ~0.1 ms a record in the record pass.
        """

        path: str
        _tmp: str

        def close(self) -> None:
            if not self.closed:
                super().close()
                os.replace(self._tmp, self.path)

    return ReplaceOnClose


def _replace_on_close(path: str) -> Any:
    """Return a new output stream to a temp file beside `path`, renamed over `path` on close."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{secrets.token_hex(8)}")
    stream = _replace_on_close_class()(tmp, "wb")
    stream.path, stream._tmp = path, tmp
    return stream


class StoreFS(Protocol):
    """What the store needs of a filesystem (LocalFS, ObjectStoreFS and GcsFS provide it)."""

    @property
    def arrow(self) -> Any: ...
    @property
    def is_local(self) -> bool: ...
    def open_input(self, path: str) -> Any: ...
    def open_output(self, path: str) -> Any: ...
    def open_output_whole(self, path: str) -> Any: ...
    def read_bytes(self, path: str) -> bytes: ...
    def write_bytes(self, path: str, data: bytes) -> None: ...
    def uri(self, path: str) -> str: ...
    def makedirs(self, path: str) -> None: ...
    def check_writable(self, path: str) -> None: ...
    def exists(self, path: str) -> bool: ...
    def is_file(self, path: str) -> bool: ...
    def listdir(self, path: str) -> list[str]: ...
    def files(self, path: str) -> list[FileEntry]: ...
    def mtime(self, path: str) -> float: ...
    def fsync_file(self, path: str) -> None: ...
    def fsync_dir(self, path: str) -> None: ...
    def sync_tree(self, path: str) -> None: ...
    def start_writeback(self, stream: Any, start: int, stop: int) -> None: ...
    def rename_dir(self, src: str, dst: str) -> None: ...
    def create_exclusive(self, path: str, data: bytes) -> None: ...
    def copy_file(self, src: str, dst: str) -> None: ...
    def link_file(self, src: str, dst: str) -> None: ...
    def remove_tree(self, path: str) -> None: ...
    def size(self, path: str) -> int: ...
    def sha256(self, path: str) -> str: ...
    def upload_file(self, local_path: str, path: str) -> None: ...
    def upload_tree(
        self, local_dir: str, path: str, skip: frozenset[str] = frozenset()
    ) -> None: ...
    def download_tree(self, path: str, local_dir: str) -> None: ...


def _env(*names: str) -> str | None:
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    return None


class ObjectStoreFS:
    """The store's file operations on S3 or an S3-compatible object store.

    Data goes through pyarrow's S3 filesystem (C++, multipart uploads, ranged reads); only
    the conditional PUT of `create_exclusive` goes through boto3, which pyarrow does not
    offer. Credentials, region and endpoint come from the arguments, else the usual
    variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION /
    AWS_DEFAULT_REGION, AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL), read when the object is
    made; unset credentials leave the SDKs' default chain (profile, instance role) to each
    process. Picklable: the clients are rebuilt in the process that unpickles it, so a Ray
    task on another node receives the endpoint and keys it was made with.

    Only `__init__`, `arrow`, `client` and `create_exclusive` speak S3; the rest works on any
    pyarrow filesystem of an object store. `GcsFS` (gs://) replaces those parts, and
    `listdir` / `remove_tree`, where pyarrow's GCS filesystem lists and deletes differently.
    """

    def __init__(
        self,
        scheme: str = "s3",
        endpoint_url: str | None = None,
        region: str | None = None,
    ):
        if scheme != "s3":  # gs:// is GcsFS, the rest nothing roleforge can commit to
            raise UnsupportedStore(f"{scheme}:// is not an S3 store")
        self.scheme = scheme
        self.endpoint_url = endpoint_url or _env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        # A custom endpoint rarely answers the region lookup AWS does: default it there.
        self.region = region or _env("AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1"
        self._access_key = _env("AWS_ACCESS_KEY_ID")
        self._secret_key = _env("AWS_SECRET_ACCESS_KEY")
        self._session_token = _env("AWS_SESSION_TOKEN")
        self._arrow: Any = None
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_arrow"] = state["_client"] = None
        return state

    def __repr__(self) -> str:  # never the keys
        return f"ObjectStoreFS({self.scheme!r}, endpoint_url={self.endpoint_url!r})"

    @property
    def is_local(self) -> bool:
        return False

    @property
    def arrow(self) -> Any:
        """Return the pyarrow S3 filesystem of this store."""
        if self._arrow is None:
            import pyarrow.fs

            self._arrow = pyarrow.fs.S3FileSystem(
                access_key=self._access_key,
                secret_key=self._secret_key,
                session_token=self._session_token,
                region=self.region,
                endpoint_override=self.endpoint_url,
            )
        return self._arrow

    @property
    def client(self) -> Any:
        """Return a boto3 S3 client for what pyarrow lacks (the conditional PUT)."""
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                aws_access_key_id=self._access_key,
                aws_secret_access_key=self._secret_key,
                aws_session_token=self._session_token,
            )
        return self._client

    @staticmethod
    def _split(path: str) -> tuple[str, str]:
        bucket, _, key = path.strip("/").partition("/")
        return bucket, key

    def _info(self, path: str) -> Any:
        return self.arrow.get_file_info(path.rstrip("/"))

    def open_input(self, path: str) -> Any:
        """Return a random-access pyarrow file over `path` (ranged GETs)."""
        return self.arrow.open_input_file(path)

    def open_output(self, path: str) -> Any:
        """Return a new pyarrow output stream at `path`; the object appears whole on close."""
        return self.arrow.open_output_stream(path)

    def open_output_whole(self, path: str) -> Any:
        """The same as `open_output`: a PUT (or a multipart upload's completion) replaces an
        object all at once, so readers see the old bytes or the new."""
        return self.open_output(path)

    def read_bytes(self, path: str) -> bytes:
        with self.arrow.open_input_stream(path) as f:
            return f.read()

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write a small object whole (a PUT replaces an object atomically)."""
        with self.arrow.open_output_stream(path) as f:
            f.write(data)

    def uri(self, path: str) -> str:
        return f"{self.scheme}://{path}"

    def makedirs(self, path: str) -> None:
        """Nothing to do: an object store has no folders, only key prefixes."""

    def check_writable(self, path: str) -> None:
        """Raise StoreNotWritable unless this process can PUT and DELETE under `path`."""
        probe = os.path.join(path, f".write-check-{secrets.token_hex(8)}")
        try:
            with self.arrow.open_output_stream(probe) as f:
                f.write(b"")
            self.arrow.delete_file(probe)
        except OSError as exc:
            raise StoreNotWritable(self.uri(path), str(exc).splitlines()[0]) from None

    def exists(self, path: str) -> bool:
        import pyarrow.fs

        return self._info(path).type != pyarrow.fs.FileType.NotFound

    def is_file(self, path: str) -> bool:
        import pyarrow.fs

        return self._info(path).type == pyarrow.fs.FileType.File

    def listdir(self, path: str) -> list[str]:
        import pyarrow.fs

        selector = pyarrow.fs.FileSelector(path.rstrip("/"), allow_not_found=True)
        try:
            infos = self.arrow.get_file_info(selector)
        except NotADirectoryError:
            return []
        return sorted(info.base_name for info in infos)

    def files(self, path: str) -> list[FileEntry]:
        import pyarrow.fs

        info = self._info(path)
        if info.type == pyarrow.fs.FileType.NotFound:
            return []
        if info.type == pyarrow.fs.FileType.File:
            infos = [info]
        else:
            selector = pyarrow.fs.FileSelector(
                path.rstrip("/"), allow_not_found=True, recursive=True
            )
            infos = self.arrow.get_file_info(selector)
        return [
            FileEntry(i.path, i.size or 0, i.mtime.timestamp() if i.mtime else time.time())
            for i in infos
            if i.type == pyarrow.fs.FileType.File
        ]

    def mtime(self, path: str) -> float:
        """Return the newest change under `path` (a prefix has no time of its own; one
        with no objects, only the empty folder marker pyarrow leaves after a delete, holds
        nothing a run still writes, so it counts as old)."""
        entries = self.files(path)
        if entries:
            return max(e.mtime for e in entries)
        if not self.exists(path):
            raise FileNotFoundError(self.uri(path))
        return 0.0

    def fsync_file(self, path: str) -> None:
        """Nothing to do: an object is durable once its PUT returns."""

    def fsync_dir(self, path: str) -> None:
        """Nothing to do: there is no folder entry to make durable."""

    def sync_tree(self, path: str) -> None:
        """Nothing to do: every object is durable once its PUT returns."""

    def start_writeback(self, stream: Any, start: int, stop: int) -> None:
        """Nothing to do: an upload goes out as it is written."""

    def rename_dir(self, src: str, dst: str) -> None:
        """Copy every object under `src` to `dst` server-side, then delete `src`; raise
        FileExistsError when `dst` holds anything. Not atomic: the committer claims `dst`
        first (a conditional PUT) and creates the manifest only after this returns, so no
        reader sees the half-copied folder."""
        for entry in self.files(dst):
            if os.path.basename(entry.path) != CLAIM_FILE:
                raise FileExistsError(dst)
        src = src.rstrip("/")
        for entry in self.files(src):
            self.arrow.copy_file(entry.path, os.path.join(dst, os.path.relpath(entry.path, src)))
        self.remove_tree(src)

    def create_exclusive(self, path: str, data: bytes) -> None:
        """PUT `path` only if no object has that key (`If-None-Match: *`); raise
        FileExistsError when one does. The store decides, so racing writers on any number
        of machines end with exactly one winner."""
        from botocore.exceptions import ClientError

        bucket, key = self._split(path)
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            # 412: the key exists; 409: a concurrent conditional PUT on it is in flight.
            if error.get("Code") in ("PreconditionFailed", "ConditionalRequestConflict") or (
                status in (409, 412)
            ):
                if self.holds(path, data):
                    return  # our own PUT, retried after its reply was lost
                raise FileExistsError(self.uri(path)) from None
            raise OSError(f"{self.uri(path)}: {error.get('Message') or exc}") from exc

    def holds(self, path: str, data: bytes) -> bool:
        """Return whether the object at `path` holds exactly `data`.

        An exclusive create that finds its key taken asks this: the SDKs retry a PUT whose
        reply was lost, and the retry then meets the object the first attempt made. Those
        bytes are ours, so the create succeeded. Writers that race for a key therefore write
        bytes of their own (the committer's claim carries a token; only the claim's holder
        writes the manifest), and writers of identical bytes want the same outcome anyway.
        """
        try:
            return self.read_bytes(path) == data
        except (FileNotFoundError, OSError):
            return False

    def copy_file(self, src: str, dst: str) -> None:
        self.arrow.copy_file(src, dst)

    def link_file(self, src: str, dst: str) -> None:
        """Copy object `src` to `dst` server-side (no byte passes through this process)."""
        self.arrow.copy_file(src, dst)

    def remove_tree(self, path: str) -> None:
        import pyarrow.fs

        info = self._info(path)
        if info.type == pyarrow.fs.FileType.Directory:
            self.arrow.delete_dir(path.rstrip("/"))
        elif info.type == pyarrow.fs.FileType.File:
            self.arrow.delete_file(path)

    def size(self, path: str) -> int:
        import pyarrow.fs

        info = self._info(path)
        if info.type != pyarrow.fs.FileType.File:
            raise FileNotFoundError(self.uri(path))
        return int(info.size)

    def sha256(self, path: str) -> str:
        h = hashlib.sha256()
        with self.arrow.open_input_stream(path) as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        return h.hexdigest()

    def upload_file(self, local_path: str, path: str) -> None:
        """PUT the local file `local_path` as object `path` (multipart when large)."""
        import pyarrow.fs

        pyarrow.fs.copy_files(
            local_path,
            path,
            source_filesystem=pyarrow.fs.LocalFileSystem(),
            destination_filesystem=self.arrow,
        )

    upload_tree = _upload_tree

    def download_tree(self, path: str, local_dir: str) -> None:
        """GET every object under prefix `path` into local folder `local_dir`; raise
        FileNotFoundError when the prefix holds none."""
        import pyarrow.fs

        entries = self.files(path)
        if not entries:
            raise FileNotFoundError(self.uri(path))
        local = pyarrow.fs.LocalFileSystem()
        prefix = path.rstrip("/")
        for entry in entries:
            target = os.path.join(local_dir, os.path.relpath(entry.path, prefix))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            pyarrow.fs.copy_files(
                entry.path, target, source_filesystem=self.arrow, destination_filesystem=local
            )


# The object a committer puts in versions/v<N>/ on an object store to claim number N.
CLAIM_FILE = ".claim"
