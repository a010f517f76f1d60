"""The data cards of a dataset version: a Hugging Face `README.md` and a Croissant `croissant.json`.

The README is a Hub dataset card (YAML header that `datasets.load_dataset` reads, with typed
Image/Audio features and the split files) followed by the sections of a Datasheet / Data Card.
Composition numbers come from streaming the shards themselves, never from the manifest's
claims, and without materialising media bytes in Python.
"""

from __future__ import annotations

import fnmatch
import html
import json
import logging
import os
import posixpath
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.cards.croissant import CroissantBuilder
from pipeline.cards.unmapped import unmapped_fields_section
from pipeline.record.rejection import REASONS
from pipeline.record.schema import AUDIO_PLACEHOLDER, IMAGE_PLACEHOLDER, SPLITS, hf_features

logger = logging.getLogger(__name__)

README = "README.md"
CROISSANT = "croissant.json"

# Light columns only: media are counted from list offsets (or, in Parquet, from the
# `path` leaf), so no image or audio bytes are read into Python.
_ARROW_COLUMNS = ["split", "parent_id", "character", "messages", "images", "audios"]
_PARQUET_COLUMNS = [
    "split",
    "parent_id",
    "character.name",
    "messages",
    "images.list.element.path",
    "audios.list.element.path",
]

# Writing system -> language code reported for it. A script is not a language: Latin text
# is assumed to be English and Han text Chinese; the card says so.
SCRIPT_LANGUAGES = {
    "Latin": "en",
    "Han": "zh",
    "Hiragana": "ja",
    "Katakana": "ja",
    "Hangul": "ko",
    "Cyrillic": "ru",
    "Arabic": "ar",
    "Devanagari": "hi",
    "Greek": "el",
    "Hebrew": "he",
    "Thai": "th",
}
LANGUAGE_MIN_SHARE = 0.01  # a script must hold 1% of all letters to name a language

TURN_BUCKETS = (2, 4, 8, 16, 32)  # messages per conversation: <=2, 3-4, 5-8, ..., >32
TURN_CHAR_BUCKETS = (16, 64, 256, 1024)  # characters per message
MODALITIES = ("text only", "image", "audio", "image + audio")
TOP_CHARACTERS = 20

_SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
]


@dataclass
class SplitComposition:
    """What one split holds: records, variants, media and conversation lengths."""

    rows: int = 0
    originals: int = 0
    variants: int = 0
    images: int = 0
    audios: int = 0
    messages: int = 0
    min_messages: int | None = None
    max_messages: int | None = None
    modalities: Counter[str] = field(default_factory=Counter)
    turn_buckets: Counter[int] = field(default_factory=Counter)


@dataclass
class RoleLength:
    """Characters per message of one role."""

    messages: int = 0
    chars: int = 0
    min_chars: int | None = None
    max_chars: int | None = None


@dataclass
class Composition:
    """Statistics of a version's records, computed from its shards."""

    splits: dict[str, SplitComposition] = field(default_factory=dict)
    characters: Counter[tuple[str | None, str]] = field(default_factory=Counter)
    roles: dict[str, RoleLength] = field(default_factory=dict)
    turn_char_buckets: Counter[int] = field(default_factory=Counter)
    scripts: Counter[str] = field(default_factory=Counter)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.splits.values())

    @property
    def images(self) -> int:
        return sum(s.images for s in self.splits.values())

    @property
    def audios(self) -> int:
        return sum(s.audios for s in self.splits.values())

    def split(self, name: str) -> SplitComposition:
        return self.splits.setdefault(name, SplitComposition())


def _min(a: int | None, b: int) -> int:
    return b if a is None else min(a, b)


def _max(a: int | None, b: int) -> int:
    return b if a is None else max(a, b)


def _list_lengths(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)


