"""RGB + auxiliary approximate-time pairing, the one-slot newest-set mailbox, and the frame
history the init service reads. Pure Python (no rclpy): stamps and clock readings are integer
nanoseconds handed in by the caller, so the policy is unit-tested with hand-stamped items.

Pairing policy (``message_filters`` is not available here; this is our own, documented in
docs/ros.md "Synchronisation"):

* Each stream keeps a queue of at most ``queue_size`` items, oldest evicted (counted unmatched).
* A pair ``(r, a)`` is valid when ``|stamp(r) - stamp(a)| <= slop``.
* On every arrival the *newest* RGB frame that has a valid partner is paired with its nearest
  auxiliary frame and emitted at once (greedy, like the Python ``ApproximateTimeSynchronizer``;
  no waiting for a possibly better partner, so the added latency is at most the aux lag).
* Sets never cross and every message is used at most once: after emitting ``(r, a)``, RGB
  frames stamped ``<= r`` and aux frames stamped ``<= a`` are discarded (counted unmatched).
* A queued frame that can no longer be matched (the other stream already went past
  ``stamp + slop``) is discarded at once (counted unmatched), so queues never hold stale frames.
* Aux fallback: when no aux frame has *arrived* for ``aux_timeout`` (node clock, so bag replay
  under ``use_sim_time`` that pauses does not trip it), RGB frames are emitted alone
  (``aux=None``; the tracker then uses RGB in the aux half) and counted ``rgb_only``. The first
  aux frame that arrives ends the fallback.
* Mismatch fallback: when both streams arrive but no pair has been emitted for ``aux_timeout``
  (the streams' stamps are further apart than the slop: two drivers on different clocks), RGB
  frames are emitted alone too, each one paired instead when an aux frame within the slop is
  already queued. An aux frame within the slop of a recent RGB stamp ends it: pairing resumes.
  :attr:`ApproximateSync.offset_ns` is the measured offset (aux stamp - RGB stamp of the frames
  that arrived closest in time: the drivers' clock offset, however large) for the user to fix
  the slop or the driver.
* A stamp older than the previous one on the same stream (bag loop, camera restart with a new
  clock) clears both queues and counts a ``time_jump``.

The node puts emitted sets into :class:`NewestSetMailbox`: one slot, a newer set overwrites an
unprocessed older one (counted ``dropped``), so the worker always runs on the newest set and no
queue builds up behind a slow model.
"""
from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field, fields
from typing import Any, Deque, Generic, Optional, TypeVar

__all__ = ["Stamped", "SyncedSet", "SyncCounters", "ApproximateSync", "NewestSetMailbox", "FrameHistory"]


@dataclass(frozen=True)
class Stamped:
    """One converted input: header stamp, arrival time on the node clock, and the payload."""

    stamp_ns: int
    arrival_ns: int
    payload: Any = None


@dataclass(frozen=True)
class SyncedSet:
    """What the worker processes: an RGB frame and its auxiliary frame (None = RGB only)."""

    rgb: Stamped
    aux: Optional[Stamped] = None

    @property
    def stamp_ns(self) -> int:
        return self.rgb.stamp_ns

    @property
    def skew_ns(self) -> Optional[int]:
        return None if self.aux is None else self.aux.stamp_ns - self.rgb.stamp_ns


