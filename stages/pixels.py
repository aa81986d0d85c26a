"""A decoded PyAV frame as the image a consumer asked for: sized, coloured and rotated, converted once.

A `Frame` caches one image per distinct (size, colour): gray straight from the luma plane, colour by
swscale (which also resizes) or, with `fast_color`, plane by plane with OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .sampling import FrameNeed


@dataclass
class Frame:
    index: int  # decode-order index from the start of the video (or of the decoded range)
    time: float  # presentation time in seconds
    source: Any  # the av.VideoFrame
    rotation: int
    _cache: dict = field(default_factory=dict)

    def mean_luma(self) -> float:
        """Mean brightness (0-255, full range) of the decoded luma plane, averaged by OpenCV in place:
        no conversion, a fraction of the cost of any image (flash needs only this)."""
        if "mean_luma" not in self._cache:
            plane = luma_plane(self.source)
            if plane is None:
                value = float(self.image(FrameNeed(width=32, height=18, color="gray")).mean())
            else:
                import cv2

                value = float(cv2.mean(plane)[0])
                if limited_range(self.source):
                    value = min(255.0, max(0.0, (value - 16) * 255.0 / 219.0))  # as full_range_lut() maps it
            self._cache["mean_luma"] = value
        return self._cache["mean_luma"]

    def image(self, need: FrameNeed):
        width, height = target_size(self.source.width, self.source.height, need, self.rotation)
        key = (width, height, need.color, need.fast_color)
        if key not in self._cache:
            self._cache[key] = convert(self.source, width, height, need.color, self.rotation, need.fast_color)
        return self._cache[key]


def even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def target_size(width: int, height: int, need: FrameNeed, rotation: int) -> tuple[int, int]:
    """Decoder-side (unrotated) size that gives the requested displayed size."""
    if need.width and need.height:
        w, h = need.width, need.height
        return (h, w) if rotation in (90, 270) else (w, h)
    if need.long_side and max(width, height) > need.long_side:
        scale = need.long_side / max(width, height)
    elif need.short_side and min(width, height) > need.short_side:
        scale = need.short_side / min(width, height)
    else:
        return width, height
    return even(width * scale), even(height * scale)


_FORMATS = {"gray": "gray", "rgb": "rgb24", "bgr": "bgr24"}


_FULL_RANGE: list = []
_YUV = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv420p10le", "nv12"}


def full_range_lut():
    """Limited-range (16-235) luma to full range, as FFmpeg's own gray conversion does."""
    if not _FULL_RANGE:
        import numpy as np

        _FULL_RANGE.append(np.clip((np.arange(256) - 16) * 255.0 / 219.0 + 0.5, 0, 255).astype(np.uint8))
    return _FULL_RANGE[0]


def plane_array(plane):
    """One decoded 8-bit plane as a numpy view (row padding cut off), no copy."""
    import numpy as np

    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]


def luma_plane(frame):
    """The decoded Y plane itself, without a colour conversion (8-bit YUV formats only)."""
    if frame.format.name not in _YUV or frame.format.name.endswith("10le"):
        return None
    return plane_array(frame.planes[0])


def limited_range(frame) -> bool:
    """Video-range (16-235) samples, which full-range images need stretched."""
    return not frame.format.name.startswith("yuvj") and int(getattr(frame, "color_range", 0) or 0) != 2


_RANGE_LUTS: list = []


def _range_luts():
    """Limited-range luma and chroma to full range (what YCrCb->BGR expects)."""
    if not _RANGE_LUTS:
        import numpy as np

        levels = np.arange(256)
        chroma = np.clip((levels - 128) * 255.0 / 224.0 + 128.5, 0, 255).astype(np.uint8)
        # both at once: split's video threads may build them side by side, and must never see one
        _RANGE_LUTS[:] = [full_range_lut(), chroma]
    return _RANGE_LUTS


