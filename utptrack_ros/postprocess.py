"""Network maps -> box in image pixels + confidence (method.md 5, 6.3 steps 3-6)."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .boxes import clip_xywh
from .models.heads import decode_boxes
from .types import Box


def hann_window(size: int) -> np.ndarray:
    """(F, F) multiplicative Hann window: outer(h, h), ``h_k = (1 - cos(2*pi*k/(F+1))) / 2``, k=1..F."""
    k = np.arange(1, size + 1, dtype=np.float64)
    h = 0.5 * (1.0 - np.cos(2.0 * np.pi * k / (size + 1)))
    return np.outer(h, h)


def decode_windowed(
    score_map: Tensor, size_map: Tensor, offset_map: Tensor, window: Tensor | None
) -> tuple[np.ndarray, np.ndarray]:
    """Windowed argmax decoding.

    Args:
        score_map: (B, 1, F, F); size_map, offset_map: (B, 2, F, F); window: (F, F) or None.
    Returns:
        boxes (B, 4) normalised ``cx, cy, w, h`` in the search crop and the confidence (B,) =
        max of the windowed map (what the dynamic-template update compares with its threshold).
    """
    response = score_map * window if window is not None else score_map
    boxes, conf = decode_boxes(response, size_map, offset_map)
    return boxes.detach().cpu().double().numpy(), conf.detach().cpu().double().numpy()


def clip_box(box: Box, width: int, height: int, margin: float) -> Box:
    """Keep ``margin`` px of the box inside the image (official clip, method.md 6.3 step 6)."""
    return Box.from_sequence(clip_xywh(np.array(box.as_xywh()), width, height, margin))


def window_tensor(size: int, device: torch.device) -> Tensor:
    return torch.from_numpy(hann_window(size)).float().to(device)


def smooth_size(box: Box, previous: Box, keep: float) -> Box:
    """``box`` with width and height moved only ``1 - keep`` of the way from ``previous``'s."""
    w = keep * previous.w + (1.0 - keep) * box.w
    h = keep * previous.h + (1.0 - keep) * box.h
    return Box.from_cxcywh(box.cx, box.cy, w, h)


def bound_size(box: Box, previous: Box, init: Box, max_step: float, min_ratio: float) -> Box:
    """``box`` with its size guarded, its centre kept (``TrackerConfig.max_scale_step`` /
    ``min_size_ratio``): w and h each within ``[1 / (1 + max_step), 1 + max_step]`` times
    ``previous``'s (``max_step`` 0: unbounded), then scaled up, aspect kept, until the geometric
    mean side is at least ``min_ratio`` times ``init``'s (0: no floor)."""
    w, h = box.w, box.h
    if max_step > 0:
        hi = 1.0 + max_step
        w = min(max(w, previous.w / hi), previous.w * hi)
        h = min(max(h, previous.h / hi), previous.h * hi)
    if min_ratio > 0:
        floor = min_ratio * math.sqrt(init.w * init.h)
        side = math.sqrt(w * h)
        if side < floor:
            w, h = w * floor / side, h * floor / side
    return Box.from_cxcywh(box.cx, box.cy, w, h)


def damp_centre(box: Box, previous: Box, confidence: float, full: float) -> Box:
    """``box`` with its centre moved only ``confidence / full`` of the way from ``previous``'s
    when ``confidence < full`` (``TrackerConfig.damping_confidence``; ``full`` 0: unchanged)."""
    if full <= 0 or confidence >= full:
        return box
    k = max(confidence, 0.0) / full
    cx = previous.cx + k * (box.cx - previous.cx)
    cy = previous.cy + k * (box.cy - previous.cy)
    return Box.from_cxcywh(cx, cy, box.w, box.h)
