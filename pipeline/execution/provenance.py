"""Provenance of a run, for its manifest: input files with hashes (media included), the code
that ran, and what each configured augmentation op did.

Inputs, recipe hash and code identity together are what an unchanged rerun is recognised
by before any stage work (`unchanged_inputs`): the same ones rebuild the same version.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import subprocess
import time
from importlib import metadata
from typing import Any

from pipeline.readers.files import source_input_files
from pipeline.readers.source_fs import LOCAL, SourceFS
from pipeline.recipe import Recipe, SourceConfig
from pipeline.record.location import abspath, is_remote, relative_to
from pipeline.store.manifest import (
    INPUT_KINDS,
    AugmentationSummary,
    AugmentOp,
    CodeVersion,
    InputFile,
    InputKind,
)

log = logging.getLogger(__name__)

# Libraries whose version can change what a record becomes: the codecs, the op libraries
# what they draw random numbers from, and the models an op may load. A version built under others is not "unchanged".
LIBRARIES = (
    "pyarrow",
    "ray",
    "albumentations",
    "albucore",
    "opencv-python-headless",
    "pillow",
    "audiomentations",
    "soundfile",
    "soxr",
    "librosa",
    "nlpaug",
    "nltk",
    "numpy",
    "scipy",
    "torch",
    "transformers",
)
# The packages whose files decide a data job's output. trainers/ is left out: a change to
# training code must not make the data job redo its work.
DATA_PACKAGES = ("pipeline", "augmenters")
# A file modified this close to being hashed may change again within the clock's
# granularity without a new mtime (git's "racy" index entries): it is not memoized.
RACY_WINDOW_NS = 2_000_000_000


@functools.cache
def source_sha256() -> str:
    """Return the sha256 over the path and bytes of every file of the data-path packages.

    The git commit is not enough: a wheel install has none, and it does not see uncommitted
    edits. Computed once per process (the code imported cannot change under it).
    """
    h = hashlib.sha256()
    for package, root, path in code_files():
        rel = f"{package}/{os.path.relpath(path, root)}".replace(os.sep, "/").encode()
        h.update(len(rel).to_bytes(8, "little") + rel)
        # Through the pins (`pinned_file`): a file whose stat is unchanged is not read again.
        digest = pinned_file(path)[0]
        if digest is None:
            raise FileNotFoundError(path)  # listed a moment ago: the checkout is changing
        h.update(bytes.fromhex(digest))
    return h.hexdigest()


@functools.cache
def code_files() -> tuple[tuple[str, str, str], ...]:
    """Return (package, its folder, file) of every file of the data-path packages, sorted."""
    out = []
    for package in DATA_PACKAGES:
        root = os.path.dirname(os.path.abspath(__import__(package).__file__))
        files = []
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            files.extend(os.path.join(folder, n) for n in names if not n.endswith(".pyc"))
        out.extend((package, root, path) for path in sorted(files))
    return tuple(out)


@functools.cache
def _git_commit() -> str | None:
    # Once per process: a run asks for its code version several times (the unchanged
    # check, each ingest memo's key, the manifest), and each ask forked git.
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        done = subprocess.run(
            ["git", "-C", repo, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


@functools.cache
def _version_of(dist: str) -> str | None:
    # Cached: each lookup scans site-packages (~20 ms), and installed versions do not
    # change under a running process that has imported them.
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def code_version() -> CodeVersion:
    """Return the package version, the data-path source digest, the git commit (when run
    from a checkout) and the Python and library versions."""
    return CodeVersion(
        roleforge=_version_of("roleforge"),
        git_commit=_git_commit(),
        source_sha256=source_sha256(),
        libraries={
            "python": platform.python_version(),
            **{name: _version_of(name) for name in LIBRARIES},
        },
    )


# (the file's stamp, its sha256) per absolute location: what this process hashed, and the
# local pins a store kept from earlier runs (`PinCache`).
_hashed: dict[str, tuple[tuple[int, ...], str]] = {}
# The locations of `_hashed` this process read the bytes of (not taken from a PinCache).
_fresh: set[str] = set()


def remember_pins(pins: dict[str, Any]) -> None:
    """Take `pins` (location -> [stamp, sha256], as `stamped_pins` returns them) as known;
    an entry this process already has stays (both were checked against the same stat)."""
    for location, (stamp, digest) in pins.items():
        _hashed.setdefault(location, (tuple(stamp), digest))


def stamped_pins(locations: Any) -> dict[str, Any]:
    """Return location -> [stamp, sha256] of the local `locations` this process knows the
    hash of at a stamp outside the racy window (what a `PinCache` may keep)."""
    out = {}
    for location in locations:
        known = _hashed.get(location)
        if known is not None and not is_remote(location):
            out[location] = [list(known[0]), known[1]]
    return out


def forget_pins() -> None:
    """Forget every pin this process holds: the next `pinned_file` of each file reads it."""
    _hashed.clear()
    _fresh.clear()


def hashed_files() -> int:
    """Return how many files this process read the bytes of to pin them."""
    return len(_fresh)


def pin_locations(recipe: Recipe, inputs: list[InputFile]) -> list[str]:
    """Return the local locations a version's pins stand for: its input files and the
    data-path code files (`source_sha256`)."""
    files = [abspath(recipe.resolve(e.path)) for e in inputs]
    return [f for f in files if not is_remote(f)] + [path for _, _, path in code_files()]


class PinCache:
    """The sha256 of local input files by their stat, kept across runs in one file of the
    store's cache folder (`<store>/<name>/cache/pins.json`), so that a rerun reads only the
    files whose stat changed, as git's index, make and rsync do.

    A pin is taken as is when the file's stamp still equals the one it was hashed at:
    size, mtime and ctime in ns, device and inode (`SourceFS.stamp`). Any write changes
    mtime and ctime, and restoring the mtime (`touch -d`, `os.utime`) sets ctime to now,
    which no user call can set back; a file replaced by another gets a new inode. A pin
    hashed within `RACY_WINDOW_NS` of its mtime is never kept (a write in the same clock
    tick would leave the stat as it was). What it cannot see: bytes changed under an
    unchanged stat, i.e. a raw write to the block device, a clock set back to forge a
    ctime, or a filesystem that keeps no ctime or coarse times the window does not
    cover. `roleforge run --rehash` (or deleting cache/) reads every file again.
    Objects on a store are pinned by their own size and time (`_object_input`), not here.
    """

    FORMAT = 1

    def __init__(self, path: str, fs: Any):
        self.path = path
        self.fs = fs

    def load(self) -> int:
        """Take the kept pins as known (`remember_pins`); return how many. A file that does
        not read is ignored: it costs hashing, never a wrong pin."""
        try:
            kept = json.loads(self.fs.read_bytes(self.path))
            if kept.get("format") != self.FORMAT:
                return 0
            pins = kept["pins"]
            remember_pins(pins)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("pin cache %s is unreadable: %s", self.path, exc)
            return 0
        return len(pins)

    def save(self, locations: Any) -> None:
        """Keep the pins of `locations` (what the last version pinned) for the next run; a
        cache that cannot be written costs the next run hashing, not this run."""
        data = {"format": self.FORMAT, "pins": stamped_pins(sorted(set(locations)))}
        try:
            self.fs.write_bytes(self.path, json.dumps(data, separators=(",", ":")).encode())
        except OSError as exc:
            log.warning("pin cache %s not written: %s", self.path, exc)


def pinned_file(
    path: str, fs: SourceFS = LOCAL, stamp: tuple[int, ...] | None = None
) -> tuple[str | None, int | None]:
    """Return (sha256, bytes) of the file at `path` (local or on an object store), or
    (None, None) when it is not a file; `stamp`: `fs.stamp(path)` if the caller took it.

    Each file is hashed once per process while its stat is the same: the early unchanged
    check and the run that follows it read every media file's hash.
    """
    path = abspath(path)
    stamp = stamp or fs.stamp(path)
    if stamp is None:
        return None, None
    size = stamp[0]
    known = _hashed.get(path)
    if known is not None and known[0] == stamp:
        return known[1], size
    started = time.time_ns()
    digest = fs.sha256(path)
    # A file changed within the racy window may change again unseen by its stamp.
    if started - stamp[1] > RACY_WINDOW_NS:
        _hashed[path] = (stamp, digest)
        _fresh.add(path)
    return digest, size


def _input_file(
    source: str,
    kind: InputKind,
    path: str,
    base: str,
    fs: SourceFS = LOCAL,
    recorded: dict[str, InputFile] | None = None,
) -> InputFile:
    rel = relative_to(path, base)
    if is_remote(path):
        return _object_input(source, kind, path, rel, fs, (recorded or {}).get(rel))
    sha256, size = pinned_file(path, fs)
    return InputFile(source=source, kind=kind, path=rel, sha256=sha256, bytes=size)


def _object_input(
    source: str, kind: InputKind, location: str, rel: str, fs: SourceFS, prior: InputFile | None
) -> InputFile:
    """Pin an object on a store by sha256, size and last-modified time. A `prior` pin with
    the same size and time is taken as is, without reading the object (how `aws s3 sync`
    judges objects): a rewrite gets a new time. The time is recorded only when the hash
    was taken outside the racy window after it, so a rewrite within the same second of the
    store's clock is never mistaken for the pinned bytes."""
    stamp = fs.stamp(location)
    if stamp is None:
        return InputFile(source=source, kind=kind, path=rel, sha256=None, bytes=None)
    size, mtime_ns = stamp
    modified = mtime_ns / 1e9
    if prior is not None and prior.sha256 and (prior.bytes, prior.modified) == (size, modified):
        return InputFile(
            source=source, kind=kind, path=rel, sha256=prior.sha256, bytes=size, modified=modified
        )
    started = time.time_ns()
    sha256, _ = pinned_file(location, fs, stamp)
    trusted = started - mtime_ns > RACY_WINDOW_NS
    return InputFile(
        source=source,
        kind=kind,
        path=rel,
        sha256=sha256,
        bytes=size,
        modified=modified if trusted else None,
    )


