"""Property-based tests (hypothesis) of the parse loader, the storyboard segmenter and the rhythm
metrics: laws that hold for every input, not just the hand-picked ones in their own test files."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from vem.runtime.metrics import (
    chance_hit_rate,
    event_iou,
    hit_rate,
    match_events,
    rhythm_metrics,
    transition_prf,
)
from vem.runtime.parse_schema import ParseError, parse_from_dict, parse_to_dict
from vem.runtime.storyboard import segment_storyboards, storyboard_mask
from vem.runtime.tags import TAG_VOCABULARY

PROPERTY = settings(max_examples=120, deadline=None, derandomize=True)

# Times on a 1/1024 s grid: sums and differences are exact in binary floating point, so laws
# such as "shifting both lists changes nothing" hold exactly, not just up to rounding.
grid_times = st.integers(0, 120 * 1024).map(lambda k: k / 1024)
time_lists = st.lists(grid_times, max_size=25)


# ---- parse JSON: what is written reads back the same ------------------------------------------


@st.composite
def valid_parses(draw) -> dict:
    duration = draw(st.integers(1, 600 * 64)) / 64
    cuts = sorted(set(draw(st.lists(st.integers(1, int(duration * 64) - 1 or 1), max_size=10))))
    transitions = [c / 64 for c in cuts if c / 64 < duration]
    bounds = [0.0] + transitions + [duration]
    storyboards = [{"start_s": a, "duration_s": b - a, "description": draw(st.text(max_size=12))}
                   for a, b in zip(bounds, bounds[1:]) if b - a > 0]
    return {
        "version": 1,
        "video": {"path": draw(st.text(max_size=10)), "duration_s": duration,
                  "fps": draw(st.sampled_from([23.976, 25.0, 30.0, 60.0]))},
        "global": {"caption": draw(st.text(max_size=20)),
                   "tags": draw(st.lists(st.sampled_from(TAG_VOCABULARY), max_size=4, unique=True))},
        "storyboards": storyboards,
        "frame": {"transitions_s": transitions},
        "extra_field": draw(st.none() | st.integers() | st.text(max_size=5)),
    }


@PROPERTY
@given(data=valid_parses())
def test_parse_round_trip_is_exact(data):
    parse = parse_from_dict(data, TAG_VOCABULARY)
    written = parse_to_dict(parse)
    assert parse_from_dict(written, TAG_VOCABULARY) == parse
    assert written["frame"]["transition_frames"] == [int(round(t * 16)) for t in data["frame"]["transitions_s"]]
    assert written["extra_field"] == data["extra_field"]


@PROPERTY
@given(data=valid_parses(), shift=st.integers(1, 64))
def test_storyboard_moved_into_its_neighbour_is_refused(data, shift):
    assume(len(data["storyboards"]) >= 2)
    second = data["storyboards"][1]
    second["start_s"] = max(0.0, second["start_s"] - shift / 64)
    with pytest.raises(ParseError, match=r"storyboards\[1\]: overlaps"):
        parse_from_dict(data)


@PROPERTY
@given(data=valid_parses(), extra=st.integers(1, 640))
def test_storyboard_past_the_end_is_refused(data, extra):
    assume(data["storyboards"])
    data["storyboards"][-1]["duration_s"] += extra / 64
    with pytest.raises(ParseError, match="runs past the end of the video"):
        parse_from_dict(data)


@PROPERTY
@given(data=valid_parses(), tag=st.text(min_size=1, max_size=8))
def test_unknown_tags_are_refused_only_with_a_vocabulary(data, tag):
    assume(tag not in TAG_VOCABULARY)
    data["global"]["tags"] = [*data["global"]["tags"], tag]
    assert parse_from_dict(data).global_.tags[-1] == tag
    with pytest.raises(ParseError, match="unknown tag"):
        parse_from_dict(data, TAG_VOCABULARY)


# ---- storyboard segmenter ---------------------------------------------------------------------

any_cuts = st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64) | grid_times, max_size=40)


@PROPERTY
@given(cuts=any_cuts, duration=st.floats(0.01, 600), min_s=st.floats(0.25, 5), max_factor=st.floats(1, 8),
       cap=st.integers(1, 40))
def test_segments_tile_the_video(cuts, duration, min_s, max_factor, cap):
    # Bounded so that at most a few hundred pieces are split off (the cap then merges them one
    # pair at a time, quadratic in their number).
    max_s = max(1.0, min_s * max_factor)
    min_s = min(min_s, max_s)
    spans = segment_storyboards(cuts, duration, min_s=min_s, max_s=max_s, max_storyboards=cap)
    assert 1 <= len(spans) <= cap
    assert spans[0].start_s == 0.0
    assert spans[-1].end_s == pytest.approx(duration, rel=1e-12, abs=1e-9)
    for before, after in zip(spans, spans[1:]):
        assert after.start_s == pytest.approx(before.end_s, rel=1e-12, abs=1e-9)
    assert all(span.duration_s > 0 for span in spans)
    if len(spans) > 1 and min_s <= max_s / 2:
        # Merging leaves no shot shorter than min_s, and a split long shot's parts are > max_s / 2.
        assert min(span.duration_s for span in spans) >= min_s - 1e-9
    if len(spans) < cap:
        # Only the cap (merging pairs) may leave a storyboard longer than max_s.
        assert max(span.duration_s for span in spans) <= max_s + 1e-9


@PROPERTY
@given(cuts=st.lists(grid_times, max_size=30), duration=st.floats(0.5, 130), seed=st.integers(0, 2**32 - 1))
def test_segments_do_not_depend_on_the_order_of_the_cuts(cuts, duration, seed):
    shuffled = list(np.random.default_rng(seed).permutation(np.array(cuts, dtype=float))) if cuts else []
    assert segment_storyboards(cuts, duration) == segment_storyboards(shuffled, duration)


@PROPERTY
@given(cuts=st.lists(grid_times, max_size=20), duration=st.floats(0.5, 130), fps=st.sampled_from([25.0, 12.5]))
def test_mask_of_a_tiling_marks_each_latent_frame_once(cuts, duration, fps):
    spans = segment_storyboards(cuts, duration, max_storyboards=8)
    frames = max(1, int(duration * fps))
    start = np.array([[s.start_s for s in spans]])
    length = np.array([[s.duration_s for s in spans]])
    mask = storyboard_mask(start, length, frames, fps)
    inside = (np.arange(frames) + 0.5) / fps < spans[-1].end_s
    assert np.all(mask[0].sum(axis=1)[inside] == 1)


@PROPERTY
@given(duration=st.sampled_from([0.0, -1.0, math.nan, math.inf]))
def test_segmenter_refuses_durations_that_are_not_positive(duration):
    with pytest.raises(ValueError):
        segment_storyboards([1.0], duration)


# ---- metrics ----------------------------------------------------------------------------------


@PROPERTY
@given(a=time_lists, b=time_lists, tolerance=st.sampled_from([0.0, 0.07, 0.5, 2.0]))
def test_matching_is_one_to_one_and_within_tolerance(a, b, tolerance):
    pairs = match_events(a, b, tolerance)
    assert len({i for i, _ in pairs}) == len(pairs) == len({j for _, j in pairs})
    assert all(abs(a[i] - b[j]) <= tolerance + 1e-9 for i, j in pairs)
    assert len(pairs) <= min(len(a), len(b))
    iou = event_iou(a, b, tolerance)
    assert 0.0 <= iou <= 1.0
    if a and b:
        assert iou == len(pairs) / (len(a) + len(b) - len(pairs))


@PROPERTY
@given(a=time_lists)
def test_a_list_matches_itself_completely(a):
    assert event_iou(a, a) == 1.0
    prf = transition_prf(a, a)
    assert prf["precision"] == prf["recall"] == prf["f1"] == 1.0


@PROPERTY
@given(a=time_lists, b=time_lists, shift=st.integers(-10 * 1024, 10 * 1024).map(lambda k: k / 1024))
def test_metrics_do_not_depend_on_where_time_starts(a, b, shift):
    moved_a, moved_b = [t + shift for t in a], [t + shift for t in b]
    assert event_iou(a, b) == event_iou(moved_a, moved_b)
    assert (math.isnan(hit_rate(a, b)) and math.isnan(hit_rate(moved_a, moved_b))) or \
        hit_rate(a, b) == hit_rate(moved_a, moved_b)


@PROPERTY
@given(cuts=time_lists, beats=time_lists)
def test_hit_rate_grows_with_the_tolerance(cuts, beats):
    rates = [hit_rate(cuts, beats, tol) for tol in (0.0, 0.035, 0.07, 0.5, 1.0)]
    if not cuts:
        assert all(math.isnan(r) for r in rates)
    else:
        assert all(0.0 <= r <= 1.0 for r in rates)
        assert rates == sorted(rates)


@PROPERTY
@given(beats=st.lists(st.integers(0, 20 * 1024).map(lambda k: k / 1024), max_size=30),
       duration=st.integers(1, 20).map(float))
def test_chance_hit_rate_is_the_covered_share_of_the_video(beats, duration):
    chance = chance_hit_rate(beats, duration)
    assert 0.0 <= chance <= 1.0
    # Brute force: the share of 100,000 evenly spread cut times with a beat within 70 ms.
    grid = (np.arange(100_000) + 0.5) / 100_000 * duration
    if beats:
        sorted_beats = np.sort(beats)
        position = np.clip(np.searchsorted(sorted_beats, grid), 1, len(sorted_beats) - 1) if len(beats) > 1 else 0
        if len(beats) > 1:
            nearest = np.minimum(np.abs(grid - sorted_beats[position - 1]), np.abs(grid - sorted_beats[position]))
        else:
            nearest = np.abs(grid - sorted_beats[0])
        brute = float(np.mean(nearest <= 0.07))
    else:
        brute = 0.0
    assert chance == pytest.approx(brute, abs=2e-4)


@PROPERTY
@given(cuts=time_lists, beats=time_lists, duration=st.floats(0.1, 200))
def test_rhythm_metrics_are_in_range_for_any_finite_input(cuts, beats, duration):
    metrics = rhythm_metrics(cuts, beats, duration, reference_beats=beats)
    assert 0.0 <= metrics["tbiou"] <= 1.0
    assert metrics["biou"] == 1.0  # the beats against themselves
    assert math.isnan(metrics["hit_70ms"]) == (not cuts) == math.isnan(metrics["chance_70ms"])
    assert metrics["n_transitions"] == len(cuts) and metrics["n_beats"] == len(beats)


@PROPERTY
@given(good=time_lists, bad=st.sampled_from([math.nan, math.inf, -math.inf]))
def test_metrics_refuse_times_that_are_not_finite(good, bad):
    with pytest.raises(ValueError, match="finite"):
        rhythm_metrics([*good, bad], good, 10.0)
