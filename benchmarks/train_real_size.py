"""LoRA at real size on random weights: tokens/s, MFU, peak GPU memory, data-wait share.

Builds a Qwen2.5-Omni-3B-class thinker and a Qwen2.5-VL-3B-class model from the sizes in
their published config.json files (transcribed below; no download), with random weights,
LoRA on every linear layer of the language model (encoders frozen, as roleforge trains),
bf16 and gradient checkpointing, and runs a fixed number of optimizer steps on generated
multimodal batches (one image per sample, plus one audio clip for the thinker).

    python benchmarks/train_real_size.py --size real --steps 20      # on a GPU
    python benchmarks/train_real_size.py --size tiny --steps 3       # CPU smoke test

MFU = achieved model FLOP/s / peak dense bf16 FLOP/s of the device (--peak-tflops,
989 for H100/H200 SXM). Model FLOPs per step (PaLM convention: recomputation from
gradient checkpointing not counted):
    LM tokens T, LM linear parameters N_lm, LoRA parameters N_lora, layers L, hidden d,
    sequence S:  4 * N_lm * T          (forward 2NT + input-gradient backward 2NT; frozen
                                        weights get no weight-gradient matmul)
               + 6 * N_lora * T        (LoRA weights: forward, input and weight gradients)
               + 6 * L * d * S * T / S (causal attention: QK^T and AV, forward + backward)
    encoders (frozen, forward only, no grads needed): 2 * N_enc * (encoder tokens).
Data-wait share = seconds spent producing and copying batches / step seconds.
"""

from __future__ import annotations

import argparse
import json
import time

# Sizes from Qwen/Qwen2.5-VL-3B-Instruct and Qwen/Qwen2.5-Omni-3B config.json.
TEXT_3B = {
    "vocab_size": 151936,
    "hidden_size": 2048,
    "intermediate_size": 11008,
    "num_hidden_layers": 36,
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
}
VISION_3B = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "out_hidden_size": 2048,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
}
AUDIO_3B = {
    "d_model": 1280,
    "encoder_layers": 32,
    "encoder_attention_heads": 20,
    "encoder_ffn_dim": 5120,
    "num_mel_bins": 128,
    "n_window": 100,
    "output_dim": 2048,
}
TINY = {
    "text": {
        "vocab_size": 512,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e4, "mrope_section": [1, 1, 2]},
    },
    "vision": {
        **VISION_3B,
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 4,
        "out_hidden_size": 32,
        "fullatt_block_indexes": [1],
    },
    "audio": {
        **AUDIO_3B,
        "d_model": 32,
        "encoder_layers": 2,
        "encoder_attention_heads": 4,
        "encoder_ffn_dim": 64,
        "num_mel_bins": 20,
        "output_dim": 32,
    },
}
# Special token ids: the top of the vocabulary, as in Qwen's tokenizer layout.
IDS = ("image", "video", "audio", "vision_start", "vision_end", "audio_start", "audio_end")


def token_ids(vocab: int) -> dict[str, int]:
    return {name: vocab - 1 - i for i, name in enumerate(IDS)}


def build(kind: str, size: str):
    """Return (model, token ids) of `kind` (omni | vl) at `size` (real | tiny), random weights."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5OmniThinkerConfig,
        Qwen2_5OmniThinkerForConditionalGeneration,
    )

    text = dict(TEXT_3B if size == "real" else TINY["text"])
    vision = dict(VISION_3B if size == "real" else TINY["vision"])
    ids = token_ids(text["vocab_size"])
    if kind == "vl":
        config = Qwen2_5_VLConfig(
            text_config=text,
            vision_config=vision,
            image_token_id=ids["image"],
            video_token_id=ids["video"],
            vision_start_token_id=ids["vision_start"],
            vision_end_token_id=ids["vision_end"],
        )
        cls = Qwen2_5_VLForConditionalGeneration
    else:
        config = Qwen2_5OmniThinkerConfig(
            text_config=text,
            vision_config=vision,
            audio_config=dict(AUDIO_3B if size == "real" else TINY["audio"]),
            image_token_index=ids["image"],
            video_token_index=ids["video"],
            audio_token_index=ids["audio"],
            vision_start_token_id=ids["vision_start"],
            vision_end_token_id=ids["vision_end"],
            audio_start_token_id=ids["audio_start"],
            audio_end_token_id=ids["audio_end"],
        )
        cls = Qwen2_5OmniThinkerForConditionalGeneration
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = cls._from_config(config, dtype=dtype)
    return model, ids, config


def make_batch(
    kind: str,
    config,
    ids: dict[str, int],
    batch: int,
    text_len: int,
    image_px: int,
    audio_frames: int,
    seed: int,
):
    """Return one generated batch: text, an image per sample, an audio clip per sample (omni)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    vision = config.vision_config
    patch, merge, temporal = (
        vision.patch_size,
        vision.spatial_merge_size,
        vision.temporal_patch_size,
    )
    grid = image_px // patch
    image_tokens = grid * grid // (merge * merge)
    audio_tokens = 0
    if kind == "omni":
        # Qwen2.5-Omni's audio encoder: two stride-2 stages (conv, then pooling).
        audio_tokens = ((audio_frames - 1) // 2 + 1 - 2) // 2 + 1
    vocab = config.text_config.vocab_size - len(IDS)
    rows = []
    for _ in range(batch):
        head = [ids["vision_start"]] + [ids["image"]] * image_tokens + [ids["vision_end"]]
        if audio_tokens:
            head += [ids["audio_start"]] + [ids["audio"]] * audio_tokens + [ids["audio_end"]]
        body = torch.randint(0, vocab, (text_len,), generator=g).tolist()
        rows.append(head + body)
    input_ids = torch.tensor(rows)
    labels = input_ids.clone()
    labels[:, : input_ids.shape[1] - text_len] = -100  # loss on text only, as on character turns
    out = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
        "pixel_values": torch.randn(batch * grid * grid, 3 * temporal * patch * patch, generator=g),
        "image_grid_thw": torch.tensor([[1, grid, grid]] * batch),
    }
    if audio_tokens:
        mels = config.audio_config.num_mel_bins
        out["input_features"] = torch.randn(batch, mels, audio_frames, generator=g)
        out["feature_attention_mask"] = torch.ones(batch, audio_frames, dtype=torch.long)
    return out, image_tokens, audio_tokens


