"""Which corpus format a record is written in, judged from its keys."""

from __future__ import annotations

from typing import Any

from pipeline.readers.arrow import CANONICAL_KEYS
from pipeline.readers.tavern import is_card


def detect_format(value: Any) -> str | None:
    """Return the format name of one parsed record, or None when no known shape matches."""
    if not isinstance(value, dict):
        return None
    keys = value.keys()
    if CANONICAL_KEYS <= keys:
        return "arrow"
    if "bot_name" in keys and "conversation" in keys:
        return "pippa"
    if isinstance(value.get("dialogue"), list):
        return "chatharuhi"
    if isinstance(value.get("context"), str) and isinstance(value.get("role"), str):
        return "charactereval"
    content = value.get("content")
    if isinstance(content, list) and any(isinstance(t, dict) and "turn_role" in t for t in content):
        return "characterllm"
    if "question" in keys and isinstance(value.get("reply"), list):
        return "characterllm"
    if is_card(value):
        return "tavern"
    if isinstance(value.get("conversations"), list):
        if isinstance(value.get("role"), str):
            return "mmrole"
        return "sharegpt"
    messages = value.get("messages")
    if isinstance(messages, list):
        if any(isinstance(m, dict) and isinstance(m.get("content"), list) for m in messages):
            return "openai"
        return "llamafactory"
    return None