@dataclass
class SyncCounters:
    rgb_received: int = 0
    aux_received: int = 0
    matched: int = 0  # sets emitted with an aux frame
    rgb_only: int = 0  # RGB frames emitted alone (aux disabled or in fallback)
    unmatched_rgb: int = 0  # RGB frames discarded without a partner
    unmatched_aux: int = 0  # aux frames discarded without a partner
    time_jumps: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class ApproximateSync:
    """The pairing policy of the module docstring. Not thread-safe on its own: the node calls it
    under one lock from the subscription callbacks."""

    def __init__(
        self,
        slop_ns: int,
        queue_size: int,
        aux_timeout_ns: int,
        aux_enabled: bool,
        start_ns: Optional[int] = None,
    ) -> None:
        """``start_ns``: when the aux grace period starts (node clock); None or 0 = at the first
        frame (a ROS clock reads 0 until /clock arrives under use_sim_time)."""
        self.aux_enabled = aux_enabled
        self.counters = SyncCounters()
        self._rgb: Deque[Stamped] = deque()
        self._aux: Deque[Stamped] = deque()
        self._last_rgb_stamp: Optional[int] = None
        self._last_aux_stamp: Optional[int] = None
        self._last_aux_arrival: Optional[int] = None
        self._start_ns: Optional[int] = start_ns or None
        self._pairing_since: Optional[int] = self._start_ns  # last emitted pair (or start, aux return)
        # (arrival, stamp) of recent frames, for the offset and mismatch recovery
        self._recent_rgb: Deque[tuple[int, int]] = deque(maxlen=16)
        self._recent_aux: Deque[tuple[int, int]] = deque(maxlen=16)
        #: aux stamp - RGB stamp of the frames that arrived closest in time (None until both arrived)
        self.offset_ns: Optional[int] = None
        self.set_params(slop_ns, queue_size, aux_timeout_ns)

    def set_params(self, slop_ns: int, queue_size: int, aux_timeout_ns: int) -> None:
        if slop_ns < 0 or queue_size < 1 or aux_timeout_ns <= 0:
            raise ValueError(f"slop_ns >= 0, queue_size >= 1, aux_timeout_ns > 0 needed; got {slop_ns}, {queue_size}, {aux_timeout_ns}")
        self.slop_ns, self.queue_size, self.aux_timeout_ns = int(slop_ns), int(queue_size), int(aux_timeout_ns)
        while len(self._rgb) > queue_size:
            self._rgb.popleft()
            self.counters.unmatched_rgb += 1
        while len(self._aux) > queue_size:
            self._aux.popleft()
            self.counters.unmatched_aux += 1

    # -- state -----------------------------------------------------------------------------
    def restart(self, now_ns: int) -> None:
        """Forget queued frames and restart the aux-timeout clock (e.g. on activation)."""
        self._clear()
        self._start_ns = self._pairing_since = now_ns or None
        self._last_aux_arrival = None
        self._last_rgb_stamp = self._last_aux_stamp = None
        self._recent_rgb.clear()
        self._recent_aux.clear()
        self.offset_ns = None

    def forget_stamps(self) -> None:
        """A new time line (the caller saw a stamp jump back): drop queued frames and the stamps
        remembered per stream, so the other stream's first new frame is no jump again."""
        self._time_jump()
        self._last_rgb_stamp = self._last_aux_stamp = None
        self.offset_ns = None

    def aux_fallback(self, now_ns: int) -> bool:
        """True while the aux stream is enabled but silent for more than ``aux_timeout``."""
        if not self.aux_enabled:
            return False
        if self._start_ns is None:
            # started before the clock ran (use_sim_time, no /clock yet: ROS time 0): the aux
            # stream's grace period starts with the first frame instead
            self._start_ns = now_ns
        since = self._last_aux_arrival if self._last_aux_arrival is not None else self._start_ns
        if now_ns < since:  # the clock went backwards (bag loop, replay restart): start over
            self._last_aux_arrival, self._start_ns = None, now_ns
            return False
        return now_ns - since > self.aux_timeout_ns

    def mismatch_fallback(self, now_ns: int) -> bool:
        """True while both streams arrive but no pair was emitted for more than ``aux_timeout``."""
        if not self.aux_enabled or self._last_aux_arrival is None or self.aux_fallback(now_ns):
            return False
        since = self._pairing_since if self._pairing_since is not None else now_ns
        if now_ns < since:  # the clock went backwards: start over
            self._pairing_since = now_ns
            return False
        return now_ns - since > self.aux_timeout_ns

    def mismatch_s(self, now_ns: int) -> float:
        """Seconds since the last emitted pair (how long the mismatch lasts)."""
        since = self._pairing_since if self._pairing_since is not None else now_ns
        return max(0, now_ns - since) / 1e9

    def last_aux_arrival_ns(self) -> Optional[int]:
        return self._last_aux_arrival

    @property
    def queued(self) -> tuple[int, int]:
        return len(self._rgb), len(self._aux)

    # -- arrivals ----------------------------------------------------------------------------
    def add_rgb(self, item: Stamped, now_ns: int) -> Optional[SyncedSet]:
        self.counters.rgb_received += 1
        if self._last_rgb_stamp is not None and item.stamp_ns < self._last_rgb_stamp:
            self._time_jump()
        self._last_rgb_stamp = item.stamp_ns
        if not self.aux_enabled or self.aux_fallback(now_ns):
            return self._alone(item)
        self._recent_rgb.append((now_ns, item.stamp_ns))
        self._measure_offset()
        if self.mismatch_fallback(now_ns):
            partner = self._nearest_aux(item.stamp_ns)
            if partner is None:
                return self._alone(item)
            self._rgb.append(item)
            self._consume(item, partner)
            return self._paired(item, partner, now_ns)
        self._rgb.append(item)
        if len(self._rgb) > self.queue_size:
            self._rgb.popleft()
            self.counters.unmatched_rgb += 1
        return self._match(now_ns)

    def add_aux(self, item: Stamped, now_ns: int) -> Optional[SyncedSet]:
        if not self.aux_enabled:
            return None
        self.counters.aux_received += 1
        if self.aux_fallback(now_ns):  # the stream returns: pairing gets a fresh aux_timeout
            self._pairing_since = now_ns
        self._last_aux_arrival = now_ns
        if self._last_aux_stamp is not None and item.stamp_ns < self._last_aux_stamp:
            self._time_jump()
        self._last_aux_stamp = item.stamp_ns
        self._recent_aux.append((now_ns, item.stamp_ns))
        self._measure_offset()
        if self.mismatch_fallback(now_ns) and any(abs(item.stamp_ns - r) <= self.slop_ns for _, r in self._recent_rgb):
            self._pairing_since = now_ns  # stamps match again: the next RGB frame pairs normally
        self._aux.append(item)
        if len(self._aux) > self.queue_size:
            self._aux.popleft()
            self.counters.unmatched_aux += 1
        return self._match(now_ns)

    # -- policy ------------------------------------------------------------------------------
    def _match(self, now_ns: int) -> Optional[SyncedSet]:
        for r in reversed(self._rgb):  # newest RGB first
            best = self._nearest_aux(r.stamp_ns)
            if best is not None:
                self._consume(r, best)
                return self._paired(r, best, now_ns)
        self._discard_hopeless()
        return None

    def _nearest_aux(self, stamp_ns: int) -> Optional[Stamped]:
        best = None
        for a in self._aux:
            d = abs(a.stamp_ns - stamp_ns)
            if d <= self.slop_ns and (best is None or d < abs(best.stamp_ns - stamp_ns)):
                best = a
        return best

    def _paired(self, r: Stamped, a: Stamped, now_ns: int) -> SyncedSet:
        self.counters.matched += 1
        self._pairing_since = now_ns
        return SyncedSet(r, a)

    def _alone(self, item: Stamped) -> SyncedSet:
        self.counters.unmatched_rgb += len(self._rgb)
        self._rgb.clear()
        self.counters.rgb_only += 1
        return SyncedSet(item, None)

    def _measure_offset(self) -> None:
        """offset_ns for the newest RGB stamp: its nearest recent aux stamp, signed."""
        if self._recent_rgb and self._recent_aux:
            arrival, stamp = self._recent_rgb[-1]
            self.offset_ns = min(self._recent_aux, key=lambda a: abs(a[0] - arrival))[1] - stamp

    def _consume(self, r: Stamped, a: Stamped) -> None:
        while self._rgb and self._rgb[0].stamp_ns <= r.stamp_ns:
            if self._rgb.popleft() is not r:
                self.counters.unmatched_rgb += 1
        while self._aux and self._aux[0].stamp_ns <= a.stamp_ns:
            if self._aux.popleft() is not a:
                self.counters.unmatched_aux += 1

    def _discard_hopeless(self) -> None:
        """Drop frames the other stream has already passed by more than the slop (stamps per
        stream only increase, so no later frame of the other stream can pair with them)."""
        if self._last_aux_stamp is not None:
            while self._rgb and self._rgb[0].stamp_ns + self.slop_ns < self._last_aux_stamp:
                self._rgb.popleft()
                self.counters.unmatched_rgb += 1
        if self._last_rgb_stamp is not None:
            while self._aux and self._aux[0].stamp_ns + self.slop_ns < self._last_rgb_stamp:
                self._aux.popleft()
                self.counters.unmatched_aux += 1

    def _time_jump(self) -> None:
        self.counters.time_jumps += 1
        self._clear()
        self._recent_rgb.clear()
        self._recent_aux.clear()

    def _clear(self) -> None:
        self.counters.unmatched_rgb += len(self._rgb)
        self.counters.unmatched_aux += len(self._aux)
        self._rgb.clear()
        self._aux.clear()


