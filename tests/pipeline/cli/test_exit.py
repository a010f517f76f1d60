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
