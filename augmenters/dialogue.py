"""Dialogue-level ops: they change the conversation's shape, not its words' spelling."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

import numpy as np
from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from augmenters.base import SKIPPED, OpConfigError, ParamsOp
from augmenters.config import OpParams, PositiveInt, Probability
from pipeline.record.schema import AUDIO_PLACEHOLDER, IMAGE_PLACEHOLDER


@dataclass
class DialogueState:
    """The parts of a variant that dialogue ops may change; media lists follow their placeholders."""

    messages: list[dict[str, Any]]
    images: list[dict[str, Any]]
    audios: list[dict[str, Any]]
    character: dict[str, Any] | None = field(default=None)


class DialogueOp(ParamsOp):
    """A dialogue op: `draw(rng, state)` picks a change, `apply(state, params)` returns the new state."""

    modality = "dialogue"

    def draw(self, rng: np.random.Generator, state: DialogueState) -> Any:
        raise NotImplementedError

    def apply(self, state: DialogueState, params: dict[str, Any]) -> DialogueState:
        raise NotImplementedError


class ContextWindow(DialogueOp):
    """Keep a random window of the conversation that ends on the character's last turn.

    System messages before the window are kept; media whose placeholders fall outside
    the window are dropped with their turns.
    """

    class Params(OpParams):
        # Turns (system messages aside) a window holds; no max_turns: up to the whole dialogue.
        min_turns: PositiveInt = 2
        max_turns: PositiveInt | None = Field(None, description="an integer >= 1")

        @field_validator("max_turns")
        @classmethod
        def _not_below_min(cls, value: int | None, info: ValidationInfo) -> int | None:
            if value is not None and value < info.data.get("min_turns", 1):
                raise ValueError("must be >= min_turns")
            return value

    params: Params

    def draw(self, rng: np.random.Generator, state: DialogueState) -> Any:
        msgs = state.messages
        turns = [i for i, m in enumerate(msgs) if m["role"] != "system"]
        ends = [i for i in turns if msgs[i]["role"] == "assistant"]
        if not ends:
            return SKIPPED
        end = ends[-1]
        # A window opens on a user turn (or on the very first turn, e.g. a greeting).
        low, high = self.params.min_turns, self.params.max_turns
        starts = []
        for i in turns:
            if i > end or (msgs[i]["role"] != "user" and i != turns[0]):
                continue
            length = sum(1 for t in turns if i <= t <= end)
            if length >= low and (high is None or length <= high):
                starts.append(i)
        if not starts:
            return None
        start = starts[int(rng.integers(len(starts)))]
        if start == turns[0] and end == len(msgs) - 1:
            return None  # the whole conversation: nothing changes
        return {"start": start, "end": end}

    def apply(self, state: DialogueState, params: dict[str, Any]) -> DialogueState:
        start, end = params["start"], params["end"]
        keep = [
            i
            for i, m in enumerate(state.messages)
            if start <= i <= end or (i < start and m["role"] == "system")
        ]
        kept = set(keep)
        images = _media_kept(state.messages, state.images, IMAGE_PLACEHOLDER, kept)
        audios = _media_kept(state.messages, state.audios, AUDIO_PLACEHOLDER, kept)
        return replace(
            state, messages=[state.messages[i] for i in keep], images=images, audios=audios
        )


def _media_kept(
    messages: list[dict[str, Any]], media: list[dict[str, Any]], placeholder: str, kept: set[int]
):
    out, k = [], 0
    for i, m in enumerate(messages):
        n = (m.get("content") or "").count(placeholder)
        if i in kept:
            out.extend(media[k : k + n])
        k += n
    return out


def _fill(template: str, character: dict[str, Any] | None) -> str:
    # str.replace, not str.format: prompts may contain braces of their own.
    character = character or {}
    return template.replace("{name}", character.get("name") or "").replace(
        "{profile}", character.get("profile") or ""
    )


def _usable_prompts(prompts: list[str]) -> list[str]:
    if not all(s.strip() for s in prompts):
        raise ValueError("must be a list of non-empty prompt strings")
    if any(IMAGE_PLACEHOLDER in s or AUDIO_PLACEHOLDER in s for s in prompts):
        raise ValueError("a system prompt may not contain media placeholders")
    return prompts


class SystemPromptVariants(DialogueOp):
    """Replace the system prompt with one of `prompts` (inserting it when there is none), or drop it.

    `{name}` and `{profile}` in a prompt become the character's name and profile.
    `drop` is the probability of dropping the prompt instead of replacing it.
    """

    class Params(OpParams):
        prompts: Annotated[list[str], AfterValidator(_usable_prompts)] = Field(
            [], description="a list of non-empty prompt strings"
        )
        # Defaults to 0 with prompts, 1 without (then the op only drops).
        drop: Probability | None = Field(None, description="a number between 0 and 1")

        @model_validator(mode="after")
        def _something_to_do(self) -> SystemPromptVariants.Params:
            if not self.prompts and self.drop is not None and self.drop < 1:
                raise OpConfigError(
                    "give at least one prompt, or drop: 1 to only drop the system prompt",
                    key="prompts",
                )
            return self

    params: Params

    def __init__(self, name: str, step: int, params: Params) -> None:
        super().__init__(name, step, params)
        self.drop = params.drop if params.drop is not None else 0.0 if params.prompts else 1.0

    def draw(self, rng: np.random.Generator, state: DialogueState) -> Any:
        system = next((m for m in state.messages if m["role"] == "system"), None)
        if system is not None and (
            IMAGE_PLACEHOLDER in system["content"] or AUDIO_PLACEHOLDER in system["content"]
        ):
            return SKIPPED  # dropping it would orphan its media
        if rng.random() < self.drop:
            return {"action": "drop"} if system is not None else None
        choice = int(rng.integers(len(self.params.prompts)))
        prompt = _fill(self.params.prompts[choice], state.character)
        if system is not None and system["content"] == prompt:
            return None
        return {"action": "replace", "choice": choice, "prompt": prompt}

    def apply(self, state: DialogueState, params: dict[str, Any]) -> DialogueState:
        msgs = list(state.messages)
        at = next((i for i, m in enumerate(msgs) if m["role"] == "system"), None)
        if params["action"] == "drop":
            del msgs[at]
        elif at is None:
            msgs.insert(0, {"role": "system", "name": None, "content": params["prompt"]})
        else:
            msgs[at] = {**msgs[at], "content": params["prompt"]}
        return replace(state, messages=msgs)


DEFAULT_USER_NAMES = (
    "Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Avery", "Quinn",
    "Priya", "Mei", "Hiro", "Yuki", "Omar", "Leila", "Mateo", "Sofia", "Noah", "Amara",
    "Ivan", "Anya", "Kwame", "Zara",
)  # fmt: skip


class UserNameSwap(DialogueOp):
    """Rename the user consistently: the `name` of user turns and every mention in any turn."""

    class Params(OpParams):
        names: Annotated[
            list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]],
            Field(min_length=1),
        ] = Field(list(DEFAULT_USER_NAMES), description="a non-empty list of names")

    params: Params

    @property
    def names(self) -> list[str]:
        return self.params.names

    def draw(self, rng: np.random.Generator, state: DialogueState) -> Any:
        old = next(
            (m.get("name") for m in state.messages if m["role"] == "user" and m.get("name")), None
        )
        if not old:
            return SKIPPED  # the user has no name to swap
        taken = {old.lower(), ((state.character or {}).get("name") or "").lower()}
        options = [n for n in self.names if n.lower() not in taken]
        if not options:
            return None
        return {"from": old, "to": options[int(rng.integers(len(options)))]}

    def apply(self, state: DialogueState, params: dict[str, Any]) -> DialogueState:
        old, new = params["from"], params["to"]
        mention = re.compile(r"(?<!\w)" + re.escape(old) + r"(?!\w)")
        msgs = []
        for m in state.messages:
            m = {**m, "content": mention.sub(lambda _: new, m["content"])}
            if m["role"] == "user" and m.get("name") == old:
                m["name"] = new
            msgs.append(m)
        return replace(state, messages=msgs)


DIALOGUE_OPS: dict[str, type[DialogueOp]] = {
    "ContextWindow": ContextWindow,
    "SystemPromptVariants": SystemPromptVariants,
    "UserNameSwap": UserNameSwap,
}