def shrink(image, width: int, height: int):
    """Area-average `image` down to width x height. From more than twice the size, a linear
    pre-shrink to exactly twice it comes first: OpenCV's area resize at an odd ratio (1080p to
    256x144: 1.9 ms) costs more than decoding the frame; this way it is 0.06 ms, and each output
    pixel still averages 2x2 linear samples. Below twice the size, a linear resize (which then
    reads every source pixel) replaces the area one, whose odd-ratio path costs 5-10x as much."""
    import cv2

    if (image.shape[1], image.shape[0]) == (width, height):
        return image
    if image.shape[1] > 2 * width and image.shape[0] > 2 * height:
        image = cv2.resize(image, (2 * width, 2 * height), interpolation=cv2.INTER_LINEAR)
    elif image.shape[1] < 2 * width or image.shape[0] < 2 * height:
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def small_color(frame, width: int, height: int, color: str):
    """A downscaled BGR/RGB image of an 8-bit 4:2:0 frame, resized plane by plane with OpenCV and
    converted at the small size: a fraction of the cost of swscale's convert-then-scale, and within
    a few levels of it. None when the frame is not 8-bit 4:2:0 or would be made larger."""
    if frame.format.name not in ("yuv420p", "yuvj420p") or width > frame.width or height > frame.height:
        return None
    import cv2
    import numpy as np

    planes = frame.planes
    y, u, v = (plane_array(p) for p in planes)
    if limited_range(frame) and width % 2 == 0 and height % 2 == 0:
        # Video range: the planes shrunk to a small I420 image, which OpenCV converts with the
        # BT.601 video-range matrix in one call (no range stretch, no chroma upsampling of our own).
        i420 = np.empty((height * 3 // 2, width), np.uint8)
        i420[:height] = shrink(y, width, height)
        quarter = (width // 2) * (height // 2)
        i420[height:].reshape(-1)[:quarter] = shrink(u, width // 2, height // 2).reshape(-1)
        i420[height:].reshape(-1)[quarter:] = shrink(v, width // 2, height // 2).reshape(-1)
        return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420 if color == "bgr" else cv2.COLOR_YUV2RGB_I420)
    y = y.copy() if (width, height) == (frame.width, frame.height) else shrink(y, width, height)
    if u.shape[1] >= width:  # chroma is half size: shrink it too, or (small targets) bring it up
        u, v = shrink(u, width, height), shrink(v, width, height)
    else:
        u = cv2.resize(u, (width, height), interpolation=cv2.INTER_LINEAR)
        v = cv2.resize(v, (width, height), interpolation=cv2.INTER_LINEAR)
    if limited_range(frame):
        luma_lut, chroma_lut = _range_luts()
        y, u, v = cv2.LUT(y, luma_lut), cv2.LUT(u, chroma_lut), cv2.LUT(v, chroma_lut)
    code = cv2.COLOR_YCrCb2BGR if color == "bgr" else cv2.COLOR_YCrCb2RGB
    return cv2.cvtColor(cv2.merge([y, v, u]), code)


def convert(frame, width: int, height: int, color: str, rotation: int, fast_color: bool = False):
    import numpy as np

    luma = luma_plane(frame) if color == "gray" else None
    fast = small_color(frame, width, height, color) if fast_color and color in ("bgr", "rgb") else None
    if luma is not None:
        import cv2

        image = shrink(luma, width, height) if (width, height) != (
            luma.shape[1], luma.shape[0]) else luma
        if limited_range(frame):
            image = cv2.LUT(image, full_range_lut())
    elif fast is not None:
        image = fast
    else:
        image = frame.to_ndarray(format=_FORMATS[color], width=width, height=height)
    if rotation:
        # Display matrix rotation is counter-clockwise degrees; np.rot90 with k turns the same way.
        image = np.rot90(image, k=rotation // 90)
    # Frame planes may carry row padding; OpenCV wants contiguous images.
    return np.ascontiguousarray(image)
