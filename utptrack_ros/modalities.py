"""Auxiliary frames -> the 8-bit, 3-channel image that fills the model's auxiliary half
(method.md 3.2; ros-conventions.md 2.2).

* Depth (REP 118): ``uint16`` millimetres (0 = invalid) or ``float32`` metres (NaN/inf/<=0 =
  invalid). Invalid pixels become 0 mm, exactly how the official readers see raw 16-bit depth;
  then, as SUTrack's ``depth_utils``: clip at ``min(3 * median, depth_max_mm)`` (median over the
  whole frame), min-max normalise to 0..255 and apply OpenCV's ``COLORMAP_JET``. The colormap
  output stays in OpenCV's BGR channel order (the official code never converts it).
* Thermal: 8-bit single channel is replicated to 3 channels; 16-bit counts get an AGC
  (``AuxConfig.thermal_mode``: per-frame ``minmax``, ``percentile`` stretch, or fixed ``linear``
  gain/offset), then replicated; 3-channel 8-bit (already colourised/AGC'd by the driver) is
  used as is (RGB order).
* Event: a rendered 3-channel event frame (uint8) is used as is; a single-channel one is replicated.
"""
from __future__ import annotations

import cv2
import numpy as np

from .config import AuxConfig
from .errors import InputError
from .types import Modality


def _uint16_order_stats(values: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Values at 0-based ``ranks`` of the sorted uint16 array, via a histogram (O(n), exact)."""
    cum = np.cumsum(np.bincount(values.ravel(), minlength=65536))
    return np.searchsorted(cum, np.asarray(ranks) + 1).astype(np.float64)


def _median_uint16(values: np.ndarray) -> float:
    """Exactly ``np.median`` (mean of the two middle values when the count is even), ~3x faster."""
    n = values.size
    lo, hi = _uint16_order_stats(values, np.array([(n - 1) // 2, n // 2]))
    return (lo + hi) / 2.0


def depth_to_aux(depth: np.ndarray, depth_max_mm: float = 10000.0) -> np.ndarray:
    """Depth (H, W) uint16 mm or float32 m -> (H, W, 3) uint8 JET colormap (BGR order)."""
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim != 2 or depth.size == 0:
        raise InputError(f"depth must be a non-empty single-channel (H, W) image, got shape {depth.shape}")
    if depth.dtype == np.uint16:
        mm = depth
    elif depth.dtype in (np.float32, np.float64):
        metres = np.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0)
        mm = np.clip(np.rint(metres * 1000.0), 0, 65535).astype(np.uint16)
    else:
        raise InputError(f"depth must be uint16 (mm) or float32 (m), got dtype {depth.dtype}")
    # official: dp[dp > max] = max on a uint16 array (the limit truncates to an integer)
    limit = int(min(_median_uint16(mm) * 3.0, depth_max_mm))
    clipped = np.minimum(mm, np.uint16(limit))
    norm = cv2.normalize(clipped, None, 0, 255, cv2.NORM_MINMAX)
    return cv2.applyColorMap(norm.astype(np.uint8), cv2.COLORMAP_JET)


def thermal_to_aux(thermal: np.ndarray, cfg: AuxConfig = AuxConfig()) -> np.ndarray:
    """Thermal (H, W) uint8/uint16 or (H, W, 3) uint8 -> (H, W, 3) uint8."""
    if thermal.ndim == 3 and thermal.shape[2] == 1:
        thermal = thermal[:, :, 0]
    if thermal.size == 0:
        raise InputError("thermal frame is empty")
    if thermal.ndim == 3:
        if thermal.shape[2] != 3 or thermal.dtype != np.uint8:
            raise InputError(f"3-channel thermal must be (H, W, 3) uint8, got {thermal.shape} {thermal.dtype}")
        return thermal
    if thermal.ndim != 2:
        raise InputError(f"thermal must be (H, W) or (H, W, 3), got shape {thermal.shape}")
    if thermal.dtype == np.uint8:
        gray = thermal
    elif thermal.dtype == np.uint16:
        gray = _agc(thermal, cfg)
    else:
        raise InputError(f"thermal must be uint8 or uint16, got dtype {thermal.dtype}")
    return cv2.merge([gray, gray, gray])


def _agc(counts: np.ndarray, cfg: AuxConfig) -> np.ndarray:
    """uint16 counts -> uint8 by the configured gain (documented in AuxConfig)."""
    if cfg.thermal_mode == "linear":
        alpha, beta = cfg.thermal_gain, cfg.thermal_offset
    else:
        if cfg.thermal_mode == "percentile":
            ranks = np.array([cfg.thermal_low_pct, cfg.thermal_high_pct]) / 100.0 * (counts.size - 1)
            lo, hi = _uint16_order_stats(counts, np.rint(ranks).astype(np.int64))
        else:
            lo, hi = float(counts.min()), float(counts.max())
        alpha = 255.0 / max(hi - lo, 1.0)
        beta = -lo * alpha
    return cv2.convertScaleAbs(counts.astype(np.float32), alpha=alpha, beta=beta)


def event_to_aux(event: np.ndarray) -> np.ndarray:
    """Rendered event frame (H, W, 3) or (H, W) uint8 -> (H, W, 3) uint8."""
    if event.dtype != np.uint8:
        raise InputError(f"event frames must be uint8 images, got dtype {event.dtype}")
    if event.ndim == 2:
        return cv2.merge([event, event, event])
    if event.ndim != 3 or event.shape[2] != 3:
        raise InputError(f"event frames must be (H, W, 3) or (H, W), got shape {event.shape}")
    return event


def to_aux_image(aux: np.ndarray, modality: Modality, cfg: AuxConfig = AuxConfig()) -> np.ndarray:
    """Dispatch on the modality: the one place that knows each auxiliary kind."""
    if not isinstance(aux, np.ndarray):
        raise InputError(f"auxiliary frame must be a numpy array, got {type(aux).__name__}")
    if modality is Modality.DEPTH:
        return depth_to_aux(aux, cfg.depth_max_mm)
    if modality is Modality.THERMAL:
        return thermal_to_aux(aux, cfg)
    if modality is Modality.EVENT:
        return event_to_aux(aux)
    raise InputError(f"modality {modality.value!r} takes no auxiliary frame")
