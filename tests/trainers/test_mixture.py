"""`train.mixture`: the training split drawn to per-source weights, the same for a seed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.trainers.conftest import make_record, write_version
from trainers import train_version
from trainers.config import LoraConfig, TrainConfig
from trainers.mixture import MixtureError, draw_mixture


def test_weights_set_each_sources_share_and_a_seed_fixes_the_draw():
    sources = ["chat"] * 6 + ["captions"] * 4 + ["emotion"] * 2
    indices, report = draw_mixture(sources, {"chat": 1, "captions": 1, "emotion": 1}, seed=7)
    counts = Counter(sources[i] for i in indices)
    assert counts == {"chat": 4, "captions": 4, "emotion": 4}  # 12 items, a third each
    assert report.drawn == {"captions": 4, "chat": 4, "emotion": 4}
    assert report.available == {"captions": 4, "chat": 6, "emotion": 2}
    emotion = [i for i in indices if sources[i] == "emotion"]
    assert set(emotion) == {10, 11}  # two items stretched to four: drawn again, none invented
    assert draw_mixture(sources, {"chat": 1, "captions": 1, "emotion": 1}, seed=7)[0] == indices
    others = {
        tuple(draw_mixture(sources, {"chat": 1, "captions": 1, "emotion": 1}, s)[0])
        for s in range(6)
    }
    assert len(others) > 1  # the seed, not the order of the rows, decides the draw


def test_a_source_without_weight_is_left_out_and_an_unknown_one_is_an_error():
    sources = ["chat"] * 3 + ["captions"] * 3
    indices, report = draw_mixture(sources, {"chat": 1.0}, seed=0)
    assert len(indices) == 6 and set(indices) == {0, 1, 2}
    assert report.drawn == {"captions": 0, "chat": 6}
    with pytest.raises(MixtureError, match="names speech, but .* has sources captions, chat"):
        draw_mixture(sources, {"chat": 1, "speech": 1}, seed=0)


def test_a_run_with_a_mixture_reports_it_in_summary_and_card(tmp_path):
    records = [make_record(i, "train", images=0, audios=0) for i in range(6)]
    for r in records[4:]:
        r["source"] = "captions"
    records.append(make_record(200, "test", images=0, audios=0))
    write_version(tmp_path, "mix", records)
    cfg = TrainConfig(
        lora=LoraConfig(r=4),
        mixture={"tests": 1, "captions": 1},
        max_steps=1,
        batch_size=2,
        max_length=256,
        eval_prompts=0,
        report_to=[],
        progress="none",
    )
    result = train_version(str(tmp_path), "mix", 1, cfg, seed=0)
    summary = json.loads(Path(result.model_path, "train_summary.json").read_text())
    assert summary["mixture"]["drawn"] == {"captions": 3, "tests": 3}
    assert result.data["train"]["used"] == 6
    card = Path(result.model_path, "README.md").read_text()
    assert "`captions`: weight 1, 3 drawn of 2" in card
    with pytest.raises(MixtureError, match="train.mixture names nope"):
        train_version(str(tmp_path), "mix", 1, cfg.model_copy(update={"mixture": {"nope": 1}}))
