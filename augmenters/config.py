"""The `augment:` section of a recipe, and the parts every op's parameter model is made of."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from pipeline.record.config import StrictModel


class AugmentConfig(StrictModel):
    copies: int = Field(default=0, ge=0, le=64)
    text: list[dict[str, Any]] = Field(default_factory=list)
    image: list[dict[str, Any]] = Field(default_factory=list)
    audio: list[dict[str, Any]] = Field(default_factory=list)
    dialogue: list[dict[str, Any]] = Field(default_factory=list)
    flip_guard: Literal["skip", "swap"] = "skip"
    audio_channels: Literal["keep", "mono"] = "keep"


# --- what every op's parameter model is built from ---------------------------------------

# A field's description says what a good value is; errors quote it ("must be <description>").
Probability = Annotated[float, Field(ge=0, le=1, description="a number between 0 and 1")]
PositiveInt = Annotated[int, Field(ge=1, description="an integer >= 1")]
NonNegativeInt = Annotated[int, Field(ge=0, description="a non-negative integer")]


class OpParams(StrictModel):
    """The arguments of one op of our own, as a recipe gives them; every op takes `p`.

    Each op declares a subclass with its own arguments (its `Params`, the role of
    albumentations' `InitSchema`). Values are taken as written: no "0.5" for 0.5, no
    true for 1 (strict); integers are accepted where a number is asked for.
    """

    model_config = ConfigDict(strict=True)

    p: Probability = 1.0
