"""The per-record cache under `<store>/<name>/cache/`: what the record pass made of each
record, kept so that a rerun computes only the records whose key it has not seen.

- `parts/<sha256>.arrow`: Arrow IPC files of record-pass outputs (originals followed by
  their variants), written by the tasks; the name is the sha256 of the keys of the records
  they hold, so a retried task rewrites the same file and two runs never collide.
- `index/<run_id>.parquet`: what one run added, one row per output row (key, where it lies,
  the recipe hash it was made under, the record's augmentation stats) or per rejected
  record (key and its quarantine entry), written once the run's parts are complete.

- `pins.json`: the input files' sha256 by their stat (`provenance.PinCache`).

A version's shards are written from these parts; nothing in a version refers to them, so
deleting the folder is always safe (the next run recomputes every record once). `roleforge
gc` prunes it to what the newest versions were made of (`prune`): index rows of other
records go (compacted into one index file), then every part no index row points at. A part
or index file that does not read costs a recomputation of its records, never a wrong row.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.store.parquet import read_parquet

log = logging.getLogger(__name__)

CACHE_INDEX_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("run_id", pa.string()),
        ("recipe_hash", pa.string()),
        ("id", pa.string()),
        ("parent_id", pa.string()),
        ("split", pa.string()),
        ("part", pa.string()),  # file name under parts/; null for a rejected record
        ("row", pa.int64()),
        ("nbytes", pa.int64()),
        ("stats", pa.string()),  # AugmentStats.to_dict() JSON, on an augmented original
        ("rejection", pa.string()),  # QuarantineEntry.to_dict() JSON, for a rejected record
        # The row's digest (store/row_digest.py) as the run's shard writer computed it;
        # null in index files written before it was kept.
        ("row_sha256", pa.string()),
        # On an original's (or rejected record's) row, when the record pass signed its media
        # (quality.near_dup without group_media): its media hashes as JSON, [[modality,
        # item, 16 hex digits or null], ...] ("[]": none), so a hit's media pairs are planned
        # without decoding it again (pipeline/execution/media_pairs.py); null where not kept
        # (a run that needs them recomputes the record). A string: Acero joins no nested type.
        ("media", pa.string()),
        # The sha256 of the media flags the shard writer added to the row (`flags_digest`
        # of the near-duplicate stage): `row_sha256` holds only for those flags.
        ("media_flags", pa.string()),
    ]
)


class RecordCache:
    """One dataset's record cache: its part folder and its index files."""

    def __init__(self, dataset_root: str, fs: Any):
        self.folder = os.path.join(dataset_root, "cache")
        self.fs = fs
        self.parts_dir = os.path.join(self.folder, "parts")
        self.index_dir = os.path.join(self.folder, "index")
        # Ingest memos: what a source that is one JSON lines file held when last read.
        self.memo_dir = os.path.join(self.folder, "ingest")

    def part_path(self, name: str) -> str:
        return os.path.join(self.parts_dir, name)

    def index(self) -> pa.Table:
        """Return every readable index row once (index files that do not read are skipped;
        a row in two files, as after a prune that stopped before removing what it
        compacted, counts once)."""
        tables = [t for _, t in self._index_files() if t is not None]
        if not tables:
            return CACHE_INDEX_SCHEMA.empty_table()
        return _unique_rows(pa.concat_tables(tables)) if len(tables) > 1 else tables[0]

    def _index_files(self) -> list[tuple[str, pa.Table | None]]:
        """Return (path, rows) of every index file, rows None for one that does not read."""
        out = []
        for name in self.fs.listdir(self.index_dir):
            if not name.endswith(".parquet"):
                continue  # a temp file of a writer that crashed
            path = os.path.join(self.index_dir, name)
            try:
                table = read_parquet(self.fs.read_bytes(path))
                out.append((path, _with_every_column(table)))
            except FileNotFoundError:
                continue  # removed by a prune since it was listed
            except (OSError, KeyError, ValueError, pa.ArrowException) as exc:
                log.warning("cache index %s is unreadable, skipped: %s", name, exc)
                out.append((path, None))
        return out

    def lookup(
        self, todo: pa.Table, recipe_hash: str, need_media: bool = False
    ) -> tuple[pa.Table, pa.Table, pa.Table]:
        """Split `todo` (rows with a cache key, `ckey`) by this cache: return (misses, hit
        index rows made under `recipe_hash`, hit index rows made under another recipe,
        which must be rebased). Of a key's rows, the newest run's under this recipe win,
        else the newest run's at all; a part that has gone makes its keys misses, and with
        `need_media` so does a record whose media signatures were not kept."""
        index = self.index()
        empty = index.schema.empty_table()
        if index.num_rows == 0 or todo.num_rows == 0:
            return todo, empty, empty
        index = index.filter(pc.is_in(index["key"], value_set=todo["ckey"].combine_chunks()))
        if index.num_rows == 0:
            return todo, empty, empty
        # One run's rows per key: the newest run under this recipe, else the newest at all.
        same = pc.equal(index["recipe_hash"], recipe_hash)
        flagged = index.append_column("same", pc.cast(same, pa.int8()))
        best = flagged.group_by("key", use_threads=False).aggregate([("same", "max")])
        flagged = flagged.join(best, "key")
        flagged = flagged.filter(pc.equal(flagged["same"], flagged["same_max"]))
        newest = flagged.group_by("key", use_threads=False).aggregate([("run_id", "max")])
        chosen = flagged.join(newest, "key")
        chosen = chosen.filter(pc.equal(chosen["run_id"], chosen["run_id_max"]))
        chosen = chosen.drop_columns(["same_max", "run_id_max"])
        # A part that has gone (pruned by hand) makes its keys misses, not errors.
        parts = [p for p in chosen["part"].unique().to_pylist() if p is not None]
        missing = [p for p in parts if not self.fs.exists(self.part_path(p))]
        if missing:
            log.warning(
                "cache: %d part file(s) missing; their records are recomputed", len(missing)
            )
            chosen = chosen.filter(
                pc.invert(
                    pc.fill_null(pc.is_in(chosen["part"], value_set=pa.array(missing)), False)
                )
            )
        if need_media:
            unsigned = pc.and_(pc.is_null(chosen["parent_id"]), pc.is_null(chosen["media"]))
            lacking = chosen.filter(unsigned)["key"].unique()
            if len(lacking):
                chosen = chosen.filter(pc.invert(pc.is_in(chosen["key"], value_set=lacking)))
        hit_keys = chosen["key"].unique()
        misses = todo.filter(pc.invert(pc.is_in(todo["ckey"], value_set=hit_keys)))
        current = pc.equal(chosen["same"], 1)
        chosen = chosen.drop_columns(["same"])
        return misses, chosen.filter(current), chosen.filter(pc.invert(current))

    @staticmethod
    def index_rows(table: pa.Table, run_id: str, recipe_hash: str) -> pa.Table:
        """Return `table`'s columns as CACHE_INDEX_SCHEMA rows stamped with `run_id` and
        `recipe_hash`; columns it lacks are null."""
        n = table.num_rows
        stamp = {"run_id": run_id, "recipe_hash": recipe_hash}
        columns = {}
        for f in CACHE_INDEX_SCHEMA:
            if f.name in stamp:
                columns[f.name] = pa.array([stamp[f.name]] * n, f.type)
            elif f.name in table.column_names:
                columns[f.name] = table[f.name]
            else:
                columns[f.name] = pa.nulls(n, f.type)
        return pa.table(columns, schema=CACHE_INDEX_SCHEMA)

    def prune(self, live_ids: pa.Array, min_age_s: float, now: float, dry_run: bool) -> CachePrune:
        """Keep what made the records of `live_ids` (ids of rows and of rejected records);
        return what else may go, for the caller to remove in that order. Index files changed
        less than `min_age_s` ago (a run may still use them) are kept whole, with every part
        they point at.

        The index rows kept from older files are written to one new index file (here,
        unless `dry_run`) before the files they came from are listed to go, and parts are
        listed last: removed in order, an interrupted prune leaves rows twice (read once),
        never lost, and no index row ever points at a removed part.
        """
        result = CachePrune()
        files = self._index_files()
        young_paths = {p for p, _ in files if now - self._mtime(p) < min_age_s}
        young = [t for p, t in files if p in young_paths and t is not None]
        old = [(p, t) for p, t in files if p not in young_paths]
        readable = [t for _, t in old if t is not None]
        rows = _unique_rows(pa.concat_tables(readable)) if readable else None
        kept = CACHE_INDEX_SCHEMA.empty_table() if rows is None else _rows_of(rows, live_ids)
        dropped = (rows.num_rows if rows is not None else 0) - kept.num_rows
        if len(old) > 1 or dropped or len(readable) < len(old):
            if kept.num_rows and not dry_run:
                self._write_index(_compacted_name([p for p, _ in old]), kept)
            result.removable.extend(p for p, _ in old)
        result.removable.extend(self._dead_memos(live_ids, min_age_s, now))
        referenced = set(kept["part"].drop_null().to_pylist())
        for t in young:
            referenced.update(t["part"].drop_null().to_pylist())
        for name in self.fs.listdir(self.parts_dir):
            path = self.part_path(name)
            if name not in referenced and now - self._mtime(path) >= min_age_s:
                result.removable.append(path)
        # The pins go with the rest when the cache is emptied (no version's records live).
        pins = os.path.join(self.folder, "pins.json")
        if not len(live_ids) and self.fs.exists(pins) and now - self._mtime(pins) >= min_age_s:
            result.removable.append(pins)
        result.kept_rows = kept.num_rows + sum(t.num_rows for t in young)
        return result

    def _dead_memos(self, live_ids: pa.Array, min_age_s: float, now: float) -> list[str]:
        """Return the ingest memos (`ingest/`, pipeline/execution/ingest_memo.py) that
        hold none of `live_ids` and changed at least `min_age_s` ago."""
        dead = []
        for name in self.fs.listdir(self.memo_dir):
            path = os.path.join(self.memo_dir, name)
            if not name.endswith(".parquet") or now - self._mtime(path) < min_age_s:
                continue
            try:
                ids = read_parquet(self.fs.read_bytes(path), columns=["id"])["id"]
            except (OSError, KeyError, pa.ArrowException):
                dead.append(path)  # unreadable: the next run reads its file whole anyway
                continue
            if not pc.any(pc.is_in(ids, value_set=live_ids)).as_py():
                dead.append(path)
        return dead

    def _mtime(self, path: str) -> float:
        try:
            return self.fs.mtime(path)
        except FileNotFoundError:
            return 0.0

    def _write_index(self, name: str, rows: pa.Table) -> None:
        import pyarrow.parquet as pq

        buffer = io.BytesIO()
        pq.write_table(rows.select(CACHE_INDEX_SCHEMA.names).cast(CACHE_INDEX_SCHEMA), buffer)
        self.fs.write_bytes(os.path.join(self.index_dir, name), buffer.getvalue())

    def add(self, run_id: str, rows: pa.Table) -> None:
        """Publish the index rows of one run (whole or not at all)."""

        if rows.num_rows == 0:
            return
        self._write_index(f"{run_id}.parquet", rows)


