"""The canonical record: one Arrow row is one conversation sample (docs/ARCHITECTURE.md, "The canonical record")."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

ROLES = ("system", "user", "assistant")
SPLITS = ("train", "validation", "test")
IMAGE_PLACEHOLDER = "<image>"
AUDIO_PLACEHOLDER = "<audio>"

MEDIA_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
CHARACTER_TYPE = pa.struct(
    [
        ("name", pa.string()),
        ("profile", pa.string()),
        ("greeting", pa.string()),
        ("catchphrases", pa.list_(pa.string())),
        ("aliases", pa.list_(pa.string())),
    ]
)
MESSAGE_TYPE = pa.struct([("role", pa.string()), ("name", pa.string()), ("content", pa.string())])
OP_TYPE = pa.struct([("modality", pa.string()), ("op", pa.string()), ("params", pa.string())])
AUGMENTATION_TYPE = pa.struct(
    [
        ("recipe_hash", pa.string()),
        ("copy", pa.int32()),
        ("seed", pa.uint64()),
        ("ops", pa.list_(OP_TYPE)),
    ]
)
# What the quality stages found (pipeline/stages/quality): flag codes, a note per flag (which
# phrase, which file), the near-duplicate cluster, the token count under `tokens_hash`'s
# processor, and the conversation's language (ISO 639-1). Null when quality is off.
QUALITY_TYPE = pa.struct(
    [
        ("flags", pa.list_(pa.string())),
        ("notes", pa.list_(pa.string())),
        ("near_dup_cluster", pa.string()),
        ("tokens", pa.int64()),
        ("tokens_hash", pa.string()),
        ("language", pa.string()),
    ]
)

# `params` of an applied op is stored as canonical JSON text: ops have heterogeneous
# parameters and a struct column would need one union schema across every op.
# Every field is nullable on purpose: `datasets` only trusts the HF features embedded in
# the schema metadata when the Arrow schema matches the one those features generate
# (all nullable); non-null for id/source/messages/media is enforced by validation instead.
RECORD_FIELDS = [
    pa.field("id", pa.string()),
    pa.field("parent_id", pa.string()),
    pa.field("source", pa.string()),
    pa.field("split", pa.string()),
    pa.field("character", CHARACTER_TYPE),
    pa.field("messages", pa.list_(MESSAGE_TYPE)),
    pa.field("references", pa.list_(pa.string())),
    pa.field("images", pa.list_(MEDIA_TYPE)),
    pa.field("audios", pa.list_(MEDIA_TYPE)),
    pa.field("augmentation", AUGMENTATION_TYPE),
    pa.field("quality", QUALITY_TYPE),
]

# What each column (and nested field) means, for the cards. Kept beside the schema, not in
# Arrow field metadata, because the schema's bytes are part of every content id.
FIELD_DESCRIPTIONS = {
    "id": "Stable record id (hash of source key, or of parent id, recipe hash and copy).",
    "parent_id": "Id of the original an augmented variant derives from; null for originals.",
    "source": "Corpus name from the recipe.",
    "split": "train, validation or test.",
    "character": "The persona the assistant plays (null when the corpus names none).",
    "messages": "The turns, in order; the assistant speaks as the character.",
    "references": (
        "Further accepted replies to the last character turn (RoleBench's other `generated` "
        "replies), scored against with it in evaluation; null when the corpus gives none."
    ),
    "images": "Encoded image bytes, in <image> placeholder order.",
    "audios": "Encoded audio bytes, in <audio> placeholder order.",
    "augmentation": "What was applied to make this variant, replayable (null for originals).",
    "augmentation.ops": "Applied ops with their drawn parameters (canonical JSON).",
    "quality": "Quality findings: flags, near-duplicate cluster, token count, language.",
}

# Inside the pipeline a record also carries where it came from (file and line/index), so
# a record rejected by a later stage can still be quarantined with its source reference.
SOURCE_REF_FIELD = pa.field("source_ref", pa.string())


# Columns whose items are HF media features rather than plain structs.
MEDIA_FEATURES = {"images": "Image", "audios": "Audio"}


def hf_features() -> dict[str, Any]:
    """Return the HF `datasets` Features of the canonical record, as its JSON dict form.

    Derived from RECORD_FIELDS (no `datasets` import: it is slow and the store's readers do
    not need it), so a field added to the schema reaches the card and the loaders too.
    """
    return {
        f.name: (
            {"feature": {"_type": MEDIA_FEATURES[f.name]}, "_type": "List"}
            if f.name in MEDIA_FEATURES
            else _feature(f.type)
        )
        for f in RECORD_FIELDS
    }


def _feature(arrow_type: pa.DataType) -> Any:
    if pa.types.is_struct(arrow_type):
        return {
            arrow_type.field(i).name: _feature(arrow_type.field(i).type)
            for i in range(arrow_type.num_fields)
        }
    if pa.types.is_list(arrow_type):
        return {"feature": _feature(arrow_type.value_type), "_type": "List"}
    return {"dtype": str(arrow_type), "_type": "Value"}


def record_schema(with_source_ref: bool = False) -> pa.Schema:
    """Return the Arrow schema of the canonical record, with HF features in its metadata."""
    fields = list(RECORD_FIELDS)
    if with_source_ref:
        fields.append(SOURCE_REF_FIELD)
    metadata = {b"huggingface": json.dumps({"info": {"features": hf_features()}}).encode()}
    return pa.schema(fields, metadata=metadata)


RECORD_SCHEMA = record_schema()
WORK_SCHEMA = record_schema(with_source_ref=True)


def records_to_table(
    records: list[dict[str, Any]],
    schema: pa.Schema = WORK_SCHEMA,
    memory_pool: pa.MemoryPool | None = None,
) -> pa.Table:
    """Return an Arrow table of canonical record dicts; keys the schema lacks are ignored.
    Its buffers come from `memory_pool` (Arrow's default pool when None)."""
    # `Table.from_pydict` converts each column as `pa.array(column, type)` does, but takes
    # no pool; the arrays are the same either way.
    arrays = [
        pa.array([r.get(f.name) for r in records], type=f.type, memory_pool=memory_pool)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def count_placeholders(messages: list[dict[str, Any]], placeholder: str) -> int:
    """Return how many times `placeholder` occurs over all message contents."""
    return sum((m.get("content") or "").count(placeholder) for m in messages)
