"""The manifest of a dataset version: one typed, self-validating model (docs/ARCHITECTURE.md,
"The commit protocol").

The data job builds it once (`Manifest` with `version=None`), the committer stamps the
version, parent and cards (`Manifest.committed`), and every reader (cards, diff, verify,
show, gc, the trainer) reads attributes of the same model. On disk it is indented JSON
with the keys in the order of the fields below; creating that file exclusively is the commit.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer

from pipeline.record.ids import canonical_json

if TYPE_CHECKING:
    import pyarrow as pa

# Format 2: shards list their row-digest sidecars and `content_id` is over rows, not files
# (`content_id`); format 1 manifests stay readable and verify under their own rule
# (`shard_content_id`).
MANIFEST_FORMAT_V1 = "roleforge.manifest/1"
MANIFEST_FORMAT = "roleforge.manifest/2"
MANIFEST_DIGEST_KEY = "manifest_sha256"


def manifest_digest(data: dict[str, Any]) -> str:
    """Return the sha256 of a manifest's canonical JSON, its own digest field left out.

    It proves the file is as committed, not who wrote it: whoever edits a field and
    recomputes the digest is not detected.
    """
    body = {k: v for k, v in data.items() if k != MANIFEST_DIGEST_KEY}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


class ManifestInvalid(ValueError):
    """A manifest file is not a roleforge manifest (truncated, edited, another format)."""


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


InputKind = Literal["dialogue", "characters", "media", "held_out"]
# held_out: a `quality.decontaminate` file (source "quality").
INPUT_KINDS: tuple[InputKind, ...] = ("dialogue", "characters", "media", "held_out")


class _GrownPart(_Part):
    """A part that gained keys after the manifest format shipped: each is left out while
    None, so a manifest written before it keeps its digest when read and written again."""

    added_keys: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit_unset_added(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        for key in self.added_keys:
            if data.get(key) is None:
                data.pop(key, None)
        return data


class InputFile(_GrownPart):
    """One input file of a source, pinned by its hash (path relative to the recipe).

    `kind` is None in manifests written before media files were listed. A referenced media
    file that does not exist is pinned with sha256 and bytes None: if it appears later, the
    records that name it read differently.
    """

    source: str
    kind: InputKind | None = None
    path: str
    sha256: str | None
    bytes: int | None
    # An object on an object store: its last-modified time (seconds since the epoch), so a
    # rerun that finds the same size and time takes the sha256 as is (see provenance).
    modified: float | None = None

    added_keys = ("kind", "modified")


class CodeVersion(_GrownPart):
    """The code a version was built by. `source_sha256` (None in older manifests) is a
    digest of the data-path packages' files: it sees uncommitted edits and wheel installs,
    which the git commit does not."""

    roleforge: str | None = None
    git_commit: str | None = None
    source_sha256: str | None = None
    libraries: dict[str, str | None] = Field(default_factory=dict)

    added_keys = ("source_sha256",)

    def identity(self) -> dict[str, Any]:
        """Return the parts that decide output: all but the git commit, which is informational
        (a commit that touches only docs changes no record; the source digest covers code)."""
        return self.model_dump(exclude={"git_commit"})


class ReuseSummary(_Part):
    """Original records this version's run took from earlier work vs processed anew."""

    reused: int
    computed: int


class StageCount(_Part):
    """Records into and out of one stage; augment also counts the variants it added."""

    records_in: int = Field(alias="in")
    out: int
    dropped: int
    quarantined: int
    variants: int | None = None
    empty_variants: int | None = None

    @model_serializer(mode="wrap")
    def _only_counted(self, handler: Any) -> dict[str, Any]:
        # Stages without variants carry no variants keys (as the JSON always had it).
        return {k: v for k, v in handler(self).items() if v is not None}


class QuarantineSummary(_Part):
    path: str | None = None  # relative to the dataset's folder in the store
    reasons: dict[str, int] = Field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.reasons.values())


