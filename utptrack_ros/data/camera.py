"""A sequence's colour camera (as ``sensor_msgs/CameraInfo`` fields) and its ground-truth 3D target
positions, for the 3D evaluation (``eval.position3d``) and the bag layout's camera_info topic.

Where the camera comes from, first found wins:

* ``attributes["camera_info"]``: CameraInfo fields read from a bag's camera_info topic
  (``width, height, distortion_model, d, k, r, p, binning_x, binning_y, roi, frame_id``);
* ``attributes["camera"]``: the generator's pinhole (``fx, fy, cx, cy``; pixel centres at
  integers, no distortion) at the sequence's image size.

Ground truth: ``frame_info["target_position_m"]`` (N, 3), metres in the colour camera's optical
frame, NaN rows where absent (``data.render.Renderer.target_position``).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from ..spatial import CameraIntrinsics

POSITION_KEY = "target_position_m"
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def camera_info_fields(attributes: Mapping[str, Any], image_size: tuple[int, int]) -> Optional[dict[str, Any]]:
    """CameraInfo fields of the sequence's colour camera (see module doc), or None if unknown."""
    info = attributes.get("camera_info")
    if isinstance(info, Mapping) and info.get("k"):
        return dict(info)
    cam = attributes.get("camera")
    if not isinstance(cam, Mapping) or not all(k in cam for k in ("fx", "fy", "cx", "cy")):
        return None
    fx, fy, cx, cy = (float(cam[k]) for k in ("fx", "fy", "cx", "cy"))
    width, height = (int(v) for v in image_size)
    return {"width": width, "height": height, "distortion_model": "plumb_bob", "d": [0.0] * 5,
            "k": [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0], "r": list(IDENTITY),
            "p": [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0], "binning_x": 0, "binning_y": 0,
            "roi": {"x_offset": 0, "y_offset": 0, "width": 0, "height": 0, "do_rectify": False}}


def camera_intrinsics(attributes: Mapping[str, Any], image_size: tuple[int, int]) -> Optional[CameraIntrinsics]:
    """The sequence's :class:`~utptrack_ros.spatial.CameraIntrinsics` (raw image), or None if unknown.

    Raises:
        CameraInfoError: the recorded camera is unusable (uncalibrated, non-finite, unknown model).
    """
    fields = camera_info_fields(attributes, image_size)
    if fields is None:
        return None
    roi = fields.get("roi") or {}
    return CameraIntrinsics.from_fields(
        width=int(fields["width"]), height=int(fields["height"]), k=fields["k"], d=fields.get("d") or (),
        distortion_model=str(fields.get("distortion_model", "")), p=fields.get("p"),
        binning_x=int(fields.get("binning_x", 0)), binning_y=int(fields.get("binning_y", 0)),
        roi=(int(roi.get("x_offset", 0)), int(roi.get("y_offset", 0)), int(roi.get("width", 0)),
             int(roi.get("height", 0))))


def camera_info_from_message(msg: Any) -> dict[str, Any]:
    """A CameraInfo message (rosbags or rclpy) -> the JSON-able fields dict ``attributes["camera_info"]`` holds."""
    roi = msg.roi
    return {"width": int(msg.width), "height": int(msg.height), "distortion_model": str(msg.distortion_model),
            "d": [float(v) for v in msg.d], "k": [float(v) for v in msg.k], "r": [float(v) for v in msg.r],
            "p": [float(v) for v in msg.p], "binning_x": int(msg.binning_x), "binning_y": int(msg.binning_y),
            "roi": {"x_offset": int(roi.x_offset), "y_offset": int(roi.y_offset), "width": int(roi.width),
                    "height": int(roi.height), "do_rectify": bool(roi.do_rectify)},
            "frame_id": str(msg.header.frame_id)}


def target_positions(seq: Any) -> Optional[np.ndarray]:
    """(N, 3) ground-truth target positions (metres, optical frame; NaN where absent), or None."""
    info = getattr(seq, "frame_info", None) or {}
    if POSITION_KEY not in info:
        return None
    positions = np.asarray(info[POSITION_KEY], dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3:
        return None
    return positions
