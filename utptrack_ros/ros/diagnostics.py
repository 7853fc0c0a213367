"""The node's ``/diagnostics``: what the node counts and measures (:class:`NodeStats`), the
snapshot the statuses are computed from (:class:`Snapshot`, filled once per period by
:func:`snapshot`), and the statuses (:func:`build_statuses`). All times are node-clock
nanoseconds handed in by the node (``node.get_clock()``), so bag replay under ``use_sim_time`` is
measured in bag time; nothing here creates its own clock (``diagnostic_updater``'s Python
``TimeStampStatus`` builds a fresh ``Clock`` and so ignores sim time, ros/diagnostics#232). Only
:func:`to_msg` touches message classes.

Two statuses are published per node:

* ``<node>: input``: RGB/aux/output rates, sync counters (matched, unsynchronized, dropped
  stale sets), zero-stamp and bad-input counts, input age, aux offset, stamp jumps. STALE when
  active and no RGB image arrived for ``output.stale_s``; WARN on RGB-only fallback (aux silent,
  or its stamps beyond the slop), new bad input, new unsynchronized frames, stamps that jumped
  back, and frames arriving more than :data:`LATE_S` after their stamps.
* ``<node>: tracker``: lifecycle state, tracker state, target id, confidence (of the first
  target; every target's id, state and confidence under ``targets``), kept tokens, the token
  budget (which keep ratios run and why: ``prune.mode``, ``prune.deadline_ms``),
  latency percentiles and the per-stage breakdown, model, backend, device, and what a running
  transition is preparing. ERROR when a transition failed (the reason is the message) or
  :data:`ERROR_STREAK` frames in a row failed; WARN when frames failed or a target is LOST or
  RECOVERING (the message names them).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Optional

import numpy as np

__all__ = ["RateMeter", "Window", "NodeStats", "Snapshot", "snapshot", "Status", "build_statuses", "to_msg",
           "depth_valid_fraction", "OK", "WARN", "ERROR", "STALE", "LATE_S", "ERROR_STREAK"]

OK, WARN, ERROR, STALE = 0, 1, 2, 3

#: median input age (arrival - header stamp) above which the input status warns
LATE_S = 0.5
#: ages outside [-1 s, this] mean the stamps are not on the node's clock (another clock, a bag
#: replayed without use_sim_time): the age is then not measured
COMPARABLE_AGE_S = 60.0
#: this many failed frames in a row raise the tracker status to ERROR
ERROR_STREAK = 3
LATE_FIX = ("fix: give the camera driver AND the node the shared-memory transport "
            "(FASTDDS_DEFAULT_PROFILES_FILE=config/fastdds_large_shm.xml, what the launch file sets), "
            "or subscribe best-effort with depth 1 (input.qos_image: sensor_data, input.qos_depth: 1)")


class RateMeter:
    """Events per second over the last ``window_s`` of node-clock time."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_ns = int(window_s * 1e9)
        self._times: Deque[int] = deque()

    def tick(self, now_ns: int) -> None:
        if self._times and now_ns < self._times[-1]:
            self._times.clear()  # the clock jumped back (bag loop, sim time reset)
        self._times.append(now_ns)
        self._trim(now_ns)

    def _trim(self, now_ns: int) -> None:
        while self._times and now_ns - self._times[0] > self.window_ns:
            self._times.popleft()

    def rate(self, now_ns: int) -> float:
        if self._times and now_ns < self._times[-1]:
            self._times.clear()
        self._trim(now_ns)
        if len(self._times) < 2:
            return 0.0
        span = max(now_ns, self._times[-1]) - self._times[0]
        return (len(self._times) - 1) / (span / 1e9) if span > 0 else 0.0

    def last(self) -> Optional[int]:
        return self._times[-1] if self._times else None


class Window:
    """The last ``size`` values of a measurement, for percentiles."""

    def __init__(self, size: int = 300) -> None:
        self._values: Deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self._values.append(float(value))

    def percentile(self, q: float) -> float:
        return float(np.percentile(np.fromiter(self._values, float), q)) if self._values else float("nan")

    def __len__(self) -> int:
        return len(self._values)


