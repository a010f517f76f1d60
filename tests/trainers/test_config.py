"""The `train:` section: other tools' key names, trainer arguments, devices checked early."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from trainers.config import LoraConfig, TrainConfig
from trainers.loop import TrainerArgumentsError, check_trainer_arguments, trainer_arguments


def test_huggingface_and_llamafactory_names_are_aliases_of_ours():
    cfg = TrainConfig.model_validate(
        {
            "model_name_or_path": "org/model",
            "num_train_epochs": 3,
            "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 8,
            "lr_scheduler_type": "linear",
            "cutoff_len": 2048,
            "lora_rank": 32,
            "lora_alpha": 64,
            "lora_target": "q_proj,v_proj",
        }
    )
    assert (cfg.model, cfg.epochs, cfg.batch_size, cfg.grad_accum) == ("org/model", 3, 2, 8)
    assert (cfg.lr_scheduler, cfg.max_length) == ("linear", 2048)
    assert cfg.lora == LoraConfig(r=32, alpha=64, target_modules=["q_proj", "v_proj"])
    assert TrainConfig.model_validate({"lora_target": "all"}).lora.target_modules is None
    assert TrainConfig.model_validate({"finetuning_type": "full"}).lora is None


def test_an_alias_and_our_name_for_one_setting_is_an_error():
    with pytest.raises(ValidationError, match="num_train_epochs and epochs name the same setting"):
        TrainConfig.model_validate({"num_train_epochs": 1, "epochs": 2})
    with pytest.raises(ValidationError, match="finetuning_type: full takes no LoRA settings"):
        TrainConfig.model_validate({"finetuning_type": "full", "lora_rank": 8})


def test_trainer_args_pass_through_only_real_fields_we_do_not_set():
    cfg = TrainConfig(trainer_args={"max_grad_norm": 0.3, "adam_beta2": 0.95})
    args = trainer_arguments(cfg, "/tmp/x", seed=1, use_gpu=False, bf16=False, evaluate=False)
    assert (args.max_grad_norm, args.adam_beta2) == (0.3, 0.95)
    workers = TrainConfig(trainer_args={"dataloader_num_workers": 3, "save_total_limit": 5})
    args = trainer_arguments(workers, "/tmp/x", seed=1, use_gpu=False, bf16=False, evaluate=False)
    assert (args.dataloader_num_workers, args.save_total_limit) == (3, 5)
    with pytest.raises(ValidationError, match="trainer_args.eval_strategy: set train.eval_steps"):
        TrainConfig(trainer_args={"eval_strategy": "epoch"})
    with pytest.raises(
        ValidationError, match="trainer_args.learning_rate: set train.learning_rate"
    ):
        TrainConfig(trainer_args={"learning_rate": 1.0})
    with pytest.raises(ValidationError, match="trainer_args.warp_speed is not a TrainingArguments"):
        TrainConfig(trainer_args={"warp_speed": 9})


def test_optim_logging_steps_and_report_to_reach_the_trainer():
    cfg = TrainConfig(optim="adafactor", logging_steps=5, report_to=["tensorboard", "csv"])
    args = trainer_arguments(cfg, "/tmp/x", seed=1, use_gpu=False, bf16=False, evaluate=False)
    assert args.optim == "adafactor" and args.logging_steps == 5
    assert args.report_to == ["csv"]  # tensorboard is our own callback, writing into the run
    assert TrainConfig.model_validate({"report_to": "none"}).report_to == []
    with pytest.raises(ValidationError, match="unknown optimizer 'sgd_but_faster'"):
        TrainConfig(optim="sgd_but_faster")


def test_fsdp_settings_are_checked_on_cpu_without_weights():
    layer = {"transformer_layer_cls_to_wrap": ["Qwen2DecoderLayer"]}
    check_trainer_arguments(TrainConfig(fsdp=True, fsdp_config=layer))
    with pytest.raises(TrainerArgumentsError, match="nonsense"):
        check_trainer_arguments(TrainConfig(fsdp="full_shard nonsense"))
    with pytest.raises(ValidationError, match="fsdp_config needs fsdp: true"):
        TrainConfig(fsdp_config=layer)
    with pytest.raises(ValidationError, match="choose one of fsdp and deepspeed"):
        TrainConfig(fsdp=True, deepspeed={"zero_optimization": {"stage": 2}})


def test_deepspeed_without_its_package_is_one_clear_error():
    import importlib.util

    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here")
    with pytest.raises(TrainerArgumentsError, match="needs the deepspeed package"):
        check_trainer_arguments(TrainConfig(deepspeed={"zero_optimization": {"stage": 2}}))


def test_qlora_needs_lora_and_names_cuda_when_there_is_none():
    import torch

    from trainers.models import QuantizationUnavailable, quantization_config

    with pytest.raises(ValidationError, match="quantization_bit .* needs lora"):
        TrainConfig(quantization_bit=4, lora=None)
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(QuantizationUnavailable, match="needs a CUDA device"):
        quantization_config(4)
