"""A committed version's split as a torch dataset: memory-mapped rows, encoded on access."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from trainers.chat import ChatFormatter, ChatSample
from trainers.encoding import ConversationEncoder, PlannedSample, SamplePlan, one_intra_op_thread
from trainers.token_ledger import processor_hash

logger = logging.getLogger(__name__)


class SplitReader:
    """The rows of one split in id order, read memory-mapped from its shards (Arrow IPC or
    Parquet).

    Row i is the split's i-th row by id, whatever shards hold it and in what order: the
    writer leaves rows in the order its record pass wrote them (`store/writer.py`), which
    follows how the work was cut (workers, the record cache), and a version is its rows
    (the content id), not its layout. So what a trainer sees, and the seeded order it
    shuffles them into, depend on the version's content alone. The order is a permutation
    over the mapped rows (`order`): no media byte is copied to put them in it.

    The table is opened lazily and not pickled, so DataLoader and Ray workers each map
    the files themselves instead of receiving a copy of the data.
    """

    def __init__(self, paths: list[str], fs: Any = None):
        self.paths = list(paths)
        self.fs = fs  # the store's filesystem; None: local paths
        self._table = None
        self._order = None

    @property
    def table(self):
        """The split's rows as the shards hold them (mapped; not in id order, see `order`)."""
        if self._table is None:
            import pyarrow as pa

            from pipeline.store.shards import read_shard

            tables = [read_shard(p, self.fs) for p in self.paths]
            if tables:
                self._table = pa.concat_tables(tables)
            else:
                from pipeline.record.schema import RECORD_SCHEMA

                self._table = RECORD_SCHEMA.empty_table()
        return self._table

    @property
    def order(self):
        """The positions in `table` of the split's rows sorted by id (a numpy array)."""
        if self._order is None:
            import pyarrow.compute as pc

            self._order = pc.sort_indices(self.table.column("id")).to_numpy()
        return self._order

    def __len__(self) -> int:
        return self.table.num_rows

    def row(self, index: int) -> dict[str, Any]:
        """Return row `index` (in id order) as a canonical record dict."""
        return self.table.slice(int(self.order[index]), 1).to_pylist()[0]

    def rows(self, indices: list[int]) -> list[dict[str, Any]]:
        """Return rows `indices` (in id order; repeats allowed) as canonical record dicts,
        converted to Python together."""
        return self.table.take(self.order[indices]).to_pylist()

    def column(self, name: str) -> Any:
        """Return column `name` in id order (a copy of it: for the columns without media)."""
        return self.table.column(name).take(self.order)

    def has_media(self, column: str) -> list[bool]:
        """Return per row, in id order, whether its `column` (images or audios) holds an
        item; no media byte is read or copied."""
        import numpy as np
        import pyarrow.compute as pc

        lengths = pc.list_value_length(self.table.column(column)).fill_null(0)
        return (np.asarray(lengths.to_numpy(zero_copy_only=False))[self.order] > 0).tolist()

    def media_counts(self) -> dict[str, int]:
        """Return how many rows carry at least one image, and one audio clip (no media read)."""
        import pyarrow.compute as pc

        counts = {}  # counts: the order of the rows does not matter, so no permutation
        for kind, column in (("image", "images"), ("audio", "audios")):
            lengths = pc.list_value_length(self.table.column(column))
            counts[kind] = int(pc.sum(pc.greater(lengths, 0)).as_py() or 0)
        return counts

    def __getstate__(self) -> dict[str, Any]:
        return {"paths": self.paths, "fs": self.fs, "_table": None, "_order": None}


@dataclass
class SplitStats:
    """What the length plan did to one split."""

    split: str
    rows: int = 0
    used: int = 0
    truncated: int = 0  # samples that lost earliest turns to fit max_length
    skipped: int = 0  # samples not used (last character turn alone too long, or none)
    skip_reasons: dict[str, int] = field(default_factory=dict)
    media_dropped_samples: int = 0  # samples whose media the model cannot take (drop_media)
    tokens: int = 0  # planned tokens over used samples
    planned_from_ledger: int = 0  # samples whose length the token ledger's count gave

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LedgerPlanner:
    """Plans a split's samples from the token ledger's counts (`quality.tokens`) where they
    hold for this trainer, so the length plan does not render and tokenize them again.

    A count holds where the row's `quality.tokens_hash` is the hash of the encoder's
    processor and chat template with the formatter's system template, and the formatter
    dropped none of the row's media (the ledger counts every medium). A sample that does
    not fit max_length is left to `ConversationEncoder.plan`, which finds the turns to drop.
    The first sample of each media kind (text only, images, audio, both) the ledger plans
    is planned by tokenizing too: if the two differ (code that changed between ingest and
    training, which no hash sees) the counts are not used for the rest of the split.
    """

    def __init__(self, reader: SplitReader, formatter: ChatFormatter, encoder: ConversationEncoder):
        self.encoder = encoder
        self.counts = ledger_counts(reader)
        self.kinds: list[tuple[bool, bool]] = []
        self.checked: set[tuple[bool, bool]] = set()
        if any(h is not None for _, h in self.counts):
            expected = processor_hash(
                encoder.processor, formatter.system_template, encoder.chat_template
            )
            self.counts = [(n, h) if h == expected else (None, None) for n, h in self.counts]
            images, audios = (reader.has_media(c) for c in ("images", "audios"))
            self.kinds = list(zip(images, audios, strict=True))

    def plan(self, row: int, sample: ChatSample) -> SamplePlan | None:
        """Return the plan of split row `row` from its ledger count, or None when the
        count does not hold for it (the caller then plans by tokenizing)."""
        count = self.counts[row][0] if self.counts else None
        if count is None or sample.dropped_media:
            return None
        plan = self.encoder.counted_plan(sample, count)
        kind = self.kinds[row]
        if plan is None or kind in self.checked:
            return plan
        self.checked.add(kind)
        measured = self.encoder.plan(sample)
        if measured != plan:
            logger.warning(
                "the token ledger's count of %s gives plan %s, tokenizing gives %s: the "
                "split's counts are not used",
                sample.record_id,
                plan,
                measured,
            )
            self.counts = []
            return None
        return plan


