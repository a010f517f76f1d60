"""The training stage end to end on tiny random models: CLI, outputs, reload, resume, Ray."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.store.read import Store
from tests.trainers.conftest import standard_records, write_version
from trainers import ModalityMismatch, train_version
from trainers.config import LoraConfig, TrainConfig

OMNI_CONFIG = {
    "model": "tiny-random",
    "lora": {"r": 8},
    "max_steps": 5,
    "batch_size": 4,
    "grad_accum": 2,  # 8 train records: every step sees all of them, so the loss must fall
    "learning_rate": 0.05,
    "max_length": 512,
    "eval_steps": 2,
    "early_stopping_patience": 3,  # keeps the best of the evaluations at steps 2 and 4
    "eval_prompts": 2,
    "max_new_tokens": 6,
}


@pytest.fixture(scope="module")
def omni_run(mm_store, tmp_path_factory) -> dict:
    """`roleforge train mm@v1 --json` on the tiny Omni model; its parsed JSON output."""
    config = tmp_path_factory.mktemp("cfg") / "train.yaml"
    config.write_text(yaml.safe_dump(OMNI_CONFIG))
    args = ["train", "mm@v1", "--store", str(mm_store), "--config", str(config), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_train_json_names_model_folder_dataset_losses_and_eval(omni_run, mm_store):
    manifest = Store(str(mm_store), "mm").manifest(1)
    assert omni_run["dataset"] == {"name": "mm", "version": 1, "content_id": manifest.content_id}
    assert omni_run["model_path"] == Store(str(mm_store), "mm").models_dir(omni_run["run_id"])
    ev = omni_run["eval"]
    assert ev["samples"] == 3 and ev["tokens"] > 0
    assert math.isclose(ev["perplexity"], math.exp(ev["loss"]), rel_tol=1e-9)
    assert set(ev["per_character"]) == {"Captain Vela", "Professor Hoot"}
    gen = ev["generation"]
    assert gen["replies"] == 2
    for key in (
        "ai_exposure_rate",
        "speaker_leakage_rate",
        "catchphrase_hit_rate",
        "mean_reply_words",
    ):
        assert key in gen


def test_loss_falls_on_tiny_omni_with_images_and_audio(omni_run):
    assert omni_run["train_loss_last"] < omni_run["train_loss_first"] - 0.05
    train = omni_run["data"]["train"]
    assert train["used"] == 8 and train["media_dropped_samples"] == 0
    run = json.loads(Path(omni_run["model_path"], "run.json").read_text())
    assert run["keep_media"] == ["audio", "image"] and run["status"] == "done"
    summary = json.loads(Path(omni_run["model_path"], "train_summary.json").read_text())
    assert [e["step"] for e in summary["eval_losses"]] == [2, 4, 5]
    assert summary["best_checkpoint"] is not None


def test_run_folder_holds_safetensors_adapter_processor_card_and_eval(omni_run, mm_store):
    folder = Path(omni_run["model_path"])
    names = set(os.listdir(folder))
    assert {"adapter_model.safetensors", "adapter_config.json", "processor_config.json"} <= names
    assert {"tokenizer.json", "eval.json", "eval.md", "README.md", "base_model"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))]
    card = (folder / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "peft" and front["datasets"] == ["mm"]
    metrics = front["model-index"][0]["results"][0]["metrics"]
    assert {m["type"] for m in metrics} == {"loss", "perplexity"}
    manifest = Store(str(mm_store), "mm").manifest(1)
    for fact in (manifest.content_id, manifest.recipe_hash, "`v1`", "learning_rate: `0.05`"):
        assert fact in card
    assert "tiny-random" in card and "base_model/" in card
    eval_md = (folder / "eval.md").read_text()
    assert "| Captain Vela |" in eval_md and "AI-exposure rate" in eval_md


def test_saved_adapter_loads_back_and_scores_like_the_run(omni_run, mm_store):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from trainers.chat import ChatFormatter
    from trainers.collator import RolePlayCollator
    from trainers.data import RolePlayDataset, SplitReader
    from trainers.encoding import ConversationEncoder
    from trainers.evaluate import TestEvaluator

    folder = omni_run["model_path"]
    base = AutoModelForImageTextToText.from_pretrained(
        os.path.join(folder, "base_model"), use_safetensors=True
    )
    model = PeftModel.from_pretrained(base, folder)
    processor = AutoProcessor.from_pretrained(folder)
    store = Store(str(mm_store), "mm")
    reader = SplitReader(store.shard_paths(store.manifest(1), "test"))
    encoder = ConversationEncoder(processor, multimodal=True, max_length=512)
    test = RolePlayDataset("test", reader, ChatFormatter(TrainConfig().system_template), encoder)
    collator = RolePlayCollator(processor.tokenizer.pad_token_id)
    scores = TestEvaluator(model, test, collator, 4, 0, 1).losses()
    assert scores["loss"] == pytest.approx(omni_run["eval"]["loss"], rel=1e-5)


def test_resume_continues_with_the_losses_of_an_uninterrupted_run(tmp_path):
    write_version(tmp_path, "r", standard_records(train=4, validation=0, test=1))
    cfg = TrainConfig(
        lora=LoraConfig(r=4),
        max_steps=4,
        save_steps=2,
        batch_size=2,
        learning_rate=0.05,
        max_length=512,
        eval_prompts=0,
    )
    full = train_version(str(tmp_path), "r", 1, cfg, seed=5, run_id="full")
    # An interrupted run: the same run stopped after its step-2 checkpoint.
    models = tmp_path / "r" / "models"
    cut = models / "cut"
    shutil.copytree(models / "full" / "base_model", cut / "base_model")
    shutil.copytree(models / "full/checkpoints/checkpoint-2", cut / "checkpoints/checkpoint-2")
    run = json.loads((models / "full" / "run.json").read_text())
    run.update(run_id="cut", created=time.time(), status="training")
    (cut / "run.json").write_text(json.dumps(run))

    resumed = train_version(str(tmp_path), "r", 1, None, resume=True)
    assert resumed.run_id == "cut" and resumed.resumed_from.endswith("checkpoint-2")
    assert resumed.global_step == full.global_step == 4
    before = json.loads((models / "full" / "train_summary.json").read_text())["losses"]
    after = json.loads((cut / "train_summary.json").read_text())["losses"]
    assert [e["step"] for e in after] == [1, 2, 3, 4]
    assert [e["loss"] for e in after] == pytest.approx([e["loss"] for e in before], rel=1e-6)
    assert resumed.eval["loss"] == pytest.approx(full.eval["loss"], rel=1e-6)


def test_text_only_model_on_multimodal_data_fails_early_and_names_what_it_cannot_take(
    mm_store, tiny_causal
):
    models = Store(str(mm_store), "mm").root + "/models"
    before = set(os.listdir(models)) if os.path.isdir(models) else set()
    cfg = TrainConfig(model=tiny_causal, max_steps=1)
    with pytest.raises(ModalityMismatch) as err:
        train_version(str(mm_store), "mm", 1, cfg, seed=0)
    message = str(err.value)
    for words in ("mm@v1", "images (13 records)", "audio (13 records)", tiny_causal, "drop_media"):
        assert words in message
    after = set(os.listdir(models)) if os.path.isdir(models) else set()
    assert after == before  # nothing was created, no weights were loaded


def test_text_only_causal_lm_trains_fully_when_media_is_dropped(mm_store, tiny_causal):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = TrainConfig(
        model=tiny_causal,
        lora=None,
        drop_media=True,
        max_steps=4,
        batch_size=4,
        grad_accum=2,
        learning_rate=0.01,
        max_length=256,
        eval_prompts=1,
        max_new_tokens=4,
        gradient_checkpointing=True,
    )
    result = train_version(str(mm_store), "mm", 1, cfg, seed=0)
    assert result.data["train"]["media_dropped_samples"] == 8
    assert result.train_loss_last < result.train_loss_first
    folder = Path(result.model_path)
    assert (folder / "model.safetensors").exists() and not (folder / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.vocab_size == len(tokenizer) and tokenizer.chat_template
    card = (folder / "README.md").read_text()
    assert yaml.safe_load(card.split("---\n")[1])["library_name"] == "transformers"
    assert "AutoModelForCausalLM.from_pretrained('<this folder>')" in card


def test_two_ray_train_workers_on_cpu_complete_a_run(ray_session, tmp_path):
    write_version(tmp_path, "ray", standard_records(train=4, validation=0, test=1))
    cfg = TrainConfig(
        lora=LoraConfig(r=4),
        workers=2,
        use_gpu=False,
        max_steps=2,
        batch_size=1,
        learning_rate=0.05,
        max_length=512,
        eval_prompts=1,
        max_new_tokens=4,
    )
    result = train_version(str(tmp_path), "ray", 1, cfg, seed=0)
    summary = json.loads(Path(result.model_path, "train_summary.json").read_text())
    assert summary["world_size"] == 2 and result.global_step == 2
    assert math.isfinite(result.eval["loss"])
    assert Path(result.model_path, "adapter_model.safetensors").exists()


def test_image_text_model_trains_on_images_and_drops_only_audio_when_asked(mm_store, tiny_vl):
    cfg = TrainConfig(model=tiny_vl, max_steps=3, batch_size=4, learning_rate=0.05, eval_prompts=1)
    with pytest.raises(
        ModalityMismatch, match=r"has audio \(13 records\), but model .* takes only text and image"
    ):
        train_version(str(mm_store), "mm", 1, cfg, seed=0)
    result = train_version(
        str(mm_store), "mm", 1, cfg.model_copy(update={"drop_media": True}), seed=0
    )
    run = json.loads(Path(result.model_path, "run.json").read_text())
    assert run["keep_media"] == ["image"]
    assert result.data["train"]["media_dropped_samples"] == 8
    assert math.isfinite(result.train_loss_last) and math.isfinite(result.eval["loss"])
    assert Path(result.model_path, "adapter_model.safetensors").exists()