@dataclass
class CachePrune:
    """What pruning the cache keeps, and what may go (index files, then parts), in order."""

    removable: list[str] = field(default_factory=list)
    kept_rows: int = 0


def _with_every_column(table: pa.Table) -> pa.Table:
    """Return index rows as CACHE_INDEX_SCHEMA, a column a file was written without null."""
    for f in CACHE_INDEX_SCHEMA:
        if f.name not in table.column_names:
            table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    return table.select(CACHE_INDEX_SCHEMA.names).cast(CACHE_INDEX_SCHEMA)


def _unique_rows(table: pa.Table) -> pa.Table:
    """Return `table` with each (run, key, id) once, the first of each kept."""
    numbered = table.append_column("_n", pa.array(range(table.num_rows), pa.int64()))
    first = numbered.group_by(["run_id", "key", "id"], use_threads=False).aggregate([("_n", "min")])
    return table.take(pc.sort_indices(first["_n_min"]))


def _rows_of(rows: pa.Table, live_ids: pa.Array) -> pa.Table:
    """Return the rows of every (run, key) that made one of `live_ids`.

    An id may lie under several keys: an original recomputed under a new seed or code
    keeps its id. Its newest run's rows are the ones a version built since then used, so
    each id keeps only the (run, key) of its newest run, and with it that key's other rows
    (an original stays with its variants, as the record pass wrote them together).
    """
    live = rows.filter(pc.is_in(rows["id"], value_set=live_ids))
    newest = live.group_by("id", use_threads=False).aggregate([("run_id", "max")])
    made = live.join(newest, "id")
    made = made.filter(pc.equal(made["run_id"], made["run_id_max"]))
    groups = made.select(["run_id", "key"]).group_by(["run_id", "key"]).aggregate([])
    return rows.join(groups, ["run_id", "key"], join_type="inner").select(CACHE_INDEX_SCHEMA.names)


def _compacted_name(paths: list[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(paths)).encode()).hexdigest()[:16]
    return f"compacted-{digest}.parquet"
