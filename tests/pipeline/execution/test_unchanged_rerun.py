"""An unchanged rerun is found before any work: inputs (media included), recipe hash and code
against the latest manifest; nothing is read, Ray is not started, no stage runs."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from pipeline.execution import cluster
from pipeline.execution.job import DataJob, RunResult
from pipeline.store.read import Store
from tests.fixtures.media import image_bytes
from tests.pipeline.execution.datajob_corpus import make_recipe, write_corpus

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunResult]:
    folder = tmp_path_factory.mktemp("rerun")
    write_corpus(folder)
    return folder, DataJob(make_recipe(folder)).run()


@pytest.fixture
def work_done(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the calls that mean work: reading the sources and starting Ray."""
    calls = {"ingest": 0, "ensure_ray": 0}
    real_ingest, real_ray = DataJob._ingest, cluster.ensure_ray

    def ingest(self: DataJob):
        calls["ingest"] += 1
        return real_ingest(self)

    def ensure_ray(*args, **kwargs):
        calls["ensure_ray"] += 1
        return real_ray(*args, **kwargs)

    monkeypatch.setattr(DataJob, "_ingest", ingest)
    monkeypatch.setattr(cluster, "ensure_ray", ensure_ray)
    return calls


def test_a_first_run_computes_every_original_and_pins_media_in_its_manifest(
    first: tuple[Path, RunResult],
) -> None:
    folder, result = first
    assert not result.unchanged and not result.stages_skipped
    assert result.reuse.reused == 0 and result.reuse.computed > 0
    manifest = Store(str(folder / "store"), "tiny").manifest(result.version)
    assert manifest.reuse is not None and manifest.reuse.computed == result.reuse.computed
    media = {e.path: e.sha256 for e in manifest.inputs if e.kind == "media"}
    assert media["images/0.png"] is not None and media["images/999.png"] is None


def test_an_unchanged_rerun_reads_nothing_starts_no_ray_and_reuses_every_original(
    first: tuple[Path, RunResult], work_done: dict[str, int]
) -> None:
    folder, result = first
    job = DataJob(make_recipe(folder))
    again = job.run()
    assert work_done == {"ingest": 0, "ensure_ray": 0}
    assert again.unchanged and again.stages_skipped
    assert (again.version, again.content_id) == (result.version, result.content_id)
    assert (again.reuse.reused, again.reuse.computed) == (result.reuse.computed, 0)
    assert again.counts == result.counts and again.splits == result.splits
    assert again.to_dict()["reused"] == result.reuse.computed
    assert again.to_dict()["computed"] == 0
    # Nothing of the run was written: no staging folder, no quarantine file.
    assert not os.path.exists(job.staging)
    assert not os.path.exists(job.quarantine.path)
    assert Store(str(folder / "store"), "tiny").versions() == [result.version]


def test_a_changed_media_file_behind_the_same_dialogue_file_is_not_unchanged(
    first: tuple[Path, RunResult], work_done: dict[str, int], tmp_path: Path
) -> None:
    folder, result = first
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy, symlinks=True)  # corpus, store and cards: still unchanged
    (copy / "images/3.png").write_bytes(image_bytes("PNG", 8, 201))
    rerun = DataJob(make_recipe(copy)).run()
    # Read again, and its few records ran in this process: Ray was not started.
    assert work_done == {"ingest": 1, "ensure_ray": 0}
    assert not rerun.unchanged and not rerun.stages_skipped
    assert rerun.version == result.version + 1 and rerun.content_id != result.content_id
    manifest = Store(str(copy / "store"), "tiny").manifest(rerun.version)
    media = {e.path: e.sha256 for e in manifest.inputs if e.kind == "media"}
    assert media["images/3.png"] == hashlib.sha256((copy / "images/3.png").read_bytes()).hexdigest()


def test_run_checks_augment_ops_only_when_the_run_is_not_unchanged(tmp_path: Path) -> None:
    from pipeline.recipe import parse_recipe
    from pipeline.record.config import RecipeError
    from tests.pipeline.execution.datajob_corpus import AUGMENT, recipe_dict

    write_corpus(tmp_path)
    bad = {**AUGMENT, "text": [{"op": "RandomWordAug", "aug_p": 2}]}
    recipe = parse_recipe(recipe_dict(augment=bad), base_dir=str(tmp_path), check_ops=False)
    with pytest.raises(RecipeError, match="aug_p"):
        DataJob(recipe).run()
    assert not (tmp_path / "store" / "tiny" / "versions").exists()  # refused before any work
