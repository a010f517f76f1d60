"""Token counts of canonical records under a model's chat template, for the quality ledger.

The count is what training sees: the record formatted by ChatFormatter (persona system
prompt, named speakers), rendered by the model's chat template and tokenized with images
and audio expanded to the tokens the processor gives them (ConversationEncoder.plan, the
trainer's own length decision, without a length limit). `processor_hash` names the
processor the counts hold for, so a count is reused only where it still holds.

A built model (`tiny-random`, `scratch-small`) has no processor before a training run builds one from the dataset's text;
the ledger then counts with a byte-level tokenizer (the tiny tokenizer with an empty
vocabulary: one token per UTF-8 byte) inside the same Omni processor. Its hash differs
from any run's, so the trainer never mistakes those counts for its own.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from trainers.config import TrainConfig
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
        self.processor_hash = processor_hash(processor, system_template)

    def count(self, record: dict[str, Any]) -> int:
        """Return the record's tokens up to its last character turn, media expanded."""
        return self.encoder.plan(self.formatter.format(record)).length


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


def processor_hash(processor: Any, system_template: str) -> str:
    """Return sha256 over what decides a count: vocabulary, template, media settings."""
    tokenizer = getattr(processor, "tokenizer", processor)
    parts = {
        "class": type(processor).__name__,
        "vocab": tokenizer.backend_tokenizer.to_str()
        if hasattr(tokenizer, "backend_tokenizer")
        else json.dumps(tokenizer.get_vocab(), sort_keys=True),
        "chat_template": getattr(processor, "chat_template", None),
        "system_template": system_template,
        "media": [
            getattr(processor, name).to_json_string()
            for name in ("image_processor", "feature_extractor")
            if hasattr(getattr(processor, name, None), "to_json_string")
        ],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
