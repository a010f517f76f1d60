"""The data job with its sources and store on an object store, beside local disk (issue 16).

One corpus, the benchmark recipe, the record cache off, three placements run side by side
in one process after a warm-up run: sources and store on local disk; sources local, store in a bucket; both in
the bucket. The bucket is on a local S3 server (moto's, on 127.0.0.1), so the figures show
what the object-store path costs on this machine (HTTP, ranged GETs, PUTs, server-side
copies at commit), not a real S3's network. Then an unchanged rerun over the bucket, which
must read no object. Run: `python -m benchmarks.object_store --records 200`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.corpus import WORK_DIR, build_corpus
from benchmarks.ours import run_job
from benchmarks.workload import recipe_dict


def _moto() -> tuple[Any, str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def _upload_corpus(jsonl: Path, root: Path, prefix: str) -> str:
    """Upload the jsonl and the media it names below `prefix`; return the jsonl's URI."""
    from pipeline.store.store_fs import store_fs

    fs, path = store_fs(prefix)
    fs.upload_file(str(jsonl), f"{path}/{jsonl.name}")
    names = set()
    for line in jsonl.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        names.update(record["images"] + record["audios"])
    for name in sorted(names):
        fs.upload_file(str(root / name), f"{path}/{name}")
    return f"{prefix}/{jsonl.name}"


def main() -> None:
    import logging

    import ray

    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    corpus = build_corpus(args.records)
    server, endpoint = _moto()
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench-secret",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": "us-east-1",
        }
    )
    import boto3

    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    scratch = WORK_DIR / "object-store"
    shutil.rmtree(scratch, ignore_errors=True)
    started = time.perf_counter()
    remote_jsonl = _upload_corpus(corpus.jsonl, corpus.root, f"s3://{bucket}/corpus")
    upload_s = time.perf_counter() - started
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    rows = []
    try:
        placements = {
            "local sources, local store": (str(corpus.jsonl), None),
            "local sources, store on S3": (str(corpus.jsonl), f"s3://{bucket}/store-a"),
            "sources and store on S3": (remote_jsonl, f"s3://{bucket}/store-b"),
        }
        # A first run warms the workers (imports): its figure would charge the first
        # placement for them.
        run_job(recipe_dict(corpus.jsonl, scratch / "warm-up"))
        for label, (source, store) in placements.items():
            recipe = recipe_dict(corpus.jsonl, scratch / label.replace(" ", "-"))
            # Media paths resolve against the jsonl's folder, on disk or in the bucket.
            recipe["sources"][0]["path"] = source
            if store:
                recipe["store"] = store
            seconds, result, stages = run_job(recipe)
            rows.append(
                {
                    "placement": label,
                    "seconds": round(seconds, 2),
                    "stages": stages,
                    "computed": result.reuse.computed if result.reuse else None,
                    "rows": sum(result.splits.values()),
                    "content_id": result.content_id[:16],
                }
            )
            if label == "sources and store on S3":
                started = time.perf_counter()
                _, again, _ = run_job(recipe)
                rows.append(
                    {
                        "placement": "unchanged rerun, sources and store on S3",
                        "seconds": round(time.perf_counter() - started, 2),
                        "unchanged": again.unchanged,
                    }
                )
    finally:
        ray.shutdown()
        server.stop()
    out = {
        "records": args.records,
        "media_bytes": corpus.media_bytes,
        "upload_seconds": round(upload_s, 2),
        "runs": rows,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