class NodeStats:
    """What the node counts and measures between diagnostics periods. Written by the frame
    callbacks and the worker (ints and deques: atomic under the GIL), read by :func:`snapshot`."""

    COUNTERS = ("processed", "zero_stamp", "bad_input", "skipped_before_init", "errors", "camera_info", "no_3d")
    STAGES = ("latency", "convert", "wait", "preprocess", "model", "postprocess", "publish")

    def __init__(self) -> None:
        self.counts = dict.fromkeys(self.COUNTERS, 0)
        self.rates = {k: RateMeter() for k in ("rgb_hz", "aux_hz", "output_hz")}
        self.stages = {k: Window() for k in self.STAGES}
        self.age = Window(100)  # seconds, comparable stamps only
        self.clock_offset_s: Optional[float] = None  # the last age that was not comparable
        self.last_rgb_arrival_ns: Optional[int] = None  # apart from the rate window (it empties)
        self.consecutive_errors = 0
        self.last_problem = ""
        self.last_error = ""
        self._previous: dict = {}

    def arrived(self, aux: bool, now_ns: int) -> None:
        self.rates["aux_hz" if aux else "rgb_hz"].tick(now_ns)
        if not aux:
            self.last_rgb_arrival_ns = now_ns

    def stamped(self, now_ns: int, stamp_ns: int) -> None:
        """An RGB frame stamped ``stamp_ns`` arrived at ``now_ns``: its age, when comparable."""
        age = (now_ns - stamp_ns) / 1e9
        if -1.0 <= age <= COMPARABLE_AGE_S:
            self.age.add(age)
            self.clock_offset_s = None
        else:
            self.clock_offset_s = age

    def problem(self, text: str, counter: str) -> None:
        self.counts[counter] += 1
        self.last_problem = text

    def frame_failed(self, text: str) -> None:
        self.counts["errors"] += 1
        self.consecutive_errors += 1
        self.last_error = text

    def frame_done(self, now_ns: int, stages_ms: dict) -> None:
        """A frame was published; ``stages_ms``: stage name -> milliseconds."""
        self.counts["processed"] += 1
        self.consecutive_errors = 0
        self.rates["output_hz"].tick(now_ns)
        for key, value in stages_ms.items():
            self.stages[key].add(value)

    def latencies(self) -> dict:
        out = {f"latency p{q} ms": self.stages["latency"].percentile(q) for q in (50, 90, 99)}
        out.update({f"{k} p50 ms": self.stages[k].percentile(50) for k in self.STAGES[1:]})
        return out

    def increments(self, counts: dict) -> dict:
        """How much each of ``counts`` grew since the previous call."""
        new = {k: v - self._previous.get(k, 0) for k, v in counts.items()}
        self._previous = dict(counts)
        return new


def depth_valid_fraction(depth: Optional[np.ndarray]) -> Optional[float]:
    """Fraction of valid depth pixels: finite and > 0 (0, NaN and +-inf are invalid, REP 117/118)."""
    if depth is None or depth.size == 0:
        return None
    valid = depth > 0 if depth.dtype.kind in "ui" else np.isfinite(depth) & (depth > 0)
    return float(np.count_nonzero(valid) / depth.size)


@dataclass
class Snapshot:
    """Everything the statuses are computed from (filled by :func:`snapshot` once per period)."""

    node_name: str
    lifecycle_state: str
    active: bool
    now_ns: int
    config_error: str = ""
    preparing: str = ""  # what a running transition does, and for how long
    model: str = ""
    backend: str = "torch"
    device: str = ""
    modality: str = "rgb"
    aux_fallback: bool = False
    aux_silent_s: float = 0.0
    aux_mismatch: bool = False  # both streams arrive, stamps beyond the slop
    aux_mismatch_s: float = 0.0
    aux_offset_s: Optional[float] = None  # aux stamp - RGB stamp of the frames that arrived together
    slop_s: float = 0.0
    last_rgb_ns: Optional[int] = None
    active_since_ns: Optional[int] = None
    stale_s: float = 2.0
    rates: dict = field(default_factory=dict)  # rgb_hz, aux_hz, output_hz
    counters: dict = field(default_factory=dict)  # sync counters + dropped, zero_stamp, bad_input, processed
    new: dict = field(default_factory=dict)  # counter increases since the previous snapshot
    last_problem: str = ""
    last_jump: str = ""
    input_age_s: Optional[float] = None  # median arrival - stamp (None: not measured)
    clock_offset_s: Optional[float] = None  # stamps not on the node clock: their offset
    consecutive_errors: int = 0
    last_error: str = ""
    tracker_state: str = "idle"
    target_id: str = ""
    targets: list = field(default_factory=list)  # (target id, state, confidence) of every target, in batch order
    confidence: float = 0.0
    kept_fraction: float = 0.0
    frame_index: int = -1
    prompt: str = ""
    budget: str = ""  # the token budget's keep ratios and why (prune.mode / deadline_ms)
    latency: dict = field(default_factory=dict)  # name -> ms (percentiles / stage medians)
    depth_valid_fraction: Optional[float] = None


