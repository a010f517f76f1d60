"""A record-pass task holds OpenCV's thread pool to the CPUs it holds."""

from __future__ import annotations

import os
import sys

import pytest

from pipeline.execution import passes


@pytest.fixture
def threads_restored(monkeypatch: pytest.MonkeyPatch):
    import cv2

    before = cv2.getNumThreads()
    monkeypatch.delenv("OPENCV_FOR_THREADS_NUM", raising=False)
    monkeypatch.setattr(passes, "_USER_OPENCV_THREADS", False)
    yield cv2
    cv2.setNumThreads(before)


def test_an_imported_opencv_gets_one_thread_per_cpu_of_the_task(threads_restored) -> None:
    cv2 = threads_restored
    passes._opencv_threads(1.0)
    assert cv2.getNumThreads() == 1
    passes._opencv_threads(0.5)  # a fraction of a CPU still gets a thread
    assert cv2.getNumThreads() == 1
    passes._opencv_threads(2.0)
    assert cv2.getNumThreads() == 2


def test_opencv_not_yet_imported_is_told_through_its_environment(
    threads_restored, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "cv2")
    try:
        passes._opencv_threads(2.0)
        assert os.environ["OPENCV_FOR_THREADS_NUM"] == "2"
    finally:
        os.environ.pop("OPENCV_FOR_THREADS_NUM", None)


def test_a_thread_count_the_user_set_is_left_alone(
    threads_restored, monkeypatch: pytest.MonkeyPatch
) -> None:
    cv2 = threads_restored
    cv2.setNumThreads(3)
    monkeypatch.setattr(passes, "_USER_OPENCV_THREADS", True)
    passes._opencv_threads(1.0)
    assert cv2.getNumThreads() == 3
