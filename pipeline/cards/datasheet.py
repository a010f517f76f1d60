"""The markdown body of the dataset card: the sections of a Datasheet / Data Card.

Every value that comes from users' data (names, paths, op parameters) goes through the
markdown helpers, so a character called `Bob | the\nBuilder` cannot break a table.
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter, defaultdict

from pipeline.cards.composition import (
    MODALITIES,
    TOP_CHARACTERS,
    TURN_BUCKETS,
    TURN_CHAR_BUCKETS,
    ordered_splits,
)
from pipeline.cards.facts import CardFacts
from pipeline.cards.languages import LANGUAGE_MIN_SHARE, SCRIPT_LANGUAGES
from pipeline.cards.markdown import bucket_labels, md_cell, md_code, md_table, portable_path
from pipeline.cards.quality import quality_sections
from pipeline.cards.unmapped import unmapped_fields_section
from pipeline.record.rejection import REASONS


class DatasheetBody:
    """Renders the markdown sections of the card (Datasheets for Datasets / Data Cards)."""

    def __init__(self, facts: CardFacts):
        self.facts = facts

    def render(self) -> str:
        f = self.facts
        m = f.manifest
        parts = [
            f"# {md_cell(f.name)} v{f.version}",
            f.description(),
            md_table(
                ["version", "parent", "content id", "created", "run"],
                [
                    [
                        str(f.version),
                        str(m.parent_version or "–"),
                        md_code(m.content_id),
                        md_cell(m.created_at),
                        md_cell(m.run_id),
                    ]
                ],
            ),
            self._usage(),
            self._motivation(),
            self._composition(),
            self._sources(),
            self._preprocessing(),
            *quality_sections(f.quality),
            self._augmentation(),
            self._limitations(),
            self._maintenance(),
        ]
        return "\n\n".join(parts) + "\n"

    def _usage(self) -> str:
        f = self.facts
        folder = f"path/to/{f.name}/versions/v{f.version}"
        return (
            "## How to load\n\n"
            "```python\n"
            "import datasets\n\n"
            f'ds = datasets.load_dataset("{folder}")\n'
            'ds["train"][0]["images"]  # a list of PIL images\n'
            "# Decoding `audios` needs torchcodec and the system's FFmpeg libraries; without\n"
            "# them, keep the raw bytes:\n"
            'ds = ds.cast_column("audios", datasets.List(datasets.Audio(decode=False)))\n'
            "```\n\n"
            "The shards also open with pyarrow, polars, duckdb and Ray (Parquet natively; "
            "Arrow IPC stream shards through `pyarrow.ipc.open_stream`). `croissant.json` in "
            "the same folder describes the version in Croissant 1.1 with the Responsible-AI "
            "extension."
        )

    def _motivation(self) -> str:
        lines = "\n".join(f"- {md_cell(u, 400)}" for u in self.facts.use_cases())
        return (
            "## Motivation and intended use\n\n"
            "This dataset exists to fine-tune and evaluate role-play models: each record is one "
            "conversation in which the assistant speaks as a named character, possibly with "
            "images and audio in the user's turns.\n\n" + lines
        )

    def _composition(self) -> str:
        c = self.facts.composition
        splits = ordered_splits(set(c.splits))
        split_rows = []
        for s in splits:
            sc = c.splits[s]
            mean = sc.messages / sc.rows if sc.rows else 0.0
            split_rows.append(
                [md_cell(s), sc.rows, sc.originals, sc.variants, sc.images, sc.audios, mean,
                 sc.min_messages, sc.max_messages]
            )  # fmt: skip
        total_orig = sum(c.splits[s].originals for s in splits)
        total_var = sum(c.splits[s].variants for s in splits)
        split_rows.append(
            ["**total**", c.rows, total_orig, total_var, c.images, c.audios, "", "", ""]
        )
        parts = [
            "## Composition",
            "### Records per split",
            md_table(
                [
                    "split",
                    "records",
                    "originals",
                    "augmented variants",
                    "images",
                    "audio clips",
                    "mean turns",
                    "min turns",
                    "max turns",
                ],
                split_rows,
            ),  # fmt: skip
            "### Modality (records per split)",
            md_table(
                ["split", *MODALITIES],
                [[md_cell(s), *[c.splits[s].modalities[m] for m in MODALITIES]] for s in splits],
            ),
            "### Characters",
            self._characters(splits),
            "### Conversation length (turns per record)",
            md_table(
                ["split", *bucket_labels(TURN_BUCKETS)],
                [
                    [
                        md_cell(s),
                        *[c.splits[s].turn_buckets[i] for i in range(len(TURN_BUCKETS) + 1)],
                    ]
                    for s in splits
                ],
            ),
            "### Turn length (characters per message, placeholders excluded)",
            md_table(
                ["role", "messages", "mean chars", "min", "max"],
                [
                    [
                        md_cell(role),
                        r.messages,
                        r.chars / r.messages if r.messages else 0.0,
                        r.min_chars,
                        r.max_chars,
                    ]
                    for role, r in sorted(c.roles.items())
                ],
            ),  # fmt: skip
            md_table(
                ["chars per message", *bucket_labels(TURN_CHAR_BUCKETS)],
                [
                    [
                        "messages",
                        *[c.turn_char_buckets[i] for i in range(len(TURN_CHAR_BUCKETS) + 1)],
                    ]
                ],
            ),
            "### Languages",
            self._languages(),
        ]
        return "\n\n".join(parts)

    def _characters(self, splits: list[str]) -> str:
        c = self.facts.composition
        per_char: dict[str | None, Counter[str]] = defaultdict(Counter)
        for (name, split), n in c.characters.items():
            per_char[name][split] += n
        ranked = sorted(per_char.items(), key=lambda kv: (-sum(kv[1].values()), str(kv[0])))
        rows = [
            [md_cell(name) if name is not None else "*(none)*", *[counts[s] for s in splits],
             sum(counts.values())]
            for name, counts in ranked[:TOP_CHARACTERS]
        ]  # fmt: skip
        rest = ranked[TOP_CHARACTERS:]
        if rest:
            rows.append(
                [f"*{len(rest)} more*", *[sum(cn[s] for _, cn in rest) for s in splits],
                 sum(sum(cn.values()) for _, cn in rest)]
            )  # fmt: skip
        return f"{len(per_char):,} distinct character(s).\n\n" + md_table(
            ["character", *[md_cell(s) for s in splits], "total"], rows
        )

    def _languages(self) -> str:
        c = self.facts.composition
        total = sum(c.scripts.values()) or 1
        rows = [
            [script, SCRIPT_LANGUAGES[script], n, f"{n / total:.1%}"]
            for script, n in c.scripts.most_common()
            if n > 0
        ]
        langs = ", ".join(self.facts.languages) or "none detected"
        return (
            f"Detected: **{langs}**. Detection is a cheap script heuristic, not a language "
            f"model: letters in message text are counted per Unicode script, and a script with "
            f"at least {LANGUAGE_MIN_SHARE:.0%} of the letters names its usual language (Latin "
            f"is reported as English, Han as Chinese unless kana outnumber it).\n\n"
            + md_table(["script", "reported as", "letters", "share"], rows)
        )

    def _sources(self) -> str:
        f = self.facts

        def licence(source: str) -> str:
            return md_cell(f.source_licenses.get(source) or "not declared")

        inputs = f.manifest.inputs
        rows = [
            [md_cell(i.source), md_code(portable_path(i.path)), i.bytes, md_code(i.sha256 or ""),
             licence(i.source)]
            for i in inputs if i.kind != "media"
        ]  # fmt: skip
        # Media files can number millions: one row per source here; the manifest pins each.
        media: defaultdict[str, list[int | None]] = defaultdict(list)
        for i in inputs:
            if i.kind == "media":
                media[i.source].append(i.bytes)
        for source, sizes in sorted(media.items()):
            missing = sum(b is None for b in sizes)
            named = f"{len(sizes):,} media file(s)" + (f", {missing:,} missing" if missing else "")
            total = sum(b or 0 for b in sizes)
            rows.append(
                [md_cell(source), named, total, "each in the manifest's inputs", licence(source)]
            )
        return (
            "## Sources\n\n"
            + md_cell(f.collection(), 1000)
            + f"\n\nLicense of this version: **{md_cell(f.license_id)}**.\n\n"
            + md_table(["source", "file", "bytes", "sha256", "license"], rows)
            + unmapped_fields_section(f.manifest)
        )

    def _preprocessing(self) -> str:
        f = self.facts
        m = f.manifest
        stage_rows = [
            [md_cell(stage), c.records_in, c.out, c.dropped, c.quarantined]
            for stage, c in m.counts.items()
        ]
        reasons = m.quarantine.reasons
        reason_rows = [
            [md_code(code), n, md_cell(REASONS.get(code, ""), 200)]
            for code, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        steps = "\n".join(f"{i}. {md_cell(s, 600)}" for i, s in enumerate(f.preprocessing(), 1))
        q_file = portable_path(m.quarantine.path)
        parts = [
            "## Preprocessing",
            steps,
            "### Records per stage",
            md_table(["stage", "in", "out", "dropped", "quarantined"], stage_rows),
            *self._reuse(),
            "### Quarantine by reason",
            (
                md_table(["reason", "records", "meaning"], reason_rows)
                if reason_rows
                else "No record was quarantined."
            ),
        ]
        if q_file:
            parts.append(
                f"Rejected records, with stage, reason and source reference, are in "
                f"{md_code('quarantine/' + posixpath.basename(q_file))} of the dataset's store folder."
            )
        parts.append(f"### Deduplication\n\n{f.duplicates:,} duplicate record(s) removed.")
        return "\n\n".join(parts)

    def _reuse(self) -> list[str]:
        reuse = self.facts.manifest.reuse
        if reuse is None:
            return []  # a manifest from before runs counted reuse
        return [
            f"Of the original records the run processed, {reuse.reused:,} were reused from "
            f"earlier work and {reuse.computed:,} computed."
        ]

    def _augmentation(self) -> str:
        f = self.facts
        aug = f.manifest.augmentation
        ops = aug.ops
        if f.copies <= 0 and not ops:
            return "## Augmentation\n\nNone: this version holds originals only."
        rows = [
            [md_cell(o.modality), md_cell(o.op),
             md_code(json.dumps(o.configured, sort_keys=True, ensure_ascii=False)),
             o.applied, o.skipped]
            for o in ops
        ]  # fmt: skip
        parts = [
            "## Augmentation",
            md_cell(f.manipulation(), 2000),
            md_table(["modality", "op", "configured", "applied", "skipped"], rows),
        ]
        stats = aug.stats
        if stats:
            parts.append(
                md_table(
                    ["statistic", "value"],
                    [
                        [
                            md_cell(k),
                            md_code(json.dumps(v, sort_keys=True, ensure_ascii=False))
                            if isinstance(v, (dict, list))
                            else v,
                        ]
                        for k, v in sorted(stats.items())
                    ],
                )  # fmt: skip
            )
        return "\n\n".join(parts)

    def _limitations(self) -> str:
        f = self.facts
        sections = [
            ("Known limitations", f.limitations()),
            ("Biases", f.biases()),
            ("Personal and sensitive information", f.personal_information()),
        ]
        out = []
        for title, items in sections:
            out.append(f"## {title}\n\n" + "\n".join(f"- {md_cell(i, 600)}" for i in items))
        return "\n\n".join(out)

    def _maintenance(self) -> str:
        f = self.facts
        m = f.manifest
        code = m.code_version
        parts = ["## Maintenance", md_cell(f.maintenance(), 600)]
        rows = [
            ["version", str(f.version)],
            ["parent version", str(m.parent_version or "none")],
            ["recipe hash", md_code(m.recipe_hash)],
            ["schema sha256", md_code(m.schema_sha256)],
            ["content id", md_code(m.content_id)],
            ["roleforge", md_cell(code.roleforge)],
            ["git commit", md_code(code.git_commit or "unknown")],
        ]
        rows += [[md_cell(k), md_cell(v)] for k, v in sorted(code.libraries.items())]
        parts.append(md_table(["", ""], rows))
        parts.append(self._diff())
        shard_rows = [
            [md_code(s.path), md_cell(s.split), s.rows, s.bytes, md_code(s.sha256)]
            for s in m.shards
        ]
        parts.append(
            "### Files\n\n" + md_table(["shard", "split", "rows", "bytes", "sha256"], shard_rows)
        )
        return "\n\n".join(parts)

    def _diff(self) -> str:
        f = self.facts
        parent = f.manifest.parent_version
        if f.diff_summary is None or parent is None:
            return "### Changes against the parent\n\nFirst version: no parent to compare with."
        d = f.diff_summary
        pm = f.parent_manifest
        head = (
            f"Against version {parent}"
            + (f" (content id {md_code(pm.content_id)})" if pm is not None else "")
            + f": {d.get('added', 0):,} added, {d.get('removed', 0):,} removed, "
            f"{d.get('changed', 0):,} changed records."
        )
        rows = []
        for split in ordered_splits(set(d.get("splits") or {})):
            s = d["splits"][split]
            before, after = s.get("before", 0), s.get("after", 0)
            rows.append([md_cell(split), before, after, f"{after - before:+,}"])
        return (
            "### Changes against the parent\n\n"
            + head
            + "\n\n"
            + md_table(["split", f"v{parent}", f"v{f.version}", "change"], rows)
        )
