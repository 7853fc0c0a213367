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

Over time (``prior_depth_m``, kept per target by ``spatial.TargetLocator``): the target's last
depth picks its cluster even when an occluder now covers more of the region than the target's
visible rest, as long as the target keeps ``prior_min_share`` of the valid pixels; below that,
with a nearer surface dominating, the answer is OCCLUDED (no value) rather than the occluder's
depth. See :func:`target_cluster`.

Looking through the target: a ring, a "C" or a thin cross leaves mostly background in the
central region. When the dominant central cluster is also what surrounds the box (at least
``background_support`` of the valid pixels in a band just outside it lie within
``background_tolerance`` of its depth) and the *whole* box holds a
nearer cluster of at least ``hollow_min_share`` of its valid pixels that the surround hardly has
(at most ``hollow_max_surround`` of the band), the largest such cluster is the target
(``DepthEstimate.region == "box"``). An occluder reaching into the box from outside is in the
surround too, so this does not pick it. The check runs only when the answer would otherwise be the
dominant mode (no prior, or the prior's cluster is gone): a target followed by its prior keeps it.

Limits: without a prior, something covering more of the central region than the target (and not
behind it) wins; the cluster share and the spread show it. Too few valid pixels, or an occluded
target, give a :class:`DepthStatus` other than OK with the reason in words, never a made-up value.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, Optional

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
    OCCLUDED = "occluded"  # with a prior: a nearer surface covers the target's centre (target_cluster)


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
        prior_tolerance: with a prior depth, histogram peaks within this relative distance of it
            are the target's candidates (0.15 = 15 %).
        prior_min_share: the prior's cluster must hold this share of the valid pixels to win over
            the dominant mode.
        hollow_targets: look for a target the central region sees through (module doc).
        surround: inner and outer scale (about the box centre) of the band around the box that
            stands for the background.
        background_support: the dominant central cluster is background when this share of the
            band's valid pixels lies within ``background_tolerance`` (relative) of its depth.
        hollow_min_share: the nearer cluster must hold this share of the whole box's valid pixels
            and ``hollow_max_surround``: at most this share of the band's.
    """

    core_fraction: float = 0.5
    bin_fraction: float = 0.02
    valley_fraction: float = 0.15
    min_valid_fraction: float = 0.1
    min_valid_pixels: int = 4
    min_depth_m: float = 0.0
    max_depth_m: float = math.inf
    prior_tolerance: float = 0.15
    prior_min_share: float = 0.15
    hollow_targets: bool = True
    surround: tuple[float, float] = (1.1, 1.5)
    background_support: float = 0.5
    background_tolerance: float = 0.15
    hollow_min_share: float = 0.1
    hollow_max_surround: float = 0.25

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
        if self.prior_tolerance <= 0 or not 0.0 <= self.prior_min_share <= 1.0:
            raise ValueError(f"need prior_tolerance > 0 and prior_min_share in [0, 1], got {self.prior_tolerance}, "
                             f"{self.prior_min_share}")
        if not 1.0 <= self.surround[0] < self.surround[1]:
            raise ValueError(f"surround must be (inner, outer) scales with 1 <= inner < outer, got {self.surround}")
        if not all(0.0 < v <= 1.0 for v in (self.background_support, self.hollow_min_share, self.hollow_max_surround)):
            raise ValueError("background_support, hollow_min_share and hollow_max_surround must be in (0, 1]")
        if self.background_tolerance <= 0:
            raise ValueError(f"background_tolerance must be > 0, got {self.background_tolerance}")
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
        region: where the target's cluster was found: ``"centre"`` (the central region) or
            ``"box"`` (the whole box: the centre showed what is behind the target);
            ``cluster_fraction`` is a share of that region's valid pixels.
    """

    status: DepthStatus
    depth_m: float
    spread_m: float
    valid_fraction: float
    cluster_fraction: float
    num_pixels: int
    num_valid: int
    reason: str = ""
    region: str = "centre"

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


def _histogram(z: np.ndarray, config: DepthConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-depth histogram of ``z`` (metres, valid, non-empty): the [1, 2, 1]-smoothed counts, each
    value's bin (0 = the nearest) and the raw counts."""
    logz = np.log(z)
    bins = np.floor((logz - logz.min()) / math.log1p(config.bin_fraction)).astype(np.int64)
    counts = np.bincount(bins).astype(np.float64)
    padded = np.pad(counts, 1)
    return (padded[:-2] + 2.0 * padded[1:-1] + padded[2:]) / 4.0, bins, counts


def _cluster(smooth: np.ndarray, peak: int, valley_fraction: float) -> tuple[int, int]:
    """Bins ``lo..hi`` around ``peak`` while the smoothed count stays above the valley level."""
    floor = valley_fraction * smooth[peak]
    lo = peak
    while lo > 0 and smooth[lo - 1] > floor:
        lo -= 1
    hi = peak
    while hi + 1 < smooth.size and smooth[hi + 1] > floor:
        hi += 1
    return lo, hi


@dataclass(frozen=True)
class TargetCluster:
    """Which valid depths :func:`target_cluster` attributes to the target.

    Attributes:
        members: (n,) bool over the valid depths; all False when ``occluder_m`` is set.
        occluder_m: with a prior whose cluster is (nearly) gone while a surface nearer than it
            dominates: that surface's depth (metres); else None.
        occluder_share / target_share: shares of the valid pixels (set with ``occluder_m``).
    """

    members: np.ndarray
    occluder_m: Optional[float] = None
    occluder_share: float = 0.0
    target_share: float = 0.0
    dominant: bool = True  # the dominant mode's cluster (not chosen by the prior)


def target_cluster(z: np.ndarray, config: DepthConfig = DepthConfig(), prior_depth_m: Optional[float] = None
                   ) -> TargetCluster:
    """The target's cluster among the valid depths ``z`` (metres, non-empty).

    Without a prior: the dominant mode's cluster. With ``prior_depth_m`` (the target's depth a
    moment ago): the histogram peak nearest to it within ``prior_tolerance`` (relative), when its
    cluster holds at least ``prior_min_share`` of the valid pixels. When it does not and the
    dominant mode is *nearer* than the prior by more than the tolerance, something has moved in
    front of the target: no cluster, the occluder's depth is reported instead (an occluder does not
    take over the target's position). When the dominant mode is farther (the target shrank out of
    the region, or the box slid onto what is behind), the dominant mode is taken.
    """
    smooth, bins, counts = _histogram(z, config)
    dom_lo, dom_hi = _cluster(smooth, int(np.argmax(smooth)), config.valley_fraction)
    dominant = (bins >= dom_lo) & (bins <= dom_hi)
    if prior_depth_m is None or not math.isfinite(prior_depth_m) or prior_depth_m <= 0:
        return TargetCluster(dominant)
    step = math.log1p(config.bin_fraction)
    centre = (math.log(prior_depth_m) - float(np.log(z.min()))) / step
    reach = math.log1p(config.prior_tolerance) / step
    padded = np.pad(smooth, 1, constant_values=-1.0)
    peaks = np.flatnonzero((smooth > 0) & (smooth >= padded[:-2]) & (smooth >= padded[2:]))
    near = peaks[np.abs(peaks + 0.5 - centre) <= reach]
    share = 0.0
    if near.size:
        lo, hi = _cluster(smooth, int(near[np.argmin(np.abs(near + 0.5 - centre))]), config.valley_fraction)
        share = float(counts[lo:hi + 1].sum() / z.size)
        if share >= config.prior_min_share:
            return TargetCluster((bins >= lo) & (bins <= hi), dominant=False)
    front = float(np.median(z[dominant]))
    if front * (1.0 + config.prior_tolerance) < prior_depth_m:
        return TargetCluster(np.zeros(z.shape, bool), front, float(dominant.mean()), share, dominant=False)
    return TargetCluster(dominant)


def _box_values(depth: np.ndarray, box: Box, scale: float) -> tuple[np.ndarray, tuple[slice, slice]]:
    rows, cols = central_region(box, depth.shape[1], depth.shape[0], scale)
    return depth[rows, cols], (rows, cols)


def _surround_values(depth: np.ndarray, box: Box, config: DepthConfig) -> np.ndarray:
    """The valid depths (metres) of the band between the box scaled by ``surround[0]`` and ``[1]``."""
    outer, (rows, cols) = _box_values(depth, box, config.surround[1])
    _, (in_rows, in_cols) = _box_values(depth, box, config.surround[0])
    keep = np.ones(outer.shape, bool)
    keep[max(in_rows.start - rows.start, 0):max(in_rows.stop - rows.start, 0),
         max(in_cols.start - cols.start, 0):max(in_cols.stop - cols.start, 0)] = False
    return _valid_metres(outer[keep], config)


def through_target(depth: np.ndarray, box: Box, centre_members: np.ndarray, config: DepthConfig = DepthConfig()
                   ) -> Optional[np.ndarray]:
    """The target's depths (metres) when the central region looks through it (module doc), else None.

    Args:
        depth: the (H, W) depth image.
        box: the target's box.
        centre_members: depths (metres) of the dominant cluster of the central region.
    """
    ring = _surround_values(depth, box, config)
    if ring.size < config.min_valid_pixels:
        return None
    behind = float(np.median(centre_members))
    same = (ring >= behind / (1.0 + config.background_tolerance)) & (ring <= behind * (1.0 + config.background_tolerance))
    if np.mean(same) < config.background_support:
        return None  # the centre is not the surface that surrounds the box
    values, _ = _box_values(depth, box, 1.0)
    whole = _valid_metres(values, config)
    if whole.size < config.min_valid_pixels:
        return None
    smooth, bins, counts = _histogram(whole, config)
    padded = np.pad(smooth, 1, constant_values=-1.0)
    best: Optional[np.ndarray] = None
    for peak in np.flatnonzero((smooth > 0) & (smooth >= padded[:-2]) & (smooth >= padded[2:])):
        lo, hi = _cluster(smooth, int(peak), config.valley_fraction)
        if counts[lo:hi + 1].sum() < config.hollow_min_share * whole.size:
            continue
        members = whole[(bins >= lo) & (bins <= hi)]
        if float(np.median(members)) * (1.0 + config.prior_tolerance) >= behind:
            continue  # not in front of the background the centre shows
        if np.mean((ring >= members.min()) & (ring <= members.max())) > config.hollow_max_surround:
            continue  # around the box as well: background or an occluder, not the target
        if best is None or members.size > best.size:
            best = members
    return best


def estimate_depth(depth: np.ndarray, box: Box, config: DepthConfig = DepthConfig(),
                   prior_depth_m: Optional[float] = None) -> DepthEstimate:
    """The target's depth in ``box`` (image pixels, ``types.Box``) of an aligned depth image;
    ``prior_depth_m``: the target's recent depth, if known (see :func:`target_cluster`).

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
    cluster = target_cluster(z, config, prior_depth_m)
    if cluster.occluder_m is not None:
        return DepthEstimate(DepthStatus.OCCLUDED, nan, nan, fraction, nan, n, n_valid,
                             f"occluded: a surface at {cluster.occluder_m:.2f} m covers "
                             f"{100 * cluster.occluder_share:.0f} % of the valid pixels in the box's centre; "
                             f"the target (last at {prior_depth_m:.2f} m) holds {100 * cluster.target_share:.0f} %")
    members = z[cluster.members]
    region, share = "centre", members.size / n_valid
    if cluster.dominant and config.hollow_targets:
        seen_through = through_target(depth, box, members, config)
        if seen_through is not None:
            values, _ = _box_values(depth, box, 1.0)
            region, share = "box", seen_through.size / _valid_metres(values, config).size
            members = seen_through
    centre = float(np.median(members))
    spread = MAD_TO_SIGMA * float(np.median(np.abs(members - centre)))
    return DepthEstimate(DepthStatus.OK, centre, spread, fraction, share, n, n_valid, region=region)
