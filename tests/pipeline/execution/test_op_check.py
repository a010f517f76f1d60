"""The augment ops' check on Ray: it runs beside the ingest, and a refused op ends the run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.execution import job as job_module
from pipeline.execution.job import DataJob
from pipeline.execution.passes import check_ops
from pipeline.recipe import Recipe, parse_recipe
from pipeline.record.config import RecipeError
from tests.pipeline.execution.datajob_corpus import recipe_dict, write_corpus

ON_RAY = {"batch_size": 4, "in_process_records": 0}
# How long the stand-in check waits for the ingest's first file before it gives up.
INGEST_WAIT_S = 30.0


def _recipe(folder: Path, **overrides: Any) -> Recipe:
    # As `roleforge run` loads it: the job checks the ops, not the parser.
    data = recipe_dict(execution=ON_RAY, **overrides)
    return parse_recipe(data, base_dir=str(folder), check_ops=False)


def _check_once_the_ingest_wrote(recipe: Recipe) -> Any:
    """The op check, run only once an ingest task has written a part: a job that awaited
    its check before ingesting would never get there."""
    deadline = time.monotonic() + INGEST_WAIT_S
    while not any(p.is_file() for p in Path(recipe.base_dir).glob("store/**/ingest/**/*")):
        if time.monotonic() > deadline:
            raise RuntimeError("no ingest task wrote anything while the op check ran")
        time.sleep(0.05)
    return check_ops(recipe)


def test_the_op_check_on_ray_runs_beside_the_ingest(
    ray_session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_corpus(tmp_path)
    monkeypatch.setattr(job_module, "check_ops", _check_once_the_ingest_wrote)
    recipe = _recipe(tmp_path)
    result = DataJob(recipe).run()
    assert not result.unchanged and sum(result.splits.values()) > 0
    assert recipe._ops_checked


def test_a_job_on_ray_whose_op_its_library_refuses_fails_naming_it_and_publishes_nothing(
    ray_session, tmp_path: Path
) -> None:
    write_corpus(tmp_path)
    bad = {"copies": 1, "text": [{"op": "RandomWordAug", "aug_min": -1}]}
    job = DataJob(_recipe(tmp_path, augment=bad))
    with pytest.raises(RecipeError, match=r"augment\.text\[0\] \(RandomWordAug\)\.aug_min"):
        job.run()
    assert job.store.versions() == []
    assert not Path(job.staging).exists()