def _pin(entry: InputFile) -> tuple[Any, ...]:
    """What decides whether an input changed: its place and its bytes (not its time)."""
    return (entry.source, entry.kind, entry.path, entry.sha256, entry.bytes)


def _file_entries(
    recipe: Recipe, fs: SourceFS | None = None, recorded: dict[str, InputFile] | None = None
) -> list[InputFile]:
    fs = fs or SourceFS.of(recipe)
    entries = []
    for source in recipe.sources:
        characters = {
            abspath(recipe.resolve(p))
            for p in [*source.characters_files, *([source.persona] if source.persona else [])]
        }
        for path in source_input_files(source, recipe):
            kind: InputKind = "characters" if path in characters else "dialogue"
            entries.append(_input_file(source.name, kind, path, recipe.base_dir, fs, recorded))
    # The decontamination files decide what is quarantined as `contaminated`: pinned too.
    for path in recipe.quality.decontaminate if recipe.quality is not None else []:
        location = recipe.resolve(path)
        entries.append(_input_file("quality", "held_out", location, recipe.base_dir, fs, recorded))
    return entries


def _sorted(entries: list[InputFile]) -> list[InputFile]:
    return sorted(
        entries, key=lambda e: (e.source, INPUT_KINDS.index(e.kind or "dialogue"), e.path)
    )


