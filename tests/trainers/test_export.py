"""`roleforge export`: versions as LLaMA-Factory, TRL, ShareGPT and OpenAI-style files."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from tests.trainers.conftest import CAPTAIN, make_record, standard_records, write_version
from trainers.dataset_export import ExportError, export_version


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _pippa_records() -> list[dict]:
    """A greeting-first record, one ending on a user turn, one with a system message."""
    greeting = make_record(0, "train", images=0, audios=0)
    greeting["messages"].insert(
        0, {"role": "assistant", "name": CAPTAIN["name"], "content": CAPTAIN["greeting"]}
    )
    trailing = make_record(2, "train", images=1, audios=0)
    trailing["messages"].append({"role": "user", "name": "Mira", "content": "<image> And this?"})
    trailing["images"] = trailing["images"] * 2
    system = make_record(4, "train")
    system["messages"].insert(0, {"role": "system", "name": None, "content": "Stay in character."})
    return [greeting, trailing, system, make_record(200, "test")]


@pytest.fixture(scope="module")
def pippa_store(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("pippa-store")
    write_version(store, "pippa", _pippa_records())
    return store


def test_llamafactory_export_meets_the_sharegpt_converter_rules(pippa_store, tmp_path):
    out = tmp_path / "lf"
    args = ["export", "pippa@v1", str(out), "--to", "llamafactory", "--store", str(pippa_store)]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows"] == {"train": 3, "test": 1}  # no file for the empty validation split
    assert report["greetings_folded"] == 1 and report["trailing_user_turns_dropped"] == 1
    assert report["media_dropped"] == 1 and report["skipped"] == {}
    info = json.loads((out / "dataset_info.json").read_text())
    assert set(info) == {"pippa_v1_train", "pippa_v1_test"}
    entry = info["pippa_v1_train"]
    assert entry["formatting"] == "sharegpt" and entry["file_name"] == "train.jsonl"
    rows = _rows(out / entry["file_name"])
    tags = entry["tags"]
    for row in rows:
        # SharegptDatasetConverter: human/gpt alternate from a human turn, in an even count.
        turns = row[entry["columns"]["messages"]]
        assert [t[tags["role_tag"]] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        assert len(turns) % 2 == 0
        text = "".join(t[tags["content_tag"]] for t in turns)
        # mm_plugin: one placeholder per media item, and every path exists under media_dir.
        assert text.count("<image>") == len(row["images"])
        assert text.count("<audio>") == len(row["audios"])
        for rel in row["images"] + row["audios"]:
            assert not os.path.isabs(rel) and (out / rel).is_file()
        assert row["system"].startswith("You are ")
    by_id = {r["id"]: r for r in rows}
    greeting = by_id[_pippa_records()[0]["id"]]
    assert (
        f'{CAPTAIN["name"]} opened the conversation with: "{CAPTAIN["greeting"]}"'
        in greeting["system"]
    )
    assert "Stay in character." in by_id[_pippa_records()[2]["id"]]["system"]
    assert by_id[_pippa_records()[1]["id"]]["conversations"][-1]["from"] == "gpt"


def test_openai_and_sharegpt_exports_put_the_persona_first(pippa_store, tmp_path):
    openai = export_version(str(pippa_store), "pippa", 1, "openai", str(tmp_path / "o"))
    rows = _rows(tmp_path / "o" / "train.jsonl")
    assert openai.rows["train"] == 3 and not (tmp_path / "o" / "dataset_info.json").exists()
    for row in rows:
        assert row["messages"][0]["role"] == "system"
        assert [m["role"] for m in row["messages"][1:3]] == ["user", "assistant"]
    export_version(str(pippa_store), "pippa", 1, "sharegpt", str(tmp_path / "s"))
    assert _rows(tmp_path / "s" / "train.jsonl")[0]["conversations"][0]["from"] == "human"


def test_export_refuses_unknown_formats_and_non_empty_folders(pippa_store, tmp_path):
    with pytest.raises(ExportError, match="unknown export format 'axolotl'"):
        export_version(str(pippa_store), "pippa", 1, "axolotl", str(tmp_path / "a"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(ExportError, match="is not empty"):
        export_version(str(pippa_store), "pippa", 1, "trl", str(tmp_path / "full"))
    assert (tmp_path / "full" / "x").read_text() == "keep me"


def test_trl_export_with_images_gives_typed_parts_trl_can_fill(mm_store, tmp_path):
    from datasets import load_dataset
    from PIL import Image
    from trl.data_utils import is_conversational, prepare_multimodal_messages

    out = tmp_path / "trl"
    export_version(str(mm_store), "mm", 1, "trl", str(out))
    ds = load_dataset("json", data_files={"train": str(out / "train.jsonl")})["train"]
    row = ds[0]
    assert is_conversational(row) and row["messages"][0]["role"] == "system"
    parts = [p for m in row["messages"] for p in m["content"]]
    assert sum(p["type"] == "image" for p in parts) == len(row["images"]) == 1
    images = [Image.open(out / rel) for rel in row["images"]]
    filled = prepare_multimodal_messages(row["messages"], images=images)
    assert [p["image"] for m in filled for p in m["content"] if p["type"] == "image"] == images


def test_trl_export_round_trips_through_sft_trainer(text_store, tiny_causal, tmp_path):
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from trainers.models import DEFAULT_TEXT_TEMPLATE

    out = tmp_path / "trl"
    report = export_version(str(text_store), "txt", 1, "trl", str(out))
    assert report.rows == {"train": 8, "validation": 2, "test": 3} and report.media_files == 0
    files = {split: str(out / f"{split}.jsonl") for split in report.rows}
    data = load_dataset("json", data_files=files)
    tokenizer = AutoTokenizer.from_pretrained(tiny_causal)
    tokenizer.chat_template = DEFAULT_TEXT_TEMPLATE
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_causal),
        processing_class=tokenizer,
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        args=SFTConfig(
            output_dir=str(tmp_path / "sft"),
            max_steps=1,
            per_device_train_batch_size=2,
            report_to="none",
            use_cpu=True,
            save_strategy="no",
            disable_tqdm=True,
        ),
    )
    first = tokenizer.decode(trainer.train_dataset[0]["input_ids"])
    # Exported in id order, as the trainer reads a split (`SplitReader`).
    train = [r for r in standard_records(images=0, audios=0) if r["split"] == "train"]
    record = min(train, key=lambda r: r["id"])
    assert first.startswith(f"<|im_start|>system\nYou are {record['character']['name']}.")
    assert f"<|im_start|>user\nMira: {record['messages'][0]['content']}" in first
    assert math.isfinite(trainer.train().training_loss)


def test_media_files_are_written_once_per_content(tmp_path):
    records = [make_record(i, "train") for i in range(2)] + [make_record(200, "test")]
    records[1]["images"] = records[0]["images"]
    write_version(tmp_path, "dup", records)
    report = export_version(str(tmp_path), "dup", 1, "sharegpt", str(tmp_path / "out"))
    rows = _rows(tmp_path / "out" / "train.jsonl")
    assert rows[0]["images"] == rows[1]["images"]
    assert report.media_files == len(os.listdir(tmp_path / "out" / "media"))


def test_a_greeting_that_carries_media_is_skipped_and_counted_not_folded():
    from collections import Counter

    from trainers.chat import ChatFormatter
    from trainers.dataset_export import ExportReport, normalise

    record = make_record(0, "train", images=0, audios=0)
    record["messages"].insert(
        0, {"role": "assistant", "name": CAPTAIN["name"], "content": "<image> Look at my ship!"}
    )
    record["images"] = make_record(0, "train", images=1)["images"]
    report, skipped = ExportReport("sharegpt", "out", {}), Counter()
    sample = ChatFormatter("You are {name}.").format(record)
    assert normalise(sample, report, skipped) is None
    assert skipped == {"greeting_with_media": 1} and report.greetings_folded == 0
