"""Token counts of canonical records under a model's chat template, for the quality ledger.

The count is what training sees: the record formatted by ChatFormatter (persona system
prompt, named speakers), rendered by the model's chat template and tokenized with images
and audio expanded to the tokens the processor gives them (ConversationEncoder.length: the
length the trainer's own plan gives the record without a length limit, from one rendering). `processor_hash` names the
processor the counts hold for, so a count is reused only where it still holds.

A built model (`tiny-random`, `scratch-small`) has no processor before a training run builds one from the dataset's text;
the ledger then counts with a byte-level tokenizer (the tiny tokenizer with an empty
vocabulary: one token per UTF-8 byte) inside the same Omni processor. A run's tokenizer is
trained on the dataset's text, so its hash differs and the trainer tokenizes again; the
ledger's counts still serve the card, and `quality.tokenizer` naming the saved base
model a run trains from makes them the trainer's.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from trainers.config import TrainConfig
from trainers.media import MediaHeaders
from trainers.presets import built_model

UNLIMITED = 1 << 40


class ChatTokenCounter:
    """Counts tokens of records for one model; build once per process (loading is slow)."""

    def __init__(self, model: str, system_template: str, trust_remote_code: bool = False):
        from trainers.chat import ChatFormatter
        from trainers.encoding import ConversationEncoder

        processor, multimodal = _processor(model, trust_remote_code)
        self.model = model
        self.formatter = ChatFormatter(system_template)
        self.encoder = ConversationEncoder(processor, multimodal=multimodal, max_length=UNLIMITED)
        self.text = SegmentTokenCounter(self.encoder.tokenizer)
        self.processor_hash = processor_hash(processor, system_template)

    def count(self, record: dict[str, Any]) -> int:
        """Return the record's tokens up to its last character turn, media expanded
        (`ConversationEncoder.length`)."""
        return self.count_many([record])[0]

    def count_many(
        self, records: list[dict[str, Any]], headers: MediaHeaders | None = None
    ) -> list[int]:
        """Return `count` of each record, their texts tokenized together; `headers`: what
        the caller already read of their media's headers (`trainers.media.MediaHeaders`)."""
        samples = [self.formatter.format(r) for r in records]
        parts = self.encoder.length_parts_many(samples, headers)
        texts = [p[0] for p in parts if p is not None]
        counted = iter(self.text.counts(texts))
        return [
            next(counted) + p[1] if p is not None else self.encoder.measured_length(s)
            for s, p in zip(samples, parts, strict=True)
        ]


class SegmentTokenCounter:
    """Counts the tokens of rendered conversations, remembering the count of each piece of
    text between two added tokens (`<|im_start|>`, `<|im_end|>`, ...).

    A fast tokenizer splits its input at added tokens first and tokenizes the pieces
    between them independently, so a text's count is its added tokens plus its pieces'
    counts. The pieces repeat: a character's system prompt opens each of its chats, and a
    variant shares every turn augmentation left alone with its original, counted just
    before it. A tokenizer whose pieces do not count independently (a slow one, one that
    strips around added tokens, a pre-tokenizer that treats the text's start apart) fails
    the check on a probe and is asked for whole texts.

    A byte-level BPE without merges (the ledger's tokenizer for a built model) gives one
    token per UTF-8 byte of a piece: its pieces are counted by their length, not tokenized
    (`_bytewise`, checked on the same probe).
    """

    CACHE_ENTRIES = 1 << 16

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.backend = getattr(tokenizer, "backend_tokenizer", None)
        self.pieces: dict[str, int] = {}
        self.bytewise = False
        self.splitter = self._splitter()

    def _whole(self, texts: list[str]) -> list[int]:
        return [len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]

    def _pieces(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self.backend.encode_batch(texts, add_special_tokens=False)]

    def _splitter(self) -> re.Pattern[str] | None:
        if self.backend is None:
            return None
        added = [t.content for t in self.backend.get_added_tokens_decoder().values()]
        if not added:
            return None
        splitter = re.compile(
            "(" + "|".join(re.escape(a) for a in sorted(added, key=len, reverse=True)) + ")"
        )
        probe = "".join(f" Ab, 猫 ok\n {a}\n  x{a} y" for a in added) + " end. 🙂"
        pieces = splitter.split(probe)
        whole = self._whole([probe])[0]
        by_piece = len(pieces) // 2 + sum(self._pieces([p for p in pieces[::2] if p]))
        if by_piece != whole:
            return None
        self.bytewise = _without_merges(self.backend) and _bytewise_count(pieces) == whole
        return splitter

    def counts(self, texts: list[str]) -> list[int]:
        """Return the token count of each text (no special tokens added around it)."""
        if self.splitter is None:
            return self._whole(texts)
        split = [self.splitter.split(t) for t in texts]
        if self.bytewise:
            return [_bytewise_count(pieces) for pieces in split]
        needed = {p for pieces in split for p in pieces[::2] if p}
        if len(self.pieces) + len(needed) > self.CACHE_ENTRIES:
            self.pieces.clear()
        # Not `needed - self.pieces.keys()`: that walks every cached piece, each batch.
        new = sorted(p for p in needed if p not in self.pieces)
        if new:
            self.pieces.update(zip(new, self._pieces(new), strict=True))
        return [
            len(pieces) // 2 + sum(self.pieces[p] for p in pieces[::2] if p) for pieces in split
        ]


