"""Offline runner: tracker factories x sequences in spawned worker processes, results on disk.

Per (tracker, sequence) pair a worker opens the sequence, builds a fresh tracker from its
factory, initialises it on the **first annotated frame** (first frame with a valid GT box:
``metrics.first_valid_index``) with that GT box, and tracks every later frame. Frames before the
init frame have no prediction (NaN). It records per frame: box, confidence, state, kept-token
fraction, search region + search keep mask (when the tracker reports them), call time; and on
RGB-D sequences with a known camera, the target's 3D point from the box (``eval.position3d``),
scored against the sequence's ground-truth positions when it has them.

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

Offline latency (metrics.latency_stats): per frame after the init frame, sent = just before the
tracker call, received = when it returns (``time.perf_counter_ns``); so latency = call time and
``MEAN_FRAME_RATE`` includes the frame loading between calls. The init call is timed apart.

Sequences (duck-typed ``data.sequence.Sequence`` view): ``name``, ``gt`` (N, 4) xywh with NaN
where absent, ``absent`` (N,), ``prompt``, ``attributes``, ``modalities``, ``rgb(i)``,
``aux(modality, i)``, ``stamp_ns(i)``. A source is a sequence object or a picklable zero-argument
callable that opens one (e.g. ``functools.partial(load, path)``), so bag readers are opened in
the worker that uses them.

Output folder (``write_results``, also meant for live bag replays: written to a temporary
sibling and moved into place at the end; an existing non-empty folder is refused unless
``force``; nothing is written over it on errors)::

    results.json                       every number (schema ``SCHEMA``)
    <tracker>/<seq>.txt                x,y,w,h per line (pytracking style, %.2f, nan = no output)
    <tracker>/<seq>_time.txt           seconds per frame (got10k style, nan = no call)
    <tracker>/<seq>_frames.csv         frame, stamp_ns, box, confidence, state, kept, time, failed
    <tracker>/<seq>_tokens.npz         search_region (N, 4), search_keep_mask (N, F, F) if reported
    <tracker>/<seq>_points.csv         the target's 3D point per frame + status + GT (RGB-D with a camera)
    report.md / report.html / report.json / plots/   (``eval.report``) unless disabled
"""

from __future__ import annotations

import csv
import datetime as _dt
import functools
import json
import logging
import math
import multiprocessing
import os
import pickle
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Protocol, Sequence, Union

import numpy as np

from ..errors import UTPTrackError
from ..machine import machine_record
from ..types import Box, Modality
from . import metrics as M
from . import position3d as P

logger = logging.getLogger(__name__)

SCHEMA = "utptrack_ros.eval.offline/1"
AUX_CHOICES = ("none", "auto", "depth", "thermal", "event")
POINTS_CSV_COLUMNS = (
    "frame", "x_m", "y_m", "z_m", "status", "spread_m", "valid_fraction", "gt_x_m", "gt_y_m", "gt_z_m",
)  # fmt: skip
FRAME_CSV_COLUMNS = (
    "frame", "stamp_ns", "x", "y", "w", "h", "confidence", "state", "kept_fraction", "time_ms", "failed_update",
)  # fmt: skip


class SequenceLike(Protocol):
    """What the runner reads from a sequence (``utptrack_ros.data`` ``Sequence``)."""

    name: str
    gt: np.ndarray
    absent: np.ndarray

    def rgb(self, i: int) -> np.ndarray: ...

    def aux(self, modality: Any, i: int) -> Optional[np.ndarray]: ...

    def stamp_ns(self, i: int) -> int: ...


SequenceSource = Union[SequenceLike, Callable[[], SequenceLike]]


@dataclass(frozen=True)
class TrackerSpec:
    """One row of a comparison: a named, picklable tracker factory and how to feed it.

    Attributes:
        name: row label (unique in a run), e.g. ``tiny@keep0.5``.
        factory: zero-argument picklable callable building a fresh tracker in the worker.
        aux: ``none`` (RGB only), ``auto`` (the sequence's first auxiliary modality, if any) or a
            modality name (``depth``/``thermal``/``event``; RGB only where the sequence lacks it).
        use_prompt: pass the sequence's language prompt to ``init``.
        description: free text for the report.
    """

    name: str
    factory: Callable[[], Any]
    aux: str = "none"
    use_prompt: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"tracker spec needs a non-empty name, got {self.name!r}")
        if self.aux not in AUX_CHOICES:
            raise ValueError(f"tracker {self.name!r}: aux must be one of {AUX_CHOICES}, got {self.aux!r}")


