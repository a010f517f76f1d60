"""Local folders for the model folders of a store on an object store: where runs work, and
where finished models are downloaded to be loaded.

transformers, peft and the Trainer read and write local files only. On a local store a
run works in its folder of the store and a model loads from there: every method here is
then the identity or does nothing (no copy, no temp folder). On an object store a run works
in `<work dir>/<store hash>/<name>/models/<run_id>/` (`$ROLEFORGE_WORK_DIR`, else the temp
dir) and `publish` uploads it through the store's filesystem, run.json last: readers trust
run.json's `status`, so a model is visible as finished only once all its files are there. A
model another machine trained is downloaded into the same place before it loads, once: a
`.complete` file in the folder says the copy is whole (a download gets it before it is
renamed into place, so a whole copy appears at once).

Paths recorded in run.json (the base model a run started from, the promoted model it
continued) are store paths, so any machine maps them back with `local`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import tempfile

from pipeline.store.read import Store
from trainers.registry import RUN_FILE

logger = logging.getLogger(__name__)

WORK_DIR_ENV = "ROLEFORGE_WORK_DIR"
COMPLETE_FILE = ".complete"
# Run files that stay in the local working folder: Trainer checkpoints (what --resume on this
# machine continues from; large) and Ray Train's own storage.
LOCAL_ONLY = frozenset({"checkpoints", "ray"})


class UnfinishedModel(LookupError):
    """The model folder asked for on the object store is not a finished run."""


def work_root() -> str:
    """Return the local folder runs on object stores work in ($ROLEFORGE_WORK_DIR or temp)."""
    return os.environ.get(WORK_DIR_ENV) or os.path.join(tempfile.gettempdir(), "roleforge-models")


class ModelMirror:
    """The local counterpart of one dataset's `models/` folder (the folder itself when local)."""

    def __init__(self, store: Store):
        self.store = store
        self.fs = store.fs
        self.remote = not store.fs.is_local
        self.root = os.path.join(store.root, "models")
        if self.remote:
            digest = hashlib.sha256(store.location.encode()).hexdigest()[:16]
            self.local_root = os.path.join(work_root(), digest, store.name, "models")
        else:
            self.local_root = self.root

    def run_dir(self, run_id: str) -> str:
        """Return the local folder a run works in (its store folder on a local store)."""
        return os.path.join(self.local_root, run_id)

    def store_dir(self, run_id: str) -> str:
        """Return a run's folder on the store's filesystem."""
        return os.path.join(self.root, run_id)

    def location(self, path: str) -> str:
        """Return how a user names a store path (`s3://...`, or the local path)."""
        return self.fs.uri(path)

    def stored(self, path: str) -> str:
        """Return the store path of a local path under this mirror (others unchanged)."""
        if not self.remote or not _under(path, self.local_root):
            return path
        return os.path.join(self.root, os.path.relpath(path, self.local_root))

    def local(self, path: str) -> str:
        """Return a local path for a store path under `models/<id>/`, downloading that model
        folder first when it is not here whole; hub ids and local paths come back unchanged."""
        if not self.remote or not _under(path, self.root):
            return path
        rel = os.path.relpath(path, self.root)
        model_id = rel.split(os.sep, 1)[0]
        self.fetch(model_id)
        return os.path.join(self.local_root, rel)

    def is_complete(self, model_id: str) -> bool:
        return os.path.exists(os.path.join(self.run_dir(model_id), COMPLETE_FILE))

    def fetch(self, model_id: str) -> str:
        """Return the local copy of model `model_id`, downloaded unless a whole copy is here;
        raise UnfinishedModel when its run.json on the store does not say `done`."""
        target = self.run_dir(model_id)
        if not self.remote or self.is_complete(model_id):
            return target
        os.makedirs(self.local_root, exist_ok=True)
        tmp = os.path.join(self.local_root, f".download-{model_id}-{secrets.token_hex(4)}")
        logger.info("downloading model %s to %s", self.location(self.store_dir(model_id)), target)
        try:
            self.fs.download_tree(self.store_dir(model_id), tmp)
            if not _finished(tmp):
                raise UnfinishedModel(
                    f"{self.location(self.store_dir(model_id))} is not a finished model"
                )
            self._mark_complete(tmp, model_id)
            if self.is_complete(model_id):  # another process placed a whole copy meanwhile
                return target
            # The store says the run is done, so a folder here without the mark is no live
            # run's: a run marks its folder once it has uploaded it.
            if os.path.isdir(target):
                shutil.rmtree(target)
            try:
                os.rename(tmp, target)
            except OSError:
                if not os.path.isdir(target):  # else another process placed it first
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    def push(self, run_id: str, *names: str) -> None:
        """Upload the named files of a run's local folder to its store folder."""
        if not self.remote:
            return
        for name in names:
            local = os.path.join(self.run_dir(run_id), name)
            self.fs.upload_file(local, os.path.join(self.store_dir(run_id), name))

    def publish(self, run_id: str, last: str) -> None:
        """Upload a finished run's folder (but LOCAL_ONLY), then `last` (its run.json)."""
        if not self.remote:
            return
        folder = self.run_dir(run_id)
        self.fs.upload_tree(folder, self.store_dir(run_id), skip=LOCAL_ONLY | {last})
        self.push(run_id, last)
        self._mark_complete(folder, run_id)
        logger.info("uploaded %s to %s", folder, self.location(self.store_dir(run_id)))

    def _mark_complete(self, folder: str, model_id: str) -> None:
        with open(os.path.join(folder, COMPLETE_FILE), "w", encoding="utf-8") as f:
            f.write(self.location(self.store_dir(model_id)) + "\n")


def _finished(run_dir: str) -> bool:
    try:
        with open(os.path.join(run_dir, RUN_FILE), encoding="utf-8") as f:
            return json.load(f).get("status") == "done"
    except (FileNotFoundError, json.JSONDecodeError):
        return False


def _under(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip("/") + "/")
