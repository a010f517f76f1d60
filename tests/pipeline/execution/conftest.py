"""Fixtures of the execution tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths whose bytes are read to pin them (`file_sha256`), in order."""
    import pipeline.record.ids as ids

    calls: list[str] = []
    real = ids.file_sha256
    monkeypatch.setattr(ids, "file_sha256", lambda path: calls.append(path) or real(path))
    return calls
