"""The Alibi comparison's streams: modelops' looks are binned from the very rows Alibi reads."""

from __future__ import annotations

import numpy as np

from benchmarks.alibi_comparison import AlibiPlan, minute_counts, profile_of, scraped, stream_rows


def test_each_minute_counts_its_own_rows_in_the_profile_bins() -> None:
    edges = np.array([[0.0, 1.0], [-1.0, 5.0]])  # 2 features, 3 bins each
    rows = np.array([[-0.5, 0.0], [0.0, -2.0], [2.0, 6.0], [0.5, 5.0]])
    row_minutes = np.array([0, 0, 2, 2])
    counts = minute_counts(rows, row_minutes, edges, minutes=3)
    assert counts.shape == (3, 2, 3)
    # A value on an edge goes to the bin above, as in the profile (searchsorted, side="right").
    assert counts[0].tolist() == [[1, 1, 0], [1, 1, 0]]
    assert counts[1].sum() == 0
    assert counts[2].tolist() == [[0, 1, 1], [0, 0, 2]]


def test_a_missed_scrape_shows_nothing_and_its_rows_arrive_with_the_next_look() -> None:
    counts = np.arange(1.0, 5.0)[:, None]  # 4 minutes of 1, 2, 3, 4 rows
    missed = np.array([False, True, True, False])
    assert scraped(counts, missed)[:, 0].tolist() == [1, 0, 0, 9]
    # The last look is never missed: nothing is lost at the end of a stream.
    assert scraped(counts, np.array([False, False, False, True]))[:, 0].tolist() == [1, 2, 3, 4]


def test_streams_keep_every_row_and_shift_only_the_watched_feature() -> None:
    plan = AlibiPlan(features=3, requests_per_minute=50.0, shift_sd=10.0)
    rows, row_minutes = stream_rows(plan, minutes=6, shift_at=3, rng=np.random.default_rng(0))
    edges, frequencies = profile_of(np.random.default_rng(1).standard_normal((500, 3)), bins=10)
    counts = minute_counts(rows, row_minutes, edges, minutes=6)
    assert counts.sum() == rows.shape[0] * 3
    assert np.allclose(frequencies.sum(axis=1), 1.0)
    after = row_minutes >= 3
    assert rows[after, 0].mean() > 8 and abs(rows[~after, 0].mean()) < 1
    assert abs(rows[after, 1].mean()) < 1
