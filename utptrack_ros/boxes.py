"""Vectorised box helpers on ``(..., 4)`` arrays. Formats are named in every function.

Continuous convention: an ``xywh`` box covers ``[x, x + w) x [y, y + h)``; ``xyxy`` is
``(x1, y1, x2, y2)`` with ``x2 = x + w``. IoU here is the continuous one (the pixel-inclusive
"+1" forms of OTB/pytracking cancel for IoU; see ``eval.metrics`` for centre conventions).
"""
from __future__ import annotations

import numpy as np


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:4]], axis=-1)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([b[..., :2], b[..., 2:4] - b[..., :2]], axis=-1)


def xywh_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([b[..., :2] + b[..., 2:4] / 2.0, b[..., 2:4]], axis=-1)


def cxcywh_to_xywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([b[..., :2] - b[..., 2:4] / 2.0, b[..., 2:4]], axis=-1)


def iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Continuous IoU of ``xywh`` boxes, broadcasting over leading dims; 0 where the union is 0."""
    a = xywh_to_xyxy(a)
    b = xywh_to_xyxy(b)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0.0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0.0, None)
    inter = iw * ih
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def clip_xywh(box: np.ndarray, width: int, height: int, margin: float = 10.0) -> np.ndarray:
    """Clip like the official trackers (method.md 6.3 step 6): at least ``margin`` px stay inside.

    x1 in [0, W - margin], x2 in [margin, W], same for y; w = max(margin, x2 - x1), likewise h.
    ``margin`` is capped at half the smaller image side: a larger one would push the box out of
    (and past the size of) the image.
    """
    margin = min(float(margin), width / 2.0, height / 2.0)
    x1, y1, x2, y2 = np.moveaxis(xywh_to_xyxy(box), -1, 0)
    x1 = np.clip(x1, 0, width - margin)
    y1 = np.clip(y1, 0, height - margin)
    x2 = np.clip(x2, margin, width)
    y2 = np.clip(y2, margin, height)
    w = np.maximum(margin, x2 - x1)
    h = np.maximum(margin, y2 - y1)
    return np.stack([x1, y1, w, h], axis=-1)
