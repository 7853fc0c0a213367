"""The target's depth inside a tracked box, from a depth image aligned to the colour image.

Depth images (REP 118): ``uint16`` millimetres with 0 = invalid (``16UC1``, also ``mono16``), or
``float32``/``float64`` metres with NaN, +-inf (REP 117: too far / too near) and values <= 0
invalid (``32FC1``). Any other encoding is refused (:func:`depth_unit`).

Why a mode and not a mean or median: a box around a target also holds background (a wall or a
floor behind it, around its silhouette) and sometimes an occluder in front (a hand, a board). The
mean mixes them all; the median is right only while the target covers more than half of the
valid pixels *and* the rest lies on one side. Background and occluders that reach into the box
mostly do so at its border, and a rigid target is one compact cluster of depths while a floor or
a slanted occluder spreads over many. So:

1. Take the box's **central region** (``core_fraction`` of its width and height, default the
   middle 50 % each way, clipped to the image) and its valid pixels.
2. Histogram their depths in **bins of constant relative width** (log-depth bins,
   ``bin_fraction`` = 2 % of the depth: 4 cm at 2 m, matching how depth noise grows with range),
   smoothed with a [1, 2, 1] kernel so a cluster split by a bin edge is not halved.
3. The **dominant mode** (highest smoothed bin; ties go to the nearer depth) is the target; its
   **cluster** grows from the peak over neighbouring bins while the smoothed count stays above
   ``valley_fraction`` of the peak, so it spans the target's own relief but stops at the valley
   before the background or an occluder.
4. depth = median of the cluster's pixels; spread = 1.4826 x their median absolute deviation (a
   robust standard deviation, metres); plus the valid fraction of the region and the cluster's
   share of the valid pixels.

It fails when something else covers more of the central region than the target does (then that
is the dominant mode), which the cluster share and the spread make visible. Too few valid pixels
give a :class:`DepthStatus` other than OK with the reason in words, never a made-up value.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..types import Box

#: Depth image encodings understood, with their unit (REP 118; ``mono16`` is read like ``16UC1``).
DEPTH_ENCODINGS: dict[str, str] = {"16UC1": "mm", "mono16": "mm", "32FC1": "m"}
MAD_TO_SIGMA = 1.4826  # median absolute deviation -> standard deviation of a normal distribution


class DepthImageError(InputError):
    """The depth image cannot be used (encoding, dtype, shape)."""


class DepthStatus(str, enum.Enum):
    """Outcome of :func:`estimate_depth` (``value`` is the word for messages and diagnostics)."""

    OK = "ok"
    OUTSIDE_IMAGE = "outside_image"  # the box's central region has no pixel inside the image
    NO_VALID_DEPTH = "no_valid_depth"  # every pixel in the region is invalid (0, NaN, inf, out of range)
    TOO_FEW_VALID = "too_few_valid"  # below min_valid_pixels or min_valid_fraction


@dataclass(frozen=True)
class DepthConfig:
    """Parameters of :func:`estimate_depth` (defaults suit 0.3 - 10 m RGB-D cameras).

    Attributes:
        core_fraction: side of the central region as a fraction of the box's width and height.
        bin_fraction: histogram bin width relative to the depth (0.02 = 2 %).
        valley_fraction: the cluster extends while the smoothed histogram is above this share of
            its peak.
        min_valid_fraction: fewer valid pixels than this share of the region = no estimate.
        min_valid_pixels: fewer valid pixels than this = no estimate.
        min_depth_m, max_depth_m: valid range; values outside count as invalid.
    """

    core_fraction: float = 0.5
    bin_fraction: float = 0.02
    valley_fraction: float = 0.15
    min_valid_fraction: float = 0.1
    min_valid_pixels: int = 4
    min_depth_m: float = 0.0
    max_depth_m: float = math.inf

    def __post_init__(self) -> None:
        if not 0.0 < self.core_fraction <= 1.0:
            raise ValueError(f"core_fraction must be in (0, 1], got {self.core_fraction}")
        if not 0.0 < self.bin_fraction < 1.0:
            raise ValueError(f"bin_fraction must be in (0, 1), got {self.bin_fraction}")
        if not 0.0 <= self.valley_fraction < 1.0:
            raise ValueError(f"valley_fraction must be in [0, 1), got {self.valley_fraction}")
        if not 0.0 <= self.min_valid_fraction <= 1.0:
            raise ValueError(f"min_valid_fraction must be in [0, 1], got {self.min_valid_fraction}")
        if self.min_valid_pixels < 1:
            raise ValueError(f"min_valid_pixels must be >= 1, got {self.min_valid_pixels}")
        if not 0.0 <= self.min_depth_m < self.max_depth_m:
            raise ValueError(f"need 0 <= min_depth_m < max_depth_m, got {self.min_depth_m}, {self.max_depth_m}")


@dataclass(frozen=True)
class DepthEstimate:
    """The target's depth in one box.

    Attributes:
        status: OK, or why there is no estimate.
        depth_m: z of the target (metres, optical axis); NaN unless OK.
        spread_m: robust standard deviation of the target cluster's depths (metres); NaN unless OK.
        valid_fraction: valid pixels / pixels of the central region inside the image (0 when none).
        cluster_fraction: the target cluster's share of the valid pixels; NaN unless OK.
        num_pixels: pixels of the central region inside the image.
        num_valid: valid depth pixels among them.
        reason: what went wrong, in words ("" when OK).
    """

    status: DepthStatus
    depth_m: float
    spread_m: float
    valid_fraction: float
    cluster_fraction: float
    num_pixels: int
    num_valid: int
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status is DepthStatus.OK


def depth_unit(encoding: str) -> str:
    """``"mm"`` or ``"m"`` for a depth image encoding; :class:`DepthImageError` for any other."""
    if encoding not in DEPTH_ENCODINGS:
        raise DepthImageError(f"depth encoding {encoding!r} is not a depth image; REP 118 depth is 16UC1 "
                              "(millimetres, 0 = invalid) or 32FC1 (metres, NaN/inf = invalid)")
    return DEPTH_ENCODINGS[encoding]


def check_depth_image(depth: Any) -> np.ndarray:
    """The (H, W) depth array, or :class:`DepthImageError` (not uint16 / float, not single-channel)."""
    if not isinstance(depth, np.ndarray):
        raise DepthImageError(f"depth must be a numpy array, got {type(depth).__name__}")
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim != 2 or depth.size == 0:
        raise DepthImageError(f"depth must be a non-empty single-channel (H, W) image, got shape {depth.shape}")
    if depth.dtype != np.uint16 and depth.dtype not in (np.float32, np.float64):
        raise DepthImageError(f"depth must be uint16 millimetres or float32 metres (REP 118), got dtype {depth.dtype}")
    return depth


def central_region(box: Box, width: int, height: int, fraction: float) -> tuple[slice, slice]:
    """Rows and columns of the pixels whose centres lie in the central ``fraction`` of ``box``
    (continuous box convention), clipped to the image; at least the pixel holding the centre."""
    half_w, half_h = box.w * fraction / 2.0, box.h * fraction / 2.0

    def span(centre: float, half: float, size: int) -> slice:
        lo = math.ceil(centre - half - 0.5)
        hi = math.ceil(centre + half - 0.5)  # exclusive: pixel i is in when i + 0.5 < centre + half
        if hi <= lo:
            lo, hi = math.floor(centre), math.floor(centre) + 1
        return slice(min(max(lo, 0), size), min(max(hi, 0), size))

    return span(box.cy, half_h, height), span(box.cx, half_w, width)


def _invalid_reason(values: np.ndarray, config: DepthConfig) -> str:
    """Words for why the region's pixels are invalid (counts per kind)."""
    if values.dtype == np.uint16:
        kinds = {"0 (no return)": int(np.count_nonzero(values == 0))}
        metres = values.astype(np.float64) / 1000.0
    else:
        kinds = {"NaN": int(np.count_nonzero(np.isnan(values))),
                 "+inf (too far)": int(np.count_nonzero(values == np.inf)),
                 "-inf (too near)": int(np.count_nonzero(values == -np.inf)),
                 "<= 0": int(np.count_nonzero(values <= 0))}
        metres = values.astype(np.float64)
    with np.errstate(invalid="ignore"):
        kinds["out of range"] = int(np.count_nonzero(np.isfinite(metres) & (metres > 0)
                                                     & ((metres < config.min_depth_m) | (metres > config.max_depth_m))))
    return ", ".join(f"{n} {k}" for k, n in kinds.items() if n)


