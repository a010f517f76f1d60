"""The model registry and its promotion pointer: lineage, crash safety, concurrency, rollback.

Models here are run folders with a run.json and eval.json, as the training stage leaves
them; no weights are needed to test the protocol.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.store.atomic import FAULT_ENV, InjectedFault
from pipeline.store.read import Store
from trainers.registry import (
    FAULT_POINTS,
    ModelRegistry,
    NothingToRollBack,
    PromotionConflict,
    UnknownModel,
)

ROOT = Path(__file__).resolve().parents[2]


def make_model(store: Path, model_id: str, version: int = 1, status: str = "done", **info) -> str:
    """Write a finished run folder of dataset `ds` with a test loss; return its id."""
    folder = store / "ds" / "models" / model_id
    folder.mkdir(parents=True)
    run = {
        "run_id": model_id,
        "created": time.time(),
        "dataset": {"name": "ds", "version": version, "content_id": f"c{version}" * 8},
        "config": {"model": "tiny-random", "lora": {"r": 8}},
        "base_model": str(folder / "base_model"),
        "keep_media": [],
        "status": status,
        **info,
    }
    (folder / "run.json").write_text(json.dumps(run))
    (folder / "eval.json").write_text(json.dumps({"loss": 1.5, "replies": [{"reply": "x"}]}))
    return model_id


@pytest.fixture
def store(tmp_path: Path) -> Path:
    for name in ("a", "b", "c"):
        make_model(tmp_path, name)
    return tmp_path


def registry(store: Path) -> ModelRegistry:
    return ModelRegistry(Store(str(store), "ds"))


def promoted_rows(store: Path) -> list[str]:
    """Return the ids the `models --json` listing marks promoted."""
    out = CliRunner().invoke(app, ["models", "ds", "--store", str(store), "--json"])
    assert out.exit_code == 0, out.output
    return [m["id"] for m in json.loads(out.stdout)["models"] if m["promoted"]]


def test_models_list_lineage_and_metrics_without_the_replies(store: Path) -> None:
    make_model(store, "d", version=2, init={"model_id": "a", "path": "p", "base_model": "b"})
    make_model(store, "unfinished", status="training")
    entries = {e.id: e for e in registry(store).models()}
    assert set(entries) == {"a", "b", "c", "d"}  # an unfinished run is not a model yet
    assert entries["d"].dataset["version"] == 2 and entries["d"].init == "a"
    assert entries["a"].init is None and entries["a"].base_model == "tiny-random"
    assert entries["a"].eval == {"loss": 1.5}


def test_nothing_is_promoted_until_the_first_promotion_which_starts_the_history(
    store: Path,
) -> None:
    reg = registry(store)
    assert reg.pointer() is None and promoted_rows(store) == []
    pointer = reg.promote("a", "first", expected=None)
    assert (pointer.model_id, pointer.generation) == ("a", 1)
    assert [(e.action, e.model_id, e.previous) for e in pointer.history] == [("promote", "a", None)]
    assert promoted_rows(store) == ["a"]


def test_promoting_against_a_model_that_is_no_longer_promoted_is_refused(store: Path) -> None:
    reg = registry(store)
    reg.promote("a", "first")
    reg.promote("b", "second", expected="a")
    with pytest.raises(PromotionConflict) as refused:
        reg.promote("c", "compared against a", expected="a")
    assert refused.value.current == "b"
    assert reg.pointer().model_id == "b" and reg.pointer().generation == 2
    with pytest.raises(PromotionConflict):
        reg.confirm("a")  # a refusal against a stale model is not a decision either
    assert reg.confirm("b").model_id == "b"


def test_only_finished_models_of_this_dataset_can_be_promoted(store: Path) -> None:
    make_model(store, "unfinished", status="training")
    reg = registry(store)
    for bad in ("unfinished", "nope", "../ds", ""):
        with pytest.raises(UnknownModel, match="models: a, b, c"):
            reg.promote(bad, "by hand")
    assert reg.pointer() is None


def test_rollback_returns_to_each_earlier_model_in_turn_and_keeps_the_history(
    store: Path,
) -> None:
    reg = registry(store)
    for name in ("a", "b", "c"):
        reg.promote(name, f"promote {name}")
    assert reg.rollback().model_id == "b"
    assert reg.rollback().model_id == "a"
    with pytest.raises(NothingToRollBack):
        reg.rollback()
    pointer = reg.pointer()
    assert pointer.generation == 5
    assert [(e.action, e.model_id) for e in pointer.history] == [
        ("promote", "a"),
        ("promote", "b"),
        ("promote", "c"),
        ("rollback", "b"),
        ("rollback", "a"),
    ]
    # A promotion after rollbacks pushes on what is in force now.
    reg.promote("c", "again")
    assert reg.rollback().model_id == "a"


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_a_crash_at_each_promotion_step_leaves_exactly_one_promoted_model(
    store: Path, point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = registry(store)
    reg.promote("a", "first")
    monkeypatch.setenv(FAULT_ENV, point)
    with pytest.raises(InjectedFault):
        reg.promote("b", "crashes", expected="a")
    monkeypatch.delenv(FAULT_ENV)
    after_commit = FAULT_POINTS.index(point) >= FAULT_POINTS.index("promote_replaced")
    assert promoted_rows(store) == (["b"] if after_commit else ["a"])
    # The next writer is not blocked by the crash and clears what it left behind.
    reg.promote("c", "next", expected="b" if after_commit else "a")
    assert promoted_rows(store) == ["c"]
    assert not list((store / "ds" / "models").glob("PROMOTED.tmp-*"))


_PROMOTE = """
import sys
from pipeline.store.read import Store
from trainers.registry import ModelRegistry
ModelRegistry(Store(sys.argv[1], "ds")).promote(sys.argv[2], "in a child", expected=sys.argv[3])
"""


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_a_process_killed_at_each_promotion_step_leaves_one_readable_pointer(
    store: Path, point: str
) -> None:
    registry(store).promote("a", "first")
    env = {**os.environ, FAULT_ENV: f"kill:{point}"}
    child = subprocess.run(
        [sys.executable, "-c", _PROMOTE, str(store), "b", "a"], cwd=ROOT, env=env, check=False
    )
    assert child.returncode == -9  # SIGKILL: no exception handler, no cleanup ran
    after_commit = FAULT_POINTS.index(point) >= FAULT_POINTS.index("promote_replaced")
    assert promoted_rows(store) == (["b"] if after_commit else ["a"])
    # The dead process held the lock; the OS released it, so this does not wait.
    registry(store).promote("c", "next")
    assert promoted_rows(store) == ["c"]


_RACE = """
import os, sys, time
from pipeline.store.read import Store
from trainers.registry import ModelRegistry, PromotionConflict
store, me, ready = sys.argv[1], sys.argv[2], sys.argv[3]
reg = ModelRegistry(Store(store, "ds"))
seen = reg.pointer().model_id          # what this "retrain" compared against
open(os.path.join(ready, me), "w").close()
while len(os.listdir(ready)) < 2:      # both have compared before either promotes
    time.sleep(0.01)
