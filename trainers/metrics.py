"""Cheap role-play metrics over generated replies (CharacterEval-style exposure, leakage, ...)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# Phrases that give away a model breaking character as an assistant.
AI_EXPOSURE = re.compile(
    r"\b(as an ai|an ai (?:language )?model|language model|i am an ai|i'm an ai|"
    r"artificial intelligence|ai assistant|virtual assistant|as a chatbot|i am a chatbot|"
    r"i'm a chatbot|openai|i (?:do not|don't) have (?:personal )?(?:feelings|emotions|a body))\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Reply:
    """One generated reply with what the metrics compare it against."""

    text: str
    speakers: Sequence[str]  # the other speakers of its conversation
    catchphrases: Sequence[str]  # the character's catchphrases


def words(text: str) -> list[str]:
    """Return the lower-cased words of `text` (CJK characters one by one; no punctuation)."""
    out = []
    for token in _WORD.findall(text.lower()):
        if any("\u4e00" <= ch <= "\u9fff" for ch in token):
            out.extend(token)  # no spaces in Chinese: count characters
        else:
            out.append(token)
    return out


def ai_exposure(text: str) -> bool:
    """Return whether the reply talks about itself as an AI or language model."""
    return bool(AI_EXPOSURE.search(text))


def speaker_leakage(text: str, speakers: Sequence[str]) -> bool:
    """Return whether the reply writes another speaker's line ("Name:" prefix) or a "User:" line."""
    names = [s for s in speakers if s] + ["User", "user"]
    return any(re.search(rf"(?:^|[\s\"'(]){re.escape(n)}\s*:", text) for n in names)


def catchphrase_hit(text: str, catchphrases: Sequence[str]) -> bool:
    """Return whether the reply uses one of the character's catchphrases (case-insensitive)."""
    low = text.lower()
    return any(c.lower().strip(" .!?") in low for c in catchphrases if c.strip(" .!?"))


def distinct_n(texts: Sequence[str], n: int) -> float | None:
    """Return unique n-grams / all n-grams over `texts` (None when there is no n-gram)."""
    grams = []
    for text in texts:
        tokens = words(text)
        grams += [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def reply_values(reply: Reply) -> dict[str, float | None]:
    """Return one reply's own value of each rule-based reply metric, named as in
    reply_metrics: 1.0 or 0.0 for the rates (catchphrase_hit_rate None when the character
    has no catchphrase), the reply's own distinct-n (None without an n-gram). Two models'
    replies to the same test conversation are paired on these (trainers.comparison)."""
    has_phrases = any(c.strip() for c in reply.catchphrases)
    return {
        "ai_exposure_rate": float(ai_exposure(reply.text)),
        "speaker_leakage_rate": float(speaker_leakage(reply.text, reply.speakers)),
        "catchphrase_hit_rate": (
            float(catchphrase_hit(reply.text, reply.catchphrases)) if has_phrases else None
        ),
        "distinct_1": distinct_n([reply.text], 1),
        "distinct_2": distinct_n([reply.text], 2),
    }


def reply_metrics(replies: Sequence[Reply]) -> dict[str, float | int | None]:
    """Return the role-play metrics of `replies`: each rate is the mean of the replies' own
    values (reply_values) where they apply; distinct-n is over all replies' n-grams."""
    n = len(replies)
    if not n:
        return {"replies": 0}
    values = [reply_values(r) for r in replies]
    texts = [r.text for r in replies]
    rates = {}
    for rate in ("ai_exposure_rate", "speaker_leakage_rate", "catchphrase_hit_rate"):
        applies = [v[rate] for v in values if v[rate] is not None]
        rates[rate] = sum(applies) / len(applies) if applies else None
    return {
        "replies": n,
        **rates,
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "mean_reply_words": sum(len(words(t)) for t in texts) / n,
    }


def rouge_l(candidate: str, reference: str) -> float:
    """Return ROUGE-L F1 (Lin 2004): the longest common word subsequence of the two texts,
    as precision over the candidate and recall over the reference (RoleBench's metric)."""
    a, b = words(candidate), words(reference)
    if not a or not b:
        return 0.0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    lcs = previous[-1]
    if not lcs:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def chrf(candidate: str, reference: str, order: int = 6, beta: float = 2.0) -> float:
    """Return chrF (Popovic 2015) in 0..1: character n-gram (n = 1..`order`) precision and
    recall averaged over the orders both texts have, combined as F-beta (recall weighted
    `beta` times); whitespace is ignored, as sacrebleu's default chrF does."""
    from collections import Counter

    hyp, ref = "".join(candidate.split()), "".join(reference.split())
    precisions, recalls = [], []
    for n in range(1, order + 1):
        h = Counter(hyp[i : i + n] for i in range(len(hyp) - n + 1))
        r = Counter(ref[i : i + n] for i in range(len(ref) - n + 1))
        if not h or not r:
            continue
        matched = sum((h & r).values())
        precisions.append(matched / sum(h.values()))
        recalls.append(matched / sum(r.values()))
    if not precisions:
        return 0.0
    p, r = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    if not p and not r:
        return 0.0
    return (1 + beta**2) * p * r / (beta**2 * p + r)


# The reference-based scores each reply carries (reference_scores' keys).
REFERENCE_SCORES = ("rouge_l", "chrf")


def reference_scores(reply: str, references: Sequence[str]) -> dict[str, float]:
    """Return the reply's reference-based scores against the held-out character turn and the
    record's further references: each metric's best over them, as multi-reference ROUGE-L
    (rouge-score's `score_multi`, RoleBench's several `generated` replies) and sacrebleu's
    multi-reference chrF count the closest reference."""
    if isinstance(references, str):  # a str is a Sequence[str]: its characters would score
        raise TypeError("reference_scores takes a list of references, not one string")
    return {
        "rouge_l": max((rouge_l(reply, r) for r in references), default=0.0),
        "chrf": max((chrf(reply, r) for r in references), default=0.0),
    }


def mean_reference_scores(replies: Sequence[dict]) -> dict[str, float | None]:
    """Return the mean ROUGE-L and chrF of replies that carry them (None for none)."""
    out: dict[str, float | None] = {}
    for key in REFERENCE_SCORES:
        values = [r[key] for r in replies if key in r]
        out[key] = sum(values) / len(values) if values else None
    return out
