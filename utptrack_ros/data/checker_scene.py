"""A small synthetic RGB-D scene for driving the node in tests and benchmarks: a red-and-white
checkered square moving back and forth along a diagonal over a smooth colour gradient, 1.5 m in
front of a 3 m background, with its box and a 30 Hz stamp per frame. Pure numpy, deterministic.

(The generated sequences of ``data.generator`` are the realistic data; this is the fixed pattern
whose box every frame is known by construction.)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CheckerScene:
    """The scene's geometry and timing.

    Args:
        width, height: image size (px).
        target_px: side of the square target (px).
        start_xy: top-left corner of the target in frame 0 (px).
        step_xy: how far the target moves per frame (px), out for ``period / 2`` frames and back.
        period: frames of one back-and-forth.
        first_stamp_ns: stamp of frame 0.
        frame_period_ns: stamp difference between frames (30 Hz).
    """

    width: int = 320
    height: int = 240
    target_px: int = 40
    start_xy: tuple[float, float] = (60.0, 50.0)
    step_xy: tuple[float, float] = (4.0, 2.0)
    period: int = 40
    first_stamp_ns: int = 1_000_000_000_000
    frame_period_ns: int = 33_333_333

    def box(self, i: int) -> tuple[float, float, float, float]:
        """x, y, w, h (image px) of the target in frame ``i``."""
        half = self.period // 2
        phase = i % self.period
        k = phase if phase < half else self.period - phase
        return (self.start_xy[0] + self.step_xy[0] * k, self.start_xy[1] + self.step_xy[1] * k,
                float(self.target_px), float(self.target_px))

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(RGB uint8 (H, W, 3), depth uint16 mm (H, W)) of frame ``i``."""
        w_img, h_img = self.width, self.height
        yy, xx = np.mgrid[0:h_img, 0:w_img]
        rgb = np.stack([(xx * 255 // w_img), (yy * 255 // h_img), np.full_like(xx, 90)], axis=2).astype(np.uint8)
        depth = np.full((h_img, w_img), 3000, np.uint16)
        x, y, w, h = (int(v) for v in self.box(i))
        patch = np.zeros((h, w, 3), np.uint8)
        patch[..., 0] = 230
        checker = ((np.arange(h)[:, None] // 8 + np.arange(w)[None, :] // 8) % 2).astype(bool)
        patch[checker] = (255, 255, 255)
        rgb[y : y + h, x : x + w] = patch
        depth[y : y + h, x : x + w] = 1500
        return rgb, depth

    def stamp_ns(self, i: int) -> int:
        """Stamp (ns) of frame ``i``."""
        return self.first_stamp_ns + i * self.frame_period_ns
