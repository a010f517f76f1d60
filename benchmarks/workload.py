"""The benchmark job: one realistic augmentation recipe that every contender runs.

`AUGMENT` is the recipe's `augment:` section. Our pipeline reads it through the recipe;
the baselines build the same ops straight from the libraries (albumentations,
audiomentations, nlpaug, soxr) from the same dict, so both sides do the same work.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml

# Where our side's stores go: unset, a local folder under the run's scratch folder; set, a
# store URI prefix (e.g. `s3://bench/roleforge`, with the endpoint and keys in the usual
# `AWS_ENDPOINT_URL` / `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`), so the same figures
# can be taken with the store on an object store beside local disk (issue 16).
STORE_ENV = "ROLEFORGE_BENCH_STORE"

COPIES = 2
SEED = 1234

AUGMENT: dict[str, Any] = {
    "copies": COPIES,
    "text": [
        {"op": "KeyboardAug", "roles": ["user"], "p": 1.0, "aug_char_p": 0.1, "aug_word_p": 0.1},
    ],
    "image": [
        {"op": "RandomResizedCrop", "size": [224, 224], "scale": [0.6, 1.0], "p": 1.0},
        {"op": "HorizontalFlip", "p": 0.5},
        {
            "op": "ColorJitter",
            "brightness": 0.2,
            "contrast": 0.2,
            "saturation": 0.2,
            "hue": 0.05,
            "p": 0.8,
        },
    ],
    "audio": [
        {"op": "Gain", "min_gain_db": -6.0, "max_gain_db": 6.0, "p": 1.0},
        {"op": "AddGaussianNoise", "min_amplitude": 0.001, "max_amplitude": 0.01, "p": 0.5},
        {"op": "SpeedPerturb", "factors": [0.9, 1.1], "p": 1.0},
    ],
}


def store_uri(local: Path) -> str:
    """Return the store a benchmark store folder stands for: `local` itself, or its path
    below benchmarks/_work under $ROLEFORGE_BENCH_STORE (the run folder keeps runs apart)."""
    base = os.environ.get(STORE_ENV, "").strip()
    if not base:
        return str(local)
    work = Path(__file__).resolve().parent / "_work"
    try:
        relative = local.resolve().relative_to(work).as_posix()
    except ValueError:
        relative = local.name
    return f"{base.rstrip('/')}/{relative}"


def remove_store(local: Path) -> None:
    """Delete a benchmark store, wherever `store_uri` put it; a missing one is fine."""
    uri = store_uri(local)
    if "://" not in uri or uri.startswith("file://"):
        shutil.rmtree(uri.removeprefix("file://"), ignore_errors=True)
        return
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(uri)
    try:
        fs.delete_dir(path)
    except (FileNotFoundError, OSError):
        pass


def recipe_dict(
    jsonl: Path, store: Path, name: str = "bench", batch_size: int | None = None
) -> dict[str, Any]:
    """Return the benchmark recipe as parsed YAML: every record is train, so every one is augmented.

    `store` is a local scratch folder; the recipe's store is `store_uri(store)` (the cards
    always go to the local folder)."""
    recipe: dict[str, Any] = {
        "name": name,
        "store": store_uri(store),
        "seed": SEED,
        "sources": [
            {"name": "bench", "path": str(jsonl), "format": "llamafactory", "character": "Mira"}
        ],
        # validation/test are never augmented; the job compares augmentation, so all is train.
        "split": {"by": "conversation", "validation": 0.0, "test": 0.0},
        "augment": AUGMENT,
        "output": {"format": "arrow", "shard_size": "256MB"},
        "cards_dir": str(store / "_cards"),
    }
    if batch_size is not None:
        recipe["execution"] = {"batch_size": batch_size}
    return recipe


def write_recipe(path: Path, recipe: dict[str, Any]) -> Path:
    """Write `recipe` as YAML at `path` and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path
