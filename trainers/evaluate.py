"""Evaluation on the test split: loss and perplexity on character turns, generated replies."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from typing import Any

from trainers.collator import SEQUENCE_KEYS, RolePlayCollator
from trainers.data import RolePlayDataset
from trainers.encoding import IGNORE_INDEX
from trainers.metrics import Reply, mean_reference_scores, reference_scores, reply_metrics

logger = logging.getLogger(__name__)

# The sampled reply beside the greedy one: a common chat setting, seeded per batch.
SAMPLE_TEMPERATURE = 0.8
SAMPLE_TOP_P = 0.95


def _last_character_turn(sample: Any) -> int:
    return max(i for i, t in enumerate(sample.turns) if t.role == "assistant")


def _nll_summary(nll: float, tokens: int, samples: int) -> dict[str, Any]:
    loss = nll / tokens if tokens else None
    return {
        "samples": samples,
        "tokens": tokens,
        "loss": loss,
        "perplexity": math.exp(min(loss, 50.0)) if loss is not None else None,
    }


class TestEvaluator:
    """Scores a trained model on a split: NLL of character tokens, then replies in batches."""

    __test__ = False  # a name pytest would otherwise collect

    def __init__(
        self,
        model: Any,
        dataset: RolePlayDataset,
        collator: RolePlayCollator,
        batch_size: int,
        prompts: int,
        max_new_tokens: int,
        sample_seed: int = 0,
    ):
        self.model = model
        self.dataset = dataset
        self.collator = collator
        self.batch_size = batch_size
        self.prompts = prompts
        self.max_new_tokens = max_new_tokens
        self.sample_seed = sample_seed

    @property
    def device(self):
        return next(self.model.parameters()).device

    def losses(self) -> dict[str, Any]:
        """Return loss and perplexity over character tokens, overall and per character, and
        each conversation's own loss (`per_sample`, by record id) for paired comparisons."""
        import torch
        import torch.nn.functional as F

        characters = self.dataset.characters()
        record_ids = self.dataset.record_ids()
        per_sample: dict[str, dict[str, Any]] = {}
        nll: dict[str, float] = defaultdict(float)
        tokens: dict[str, int] = defaultdict(int)
        samples: dict[str, int] = defaultdict(int)
        self.model.eval()
        with torch.no_grad():
            for start in range(0, len(self.dataset), self.batch_size):
                idx = list(range(start, min(start + self.batch_size, len(self.dataset))))
                batch = self.collator(self._items(idx))
                labels = batch.pop("labels").to(self.device)
                batch = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in batch.items()}
                logits = self.model(**batch).logits.float()
                target = labels[:, 1:]
                per_token = F.cross_entropy(
                    logits[:, :-1].reshape(-1, logits.shape[-1]),
                    target.reshape(-1),
                    ignore_index=IGNORE_INDEX,
                    reduction="none",
                ).view(target.shape)
                mask = target != IGNORE_INDEX
                for row, i in enumerate(idx):
                    who = characters[i]
                    sample_nll = float(per_token[row][mask[row]].sum())
                    sample_tokens = int(mask[row].sum())
                    nll[who] += sample_nll
                    tokens[who] += sample_tokens
                    samples[who] += 1
                    if sample_tokens:
                        per_sample[record_ids[i]] = {
                            "character": who,
                            "tokens": sample_tokens,
                            "loss": sample_nll / sample_tokens,
                        }
        overall = _nll_summary(sum(nll.values()), sum(tokens.values()), sum(samples.values()))
        overall["per_character"] = {
            who: _nll_summary(nll[who], tokens[who], samples[who]) for who in sorted(nll)
        }
        overall["per_sample"] = dict(sorted(per_sample.items()))
        return overall

    def _items(self, idx: list[int]) -> list[Any]:
        """Return the dataset's items at `idx` for the collator: planned samples, which it
        encodes together, when it has the encoder; else each encoded alone."""
        if self.collator.encoder is not None:
            return self.dataset.__getitems__(idx)
        return [self.dataset[i] for i in idx]

    def prompts_to_answer(self) -> list[tuple[Any, dict[str, Any], list[str]]]:
        """Return (sample, prompt inputs, references) for up to `prompts` test conversations,
        in record-id order: each cut before its last character turn, that turn the first
        reference and the record's `references` the others."""
        encoder = self.dataset.encoder
        reader = self.dataset.reader
        # The reader's rows are in id order already (`SplitReader`).
        n = len(reader)
        # Shards written before the column existed have no further references.
        further = (
            reader.column("references").to_pylist()
            if "references" in reader.table.schema.names
            else [None] * n
        )
        out = []
        for row in range(n):
            if len(out) >= self.prompts:
                break
            sample = self.dataset.sample(row)
            built = encoder.prompt(sample)
            if built is None or built[0]["input_ids"].shape[1] > encoder.max_length:
                continue
            inputs, reference = built
            out.append((sample, inputs, [reference, *(further[row] or [])]))
        return out

    def generate(self, inputs: list[dict[str, Any]], sample_seed: int | None = None) -> list[str]:
        """Return the replies to `inputs` (prompt encodings), generated `batch_size` at a
        time with left padding: greedy, or sampled from a generator seeded `sample_seed`."""
        import torch

        tokenizer = self.dataset.encoder.tokenizer
        collate = RolePlayCollator(
            tokenizer.pad_token_id, accepted=self.collator.accepted, padding_side="left"
        )
        sampling = (
            {"do_sample": True, "temperature": SAMPLE_TEMPERATURE, "top_p": SAMPLE_TOP_P}
            if sample_seed is not None
            else {"do_sample": False}
        )
        texts = []
        self.model.eval()
        for start in range(0, len(inputs), self.batch_size):
            chunk = [
                {k: v[0] if k in SEQUENCE_KEYS else v for k, v in one.items()}
                for one in inputs[start : start + self.batch_size]
            ]
            batch = collate(chunk)
            batch = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in batch.items()}
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                if sample_seed is not None:
                    torch.manual_seed(sample_seed + start)
                generated = self.model.generate(
                    **batch,
                    max_new_tokens=self.max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                    **sampling,
                )
            new = generated[:, batch["input_ids"].shape[1] :]
            texts += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
        return texts

    def replies(self) -> list[dict[str, Any]]:
        """Return, per test conversation (sorted by record id, up to `prompts`), the greedy
        and a seeded sampled reply to its last character turn, with the reference (and the
        record's further `references`, when it has any); scores are the best over them."""
        chosen = self.prompts_to_answer()
        inputs = [built for _, built, _ in chosen]
        greedy = self.generate(inputs)
        sampled = self.generate(inputs, sample_seed=self.sample_seed)
        out = []
        for (sample, _, references), reply, other in zip(chosen, greedy, sampled, strict=True):
            user_turns = [
                t for t in sample.turns[: _last_character_turn(sample)] if t.role == "user"
            ]
            out.append(
                {
                    "id": sample.record_id,
                    "character": sample.character,
                    "prompt": user_turns[-1].text if user_turns else "",
                    "reference": references[0],
                    **({"references": references[1:]} if len(references) > 1 else {}),
                    "reply": reply,
                    "sampled": other,
                    "speakers": sample.speakers,
                    "catchphrases": sample.catchphrases,
                    **reference_scores(reply, references),
                }
            )
        return out

    def run(self) -> dict[str, Any]:
        """Return the full evaluation: losses, reply metrics and the replies themselves."""
        result: dict[str, Any] = {"split": self.dataset.split, "data": self.dataset.stats.to_dict()}
        result.update(self.losses())
        replies = self.replies() if self.prompts else []
        result["generation"] = {
            "max_new_tokens": self.max_new_tokens,
            "greedy": True,
            "sampled": {
                "temperature": SAMPLE_TEMPERATURE,
                "top_p": SAMPLE_TOP_P,
                "seed": self.sample_seed,
            },
            **reply_metrics([Reply(r["reply"], r["speakers"], r["catchphrases"]) for r in replies]),
            **mean_reference_scores(replies),
        }
        result["reference_scores_per_character"] = {
            who: mean_reference_scores([r for r in replies if r["character"] == who])
            for who in sorted({r["character"] for r in replies})
        }
        result["replies"] = replies
        return result
