"""Committed dataset versions for trainer tests, written directly as the store lays them out."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from pipeline.record.ids import original_id
from tests.fixtures.manifest import manifest_of
from tests.fixtures.media import audio_bytes, image_bytes

CAPTAIN = {
    "name": "Captain Vela",
    "profile": "Captain of the airship Gilded Gale. Loud, generous and superstitious.",
    "greeting": "Ahoy, groundling!",
    "catchphrases": ["By the four winds!", "Trust the sky."],
}
OWL = {
    "name": "Professor Hoot",
    "profile": "A tawny owl who teaches mathematics at the Nightbranch Academy.",
    "greeting": "Good evening, young scholar!",
    "catchphrases": ["Whooo can tell me why?"],
}

_LINES = [
    ("What do you make of this sky?", "By the four winds, a red sky! We sail north tonight."),
    ("Should we chase that ship?", "Chase her? Merchants pay better in tea than in gold."),
    ("Listen to the wind up here.", "That gust climbs and falls: a squall line breathing."),
    ("Do we go through the storm?", "Around, always around. Trust the sky, deckhand."),
    ("Why is a triangle so strong?", "Whooo can tell me why? Its angles cannot shift."),
    ("What is one half plus one third?", "Five sixths, young scholar. Try the next one yourself."),
    ("Can owls see in the dark?", "Our eyes gather every crumb of moonlight there is."),
    ("How many stars are up there?", "More than feathers on every owl in the forest."),
]


def make_record(
    index: int,
    split: str,
    *,
    images: int = 1,
    audios: int = 1,
    turns: int = 2,
    named_user: str | None = "Mira",
) -> dict[str, Any]:
    """Return a canonical record: `turns` user/character exchanges, media in the first user turn."""
    character = CAPTAIN if index % 2 == 0 else OWL
    media = "".join(["<image> "] * images + ["<audio> "] * audios)
    messages = []
    for t in range(turns):
        user, reply = _LINES[(index + t) % len(_LINES)]
        content = (media if t == 0 else "") + f"{user} ({index}.{t})"
        messages.append({"role": "user", "name": named_user, "content": content})
        messages.append(
            {"role": "assistant", "name": character["name"], "content": f"{reply} #{index}"}
        )
    fmt_i = ("PNG", "JPEG")[index % 2]
    fmt_a = ("WAV", "FLAC")[index % 2]
    return {
        "id": original_id("tests", f"{split}-{index}"),
        "parent_id": None,
        "source": "tests",
        "split": split,
        "character": character,
        "messages": messages,
        "images": [{"bytes": image_bytes(fmt_i, 28, 40 + index), "path": None}] * images,
        "audios": [{"bytes": audio_bytes(fmt_a, 1.0), "path": None}] * audios,
        "augmentation": None,
    }


def write_version(
    store: Path,
    name: str,
    records: list[dict[str, Any]],
    version: int = 1,
    recipe: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write `records` as a committed version (Arrow shards + manifest); return the manifest."""
    import pyarrow as pa

    from pipeline.record.schema import RECORD_SCHEMA, records_to_table

    vdir = store / name / "versions" / f"v{version}"
    vdir.mkdir(parents=True, exist_ok=True)
    shards = []
    for split in ("train", "validation", "test"):
        rows = [r for r in records if r["split"] == split]
        if not rows:
            continue
        rel = f"{split}-00000-of-00001.arrow"
        table = records_to_table(rows, RECORD_SCHEMA)
        with pa.OSFile(str(vdir / rel), "wb") as sink, pa.ipc.new_file(sink, RECORD_SCHEMA) as w:
            w.write_table(table)
        digest = hashlib.sha256((vdir / rel).read_bytes()).hexdigest()
        size = (vdir / rel).stat().st_size
        shards.append(
            {"path": rel, "split": split, "rows": len(rows), "bytes": size, "sha256": digest}
        )
    from pipeline.record.schema import RECORD_SCHEMA
    from pipeline.store.fs import LocalFS
    from pipeline.store.manifest import ShardEntry, content_id, schema_sha256
    from pipeline.store.row_digest import add_row_digests

    # Readers check the content id, the shard hashes and the manifest digest: all real.
    schema_hash = schema_sha256(RECORD_SCHEMA)
    entries = [ShardEntry.model_validate(s) for s in shards]
    entries, rows = add_row_digests(str(vdir), entries, LocalFS())
    manifest = (
        manifest_of(
            name,
            entries,
            version=version,
            schema_sha256=schema_hash,
            content_id=content_id(schema_hash, rows),
            recipe=recipe or {"name": name, "seed": 3},
        )
        .sealed()
        .to_dict()
    )
    (store / name / "versions" / f"v{version}.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def interrupt_copy(models: Path, finished: str, step: int, run_id: str) -> Path:
    """Make run `run_id` in folder `models`: the finished run `finished` as it stood when it
    stopped after its step-`step` checkpoint (status `training`); return its folder."""
    import shutil
    import time

    cut = models / run_id
    shutil.copytree(models / finished / "base_model", cut / "base_model")
    checkpoint = f"checkpoints/checkpoint-{step}"
    shutil.copytree(models / finished / checkpoint, cut / checkpoint)
    run = json.loads((models / finished / "run.json").read_text())
    run.update(run_id=run_id, created=time.time(), status="training")
    (cut / "run.json").write_text(json.dumps(run))
    return cut


def standard_records(
    train: int = 8, validation: int = 2, test: int = 3, **kwargs: Any
) -> list[dict[str, Any]]:
    """Return a small multimodal corpus with every split filled."""
    out = []
    for split, n in (("train", train), ("validation", validation), ("test", test)):
        offset = {"train": 0, "validation": 100, "test": 200}[split]
        out += [make_record(offset + i, split, **kwargs) for i in range(n)]
    return out


@pytest.fixture(scope="session")
def mm_store(tmp_path_factory) -> Path:
    """A store with `mm@v1`: image + audio conversations in all three splits."""
    store = tmp_path_factory.mktemp("mm-store")
    write_version(store, "mm", standard_records())
    return store


@pytest.fixture(scope="session")
def text_store(tmp_path_factory) -> Path:
    """A store with `txt@v1`: the same conversations without media."""
    store = tmp_path_factory.mktemp("text-store")
    write_version(store, "txt", standard_records(images=0, audios=0))
    return store


@pytest.fixture(scope="session")
def tiny_omni(tmp_path_factory) -> str:
    """A tiny-random Omni thinker + processor built on the test corpus's text."""
    from trainers.tiny import build_tiny_omni

    texts = [m["content"] for r in standard_records() for m in r["messages"]]
    out = tmp_path_factory.mktemp("tiny") / "omni"
    return build_tiny_omni(texts, os.fspath(out), seed=0)


@pytest.fixture(scope="session")
def tiny_causal(tmp_path_factory) -> str:
    """A tiny random Qwen2 causal LM and a corpus-trained tokenizer with no chat template."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from trainers.tiny import train_tokenizer

    texts = [m["content"] for r in standard_records() for m in r["messages"]]
    tokenizer = train_tokenizer(texts, vocab_size=512)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config)
    out = os.fspath(tmp_path_factory.mktemp("tiny") / "causal")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


_VL_TEMPLATE = (
    "{%- for message in messages -%}{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}"
    "{%- elif part['type'] == 'image' -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}{{- '<|im_end|>\\n' -}}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


@pytest.fixture(scope="module")
def omni_processor(tiny_omni):
    """The tiny Omni model's processor, as training loads it."""
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_omni)


