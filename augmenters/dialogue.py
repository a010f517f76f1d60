"""Dialogue-level ops: they change the conversation's shape, not its words' spelling."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from augmenters.base import SKIPPED, Op, OpConfigError, pop_probability, reject_unknown
from pipeline.record.schema import AUDIO_PLACEHOLDER, IMAGE_PLACEHOLDER


@dataclass
class DialogueState:
    """The parts of a variant that dialogue ops may change; media lists follow their placeholders."""

    messages: list[dict[str, Any]]
    images: list[dict[str, Any]]
    audios: list[dict[str, Any]]
    character: dict[str, Any] | None = field(default=None)


class DialogueOp(Op):
    """A dialogue op: `draw(rng, state)` picks a change, `apply(state, params)` returns the new state."""

    modality = "dialogue"

    @classmethod
    def from_spec(cls, name: str, step: int, args: dict[str, Any]) -> DialogueOp:
        args = dict(args)
        p = pop_probability(args, cls.default_p)
        return cls(name, step, p, **cls.parse_args(args))

    @classmethod
    def parse_args(cls, args: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def draw(self, rng: np.random.Generator, state: DialogueState) -> Any:
        raise NotImplementedError

    def apply(self, state: DialogueState, params: dict[str, Any]) -> DialogueState:
        raise NotImplementedError


def _int_arg(args: dict[str, Any], key: str, default: int | None, minimum: int) -> int | None:
    value = args.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise OpConfigError(f"must be an integer >= {minimum}, got {value!r}", key=key)
    return value


class ContextWindow(DialogueOp):
    """Keep a random window of the conversation that ends on the character's last turn.

    System messages before the window are kept; media whose placeholders fall outside
    the window are dropped with their turns.
    """

    def __init__(
        self, name: str, step: int, p: float, min_turns: int = 2, max_turns: int | None = None
    ):
        super().__init__(name, step, p)
        self.min_turns = min_turns
        self.max_turns = max_turns

    @classmethod
    def parse_args(cls, args: dict[str, Any]) -> dict[str, Any]:
        reject_unknown(args, {"min_turns", "max_turns"})
        out = {
            "min_turns": _int_arg(args, "min_turns", 2, 1),
            "max_turns": _int_arg(args, "max_turns", None, 1),
        }
        if out["max_turns"] is not None and out["max_turns"] < out["min_turns"]:
            raise OpConfigError("must be >= min_turns", key="max_turns")
        return out

    def draw(self, rng: np.random.Generator, state: DialogueState) -> Any:
        msgs = state.messages
        turns = [i for i, m in enumerate(msgs) if m["role"] != "system"]
        ends = [i for i in turns if msgs[i]["role"] == "assistant"]
        if not ends:
            return SKIPPED
        end = ends[-1]
        # A window opens on a user turn (or on the very first turn, e.g. a greeting).
        starts = []
        for i in turns:
            if i > end or (msgs[i]["role"] != "user" and i != turns[0]):
                continue
            length = sum(1 for t in turns if i <= t <= end)
            if length >= self.min_turns and (self.max_turns is None or length <= self.max_turns):
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


class SystemPromptVariants(DialogueOp):
    """Replace the system prompt with one of `prompts` (inserting it when there is none), or drop it.

    `{name}` and `{profile}` in a prompt become the character's name and profile.
    `drop` is the probability of dropping the prompt instead of replacing it.
    """

    def __init__(self, name: str, step: int, p: float, prompts: list[str], drop: float):
        super().__init__(name, step, p)
        self.prompts = prompts
        self.drop = drop

    @classmethod
    def parse_args(cls, args: dict[str, Any]) -> dict[str, Any]:
        reject_unknown(args, {"prompts", "drop"})
        prompts = args.get("prompts", [])
        if not isinstance(prompts, list) or not all(
            isinstance(s, str) and s.strip() for s in prompts
        ):
            raise OpConfigError("must be a list of non-empty prompt strings", key="prompts")
        if any(IMAGE_PLACEHOLDER in s or AUDIO_PLACEHOLDER in s for s in prompts):
            raise OpConfigError("a system prompt may not contain media placeholders", key="prompts")
        drop = args.get("drop", 0.0 if prompts else 1.0)
        if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not 0 <= drop <= 1:
            raise OpConfigError(f"must be a number between 0 and 1, got {drop!r}", key="drop")
        if not prompts and drop < 1:
            raise OpConfigError(
                "give at least one prompt, or drop: 1 to only drop the system prompt", key="prompts"
            )
        return {"prompts": list(prompts), "drop": float(drop)}

    def draw(self, rng: np.random.Generator, state: DialogueState) -> Any:
        system = next((m for m in state.messages if m["role"] == "system"), None)
        if system is not None and (
            IMAGE_PLACEHOLDER in system["content"] or AUDIO_PLACEHOLDER in system["content"]
        ):
            return SKIPPED  # dropping it would orphan its media
        if rng.random() < self.drop:
            return {"action": "drop"} if system is not None else None
        choice = int(rng.integers(len(self.prompts)))
        prompt = _fill(self.prompts[choice], state.character)
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

    def __init__(self, name: str, step: int, p: float, names: list[str]):
        super().__init__(name, step, p)
        self.names = names

    @classmethod
    def parse_args(cls, args: dict[str, Any]) -> dict[str, Any]:
        reject_unknown(args, {"names"})
        names = args.get("names", list(DEFAULT_USER_NAMES))
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) and n.strip() for n in names)
        ):
            raise OpConfigError("must be a non-empty list of names", key="names")
        return {"names": [n.strip() for n in names]}

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
