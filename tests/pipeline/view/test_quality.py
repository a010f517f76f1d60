"""The quality summary's histograms: whole-number bins for token counts."""

from __future__ import annotations

import numpy as np

from pipeline.view.quality import histogram


def test_token_counts_fall_in_whole_number_bins_that_cover_every_value():
    values = np.array([3, 3, 4, 10, 40, 41], dtype=float)
    bins = histogram(values, bins=4)
    assert len(bins) <= 4 and sum(b.count for b in bins) == len(values)
    assert bins[0].low == 3 and bins[-1].high >= 41
    for a, b in zip(bins, bins[1:], strict=False):
        assert b.low == a.high + 1  # no gap, no overlap


def test_equal_values_make_one_bin_and_fractions_equal_width_bins():
    assert [(b.low, b.high, b.count) for b in histogram(np.array([7.0, 7.0]))] == [(7, 7, 2)]
    bins = histogram(np.array([0.5, 1.5, 2.5]), bins=2)
    assert [b.count for b in bins] == [1, 2] and bins[0].low == 0.5 and bins[-1].high == 2.5
    assert histogram(np.array([])) == []
