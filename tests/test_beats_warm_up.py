"""vem.runtime.beats.warm_up: librosa's beat tracker is imported (and its numba gufuncs built) in
a background thread once per process, and the tracker then gives the same beats."""

import sys

import numpy as np

from vem.runtime import beats


def test_warm_up_imports_the_tracker_once_in_the_background():
    first = beats.warm_up()
    assert first.daemon and first.name == "vem-beats-warm-up"
    assert beats.warm_up() is first  # idempotent: one thread per process
    first.join(timeout=120)
    assert not first.is_alive()
    assert "librosa.beat" in sys.modules
    rate = 16000
    clicks = np.zeros(rate * 6, dtype=np.float32)
    clicks[(np.arange(0.25, 6.0, 0.5) * rate).astype(int)] = 1.0  # 120 BPM
    found = beats.track_beats(clicks, rate)
    assert len(found) >= 8
    assert abs(float(np.median(np.diff(found))) - 0.5) < 0.05
