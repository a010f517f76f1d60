"""The YAML header of the Hub dataset card, built with huggingface_hub's `DatasetCardData`.

It is what `datasets.load_dataset(<version dir>)` reads: one config whose data files name
only the splits that hold records (a declared split without data is an error in datasets
5), and `dataset_info` with the typed Image / Audio features as `datasets` itself writes it.
"""

from __future__ import annotations

import fnmatch
import posixpath
from typing import Any

from pipeline.cards.composition import ordered_splits
from pipeline.cards.facts import CardFacts
from pipeline.record.schema import hf_features

_SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
]


def size_category(rows: int) -> str:
    """Return the Hub's size category for a number of records."""
    for bound, label in _SIZE_CATEGORIES:
        if rows < bound:
            return label
    return "n>1B"


class HubCardHeader:
    """Builds the YAML header of the Hub card from the facts of a version."""

    def __init__(self, facts: CardFacts):
        self.facts = facts
        # Only shards with rows: the writer makes none for an empty split, and a manifest
        # of an older version may still list an empty one.
        self.shards = [s for s in facts.manifest.shards if s.rows > 0]

    def splits(self) -> list[str]:
        return ordered_splits({s.split for s in self.shards})

    def data_files(self) -> list[dict[str, Any]]:
        """Return one `{split, path}` per split with records: a glob when it matches exactly
        that split's shards."""
        all_paths = [s.path for s in self.facts.manifest.shards]
        out = []
        for split in self.splits():
            paths = sorted(s.path for s in self.shards if s.split == split)
            folder = posixpath.dirname(paths[0])
            ext = posixpath.splitext(paths[0])[1]
            pattern = posixpath.join(folder, f"{split}-*{ext}")
            matched = sorted(p for p in all_paths if fnmatch.fnmatchcase(p, pattern))
            out.append({"split": split, "path": pattern if matched == paths else paths})
        return out

    def dataset_info(self) -> dict[str, Any]:
        """Return `dataset_info` (features, splits, sizes) as `datasets` writes it for one
        default config (`DatasetInfosDict.to_dataset_card_data`).

        Written here rather than through `datasets`: importing it costs a rerun about 0.3 s
        of CPU, more than everything else the cards do. tests/pipeline/cards hold this equal
        to the library's own output."""
        splits = []
        for split in self.splits():
            of_split = [s for s in self.shards if s.split == split]
            splits.append(
                {
                    "name": split,
                    "num_bytes": sum(s.bytes for s in of_split),
                    "num_examples": sum(s.rows for s in of_split),
                }
            )
        size = sum(s.bytes for s in self.shards)
        return {
            "features": yaml_features(hf_features()),
            "splits": splits,
            "download_size": size,
            "dataset_size": size,
        }

    def build(self) -> dict[str, Any]:
        """Return the header as a dict, in the Hub dataset card's field names."""
        from huggingface_hub import DatasetCardData

        f = self.facts
        licence: dict[str, Any] = {"license": f.license.id}
        if f.license.id == "other":
            licence.update(license_name=f.license.name, license_link=f.license.link)
        card_data = DatasetCardData(
            pretty_name=f"{f.name} v{f.version}",
            language=f.languages or None,
            task_categories=f.task_categories(),
            size_categories=[size_category(f.composition.rows)],
            tags=f.tags(),
            configs=[{"config_name": "default", "data_files": self.data_files()}],
            **licence,
        )
        card_data["dataset_info"] = self.dataset_info()
        return card_data.to_dict()


def yaml_features(features: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the JSON dict form of `datasets` Features (`hf_features`) in the card's YAML
    list form, as `datasets.Features._to_yaml_list` writes it, for the feature types the
    record has (Value, List, struct, and media types without parameters); any other
    raises ValueError rather than guess."""
    return _yaml_feature(features)["struct"]


def _yaml_feature(feature: dict[str, Any]) -> dict[str, Any]:
    kind = feature.get("_type")
    if kind is None:  # a struct: its fields in order
        return {"struct": [{"name": k, **_yaml_feature(v)} for k, v in feature.items()]}
    rest = {k: v for k, v in feature.items() if k != "_type"}
    if kind == "Value":
        return rest
    if kind == "List" and list(rest) == ["feature"]:
        inner = _yaml_feature(rest["feature"])
        # `list: {dtype: x}` is written `list: x`, `list: {struct: [...]}` as `list: [...]`.
        if list(inner) in (["dtype"], ["struct"]):
            inner = next(iter(inner.values()))
        return {"list": inner}
    if kind in ("Image", "Audio", "Video") and not rest:
        return {"dtype": kind.lower()}
    raise ValueError(f"no card serialisation for feature {feature!r}")
