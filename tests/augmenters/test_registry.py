"""One parametrised walk over the registry: every op validates, applies, records and replays byte-identically."""

from __future__ import annotations

import json
from typing import Any

import pytest

from augmenters import registered_names, validate_augment_config
from augmenters.config import AugmentConfig
from pipeline.record.config import RecipeError
from tests.augmenters.conftest import make_augmenter, make_record

BOTH = ["user", "assistant"]

# (modality, a good spec, a bad variant of it, what the error must name)
OPS: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    # text: nlpaug classes
    (
        "text",
        {"op": "KeyboardAug", "roles": BOTH},
        {"op": "KeyboardAug", "tokenizer": "split"},
        "(KeyboardAug).tokenizer: cannot be set from a recipe",
    ),
    (
        "text",
        {"op": "OcrAug", "roles": BOTH},
        {"op": "OcrAug", "roles": ["narrator"]},
        "(OcrAug).roles: unknown role",
    ),
    (
        "text",
        {"op": "RandomCharAug", "action": "insert", "roles": BOTH},
        {"op": "RandomCharAug", "aug_char_p": "lots"},
        "(RandomCharAug): nlpaug failed on a test sentence",
    ),
    (
        "text",
        {"op": "RandomCharAug", "action": "delete", "roles": BOTH},
        {"op": "RandomCharAug", "p": 1.5},
        "(RandomCharAug).p: must be a number between 0 and 1",
    ),
    (
        "text",
        {"op": "RandomWordAug", "action": "swap", "roles": BOTH},
        {"op": "RandomWordAug", "action": "teleport"},
        "(RandomWordAug).action: must be one of ['delete', 'swap', 'substitute', 'crop']",
    ),
    (
        "text",
        {"op": "RandomWordAug", "action": "delete", "roles": BOTH},
        {"op": "RandomWordAug", "aug_p": 2},
        "(RandomWordAug).aug_p: must be a number between 0 and 1",
    ),
    (
        "text",
        {"op": "RandomWordAug", "action": "crop", "roles": BOTH},
        {"op": "RandomWordAug", "target_words": "x"},
        "(RandomWordAug).target_words: must be a non-empty list",
    ),
    (
        "text",
        {"op": "RandomWordAug", "action": "substitute", "target_words": ["blah"], "roles": BOTH},
        {"op": "RandomWordAug", "stopwords_regex": "("},
        "(RandomWordAug).stopwords_regex: not a valid regex",
    ),
    (
        "text",
        {"op": "SplitAug", "roles": BOTH},
        {"op": "SplitAug", "min_chars": 3},
        "(SplitAug).min_chars: unknown argument",
    ),
    (
        "text",
        {"op": "SpellingAug", "roles": BOTH, "aug_p": 0.5},
        {"op": "SpellingAug", "dict_path": "/nonexistent/spelling.txt"},
        "(SpellingAug).dict_path: misspelling dictionary /nonexistent/spelling.txt not found",
    ),
    (
        "text",
        {"op": "SynonymAug", "roles": BOTH, "aug_p": 0.5},
        {"op": "SynonymAug", "aug_src": "ppdb"},
        "(SynonymAug).aug_src: only 'wordnet' is supported offline",
    ),
    (
        "text",
        {"op": "ContextualWordEmbsAug", "model_path": "{bert}", "top_k": 20},
        {"op": "ContextualWordEmbsAug", "model_path": "bert-base-uncased"},
        "(ContextualWordEmbsAug).model_path: 'bert-base-uncased' is not a local path; download it first with `hf download bert-base-uncased",
    ),
    (
        "text",
        {
            "op": "BackTranslationAug",
            "from_model_name": "{t5}",
            "to_model_name": "{t5}",
            "max_length": 8,
        },
        {
            "op": "BackTranslationAug",
            "from_model_name": "facebook/wmt19-en-de",
            "to_model_name": "{t5}",
        },
        "(BackTranslationAug).from_model_name: 'facebook/wmt19-en-de' is not a local path",
    ),
    # dialogue: own ops
    (
        "dialogue",
        {"op": "ContextWindow", "min_turns": 2},
        {"op": "ContextWindow", "min_turns": 0},
        "(ContextWindow).min_turns: must be an integer >= 1",
    ),
    (
        "dialogue",
        {"op": "SystemPromptVariants", "prompts": ["You are {name}. Stay in character."]},
        {"op": "SystemPromptVariants", "prompts": ["<image> hi"]},
        "(SystemPromptVariants).prompts: a system prompt may not contain media placeholders",
    ),
    (
        "dialogue",
        {"op": "SystemPromptVariants", "drop": 1.0},
        {"op": "SystemPromptVariants", "drop": "often"},
        "(SystemPromptVariants).drop: must be a number",
    ),
    (
        "dialogue",
        {"op": "UserNameSwap", "names": ["Alice", "Carol"]},
        {"op": "UserNameSwap", "names": []},
        "(UserNameSwap).names: must be a non-empty list",
    ),
    # image: albumentations classes
    (
        "image",
        {"op": "HorizontalFlip", "p": 1.0},
        {"op": "HorizontalFlip", "q": 1},
        "augment.image[0] (HorizontalFlip).q: unknown argument",
    ),
    (
        "image",
        {"op": "RandomResizedCrop", "size": [32, 32], "scale": [0.5, 1.0]},
        {"op": "RandomResizedCrop", "size": [32, 32], "scale": [1.5, 0.5]},
        "(RandomResizedCrop).scale",
    ),
    (
        "image",
        {"op": "ColorJitter", "p": 1.0, "hue": 0.1},
        {"op": "ColorJitter", "brightness": -1},
        "(ColorJitter).brightness: If brightness is a single number",
    ),
    (
        "image",
        {"op": "GaussNoise", "p": 1.0},
        {"op": "GaussNoise", "std_range": [0.5, 0.1]},
        "(GaussNoise).std_range",
    ),
    (
        "image",
        {"op": "Rotate", "limit": 20, "p": 1.0},
        {"op": "Rotate", "limit": "wide"},
        "(Rotate).limit",
    ),
    (
        "image",
        {"op": "RandomBrightnessContrast", "p": 1.0},
        {"op": "RandomBrightnessContrast", "p": -1},
        "(RandomBrightnessContrast).p",
    ),
    # audio: audiomentations classes and our SpeedPerturb
    (
        "audio",
        {"op": "AddGaussianNoise", "p": 1.0},
        {"op": "AddGaussianNoise", "min_amplitude": -1.0},
        "(AddGaussianNoise).min_amplitude",
    ),
    (
        "audio",
        {"op": "Gain", "p": 1.0},
        {"op": "Gain", "min_gain_db": 6.0, "max_gain_db": -6.0},
        "(Gain).min_gain_db: min_gain_db cannot be greater than max_gain_db",
    ),
    ("audio", {"op": "Shift", "p": 1.0}, {"op": "Shift", "shift_unit": "lightyears"}, "(Shift)"),
    (
        "audio",
        {"op": "PitchShift", "p": 1.0},
        {"op": "PitchShift", "semitones": 3},
        "(PitchShift).semitones: unknown argument",
    ),
    (
        "audio",
        {"op": "SpeedPerturb", "factors": [0.9, 1.1]},
        {"op": "SpeedPerturb", "factors": [3.0]},
        "(SpeedPerturb).factors: must be a non-empty list of speed factors",
    ),
]


