"""What a version's `quality` column says: counts per flag, examples, near-duplicate
clusters, token lengths and languages, for the card's Quality section and `roleforge inspect`.

Read from the shards' light columns only (never the media), one shard at a time.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipeline.cards.markdown import md_cell, md_code, md_table
from pipeline.store.manifest import ShardEntry
from pipeline.store.shards import read_shard_batches

COLUMNS = ["id", "parent_id", "source", "split", "character", "quality"]
EXAMPLES_PER_FLAG = 3
TOKEN_BUCKETS = (256, 512, 1024, 2048, 4096, 8192)
# "near_duplicate: text 0.93 with 3f2a..." as NearDupStage notes a pair.
_PAIR_NOTE = re.compile(r"^(near_duplicate\w*): (\w+) ([\d.]+) with (\S+)$")


@dataclass(frozen=True)
class FlagExample:
    record_id: str
    source: str
    character: str
    note: str


@dataclass
class QualityFacts:
    """The counts of a version's quality column (records without one are not counted)."""

    records: int = 0
    # flag -> (source, character) -> records
    flags: dict[str, Counter[tuple[str, str]]] = field(default_factory=dict)
    examples: dict[str, list[FlagExample]] = field(default_factory=dict)
    # cluster id -> its members (record ids) in this version
    clusters: dict[str, list[str]] = field(default_factory=dict)
    # (id, other id, modality, similarity) as the stage noted each pair, both directions once
    pairs: set[tuple[str, str, str, float]] = field(default_factory=set)
    # (split, character) -> token counts
    tokens: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    tokens_hashes: set[str] = field(default_factory=set)
    languages: Counter[str] = field(default_factory=Counter)

    def add(self, batch: pa.Table) -> None:
        """Count one batch of the COLUMNS."""
        import pyarrow.compute as pc

        # Only rows with a quality value count: the others (all of them when the recipe
        # has no quality stage) are never turned into Python objects.
        if batch["quality"].null_count:
            batch = batch.filter(pc.is_valid(batch["quality"]))
        if batch.num_rows == 0:
            return
        characters = [(c or {}).get("name") or "–" for c in batch["character"].to_pylist()]
        parents = (
            batch["parent_id"].to_pylist()
            if "parent_id" in batch.column_names
            else [None] * batch.num_rows
        )
        for rid, parent, source, split, character, q in zip(
            batch["id"].to_pylist(),
            parents,
            batch["source"].to_pylist(),
            batch["split"].to_pylist(),
            characters,
            batch["quality"].to_pylist(),
            strict=True,
        ):
            if q is None:
                continue
            self.records += 1
            if q.get("tokens") is not None:
                self.tokens.setdefault((split, character), []).append(q["tokens"])
                self.tokens_hashes.add(q.get("tokens_hash") or "")
            if parent is not None:
                continue  # a variant repeats its original's findings: counted once
            for flag in q.get("flags") or []:
                self.flags.setdefault(flag, Counter())[(source, character)] += 1
            for note in q.get("notes") or []:
                flag = note.split(":", 1)[0]
                shown = self.examples.setdefault(flag, [])
                if len(shown) < EXAMPLES_PER_FLAG and all(e.record_id != rid for e in shown):
                    shown.append(FlagExample(rid, source, character, note))
                m = _PAIR_NOTE.match(note)
                if m:
                    a, b = sorted((rid, m.group(4)))
                    self.pairs.add((a, b, m.group(2), float(m.group(3))))
            if q.get("near_dup_cluster"):
                self.clusters.setdefault(q["near_dup_cluster"], []).append(rid)
            if q.get("language"):
                self.languages[q["language"]] += 1

    def flag_rows(self) -> list[tuple[str, str, str, int]]:
        """Return (flag, source, character, records), by flag then count."""
        return [
            (flag, source, character, n)
            for flag in sorted(self.flags)
            for (source, character), n in sorted(
                self.flags[flag].items(), key=lambda kv: (-kv[1], kv[0])
            )
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "flags": {
                flag: {
                    "records": sum(c.values()),
                    "by_source_character": [
                        {"source": s, "character": ch, "records": n}
                        for f, s, ch, n in self.flag_rows()
                        if f == flag
                    ],
                    "examples": [e.__dict__ for e in self.examples.get(flag, [])],
                }
                for flag, c in sorted(self.flags.items())
            },
            "clusters": [
                {"cluster": c, "members": sorted(m)} for c, m in sorted(self.clusters.items())
            ],
            "pairs": [
                {"a": a, "b": b, "modality": m, "similarity": s}
                for a, b, m, s in sorted(self.pairs)
            ],
            "tokens": {
                f"{split}/{character}": token_summary(values)
                for (split, character), values in sorted(self.tokens.items())
            },
            "tokens_hashes": sorted(self.tokens_hashes),
            "languages": dict(self.languages.most_common()),
        }


