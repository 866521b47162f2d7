"""The runtime's tempo choice and beat grid (vem.runtime.tempo)."""

from __future__ import annotations

import numpy as np
import pytest

from vem.runtime.tempo import PACE_BPM, TempoChoice, beat_grid, beat_times, choose_tempo


def test_cuts_on_bar_lines_give_their_tempo_and_phase():
    period = 60.0 / 112.0
    cuts = 0.31 + period * np.array([0, 8, 16, 28])  # bar lines of 4/4 at 112 BPM
    choice = choose_tempo(cuts, ["pop", "moderate"])
    assert choice.source == "cuts"
    assert choice.bpm == pytest.approx(112.0, abs=0.5)
    beats = choice.beats(cuts[-1] + 1.0)
    assert np.max(np.min(np.abs(cuts[:, None] - beats[None, :]), axis=1)) < 0.01


def test_pace_word_breaks_ties_between_grids_that_fit():
    """Cuts 16 beats apart at 150 BPM (6.4 s) fit several grids with the cuts on bar lines (8, 12,
    16, 20 beats: 75, 112.5, 150, 187.5 BPM); the pace word picks among them, softly."""
    cuts = 0.2 + 0.4 * np.array([0, 16])
    assert choose_tempo(cuts, ["fast"]).bpm == pytest.approx(150.0, abs=0.5)
    assert choose_tempo(cuts, ["moderate"]).bpm == pytest.approx(112.5, abs=0.5)
    assert choose_tempo(cuts, ["slow"]).bpm == pytest.approx(75.0, abs=0.5)
    # A wrong pace word does not force a grid the cuts do not fit: three cuts 2 s apart are
    # on bar lines in the range only at 120 BPM, whatever the word.
    assert choose_tempo([1.0, 3.0, 5.0], ["slow"]).bpm == pytest.approx(120.0, abs=0.5)


def test_without_cuts_the_prior_centre_and_a_grid_from_zero():
    choice = choose_tempo([], ["slow"])
    assert choice.source == "prior" and choice.anchor_s == 0.0
    low, high = PACE_BPM["slow"]
    assert low < choice.bpm < high
    assert choose_tempo([], []).bpm == pytest.approx(np.sqrt(70.0 * 170.0), abs=0.01)
    one_cut = choose_tempo([2.5], [])
    assert one_cut.source == "prior" and one_cut.anchor_s == 2.5


def test_user_tempo_is_kept_and_checked():
    choice = choose_tempo([1.0, 3.0], ["fast"], bpm=97.0)
    assert choice == TempoChoice(97.0, 1.0, "user")
    with pytest.raises(ValueError, match="BPM"):
        choose_tempo([1.0], [], bpm=1000.0)
    with pytest.raises(ValueError, match="BPM"):
        choose_tempo([1.0], [], bpm=float("nan"))


def test_beat_times_cover_the_window_through_the_anchor():
    beats = beat_times(120.0, 1.25, 4.0)
    assert np.allclose(beats, [0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.25, 3.75])


def test_beat_grid_keeps_each_beat_as_a_unit_pulse_at_its_time():
    fps = 25.0
    # Frame i stands for (i + 0.5) / fps: a beat at frame 10's centre is all in frame 10, one
    # halfway between frames 20 and 21 is split evenly.
    grid = beat_grid([10.5 / fps, 21.0 / fps, 99.0], 32, fps)
    assert grid.dtype == np.float32 and grid.shape == (32,)
    assert grid[10] == pytest.approx(1.0)
    assert grid[20] == pytest.approx(0.5) and grid[21] == pytest.approx(0.5)
    assert grid.sum() == pytest.approx(2.0)  # the beat at 99 s is outside the window
    # A window starting later sees the same pulses shifted by its start.
    shifted = beat_grid([10.5 / fps + 0.4], 32, fps, start_s=0.4)
    assert np.allclose(shifted, beat_grid([10.5 / fps], 32, fps))


def test_vem_synth_cuts_give_the_music_tempo():
    """On vem-synth's plans (cuts on its beat grid, the pace word among its tags) the choice is
    within 5 % of the music's tempo for most clips with two or more cuts."""
    from vem.training.synth.plan import plan_timeline
    from vem.training.synth.style import sample_style
    from vem.training.synth.video import plan_transitions

    ratios = []
    for index in range(150):
        rng = np.random.default_rng(index)
        style = sample_style(rng)
        timeline = plan_timeline(style, float(rng.uniform(8, 14)), rng)
        cuts = [t.time_s for t in plan_transitions(style, timeline, 24, rng)]
        if len(cuts) >= 2:
            ratios.append(choose_tempo(cuts, style.tags).bpm / style.tempo_bpm)
    ratios = np.array(ratios)
    assert len(ratios) > 60
    assert np.mean(np.abs(ratios - 1) < 0.05) > 0.75


