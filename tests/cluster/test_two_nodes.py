"""`roleforge run` against a real two-node Ray cluster with its sources and store on S3:
the same version as the embedded single-node run on a local store, with the record pass's
tasks spread over both nodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from pipeline.execution.job import DataJob
from tests.cluster.local_cluster import TwoNodeRayCluster
from tests.fixtures.object_store import upload_folder
from tests.pipeline.execution.datajob_corpus import AUGMENT, make_recipe, recipe_dict, write_corpus

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 300
# Ray names a task after its function: one per pass of the data job.
PASS_TASKS = ("ingest_source", "record_pass", "rebase_rows", "write_shard")
# The pass with a task per slice of records: enough tasks to need both nodes.
RECORD_PASS = "record_pass"


def _run_on_cluster(cluster: TwoNodeRayCluster, recipe: Path) -> tuple[dict[str, Any], int]:
    """Run the CLI as a driver of `cluster`; return its --json object and its pid.

    The driver runs outside the repository: Ray puts a driver's working directory on its
    workers' sys.path, which on one machine would hand them the code a real cluster's
    nodes lack. PYTHONPATH reaches the driver only.
    """
    # The object store's credentials and endpoint, as a user exports them for the driver.
    aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", str(recipe), "--json"],
        cwd=recipe.parent,
        env={**cluster.env, **aws, "RAY_ADDRESS": cluster.address, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    assert proc.returncode == 0, f"exit {proc.returncode}\n{err[-3000:]}"
    return json.loads(out), proc.pid


def _pass_tasks_by_node(cluster: TwoNodeRayCluster, driver_pid: int) -> dict[str, Counter[str]]:
    """Return, per record pass, how many of the driver's finished tasks ran on each node."""
    jobs = [
        j
        for j in cluster.state("jobs")
        if j.driver_info is not None and int(j.driver_info.pid) == driver_pid
    ]
    assert len(jobs) == 1, f"no single Ray job for driver pid {driver_pid}: {jobs}"
    by_pass: dict[str, Counter[str]] = {}
    # Task events reach the GCS in batches (about once a second): wait until they settle.
    previous, deadline = -1, time.monotonic() + 30
    while time.monotonic() < deadline:
        tasks = cluster.state("tasks", job_id=jobs[0].job_id, state="FINISHED")
        by_pass = {name: Counter(t.node_id for t in tasks if t.name == name) for name in PASS_TASKS}
        total = sum(sum(c.values()) for c in by_pass.values())
        if total == previous and by_pass[RECORD_PASS]:
            break
        previous = total
        time.sleep(2)
    return by_pass


def test_a_two_node_cluster_run_commits_the_embedded_runs_version_with_work_on_both_nodes(
    two_node_cluster: TwoNodeRayCluster,
    cluster_store: str,
    tmp_path: Path,
    ray_session: Any,
) -> None:
    write_corpus(tmp_path)
    # The nodes share no disk in the run's eyes: the corpus is read from the bucket too.
    corpus = upload_folder(tmp_path, f"s3://{cluster_store.split('/')[2]}/corpora/tiny")
    sources = [
        {
            "name": "tiny",
            "path": f"{corpus}/dialogues.jsonl",
            "characters": f"{corpus}/characters.jsonl",
        }
    ]
    # An image op: its library takes seconds to import in each worker, as real work takes
    # time. Without it every task of this tiny corpus took milliseconds, and Ray pushed them
    # all to the first worker it leased before the other node's worker had started.
    augment = {**AUGMENT, "image": [{"op": "HorizontalFlip", "p": 1.0}]}
    recipe = tmp_path / "cluster.yaml"
    recipe.write_text(
        yaml.safe_dump(
            recipe_dict(
                store=cluster_store,
                cards_dir=str(tmp_path / "cards-c"),
                augment=augment,
                sources=sources,
                # Every pass on the cluster: this corpus is small enough to run in-process.
                execution={"batch_size": 4, "in_process_records": 0},
            )
        ),
        encoding="utf-8",
    )
    on_cluster, driver_pid = _run_on_cluster(two_node_cluster, recipe)
    embedded = DataJob(
        make_recipe(
            tmp_path,
            store=str(tmp_path / "embedded-store"),
            cards_dir="cards-e",
            augment=augment,
            sources=sources,
        )
    ).run()

    assert not on_cluster["unchanged"]
    assert on_cluster["content_id"] == embedded.content_id
    assert on_cluster["splits"] == embedded.splits
    roles = {
        n.node_id: "head" if n.is_head_node else "worker"
        for n in two_node_cluster.state("nodes", state="ALIVE")
    }
    nodes = set(roles)
    assert len(nodes) == 2
    by_pass = _pass_tasks_by_node(two_node_cluster, driver_pid)
    # Shown with `pytest -s`: what the closing notes quote.
    print(json.dumps({"run": on_cluster, "nodes": roles, "tasks_per_node": by_pass}, indent=1))
    # Each node has 1 CPU and each task asks for 1, so any two tasks running at once run on
    # two nodes: the record pass, with a task per slice of records, has work on both.
    per_node = by_pass[RECORD_PASS]
    assert set(per_node) == nodes, f"record_pass ran on {dict(per_node)}, not on both of {nodes}"
    # What the run itself says (tasks report their node) agrees with Ray's state API.
    reported = Counter()
    for counts in on_cluster["nodes"].values():
        reported.update(counts)
    assert reported == sum(by_pass.values(), Counter()), (on_cluster["nodes"], by_pass)
    # The version lives in the object store and is whole there.
    from pipeline.store.read import Store
    from pipeline.store.verify import verify_version

    assert verify_version(Store(cluster_store, "tiny"), on_cluster["version"]).ok
