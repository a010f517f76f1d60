"""Locations: where a file is, as one string, local or on an object store.

A location is an absolute local path (or a `file://` URI), or a URI `scheme://bucket/key`
of an object on a store (`s3://`, `gs://`). Local locations follow `os.path` (symlinks
resolve); remote ones are POSIX paths under their scheme (an object store has no links).
Opening them is the readers' business (`pipeline.readers.source_fs`).
"""

from __future__ import annotations

import os
import posixpath
import re

_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<path>.*)$")


def scheme_of(location: str) -> str | None:
    """Return the URI scheme of a location (`s3`, `gs`...), None for a local path."""
    m = _URI.match(location)
    if m is None:
        return None
    scheme = m.group("scheme").lower()
    return None if scheme == "file" else scheme


def is_remote(location: str) -> bool:
    """Return whether a location names an object on a store rather than a local file."""
    return scheme_of(location) is not None


def split_uri(location: str) -> tuple[str, str]:
    """Return (scheme, `bucket/key`) of a remote location."""
    m = _URI.match(location)
    if m is None:
        raise ValueError(f"{location!r} is not a URI")
    return m.group("scheme").lower(), m.group("path")


def local_path(location: str) -> str:
    """Return a local location without its `file://` scheme."""
    return location[len("file://") :] if location.startswith("file://") else location


# ---- paths: local ones with os.path, remote ones as POSIX paths under the scheme ----


def normpath(location: str) -> str:
    """Return a location with `.` and `..` resolved (a URI keeps its scheme)."""
    if not is_remote(location):
        return os.path.normpath(local_path(location))
    scheme, path = split_uri(location)
    return f"{scheme}://{posixpath.normpath('/' + path).lstrip('/')}"


def abspath(location: str) -> str:
    """Return a location made absolute (local) or normalised (remote)."""
    return normpath(location) if is_remote(location) else os.path.abspath(local_path(location))


def realpath(location: str) -> str:
    """Return a location with symlinks resolved (an object store has none)."""
    return normpath(location) if is_remote(location) else os.path.realpath(local_path(location))


def dirname(location: str) -> str:
    if not is_remote(location):
        return os.path.dirname(local_path(location))
    scheme, path = split_uri(location)
    return f"{scheme}://{posixpath.dirname(path.rstrip('/'))}"


def join(location: str, *parts: str) -> str:
    if not is_remote(location):
        return os.path.join(local_path(location), *parts)
    return normpath(posixpath.join(location.rstrip("/"), *parts))


def relative_to(location: str, base: str) -> str:
    """Return `location` relative to folder `base`, `/`-separated; a location on another
    store than `base` (a bucket beside a local recipe) is returned whole."""
    if is_remote(location) != is_remote(base) or (
        is_remote(location) and split_uri(location)[0] != split_uri(base)[0]
    ):
        return location
    if not is_remote(location):
        return os.path.relpath(local_path(location), local_path(base)).replace(os.sep, "/")
    return posixpath.relpath("/" + split_uri(location)[1], "/" + split_uri(base)[1].rstrip("/"))


def is_within(location: str, folder: str) -> bool:
    """Return whether a (real, normalised) location lies inside `folder`."""
    if is_remote(location) or is_remote(folder):
        prefix = normpath(folder).rstrip("/") + "/"
        return normpath(location).startswith(prefix)
    return os.path.commonpath([folder, location]) == folder