def snapshot(stats: NodeStats, now_ns: int, *, sync: Any = None, session: Any = None, **facts: Any) -> Snapshot:
    """The period's :class:`Snapshot` from the node's ``stats``, its synchroniser's status
    (``inputs.SyncStatus`` or None while inactive), its target ``session``
    (``session.TargetSession``) and ``facts`` (the remaining :class:`Snapshot` fields)."""
    counts = {**(sync.counters if sync is not None else {}), **stats.counts, **facts.pop("extra_counts", {})}
    snap = Snapshot(now_ns=now_ns, rates={k: m.rate(now_ns) for k, m in stats.rates.items()}, counters=counts,
                    new=stats.increments(counts), last_problem=stats.last_problem,
                    input_age_s=stats.age.percentile(50) if len(stats.age) and stats.clock_offset_s is None else None,
                    clock_offset_s=stats.clock_offset_s, consecutive_errors=stats.consecutive_errors,
                    last_error=stats.last_error, latency=stats.latencies(), **facts)
    since = snap.active_since_ns
    last = stats.last_rgb_arrival_ns
    snap.last_rgb_ns = last if since is not None and last is not None and last >= since else None
    if sync is not None:
        snap.aux_fallback, snap.aux_mismatch, snap.aux_mismatch_s = sync.silent_fallback, sync.mismatch_fallback, sync.mismatch_s
        snap.aux_offset_s = sync.offset_ns / 1e9 if sync.offset_ns is not None else None
        arrival = sync.last_aux_arrival_ns
        snap.aux_silent_s = (now_ns - (arrival if arrival is not None else (since or now_ns))) / 1e9
    if session is not None:
        last_result = session.last
        snap.tracker_state, snap.target_id, snap.prompt = session.state.value, session.target_id, session.prompt
        snap.targets = [(t.target_id, t.state.value, float(t.last.confidence) if t.last is not None else 0.0)
                        for t in session.targets]
        if last_result is not None:
            snap.confidence, snap.kept_fraction = float(last_result.confidence), float(last_result.kept_fraction)
            snap.frame_index = int(last_result.frame_index)
    return snap


@dataclass
class Status:
    level: int
    name: str
    message: str
    hardware_id: str
    values: list  # (key, str value)


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.3f}"
    return str(v)


def _input_status(s: Snapshot) -> tuple[int, list[str]]:
    level, msgs = OK, []
    if not s.active:
        return OK, [f"inactive ({s.lifecycle_state})"]
    ref = s.last_rgb_ns if s.last_rgb_ns is not None else s.active_since_ns
    silent = (s.now_ns - ref) / 1e9 if ref is not None else 0.0
    if silent > s.stale_s:
        level = STALE
        msgs.append(f"no RGB image for {silent:.1f} s" if s.last_rgb_ns is not None
                    else f"no RGB image received in {silent:.1f} s since activation")
    if s.aux_fallback:
        level = max(level, WARN)
        msgs.append(f"{s.modality} stream silent for {s.aux_silent_s:.1f} s: tracking RGB-only")
    elif s.aux_mismatch:
        level = max(level, WARN)
        offset = f"{s.aux_offset_s:+.3f} s" if s.aux_offset_s is not None else "unknown"
        msgs.append(f"{s.modality} stamps are {offset} from the RGB stamps, beyond sync.slop_s={s.slop_s:g}: tracking "
                    f"RGB-only for {s.aux_mismatch_s:.1f} s (fix the drivers' clocks, or raise sync.slop_s)")
    if s.new.get("time_jumps", 0) > 0:
        level = max(level, WARN)
        msgs.append(s.last_jump or "stamps jumped back")
    for key, text in (("bad_input", "bad input"), ("zero_stamp", "frames with zero stamps"),
                      ("unmatched_rgb", "RGB frames unsynchronized")):
        if s.new.get(key, 0) > 0:
            level = max(level, WARN)
            msgs.append(f"{s.new[key]} {text}")
    if s.new.get("bad_input", 0) > 0 and s.last_problem:
        msgs.append(s.last_problem)
    if s.input_age_s is not None and s.input_age_s > LATE_S:
        level = max(level, WARN)
        msgs.append(f"frames arrive {s.input_age_s:.2f} s after their stamps (median); {LATE_FIX}")
    if s.depth_valid_fraction is not None and s.depth_valid_fraction < 0.05:
        level = max(level, WARN)
        msgs.append(f"depth {100 * s.depth_valid_fraction:.1f}% valid (0, NaN or inf)")
    return level, msgs or ["ok"]


