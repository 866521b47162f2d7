"""The runtime's numpy condition geometry must equal the torch model's, bit for bit in layout."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vem.model import resample_to_latent as torch_resample  # noqa: E402
from vem.model import storyboard_mask as torch_mask  # noqa: E402
from vem.runtime.storyboard import resample_to_latent, segment_storyboards, storyboard_mask  # noqa: E402


@pytest.mark.parametrize("seconds", [0.3, 7.3, 23.7])
def test_mask_matches_torch(seconds):
    spans = segment_storyboards([1.1, 2.9, 5.0, 6.2, 13.0], seconds)
    start = np.array([[s.start_s for s in spans]])
    duration = np.array([[s.duration_s for s in spans]])
    frames = int(np.ceil(seconds * 25 / 8) * 8)
    ours = storyboard_mask(start, duration, frames, 25.0)
    theirs = torch_mask(torch.from_numpy(start), torch.from_numpy(duration), frames, 25.0).numpy()
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("video_frames,latent_frames", [(1, 8), (37, 64), (160, 256)])
def test_resample_matches_torch(video_frames, latent_frames):
    features = np.random.default_rng(0).standard_normal((1, video_frames, 5)).astype(np.float32)
    ours = resample_to_latent(features, latent_frames)
    theirs = torch_resample(torch.from_numpy(features), latent_frames).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
