"""How `roleforge retrain` names its report: as the user would type it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli.models import _shown


def test_a_report_below_the_working_folder_is_named_relative_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    report = tmp_path / "roleforge-store" / "demo" / "models" / "r1" / "report.md"
    assert _shown(str(report)) == "roleforge-store/demo/models/r1/report.md"


def test_a_report_elsewhere_or_on_an_object_store_is_named_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    elsewhere = str(tmp_path / "store" / "report.md")
    assert _shown(elsewhere) == elsewhere
    assert _shown("s3://bucket/store/demo/models/r1/report.md") == (
        "s3://bucket/store/demo/models/r1/report.md"
    )
