"""What the frame callbacks feed and the worker and the init service read: the RGB/aux
synchroniser, the init history and the one-slot mailbox behind one lock, plus the stamp
bookkeeping (time jumps, the RGB-aux offset), and :class:`Frame`, one converted input image.
Pure Python (no rclpy): stamps and clock readings are integer nanoseconds handed in by the node.

A stamp more than :data:`JUMP_BACK_NS` older than the newest one of the same stream (a camera
driver restarting with a new clock, a looping bag, a sim-time reset) is a :class:`TimeJump`: the
sync queues and the init history are cleared (their stamps belong to the old time line) and the
jump is returned to the node, which resets its init-stamp gate and reports it. A frame a little
older than its predecessor (reordered in transport) is no new time line: the synchroniser
discards it as it discards any frame it can no longer pair.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..errors import InputError
from .sync import ApproximateSync, FrameHistory, NewestSetMailbox, Stamped, SyncedSet

__all__ = ["Frame", "TimeJump", "InputFrames", "SyncStatus", "JUMP_BACK_NS"]

#: a stamp this much older than its stream's newest starts a new time line
JUMP_BACK_NS = 1_000_000_000


@dataclass(frozen=True)
class Frame:
    """A converted input image and what the worker needs to publish for it."""

    header: Any  # std_msgs/Header of the input message (copied into outputs)
    array: np.ndarray  # RGB (H, W, 3) uint8, or the aux array
    received: float  # time.perf_counter() at callback entry (latency is a steady-clock duration)
    convert_ms: float


@dataclass(frozen=True)
class TimeJump:
    stream: str  # "RGB" or the aux modality
    from_ns: int
    to_ns: int

    def describe(self) -> str:
        return (f"{self.stream} stamps jumped back {(self.from_ns - self.to_ns) / 1e9:.3f} s "
                f"({self.from_ns / 1e9:.3f} -> {self.to_ns / 1e9:.3f}; driver restart, looping bag or "
                f"sim-time reset): sync queues, init buffer and init stamp reset, tracking goes on")


@dataclass(frozen=True)
class SyncStatus:
    """The synchroniser's state for /diagnostics."""

    counters: dict
    silent_fallback: bool  # aux enabled and silent for sync.aux_timeout_s
    mismatch_fallback: bool  # both arrive, nothing pairs for sync.aux_timeout_s
    mismatch_s: float
    offset_ns: Optional[int]  # aux stamp - RGB stamp of the frames that arrived closest in time
    last_aux_arrival_ns: Optional[int]


class InputFrames:
    """The synchroniser (None while inactive), the init history and the mailbox, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sync: Optional[ApproximateSync] = None
        self._history = FrameHistory()
        self._last_stamp: dict[str, int] = {}
        self.mailbox: NewestSetMailbox[SyncedSet] = NewestSetMailbox()
        self.time_jumps = 0
        self.last_jump: Optional[TimeJump] = None

    @property
    def open(self) -> bool:
        return self._sync is not None

    def start(self, sync: ApproximateSync, init_buffer: int) -> None:
        """Accept frames (activation): a fresh synchroniser, an empty history and mailbox."""
        with self._lock:
            self._sync, self._history = sync, FrameHistory(init_buffer)
            self._last_stamp.clear()
        self.mailbox.reopen()

    def stop(self) -> None:
        """Refuse frames (deactivation); the worker's ``take`` returns None from now on."""
        with self._lock:
            self._sync = None
            self._history.clear()
        self.mailbox.close()

    def set_sync_params(self, slop_ns: int, queue_size: int, aux_timeout_ns: int) -> None:
        with self._lock:
            if self._sync is not None:
                self._sync.set_params(slop_ns, queue_size, aux_timeout_ns)

    def add(self, stream: str, aux: bool, item: Stamped, now_ns: int) -> Optional[TimeJump]:
        """Store a converted frame, pair it, and post a completed set to the mailbox. Returns the
        time jump this frame's stamp made, if any. Ignored while stopped."""
        jump = None
        with self._lock:
            if self._sync is None:
                return None
            last = self._last_stamp.get(stream)
            if last is not None and item.stamp_ns < last - JUMP_BACK_NS:
                jump = TimeJump(stream, last, item.stamp_ns)
                self._sync.forget_stamps()
                self._history.clear()
                self._last_stamp.clear()
                self.time_jumps += 1
                self.last_jump = jump
                last = None
            self._last_stamp[stream] = item.stamp_ns if last is None else max(last, item.stamp_ns)
            if aux:
                self._history.add_aux(item)
                ready = self._sync.add_aux(item, now_ns)
            else:
                self._history.add_rgb(item)
                ready = self._sync.add_rgb(item, now_ns)
        if ready is not None:
            self.mailbox.put(ready)
        return jump

    def find(self, stamp_ns: int, topic: str) -> Stamped:
        """The buffered RGB frame stamped ``stamp_ns`` (0 = the latest); InputError saying which
        stamps there are otherwise (``topic`` names the input in the message)."""
        with self._lock:
            item = self._history.get(stamp_ns)
            span, count = self._history.stamp_range(), len(self._history)
        if item is not None:
            return item
        if count == 0:
            raise InputError(f"no image received yet on '{topic}'")
        lo, hi = span
        raise InputError(
            f"no buffered frame with stamp {stamp_ns * 1e-9:.9f}; {count} frames buffered, stamps "
            f"{lo * 1e-9:.6f} .. {hi * 1e-9:.6f} (use one of them, or a zero stamp for the latest)"
        )

    def nearest_aux(self, stamp_ns: int, slop_ns: int) -> Optional[Stamped]:
        with self._lock:
            return self._history.nearest_aux(stamp_ns, slop_ns)

    def status(self, now_ns: int) -> Optional[SyncStatus]:
        with self._lock:
            sync = self._sync
            if sync is None:
                return None
            return SyncStatus(
                counters={**sync.counters.as_dict(), "time_jumps": self.time_jumps},
                silent_fallback=sync.aux_fallback(now_ns),
                mismatch_fallback=sync.mismatch_fallback(now_ns),
                mismatch_s=sync.mismatch_s(now_ns),
                offset_ns=sync.offset_ns,
                last_aux_arrival_ns=sync.last_aux_arrival_ns(),
            )
