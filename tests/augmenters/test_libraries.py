"""Op libraries are imported without the optional extras our ops never reach."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from augmenters import libraries

LIBRARY = """
try:
    import rf_heavy_extra
    HAS_EXTRA = True
except ImportError:
    HAS_EXTRA = False
"""


def _on_sys_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, package: str, code: str, module: str, body: str
) -> Iterator[None]:
    """Put package `package` (its __init__ is `code`) and module `module` (`body`) on
    sys.path for one test; both leave sys.modules afterwards."""
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text(code, encoding="utf-8")
    (tmp_path / f"{module}.py").write_text(body, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in (package, module):
        sys.modules.pop(name, None)


@pytest.fixture
def fake_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A library `rf_fake_lib` that imports `rf_heavy_extra` when it can, both on sys.path."""
    monkeypatch.setitem(libraries.OPTIONAL_EXTRAS, "rf_fake_lib", ("rf_heavy_extra",))
    yield from _on_sys_path(
        tmp_path, monkeypatch, "rf_fake_lib", LIBRARY, "rf_heavy_extra", "LOADED = True\n"
    )


def test_a_library_is_imported_without_its_extras_and_they_import_normally_afterwards(
    fake_library,
):
    lib = libraries.import_op_library("rf_fake_lib")
    assert lib.HAS_EXTRA is False
    assert "rf_heavy_extra" not in sys.modules  # not marked absent any more
    import rf_heavy_extra

    assert rf_heavy_extra.LOADED


def test_an_extra_already_imported_is_left_for_the_library_to_see(fake_library):
    import rf_heavy_extra  # noqa: F401

    assert libraries.import_op_library("rf_fake_lib").HAS_EXTRA is True
    assert sys.modules["rf_heavy_extra"] is not None


UNCONDITIONAL = """
import rf_heavy_dep

def returned_as_it_came(value):
    return isinstance(value, rf_heavy_dep.Frame)
"""


@pytest.fixture
def library_with_a_heavy_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A library `rf_eager_lib` that imports `rf_heavy_dep` unconditionally."""
    monkeypatch.setitem(libraries.STAND_INS, "rf_eager_lib", {"rf_heavy_dep": ("Frame",)})
    yield from _on_sys_path(
        tmp_path,
        monkeypatch,
        "rf_eager_lib",
        UNCONDITIONAL,
        "rf_heavy_dep",
        "class Frame: ...\nREAL = True\n",
    )


def test_an_unconditional_import_gets_a_stand_in_and_the_real_module_imports_afterwards(
    library_with_a_heavy_import,
):
    lib = libraries.import_op_library("rf_eager_lib")
    assert "rf_heavy_dep" not in sys.modules
    assert lib.returned_as_it_came("text") is False
    with pytest.raises(AttributeError, match="stand-in for rf_heavy_dep"):
        lib.rf_heavy_dep.REAL  # noqa: B018
    import rf_heavy_dep

    assert rf_heavy_dep.REAL
    assert libraries.import_op_library("rf_eager_lib").rf_heavy_dep is not rf_heavy_dep


def test_nlpaugs_character_ops_run_without_importing_pandas_or_gdown():
    code = (
        "import sys; from augmenters.libraries import import_op_library; "
        "char = import_op_library('nlpaug.augmenter.char'); "
        "out = char.KeyboardAug(aug_char_p=1.0).augment('hello there'); "
        "print(type(out[0]).__name__, 'pandas' in sys.modules, 'gdown' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["str", "False", "False"]
