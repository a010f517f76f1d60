"""Hostile recipes, stores, model folders and media: each is refused with one line (or
quarantined with a reason) and nothing outside the store is touched."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.pipeline.execution.datajob_corpus import write_corpus
from tests.reliability.conftest import NAME, cli, cli_process, recipe_dict, run_json, store_of


def _one_line_refusal(result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert result.output.strip().count("\n") == 0, result.output
    assert len(result.output) < 1500, result.output[:1500]
    return result.output


@pytest.mark.parametrize("name", ["..", ".", "../escape", "a/b", ".hidden"])
def test_a_dataset_name_that_would_leave_the_store_is_refused(tmp_path: Path, name: str) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(recipe_dict(name=name)), encoding="utf-8")
    out = _one_line_refusal(cli("run", recipe), 2)
    assert out.startswith("recipe error: name:")
    assert sorted(os.listdir(tmp_path)) == ["r.yaml"]


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    levels = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):
        levels.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(
        "\n".join(
            [
                "name: bomb",
                "sources: [{name: s, path: d.jsonl}]",
                *levels,
                "augment: {copies: 1, text: [{op: *a8}]}",
            ]
        ),
        encoding="utf-8",
    )
    out = _one_line_refusal(cli("ingest", bomb), 2)
    assert "expands to over" in out


def test_a_huge_recipe_file_and_a_huge_bad_value_give_short_errors(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    huge.write_text("name: x\nnote: '" + "x" * (2 * 1024 * 1024) + "'\n", encoding="utf-8")
    assert "over the limit" in _one_line_refusal(cli("ingest", huge), 2)
    long_op = tmp_path / "long.yaml"
    long_op.write_text(
        yaml.safe_dump(
            recipe_dict(augment={"copies": 1, "text": [{"op": "Nope" * 50_000}]}), width=10**9
        ),
        encoding="utf-8",
    )
    _one_line_refusal(cli("ingest", long_op), 2)


def test_yaml_code_tags_are_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f'name: !!python/object/apply:os.system ["touch {marker}"]\n', encoding="utf-8"
    )
    assert cli("ingest", recipe).exit_code == 2
    assert not marker.exists()


@pytest.mark.parametrize("where", ["/proc", "a file", "a read-only filesystem"])
def test_an_unusable_store_ends_the_run_with_one_line(tmp_path: Path, where: str) -> None:
    write_corpus(tmp_path)
    if where == "/proc":
        store = "/proc/roleforge-store"
    elif where == "a file":
        (tmp_path / "plain-file").write_text("x")
        store = str(tmp_path / "plain-file" / "store")
    else:
        store = "/sys/roleforge-store"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(recipe_dict(store=store)), encoding="utf-8")
    run = cli_process("run", recipe, "--json")
    out, err = run.communicate(timeout=300)
    text = err.decode()
    assert run.returncode == 1, text
    assert out == b"" and "Traceback" not in text
    assert text.strip().splitlines()[-1].startswith("error: "), text


def test_a_model_folder_without_safetensors_is_refused_with_one_line(
    tmp_path: Path, fault_free
) -> None:
    model = tmp_path / "pickled-model"
    model.mkdir()
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_attention_heads": 2,
        "num_hidden_layers": 1,
        "vocab_size": 64,
    }
    (model / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (model / "pytorch_model.bin").write_bytes(b"\x80\x04pickle that must never be loaded")
    train_yaml = tmp_path / "train.yaml"
    train_yaml.write_text(yaml.safe_dump({"model": str(model), "max_steps": 1}), encoding="utf-8")
    run = cli_process("train", f"{NAME}@v1", "--store", fault_free["store"], "--config", train_yaml)
    _out, err = run.communicate(timeout=300)
    text = err.decode()
    assert run.returncode == 1, text
    assert "Traceback" not in text, text[-3000:]
    assert text.strip().splitlines()[-1].startswith("error: "), text


# ---- media: one codec for every stage -------------------------------------------------


def _png16() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), 30000, np.uint16)).save(buf, "PNG")
    return buf.getvalue()


def _rotated_jpeg() -> bytes:
    from PIL import Image

    im = Image.fromarray(np.tile(np.arange(12, dtype=np.uint8)[None, :, None] * 20, (6, 1, 3)))
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif, quality=95)
    return buf.getvalue()


def _rgba_png() -> bytes:
    from PIL import Image

    pixels = np.zeros((8, 8, 4), np.uint8)
    pixels[..., 0], pixels[..., 3] = 200, 128
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buf, "PNG")
    return buf.getvalue()


def _palette_png_with_transparency() -> bytes:
    from PIL import Image

    im = Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).convert("P")
    buf = io.BytesIO()
    im.save(buf, "PNG", transparency=0)
    return buf.getvalue()


@pytest.mark.parametrize("make", [_png16, _rotated_jpeg, _rgba_png, _palette_png_with_transparency])
def test_validation_augmenters_and_the_trainer_see_the_same_pixels(make) -> None:
    from augmenters.image import decode_image as augmenter_decode
    from pipeline.record.media import probe_image
    from trainers.media import image_size
    from trainers.media import model_image as trainer_decode

    data = make()
    info = probe_image(data, 10_000)
    trained = np.asarray(trainer_decode(data))
    augmented = augmenter_decode(data)
    assert trained.shape[2] == 3 and augmented.shape[2] in (3, 4)
    assert np.array_equal(augmented[..., :3], trained)
    assert image_size(data) == trained.shape[:2]
    assert {info.width, info.height} == set(trained.shape[:2])
    if make is _png16:
        assert 100 < int(trained.mean()) < 140  # 30000/65535 of white, not all white
    if make is _rotated_jpeg:
        assert trained.shape[:2] == (12, 6)  # turned upright as viewers show it


@pytest.mark.usefixtures("ray_session")
def test_an_rgba_image_keeps_its_record_and_gets_variants_under_colour_ops(tmp_path: Path) -> None:
    from tests.fixtures.corpus import write_bytes, write_jsonl

    write_bytes(tmp_path / "images/rgba.png", _rgba_png())
    write_bytes(tmp_path / "images/gray16.png", _png16())
    write_jsonl(
        tmp_path / "characters.jsonl",
        [{"name": "Vela", "profile": "A persona.", "greeting": "Hi", "catchphrases": []}],
    )
    records = [
        {
            "character": "Vela",
            "messages": [
                {"role": "user", "content": f"<image> what is this, {i}?"},
                {"role": "assistant", "content": f"A picture, {i}."},
            ],
            "images": ["images/rgba.png" if i % 2 else "images/gray16.png"],
        }
        for i in range(6)
    ]
    write_jsonl(tmp_path / "dialogues.jsonl", records)
    augment = {
        "copies": 1,
        "image": [{"op": "ColorJitter", "p": 1.0}, {"op": "RandomResizedCrop", "size": [6, 6]}],
    }
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(recipe_dict(augment=augment, split={"validation": 0.0, "test": 0.0})),
        encoding="utf-8",
    )
    result = run_json(recipe)
    assert result["counts"]["augment"]["out"] == 6  # every original kept
    assert result["counts"]["augment"]["variants"] == 6
    manifest = store_of(recipe).manifest()
    assert manifest.augmentation.stats["failed_variants"] == 0
