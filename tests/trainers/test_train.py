"""The training stage end to end on tiny random models: CLI, outputs, reload, resume, Ray."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.store.read import Store
from tests.trainers.conftest import interrupt_copy, standard_records, write_version
from trainers import ModalityMismatch, train_version
from trainers.config import LoraConfig, TrainConfig

OMNI_CONFIG = {
    "model": "tiny-random",
    "lora": {"r": 8},
    "max_steps": 5,
    "batch_size": 4,
    "grad_accum": 2,  # 8 train records: every step sees all of them, so the loss must fall
    # 0.05 oscillated: the loss rose again at step 4 under one grouping of the 8 records
    # into micro-batches (6.39 -> 6.31 -> 6.37); at 0.02 it falls at every step in both.
    "learning_rate": 0.02,
    "max_length": 512,
    "eval_steps": 2,
    "early_stopping_patience": 3,  # keeps the best of the evaluations at steps 2 and 4
    "eval_prompts": 2,
    "max_new_tokens": 6,
}


@pytest.fixture(scope="module")
def omni_cli(mm_store, tmp_path_factory):
    """`roleforge train mm@v1 --json` on the tiny Omni model; the CLI result."""
    config = tmp_path_factory.mktemp("cfg") / "train.yaml"
    config.write_text(yaml.safe_dump(OMNI_CONFIG))
    args = ["train", "mm@v1", "--store", str(mm_store), "--config", str(config), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def omni_run(omni_cli) -> dict:
    """The parsed JSON output of the tiny Omni run."""
    return json.loads(omni_cli.stdout)


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
    assert front["library_name"] == "peft" and front["datasets"] == ["mm@v1"]
    metrics = front["model-index"][0]["results"][0]["metrics"]
    assert {m["type"] for m in metrics} == {"loss", "perplexity"}
    manifest = Store(str(mm_store), "mm").manifest(1)
    for fact in (manifest.content_id, manifest.recipe_hash, "`v1`", "learning_rate: `0.02`"):
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
    cut = interrupt_copy(models, "full", 2, "cut")

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
    from peft import AutoPeftModel

    loaded = AutoPeftModel.from_pretrained(result.model_path)  # base: the path the config gave
    assert type(loaded.get_base_model()).__name__ == "Qwen2_5_VLForConditionalGeneration"


def test_text_lora_adapter_loads_with_autopeftmodelforcausallm(text_store, tiny_causal):
    from peft import AutoPeftModelForCausalLM

    cfg = TrainConfig(
        model=tiny_causal,
        lora=LoraConfig(r=4),
        max_steps=1,
        batch_size=4,
        max_length=256,
        eval_prompts=0,
        progress="none",
    )
    result = train_version(str(text_store), "txt", 1, cfg, seed=0)
    model = AutoPeftModelForCausalLM.from_pretrained(result.model_path)
    assert type(model.get_base_model()).__name__ == "Qwen2ForCausalLM"
    card = Path(result.model_path, "README.md").read_text()
    assert "model = AutoPeftModelForCausalLM.from_pretrained('<this folder>')" in card
    assert yaml.safe_load(card.split("---\n")[1])["pipeline_tag"] == "text-generation"


def test_training_shows_one_stderr_line_per_logging_step_off_a_terminal(omni_cli):
    lines = [line for line in omni_cli.stderr.splitlines() if line.startswith("step ")]
    train = [line for line in lines if " loss " in line]
    assert [line.split()[1] for line in train] == ["1/5", "2/5", "3/5", "4/5", "5/5"]
    for line in train:
        for field in ("loss", "lr", "tok/s", "eta"):
            assert f"  {field} " in line
    assert sum("eval_loss" in line for line in lines) == 3
    assert not [line for line in omni_cli.stdout.splitlines() if line.startswith("step ")]


def test_run_folder_holds_tensorboard_events_and_the_training_curve(omni_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = Path(omni_run["model_path"])
    events = EventAccumulator(str(folder / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4, 5]
    assert [e.step for e in events.Scalars("eval/loss")] == [2, 4, 5]
    curve = json.loads((folder / "training_curve.json").read_text())["points"]
    assert [p["step"] for p in curve] == [1, 2, 3, 4, 5]
    assert curve[0]["loss"] == pytest.approx(omni_run["train_loss_first"])
    assert {"learning_rate", "eval_loss"} <= set(curve[1])
    assert (folder / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_progress_is_a_bar_with_loss_lr_and_tokens_per_second_on_a_terminal():
    import io
    from types import SimpleNamespace

    import torch

    from trainers.loop import StepTimes
    from trainers.progress import progress_callback

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen, times = Terminal(), StepTimes()
    bar = progress_callback("auto", times, screen)
    state = SimpleNamespace(is_world_process_zero=True, global_step=0, max_steps=4)
    bar.on_train_begin(None, state, None)
    for step in (1, 2):
        state.global_step = step
        times.count([{"attention_mask": torch.ones(2, 50, dtype=torch.long)}])  # 100 tokens
        times.step_seconds = 0.5 * step
        bar.on_step_end(None, state, None)
        bar.on_log(None, state, None, logs={"loss": 1.5, "learning_rate": 1e-4})
    bar.on_train_end(None, state, None)
    shown = screen.getvalue()
    assert "2/4" in shown and "loss=1.5000" in shown and "lr=1.00e-04" in shown
    assert "tok/s=200" in shown


def test_multimodal_adapter_loads_with_peft_autopeftmodel_from_the_store(
    omni_run, mm_store, monkeypatch
):
    from peft import AutoPeftModel

    folder = Path(omni_run["model_path"])
    config = json.loads((folder / "adapter_config.json").read_text())
    base = config["base_model_name_or_path"]
    assert base == os.path.relpath(folder / "base_model", mm_store) and not os.path.isabs(base)
    monkeypatch.chdir(mm_store)  # the documented call runs from the store folder
    model = AutoPeftModel.from_pretrained(os.path.relpath(folder, mm_store))
    assert type(model.get_base_model()).__name__ == "Qwen2_5OmniThinkerForConditionalGeneration"
    card = (folder / "README.md").read_text()
    assert "model = AutoPeftModel.from_pretrained('<this folder>')" in card


def test_model_card_names_base_task_licence_and_dataset_version(omni_run):
    card = (Path(omni_run["model_path"]) / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["pipeline_tag"] == "any-to-any" and front["datasets"] == ["mm@v1"]
    assert front["license"] == "other" and front["license_name"] == "unspecified"
    assert "base_model" not in front  # tiny-random has no hub id; the body says where it is
    result = front["model-index"][0]["results"][0]
    assert result["dataset"]["revision"] == omni_run["dataset"]["content_id"]


def test_merged_export_loads_alone_and_gives_the_logits_of_base_plus_adapter(
    omni_run, mm_store, tmp_path
):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from trainers.chat import ChatFormatter
    from trainers.collator import RolePlayCollator
    from trainers.data import RolePlayDataset, SplitReader
    from trainers.encoding import ConversationEncoder

    folder = omni_run["model_path"]
    out = tmp_path / "merged"
    result = CliRunner().invoke(app, ["export-model", folder, str(out), "--merge", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["merged"] is True
    names = set(os.listdir(out))
    assert {"model.safetensors", "config.json", "chat_template.jinja", "tokenizer.json"} <= names
    assert not {"adapter_config.json", "adapter_model.safetensors"} & names
    merged = AutoModelForImageTextToText.from_pretrained(out, use_safetensors=True).eval()
    processor = AutoProcessor.from_pretrained(out)
    base = AutoModelForImageTextToText.from_pretrained(os.path.join(folder, "base_model"))
    adapted = PeftModel.from_pretrained(base, folder).eval()
    store = Store(str(mm_store), "mm")
    reader = SplitReader(store.shard_paths(store.manifest(1), "test"))
    encoder = ConversationEncoder(processor, multimodal=True, max_length=512)
    test = RolePlayDataset("test", reader, ChatFormatter(TrainConfig().system_template), encoder)
    batch = RolePlayCollator(processor.tokenizer.pad_token_id)([test[0], test[1]])
    batch.pop("labels")
    assert "pixel_values" in batch and "input_features" in batch  # image and audio both used
    with torch.no_grad():
        torch.testing.assert_close(
            merged(**batch).logits, adapted(**batch).logits, atol=1e-4, rtol=1e-4
        )
    card = yaml.safe_load((out / "README.md").read_text().split("---\n")[1])
    assert card["library_name"] == "transformers" and "merged-lora" in card["tags"]


def test_qlora_on_a_machine_without_cuda_fails_in_one_line_before_any_run_folder(
    mm_store, tmp_path
):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    config = tmp_path / "q.yaml"
    config.write_text(yaml.safe_dump({"quantization_bit": 4, "max_steps": 1}))
    models = Path(mm_store, "mm", "models")
    before = set(os.listdir(models)) if models.is_dir() else set()
    args = ["train", "mm@v1", "--store", str(mm_store), "--config", str(config)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: quantization_bit: 4 (QLoRA)")
    assert (set(os.listdir(models)) if models.is_dir() else set()) == before
