"""The records a version's run quarantined, grouped by reason, read from its jsonl file."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from pipeline.store.manifest import Manifest
from pipeline.store.read import Store

SHOWN_PER_REASON = 200


@dataclass
class QuarantineView:
    """Entries by reason (at most SHOWN_PER_REASON each), with the counts of all of them."""

    path: str | None
    counts: dict[str, int] = field(default_factory=dict)
    entries: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unreadable_lines: int = 0


def read_quarantine(store: Store, manifest: Manifest) -> QuarantineView:
    """Return the quarantine of the run that made `manifest`, grouped by reason.

    The file's path comes from the manifest, relative to the dataset's folder; one that
    would lead outside it is refused (ValueError)."""
    relative = manifest.quarantine.path
    if not relative:
        return QuarantineView(None)
    path = os.path.normpath(os.path.join(store.root, relative))
    if os.path.isabs(relative) or not path.startswith(os.path.normpath(store.root) + os.sep):
        raise ValueError(f"quarantine path {relative!r} leaves the dataset folder")
    view = QuarantineView(store.fs.uri(path))
    try:
        text = store.fs.read_bytes(path).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return view
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            view.unreadable_lines += 1
            continue
        if not isinstance(entry, dict):
            view.unreadable_lines += 1
            continue
        reason = str(entry.get("reason") or "unknown")
        view.counts[reason] = view.counts.get(reason, 0) + 1
        shown = view.entries.setdefault(reason, [])
        if len(shown) < SHOWN_PER_REASON:
            shown.append(entry)
    view.counts = dict(sorted(view.counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return view