class AugmentOp(_Part):
    modality: str
    op: str
    configured: dict[str, Any]
    applied: int = 0
    skipped: int = 0


class AugmentationSummary(_Part):
    copies: int = 0
    ops: list[AugmentOp] = Field(default_factory=list)
    stats: dict[str, Any] = Field(default_factory=dict)


class DedupSummary(_Part):
    duplicates: int = 0


class ShardEntry(_GrownPart):
    """One shard file of the version (path relative to the version folder) and, from
    manifest format 2 on, its row-digest sidecar (`store/row_digest.py`) and that file's
    sha256 (None, and absent on disk, in format 1)."""

    path: str
    split: str
    rows: int
    bytes: int
    sha256: str
    row_digests: str | None = None
    row_digests_sha256: str | None = None

    added_keys = ("row_digests", "row_digests_sha256")


class CardEntry(_Part):
    path: str
    sha256: str


class Manifest(_Part):
    """Everything a version is: inputs, recipe, code, counts, shards, cards, content id."""

    format: Literal["roleforge.manifest/1", "roleforge.manifest/2"] = MANIFEST_FORMAT
    name: str
    version: int | None = None  # None until the committer claims a number
    parent_version: int | None = None
    run_id: str
    created_at: str
    inputs: list[InputFile]
    recipe: dict[str, Any]  # the resolved recipe, as JSON (store code must not import it)
    recipe_hash: str
    code_version: CodeVersion
    counts: dict[str, StageCount]
    # None (and absent on disk) in manifests written before runs counted reuse.
    reuse: ReuseSummary | None = None
    quarantine: QuarantineSummary
    augmentation: AugmentationSummary
    dedup: DedupSummary
    splits: dict[str, int]  # rows per split, variants included
    originals: dict[str, int]  # original records per split
    # Groups (conversations or characters) per split; absent from manifests made before
    # the split was cut by count.
    split_groups: dict[str, int] | None = None
    # Per source, fields of the corpus files that no column carries, with record counts.
    unmapped_fields: dict[str, dict[str, int]] = Field(default_factory=dict)
    shards: list[ShardEntry]
    # The quality stages of the record pass (stage -> in, out, quarantined, their stats) over
    # the records it computed; None when the recipe has no `quality:`.
    quality: dict[str, dict[str, int]] | None = None
    cards: list[CardEntry] = Field(default_factory=list)
    schema_sha256: str
    content_id: str
    # sha256 of the canonical JSON of every other field, set last at commit (`sealed`), so
    # `verify` and every reader see an edit to counts, splits, recipe or shard entries.
    # None in manifests written before roleforge recorded it.
    manifest_sha256: str | None = None

    @property
    def number(self) -> int:
        """Return the version number; raise if the manifest is not committed yet."""
        if self.version is None:
            raise ValueError(f"manifest of {self.name} has no version yet")
        return self.version

    def committed(self, version: int, parent_version: int | None) -> Manifest:
        """Return this manifest stamped with the version number claimed and its parent."""
        return self.model_copy(update={"version": version, "parent_version": parent_version})

    def with_cards(self, cards: list[CardEntry]) -> Manifest:
        """Return this manifest listing the card files written for it."""
        return self.model_copy(update={"cards": cards})

    def shards_of(self, split: str | None = None) -> list[ShardEntry]:
        return [s for s in self.shards if split is None or s.split == split]

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest as the JSON object written to disk."""
        data = self.model_dump(mode="json", by_alias=True)
        for optional in ("split_groups", "reuse", "quality", MANIFEST_DIGEST_KEY):
            if data[optional] is None:
                del data[optional]
        return data

    def sealed(self) -> Manifest:
        """Return this manifest with its digest over every other field recorded."""
        unsealed = self.model_copy(update={MANIFEST_DIGEST_KEY: None})
        return self.model_copy(update={MANIFEST_DIGEST_KEY: manifest_digest(unsealed.to_dict())})

    def digest_matches(self) -> bool | None:
        """Return whether the recorded digest matches the fields (None: none recorded)."""
        if self.manifest_sha256 is None:
            return None
        return manifest_digest(self.to_dict()) == self.manifest_sha256

    def to_json_bytes(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        return cls.model_validate_json(text)

    @classmethod
    def read(cls, path: str, fs: Any = None) -> Manifest:
        """Return the manifest in file `path` (on store filesystem `fs`, local when None);
        raise ManifestInvalid naming the file and the first problem (FileNotFoundError
        passes through)."""
        if fs is None:
            with open(path, "rb") as f:
                data = f.read()
        else:
            data = fs.read_bytes(path)
        try:
            return cls.from_json(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "<manifest>"
            shown = fs.uri(path) if fs is not None else path
            raise ManifestInvalid(
                f"{shown}: not a valid manifest: {where}: {first['msg']}"
            ) from None


def schema_sha256(schema: pa.Schema) -> str:
    """Return the sha256 of the schema's canonical Arrow IPC serialization (with metadata)."""
    return hashlib.sha256(schema.serialize().to_pybytes()).hexdigest()


