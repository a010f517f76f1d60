"""`roleforge retrain` end to end on a tiny corpus and the tiny-random model.

One sequence, in order: the first retrain promotes over the untrained base; a second with a
source added makes v2, continues from the promoted model and compares on v2's test split
(re-evaluating the promoted model there); a third on unchanged inputs skips the data job and,
trained to diverge, is refused with exit 4 while the promoted model stays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.store.read import Store
from tests.fixtures.corpus import write_jsonl
from tests.pipeline.execution.datajob_corpus import AUGMENT, write_corpus
from trainers.comparison import EvalSet
from trainers.registry import ModelRegistry

pytestmark = pytest.mark.usefixtures("ray_session")

TRAIN = {
    "model": "tiny-random",
    "lora": {"r": 4},
    "max_steps": 4,
    "batch_size": 4,
    "learning_rate": 0.05,
    "max_length": 256,
    "eval_steps": 2,
    "eval_prompts": 2,
    "max_new_tokens": 4,
    "init": "promoted",
    "promote_if": {"eval_loss": 0.0, "ai_exposure_rate": 0.0},
}
SUMMARY_KEYS = {"dataset", "model", "baseline", "promoted", "case", "reason", "report"}


def _recipe(folder: Path, name: str, more: bool = False, **train: Any) -> Path:
    sources = [{"name": "tiny", "path": "dialogues.jsonl", "characters": "characters.jsonl"}]
    if more:
        sources.append({"name": "more", "path": "more.jsonl", "characters": "characters.jsonl"})
    data = {
        "name": "tiny",
        "store": "store",
        "cards_dir": "cards",
        "seed": 7,
        "sources": sources,
        "split": {"by": "conversation", "validation": 0.2, "test": 0.2},
        "augment": AUGMENT,
        "execution": {"batch_size": 4},
        "max_bad_fraction": 0.1,
        "train": {**TRAIN, **train},
    }
    path = folder / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def _retrain(recipe: Path) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["retrain", str(recipe), "--json"])
    assert result.exit_code in (0, 4), result.output
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("retrain")
    write_corpus(folder)
    more = [
        {
            "character": "Vela",
            "messages": [
                {"role": "user", "content": f"New question {i} about the cloud lanes?"},
                {"role": "assistant", "content": f"New answer {i}: trust the sky."},
            ],
        }
        for i in range(14)
    ]
    write_jsonl(folder / "more.jsonl", more)
    out: dict[str, Any] = {"store": Store(str(folder / "store"), "tiny")}
    out["first"] = _retrain(_recipe(folder, "first.yaml"))
    out["second"] = _retrain(_recipe(folder, "second.yaml", more=True))
    # Unchanged inputs, a fresh start and a learning rate that wrecks the model.
    diverging = _recipe(folder, "third.yaml", more=True, init="base", learning_rate=50.0)
    out["third"] = _retrain(diverging)
    return out


def test_the_first_retrain_promotes_a_model_that_beats_the_untrained_base(runs) -> None:
    code, first = runs["first"]
    assert set(first) == SUMMARY_KEYS
    assert code == 0 and first["promoted"] is True
    assert first["baseline"]["id"] is None  # the untrained base model
    assert first["model"]["eval"]["loss"] < first["baseline"]["eval"]["loss"]
    assert first["dataset"]["version"] == 1
    assert first["dataset"]["reused"] == 0 and first["dataset"]["computed"] > 0
    assert first["reason"].startswith("significantly better than the untrained base model")
    assert first["case"] == "significantly better"


def test_a_second_retrain_on_more_data_continues_and_compares_on_the_new_test_split(
    runs,
) -> None:
    store = runs["store"]
    (_, first), (code, second) = runs["first"], runs["second"]
    assert second["dataset"]["version"] == 2
    # The record cache: the first run's records are reused, the added ones computed.
    assert second["dataset"]["reused"] > 0 and second["dataset"]["computed"] > 0
    assert second["baseline"]["id"] == first["model"]["id"]
    report = json.loads(Path(second["report"]).with_suffix(".json").read_text())
    assert report["training"]["init"] == first["model"]["id"]
    assert report["dataset"]["diff"]["added"] > 0
    v1, v2 = EvalSet.of(store.manifest(1)), EvalSet.of(store.manifest(2))
    assert v1.sha256 != v2.sha256  # new conversations reached the test split
    # The promoted model's numbers are from v2's test rows, not its own v1 evaluation.
    assert report["baseline"]["reevaluated"] is True
    assert report["baseline"]["eval_set"]["version"] == 2
    assert report["model"]["eval_set"] == report["baseline"]["eval_set"]
    assert report["baseline"]["eval"]["samples"] == v2.rows
    assert (code == 0) == second["promoted"]
    promoted = ModelRegistry(store).pointer().model_id
    assert promoted == (second["model"]["id"] if second["promoted"] else first["model"]["id"])


def test_a_worse_model_is_refused_with_exit_4_and_the_promoted_one_stays(runs) -> None:
    store = runs["store"]
    code, third = runs["third"]
    assert code == 4 and third["promoted"] is False
    assert "eval_loss" in third["reason"] and "over the tolerance" in third["reason"]
    # Inputs, recipe and code equal v2's: no new version, every original reused.
    assert third["dataset"]["version"] == 2
    assert third["dataset"]["computed"] == 0 and third["dataset"]["reused"] > 0
    registry = ModelRegistry(store)
    assert registry.pointer().model_id == third["baseline"]["id"] != third["model"]["id"]
    listing = CliRunner().invoke(app, ["models", "tiny", "--store", store.uri, "--json"])
    models = json.loads(listing.stdout)["models"]
    assert len(models) == 3 and sum(m["promoted"] for m in models) == 1


def test_each_retrain_writes_a_report_with_the_curve_the_test_set_and_the_decision(
    runs,
) -> None:
    _, third = runs["third"]
    folder = Path(third["report"]).parent
    report = json.loads((folder / "report.json").read_text())
    markdown = (folder / "report.md").read_text()
    assert (folder / "training_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "![training curve](training_curve.png)" in markdown
    assert "Decision: **not promoted**" in markdown
    assert "tiny@v2 `test`" in markdown  # which test set both models were scored on
    assert report["held_out"]["checkpoint_chosen_by"] == "validation eval_loss"
    assert report["dataset"]["data_job"] == "skipped"
    assert {d["metric"] for d in report["decision"]["deltas"]} == {"eval_loss", "ai_exposure_rate"}
    assert set(report["decision"]["per_character"]) <= {"Vela", "Hootsworth", "Marlowe", "Pip"}
