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
from vem.runtime.plot import encode_png, spectrogram_image
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


def test_png_is_valid_and_marks_cuts():
    rate = 16000
    t = np.arange(rate * 2) / rate
    wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    image = spectrogram_image(wave, rate, cuts_s=[1.0], beats_s=[0.5, 1.0, 1.5], width=200, height=64)
    assert image.shape == (64, 200, 3)
    assert (image[:, 100] == 255).all(axis=1)[20:50].all()  # the cut's white line
    png = encode_png(image)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (200, 64)
    idat_length = struct.unpack(">I", png[33:37])[0]
    raw = zlib.decompress(png[41:41 + idat_length])
    assert len(raw) == 64 * (1 + 200 * 3)


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
