"""`gs://` stores: the object-store file operations on Google Cloud Storage.

`GcsFS` is `ObjectStoreFS` with the S3-specific parts replaced: the pyarrow filesystem
(`GcsFileSystem`), the client for what pyarrow lacks (google-cloud-storage), and the exclusive
create, an upload with the precondition `ifGenerationMatch=0` that GCS refuses (412) once any
generation of the object exists: the commit point, as `If-None-Match: *` is on S3. Two
generic operations differ too, where pyarrow's GCS filesystem lists and deletes otherwise:
`listdir` and `remove_tree`.
"""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

from pipeline.store.fs import ObjectStoreFS, UnsupportedStore

# The variable google-cloud-storage itself reads for an emulator ("http://host:port").
EMULATOR_VAR = "STORAGE_EMULATOR_HOST"
# How long pyarrow retries a failing request: its default, Google's 15 minutes, would stall a
# run that long on an unreachable endpoint before its one-line error.
RETRY_LIMIT = timedelta(seconds=60)


class GcsFS(ObjectStoreFS):
    """The store's file operations on Google Cloud Storage or an emulator of its JSON API.

    Credentials are Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud's
    login, the metadata server), resolved by each process that uses the store. An endpoint (the
    argument, else $STORAGE_EMULATOR_HOST) is an emulator, reached without credentials, as
    google-cloud-storage does. Picklable like ObjectStoreFS: the clients are rebuilt where it is
    unpickled, and it holds no credentials of its own.
    """

    def __init__(self, endpoint_url: str | None = None):
        try:  # an optional dependency: say so now, not in the first commit's traceback
            import google.cloud.storage  # noqa: F401
        except ImportError:
            raise UnsupportedStore(
                "gs:// stores need google-cloud-storage: pip install 'roleforge[gcs]'"
            ) from None
        self.scheme = "gs"
        endpoint = endpoint_url or os.environ.get(EMULATOR_VAR) or None
        if endpoint and "://" not in endpoint:  # "localhost:9023" is a common spelling
            endpoint = f"http://{endpoint}"
        self.endpoint_url = endpoint
        self._arrow: Any = None
        self._client: Any = None

    def __repr__(self) -> str:
        return f"GcsFS(endpoint_url={self.endpoint_url!r})"

    @property
    def arrow(self) -> Any:
        """Return the pyarrow GCS filesystem of this store."""
        if self._arrow is None:
            import pyarrow.fs

            if self.endpoint_url:
                url = urlparse(self.endpoint_url)
                self._arrow = pyarrow.fs.GcsFileSystem(
                    anonymous=True,
                    scheme=url.scheme,
                    endpoint_override=url.netloc,
                    retry_time_limit=RETRY_LIMIT,
                )
            else:
                self._arrow = pyarrow.fs.GcsFileSystem(retry_time_limit=RETRY_LIMIT)
        return self._arrow

    @property
    def client(self) -> Any:
        """Return a google-cloud-storage client for what pyarrow lacks (preconditions, the
        listing of prefixes)."""
        if self._client is None:
            from google.cloud import storage

            if self.endpoint_url:
                from google.auth.credentials import AnonymousCredentials

                self._client = storage.Client(
                    project="<none>",
                    credentials=AnonymousCredentials(),
                    client_options={"api_endpoint": self.endpoint_url},
                )
            else:
                self._client = storage.Client()
        return self._client

    def _blob(self, path: str) -> Any:
        bucket, key = self._split(path)
        return self.client.bucket(bucket).blob(key)

    def listdir(self, path: str) -> list[str]:
        """Return the names of the objects and subfolders right under `path`.

        Through the client, not pyarrow: pyarrow's GCS listing yields objects only, so a
        subfolder that exists only as the prefix of its objects (every folder roleforge
        writes: no marker objects) would be missing.
        """
        bucket, key = self._split(path)
        prefix = f"{key}/" if key else ""
        blobs = self.client.list_blobs(bucket, prefix=prefix, delimiter="/")
        names = {b.name[len(prefix) :] for b in blobs if b.name != prefix}
        names.update(p[len(prefix) :].rstrip("/") for p in blobs.prefixes)
        return sorted(names)

    def create_exclusive(self, path: str, data: bytes) -> None:
        """Upload `path` only if no object has that name (`ifGenerationMatch=0`); raise
        FileExistsError when one does. GCS decides, so racing writers on any number of
        machines end with exactly one winner."""
        from google.api_core import exceptions

        try:
            self._blob(path).upload_from_string(data, if_generation_match=0)
        except exceptions.PreconditionFailed:
            if self.holds(path, data):
                return  # our own upload, retried after its reply was lost
            raise FileExistsError(self.uri(path)) from None
        except exceptions.GoogleAPICallError as exc:
            raise OSError(f"{self.uri(path)}: {exc.message}") from exc

    def remove_tree(self, path: str) -> None:
        import pyarrow.fs
        from google.api_core import exceptions

        info = self._info(path)
        if info.type == pyarrow.fs.FileType.Directory:
            # Not pyarrow's delete_dir: after the objects it deletes the folder's marker
            # object and fails (404) when there is none, the usual case on GCS.
            self.arrow.delete_dir_contents(path.rstrip("/"), missing_dir_ok=True)
            bucket, key = self._split(path)
            with contextlib.suppress(exceptions.NotFound):
                self.client.bucket(bucket).blob(f"{key}/").delete()
        elif info.type == pyarrow.fs.FileType.File:
            self.arrow.delete_file(path)
