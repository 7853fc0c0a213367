"""Conversions between the core's values and the node's messages, plus the debug image.

* :func:`target_msg` / :func:`idle_msg`: ``TrackResult`` -> ``utptrack_ros/TrackedTarget``
  (header copied from the input image; box as centre + full size in that image's pixels).
* :func:`read_image`: a subscription's serialized (CDR) image -> a light message whose ``data``
  views the bytes, and its ``std_msgs/Header``; :func:`image_array`: that message -> the array
  the tracker takes, refusing images with more than ``input.max_image_pixels`` pixels.
* :func:`init_request` : ``InitTarget.Request`` -> :class:`InitRequest` (stamp, ``Box``, prompt,
  id), refusing non-finite or empty boxes with a reason.
* :func:`render_debug`: the input image with the box, state, score and the kept search tokens.
* :func:`detection_array`: ``vision_msgs/Detection2DArray`` when vision_msgs is importable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from ..errors import InputError
from ..sensors import (
    SensorError, aux_to_array, compressed_from_cdr, compressed_to_aux, compressed_to_rgb, image_from_cdr, image_to_rgb,
    stamp_to_ns,
)
from ..types import Box, Modality, TrackResult, TrackState

try:  # optional: not on PyPI; present on a ROS 2 install with ros-<distro>-vision-msgs
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose
except ImportError:  # pragma: no cover - depends on the install
    Detection2DArray = None

__all__ = ["read_image", "image_array", "init_refusal", "InitRequest", "init_request", "target_msg", "idle_msg", "render_debug", "detection_array", "HAVE_VISION_MSGS"]

HAVE_VISION_MSGS = Detection2DArray is not None

_STATE_CODE = {TrackState.IDLE: 0, TrackState.TRACKING: 1, TrackState.LOST: 2, TrackState.RECOVERING: 3}


@dataclass(frozen=True)
class InitRequest:
    stamp_ns: int  # 0 = latest frame
    frame_id: str  # "" = any
    box: Box  # image px, top-left xywh
    prompt: str
    target_id: str


def init_request(req: Any) -> InitRequest:
    """Validate an ``InitTarget.Request``; raises InputError saying what is wrong with the box."""
    values = (req.center_x, req.center_y, req.size_x, req.size_y)
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"box has non-finite values (center {req.center_x}, {req.center_y}; size {req.size_x} x {req.size_y})")
    if req.size_x <= 0 or req.size_y <= 0:
        raise InputError(f"box has zero or negative area: size {req.size_x} x {req.size_y} px (both must be > 0)")
    box = Box.from_cxcywh(req.center_x, req.center_y, req.size_x, req.size_y)
    return InitRequest(stamp_to_ns(req.header.stamp), str(req.header.frame_id), box, str(req.prompt), str(req.target_id))


def read_image(raw: Any, compressed: bool) -> tuple[Any, Any]:
    """Serialized image -> (light message whose ``data`` views ``raw``, std_msgs/Header).

    Bytes in an encapsulation sensors.py does not read go through rclpy's deserialiser; a
    message object (``UTPTRACK_RAW_INPUT=0``) is used as it is."""
    if not isinstance(raw, bytes):
        return raw, raw.header
    try:
        msg = compressed_from_cdr(raw) if compressed else image_from_cdr(raw)
    except SensorError:
        msg = deserialize_message(raw, CompressedImage if compressed else Image)
        return msg, msg.header
    h = msg.header
    return msg, Header(stamp=Time(sec=h.stamp.sec, nanosec=h.stamp.nanosec), frame_id=h.frame_id)


def _check_pixels(width: int, height: int, limit: int) -> None:
    if width * height > limit:
        raise SensorError(f"{width}x{height} image has {width * height} pixels, more than input.max_image_pixels="
                          f"{limit} (downscale it in the driver, or raise the limit)")


def image_array(msg: Any, compressed: bool, modality: Modality, max_pixels: int) -> Any:
    """A read image message -> the RGB array (``modality`` RGB) or that modality's aux array.
    Raises SensorError for images larger than ``max_pixels`` (checked from the message's size
    before converting; compressed images once decoded) and for anything sensors.py refuses."""
    _check_pixels(int(getattr(msg, "width", 0)), int(getattr(msg, "height", 0)), max_pixels)
    if modality is Modality.RGB:
        array = compressed_to_rgb(msg) if compressed else image_to_rgb(msg)
    else:
        array = compressed_to_aux(msg, modality) if compressed else aux_to_array(msg, modality)
    _check_pixels(array.shape[1], array.shape[0], max_pixels)
    return array


def init_refusal(lifecycle_state: str, ready: bool, preparing: str, last_error: str) -> str:
    """Why ``~/init_target`` cannot start a target now ("" when it can): the node's state, what
    a running transition prepares (``preparing``) and the last transition error."""
    if lifecycle_state == "active" and ready:
        return ""
    if preparing:
        why = f"the node is {lifecycle_state}: {preparing}; retry once it is active (see /diagnostics)"
    else:
        why = ("the model is not configured" if lifecycle_state == "unconfigured" else f"the node is {lifecycle_state}") + \
              "; configure and activate the node first"
    return f"refused: {why}" + (f" (last error: {last_error})" if last_error else "")


def _fill_common(msg: Any, header: Any, target_id: str, image_size: tuple[int, int], modality: str) -> Any:
    msg.header = header
    msg.target_id = target_id
    msg.image_width, msg.image_height = int(image_size[0]), int(image_size[1])
    msg.modality = modality
    return msg


def target_msg(
    msg: Any,
    result: TrackResult,
    header: Any,
    target_id: str,
    image_size: tuple[int, int],
    modality: str,
    aux_fallback: bool,
    latency_ms: float,
) -> Any:
    """Fill a ``TrackedTarget`` (passed in, so this module needs no generated-interface import)."""
    _fill_common(msg, header, target_id, image_size, modality)
    msg.state = _STATE_CODE[result.state]
    msg.center_x, msg.center_y, msg.size_x, msg.size_y = (float(v) for v in result.box.as_cxcywh())
    msg.confidence = float(result.confidence)
    msg.kept_token_fraction = float(result.kept_fraction)
    msg.frame_index = int(result.frame_index)
    msg.aux_fallback = bool(aux_fallback)
    msg.model_ms = float(result.timings_ms.get("total", 0.0))
    msg.latency_ms = float(latency_ms)
    return msg


def idle_msg(msg: Any, header: Any, image_size: tuple[int, int], modality: str, latency_ms: float) -> Any:
    """A ``TrackedTarget`` saying no target is initialised (state IDLE, zero box)."""
    _fill_common(msg, header, "", image_size, modality)
    msg.state = _STATE_CODE[TrackState.IDLE]
    msg.latency_ms = float(latency_ms)
    return msg


def render_debug(image_rgb: np.ndarray, results: list[tuple[str, TrackResult]]) -> np.ndarray:
    """(H, W, 3) uint8 RGB copy with each target's kept search tokens, box, id, state and score drawn.

    Kept search tokens are the cells of the search region's (F x F) grid that survived every
    candidate-elimination layer: pruned cells are darkened, the search region outlined.
    """
    import cv2

    out = image_rgb.copy()
    if not results:
        cv2.putText(out, "IDLE", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 2)
        return out
    for row, (target_id, result) in enumerate(results):
        _shade_pruned(out, result)
        colour = (0, 255, 0) if result.state is TrackState.TRACKING else (255, 64, 0)
        x1, y1, x2, y2 = (int(round(v)) for v in result.box.as_xyxy())
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        cv2.putText(out, target_id, (x1, max(y1 - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1)
        text = f"{target_id}: {result.state.value.upper()} {result.confidence:.2f} kept {result.kept_fraction:.2f}"
        cv2.putText(out, text, (8, 22 + 22 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2)
    return out


def _shade_pruned(out: np.ndarray, result: TrackResult) -> None:
    """Darken the search-grid cells ``result`` pruned and outline its search region, in place."""
    import cv2

    h, w = out.shape[:2]
    mask = np.asarray(result.search_keep_mask, dtype=bool)
    region = result.search_region
    if mask.ndim != 2 or not mask.size or region.w <= 0:
        return
    f = mask.shape[0]
    cell_w, cell_h = region.w / f, region.h / f
    shade = np.zeros((h, w), dtype=bool)
    for iy, ix in zip(*np.nonzero(~mask)):
        x1, y1 = int(region.x + ix * cell_w), int(region.y + iy * cell_h)
        x2, y2 = int(region.x + (ix + 1) * cell_w), int(region.y + (iy + 1) * cell_h)
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if x2 > x1 and y2 > y1:
            shade[y1:y2, x1:x2] = True
    out[shade] = (out[shade] * 0.35).astype(np.uint8)
    rx1, ry1, rx2, ry2 = (int(round(v)) for v in region.as_xyxy())
    cv2.rectangle(out, (rx1, ry1), (rx2, ry2), (255, 255, 0), 1)


def detection_array(header: Any, targets: list[Any]) -> Any:
    """``vision_msgs/Detection2DArray`` (one detection per TRACKING target) from filled ``TrackedTarget`` messages.

    IDLE, LOST and RECOVERING targets are left out (their state is on ~/target); ``id`` = target
    id; ``results[0].hypothesis.score`` = confidence. Needs vision_msgs (Humble+ layout).
    """
    if Detection2DArray is None:  # pragma: no cover
        raise RuntimeError("vision_msgs is not installed")
    arr = Detection2DArray(header=header)
    for target in targets:
        if target.state != _STATE_CODE[TrackState.TRACKING]:
            continue
        det = Detection2D(header=target.header, id=target.target_id)
        det.bbox.center.position.x, det.bbox.center.position.y = target.center_x, target.center_y
        det.bbox.size_x, det.bbox.size_y = target.size_x, target.size_y
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = target.target_id
        hyp.hypothesis.score = float(target.confidence)
        det.results.append(hyp)
        arr.detections.append(det)
    return arr