@pytest.fixture(scope="module")
def causal_tokenizer(tiny_causal):
    """The tiny causal LM's tokenizer, as training loads it."""
    from trainers.models import load_processor, resolve_model

    return load_processor(resolve_model(tiny_causal))


@pytest.fixture(scope="session")
def tiny_vl(tmp_path_factory) -> str:
    """A tiny random Qwen2.5-VL (image-text-to-text) with a real processor, no chat markers."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>"]
    specials += ["<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    texts = [m["content"] for r in standard_records() for m in r["messages"]]
    bpe.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=512,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token=specials[0], eos_token=specials[2]
    )
    sizes = {"patch_size": 14, "merge_size": 2, "temporal_patch_size": 2}
    processor = Qwen2_5_VLProcessor(
        Qwen2VLImageProcessor(**sizes, min_pixels=3136, max_pixels=3136),
        tok,
        Qwen2VLVideoProcessor(**sizes),
        chat_template=_VL_TEMPLATE,
    )
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1e4,
                "mrope_section": [1, 1, 2],
            },
            "pad_token_id": tok.pad_token_id,
            "eos_token_id": tok.eos_token_id,
            "bos_token_id": None,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "num_heads": 4,
            "intermediate_size": 64,
            "out_hidden_size": 32,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "fullatt_block_indexes": [1],
            "window_size": 56,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Qwen2_5_VLForConditionalGeneration(config)
    out = os.fspath(tmp_path_factory.mktemp("tiny") / "vl")
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