@dataclass(frozen=True)
class CoreTrackerFactory:
    """Picklable factory of ``utptrack_ros.tracker.Tracker`` for worker processes.

    Building a tracker (model init, weights, the text encoder it loads on first use) costs
    seconds, so by default one tracker per distinct factory is kept per process and handed out
    again after ``reset()`` (targets forgotten; model, keep ratios and encoder kept).

    Attributes:
        model: registered variant (``tiny``, ``tiny_base``, ``o256`` ...).
        weights: weights file; None = the variant's shipped weights.
        keep: one keep ratio for CE/DTE/STE on the variant's pruning layers (``*_base``
            variants have none, so it does not change them); None = the variant's own ratios.
        device: torch device.
        pretrained: False builds the variant with random weights (pipeline checks only).
        reuse: hand out the process's cached tracker for this factory (reset) instead of a new one.
    """

    model: str = "tiny"
    weights: Optional[str] = None
    keep: Optional[float] = None
    device: str = "cpu"
    pretrained: bool = True
    reuse: bool = True

    def __call__(self) -> Any:
        cached = _TRACKER_CACHE.get(self) if self.reuse else None
        if cached is not None:
            cached.reset()
            return cached
        tracker = self._build()
        if self.reuse:
            _TRACKER_CACHE[self] = tracker
        return tracker

    def _build(self) -> Any:
        from ..tracker import Tracker

        if self.pretrained:
            tracker = Tracker.from_pretrained(self.model, weights=self.weights, device=self.device)
        else:
            from ..models import create_model

            tracker = Tracker(create_model(self.model), device=self.device)
        if self.keep is not None:
            prune = tracker.model.prune
            tracker.set_prune(prune.with_keep_ratio(self.keep, self.keep, self.keep))
        return tracker


_TRACKER_CACHE: dict[CoreTrackerFactory, Any] = {}


def peer_spec(kind: str, name: Optional[str] = None) -> TrackerSpec:
    """A ``TrackerSpec`` for an OpenCV peer (``csrt``, ``kcf``, ``mil``)."""
    from .peers import PEER_NAMES, OpenCVTracker

    if kind not in PEER_NAMES:
        raise ValueError(f"unknown OpenCV peer {kind!r}; choose one of {PEER_NAMES}")
    return TrackerSpec(name or kind, functools.partial(OpenCVTracker, kind), description=f"OpenCV {kind.upper()}")


# --------------------------------------------------------------------------------------------
# One (tracker, sequence) run
# --------------------------------------------------------------------------------------------


