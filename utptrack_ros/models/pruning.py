"""Token-pruning primitives of CTEM (CE / DTE / STE), as pure tensor functions (method.md 4).

Every function states its shapes; none keeps state. ``encoder.py`` composes them inside a block:
after the attention residual and before the MLP, scores come from that block's attention
probabilities with the static-template centre token as the query row (plus the text row for
text-guided pruning), averaged over all heads.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def keep_count(ratio: float, n: int) -> int:
    """Tokens kept from ``n`` at keep ``ratio``: ``ceil(ratio * n)`` as the official code computes it."""
    return min(n, max(1, math.ceil(ratio * n)))


def centre_index(grid: int) -> int:
    """Flat row-major index of the template grid's centre token (8x8 -> 27, 12x12 -> 65, 7x7 -> 24)."""
    c = (grid - 1) // 2
    return c * grid + c


def component_scores(
    centre_row: Tensor,
    start: int,
    stop: int,
    text_row: Tensor | None = None,
    text_weight: Tensor | None = None,
) -> Tensor:
    """Scores of the tokens at sequence positions ``[start, stop)`` (method.md 4.2, 4.5).

    Args:
        centre_row: (B, N) head-averaged attention of the static-template centre token.
        text_row: (B, N) head-averaged attention of the text token, or None (no TG).
        text_weight: (B,) 1.0 for samples with a prompt, 0.0 without.
    Returns:
        (B, stop - start). With TG a prompted sample scores ``(centre + text) / 2``; a sample
        without a prompt keeps its plain centre score, so its selection never depends on its
        batch-mates (the official code halves it instead, which can re-rank it against the
        soft TTA bonus in a mixed batch).
    """
    scores = centre_row[:, start:stop]
    if text_row is None or text_weight is None:
        return scores
    w = text_weight.to(scores.dtype).view(-1, 1)
    return (scores + w * text_row[:, start:stop]) / (1.0 + w)


def tta_bonus(fg_fraction: Tensor, mode: str) -> Tensor:
    """Token-type-aware bonus b(j) from each static-template patch's foreground fraction (4.3).

    Args:
        fg_fraction: (B, n) in [0, 1].
        mode: ``none`` -> 0, ``soft`` -> f, ``all`` -> [f > 0], ``full`` -> [f == 1].
    """
    if mode == "none":
        return torch.zeros_like(fg_fraction)
    if mode == "soft":
        return fg_fraction
    if mode == "all":
        return (fg_fraction > 0).to(fg_fraction.dtype)
    if mode == "full":
        return (fg_fraction >= 1.0).to(fg_fraction.dtype)
    raise ValueError(f"unknown TTA mode {mode!r}")


def select_topk(scores: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` highest scores per row, ordered by descending score.

    Args:
        scores: (B, n). Returns (B, k) long. Uses a full stable sort like the official code,
        so ties keep their current order.
    """
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    return order[:, :k]


def gather_tokens(tokens: Tensor, index: Tensor) -> Tensor:
    """``tokens`` (B, n, C) gathered along dim 1 by ``index`` (B, k) -> (B, k, C)."""
    b, k = index.shape
    return tokens.gather(1, index.unsqueeze(-1).expand(b, k, tokens.shape[-1]))


def restore_search(kept: Tensor, global_index: Tensor, n_total: int) -> Tensor:
    """Scatter kept search tokens back to raster order; removed positions are exact zeros.

    Args:
        kept: (B, k, C) search tokens that survived, in their current (score) order.
        global_index: (B, k) their original raster positions in ``[0, n_total)``.
    Returns:
        (B, n_total, C).
    """
    b, k, c = kept.shape
    if k == n_total:
        out = torch.empty_like(kept)
    else:
        out = kept.new_zeros(b, n_total, c)
    return out.scatter(1, global_index.unsqueeze(-1).expand(b, k, c), kept)


def keep_mask(global_index: Tensor, n_total: int) -> Tensor:
    """(B, k) kept raster positions -> (B, n_total) bool mask."""
    mask = torch.zeros(global_index.shape[0], n_total, dtype=torch.bool, device=global_index.device)
    return mask.scatter(1, global_index, torch.ones_like(global_index, dtype=torch.bool))


def foreground_fraction(box_norm: Tensor, size: int, patch: int = 16) -> Tensor:
    """Fraction of each template patch covered by the box (method.md 2.3 rasterisation).

    Pixel column ``u`` is inside iff ``x*size <= u < (x+w)*size`` (likewise rows); the pixel
    mask is averaged over each ``patch x patch`` cell. Computed separably (exact for a box).

    Args:
        box_norm: (B, 4) ``x, y, w, h`` normalised by the template crop size.
        size: template crop size in pixels.
    Returns:
        (B, g*g) float in [0, 1], row-major over the ``g = size // patch`` grid.
    """
    g = size // patch
    lo = torch.ceil(box_norm[:, :2] * size)  # first pixel inside, per axis (x, y)
    hi = torch.ceil((box_norm[:, :2] + box_norm[:, 2:4]) * size)  # first pixel past the box
    starts = torch.arange(g, device=box_norm.device, dtype=box_norm.dtype) * patch
    # (B, 2, g): pixels inside per cell along each axis
    cover = (
        torch.minimum(starts.view(1, 1, g) + patch, hi.unsqueeze(-1))
        - torch.maximum(starts.view(1, 1, g), lo.unsqueeze(-1))
    ).clamp(min=0, max=patch)
    frac = cover[:, 1, :, None] * cover[:, 0, None, :] / float(patch * patch)  # (B, rows, cols)
    return frac.reshape(box_norm.shape[0], g * g)


def keep_rate_schedule(epoch: float, final: float, start: float, warm: float) -> float:
    """Training keep rate (method.md 4.6): 1 before ``start``, cosine to ``final`` over ``warm``."""
    if epoch < start:
        return 1.0
    if epoch < start + warm:
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * (epoch - start) / warm))
    return final