# ---- tempo maps ------------------------------------------------------------------------------------
def test_tempo_map_puts_reachable_cuts_on_beats_with_a_bounded_glide():
    from vem.runtime.tempo import TEMPO_RANGE_BPM, tempo_map

    rng = np.random.default_rng(3)
    for _ in range(5):
        cuts = np.cumsum(rng.uniform(1.4, 5.0, 10))
        tempo = tempo_map(cuts, float(cuts[-1] + 2.0), ["moderate"], max_change_per_bar=0.04)
        periods = np.diff(tempo.beats_s)
        assert 60.0 / periods.max() >= TEMPO_RANGE_BPM[0] - 1e-6 and 60.0 / periods.min() <= TEMPO_RANGE_BPM[1] + 1e-6
        # The tempo glides: over any bar it changes by at most the bound.
        assert np.abs(np.log(periods[4:] / periods[:-4])).max() <= np.log1p(0.04) + 1e-6
        for cut in tempo.on_grid_s:
            assert np.min(np.abs(tempo.beats_s - cut)) < 1e-6
        assert len(tempo.on_grid_s) + len(tempo.left_off) == len(cuts)
        assert len(tempo.on_grid_s) >= 7


def test_tempo_map_names_a_cut_it_cannot_reach():
    from vem.runtime.tempo import tempo_map

    tempo = tempo_map([1.0, 1.2, 3.0, 5.0], 7.0)
    assert [item["time_s"] for item in tempo.left_off] in ([1.0], [1.2])
    assert "closer than one beat" in tempo.left_off[0]["reason"]
    report = tempo.report()
    assert report["cuts_on_grid"] == 3 and report["source"] == "map"


def test_vem_run_tempo_map_asks_for_beats_on_the_cuts(tmp_path):
    """`--tempo map` end to end on a free edit: the model is asked for a beat at every cut the map
    reaches, the report says which it left off; --bpm with --tempo map is a usage error."""
    pytest.importorskip("skimage")
    import json

    from vem.runtime.run import main as vem_run
    from vem.runtime.slideshow import free_shots, write_slideshow

    video = write_slideshow(tmp_path / "free.mp4", free_shots(8, seed=3, low_s=1.4, high_s=2.6), fps=25,
                            size=(320, 180))
    code = vem_run([video.path, "-o", str(tmp_path / "m.wav"), "--tempo", "map", "--steps", "2",
                    "--report", str(tmp_path / "r.json"), "-q"])
    assert code == 0
    tempo = json.loads((tmp_path / "r.json").read_text())["tempo"]
    assert tempo["source"] == "map"
    assert tempo["cuts_on_grid"] + len(tempo["cuts_left_off"]) == len(video.cut_times_s)
    on_grid = [c for c in video.cut_times_s if all(abs(c - left["time_s"]) > 1e-3 for left in tempo["cuts_left_off"])]
    for cut in on_grid:
        assert min(abs(b - cut) for b in tempo["beats_s"]) < 1e-3
    assert vem_run([video.path, "-o", str(tmp_path / "n.wav"), "--tempo", "map", "--bpm", "100", "-q"]) == 2


def test_auto_keeps_one_steady_tempo_when_it_holds_every_cut():
    """An edit cut to 96 BPM and snapped to 24 fps frames (each cut up to 42 ms after its beat):
    auto keeps the steady fit, which holds all of them."""
    from vem.runtime.metrics import count_within
    from vem.runtime.tempo import TempoMap, plan_tempo

    beats = 0.4 + (60.0 / 96.0) * np.array([0, 4, 8, 10, 14, 18])
    cuts = np.ceil(beats * 24) / 24  # the first frame at or after each beat
    tempo, why = plan_tempo(cuts, 12.0, ["moderate"])
    assert not isinstance(tempo, TempoMap) and tempo.bpm == pytest.approx(96.0, abs=0.5)
    assert "steady" in why and count_within(cuts, tempo.beats(12.0), 0.035) == len(cuts)
    # vem-run's report entry for a steady tempo: unrounded, so a reader rebuilds the exact grid
    assert tempo.report() == {"bpm": tempo.bpm, "anchor_s": tempo.anchor_s, "source": tempo.source}


