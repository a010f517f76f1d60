"""Model-based text ops through local transformers models: contextual word substitution, back-translation.

Own code with nlpaug's class names and arguments: nlpaug would fetch hub models and sample
from torch's global RNG, while these load only a local folder (`local_files_only`) and
draw from the record's generator (substitution) or decode greedily (translation), so a
variant is reproducible and nothing is downloaded at run time.
"""

from __future__ import annotations

import functools
import os
from typing import Any, ClassVar

import numpy as np

from augmenters.base import OpConfigError
from augmenters.text import _WORD, TextOp, WordSubstitutionOp, _match_case, aug_count


def local_model_dir(value: Any, key: str) -> str:
    """Return `value` if it is a local transformers model folder; raise OpConfigError saying how to get one."""
    if not isinstance(value, str) or not value:
        raise OpConfigError("must be the path of a local model folder", key=key)
    path = os.path.expanduser(value)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise OpConfigError(
                f"{value} holds no config.json: not a transformers model folder", key=key
            )
        return path
    looks_like_hub_id = value.count("/") <= 1 and not value.startswith((".", "/", "~"))
    hint = (
        f"; download it first with `hf download {value} --local-dir models/{value.split('/')[-1]}` "
        "on a machine with internet and give that folder"
        if looks_like_hub_id
        else ""
    )
    raise OpConfigError(
        f"{value!r} is not a local path{hint} (nothing is downloaded at run time)", key=key
    )


def _device(value: Any) -> str:
    if not isinstance(value, str) or not (value == "cpu" or value.startswith("cuda")):
        raise OpConfigError(f"must be 'cpu' or 'cuda[:N]', got {value!r}", key="device")
    return value


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

    scripts: ClassVar[str] = "any"
    ARGS = WordSubstitutionOp.ARGS | {
        "model_path",
        "model_type",
        "action",
        "top_k",
        "batch_size",
        "device",
    }

    def __init__(
        self,
        *args: Any,
        model_path: str,
        model_type: str = "",
        action: str = "substitute",
        top_k: int = 100,
        batch_size: int = 32,
        device: str = "cpu",
        **kw: Any,
    ) -> None:
        super().__init__(*args, **kw)
        self.model_path, self.model_type, self.action = model_path, model_type, action
        self.top_k, self.batch_size, self.device = top_k, batch_size, device

    @classmethod
    def parse_args(cls, name: str, args: dict[str, Any]) -> dict[str, Any]:
        args = dict(args)
        if "model_path" not in args:
            raise OpConfigError(
                "required: the folder of a local masked language model", key="model_path"
            )
        own = {
            k: args.pop(k)
            for k in ("model_path", "model_type", "action", "top_k", "batch_size", "device")
            if k in args
        }
        out = super().parse_args(name, args)
        own["model_path"] = local_model_dir(own["model_path"], "model_path")
        if own.get("action", "substitute") not in ("substitute", "insert"):
            raise OpConfigError(
                f"must be 'substitute' or 'insert', got {own['action']!r}", key="action"
            )
        for key in ("top_k", "batch_size"):
            v = own.get(key, 1)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise OpConfigError(f"must be a positive integer, got {v!r}", key=key)
        if "device" in own:
            _device(own["device"])
        return {**out, **own}

    def _eligible(self, word: str) -> bool:
        # Stopwords stay out for substitution; any word may anchor an insertion.
        return self.action == "insert" or super()._eligible(word)

    def _rewrite_one(self, piece: str, rng: np.random.Generator) -> str:
        import torch

        tokenizer, model = load_masked_lm(self.model_path, self.device)
        words = [m for m in _WORD.finditer(piece) if self._eligible(m.group(0))]
        all_words = _WORD.findall(piece)
        count = min(aug_count(len(all_words), self.aug_p, self.aug_min, self.aug_max), len(words))
        if count <= 0 or tokenizer.mask_token is None:
            return piece
        chosen = sorted(rng.choice(len(words), size=count, replace=False).tolist())
        masked = []
        for idx in chosen:
            m = words[idx]
            filler = (
                tokenizer.mask_token
                if self.action == "substitute"
                else f"{tokenizer.mask_token} {m.group(0)}"
            )
            masked.append(piece[: m.start()] + filler + piece[m.end() :])
        predictions: list[str | None] = []
        for lo in range(0, len(masked), self.batch_size):
            batch = tokenizer(
                masked[lo : lo + self.batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
            )
            batch = {k: v.to(self.device) for k, v in batch.items()}
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
            elif self.action == "substitute":
                out.append(_match_case(m.group(0), word))
            else:
                out.append(f"{word} {m.group(0)}")
            pos = m.end()
        out.append(piece[pos:])
        return "".join(out)

    def _pick(
        self, scores: np.ndarray, tokenizer: Any, original: str, rng: np.random.Generator
    ) -> str | None:
        top = np.argsort(-scores, kind="stable")[: self.top_k]
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
        pass  # the folder was checked at parse time; the model loads in the worker


class BackTranslationAug(TextOp):
    """Paraphrase by translating to a pivot language and back with two local seq2seq models (greedy)."""

    scripts: ClassVar[str] = "any"
    ARGS: ClassVar[frozenset[str]] = frozenset(
        {"from_model_name", "to_model_name", "device", "batch_size", "max_length"}
    )

    def __init__(
        self,
        name: str,
        step: int,
        p: float,
        roles: tuple[str, ...],
        from_model_name: str,
        to_model_name: str,
        device: str = "cpu",
        batch_size: int = 32,
        max_length: int = 300,
    ) -> None:
        super().__init__(name, step, p, roles)
        self.from_model_name, self.to_model_name = from_model_name, to_model_name
        self.device, self.batch_size, self.max_length = device, batch_size, max_length

    @classmethod
    def parse_args(cls, name: str, args: dict[str, Any]) -> dict[str, Any]:
        for key in args:
            if key not in cls.ARGS:
                raise OpConfigError("unknown argument", key=key)
        out = dict(args)
        for key in ("from_model_name", "to_model_name"):
            if key not in out:
                raise OpConfigError("required: the folder of a local translation model", key=key)
            out[key] = local_model_dir(out[key], key)
        for key in ("batch_size", "max_length"):
            v = out.get(key, 1)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise OpConfigError(f"must be a positive integer, got {v!r}", key=key)
        if "device" in out:
            _device(out["device"])
        return out

    def _translate(self, path: str, texts: list[str]) -> list[str]:
        import torch

        tokenizer, model = load_seq2seq(path, self.device)
        out: list[str] = []
        for lo in range(0, len(texts), self.batch_size):
            batch = tokenizer(
                texts[lo : lo + self.batch_size], return_tensors="pt", padding=True, truncation=True
            )
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with torch.no_grad():
                generated = model.generate(
                    **batch, max_length=self.max_length, do_sample=False, num_beams=1
                )
            out.extend(tokenizer.batch_decode(generated, skip_special_tokens=True))
        return out

    def rewrite(self, pieces: list[str], rng: np.random.Generator) -> list[str]:
        back = self._translate(self.to_model_name, self._translate(self.from_model_name, pieces))
        # An empty round trip (tiny or failing models) leaves the piece as it was.
        return [b.strip() or p for p, b in zip(pieces, back, strict=True)]

    def check(self) -> None:
        pass  # folders checked at parse time; models load in the worker


MODEL_TEXT_OPS: dict[str, type[TextOp]] = {
    "ContextualWordEmbsAug": ContextualWordEmbsAug,
    "BackTranslationAug": BackTranslationAug,
}