def held_out_sha256(recipe: Recipe) -> list[str]:
    """Return the sha256 of every `quality.decontaminate` file (for the record-cache key)."""
    if recipe.quality is None:
        return []
    return [pinned_file(recipe.resolve(p), LOCAL)[0] or "" for p in recipe.quality.decontaminate]


def input_entries(recipe: Recipe) -> list[InputFile]:
    """Return every source's input files with sha256 and size, paths relative to the recipe's
    folder: dialogue and character files, and every media file the records name (a missing
    one pinned with sha256 None); by source, kind and path."""
    media = [m for source in recipe.sources for m in media_entries(source, recipe)]
    return pinned_inputs(recipe, media)


def media_entries(
    source: SourceConfig,
    recipe: Recipe,
    fs: SourceFS | None = None,
    lines_from: dict[str, Any] | None = None,
) -> list[InputFile]:
    """Return the media files one source's records name, each pinned with sha256 and size:
    the per-record part of `input_entries`, which the data job's ingest tasks compute so
    the driver reads no media byte. `lines_from` (file -> LinesFrom) reads those files
    from there on (a grown file's new lines)."""
    from pipeline.readers import referenced_media

    fs = fs or SourceFS.of(recipe)
    paths = referenced_media(source, recipe, fs, lines_from)
    fs.prefetch_stamps(paths)  # objects on a store: one listing per folder, not per object
    return [_input_file(source.name, "media", path, recipe.base_dir, fs) for path in paths]


