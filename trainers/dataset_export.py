"""`roleforge export NAME@vN --to FORMAT OUT`: a committed version as other trainers read it.

Formats (one JSON Lines file per split, media as files under `media/` named by content
hash, referenced by paths relative to OUT):
- `llamafactory`: ShareGPT rows (`conversations` of `from`/`value`, `system`, `images`,
  `audios`) and a `dataset_info.json` entry per split; train with `dataset_dir: OUT`
  (LLaMA-Factory resolves media paths against `media_dir`, which defaults to it);
- `sharegpt`: the same rows without `dataset_info.json`;
- `openai` / `swift`: `messages` of `role`/`content` with `<image>` / `<audio>` tags in
  the text and `images` / `audios` path lists (ms-swift's and LLaMA-Factory's openai form);
- `trl`: TRL's conversational form, `messages` with the persona as the system message;
  with images, every content is a list of typed parts (`{"type": "image"}` where the
  image was) and `images` lists the paths; TRL has no audio input, so audio stays as
  `{"type": "audio"}` parts and an `audios` path list for a collator of your own.

Every target wants user/assistant turns alternating from a user turn and ending on an
assistant turn, so: the persona (`system_template`) and any system messages become the
system prompt; turns of one role in a row are joined with a newline; a greeting (the
character speaking before anyone else, as in PIPPA) is folded into the system prompt;
trailing user turns are dropped with their media. Each change and each skipped record
is counted in the report.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.store.read import Store
from trainers.chat import ChatFormatter, ChatTurn
from trainers.config import train_config_of

FORMATS = ("llamafactory", "sharegpt", "openai", "swift", "trl")
SPLITS = ("train", "validation", "test")
GREETING = '{name} opened the conversation with: "{text}"'
_PLACEHOLDER = {"image": "<image>", "audio": "<audio>"}


class ExportError(ValueError):
    """An export that cannot be written (unknown format, output folder not empty)."""


@dataclass
class ExportReport:
    """What an export wrote and every change it made to fit the target format."""

    format: str
    out: str
    dataset: dict[str, Any]
    rows: dict[str, int] = field(default_factory=dict)
    greetings_folded: int = 0
    trailing_user_turns_dropped: int = 0
    media_dropped: int = 0  # media of dropped trailing user turns
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> records
    media_files: int = 0
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Conversation:
    """A record as the targets want it: system prompt, then alternating user/assistant turns."""

    record_id: str
    system: str
    turns: list[ChatTurn]


def normalise(sample, report: ExportReport, skipped: Counter) -> Conversation | None:
    """Return the target-ready conversation of a ChatSample (None: skipped, with a reason)."""
    turns = list(sample.turns)
    system = turns.pop(0).text if sample.has_system else ""
    merged: list[ChatTurn] = []
    for turn in turns:
        if merged and merged[-1].role == turn.role:
            last = merged[-1]
            merged[-1] = ChatTurn(turn.role, last.text + "\n" + turn.text, last.media + turn.media)
        else:
            merged.append(ChatTurn(turn.role, turn.text, list(turn.media)))
    if merged and merged[0].role == "assistant":
        greeting = merged.pop(0)
        if greeting.media:
            skipped["greeting_with_media"] += 1
            return None
        folded = GREETING.format(name=sample.character, text=greeting.text.strip())
        system = f"{system}\n\n{folded}" if system else folded
        report.greetings_folded += 1
    while merged and merged[-1].role == "user":
        dropped = merged.pop()
        report.trailing_user_turns_dropped += 1
        report.media_dropped += len(dropped.media)
    if not merged:
        skipped["no_character_turn_after_a_user_turn"] += 1
        return None
    return Conversation(sample.record_id, system, merged)


class MediaFolder:
    """Writes media bytes once each under OUT/media/, named by content hash; returns paths."""

    def __init__(self, out: str):
        self.out = out
        self.written: set[str] = set()

    def path(self, kind: str, data: bytes) -> str:
        rel = f"media/{hashlib.sha256(data).hexdigest()[:24]}.{_extension(kind, data)}"
        if rel not in self.written:
            full = os.path.join(self.out, rel)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(data)
            self.written.add(rel)
        return rel


def _extension(kind: str, data: bytes) -> str:
    import io

    if kind == "image":
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return (im.format or "png").lower().replace("jpeg", "jpg")
    import soundfile as sf

    return sf.info(io.BytesIO(data)).format.lower()


def _media_paths(conv: Conversation, media: MediaFolder) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"images": [], "audios": []}
    for turn in conv.turns:
        for kind, data in turn.media:
            out["images" if kind == "image" else "audios"].append(media.path(kind, data))
    return out


def sharegpt_row(conv: Conversation, paths: dict[str, list[str]]) -> dict[str, Any]:
    role = {"user": "human", "assistant": "gpt"}
    return {
        "id": conv.record_id,
        "conversations": [{"from": role[t.role], "value": t.text} for t in conv.turns],
        "system": conv.system,
        **paths,
    }


def openai_row(conv: Conversation, paths: dict[str, list[str]]) -> dict[str, Any]:
    system = [{"role": "system", "content": conv.system}] if conv.system else []
    turns = [{"role": t.role, "content": t.text} for t in conv.turns]
    return {"id": conv.record_id, "messages": system + turns, **paths}


def trl_row(conv: Conversation, paths: dict[str, list[str]], typed: bool) -> dict[str, Any]:
    row = openai_row(conv, paths)
    if not typed:
        row.pop("images")
        row.pop("audios")
        return row
    for message, turn in zip(row["messages"][-len(conv.turns) :], conv.turns, strict=True):
        message["content"] = turn.parts()
    if conv.system:
        row["messages"][0]["content"] = [{"type": "text", "text": conv.system}]
    return row


def export_version(
    store_uri: str,
    name: str,
    version: int | None,
    fmt: str,
    out: str,
    system_template: str | None = None,
) -> ExportReport:
    """Write version `name@vN` (latest when None) to `out` in format `fmt`; return the report."""
    from trainers.data import SplitReader

    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if os.path.isdir(out) and os.listdir(out):
        raise ExportError(f"export folder {out} is not empty")
    store = Store(store_uri, name)
    manifest = store.manifest(version)
    version = manifest.number
    template = system_template or train_config_of(manifest.recipe).system_template
    formatter = ChatFormatter(template, keep=frozenset({"image", "audio"}))
    readers = {s: SplitReader(store.shard_paths(manifest, s), store.fs) for s in SPLITS}
    has_images = any(r.media_counts()["image"] for r in readers.values() if len(r))
    os.makedirs(out, exist_ok=True)
    report = ExportReport(
        format=fmt,
        out=out,
        dataset={"name": name, "version": version, "content_id": manifest.content_id},
    )
    media = MediaFolder(out)
    skipped: Counter[str] = Counter()
    for split, reader in readers.items():
        if not len(reader):
            continue  # no empty split files: loaders reject splits without rows
        rel = f"{split}.jsonl"
        rows = 0
        with open(os.path.join(out, rel), "w", encoding="utf-8") as f:
            for i in range(len(reader)):
                conv = normalise(formatter.format(reader.row(i)), report, skipped)
                if conv is None:
                    continue
                f.write(json.dumps(_row(fmt, conv, media, has_images), ensure_ascii=False) + "\n")
                rows += 1
        report.rows[split] = rows
        report.files.append(rel)
    if fmt == "llamafactory":
        _write_dataset_info(out, name, version, report)
    report.skipped = dict(skipped)
    report.media_files = len(media.written)
    return report


def _row(fmt: str, conv: Conversation, media: MediaFolder, has_images: bool) -> dict[str, Any]:
    paths = _media_paths(conv, media)
    if fmt in ("llamafactory", "sharegpt"):
        return sharegpt_row(conv, paths)
    if fmt == "trl":
        return trl_row(conv, paths, typed=has_images)
    return openai_row(conv, paths)


def dataset_info(name: str, version: int, files: list[str]) -> dict[str, Any]:
    """Return LLaMA-Factory's dataset_info.json: one sharegpt entry per split file."""
    entry = {
        "formatting": "sharegpt",
        "columns": {
            "messages": "conversations",
            "system": "system",
            "images": "images",
            "audios": "audios",
        },
        "tags": {
            "role_tag": "from",
            "content_tag": "value",
            "user_tag": "human",
            "assistant_tag": "gpt",
        },
    }
    return {
        f"{name}_v{version}_{rel.removesuffix('.jsonl')}": {"file_name": rel, **entry}
        for rel in files
    }


def _write_dataset_info(out: str, name: str, version: int, report: ExportReport) -> None:
    with open(os.path.join(out, "dataset_info.json"), "w", encoding="utf-8") as f:
        json.dump(dataset_info(name, version, report.files), f, indent=2)
        f.write("\n")
    report.files.append("dataset_info.json")
