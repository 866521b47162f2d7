"""Beats on real cuts, end to end: slideshows of real photographs with known cut frames (not
vem-synth's clips) through the shipped bundle with default settings, scored against the true cut
times (the first frame of each new shot). The full held-out measurement is
`python -m benchmarks.rhythm_real` (docs/rhythm.md); this is its smallest form."""

from __future__ import annotations

import pytest

pytest.importorskip("skimage")  # the real photographs


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    from benchmarks.rhythm_real import run

    folder = tmp_path_factory.mktemp("rhythm_real")
    # seed 6: not one of the held-out seeds (100+) the published figures use; its free edit is one
    # no steady tempo holds (3-4 of its 5 cuts), so the runtime plans a tempo map for it (seed 7's
    # free edit fitted one steady tempo and left the map untested)
    return run(["steady", "free"], 1, seed=6, tracker="numpy", tempo_mode="default", folder=folder, verbose=False)


def test_a_steady_edit_gets_one_steady_tempo_with_every_cut_on_its_grid(measured):
    steady = measured["sets"]["steady"]
    video, summary = steady["videos"][0], steady["summary"]
    assert video["cuts"] >= 3 and summary["detected_cuts_missing"] == 0
    # the grid asked for puts every true cut within 70 ms of a beat, and it is one tempo
    assert summary["grid_hit_70ms"] == 1.0
    assert video["asked_bpm"] is not None and video["edit_bpm"] is not None
    ratio = video["asked_bpm"] / video["edit_bpm"]
    assert min(abs(ratio - k) for k in (0.5, 1.0, 1.5, 2.0)) < 0.02  # the edit's tempo or a simple multiple


def test_a_free_edit_gets_a_map_and_the_music_follows_it(measured):
    free = measured["sets"]["free"]
    summary = free["summary"]
    assert free["videos"][0]["plan"] == "map", free["videos"][0]["why"]  # the report's tempo source
    assert summary["grid_hit_70ms"] >= 0.75  # a cut the map cannot reach may be left off, never most
    # the written music (beats tracked in the waveform) follows the grid it was asked for
    assert summary["follow_median_s"] is not None and abs(summary["follow_median_s"]) < 0.03
    assert summary["hit_70ms"] > summary["chance_70ms"]
