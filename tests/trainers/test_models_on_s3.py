"""Models and the model registry on an s3:// store (a local S3-compatible server).

A run trains in a local working folder and is uploaded whole, run.json last; the registry
lists and reads models through the store's filesystem; a second machine (another working
folder) downloads the promoted model to continue from it and to re-score it; the promotion
pointer is a chain of generation objects created by conditional PUTs, so of two racing
promotes exactly one wins.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.store.fs import ObjectStoreFS
from pipeline.store.read import Store
from tests.trainers.conftest import interrupt_copy, standard_records, write_version
from tests.trainers.test_init_promoted import CONFIG, _adapter
from tests.trainers.test_registry import make_model
from trainers import train_version
from trainers.config import TrainConfig
from trainers.heldout import HeldOutScorer
from trainers.mirror import WORK_DIR_ENV
from trainers.registry import (
    GENERATIONS_DIR,
    POINTER_FILE,
    ModelRegistry,
    NothingToRollBack,
    PromotionConflict,
    UnknownModel,
)

runner = CliRunner()


def _upload_store(local: Path, s3_store: str, name: str) -> Store:
    """Copy a local store's dataset folder to the S3 store; return the S3 dataset store."""
    store = Store(s3_store, name)
    store.fs.upload_tree(str(local / name), store.root)
    return store


