"""Rhythm metrics (docs/paper.md §7) on hand-worked examples."""

import math

import numpy as np
import pytest

from vem.runtime.metrics import (
    biou,
    chance_hit_rate,
    event_iou,
    hit_rate,
    match_events,
    rhythm_metrics,
    tbiou,
    transition_prf,
)


def test_empty_lists():
    assert event_iou([], []) == 1.0
    assert event_iou([1.0], []) == 0.0
    assert event_iou([], [1.0, 2.0]) == 0.0
    assert match_events([], [1.0]) == []
    assert math.isnan(hit_rate([], [1.0]))
    assert hit_rate([1.0], []) == 0.0


def test_exact_matches():
    beats = [0.5, 1.0, 1.5, 2.0]
    assert biou(beats, beats) == 1.0
    assert match_events(beats, beats) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    # 2 cuts on beats out of 4 beats: |T ∩ B| = 2, |T ∪ B| = 2 + 4 - 2 = 4
    assert tbiou([1.0, 2.0], beats) == pytest.approx(0.5)


def test_near_misses_at_the_half_second_tolerance():
    assert tbiou([1.49], [1.0]) == 1.0  # 0.49 s away: a match
    assert tbiou([1.51], [1.0]) == 0.0  # 0.51 s away: none; union 2
    assert tbiou([1.5], [1.0]) == 1.0  # exactly on the tolerance counts
    assert event_iou([1.0, 3.0], [1.49, 3.51]) == pytest.approx(1 / 3)  # 1 match, union 2 + 2 - 1


def test_many_to_one_is_not_allowed():
    # three cuts near one beat: one match, union = 3 + 1 - 1
    assert match_events([0.9, 1.0, 1.1], [1.0]) == [(1, 0)]
    assert tbiou([0.9, 1.0, 1.1], [1.0]) == pytest.approx(1 / 3)
    # one cut between two beats takes the nearer one only
    assert match_events([1.2], [1.0, 1.3]) == [(0, 1)]
    assert tbiou([1.2], [1.0, 1.3]) == pytest.approx(1 / 2)


def test_greedy_takes_the_closest_pair_first():
    # a=1.0 is 0.1 from b=1.1; a=1.25 is 0.15 from b=1.1 and 0.45 from b=1.7 -> both still matched
    pairs = match_events([1.0, 1.25], [1.1, 1.7])
    assert pairs == [(0, 0), (1, 1)]


def test_hit_rate_70ms():
    beats = np.arange(0.5, 10, 0.5)
    assert hit_rate([1.0, 2.06, 3.08], beats) == pytest.approx(2 / 3)  # 0, 60 ms, 80 ms away
    # not one-to-one: two cuts near one beat both hit
    assert hit_rate([1.0, 1.05], beats) == 1.0


def test_chance_hit_rate_is_the_covered_share():
    # beats every 0.5 s over 10 s, +-70 ms windows: 0.14 s of every 0.5 s is covered
    beats = np.arange(0.0, 10.0 + 1e-9, 0.5)
    expected = (20 * 0.14) / 10.0  # 19 inner windows of 0.14 + two half windows at 0 and 10
    assert chance_hit_rate(beats, 10.0) == pytest.approx(expected)
    # overlapping windows are not counted twice
    assert chance_hit_rate([5.0, 5.01], 10.0) == pytest.approx((0.14 + 0.01) / 10)
    # random cut times reach the same hit rate on average
    rng = np.random.default_rng(0)
    cuts = rng.uniform(0, 10, 20000)
    assert hit_rate(cuts, beats) == pytest.approx(expected, abs=0.01)
    with pytest.raises(ValueError, match="duration"):
        chance_hit_rate(beats, 0.0)


def test_transition_prf():
    r = transition_prf([1.0, 2.0, 3.0], [1.1, 2.9, 5.0])
    assert r["matches"] == 2
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 / 3)
    assert transition_prf([], [])["f1"] == 1.0
    assert transition_prf([1.0], [])["f1"] == 0.0
    assert transition_prf([1.0], [], tolerance=0.1)["recall"] == 0.0


def test_rhythm_metrics_and_bad_input():
    m = rhythm_metrics([1.0, 2.0], [1.0, 1.5, 2.0, 2.5], 3.0, reference_beats=[1.0, 1.5, 2.0, 2.5])
    assert m["tbiou"] == pytest.approx(0.5) and m["biou"] == 1.0 and m["hit_70ms"] == 1.0
    assert 0 < m["chance_70ms"] < 1
    assert math.isnan(rhythm_metrics([1.0], [1.0], 2.0)["biou"])
    with pytest.raises(ValueError, match="finite"):
        tbiou([float("nan")], [1.0])
    with pytest.raises(ValueError, match="tolerance"):
        match_events([1.0], [1.0], tolerance=-1)


def test_cut_beat_offsets_give_each_cuts_nearest_beat_and_signed_offset():
    from vem.runtime.metrics import cut_beat_offsets

    rows = cut_beat_offsets([1.0, 2.02, 3.5], [0.5, 0.98, 2.0, 2.5, 4.0])
    assert [r["nearest_beat_s"] for r in rows] == [0.98, 2.0, 4.0]
    assert [r["offset_s"] for r in rows] == [pytest.approx(-0.02), pytest.approx(-0.02), pytest.approx(0.5)]
    assert cut_beat_offsets([1.0], [])[0]["nearest_beat_s"] is None