def _valid_metres(values: np.ndarray, config: DepthConfig) -> np.ndarray:
    if values.dtype == np.uint16:
        z = values[values > 0].astype(np.float64) / 1000.0
    else:
        flat = values.astype(np.float64, copy=False)
        with np.errstate(invalid="ignore"):
            z = flat[np.isfinite(flat) & (flat > 0)]
    if config.min_depth_m > 0 or math.isfinite(config.max_depth_m):
        z = z[(z >= config.min_depth_m) & (z <= config.max_depth_m)]
    return z


def dominant_cluster(z: np.ndarray, config: DepthConfig = DepthConfig()) -> np.ndarray:
    """Boolean mask of the depths (metres, all valid, non-empty) in the dominant mode's cluster."""
    logz = np.log(z)
    bins = np.floor((logz - logz.min()) / math.log1p(config.bin_fraction)).astype(np.int64)
    counts = np.bincount(bins).astype(np.float64)
    padded = np.pad(counts, 1)
    smooth = (padded[:-2] + 2.0 * padded[1:-1] + padded[2:]) / 4.0
    peak = int(np.argmax(smooth))
    floor = config.valley_fraction * smooth[peak]
    lo = peak
    while lo > 0 and smooth[lo - 1] > floor:
        lo -= 1
    hi = peak
    while hi + 1 < smooth.size and smooth[hi + 1] > floor:
        hi += 1
    return (bins >= lo) & (bins <= hi)


