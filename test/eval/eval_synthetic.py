"""A small synthetic sequence with the ``utptrack_ros.data`` ``Sequence`` view's interface.

Used by the eval tests until they can use the data package's generator. Frames are rendered on
demand (deterministic per seed) so instances pickle small for spawned workers: a textured
rectangle moves over a noisy background; the depth frame has the target nearer than the
background. Absent frames have no target drawn and NaN ground truth. ``corrupt_frames`` return
a 2-D (grayscale) image, the kind of bad frame a broken decoder delivers; ``blank_frames`` are
all black (a covered lens or a dropped exposure), on which OpenCV KCF and CSRT report failure.
"""

from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

FRAME_PERIOD_NS = 33_333_333


class SyntheticSequence:
    def __init__(
        self,
        name: str,
        num_frames: int = 24,
        size: tuple[int, int] = (128, 96),
        seed: int = 0,
        absent_frames: Iterable[int] = (),
        corrupt_frames: Iterable[int] = (),
        blank_frames: Iterable[int] = (),
        attributes: Optional[dict] = None,
        prompt: Optional[str] = None,
        velocity: tuple[float, float] = (1.5, 0.75),
        box_size: tuple[int, int] = (28, 22),
    ) -> None:
        self.name = name
        self.width, self.height = size
        self.seed = seed
        self.absent_frames = frozenset(absent_frames)
        self.corrupt_frames = frozenset(corrupt_frames)
        self.blank_frames = frozenset(blank_frames)
        self.attributes = dict(attributes or {})
        self.prompt = prompt
        self.modalities = ["rgb", "depth"]
        w, h = box_size
        t = np.arange(num_frames, dtype=np.float64)
        x = np.round(12 + velocity[0] * t)
        y = np.round(10 + velocity[1] * t)
        self.gt = np.stack([x, y, np.full_like(t, w), np.full_like(t, h)], axis=1)
        self.absent = np.array([i in self.absent_frames for i in range(num_frames)], dtype=bool)
        self.gt[self.absent] = np.nan
        self._xy = np.stack([x, y], axis=1).astype(int)
        self._box_size = box_size

    @property
    def length(self) -> int:
        return self.gt.shape[0]

    def __len__(self) -> int:
        return self.length

    def _background(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        return (rng.random((self.height, self.width, 3)) * 70).astype(np.uint8)

    def _target(self) -> np.ndarray:
        w, h = self._box_size
        rng = np.random.default_rng(self.seed + 1000)
        patch = np.empty((h, w, 3), np.uint8)
        patch[:] = (210, 60, 40)
        patch[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = (40, 220, 60)
        patch[::3, ::3] = (rng.random((len(range(0, h, 3)), len(range(0, w, 3)), 3)) * 255).astype(np.uint8)
        return patch

    def rgb(self, i: int) -> np.ndarray:
        image = self._background()
        if i in self.corrupt_frames:
            return image[:, :, 0].copy()
        if i in self.blank_frames:
            return np.zeros_like(image)
        if not self.absent[i]:
            x, y = self._xy[i]
            w, h = self._box_size
            image[y : y + h, x : x + w] = self._target()
        return image

    def aux(self, modality, i: int) -> Optional[np.ndarray]:
        if str(getattr(modality, "value", modality)) != "depth":
            return None
        depth = np.full((self.height, self.width), 4000, np.uint16)
        if not self.absent[i]:
            x, y = self._xy[i]
            w, h = self._box_size
            depth[y : y + h, x : x + w] = 1500
        return depth

    def stamp_ns(self, i: int) -> int:
        return 1_700_000_000_000_000_000 + i * FRAME_PERIOD_NS
