"""Data-parallel training under Ray Train: the same TrainLoop in every worker.

Each worker reads the shards itself (memory-mapped) and the transformers Trainer shards
batches by rank over the process group Ray Train sets up (gloo on CPU, nccl on GPU).
Checkpoints and the final model are written by rank 0 into the run folder, so on several
nodes that folder must be on storage every node sees.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, replace
from typing import Any

from trainers.loop import SUMMARY_FILE, TrainJob, train_in_worker

logger = logging.getLogger(__name__)


def cluster_has_gpus() -> bool:
    """Return whether the Ray cluster (started here when none is running) offers GPUs."""
    import ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    return ray.cluster_resources().get("GPU", 0) > 0


def run_on_ray(job: TrainJob, workers: int) -> dict[str, Any]:
    """Train `job` on `workers` Ray Train workers; return rank 0's training summary."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cfg = job.cfg
    use_gpu = cfg.use_gpu if cfg.use_gpu is not None else cluster_has_gpus()
    # Workers must agree on the device; decide once here rather than in each worker.
    job = replace(job, config={**job.config, "use_gpu": use_gpu})
    trainer = TorchTrainer(
        train_in_worker,
        train_loop_config=asdict(job),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
        run_config=RunConfig(
            name=f"roleforge-{os.path.basename(job.run_dir)}",
            storage_path=os.path.join(os.path.abspath(job.run_dir), "ray"),
        ),
    )
    logger.info("training on %d Ray Train workers (gpu: %s)", workers, use_gpu)
    trainer.fit()
    with open(os.path.join(job.run_dir, SUMMARY_FILE), encoding="utf-8") as f:
        return json.load(f)