# Rows of one slice when `content_id` joins its (id, digest) pairs into text.
CONTENT_ID_SLICE = 1 << 20


def content_id(schema_hash: str, rows: list[pa.Table]) -> str:
    """Return the content id (manifest format 2): sha256 over the schema hash and every
    (id, row digest) pair sorted by id, from the (id, row_sha256) tables of the shards in
    any order. How rows fall into shards, how many shards there are and which of them
    were reused do not change it.

    The hashed bytes are `canonical_json({"schema": ..., "rows": [[id, digest], ...]})`;
    they are built in Arrow, not as a Python list of pairs (~0.6 s of the driver at
    300,000 rows), whenever no id or digest needs a JSON escape (`_plain`)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.concat_tables(rows) if rows else None
    if table is None or table.num_rows == 0:
        payload = canonical_json({"schema": schema_hash, "rows": []})
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()
    table = table.take(pc.sort_indices(table["id"]))
    ids, digests = table["id"].combine_chunks(), table["row_sha256"].combine_chunks()
    if not (_plain(ids) and _plain(digests)):
        pairs = [list(p) for p in zip(ids.to_pylist(), digests.to_pylist(), strict=True)]
        payload = canonical_json({"schema": schema_hash, "rows": pairs})
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()
    digest = hashlib.sha256(b'{"rows":[')
    # In slices, so a slice's joined text stays far below a string array's 2 GiB; every
    # pair ends in "," but the last.
    step = CONTENT_ID_SLICE
    for start in range(0, len(ids), step):
        joined = pc.binary_join_element_wise(
            '["', ids.slice(start, step), '","', digests.slice(start, step), '"],', ""
        )
        width = "<i8" if pa.types.is_large_string(joined.type) else "<i4"
        offsets = np.frombuffer(joined.buffers()[1], width)[joined.offset :]
        first, end = int(offsets[0]), int(offsets[len(joined)])
        last = start + step >= len(ids)
        digest.update(memoryview(joined.buffers()[2])[first : end - 1 if last else end])
    digest.update(('],"schema":' + canonical_json(schema_hash) + "}").encode("utf-8"))
    return digest.hexdigest()


def _plain(strings: pa.Array) -> bool:
    """Return whether every value is non-null and JSON-encodes as itself in quotes (no
    quote, backslash or control character: `canonical_json` keeps non-ASCII as is)."""
    import pyarrow.compute as pc

    if strings.null_count:
        return False
    return not pc.any(pc.match_substring_regex(strings, r'["\\\x00-\x1f]')).as_py()


def shard_content_id(schema_hash: str, shard_hashes: list[str]) -> str:
    """Return the content id of a format 1 manifest: sha256 over the schema hash and the
    sorted shard file hashes (it changes with the layout; kept so old versions verify)."""
    payload = canonical_json({"schema": schema_hash, "shards": sorted(shard_hashes)})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
