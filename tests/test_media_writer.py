"""The one video encoder (vem.runtime.media_writer): exact timestamps, the codec table, audio."""

from fractions import Fraction

import av
import numpy as np
import pytest

from vem.runtime.media_writer import ENCODERS, encoder_for, exact_rate, write_video


def _pictures(count, size=(64, 48)):
    for k in range(count):
        picture = np.zeros((size[1], size[0], 3), np.uint8)
        picture[..., k % 3] = 200
        yield picture


def _frame_times(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [frame.time for frame in container.decode(stream)], stream


def test_ntsc_rate_is_exact_and_every_frame_lands_on_k_over_rate(tmp_path):
    rate = exact_rate(29.97)
    assert rate == Fraction(30000, 1001)
    count = write_video(tmp_path / "ntsc.mp4", _pictures(61), size=(64, 48), rate=29.97)
    times, stream = _frame_times(tmp_path / "ntsc.mp4")
    assert count == 61 and len(times) == 61
    assert stream.average_rate == Fraction(30000, 1001)
    # Presentation order, exact to the container's clock: frame k at k * 1001 / 30000 s.
    np.testing.assert_allclose(times, [k * 1001 / 30000 for k in range(61)], atol=1e-4)


def test_explicit_times_give_a_variable_frame_rate(tmp_path):
    times = [0.0, 0.04, 0.2, 0.21, 0.5]
    write_video(tmp_path / "vfr.mkv", _pictures(len(times)), size=(64, 48), rate=25, times=times)
    decoded, _ = _frame_times(tmp_path / "vfr.mkv")
    np.testing.assert_allclose(decoded, times, atol=1e-3)


@pytest.mark.parametrize("codec", ["h264", "hevc", "vp9", "mpeg4"])
def test_each_codec_of_the_table_writes_a_file_in_that_codec(tmp_path, codec):
    path = tmp_path / f"clip_{codec}.mkv"
    write_video(path, _pictures(8), size=(64, 48), rate=25, codec=codec)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == codec
        assert sum(1 for _ in container.decode(video=0)) == 8


def test_encoder_names_share_the_table_and_options_override_one_value():
    assert encoder_for("libx264") == encoder_for("h264") == ENCODERS["h264"]
    encoder, options = encoder_for("h264", {"crf": "18", "bf": "0"})
    assert encoder == "libx264" and options == {"preset": "veryfast", "crf": "18", "bf": "0"}
    assert encoder_for("flv") == ("flv", {})  # outside the table: the encoder's own defaults


def test_rotation_and_an_interleaved_aac_track(tmp_path):
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    write_video(tmp_path / "phone.mp4", _pictures(25), size=(64, 48), rate=25, rotation=90, faststart=True,
                audio=(tone, 16000))
    with av.open(str(tmp_path / "phone.mp4")) as container:
        video, sound = container.streams.video[0], container.streams.audio[0]
        assert sound.codec_context.name == "aac" and sound.rate == 16000
        assert next(container.decode(video)).rotation == 90
    data = (tmp_path / "phone.mp4").read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart
