"""The recipe: one YAML file, validated by pydantic before any work starts."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from augmenters.config import AugmentConfig
from pipeline.record.config import RecipeError, StrictModel
from pipeline.record.ids import DATASET_NAME_PATTERN, canonical_json
from pipeline.stages.quality.config import QualityConfig
from trainers.config import EvalConfig, TrainConfig

SOURCE_FORMATS = (
    "auto",
    "llamafactory",
    "sharegpt",
    "openai",
    "pippa",
    "mmrole",
    "chatharuhi",
    "charactereval",
    "characterllm",
    "tavern",
    "arrow",
    # issue 22: more corpora and content-part spellings
    "trl",
    "swift",
    "rolebench",
    "characterbench",
    "sillytavern",
    "agnai",
    "risuai",
)


class SourceConfig(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    path: str
    format: Literal[SOURCE_FORMATS] = "auto"  # type: ignore[valid-type]
    # Characters file(s): jsonl of {name, profile, greeting, catchphrases, aliases}, a
    # CharacterEval profiles JSON, or SillyTavern/TavernAI cards (JSON or PNG).
    characters: str | list[str] | None = None
    character: str | None = None  # the played character when a record names none
    persona: str | None = None  # plain-text file: the played character's profile
    media_dir: str | None = None  # relative media paths resolve here (default: the file's folder)
    # Where media go in a record that carries media but no placeholder at all.
    media_placement: Literal["placeholders", "first_user_turn"] = "placeholders"
    allow_outside_root: bool = False
    license: str | None = None

    @property
    def characters_files(self) -> list[str]:
        """Return the characters files as a list (the key takes one path or several)."""
        if self.characters is None:
            return []
        return [self.characters] if isinstance(self.characters, str) else list(self.characters)


class MediaLimits(StrictModel):
    max_image_pixels: int = Field(default=40_000_000, gt=0)
    # allow_inf_nan: `.inf` would be no limit at all
    max_audio_seconds: float = Field(default=600.0, gt=0, allow_inf_nan=False)
    max_media_bytes: int = Field(default=50 * 1024 * 1024, gt=0)


class SplitConfig(StrictModel):
    by: Literal["conversation", "character"] = "conversation"
    validation: float = Field(default=0.1, ge=0, lt=1)
    test: float = Field(default=0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> SplitConfig:
        if self.validation + self.test >= 1:
            raise ValueError("validation + test must be below 1")
        return self


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?\s*$", re.IGNORECASE)


def parse_size(value: int | str) -> int:
    """Return a byte count for `value`: an int, or text like '256MB' (10^6) or '1GiB' (2^30)."""
    if isinstance(value, int):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(f"not a size: {value!r} (use e.g. 256MB)")
    number, prefix, binary = m.groups()
    power = "KMGT".index(prefix.upper()) + 1 if prefix else 0
    return int(float(number) * (1024 if binary else 1000) ** power)


class OutputConfig(StrictModel):
    # Parquet loads natively everywhere (datasets, pyarrow, polars, duckdb, Ray,
    # mlcroissant); `arrow` writes IPC stream files for `datasets.Dataset.from_file`.
    format: Literal["parquet", "arrow"] = "parquet"
    shard_size: int | str = "256MB"

    @field_validator("shard_size")
    @classmethod
    def _positive_size(cls, v: int | str) -> int:
        size = parse_size(v)
        if size <= 0:
            raise ValueError("shard_size must be positive")
        return size


class StageExecution(StrictModel):
    """Per-stage overrides of ExecutionConfig; unset keys take the recipe-wide value."""

    batch_size: int | None = Field(default=None, ge=1)
    num_cpus: float | None = Field(default=None, gt=0)
    concurrency: int | None = Field(default=None, ge=1)


# Measured on 2 CPUs with the benchmark's recipe (docs/ARCHITECTURE.md, "Execution
# settings"): a cold run of 50 / 200 / 400 records took 31 / 34 / 37 s in-process and
# 101 / 57 / 70 s on Ray (a loaded machine: load 5-11). Ray's start, its workers' imports
# and its shutdown cost ~10 s on an idle one, which the second CPU wins back at ~8 ms per
# record (the benchmark's ops: ~17 ms per record on one CPU) after ~1,200 records, and
# after ~400 for ops three times as slow (TimeStretch, PitchShift).
IN_PROCESS_RECORDS = 500
TASK_TIMEOUT_S = 600.0


class ExecutionConfig(StrictModel):
    batch_size: int = Field(default=16, ge=1)  # records per Ray Data batch in media stages
    num_cpus: float = Field(default=1.0, gt=0)  # CPUs per augment/validate task
    concurrency: int | None = Field(default=None, ge=1)  # max parallel tasks; None = all CPUs
    # e.g. {augment: {num_cpus: 2}}; the Ray tasks of a run: ingest (one per source), augment
    # (the record pass: validate -> split -> augment; `validate` is read as its alias), write.
    stages: dict[Literal["ingest", "validate", "augment", "write"], StageExecution] = Field(
        default_factory=dict
    )
    # The per-record cache in <store>/<name>/cache/: a rerun computes only records whose key
    # it has not seen. Off: every record is computed and nothing is kept.
    cache: bool = True
    # A pass over at most this many records (misses of the cache, an ingest of about as
    # many) runs in the driver's process: below it, starting Ray and its workers' imports
    # cost more than the second CPU saves (benchmarks/rerun.py). 0: every pass on Ray.
    in_process_records: int = Field(default=IN_PROCESS_RECORDS, ge=0)
    # True: after a record pass on Ray, its workers exit and the shard tasks get fresh ones
    # (`cluster.retire_idle_workers`): less memory at the write (~120 MB per worker; the
    # memory bench's 10x/1x peak 1.33 -> 1.21), for ~3-5 s of worker exits and starts per
    # job on 2 CPUs (a 2,000-record job takes ~21 s) and, in a long session, op imports
    # again. Off by default: the time is the dearer of the two for most runs.
    fresh_write_workers: bool = False
    # A pass on Ray fails (`cluster.TasksStalled`) when none of its tasks finished for this
    # long while every CPU of the cluster stood idle: its tasks were submitted and never
    # started, which waiting longer does not cure (`cluster.run_tasks`). Generous, so a
    # cluster that is still adding nodes is not failed; a running task is never timed out.
    task_timeout_s: float = Field(default=TASK_TIMEOUT_S, gt=0)


class StoreOptions(StrictModel):
    """How to reach an object store (`s3://`, `gs://`); unset fields come from the
    environment (the AWS variables; $STORAGE_EMULATOR_HOST for gs://). Where the store is, not
    what is in it: no part of the recipe hash."""

    # s3://: an S3-compatible endpoint (MinIO, Ceph, R2...), overriding $AWS_ENDPOINT_URL(_S3).
    # gs://: a GCS emulator, reached without credentials, overriding $STORAGE_EMULATOR_HOST.
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+")
    region: str | None = Field(default=None, min_length=1)  # s3:// only

    def fs_kwargs(self) -> dict[str, str]:
        """Return the keywords `pipeline.store.store_fs.store_fs` takes for these options."""
        return self.model_dump(exclude_none=True)


class Recipe(StrictModel):
    # Whether `check_ops` has accepted the augment ops (it imports their libraries).
    _ops_checked: bool = PrivateAttr(default=False)
    # The name becomes a folder in the store and in cards_dir: "." or ".." would escape them.
    name: str = Field(pattern=DATASET_NAME_PATTERN)
    store: str | None = None  # None = $ROLEFORGE_STORE, then ./roleforge-store
    store_options: StoreOptions = Field(default_factory=StoreOptions)
    seed: int = 0
    sources: list[SourceConfig] = Field(min_length=1)
    split: SplitConfig = Field(default_factory=SplitConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    limits: MediaLimits = Field(default_factory=MediaLimits)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    max_bad_fraction: float = Field(default=0.05, ge=0, le=1)
    cards_dir: str = "data_cards"
    # A Hub licence id (e.g. cc-by-4.0); `other` needs license_name and license_link.
    license: str | None = None
    license_name: str | None = None
    license_link: str | None = None
    train: TrainConfig | None = None
    # The quality stages (near-duplicates, role-play lint, token ledger); None: off.
    quality: QualityConfig | None = None
    eval: EvalConfig | None = None  # evaluation extras of retrain: an optional LLM judge
    # Folder the recipe file lives in; relative paths in the recipe resolve against it.
    base_dir: str = Field(default=".", exclude=True)

    @field_validator("sources")
    @classmethod
    def _unique_source_names(cls, v: list[SourceConfig]) -> list[SourceConfig]:
        names = [s.name for s in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
        return v

    @model_validator(mode="after")
    def _judge_score_has_a_judge(self) -> Recipe:
        if (
            self.train
            and "judge_score" in self.train.promote_if
            and not (self.eval and self.eval.judge)
        ):
            raise ValueError("train.promote_if judge_score needs eval.judge (an LLM judge)")
        return self

    @model_validator(mode="after")
    def _other_license_is_named(self) -> Recipe:
        if (self.license or "").strip().lower() == "other":
            missing = [k for k in ("license_name", "license_link") if not getattr(self, k)]
            if missing:
                raise ValueError(f"license 'other' needs {' and '.join(missing)}")
        return self

    def resolve(self, path: str) -> str:
        """Return `path` resolved against the recipe's folder (URIs pass through)."""
        if "://" in path or os.path.isabs(path):
            return path
        return os.path.normpath(os.path.join(self.base_dir, path))

    @property
    def store_uri(self) -> str:
        return self.resolve(self.store or os.environ.get("ROLEFORGE_STORE") or "roleforge-store")

    def data_dict(self) -> dict[str, Any]:
        """Return the parts of the recipe that decide the dataset's content."""
        fields = {"name", "seed", "sources", "split", "augment", "limits"}
        if self.quality is not None:  # recipes without it keep the hash they always had
            fields.add("quality")
        return self.model_dump(mode="json", include=fields)

    @property
    def recipe_hash(self) -> str:
        """sha256 of the content-deciding recipe parts (store, execution, train excluded)."""
        return hashlib.sha256(canonical_json(self.data_dict()).encode()).hexdigest()


def _error_key(err: dict[str, Any]) -> str:
    return ".".join(str(p) for p in err["loc"]) or "<recipe>"


# Bounds on what a recipe may be: far above any real one, far below what exhausts memory.
MAX_RECIPE_BYTES = 1024 * 1024
# Nodes and string characters of the recipe once YAML aliases are expanded: an alias bomb
# is a few hundred bytes of text that expands to billions of nodes.
MAX_RECIPE_NODES = 100_000
MAX_RECIPE_CHARS = 10 * 1024 * 1024
# An error line repeats at most this much of what the recipe said.
MAX_ERROR_LINE = 300
MAX_ERROR_LINES = 20


def bounded(text: str, limit: int = MAX_ERROR_LINE) -> str:
    """Return `text` cut to `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def expanded_size(data: Any) -> tuple[int, int]:
    """Return (nodes, string characters) of parsed YAML as if its aliases were expanded.

    Shared (aliased) objects are measured once and counted each time they are referenced,
    so the cost is the size of the text, not of the expansion.
    """
    memo: dict[int, tuple[int, int]] = {}
    active: set[int] = set()

    def measure(node: Any) -> tuple[int, int]:
        if isinstance(node, str):
            return 1, len(node)
        if not isinstance(node, (dict, list)):
            return 1, 0
        key = id(node)
        if key in memo:
            return memo[key]
        if key in active:  # a recursive alias: infinite once expanded
            return MAX_RECIPE_NODES + 1, 0
        active.add(key)
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        nodes, chars = 1, 0
        for child in children:
            n, c = measure(child)
            nodes, chars = nodes + n, chars + c
            if nodes > MAX_RECIPE_NODES or chars > MAX_RECIPE_CHARS:
                break  # already too big: the exact size does not matter
        active.discard(key)
        memo[key] = (nodes, chars)
        return nodes, chars

    return measure(data)


def _check_recipe_size(data: Any, where: str) -> None:
    nodes, chars = expanded_size(data)
    if nodes > MAX_RECIPE_NODES or chars > MAX_RECIPE_CHARS:
        raise RecipeError(
            f"{where}: the recipe expands to over {MAX_RECIPE_NODES:,} values or "
            f"{MAX_RECIPE_CHARS:,} characters (YAML aliases?); refusing it"
        )


def format_validation_error(exc: ValidationError) -> str:
    """Return one line per problem (at most MAX_ERROR_LINES), each starting with the
    offending key and bounded in length, whatever the recipe held."""
    lines = []
    errors = exc.errors()
    for err in errors[:MAX_ERROR_LINES]:
        if err["type"] == "extra_forbidden":
            lines.append(bounded(f"{_error_key(err)}: unknown key"))
        else:
            lines.append(bounded(f"{_error_key(err)}: {err['msg']}"))
    if len(errors) > MAX_ERROR_LINES:
        lines.append(f"... and {len(errors) - MAX_ERROR_LINES} more problems")
    return "\n".join(lines)


def parse_recipe(data: Any, base_dir: str = ".", check_ops: bool = True) -> Recipe:
    """Return a validated Recipe from already-parsed YAML data, or raise RecipeError."""
    if not isinstance(data, dict):
        raise RecipeError("<recipe>: the recipe must be a mapping of keys to values")
    _check_recipe_size(data, "<recipe>")
    try:
        recipe = Recipe.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        raise RecipeError(format_validation_error(exc)) from None
    if check_ops:
        check_recipe_ops(recipe)
    return recipe


def check_recipe_ops(recipe: Recipe) -> None:
    """Raise RecipeError naming the op and key of any augment op its library refuses (this
    imports the op libraries: seconds); a recipe passes once."""
    if recipe._ops_checked:
        return
    from augmenters import validate_augment_config

    try:
        validate_augment_config(recipe.augment)  # raises RecipeError naming op and key
    except RecipeError as exc:
        raise RecipeError(bounded(str(exc), MAX_ERROR_LINE * 4)) from None
    recipe._ops_checked = True


def load_recipe(path: str | os.PathLike[str], check_ops: bool = True) -> Recipe:
    """Return the validated recipe at `path`; raise RecipeError naming the bad key."""
    p = Path(path)
    try:
        if not p.is_file():
            raise RecipeError(f"cannot read recipe {p}: not a regular file")
        if p.stat().st_size > MAX_RECIPE_BYTES:
            raise RecipeError(
                f"recipe {p} has {p.stat().st_size:,} bytes, over the limit of "
                f"{MAX_RECIPE_BYTES:,}; a recipe names its data, it does not hold it"
            )
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"cannot read recipe {p}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RecipeError(f"cannot read recipe {p}: not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(bounded(f"{p}: not valid YAML: {exc}", MAX_ERROR_LINE * 2)) from None
    return parse_recipe(data, base_dir=str(p.parent.resolve()), check_ops=check_ops)
