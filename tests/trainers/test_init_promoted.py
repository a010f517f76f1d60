"""`train.init: promoted`, held-out discipline and scoring saved models on a test split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.store.read import Store
from tests.trainers.conftest import standard_records, write_version
from trainers import train_version
from trainers.config import TrainConfig
from trainers.heldout import HeldOutScorer
from trainers.registry import CannotContinue, ModelRegistry

CONFIG = {
    "model": "tiny-random",
    "lora": {"r": 4},
    "max_steps": 3,
    "batch_size": 4,
    "learning_rate": 0.05,
    "max_length": 512,
    "eval_steps": 2,
    "eval_prompts": 1,
    "max_new_tokens": 4,
}


def _adapter(folder: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def promoted(tmp_path_factory) -> tuple[Path, str]:
    """A store `mm` with v1 and a first model trained on it and promoted."""
    store = tmp_path_factory.mktemp("init-store")
    write_version(store, "mm", standard_records())
    result = train_version(str(store), "mm", 1, TrainConfig(**CONFIG))
    ModelRegistry(Store(str(store), "mm")).promote(result.run_id, "first", expected=None)
    return store, result.run_id


def test_init_promoted_continues_from_the_promoted_adapter_on_its_base(promoted) -> None:
    store, first = promoted
    # A learning rate this small leaves the weights where training started.
    cfg = TrainConfig(**{**CONFIG, "init": "promoted", "max_steps": 1, "learning_rate": 1e-12})
    second = train_version(str(store), "mm", 1, cfg)
    run = json.loads(Path(second.model_path, "run.json").read_text())
    first_run = json.loads((store / "mm" / "models" / first / "run.json").read_text())
    assert run["init"]["model_id"] == first and run["init"]["adapter"] is True
    assert run["base_model"] == first_run["base_model"]  # the same tokenizer and base weights
    before = _adapter(str(store / "mm" / "models" / first))
    after = _adapter(second.model_path)
    lora_b = [k for k in before if "lora_B" in k]
    assert lora_b and all(before[k].abs().sum() > 0 for k in lora_b)  # a fresh init is zeros
    for key, tensor in before.items():
        assert after[key].allclose(tensor, atol=1e-6), key
    entry = ModelRegistry(Store(str(store), "mm")).get(second.run_id)
    assert entry.init == first


def test_init_promoted_refuses_a_promoted_model_of_another_shape(promoted) -> None:
    store, _ = promoted
    registry = ModelRegistry(Store(str(store), "mm"))
    with pytest.raises(CannotContinue, match="r=4, the recipe asks r=8"):
        registry.initial_weights(TrainConfig(**{**CONFIG, "init": "promoted", "lora": {"r": 8}}))
    with pytest.raises(CannotContinue, match="is a LoRA adapter"):
        registry.initial_weights(TrainConfig(**{**CONFIG, "init": "promoted", "lora": None}))
    assert registry.initial_weights(TrainConfig(**CONFIG)) is None  # init: base


def test_without_a_promoted_model_init_promoted_starts_from_the_base(tmp_path: Path) -> None:
    write_version(tmp_path, "mm", standard_records())
    cfg = TrainConfig(**{**CONFIG, "init": "promoted"})
    assert ModelRegistry(Store(str(tmp_path), "mm")).initial_weights(cfg) is None


def test_validation_picks_the_checkpoint_and_training_never_reads_the_test_split(
    tmp_path: Path,
) -> None:
    from trainers.loop import TrainJob, TrainLoop

    write_version(tmp_path, "mm", standard_records())
    store = Store(str(tmp_path), "mm")
    manifest = store.manifest(1)
    base = train_version(str(tmp_path), "mm", 1, TrainConfig(**CONFIG))
    job_args = json.loads(Path(base.model_path, "run.json").read_text())

    job = TrainJob(
        run_dir=str(tmp_path / "session"),
        base_model=job_args["base_model"],
        shards={
            "train": store.shard_paths(manifest, "train"),
            "validation": store.shard_paths(manifest, "validation"),
            "test": [str(tmp_path / "no-such-test-shard.arrow")],  # opening it would fail
        },
        config=TrainConfig(**CONFIG).model_dump(mode="json"),
        seed=0,
        keep_media=job_args["keep_media"],
    )
    session = TrainLoop(job)
    args = session.training_args()
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss"
    summary = session.run()  # trains, evaluates on validation, keeps the best: no test read
    best = min(summary["eval_losses"], key=lambda e: e["eval_loss"])
    assert summary["best_checkpoint"].endswith(f"checkpoint-{best['step']}")


def test_a_model_is_rescored_on_another_test_split_and_the_score_is_kept(promoted) -> None:
    store, first = promoted
    s = Store(str(store), "mm")
    registry = ModelRegistry(s)
    entry = registry.get(first)
    cfg = TrainConfig(**CONFIG)
    own = HeldOutScorer(s, s.manifest(1), cfg, entry.keep_media()).trained(entry)
    assert not own.reevaluated and own.evaluation["loss"] == entry.eval["loss"]

    write_version(store, "mm", standard_records(test=5), version=2)  # two more test rows
    scorer = HeldOutScorer(s, s.manifest(2), cfg, entry.keep_media())
    rescored = scorer.trained(entry)
    assert rescored.reevaluated and rescored.eval_set.version == 2
    assert rescored.evaluation["samples"] == 5 and rescored.eval_set.rows == 5
    assert list(Path(entry.path, "evals").glob("*.json"))
    again = scorer.trained(entry)  # from the kept file, the same numbers
    assert again.evaluation["loss"] == rescored.evaluation["loss"]
    untrained = scorer.untrained(entry)
    assert untrained.model_id is None and untrained.evaluation["samples"] == 5
