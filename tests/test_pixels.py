"""The fast colour path (planes shrunk by OpenCV, converted at the small size) against swscale."""

import av
import numpy as np
import pytest
from conftest import DATA, SAMPLES

from stages.pixels import FrameNeed, small_color, target_size


@pytest.mark.parametrize("video", [SAMPLES / "bikes.mp4", DATA / "katna_cat_static.mp4",
                                   DATA / "mma_skeleton_fixed_camera.mp4", DATA / "pexels_fastcut_vertical.mp4"])
@pytest.mark.parametrize("need", [FrameNeed(width=256, height=144), FrameNeed(short_side=320),
                                  FrameNeed(long_side=320)])
def test_fast_colour_is_within_a_few_levels_of_swscale(video, need):
    with av.open(str(video)) as container:
        frame = next(container.decode(video=0))
    width, height = target_size(frame.width, frame.height, need, 0)
    if need.width:  # the detector's size: 256 wide, the source's aspect
        width, height = 256, max(2, int(frame.height * 256 / frame.width) // 2 * 2)
    fast = small_color(frame, width, height, "bgr")
    reference = frame.to_ndarray(format="bgr24", width=width, height=height)
    assert fast.shape == reference.shape and fast.dtype == np.uint8
    diff = np.abs(fast.astype(int) - reference.astype(int))
    assert diff.mean() < 3.0, diff.mean()  # swscale's own scaler differs at edges; on average ~1-2 levels
    rgb = small_color(frame, width, height, "rgb")
    assert np.array_equal(rgb, fast[..., ::-1])
