"""A driver killed inside the commit, after its shards moved into versions/v<N>/ and before
the manifest: the next run (no gc in between) publishes v1, not v2, with every id once."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.reliability.conftest import (
    all_versions_intact,
    cli_process,
    ids_of,
    leftovers,
    run_json,
    store_of,
)

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.mark.parametrize("point", ["after_move", "after_cards", "before_manifest"])
def test_a_commit_killed_after_its_shards_moved_does_not_make_the_next_run_skip_a_number(
    corpus: Path, fault_free, point: str
) -> None:
    store = store_of(corpus)
    run = cli_process("run", corpus, "--json", ROLEFORGE_FAULT=f"kill:{point}")
    _out, err = run.communicate(timeout=300)
    assert run.returncode == -signal.SIGKILL, err.decode(errors="replace")[-2000:]
    assert (Path(store.root) / "versions" / "v1").is_dir()  # the leftover this is about
    assert all_versions_intact(store) == []

    rerun = run_json(corpus)

    assert rerun["version"] == 1
    assert rerun["content_id"] == fault_free["content_id"]
    assert ids_of(store) == fault_free["ids"]  # 0 lost, 0 duplicated
    assert all_versions_intact(store) == [1]  # 0 corrupt
    assert [p for p in leftovers(store) if p.startswith("versions/")] == []
