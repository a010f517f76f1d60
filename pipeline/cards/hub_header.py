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

    def _dataset_info(self, card_data: Any) -> None:
        """Add `dataset_info` to `card_data` as `datasets` writes it (features, splits, sizes)."""
        import datasets
        from datasets.info import DatasetInfosDict

        splits = datasets.SplitDict()
        for split in self.splits():
            of_split = [s for s in self.shards if s.split == split]
            splits.add(
                datasets.SplitInfo(
                    name=split,
                    num_bytes=sum(s.bytes for s in of_split),
                    num_examples=sum(s.rows for s in of_split),
                )
            )
        size = sum(s.bytes for s in self.shards)
        info = datasets.DatasetInfo(
            features=datasets.Features.from_dict(hf_features()),
            splits=splits,
            download_size=size,
            dataset_size=size,
        )
        DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)

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
        self._dataset_info(card_data)
        return card_data.to_dict()
