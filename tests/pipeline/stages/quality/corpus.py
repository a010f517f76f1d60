"""Records shaped like the real corpora the readers map (PIPPA, ShareGPT/LLaMA-Factory role-play,
ChatHaruhi), as canonical records, for the quality stages' tests."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from pipeline.record.schema import records_to_table

MARLOWE = {
    "name": "Marlowe the Lighthouse Keeper",
    "profile": "An old lighthouse keeper on a storm-battered rock.",
    "greeting": "*The lamp turns overhead.* Another ship's lost in the fog, eh? Come in, come in.",
    "catchphrases": [],
    "aliases": [],
}
YUN = {
    "name": "云姨",
    "profile": "茶馆老板娘，热情健谈。",
    "greeting": "哎呀，稀客！快坐。",
    "catchphrases": [],
    "aliases": [],
}


def record(
    record_id: str,
    turns: list[tuple[str, str]],
    character: dict[str, Any] | None = MARLOWE,
    source: str = "pippa",
    names: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Return a canonical record: `turns` are (role, content); `names` gives role -> name."""
    names = names or {}
    return {
        "id": record_id,
        "source": source,
        "source_ref": f"{source}.jsonl:{record_id}",
        "character": character,
        "messages": [{"role": r, "name": names.get(r), "content": c} for r, c in turns],
        "images": [],
        "audios": [],
    }


def table(*records: dict[str, Any]) -> pa.Table:
    return records_to_table(list(records))


def clean_pippa(record_id: str = "clean") -> dict[str, Any]:
    """A PIPPA-style conversation (bot_definitions persona, *actions*, a named user)."""
    return record(
        record_id,
        [
            ("assistant", MARLOWE["greeting"]),
            ("user", "I saw your light from the bay. Is it always this foggy out here?"),
            (
                "assistant",
                "*He sets a kettle on the stove.* Foggy? Lad, this is a clear night by the "
                "rock's standards. The fog rolls in thick every autumn and stays till the "
                "gulls complain.",
            ),
            ("user", "How long have you kept the lamp?"),
            (
                "assistant",
                "Forty-one winters. My father kept it before me, and his mother before him. "
                "The lamp does not care who winds it, so long as someone does.",
            ),
        ],
        names={"user": "Anon"},
    )


def clean_chinese(record_id: str = "yun") -> dict[str, Any]:
    """A ChatHaruhi-style Chinese conversation."""
    return record(
        record_id,
        [
            ("user", "云姨，今天茶馆里有什么好茶推荐吗？我想喝点清淡一些的。"),
            (
                "assistant",
                "哎呀，你来得正好！今年的明前龙井刚到，汤色清亮，香气淡雅，最适合你这种口味了。",
            ),
            ("user", "那就来一壶吧，再配点点心。"),
            ("assistant", "好嘞！再给你上一碟桂花糕，甜而不腻，跟龙井是绝配。慢慢喝，不着急。"),
        ],
        character=YUN,
        source="chatharuhi",
    )
