"""One tracker on one sequence: the tracking loop (``run_tracker``, ``run_sequence``) and what it
records (``SequenceRun``, also built from outputs recorded elsewhere: ``SequenceRun.from_outputs``).

**Init rule** (the one rule of every evaluation: offline rows, live replays, training
validation): the tracker is initialised on the **first annotated frame**, the first frame with a
valid GT box (finite, ``w > 0``, ``h > 0``, not flagged absent: ``metrics.first_valid_index``),
with that GT box, and tracks every later frame. Frames before the init frame have no prediction
(NaN). Per frame it records box, confidence, state, kept-token fraction, search region + search
keep mask (when the tracker reports them) and call time; and on RGB-D sequences with a known
camera the target's 3D point from the box (``eval.position3d``), scored against the sequence's
ground-truth positions when it has them.

Trackers under test (duck-typed, one dispatch point: ``_FrameTracker``):

* core: ``init(image, box, aux=None, modality=..., prompt=None)`` and ``track(image, aux=None)``
  returning an object with ``.box``, ``.confidence``, ``.state``, ``.kept_fraction`` and
  optionally ``.search_region`` / ``.search_keep_mask`` (``utptrack_ros.tracker.Tracker``).
* peer: ``init(image_rgb, box)`` and ``update(image_rgb) -> (Box | None, ok)``
  (``eval.peers.OpenCVTracker``). A failed update keeps the previous box, state ``lost``,
  confidence 0, and is counted in ``num_failed_updates``.

A frame whose call raises ``UTPTrackError``/``ValueError``/``cv2.error`` has no output (a missed
frame: failure in the metrics, counted in ``NUM_MISSED_FRAMES``); a failed init leaves the whole
sequence without outputs and records the error. Other exceptions are bugs and abort the run.

Offline latency (``metrics.latency_stats``): per frame after the init frame, sent = just before
the tracker call, received = when it returns (``time.perf_counter_ns``); so latency = call time
and ``MEAN_FRAME_RATE`` includes the frame loading between calls. The init call is timed apart.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import cv2
import numpy as np

from ..data.camera import target_positions
from ..errors import ConfigError, UTPTrackError
from ..types import Box, Modality
from . import metrics as M
from . import position3d as P
from .sources import SequenceSource, describe_source, open_source
from .specs import TrackerSpec

logger = logging.getLogger(__name__)


@dataclass
class SequenceRun:
    """Everything recorded for one tracker on one sequence (arrays are per frame, N rows).

    ``boxes_xywh`` NaN rows = no output; ``sent_ns``/``received_ns`` -1 = not part of the
    latency stream (frames up to the init frame) / output never arrived. ``run_tracker`` makes
    them offline; ``from_outputs`` builds one from outputs recorded elsewhere (live replay).
    """

    tracker: str
    sequence: str
    source: str
    image_size: tuple[int, int]
    gt_xywh: np.ndarray
    absent: np.ndarray
    attributes: dict[str, Any]
    modalities: list[str]
    prompt: Optional[str]
    aux_used: str
    prompt_used: bool
    init_index: int
    boxes_xywh: np.ndarray
    confidence: np.ndarray
    state: list[str]
    kept_fraction: np.ndarray
    time_ms: np.ndarray
    stamp_ns: np.ndarray
    sent_ns: np.ndarray
    received_ns: np.ndarray
    failed_update: np.ndarray
    search_region: Optional[np.ndarray] = None
    search_keep_mask: Optional[np.ndarray] = None
    error: Optional[str] = None
    frame_errors: list[str] = field(default_factory=list)
    num_dropped_frames: Optional[int] = None  # the node's own drop counter (live replays)
    points: Optional[P.PointTrack] = None  # the target's 3D point per frame (RGB-D sequences with a camera)
    gt_points_xyz: Optional[np.ndarray] = None  # (N, 3) ground-truth positions, when the sequence has them
    points_error: Optional[str] = None  # why the points could not be computed

    @property
    def num_frames(self) -> int:
        return int(self.gt_xywh.shape[0])

    @property
    def init_time_ms(self) -> float:
        return float(self.time_ms[self.init_index])

    def metrics(self) -> M.SequenceMetrics:
        """The run scored under the OTB/pytracking and GOT-10k conventions (``metrics.evaluate_sequence``)."""
        return M.evaluate_sequence(self.boxes_xywh, self.gt_xywh, self.absent, image_size=self.image_size,
                                   name=self.sequence, attributes=self.attributes)

    @classmethod
    def from_outputs(
        cls,
        tracker: str,
        seq: Any,
        boxes_xywh: Any,
        *,
        sent_ns: Any,
        received_ns: Any,
        confidence: Any = None,
        state: Optional[Sequence[str]] = None,
        kept_fraction: Any = None,
        time_ms: Any = None,
        aux_used: str = "none",
        prompt_used: bool = False,
        source: Optional[str] = None,
        num_dropped_frames: Optional[int] = None,
        points: Optional[P.PointTrack] = None,
    ) -> "SequenceRun":
        """A run recorded outside ``run_tracker`` (e.g. a live bag replay through the node).

        Args:
            tracker: row name.
            seq: the sequence (``data.TrackingSequence`` view): GT, absence, attributes, stamps.
            boxes_xywh: (N, 4) output per frame, NaN rows where no output arrived.
            sent_ns / received_ns: (N,) when each frame was published and when its output
                arrived (-1 = not part of the stream, e.g. up to the init frame / never arrived).
            confidence / kept_fraction / time_ms: (N,) per frame, NaN where unknown (default).
            state: (N,) state names; default ``none`` where no output, else ``tracking``.
            aux_used / prompt_used / source: recorded as given.
            num_dropped_frames: the node's own drop counter for this sequence, if known.
            points: the target's 3D points as published; None = computed here from the boxes, the
                sequence's depth frames and camera (``eval.position3d``), when it has them.
        """
        facts = _SequenceFacts.of(seq, None, source or describe_source(seq))
        n = facts.num_frames
        boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(n, 4)
        nan = np.full(n, np.nan)

        def per_frame(values: Any) -> np.ndarray:
            return nan.copy() if values is None else np.asarray(values, dtype=np.float64).reshape(n)

        has_box = np.asarray(np.isfinite(boxes).all(axis=1))
        run = facts.run(
            tracker,
            seq.rgb(0),
            aux_used=aux_used,
            prompt_used=prompt_used,
            boxes_xywh=boxes,
            confidence=per_frame(confidence),
            state=list(state) if state is not None else ["tracking" if b else "none" for b in has_box],
            kept_fraction=per_frame(kept_fraction),
            time_ms=per_frame(time_ms),
            sent_ns=np.asarray(sent_ns, dtype=np.int64).reshape(n),
            received_ns=np.asarray(received_ns, dtype=np.int64).reshape(n),
            failed_update=np.zeros(n, dtype=bool),
            num_dropped_frames=num_dropped_frames,
        )
        if points is not None:
            run.points = points
            run.gt_points_xyz = _gt_points(seq, n)
        else:
            _attach_points(run, seq)
        return run


@dataclass(frozen=True)
class _SequenceFacts:
    """What a run records about its sequence, read once (the first ``num_frames`` frames)."""

    name: str
    source: str
    gt_xywh: np.ndarray
    absent: np.ndarray
    init_index: int
    attributes: dict[str, Any]
    modalities: list[str]
    prompt: Optional[str]
    stamp_ns: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.gt_xywh.shape[0])

    @classmethod
    def of(cls, seq: Any, max_frames: Optional[int], source: str) -> "_SequenceFacts":
        """Raises ``InputError`` when no frame has a valid GT box (``metrics.first_valid_index``)."""
        gt_all = np.asarray(seq.gt, dtype=np.float64)
        n = gt_all.shape[0] if max_frames is None else min(gt_all.shape[0], int(max_frames))
        absent_raw = getattr(seq, "absent", None)
        absent = np.zeros(n, bool) if absent_raw is None else np.asarray(absent_raw).astype(bool)[:n]
        gt = gt_all[:n]
        return cls(
            name=str(seq.name),
            source=source,
            gt_xywh=gt,
            absent=absent,
            init_index=M.first_valid_index(gt, absent),
            attributes=dict(getattr(seq, "attributes", None) or {}),
            modalities=_modality_names(seq),
            prompt=getattr(seq, "prompt", None) or None,
            stamp_ns=np.array([int(seq.stamp_ns(i)) for i in range(n)], dtype=np.int64),
        )

    def run(self, tracker: str, image: np.ndarray, **outputs: Any) -> SequenceRun:
        """A ``SequenceRun`` of these facts; ``image``: any frame (its size is recorded)."""
        return SequenceRun(
            tracker=tracker,
            sequence=self.name,
            source=self.source,
            image_size=(int(image.shape[1]), int(image.shape[0])),
            gt_xywh=self.gt_xywh,
            absent=self.absent,
            attributes=self.attributes,
            modalities=self.modalities,
            prompt=self.prompt,
            init_index=self.init_index,
            stamp_ns=self.stamp_ns,
            **outputs,
        )


def _gt_points(seq: Any, n: int) -> Optional[np.ndarray]:
    gt = target_positions(seq)
    return gt[:n] if gt is not None and gt.shape[0] >= n else None


def _attach_points(run: SequenceRun, seq: Any) -> None:
    """The run's 3D points from its boxes (``eval.position3d``) when the sequence has depth frames
    and a camera; a depth frame or camera that does not fit is recorded in ``points_error``."""
    try:
        found = P.run_points(seq, run.boxes_xywh, run.state, run.init_index, run.stamp_ns)
    except UTPTrackError as err:
        run.points_error = f"{type(err).__name__}: {err}"
        logger.warning("%s on %s: no 3D points: %s", run.tracker, run.sequence, err)
        return
    if found is not None:
        run.points, run.gt_points_xyz = found


@dataclass(frozen=True)
class _Output:
    box: Optional[Box]
    confidence: float
    state: str
    kept_fraction: float
    search_region: Optional[Box]
    keep_mask: Optional[np.ndarray]
    failed_update: bool = False


class _FrameTracker:
    """The one place that tells a core tracker from an OpenCV peer and normalises outputs."""

    def __init__(self, tracker: Any) -> None:
        self._t = tracker
        self._is_core = callable(getattr(tracker, "track", None))
        if not self._is_core and not callable(getattr(tracker, "update", None)):
            raise ConfigError(f"{type(tracker).__name__} has neither track() nor update(); it cannot be evaluated")
        self._last: Optional[Box] = None

    @staticmethod
    def _from_result(res: Any) -> _Output:
        state = getattr(res, "state", "tracking")
        region = getattr(res, "search_region", None)
        mask = getattr(res, "search_keep_mask", None)
        return _Output(
            box=res.box,
            confidence=float(getattr(res, "confidence", float("nan"))),
            state=str(getattr(state, "value", state)),
            kept_fraction=float(getattr(res, "kept_fraction", float("nan"))),
            search_region=region,
            keep_mask=None if mask is None else np.asarray(mask, dtype=bool),
        )

    def init(
        self, image: np.ndarray, box: Box, aux: Optional[np.ndarray], modality: Modality, prompt: Optional[str]
    ) -> _Output:
        if self._is_core:
            return self._from_result(self._t.init(image, box, aux=aux, modality=modality, prompt=prompt))
        self._t.init(image, box)
        self._last = box
        return _Output(box, 1.0, "tracking", float("nan"), None, None)

    def track(self, image: np.ndarray, aux: Optional[np.ndarray]) -> _Output:
        if self._is_core:
            return self._from_result(self._t.track(image, aux=aux))
        box, ok = self._t.update(image)
        if ok and box is not None:
            self._last = box
            return _Output(box, 1.0, "tracking", float("nan"), None, None)
        return _Output(self._last, 0.0, "lost", float("nan"), None, None, failed_update=True)


def _frame_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [UTPTrackError, ValueError]
    try:
        errors.append(cv2.error)
    except ImportError:  # pragma: no cover - cv2 is a hard dependency
        pass
    return tuple(errors)


def _modality_names(seq: Any) -> list[str]:
    return [str(getattr(m, "value", m)) for m in (getattr(seq, "modalities", None) or [])]


def _resolve_aux(aux: str, seq: Any, name: str) -> str:
    available = [m for m in _modality_names(seq) if m != Modality.RGB.value]
    if aux == "none":
        return "none"
    if aux == "auto":
        return available[0] if available else "none"
    if aux not in available:
        logger.warning("%s: sequence %s has no %s frames; running RGB only", name, seq.name, aux)
        return "none"
    return aux


def run_sequence(spec: TrackerSpec, source: SequenceSource, max_frames: Optional[int] = None) -> SequenceRun:
    """Build ``spec``'s tracker and run it over one sequence (in the calling process).

    Args:
        spec: the tracker to build and how to feed it.
        source: a sequence, or a zero-argument callable opening one.
        max_frames: only the first ``max_frames`` frames (quick runs); None = all.

    Returns:
        The per-frame record.

    Raises:
        InputError: the sequence has no annotated frame.
    """
    seq = open_source(source)
    facts = _SequenceFacts.of(seq, max_frames, describe_source(source))
    return _track(spec.factory(), seq, facts, spec.name, spec.aux, spec.use_prompt)


def run_tracker(tracker: Any, seq: Any, name: str, *, aux: str = "none", use_prompt: bool = False,
                max_frames: Optional[int] = None) -> SequenceRun:
    """Run an already built tracker over one sequence (e.g. training validation's model).

    Args:
        tracker: a core tracker or an OpenCV peer (see the module docstring); initialised anew here.
        seq: the sequence (``SequenceLike``).
        name: the run's tracker name.
        aux / use_prompt: as ``TrackerSpec.aux`` / ``TrackerSpec.use_prompt``.
        max_frames: only the first ``max_frames`` frames; None = all.

    Raises:
        InputError: the sequence has no annotated frame.
    """
    facts = _SequenceFacts.of(seq, max_frames, describe_source(seq))
    return _track(tracker, seq, facts, name, aux, use_prompt)


def _track(tracker: Any, seq: Any, facts: _SequenceFacts, name: str, aux: str, use_prompt: bool) -> SequenceRun:
    """The tracking loop: init on ``facts.init_index`` with its GT box, then track every later frame."""
    n, init, gt = facts.num_frames, facts.init_index, facts.gt_xywh
    aux_name = _resolve_aux(aux, seq, name)
    modality = Modality.RGB if aux_name == "none" else Modality(aux_name)
    prompt = facts.prompt if use_prompt else None

    boxes = np.full((n, 4), np.nan)
    conf = np.full(n, np.nan)
    kept = np.full(n, np.nan)
    time_ms = np.full(n, np.nan)
    sent = np.full(n, -1, dtype=np.int64)
    received = np.full(n, -1, dtype=np.int64)
    failed = np.zeros(n, dtype=bool)
    states = ["none"] * n
    regions: Optional[np.ndarray] = None
    masks: Optional[np.ndarray] = None
    frame_errors: list[str] = []
    error: Optional[str] = None
    catch = _frame_errors()

    first = seq.rgb(init)
    frames = _FrameTracker(tracker)
    for i in range(init, n):
        image = first if i == init else seq.rgb(i)
        aux_image = None if aux_name == "none" else seq.aux(modality, i)
        t0 = time.perf_counter_ns()
        try:
            if i == init:
                out = frames.init(image, Box.from_sequence(gt[init]), aux_image, modality, prompt)
            else:
                out = frames.track(image, aux_image)
        except catch as err:
            t1 = time.perf_counter_ns()
            if i == init:
                error = f"init failed: {type(err).__name__}: {err}"
                logger.warning("%s on %s: %s", name, seq.name, error)
                time_ms[i] = (t1 - t0) / 1e6
                break
            frame_errors.append(f"frame {i}: {type(err).__name__}: {err}")
            logger.warning("%s on %s frame %d: %s", name, seq.name, i, err)
            sent[i] = t0
            continue
        t1 = time.perf_counter_ns()
        time_ms[i] = (t1 - t0) / 1e6
        if i > init:
            sent[i], received[i] = t0, t1
        if out.box is not None:
            boxes[i] = out.box.as_xywh()
        conf[i], kept[i], states[i], failed[i] = out.confidence, out.kept_fraction, out.state, out.failed_update
        if out.keep_mask is not None and out.search_region is not None:
            if masks is None:
                masks = np.zeros((n,) + out.keep_mask.shape, dtype=bool)
                regions = np.full((n, 4), np.nan)
            masks[i] = out.keep_mask
            regions[i] = out.search_region.as_xywh()  # type: ignore[index]

    run = facts.run(
        name,
        first,
        aux_used=aux_name,
        prompt_used=prompt is not None,
        boxes_xywh=boxes,
        confidence=conf,
        state=states,
        kept_fraction=kept,
        time_ms=time_ms,
        sent_ns=sent,
        received_ns=received,
        failed_update=failed,
        search_region=regions,
        search_keep_mask=masks,
        error=error,
        frame_errors=frame_errors,
    )
    if error is None:
        _attach_points(run, seq)
    return run
