"""An optional LLM judge: generated replies scored 1-5 by a chat model behind any
OpenAI-compatible endpoint (vLLM, llama.cpp server, a hosted API).

`eval.judge: {base_url, model, rubric}` in a recipe. The rubric is a shipped name
(character_consistency, in_character_knowledge, engagement: our own prompts in the spirit of
CharacterEval and CharacterBench) or a path to a text file. The API key, when the endpoint
needs one, comes from the environment variable `api_key_env` names, never from the recipe.
Every score carries the judge's identity (endpoint model, rubric text sha256, sampling);
scores under two identities are never compared (trainers.comparison).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

from trainers.config import JudgeConfig

logger = logging.getLogger(__name__)

_ASK = (
    "Read the role-play exchange below and rate the CHARACTER'S REPLY. Answer with one line "
    "'Score: N' (N from 1 to 5), then one sentence of reason.\n"
)
RUBRICS: dict[str, str] = {
    "character_consistency": _ASK
    + "5: the reply sounds only like this character (voice, manner, catchphrases, attitude "
    "from the profile) and never like a generic assistant. 3: mostly in voice with generic "
    "stretches. 1: out of character, or talks about being an AI.",
    "in_character_knowledge": _ASK
    + "5: everything the reply states fits what this character would know in their world "
    "and nothing contradicts the profile or the conversation. 3: vague, or one small slip. "
    "1: facts from outside the character's world, or contradictions.",
    "engagement": _ASK
    + "5: the reply answers the user's last turn, moves the scene on and invites a "
    "response. 3: answers but flatly. 1: ignores the user or repeats itself.",
}
_SCORE = re.compile(r"score\s*[:=]\s*([1-5])", re.IGNORECASE)


class JudgeError(RuntimeError):
    """The judge endpoint failed or answered without a score."""


def rubric_text(cfg: JudgeConfig) -> str:
    """Return the rubric's text: a shipped one by name, else the file at `cfg.rubric`."""
    if cfg.rubric in RUBRICS:
        return RUBRICS[cfg.rubric]
    try:
        with open(cfg.rubric, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise JudgeError(
            f"eval.judge.rubric {cfg.rubric!r} is neither a shipped rubric "
            f"({', '.join(RUBRICS)}) nor a readable file: {exc}"
        ) from None


@dataclass(frozen=True)
class JudgeIdentity:
    """What makes two judge scores comparable: the same model, rubric text and sampling."""

    model: str
    rubric: str
    rubric_sha256: str
    temperature: float
    max_tokens: int
    seed: int

    @classmethod
    def of(cls, cfg: JudgeConfig) -> JudgeIdentity:
        text = rubric_text(cfg)
        return cls(
            model=cfg.model,
            rubric=cfg.rubric if cfg.rubric in RUBRICS else os.path.basename(cfg.rubric),
            rubric_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            temperature=cfg.temperature,
            max_tokens=cfg.max_tokens,
            seed=cfg.seed,
        )


class Judge:
    """Scores replies through the chat completions API of one endpoint."""

    def __init__(self, cfg: JudgeConfig):
        self.cfg = cfg
        self.rubric = rubric_text(cfg)
        self.identity = JudgeIdentity.of(cfg)

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        url = self.cfg.base_url.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.cfg.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(
            url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.cfg.timeout_s) as response:
                return json.loads(response.read())
        except (OSError, ValueError) as exc:
            raise JudgeError(f"judge {self.cfg.model} at {url}: {exc}") from None

    def score(self, reply: dict[str, Any]) -> int:
        """Return the 1-5 score of one reply (a TestEvaluator reply with its context)."""
        exchange = (
            f"Character: {reply['character']}\n"
            f"User's last turn: {reply['prompt']}\n"
            f"Reference reply (written by a person): {reply['reference']}\n"
            f"CHARACTER'S REPLY: {reply['reply']}"
        )
        answer = self._post(
            {
                "model": self.cfg.model,
                "messages": [
                    {"role": "system", "content": self.rubric},
                    {"role": "user", "content": exchange},
                ],
                "temperature": self.cfg.temperature,
                "max_tokens": self.cfg.max_tokens,
                "seed": self.cfg.seed,
            }
        )
        try:
            content = answer["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise JudgeError(f"judge {self.cfg.model} answered without a message") from None
        found = _SCORE.search(content)
        if found is None:
            raise JudgeError(f"judge {self.cfg.model} gave no 'Score: N': {content[:120]!r}")
        return int(found.group(1))

    def judge(self, replies: list[dict[str, Any]]) -> dict[str, Any]:
        """Return the judge block of an evaluation: identity, mean, per character, per reply."""
        scores = {r["id"]: self.score(r) for r in replies}
        per_character: dict[str, list[int]] = {}
        for r in replies:
            per_character.setdefault(r["character"], []).append(scores[r["id"]])
        return {
            "identity": asdict(self.identity),
            "mean": sum(scores.values()) / len(scores) if scores else None,
            "per_character": {w: sum(v) / len(v) for w, v in sorted(per_character.items())},
            "scores": scores,
        }
