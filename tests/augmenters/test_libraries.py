"""Op libraries are imported without the optional extras our ops never reach."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from augmenters import libraries
from tests.fixtures.fresh_python import run_python

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


DEFERRING = """
import rf_rare_dep

def rarely(value):
    return rf_rare_dep.double(value)
"""


@pytest.fixture
def library_with_a_rare_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A library `rf_lazy_lib` that imports `rf_rare_dep` unconditionally, for one function."""
    monkeypatch.setitem(libraries.DEFERRED, "rf_lazy_lib", ("rf_rare_dep",))
    yield from _on_sys_path(
        tmp_path,
        monkeypatch,
        "rf_lazy_lib",
        DEFERRING,
        "rf_rare_dep",
        "import sys\nsys.rf_rare_dep_imports = getattr(sys, 'rf_rare_dep_imports', 0) + 1\n"
        "def double(value):\n    return 2 * value\n",
    )
    if hasattr(sys, "rf_rare_dep_imports"):
        del sys.rf_rare_dep_imports


def test_a_deferred_import_loads_the_real_module_on_first_use_and_only_once(
    library_with_a_rare_import,
):
    lib = libraries.import_op_library("rf_lazy_lib")
    assert "rf_rare_dep" not in sys.modules
    assert not hasattr(sys, "rf_rare_dep_imports")
    assert lib.rarely(21) == 42  # the first read imports it
    import rf_rare_dep

    assert rf_rare_dep.double(2) == 4
    assert lib.rarely(1) == 2
    assert sys.rf_rare_dep_imports == 1  # the library's name and `import` share one module


def _fresh_python(code: str) -> list[str]:
    """Return the words `code` prints in a fresh interpreter run from the repository."""
    return run_python(code).stdout.split()


def test_nlpaugs_character_ops_run_without_importing_pandas_gdown_or_requests():
    code = (
        "import sys; from augmenters.libraries import import_op_library; "
        "char = import_op_library('nlpaug.augmenter.char'); "
        "out = char.KeyboardAug(aug_char_p=1.0).augment('hello there'); "
        "print(type(out[0]).__name__, 'pandas' in sys.modules, 'gdown' in sys.modules, "
        "'requests' in sys.modules)"
    )
    assert _fresh_python(code) == ["str", "False", "False", "False"]


def test_albumentations_imports_scipy_special_only_for_the_transform_that_uses_it():
    code = (
        "import sys; import numpy as np; from augmenters.libraries import import_op_library; "
        "A = import_op_library('albumentations'); "
        "image = np.full((32, 32, 3), 128, dtype=np.uint8); "
        "A.HorizontalFlip(p=1.0)(image=image); "
        "print('scipy.special' in sys.modules); "
        "out = A.RingingOvershoot(p=1.0)(image=image)['image']; "
        "print(out.shape == image.shape, 'scipy.special' in sys.modules)"
    )
    assert _fresh_python(code) == ["False", "True", "True"]
