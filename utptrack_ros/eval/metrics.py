"""Single-object tracking metrics and latency statistics (pure numpy, no I/O).

Implements method.md section 10 and ros-conventions.md section 6. Every result carries a
``convention`` string naming the rules below, and ``to_dict()`` gives JSON-ready values
(non-finite numbers become ``None``).

Boxes are ``x, y, w, h`` in image pixels (``types.Box``). Inputs per sequence:

* ``pred_xywh`` (N, 4) float: the tracker's box per frame; a row with a non-finite value means
  *no output for that frame* (before initialisation, or an output that never arrived).
* ``gt_xywh`` (N, 4) float: ground truth, NaN rows where absent; ``absent`` (N,) bool flags.

Conventions (``CONVENTION_OTB``, ``CONVENTION_GOT10K``):

* **Valid frame**: GT finite, ``w > 0`` and ``h > 0`` and not flagged absent.
* **Init frame**: the first valid frame (frame 0 on OTB/LaSOT/GOT-10k). Its prediction is
  overwritten by the GT (OTB/pytracking rule). Predictions before it are not expected.
* **Degenerate predictions**: a finite prediction with ``w <= 0`` or ``h <= 0`` is replaced by the
  previous frame's (already corrected) prediction, in frame order (pytracking
  ``calc_seq_err_robust``; pytracking raises on negative sizes, we treat them like zero).
* **Missed frames**: frames after the init frame without a finite prediction (the output never
  arrived). They count as failures and are reported as ``num_missed_frames``.
* **OTB / LaSOT / pytracking**: IoU is continuous (pytracking's pixel-inclusive ``+1`` forms
  cancel). Invalid and missed frames get IoU ``-1`` and centre errors ``inf`` (failures in every
  curve; unlike pytracking, which sets the normalised error of invalid non-LaSOT frames to ``-1``,
  i.e. a success). Success curve: fraction of *all* N frames with IoU **>** t, t in 0:0.05:1
  (21 thresholds). AUC = plain mean of the 21 values x 100. OP50/OP75: the curve at 0.5/0.75.
  Precision: centre = ``xy + (wh - 1) / 2``, fraction of frames with distance **<=** t px,
  t = 0..50; the score is the value at 20 px. Normalised precision (pytracking/LaSOT variant):
  both centres divided by the GT ``w, h`` before the distance; t = 0:0.01:0.5, value at 0.20.
  Aggregation: curves are averaged over sequences (each sequence weighs the same); scores are
  taken from the averaged curves.
* **GOT-10k**: per-frame IoU over the valid frames *after* the init frame (the first frame and
  absent frames are dropped); both boxes are clipped to the image ``[0, W] x [0, H]`` (a true
  intersection with the image; see ``clip_xywh_to_image``) when the image size is known; a
  missed frame has IoU 0. AO = mean IoU x 100, SR0.5 / SR0.75 = fraction with IoU > 0.5 / 0.75
  x 100, success curve over 101 thresholds 0:0.01:1 (IoU > t). Aggregation is frame-weighted:
  the IoUs of all sequences are pooled.
* **Latency** (``CONVENTION_LATENCY``): ros2_benchmark ``BasicPerformanceMetrics`` vocabulary.
  ``MEAN_PLAYBACK_FRAME_RATE`` = frames sent / (last sent - first sent);
  ``MEAN_FRAME_RATE`` = frames received / (last received - first received) (ros2_benchmark
  divides the count, not the count - 1, by the span); ``NUM_MISSED_FRAMES`` = sent - received;
  latency = received - sent per received frame (mean, p50, p95, min, max; ``numpy.percentile``
  linear interpolation); jitter = ``|diff(diff(received))|`` per stream (mean, min, max, std).
  Several streams (sequences) are pooled: counts and spans add up, per-frame values are pooled.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..boxes import iou_xywh
from ..errors import InputError

logger = logging.getLogger(__name__)

OTB_IOU_THRESHOLDS: np.ndarray = np.linspace(0.0, 1.0, 21)
PRECISION_THRESHOLDS_PX: np.ndarray = np.arange(0, 51, dtype=np.float64)
NORM_PRECISION_THRESHOLDS: np.ndarray = np.arange(0, 51, dtype=np.float64) / 100.0
GOT10K_IOU_THRESHOLDS: np.ndarray = np.linspace(0.0, 1.0, 101)
PRECISION_INDEX = 20  # 20 px on the precision curve, 0.20 on the normalised one

CONVENTION_OTB = (
    "otb-lasot-pytracking: success IoU>t, t=0:0.05:1 (21), AUC=mean*100, sequences weighted "
    "equally, init-frame prediction := GT (kept in the denominator), invalid/absent GT and missed "
    "frames = failures (IoU -1, centre error inf); precision centre=xy+(wh-1)/2, dist<=t px, t=0..50, "
    "score at 20 px; normalised precision (pytracking) centres/GT wh, t=0:0.01:0.5, score at 0.20; "
    "predictions with w or h <= 0 replaced by the previous frame's"
)
CONVENTION_GOT10K = (
    "got10k: AO=mean IoU*100 over valid frames after the init frame, frame-weighted across "
    "sequences, absent frames dropped, boxes clipped to the image, missed frames IoU 0; "
    "SR0.5/SR0.75 = IoU>0.5/0.75 *100; success curve IoU>t, t=0:0.01:1 (101)"
)
CONVENTION_LATENCY = (
    "ros2_benchmark BasicPerformanceMetrics: MEAN_PLAYBACK_FRAME_RATE=sent/(last-first sent), "
    "MEAN_FRAME_RATE=received/(last-first received), NUM_MISSED_FRAMES=sent-received, "
    "latency=received-sent (ms), jitter=|diff(diff(received))| (ms); streams pooled"
)


# --------------------------------------------------------------------------------------------
# Per-frame building blocks
# --------------------------------------------------------------------------------------------


def _as_boxes(boxes: Any, name: str) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InputError(f"{name}: expected an (N, 4) array of x, y, w, h, got shape {arr.shape}")
    return arr


def _as_absent(absent: Any, n: int) -> np.ndarray:
    if absent is None:
        return np.zeros(n, dtype=bool)
    arr = np.asarray(absent).astype(bool).reshape(-1)
    if arr.shape[0] != n:
        raise InputError(f"absent: expected {n} flags (one per frame), got {arr.shape[0]}")
    return arr


def valid_gt_mask(gt_xywh: Any, absent: Any = None) -> np.ndarray:
    """Frames whose ground truth can be scored.

    Args:
        gt_xywh: (N, 4) ground-truth boxes, NaN rows where absent.
        absent: (N,) target-absent flags, or None.

    Returns:
        (N,) bool: GT finite, ``w > 0``, ``h > 0`` and not flagged absent.
    """
    gt = _as_boxes(gt_xywh, "gt_xywh")
    absent_arr = _as_absent(absent, gt.shape[0])
    with np.errstate(invalid="ignore"):
        return np.isfinite(gt).all(axis=1) & (gt[:, 2] > 0) & (gt[:, 3] > 0) & ~absent_arr


def first_valid_index(gt_xywh: Any, absent: Any = None) -> int:
    """Index of the first frame with a valid GT box (the frame a tracker is initialised on).

    Raises:
        InputError: no frame of the sequence has a valid GT box.
    """
    valid = valid_gt_mask(gt_xywh, absent)
    if not valid.any():
        raise InputError("sequence has no frame with a valid ground-truth box; cannot evaluate it")
    return int(np.argmax(valid))


def center_xy_inclusive(boxes_xywh: np.ndarray) -> np.ndarray:
    """Centres in the OTB/pytracking pixel-inclusive convention: ``xy + (wh - 1) / 2``, (N, 2)."""
    return boxes_xywh[:, :2] + (boxes_xywh[:, 2:4] - 1.0) / 2.0


def clip_xywh_to_image(boxes_xywh: np.ndarray, width: float, height: float) -> np.ndarray:
    """Intersect ``xywh`` boxes with the image ``[0, W] x [0, H]``; (N, 4), sizes >= 0.

    Note: the PyPI ``got10k`` toolkit clips ``x`` into ``[0, W]`` and then ``w`` into
    ``[0, W - x]``; for a box sticking out on the left or top that *shifts* it instead of cutting
    it. Both agree for boxes that only leave the image on the right or bottom.
    """
    b = np.asarray(boxes_xywh, dtype=np.float64)
    x1 = np.clip(b[:, 0], 0.0, width)
    y1 = np.clip(b[:, 1], 0.0, height)
    x2 = np.clip(b[:, 0] + b[:, 2], 0.0, width)
    y2 = np.clip(b[:, 1] + b[:, 3], 0.0, height)
    return np.stack([x1, y1, np.maximum(x2 - x1, 0.0), np.maximum(y2 - y1, 0.0)], axis=1)


@dataclass(frozen=True)
class PreparedPredictions:
    """Predictions after the init-frame and degenerate-box rules.

    Attributes:
        boxes_xywh: (N, 4) corrected predictions (NaN rows: no output).
        missed: (N,) bool, frames after the init frame without an output.
        num_replaced: predictions with ``w`` or ``h <= 0`` replaced by the previous frame's.
        init_index: the init frame.
    """

    boxes_xywh: np.ndarray
    missed: np.ndarray
    num_replaced: int
    init_index: int


def prepare_predictions(pred_xywh: Any, gt_xywh: Any, absent: Any = None) -> PreparedPredictions:
    """Apply the init-frame overwrite and the pytracking zero-size rule (module docstring).

    Args:
        pred_xywh: (N, 4) predictions; non-finite rows mean "no output".
        gt_xywh: (N, 4) ground truth, NaN where absent.
        absent: (N,) target-absent flags, or None.

    Returns:
        The corrected predictions, the missed-frame mask and the number of replaced boxes.
    """
    pred = _as_boxes(pred_xywh, "pred_xywh").copy()
    gt = _as_boxes(gt_xywh, "gt_xywh")
    if pred.shape != gt.shape:
        raise InputError(f"pred_xywh has {pred.shape[0]} frames but gt_xywh has {gt.shape[0]}")
    init = first_valid_index(gt, absent)
    has_output = np.isfinite(pred).all(axis=1)
    missed = ~has_output
    missed[: init + 1] = False
    pred[init] = gt[init]
    with np.errstate(invalid="ignore"):
        degenerate = has_output & ((pred[:, 2] <= 0) | (pred[:, 3] <= 0))
    degenerate[: init + 1] = False
    for i in np.flatnonzero(degenerate):
        pred[i] = pred[i - 1]
    return PreparedPredictions(pred, missed, int(degenerate.sum()), init)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


def _finite_or_none(value: float) -> Optional[float]:
    value = float(value)
    return value if math.isfinite(value) else None


def _list(arr: np.ndarray) -> list[Optional[float]]:
    return [_finite_or_none(v) for v in np.asarray(arr, dtype=np.float64).reshape(-1)]


def _mean_pct(mask: np.ndarray) -> float:
    return float(np.mean(mask) * 100.0) if mask.size else float("nan")


class _CurveScores:
    """Scores read off the OTB curves (percent), shared by sequence and aggregate results."""

    success_curve: np.ndarray
    precision_curve: np.ndarray
    norm_precision_curve: np.ndarray

    @property
    def auc(self) -> float:
        """Success AUC: plain mean of the 21-threshold success curve."""
        return float(np.mean(self.success_curve) * 100.0)

    @property
    def precision(self) -> float:
        """Precision at 20 px."""
        return float(self.precision_curve[PRECISION_INDEX] * 100.0)

    @property
    def norm_precision(self) -> float:
        """Normalised precision at 0.20."""
        return float(self.norm_precision_curve[PRECISION_INDEX] * 100.0)

    @property
    def op50(self) -> float:
        return float(self.success_curve[10] * 100.0)

    @property
    def op75(self) -> float:
        return float(self.success_curve[15] * 100.0)


@dataclass(frozen=True)
class SequenceMetrics(_CurveScores):
    """Metrics of one tracker on one sequence (module docstring for the rules).

    Attributes:
        name: sequence name.
        num_frames: N, all frames of the sequence.
        init_index: the init frame (first valid GT).
        num_valid_frames: frames with a valid GT box.
        num_missed_frames: frames after the init frame whose output never arrived.
        num_replaced_boxes: predictions with ``w`` or ``h <= 0`` replaced by the previous one.
        attributes: challenge-attribute flags of the sequence.
        iou: (N,) OTB per-frame IoU; -1 on invalid and missed frames.
        center_error_px: (N,) pixel-inclusive centre distance; inf on invalid and missed frames.
        norm_center_error: (N,) centre distance in GT-size units; inf on invalid/missed frames.
        success_curve: (21,) fraction of frames with IoU > t.
        precision_curve: (51,) fraction with centre error <= t px.
        norm_precision_curve: (51,) fraction with normalised centre error <= t.
        got10k_iou: (M,) IoUs of the frames GOT-10k scores (valid, after init, clipped).
        image_size: (W, H) used for GOT-10k clipping, or None (no clipping).
    """

    name: str
    num_frames: int
    init_index: int
    num_valid_frames: int
    num_missed_frames: int
    num_replaced_boxes: int
    attributes: Mapping[str, bool]
    iou: np.ndarray
    center_error_px: np.ndarray
    norm_center_error: np.ndarray
    success_curve: np.ndarray
    precision_curve: np.ndarray
    norm_precision_curve: np.ndarray
    got10k_iou: np.ndarray
    image_size: Optional[tuple[int, int]] = None
    convention: str = field(default=CONVENTION_OTB + " | " + CONVENTION_GOT10K)

    @property
    def ao(self) -> float:
        """GOT-10k average overlap in percent (NaN without scored frames)."""
        return float(np.mean(self.got10k_iou) * 100.0) if self.got10k_iou.size else float("nan")

    @property
    def sr50(self) -> float:
        return _mean_pct(self.got10k_iou > 0.5)

    @property
    def sr75(self) -> float:
        return _mean_pct(self.got10k_iou > 0.75)

    def to_dict(self, per_frame: bool = True) -> dict[str, Any]:
        """JSON-ready dict: scores (percent), counts, curves and (optionally) per-frame errors."""
        out: dict[str, Any] = {
            "name": self.name,
            "convention": self.convention,
            "num_frames": self.num_frames,
            "init_index": self.init_index,
            "num_valid_frames": self.num_valid_frames,
            "num_missed_frames": self.num_missed_frames,
            "num_replaced_boxes": self.num_replaced_boxes,
            "attributes": {k: bool(v) for k, v in self.attributes.items()},
            "image_size": list(self.image_size) if self.image_size else None,
            "auc": _finite_or_none(self.auc),
            "precision": _finite_or_none(self.precision),
            "norm_precision": _finite_or_none(self.norm_precision),
            "op50": _finite_or_none(self.op50),
            "op75": _finite_or_none(self.op75),
            "ao": _finite_or_none(self.ao),
            "sr50": _finite_or_none(self.sr50),
            "sr75": _finite_or_none(self.sr75),
            "num_got10k_frames": int(self.got10k_iou.size),
            "success_curve": _list(self.success_curve),
            "precision_curve": _list(self.precision_curve),
            "norm_precision_curve": _list(self.norm_precision_curve),
        }
        if per_frame:
            out["iou"] = _list(self.iou)
            out["center_error_px"] = _list(self.center_error_px)
            out["norm_center_error"] = _list(self.norm_center_error)
        return out


@dataclass(frozen=True)
class AggregateMetrics(_CurveScores):
    """Metrics pooled over several sequences (all of them, or those with one attribute).

    OTB-style curves are averaged over sequences; GOT-10k numbers pool all scored frames.

    Attributes:
        name: ``all`` or the attribute name.
        sequences: names of the sequences pooled.
        num_frames / num_valid_frames / num_missed_frames / num_got10k_frames: sums.
        success_curve / precision_curve / norm_precision_curve: sequence means.
        got10k_success_curve: (101,) fraction of pooled GOT-10k frames with IoU > t.
        ao / sr50 / sr75: frame-weighted GOT-10k scores in percent.
    """

    name: str
    sequences: tuple[str, ...]
    num_frames: int
    num_valid_frames: int
    num_missed_frames: int
    num_got10k_frames: int
    success_curve: np.ndarray
    precision_curve: np.ndarray
    norm_precision_curve: np.ndarray
    got10k_success_curve: np.ndarray
    ao: float
    sr50: float
    sr75: float
    convention: str = field(default=CONVENTION_OTB + " | " + CONVENTION_GOT10K)

    @property
    def num_sequences(self) -> int:
        return len(self.sequences)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of scores (percent), counts and curves."""
        return {
            "name": self.name,
            "convention": self.convention,
            "num_sequences": self.num_sequences,
            "sequences": list(self.sequences),
            "num_frames": self.num_frames,
            "num_valid_frames": self.num_valid_frames,
            "num_missed_frames": self.num_missed_frames,
            "num_got10k_frames": self.num_got10k_frames,
            "auc": _finite_or_none(self.auc),
            "precision": _finite_or_none(self.precision),
            "norm_precision": _finite_or_none(self.norm_precision),
            "op50": _finite_or_none(self.op50),
            "op75": _finite_or_none(self.op75),
            "ao": _finite_or_none(self.ao),
            "sr50": _finite_or_none(self.sr50),
            "sr75": _finite_or_none(self.sr75),
            "success_curve": _list(self.success_curve),
            "precision_curve": _list(self.precision_curve),
            "norm_precision_curve": _list(self.norm_precision_curve),
            "got10k_success_curve": _list(self.got10k_success_curve),
            "iou_thresholds": _list(OTB_IOU_THRESHOLDS),
            "precision_thresholds_px": _list(PRECISION_THRESHOLDS_PX),
            "norm_precision_thresholds": _list(NORM_PRECISION_THRESHOLDS),
        }


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def evaluate_sequence(
    pred_xywh: Any,
    gt_xywh: Any,
    absent: Any = None,
    *,
    image_size: Optional[tuple[int, int]] = None,
    name: str = "",
    attributes: Optional[Mapping[str, Any]] = None,
) -> SequenceMetrics:
    """Score one sequence under the OTB/pytracking and GOT-10k conventions.

    Args:
        pred_xywh: (N, 4) predictions in image px; non-finite rows = no output for that frame.
        gt_xywh: (N, 4) ground truth, NaN rows where absent.
        absent: (N,) target-absent flags (1 = absent), or None.
        image_size: (W, H) of the frames, for GOT-10k clipping; None disables clipping.
        name: sequence name (carried into the result).
        attributes: the sequence's attributes; challenge flags are read with
            ``attribute_flags``.

    Returns:
        The per-sequence metrics.

    Raises:
        InputError: shapes disagree, or no frame has a valid GT box.
    """
    gt = _as_boxes(gt_xywh, "gt_xywh")
    n = gt.shape[0]
    valid = valid_gt_mask(gt, absent)
    prep = prepare_predictions(pred_xywh, gt, absent)
    pred = prep.boxes_xywh
    scored = valid & np.isfinite(pred).all(axis=1)  # valid GT and an output

    iou = np.full(n, -1.0)
    cle = np.full(n, np.inf)
    ncle = np.full(n, np.inf)
    if scored.any():
        p, g = pred[scored], gt[scored]
        iou[scored] = iou_xywh(p, g)
        pc, gc = center_xy_inclusive(p), center_xy_inclusive(g)
        cle[scored] = np.sqrt(np.sum((pc - gc) ** 2, axis=1))
        ncle[scored] = np.sqrt(np.sum(((pc - gc) / g[:, 2:4]) ** 2, axis=1))

    success = np.mean(iou[:, None] > OTB_IOU_THRESHOLDS[None, :], axis=0)
    precision = np.mean(cle[:, None] <= PRECISION_THRESHOLDS_PX[None, :], axis=0)
    norm_precision = np.mean(ncle[:, None] <= NORM_PRECISION_THRESHOLDS[None, :], axis=0)

    got_frames = valid.copy()
    got_frames[: prep.init_index + 1] = False
    got_iou = np.zeros(int(got_frames.sum()))
    got_has_output = np.isfinite(pred[got_frames]).all(axis=1)
    if got_has_output.any():
        p = pred[got_frames][got_has_output]
        g = gt[got_frames][got_has_output]
        if image_size is not None:
            p = clip_xywh_to_image(p, *image_size)
            g = clip_xywh_to_image(g, *image_size)
        got_iou[got_has_output] = iou_xywh(p, g)

    if prep.num_replaced:
        logger.debug("%s: %d predictions with w or h <= 0 replaced", name, prep.num_replaced)
    return SequenceMetrics(
        name=name,
        num_frames=n,
        init_index=prep.init_index,
        num_valid_frames=int(valid.sum()),
        num_missed_frames=int(prep.missed.sum()),
        num_replaced_boxes=prep.num_replaced,
        attributes=attribute_flags(attributes or {}),
        iou=iou,
        center_error_px=cle,
        norm_center_error=ncle,
        success_curve=success,
        precision_curve=precision,
        norm_precision_curve=norm_precision,
        got10k_iou=got_iou,
        image_size=(int(image_size[0]), int(image_size[1])) if image_size is not None else None,
    )


