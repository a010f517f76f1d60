"""The benchmarks' CPU accounting: a job's own CPU includes the pool it started and reaped,
and a contender's result carries its CPU beside its wall time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.contenders import JobSpec, job_main
from benchmarks.cpu import CpuMeter, cpu_columns, own_cpu

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"


def test_own_cpu_counts_a_child_that_already_exited():
    before = own_cpu()
    subprocess.run([sys.executable, "-c", BURN], check=True)
    assert own_cpu() - before >= 0.25


def test_cpu_meter_columns_split_own_cpu_from_others():
    cols = CpuMeter.columns("ours", {"driver": 1.0, "workers": 2.5, "others": 4.0})
    assert cols == {"ours cpu_s": 3.5, "ours others cpu_s": 4.0}
    assert cpu_columns("daft", 1.234, 0.0) == {"daft cpu_s": 1.23, "daft others cpu_s": 0.0}


def test_job_main_writes_the_timed_runs_cpu_beside_its_wall(tmp_path: Path):
    calls = []

    def run_once(jsonl: Path, out: Path, augment: dict, cpus: int) -> tuple[float, int]:
        calls.append(out.name)
        if out.name == "timed":
            subprocess.run([sys.executable, "-c", BURN], check=True)
        return 0.5, 3

    spec = tmp_path / "spec.json"
    result = tmp_path / "result.json"
    fields = JobSpec("in.jsonl", "warm.jsonl", str(tmp_path), {}, 1, str(result)).__dict__
    spec.write_text(json.dumps(fields))
    job_main(str(spec), run_once, "test")
    data = json.loads(result.read_text())
    assert calls == ["warm", "timed"]
    assert data["seconds"] == 0.5 and data["rows"] == 3
    assert data["cpu_s"] >= 0.25
    assert data["others_cpu_s"] >= 0.0