@dataclass
class SequenceRun:
    """Everything recorded for one tracker on one sequence (arrays are per frame, N rows).

    ``boxes_xywh`` NaN rows = no output; ``sent_ns``/``received_ns`` -1 = not part of the
    latency stream (frames up to the init frame) / output never arrived. ``run_sequence`` makes
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
        """A run recorded outside ``run_sequence`` (e.g. a live bag replay through the node).

        Args:
            tracker: row name.
            seq: the sequence (``data.Sequence`` view): GT, absence, attributes, stamps.
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
        gt = np.asarray(seq.gt, dtype=np.float64)
        n = gt.shape[0]
        absent = np.asarray(getattr(seq, "absent", np.zeros(n, bool))).astype(bool)
        boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(n, 4)
        nan = np.full(n, np.nan)

        def per_frame(values: Any, default: np.ndarray) -> np.ndarray:
            return default.copy() if values is None else np.asarray(values, dtype=np.float64).reshape(n)

        has_box = np.isfinite(boxes).all(axis=1)
        first = seq.rgb(0)
        run = cls(
            tracker=tracker,
            sequence=str(seq.name),
            source=source or describe_source(seq),
            image_size=(int(first.shape[1]), int(first.shape[0])),
            gt_xywh=gt,
            absent=absent,
            attributes=dict(getattr(seq, "attributes", None) or {}),
            modalities=_modality_names(seq),
            prompt=getattr(seq, "prompt", None) or None,
            aux_used=aux_used,
            prompt_used=prompt_used,
            init_index=M.first_valid_index(gt, absent),
            boxes_xywh=boxes,
            confidence=per_frame(confidence, nan),
            state=list(state) if state is not None else ["tracking" if b else "none" for b in has_box],
            kept_fraction=per_frame(kept_fraction, nan),
            time_ms=per_frame(time_ms, nan),
            stamp_ns=np.array([int(seq.stamp_ns(i)) for i in range(n)], dtype=np.int64),
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


def _gt_points(seq: Any, n: int) -> Optional[np.ndarray]:
    from ..data.camera import target_positions

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
            raise TypeError(f"{type(tracker).__name__} has neither track() nor update()")
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
        import cv2

        errors.append(cv2.error)
    except ImportError:  # pragma: no cover - cv2 is a hard dependency
        pass
    return tuple(errors)


def _modality_names(seq: Any) -> list[str]:
    return [str(getattr(m, "value", m)) for m in (getattr(seq, "modalities", None) or [])]


def _resolve_aux(spec: TrackerSpec, seq: Any) -> str:
    available = [m for m in _modality_names(seq) if m != Modality.RGB.value]
    if spec.aux == "none":
        return "none"
    if spec.aux == "auto":
        return available[0] if available else "none"
    if spec.aux not in available:
        logger.warning("%s: sequence %s has no %s frames; running RGB only", spec.name, seq.name, spec.aux)
        return "none"
    return spec.aux


def open_source(source: SequenceSource) -> Any:
    """The sequence behind ``source`` (called as is when it is not a sequence already)."""
    if callable(getattr(source, "rgb", None)):
        return source
    if callable(source):
        return source()
    raise TypeError(f"not a sequence or a sequence opener: {source!r}")


def describe_source(source: SequenceSource) -> str:
    """A human-readable origin of a source (path for ``partial(loader, path)``)."""
    if isinstance(source, functools.partial) and source.args:
        return str(source.args[0])
    return str(getattr(source, "path", None) or getattr(source, "root", None) or getattr(source, "name", repr(source)))


def run_sequence(spec: TrackerSpec, source: SequenceSource, max_frames: Optional[int] = None) -> SequenceRun:
    """Run one tracker over one sequence (in the calling process).

    Args:
        spec: the tracker to build and how to feed it.
        source: a sequence, or a zero-argument callable opening one.
        max_frames: only the first ``max_frames`` frames (quick runs); None = all.

    Returns:
        The per-frame record.

    Raises:
        ValueError: the sequence has no annotated frame.
    """
    seq = open_source(source)
    gt_all = np.asarray(seq.gt, dtype=np.float64)
    n = gt_all.shape[0] if max_frames is None else min(gt_all.shape[0], int(max_frames))
    gt = gt_all[:n]
    absent_raw = getattr(seq, "absent", None)
    absent = np.zeros(n, bool) if absent_raw is None else np.asarray(absent_raw).astype(bool)[:n]
    init = M.first_valid_index(gt, absent)
    aux_name = _resolve_aux(spec, seq)
    modality = Modality.RGB if aux_name == "none" else Modality(aux_name)
    prompt = (getattr(seq, "prompt", None) or None) if spec.use_prompt else None

    boxes = np.full((n, 4), np.nan)
    conf = np.full(n, np.nan)
    kept = np.full(n, np.nan)
    time_ms = np.full(n, np.nan)
    sent = np.full(n, -1, dtype=np.int64)
    received = np.full(n, -1, dtype=np.int64)
    failed = np.zeros(n, dtype=bool)
    states = ["none"] * n
    stamps = np.array([int(seq.stamp_ns(i)) for i in range(n)], dtype=np.int64)
    regions: Optional[np.ndarray] = None
    masks: Optional[np.ndarray] = None
    frame_errors: list[str] = []
    error: Optional[str] = None
    catch = _frame_errors()

    first = seq.rgb(init)
    image_size = (int(first.shape[1]), int(first.shape[0]))
    tracker = _FrameTracker(spec.factory())
    _limit_torch_threads_if_loaded()

    for i in range(init, n):
        image = first if i == init else seq.rgb(i)
        aux = None if aux_name == "none" else seq.aux(modality, i)
        t0 = time.perf_counter_ns()
        try:
            if i == init:
                out = tracker.init(image, Box.from_sequence(gt[init]), aux, modality, prompt)
            else:
                out = tracker.track(image, aux)
        except catch as err:
            t1 = time.perf_counter_ns()
            if i == init:
                error = f"init failed: {type(err).__name__}: {err}"
                logger.warning("%s on %s: %s", spec.name, seq.name, error)
                time_ms[i] = (t1 - t0) / 1e6
                break
            frame_errors.append(f"frame {i}: {type(err).__name__}: {err}")
            logger.warning("%s on %s frame %d: %s", spec.name, seq.name, i, err)
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

    run = SequenceRun(
        tracker=spec.name,
        sequence=str(seq.name),
        source=describe_source(source),
        image_size=image_size,
        gt_xywh=gt,
        absent=absent,
        attributes=dict(getattr(seq, "attributes", None) or {}),
        modalities=_modality_names(seq),
        prompt=getattr(seq, "prompt", None) or None,
        aux_used=aux_name,
        prompt_used=prompt is not None,
        init_index=init,
        boxes_xywh=boxes,
        confidence=conf,
        state=states,
        kept_fraction=kept,
        time_ms=time_ms,
        stamp_ns=stamps,
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


# --------------------------------------------------------------------------------------------
# Worker processes
# --------------------------------------------------------------------------------------------


_IN_WORKER = False  # set by the spawned-worker initialiser


def _limit_torch_threads_if_loaded() -> None:
    """One intra-op thread for torch in workers (only if the tracker imported torch)."""
    if _IN_WORKER and "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch.set_num_threads(1)


def _init_worker() -> None:
    """Spawned-worker initialiser: one thread for OpenMP/MKL, OpenCV and (later) torch."""
    global _IN_WORKER
    _IN_WORKER = True
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    import cv2

    cv2.setNumThreads(1)


_Task = tuple[TrackerSpec, SequenceSource, Optional[int]]


def _run_task(task: _Task) -> SequenceRun:
    spec, source, max_frames = task
    return run_sequence(spec, source, max_frames)


def _run_pickled_task(blob: bytes) -> SequenceRun:
    """Worker entry: unpickle here so a task the worker cannot import fails with a clear error
    (multiprocessing.Pool would otherwise lose the task and wait forever)."""
    try:
        task = pickle.loads(blob)
    except Exception as err:  # any unpickling failure: re-raise as one picklable error
        raise RuntimeError(
            f"a worker could not load its task ({type(err).__name__}: {err}); tracker factories and "
            "sequence sources must be importable top-level callables (e.g. functools.partial of a "
            "module-level function or class)"
        ) from None
    return _run_task(task)


def _execute(tasks: list[_Task], workers: int, progress: bool) -> list[SequenceRun]:
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc="eval-offline", unit="run", disable=not progress)
    runs: list[SequenceRun] = []
    try:
        if workers <= 1:
            for task in tasks:
                runs.append(_run_task(task))
                bar.set_postfix_str(f"{runs[-1].tracker}/{runs[-1].sequence}")
                bar.update()
        else:
            from concurrent.futures import ProcessPoolExecutor, as_completed
            from concurrent.futures.process import BrokenProcessPool

            blobs = [pickle.dumps(task) for task in tasks]  # unpicklable specs fail here, clearly
            # not multiprocessing.Pool: it waits forever when a worker process dies (seen once in
            # the suite: both spawned workers exited and the run hung); the executor raises instead
            pool = ProcessPoolExecutor(
                max_workers=min(workers, len(tasks)), mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
            )
            try:
                for future in as_completed([pool.submit(_run_pickled_task, blob) for blob in blobs]):
                    run = future.result()
                    runs.append(run)
                    bar.set_postfix_str(f"{run.tracker}/{run.sequence}")
                    bar.update()
            except BrokenProcessPool as err:
                raise RuntimeError(f"an evaluation worker process died ({err}); rerun with workers=1 to see why") from None
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
    return runs


# --------------------------------------------------------------------------------------------
# Scoring and writing
# --------------------------------------------------------------------------------------------


def safe_name(name: str) -> str:
    """A file-name-safe version of a tracker or sequence name."""
    cleaned = re.sub(r"[^A-Za-z0-9_.@+-]+", "_", name).strip("._")
    return cleaned or "unnamed"


def to_jsonable(obj: Any) -> Any:
    """numpy -> Python, non-finite floats -> None, recursively (for ``json.dump(allow_nan=False)``)."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    return obj


def score_runs(runs: Sequence[SequenceRun]) -> dict[str, Any]:
    """Metrics of one tracker's runs: per sequence, overall, per attribute, latency.

    Returns:
        ``{"overall", "position3d", "latency", "per_attribute", "per_sequence", "kept_fraction_mean",
        "init_time_ms_mean", "num_failed_updates", "num_frame_errors"}`` (JSON-ready values);
        ``position3d`` (``eval.position3d``: ``overall`` and ``per_attribute`` 3D error statistics)
        is None unless some sequence has depth frames, a camera and ground-truth positions.
    """
    seq_metrics = []
    per_sequence: dict[str, Any] = {}
    streams = []
    positions: dict[str, P.PositionStats] = {}
    for run in runs:
        m = M.evaluate_sequence(
            run.boxes_xywh,
            run.gt_xywh,
            run.absent,
            image_size=run.image_size,
            name=run.sequence,
            attributes=run.attributes,
        )
        seq_metrics.append(m)
        in_stream = run.sent_ns >= 0
        stream = (run.sent_ns[in_stream], run.received_ns[in_stream])
        streams.append(stream)
        tracked = np.zeros(run.num_frames, bool)
        tracked[run.init_index + 1 :] = True
        per_sequence[run.sequence] = {
            "metrics": m.to_dict(),
            "latency": M.latency_stats([stream], num_dropped_frames=run.num_dropped_frames).to_dict(),
            "kept_fraction_mean": _nanmean(run.kept_fraction[tracked]),
            "init_time_ms": run.init_time_ms,
            "num_failed_updates": int(run.failed_update.sum()),
            "aux_used": run.aux_used,
            "prompt_used": run.prompt_used,
            "error": run.error,
            "frame_errors": list(run.frame_errors),
            "frames": {
                "stamp_ns": run.stamp_ns,
                "boxes_xywh": run.boxes_xywh,
                "confidence": run.confidence,
                "state": list(run.state),
                "kept_fraction": run.kept_fraction,
                "time_ms": run.time_ms,
                "failed_update": run.failed_update,
            },
        }
        if run.points is not None:
            per_sequence[run.sequence]["frames"].update(
                points_xyz=run.points.points_xyz, point_status=list(run.points.status))
            if run.gt_points_xyz is not None:
                positions[run.sequence] = P.position_stats(run.points.points_xyz, run.gt_points_xyz, run.init_index)
                per_sequence[run.sequence]["position3d"] = positions[run.sequence].to_dict()
        if run.points_error:
            per_sequence[run.sequence]["position3d_error"] = run.points_error
    kept = np.concatenate([r.kept_fraction[r.init_index + 1 :] for r in runs]) if runs else np.zeros(0)
    dropped = [r.num_dropped_frames for r in runs if r.num_dropped_frames is not None]
    latency = M.latency_stats(streams, num_dropped_frames=sum(dropped) if dropped else None)
    position3d = None
    if positions:
        flags = {m.name: m.attributes for m in seq_metrics}
        position3d = {
            "overall": P.pool(list(positions.values())).to_dict(),
            "per_attribute": {a: st.to_dict() for a, st in P.pool_by_attribute(positions, flags).items()},
        }
    return to_jsonable(
        {
            "overall": M.aggregate(seq_metrics).to_dict(),
            "position3d": position3d,
            "latency": latency.to_dict(per_frame=True),
            "per_attribute": {k: v.to_dict() for k, v in M.aggregate_by_attribute(seq_metrics).items()},
            "per_sequence": per_sequence,
            "kept_fraction_mean": _nanmean(kept),
            "init_time_ms_mean": _nanmean(np.array([r.init_time_ms for r in runs])),
            "num_failed_updates": int(sum(int(r.failed_update.sum()) for r in runs)),
            "num_frame_errors": int(sum(len(r.frame_errors) for r in runs)),
        }
    )


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _write_run_files(run: SequenceRun, folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    stem = safe_name(run.sequence)
    files = {"boxes": f"{stem}.txt", "times": f"{stem}_time.txt", "frames": f"{stem}_frames.csv"}
    np.savetxt(folder / files["boxes"], run.boxes_xywh, fmt="%.2f", delimiter=",")
    np.savetxt(folder / files["times"], run.time_ms / 1e3, fmt="%.6f")
    with open(folder / files["frames"], "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(FRAME_CSV_COLUMNS)
        for i in range(run.num_frames):
            x, y, w, h = run.boxes_xywh[i]
            writer.writerow(
                [i, int(run.stamp_ns[i])]
                + [f"{v:.2f}" for v in (x, y, w, h)]
                + [
                    f"{run.confidence[i]:.4f}",
                    run.state[i],
                    f"{run.kept_fraction[i]:.4f}",
                    f"{run.time_ms[i]:.3f}",
                    int(run.failed_update[i]),
                ]
            )
    if run.points is not None:
        files["points"] = f"{stem}_points.csv"
        with open(folder / files["points"], "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(POINTS_CSV_COLUMNS)
            gt = run.gt_points_xyz if run.gt_points_xyz is not None else np.full((run.num_frames, 3), np.nan)
            for i in range(run.num_frames):
                writer.writerow([i, *(f"{v:.4f}" for v in run.points.points_xyz[i]), run.points.status[i],
                                 f"{run.points.spread_m[i]:.4f}", f"{run.points.valid_fraction[i]:.3f}",
                                 *(f"{v:.4f}" for v in gt[i])])
    if run.search_keep_mask is not None and run.search_region is not None:
        files["tokens"] = f"{stem}_tokens.npz"
        np.savez_compressed(
            folder / files["tokens"], search_region=run.search_region, search_keep_mask=run.search_keep_mask
        )
    return files


def _check_out_dir(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise FileExistsError(f"{out_dir} already holds results; choose another --out or pass --force to replace it")


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move ``tmp`` to ``out_dir``; an existing ``out_dir`` is removed only after the move."""
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}-{time.time_ns()}")
        out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out_dir)


