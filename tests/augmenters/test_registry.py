"""The registry walk over the op table: every op validates, applies, records and replays byte-identically;
bad arguments are refused naming op and key."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from augmenters import registered_names, validate_augment_config
from augmenters.base import ParamsOp
from augmenters.config import AugmentConfig
from augmenters.registry import op_class
from pipeline.record.config import RecipeError
from tests.augmenters.conftest import make_augmenter, make_record
from tests.augmenters.op_table import OPS, OpRow, with_models


@pytest.fixture
def models(request: pytest.FixtureRequest):
    """Yield the tiny model folders when the row needs them (torch on one thread meanwhile), else None."""
    if not request.node.callspec.params["row"].needs_models:
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


@pytest.mark.parametrize("row", OPS, ids=[r.id for r in OPS])
def test_every_op_validates_applies_records_and_replays_byte_identically(row: OpRow, models):
    spec = with_models(row.spec, models)
    augmenter = make_augmenter(copies=4, **{row.modality: [spec]})
    record = make_record()
    variants, stats = augmenter.variants(record)

    assert variants, f"{spec['op']} never applied in 4 copies: {stats}"
    assert stats.ops[f"{row.modality}:{spec['op']}"].applied == len(variants)
    for variant in variants:
        (entry,) = variant["augmentation"]["ops"]
        assert (entry["modality"], entry["op"]) == (row.modality, spec["op"])
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


@pytest.mark.parametrize("row", OPS, ids=[r.id for r in OPS])
def test_a_bad_parameter_is_rejected_naming_op_and_key(row: OpRow, models):
    bad = with_models(row.bad, models)
    with pytest.raises(RecipeError) as err:
        validate_augment_config(AugmentConfig(copies=1, **{row.modality: [bad]}))
    message = str(err.value)
    assert message.startswith(f"augment.{row.modality}[0] ({bad['op']})")
    assert row.error in message


def test_every_named_op_of_the_issue_is_in_the_walk():
    names = registered_names()
    walked = {(r.modality, r.spec["op"]) for r in OPS}
    for modality in ("text", "dialogue"):
        assert {(modality, n) for n in names[modality]} <= walked
    assert ("audio", "SpeedPerturb") in walked


OWN_OPS = sorted(
    {
        (r.modality, r.spec["op"])
        for r in OPS
        if issubclass(op_class(r.modality, r.spec["op"]), ParamsOp)
    }
)


@pytest.mark.parametrize("modality,name", OWN_OPS, ids=[f"{m}:{n}" for m, n in OWN_OPS])
def test_every_default_of_an_own_op_is_a_value_its_model_accepts(modality, name):
    # pydantic does not check defaults: a default its own constraints reject would only
    # surface when a recipe leaves the argument out.
    model = op_class(modality, name).Params
    required = {k for k, f in model.model_fields.items() if f.is_required()}
    defaults = {k: f.get_default(call_default_factory=True) for k, f in model.model_fields.items()}
    for key, value in defaults.items():
        if key in required:
            continue
        filled = {
            k: "/" for k in required
        }  # placeholders for required folders: their checks may fail
        try:
            model.model_validate({**filled, key: value})
        except ValidationError as exc:
            failing = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
            assert key not in failing, f"{name}.{key}: default {value!r} is rejected: {exc}"


def test_every_bad_argument_of_one_op_is_reported_at_once():
    with pytest.raises(RecipeError) as err:
        validate_augment_config(
            AugmentConfig(
                text=[{"op": "RandomWordAug", "aug_min": -1, "stopwords": "a", "speed": 2}]
            )
        )
    assert str(err.value).splitlines() == [
        "augment.text[0] (RandomWordAug).aug_min: must be a non-negative integer, got -1",
        "augment.text[0] (RandomWordAug).stopwords: must be a list of words, got 'a'",
        "augment.text[0] (RandomWordAug).speed: unknown argument",
    ]


def test_values_are_taken_as_written_not_coerced():
    for spec, key in (
        ({"op": "SplitAug", "min_char": "3"}, "min_char"),
        ({"op": "KeyboardAug", "p": True}, "p"),
        ({"op": "UserNameSwap", "names": "Alice"}, "names"),
    ):
        modality = "dialogue" if spec["op"] == "UserNameSwap" else "text"
        with pytest.raises(RecipeError, match=rf"\({spec['op']}\)\.{key}: must be"):
            validate_augment_config(AugmentConfig(**{modality: [spec]}))


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