def _ids(row: tuple[str, dict[str, Any], dict[str, Any], str]) -> str:
    extra = row[1].get("action") or ("drop" if "drop" in row[1] else "")
    return f"{row[0]}:{row[1]['op']}" + (f":{extra}" if extra else "")


def _resolve(spec: dict[str, Any], models: dict[str, str] | None) -> dict[str, Any]:
    if not any(isinstance(v, str) and v.startswith("{") for v in spec.values()):
        return spec
    assert models is not None
    return {
        k: (models[v[1:-1]] if isinstance(v, str) and v.startswith("{") else v)
        for k, v in spec.items()
    }


@pytest.fixture
def models(request: pytest.FixtureRequest):
    """Yield the tiny model folders when the row needs them (torch on one thread meanwhile), else None."""
    row = request.node.callspec.params["row"]
    needs = any(
        isinstance(v, str) and v.startswith("{") for spec in row[1:3] for v in spec.values()
    )
    if not needs:
        yield None
        return
    import torch

    threads = torch.get_num_threads()
    # Tiny matrices: extra threads only contend with the rest of a busy test machine.
    torch.set_num_threads(1)
    try:
        yield request.getfixturevalue("tiny_models")
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("row", OPS, ids=[_ids(r) for r in OPS])
def test_every_op_validates_applies_records_and_replays_byte_identically(row, models):
    modality, spec, _, _ = row
    spec = _resolve(spec, models)
    augmenter = make_augmenter(copies=4, **{modality: [spec]})
    record = make_record()
    variants, stats = augmenter.variants(record)

    assert variants, f"{spec['op']} never applied in 4 copies: {stats}"
    assert stats.ops[f"{modality}:{spec['op']}"].applied == len(variants)
    for variant in variants:
        (entry,) = variant["augmentation"]["ops"]
        assert (entry["modality"], entry["op"]) == (modality, spec["op"])
        params = json.loads(entry["params"])
        assert params["step"] == 0
        assert variant != {
            **record,
            "id": variant["id"],
            "parent_id": record["id"],
            "augmentation": variant["augmentation"],
        }
        assert augmenter.replay(record, variant["augmentation"]) == variant
    assert record == make_record(), "the input record must not be modified"


