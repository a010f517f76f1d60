"""Writing the data cards of a version: the Hub `README.md` and `croissant.json`."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from pipeline.cards.croissant import CroissantBuilder
from pipeline.cards.datasheet import DatasheetBody
from pipeline.cards.facts import CardFacts, gather_facts
from pipeline.cards.hub_header import HubCardHeader
from pipeline.store.manifest import Manifest

logger = logging.getLogger(__name__)

README = "README.md"
CROISSANT = "croissant.json"


def render_readme(facts: CardFacts) -> str:
    """Return the README.md text: Hub YAML header, then the datasheet sections."""
    import yaml

    header = yaml.safe_dump(
        HubCardHeader(facts).build(), sort_keys=False, allow_unicode=True, width=1000
    )
    return f"---\n{header}---\n\n{DatasheetBody(facts).render()}"


def _write_text(path: str, text: str, fs: Any = None) -> None:
    if fs is not None:
        fs.write_bytes(path, text.encode("utf-8"))
        return
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_cards(
    version_dir: str,
    manifest: Manifest,
    parent_manifest: Manifest | None,
    diff_summary: dict[str, Any] | None,
    fs: Any = None,
    composition: Any = None,
) -> list[str]:
    """Write README.md and croissant.json into `version_dir` (on store filesystem `fs`,
    local when None); return their file names.

    `manifest` is the version's manifest before its cards are listed; shard paths in it are
    relative to `version_dir`, and so is every path the cards mention. `composition`: the
    shards' `Composition`, when the caller counted them already (the data job, in tasks).
    """
    if not manifest.shards:
        raise ValueError("a version without shards has nothing to describe")
    facts = gather_facts(version_dir, manifest, parent_manifest, diff_summary, fs, composition)
    _write_text(os.path.join(version_dir, README), render_readme(facts), fs)
    croissant = CroissantBuilder(
        manifest,
        description=facts.description(),
        languages=facts.languages,
        license_id=facts.license.link if facts.license.id == "other" else facts.license.id,
        keywords=facts.tags(),
        rai=facts.rai(),
    ).build()
    _write_text(
        os.path.join(version_dir, CROISSANT),
        json.dumps(croissant, indent=2, ensure_ascii=False) + "\n",
        fs,
    )
    logger.info("wrote cards for %s v%s", manifest.name, manifest.version)
    return [README, CROISSANT]
