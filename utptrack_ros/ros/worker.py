"""The node's worker thread: the newest synchronised set through ``MultiTracker.track`` (every
target in one batched forward) to the outputs.

One thread per activation (:class:`Worker`) takes the newest set from the one-slot mailbox
(inputs.py; older sets are dropped and counted as stale), tracks it (tracking.py, under the
tracker lock), publishes with the input's header (outputs.py) and records the stage timings for
``/diagnostics`` and the benchmark trace. A frame that fails is counted and logged; the thread
goes on. It ends when the mailbox is closed (deactivate, exit).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

from .sync import SyncedSet

__all__ = ["Worker"]


class Worker:
    """The worker of one activation (module docstring). ``problem(text)`` counts and logs a
    problem, ``warn(text, kind, every_s)`` logs a throttled WARN, ``now_ns()`` reads the node's clock."""

    def __init__(self, inputs: Any, tracking: Any, stats: Any, outputs: Any, trace: Any,
                 problem: Callable[..., None], warn: Callable[..., None], now_ns: Callable[[], int]) -> None:
        self.inputs, self.tracking, self.stats, self.outputs, self.trace = inputs, tracking, stats, outputs, trace
        self.problem, self.warn, self.now_ns = problem, warn, now_ns
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="utptrack-worker", daemon=True)
        self._thread.start()

    def join(self, timeout: float = 10.0) -> None:
        """Wait for the thread (after the mailbox is closed)."""
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            item = self.inputs.mailbox.take(timeout=0.25)
            if item is None:
                if self.inputs.mailbox.closed:
                    return
                continue
            try:
                self.process(item)
            except Exception as err:  # noqa: BLE001 - the worker survives any single frame
                text = f"frame stamped {item.stamp_ns * 1e-9:.6f} failed ({type(err).__name__}): {err}"
                self.stats.frame_failed(text)
                self.warn(text, "frame failed")

    def process(self, item: SyncedSet) -> None:
        """Track one synchronised set and publish its result."""
        frame = item.rgb.payload
        taken, cpu = time.perf_counter(), self.trace.mark()
        depth = item.aux.payload.array if item.aux is not None else None
        out = self.tracking.track(item.stamp_ns, frame.array, depth)
        if out is None:  # inactive meanwhile, or queued before every target started
            if self.tracking.tracker is not None:
                self.stats.counts["skipped_before_init"] += 1
            return
        if out.note:
            self.problem(out.note)
        tracked, cpu_publish = time.perf_counter(), self.trace.mark()
        msgs, (kind, text) = self.outputs.publish_frame(frame, item.stamp_ns, depth, out, (tracked - frame.received) * 1e3)
        if kind == "note":  # 3D output not in use: not a fault
            self.warn(text, "no 3d input", every_s=30.0)
        elif kind == "problem":
            self.problem(text, "no_3d")
        done = time.perf_counter()
        timings = out.result.timings_ms if out.result is not None else {}
        self.trace.frame(item.stamp_ns, taken, tracked, done, timings, cpu, cpu_publish)
        stages = {k: v for k, v in timings.items() if k in ("preprocess", "model", "postprocess")}
        stages.update(latency=(done - frame.received) * 1e3, convert=frame.convert_ms, publish=(done - tracked) * 1e3,
                      wait=(taken - frame.received) * 1e3 - frame.convert_ms)
        self.stats.frame_done(self.now_ns(), stages)
        self.outputs.publish_extras(frame, msgs, out)