class CompositionCounter:
    """Accumulates a Composition from record batches of light columns."""

    def __init__(self) -> None:
        self.composition = Composition()

    def add(self, batch: pa.RecordBatch) -> None:
        """Fold one batch (columns of `_ARROW_COLUMNS`, media possibly reduced) in."""
        c = self.composition
        splits = pc.fill_null(batch.column("split"), "(none)").to_numpy(zero_copy_only=False)
        variants = pc.is_valid(batch.column("parent_id")).to_numpy(zero_copy_only=False)
        character = batch.column("character")
        names = (
            pc.struct_field(character, "name") if pa.types.is_struct(character.type) else character
        )
        n_images = _list_lengths(batch.column("images"))
        n_audios = _list_lengths(batch.column("audios"))
        n_messages = _list_lengths(batch.column("messages"))
        modality = (n_images > 0).astype(np.int8) + 2 * (n_audios > 0).astype(np.int8)
        turn_bucket = np.searchsorted(np.array(TURN_BUCKETS), n_messages, side="left")

        for split in np.unique(splits):
            mask = splits == split
            s = c.split(str(split))
            rows = int(mask.sum())
            s.rows += rows
            s.variants += int(variants[mask].sum())
            s.originals += rows - int(variants[mask].sum())
            s.images += int(n_images[mask].sum())
            s.audios += int(n_audios[mask].sum())
            s.messages += int(n_messages[mask].sum())
            s.min_messages = _min(s.min_messages, int(n_messages[mask].min()))
            s.max_messages = _max(s.max_messages, int(n_messages[mask].max()))
            for m, n in enumerate(np.bincount(modality[mask], minlength=len(MODALITIES))):
                s.modalities[MODALITIES[m]] += int(n)
            for bucket, n in enumerate(np.bincount(turn_bucket[mask])):
                if n:
                    s.turn_buckets[bucket] += int(n)

        pairs = pa.table({"name": names, "split": splits}).group_by(["name", "split"])
        for row in pairs.aggregate([([], "count_all")]).to_pylist():
            c.characters[(row["name"], row["split"])] += row["count_all"]

        self._add_messages(batch.column("messages"))

    def _add_messages(self, messages: pa.Array) -> None:
        c = self.composition
        flat = pc.list_flatten(messages)
        if len(flat) == 0:
            return
        roles = pc.fill_null(pc.struct_field(flat, "role"), "(none)")
        content = pc.fill_null(pc.struct_field(flat, "content"), "")
        # Placeholders are markup, not language: drop them before counting letters.
        text = pc.replace_substring(content, IMAGE_PLACEHOLDER, "")
        text = pc.replace_substring(text, AUDIO_PLACEHOLDER, "")
        lengths = pc.utf8_length(text)
        table = pa.table({"role": roles, "chars": lengths})
        grouped = table.group_by("role").aggregate(
            [("chars", "count"), ("chars", "sum"), ("chars", "min"), ("chars", "max")]
        )
        for row in grouped.to_pylist():
            r = c.roles.setdefault(row["role"], RoleLength())
            r.messages += row["chars_count"]
            r.chars += row["chars_sum"]
            r.min_chars = _min(r.min_chars, row["chars_min"])
            r.max_chars = _max(r.max_chars, row["chars_max"])
        buckets = np.searchsorted(np.array(TURN_CHAR_BUCKETS), lengths.to_numpy(), side="left")
        for bucket, n in enumerate(np.bincount(buckets)):
            if n:
                c.turn_char_buckets[bucket] += int(n)
        c.scripts.update(count_scripts(text))


# Letter ranges of each script (main blocks only: a heuristic, not Unicode's Script property).
_SCRIPT_RANGES: dict[str, list[tuple[int, int]]] = {
    "Latin": [(0x41, 0x5A), (0x61, 0x7A), (0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0x24F),
              (0x1E00, 0x1EFF), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A)],
    "Han": [(0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF)],
    "Hiragana": [(0x3041, 0x309F)],
    "Katakana": [(0x30A1, 0x30FA), (0x30FC, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9D)],
    "Hangul": [(0x1100, 0x11FF), (0x3131, 0x318E), (0xAC00, 0xD7A3)],
    "Cyrillic": [(0x400, 0x52F)],
    "Arabic": [(0x620, 0x64A), (0x671, 0x6D3)],
    "Devanagari": [(0x904, 0x939), (0x958, 0x961)],
    "Greek": [(0x386, 0x3FF), (0x1F00, 0x1FFF)],
    "Hebrew": [(0x5D0, 0x5F2)],
    "Thai": [(0xE01, 0xE30), (0xE40, 0xE46)],
}  # fmt: skip
_SCRIPTS = list(_SCRIPT_RANGES)
_HAN_SUPPLEMENTARY = (0x20000, 0x3134F)  # CJK extensions B and beyond
_bmp_table: np.ndarray | None = None