def token_summary(values: list[int]) -> dict[str, Any]:
    """Return count, mean, median, p95 and max of token counts, and a bucketed histogram."""
    ordered = sorted(values)

    def pct(p: float) -> int:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    buckets = Counter(next((b for b in TOKEN_BUCKETS if v <= b), None) for v in ordered)
    return {
        "records": len(ordered),
        "mean": round(sum(ordered) / len(ordered), 1),
        "p50": pct(0.5),
        "p95": pct(0.95),
        "max": ordered[-1],
        "histogram": {
            (f"<={b}" if b else f">{TOKEN_BUCKETS[-1]}"): buckets[b]
            for b in (*TOKEN_BUCKETS, None)
            if buckets[b]
        },
    }


def read_quality_facts(
    version_dir: str, shards: list[ShardEntry], fs: Any = None
) -> QualityFacts | None:
    """Return the quality facts of a version's shards, or None when they have no quality
    column (a version written before it, or with quality off)."""
    facts = QualityFacts()
    for shard in shards:
        path = os.path.join(version_dir, shard.path)
        try:
            for batch in read_shard_batches(path, columns=COLUMNS, fs=fs):
                facts.add(pa.Table.from_batches([batch]))
        except (KeyError, ValueError, pa.ArrowInvalid):  # no quality column in this shard
            continue
    return facts if facts.records else None


def quality_sections(facts: QualityFacts | None) -> list[str]:
    """Return the card's Quality section as a one-item list (none without a quality column,
    so cards of versions without one read exactly as before)."""
    if facts is None:
        return []
    parts = [
        "## Quality",
        f"What roleforge's quality stages found in the {facts.records} records of this "
        "version; each record's findings are in its `quality` column (`flags`, `notes`, "
        "`near_dup_cluster`, `tokens`, `language`). Quarantined records are not here: the "
        "quarantine file of the run lists them with their reasons.",
    ]
    rows = [[md_code(f), md_cell(s), md_cell(c), n] for f, s, c, n in facts.flag_rows()]
    parts.append(
        md_table(["flag", "source", "character", "records"], rows) if rows else "No flags."
    )
    if facts.clusters:
        sizes = Counter(len(m) for m in facts.clusters.values())
        parts.append(
            f"Near-duplicate clusters: {len(facts.clusters)} (each one split group), "
            + ", ".join(f"{n} of {size} records" for size, n in sorted(sizes.items()))
            + "."
        )
    media = Counter(m for _, _, m, _ in facts.pairs)
    if media:
        parts.append(
            "Near-duplicate pairs by modality: "
            + ", ".join(f"{m} {n}" for m, n in sorted(media.items()))
            + "."
        )
    if facts.tokens:
        token_rows = []
        for (split, character), values in sorted(facts.tokens.items()):
            s = token_summary(values)
            hist = ", ".join(f"{k}: {v}" for k, v in s["histogram"].items())
            token_rows.append(
                [split, md_cell(character), s["records"], s["mean"], s["p95"], s["max"], hist]
            )
        parts.append(
            "Tokens per record under the chat template (media expanded):\n\n"
            + md_table(
                ["split", "character", "records", "mean", "p95", "max", "histogram"], token_rows
            )
        )
    if facts.languages:
        langs = ", ".join(f"{lang} {n}" for lang, n in facts.languages.most_common())
        parts.append(f"Conversation languages (identified per record): {langs}.")
    return ["\n\n".join(parts)]
