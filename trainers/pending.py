"""Models a retrain has trained but not yet compared: one marker each, and a lease.

A retrain writes `models/.uncompared/<run_id>` before it trains and removes it once its
report is written, holding the run's lease (pipeline/store/lock.py) all along. A marker whose
lease nobody holds belongs to a retrain that died between training and its report: that
model finished (or not) but was never compared with the promoted one, so the registry marks
it as not comparable and `roleforge gc` may remove it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from pipeline.store.lock import RunLease, run_is_live
from pipeline.store.read import Store

PENDING_DIR = ".uncompared"


def pending_dir(store: Store) -> str:
    return os.path.join(store.root, "models", PENDING_DIR)


@contextmanager
def comparison_pending(store: Store, run_id: str) -> Iterator[None]:
    """Mark `run_id` as trained-but-not-compared for the `with` block, holding its lease;
    the marker goes only when the block ends normally (a failure leaves it for gc)."""
    marker = os.path.join(pending_dir(store), run_id)
    with RunLease(store, run_id):
        store.fs.write_bytes(marker, b"")
        yield
        store.fs.remove_tree(marker)


def killed_before_comparison(store: Store, run_id: str) -> bool:
    """Return whether the retrain that trained `run_id` died before it compared the model."""
    marker = os.path.join(pending_dir(store), run_id)
    return store.fs.exists(marker) and not run_is_live(store, run_id)


def dead_markers(store: Store) -> list[str]:
    """Return the run ids whose marker no live retrain holds."""
    return [r for r in store.fs.listdir(pending_dir(store)) if not run_is_live(store, r)]