def _script_table() -> np.ndarray:
    """Return the script index (1-based; 0 = none) of every BMP code point."""
    global _bmp_table
    if _bmp_table is None:
        table = np.zeros(0x10000, dtype=np.uint8)
        for i, script in enumerate(_SCRIPTS, start=1):
            for lo, hi in _SCRIPT_RANGES[script]:
                table[lo : hi + 1] = i
        _bmp_table = table
    return _bmp_table


def _string_bytes(text: pa.Array) -> bytes:
    """Return the UTF-8 bytes of all strings of `text` back to back (no copy of offsets)."""
    if len(text) == 0:
        return b""
    if pa.types.is_large_string(text.type):
        offset_type = np.int64
    else:
        text = text.cast(pa.string())
        offset_type = np.int32
    _, offsets_buf, data_buf = text.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=offset_type)[
        text.offset : text.offset + len(text) + 1
    ]
    return data_buf[int(offsets[0]) : int(offsets[-1])].to_pybytes() if data_buf else b""


def count_scripts(text: pa.Array) -> Counter[str]:
    """Return how many letters of each script the strings hold, by code point table lookup."""
    data = _string_bytes(text)
    if data.isascii():
        codes = np.frombuffer(data, dtype=np.uint8)
        script_ids = _script_table()[codes]
    else:
        codes = np.frombuffer(data.decode("utf-8", "replace").encode("utf-32-le"), dtype=np.uint32)
        script_ids = _script_table()[np.minimum(codes, 0xFFFF)]
        han = (codes >= _HAN_SUPPLEMENTARY[0]) & (codes <= _HAN_SUPPLEMENTARY[1])
        script_ids = np.where(
            codes > 0xFFFF, np.where(han, _SCRIPTS.index("Han") + 1, 0), script_ids
        )
    counts = np.bincount(script_ids, minlength=len(_SCRIPTS) + 1)
    return Counter({s: int(n) for s, n in zip(_SCRIPTS, counts[1:], strict=True) if n})


def iter_shard_batches(path: str) -> Iterator[pa.RecordBatch]:
    """Yield record batches of a shard's light columns; media stay on disk (or mapped)."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        yield from pq.ParquetFile(path).iter_batches(columns=_PARQUET_COLUMNS, batch_size=4096)
        return
    # A memory map makes column selection zero-copy: the media pages are never touched.
    with pa.memory_map(path) as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i).select(_ARROW_COLUMNS)


def compute_composition(version_dir: str, shards: list[dict[str, Any]]) -> Composition:
    """Return the composition statistics of the shards listed in a manifest."""
    counter = CompositionCounter()
    for shard in shards:
        path = os.path.join(version_dir, shard["path"])
        rows = 0
        for batch in iter_shard_batches(path):
            rows += batch.num_rows
            counter.add(batch)
        if rows != shard["rows"]:
            raise ValueError(
                f"shard {shard['path']} holds {rows} rows, manifest says {shard['rows']}"
            )
    return counter.composition


def detect_languages(scripts: Counter[str]) -> list[str]:
    """Return language codes for the writing systems holding at least 1% of the letters."""
    total = sum(scripts.values())
    if not total:
        return []
    shares = {s: n / total for s, n in scripts.items()}
    kana = scripts["Hiragana"] + scripts["Katakana"]
    found: list[str] = []
    for script, code in SCRIPT_LANGUAGES.items():
        if shares.get(script, 0.0) < LANGUAGE_MIN_SHARE:
            continue
        # Japanese writes Han characters (kanji) among kana; only Han beyond that is Chinese.
        if script == "Han" and scripts["Han"] <= kana:
            continue
        if code not in found:
            found.append(code)
    return found


def size_category(rows: int) -> str:
    """Return the Hub's size category for a number of records."""
    for bound, label in _SIZE_CATEGORIES:
        if rows < bound:
            return label
    return "n>1B"


