"""The quality layer inside the data job: the `quality` column of every published row, its
counts in the manifest and `run --json`, near-copies held in one split, the same content at
one or two workers, and record-cache keys that follow the quality settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from pipeline.execution.job import RunResult
from pipeline.execution.plan import near_dup_groups
from pipeline.stages.quality.planner import NearDupPlan
from pipeline.store.read import Store
from tests.fixtures.corpus import write_jsonl
from tests.pipeline.execution.datajob_corpus import (
    AUGMENT,
    make_recipe,
    published_rows,
    run_job,
    write_corpus,
)

pytestmark = pytest.mark.usefixtures("ray_session")

STORY = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk, counting each of "
    "the one hundred and twelve steps, polishing the great lens until it gleamed like a "
    "second moon over the harbour and the fishing boats came home safely through the fog."
)


def _near_copies() -> list[dict[str, Any]]:
    """Three chats telling one long story, each with one word changed (near, not exact,
    copies), and one chat whose character says it is a language model. The copies have two
    exchanges, so augmentation's ContextWindow makes variants of them (which carry their
    `near_duplicate` flag)."""
    chats = []
    for word in ("dusk", "sunset", "nightfall"):
        chats.append(
            {
                "character": "Marlowe",
                "messages": [
                    {"role": "user", "content": "What do you do all day, keeper?"},
                    {"role": "assistant", "content": STORY.replace("dusk", word)},
                    {"role": "user", "content": "And on stormy nights?"},
                    {"role": "assistant", "content": "Then the lamp burns until morning."},
                ],
            }
        )
    chats.append(
        {
            "character": "Pip",
            "messages": [
                {"role": "user", "content": "Who are you really?"},
                {"role": "assistant", "content": "As an AI language model, I cannot play Pip."},
            ],
        }
    )
    return chats


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("quality-corpus")
    write_corpus(folder)
    write_jsonl(folder / "copies.jsonl", _near_copies())
    return folder


SOURCES = [
    {"name": "tiny", "path": "dialogues.jsonl", "characters": "characters.jsonl"},
    {"name": "copies", "path": "copies.jsonl", "characters": "characters.jsonl"},
]
QUALITY: dict[str, Any] = {"language_mismatch": {"policy": "off"}}


def _run(corpus: Path, store: str, **overrides: Any) -> RunResult:
    overrides.setdefault("quality", QUALITY)
    overrides.setdefault("sources", SOURCES)
    return run_job(corpus, store, **overrides)


@pytest.fixture(scope="module")
def serial(corpus: Path) -> RunResult:
    return _run(corpus, "serial", execution={"batch_size": 2, "concurrency": 1})


def test_every_published_row_has_a_quality_struct_with_its_token_count(
    serial: RunResult,
) -> None:
    rows = published_rows(serial)
    assert rows and all(r["quality"] is not None for r in rows)
    assert all(r["quality"]["tokens"] and r["quality"]["tokens_hash"] for r in rows)


def test_near_copies_share_one_cluster_and_one_split(serial: RunResult) -> None:
    copies = [
        r for r in published_rows(serial) if r["source"] == "copies" and r["parent_id"] is None
    ]
    assert len(copies) == 3  # the AI-exposure chat was quarantined
    assert len({r["quality"]["near_dup_cluster"] for r in copies}) == 1
    assert copies[0]["quality"]["near_dup_cluster"] is not None
    assert all("near_duplicate" in r["quality"]["flags"] for r in copies)
    assert len({r["split"] for r in copies}) == 1


def test_variants_carry_their_parents_findings_and_count_their_own_tokens(
    serial: RunResult,
) -> None:
    rows = published_rows(serial)
    parents = {r["id"]: r for r in rows if r["parent_id"] is None}
    variants = [r for r in rows if r["parent_id"] is not None]
    assert any("near_duplicate" in v["quality"]["flags"] for v in variants)
    for variant in variants:
        q, parent = variant["quality"], parents[variant["parent_id"]]["quality"]
        for field in ("flags", "notes", "near_dup_cluster", "language"):
            assert q[field] == parent[field], field
        assert q["tokens"] and q["tokens_hash"] == parent["tokens_hash"]
    assert any(
        v["quality"]["tokens"] != parents[v["parent_id"]]["quality"]["tokens"] for v in variants
    )


def test_quality_counts_reach_the_manifest_and_run_json(serial: RunResult) -> None:
    manifest = Store(str(Path(serial.path).parents[2]), serial.name).manifest(serial.version)
    assert manifest.quality is not None
    assert manifest.quality["quality.ai_exposure"]["quarantined"] == 1
    # The three copies, and any of the tiny corpus's templated chats the MinHash estimate
    # takes: their true Jaccards (0.76 to 0.81) sit at the 0.8 threshold, so how many pass
    # is the hash family's draw (two with rensa's own token hashing, none with quality5's).
    flagged = [
        r
        for r in published_rows(serial)
        if r["parent_id"] is None and "near_duplicate" in r["quality"]["flags"]
    ]
    assert sum(r["source"] == "copies" for r in flagged) == 3
    assert manifest.quality["quality.near_duplicate"]["near_duplicate"] == len(flagged)
    assert manifest.quarantine.reasons.get("ai_exposure") == 1
    assert serial.to_dict()["quality"] == manifest.quality
    assert not [i for i in manifest.inputs if i.kind == "held_out"]


def test_ingest_reports_the_quality_counts_run_reports(corpus: Path, serial: RunResult) -> None:
    from pipeline.execution.ingest import run_ingest

    recipe = make_recipe(corpus, store="ingest", sources=SOURCES, quality=QUALITY)
    report = run_ingest(recipe)
    counts = report.to_dict()["quality"]
    clusters = counts["quality.near_duplicate"].pop("clusters")
    ran = {k: v for k, v in serial.quality.items() if k != "quality.tokens"}  # run's alone
    assert counts == ran
    published = published_rows(serial)
    assert clusters == len({r["quality"]["near_dup_cluster"] for r in published} - {None})
    assert report.quarantine_reasons.get("ai_exposure") == 1
    by_source = {s["name"]: s for s in report.sources}
    assert by_source["copies"]["quarantined"] == 1 and by_source["copies"]["valid"] == 3


def test_content_id_with_quality_is_the_same_with_one_or_two_workers(
    corpus: Path, serial: RunResult
) -> None:
    parallel = _run(
        corpus, "parallel", execution={"batch_size": 5, "concurrency": 2, "in_process_records": 0}
    )
    assert parallel.content_id == serial.content_id
    assert parallel.splits == serial.splits


def test_a_changed_quality_setting_recomputes_and_an_unrelated_change_does_not(
    corpus: Path,
) -> None:
    first = _run(corpus, "cached")
    assert first.reuse.computed > 0
    # Another audio op: only train records with a clip are augmented anew.
    audio = {**AUGMENT, "audio": [{"op": "SpeedPerturb", "factors": [0.8, 1.2]}]}
    unrelated = _run(corpus, "cached", augment=audio)
    assert not unrelated.stages_skipped
    assert 0 < unrelated.reuse.computed < first.reuse.computed
    stricter = {**QUALITY, "slop": {"min_hits": 1}}
    changed = _run(corpus, "cached", quality=stricter, augment=audio)
    assert changed.reuse.computed == first.reuse.computed
    assert changed.reuse.reused == 0


def test_a_rerun_through_the_cache_counts_the_quality_stages_as_the_first_run(
    tmp_path: Path,
) -> None:
    write_corpus(tmp_path)
    write_jsonl(tmp_path / "copies.jsonl", _near_copies())
    first = _run(tmp_path, "recount")
    with (tmp_path / "copies.jsonl").open("a", encoding="utf-8") as f:
        f.write("\n")  # the file re-saved: a new input, the same records
    rerun = _run(tmp_path, "recount")
    assert rerun.reuse.computed == 0 and rerun.reuse.reused == first.reuse.computed
    assert rerun.quality == first.quality
    assert rerun.quality["quality.ai_exposure"]["quarantined"] == 1


def _add_image_copy(folder: Path) -> None:
    """Append a new chat showing record 0's picture (its image file copied)."""
    import json
    import shutil

    shutil.copy(folder / "images" / "0.png", folder / "images" / "copy.png")
    chat = {
        "character": "Vela",
        "messages": [
            {"role": "user", "content": "<image> Look again at this harbour picture."},
            {"role": "assistant", "content": "The same harbour, a different hour entirely."},
        ],
        "images": ["images/copy.png"],
    }
    with (folder / "dialogues.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(chat) + "\n")


def _image_copy_rows(result: RunResult) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return the new chat's row and record 0's rows (original and variants)."""
    rows = published_rows(result)
    new = next(r for r in rows if "harbour picture" in r["messages"][0]["content"])
    zero = [r for r in rows if r["messages"][0]["content"].startswith("<image> Question 0:")]
    return new, zero


def test_a_rerun_flags_a_cached_record_whose_image_a_new_record_copies_as_a_fresh_run_does(
    tmp_path: Path,
) -> None:
    write_corpus(tmp_path)
    sources = SOURCES[:1]
    first = _run(tmp_path, "store", sources=sources)
    # The pair of the new chat's image with the cached record 0's is found only after the
    # pass (media are signed there), and flags record 0 too.
    _add_image_copy(tmp_path)
    after = _run(tmp_path, "store", sources=sources)
    scratch = _run(tmp_path, "scratch", sources=sources)
    assert after.reuse.reused > 0 and after.reuse.computed < scratch.reuse.computed
    assert after.content_id == scratch.content_id != first.content_id
    assert after.quality == scratch.quality
    new, zero = _image_copy_rows(after)
    assert zero and all("near_duplicate_image" in r["quality"]["flags"] for r in zero)
    assert all(
        f"near_duplicate_image: image 1.00 with {new['id']}" in r["quality"]["notes"] for r in zero
    )
    assert after.quality["quality.near_duplicate"]["near_duplicate_image"] >= 2


def test_with_group_media_an_image_copy_joins_its_original_in_one_cluster(tmp_path: Path) -> None:
    write_corpus(tmp_path)
    _add_image_copy(tmp_path)
    quality = {**QUALITY, "near_dup": {"group_media": True}}
    result = _run(tmp_path, "grouped", sources=SOURCES[:1], quality=quality)
    new, zero = _image_copy_rows(result)
    assert zero and new["quality"]["near_dup_cluster"] is not None
    assert all(r["quality"]["near_dup_cluster"] == new["quality"]["near_dup_cluster"] for r in zero)
    assert all("near_duplicate" in r["quality"]["flags"] for r in [new, *zero])
    assert all(r["split"] == new["split"] for r in zero)


def test_held_out_files_are_pinned_inputs_and_contaminated_records_leave(corpus: Path) -> None:
    held = corpus / "held_out.txt"
    held.write_text(STORY + "\n", encoding="utf-8")
    quality = {**QUALITY, "decontaminate": ["held_out.txt"]}
    result = _run(corpus, "decontaminated", quality=quality, max_bad_fraction=0.3)
    manifest = Store(str(Path(result.path).parents[2]), result.name).manifest(result.version)
    pinned = [i for i in manifest.inputs if i.kind == "held_out"]
    assert [(i.source, i.path) for i in pinned] == [("quality", "held_out.txt")]
    assert manifest.quarantine.reasons.get("contaminated") == 3


def _plan(clusters: dict[str, str]) -> NearDupPlan:
    return NearDupPlan(clusters=clusters)


def test_a_cluster_of_conversations_becomes_one_near_dup_group() -> None:
    todo = pa.table({"id": ["a", "b", "c"], "group": [f"conversation:{x}" for x in "abc"]})
    merged = near_dup_groups(todo, _plan({"a": "a", "b": "a"}))
    assert merged == {"conversation:a": "near_dup:a", "conversation:b": "near_dup:a"}


def test_a_cluster_spanning_characters_holds_both_characters_out_together() -> None:
    todo = pa.table(
        {
            "id": ["a", "b", "c", "d"],
            "group": ["character:Vela", "character:Pip", "character:Pip", "conversation:d"],
        }
    )
    merged = near_dup_groups(todo, _plan({"a": "a", "b": "a", "c": "c", "d": "c"}))
    # a-b join Vela and Pip; c-d join Pip and a nameless conversation: all one group.
    assert merged == {"character:Vela": "character:Pip", "conversation:d": "character:Pip"}
