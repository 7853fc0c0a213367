"""Training losses of the tracker (method.md 7), as pure tensor functions.

``L = 2 * GIoU + 5 * L1 + 1 * focal + 1 * task-CE``:

* **focal**: CenterNet focal loss (alpha 2, beta 4) of the centre map against a Gaussian heatmap
  (:func:`gaussian_heatmap`): the Gaussian sits on the *cell that contains* the GT centre
  (``floor(cx * F)``, the cell the decoder's ``cx = (ix + off_x) / F`` reads back with an offset
  in ``[0, 1)``), radius from the CornerNet formula with ``min_overlap = 0.7`` (the "bug version"
  OSTrack uses). Negative samples (target absent from the search crop) have an all-zero heatmap:
  every cell is pushed towards 0, which teaches the low confidence the tracker reads as LOST.
  The sum is normalised by the number of positive samples in the batch (CenterNet).
* **GIoU + L1** on normalised ``x1, y1, x2, y2`` boxes (GT clamped to ``[0, 1]``), positive samples
  only. The predicted box is read from the size/offset maps at the GT centre cell
  (``box_at="gt_cell"``, CenterNet), at the unwindowed argmax (``"argmax"``, OSTrack) or both
  averaged (``"both"``).
* **task**: cross-entropy of the task head against ``types.Task`` labels (method.md 3.3).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

BOX_AT = ("gt_cell", "argmax", "both")


def gaussian_radius(w: float, h: float, min_overlap: float = 0.7) -> float:
    """CornerNet radius (the three-quadratic "bug version" of CenterNet/OSTrack), in cells.

    Args:
        w, h: box size in heatmap cells.
    """
    b1 = h + w
    c1 = w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(max(b1**2 - 4 * c1, 0.0))) / 2
    b2 = 2 * (h + w)
    c2 = (1 - min_overlap) * w * h
    r2 = (b2 + math.sqrt(max(b2**2 - 16 * c2, 0.0))) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (h + w)
    c3 = (min_overlap - 1) * w * h
    r3 = (b3 + math.sqrt(max(b3**2 - 4 * a3 * c3, 0.0))) / 2
    return min(r1, r2, r3)


def centre_cells(boxes_cxcywh: Tensor, grid: int) -> Tensor:
    """(B, 4) normalised ``cx, cy, w, h`` -> (B, 2) long ``ix, iy`` of the cell holding the centre."""
    return (boxes_cxcywh[:, :2] * grid).floor().long().clamp(0, grid - 1)


def gaussian_heatmap(boxes_cxcywh: Tensor, positive: Tensor, grid: int, min_overlap: float = 0.7) -> Tensor:
    """CenterNet training target for the centre map.

    Args:
        boxes_cxcywh: (B, 4) GT boxes normalised by the search crop (any value where negative).
        positive: (B,) bool, the target's centre lies inside the search crop.
        grid: F, the score map side.
    Returns:
        (B, 1, F, F) float in [0, 1] with exactly one 1.0 per positive sample (its centre cell),
        all zeros for negatives.
    """
    b = boxes_cxcywh.shape[0]
    heat = torch.zeros(b, grid, grid, dtype=torch.float32)
    cells = centre_cells(boxes_cxcywh, grid).cpu()
    sizes = (boxes_cxcywh[:, 2:4].detach().cpu().float() * grid).clamp(min=0.0)
    ys = torch.arange(grid, dtype=torch.float32).view(grid, 1)
    xs = torch.arange(grid, dtype=torch.float32).view(1, grid)
    for i in range(b):
        if not bool(positive[i]):
            continue
        radius = max(0, int(gaussian_radius(float(sizes[i, 0]), float(sizes[i, 1]), min_overlap)))
        sigma = (2 * radius + 1) / 6.0
        ix, iy = int(cells[i, 0]), int(cells[i, 1])
        g = torch.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sigma * sigma))
        window = ((xs - ix).abs() <= radius) & ((ys - iy).abs() <= radius)  # the (2r+1)^2 patch
        g = torch.where(window & (g >= torch.finfo(torch.float32).eps), g, torch.zeros_like(g))
        heat[i] = g
    return heat.unsqueeze(1).to(boxes_cxcywh.device)


def focal_loss(pred: Tensor, target: Tensor, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """CenterNet focal loss. pred, target (B, 1, F, F); pred already in (0, 1).

    Normalised by the number of target cells equal to 1 (at least 1).
    """
    pos = target.eq(1.0).to(pred.dtype)
    neg = 1.0 - pos
    pos_loss = torch.log(pred) * (1 - pred) ** alpha * pos
    neg_loss = torch.log(1 - pred) * pred**alpha * (1 - target) ** beta * neg
    num_pos = pos.sum().clamp(min=1.0)
    return -(pos_loss.sum() + neg_loss.sum()) / num_pos


def boxes_at(size_map: Tensor, offset_map: Tensor, cells: Tensor) -> Tensor:
    """Decode ``cx, cy, w, h`` (B, 4) at given cells (B, 2) ``ix, iy`` (method.md 5 decoding)."""
    b, _, f, _ = size_map.shape
    idx = (cells[:, 1] * f + cells[:, 0]).view(b, 1, 1).expand(b, 2, 1)
    size = size_map.flatten(2).gather(2, idx).squeeze(-1)
    off = offset_map.flatten(2).gather(2, idx).squeeze(-1)
    cx = (cells[:, 0].to(size.dtype) + off[:, 0]) / f
    cy = (cells[:, 1].to(size.dtype) + off[:, 1]) / f
    return torch.stack([cx, cy, size[:, 0], size[:, 1]], dim=1)


def argmax_cells(score_map: Tensor) -> Tensor:
    """(B, 1, F, F) -> (B, 2) long ``ix, iy`` of the unwindowed maximum."""
    f = score_map.shape[-1]
    idx = score_map.flatten(1).argmax(dim=1)
    return torch.stack([idx % f, torch.div(idx, f, rounding_mode="floor")], dim=1)


def cxcywh_to_xyxy(b: Tensor) -> Tensor:
    return torch.cat([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], dim=1)


def giou_loss(pred_xyxy: Tensor, gt_xyxy: Tensor) -> tuple[Tensor, Tensor]:
    """Mean ``1 - GIoU`` and the plain IoU (B,) of matching boxes (B, 4) ``x1, y1, x2, y2``."""
    area_p = (pred_xyxy[:, 2] - pred_xyxy[:, 0]).clamp(min=0) * (pred_xyxy[:, 3] - pred_xyxy[:, 1]).clamp(min=0)
    area_g = (gt_xyxy[:, 2] - gt_xyxy[:, 0]).clamp(min=0) * (gt_xyxy[:, 3] - gt_xyxy[:, 1]).clamp(min=0)
    lt = torch.maximum(pred_xyxy[:, :2], gt_xyxy[:, :2])
    rb = torch.minimum(pred_xyxy[:, 2:], gt_xyxy[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    union = area_p + area_g - inter
    iou = inter / union.clamp(min=1e-7)
    lt_c = torch.minimum(pred_xyxy[:, :2], gt_xyxy[:, :2])
    rb_c = torch.maximum(pred_xyxy[:, 2:], gt_xyxy[:, 2:])
    hull = (rb_c - lt_c).clamp(min=0).prod(dim=1)
    giou = iou - (hull - union) / hull.clamp(min=1e-7)
    return (1 - giou).mean(), iou


@dataclass(frozen=True)
class LossWeights:
    """Weights of the four terms (method.md 7 defaults)."""

    giou: float = 2.0
    l1: float = 5.0
    focal: float = 1.0
    task: float = 1.0


def tracking_loss(
    score_map: Tensor,
    size_map: Tensor,
    offset_map: Tensor,
    task_logits: Tensor | None,
    gt_cxcywh: Tensor,
    positive: Tensor,
    task: Tensor,
    weights: LossWeights = LossWeights(),
    box_at: str = "gt_cell",
) -> tuple[Tensor, dict[str, float]]:
    """Total loss and its parts for one batch.

    Args:
        score_map: (B, 1, F, F); size_map, offset_map: (B, 2, F, F) (``ModelOutput``).
        task_logits: (B, num_tasks) or None.
        gt_cxcywh: (B, 4) GT boxes normalised by the search crop.
        positive: (B,) bool, the GT centre lies in the search crop (else a negative sample).
        task: (B,) long task labels.
    Returns:
        The scalar loss and a dict of floats (``loss``, ``focal``, ``giou``, ``l1``, ``task``,
        ``iou`` mean IoU of the supervised boxes, ``pos`` fraction of positive samples).
    """
    if box_at not in BOX_AT:
        raise ValueError(f"box_at must be one of {BOX_AT}, got {box_at!r}")
    grid = score_map.shape[-1]
    heat = gaussian_heatmap(gt_cxcywh, positive, grid).to(score_map.dtype)
    focal = focal_loss(score_map, heat)
    parts = {"focal": float(focal.detach())}
    total = weights.focal * focal
    pos = positive.bool()
    if pos.any():
        gt_xyxy = cxcywh_to_xyxy(gt_cxcywh[pos]).clamp(0.0, 1.0)
        cell_sets = []
        if box_at in ("gt_cell", "both"):
            cell_sets.append(centre_cells(gt_cxcywh, grid))
        if box_at in ("argmax", "both"):
            cell_sets.append(argmax_cells(score_map.detach()))
        giou: Tensor | float = 0.0
        l1: Tensor | float = 0.0
        ious = []
        for cells in cell_sets:
            pred = cxcywh_to_xyxy(boxes_at(size_map, offset_map, cells)[pos])
            g, iou = giou_loss(pred, gt_xyxy)
            giou = giou + g / len(cell_sets)
            l1 = l1 + F.l1_loss(pred, gt_xyxy) / len(cell_sets)
            ious.append(iou.detach().mean())
        total = total + weights.giou * giou + weights.l1 * l1
        parts.update(giou=float(giou), l1=float(l1), iou=float(sum(ious) / len(ious)))
    else:
        parts.update(giou=0.0, l1=0.0, iou=float("nan"))
    if task_logits is not None and weights.task > 0:
        ce = F.cross_entropy(task_logits, task)
        total = total + weights.task * ce
        parts["task"] = float(ce.detach())
    parts["pos"] = float(pos.float().mean())
    parts["loss"] = float(total.detach())
    return total, parts
