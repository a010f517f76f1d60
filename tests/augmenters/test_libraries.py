"""Op libraries are imported without the optional extras our ops never reach."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from augmenters import libraries

LIBRARY = """
import rf_downloads
try:
    import rf_heavy_extra
    HAS_EXTRA = True
except ImportError:
    HAS_EXTRA = False
"""


@pytest.fixture
def fake_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A library `rf_fake_lib` that imports `rf_heavy_extra` when it can, both on sys.path."""
    (tmp_path / "rf_fake_lib").mkdir()
    (tmp_path / "rf_fake_lib" / "__init__.py").write_text(LIBRARY, encoding="utf-8")
    (tmp_path / "rf_heavy_extra.py").write_text("LOADED = True\n", encoding="utf-8")
    (tmp_path / "rf_downloads.py").write_text("LOADED = True\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(libraries.OPTIONAL_EXTRAS, "rf_fake_lib", ("rf_heavy_extra",))
    monkeypatch.setitem(libraries.STAND_INS, "rf_fake_lib", ("rf_downloads",))
    yield
    for name in ("rf_fake_lib", "rf_heavy_extra", "rf_downloads"):
        sys.modules.pop(name, None)


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


def test_a_stand_in_replaces_an_unconditional_import_only_while_the_library_loads(
    fake_library,
):
    lib = libraries.import_op_library("rf_fake_lib")
    assert not hasattr(lib.rf_downloads, "LOADED")  # the library got the empty stand-in
    assert "rf_downloads" not in sys.modules  # and nobody else will
    import rf_downloads

    assert rf_downloads.LOADED


def test_nlpaug_loads_without_gdown_and_its_character_augmenter_works() -> None:
    if "gdown" in sys.modules or "nlpaug" in sys.modules:
        pytest.skip("imported earlier in this session: the stand-in is not used")
    keyboard = libraries.import_op_library("nlpaug.augmenter.char").KeyboardAug
    assert "gdown" not in sys.modules
    assert keyboard(aug_char_p=0.5, aug_word_p=0.5).augment("hello there friend")
