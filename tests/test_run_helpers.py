"""vem-run's pieces that need no bundle: output planning, captions from tags, the PNG plot."""

import argparse
import errno
import os
import struct
import zlib

import numpy as np
import pytest

from vem.runtime.captions import caption_from_tags, describe_storyboard, tags_from_probabilities
from vem.runtime.errors import OutputError, UsageError
from vem.runtime.plot import BEAT, HIT, INK, MISS, encode_png, render_plot, text_size, time_step
from vem.runtime.run import plan_outputs
from vem.runtime.tags import TAG_GROUPS, TAG_VOCABULARY


def args(**kw):
    base = dict(output=None, report=None, plot=None, write_parse=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_default_outputs_in_current_folder():
    plan = plan_outputs(args(), "/videos/clip.mp4", several=False)
    assert (plan.audio, plan.video) == ("clip.vem.wav", "clip.vem.mp4")


def test_output_suffix_chooses_one_file(tmp_path):
    assert plan_outputs(args(output="x.flac"), "a.mp4", False).video is None
    plan = plan_outputs(args(output="y.mp4", report="r.json"), "a.mp4", False)
    assert (plan.audio, plan.video, plan.report) == (None, "y.mp4", "r.json")
    with pytest.raises(UsageError):
        plan_outputs(args(output="y.avi"), "a.mp4", False)


def test_several_videos_need_an_output_folder(tmp_path):
    plan = plan_outputs(args(output=str(tmp_path), report="r.json"), "/v/b.mp4", several=True)
    assert plan.audio == str(tmp_path / "b.vem.wav") and plan.report == str(tmp_path / "b.vem.report.json")
    # A folder that does not exist is an output problem (README: exit 5), a file is a usage error.
    with pytest.raises(OutputError, match="folder does not exist"):
        plan_outputs(args(output=str(tmp_path / "missing")), "b.mp4", several=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="existing folder"):
        plan_outputs(args(output=str(tmp_path / "file")), "b.mp4", several=True)


def test_tags_from_probabilities_pick_one_per_group():
    probabilities = np.zeros(len(TAG_VOCABULARY))
    for tag in ("calm", "dark", "jazz", "piano", "slow"):
        probabilities[TAG_VOCABULARY.index(tag)] = 0.9
    tags = tags_from_probabilities(probabilities)
    assert set(tags) == {"calm", "dark", "jazz", "piano", "slow"}
    assert sum(t in TAG_GROUPS["genre"] for t in tags) == 1
    caption = caption_from_tags(tags)
    assert "jazz" in caption and "piano" in caption and caption.endswith(".")
    assert describe_storyboard(0, 3, tags).startswith("The opening shot (1 of 3)")


def _ink_in(image, x, y, text):
    """How many pixels of the font's ink colour lie in the box where ``text`` was drawn."""
    w, h = text_size(text)
    return int((image[y:y + h, x:x + w] == INK).all(axis=2).sum())


def test_png_is_valid_and_marks_cuts():
    rate = 16000
    t = np.arange(rate * 2) / rate
    wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    plot = render_plot(wave, rate, cuts_s=[1.0, 1.7], beats_s=[0.5, 1.04, 1.5], width=200, height=64)
    image = plot.image
    left, top, width, height = plot.area
    assert (width, height) == (200, 64) and image.shape[0] > top + height and image.shape[1] > left + width
    # the cut at 1.0 s has a beat 40 ms away (a hit, green); 1.7 s has none within 70 ms (red)
    (hit_t, hit, hit_x), (miss_t, miss, miss_x) = plot.cuts
    assert (hit_t, hit, miss_t, miss) == (1.0, True, 1.7, False)
    assert (image[top:top + height, hit_x] == HIT).all() and (image[top:top + height, miss_x] == MISS).all()
    assert [x for _, x in plot.beats] == sorted(x for _, x in plot.beats) and len(plot.beats) == 3
    png = encode_png(image)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    png_width, png_height = struct.unpack(">II", png[16:24])
    assert (png_height, png_width) == image.shape[:2]
    idat_length = struct.unpack(">I", png[33:37])[0]
    raw = zlib.decompress(png[41:41 + idat_length])
    assert len(raw) == png_height * (1 + png_width * 3)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.ENOTDIR])
