"""Which model a recipe names, what it can take, and loading it with LoRA or for full tuning.

Three families, decided from the model's config alone (no weights read):
1. any-to-text models listed in ANY_TO_TEXT (image + audio chat; Qwen2.5-Omni's thinker is
   the reference). Add another processor-driven model there, in one line;
2. image-text models through AutoModelForImageTextToText + AutoProcessor;
3. any AutoModelForCausalLM, text only, with its tokenizer.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

logger = logging.getLogger(__name__)

Family = Literal["any-to-text", "image-text", "causal-lm"]

# model_type -> (transformers class, media it takes). A full Qwen2.5-Omni checkpoint
# ("qwen2_5_omni") trains its thinker: the talker only turns text into speech.
ANY_TO_TEXT: dict[str, tuple[str, frozenset[str]]] = {
    "qwen2_5_omni_thinker": (
        "Qwen2_5OmniThinkerForConditionalGeneration",
        frozenset({"image", "audio"}),
    ),
    "qwen2_5_omni": ("Qwen2_5OmniThinkerForConditionalGeneration", frozenset({"image", "audio"})),
}

# A ChatML template for text-only tokenizers that ship none.
DEFAULT_TEXT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


class UnsupportedModel(ValueError):
    """The recipe names a model that none of the three families can train."""


class ModalityMismatch(ValueError):
    """The dataset has media the model cannot take, and drop_media is off."""


@dataclass(frozen=True)
class ModelSpec:
    """A model reference resolved to its family, class and the media it takes."""

    name: str  # the local path or hub id
    family: Family
    model_class: str
    modalities: frozenset[str]
    model_type: str

    @property
    def multimodal(self) -> bool:
        return self.family != "causal-lm"


def resolve_model(name: str, trust_remote_code: bool = False) -> ModelSpec:
    """Return the ModelSpec of a local path or hub id from its config (no weights loaded)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )

    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise UnsupportedModel(f"cannot read the config of model {name!r}: {exc}") from None
    model_type = config.model_type
    if model_type in ANY_TO_TEXT:
        cls, media = ANY_TO_TEXT[model_type]
        return ModelSpec(name, "any-to-text", cls, media, model_type)
    if model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return ModelSpec(
            name, "image-text", "AutoModelForImageTextToText", frozenset({"image"}), model_type
        )
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or _has_remote_causal_lm(config):
        return ModelSpec(name, "causal-lm", "AutoModelForCausalLM", frozenset(), model_type)
    raise UnsupportedModel(
        f"model {name!r} (model_type {model_type!r}) is not an any-to-text, image-text-to-text "
        "or causal language model"
    )


def _has_remote_causal_lm(config: Any) -> bool:
    return "AutoModelForCausalLM" in (getattr(config, "auto_map", None) or {})


def check_modalities(
    spec: ModelSpec, media_counts: dict[str, int], drop_media: bool, dataset: str
) -> frozenset[str]:
    """Return the media kinds to keep; raise ModalityMismatch if some cannot be taken.

    `media_counts` maps "image"/"audio" to the number of records carrying that kind.
    """
    missing = {k: n for k, n in media_counts.items() if n and k not in spec.modalities}
    if missing and not drop_media:
        what = " and ".join(
            f"{'images' if k == 'image' else 'audio'} ({n} records)"
            for k, n in sorted(missing.items())
        )
        takes = " and ".join(["text", *sorted(spec.modalities)])
        raise ModalityMismatch(
            f"dataset {dataset} has {what}, but model {spec.name!r} ({spec.family}) takes only "
            f"{takes}; choose a model that takes them or set train.drop_media: true to drop them"
        )
    if missing:
        logger.warning("dropping %s the model cannot take (drop_media)", ", ".join(sorted(missing)))
    return frozenset(spec.modalities)


def load_processor(spec: ModelSpec, trust_remote_code: bool = False) -> Any:
    """Return the processor (multimodal families) or tokenizer (causal LMs) of `spec`."""
    if spec.multimodal:
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(spec.name, trust_remote_code=trust_remote_code)
        tokenizer = processor.tokenizer
    else:
        from transformers import AutoTokenizer

        processor = tokenizer = AutoTokenizer.from_pretrained(
            spec.name, trust_remote_code=trust_remote_code
        )
        if not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = DEFAULT_TEXT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return processor


