"""MMRole (YanqiDai/MMRole) multimodal role-play dialogues, as the repository publishes them.

    {"id", "role": <character played>, "other_role": <who talks to it>, "script",
     "system": <system prompt>, "image": "COCO/train2017/x.jpg",
     "conversations": [{"from": "user" | "assistant", "value"}]}

No turn holds an `<image>` token: as in Qwen-VL, the image belongs to the first user turn,
which also carries the character's profile ("The description of <role> is as follows:").
Images resolve against the source's `media_dir:` (MMRole's `images/` folder). Qwen-VL's
inline spelling, `<img>path</img>`, is read too.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.readers.assemble import (
    MediaRef,
    ParsedRecord,
    RawTurn,
    media_refs,
    optional_str,
    require_dict,
    require_list,
    require_str,
    unmapped_keys,
)
from pipeline.record.characters import make_character
from pipeline.record.rejection import RecordRejected
from pipeline.record.schema import IMAGE_PLACEHOLDER

MAPPED = frozenset(
    {"role", "other_role", "system", "conversations", "image", "images", "audio", "audios"}
)
_QWEN_IMAGE = re.compile(r"<img>(.*?)</img>", re.DOTALL)
# The profile MMRole writes into the first user turn ends at its triple line break.
_PROFILE = "The description of {name} is as follows:\n"


def parse_mmrole(value: dict[str, Any]) -> ParsedRecord:
    """Return the parsed form of an MMRole record; `role` names the character played."""
    name = require_str(value.get("role"), "role").strip()
    if not name:
        raise RecordRejected("wrong_types", "role is empty")
    other = (optional_str(value.get("other_role"), "other_role") or "").strip() or None
    turns = []
    inline: list[MediaRef] = []
    for i, message in enumerate(require_list(value.get("conversations"), "conversations")):
        message = require_dict(message, f"conversations[{i}]")
        speaker = require_str(message.get("from"), f"conversations[{i}].from")
        text = require_str(message.get("value"), f"conversations[{i}].value")
        text = _inline_images(text, inline)
        user = speaker.strip().casefold() in ("user", "human")
        turns.append(RawTurn(speaker=speaker, content=text, name=other if user else None))
    system = optional_str(value.get("system"), "system")
    if system and not (turns and turns[0].speaker.casefold() == "system"):
        turns.insert(0, RawTurn(speaker="system", content=system))
    images = (
        inline + media_refs(value.get("image"), "image") + media_refs(value.get("images"), "images")
    )
    return ParsedRecord(
        turns=turns,
        images=images,
        audios=media_refs(value.get("audio"), "audio") + media_refs(value.get("audios"), "audios"),
        character=make_character(name, profile=_profile(turns, name)),
        media_in_first_user_turn=True,
        unmapped=unmapped_keys(value, MAPPED),
    )


def _inline_images(text: str, found: list[MediaRef]) -> str:
    def sub(m: re.Match[str]) -> str:
        found.append(MediaRef.from_text(m.group(1).strip()))
        return IMAGE_PLACEHOLDER

    return _QWEN_IMAGE.sub(sub, text)


def _profile(turns: list[RawTurn], name: str) -> str | None:
    """Return the character description MMRole embeds in the first user turn, if any.

    The turn itself stays as written (it is what MMRole trains on); the profile is copied
    to the character so cards, splits by character and the trainer's persona see it.
    """
    first = next((t for t in turns if t.speaker.casefold() in ("user", "human")), None)
    if first is None:
        return None
    marker = _PROFILE.format(name=name)
    start = first.content.find(marker)
    if start < 0:
        return None
    body = first.content[start + len(marker) :]
    return body.split("\n\n\n", 1)[0].strip() or None
