"""Playing one bag on a running node (``_BagPlayer``) and what it recorded (``BagRecord``):
frames up to the init one by one, ``~/init_target``, then the rest in lock-step or timed."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import numpy as np

from .bags import IMAGE, STRING, PlayFrame, ReplayBag
from .lifecycle import _counters, _flush_diagnostics
from .node_process import NodeProcess
from .options import ReplayError, ReplayOptions
from .player import Arrival, Player

logger = logging.getLogger(__name__)

STATE_NAMES = {0: "idle", 1: "tracking", 2: "lost"}


@dataclass
class BagRecord:
    """What the replay of one bag recorded (per frame arrays have one row per colour frame)."""

    bag: ReplayBag
    sent_ns: np.ndarray  # -1 = not part of the timed stream (up to the init frame)
    received_ns: np.ndarray  # -1 = no answer (missed), or up to the init frame
    boxes_xywh: np.ndarray  # NaN = no box
    confidence: np.ndarray
    kept_fraction: np.ndarray
    state: list[str]
    node_latency_ms: np.ndarray  # the node's own latency_ms (arrival in the node -> publish)
    model_ms: np.ndarray
    init_index: int
    init_ok: bool
    init_message: str
    init_call_ms: float
    bag_time_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # recorded time per frame
    late_answers: int = 0
    extra_answers: int = 0
    node_counters: dict[str, Any] = field(default_factory=dict)
    node_status: dict[str, Any] = field(default_factory=dict)
    targets: list[Arrival] = field(default_factory=list)
    diagnostics: list[tuple[int, Any]] = field(default_factory=list)
    wall_time_s: float = 0.0

    @property
    def num_frames(self) -> int:
        return len(self.sent_ns)

    @property
    def answered(self) -> int:
        return int((self.received_ns[self.init_index + 1:] >= 0).sum())

    @property
    def missed(self) -> int:
        return int((self.received_ns[self.init_index + 1:] < 0).sum())


class _BagPlayer:
    """Plays one bag on a running node; see the package docstring (``ros.replay``) for the protocol."""

    def __init__(self, player: Player, bag: ReplayBag, options: ReplayOptions, diag_period_s: float,
                 progress: bool, node: Optional[NodeProcess] = None) -> None:
        self.p, self.bag, self.o = player, bag, options
        self.diag_period_ns = int(diag_period_s * 1e9)
        self.progress = progress
        self.node = node

    def _await(self, find: Callable[[], Optional[Arrival]], timeout: float) -> Optional[Arrival]:
        """``find()``'s arrival, or None after ``timeout``; raises at once if the node process died."""
        node = self.node
        found = self.p.wait(lambda: find() or (node is not None and not node.alive()), timeout)
        if found is True and node is not None:
            raise ReplayError(f"the node exited (code {node.proc.returncode}) while playing {self.bag.name}; "
                              f"its log ({node.log_path}):\n{node.log_tail()}")
        return found or None

    def _publish_frame(self, frame: PlayFrame) -> int:
        p = self.p
        p.publish_clock(frame.bag_time_ns)
        for topic, raw in frame.before:
            msgtype = STRING if topic == self.bag.topics.prompt else (self.bag.aux_type or IMAGE)
            p.publisher(topic, msgtype).publish(raw)
        pub = p.publisher(self.bag.topics.color, self.bag.color_type)
        sent = time.monotonic_ns()
        pub.publish(frame.color)
        return sent

    def _wait_inputs_matched(self, timeout: float = 30.0) -> None:
        pubs = [self.p.publisher(self.bag.topics.color, self.bag.color_type)]
        if self.bag.aux_topic:
            pubs.append(self.p.publisher(self.bag.aux_topic, self.bag.aux_type or IMAGE))
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(pub.get_subscription_count() > 0 for pub in pubs) and self.p.target_publishers() > 0:
                time.sleep(0.2)  # the reader side finishes matching a moment after the writer side
                return
            time.sleep(0.05)
        raise ReplayError(f"the node did not subscribe to {[pub.topic_name for pub in pubs]} within {timeout:.0f} s")

    def _answer(self, stamp: int, since: int) -> Callable[[], Optional[Arrival]]:
        arrivals = self.p.arrivals

        def find() -> Optional[Arrival]:
            for a in reversed(arrivals[since:]):
                if a.stamp_ns == stamp:
                    return a
            return None

        return find

    def play(self, frames: list[PlayFrame], baseline: Optional[Mapping[str, Mapping[str, str]]] = None) -> BagRecord:
        """Play ``frames`` (``read_play_frames``); ``baseline``: the node's status before the bag
        (its counters are reported as increases over it)."""
        from tqdm import tqdm

        bag, seq, o = self.bag, self.bag.sequence, self.o
        n = len(frames)
        from ..eval.metrics import first_valid_index

        init = first_valid_index(seq.gt, seq.absent)
        rec = BagRecord(bag=bag, sent_ns=np.full(n, -1, np.int64), received_ns=np.full(n, -1, np.int64),
                        boxes_xywh=np.full((n, 4), np.nan), confidence=np.full(n, np.nan),
                        kept_fraction=np.full(n, np.nan), state=["none"] * n, node_latency_ms=np.full(n, np.nan),
                        model_ms=np.full(n, np.nan), init_index=init, init_ok=False, init_message="",
                        init_call_ms=float("nan"), bag_time_ns=np.array([f.bag_time_ns for f in frames], np.int64))
        self._wait_inputs_matched()
        start_arrivals = self.p.arrival_count()
        start_diags = len(self.p.diagnostics)
        t_wall = time.monotonic()
        bar = tqdm(total=n, desc=f"replay {bag.name}", unit="frame", disable=not self.progress, leave=False)
        try:
            # 1. frames up to the first annotated one, one by one (retried: the first frames after
            #    (re)activation may race the subscription match)
            for frame in frames[: init + 1]:
                for attempt in range(3):
                    since = self.p.arrival_count()
                    self._publish_frame(frame)
                    if self._await(self._answer(frame.stamp_ns, since), min(o.frame_timeout_s, 5.0 * (attempt + 1))):
                        break
                else:
                    raise ReplayError(f"{bag.name}: the node did not answer frame {frame.index} (stamp "
                                      f"{frame.stamp_ns}) before the init; is it active on {bag.topics.color}?")
                bar.update()
            # 2. the init service on the first annotated frame
            prompt = (seq.prompt or "") if bag.use_prompt else ""
            t0 = time.monotonic_ns()
            res = self.p.init_target(frames[init].stamp_ns, seq.gt[init], prompt, bag.name, o.init_timeout_s)
            rec.init_call_ms = (time.monotonic_ns() - t0) / 1e6
            if res is None:
                raise ReplayError(f"{bag.name}: ~/init_target did not answer within {o.init_timeout_s:.0f} s")
            rec.init_ok, rec.init_message = bool(res.success), str(res.message)
            if not res.success:
                logger.warning("%s: init refused: %s", bag.name, res.message)
            else:
                rec.boxes_xywh[init] = seq.gt[init]
                rec.state[init] = "init"
            # 3. the rest, in the chosen mode
            after_init = self.p.arrival_count()
            rest = frames[init + 1:] if rec.init_ok else []
            if o.mode == "lockstep":
                self._lockstep(rest, rec, after_init, bar)
            else:
                self._timed(rest, rec, after_init, bar)
            bar.update(n - bar.n)
        finally:
            bar.close()
        rec.wall_time_s = time.monotonic() - t_wall
        last_time = frames[-1].bag_time_ns
        status = _flush_diagnostics(self.p, last_time, self.diag_period_ns)
        if status is None:
            logger.warning("%s: no /diagnostics from the node after the bag", bag.name)
        else:
            rec.node_status = status
            before = _counters(baseline or {})
            rec.node_counters = {k: v - before.get(k, 0) for k, v in _counters(status).items()}
        with self.p._lock:
            rec.targets = list(self.p.arrivals[start_arrivals:])
            rec.diagnostics = list(self.p.diagnostics[start_diags:])
        return rec

    def _store(self, rec: BagRecord, i: int, arrival: Arrival) -> None:
        m = arrival.msg
        rec.received_ns[i] = arrival.received_ns
        rec.state[i] = STATE_NAMES.get(int(m.state), str(m.state))
        rec.node_latency_ms[i] = float(m.latency_ms)
        rec.model_ms[i] = float(m.model_ms)
        if int(m.state) != 0:  # IDLE carries no box
            rec.boxes_xywh[i] = (m.center_x - m.size_x / 2.0, m.center_y - m.size_y / 2.0, m.size_x, m.size_y)
            rec.confidence[i] = float(m.confidence)
            rec.kept_fraction[i] = float(m.kept_token_fraction)

    def _lockstep(self, frames: list[PlayFrame], rec: BagRecord, since: int, bar: Any) -> None:
        missed = 0
        for frame in frames:
            start = self.p.arrival_count()
            rec.sent_ns[frame.index] = self._publish_frame(frame)
            arrival = self._await(self._answer(frame.stamp_ns, start), self.o.frame_timeout_s)
            if arrival is None:
                missed += 1
                logger.warning("%s: no answer to frame %d within %.1f s (missed)", self.bag.name, frame.index,
                               self.o.frame_timeout_s)
            else:
                self._store(rec, frame.index, arrival)
            bar.update()
            bar.set_postfix_str(f"missed {missed}")
        # answers that came after their frame's timeout do not count; they are reported
        with self.p._lock:
            answered_late = {a.stamp_ns for a in self.p.arrivals[since:]}
        rec.late_answers = sum(1 for f in frames if rec.received_ns[f.index] < 0 and f.stamp_ns in answered_late)

    def _timed(self, frames: list[PlayFrame], rec: BagRecord, since: int, bar: Any) -> None:
        if not frames:
            return
        rate = 1.0 if self.o.mode == "realtime" else self.o.rate
        base_bag = frames[0].bag_time_ns
        t0 = time.monotonic_ns()
        clock_step = 20_000_000  # /clock every 20 ms of wall time between frames (like `ros2 bag play --clock 50`)
        for frame in frames:
            due = t0 + int((frame.bag_time_ns - base_bag) / rate)
            while True:
                now = time.monotonic_ns()
                if now >= due:
                    break
                sim = base_bag + int((now - t0) * rate)
                self.p.publish_clock(min(sim, frame.bag_time_ns))
                time.sleep(min(clock_step, due - now) / 1e9)
            rec.sent_ns[frame.index] = self._publish_frame(frame)
            bar.update()
        index = {f.stamp_ns: f.index for f in frames}
        pending = set(index)
        end = time.monotonic() + self.o.drain_timeout_s

        def all_in() -> bool:
            for a in self.p.arrivals[since:]:
                pending.discard(a.stamp_ns)
            return not pending

        self.p.wait(all_in, max(0.0, end - time.monotonic()))
        with self.p._lock:
            arrivals = list(self.p.arrivals[since:])
        seen: set[int] = set()
        for a in arrivals:
            i = index.get(a.stamp_ns)
            if i is None:
                continue
            if a.stamp_ns in seen:
                rec.extra_answers += 1
                continue
            seen.add(a.stamp_ns)
            self._store(rec, i, a)