def load_model(
    spec: ModelSpec, trust_remote_code: bool = False, dtype: Any = None, quantization: Any = None
) -> Any:
    """Return the model of `spec` loaded from safetensors only (quantized when asked)."""
    import transformers

    cls = getattr(transformers, spec.model_class)
    extra = {"quantization_config": quantization} if quantization is not None else {}
    return cls.from_pretrained(
        spec.name,
        use_safetensors=True,
        trust_remote_code=trust_remote_code,
        dtype=dtype if dtype is not None else "auto",
        **extra,
    )


def language_model_prefix(model: Any) -> str:
    """Return the module path of the model's language model ('' when it is the whole model)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    if decoder is None or decoder is model:
        return ""
    for name, module in model.named_modules():
        if module is decoder:
            return name
    return ""


def lora_targets(model: Any, target_modules: list[str] | str | None) -> list[str] | str:
    """Return the LoRA target modules: linear layers of the language model only.

    None means every linear layer of the language model; a list names leaf modules
    (q_proj, ...) searched inside the language model only; a string is passed to peft
    as a regex over full module names, unchanged.
    """
    import torch

    if isinstance(target_modules, str):
        return target_modules
    prefix = language_model_prefix(model)
    wanted = set(target_modules) if target_modules else None
    names = []
    for name, module in model.named_modules():
        if prefix and not name.startswith(prefix + "."):
            continue
        if not isinstance(module, torch.nn.Linear):
            continue
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "lm_head" or (wanted is not None and leaf not in wanted):
            continue
        names.append(name)
    if not names:
        raise ValueError(
            f"no LoRA target modules {sorted(wanted) if wanted else ''} found in the language model"
        )
    return names


@contextmanager
def quiet_peft_wrapping() -> Iterator[None]:
    """Hide the FutureWarning peft 0.21 triggers itself when it wraps a model: it reads
    transformers 5's deprecated `is_gradient_checkpointing` property (our code reads
    `is_activation_checkpointing`). Shown when logging is at DEBUG (`-v`)."""
    with warnings.catch_warnings():
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            warnings.filterwarnings(
                "ignore",
                message=r"`is_gradient_checkpointing` is deprecated",
                category=FutureWarning,
            )
        yield


def apply_lora(model: Any, lora: Any, family: Family = "causal-lm") -> Any:
    """Return `model` wrapped by peft with LoRA on its language model (all else frozen).

    Multimodal families get no peft task type: peft then saves the model class in
    `auto_mapping`, so `peft.AutoPeftModel.from_pretrained(folder)` rebuilds the right
    class (AutoModelForCausalLM, which a CAUSAL_LM adapter implies, has no Omni thinker).
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha if lora.alpha is not None else 2 * lora.r,
        lora_dropout=lora.dropout,
        target_modules=lora_targets(model, lora.target_modules),
        task_type="CAUSAL_LM" if family == "causal-lm" else None,
    )
    with quiet_peft_wrapping():
        return get_peft_model(model, config)


class QuantizationUnavailable(ValueError):
    """QLoRA was asked for where bitsandbytes cannot run (no CUDA device, or not installed)."""


def quantization_config(bits: int | None) -> Any:
    """Return the BitsAndBytesConfig of 4- or 8-bit QLoRA (None for none); raise when unavailable."""
    if bits is None:
        return None
    import torch

    if not torch.cuda.is_available():
        raise QuantizationUnavailable(
            f"quantization_bit: {bits} (QLoRA) needs a CUDA device for bitsandbytes; none is "
            "visible here. Remove quantization_bit to train LoRA unquantized"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise QuantizationUnavailable(
            f"quantization_bit: {bits} (QLoRA) needs bitsandbytes: pip install bitsandbytes"
        ) from None
    from transformers import BitsAndBytesConfig

    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
    )


def freeze_encoders(model: Any) -> int:
    """Freeze everything outside the language model and output head; return frozen params."""
    prefix = language_model_prefix(model)
    if not prefix:
        return 0
    frozen = 0
    for name, param in model.named_parameters():
        if not (name.startswith(prefix + ".") or name.startswith("lm_head")):
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen
