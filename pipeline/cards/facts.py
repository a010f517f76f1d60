"""What the cards say about a version, gathered once: manifest facts, shard statistics,
the licence, and the Datasheet / Responsible-AI statements shared by README and Croissant."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pipeline.cards.composition import Composition, compute_composition, ordered_splits
from pipeline.cards.languages import detect_languages
from pipeline.cards.quality import QualityFacts, read_quality_facts
from pipeline.store.manifest import Manifest

logger = logging.getLogger(__name__)

# The card's licence when neither the recipe nor every source declares one (a Hub id).
UNDECLARED_LICENSE = "unknown"


@dataclass(frozen=True)
class License:
    """The Hub card's licence fields: an id, and for `other` a name and a link."""

    id: str
    name: str | None = None
    link: str | None = None
    per_source: dict[str, str | None] | None = None


def resolve_license(recipe: dict) -> License:
    """Return the version's licence: the recipe's (with name and link for `other`), else the
    one every source declares, else `other` named after the mixed source licences, else
    `unknown` when no source declares one."""
    per_source = {s["name"]: s.get("license") for s in recipe.get("sources") or []}
    if recipe.get("license"):
        return License(
            str(recipe["license"]).strip().lower(),
            recipe.get("license_name"),
            recipe.get("license_link"),
            per_source,
        )
    declared = sorted({v.strip().lower() for v in per_source.values() if v})
    if len(declared) == 1 and all(per_source.values()):
        return License(declared[0], per_source=per_source)
    if declared:
        # Each source keeps its own terms; the card's Sources table lists them.
        return License("other", "mixed: " + ", ".join(declared), "README.md#sources", per_source)
    return License(UNDECLARED_LICENSE, per_source=per_source)