@pytest.mark.parametrize("row", OPS, ids=[_ids(r) for r in OPS])
def test_a_bad_parameter_is_rejected_naming_op_and_key(row, models):
    modality, _, bad, expected = row
    bad = _resolve(bad, models)
    with pytest.raises(RecipeError) as err:
        validate_augment_config(
            AugmentConfig(copies=1, **{modality: [{"op": "HorizontalFlip", "p": 0.5}] * 0 + [bad]})
        )
    message = str(err.value)
    assert message.startswith(f"augment.{modality}[0] ({bad['op']})")
    assert expected in message


def test_every_named_op_of_the_issue_is_in_the_walk():
    names = registered_names()
    walked = {(m, spec["op"]) for m, spec, _, _ in OPS}
    for modality in ("text", "dialogue"):
        assert {(modality, n) for n in names[modality]} <= walked
    assert ("audio", "SpeedPerturb") in walked


def test_unknown_op_and_op_in_the_wrong_list_are_named():
    with pytest.raises(RecipeError, match=r"augment\.image\[0\]: unknown image op 'Flipperoo'"):
        validate_augment_config(AugmentConfig(image=[{"op": "Flipperoo"}]))
    with pytest.raises(
        RecipeError, match=r"ContextWindow is a dialogue op: list it under augment\.dialogue"
    ):
        validate_augment_config(AugmentConfig(text=[{"op": "ContextWindow"}]))


def test_missing_wordnet_fails_at_load_with_install_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("ROLEFORGE_WORDNET", str(tmp_path))
    with pytest.raises(RecipeError) as err:
        validate_augment_config(AugmentConfig(text=[{"op": "SynonymAug"}]))
    message = str(err.value)
    assert message.startswith("augment.text[0] (SynonymAug): WordNet data not found")
    assert "apt-get install wordnet-base" in message and "make wordnet" in message


def test_every_problem_of_a_recipe_is_reported_at_once():
    with pytest.raises(RecipeError) as err:
        validate_augment_config(
            AugmentConfig(
                image=[{"op": "HorizontalFlip", "q": 1}],
                audio=[{"op": "SpeedPerturb", "factors": []}],
            )
        )
    lines = str(err.value).splitlines()
    assert [line.split(" ")[0] for line in lines] == ["augment.image[0]", "augment.audio[0]"]
