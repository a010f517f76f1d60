"""Start-up cost of the command line: `roleforge --help` against a bare `python -c pass`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def _wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def help_vs_python(
    reps: int = 5, python: str | None = None
) -> tuple[list[float], list[float], list[float]]:
    """Return per-repetition ratios (help / python) and the two lists of wall seconds.

    Each repetition times both commands back to back, so drift on a shared machine hits
    both sides of the ratio alike; one untimed call of each warms the page cache first.
    """
    python = python or sys.executable
    roleforge = str(Path(python).with_name("roleforge"))
    help_cmd, bare_cmd = [roleforge, "--help"], [python, "-c", "pass"]
    _wall(help_cmd), _wall(bare_cmd)
    ratios, helps, bares = [], [], []
    for _ in range(reps):
        bare = _wall(bare_cmd)
        help_s = _wall(help_cmd)
        bares.append(bare)
        helps.append(help_s)
        ratios.append(help_s / bare)
    return ratios, helps, bares


if __name__ == "__main__":
    ratios, helps, bares = help_vs_python()
    print(f"help/python: {sorted(ratios)}; help {min(helps):.3f} s, python {min(bares):.3f} s")
