"""The determinism contract: same record + recipe + seed => the same bytes, in any process, order or thread."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.record.ids import record_seed, variant_id
from tests.augmenters.conftest import make_augmenter, make_record

REPO = Path(__file__).resolve().parents[2]

# Every modality, library-backed and own ops, all likely to apply.
FULL = {
    "copies": 3,
    "dialogue": [{"op": "UserNameSwap", "p": 0.7}, {"op": "ContextWindow", "p": 0.5}],
    "text": [
        {"op": "KeyboardAug", "p": 0.8},
        {"op": "SynonymAug", "roles": ["user", "assistant"], "aug_p": 0.5},
        {"op": "RandomWordAug", "action": "swap", "p": 0.5},
    ],
    "image": [
        {"op": "RandomResizedCrop", "size": [32, 32], "scale": [0.5, 1.0]},
        {"op": "HorizontalFlip", "p": 0.5},
        {"op": "GaussNoise", "p": 0.7},
    ],
    "audio": [{"op": "AddGaussianNoise", "p": 0.8}, {"op": "SpeedPerturb", "factors": [0.9, 1.1]}],
}


def records() -> list[dict[str, Any]]:
    second = make_record(id="second-record", source_ref="dialogues.jsonl:2")
    second["messages"][1]["content"] = "Hi! A photo <image> of my garden, and what is on the left?"
    return [make_record(), second]


def digest(variants: list[dict[str, Any]]) -> str:
    """Return one sha256 over every variant's JSON text and media bytes."""
    h = hashlib.sha256()
    for v in variants:
        media = [hashlib.sha256(m["bytes"]).hexdigest() for m in v["images"] + v["audios"]]
        plain = {k: val for k, val in v.items() if k not in ("images", "audios")}
        h.update(json.dumps([plain, media], sort_keys=True).encode())
    return h.hexdigest()


def run_all(seed: int, order: list[int]) -> dict[int, str]:
    augmenter = make_augmenter(seed=seed, **FULL)
    recs = records()
    return {i: digest(augmenter.variants(recs[i])[0]) for i in order}


SUBPROCESS = """
import json, sys
from tests.augmenters.test_determinism import run_all
digests = run_all(int(sys.argv[1]), [1, 0])
extras = sorted(m for m in ("torch", "matplotlib", "scipy.signal") if m in sys.modules)
print(json.dumps({"digests": digests, "extras": extras}))
"""


class FreshProcess:
    """A child interpreter running every op of FULL: another hash seed, records in the
    other order. It starts first so that its imports overlap with the work done here."""

    def __init__(self) -> None:
        self.child = subprocess.Popen(
            [sys.executable, "-c", SUBPROCESS, "1234"],
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": "987"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @functools.cached_property
    def result(self) -> dict[str, Any]:
        stdout, stderr = self.child.communicate(timeout=180)
        assert self.child.returncode == 0, stderr[-2000:]
        return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def fresh_process() -> Iterator[FreshProcess]:
    process = FreshProcess()
    yield process
    if process.child.poll() is None:
        process.child.kill()
        process.child.communicate()


def test_same_seed_gives_byte_identical_variants_in_another_process_and_order(fresh_process):
    here = run_all(1234, [0, 1])
    there = {int(k): v for k, v in fresh_process.result["digests"].items()}
    assert there == here


def test_a_fresh_process_runs_every_op_kind_without_torch_or_scipy_signal(fresh_process):
    # nlpaug and albumentations import torch (and nlpaug matplotlib) only for code our
    # ops never run, and audiomentations scipy.signal for transforms FULL does not use
    # (its AddGaussianNoise is ported): in a fresh worker or a small rerun each import
    # costs seconds.
    assert fresh_process.result["extras"] == []


def test_a_different_seed_gives_different_variants():
    a = make_augmenter(seed=1, **FULL).variants(make_record())[0]
    b = make_augmenter(seed=2, **FULL).variants(make_record())[0]
    assert digest(a) != digest(b)
    assert [m["bytes"] for v in a for m in v["images"]] != [
        m["bytes"] for v in b for m in v["images"]
    ]


def test_variant_identity_derives_from_parent_recipe_and_copy():
    record = make_record()
    variants, _ = make_augmenter(seed=5, recipe_hash="a" * 64, **FULL).variants(record)
    assert variants
    for v in variants:
        copy = v["augmentation"]["copy"]
        assert v["id"] == variant_id(record["id"], "a" * 64, copy)
        assert v["parent_id"] == record["id"]
        assert v["augmentation"]["seed"] == record_seed(5, record["id"], copy, "record")
        assert (v["source"], v["split"], v["character"], v["source_ref"]) == (
            record["source"],
            record["split"],
            record["character"],
            record["source_ref"],
        )


def test_global_random_state_is_left_as_it_was():
    augmenter = make_augmenter(seed=9, **FULL)
    random.seed(42)
    np.random.seed(42)
    py_before, np_before = random.getstate(), np.random.get_state()
    augmenter.variants(make_record())
    assert random.getstate() == py_before
    np_after = np.random.get_state()
    assert np.array_equal(np_after[1], np_before[1]) and np_after[2:] == np_before[2:]


def test_global_random_state_does_not_leak_between_records_or_threads():
    augmenter = make_augmenter(seed=3, **FULL)
    recs = records() * 3
    sequential = [digest(augmenter.variants(r)[0]) for r in recs]
    random.seed(0)  # whatever the ambient state, the output stays the same
    with ThreadPoolExecutor(max_workers=3) as pool:
        threaded = list(pool.map(lambda r: digest(augmenter.variants(r)[0]), recs))
    assert threaded == sequential
    assert sequential[0] == sequential[2] and sequential[1] == sequential[3]


def test_a_pickled_augmenter_makes_the_same_variants():
    import pickle

    augmenter = make_augmenter(seed=11, **FULL)
    before = digest(augmenter.variants(make_record())[0])  # builds and caches the ops
    clone = pickle.loads(pickle.dumps(augmenter))
    assert clone._ops is None  # library objects are rebuilt in the worker, not shipped
    assert digest(clone.variants(make_record())[0]) == before


def test_a_batch_restores_global_state_once_and_changes_no_output():
    augmenter = make_augmenter(seed=9, **FULL)
    recs = records()
    alone = [digest(augmenter.variants(r)[0]) for r in recs]
    random.seed(7)
    before = random.getstate()
    with augmenter.batch():
        batched = [digest(augmenter.variants(r)[0]) for r in recs]
    assert batched == alone
    assert random.getstate() == before


def test_copies_of_one_augmenter_share_one_build_of_the_ops_per_process():
    import pickle

    augmenter = make_augmenter(seed=11, **FULL)
    blob = pickle.dumps(augmenter)  # one copy per Ray task, as a record pass ships it
    first, second = pickle.loads(blob), pickle.loads(blob)
    assert first.ops is second.ops
    assert digest(second.variants(make_record())[0]) == digest(augmenter.variants(make_record())[0])
    other = pickle.loads(pickle.dumps(make_augmenter(seed=11, **FULL)))
    assert other.ops is not first.ops, "another augmenter (a new pass) builds its own"
    assert augmenter.ops is not first.ops, "the original keeps its ops to itself"
