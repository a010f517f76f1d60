"""Which model folders `roleforge gc` may remove.

- runs that never finished (run.json missing, torn, or status other than `done`: a killed
  training leaves `training` and its checkpoints), unless their retrain is still live;
- finished models a retrain trained but died before comparing (trainers.pending);
- with `history=True`, finished models that were promoted once and are not now (a rollback
  then refuses to return to them).
Never the promoted model, and never a finished model that was only trained (`roleforge
train`) or compared and refused: those are results. The caller applies its age rule.
"""

from __future__ import annotations

import json
import os

from pipeline.store.lock import run_is_live
from trainers.pending import dead_markers, pending_dir
from trainers.registry import GENERATIONS_DIR, POINTER_FILE, RUN_FILE, ModelRegistry


def _finished(registry: ModelRegistry, run_dir: str) -> bool:
    try:
        info = json.loads(registry.fs.read_bytes(os.path.join(run_dir, RUN_FILE)))
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, json.JSONDecodeError):
        return False
    return isinstance(info, dict) and info.get("status") == "done"


def removable_models(registry: ModelRegistry, history: bool = False) -> list[str]:
    """Return the model folders (and dead retrain markers) gc may remove, sorted."""
    store, fs = registry.store, registry.fs
    pointer = registry.pointer()
    promoted = pointer.model_id if pointer else None
    once_promoted = {e.model_id for e in pointer.history} if pointer else set()
    uncompared = set(dead_markers(store))
    removable = [os.path.join(pending_dir(store), r) for r in sorted(uncompared)]
    for name in fs.listdir(registry.root):
        if name.startswith((POINTER_FILE, GENERATIONS_DIR, ".")) or name == promoted:
            continue
        run_dir = os.path.join(registry.root, name)
        if not _finished(registry, run_dir):
            if not run_is_live(store, name):
                removable.append(run_dir)
        elif name in uncompared or (history and name in once_promoted):
            removable.append(run_dir)
    return sorted(removable)