def run_offline(
    trackers: Sequence[TrackerSpec],
    sources: Sequence[SequenceSource],
    out_dir: Union[str, Path],
    *,
    workers: int = 1,
    force: bool = False,
    max_frames: Optional[int] = None,
    progress: bool = True,
    report: bool = True,
) -> dict[str, Any]:
    """Run every tracker on every sequence, score them and write the results folder.

    Args:
        trackers: the compared rows (unique names); e.g. a sweep over keep ratios, aux on/off,
            prompt on/off, plus OpenCV peers (``peer_spec``).
        sources: sequences or picklable callables opening them (opened in the workers).
        out_dir: results folder; must not hold files unless ``force``.
        workers: parallel spawned processes; ``<= 1`` runs in this process (no thread limits).
        force: replace an existing non-empty ``out_dir`` (only once everything succeeded).
        max_frames: cut every sequence to its first frames (quick looks).
        progress: show a tqdm bar.
        report: also write the Markdown/HTML/PNG report (``eval.report.write_report``).

    Returns:
        The results dict written to ``results.json``.

    Raises:
        FileExistsError: ``out_dir`` holds files and ``force`` is False.
        ValueError: duplicate tracker or sequence names, nothing to run, or a sequence without
            annotated frames.
    """
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, force)
    _check_unique([t.name for t in trackers], "tracker names")
    if not trackers or not sources:
        raise ValueError("nothing to run: give at least one tracker and one sequence")

    tasks = [(spec, src, max_frames) for src in sources for spec in trackers]
    logger.info("eval-offline: %d trackers x %d sequences, %d workers", len(trackers), len(sources), workers)
    t_start = time.time()
    runs = _execute(tasks, workers, progress)
    return write_results(
        runs,
        out_dir,
        trackers={t.name: {"description": t.description, "aux": t.aux, "use_prompt": t.use_prompt} for t in trackers},
        settings={
            "mode": "offline",
            "workers": workers,
            "max_frames": max_frames,
            "wall_time_s": round(time.time() - t_start, 3),
            "init_rule": "first frame with a valid GT box; its GT box initialises the tracker",
            "latency": "offline: sent/received = perf_counter_ns around each track call after the init frame",
        },
        force=force,
        report=report,
        sequences=(lambda: _open_for_report(sources)) if report else None,
    )