def _tracker_status(s: Snapshot) -> tuple[int, str]:
    if s.config_error:
        return ERROR, s.config_error
    if s.preparing:
        return OK, f"{s.lifecycle_state}: {s.preparing}"
    if not s.active:
        return OK, f"inactive ({s.lifecycle_state})"
    if s.consecutive_errors >= ERROR_STREAK:
        return ERROR, f"{s.consecutive_errors} frames in a row failed: {s.last_error}"
    if s.new.get("errors", 0) > 0:
        return WARN, f"{s.new['errors']} frames failed: {s.last_error}"
    if len(s.targets) > 1:
        return _targets_status(s.targets)
    if s.tracker_state == "lost":
        return WARN, f"target {s.target_id} lost (confidence {s.confidence:.2f}); widening the search to re-find it"
    if s.tracker_state == "recovering":
        return WARN, f"target {s.target_id} recovering: a candidate (confidence {s.confidence:.2f}) is being confirmed"
    return OK, s.tracker_state if s.tracker_state != "tracking" else f"tracking {s.target_id}"


def _targets_status(targets: list) -> tuple[int, str]:
    """Several targets: OK while all are tracked, WARN naming the lost and recovering ones."""
    lost = [f"{i} ({c:.2f})" for i, state, c in targets if state == "lost"]
    recovering = [f"{i} ({c:.2f})" for i, state, c in targets if state == "recovering"]
    parts = [f"tracking {len(targets)} targets"]
    if lost:
        parts.append(f"lost: {', '.join(lost)}; widening the search to re-find them")
    if recovering:
        parts.append(f"recovering (a candidate being confirmed): {', '.join(recovering)}")
    return (WARN if lost or recovering else OK), "; ".join(parts)


def build_statuses(s: Snapshot) -> list[Status]:
    """The two statuses of the module docstring."""
    hw = f"{s.backend}:{s.device}" if s.device else s.backend
    level, msgs = _input_status(s)
    values = [("lifecycle state", s.lifecycle_state), ("modality", s.modality), ("aux fallback", s.aux_fallback or s.aux_mismatch),
              ("aux offset s", s.aux_offset_s), ("input age p50 s", s.input_age_s), ("clock offset s", s.clock_offset_s)]
    values += list(s.rates.items()) + list(s.counters.items())
    if s.depth_valid_fraction is not None:
        values.append(("depth valid fraction", s.depth_valid_fraction))
    values += [("last problem", s.last_problem), ("last time jump", s.last_jump)]
    inp = Status(level, f"{s.node_name}: input", "; ".join(msgs), hw, [(k, _fmt(v)) for k, v in values])

    level, msg = _tracker_status(s)
    tvalues = [("tracker state", s.tracker_state), ("target id", s.target_id), ("confidence", s.confidence),
               ("targets", ", ".join(f"{i}: {state} {c:.2f}" for i, state, c in s.targets)),
               ("kept token fraction", s.kept_fraction), ("frame index", s.frame_index), ("prompt", s.prompt),
               ("model", s.model), ("backend", s.backend), ("device", s.device), ("token budget", s.budget),
               ("preparing", s.preparing),
               ("frames failed in a row", s.consecutive_errors), ("last frame error", s.last_error)]
    tvalues += list(s.latency.items())
    trk = Status(level, f"{s.node_name}: tracker", msg, hw, [(k, _fmt(v)) for k, v in tvalues])
    return [inp, trk]


def to_msg(statuses: list[Status], stamp: Any) -> Any:
    """``diagnostic_msgs/DiagnosticArray`` stamped ``stamp`` (the node clock's now)."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    arr = DiagnosticArray()
    arr.header.stamp = stamp
    for st in statuses:
        arr.status.append(
            DiagnosticStatus(
                level=bytes([st.level]),
                name=st.name,
                message=st.message,
                hardware_id=st.hardware_id,
                values=[KeyValue(key=k, value=v) for k, v in st.values],
            )
        )
    return arr