def _keys(store: Store, folder: str) -> set[str]:
    return {os.path.relpath(e.path, folder) for e in store.fs.files(folder)}


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Return a function that makes this process a fresh machine: a new, empty work dir."""

    def fresh(label: str) -> Path:
        work = tmp_path / f"work-{label}"
        monkeypatch.setenv(WORK_DIR_ENV, str(work))
        return work

    return fresh


def test_a_run_trained_into_s3_is_uploaded_whole_run_json_last_and_listed_by_the_registry(
    s3_store: str, tmp_path: Path, machine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_version(tmp_path / "local", "mm", standard_records())
    store = _upload_store(tmp_path / "local", s3_store, "mm")
    work = machine("a")
    uploads: list[tuple[str, dict[str, Any] | None]] = []
    original = ObjectStoreFS.upload_file

    def recording(self: ObjectStoreFS, local_path: str, path: str) -> None:
        original(self, local_path, path)
        status = None
        if path.endswith("run.json"):  # what a reader would see at this moment
            status = json.loads(self.read_bytes(path))["status"]
        uploads.append((path, status))

    monkeypatch.setattr(ObjectStoreFS, "upload_file", recording)
    result = train_version(s3_store, "mm", 1, TrainConfig(**CONFIG))

    folder = store.models_dir(result.run_id)
    assert result.model_path == f"{s3_store}/mm/models/{result.run_id}"
    assert result.work_dir == str(work / Path(result.work_dir).relative_to(work))
    keys = _keys(store, folder)
    for name in ("run.json", "eval.json", "eval.md", "README.md", "train_summary.json"):
        assert name in keys
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json"} <= keys
    assert any(k.startswith("base_model/") for k in keys)  # tiny-random's base travels along
    assert not any(k.startswith("checkpoints/") for k in keys)  # they stay in the work folder
    assert os.path.isdir(os.path.join(result.work_dir, "checkpoints"))
    # Readers trust run.json: it says "done" only in the very last upload of the run.
    done = [i for i, (path, status) in enumerate(uploads) if status == "done"]
    assert done == [len(uploads) - 1] and uploads[-1][0] == os.path.join(folder, "run.json")
    assert uploads[0][1] == "training"  # the run's id is taken on the store from the start
    assert not (tmp_path / "local" / "mm" / "models").exists()

    registry = ModelRegistry(store)
    [entry] = registry.models()
    assert entry.id == result.run_id and entry.path == folder
    assert entry.eval["loss"] == result.eval["loss"] and "replies" not in entry.eval
    assert entry.base_path == os.path.join(folder, "base_model")  # a store path, not this disk
    adapter = json.loads(store.fs.read_bytes(os.path.join(folder, "adapter_config.json")))
    assert adapter["base_model_name_or_path"] == f"mm/models/{result.run_id}/base_model"
    listing = runner.invoke(app, ["models", "mm", "--store", s3_store, "--json"])
    assert listing.exit_code == 0, listing.output
    [listed] = json.loads(listing.stdout)["models"]
    assert listed["id"] == result.run_id and listed["path"] == result.model_path

    machine("export")  # export-model on another machine downloads the run first
    out = tmp_path / "exported"
    exported = runner.invoke(app, ["export-model", result.model_path, str(out), "--json"])
    assert exported.exit_code == 0, exported.output
    assert (out / "adapter_model.safetensors").read_bytes() == store.fs.read_bytes(
        os.path.join(folder, "adapter_model.safetensors")
    )
    assert (out / "base_model" / "config.json").is_file()
    assert not (out / ".complete").exists()
    missing = runner.invoke(app, ["export-model", f"{s3_store}/mm/models/nope", str(out / "x")])
    assert missing.exit_code != 0 and "is not a roleforge model folder" in missing.output


def test_another_machine_continues_from_and_rescores_the_promoted_model_it_downloads(
    s3_store: str, tmp_path: Path, machine: Any
) -> None:
    write_version(tmp_path / "local", "mm", standard_records())
    store = _upload_store(tmp_path / "local", s3_store, "mm")
    machine("a")
    first = train_version(s3_store, "mm", 1, TrainConfig(**CONFIG))
    registry = ModelRegistry(store)
    registry.promote(first.run_id, "first", expected=None)

    work_b = machine("b")
    # A learning rate this small leaves the weights where training started.
    cfg = TrainConfig(**{**CONFIG, "init": "promoted", "max_steps": 1, "learning_rate": 1e-12})
    second = train_version(s3_store, "mm", 1, cfg)
    downloaded = Path(second.work_dir).parent / first.run_id
    assert Path(second.work_dir).is_relative_to(work_b) and downloaded.is_dir()
    assert (downloaded / ".complete").exists()
    run = json.loads(store.fs.read_bytes(os.path.join(store.models_dir(second.run_id), "run.json")))
    assert run["init"]["model_id"] == first.run_id
    assert run["base_model"] == os.path.join(store.models_dir(first.run_id), "base_model")
    before, after = _adapter(str(downloaded)), _adapter(second.work_dir)
    for key, tensor in before.items():
        assert after[key].allclose(tensor, atol=1e-6), key
    assert registry.get(second.run_id).init == first.run_id

    # Machine c re-scores the promoted model on another test split; the score is kept on S3.
    machine("c")
    write_version(tmp_path / "local", "mm", standard_records(test=5), version=2)
    _upload_store(tmp_path / "local", s3_store, "mm")
    entry = registry.get(first.run_id)
    scorer = HeldOutScorer(store, store.manifest(2), TrainConfig(**CONFIG), entry.keep_media())
    rescored = scorer.trained(entry)
    assert rescored.reevaluated and rescored.evaluation["samples"] == 5
    assert rescored.path == f"{s3_store}/mm/models/{first.run_id}"
    assert any(k.startswith("evals/") for k in _keys(store, entry.path))
    again = scorer.trained(entry)
    assert again.evaluation["loss"] == rescored.evaluation["loss"]


@pytest.fixture
def s3_models(s3_store: str, tmp_path: Path) -> Store:
    """An S3 store whose dataset `ds` has three finished models a, b, c (no weights)."""
    for name in ("a", "b", "c"):
        make_model(tmp_path, name)
    return _upload_store(tmp_path, s3_store, "ds")


def test_promote_and_rollback_on_s3_create_one_generation_object_each(s3_models: Store) -> None:
    registry = ModelRegistry(s3_models)
    assert registry.pointer() is None
    registry.promote("a", "first", expected=None)
    registry.promote("b", "better")
    back = registry.rollback()
    assert back.model_id == "a" and back.generation == 3
    assert [e.action for e in back.history] == ["promote", "promote", "rollback"]
    root = os.path.join(s3_models.root, "models")
    assert s3_models.fs.listdir(os.path.join(root, GENERATIONS_DIR)) == [
        f"{g:012d}.json" for g in (1, 2, 3)
    ]
    assert not s3_models.fs.exists(os.path.join(root, POINTER_FILE))  # no rename, no lock file
    first = json.loads(
        s3_models.fs.read_bytes(os.path.join(root, GENERATIONS_DIR, "1".zfill(12) + ".json"))
    )
    assert first["format"] == "roleforge.promoted/1" and first["model_id"] == "a"
    with pytest.raises(NothingToRollBack):
        registry.rollback()
    with pytest.raises(PromotionConflict, match="now a, not b"):
        registry.promote("c", "stale", expected="b")
    with pytest.raises(UnknownModel, match="models: a, b, c"):
        registry.promote("nope", "no such run")

    promoted = runner.invoke(app, ["promote", "ds", "c", "--store", s3_models.location])
    assert promoted.exit_code == 0, promoted.output
    assert "promote -> c (was a; generation 4)" in promoted.output
    listing = json.loads(
        runner.invoke(app, ["models", "ds", "--store", s3_models.location, "--json"]).stdout
    )
    assert listing["promoted"] == "c" and listing["generation"] == 4
    assert [m["id"] for m in listing["models"] if m["promoted"]] == ["c"]
    rolled = runner.invoke(app, ["promote", "ds", "--rollback", "--store", s3_models.location])
    assert rolled.exit_code == 0 and "rollback -> a" in rolled.output


def test_two_machines_promoting_against_the_same_model_on_s3_cannot_both_win(
    s3_models: Store,
) -> None:
    ModelRegistry(s3_models).promote("a", "first", expected=None)
    # Each machine has read generation 1 (a) before either creates generation 2.
    both_read = threading.Barrier(2, timeout=30)
    original = ObjectStoreFS.create_exclusive
    waited: set[int] = set()

    def after_both_read(self: ObjectStoreFS, path: str, data: bytes) -> None:
        if threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            both_read.wait()
        original(self, path, data)

    outcomes: dict[str, Any] = {}

    def promote(model_id: str) -> None:
        store = Store(s3_models.location, "ds")  # its own filesystem, as on another machine
        try:
            outcomes[model_id] = ModelRegistry(store).promote(model_id, "race", expected="a")
        except PromotionConflict as exc:
            outcomes[model_id] = exc

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ObjectStoreFS, "create_exclusive", after_both_read)
        threads = [threading.Thread(target=promote, args=(m,)) for m in ("b", "c")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    won = [m for m, o in outcomes.items() if not isinstance(o, Exception)]
    lost = [o for o in outcomes.values() if isinstance(o, PromotionConflict)]
    assert len(won) == 1 and len(lost) == 1
    assert lost[0].expected == "a" and lost[0].current == won[0]  # it sees the winner's result
    pointer = ModelRegistry(s3_models).pointer()
    assert pointer.model_id == won[0] and pointer.generation == 2
    assert [e.model_id for e in pointer.history] == ["a", won[0]]


@pytest.mark.usefixtures("ray_session")
def test_retrain_on_an_s3_store_promotes_then_a_second_machine_compares_against_it(
    s3_store: str, tmp_path: Path, machine: Any
) -> None:
    import yaml

    from tests.pipeline.execution.datajob_corpus import recipe_dict, write_corpus
    from tests.pipeline.execution.test_retrain import TRAIN

    folder = tmp_path / "corpus"
    write_corpus(folder)
    recipe = folder / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(recipe_dict(store=s3_store, train=TRAIN)), encoding="utf-8")
    store = Store(s3_store, "tiny")

    def retrain() -> tuple[int, dict[str, Any]]:
        result = runner.invoke(app, ["retrain", str(recipe), "--json"])
        assert result.exit_code in (0, 4), result.output
        return result.exit_code, json.loads(result.stdout)

    machine("a")
    code, first = retrain()
    assert code == 0 and first["promoted"] and first["baseline"]["id"] is None
    first_id = first["model"]["id"]
    assert first["report"] == f"{s3_store}/tiny/models/{first_id}/report.md"
    keys = _keys(store, store.models_dir(first_id))
    assert {"report.json", "report.md", "training_curve.png", "run.json"} <= keys
    assert ModelRegistry(store).pointer().model_id == first_id

    machine("b")  # new dialogues arrive; another machine retrains
    write_corpus(folder, extra=3)
    code, second = retrain()
    assert second["dataset"]["version"] == 2
    assert second["baseline"]["id"] == first_id
    report = json.loads(
        store.fs.read_bytes(os.path.join(store.models_dir(second["model"]["id"]), "report.json"))
    )
    assert report["training"]["init"] == first_id  # continued from the downloaded model
    assert report["baseline"]["reevaluated"] is True
    assert report["baseline"]["eval_set"]["version"] == 2
    pointer = ModelRegistry(store).pointer()
    assert (code == 0) == second["promoted"]
    assert pointer.model_id == (second["model"]["id"] if second["promoted"] else first_id)
    listing = json.loads(
        runner.invoke(app, ["models", "tiny", "--store", s3_store, "--json"]).stdout
    )
    assert len(listing["models"]) == 2 and sum(m["promoted"] for m in listing["models"]) == 1


def test_export_model_refuses_a_run_on_s3_that_has_not_finished(
    s3_store: str, tmp_path: Path, machine: Any
) -> None:
    make_model(tmp_path, "busy", status="training")
    _upload_store(tmp_path, s3_store, "ds")
    work = machine("x")
    out = runner.invoke(app, ["export-model", f"{s3_store}/ds/models/busy", str(tmp_path / "o")])
    assert out.exit_code != 0 and "is not a finished model" in out.output
    assert not list(work.rglob("run.json"))  # no copy kept that a later load could trust


def test_resume_on_s3_continues_from_this_machines_checkpoint_and_uploads_the_run(
    s3_store: str, tmp_path: Path, machine: Any
) -> None:

    from trainers.config import LoraConfig

    write_version(tmp_path / "local", "r", standard_records(train=4, validation=0, test=1))
    store = _upload_store(tmp_path / "local", s3_store, "r")
    machine("a")
    cfg = TrainConfig(lora=LoraConfig(r=4), max_steps=4, save_steps=2, batch_size=2, max_length=512)
    full = train_version(s3_store, "r", 1, cfg, seed=5, run_id="full")
    # An interrupted run on this machine: the same run stopped after its step-2 checkpoint.
    interrupt_copy(Path(full.work_dir).parent, "full", 2, "cut")

    resumed = train_version(s3_store, "r", 1, None, resume=True)
    assert resumed.run_id == "cut" and resumed.resumed_from.endswith("checkpoint-2")
    assert resumed.global_step == full.global_step == 4
    uploaded = json.loads(store.fs.read_bytes(os.path.join(store.models_dir("cut"), "run.json")))
    assert uploaded["status"] == "done"
    assert uploaded["base_model"] == os.path.join(store.models_dir("cut"), "base_model")
    assert [e.id for e in ModelRegistry(store).models()] == ["full", "cut"]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_folder_uploads_and_downloads_whole_through_either_filesystem(
    where: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "checkpoints" / "c1").mkdir(parents=True)
    (src / "sub").mkdir()
    (src / "a.bin").write_bytes(b"\x00" * 10)
    (src / "sub" / "b.json").write_text("{}")
    (src / "checkpoints" / "c1" / "big").write_bytes(b"x")
    (src / "run.json").write_text("{}")
    if where == "s3":
        store = Store(request.getfixturevalue("s3_store"), "ds")
    else:
        store = Store(str(tmp_path / "store"), "ds")
    target = store.models_dir("m")
    store.fs.upload_tree(str(src), target, skip=frozenset({"checkpoints", "run.json"}))
    assert _keys(store, target) == {"a.bin", os.path.join("sub", "b.json")}
    store.fs.upload_file(str(src / "run.json"), os.path.join(target, "run.json"))
    back = tmp_path / "back"
    store.fs.download_tree(target, str(back))
    assert sorted(str(p.relative_to(back)) for p in back.rglob("*") if p.is_file()) == [
        "a.bin",
        "run.json",
        os.path.join("sub", "b.json"),
    ]
    assert (back / "a.bin").read_bytes() == b"\x00" * 10
    with pytest.raises(FileNotFoundError):
        store.fs.download_tree(store.models_dir("absent"), str(tmp_path / "none"))