def write_results(
    runs: Sequence[SequenceRun],
    out_dir: Union[str, Path],
    *,
    trackers: Optional[Mapping[str, Mapping[str, Any]]] = None,
    settings: Optional[Mapping[str, Any]] = None,
    force: bool = False,
    report: bool = True,
    sequences: Union[None, Mapping[str, Any], Callable[[], Mapping[str, Any]]] = None,
) -> dict[str, Any]:
    """Score recorded runs and write the results folder atomically (also for live replays).

    Args:
        runs: one ``SequenceRun`` per (tracker, sequence); a live bag replay fills ``sent_ns``
            with publish times and ``received_ns`` with output arrival times (-1 = never).
        out_dir: results folder; must not hold files unless ``force``.
        trackers: row name -> metadata (``description``, ``aux``, ``use_prompt``...), in row
            order; rows not listed follow in order of appearance.
        settings: how the runs were made (stored as is; say what sent/received mean).
        force: replace an existing non-empty ``out_dir`` (only once everything succeeded).
        report: also write the report (``eval.report.write_report``).
        sequences: name -> sequence (or a callable returning that mapping) for the frame strips.

    Returns:
        The results dict written to ``results.json``.

    Raises:
        FileExistsError: ``out_dir`` holds files and ``force`` is False.
        ValueError: no runs, or two runs of one tracker on sequences of the same (file) name.
    """
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, force)
    if not runs:
        raise ValueError("no runs to write")
    meta = {name: dict(info) for name, info in (trackers or {}).items()}
    for run in runs:
        meta.setdefault(run.tracker, {"description": ""})
    _check_unique([safe_name(n) for n in meta], "tracker names (as folder names)")
    by_tracker: dict[str, list[SequenceRun]] = {n: [] for n in meta}
    for run in runs:
        by_tracker[run.tracker].append(run)
    for name, lst in by_tracker.items():
        _check_unique([safe_name(r.sequence) for r in lst], f"sequence names of {name!r} (as file names)")
        lst.sort(key=lambda r: r.sequence)
    first_runs = {r.sequence: r for r in sorted(runs, key=lambda r: r.sequence)}

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        results: dict[str, Any] = {
            "schema": SCHEMA,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "environment": machine_record(),
            "settings": dict(settings or {}),
            "conventions": {"otb": M.CONVENTION_OTB, "got10k": M.CONVENTION_GOT10K, "latency": M.CONVENTION_LATENCY,
                            "position3d": P.CONVENTION_3D},
            "trackers": {name: {**info, "folder": safe_name(name)} for name, info in meta.items() if by_tracker[name]},
            "sequences": {s: _sequence_info(r) for s, r in first_runs.items()},
            "results": {},
        }
        for name, lst in by_tracker.items():
            if not lst:
                continue
            scored = score_runs(lst)
            for run in lst:
                files = _write_run_files(run, tmp / safe_name(name))
                scored["per_sequence"][run.sequence]["files"] = {k: f"{safe_name(name)}/{v}" for k, v in files.items()}
            results["results"][name] = scored
        results = to_jsonable(results)
        with open(tmp / "results.json", "w") as fh:
            json.dump(results, fh, indent=1, allow_nan=False)
        if report:
            from .report import write_report

            opened = sequences() if callable(sequences) else sequences
            write_report(results, tmp, sequences=opened)
        _check_out_dir(out_dir, force)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("results written to %s", out_dir)
    return results


def _check_unique(names: Sequence[str], what: str) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} must be unique; repeated: {dupes}")


def _sequence_info(run: SequenceRun) -> dict[str, Any]:
    return {
        "source": run.source,
        "num_frames": run.num_frames,
        "image_size": list(run.image_size),
        "attributes": to_jsonable(run.attributes),
        "modalities": run.modalities,
        "prompt": run.prompt,
        "absent": run.absent.astype(int).tolist(),
        "gt_xywh": to_jsonable(run.gt_xywh),
    }


def _open_for_report(sources: Iterable[SequenceSource]) -> dict[str, Any]:
    """Sequences for the report's frame strips, opened in this process (lazy views)."""
    opened: dict[str, Any] = {}
    for src in sources:
        seq = open_source(src)
        opened[str(seq.name)] = seq
    return opened


def load_results(out_dir: Union[str, Path]) -> dict[str, Any]:
    """Read ``results.json`` of a results folder."""
    with open(Path(out_dir) / "results.json") as fh:
        return json.load(fh)
