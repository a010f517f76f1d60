"""roleforge installs like a package: the wheel holds every subpackage and its CLI runs.

The wheel is built from a copy of the sources and installed into a fresh virtual
environment whose only link to this one is a `.pth` line naming its site-packages, so the
dependencies (torch, ray, ...) are not downloaded again, while `pipeline`, `augmenters`
and `trainers` can only come from the wheel: an editable install's finder is not loaded
through a `.pth` path line, and the commands run outside the source tree.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "augmenters", "trainers")


def _run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    # Without build isolation when setuptools is here already (offline); else pip fetches it.
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    done = _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation,
         "-w", str(out), str(src)],
        cwd=src,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("roleforge-*.whl")
    return built


def test_the_wheel_holds_every_subpackage(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        str(p.relative_to(ROOT))
        for package in PACKAGES
        for p in (ROOT / package).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert expected <= names, sorted(expected - names)[:5]


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=False, clear=True)
    python = env_dir / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                cwd=env_dir).stdout.strip()  # fmt: skip
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "roleforge-test-deps.pth").write_text("\n".join(sorted(ours)) + "\n")
    done = _run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--ignore-installed", str(wheel)],
        cwd=env_dir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return env_dir


def test_the_installed_cli_answers_help_and_ingests_the_demo(
    installed: Path, tmp_path: Path
) -> None:
    where = _run(
        [str(installed / "bin" / "python"), "-c", "import pipeline.readers; print(pipeline.__file__)"],
        cwd=tmp_path,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(installed)), where.stdout
    roleforge = str(installed / "bin" / "roleforge")
    shown = _run([roleforge, "--help"], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "ingest" in shown.stdout and "run" in shown.stdout
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    ingested = _run([roleforge, "ingest", "examples/demo.yaml", "--json"], cwd=tmp_path)
    assert ingested.returncode == 0, ingested.stderr[-2000:]
    assert '"quarantined"' in ingested.stdout
