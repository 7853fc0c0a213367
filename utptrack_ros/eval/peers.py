"""OpenCV peer trackers (CSRT, KCF, MIL) behind one small interface, for comparison runs.

OpenCV 5.1 (opencv-contrib-python 5.1.0.95) builds them with ``cv2.TrackerCSRT.create()``,
``cv2.TrackerKCF.create()`` and ``cv2.TrackerMIL.create()`` (optionally with a
``cv2.TrackerX.Params()``); ``init(image_bgr, (x, y, w, h))`` takes an integer rectangle and
``update(image_bgr)`` returns ``(ok, (x, y, w, h))`` with integers. The rectangle is left as it
was when ``ok`` is False. ``getTrackingScore()`` returns -1 for all three in 5.1 (no score).

Interface (shared with the offline runner):

* ``init(image_rgb, box)``: HxWx3 uint8 RGB frame and a ``types.Box``; the box is rounded to
  integer pixels (x, y rounded; w, h rounded and at least 1) as OpenCV requires.
* ``update(image_rgb) -> (Box | None, ok)``: the new box, or ``(None, False)`` when OpenCV
  reports a failure or raises ``cv2.error``. The caller keeps the previous box and counts the
  failure (``OpenCVTracker.num_failed_updates`` counts them too).
* ``times_ms``: wall time of every ``init``/``update`` call including the RGB->BGR conversion.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

import cv2
import numpy as np

from ..errors import ConfigError, InputError, NotInitializedError
from ..types import Box

logger = logging.getLogger(__name__)

PEER_NAMES: tuple[str, ...] = ("csrt", "kcf", "mil")


def _create(kind: str) -> Any:
    constructors: dict[str, Callable[[], Any]] = {
        "csrt": cv2.TrackerCSRT.create,
        "kcf": cv2.TrackerKCF.create,
        "mil": cv2.TrackerMIL.create,
    }
    return constructors[kind]()


def _to_bgr(image_rgb: np.ndarray) -> np.ndarray:
    if not isinstance(image_rgb, np.ndarray) or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        shape = getattr(image_rgb, "shape", None)
        raise InputError(f"peer tracker: expected an HxWx3 RGB image, got shape {shape}")
    if image_rgb.dtype != np.uint8:
        raise InputError(f"peer tracker: expected a uint8 image, got {image_rgb.dtype}")
    return cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)


def _int_rect(box: Box) -> tuple[int, int, int, int]:
    return (int(round(box.x)), int(round(box.y)), max(1, int(round(box.w))), max(1, int(round(box.h))))


class OpenCVTracker:
    """One OpenCV contrib tracker (``csrt``, ``kcf`` or ``mil``) on RGB frames.

    Args:
        kind: one of ``PEER_NAMES``.

    Raises:
        ConfigError: unknown ``kind``.
    """

    def __init__(self, kind: str) -> None:
        kind = kind.lower()
        if kind not in PEER_NAMES:
            raise ConfigError(f"unknown OpenCV peer tracker {kind!r}; choose one of {PEER_NAMES}")
        self.kind = kind
        self._tracker: Optional[Any] = None
        self.times_ms: list[float] = []
        self.num_failed_updates = 0

    @property
    def name(self) -> str:
        return self.kind

    def init(self, image_rgb: np.ndarray, box: Box) -> None:
        """Start tracking ``box`` (image px) on ``image_rgb`` (HxWx3 uint8).

        Raises:
            InputError: bad image, or a box that is not finite / has no area.
        """
        if not box.is_finite() or box.w <= 0 or box.h <= 0:
            raise InputError(f"peer tracker: init box must be finite with w, h > 0, got {box}")
        t0 = time.perf_counter()
        image_bgr = _to_bgr(image_rgb)
        self._tracker = _create(self.kind)
        self._tracker.init(image_bgr, _int_rect(box))
        self.times_ms.append((time.perf_counter() - t0) * 1e3)
        self.num_failed_updates = 0

    def update(self, image_rgb: np.ndarray) -> tuple[Optional[Box], bool]:
        """Track one frame: ``(Box, True)``, or ``(None, False)`` when OpenCV lost the target.

        Raises:
            RuntimeError: called before ``init``.
            InputError: bad image.
        """
        if self._tracker is None:
            raise NotInitializedError(f"{self.kind}: update() called before init()")
        t0 = time.perf_counter()
        image_bgr = _to_bgr(image_rgb)
        try:
            ok, rect = self._tracker.update(image_bgr)
        except cv2.error as err:  # OpenCV raises on e.g. a degenerate internal state
            logger.debug("%s update raised: %s", self.kind, err)
            ok, rect = False, None
        self.times_ms.append((time.perf_counter() - t0) * 1e3)
        if not ok or rect is None:
            self.num_failed_updates += 1
            return None, False
        x, y, w, h = (float(v) for v in rect)
        return Box(x, y, w, h), True
