"""Batches of encoded samples: dynamic padding of tokens (right; left for generation),
media features stacked."""

from __future__ import annotations

from typing import Any

from trainers.encoding import IGNORE_INDEX, ConversationEncoder, PlannedSample

# Per-token keys, padded along the sequence; everything else is a media feature.
SEQUENCE_KEYS = {
    "input_ids": None,
    "attention_mask": 0,
    "labels": IGNORE_INDEX,
    "mm_token_type_ids": 0,
    "token_type_ids": 0,
}


class RolePlayCollator:
    """Pads a list of encoded samples into one batch for the model's forward.

    Token keys are padded on the right to the longest sample (optionally a multiple of
    `pad_to_multiple_of`). Media features are concatenated along their first dimension,
    which is how processors lay out several images/clips (Qwen patches, Whisper features,
    LLaVA images); trailing dimensions that differ are zero-padded (Idefics-style
    per-sample image stacks, whose all-zero images the model ignores). Keys the model's
    forward does not take (`accepted`) are dropped.

    Given `PlannedSample`s (what `RolePlayDataset.__getitems__` hands the DataLoader) it
    encodes them first with `encoder`, the whole batch in one processor call, as a plain
    `transformers` collator calls `processor.apply_chat_template` on a batch; the batch is
    the one the encoded samples would give.
    """

    def __init__(
        self,
        pad_token_id: int,
        accepted: set[str] | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str = "right",
        encoder: ConversationEncoder | None = None,
    ):
        self.pad_token_id = pad_token_id
        self.accepted = accepted
        self.pad_to_multiple_of = pad_to_multiple_of
        # "left" for generation: every prompt then ends where the new tokens start.
        self.padding_side = padding_side
        self.encoder = encoder

    def __call__(self, samples: list[dict[str, Any]] | list[PlannedSample]) -> dict[str, Any]:
        features = None
        if samples and isinstance(samples[0], PlannedSample):
            if self.encoder is None:
                raise ValueError("the collator needs the encoder to batch planned samples")
            encoded = self.encoder.encode_batch(samples)
            samples, features = encoded.rows, encoded.features
        batch = self._pad(samples)
        if features is None:
            media_keys = sorted({k for s in samples for k in s if k not in SEQUENCE_KEYS})
            features = {k: _concat([s[k] for s in samples if k in s]) for k in media_keys}
        batch.update(features)
        if self.accepted is not None:
            batch = {k: v for k, v in batch.items() if k in self.accepted}
        return batch

    def _pad(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Return the per-token keys of `samples` padded into (batch, longest) tensors."""
        import torch

        longest = max(len(s["input_ids"]) for s in samples)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            longest = (longest + m - 1) // m * m
        batch: dict[str, Any] = {}
        for key, fill in SEQUENCE_KEYS.items():
            present = [s[key] for s in samples if key in s]
            if not present:
                continue
            value = self.pad_token_id if fill is None else fill
            # A sample without a per-token extra (no media, so mm_token_type_ids absent) keeps
            # the fill value, 0 = text token.
            out = torch.full((len(samples), longest), value, dtype=present[0].dtype)
            for i, s in enumerate(samples):
                if key in s:
                    if self.padding_side == "left":
                        out[i, longest - len(s[key]) :] = s[key]
                    else:
                        out[i, : len(s[key])] = s[key]
            batch[key] = out
        return batch


def _concat(parts: list[Any]):
    import torch

    if not all(isinstance(p, torch.Tensor) for p in parts):
        return [x for p in parts for x in (p if isinstance(p, list) else [p])]
    if len({p.shape[1:] for p in parts}) > 1:
        shape = [max(p.shape[d] for p in parts) for d in range(1, parts[0].dim())]
        padded = []
        for p in parts:
            out = p.new_zeros((p.shape[0], *shape))
            out[tuple(slice(0, n) for n in p.shape)] = p
            padded.append(out)
        parts = padded
    return torch.cat(parts, dim=0)