def ledger_counts(reader: SplitReader) -> list[tuple[int | None, str | None]]:
    """Return each row's (`quality.tokens`, `quality.tokens_hash`), in id order; (None, None)
    for every row of a version without a quality column."""
    import pyarrow.compute as pc

    if "quality" not in reader.table.column_names:
        return [(None, None)] * len(reader)
    quality = reader.column("quality")
    tokens = pc.struct_field(quality, "tokens").to_pylist()
    hashes = pc.struct_field(quality, "tokens_hash").to_pylist()
    return list(zip(tokens, hashes, strict=True))


class RolePlayDataset:
    """Encoded samples of one split; each item is a dict of 1D token tensors and media features.

    The length plan (which turns fit) is made once when the dataset is built, from
    media headers and text only; items are encoded on access, in DataLoader workers. A
    DataLoader fetches a batch through `__getitems__`: the planned samples, which the
    collator encodes together.
    """

    def __init__(
        self,
        split: str,
        reader: SplitReader,
        formatter: ChatFormatter,
        encoder: ConversationEncoder,
    ):
        self.split = split
        self.reader = reader
        self.formatter = formatter
        self.encoder = encoder
        self.stats = SplitStats(split=split, rows=len(reader))
        self.plans: list[SamplePlan] = []
        self.rows: list[int] = []
        reasons: Counter[str] = Counter()
        ledger = LedgerPlanner(reader, formatter, encoder)
        for i in range(len(reader)):
            sample = self.sample(i)
            plan = ledger.plan(i, sample)
            if plan is None:
                plan = encoder.plan(sample)
            else:
                self.stats.planned_from_ledger += 1
            self.stats.media_dropped_samples += bool(sample.dropped_media)
            if plan.status == "skipped":
                self.stats.skipped += 1
                reasons[plan.reason] += 1
                continue
            self.stats.truncated += plan.status == "truncated"
            self.stats.tokens += plan.length
            self.plans.append(plan)
            self.rows.append(i)
        self.stats.used = len(self.rows)
        self.stats.skip_reasons = dict(reasons)
        if self.stats.truncated or self.stats.skipped:
            logger.info(
                "%s: %d of %d samples truncated from the left, %d skipped (%s)",
                split,
                self.stats.truncated,
                self.stats.rows,
                self.stats.skipped,
                dict(reasons),
            )

    def sample(self, row: int) -> ChatSample:
        """Return the ChatSample of split row `row`."""
        return self.formatter.format(self.reader.row(row))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        with one_intra_op_thread():
            return self.encoder.encode(self.sample(self.rows[index]), self.plans[index])

    def __getitems__(self, indices: list[int]) -> list[PlannedSample]:
        """Return the items at `indices` planned but not encoded: how a DataLoader fetches a
        batch, which the collator (given the encoder) then encodes in one processor call."""
        records = self.reader.rows([self.rows[i] for i in indices])
        return [
            PlannedSample(self.formatter.format(r), self.plans[i])
            for r, i in zip(records, indices, strict=True)
        ]

    def lengths(self) -> list[int]:
        """Return the planned token length of each item."""
        return [p.length for p in self.plans]

    def characters(self) -> list[str]:
        """Return the played character of each item, in item order (no media decoded)."""
        column = self.reader.column("character").to_pylist()
        return [((column[r] or {}).get("name") or "unknown") for r in self.rows]

    def record_ids(self) -> list[str]:
        """Return the record id of each item, in item order."""
        column = self.reader.column("id").to_pylist()
        return [column[r] for r in self.rows]

    def sources(self) -> list[str]:
        """Return the source name of each item, in item order."""
        column = self.reader.column("source").to_pylist()
        return [column[r] for r in self.rows]

    def select(self, indices: list[int]) -> None:
        """Keep the items at `indices` (repeats allowed: an oversampled mixture)."""
        self.rows = [self.rows[i] for i in indices]
        self.plans = [self.plans[i] for i in indices]
        self.stats.used = len(self.rows)
        self.stats.tokens = sum(p.length for p in self.plans)