def _bytewise_count(pieces: list[str]) -> int:
    """Return the tokens of a text split at its added tokens (`pieces`: text, added token,
    text, ...) under a tokenizer that gives one token per UTF-8 byte of text."""
    return len(pieces) // 2 + len("".join(pieces[::2]).encode())


def _without_merges(backend: Any) -> bool:
    """Return whether `backend` (a tokenizers.Tokenizer) is a byte-level BPE without merges
    whose vocabulary holds every byte symbol, and nothing adds to or drops from a piece's
    symbols: then a piece between two added tokens is one token per UTF-8 byte."""
    from tokenizers.pre_tokenizers import ByteLevel

    spec = json.loads(backend.to_str())
    model, pre = spec.get("model") or {}, spec.get("pre_tokenizer") or {}
    plain_bpe = (
        model.get("type") == "BPE"
        and not model.get("merges")
        and not model.get("dropout")
        and not model.get("continuing_subword_prefix")
        and not model.get("end_of_word_suffix")
    )
    byte_level = pre.get("type") == "ByteLevel" and not pre.get("add_prefix_space")
    return (
        plain_bpe
        and byte_level
        and spec.get("normalizer") is None
        and set(ByteLevel.alphabet()) <= set(model.get("vocab") or {})
    )


def counter_for(config: TrainConfig | None, tokenizer: str | None) -> ChatTokenCounter:
    """Return the counter for `quality.tokenizer`, else the recipe's train.model."""
    config = config or TrainConfig()
    return ChatTokenCounter(
        tokenizer or config.model, config.system_template, config.trust_remote_code
    )


def _processor(model: str, trust_remote_code: bool) -> tuple[Any, bool]:
    from trainers.tiny import build_processor, train_tokenizer

    if built_model(model) is not None:
        return build_processor(train_tokenizer([""], vocab_size=1)), True
    from trainers.models import load_processor, resolve_model

    spec = resolve_model(model, trust_remote_code)
    return load_processor(spec, trust_remote_code), spec.multimodal


def processor_hash(processor: Any, system_template: str, chat_template: str | None = None) -> str:
    """Return sha256 over what decides a count: how the tokenizer splits text, the chat
    template (`chat_template` where the encoder overrides the processor's own), the system
    template, and the media settings (image processor, feature extractor).

    Equal hashes mean equal inputs to the count, so a built model's processor (its
    tokenizer trained on the dataset) matches the ledger's byte-level one only where the
    two tokenizers are the same. What the hash cannot see (the code of transformers or of
    roleforge's formatter changing between ingest and training) the trainer checks by
    planning one sample of each media kind both ways (trainers.data.RolePlayDataset)."""
    tokenizer = getattr(processor, "tokenizer", processor)
    parts = {
        "class": type(processor).__name__,
        "vocab": _splitting(tokenizer),
        "chat_template": chat_template or getattr(processor, "chat_template", None),
        "system_template": system_template,
        "media": [
            getattr(processor, name).to_json_string()
            for name in ("image_processor", "feature_extractor")
            if hasattr(getattr(processor, name, None), "to_json_string")
        ],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _splitting(tokenizer: Any) -> str:
    """Return what decides how `tokenizer` splits text: a fast tokenizer's whole serialized
    pipeline (normalizer, pre-tokenizer, model, added tokens); for a Python one its vocabulary
    plus the SentencePiece model or BPE merges it splits by (a vocabulary alone does not
    fix how a text is split)."""
    if hasattr(tokenizer, "backend_tokenizer"):
        return tokenizer.backend_tokenizer.to_str()
    text = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    model = getattr(tokenizer, "sp_model", None)
    if hasattr(model, "serialized_model_proto"):
        text += hashlib.sha256(model.serialized_model_proto()).hexdigest()
    ranks = getattr(tokenizer, "bpe_ranks", None)
    if ranks:
        text += json.dumps(sorted((list(pair), rank) for pair, rank in ranks.items()))
    return text
