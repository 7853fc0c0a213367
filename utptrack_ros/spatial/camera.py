"""Camera intrinsics from ``sensor_msgs/CameraInfo`` fields: validation, undistortion, back-projection.

Conventions (sensor_msgs/CameraInfo.msg, REP 103/105):

* **Optical frame**: x right, y down, z forward (into the scene), metres; the frame of the image's
  ``header.frame_id``.
* **Pixel coordinates** ``(u, v)`` as in K/P and OpenCV: the *centre* of the top-left pixel is
  ``(0, 0)``. The package's boxes use continuous coordinates (pixel ``i`` covers ``[i, i + 1)``,
  ``types.Box``), so a box centre ``(cx, cy)`` is pixel ``(cx - 0.5, cy - 0.5)``
  (:func:`box_centre_pixel`).
* **Depth** is the z coordinate (REP 118: distance along the optical axis, not along the ray), so
  the point of pixel ``(u, v)`` at depth ``z`` is ``(x_n z, y_n z, z)`` with ``(x_n, y_n)`` the
  undistorted normalised coordinates of the pixel.

Raw or rectified image (the caller says which; a CameraInfo alone cannot tell):

* ``rectified=False`` (``image_raw``, ``image_color``; the default): pixels are distorted; they are
  undistorted with K and D (``plumb_bob`` / ``rational_polynomial``: ``cv2.undistortPoints``;
  ``equidistant``: ``cv2.fisheye.undistortPoints``). R is not applied: the point stays in the
  camera's own optical frame, the one ``header.frame_id`` names. All-zero (or empty) D means no
  distortion, whatever the model name.
* ``rectified=True`` (``image_rect``, ``image_rect_color``): pixels are already undistorted; the
  left 3x3 of P gives the intrinsics and D is ignored (CameraInfo.msg: "P ... specifies the
  intrinsic matrix of the processed (rectified) image"). Tx/Ty of a stereo pair's second camera
  are ignored: the point is expressed in that camera's own optical frame.

Binning and ROI (CameraInfo "Operational Parameters"): K, D and P describe the full-resolution
sensor; the delivered image is ``(roi.width or width) / binning_x`` wide (likewise in y). Image
pixel ``u`` is full-resolution pixel ``roi.x_offset + (u + 0.5) * binning_x - 0.5``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import cv2
import numpy as np

from ..errors import InputError
from ..types import Box

PLUMB_BOB = "plumb_bob"
RATIONAL_POLYNOMIAL = "rational_polynomial"
EQUIDISTANT = "equidistant"
#: Distortion models understood, with the coefficient counts they take (sensor_msgs/distortion_models.hpp).
DISTORTION_MODELS: dict[str, tuple[int, ...]] = {PLUMB_BOB: (4, 5), RATIONAL_POLYNOMIAL: (8,), EQUIDISTANT: (4,)}
_COEFFICIENTS = {PLUMB_BOB: "k1, k2, t1, t2, k3", RATIONAL_POLYNOMIAL: "k1, k2, t1, t2, k3, k4, k5, k6",
                 EQUIDISTANT: "k1, k2, k3, k4"}
_UNDISTORT_CRITERIA = (3, 50, 1e-10)  # COUNT + EPS: iterate to convergence, not OpenCV's fixed 5 steps


class CameraInfoError(InputError):
    """The CameraInfo is unusable (uncalibrated, non-finite, unknown model) or does not fit the image."""


def box_centre_pixel(box: Box) -> tuple[float, float]:
    """The box centre in pixel coordinates (pixel centres at integers): ``(cx - 0.5, cy - 0.5)``."""
    return box.cx - 0.5, box.cy - 0.5


@dataclass(frozen=True)
class CameraIntrinsics:
    """Validated intrinsics of one image stream (build with :meth:`from_camera_info` or :meth:`pinhole`).

    Attributes:
        width, height: size of the delivered image (after binning and ROI).
        fx, fy, cx, cy: focal lengths and principal point of the full-resolution sensor, pixels
            (from K, or from P when ``rectified``).
        distortion_model: the model whose coefficients are removed; ``""`` = none to remove.
        distortion: its coefficients (empty when there is none).
        rectified: the image is rectified (intrinsics from P, no undistortion).
        binning_x, binning_y: >= 1.
        roi_x, roi_y: offset of the delivered window on the full-resolution sensor, pixels.
        calibrated_size: ``(width, height)`` of the CameraInfo (the full-resolution sensor).
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion_model: str = ""
    distortion: tuple[float, ...] = ()
    rectified: bool = False
    binning_x: int = 1
    binning_y: int = 1
    roi_x: int = 0
    roi_y: int = 0
    calibrated_size: tuple[int, int] = (0, 0)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def pinhole(cls, width: int, height: int, fx: float, fy: float, cx: float, cy: float) -> "CameraIntrinsics":
        """An undistorted camera (e.g. the generator's); validated like a CameraInfo."""
        k = (fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0)
        return cls.from_fields(width=width, height=height, k=k)

    @classmethod
    def from_camera_info(cls, msg: Any, *, rectified: bool = False) -> "CameraIntrinsics":
        """From a ``sensor_msgs/CameraInfo`` (rclpy or rosbags message, or any object with its fields).

        Raises:
            CameraInfoError: see :meth:`from_fields`.
        """
        roi = getattr(msg, "roi", None)
        return cls.from_fields(
            width=int(msg.width), height=int(msg.height), k=tuple(msg.k), d=tuple(msg.d),
            distortion_model=str(msg.distortion_model), p=tuple(msg.p),
            binning_x=int(getattr(msg, "binning_x", 0)), binning_y=int(getattr(msg, "binning_y", 0)),
            roi=None if roi is None else (int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)),
            rectified=rectified)

    @classmethod
    def from_fields(cls, *, width: int, height: int, k: Sequence[float], d: Sequence[float] = (),
                    distortion_model: str = "", p: Optional[Sequence[float]] = None, binning_x: int = 0,
                    binning_y: int = 0, roi: Optional[tuple[int, int, int, int]] = None,
                    rectified: bool = False) -> "CameraIntrinsics":
        """From CameraInfo field values (``roi`` = ``(x_offset, y_offset, width, height)``).

        Raises:
            CameraInfoError: no image size; K (or P when ``rectified``) with a zero, negative or
                non-finite focal length or a non-finite principal point; non-finite D; an unknown
                distortion model with non-zero coefficients; a coefficient count the model does not
                take; an ROI outside the calibrated image.
        """
        width, height = int(width), int(height)
        if width <= 0 or height <= 0:
            raise CameraInfoError(f"CameraInfo has no image size ({width}x{height}); a calibrated camera "
                                  "states the width and height it was calibrated at")
        if rectified:
            fx, fy, cx, cy = _intrinsics(p, "P", (0, 5, 2, 6), 12)
        else:
            fx, fy, cx, cy = _intrinsics(k, "K", (0, 4, 2, 5), 9)
        model, coeffs = ("", ()) if rectified else _distortion(str(distortion_model), d)
        bx, by = max(1, int(binning_x)), max(1, int(binning_y))
        rx, ry, rw, rh = roi or (0, 0, 0, 0)
        if rw == 0 or rh == 0:  # CameraInfo: an all-zero ROI means the full resolution
            rx, ry, rw, rh = 0, 0, width, height
        if rx < 0 or ry < 0 or rx + rw > width or ry + rh > height:
            raise CameraInfoError(f"CameraInfo ROI {rw}x{rh} at ({rx}, {ry}) lies outside the calibrated "
                                  f"{width}x{height} image")
        return cls(width=rw // bx, height=rh // by, fx=fx, fy=fy, cx=cx, cy=cy, distortion_model=model,
                   distortion=coeffs, rectified=bool(rectified), binning_x=bx, binning_y=by, roi_x=rx, roi_y=ry,
                   calibrated_size=(width, height))

    # -- checks ---------------------------------------------------------------------------------
    def check_image_size(self, width: int, height: int, what: str = "image") -> None:
        """Raise :class:`CameraInfoError` unless the ``what`` is ``width`` x ``height`` as described."""
        if (int(width), int(height)) != (self.width, self.height):
            window = ""
            if (self.binning_x, self.binning_y) != (1, 1) or (self.width * self.binning_x,
                                                              self.height * self.binning_y) != self.calibrated_size:
                window = (f" (calibrated {self.calibrated_size[0]}x{self.calibrated_size[1]}, binning "
                          f"{self.binning_x}x{self.binning_y}, ROI at ({self.roi_x}, {self.roi_y}))")
            raise CameraInfoError(f"CameraInfo describes a {self.width}x{self.height} image{window} but the {what} "
                                  f"is {int(width)}x{int(height)}: the camera_info does not belong to this {what} "
                                  "(or the image was resized)")

    # -- geometry -------------------------------------------------------------------------------
    def sensor_pixels(self, uv: Any) -> np.ndarray:
        """(N, 2) image pixels -> full-resolution sensor pixels (binning and ROI undone)."""
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        scale = np.array([self.binning_x, self.binning_y], np.float64)
        return np.array([self.roi_x, self.roi_y], np.float64) + (uv + 0.5) * scale - 0.5

    def normalized(self, uv: Any) -> np.ndarray:
        """(N, 2) image pixels -> (N, 2) undistorted normalised coordinates ``(x / z, y / z)``."""
        full = self.sensor_pixels(uv)
        if not self.distortion_model or full.size == 0:
            return (full - [self.cx, self.cy]) / [self.fx, self.fy]
        camera = np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])
        coeffs = np.array(self.distortion, np.float64)
        pts = full.reshape(-1, 1, 2)
        if self.distortion_model == EQUIDISTANT:
            out = cv2.fisheye.undistortPoints(pts, camera, coeffs, criteria=_UNDISTORT_CRITERIA)
        else:
            out = cv2.undistortPoints(pts, camera, coeffs, criteria=_UNDISTORT_CRITERIA)
        return out.reshape(-1, 2)

    def back_project(self, uv: Any, depth_m: Any) -> np.ndarray:
        """(N, 2) image pixels + (N,) depths (z, metres) -> (N, 3) points in the optical frame."""
        xy = self.normalized(uv)
        z = np.asarray(depth_m, dtype=np.float64).reshape(-1)
        if z.shape[0] != xy.shape[0]:
            raise ValueError(f"back_project: {xy.shape[0]} pixels but {z.shape[0]} depths")
        return np.column_stack([xy * z[:, None], z])

    def project(self, points: Any) -> np.ndarray:
        """(N, 3) optical-frame points (z > 0) -> (N, 2) image pixels, distortion applied (the
        inverse of :meth:`back_project`)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if not self.distortion_model:
            full: np.ndarray = pts[:, :2] / pts[:, 2:3] * [self.fx, self.fy] + [self.cx, self.cy]
        else:
            camera = np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])
            coeffs = np.array(self.distortion, np.float64)
            zero = np.zeros(3)
            if self.distortion_model == EQUIDISTANT:
                projected, _ = cv2.fisheye.projectPoints(pts.reshape(-1, 1, 3), zero, zero, camera, coeffs)
            else:
                projected, _ = cv2.projectPoints(pts.reshape(-1, 1, 3), zero, zero, camera, coeffs)
            full = np.asarray(projected).reshape(-1, 2)
        scale = np.array([self.binning_x, self.binning_y], np.float64)
        return (full + 0.5 - [self.roi_x, self.roi_y]) / scale - 0.5


def _intrinsics(matrix: Optional[Sequence[float]], name: str, index: tuple[int, int, int, int], size: int
                ) -> tuple[float, float, float, float]:
    values = [] if matrix is None else [float(v) for v in matrix]
    if len(values) != size:
        raise CameraInfoError(f"CameraInfo {name} must have {size} values, got {len(values)}")
    if not any(values):
        raise CameraInfoError(f"CameraInfo {name} is all zeros: the camera is not calibrated")
    fx, fy, cx, cy = (values[i] for i in index)
    for label, value in (("fx", fx), ("fy", fy), ("cx", cx), ("cy", cy)):
        if not math.isfinite(value):
            raise CameraInfoError(f"CameraInfo {name} has a non-finite {label} ({value})")
    for label, value in (("fx", fx), ("fy", fy)):
        if value <= 0.0:
            raise CameraInfoError(f"CameraInfo {name} has {label} = {value}; focal lengths must be > 0 pixels")
    return fx, fy, cx, cy


def _distortion(model: str, d: Sequence[float]) -> tuple[str, tuple[float, ...]]:
    coeffs = tuple(float(v) for v in d)
    bad = [v for v in coeffs if not math.isfinite(v)]
    if bad:
        raise CameraInfoError(f"CameraInfo D has non-finite coefficients {bad}")
    if not any(coeffs):
        return "", ()  # nothing to undistort, whatever the model is called
    if model not in DISTORTION_MODELS:
        raise CameraInfoError(f"unknown distortion model {model!r} with non-zero coefficients {list(coeffs)}; "
                              f"supported: {', '.join(DISTORTION_MODELS)} (or publish a rectified image with "
                              "zero D)")
    counts = DISTORTION_MODELS[model]
    if len(coeffs) not in counts:
        extra = coeffs[max(counts):]
        if len(coeffs) > max(counts) and not any(extra):  # padded with zeros: harmless
            coeffs = coeffs[:max(counts)]
        else:
            expected = " or ".join(str(c) for c in counts)
            raise CameraInfoError(f"distortion model {model!r} takes {expected} coefficients ({_COEFFICIENTS[model]}), "
                                  f"got {len(coeffs)}")
    return model, coeffs
