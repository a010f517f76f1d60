"""What every recipe section's config model is built on, and the error a bad recipe raises."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RecipeError(Exception):
    """A recipe that cannot be used; the message names the offending key."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