def pinned_inputs(recipe: Recipe, media: list[InputFile]) -> list[InputFile]:
    """Return the dialogue and character files of every source, pinned, with `media` (from
    `media_entries`), in the manifest's order."""
    return _sorted(_file_entries(recipe) + media)


def unchanged_inputs(recipe: Recipe, recorded: list[InputFile]) -> bool:
    """Return whether `recorded` (a manifest's inputs) pins exactly this recipe's inputs as
    they are now, media included, without parsing a record.

    The dialogue and character files are listed afresh; the media files are the ones the
    manifest lists. That suffices: the same dialogue files read by the same code under the
    same recipe name the same media.
    """
    if any(e.kind is None for e in recorded):
        return False  # written before media were pinned: nothing proves them unchanged
    fs = SourceFS.of(recipe)
    by_path = {e.path: e for e in recorded}
    # Objects on a store: one listing per folder answers every size and time.
    fs.prefetch_stamps([recipe.resolve(e.path) for e in recorded])
    files = [e for e in recorded if e.kind != "media"]
    now = _file_entries(recipe, fs, by_path)
    if [_pin(e) for e in _sorted(now)] != [_pin(e) for e in _sorted(files)]:
        return False
    return media_pins_hold(recipe, [e for e in recorded if e.kind == "media"], fs, by_path)


def media_pins_hold(
    recipe: Recipe,
    pins: list[InputFile],
    fs: SourceFS | None = None,
    recorded: dict[str, InputFile] | None = None,
) -> bool:
    """Return whether every media file of `pins` still has the bytes (or the absence) it
    was pinned with."""
    fs = fs or SourceFS.of(recipe)
    for e in pins:
        # A media file on an object store is recorded by its URI, which resolve keeps.
        path = recipe.resolve(e.path)
        if not is_remote(path):
            # `_pin` of a local file without building its InputFile (a rerun checks
            # every media file): the same place, kind and (sha256, bytes).
            if e.kind != "media" or relative_to(path, recipe.base_dir) != e.path:
                return False
            if pinned_file(path, fs) != (e.sha256, e.bytes):
                return False
            continue
        pinned = _input_file(e.source, "media", path, recipe.base_dir, fs, recorded)
        if _pin(pinned) != _pin(e):
            return False
    return True


def augmentation_summary(recipe: Recipe, stats: dict[str, Any]) -> AugmentationSummary:
    """Return the manifest's augmentation block: each configured op with its counts."""
    ops = []
    per_op = stats.get("ops") or {}
    for modality in ("text", "image", "audio", "dialogue"):
        for spec in getattr(recipe.augment, modality):
            counted = per_op.get(f"{modality}:{spec['op']}", {})
            ops.append(
                AugmentOp(
                    modality=modality,
                    op=spec["op"],
                    configured=spec,
                    applied=counted.get("applied", 0),
                    skipped=counted.get("skipped", 0),
                )
            )
    return AugmentationSummary(copies=recipe.augment.copies, ops=ops, stats=stats)
