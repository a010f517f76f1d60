"""Models built offline from a size table: tokenizer, processor and random weights.

`model: tiny-random` (unit tests) and `model: scratch-small` (the demo) are built here,
sized by trainers.presets. The tokenizer is a small byte-level BPE trained on the dataset's own text, wrapped with
the special tokens the Omni processor expects; the processor is a real
`Qwen2_5OmniProcessor` (image + audio), so tests and the demo run the full multimodal
path without any download. Sizes follow TRAINING_NOTES.md (the vision `out_hidden_size`
must equal the text hidden size).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

TINY_RANDOM = "tiny-random"


@dataclass(frozen=True)
class TextSize:
    """The language model's shape; mrope_section sums to half the head size (Omni)."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    mrope_section: tuple[int, int, int]


TINY_TEXT = TextSize(32, 37, 2, 4, 2, (1, 1, 2))

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MEDIA_TOKENS = {
    "image_token": "<|IMAGE|>",
    "audio_token": "<|AUDIO|>",
    "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
    "audio_bos_token": "<|audio_bos|>",
    "audio_eos_token": "<|audio_eos|>",
}

# ChatML like Qwen's, with `{% generation %}` around the character's text so
# `return_assistant_tokens_mask=True` also works for users of the saved processor.
_PART = (
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}"
    "{%- elif part['type'] == 'image' -%}{{- '<|vision_bos|><|IMAGE|><|vision_eos|>' -}}"
    "{%- elif part['type'] == 'audio' -%}{{- '<|audio_bos|><|AUDIO|><|audio_eos|>' -}}"
    "{%- endif -%}"
)
_CONTENT = (
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}" + _PART + "{%- endfor -%}{%- endif -%}"
)
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}" + _CONTENT + "{{- '<|im_end|>' -}}{% endgeneration %}"
    "{%- else -%}" + _CONTENT + "{{- '<|im_end|>' -}}{%- endif -%}"
    "{{- '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
# The same ChatML for the text-only causal LM (string contents only).
TEXT_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{- message['content'] + '<|im_end|>' -}}{% endgeneration %}"
    "{%- else -%}{{- message['content'] + '<|im_end|>' -}}{%- endif -%}"
    "{{- '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024):
    """Return a PreTrainedTokenizerFast: byte-level BPE trained on `texts` + Omni special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = SPECIAL_TOKENS + list(MEDIA_TOKENS.values())
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        extra_special_tokens=dict(MEDIA_TOKENS),
        model_max_length=32768,
    )


def build_processor(tokenizer):
    """Return a real Qwen2.5-Omni processor around `tokenizer`, sized for tiny inputs."""
    from transformers import (
        Qwen2_5OmniProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
        WhisperFeatureExtractor,
    )

    # 28x28 up to 56x56 pixels, one token per 14x14 patch: a handful of image tokens.
    images = Qwen2VLImageProcessor(
        patch_size=14, merge_size=1, temporal_patch_size=2, min_pixels=784, max_pixels=3136
    )
    videos = Qwen2VLVideoProcessor(patch_size=14, merge_size=1, temporal_patch_size=2)
    audio = WhisperFeatureExtractor(feature_size=20)
    return Qwen2_5OmniProcessor(images, videos, audio, tokenizer, chat_template=CHAT_TEMPLATE)


def build_model(tokenizer, seed: int, size: TextSize = TINY_TEXT):
    """Return a randomly initialised Qwen2.5-Omni thinker for `tokenizer`, same for a seed.

    The encoders stay tiny whatever `size` says: full fine-tuning freezes them, and the
    demo's images and audio only have to flow through the real multimodal path."""
    from transformers import (
        Qwen2_5OmniThinkerConfig,
        Qwen2_5OmniThinkerForConditionalGeneration,
    )

    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in MEDIA_TOKENS.items()}
    config = Qwen2_5OmniThinkerConfig(
        audio_config={
            "d_model": 32,
            "encoder_attention_heads": 4,
            "encoder_ffn_dim": 32,
            "encoder_layers": 2,
            "num_mel_bins": 20,
            "n_window": 100,
            "output_dim": size.hidden,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "num_heads": 4,
            "patch_size": 14,
            "spatial_merge_size": 1,
            "temporal_patch_size": 2,
            "intermediate_size": 64,
            "out_hidden_size": size.hidden,
            "fullatt_block_indexes": [1],
        },
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": size.hidden,
            "intermediate_size": size.intermediate,
            "num_hidden_layers": size.layers,
            "num_attention_heads": size.heads,
            "num_key_value_heads": size.kv_heads,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": list(size.mrope_section),
            },
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        audio_token_index=ids["audio_token"],
        image_token_index=ids["image_token"],
        video_token_index=ids["video_token"],
        audio_start_token_id=ids["audio_bos_token"],
        audio_end_token_id=ids["audio_eos_token"],
        vision_start_token_id=ids["vision_bos_token"],
        vision_end_token_id=ids["vision_eos_token"],
        user_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
    )
    return _seeded(Qwen2_5OmniThinkerForConditionalGeneration, config, seed, tokenizer)


def build_causal_lm(tokenizer, seed: int, size: TextSize = TINY_TEXT):
    """Return a randomly initialised Qwen3 causal LM for `tokenizer` (text-only recipes)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads,
        head_dim=size.hidden // size.heads,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return _seeded(Qwen3ForCausalLM, config, seed, tokenizer)


def _seeded(model_class, config, seed: int, tokenizer):
    """Return `model_class(config)` initialised from `seed` (the global generator untouched),
    generating with the tokenizer's end-of-turn and padding tokens."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def build_tiny_omni(
    texts: Iterable[str],
    out_dir: str,
    seed: int,
    vocab_size: int = 1024,
    size: TextSize = TINY_TEXT,
    multimodal: bool = True,
) -> str:
    """Write a built model and its processor (tokenizer trained on `texts`) to `out_dir`;
    return it: an Omni thinker when `multimodal`, else a causal LM with its tokenizer."""
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    if multimodal:
        processor = build_processor(tokenizer)
        model = build_model(tokenizer, seed, size)
    else:
        tokenizer.chat_template = TEXT_CHAT_TEMPLATE
        processor = tokenizer
        model = build_causal_lm(tokenizer, seed, size)
    tmp = f"{out_dir}.tmp-{os.getpid()}"
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    os.replace(tmp, out_dir)  # a crash never leaves a half-written base model behind
    logger.info(
        "built %s (vocab %d, %.1fM parameters) in %s",
        type(model).__name__,
        len(tokenizer),
        model.num_parameters() / 1e6,
        out_dir,
    )
    return out_dir
