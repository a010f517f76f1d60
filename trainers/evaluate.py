"""Evaluation on the test split: loss and perplexity on character turns, generated replies."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from typing import Any

from trainers.collator import RolePlayCollator
from trainers.data import RolePlayDataset
from trainers.encoding import IGNORE_INDEX
from trainers.metrics import Reply, reply_metrics

logger = logging.getLogger(__name__)


def _nll_summary(nll: float, tokens: int, samples: int) -> dict[str, Any]:
    loss = nll / tokens if tokens else None
    return {
        "samples": samples,
        "tokens": tokens,
        "loss": loss,
        "perplexity": math.exp(min(loss, 50.0)) if loss is not None else None,
    }


class TestEvaluator:
    """Scores a trained model on a split: NLL of character tokens, then greedy replies."""

    def __init__(
        self,
        model: Any,
        dataset: RolePlayDataset,
        collator: RolePlayCollator,
        batch_size: int,
        prompts: int,
        max_new_tokens: int,
    ):
        self.model = model
        self.dataset = dataset
        self.collator = collator
        self.batch_size = batch_size
        self.prompts = prompts
        self.max_new_tokens = max_new_tokens

    @property
    def device(self):
        return next(self.model.parameters()).device

    def losses(self) -> dict[str, Any]:
        """Return loss and perplexity over character tokens, overall and per character."""
        import torch
        import torch.nn.functional as F

        characters = self.dataset.characters()
        nll: dict[str, float] = defaultdict(float)
        tokens: dict[str, int] = defaultdict(int)
        samples: dict[str, int] = defaultdict(int)
        self.model.eval()
        with torch.no_grad():
            for start in range(0, len(self.dataset), self.batch_size):
                idx = list(range(start, min(start + self.batch_size, len(self.dataset))))
                batch = self.collator([self.dataset[i] for i in idx])
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
                    nll[who] += float(per_token[row][mask[row]].sum())
                    tokens[who] += int(mask[row].sum())
                    samples[who] += 1
        overall = _nll_summary(sum(nll.values()), sum(tokens.values()), sum(samples.values()))
        overall["per_character"] = {
            who: _nll_summary(nll[who], tokens[who], samples[who]) for who in sorted(nll)
        }
        return overall

    def replies(self) -> list[dict[str, Any]]:
        """Return greedy replies for a fixed sample of test conversations (sorted by record id)."""
        import torch

        encoder = self.dataset.encoder
        ids = self.dataset.reader.table.column("id").to_pylist()
        rows = sorted(range(len(ids)), key=ids.__getitem__)
        out = []
        self.model.eval()
        for row in rows:
            if len(out) >= self.prompts:
                break
            sample = self.dataset.sample(row)
            built = encoder.prompt(sample)
            if built is None:
                continue
            inputs, reference = built
            if inputs["input_ids"].shape[1] > encoder.max_length:
                continue
            inputs = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}
            with torch.no_grad():
                generated = self.model.generate(
                    **inputs,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=encoder.tokenizer.pad_token_id,
                )
            new = generated[0, inputs["input_ids"].shape[1] :]
            text = encoder.tokenizer.decode(new, skip_special_tokens=True).strip()
            last_user = next((t.text for t in reversed(sample.turns) if t.role == "user"), "")
            out.append(
                {
                    "id": sample.record_id,
                    "character": sample.character,
                    "prompt": last_user,
                    "reference": reference,
                    "reply": text,
                    "speakers": sample.speakers,
                    "catchphrases": sample.catchphrases,
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
            **reply_metrics([Reply(r["reply"], r["speakers"], r["catchphrases"]) for r in replies]),
        }
        result["replies"] = replies
        return result