def attribute_flags(attributes: Mapping[str, Any]) -> dict[str, bool]:
    """Challenge-attribute flags from a sequence's ``attributes`` mapping.

    With a ``challenges`` entry (the generator's ``{name: strength}``, or a list of names) the
    flags are exactly those challenges: set where the strength is > 0 or True. Without one,
    top-level boolean values are the flags (e.g. ``{"occlusion": True}``); other values (seeds,
    sizes, text) are not.
    """
    challenges = attributes.get("challenges")
    if isinstance(challenges, Mapping):
        return {str(k): _truthy_strength(v) for k, v in challenges.items()}
    if isinstance(challenges, (list, tuple)):
        return {str(k): True for k in challenges}
    return {str(k): bool(v) for k, v in attributes.items() if isinstance(v, (bool, np.bool_))}


def _truthy_strength(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    try:
        return float(value) > 0.0
    except (TypeError, ValueError):
        return False


def aggregate(metrics: Sequence[SequenceMetrics], name: str = "all") -> AggregateMetrics:
    """Pool per-sequence metrics: OTB curves averaged per sequence, GOT-10k frames pooled.

    Raises:
        InputError: ``metrics`` is empty.
    """
    if not metrics:
        raise InputError(f"aggregate {name!r}: no sequences to pool")
    got = np.concatenate([m.got10k_iou for m in metrics])
    return AggregateMetrics(
        name=name,
        sequences=tuple(m.name for m in metrics),
        num_frames=sum(m.num_frames for m in metrics),
        num_valid_frames=sum(m.num_valid_frames for m in metrics),
        num_missed_frames=sum(m.num_missed_frames for m in metrics),
        num_got10k_frames=int(got.size),
        success_curve=np.mean([m.success_curve for m in metrics], axis=0),
        precision_curve=np.mean([m.precision_curve for m in metrics], axis=0),
        norm_precision_curve=np.mean([m.norm_precision_curve for m in metrics], axis=0),
        got10k_success_curve=(
            np.mean(got[:, None] > GOT10K_IOU_THRESHOLDS[None, :], axis=0)
            if got.size
            else np.full(GOT10K_IOU_THRESHOLDS.shape, np.nan)
        ),
        ao=float(np.mean(got) * 100.0) if got.size else float("nan"),
        sr50=_mean_pct(got > 0.5),
        sr75=_mean_pct(got > 0.75),
    )


def aggregate_by_attribute(metrics: Sequence[SequenceMetrics]) -> dict[str, AggregateMetrics]:
    """One ``AggregateMetrics`` per challenge attribute set on at least one sequence (sorted)."""
    names = sorted({k for m in metrics for k, v in m.attributes.items() if v})
    return {a: aggregate([m for m in metrics if m.attributes.get(a)], name=a) for a in names}


# --------------------------------------------------------------------------------------------
# Latency
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyStats:
    """Timing of frames through a tracker or a node, in ros2_benchmark vocabulary.

    Attributes:
        num_frames_sent: NUM_FRAMES_SENT.
        num_frames_received: frames whose output arrived.
        num_missed_frames: NUM_MISSED_FRAMES (sent - received).
        num_dropped_frames: frames the node reported as dropped (its own counter), if known.
        mean_playback_frame_rate_hz: MEAN_PLAYBACK_FRAME_RATE.
        mean_frame_rate_hz: MEAN_FRAME_RATE (output rate).
        received_duration_ms: RECEIVED_DURATION (summed over streams).
        first_sent_received_latency_ms / last_sent_received_latency_ms: of the first stream's
            first frames and the last stream's last frames.
        latency_*_ms: received - sent over received frames.
        mean_processing_rate_hz: 1000 / latency_mean_ms (the rate a tracker that only processes
            would reach; equals throughput only when frames are processed back to back).
        jitter_*_ms: |second difference| of receive times, pooled over streams.
        latencies_ms: (K,) per received frame, for histograms.
    """

    num_frames_sent: int
    num_frames_received: int
    num_missed_frames: int
    num_dropped_frames: Optional[int]
    mean_playback_frame_rate_hz: float
    mean_frame_rate_hz: float
    received_duration_ms: float
    first_sent_received_latency_ms: float
    last_sent_received_latency_ms: float
    latency_mean_ms: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_min_ms: float
    latency_max_ms: float
    mean_processing_rate_hz: float
    jitter_mean_ms: float
    jitter_min_ms: float
    jitter_max_ms: float
    jitter_std_ms: float
    latencies_ms: np.ndarray
    convention: str = CONVENTION_LATENCY

    def to_dict(self, per_frame: bool = False) -> dict[str, Any]:
        """JSON-ready dict; ``per_frame`` adds the latency list."""
        out: dict[str, Any] = {"convention": self.convention}
        for key in (
            "num_frames_sent",
            "num_frames_received",
            "num_missed_frames",
            "num_dropped_frames",
        ):
            out[key] = getattr(self, key)
        for key in (
            "mean_playback_frame_rate_hz",
            "mean_frame_rate_hz",
            "received_duration_ms",
            "first_sent_received_latency_ms",
            "last_sent_received_latency_ms",
            "latency_mean_ms",
            "latency_p50_ms",
            "latency_p95_ms",
            "latency_min_ms",
            "latency_max_ms",
            "mean_processing_rate_hz",
            "jitter_mean_ms",
            "jitter_min_ms",
            "jitter_max_ms",
            "jitter_std_ms",
        ):
            out[key] = _finite_or_none(getattr(self, key))
        if per_frame:
            out["latencies_ms"] = _list(self.latencies_ms)
        return out


def _stream(sent_ns: Any, received_ns: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sent int64 (N,), received int64 (N,), arrived bool (N,)); missing = None/NaN/negative."""
    sent = np.asarray(sent_ns, dtype=np.int64).reshape(-1)
    raw = list(received_ns)
    if len(raw) != sent.shape[0]:
        raise InputError(f"received_ns has {len(raw)} entries but sent_ns has {sent.shape[0]}")
    arrived = np.array(
        [v is not None and not (isinstance(v, float) and not math.isfinite(v)) and v >= 0 for v in raw],
        dtype=bool,
    )
    received = np.array([int(v) if ok else 0 for v, ok in zip(raw, arrived)], dtype=np.int64)
    return sent, received, arrived


def latency_stats(
    streams: Sequence[tuple[Any, Any]],
    *,
    num_dropped_frames: Optional[int] = None,
) -> LatencyStats:
    """ros2_benchmark-style statistics over one or more streams (e.g. one per sequence).

    Args:
        streams: ``(sent_ns, received_ns)`` pairs: per frame, when it was sent (or its stamp)
            and when its output arrived, in integer nanoseconds on one clock. A received entry
            that is None, NaN or negative marks a frame whose output never arrived.
        num_dropped_frames: the node's own drop counter, reported as is.

    Returns:
        The pooled statistics (NaN where a quantity needs more frames than there are).
    """
    nan = float("nan")
    sent_total = received_total = 0
    sent_span_ms = received_span_ms = 0.0
    latencies: list[np.ndarray] = []
    jitters: list[np.ndarray] = []
    first_latency = last_latency = nan
    sent_spans = received_spans = 0
    parsed = [_stream(s, r) for s, r in streams]
    for k, (sent, received, arrived) in enumerate(parsed):
        sent_total += sent.size
        received_total += int(arrived.sum())
        if sent.size > 1:
            sent_span_ms += (sent[-1] - sent[0]) / 1e6
            sent_spans += sent.size
        recv = received[arrived]
        if recv.size > 1:
            received_span_ms += (recv[-1] - recv[0]) / 1e6
            received_spans += recv.size
        if recv.size:
            lat = (recv - sent[arrived]) / 1e6
            latencies.append(lat)
            if k == 0:
                first_latency = (recv[0] - sent[0]) / 1e6
            last_latency = (recv[-1] - sent[-1]) / 1e6
        if recv.size > 2:
            jitters.append(np.abs(np.diff(np.diff(recv.astype(np.float64)))) / 1e6)
    lat_all = np.concatenate(latencies) if latencies else np.zeros(0)
    jit_all = np.concatenate(jitters) if jitters else np.zeros(0)

    def stat(arr: np.ndarray, fn: Any) -> float:
        return float(fn(arr)) if arr.size else nan

    lat_mean = stat(lat_all, np.mean)
    return LatencyStats(
        num_frames_sent=int(sent_total),
        num_frames_received=int(received_total),
        num_missed_frames=int(sent_total - received_total),
        num_dropped_frames=num_dropped_frames,
        mean_playback_frame_rate_hz=sent_spans / (sent_span_ms / 1e3) if sent_span_ms > 0 else nan,
        mean_frame_rate_hz=received_spans / (received_span_ms / 1e3) if received_span_ms > 0 else nan,
        received_duration_ms=received_span_ms,
        first_sent_received_latency_ms=float(first_latency),
        last_sent_received_latency_ms=float(last_latency),
        latency_mean_ms=lat_mean,
        latency_p50_ms=stat(lat_all, lambda a: np.percentile(a, 50)),
        latency_p95_ms=stat(lat_all, lambda a: np.percentile(a, 95)),
        latency_min_ms=stat(lat_all, np.min),
        latency_max_ms=stat(lat_all, np.max),
        mean_processing_rate_hz=1000.0 / lat_mean if lat_mean > 0 else nan,
        jitter_mean_ms=stat(jit_all, np.mean),
        jitter_min_ms=stat(jit_all, np.min),
        jitter_max_ms=stat(jit_all, np.max),
        jitter_std_ms=stat(jit_all, np.std),
        latencies_ms=lat_all,
    )
