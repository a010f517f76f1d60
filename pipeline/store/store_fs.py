"""The filesystem of a store URI: the one factory over the seam's implementations.

Apart from `pipeline/store/fs.py` so that the object-store implementations, which build on
that module (`gcs.py`), are imported only here, on demand, and never import back.
"""

from __future__ import annotations

from pipeline.store.fs import (
    OBJECT_SCHEMES,
    LocalFS,
    ObjectStoreFS,
    StoreFS,
    UnsupportedStore,
    local_store_path,
)


def store_fs(
    uri: str, endpoint_url: str | None = None, region: str | None = None
) -> tuple[StoreFS, str]:
    """Return the filesystem of a store URI and the store's path on it: a local folder, or
    `bucket/prefix` on an object store (`endpoint_url` / `region` override the env; a gs://
    store takes no region: its bucket's location is fixed)."""
    scheme = uri.split("://", 1)[0] if "://" in uri else None
    if scheme in OBJECT_SCHEMES:
        path = uri.split("://", 1)[1].strip("/")
        if not path:
            raise UnsupportedStore(f"store {uri!r} names no bucket")
        if scheme == "gs":
            from pipeline.store.gcs import GcsFS

            if region:
                raise UnsupportedStore(
                    f"store {uri!r}: store_options.region applies to s3:// stores only "
                    "(a GCS bucket's location is fixed when it is created)"
                )
            return GcsFS(endpoint_url=endpoint_url), path
        return ObjectStoreFS(scheme, endpoint_url=endpoint_url, region=region), path
    return LocalFS(), local_store_path(uri)
