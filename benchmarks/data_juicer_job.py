"""The Data-Juicer contender: its closest shipped ops through its documented executor.

    benchmarks/_work/venv-data-juicer/bin/python -m benchmarks.data_juicer_job SPEC.json

(`benchmarks/contenders.py` builds that venv from `requirements-data-juicer.txt`;
py-data-juicer would downgrade `.venv`'s dill/multiprocess and installs packages at run time.)

Data-Juicer has no per-copy random image/audio pipeline like ours; its closest ops, run by
`DefaultExecutor` (`np` = one process per core, no cache between ops, no tracer):

- `nlpaug_en_mapper` (keyboard_error_char, aug_num = copies, keep_original_sample): the
  `copies` text variants per record (on the whole conversation text, where ours augments
  user turns only, between media placeholders);
- `image_blur_mapper` (Gaussian, p=1) on every sample's image, where ours runs
  RandomResizedCrop + HorizontalFlip + ColorJitter and re-encodes JPEG;
- `audio_add_gaussian_noise_mapper` (p=1, our amplitudes) on every sample's clip, where ours
  runs Gain + AddGaussianNoise + SpeedPerturb and encodes FLAC.

Its media ops write each derived image/clip as a file (PIL / soundfile WAV) and the export
is jsonl with paths, where the others embed media bytes in Parquet/Arrow. The input is the
same records converted once, untimed, to Data-Juicer's format (`text` with its
`<__dj__image>` / `<__dj__audio>` tokens, absolute `images` / `audios` paths).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

IMAGE_TOKEN, AUDIO_TOKEN, EOC = "<__dj__image>", "<__dj__audio>", "<|__dj__eoc|>"


def to_dj_jsonl(jsonl: Path, out: Path) -> int:
    """Write the LLaMA-Factory records of `jsonl` in Data-Juicer's format; return the count."""
    root = jsonl.parent
    n = 0
    with jsonl.open(encoding="utf-8") as src, out.open("w", encoding="utf-8") as dst:
        for line in src:
            row = json.loads(line)
            turns = [f"system: {row['system']}"] if row.get("system") else []
            for m in row["messages"]:
                content = (
                    m["content"].replace("<image>", IMAGE_TOKEN).replace("<audio>", AUDIO_TOKEN)
                )
                turns.append(f"{m['role']}: {content}")
            dst.write(
                json.dumps(
                    {
                        "text": "\n".join(turns) + f" {EOC}",
                        "images": [str(root / p) for p in row.get("images", [])],
                        "audios": [str(root / p) for p in row.get("audios", [])],
                    }
                )
                + "\n"
            )
            n += 1
    return n


def config(dataset: Path, out: Path, augment: dict[str, Any], cpus: int) -> dict[str, Any]:
    """Return the Data-Juicer config of the job (what `dj-process --config` would read)."""
    noise = next(
        (op for op in augment.get("audio", []) if op["op"] == "AddGaussianNoise"),
        {"min_amplitude": 0.001, "max_amplitude": 0.015},
    )
    media = str(out / "media")
    return {
        "project_name": "roleforge-bench",
        "dataset_path": str(dataset),
        "export_path": str(out / "result.jsonl"),
        "work_dir": str(out / "work"),
        "np": cpus,
        "text_keys": "text",
        "image_key": "images",
        "audio_key": "audios",
        "image_special_token": IMAGE_TOKEN,
        "audio_special_token": AUDIO_TOKEN,
        "eoc_special_token": EOC,
        "use_cache": False,
        "open_tracer": False,
        "skip_op_error": False,
        "process": [
            {
                "nlpaug_en_mapper": {
                    "keyboard_error_char": True,
                    "aug_num": int(augment.get("copies", 1)),
                    "keep_original_sample": True,
                }
            },
            {
                "image_blur_mapper": {
                    "p": 1.0,
                    "blur_type": "gaussian",
                    "radius": 2,
                    "save_dir": media,
                }
            },
            {
                "audio_add_gaussian_noise_mapper": {
                    "p": 1.0,
                    "min_amplitude": float(noise["min_amplitude"]),
                    "max_amplitude": float(noise["max_amplitude"]),
                    "save_dir": media,
                }
            },
        ],
    }


def run_once(jsonl: Path, out: Path, augment: dict[str, Any], cpus: int) -> tuple[float, int]:
    """Return the wall seconds of one `DefaultExecutor.run()` (load, ops, export) and rows out."""
    from data_juicer.config import init_configs
    from data_juicer.core import DefaultExecutor

    out.mkdir(parents=True, exist_ok=True)
    (out / "media").mkdir(exist_ok=True)
    dataset = out / "input.jsonl"
    to_dj_jsonl(jsonl, dataset)  # untimed: the format conversion, once
    cfg_path = out / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(config(dataset, out, augment, cpus)), encoding="utf-8")
    cfg = init_configs(args=["--config", str(cfg_path)])
    started = time.perf_counter()
    DefaultExecutor(cfg).run()
    seconds = time.perf_counter() - started
    with (out / "result.jsonl").open(encoding="utf-8") as f:
        rows = sum(1 for _ in f)
    return seconds, rows


def main(spec_path: str) -> None:
    from importlib.metadata import version

    from benchmarks.contenders import JobSpec, job_main

    spec = JobSpec(**json.loads(Path(spec_path).read_text(encoding="utf-8")))
    engine = f"py-data-juicer {version('py-data-juicer')} (DefaultExecutor, np={spec.cpus})"
    job_main(spec_path, run_once, engine)


if __name__ == "__main__":
    main(sys.argv[1])
