"""`roleforge run` on an unchanged recipe answers from the store and the pins alone: a fresh
process prints the latest version as unchanged without importing the data job, Arrow,
numpy or the readers' parsers (its start-up is most of what it costs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.execution.job import DataJob
from tests.pipeline.execution.datajob_corpus import make_recipe, recipe_dict, write_corpus

REPO = Path(__file__).resolve().parents[3]
# What only a run with work to do needs.
HEAVY = ("pipeline.execution.job", "pipeline.readers.sources", "pyarrow", "numpy", "ray")


def _cli_run(folder: Path, *args: str) -> tuple[dict, set[str]]:
    """Run `python -X importtime -m pipeline.cli run` in a fresh process; return its JSON
    and the modules it imported."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pipeline.cli", "run"]
        + [str(folder / "recipe.yaml"), "--json", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    return json.loads(done.stdout[done.stdout.index("{") :]), imported


@pytest.mark.usefixtures("ray_session")
def test_an_unchanged_cli_run_imports_neither_the_data_job_nor_arrow(tmp_path: Path) -> None:
    write_corpus(tmp_path)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe_dict()), encoding="utf-8")
    first = DataJob(make_recipe(tmp_path)).run()
    result, imported = _cli_run(tmp_path)
    assert result["unchanged"] is True
    assert (result["version"], result["content_id"]) == (first.version, first.content_id)
    assert result["reused"] == first.reuse.computed and result["computed"] == 0
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
    # With work to do (one more dialogue) the same command runs the data job.
    write_corpus(tmp_path, extra=1)
    grown, imported = _cli_run(tmp_path)
    assert grown["unchanged"] is False and grown["version"] == first.version + 1
    assert "pipeline.execution.job" in imported
