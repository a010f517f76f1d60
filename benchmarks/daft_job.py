"""The Daft contender: the benchmark job written as a Daft query, run in its own venv.

    benchmarks/_work/venv-daft/bin/python -m benchmarks.daft_job SPEC.json

(`benchmarks/contenders.py` builds that venv from `requirements-daft.txt` and runs this;
daft 0.7 requires pyarrow<26, roleforge pins 26, so they cannot share `.venv`.)

The query uses Daft's documented fast paths for multimodal data: `daft.read_json` of the
jsonl, native `url.download()` of every image and clip (multi-threaded I/O in Rust),
native `decode_image` (Rust codecs, RGB), then one stateful class UDF (`@daft.cls` with a
`@daft.method.batch` method, `use_process=True` and one instance per core, because the ops
are GIL-bound Python) that builds the plain chain once per instance and returns, per record,
the original plus `copies` variants made by the very same albumentations / audiomentations /
nlpaug / soxr calls as every other contender (`benchmarks.baselines.PlainChain`), then
`explode` and `write_parquet`. Native runner on this machine.

The timed run follows an untimed one on a tiny corpus (process pool start, imports), as for
every contender; the spec and the result are JSON files (see `contenders.py`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

BATCH_SIZE = 16  # rows per UDF call: the pipeline's own batch size


def build_query(jsonl: Path, out_dir: Path, augment: dict[str, Any], cpus: int) -> Any:
    """Return the lazy Daft query that reads, augments and writes the corpus as Parquet."""
    import daft
    from daft import DataType as T
    from daft import col

    message = T.struct({"role": T.string(), "content": T.string()})
    row = T.struct(
        {
            "copy": T.int64(),
            "messages": T.list(message),
            "image": T.binary(),
            "audio": T.binary(),
        }
    )
    augment_json = json.dumps(augment)

    @daft.cls(use_process=True, max_concurrency=cpus)
    class Augment:
        def __init__(self) -> None:
            from benchmarks.baselines import PlainChain

            self.chain = PlainChain(json.loads(augment_json))

        @daft.method.batch(return_dtype=T.list(row), batch_size=BATCH_SIZE)
        def variants(self, messages: Any, system: Any, image: Any, image_bytes: Any, audio: Any):
            out = []
            for msgs, sys_text, img, raw_image, raw_audio in zip(
                messages.to_pylist(),
                system.to_pylist(),
                image.to_pylist(),
                image_bytes.to_pylist(),
                audio.to_pylist(),
                strict=True,
            ):
                turns = [{"role": m["role"], "content": m["content"]} for m in msgs]
                if sys_text:
                    turns.insert(0, {"role": "system", "content": sys_text})
                clip = self.chain.decode_audio(raw_audio)
                rows = [{"copy": -1, "messages": turns, "image": raw_image, "audio": raw_audio}]
                for v in self.chain.variants_of(turns, [img], [clip]):
                    rows.append(
                        {
                            "copy": v["copy"],
                            "messages": v["messages"],
                            "image": v["images"][0],
                            "audio": v["audios"][0],
                        }
                    )
                out.append(rows)
            return out

    root = str(jsonl.parent) + "/"
    df = daft.read_json(str(jsonl))
    # The benchmark corpus has exactly one image and one clip per record (checked by the caller).
    df = df.with_columns(
        {
            "image_bytes": (daft.lit(root) + col("images").get(0)).download(),
            "audio_bytes": (daft.lit(root) + col("audios").get(0)).download(),
        }
    )
    df = df.with_column("image", col("image_bytes").decode_image(mode="RGB"))
    df = df.with_column(
        "out",
        Augment().variants(
            col("messages"), col("system"), col("image"), col("image_bytes"), col("audio_bytes")
        ),
    )
    df = df.select(col("out")).explode(col("out")).select(col("out").unnest())
    return df.write_parquet(str(out_dir))


def run_once(jsonl: Path, out_dir: Path, augment: dict[str, Any], cpus: int) -> tuple[float, int]:
    """Return the wall seconds of one whole query (read to written Parquet) and rows written."""
    import pyarrow.parquet as pq

    started = time.perf_counter()
    build_query(jsonl, out_dir, augment, cpus)
    seconds = time.perf_counter() - started
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in out_dir.rglob("*.parquet"))
    return seconds, rows


def main(spec_path: str) -> None:
    import daft

    from benchmarks.contenders import job_main

    daft.set_runner_native()
    job_main(spec_path, run_once, f"daft {daft.__version__} (native runner)")


if __name__ == "__main__":
    main(sys.argv[1])
