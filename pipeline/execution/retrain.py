"""`roleforge retrain`: new data in, a compared and (maybe) promoted model out, with lineage.

1. the data job: a new version, or the latest one when the recipe's inputs (media included),
   recipe hash and code version equal the ones it was built from (then no stage runs: the
   data job finds that before any work);
2. fine-tune on it, from the base model or (`train.init: promoted`) the promoted weights;
   the validation split picks the checkpoint, the test split is not read during training;
3. score the new model and the baseline (the promoted model, or the untrained base for a
   dataset's first model) on the same test split under the same protocol, re-evaluating
   the baseline when its numbers came from other rows;
4. promote by compare-and-swap on the registry pointer when the new model passes every rule
   of `train.promote_if` (tolerances, paired significance); if another run promoted
   meanwhile, compare again against that model; otherwise keep the old one (the CLI exits 4);
5. write report.json and report.md (with the training curve) into the new model's folder.

On an object store the model folders are worked on and loaded in local folders and
uploaded through the store's filesystem (trainers.mirror); the report files are written
in the run's local folder and uploaded after it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.execution.job import RecordReuse, RunProgress, run_recipe
from pipeline.recipe import Recipe
from pipeline.record.config import RecipeError
from pipeline.store.manifest import Manifest
from pipeline.store.read import Store
from pipeline.store.store_fs import store_fs

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
CURVE_PNG = "training_curve.png"


@dataclass(frozen=True)
class DatasetOutcome:
    """The version a retrain trained on, how it was reached, and what changed in it."""

    name: str
    version: int
    content_id: str
    parent_version: int | None
    new_version: bool  # False: the latest version already held this data
    data_job: str  # "ran" or "skipped" (inputs, recipe and code equal the latest version's)
    reuse: RecordReuse
    splits: dict[str, int]
    diff: dict[str, Any] | None  # against the previous version, when this run made a new one

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "content_id": self.content_id,
            "parent_version": self.parent_version,
            "new_version": self.new_version,
            "data_job": self.data_job,
            **self.reuse.to_dict(),
            "splits": self.splits,
            "diff": self.diff,
        }


@dataclass(frozen=True)
class TrainingOutcome:
    """What training did: steps, the curve, the validation-chosen checkpoint, the init."""

    run_id: str
    path: str  # the model folder as a user names it (a local path or s3://...)
    init: str | None  # None: the base model; else the model id it continued
    global_step: int
    losses: list[dict[str, float]]
    eval_losses: list[dict[str, float]]
    best_checkpoint: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "path": self.path,
            "init": self.init or "base",
            "global_step": self.global_step,
            "best_checkpoint": self.best_checkpoint,
            "losses": self.losses,
            "eval_losses": self.eval_losses,
        }


@dataclass
class RetrainReport:
    """Everything a retrain decided, and the numbers it decided on."""

    dataset: DatasetOutcome
    training: TrainingOutcome
    model: Any  # trainers.comparison.Scored
    baseline: Any  # trainers.comparison.Scored (model_id None: the untrained base)
    decision: Any  # trainers.comparison.Decision
    promoted: bool
    generation: int | None  # the pointer generation after the decision (None: nothing promoted)
    compare_rounds: int
    seconds: dict[str, float] = field(default_factory=dict)
    report_path: str = ""

    def summary(self) -> dict[str, Any]:
        """Return the `roleforge retrain --json` object."""
        d = self.dataset
        return {
            "dataset": {
                "version": d.version,
                "content_id": d.content_id,
                "reused": d.reuse.reused,
                "computed": d.reuse.computed,
            },
            "model": _model_brief(self.model),
            "baseline": _model_brief(self.baseline),
            "promoted": self.promoted,
            "case": self.decision.case,
            "reason": self.decision.reason,
            "report": self.report_path,
        }

    def to_dict(self) -> dict[str, Any]:
        """Return report.json: the summary's facts in full."""
        return {
            "dataset": self.dataset.to_dict(),
            "training": self.training.to_dict(),
            "model": self.model.to_dict(),
            "baseline": self.baseline.to_dict(),
            "decision": self.decision.to_dict(),
            "promoted": self.promoted,
            "pointer_generation": self.generation,
            "compare_rounds": self.compare_rounds,
            "held_out": {
                "checkpoint_chosen_by": "validation eval_loss"
                if self.training.eval_losses
                else "last step (no validation evaluation: set train.eval_steps)",
                "test_split_read_by": ["final evaluation", "comparison"],
            },
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "replies": {"new": list(self.model.replies), "baseline": list(self.baseline.replies)},
        }


def _relative(path: str | None, folder: str) -> str | None:
    return os.path.relpath(path, folder) if path else None


def _model_brief(scored: Any) -> dict[str, Any]:
    return {"id": scored.model_id, "path": scored.path, "eval": scored.evaluation}


