"""3D position error of the tracked target: a tracker's boxes + the sequence's aligned depth frames
+ its colour camera -> target points (``spatial.TargetLocator``), scored against the generator's
ground truth (``data.camera.target_positions``). Pure numpy + ``utptrack_ros.spatial``.

Convention (``CONVENTION_3D``):

* **Points.** Every frame from the init frame on whose output box exists and whose state is not
  ``lost`` gets the point the node publishes: the box's depth (dominant mode in its central half,
  with the target's last depth as the prior, ``spatial.depth``) back-projected through the box
  centre with the sequence's camera. A lost target, a missing box or missing depth: no point.
* **Scored frames**: frames *after* the init frame (its box is the GT) whose ground-truth position
  is finite (the target is present).
* **Error** per scored frame with a point: Euclidean distance to the GT position, millimetres.
  ``median_mm`` and ``p95_mm`` (``numpy.percentile``, linear) over those frames; ``valid_fraction``
  = frames with a point / scored frames. Sequences pool their frames (frame-weighted).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..data.camera import camera_intrinsics, target_positions
from ..errors import InputError
from ..spatial import DepthConfig, TargetLocator
from ..types import Box

CONVENTION_3D = (
    "position3d: frames after the init frame with a ground-truth position; point = tracker box -> depth "
    "(dominant mode of the box's central half, per-target prior) -> back-projected through the box centre with "
    "the sequence's camera, none while lost; error = |point - GT| (mm), median and p95 (linear) over frames "
    "with a point; valid % = frames with a point / scored frames; frames pooled over sequences"
)
NO_POINT = "none"


@dataclass(frozen=True)
class PointTrack:
    """Per-frame target points of one run.

    Attributes:
        points_xyz: (N, 3) metres in the colour camera's optical frame, NaN rows without a point.
        status: (N,) ``ok`` or why there is no point (``spatial.DepthStatus`` values, ``lost``,
            ``no_box``, ``no_depth``, ``before_init``).
        spread_m: (N,) depth spread of the target cluster (NaN without a point).
        valid_fraction: (N,) valid depth share of the box's central region (NaN when not measured).
    """

    points_xyz: np.ndarray
    status: list[str]
    spread_m: np.ndarray
    valid_fraction: np.ndarray


def locate_run(seq: Any, boxes_xywh: np.ndarray, states: Sequence[str], init_index: int, intrinsics: Any,
               stamps_ns: "Sequence[int] | np.ndarray", config: Any = None) -> PointTrack:
    """The target's point on every frame of one run (see the module's convention).

    Args:
        seq: the sequence (``aux("depth", i)`` gives (H, W) uint16 mm or float m, or None).
        boxes_xywh: (N, 4) the tracker's boxes, NaN rows = no output.
        states: (N,) state names; ``lost`` frames get no point.
        init_index: the init frame (earlier frames get no point).
        intrinsics: ``spatial.CameraIntrinsics`` of the colour camera.
        stamps_ns: (N,) frame stamps (the prior's age).
        config: ``spatial.DepthConfig`` (default parameters when None).

    Raises:
        CameraInfoError / DepthImageError: the depth frames do not fit the camera or are not depth.
    """
    n = len(boxes_xywh)
    points = np.full((n, 3), np.nan)
    spread = np.full(n, np.nan)
    valid = np.full(n, np.nan)
    status = ["before_init"] * n
    locator = TargetLocator(config or DepthConfig())
    for i in range(init_index, n):
        box = np.asarray(boxes_xywh[i], dtype=np.float64)
        if not np.isfinite(box).all():
            status[i] = "no_box"
            continue
        if states[i] in ("lost", "recovering"):  # the node publishes no point then either
            status[i] = "lost"
            continue
        depth = seq.aux("depth", i)
        if depth is None:
            status[i] = "no_depth"
            continue
        point = locator.locate(depth, {"target": Box.from_sequence(box)}, intrinsics, int(stamps_ns[i]))["target"]
        status[i] = "ok" if point.ok else point.depth.status.value
        valid[i] = point.depth.valid_fraction
        if point.ok:
            points[i] = point.position_m
            spread[i] = point.depth.spread_m
    return PointTrack(points, status, spread, valid)


@dataclass(frozen=True)
class PositionStats:
    """3D error statistics (see ``CONVENTION_3D``).

    Attributes:
        num_frames: scored frames (after the init frame, GT position known).
        num_valid: scored frames with a point.
        errors_mm: (num_valid,) per-frame errors.
    """

    num_frames: int
    num_valid: int
    errors_mm: np.ndarray = field(repr=False)
    convention: str = CONVENTION_3D

    @property
    def valid_fraction(self) -> float:
        return self.num_valid / self.num_frames if self.num_frames else float("nan")

    @property
    def median_mm(self) -> float:
        return float(np.median(self.errors_mm)) if self.errors_mm.size else float("nan")

    @property
    def p95_mm(self) -> float:
        return float(np.percentile(self.errors_mm, 95)) if self.errors_mm.size else float("nan")

    @property
    def mean_mm(self) -> float:
        return float(np.mean(self.errors_mm)) if self.errors_mm.size else float("nan")

    def to_dict(self, per_frame: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"num_frames": self.num_frames, "num_valid": self.num_valid,
                               "valid_fraction": self.valid_fraction, "median_mm": self.median_mm,
                               "p95_mm": self.p95_mm, "mean_mm": self.mean_mm, "convention": self.convention}
        if per_frame:
            out["errors_mm"] = self.errors_mm.tolist()
        return out


def position_stats(points_xyz: Any, gt_xyz: Any, init_index: int) -> PositionStats:
    """Errors of one run's points against the GT positions (both (N, 3) metres, NaN = none)."""
    points = np.asarray(points_xyz, dtype=np.float64).reshape(-1, 3)
    gt = np.asarray(gt_xyz, dtype=np.float64).reshape(-1, 3)
    if points.shape != gt.shape:
        raise InputError(f"points have {points.shape[0]} frames but the ground truth has {gt.shape[0]}")
    scored = np.asarray(np.isfinite(gt).all(axis=1))
    scored[: init_index + 1] = False
    has_point = scored & np.isfinite(points).all(axis=1)
    errors = np.linalg.norm(points[has_point] - gt[has_point], axis=1) * 1000.0
    return PositionStats(int(scored.sum()), int(has_point.sum()), errors)


def pool(stats: Sequence[PositionStats]) -> PositionStats:
    """Frame-weighted pooling of several runs' statistics."""
    errors = np.concatenate([s.errors_mm for s in stats]) if stats else np.zeros(0)
    return PositionStats(sum(s.num_frames for s in stats), sum(s.num_valid for s in stats), errors)


def pool_by_attribute(stats: Mapping[str, PositionStats], flags: Mapping[str, Mapping[str, bool]]
                      ) -> dict[str, PositionStats]:
    """Per challenge attribute set on at least one sequence: the pooled stats of those sequences.

    Args:
        stats: sequence name -> its stats.
        flags: sequence name -> attribute flags (``metrics.attribute_flags``).
    """
    names = sorted({a for s in stats for a, on in (flags.get(s) or {}).items() if on})
    return {a: pool([st for s, st in stats.items() if (flags.get(s) or {}).get(a)]) for a in names}


def run_points(seq: Any, boxes_xywh: np.ndarray, states: Sequence[str], init_index: int,
               stamps_ns: "Sequence[int] | np.ndarray") -> Optional[tuple[PointTrack, Optional[np.ndarray]]]:
    """Points of one run and the sequence's GT positions, when the sequence has depth frames and a
    known camera (``data.camera``); None otherwise (no 3D evaluation for it)."""
    modalities = [str(getattr(m, "value", m)) for m in (getattr(seq, "modalities", None) or [])]
    if "depth" not in modalities:
        return None
    first = seq.rgb(0)
    intrinsics = camera_intrinsics(getattr(seq, "attributes", None) or {}, (int(first.shape[1]), int(first.shape[0])))
    if intrinsics is None:
        return None
    track = locate_run(seq, boxes_xywh, states, init_index, intrinsics, stamps_ns)
    gt = target_positions(seq)
    if gt is not None and gt.shape[0] != len(boxes_xywh):
        gt = gt[: len(boxes_xywh)] if gt.shape[0] > len(boxes_xywh) else None
    return track, gt
