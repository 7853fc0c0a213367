"""Prediction heads: the CENTER box head (method.md 5) and the task-identification head (3.3)."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class CenterHead(nn.Module):
    """Three parallel conv branches (centre score, offset, size) over the search feature map.

    State-dict names follow OSTrack: ``conv{1..4}_{ctr,offset,size}.{0,1}`` (conv, BN) and
    ``conv5_{ctr,offset,size}``.
    """

    conv5_ctr: nn.Conv2d  # the score branch's last conv (training initialises its bias); set in __init__

    def __init__(self, in_channels: int, channels: tuple[int, ...] = (256, 128, 64, 32)) -> None:
        super().__init__()
        widths = (in_channels, *channels)
        for branch, out in (("ctr", 1), ("offset", 2), ("size", 2)):
            for i in range(4):
                setattr(self, f"conv{i + 1}_{branch}", _conv_bn_relu(widths[i], widths[i + 1]))
            setattr(self, f"conv5_{branch}", nn.Conv2d(widths[4], out, 1))
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def _branch(self, name: str, x: Tensor) -> Tensor:
        for i in range(1, 5):
            x = getattr(self, f"conv{i}_{name}")(x)
        return getattr(self, f"conv5_{name}")(x)

    def forward(self, feat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """feat (B, C, F, F) -> score (B,1,F,F) in [1e-4, 1-1e-4], size (B,2,F,F) same range
        (w, h as fractions of the crop), offset (B,2,F,F) raw (x, y in cells)."""
        score = torch.sigmoid(self._branch("ctr", feat)).clamp(1e-4, 1 - 1e-4)
        size = torch.sigmoid(self._branch("size", feat)).clamp(1e-4, 1 - 1e-4)
        offset = self._branch("offset", feat)
        return score, size, offset


def decode_boxes(score: Tensor, size: Tensor, offset: Tensor) -> tuple[Tensor, Tensor]:
    """Argmax decoding (method.md 5): ``cx = (ix + off_x) / F`` (no +0.5), size from the size map.

    Args:
        score: (B, 1, F, F) centre map (windowed or not); size, offset: (B, 2, F, F).
    Returns:
        boxes (B, 4) normalised ``cx, cy, w, h`` in the search crop, and the max score (B,).
    """
    b, _, f, _ = score.shape
    flat = score.flatten(1)
    best, idx = flat.max(dim=1)
    iy = torch.div(idx, f, rounding_mode="floor")
    ix = idx - iy * f
    gather = idx.view(b, 1, 1).expand(b, 2, 1)
    sz = size.flatten(2).gather(2, gather).squeeze(-1)
    off = offset.flatten(2).gather(2, gather).squeeze(-1)
    cx = (ix.to(score.dtype) + off[:, 0]) / f
    cy = (iy.to(score.dtype) + off[:, 1]) / f
    return torch.stack([cx, cy, sz[:, 0], sz[:, 1]], dim=1), best


class TaskHead(nn.Module):
    """MLP over the mean of all output tokens -> task logits (method.md 3.3; ReLU, no norm)."""

    def __init__(self, dim: int, hidden: int, num_tasks: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(dim, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, num_tasks)])

    def forward(self, tokens: Tensor) -> Tensor:
        x = tokens.mean(dim=1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x
