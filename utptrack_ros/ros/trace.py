"""Per-frame stage timestamps of the node's data path, for ``bench/bench_node.py``.

Off unless the environment variable ``UTPTRACK_TRACE_FILE`` names a file (:func:`trace_from_env`
gives a :class:`NullTrace` otherwise, whose hooks do nothing). Then every input
callback and every processed frame adds one record (a dict) in memory; the diagnostics timer
and process exit append them to the file as JSON lines, so nothing is written on the hot path.

Times are ``time.perf_counter()`` seconds: CLOCK_MONOTONIC on Linux, the same clock in every
process on the host, so a benchmark can subtract its own publish time from the node's callback
time. CPU times are ``time.thread_time()`` (this thread) and ``time.process_time()`` (all of the
node's threads: torch's intra-op threads, DDS threads) in seconds.

Records (``ev`` names the kind):

* ``input``: ``stream`` (rgb/aux), ``stamp``, ``t_entry`` (callback entry), ``t_parsed`` (CDR
  read), ``t_converted`` (array ready), ``t_done`` (paired and in the mailbox, or stored),
  ``cpu`` (thread CPU of the callback).
* ``frame``: ``stamp``, ``t_taken`` (worker took the set), ``t_tracked`` (``Tracker.track``
  returned), ``t_published`` (``~/target`` publish returned), ``timings_ms`` (the tracker's own
  preprocess / model / postprocess / total), ``cpu_thread`` and ``cpu_process`` deltas over
  taken -> published, ``cpu_publish`` (thread CPU of tracked -> published).
"""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Optional, Union

__all__ = ["StageTrace", "NullTrace", "trace_from_env", "ENV"]

ENV = "UTPTRACK_TRACE_FILE"

CpuMark = Optional[tuple[float, float]]


class NullTrace:
    """Tracing off: every hook does nothing (the node calls them unconditionally)."""

    def mark(self) -> CpuMark:
        return None

    def input(self, stream: str, stamp: int, entry: float, parsed: float, converted: float, cpu: CpuMark) -> None:
        pass

    def frame(self, stamp: int, taken: float, tracked: float, published: float, timings_ms: dict,
              cpu: CpuMark, cpu_publish: CpuMark) -> None:
        pass

    def flush(self) -> None:
        pass


class StageTrace(NullTrace):
    """Collects records; :meth:`flush` appends them to the file."""

    def __init__(self, path: str, limit: int = 200_000) -> None:
        self.path = path
        self._limit = limit
        self._records: list = []
        self._written = 0
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> Optional["StageTrace"]:
        path = os.environ.get(ENV, "")
        return cls(path) if path else None

    def mark(self) -> CpuMark:
        """CPU clocks now: (this thread, the process)."""
        return time.thread_time(), time.process_time()

    def input(self, stream: str, stamp: int, entry: float, parsed: float, converted: float, cpu: CpuMark) -> None:
        self.add({"ev": "input", "stream": stream, "stamp": stamp, "t_entry": entry, "t_parsed": parsed,
                  "t_converted": converted, "t_done": time.perf_counter(), "cpu": time.thread_time() - cpu[0]})

    def frame(self, stamp: int, taken: float, tracked: float, published: float, timings_ms: dict,
              cpu: CpuMark, cpu_publish: CpuMark) -> None:
        self.add({"ev": "frame", "stamp": stamp, "t_taken": taken, "t_tracked": tracked, "t_published": published,
                  "timings_ms": dict(timings_ms), "cpu_thread": time.thread_time() - cpu[0],
                  "cpu_process": time.process_time() - cpu[1], "cpu_publish": time.thread_time() - cpu_publish[0]})

    def add(self, record: dict) -> None:
        if self._written + len(self._records) < self._limit:
            self._records.append(record)  # list.append is atomic under the GIL

    def flush(self) -> None:
        with self._lock:
            records, self._records = self._records, []
            if not records:
                return
            with open(self.path, "a", encoding="utf-8") as f:
                for r in records:
                    f.write(json.dumps(r) + "\n")
            self._written += len(records)


def trace_from_env() -> Union[StageTrace, NullTrace]:
    """A :class:`StageTrace` writing to ``$UTPTRACK_TRACE_FILE``, or a :class:`NullTrace`."""
    return StageTrace.from_env() or NullTrace()
