"""The tracked target's 3D position from an aligned depth image and the colour camera's intrinsics.

Framework-free (numpy + OpenCV, no rclpy). The flow per colour frame, for every target's box::

    intrinsics = CameraIntrinsics.from_camera_info(camera_info_msg, rectified=False)   # once per CameraInfo
    locator = TargetLocator()                                                         # once per node
    intrinsics.check_image_size(width, height)                                        # per image
    points = locator.locate(depth_array, {"a": box, ...}, intrinsics, stamp_ns)       # per frame
    points["a"].position_m  -> (x, y, z) in the image's optical frame, or None with .reason

(``locate_targets`` is the stateless per-frame call; the locator adds each target's last depth as
the prior of the next frame.)

* ``spatial.camera``: :class:`CameraIntrinsics` (CameraInfo validation, raw vs rectified,
  plumb_bob / rational_polynomial / equidistant undistortion, binning and ROI, back-projection).
* ``spatial.depth``: :func:`estimate_depth` (dominant depth mode in the box's central region,
  REP 118 units and invalid values) and :class:`DepthEstimate`.

See docs/spatial.md for the conventions and how a planner uses the point.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

from ..types import Box
from .camera import (DISTORTION_MODELS, EQUIDISTANT, PLUMB_BOB, RATIONAL_POLYNOMIAL, CameraInfoError,
                     CameraIntrinsics, box_centre_pixel)
from .depth import (DEPTH_ENCODINGS, DepthConfig, DepthEstimate, DepthImageError, DepthStatus, check_depth_image,
                    depth_unit, estimate_depth)

__all__ = [
    "CameraInfoError", "CameraIntrinsics", "DEPTH_ENCODINGS", "DISTORTION_MODELS", "DepthConfig", "DepthEstimate",
    "DepthImageError", "DepthStatus", "EQUIDISTANT", "PLUMB_BOB", "RATIONAL_POLYNOMIAL", "TargetPoint",
    "TargetLocator", "box_centre_pixel", "check_depth_image", "depth_unit", "estimate_depth", "locate_target",
    "locate_targets",
]


@dataclass(frozen=True)
class TargetPoint:
    """One target's 3D position on one frame.

    Attributes:
        position_m: ``(x, y, z)`` in the colour image's optical frame (x right, y down, z forward,
            metres), or None when there is no valid depth (see ``depth.status`` / ``reason``).
        pixel: the back-projected pixel ``(u, v)`` (the box centre, pixel centres at integers).
        depth: the depth estimate (depth, spread, valid fraction, status).
    """

    position_m: Optional[tuple[float, float, float]]
    pixel: tuple[float, float]
    depth: DepthEstimate

    @property
    def ok(self) -> bool:
        return self.position_m is not None

    @property
    def reason(self) -> str:
        """Why there is no position ("" when there is one)."""
        if self.position_m is None and self.depth.ok:
            return f"pixel {self.pixel} could not be undistorted with the camera's distortion model"
        return self.depth.reason


def locate_targets(depth: np.ndarray, boxes: Iterable[Box], intrinsics: CameraIntrinsics,
                   config: DepthConfig = DepthConfig(), priors: Optional[Sequence[Optional[float]]] = None
                   ) -> list[TargetPoint]:
    """The 3D position of every box's target (one :class:`TargetPoint` per box, in order).

    Args:
        depth: (H, W) depth aligned to the colour image the boxes refer to (uint16 mm or float m).
        boxes: boxes in that colour image's pixels (``types.Box``).
        intrinsics: the colour camera's intrinsics (from its CameraInfo).
        config: depth estimation parameters.
        priors: per box, the target's recent depth (metres) or None (``depth.target_cluster``);
            :class:`TargetLocator` keeps them across frames.

    Raises:
        DepthImageError: ``depth`` is not a REP 118 depth array.
        CameraInfoError: ``depth`` is not the size the intrinsics describe (not aligned to colour).
    """
    depth = check_depth_image(depth)
    intrinsics.check_image_size(depth.shape[1], depth.shape[0], what="depth image")
    boxes = list(boxes)
    priors = list(priors) if priors is not None else [None] * len(boxes)
    if len(priors) != len(boxes):
        raise ValueError(f"locate_targets: {len(priors)} priors for {len(boxes)} boxes")
    estimates = [estimate_depth(depth, box, config, prior) for box, prior in zip(boxes, priors)]
    pixels = np.array([box_centre_pixel(box) for box in boxes], np.float64).reshape(-1, 2)
    z = np.array([e.depth_m for e in estimates], np.float64)
    ok = np.array([e.ok for e in estimates], bool)
    points = np.full((len(boxes), 3), np.nan)
    if ok.any():
        points[ok] = intrinsics.back_project(pixels[ok], z[ok])
    out = []
    for i, est in enumerate(estimates):
        position = tuple(float(v) for v in points[i]) if est.ok and np.isfinite(points[i]).all() else None
        out.append(TargetPoint(position, (float(pixels[i, 0]), float(pixels[i, 1])), est))  # type: ignore[arg-type]
    return out


def locate_target(depth: np.ndarray, box: Box, intrinsics: CameraIntrinsics,
                  config: DepthConfig = DepthConfig()) -> TargetPoint:
    """:func:`locate_targets` for one box."""
    return locate_targets(depth, [box], intrinsics, config)[0]



class TargetLocator:
    """:func:`locate_targets` frame after frame for a set of targets (by id), each target's last
    valid depth being its prior on the next frame while it is at most ``prior_max_age_s`` old.

    Not thread-safe: one per node (or per evaluated sequence). Call :meth:`forget` when a target is
    re-initialised, lost or removed.
    """

    def __init__(self, config: DepthConfig = DepthConfig(), prior_max_age_s: float = 1.0) -> None:
        self.config = config
        self.prior_max_age_ns = int(prior_max_age_s * 1e9)
        self._last: dict[str, tuple[int, float]] = {}  # target id -> (stamp ns, depth m)

    def prior(self, target_id: str, stamp_ns: int) -> Optional[float]:
        """The target's prior depth for a frame stamped ``stamp_ns`` (None when none or stale)."""
        last = self._last.get(target_id)
        if last is None or not 0 <= stamp_ns - last[0] <= self.prior_max_age_ns:
            return None
        return last[1]

    def locate(self, depth: np.ndarray, boxes: Mapping[str, Box], intrinsics: CameraIntrinsics, stamp_ns: int
               ) -> dict[str, TargetPoint]:
        """Every target's point on the frame stamped ``stamp_ns`` (same errors as :func:`locate_targets`)."""
        ids = list(boxes)
        priors = [self.prior(i, stamp_ns) for i in ids]
        points = locate_targets(depth, [boxes[i] for i in ids], intrinsics, self.config, priors)
        for target_id, point in zip(ids, points):
            if point.ok:
                self._last[target_id] = (int(stamp_ns), point.depth.depth_m)
        return dict(zip(ids, points))

    def forget(self, target_id: Optional[str] = None) -> None:
        """Drop one target's prior (all targets' with None)."""
        if target_id is None:
            self._last.clear()
        else:
            self._last.pop(target_id, None)
