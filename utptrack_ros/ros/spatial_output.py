"""The node's 3D output: the colour camera's CameraInfo, the spatial core on the tracked box, and
the messages (``geometry_msgs/PointStamped`` on ``~/target_point``, a ``visualization_msgs/Marker``).

Wiring only; the geometry is ``utptrack_ros.spatial``. :class:`SpatialTopics` is what a depth
node creates at configure: the publishers and the :class:`SpatialOutput` between them. One
:class:`SpatialOutput` per node, used
from the executor (``on_camera_info``) and the worker (``locate``): the CameraInfo is swapped
under a lock. Every failure is a *reason* (a string), never a made-up point; the caller turns
reasons into a throttled WARN and /diagnostics, and the 2D output goes on.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from geometry_msgs.msg import PointStamped

from ..sensors import stamp_to_ns
from ..spatial import CameraInfoError, CameraIntrinsics, DepthImageError, TargetLocator, TargetPoint
from ..types import Box, TrackState

try:  # visualization_msgs ships as a kilted wheel; without it the node publishes no marker
    from visualization_msgs.msg import Marker
    HAVE_MARKER = True
except ImportError:  # pragma: no cover - depends on the environment
    Marker = None  # type: ignore[assignment,misc]
    HAVE_MARKER = False

__all__ = ["DISABLED", "HAVE_MARKER", "LOST", "SpatialOutput", "SpatialResult", "SpatialTopics", "fill_position", "marker_msg",
           "point_msg"]

#: CameraInfo older than this (relative to the image stamp) counts as "stopped".
CAMERA_INFO_MAX_AGE_S = 2.0


@dataclass(frozen=True)
class SpatialResult:
    """One frame's 3D outcome: ``point`` (None when there is no position), ``status`` (the word in
    ``TrackedTarget.position_status``) and ``reason`` ("" when OK)."""

    point: Optional[TargetPoint]
    reason: str
    status: str

    @property
    def ok(self) -> bool:
        return self.point is not None and self.point.ok


#: The outcome for a node without a depth input, and for a lost target.
DISABLED = SpatialResult(None, "no depth input: no 3D position", "disabled")
LOST = SpatialResult(None, "the target is lost: no 3D position", "lost")


class SpatialOutput:
    """The latest valid CameraInfo and a :class:`TargetLocator`; see the module docstring."""

    def __init__(self, rectified: bool = False, max_age_s: float = CAMERA_INFO_MAX_AGE_S) -> None:
        self.rectified = rectified
        self.max_age_ns = int(max_age_s * 1e9)
        self.locator = TargetLocator()
        self._lock = threading.Lock()
        self._intrinsics: Optional[CameraIntrinsics] = None
        self._info_stamp_ns: Optional[int] = None
        self._info_error = ""
        self.infos_received = 0

    def on_camera_info(self, msg: Any) -> str:
        """Take a CameraInfo; returns "" or why it is unusable (then the last valid one is dropped:
        a camera that now sends bad intrinsics must not be located with stale ones)."""
        stamp = stamp_to_ns(msg.header.stamp)
        try:
            intrinsics, error = CameraIntrinsics.from_camera_info(msg, rectified=self.rectified), ""
        except CameraInfoError as err:
            intrinsics, error = None, f"camera_info refused: {err}"
        with self._lock:
            self.infos_received += 1
            self._intrinsics, self._info_stamp_ns, self._info_error = intrinsics, stamp, error
        return error

    def status(self) -> str:
        """"" when a valid CameraInfo is held, else why not (for /diagnostics)."""
        with self._lock:
            if self.infos_received == 0:
                return "no camera_info received yet: no 3D output"
            return self._info_error

    def locate(self, target_id: str, box: Box, image_size: tuple[int, int], stamp_ns: int,
               depth: Optional[np.ndarray]) -> SpatialResult:
        """The target's point on the colour frame stamped ``stamp_ns`` (``image_size`` = (w, h))."""
        with self._lock:
            intrinsics, info_stamp, info_error, received = (self._intrinsics, self._info_stamp_ns, self._info_error,
                                                            self.infos_received)
        if received == 0:
            return SpatialResult(None, "no camera_info received: no 3D position (remap 'camera_info' to the colour "
                                       "camera's camera_info topic)", "no_camera_info")
        if intrinsics is None:
            return SpatialResult(None, info_error, "camera_info_refused")
        if info_stamp and abs(stamp_ns - info_stamp) > self.max_age_ns:
            return SpatialResult(None, f"camera_info stopped: the last one is stamped {(stamp_ns - info_stamp) * 1e-9:.2f} s "
                                       "away from the image; no 3D position", "camera_info_stopped")
        if depth is None:
            return SpatialResult(None, "no depth frame with this image: no 3D position", "no_depth")
        try:
            intrinsics.check_image_size(*image_size)
            point = self.locator.locate(depth, {target_id: box}, intrinsics, stamp_ns)[target_id]
        except CameraInfoError as err:
            return SpatialResult(None, str(err), "size_mismatch")
        except DepthImageError as err:
            return SpatialResult(None, str(err), "no_depth")
        if point.ok:
            return SpatialResult(point, "", "ok")
        status = point.depth.status.value if not point.depth.ok else "undistortion_failed"
        return SpatialResult(point, point.reason, status)

    def forget(self, target_id: Optional[str] = None) -> None:
        self.locator.forget(target_id)


