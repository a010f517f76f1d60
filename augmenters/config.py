"""The `augment:` section of a recipe: copies and the op lists per modality."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pipeline.record.config import StrictModel


class AugmentConfig(StrictModel):
    copies: int = Field(default=0, ge=0, le=64)
    text: list[dict[str, Any]] = Field(default_factory=list)
    image: list[dict[str, Any]] = Field(default_factory=list)
    audio: list[dict[str, Any]] = Field(default_factory=list)
    dialogue: list[dict[str, Any]] = Field(default_factory=list)
    flip_guard: Literal["skip", "swap"] = "skip"
    audio_channels: Literal["keep", "mono"] = "keep"
