"""The node's ``/diagnostics``: rates, latency percentiles and status levels from the node's
counters. All times are node-clock nanoseconds handed in by the node (``node.get_clock()``),
so bag replay under ``use_sim_time`` is measured in bag time; nothing here creates its own
clock (``diagnostic_updater``'s Python ``TimeStampStatus`` builds a fresh ``Clock`` and so
ignores sim time, ros/diagnostics#232). Only :func:`to_msg` touches message classes.

Two statuses are published per node:

* ``<node>: input``: RGB/aux/output rates, sync counters (matched, unsynchronized, dropped
  stale sets), zero-stamp and bad-input counts. STALE when active and no RGB image arrived for
  ``output.stale_s``; WARN on RGB-only fallback, new bad input, new unsynchronized frames.
* ``<node>: tracker``: lifecycle state, tracker state, target id, confidence, kept tokens,
  latency percentiles and the per-stage breakdown, model, backend, device. ERROR when the model
  could not be loaded (the reason is the message), WARN when the target is LOST.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Optional

import numpy as np

__all__ = ["RateMeter", "Window", "Snapshot", "Status", "build_statuses", "to_msg", "OK", "WARN", "ERROR", "STALE"]

OK, WARN, ERROR, STALE = 0, 1, 2, 3


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


@dataclass
class Snapshot:
    """Everything the statuses are computed from (filled by the node once per period)."""

    node_name: str
    lifecycle_state: str
    active: bool
    now_ns: int
    config_error: str = ""
    model: str = ""
    backend: str = "torch"
    device: str = ""
    modality: str = "rgb"
    aux_fallback: bool = False
    aux_silent_s: float = 0.0
    last_rgb_ns: Optional[int] = None
    active_since_ns: Optional[int] = None
    stale_s: float = 2.0
    rates: dict = field(default_factory=dict)  # rgb_hz, aux_hz, output_hz
    counters: dict = field(default_factory=dict)  # sync counters + dropped, zero_stamp, bad_input, processed
    new: dict = field(default_factory=dict)  # counter increases since the previous snapshot
    last_problem: str = ""
    tracker_state: str = "idle"
    target_id: str = ""
    confidence: float = 0.0
    kept_fraction: float = 0.0
    frame_index: int = -1
    prompt: str = ""
    latency: dict = field(default_factory=dict)  # name -> ms (percentiles / stage medians)
    depth_valid_fraction: Optional[float] = None


@dataclass
class Status:
    level: int
    name: str
    message: str
    hardware_id: str
    values: list  # (key, str value)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.3f}"
    return str(v)


def build_statuses(s: Snapshot) -> list[Status]:
    """The two statuses of the module docstring."""
    hw = f"{s.backend}:{s.device}" if s.device else s.backend
    # -- input ---------------------------------------------------------------------------
    level, msgs = OK, []
    if not s.active:
        msgs.append(f"inactive ({s.lifecycle_state})")
    else:
        ref = s.last_rgb_ns if s.last_rgb_ns is not None else s.active_since_ns
        silent = (s.now_ns - ref) / 1e9 if ref is not None else 0.0
        if silent > s.stale_s:
            level = STALE
            msgs.append(
                f"no RGB image for {silent:.1f} s" if s.last_rgb_ns is not None else f"no RGB image received in {silent:.1f} s since activation"
            )
        if s.aux_fallback:
            level = max(level, WARN)
            msgs.append(f"{s.modality} stream silent for {s.aux_silent_s:.1f} s: tracking RGB-only")
        for key, text in (
            ("bad_input", "bad input"),
            ("zero_stamp", "frames with zero stamps"),
            ("unmatched_rgb", "RGB frames unsynchronized"),
        ):
            if s.new.get(key, 0) > 0:
                level = max(level, WARN)
                msgs.append(f"{s.new[key]} {text}")
        if s.new.get("bad_input", 0) > 0 and s.last_problem:
            msgs.append(s.last_problem)
        if s.depth_valid_fraction is not None and s.depth_valid_fraction < 0.05:
            level = max(level, WARN)
            msgs.append(f"depth {100 * s.depth_valid_fraction:.1f}% valid (NaN/zero)")
        if not msgs:
            msgs.append("ok")
    values = [("lifecycle state", s.lifecycle_state), ("modality", s.modality), ("aux fallback", s.aux_fallback)]
    values += [(k, _fmt(v)) for k, v in s.rates.items()]
    values += [(k, _fmt(v)) for k, v in s.counters.items()]
    if s.depth_valid_fraction is not None:
        values.append(("depth valid fraction", _fmt(s.depth_valid_fraction)))
    values.append(("last problem", s.last_problem))
    inp = Status(level, f"{s.node_name}: input", "; ".join(msgs), hw, [(k, _fmt(v)) for k, v in values])

    # -- tracker -------------------------------------------------------------------------
    if s.config_error:
        level, msg = ERROR, s.config_error
    elif not s.active:
        level, msg = OK, f"inactive ({s.lifecycle_state})"
    elif s.tracker_state == "lost":
        level, msg = WARN, f"target {s.target_id} lost (confidence {s.confidence:.2f})"
    else:
        level, msg = OK, s.tracker_state if s.tracker_state != "tracking" else f"tracking {s.target_id}"
    tvalues = [
        ("tracker state", s.tracker_state),
        ("target id", s.target_id),
        ("confidence", s.confidence),
        ("kept token fraction", s.kept_fraction),
        ("frame index", s.frame_index),
        ("prompt", s.prompt),
        ("model", s.model),
        ("backend", s.backend),
        ("device", s.device),
    ] + [(k, v) for k, v in s.latency.items()]
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
