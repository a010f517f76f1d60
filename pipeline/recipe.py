"""The recipe: one YAML file, validated by pydantic before any work starts."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from augmenters.config import AugmentConfig
from pipeline.record.config import RecipeError, StrictModel
from pipeline.record.ids import canonical_json
from trainers.config import TrainConfig

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
    max_audio_seconds: float = Field(default=600.0, gt=0)
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


class ExecutionConfig(StrictModel):
    batch_size: int = Field(default=16, ge=1)  # records per Ray Data batch in media stages
    num_cpus: float = Field(default=1.0, gt=0)  # CPUs per augment/validate task
    concurrency: int | None = Field(default=None, ge=1)  # max parallel tasks; None = all CPUs
    # e.g. {augment: {num_cpus: 2}}; stages that run on Ray: validate, augment.
    stages: dict[Literal["validate", "augment"], StageExecution] = Field(default_factory=dict)


class Recipe(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    store: str | None = None  # None = $ROLEFORGE_STORE, then ./roleforge-store
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
        return self.model_dump(mode="json", include=fields)

    @property
    def recipe_hash(self) -> str:
        """sha256 of the content-deciding recipe parts (store, execution, train excluded)."""
        return hashlib.sha256(canonical_json(self.data_dict()).encode()).hexdigest()


def _error_key(err: dict[str, Any]) -> str:
    return ".".join(str(p) for p in err["loc"]) or "<recipe>"


def format_validation_error(exc: ValidationError) -> str:
    """Return one line per problem, each starting with the offending key."""
    lines = []
    for err in exc.errors():
        if err["type"] == "extra_forbidden":
            lines.append(f"{_error_key(err)}: unknown key")
        else:
            lines.append(f"{_error_key(err)}: {err['msg']}")
    return "\n".join(lines)


def parse_recipe(data: Any, base_dir: str = ".", check_ops: bool = True) -> Recipe:
    """Return a validated Recipe from already-parsed YAML data, or raise RecipeError."""
    if not isinstance(data, dict):
        raise RecipeError("<recipe>: the recipe must be a mapping of keys to values")
    try:
        recipe = Recipe.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        raise RecipeError(format_validation_error(exc)) from None
    if check_ops:
        from augmenters import validate_augment_config

        validate_augment_config(recipe.augment)  # raises RecipeError naming op and key
    return recipe


def load_recipe(path: str | os.PathLike[str], check_ops: bool = True) -> Recipe:
    """Return the validated recipe at `path`; raise RecipeError naming the bad key."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"cannot read recipe {p}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{p}: not valid YAML: {exc}") from None
    return parse_recipe(data, base_dir=str(p.parent.resolve()), check_ops=check_ops)
