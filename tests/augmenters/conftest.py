"""Fixtures for augmenter tests: tiny media, a tiny record, tiny offline transformers models."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from augmenters.config import AugmentConfig
from pipeline.record.ids import original_id

CHARACTER = {
    "name": "Hatsune Miku",
    "profile": "A cheerful virtual idol.",
    "greeting": "Hi there!",
    "catchphrases": ["Let's sing together!"],
}


def jpeg_bytes(width: int = 48, height: int = 40, seed: int = 0) -> bytes:
    import cv2

    rng = np.random.default_rng(seed)
    gradient = np.linspace(0, 255, width)[None, :, None].repeat(height, 0).repeat(3, 2)
    image = np.clip(gradient + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def png_rgba_bytes(width: int = 32, height: int = 24) -> bytes:
    import cv2

    image = np.zeros((height, width, 4), np.uint8)
    image[..., 0] = np.arange(width, dtype=np.uint8)[None, :] * 7
    image[..., 3] = 200
    return cv2.imencode(".png", image)[1].tobytes()


def wav_bytes(seconds: float = 0.25, rate: int = 16000, channels: int = 1) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    samples = np.stack([tone, 0.5 * tone], axis=1)[:, :channels] if channels > 1 else tone
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def make_record(**overrides: Any) -> dict[str, Any]:
    """Return a canonical train record with one image, one clip, a system prompt and four turns."""
    record = {
        "id": original_id("sample", "dialogues.jsonl:1"),
        "parent_id": None,
        "source": "sample",
        "split": "train",
        "character": dict(CHARACTER),
        "messages": [
            {"role": "system", "name": None, "content": "You are Hatsune Miku, a virtual idol."},
            {
                "role": "user",
                "name": "Bob",
                "content": "Hello Miku! Here is my quick brown dog <image> sitting in the big house.",
            },
            {
                "role": "assistant",
                "name": "Hatsune Miku",
                "content": "What a lovely dog, Bob! Let's sing together! I like the small house too.",
            },
            {
                "role": "user",
                "name": "Bob",
                "content": "Listen to this song <audio> and tell me what you think about the music.",
            },
            {
                "role": "assistant",
                "name": "Hatsune Miku",
                "content": "The melody starts slowly and then grows into a bright chorus, Bob.",
            },
        ],
        "images": [{"bytes": jpeg_bytes(), "path": "images/dog.jpg"}],
        "audios": [{"bytes": wav_bytes(), "path": "audio/song.wav"}],
        "augmentation": None,
        "source_ref": "dialogues.jsonl:1",
    }
    record.update(overrides)
    return record


def make_augmenter(seed: int = 1234, recipe_hash: str = "f" * 64, **augment: Any):
    from augmenters import RecordAugmenter, validate_augment_config

    augment.setdefault("copies", 2)
    cfg = AugmentConfig(**augment)
    validate_augment_config(cfg)
    return RecordAugmenter(cfg, seed, recipe_hash)


@pytest.fixture
def record() -> dict[str, Any]:
    return make_record()


def _tiny_tokenizer(vocab_words: list[str]):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "</s>"]
    vocab = {w: i for i, w in enumerate(specials + vocab_words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        eos_token="</s>",
    ), len(specials)


TINY_WORDS = (
    "the a quick brown fox dog cat house big small friend talk walk run see look song music "
    "melody bright chorus lovely sitting hello here think listen tell what about you me"
).split()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Build a tiny random BERT masked LM and a tiny T5 (word-level tokenizers) offline; return their folders."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, T5Config, T5ForConditionalGeneration

    root: Path = tmp_path_factory.mktemp("tiny_models")
    tokenizer, n_special = _tiny_tokenizer(TINY_WORDS)
    vocab = n_special + len(TINY_WORDS)
    torch.manual_seed(0)
    bert = BertForMaskedLM(
        BertConfig(
            vocab_size=vocab,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
    )
    t5 = T5ForConditionalGeneration(
        T5Config(
            vocab_size=vocab,
            d_model=32,
            d_kv=16,
            d_ff=64,
            num_layers=1,
            num_decoder_layers=1,
            num_heads=2,
            pad_token_id=0,
            eos_token_id=5,
            decoder_start_token_id=0,
        )
    )
    with torch.no_grad():
        # A random decoder mostly emits special tokens, which decode to nothing; silence them.
        t5.lm_head.weight[:n_special] = 0
    paths = {}
    for name, model in (("bert", bert), ("t5", t5)):
        folder = root / name
        tokenizer.save_pretrained(folder)
        model.save_pretrained(folder)
        paths[name] = str(folder)
    return paths
