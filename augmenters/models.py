"""Model-based text ops through local transformers models: contextual word substitution, back-translation.

Own code with nlpaug's class names and arguments: nlpaug would fetch hub models and sample
from torch's global RNG, while these load only a local folder (`local_files_only`) and
draw from the record's generator (substitution) or decode greedily (translation), so a
variant is reproducible and nothing is downloaded at run time.
"""

from __future__ import annotations

import functools
import os
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import AfterValidator, Field

from augmenters.config import PositiveInt
from augmenters.text import _WORD, TextOp, WordSubstitutionOp, _match_case


def local_model_dir(value: str) -> str:
    """Return `value` (user-expanded) if it is a local transformers model folder; raise ValueError saying how to get one."""
    path = os.path.expanduser(value)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ValueError(f"{value} holds no config.json: not a transformers model folder")
        return path
    looks_like_hub_id = value.count("/") <= 1 and not value.startswith((".", "/", "~"))
    hint = (
        f"; download it first with `hf download {value} --local-dir models/{value.split('/')[-1]}` "
        "on a machine with internet and give that folder"
        if looks_like_hub_id
        else ""
    )
    raise ValueError(f"{value!r} is not a local path{hint} (nothing is downloaded at run time)")


LocalModelDir = Annotated[str, Field(min_length=1), AfterValidator(local_model_dir)]
Device = Annotated[str, Field(pattern=r"^(cpu|cuda(:\d+)?)$", description="'cpu' or 'cuda[:N]'")]


@functools.lru_cache(maxsize=4)
def load_masked_lm(path: str, device: str) -> tuple[Any, Any]:
    """Return (tokenizer, model) of a local masked-LM folder, loaded once per process."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForMaskedLM.from_pretrained(path, local_files_only=True).to(device).eval()
    return tokenizer, model


@functools.lru_cache(maxsize=4)
def load_seq2seq(path: str, device: str) -> tuple[Any, Any]:
    """Return (tokenizer, model) of a local sequence-to-sequence folder, loaded once per process."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForSeq2SeqLM.from_pretrained(path, local_files_only=True).to(device).eval()
    return tokenizer, model


class ContextualWordEmbsAug(WordSubstitutionOp):
    """Substitute (or insert) words predicted by a local masked language model (nlpaug's arguments).

    Each chosen word is masked in its sentence; the model's top_k predictions that are
    whole words become candidates, and one is drawn with the model's probabilities.
    """

    class Params(WordSubstitutionOp.Params):
        model_path: LocalModelDir = Field(description="the folder of a local masked language model")
        model_type: str = ""  # nlpaug's; the folder's config.json says what the model is
        action: Literal["substitute", "insert"] = "substitute"
        top_k: PositiveInt = 100
        batch_size: PositiveInt = 32
        device: Device = "cpu"

    params: Params
    scripts: ClassVar[str] = "any"

    def _eligible(self, word: str) -> bool:
        # Stopwords stay out for substitution; any word may anchor an insertion.
        return self.params.action == "insert" or super()._eligible(word)

    def _rewrite_one(self, piece: str, rng: np.random.Generator) -> str:
        import torch

        params = self.params
        tokenizer, model = load_masked_lm(params.model_path, params.device)
        words = [m for m in _WORD.finditer(piece) if self._eligible(m.group(0))]
        all_words = _WORD.findall(piece)
        count = min(self.count(len(all_words)), len(words))
        if count <= 0 or tokenizer.mask_token is None:
            return piece
        chosen = sorted(rng.choice(len(words), size=count, replace=False).tolist())
        masked = []
        for idx in chosen:
            m = words[idx]
            filler = (
                tokenizer.mask_token
                if params.action == "substitute"
                else f"{tokenizer.mask_token} {m.group(0)}"
            )
            masked.append(piece[: m.start()] + filler + piece[m.end() :])
        predictions: list[str | None] = []
        for lo in range(0, len(masked), params.batch_size):
            batch = tokenizer(
                masked[lo : lo + params.batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
            )
            batch = {k: v.to(params.device) for k, v in batch.items()}
            with torch.no_grad():
                logits = model(**batch).logits
            for row in range(logits.shape[0]):
                where = (batch["input_ids"][row] == tokenizer.mask_token_id).nonzero()
                if len(where) == 0:  # the mask was truncated away
                    predictions.append(None)
                    continue
                scores = logits[row, int(where[0, 0])].float().cpu().numpy()
                original = words[chosen[lo + row]].group(0)
                predictions.append(self._pick(scores, tokenizer, original, rng))
        out, pos = [], 0
        for idx, word in zip(chosen, predictions, strict=True):
            m = words[idx]
            out.append(piece[pos : m.start()])
            if word is None:
                out.append(m.group(0))
            elif params.action == "substitute":
                out.append(_match_case(m.group(0), word))
            else:
                out.append(f"{word} {m.group(0)}")
            pos = m.end()
        out.append(piece[pos:])
        return "".join(out)

    def _pick(
        self, scores: np.ndarray, tokenizer: Any, original: str, rng: np.random.Generator
    ) -> str | None:
        top = np.argsort(-scores, kind="stable")[: self.params.top_k]
        words, logits = [], []
        for token_id in top.tolist():
            if token_id in tokenizer.all_special_ids:
                continue
            piece = tokenizer.convert_ids_to_tokens(token_id)
            if piece.startswith("##"):  # a word-piece continuation, not a word
                continue
            word = tokenizer.convert_tokens_to_string([piece]).strip()
            if _WORD.fullmatch(word) and word.lower() != original.lower():
                words.append(word)
                logits.append(float(scores[token_id]))
        if not words:
            return None
        z = np.asarray(logits, dtype=np.float64)
        probs = np.exp(z - z.max())
        return words[int(rng.choice(len(words), p=probs / probs.sum()))]

    def check(self) -> None:
        pass  # the folder was checked with the arguments; the model loads in the worker


class BackTranslationAug(TextOp):
    """Paraphrase by translating to a pivot language and back with two local seq2seq models (greedy)."""

    class Params(TextOp.Params):
        from_model_name: LocalModelDir = Field(
            description="the folder of a local translation model"
        )
        to_model_name: LocalModelDir = Field(description="the folder of a local translation model")
        device: Device = "cpu"
        batch_size: PositiveInt = 32
        max_length: PositiveInt = 300

    params: Params
    scripts: ClassVar[str] = "any"

    def _translate(self, path: str, texts: list[str]) -> list[str]:
        import torch

        params = self.params
        tokenizer, model = load_seq2seq(path, params.device)
        out: list[str] = []
        for lo in range(0, len(texts), params.batch_size):
            batch = tokenizer(
                texts[lo : lo + params.batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
            )
            batch = {k: v.to(params.device) for k, v in batch.items()}
            with torch.no_grad():
                generated = model.generate(
                    **batch, max_length=params.max_length, do_sample=False, num_beams=1
                )
            out.extend(tokenizer.batch_decode(generated, skip_special_tokens=True))
        return out

    def rewrite(self, pieces: list[str], rng: np.random.Generator) -> list[str]:
        there = self._translate(self.params.from_model_name, pieces)
        back = self._translate(self.params.to_model_name, there)
        # An empty round trip (tiny or failing models) leaves the piece as it was.
        return [b.strip() or p for p, b in zip(pieces, back, strict=True)]

    def check(self) -> None:
        pass  # folders checked with the arguments; models load in the worker


MODEL_TEXT_OPS: dict[str, type[TextOp]] = {
    "ContextualWordEmbsAug": ContextualWordEmbsAug,
    "BackTranslationAug": BackTranslationAug,
}