T = TypeVar("T")


class NewestSetMailbox(Generic[T]):
    """One-slot hand-off from the callbacks to the worker: ``put`` overwrites (counted dropped)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Optional[T] = None
        self._closed = False
        self.delivered = 0
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Store ``item``; returns True when it replaced one the worker never took."""
        with self._cond:
            replaced = self._item is not None
            if replaced:
                self.dropped += 1
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: Optional[float] = None) -> Optional[T]:
        """The newest item (removing it), or None after ``timeout`` seconds / when closed."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            if item is not None:
                self.delivered += 1
            return item

    def clear(self) -> None:
        with self._cond:
            self._item = None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False
            self._item = None


@dataclass
class FrameHistory:
    """The last ``capacity`` RGB frames and aux frames, for ``~/init_target`` by stamp."""

    capacity: int = 30
    _rgb: "OrderedDict[int, Stamped]" = field(default_factory=OrderedDict)
    _aux: Deque[Stamped] = field(default_factory=deque)

    def add_rgb(self, item: Stamped) -> None:
        self._rgb[item.stamp_ns] = item
        self._rgb.move_to_end(item.stamp_ns)
        while len(self._rgb) > self.capacity:
            self._rgb.popitem(last=False)

    def add_aux(self, item: Stamped) -> None:
        self._aux.append(item)
        while len(self._aux) > self.capacity:
            self._aux.popleft()

    def clear(self) -> None:
        self._rgb.clear()
        self._aux.clear()

    def __len__(self) -> int:
        return len(self._rgb)

    def latest(self) -> Optional[Stamped]:
        return next(reversed(self._rgb.values()), None)

    def get(self, stamp_ns: int) -> Optional[Stamped]:
        """The RGB frame with exactly this stamp; ``stamp_ns == 0`` = the latest frame."""
        if stamp_ns == 0:
            return self.latest()
        return self._rgb.get(stamp_ns)

    def stamp_range(self) -> Optional[tuple[int, int]]:
        if not self._rgb:
            return None
        return next(iter(self._rgb)), next(reversed(self._rgb))

    def nearest_aux(self, stamp_ns: int, slop_ns: int) -> Optional[Stamped]:
        best = None
        for a in self._aux:
            d = abs(a.stamp_ns - stamp_ns)
            if d <= slop_ns and (best is None or d < abs(best.stamp_ns - stamp_ns)):
                best = a
        return best
