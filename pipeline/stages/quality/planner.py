"""The driver's near-duplicate plan: LSH buckets joined as Arrow tables, pairs verified,
clusters by union-find, and for `keep_one` which records go.

Grouping runs on one thread (`use_threads=False`): Acero's threaded group-by raised
"thread index 11 is out of range [0, 11)" here in a process that had run data jobs before
(the driver plans after Ray started; seen running tests/pipeline/execution then this
planner's tests in one pytest).

No O(n^2) step: band keys are exploded into one (modality, band, key, row) table and joined;
only rows sharing a bucket meet. Text: a bucket of at most BUCKET_PAIRS_MAX members yields
all its pairs (a self-join); a larger one links each member to the bucket's first row (a
star), which keeps a huge bucket of one template linear at the cost of verifying each
member against one representative only. Image and audio hashes: identical hashes are
linked to their first row, then each distinct hash probes its bands' keys and every
one-bit flip of them against the others' keys (multi-index hashing), so every pair within
the Hamming distance meets in buckets of ~n / 2^12 rows. Every candidate is verified on its
signature (estimated Jaccard for text, Hamming distance for hashes) before it counts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.stages.quality.config import NearDupConfig

BUCKET_PAIRS_MAX = 32
PAIR_SCHEMA = pa.schema(
    [
        ("a", pa.string()),
        ("b", pa.string()),
        ("modality", pa.string()),
        ("similarity", pa.float64()),
    ]
)


@dataclass(frozen=True)
class NearDupPlan:
    """What the near-duplicate stage applies, per record id.

    `clusters`: record id -> cluster id (the cluster's smallest id), for every record in a
    cluster of two or more; `drop`: record id -> the kept id (keep_one only); `pairs`: every
    verified pair (a < b) with its modality and similarity, cross-modality ones included;
    `greetings`: record id -> how many records share its opening character turn;
    `unhashed`: record id -> how many of its clips have no audio hash (too short, silent).
    """

    clusters: dict[str, str] = field(default_factory=dict)
    drop: dict[str, str] = field(default_factory=dict)
    pairs: pa.Table = field(default_factory=PAIR_SCHEMA.empty_table)
    greetings: dict[str, int] = field(default_factory=dict)
    unhashed: dict[str, int] = field(default_factory=dict)

    def group_key(self, record_id: str) -> str | None:
        """Return the split group of a clustered record (None: its own conversation)."""
        cluster = self.clusters.get(record_id)
        return None if cluster is None else "near_dup:" + cluster


def _exploded(signatures: pa.Table, rows: np.ndarray) -> pa.Table:
    """Return (modality, band, key, row) for the band keys of the given signature rows."""
    picked = signatures.take(pa.array(rows, pa.int64()))
    bands = picked["bands"].combine_chunks()
    parents = pc.list_parent_indices(bands)
    offsets = bands.offsets.to_numpy()[:-1]
    position = np.arange(len(parents)) - offsets[parents.to_numpy()]
    return pa.table(
        {
            "modality": picked["modality"].combine_chunks().take(parents),
            "band": pa.array(position, pa.int32()),
            "key": pc.list_flatten(bands),
            "row": pa.array(rows, pa.int64()).take(parents),
            "of": pc.list_value_length(bands).take(parents),  # bands in that row
        }
    )


def _pairs_table(left: Any, right: Any) -> pa.Table:
    return pa.table({"row": pa.array(left, pa.int64()), "other": pa.array(right, pa.int64())})


_KEYS = ["modality", "band", "key"]
# Every group_by here runs on one thread: the threaded one raised "ArrowIndexError: thread
# index 11 is out of range" in a process where Ray had started (seen in the test suite), and
# the planner's tables are small. One thread also keeps the output order deterministic.


def _bucket_pairs(exploded: pa.Table) -> pa.Table:
    """Return pairs sharing a bucket: all pairs of small buckets, a star in large ones."""
    buckets = exploded.group_by(_KEYS, use_threads=False).aggregate(
        [("row", "min"), ("row", "count")]
    )
    buckets = buckets.filter(pc.greater(buckets["row_count"], 1))
    members = exploded.join(buckets, _KEYS, join_type="inner")
    small = members.filter(pc.less_equal(members["row_count"], BUCKET_PAIRS_MAX))
    joined = small.select([*_KEYS, "row"]).join(
        small.select([*_KEYS, "row"]).rename_columns([*_KEYS, "other"]), _KEYS
    )
    pairs_small = joined.filter(pc.less(joined["row"], joined["other"])).select(["row", "other"])
    large = members.filter(pc.greater(members["row_count"], BUCKET_PAIRS_MAX))
    star = large.filter(pc.not_equal(large["row"], large["row_min"]))
    return pa.concat_tables([pairs_small, _pairs_table(star["row_min"], star["row"])])


def _probe_pairs(signatures: pa.Table, rows: np.ndarray) -> pa.Table:
    """Return candidate pairs of hash rows: identical hashes to their first row, then
    distinct hashes whose band keys agree up to one bit."""
    if len(rows) == 0:
        return _pairs_table([], [])
    picked = pa.table(
        {
            "modality": signatures["modality"].take(pa.array(rows, pa.int64())),
            "signature": signatures["signature"].take(pa.array(rows, pa.int64())),
            "row": pa.array(rows, pa.int64()),
        }
    )
    groups = picked.group_by(["modality", "signature"], use_threads=False).aggregate(
        [("row", "min")]
    )
    same = picked.join(groups, ["modality", "signature"])
    same = same.filter(pc.not_equal(same["row"], same["row_min"]))
    exact = _exploded(signatures, np.sort(groups["row_min"].to_numpy()))
    keys = exact["key"].to_numpy()
    band = exact["band"].to_numpy()
    modality = exact["modality"]
    # Band i of n covers bits round(i * 64 / n) .. round((i + 1) * 64 / n), as hash_bands cuts.
    n = exact["of"].to_numpy()
    widths = (np.round((band + 1) * 64 / n) - np.round(band * 64 / n)).astype(np.int64)
    exact = exact.drop_columns(["of"])
    probes = [exact]
    for bit in range(int(widths.max()) if len(widths) else 0):
        at = np.nonzero(bit < widths)[0]
        probes.append(
            pa.table(
                {
                    "modality": modality.take(pa.array(at)),
                    "band": pa.array(band[at], pa.int32()),
                    "key": pa.array(keys[at] ^ np.uint64(1 << bit), pa.uint64()),
                    "row": exact["row"].take(pa.array(at)),
                }
            )
        )
    probe = pa.concat_tables(probes)
    met = probe.join(exact.rename_columns([*_KEYS, "other"]), _KEYS)
    met = met.filter(pc.less(met["row"], met["other"]))
    return pa.concat_tables(
        [_pairs_table(same["row_min"], same["row"]), met.select(["row", "other"])]
    )


def candidate_pairs(signatures: pa.Table) -> pa.Table:
    """Return (left, right) row numbers of `signatures` that share an LSH bucket, deduplicated."""
    modality = signatures["modality"].to_numpy(zero_copy_only=False)
    text = np.nonzero(modality == "text")[0]
    hashes = np.nonzero((modality == "image") | (modality == "audio"))[0]
    pairs = pa.concat_tables(
        [
            _bucket_pairs(_exploded(signatures, text).drop_columns(["of"])),
            _probe_pairs(signatures, hashes),
        ]
    )
    return (
        pairs.group_by(["row", "other"], use_threads=False)
        .aggregate([])
        .rename_columns(["left", "right"])
    )


def verified_pairs(signatures: pa.Table, config: NearDupConfig) -> pa.Table:
    """Return the candidate pairs between different records whose signatures are close."""
    pairs = candidate_pairs(signatures)
    left, right = pairs["left"].to_numpy(), pairs["right"].to_numpy()
    ids = signatures["id"].combine_chunks()
    modality = signatures["modality"].combine_chunks()
    keep = pc.not_equal(ids.take(left), ids.take(right)).to_numpy(zero_copy_only=False)
    keep &= pc.not_equal(modality.take(left), "greeting").to_numpy(zero_copy_only=False)
    left, right = left[keep], right[keep]
    sims = np.zeros(len(left))
    mods = modality.take(left).to_pylist()
    sig = signatures["signature"].combine_chunks()
    limits = {"image": config.image_distance, "audio": config.audio_distance}
    accept = np.zeros(len(left), dtype=bool)
    for m in sorted(set(mods)):
        at = np.array([x == m for x in mods])
        a, b = _matrix(sig, left[at], m), _matrix(sig, right[at], m)
        if m == "text":
            sims[at] = (a == b).mean(axis=1)
            accept[at] = sims[at] >= config.threshold
        else:
            distance = np.unpackbits((a ^ b).view(np.uint8), axis=1).sum(axis=1)
            sims[at] = 1 - distance / 64
            accept[at] = distance <= limits[m]
    a_ids, b_ids = ids.take(left[accept]), ids.take(right[accept])
    first = pc.if_else(pc.less(a_ids, b_ids), a_ids, b_ids)
    second = pc.if_else(pc.less(a_ids, b_ids), b_ids, a_ids)
    found = pa.table(
        {
            "a": first,
            "b": second,
            "modality": modality.take(left[accept]),
            "similarity": pa.array(sims[accept], pa.float64()),
        }
    )
    # Two images of one pair of records may both match: keep the closest per modality.
    best = found.group_by(["a", "b", "modality"], use_threads=False).aggregate(
        [("similarity", "max")]
    )
    best = best.rename_columns(PAIR_SCHEMA.names).select(PAIR_SCHEMA.names)
    return best.sort_by([("a", "ascending"), ("b", "ascending"), ("modality", "ascending")])


def _matrix(sig: pa.Array, rows: np.ndarray, modality: str) -> np.ndarray:
    raw = b"".join(sig.take(pa.array(rows, pa.int64())).to_pylist())
    dtype = np.dtype("<u4") if modality == "text" else np.dtype(">u8")
    return np.frombuffer(raw, dtype=dtype).reshape(len(rows), -1)


def clusters_of(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Return record id -> its cluster's smallest id, by union-find over `pairs`."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:  # the smaller id becomes the root, so roots are cluster minima
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in parent}


def plan_near_duplicates(signatures: pa.Table, config: NearDupConfig) -> NearDupPlan:
    """Return the near-duplicate plan of a run from every record's signature rows.

    Deterministic whatever the order the tasks returned their rows in: cluster ids are the
    smallest member id and the kept record of `keep_one` is that same smallest id.
    """
    signatures = signatures.sort_by(
        [("id", "ascending"), ("modality", "ascending"), ("item", "ascending")]
    )
    pairs = verified_pairs(signatures, config)
    grouped = {"text", "image", "audio"} if config.group_media else {"text"}
    link = [
        (a, b)
        for a, b, m in zip(*(pairs[c].to_pylist() for c in ("a", "b", "modality")), strict=True)
        if m in grouped
    ]
    clusters = clusters_of(link)
    drop = {}
    if config.action == "keep_one":
        drop = {rid: cluster for rid, cluster in clusters.items() if rid != cluster}
    unhashed = signatures.filter(pc.equal(signatures["modality"], "audio_unhashed"))
    counts = Counter(unhashed["id"].to_pylist())
    return NearDupPlan(clusters, drop, pairs, _greetings(signatures, config), dict(counts))


def _greetings(signatures: pa.Table, config: NearDupConfig) -> dict[str, int]:
    rows = signatures.filter(pc.equal(signatures["modality"], "greeting"))
    keyed = pa.table({"id": rows["id"], "key": pc.list_element(rows["bands"], 0)})
    counts = keyed.group_by("key", use_threads=False).aggregate([("id", "count_distinct")])
    common = counts.filter(
        pc.greater_equal(counts["id_count_distinct"], config.greeting_min_records)
    )
    shared = keyed.join(common, "key", join_type="inner")
    return dict(zip(shared["id"].to_pylist(), shared["id_count_distinct"].to_pylist(), strict=True))


def with_media_pairs(plan: NearDupPlan, media: NearDupPlan) -> NearDupPlan:
    """Return `plan` (made over text and greeting rows only) with the media pairs and the
    unhashed clips of `media` (made over image and audio rows after the record pass), as one
    plan over all the rows would have them: pairs are found per modality, and media pairs
    join no cluster unless `group_media` (then the ingest signs media and this is not used).
    """
    pairs = pa.concat_tables([plan.pairs, media.pairs]).sort_by(
        [("a", "ascending"), ("b", "ascending"), ("modality", "ascending")]
    )
    return NearDupPlan(plan.clusters, plan.drop, pairs, plan.greetings, dict(media.unhashed))
