"""Models roleforge builds itself, offline, instead of loading: `tiny-random` and `scratch-small`.

A built model is a real transformers model of the families roleforge trains (the
Qwen2.5-Omni thinker when the dataset has images or audio, a Qwen3 causal LM when it is
text only) with a byte-level BPE tokenizer trained on the dataset's train split and
random weights. `tiny-random` is the smallest that runs the full path (unit tests);
`scratch-small` is sized to visibly learn the bundled demo corpus on two CPU cores in
about a minute. Neither is a role-play model: they prove the loop, not the quality.

The training defaults that suit random weights (full fine-tuning, a high learning rate,
warmup) are in trainers.config.FROM_SCRATCH_DEFAULTS; keys the recipe sets always win.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainers.tiny import TINY_RANDOM, TINY_TEXT, TextSize

SCRATCH_SMALL = "scratch-small"


@dataclass(frozen=True)
class BuiltModel:
    """A model built offline: its language model's shape and vocabulary size."""

    name: str
    size: TextSize
    vocab_size: int


BUILT_MODELS: dict[str, BuiltModel] = {
    TINY_RANDOM: BuiltModel(TINY_RANDOM, TINY_TEXT, 1024),
    SCRATCH_SMALL: BuiltModel(
        SCRATCH_SMALL,
        TextSize(
            hidden=96, intermediate=256, layers=3, heads=4, kv_heads=2, mrope_section=(2, 3, 7)
        ),
        vocab_size=320,
    ),
}


def built_model(name: str) -> BuiltModel | None:
    """Return the preset `name` names, or None for a local path or hub id."""
    return BUILT_MODELS.get(name)