class RetrainJob:
    """One retrain of a recipe; `run()` returns the report (already written to disk)."""

    def __init__(self, recipe: Recipe, progress: RunProgress | None = None):
        if recipe.train is None:
            raise RecipeError("train: retrain needs a train: section in the recipe")
        self.recipe = recipe
        self.cfg = recipe.train
        self.progress = progress
        fs, self.store_path = store_fs(recipe.store_uri, **recipe.store_options.fs_kwargs())
        self.store = Store(self.store_path, recipe.name, fs)
        self.seconds: dict[str, float] = {}

    def run(self) -> RetrainReport:
        from pipeline.record.ids import new_run_id
        from trainers.pending import comparison_pending
        from trainers.registry import ModelRegistry

        dataset = self._timed("data", self._data)
        registry = ModelRegistry(self.store)
        pointer = registry.pointer()
        run_id = new_run_id()
        # Until the report is written, a death leaves the model marked as never compared.
        with comparison_pending(self.store, run_id):
            training = self._timed("train", lambda: self._train(dataset, run_id))
            entry = registry.get(training.run_id)
            manifest = self.store.manifest(dataset.version)
            report = self._timed(
                "compare",
                lambda: self._decide(registry, entry, manifest, pointer, dataset, training),
            )
            self._write(report)
        return report

    def _timed(self, phase: str, fn: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn()
        finally:
            self.seconds[phase] = time.perf_counter() - started

    # ---- 1. data ----

    def _data(self) -> DatasetOutcome:
        result = run_recipe(self.recipe, self.progress)
        manifest = self.store.manifest(result.version)
        data_job = "skipped" if result.stages_skipped else "ran"
        return self._outcome(manifest, not result.unchanged, data_job, result.reuse)

    def _outcome(
        self, manifest: Manifest, new_version: bool, data_job: str, reuse: RecordReuse
    ) -> DatasetOutcome:
        from pipeline.store.diff import diff_versions

        parent = manifest.parent_version
        diff = None
        if new_version and parent is not None:
            diff = diff_versions(self.store, parent, manifest.number).summary()
        return DatasetOutcome(
            name=self.recipe.name,
            version=manifest.number,
            content_id=manifest.content_id,
            parent_version=parent,
            new_version=new_version,
            data_job=data_job,
            reuse=reuse,
            splits=dict(manifest.splits),
            diff=diff,
        )

    # ---- 2. train ----

    def _train(self, dataset: DatasetOutcome, run_id: str) -> TrainingOutcome:
        from trainers import train_version

        result = train_version(
            self.store, self.recipe.name, dataset.version, self.cfg, self.recipe.seed, run_id=run_id
        )
        with open(os.path.join(result.work_dir, "train_summary.json"), encoding="utf-8") as f:
            summary = json.load(f)
        with open(os.path.join(result.work_dir, "run.json"), encoding="utf-8") as f:
            init = json.load(f).get("init")
        return TrainingOutcome(
            run_id=result.run_id,
            path=result.model_path,
            init=init["model_id"] if init else None,
            global_step=result.global_step,
            losses=summary.get("losses") or [],
            eval_losses=summary.get("eval_losses") or [],
            best_checkpoint=_relative(summary.get("best_checkpoint"), result.work_dir),
        )

    # ---- 3 and 4. compare, promote ----

    def _decide(
        self,
        registry: Any,
        entry: Any,
        manifest: Manifest,
        pointer: Any,
        dataset: DatasetOutcome,
        training: TrainingOutcome,
    ) -> RetrainReport:
        from trainers.heldout import HeldOutScorer
        from trainers.promotion import decide_and_promote

        scorer = HeldOutScorer(self.store, manifest, self.cfg, entry.keep_media())
        judged = self._judged()

        def baseline_of(model_id: str | None) -> Any:
            if model_id is None:
                return judged(scorer.untrained(entry))
            return judged(scorer.trained(registry.get(model_id)))

        new = judged(scorer.trained(entry))
        outcome = decide_and_promote(
            registry,
            new,
            baseline_of,
            self.cfg.promote_if,
            pointer.model_id if pointer else None,
        )
        return RetrainReport(
            dataset=dataset,
            training=training,
            model=new,
            baseline=outcome.baseline,
            decision=outcome.decision,
            promoted=outcome.decision.promote,
            generation=outcome.pointer.generation if outcome.pointer else None,
            compare_rounds=outcome.rounds,
            seconds=self.seconds,
        )

    def _judged(self) -> Any:
        """Return a function adding the recipe's LLM-judge scores (eval.judge) to a Scored;
        the identity without a judge."""
        judge_cfg = self.recipe.eval.judge if self.recipe.eval else None
        if judge_cfg is None:
            return lambda scored: scored
        from dataclasses import replace

        from trainers.judge import Judge

        judge = Judge(judge_cfg)

        def judged(scored: Any) -> Any:
            block = judge.judge(list(scored.replies))
            return replace(scored, evaluation={**scored.evaluation, "judge": block})

        return judged

    # ---- 5. report ----

    def _write(self, report: RetrainReport) -> None:
        from pipeline.execution.retrain_report import plot_training_curve, report_markdown
        from trainers.loop import write_json
        from trainers.mirror import ModelMirror

        mirror = ModelMirror(self.store)
        run_id = report.training.run_id
        folder = mirror.run_dir(run_id)
        curve = plot_training_curve(report.training, os.path.join(folder, CURVE_PNG))
        report.report_path = mirror.location(os.path.join(mirror.store_dir(run_id), REPORT_MD))
        write_json(os.path.join(folder, REPORT_JSON), report.to_dict())
        with open(os.path.join(folder, REPORT_MD), "w", encoding="utf-8") as f:
            f.write(report_markdown(report.to_dict(), os.path.basename(curve) if curve else None))
        mirror.push(run_id, REPORT_JSON, REPORT_MD, *([os.path.basename(curve)] if curve else []))


def run_retrain(recipe: Recipe, progress: RunProgress | None = None) -> RetrainReport:
    """Return the report of one retrain of `recipe` (written into the new model's folder)."""
    return RetrainJob(recipe, progress).run()