def lm_linear_params(model) -> tuple[int, int]:
    """Return (language-model linear parameters, LoRA parameters) of a peft-wrapped model."""
    import torch

    lm = lora = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and "lora_" in name:
            lora += module.weight.numel()
        elif isinstance(module, torch.nn.Linear) and (
            "language_model" in name or "lm_head" in name or ".model.layers." in name
        ):
            if "visual" not in name and "audio_tower" not in name:
                lm += module.weight.numel()
    return lm, lora


def run(kind: str, args) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    from trainers.models import lora_targets

    model, ids, config = build(kind, args.size)
    device = next(model.parameters()).device
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    targets = lora_targets(model, None)
    model = get_peft_model(
        model, LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, target_modules=targets)
    )
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-4)
    n_lm, n_lora = lm_linear_params(model)
    enc = sum(p.numel() for n, p in model.named_parameters() if "visual" in n or "audio_tower" in n)
    cfg_text = config.text_config
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    wait = step_time = 0.0
    tokens = 0
    seq = 0
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        batch, image_tokens, audio_tokens = make_batch(
            kind, config, ids, args.batch, args.text_len, args.image_px, args.audio_frames, step
        )
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        if batch["pixel_values"].is_floating_point():
            batch["pixel_values"] = batch["pixel_values"].to(model.dtype)
        if "input_features" in batch:
            batch["input_features"] = batch["input_features"].to(model.dtype)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        fetched = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        end = time.perf_counter()
        if step >= args.warmup:
            wait += fetched - start
            step_time += end - start
            seq = batch["input_ids"].shape[1]
            tokens += batch["input_ids"].numel()
    steps = args.steps
    lm_tokens_per_step = args.batch * seq
    enc_tokens = args.batch * (
        (args.image_px // 14) ** 2 + (args.audio_frames // 2 if kind == "omni" else 0)
    )
    flops_step = (
        4 * n_lm * lm_tokens_per_step
        + 6 * n_lora * lm_tokens_per_step
        + 6 * cfg_text.num_hidden_layers * cfg_text.hidden_size * seq * lm_tokens_per_step
        + 2 * enc * enc_tokens
    )
    achieved = flops_step * steps / step_time
    return {
        "model": f"{kind}-{args.size}",
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "dtype": str(model.dtype),
        "steps": steps,
        "batch": args.batch,
        "sequence": seq,
        "image_tokens": image_tokens,
        "audio_tokens": audio_tokens,
        "params_lm_linear": n_lm,
        "params_lora": n_lora,
        "params_encoders": enc,
        "tokens_per_second": round(tokens / step_time, 1),
        "step_seconds": round(step_time / steps, 4),
        "tflops_achieved": round(achieved / 1e12, 2),
        "mfu": round(achieved / (args.peak_tflops * 1e12), 4)
        if torch.cuda.is_available()
        else None,
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if torch.cuda.is_available()
        else None,
        "data_wait_share": round(wait / step_time, 4),
        "final_loss": round(float(loss), 4),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=["real", "tiny"], default="real")
    p.add_argument("--models", default="omni,vl")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--text-len", type=int, default=1024)
    p.add_argument("--image-px", type=int, default=448)
    p.add_argument("--audio-frames", type=int, default=1000)  # 10 s of 100 Hz mel frames
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--peak-tflops", type=float, default=989.0)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args()
    results = [run(kind, args) for kind in args.models.split(",")]
    text = json.dumps(results, indent=2)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