try:
    reg.promote(me, "won", expected=seen)
    print("promoted")
except PromotionConflict as exc:
    print("conflict", exc.current)
"""


def test_two_processes_promoting_against_the_same_model_cannot_both_win(
    store: Path, tmp_path: Path
) -> None:
    registry(store).promote("a", "first")
    ready = tmp_path / "ready"
    ready.mkdir()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _RACE, str(store), me, str(ready)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for me in ("b", "c")
    ]
    outputs = {
        me: child.communicate(timeout=120)[0].split()
        for me, child in zip("bc", children, strict=True)
    }
    winners = [me for me, out in outputs.items() if out == ["promoted"]]
    assert len(winners) == 1
    loser = "c" if winners == ["b"] else "b"
    assert outputs[loser] == ["conflict", winners[0]]  # the loser saw the winner's result
    pointer = registry(store).pointer()
    assert pointer.model_id == winners[0] and pointer.generation == 2


def test_promote_and_rollback_commands(store: Path) -> None:
    runner = CliRunner()
    base = ["--store", str(store)]
    for name in ("a", "b"):
        out = runner.invoke(app, ["promote", "ds", name, *base])
        assert out.exit_code == 0, out.output
    assert "promote -> b (was a; generation 2)" in out.stdout
    out = runner.invoke(app, ["promote", "ds", "--rollback", *base])
    assert out.exit_code == 0 and "rollback -> a (was b; generation 3)" in out.stdout
    assert promoted_rows(store) == ["a"]
    out = runner.invoke(app, ["promote", "ds", "zz", *base])
    assert out.exit_code == 1 and "'zz' is not a finished model" in out.output
    out = runner.invoke(app, ["promote", "ds", "a", "--rollback", *base])
    assert out.exit_code == 2
    table = runner.invoke(app, ["models", "ds", *base])
    assert table.exit_code == 0 and "promoted: a (generation 3)" in table.stdout


def _scored(model_id: str | None, loss: float):
    from types import SimpleNamespace

    from trainers.comparison import EvalProtocol, EvalSet, Scored
    from trainers.config import TrainConfig

    test = [SimpleNamespace(path="t", split="test", rows=2, sha256="t1")]
    manifest = SimpleNamespace(name="ds", version=1, number=1, content_id="c", shards=test)
    eval_set = EvalSet.of(manifest)
    protocol = EvalProtocol.of(TrainConfig(), [])
    # Four test conversations around `loss`, for the paired comparison.
    per_sample = {
        f"r{i}": {"loss": loss + d, "tokens": 5} for i, d in enumerate((-0.1, 0, 0.05, 0.1))
    }
    return Scored(
        model_id, f"/m/{model_id}", eval_set, protocol, {"loss": loss, "per_sample": per_sample}
    )


def test_a_retrain_that_lost_the_race_compares_again_with_the_winner(store: Path) -> None:
    from trainers.promotion import decide_and_promote

    reg = registry(store)
    reg.promote("a", "first")
    losses = {"a": 2.0, "b": 1.0, "c": 1.5}
    compared = []

    def baseline_of(model_id):
        compared.append(model_id)
        if len(compared) == 1:  # another retrain promotes b while this one compares with a
            reg.promote("b", "the other retrain", expected="a")
        return _scored(model_id, losses[model_id])

    outcome = decide_and_promote(reg, _scored("c", 1.5), baseline_of, {"eval_loss": 0.0}, "a")
    # c beats a but not b: it is compared with b before anything is decided, and refused.
    assert compared == ["a", "b"] and outcome.rounds == 2
    assert not outcome.decision.promote and outcome.baseline.model_id == "b"
    assert reg.pointer().model_id == "b"


def test_a_retrain_that_won_promotes_with_the_generation_it_compared_against(
    store: Path,
) -> None:
    from trainers.promotion import decide_and_promote

    reg = registry(store)
    outcome = decide_and_promote(
        reg, _scored("b", 1.0), lambda m: _scored(m, 2.0), {"eval_loss": 0.0}, None
    )
    assert outcome.decision.promote and outcome.pointer.model_id == "b"
    assert outcome.decision.against == "base" and outcome.rounds == 1


def test_retrain_of_a_recipe_without_training_fails_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text("")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: ds\nsources: [{name: s, path: d.jsonl}]\n")
    out = CliRunner().invoke(app, ["retrain", str(recipe)])
    assert out.exit_code == 2 and "train: retrain needs a train: section" in out.output