class SpatialTopics:
    """``~/target_point`` and ``~/target_marker`` (lifecycle publishers of ``node``) and the
    :class:`SpatialOutput` fed by the ``camera_info`` subscription."""

    def __init__(self, node: Any) -> None:
        self.output = SpatialOutput()
        self.point_pub = node.create_lifecycle_publisher(PointStamped, "~/target_point", 10)
        self.marker_pub = node.create_lifecycle_publisher(Marker, "~/target_marker", 10) if HAVE_MARKER else None
        if not HAVE_MARKER:
            node.get_logger().warning("visualization_msgs is not importable: no ~/target_marker for RViz "
                                      "(~/target_point is published)")

    def publish(self, header: Any, stamp_ns: int, target_id: str, result: Any, image_size: tuple[int, int],
                depth: Optional[np.ndarray], primary: bool = True) -> tuple[SpatialResult, str, str]:
        """The point and marker of a TRACKING target's box, or a reason, never a made-up value (a
        LOST or RECOVERING target's box is a guess: no point). The point goes on ``~/target_point``
        for the ``primary`` target only (the first one; every target's point is in its
        ``TrackedTarget``), the marker for every target (namespace ``utptrack/<id>``). Returns the outcome (for the
        ``~/target`` message's 3D fields) and ``(kind, text)``: ``("", "")`` when published or
        lost, ``("note", text)`` when 3D output is not in use (no camera_info at all, or an RGB-only
        frame, reported as aux fallback), ``("problem", text)`` otherwise."""
        if result.state is not TrackState.TRACKING:
            return LOST, "", ""
        out = self.output.locate(target_id, result.box, image_size, stamp_ns, depth)
        if not out.ok and (self.output.infos_received == 0 or depth is None):
            return out, "note", f"{out.reason} (target '{target_id}')"
        if not out.ok:
            return out, "problem", f"{out.reason} (target '{target_id}': no 3D position; the 2D output goes on)"
        if primary:
            self.point_pub.publish(point_msg(header, out.point))  # type: ignore[arg-type]
        if self.marker_pub is not None:
            self.marker_pub.publish(marker_msg(header, out.point, target_id))  # type: ignore[arg-type]
        return out, "", ""

    def forget(self, target_id: Optional[str] = None) -> None:
        """Target ``target_id`` (every target with None) restarted or dropped: its last depth is no prior any more."""
        self.output.forget(target_id)

    def destroy(self, node: Any) -> None:
        for pub in (self.point_pub, self.marker_pub):
            if pub is not None:
                node.destroy_lifecycle_publisher(pub)


def fill_position(msg: Any, result: SpatialResult) -> Any:
    """The 3D fields of a ``TrackedTarget`` from one frame's outcome (zeros and the reason without a position)."""
    msg.has_position = result.ok
    if result.ok:
        msg.position.x, msg.position.y, msg.position.z = (float(v) for v in result.point.position_m)  # type: ignore[union-attr]
    else:
        msg.position.x = msg.position.y = msg.position.z = 0.0
    depth = result.point.depth if result.point is not None else None
    msg.depth_spread_m = float(depth.spread_m) if result.ok and depth is not None else 0.0
    msg.depth_valid_fraction = float(depth.valid_fraction) if depth is not None else float("nan")
    msg.position_status = result.status
    msg.position_reason = result.reason
    return msg


def point_msg(header: Any, point: TargetPoint) -> PointStamped:
    """The point with the colour image's header (its optical frame and stamp)."""
    msg = PointStamped()
    msg.header = header
    msg.point.x, msg.point.y, msg.point.z = (float(v) for v in point.position_m)  # type: ignore[union-attr]
    return msg


def marker_msg(header: Any, point: TargetPoint, target_id: str, lifetime_s: float = 0.5) -> Any:
    """A sphere for RViz at the point, sized by the depth spread (at least 5 cm); None without visualization_msgs."""
    if not HAVE_MARKER:
        return None
    m = Marker()
    m.header = header
    m.ns, m.id, m.type, m.action = "utptrack/" + (target_id or "target"), 0, Marker.SPHERE, Marker.ADD
    m.pose.position.x, m.pose.position.y, m.pose.position.z = (float(v) for v in point.position_m)  # type: ignore[union-attr]
    m.pose.orientation.w = 1.0
    size = max(0.05, 2.0 * float(point.depth.spread_m))
    m.scale.x = m.scale.y = m.scale.z = size
    m.color.r, m.color.g, m.color.b, m.color.a = 0.1, 0.9, 0.2, 0.8
    m.lifetime.sec, m.lifetime.nanosec = int(lifetime_s), int((lifetime_s % 1.0) * 1e9)
    return m
