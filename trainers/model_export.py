"""`roleforge export-model MODEL_DIR OUT [--merge]`: a trained run as a self-contained model folder.

`--merge` folds the LoRA adapter into the base weights (peft `merge_and_unload`) and
writes plain transformers safetensors, the processor and its chat template: OUT then
loads with `from_pretrained` alone and gives the logits base + adapter gave. Without
`--merge`, OUT holds the adapter, the processor and the card, with the adapter pointing
at the base's hub id (or, for tiny-random, at the base model copied into OUT/base_model).
MODEL_DIR may be a run folder on an object store (`s3://.../<name>/models/<run_id>`): it is
downloaded to a local folder first (trainers.mirror), once.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass

from trainers.config import TrainConfig
from trainers.mirror import COMPLETE_FILE
from trainers.presets import built_model
from trainers.run import BASE_DIR, RUN_FILE

_RUN_ONLY = {"checkpoints", "tensorboard", "base_model", "ray", RUN_FILE, COMPLETE_FILE}


class ModelExportError(ValueError):
    """MODEL_DIR is not a finished roleforge run, or OUT is not empty."""


@dataclass
class ModelExport:
    """What export-model wrote."""

    out: str
    merged: bool
    base_model: str
    files: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def _run_info(model_dir: str) -> dict:
    try:
        with open(os.path.join(model_dir, RUN_FILE), encoding="utf-8") as f:
            info = json.load(f)
    except FileNotFoundError:
        raise ModelExportError(
            f"{model_dir} is not a roleforge model folder (no {RUN_FILE})"
        ) from None
    if info.get("status") != "done":
        raise ModelExportError(f"run {model_dir} has not finished (status {info.get('status')!r})")
    return info


def base_model_of(model_dir: str, info: dict) -> str:
    """Return where the run's base model is now: its saved copy for a built model, else its id."""
    cfg = TrainConfig.model_validate(info["config"])
    local = os.path.join(model_dir, BASE_DIR)
    return local if built_model(cfg.model) is not None else info["base_model"]


def local_model_dir(model_dir: str) -> str:
    """Return a local folder holding the run `model_dir` names: itself when local, else its
    download from the object store (`<store>/<name>/models/<run_id>`)."""
    from pipeline.store.fs import OBJECT_SCHEMES
    from pipeline.store.read import Store
    from trainers.mirror import ModelMirror, UnfinishedModel

    scheme = model_dir.split("://", 1)[0] if "://" in model_dir else None
    if scheme not in OBJECT_SCHEMES:
        return model_dir
    parts = model_dir.rstrip("/").rsplit("/", 3)
    if len(parts) != 4 or parts[2] != "models" or "://" not in parts[0]:
        raise ModelExportError(
            f"{model_dir} is not a model folder of a store (<store>/<name>/models/<run_id>)"
        )
    store_uri, name, _, run_id = parts
    store = Store(store_uri, name)
    if not store.fs.is_file(os.path.join(store.models_dir(run_id), RUN_FILE)):
        raise ModelExportError(f"{model_dir} is not a roleforge model folder (no {RUN_FILE})")
    try:
        return ModelMirror(store).fetch(run_id)
    except UnfinishedModel as exc:
        raise ModelExportError(str(exc)) from None


def export_model(model_dir: str, out: str, merge: bool = False) -> ModelExport:
    """Write the run in `model_dir` to `out` (merged weights when `merge`); return what was written."""
    model_dir = local_model_dir(model_dir)
    info = _run_info(model_dir)
    if os.path.isdir(out) and os.listdir(out):
        raise ModelExportError(f"output folder {out} is not empty")
    cfg = TrainConfig.model_validate(info["config"])
    base = base_model_of(model_dir, info)
    os.makedirs(out, exist_ok=True)
    if cfg.lora is not None and merge:
        _write_merged(model_dir, base, cfg, out)
    else:
        _copy_run(model_dir, out)
        if cfg.lora is not None and built_model(cfg.model) is not None:
            shutil.copytree(os.path.join(model_dir, BASE_DIR), os.path.join(out, BASE_DIR))
    if os.path.exists(os.path.join(out, "adapter_config.json")):
        from trainers.run import portable_adapter_config

        reference = BASE_DIR if built_model(cfg.model) is not None else cfg.model
        portable_adapter_config(out, reference)
    _card_for(out, merged=cfg.lora is not None and merge)
    return ModelExport(
        out=out,
        merged=cfg.lora is not None and merge,
        base_model=cfg.model,
        files=sorted(os.listdir(out)),
    )


def _write_merged(model_dir: str, base: str, cfg: TrainConfig, out: str) -> None:
    from trainers.run import load_trained

    model, processor, _ = load_trained(model_dir, base, cfg)
    merged = model.merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)  # includes the chat template the model was trained with
    for name in ("eval.json", "eval.md", "README.md", "training_curve.json", "training_curve.png"):
        if os.path.exists(os.path.join(model_dir, name)):
            shutil.copy2(os.path.join(model_dir, name), os.path.join(out, name))


def _copy_run(model_dir: str, out: str) -> None:
    for name in os.listdir(model_dir):
        if name in _RUN_ONLY or name.endswith(".tmp"):
            continue
        src = os.path.join(model_dir, name)
        if os.path.isfile(src):
            shutil.copy2(src, os.path.join(out, name))


def _card_for(out: str, merged: bool) -> None:
    """Mark a merged model's copied card as plain transformers weights."""
    path = os.path.join(out, "README.md")
    if not merged or not os.path.exists(path):
        return
    from huggingface_hub import ModelCard

    card = ModelCard.load(path)
    card.data.library_name = "transformers"
    card.data.tags = [t for t in (card.data.tags or []) if t != "lora"] + ["merged-lora"]
    card.text = (
        card.text
        + "\n## Merged export\n\nThe LoRA adapter is merged into the base weights: load this "
        "folder with `from_pretrained` alone (no peft); the adapter-loading lines above apply "
        "to the training run's folder.\n"
    )
    card.save(path)