def estimate_depth(depth: np.ndarray, box: Box, config: DepthConfig = DepthConfig()) -> DepthEstimate:
    """The target's depth in ``box`` (image pixels, ``types.Box``) of an aligned depth image.

    Raises:
        DepthImageError: ``depth`` is not a REP 118 depth array (see :func:`check_depth_image`).
    """
    depth = check_depth_image(depth)
    height, width = depth.shape
    nan = float("nan")
    if not box.is_finite() or box.w <= 0 or box.h <= 0:
        return DepthEstimate(DepthStatus.OUTSIDE_IMAGE, nan, nan, 0.0, nan, 0, 0,
                             f"box {box.as_xywh()} has no area")
    rows, cols = central_region(box, width, height, config.core_fraction)
    values = depth[rows, cols]
    if values.size == 0:
        return DepthEstimate(DepthStatus.OUTSIDE_IMAGE, nan, nan, 0.0, nan, 0, 0,
                             f"the centre of box {tuple(round(v, 1) for v in box.as_xywh())} is outside the "
                             f"{width}x{height} depth image")
    z = _valid_metres(values, config)
    n, n_valid = int(values.size), int(z.size)
    fraction = n_valid / n
    if n_valid == 0:
        return DepthEstimate(DepthStatus.NO_VALID_DEPTH, nan, nan, 0.0, nan, n, 0,
                             f"no valid depth in the box's central {n} pixels ({_invalid_reason(values, config)})")
    if n_valid < config.min_valid_pixels or fraction < config.min_valid_fraction:
        return DepthEstimate(DepthStatus.TOO_FEW_VALID, nan, nan, fraction, nan, n, n_valid,
                             f"only {n_valid} of the box's central {n} pixels have valid depth "
                             f"({100 * fraction:.0f} %; need {config.min_valid_pixels} and "
                             f"{100 * config.min_valid_fraction:.0f} %)")
    members = z[dominant_cluster(z, config)]
    centre = float(np.median(members))
    spread = MAD_TO_SIGMA * float(np.median(np.abs(members - centre)))
    return DepthEstimate(DepthStatus.OK, centre, spread, fraction, members.size / n_valid, n, n_valid)