@dataclass
class CardFacts:
    """Everything both cards say, gathered once."""

    manifest: Manifest
    parent_manifest: Manifest | None
    diff_summary: dict | None
    composition: Composition
    languages: list[str]
    license: License
    quality: QualityFacts | None = None  # the `quality` column's counts (cards/quality.py)

    @property
    def license_id(self) -> str:
        return self.license.id

    @property
    def source_licenses(self) -> dict[str, str | None]:
        return self.license.per_source or {}

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> int:
        return self.manifest.number

    @property
    def copies(self) -> int:
        return self.manifest.augmentation.copies

    @property
    def quarantined(self) -> int:
        return self.manifest.quarantine.total

    @property
    def duplicates(self) -> int:
        return self.manifest.dedup.duplicates

    def tags(self) -> list[str]:
        tags = ["role-play", "roleforge"]
        if self.composition.images or self.composition.audios:
            tags.insert(1, "multimodal")
        if self.copies > 0:
            tags.append("synthetic-augmentation")
        return tags

    def task_categories(self) -> list[str]:
        """Return Hub task categories that the Hub lists for datasets. `audio-text-to-text`
        is a model task the Hub hides for datasets (huggingface.js `pipelines.ts`,
        hideInDatasets), so audio conversations are filed under `any-to-any`."""
        tasks = ["text-generation"]
        if self.composition.images:
            tasks.append("image-text-to-text")
        if self.composition.audios:
            tasks.append("any-to-any")
        return tasks

    def description(self) -> str:
        c = self.composition
        per_split = ", ".join(f"{c.splits[s].rows:,} {s}" for s in ordered_splits(set(c.splits)))
        return (
            f"Role-play conversations for fine-tuning a model to speak as a character, "
            f"version {self.version} of '{self.name}' built by roleforge: {c.rows:,} records "
            f"({per_split}) with {c.images:,} images and {c.audios:,} audio clips."
        )

    # RAI / Datasheet statements, shared by README and Croissant.
    def collection(self) -> str:
        inputs = self.manifest.inputs
        names = ", ".join(sorted({i.source for i in inputs})) or "none"
        media = sum(i.kind == "media" for i in inputs)
        files = f"{len(inputs) - media} input file(s)" + (
            f" and {media} media file(s)" if media else ""
        )
        return (
            f"Assembled from {files} of the corpora named in the recipe "
            f"({names}); roleforge did not collect new data. Each input is pinned by its sha256 "
            f"in the manifest. How the original corpora were collected is documented by their owners."
        )

    def preprocessing(self) -> list[str]:
        m = self.manifest
        recipe = m.recipe
        split = recipe.get("split") or {}
        reasons = m.quarantine.reasons
        reason_text = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items())) or "none"
        return [
            "Readers map each source format to one canonical record (character, turns with "
            "<image>/<audio> placeholders, media bytes kept as stored, never re-encoded).",
            "Validation rejects records with no character turn, bad turn order, unknown roles, "
            "placeholder/media count mismatches, missing, oversized or undecodable media; "
            f"{self.quarantined:,} records were quarantined ({reason_text}).",
            f"Deduplication removed {self.duplicates:,} duplicate record(s).",
            f"Split by {split.get('by', 'conversation')} with validation fraction "
            f"{split.get('validation', '?')} and test fraction {split.get('test', '?')}, "
            f"seed {recipe.get('seed', '?')}: groups ({split.get('by', 'conversation')}s) are "
            f"ranked by a seeded hash and cut by count, {self.split_groups()}; stable across "
            "runs and workers, and adding records moves at most one existing group per cut.",
        ]

    def split_groups(self) -> str:
        groups = self.manifest.split_groups
        if groups is None:
            return "groups per split not recorded"
        return ", ".join(f"{groups.get(s, 0)} to {s}" for s in ("train", "validation", "test"))

    def manipulation(self) -> str:
        if self.copies <= 0:
            return "No augmentation: every record is an original."
        ops = self.manifest.augmentation.ops
        op_text = ", ".join(f"{o.modality}:{o.op} applied {o.applied}" for o in ops)
        return (
            f"{self.copies} augmented copies per training record; validation and test are never "
            f"augmented. Each variant records the ops and drawn parameters it received "
            f"(column augmentation), so it can be replayed. Ops: {op_text or 'none'}."
        )

    def use_cases(self) -> list[str]:
        return [
            "Supervised fine-tuning of chat models to play a character consistently, with "
            "the loss on the character's (assistant) turns.",
            "Evaluating in-character responses on the held-out validation/test splits, "
            "which hold originals only.",
            "Not intended for training models to impersonate real people or for any decision about people.",
        ]

    def biases(self) -> list[str]:
        out = []
        c = self.composition
        per_char = Counter()
        for (name, _), n in c.characters.items():
            per_char[name] += n
        if per_char and c.rows:
            (top, n), *_ = per_char.most_common(1)
            share = n / c.rows
            out.append(
                f"Characters are unevenly represented: the most frequent, "
                f"'{top if top is not None else '(none)'}', is in {share:.0%} of records "
                f"across {len(per_char)} character(s)."
            )
        if self.copies > 0:
            out.append(
                "Augmented variants multiply the training records that had augmentable "
                "content, over-weighting them relative to the originals."
            )
        if self.quarantined:
            out.append(
                "Quarantined records are dropped, so sources with messier formatting or "
                "media are under-represented."
            )
        out.append("Role-play corpora reflect the tastes, genres and stereotypes of their writers.")
        return out

    def limitations(self) -> list[str]:
        out = [
            "Languages are guessed from writing systems (Latin counted as English, Han as "
            "Chinese, kana as Japanese, Hangul as Korean, ...), not by a language model.",
            "Deduplication is reported as counted by the pipeline; near-duplicates across "
            "sources may remain.",
            "No safety, toxicity or PII filtering is applied by roleforge.",
        ]
        if self.copies > 0:
            out.append(
                "Augmented variants are synthetic perturbations (typos, synonyms, crops, "
                "noise, speed changes); they may read or sound less natural than originals."
            )
        if self.license_id == UNDECLARED_LICENSE:
            out.append("The license is not declared in the recipe; check each source's terms.")
        elif self.license.name and self.license.name.startswith("mixed:"):
            out.append("Sources carry different licenses; each record's `source` names its terms.")
        if any(s.path.endswith(".arrow") for s in self.manifest.shards):
            out.append(
                "Shards are Arrow IPC stream files: datasets, pyarrow and polars read them; "
                "mlcroissant validates the Croissant description but has no Arrow reader, so "
                "it cannot iterate records (choose `output.format: parquet` for that)."
            )
        return out

    def personal_information(self) -> list[str]:
        return [
            "Role-play dialogue may contain personal or sensitive content written by users; "
            "roleforge does not detect or remove personal information. Images and audio may "
            "show or carry the voice of real people."
        ]

    def maintenance(self) -> str:
        parent = self.manifest.parent_version
        base = f"Version {self.version}" + (f", derived from version {parent}" if parent else "")
        return (
            f"{base}. Versions are immutable: a change to inputs, recipe or code produces a new "
            f"version with its own manifest, content id and card; older versions stay readable."
        )

    def rai(self) -> dict[str, str | list[str]]:
        return {
            "dataCollection": self.collection(),
            "dataCollectionType": ["Secondary Data Analysis"],
            "dataPreprocessingProtocol": self.preprocessing(),
            "dataManipulationProtocol": self.manipulation(),
            "dataAnnotationProtocol": [
                "No new annotation: speaker roles and characters come from the source corpora."
            ],
            "dataUseCases": self.use_cases(),
            "dataBiases": self.biases(),
            "dataLimitations": self.limitations(),
            "dataSocialImpact": (
                "Character models can entertain and teach, and can also be used to deceive "
                "or to imitate real people; releases should keep the intended-use statement."
            ),
            "personalSensitiveInformation": self.personal_information(),
            "dataReleaseMaintenancePlan": self.maintenance(),
        }


def gather_facts(
    version_dir: str,
    manifest: Manifest,
    parent_manifest: Manifest | None,
    diff_summary: dict | None,
    fs: Any = None,
    composition: Composition | None = None,
) -> CardFacts:
    """Return what the cards say about a version: manifest facts plus shard statistics
    (shards read from store filesystem `fs`, local when None; `composition`: theirs, when
    the caller counted them already)."""
    if composition is None:
        composition = compute_composition(version_dir, manifest.shards, fs)
    declared = manifest.splits
    for split, n in declared.items():
        actual = composition.splits[split].rows if split in composition.splits else 0
        if actual != n:
            logger.warning("manifest says %s has %d records; its shards hold %d", split, n, actual)

    return CardFacts(
        manifest=manifest,
        parent_manifest=parent_manifest,
        diff_summary=diff_summary,
        composition=composition,
        languages=detect_languages(composition.scripts),
        license=resolve_license(manifest.recipe),
        quality=read_quality_facts(version_dir, manifest.shards, fs),
    )