# ---------------------------------------------------------------- markdown helpers


def md_cell(value: Any, limit: int = 120) -> str:
    """Return `value` as text safe inside a markdown table cell (one line, no markup)."""
    text = "" if value is None else str(value)
    text = " ".join(text.split())  # newlines and tabs would end the row
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = html.escape(text, quote=False)
    for ch in "\\`*_[]|#":
        text = text.replace(ch, "\\" + ch)
    return text


def md_code(value: str, limit: int = 200) -> str:
    """Return `value` as an inline code span safe inside a table cell."""
    text = " ".join(value.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    # A pipe ends the cell even inside code in GFM unless escaped; a backtick ends the span.
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    """Return a GFM table; cells given as str are used as is, others are formatted."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        cells = [c if isinstance(c, str) else _number(c) for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) else md_cell(value)


def portable_path(path: str | None) -> str:
    """Return a path fit for a card: relative paths as given, absolute ones by file name."""
    if not path:
        return ""
    if "://" in path or os.path.isabs(path):
        return posixpath.basename(path.rstrip("/")) or path
    return path


def _split_names(composition: Composition) -> list[str]:
    known = [s for s in SPLITS if s in composition.splits]
    return known + sorted(s for s in composition.splits if s not in SPLITS)


# ---------------------------------------------------------------- the card


@dataclass
class CardFacts:
    """Everything both cards say, gathered once."""

    manifest: dict[str, Any]
    parent_manifest: dict[str, Any] | None
    diff_summary: dict[str, Any] | None
    composition: Composition
    languages: list[str]
    license_id: str
    source_licenses: dict[str, str | None]

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def version(self) -> int:
        return int(self.manifest["version"])

    @property
    def copies(self) -> int:
        return int((self.manifest.get("augmentation") or {}).get("copies") or 0)

    @property
    def quarantined(self) -> int:
        return sum((self.manifest.get("quarantine") or {}).get("reasons", {}).values())

    @property
    def duplicates(self) -> int:
        return int((self.manifest.get("dedup") or {}).get("duplicates") or 0)

    def tags(self) -> list[str]:
        tags = ["role-play", "roleforge"]
        if self.composition.images or self.composition.audios:
            tags.insert(1, "multimodal")
        if self.copies > 0:
            tags.append("synthetic-augmentation")
        return tags

    def task_categories(self) -> list[str]:
        tasks = ["text-generation"]
        if self.composition.images:
            tasks.append("image-text-to-text")
        if self.composition.audios:
            tasks.append("audio-text-to-text")
        return tasks

    def description(self) -> str:
        c = self.composition
        per_split = ", ".join(f"{c.splits[s].rows:,} {s}" for s in _split_names(c))
        return (
            f"Role-play conversations for fine-tuning a model to speak as a character, "
            f"version {self.version} of '{self.name}' built by roleforge: {c.rows:,} records "
            f"({per_split}) with {c.images:,} images and {c.audios:,} audio clips."
        )

    # RAI / Datasheet statements, shared by README and Croissant.
    def collection(self) -> str:
        inputs = self.manifest.get("inputs") or []
        names = ", ".join(sorted({i["source"] for i in inputs})) or "none"
        return (
            f"Assembled from {len(inputs)} input file(s) of the corpora named in the recipe "
            f"({names}); roleforge did not collect new data. Each input is pinned by its sha256 "
            f"in the manifest. How the original corpora were collected is documented by their owners."
        )

    def preprocessing(self) -> list[str]:
        m = self.manifest
        recipe = m.get("recipe") or {}
        split = recipe.get("split") or {}
        reasons = (m.get("quarantine") or {}).get("reasons") or {}
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
            f"seed {recipe.get('seed', '?')}, by hashing ids (stable across runs and workers).",
        ]

    def manipulation(self) -> str:
        if self.copies <= 0:
            return "No augmentation: every record is an original."
        ops = (self.manifest.get("augmentation") or {}).get("ops") or []
        op_text = ", ".join(f"{o['modality']}:{o['op']} applied {o.get('applied', 0)}" for o in ops)
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
        if self.license_id == "other":
            out.append("The license is not declared in the recipe; check each source's terms.")
        if any(s.endswith(".arrow") for s in (x["path"] for x in self.manifest["shards"])):
            out.append(
                "Shards are Arrow IPC files: the datasets library reads them; mlcroissant "
                "validates the Croissant description but cannot iterate records from Arrow files."
            )
        return out

    def personal_information(self) -> list[str]:
        return [
            "Role-play dialogue may contain personal or sensitive content written by users; "
            "roleforge does not detect or remove personal information. Images and audio may "
            "show or carry the voice of real people."
        ]

    def maintenance(self) -> str:
        parent = self.manifest.get("parent_version")
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


def resolve_license(recipe: dict[str, Any]) -> tuple[str, dict[str, str | None]]:
    """Return (Hub license id, license per source): the recipe's, else the sources' shared one, else 'other'."""
    per_source = {s["name"]: s.get("license") for s in recipe.get("sources") or []}
    if recipe.get("license"):
        return str(recipe["license"]).strip().lower(), per_source
    declared = {v.strip().lower() for v in per_source.values() if v}
    if len(declared) == 1 and all(per_source.values()):
        return declared.pop(), per_source
    return "other", per_source


class HubCardHeader:
    """Builds the YAML header of the Hub card, serialised by `datasets` itself."""

    def __init__(self, facts: CardFacts):
        self.facts = facts

    def data_files(self) -> list[dict[str, Any]]:
        """Return one `{split, path}` per split: a glob when it matches exactly that split's shards."""
        shards = self.facts.manifest["shards"]
        all_paths = [s["path"] for s in shards]
        out = []
        for split in _ordered({s["split"] for s in shards}):
            paths = sorted(s["path"] for s in shards if s["split"] == split)
            folder = posixpath.dirname(paths[0])
            ext = posixpath.splitext(paths[0])[1]
            pattern = posixpath.join(folder, f"{split}-*{ext}")
            matched = sorted(p for p in all_paths if fnmatch.fnmatchcase(p, pattern))
            out.append({"split": split, "path": pattern if matched == paths else paths})
        return out

    def dataset_info(self) -> dict[str, Any]:
        """Return `dataset_info` as `datasets` writes it into a card (features, splits, sizes)."""
        import datasets
        from datasets.info import DatasetInfosDict
        from huggingface_hub import DatasetCardData

        shards = self.facts.manifest["shards"]
        splits = datasets.SplitDict()
        for split in _ordered({s["split"] for s in shards}):
            of_split = [s for s in shards if s["split"] == split]
            splits.add(
                datasets.SplitInfo(
                    name=split,
                    num_bytes=sum(int(s["bytes"]) for s in of_split),
                    num_examples=self.facts.composition.splits[split].rows
                    if split in self.facts.composition.splits
                    else 0,
                )
            )
        size = sum(int(s["bytes"]) for s in shards)
        info = datasets.DatasetInfo(
            features=datasets.Features.from_dict(hf_features()),
            splits=splits,
            download_size=size,
            dataset_size=size,
        )
        card_data = DatasetCardData()
        DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
        return card_data.to_dict()["dataset_info"]

    def build(self) -> dict[str, Any]:
        f = self.facts
        header: dict[str, Any] = {
            "pretty_name": f"{f.name} v{f.version}",
            "license": f.license_id,
        }
        if f.languages:
            header["language"] = f.languages
        header.update(
            {
                "task_categories": f.task_categories(),
                "size_categories": [size_category(f.composition.rows)],
                "tags": f.tags(),
                "configs": [{"config_name": "default", "data_files": self.data_files()}],
                "dataset_info": self.dataset_info(),
            }
        )
        return header


def _ordered(splits: set[str]) -> list[str]:
    return [s for s in SPLITS if s in splits] + sorted(splits - set(SPLITS))


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
                        str(m.get("parent_version") or "–"),
                        md_code(str(m.get("content_id", ""))),
                        md_cell(m.get("created_at")),
                        md_cell(m.get("run_id")),
                    ]
                ],
            ),
            self._usage(),
            self._motivation(),
            self._composition(),
            self._sources(),
            self._preprocessing(),
            self._augmentation(),
            self._limitations(),
            self._maintenance(),
        ]
        return "\n\n".join(parts) + "\n"

    def _usage(self) -> str:
        return (
            "## How to load\n\n"
            "```python\n"
            "import datasets\n"
            f'ds = datasets.load_dataset("path/to/{self.facts.name}/versions/v{self.facts.version}")\n'
            'ds["train"][0]["images"]  # list of PIL images; audios decode with torchcodec\n'
            "```\n\n"
            "`croissant.json` in the same folder describes the version in Croissant 1.1 with "
            "the Responsible-AI extension."
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
        splits = _split_names(c)
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
                ["split", *_bucket_labels(TURN_BUCKETS)],
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
                ["chars per message", *_bucket_labels(TURN_CHAR_BUCKETS)],
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
        inputs = f.manifest.get("inputs") or []
        rows = [
            [md_cell(i["source"]), md_code(portable_path(i.get("path"))), i.get("bytes"),
             md_code(i.get("sha256") or ""), md_cell(f.source_licenses.get(i["source"]) or "not declared")]
            for i in inputs
        ]  # fmt: skip
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
        counts = m.get("counts") or {}
        stage_rows = [
            [md_cell(stage), c.get("in"), c.get("out"), c.get("dropped"), c.get("quarantined")]
            for stage, c in counts.items()
        ]
        q = m.get("quarantine") or {}
        reasons = q.get("reasons") or {}
        reason_rows = [
            [md_code(code), n, md_cell(REASONS.get(code, ""), 200)]
            for code, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        steps = "\n".join(f"{i}. {md_cell(s, 600)}" for i, s in enumerate(f.preprocessing(), 1))
        q_file = portable_path(q.get("path"))
        parts = [
            "## Preprocessing",
            steps,
            "### Records per stage",
            md_table(["stage", "in", "out", "dropped", "quarantined"], stage_rows),
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

    def _augmentation(self) -> str:
        f = self.facts
        aug = f.manifest.get("augmentation") or {}
        ops = aug.get("ops") or []
        if f.copies <= 0 and not ops:
            return "## Augmentation\n\nNone: this version holds originals only."
        rows = [
            [md_cell(o.get("modality")), md_cell(o.get("op")),
             md_code(json.dumps(o.get("configured") or {}, sort_keys=True, ensure_ascii=False)),
             o.get("applied", 0), o.get("skipped", 0)]
            for o in ops
        ]  # fmt: skip
        parts = [
            "## Augmentation",
            md_cell(f.manipulation(), 2000),
            md_table(["modality", "op", "configured", "applied", "skipped"], rows),
        ]
        stats = aug.get("stats") or {}
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
        code = m.get("code_version") or {}
        libs = code.get("libraries") or {}
        parts = ["## Maintenance", md_cell(f.maintenance(), 600)]
        rows = [
            ["version", str(f.version)],
            ["parent version", str(m.get("parent_version") or "none")],
            ["recipe hash", md_code(str(m.get("recipe_hash", "")))],
            ["schema sha256", md_code(str(m.get("schema_sha256", "")))],
            ["content id", md_code(str(m.get("content_id", "")))],
            ["roleforge", md_cell(code.get("roleforge"))],
            ["git commit", md_code(str(code.get("git_commit") or "unknown"))],
        ]
        rows += [[md_cell(k), md_cell(v)] for k, v in sorted(libs.items())]
        parts.append(md_table(["", ""], rows))
        parts.append(self._diff())
        shard_rows = [
            [md_code(s["path"]), md_cell(s["split"]), s["rows"], s["bytes"], md_code(s["sha256"])]
            for s in m["shards"]
        ]
        parts.append(
            "### Files\n\n" + md_table(["shard", "split", "rows", "bytes", "sha256"], shard_rows)
        )
        return "\n\n".join(parts)

    def _diff(self) -> str:
        f = self.facts
        parent = f.manifest.get("parent_version")
        if f.diff_summary is None or parent is None:
            return "### Changes against the parent\n\nFirst version: no parent to compare with."
        d = f.diff_summary
        pm = f.parent_manifest or {}
        head = (
            f"Against version {parent}"
            + (f" (content id {md_code(str(pm['content_id']))})" if pm.get("content_id") else "")
            + f": {d.get('added', 0):,} added, {d.get('removed', 0):,} removed, "
            f"{d.get('changed', 0):,} changed records."
        )
        rows = []
        for split in _ordered(set(d.get("splits") or {})):
            s = d["splits"][split]
            before, after = s.get("before", 0), s.get("after", 0)
            rows.append([md_cell(split), before, after, f"{after - before:+,}"])
        return (
            "### Changes against the parent\n\n"
            + head
            + "\n\n"
            + md_table(["split", f"v{parent}", f"v{f.version}", "change"], rows)
        )


def _bucket_labels(bounds: tuple[int, ...]) -> list[str]:
    labels, low = [], 0
    for b in bounds:
        labels.append(f"{low + 1}–{b}" if low + 1 < b else f"≤{b}")
        low = b
    labels.append(f">{bounds[-1]}")
    labels[0] = f"≤{bounds[0]}"
    return labels


def render_readme(facts: CardFacts) -> str:
    """Return the README.md text: Hub YAML header, then the datasheet sections."""
    import yaml

    header = yaml.safe_dump(
        HubCardHeader(facts).build(), sort_keys=False, allow_unicode=True, width=1000
    )
    return f"---\n{header}---\n\n{DatasheetBody(facts).render()}"


def gather_facts(
    version_dir: str,
    manifest: dict[str, Any],
    parent_manifest: dict[str, Any] | None,
    diff_summary: dict[str, Any] | None,
) -> CardFacts:
    """Return what the cards say about a version: manifest facts plus shard statistics."""
    composition = compute_composition(version_dir, manifest["shards"])
    declared = manifest.get("splits") or {}
    for split, n in declared.items():
        actual = composition.splits[split].rows if split in composition.splits else 0
        if actual != n:
            logger.warning("manifest says %s has %d records; its shards hold %d", split, n, actual)
    license_id, per_source = resolve_license(manifest.get("recipe") or {})
    return CardFacts(
        manifest=manifest,
        parent_manifest=parent_manifest,
        diff_summary=diff_summary,
        composition=composition,
        languages=detect_languages(composition.scripts),
        license_id=license_id,
        source_licenses=per_source,
    )


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_cards(
    version_dir: str,
    manifest: dict[str, Any],
    parent_manifest: dict[str, Any] | None,
    diff_summary: dict[str, Any] | None,
) -> list[str]:
    """Write README.md and croissant.json into `version_dir`; return their file names.

    `manifest` is the version's manifest without its "cards" key; shard paths in it are
    relative to `version_dir`, and so is every path the cards mention.
    """
    if not manifest.get("shards"):
        raise ValueError("a version without shards has nothing to describe")
    facts = gather_facts(version_dir, manifest, parent_manifest, diff_summary)
    _write_text(os.path.join(version_dir, README), render_readme(facts))
    croissant = CroissantBuilder(
        manifest,
        description=facts.description(),
        languages=facts.languages,
        license_id=facts.license_id,
        keywords=facts.tags(),
        rai=facts.rai(),
    ).build()
    _write_text(
        os.path.join(version_dir, CROISSANT),
        json.dumps(croissant, indent=2, ensure_ascii=False) + "\n",
    )
    logger.info("wrote cards for %s v%s", manifest["name"], manifest["version"])
    return [README, CROISSANT]
