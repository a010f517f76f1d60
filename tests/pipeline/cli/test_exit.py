"""The command line runs with its own collector thresholds, ends without the interpreter's
teardown collections (`app._exit_without_collecting`), and keeps its exit status and output."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipeline.cli.app import GC_THRESHOLDS
from tests.fixtures.fresh_python import run_python

# An atexit handler registered before main() runs after it: it sees what main left.
CODE = """
import atexit, gc, sys
atexit.register(lambda: print("frozen", gc.get_freeze_count() > 0, *gc.get_threshold()))
sys.argv = ["roleforge", *sys.argv[1:]]
from pipeline.cli.app import main
main()
"""


def _roleforge(*args: str) -> subprocess.CompletedProcess[str]:
    return run_python(CODE, *args, check=False, timeout=120)


def test_a_command_that_succeeds_exits_0_with_its_objects_frozen():
    done = _roleforge("--version")
    assert done.returncode == 0
    assert done.stdout.splitlines()[0].startswith("roleforge ")
    assert done.stdout.splitlines()[-1] == " ".join(["frozen", "True", *map(str, GC_THRESHOLDS)])


def test_a_command_that_fails_keeps_its_exit_status_and_message(tmp_path: Path):
    done = _roleforge("run", str(tmp_path / "missing.yaml"))
    assert done.returncode == 2  # EXIT_RECIPE
    assert "missing.yaml" in done.stderr
    assert done.stdout.splitlines()[-1].startswith("frozen True")


# main() with Ray's shutdown watched: is the autoscaler's monitor still alive when Ray's
# shutdown begins, and what of Ray is left once main() is done (before the atexit handlers).
ON_RAY_CODE = """
import os, sys
import ray
from pipeline.execution.ray_reaper import MONITOR_SCRIPT, command_line, ray_processes
shutdown = ray.shutdown
def watched(*args, **kwargs):
    mine = [command_line(p) for p in ray_processes(os.getpid())]
    print("monitor alive at shutdown", any(MONITOR_SCRIPT in c for c in mine))
    return shutdown(*args, **kwargs)
ray.shutdown = watched
sys.argv = ["roleforge", *sys.argv[1:]]
from pipeline.cli.app import main
try:
    main()
except SystemExit as done:
    print("exit", done.code)
print("ray up after main", ray.is_initialized(), len(ray_processes(os.getpid())))
"""


def test_a_command_that_ran_on_ray_stops_its_cluster_before_exit_monitor_first(tmp_path: Path):
    import yaml

    from tests.pipeline.execution.datajob_corpus import recipe_dict, write_corpus

    write_corpus(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    data = recipe_dict(execution={"batch_size": 4, "in_process_records": 0})
    recipe.write_text(yaml.safe_dump(data), encoding="utf-8")
    done = run_python(ON_RAY_CODE, "run", str(recipe), "--json", check=False, timeout=300)
    lines = done.stdout.splitlines()
    assert "exit 0" in lines, done.stderr[-2000:]
    # Killed before Ray stops the GCS (its SIGTERM handler would wait on it); and Ray's
    # exit handler is left nothing to do (it sleeps 0.5 s first).
    assert lines[-1] == "ray up after main False 0"
    assert "monitor alive at shutdown False" in lines
