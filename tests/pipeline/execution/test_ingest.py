"""`roleforge ingest`: counts per source and reason, the quarantine file, and exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.record.ids import new_run_id
from tests.fixtures.corpus import write_jsonl, write_llamafactory_corpus, write_recipe

runner = CliRunner()
BROKEN = {
    "messages": [
        {"role": "user", "content": "<image><image>"},
        {"role": "assistant", "content": "?"},
    ],
    "images": [],
}


def _corpus(folder: Path, bad_lines: int = 1) -> list[dict[str, Any]]:
    """Write the LLaMA-Factory corpus plus a jsonl source holding `bad_lines` broken records."""
    write_llamafactory_corpus(folder / "lf")
    good = {
        "messages": [
            {"role": "user", "content": "Hola"},
            {"role": "assistant", "content": "¡Buenas!"},
        ]
    }
    write_jsonl(folder / "extra" / "d.jsonl", [good, *[BROKEN] * bad_lines, good])
    return [{"name": "lf", "path": "lf/mllm_demo.json"}, {"name": "extra", "path": "extra/d.jsonl"}]


def _ingest(recipe: Path) -> Any:
    return runner.invoke(app, ["ingest", str(recipe), "--json"])


def test_ingest_json_reports_counts_per_source_and_reason(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, _corpus(tmp_path), max_bad_fraction=0.2)
    result = _ingest(recipe)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {
        "valid",
        "quarantined",
        "quarantine_reasons",
        "quarantine_path",
        "sources",
    }
    assert report["valid"] == 6 and report["quarantined"] == 1
    assert report["quarantine_reasons"] == {"placeholder_mismatch": 1}
    # Each source also says which format each of its files was read as (see the readers).
    assert all(set(s["formats"].values()) == {"llamafactory"} for s in report["sources"])
    assert [{k: v for k, v in s.items() if k != "formats"} for s in report["sources"]] == [
        {"name": "lf", "records_in": 4, "valid": 4, "quarantined": 0, "unmapped_fields": {}},
        {"name": "extra", "records_in": 3, "valid": 2, "quarantined": 1, "unmapped_fields": {}},
    ]
    path = Path(report["quarantine_path"])
    assert path.parent == tmp_path / "store" / "test-ds" / "quarantine"
    (entry,) = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert entry["source_ref"] == "extra/d.jsonl:2" and entry["reason"] == "placeholder_mismatch"


def test_clean_ingest_still_writes_an_empty_quarantine_file(tmp_path: Path) -> None:
    write_llamafactory_corpus(tmp_path / "lf")
    result = _ingest(write_recipe(tmp_path, [{"name": "lf", "path": "lf"}]))
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["quarantined"] == 0 and Path(report["quarantine_path"]).read_text() == ""


def test_ingest_exits_3_over_max_bad_fraction_and_names_top_reasons(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, _corpus(tmp_path, bad_lines=2))  # 2 of 8 > default 0.05
    result = _ingest(recipe)
    assert result.exit_code == 3
    assert "placeholder_mismatch (2)" in result.stderr and "max_bad_fraction" in result.stderr
    report = json.loads(result.stdout)
    assert report["quarantined"] == 2 and Path(report["quarantine_path"]).exists()


def test_ingest_prints_tables_without_json(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, _corpus(tmp_path), max_bad_fraction=0.5)
    result = runner.invoke(app, ["ingest", str(recipe)])
    assert result.exit_code == 0, result.stderr
    for text in ("records per source", "lf", "extra", "placeholder_mismatch", "quarantine:"):
        assert text in result.stdout


def test_missing_source_path_fails_before_work_naming_the_key(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, [{"name": "gone", "path": "nowhere.jsonl"}])
    result = _ingest(recipe)
    assert result.exit_code == 2
    assert "sources.0.path" in result.stderr
    assert not (tmp_path / "store").exists()


def test_run_ids_sort_by_time_and_do_not_collide() -> None:
    ids = [new_run_id() for _ in range(20)]
    assert all(re.fullmatch(r"\d{8}T\d{12}Z-[0-9a-f]{6}", i) for i in ids)
    assert len(set(ids)) == 20


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from pipeline.cli import app;"
        "assert CliRunner().invoke(app, ['ingest', '--help']).exit_code == 0;"
        "print(sorted(m for m in ('torch', 'ray', 'pyarrow', 'PIL', 'soundfile', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("bad", [0, 1])
def test_quarantined_share_at_the_limit_passes(tmp_path: Path, bad: int) -> None:
    # 1 bad of 7 records is 0.1428...: exactly allowed at 1/7, refused just below it.
    recipe = write_recipe(
        tmp_path, _corpus(tmp_path, bad_lines=1), max_bad_fraction=1 / 7 - 1e-9 * bad
    )
    assert _ingest(recipe).exit_code == (3 if bad else 0)
