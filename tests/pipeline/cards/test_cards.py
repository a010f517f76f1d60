"""Data cards: the Hub README loads through `datasets` with typed media, Croissant validates."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import wave
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.cards.composition import compute_composition
from pipeline.cards.croissant import CROISSANT_CONTEXT
from pipeline.cards.facts import resolve_license
from pipeline.cards.hub_header import size_category
from pipeline.cards.languages import count_scripts, detect_languages
from pipeline.cards.markdown import md_cell
from pipeline.cards.write import README, write_cards
from pipeline.record.ids import file_sha256
from pipeline.record.schema import RECORD_SCHEMA, records_to_table
from pipeline.store.manifest import Manifest, ShardEntry

PIPE_NAME = "Bob | the\nBuilder"


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def _wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x01" * 80)
    return buf.getvalue()


def _character(name):
    if name is None:
        return None
    return {"name": name, "profile": "A persona.", "greeting": "Hi!", "catchphrases": ["yo"]}


def _record(rid, split, name, user, *, images=0, audios=0, parent=None, turns=1):
    png, wav = _png(), _wav()
    messages = [{"role": "system", "name": None, "content": "Stay in character."}]
    for _ in range(turns):
        messages.append({"role": "user", "name": "u", "content": user})
        messages.append({"role": "assistant", "name": name, "content": "Indeed, friend."})
    augmentation = None
    if parent:
        augmentation = {
            "recipe_hash": "r" * 64,
            "copy": 0,
            "seed": 2**63 + 5,
            "ops": [{"modality": "text", "op": "KeyboardAug", "params": '{"p":0.5}'}],
        }
    return {
        "id": rid,
        "parent_id": parent,
        "source": "sample",
        "split": split,
        "character": _character(name),
        "messages": messages,
        "images": [{"bytes": png, "path": f"images/{rid}.png"}] * images,
        "audios": [{"bytes": wav, "path": f"audio/{rid}.wav"}] * audios,
        "augmentation": augmentation,
    }


RECORDS = {
    "train-00000-of-00002": [
        _record("a1", "train", "Alice", "Look <image>", images=1),
        _record("a1v", "train", "Alice", "Lok <image>", images=1, parent="a1"),
        _record("b1", "train", PIPE_NAME, "听 <audio> 你好世界，今天天气很好", audios=1, turns=3),
    ],
    "train-00001-of-00002": [
        _record("n1", "train", None, "Hello there, how are you today?"),
    ],
    "validation-00000-of-00001": [
        _record("a2", "validation", "Alice", "See <image> and <audio>", images=1, audios=1),
    ],
    "test-00000-of-00001": [
        _record("b2", "test", PIPE_NAME, "Good evening, builder."),
    ],
}


def _write_shards(folder, fmt="arrow"):
    shards = []
    for stem, records in RECORDS.items():
        table = records_to_table(records, RECORD_SCHEMA)
        path = f"{stem}.{fmt}"
        full = os.path.join(folder, path)
        if fmt == "arrow":
            with pa.OSFile(full, "wb") as sink, pa.ipc.new_stream(sink, RECORD_SCHEMA) as writer:
                writer.write_table(table)
        else:
            pq.write_table(table, full)
        shards.append(
            ShardEntry(
                path=path,
                split=stem.split("-")[0],
                rows=len(records),
                bytes=os.path.getsize(full),
                sha256=file_sha256(full),
            )
        )
    return shards


def make_manifest(shards, version=2, parent=1, recipe_license=None, **recipe):
    return Manifest.model_validate(
        {
            "format": "roleforge.manifest/1",
            "name": "demo-roleplay",
            "version": version,
            "parent_version": parent,
            "run_id": "20250102T030405Z-abcd",
            "created_at": "2025-01-02T03:04:05Z",
            "inputs": [
                {
                    "source": "sample",
                    "kind": "dialogue",
                    "path": "/home/someone/corpus/dialogues.jsonl",
                    "sha256": "1" * 64,
                    "bytes": 4096,
                },
                {
                    "source": "sample",
                    "kind": "media",
                    "path": "/home/someone/corpus/images/a.png",
                    "sha256": "2" * 64,
                    "bytes": 1000,
                },
                {
                    "source": "sample",
                    "kind": "media",
                    "path": "/home/someone/corpus/audio/b.wav",
                    "sha256": "3" * 64,
                    "bytes": 500,
                },
                {
                    "source": "sample",
                    "kind": "media",
                    "path": "/home/someone/corpus/images/gone.png",
                    "sha256": None,
                    "bytes": None,
                },
            ],
            "recipe": {
                "name": "demo-roleplay",
                "store": "/abs/store",
                "seed": 1234,
                "license": recipe_license,
                "sources": [
                    {"name": "sample", "path": "corpus/dialogues.jsonl", "license": "cc-by-4.0"}
                ],
                "split": {"by": "conversation", "validation": 0.1, "test": 0.1},
                "augment": {
                    "copies": 1,
                    "text": [{"op": "KeyboardAug", "roles": ["user"], "p": 0.5}],
                },
                **recipe,
            },
            "recipe_hash": "r" * 64,
            "code_version": {
                "roleforge": "0.1.0",
                "git_commit": "deadbeef",
                "libraries": {"pyarrow": "26.0.1", "datasets": "5.2.0"},
            },
            "counts": {
                "ingest": {"in": 9, "out": 8, "dropped": 0, "quarantined": 1},
                "validate": {"in": 8, "out": 6, "dropped": 0, "quarantined": 2},
                "dedup": {"in": 6, "out": 5, "dropped": 1, "quarantined": 0},
                "split": {"in": 5, "out": 5, "dropped": 0, "quarantined": 0},
                "augment": {"in": 5, "out": 6, "dropped": 0, "quarantined": 0},
                "write": {"in": 6, "out": 6, "dropped": 0, "quarantined": 0},
            },
            "reuse": {"reused": 3, "computed": 5},
            "quarantine": {
                "path": "/abs/store/demo-roleplay/quarantine/20250102T030405Z-abcd.jsonl",
                "reasons": {"invalid_json": 1, "corrupt_image": 2},
            },
            "augmentation": {
                "copies": 1,
                "ops": [
                    {
                        "modality": "text",
                        "op": "KeyboardAug",
                        "configured": {"roles": ["user"], "p": 0.5},
                        "applied": 7,
                        "skipped": 3,
                    }
                ],
                "stats": {"variants": 1, "seconds": 0.25},
            },
            "dedup": {"duplicates": 1},
            "splits": {"train": 4, "validation": 1, "test": 1},
            "originals": {"train": 3, "validation": 1, "test": 1},
            "shards": shards,
            "split_groups": {"train": 3, "validation": 1, "test": 1},
            "schema_sha256": "5" * 64,
            "content_id": "c" * 64,
        }
    )


DIFF = {
    "added": 2,
    "removed": 1,
    "changed": 0,
    "splits": {
        "train": {"before": 3, "after": 4},
        "validation": {"before": 1, "after": 1},
        "test": {"before": 1, "after": 1},
    },
}
PARENT = make_manifest([], version=1, parent=None).model_copy(update={"content_id": "p" * 64})


@pytest.fixture(scope="module")
def version(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("store") / "v2")
    os.makedirs(folder)
    shards = _write_shards(folder)
    manifest = make_manifest(shards)
    names = write_cards(folder, manifest, PARENT, DIFF)
    return folder, manifest, names


def _front_matter(text):
    m = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.S)
    assert m, "README must start with a YAML header"
    return yaml.safe_load(m.group(1)), m.group(2)


@pytest.fixture(scope="module")
def card(version):
    folder, _, _ = version
    with open(os.path.join(folder, README), encoding="utf-8") as f:
        return _front_matter(f.read())


def test_write_cards_returns_the_two_file_names_and_writes_no_absolute_paths(version):
    folder, _, names = version
    assert names == ["README.md", "croissant.json"]
    for name in names:
        text = open(os.path.join(folder, name), encoding="utf-8").read()
        assert folder not in text
        assert "/home/someone" not in text and "/abs/store" not in text


def test_card_header_carries_hub_metadata(card, version):
    header, _ = card
    assert header["license"] == "cc-by-4.0"  # the only source's license, recipe has none
    assert header["language"] == ["en", "zh"]
    assert header["task_categories"] == [
        "text-generation",
        "image-text-to-text",
        "any-to-any",  # the Hub hides audio-text-to-text for datasets
    ]
    assert header["size_categories"] == ["n<1K"]
    assert header["tags"] == ["role-play", "multimodal", "roleforge", "synthetic-augmentation"]
    assert header["pretty_name"] == "demo-roleplay v2"
    assert header["configs"] == [
        {
            "config_name": "default",
            "data_files": [
                {"split": "train", "path": "train-*.arrow"},
                {"split": "validation", "path": "validation-*.arrow"},
                {"split": "test", "path": "test-*.arrow"},
            ],
        }
    ]
    info = header["dataset_info"]
    assert {s["name"]: s["num_examples"] for s in info["splits"]} == {
        "train": 4,
        "validation": 1,
        "test": 1,
    }
    _, manifest, _ = version
    assert info["download_size"] == sum(s.bytes for s in manifest.shards)
    features = {f["name"]: f for f in info["features"]}
    assert features["images"] == {"name": "images", "list": "image"}
    assert features["audios"] == {"name": "audios", "list": "audio"}


def test_card_features_are_the_libraries_own_serialisation(card):
    import datasets

    from pipeline.record.schema import hf_features

    header, _ = card
    expected = datasets.Features.from_dict(hf_features())._to_yaml_list()
    assert header["dataset_info"]["features"] == expected


def test_version_folder_loads_through_datasets_with_typed_media(version, tmp_path):
    import datasets
    from PIL import Image

    folder, _, _ = version
    ds = datasets.load_dataset(folder, cache_dir=str(tmp_path / "hf-cache"))
    assert isinstance(ds, datasets.DatasetDict)
    assert sorted(ds) == ["test", "train", "validation"]
    assert [ds[s].num_rows for s in ("train", "validation", "test")] == [4, 1, 1]
    images = ds["train"].features["images"]
    audios = ds["train"].features["audios"]
    assert isinstance(images, datasets.List) and isinstance(images.feature, datasets.Image)
    assert isinstance(audios, datasets.List) and isinstance(audios.feature, datasets.Audio)
    image = ds["train"][0]["images"][0]
    assert isinstance(image, Image.Image) and image.size == (4, 3)
    # Decoding audio needs torchcodec, which the project does not install: check the bytes.
    raw = ds["validation"].cast_column("audios", datasets.List(datasets.Audio(decode=False)))
    assert raw[0]["audios"][0]["bytes"][:4] == b"RIFF"


def _tables(body):
    """Return each markdown table as a list of rows (lines starting with '|')."""
    tables, current = [], []
    for line in body.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def _cells(row):
    return re.split(r"(?<!\\)\|", row.strip())[1:-1]


def test_every_table_row_keeps_its_column_count_despite_pipes_and_newlines(card):
    _, body = card
    tables = _tables(body)
    assert len(tables) >= 10
    for table in tables:
        widths = {len(_cells(row)) for row in table}
        assert len(widths) == 1, table
    assert "Bob \\| the Builder" in body


def test_card_body_reports_composition_per_split_character_modality_and_length(card):
    _, body = card
    for section in (
        "## Motivation and intended use",
        "## Composition",
        "## Sources",
        "## Preprocessing",
        "## Augmentation",
        "## Known limitations",
        "## Maintenance",
    ):
        assert section in body
    assert "| train | 4 | 3 | 1 | 2 | 1 |" in body  # records, originals, variants, images, audio
    assert "| validation | 0 | 0 | 0 | 1 |" in body  # modality: image + audio
    assert "| Alice | 2 | 1 | 0 | 3 |" in body
    assert "*(none)*" in body
    assert "3 distinct character(s)" in body


def test_card_body_reports_sources_quarantine_dedup_augmentation_and_diff(card):
    _, body = card
    assert "`dialogues.jsonl`" in body and "1" * 64 in body
    assert "| `corrupt_image` | 2 |" in body and "| `invalid_json` | 1 |" in body
    assert "1 duplicate record(s) removed" in body
    assert '| text | KeyboardAug | `{"p": 0.5, "roles": ["user"]}` | 7 | 3 |' in body
    assert "2 added, 1 removed, 0 changed" in body
    assert "| train | 3 | 4 | +1 |" in body
    assert "p" * 64 in body  # the parent's content id
    assert "quarantine/20250102T030405Z-abcd.jsonl" in body


def test_card_sums_media_inputs_per_source_and_says_how_many_records_were_reused(card):
    _, body = card
    # One row per source for its media (the manifest pins each file), missing ones named.
    assert "| sample | 3 media file(s), 1 missing | 1,500 | each in the manifest's inputs |" in body
    assert "2" * 64 not in body
    assert "1 input file(s) and 3 media file(s)" in body
    assert "3 were reused from earlier work and 5 computed" in body


def test_croissant_passes_mlcroissant_validate(version):
    folder, _, _ = version
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mlcroissant.scripts.cli import main; main()",
            "validate",
            "--jsonld",
            os.path.join(folder, "croissant.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Done." in proc.stderr


def test_croissant_has_no_issues_and_carries_rai_and_every_shard_checksum(version):
    import mlcroissant as mlc
    from mlcroissant._src.core.context import CroissantVersion

    folder, manifest, _ = version
    ds = mlc.Dataset(jsonld=os.path.join(folder, "croissant.json"))
    md = ds.metadata
    assert not md.ctx.issues.errors and not md.ctx.issues.warnings
    assert md.ctx.conforms_to == CroissantVersion.V_1_1
    assert md.data_collection and md.data_biases and md.data_limitations
    assert md.data_use_cases and md.personal_sensitive_information
    assert md.data_preprocessing_protocol and md.version == "2.0.0"
    checksums = {f.content_url: f.sha256 for f in md.file_objects}
    assert checksums == {s.path: s.sha256 for s in manifest.shards}
    for path, sha in checksums.items():
        assert file_sha256(os.path.join(folder, path)) == sha
    fields = {f.name for rs in md.record_sets for f in rs.fields}
    assert {"id", "split", "source", "character", "messages", "images", "audios"} <= fields


def test_croissant_context_is_the_standard_one_for_1_1():
    from mlcroissant._src.core.context import Context, CroissantVersion
    from mlcroissant._src.core.rdf import make_context

    standard = make_context(Context(conforms_to=CroissantVersion.V_1_1))
    assert {k: CROISSANT_CONTEXT[k] for k in standard} == standard


def test_parquet_shards_give_the_same_composition_and_readable_croissant_records(tmp_path, version):
    import mlcroissant as mlc

    arrow_folder, arrow_manifest, _ = version
    folder = str(tmp_path / "v1")
    os.makedirs(folder)
    shards = _write_shards(folder, fmt="parquet")
    manifest = make_manifest(shards, version=1, parent=None)
    write_cards(folder, manifest, None, None)
    assert compute_composition(folder, shards) == compute_composition(
        arrow_folder, arrow_manifest.shards
    )
    header, body = _front_matter(open(os.path.join(folder, README), encoding="utf-8").read())
    assert header["configs"][0]["data_files"][0] == {"split": "train", "path": "train-*.parquet"}
    assert "First version: no parent to compare with." in body
    ds = mlc.Dataset(jsonld=os.path.join(folder, "croissant.json"))
    records = list(ds.records("records"))
    assert len(records) == 6
    assert Counter(r["records/split"] for r in records) == {
        b"train": 4,
        b"validation": 1,
        b"test": 1,
    }


def test_composition_counts_media_without_decoding(version):
    folder, manifest, _ = version
    c = compute_composition(folder, manifest.shards)
    assert (c.rows, c.images, c.audios) == (6, 3, 2)
    assert c.splits["train"].variants == 1
    assert c.splits["train"].max_messages == 7
    assert c.roles["assistant"].messages == 8
    assert c.scripts["Han"] > 0 and c.scripts["Latin"] > 0


def test_composition_rejects_a_shard_whose_row_count_disagrees(version):
    folder, manifest, _ = version
    shards = [manifest.shards[0].model_copy(update={"rows": 99})]
    with pytest.raises(ValueError, match="99"):
        compute_composition(folder, shards)


@pytest.mark.parametrize(
    ("scripts", "expected"),
    [
        ({"Latin": 1000}, ["en"]),
        ({"Latin": 1000, "Han": 40}, ["en", "zh"]),
        ({"Latin": 1000, "Han": 5}, ["en"]),  # a stray name is not a language
        ({"Hiragana": 300, "Katakana": 50, "Han": 200}, ["ja"]),
        ({"Hangul": 10}, ["ko"]),
        ({}, []),
    ],
)
def test_languages_come_from_script_shares(scripts, expected):
    assert detect_languages(Counter(scripts)) == expected


def test_license_is_the_recipes_then_the_sources_shared_one_then_mixed_then_unknown():
    sources = [{"name": "a", "license": "MIT"}, {"name": "b", "license": "cc-by-4.0"}]
    assert resolve_license({"license": "Apache-2.0", "sources": sources}).id == "apache-2.0"
    mixed = resolve_license({"license": None, "sources": sources})
    assert (mixed.id, mixed.name) == ("other", "mixed: cc-by-4.0, mit")
    assert mixed.link == "README.md#sources"
    assert resolve_license({"sources": sources[:1]}).id == "mit"
    assert resolve_license({"sources": [{"name": "a"}]}).id == "unknown"


def test_an_other_license_carries_the_hub_name_and_link_and_empty_splits_are_not_declared(
    tmp_path,
):
    folder = str(tmp_path / "v1")
    os.makedirs(folder)
    shards = [s for s in _write_shards(folder, fmt="parquet") if s.split != "validation"]
    manifest = make_manifest(
        shards,
        version=1,
        parent=None,
        recipe_license="other",
        license_name="roleforge-demo-terms",
        license_link="https://example.org/terms",
    )
    write_cards(folder, manifest, None, None)
    header, _ = _front_matter(open(os.path.join(folder, README), encoding="utf-8").read())
    assert header["license"] == "other"
    assert header["license_name"] == "roleforge-demo-terms"
    assert header["license_link"] == "https://example.org/terms"
    assert [f["split"] for f in header["configs"][0]["data_files"]] == ["train", "test"]
    assert [s["name"] for s in header["dataset_info"]["splits"]] == ["train", "test"]


def test_size_categories_follow_the_hub_buckets():
    assert [size_category(n) for n in (0, 999, 1000, 54_321, 2_000_000)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "1M<n<10M",
    ]


def test_table_cells_escape_markup_and_line_breaks():
    assert md_cell("a|b\nc <x> *y*") == "a\\|b c &lt;x&gt; \\*y\\*"
    assert "\n" not in md_cell("line1\r\nline2")


def test_scripts_are_counted_per_letter_in_sliced_arrays():
    text = pa.array(["skip me", "Héllo 世界 𠀀", "こんにちは カタカナ", "안녕 Привет 123 !"]).slice(
        1
    )
    assert count_scripts(text) == Counter(
        {"Latin": 5, "Han": 3, "Hiragana": 5, "Katakana": 4, "Hangul": 2, "Cyrillic": 6}
    )
    assert count_scripts(pa.array(["abc"]).slice(1)) == Counter()