def test_an_os_error_that_means_cannot_write_is_an_output_error(code, capsys):
    """vem-run's last-resort handler and the muxer share atomic.WRITE_ERRNOS: exit 5, not a bug."""
    from vem.runtime.atomic import WRITE_ERRNOS
    from vem.runtime.errors import exit_code_for
    from vem.runtime.run import _report_error

    assert code in WRITE_ERRNOS
    failure = _report_error(OSError(code, os.strerror(code), "out/music.wav"), debug=False)
    assert isinstance(failure, OutputError) and exit_code_for(failure) == 5
    assert "out/music.wav" in capsys.readouterr().err


def test_an_os_error_outside_the_table_is_reported_as_unexpected(capsys):
    from vem.runtime.errors import exit_code_for
    from vem.runtime.run import _report_error

    failure = _report_error(OSError(errno.EBADF, os.strerror(errno.EBADF)), debug=False)
    assert not isinstance(failure, OutputError) and exit_code_for(failure) != 5
    assert "unexpected OSError" in capsys.readouterr().err




@pytest.mark.parametrize("seconds,step", [(10.0, 1.0), (95.0, 10.0)])
def test_plot_has_labelled_axes_and_a_legend(seconds, step):
    """A 10 s and a 95 s clip: ticks in seconds at a readable spacing (11 and 10 labels), a
    frequency axis in Hz, and a legend for hits, misses and beats, each drawn where recorded."""
    rate = 16000
    t = np.arange(int(rate * seconds)) / rate
    wave = (0.2 * np.sin(2 * np.pi * 330 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    beats = np.arange(0.25, seconds, 0.5)
    cuts = [2.26, 4.1, seconds - 1.24]  # 10 ms from a beat (hit), 150 ms (miss), 10 ms (hit)
    plot = render_plot(wave, rate, cuts, beats)
    image = plot.image
    left, top, width, height = plot.area
    assert (width, height) == (1200, 256)  # the default plot area, whatever the clip's length
    assert image.shape == (top + height + 72, left + width + 16, 3)  # beat lane, ticks, two text rows
    labels = [label for _, label, _ in plot.x_ticks]
    assert labels == [f"{v:.0f}" for v in np.arange(0, seconds + 1e-9, step)]
    xs = [x for _, _, x in plot.x_ticks]
    assert xs[0] == left and np.diff(xs).min() > max(text_size(label)[0] for label in labels) + 4  # apart
    assert [label for _, label, _ in plot.y_ticks] == ["250", "500", "1K", "2K", "4K", "8K"]
    ys = [y for _, _, y in plot.y_ticks]
    assert ys == sorted(ys, reverse=True) and top <= min(ys) and max(ys) < top + height
    assert set(plot.labels) == {"TIME (S)", "FREQUENCY (HZ)"}
    for text, (x, y) in plot.labels.items():
        assert _ink_in(image, x, y, text) > 10 * len(text.replace(" ", ""))
    axis_y = top + height + 2 + 14  # under the beat lane
    for _, label, x in plot.x_ticks:
        assert (image[axis_y + 1:axis_y + 7, x] == INK).all()  # the tick mark
        label_x = min(max(x - text_size(label)[0] // 2, 0), image.shape[1] - text_size(label)[0])
        assert _ink_in(image, label_x, axis_y + 10, label) >= 10 * len(label)
    legend = {text.split(" (")[0]: (text, colour, at) for text, colour, at in plot.legend}
    assert set(legend) == {"CUT WITH A BEAT WITHIN 70 MS", "CUT WITHOUT", "BEAT"}
    assert [c for _, c, _ in plot.legend] == [HIT, MISS, BEAT]
    for text, colour, (x, y) in plot.legend:
        assert (image[y:y + 14, x:x + 4] == colour).all()  # the swatch
        assert _ink_in(image, x + 10, y, text) > 10 * len(text.replace(" ", ""))
    assert [hit for _, hit, _ in plot.cuts] == [True, False, True]
    assert legend["CUT WITH A BEAT WITHIN 70 MS"][0].endswith("(2)") and legend["CUT WITHOUT"][0].endswith("(1)")
    assert legend["BEAT"][0] == f"BEAT ({len(beats)})"


def test_time_ticks_stay_few_for_any_length():
    for seconds in (0.5, 3.0, 10.0, 59.0, 95.0, 300.0, 3600.0):
        step = time_step(seconds)
        assert 2 <= seconds / step + 1 <= 13, (seconds, step)