def test_auto_maps_free_cuts_that_no_steady_tempo_holds():
    from vem.runtime.metrics import count_within
    from vem.runtime.tempo import FAST_BPM, TempoMap, plan_tempo

    cuts = np.array([1.37, 3.02, 6.11, 7.9, 10.64, 12.2])  # free edits, 1.5-3.1 s apart
    tempo, why = plan_tempo(cuts, 15.0, [])
    steady, _ = plan_tempo(cuts, 15.0, [], mode="steady")
    assert isinstance(tempo, TempoMap) and "tempo map" in why
    on_map = count_within(cuts, tempo.beats_s, 0.035)
    assert on_map > count_within(cuts, steady.beats(15.0), 0.035)
    assert on_map + len(tempo.left_off) == len(cuts)  # a cut the map cannot reach is named, with why
    periods = np.diff(tempo.beats_s)
    assert 60.0 / periods.max() >= 70.0 - 1e-6 and 60.0 / periods.min() <= FAST_BPM + 1e-6
    # --bpm keeps its meaning: one steady tempo at that value, whatever the cuts
    user, why = plan_tempo(cuts, 15.0, [], bpm=100.0)
    assert user.bpm == 100.0 and user.source == "user" and "--bpm" in why
    with pytest.raises(ValueError, match="tempo mode"):
        plan_tempo(cuts, 15.0, [], mode="wobbly")


def test_auto_with_fewer_than_two_cuts_is_steady():
    from vem.runtime.tempo import TempoMap, plan_tempo

    tempo, why = plan_tempo([2.0], 8.0, ["fast"])
    assert not isinstance(tempo, TempoMap) and "fewer than two" in why


def test_the_shipped_bundle_compensates_its_measured_beat_lead():
    """The shipped manifest carries the model's measured onset offset (benchmarks.onset_offset);
    the pipeline asks for the beat grid that much later, and a manifest keeps it through a rewrite."""
    from vem.runtime.bundle import load_bundle, manifest_from_data
    from vem.runtime.pipeline import DEFAULT_BUNDLE, Pipeline

    bundle = load_bundle(DEFAULT_BUNDLE)
    lead = bundle.manifest.rhythm["beat_lead_s"]
    assert 0.0 < lead < 0.03 and "benchmarks.onset_offset" in bundle.manifest.rhythm["measured_with"]
    assert manifest_from_data(bundle.manifest.to_dict()).rhythm == bundle.manifest.rhythm
    pipeline = Pipeline.load(bundle, components=Pipeline.PARSE_COMPONENTS)
    assert pipeline.beat_lead_s == lead
    # what the model is asked for: every beat of the tempo `lead` later
    tempo = TempoChoice(120.0, 0.5, "user")
    asked = pipeline.asked_beats(tempo, 4.0)
    np.testing.assert_allclose(asked, tempo.beats(4.0) + lead)
    # a bundle without the measurement (or with a value no model could have) is not shifted
    bundle.manifest.rhythm = {"beat_lead_s": 0.5}
    assert Pipeline.load(bundle, components=Pipeline.PARSE_COMPONENTS).beat_lead_s == 0.0


def test_a_fast_grid_puts_cuts_only_on_every_other_beat():
    """Above FAST_BPM a listener (and madmom) may hear half time: a steady grid that fast is chosen
    only when every cut is an even number of beats from the first, and a map never goes that fast."""
    from vem.runtime.tempo import FAST_BPM, tempo_map

    period = 60.0 / 160.0
    odd = 0.5 + period * np.array([0, 3, 7, 10, 13])  # fits 160 BPM only with cuts on odd beats
    choice = choose_tempo(odd, ["fast"])
    index = np.rint((odd - odd[0]) / choice.period_s)
    assert choice.bpm <= FAST_BPM or np.all(index % 2 == 0)
    even = 0.5 + period * np.array([0, 4, 8, 10, 14])
    assert choose_tempo(even, ["fast"]).bpm == pytest.approx(160.0, abs=0.5)  # even gaps: 160 is fine
    # a map never goes above FAST_BPM (a gliding fast grid was heard in the wrong phase)
    mapped = tempo_map(odd, 6.0, ["fast"])
    assert 60.0 / np.diff(mapped.beats_s).min() <= FAST_BPM + 1e-6
