"""The op table: one row per op (and per notable mode of one), read by every table-driven test.

As albumentations' tests/aug_definitions.py: a new op gets a row here, and the registry
walk (validate, apply, record, replay), the bad-argument check and the per-op tests that
read the table cover it. `{bert}` / `{t5}` in a spec stand for the tiny local model
folders of the `tiny_models` fixture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BOTH = ["user", "assistant"]


@dataclass(frozen=True)
class OpRow:
    modality: str
    spec: dict[str, Any]  # applies within 4 copies of make_record(), and replays
    bad: dict[str, Any]  # the same op with one bad argument
    error: str  # what the recipe error about `bad` must say, after "augment.<modality>[0]"
    # Text noise: the arguments that make the op change every word it may.
    full_strength: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        extra = self.spec.get("action") or ("drop" if "drop" in self.spec else "")
        return f"{self.modality}:{self.spec['op']}" + (f":{extra}" if extra else "")

    @property
    def needs_models(self) -> bool:
        return any(_is_model_slot(v) for spec in (self.spec, self.bad) for v in spec.values())


def _is_model_slot(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("{")


def with_models(spec: dict[str, Any], models: dict[str, str] | None) -> dict[str, Any]:
    """Return `spec` with each `{name}` replaced by the folder of that tiny model."""
    if not any(_is_model_slot(v) for v in spec.values()):
        return spec
    assert models is not None
    return {k: models[v[1:-1]] if _is_model_slot(v) else v for k, v in spec.items()}


OPS: list[OpRow] = [
    OpRow(
        "text",
        {"op": "KeyboardAug", "roles": BOTH},
        {"op": "KeyboardAug", "tokenizer": "split"},
        "(KeyboardAug).tokenizer: cannot be set from a recipe",
        full_strength={"aug_char_p": 1.0, "aug_word_p": 1.0, "aug_word_max": 100, "min_char": 1},
    ),
    OpRow(
        "text",
        {"op": "OcrAug", "roles": BOTH},
        {"op": "OcrAug", "roles": ["narrator"]},
        "(OcrAug).roles: unknown role",
    ),
    OpRow(
        "text",
        {"op": "RandomCharAug", "action": "insert", "roles": BOTH},
        {"op": "RandomCharAug", "aug_char_p": "lots"},
        "(RandomCharAug): nlpaug failed on a test sentence",
    ),
    OpRow(
        "text",
        {"op": "RandomCharAug", "action": "delete", "roles": BOTH},
        {"op": "RandomCharAug", "p": 1.5},
        "(RandomCharAug).p: must be a number between 0 and 1",
        full_strength={"aug_char_p": 1.0, "aug_word_p": 1.0, "aug_word_max": 100, "min_char": 1},
    ),
    OpRow(
        "text",
        {"op": "RandomWordAug", "action": "swap", "roles": BOTH},
        {"op": "RandomWordAug", "action": "teleport"},
        "(RandomWordAug).action: must be one of ['delete', 'swap', 'substitute', 'crop']",
        full_strength={"aug_p": 1.0, "aug_max": 100},
    ),
    OpRow(
        "text",
        {"op": "RandomWordAug", "action": "delete", "roles": BOTH},
        {"op": "RandomWordAug", "aug_p": 2},
        "(RandomWordAug).aug_p: must be a number between 0 and 1",
        full_strength={"aug_p": 0.9, "aug_max": 100},
    ),
    OpRow(
        "text",
        {"op": "RandomWordAug", "action": "crop", "roles": BOTH},
        {"op": "RandomWordAug", "target_words": "x"},
        "(RandomWordAug).target_words: must be a non-empty list",
    ),
    OpRow(
        "text",
        {"op": "RandomWordAug", "action": "substitute", "target_words": ["blah"], "roles": BOTH},
        {"op": "RandomWordAug", "stopwords_regex": "("},
        "(RandomWordAug).stopwords_regex: not a valid regex",
    ),
    OpRow(
        "text",
        {"op": "SplitAug", "roles": BOTH},
        {"op": "SplitAug", "min_chars": 3},
        "(SplitAug).min_chars: unknown argument",
        full_strength={"aug_p": 1.0, "aug_max": 100, "min_char": 2},
    ),
    OpRow(
        "text",
        {"op": "SpellingAug", "roles": BOTH, "aug_p": 0.5},
        {"op": "SpellingAug", "dict_path": "/nonexistent/spelling.txt"},
        "(SpellingAug).dict_path: misspelling dictionary /nonexistent/spelling.txt not found",
    ),
    OpRow(
        "text",
        {"op": "SynonymAug", "roles": BOTH, "aug_p": 0.5},
        {"op": "SynonymAug", "aug_src": "ppdb"},
        "(SynonymAug).aug_src: must be 'wordnet' (the only source available offline), got 'ppdb'",
    ),
    OpRow(
        "text",
        {"op": "ContextualWordEmbsAug", "model_path": "{bert}", "top_k": 20},
        {"op": "ContextualWordEmbsAug", "model_path": "bert-base-uncased"},
        "(ContextualWordEmbsAug).model_path: 'bert-base-uncased' is not a local path; download it first with `hf download bert-base-uncased",
    ),
    OpRow(
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
    OpRow(
        "dialogue",
        {"op": "ContextWindow", "min_turns": 2},
        {"op": "ContextWindow", "min_turns": 0},
        "(ContextWindow).min_turns: must be an integer >= 1",
    ),
    OpRow(
        "dialogue",
        {"op": "SystemPromptVariants", "prompts": ["You are {name}. Stay in character."]},
        {"op": "SystemPromptVariants", "prompts": ["<image> hi"]},
        "(SystemPromptVariants).prompts: a system prompt may not contain media placeholders",
    ),
    OpRow(
        "dialogue",
        {"op": "SystemPromptVariants", "drop": 1.0},
        {"op": "SystemPromptVariants", "drop": "often"},
        "(SystemPromptVariants).drop: must be a number",
    ),
    OpRow(
        "dialogue",
        {"op": "UserNameSwap", "names": ["Alice", "Carol"]},
        {"op": "UserNameSwap", "names": []},
        "(UserNameSwap).names: must be a non-empty list",
    ),
    OpRow(
        "image",
        {"op": "HorizontalFlip", "p": 1.0},
        {"op": "HorizontalFlip", "q": 1},
        "augment.image[0] (HorizontalFlip).q: unknown argument",
    ),
    OpRow(
        "image",
        {"op": "RandomResizedCrop", "size": [32, 32], "scale": [0.5, 1.0]},
        {"op": "RandomResizedCrop", "size": [32, 32], "scale": [1.5, 0.5]},
        "(RandomResizedCrop).scale",
    ),
    OpRow(
        "image",
        {"op": "ColorJitter", "p": 1.0, "hue": 0.1},
        {"op": "ColorJitter", "brightness": -1},
        "(ColorJitter).brightness: If brightness is a single number",
    ),
    OpRow(
        "image",
        {"op": "GaussNoise", "p": 1.0},
        {"op": "GaussNoise", "std_range": [0.5, 0.1]},
        "(GaussNoise).std_range",
    ),
    OpRow(
        "image",
        {"op": "Rotate", "limit": 20, "p": 1.0},
        {"op": "Rotate", "limit": "wide"},
        "(Rotate).limit",
    ),
    OpRow(
        "image",
        {"op": "RandomBrightnessContrast", "p": 1.0},
        {"op": "RandomBrightnessContrast", "p": -1},
        "(RandomBrightnessContrast).p",
    ),
    OpRow(
        "audio",
        {"op": "AddGaussianNoise", "p": 1.0},
        {"op": "AddGaussianNoise", "min_amplitude": -1.0},
        "(AddGaussianNoise).min_amplitude",
    ),
    OpRow(
        "audio",
        {"op": "Gain", "p": 1.0},
        {"op": "Gain", "min_gain_db": 6.0, "max_gain_db": -6.0},
        "(Gain).min_gain_db: min_gain_db cannot be greater than max_gain_db",
    ),
    OpRow(
        "audio", {"op": "Shift", "p": 1.0}, {"op": "Shift", "shift_unit": "lightyears"}, "(Shift)"
    ),
    OpRow(
        "audio",
        {"op": "PitchShift", "p": 1.0},
        {"op": "PitchShift", "semitones": 3},
        "(PitchShift).semitones: unknown argument",
    ),
    OpRow(
        "audio",
        {"op": "SpeedPerturb", "factors": [0.9, 1.1]},
        {"op": "SpeedPerturb", "factors": [3.0]},
        "(SpeedPerturb).factors: must be a non-empty list of speed factors",
    ),
]
