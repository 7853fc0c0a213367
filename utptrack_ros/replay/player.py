"""The player: the replay's rclpy node (``Player``) that publishes the bag topics and ``/clock``,
collects the node's ``~/target`` answers (``Arrival``) and ``/diagnostics``, drives the node
between bags (``wait_active``, ``start_bag``: a fresh activation on each bag's clock), and plays
one bag on it (``play_bag``: frames up to the init one by one, ``~/init_target``, then the rest
in lock-step or timed) into a ``BagRecord``.

rclpy is imported only when a ``Player`` is created.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ..data.bag import CAMERA_INFO, COMPRESSED, IMAGE, STRING
from ..eval.metrics import first_valid_index
from .bags import PlayFrame, ReplayBag
from .node_process import NodeProcess, replay_environment
from .options import ReplayError, ReplayOptions

logger = logging.getLogger(__name__)

STATE_NAMES = {0: "idle", 1: "tracking", 2: "lost", 3: "recovering"}
_TRANSITION_ACTIVATE, _TRANSITION_DEACTIVATE = 3, 4


@dataclass
class Arrival:
    """One ``~/target`` message as received by the player."""

    received_ns: int  # time.monotonic_ns() in the player
    stamp_ns: int
    msg: Any


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
    # the node's 3D output per frame (TrackedTarget's position fields; NaN / "none" without an answer)
    points_xyz: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # NaN rows without a position
    position_status: list[str] = field(default_factory=list)
    depth_spread_m: np.ndarray = field(default_factory=lambda: np.zeros(0))
    depth_valid_fraction: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def num_frames(self) -> int:
        return len(self.sent_ns)

    @property
    def answered(self) -> int:
        return int((self.received_ns[self.init_index + 1:] >= 0).sum())

    @property
    def missed(self) -> int:
        return int((self.received_ns[self.init_index + 1:] < 0).sum())


class Player:
    """The replay's rclpy node: publishers for the bag topics and ``/clock``, the node's
    ``~/target`` and ``/diagnostics`` subscriptions, its services. Spins in its own thread.

    QoS: inputs RELIABLE, KEEP_LAST(5), VOLATILE (compatible with the node's ``reliable`` and
    ``best_effort`` subscriptions); ``/clock`` RELIABLE depth 1 (the node's time source reads it
    best effort); ``~/target`` and ``/diagnostics`` RELIABLE with deep queues, so nothing the node
    sends is lost on the player's side.
    """

    def __init__(self, domain_id: int, node_name: str = "utptrack") -> None:
        # ROS is imported here, when a player is made, and not at module top: the replay's bag checks,
        # the offline comparisons and the demo import this package without ROS (test/test_core_imports.py)
        import rclpy  # noqa: PLC0415
        from diagnostic_msgs.msg import DiagnosticArray  # noqa: PLC0415
        from lifecycle_msgs.srv import ChangeState, GetState  # noqa: PLC0415
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: PLC0415
        from rosgraph_msgs.msg import Clock  # noqa: PLC0415

        from utptrack_ros.msg import TrackedTarget  # noqa: PLC0415
        from utptrack_ros.srv import InitTarget  # noqa: PLC0415

        self.ns = f"/{node_name}"
        self._lock = threading.Condition()
        self.arrivals: list[Arrival] = []
        self.diagnostics: list[tuple[int, Any]] = []  # (received_ns, DiagnosticArray)
        self._saved_env = {k: os.environ.get(k) for k in replay_environment(domain_id)}
        os.environ.update(replay_environment(domain_id))  # read by the middleware when the node is created
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        try:
            self.node = rclpy.create_node("utptrack_replay_player", context=self.context,
                                          start_parameter_services=False)
        finally:
            for k, v in self._saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self._qos_in = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE,
                                  durability=DurabilityPolicy.VOLATILE)
        self._publishers: dict[tuple[str, str], Any] = {}
        self.clock_pub = self.node.create_publisher(
            Clock, "/clock", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        self._clock_type = Clock
        deep = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=200, reliability=ReliabilityPolicy.RELIABLE)
        self.target_sub = self.node.create_subscription(TrackedTarget, f"{self.ns}/target", self._on_target, deep)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, deep)
        self.init_client = self.node.create_client(InitTarget, f"{self.ns}/init_target")
        self.state_client = self.node.create_client(GetState, f"{self.ns}/get_state")
        self.change_client = self.node.create_client(ChangeState, f"{self.ns}/change_state")
        self._init_type, self._get_state, self._change_state = InitTarget, GetState, ChangeState
        # rclpy's C++ EventsExecutor (single-threaded fallback): with the Python
        # MultiThreadedExecutor the ~/target callbacks lagged by up to 2.3 s (demo: end-to-end p50
        # 51 ms, p95 670 ms against 29 / 32 ms with this one, node time 23-27 ms in both; docs/replay.md)
        from ..ros.main import make_executor  # noqa: PLC0415

        self.executor, _ = make_executor("events", self.context)  # "single" where it cannot load
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="replay-player", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.1)

    # -- callbacks (executor thread) ------------------------------------------------------------
    def _on_target(self, msg: Any) -> None:
        now = time.monotonic_ns()
        stamp = int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec)
        with self._lock:
            self.arrivals.append(Arrival(now, stamp, msg))
            self._lock.notify_all()

    def _on_diagnostics(self, msg: Any) -> None:
        if not any(s.name.startswith(self.ns + ":") for s in msg.status):
            return
        with self._lock:
            self.diagnostics.append((time.monotonic_ns(), msg))
            self._lock.notify_all()

    # -- publishing -------------------------------------------------------------------------------
    def publisher(self, topic: str, msgtype: str) -> Any:
        key = (topic, msgtype)
        if key not in self._publishers:
            from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: PLC0415
            from std_msgs.msg import String  # noqa: PLC0415

            cls = {IMAGE: Image, COMPRESSED: CompressedImage, STRING: String, CAMERA_INFO: CameraInfo}[msgtype]
            qos = self._qos_in if msgtype != STRING else 10
            self._publishers[key] = self.node.create_publisher(cls, topic, qos)
        return self._publishers[key]

    def publish_clock(self, t_ns: int) -> None:
        msg = self._clock_type()
        msg.clock.sec, msg.clock.nanosec = divmod(int(t_ns), 10**9)
        self.clock_pub.publish(msg)

    # -- waiting ----------------------------------------------------------------------------------
    def wait(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """``predicate()`` (called under the lock) once truthy, else None after ``timeout`` s."""
        end = time.monotonic() + timeout
        with self._lock:
            while True:
                value = predicate()
                if value:
                    return value
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(min(left, 0.05))

    def arrival_count(self) -> int:
        with self._lock:
            return len(self.arrivals)

    def call(self, client: Any, request: Any, timeout: float) -> Any:
        """Call a service; None when it is unavailable or does not answer in ``timeout`` s."""
        end = time.monotonic() + timeout
        if not client.wait_for_service(timeout_sec=max(0.1, timeout)):
            return None
        future = client.call_async(request)
        while not future.done() and time.monotonic() < end:
            time.sleep(0.005)
        if not future.done():
            future.cancel()
            return None
        return future.result()

    def node_state(self, timeout: float = 2.0) -> Optional[str]:
        res = self.call(self.state_client, self._get_state.Request(), timeout)
        return None if res is None else str(res.current_state.label)

    def transition(self, transition_id: int, timeout: float = 60.0) -> bool:
        from lifecycle_msgs.msg import Transition  # noqa: PLC0415

        request = self._change_state.Request(transition=Transition(id=transition_id))
        res = self.call(self.change_client, request, timeout)
        return bool(res is not None and res.success)

    def init_target(self, stamp_ns: int, box_xywh: Sequence[float], prompt: str, target_id: str,
                    timeout: float) -> Any:
        x, y, w, h = (float(v) for v in box_xywh)
        req = self._init_type.Request(center_x=x + w / 2.0, center_y=y + h / 2.0, size_x=w, size_y=h,
                                      prompt=prompt, target_id=target_id)
        req.header.stamp.sec, req.header.stamp.nanosec = divmod(int(stamp_ns), 10**9)
        return self.call(self.init_client, req, timeout)

    def target_publishers(self) -> int:
        return self.target_sub.get_publisher_count()

    def close(self) -> None:
        import rclpy  # noqa: PLC0415

        self._stop.set()
        self._thread.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)

    # -- what arrived ---------------------------------------------------------------------------
    def arrivals_since(self, start: int) -> list[Arrival]:
        """The ``~/target`` answers received after the first ``start`` ones (a copy)."""
        with self._lock:
            return list(self.arrivals[start:])

    def diagnostics_since(self, start: int) -> list[tuple[int, Any]]:
        """The ``/diagnostics`` messages received after the first ``start`` ones (a copy)."""
        with self._lock:
            return list(self.diagnostics[start:])

    def diagnostics_count(self) -> int:
        with self._lock:
            return len(self.diagnostics)

    # -- the node between bags ------------------------------------------------------------------
    def wait_active(self, node: NodeProcess, timeout: float) -> None:
        """Until ``node`` reports the lifecycle state ``active`` (its autostart). Its transitions run
        off the executor, so ``get_state`` answers throughout (``configuring``, ``inactive``,
        ``activating``); a failed transition is an ERROR tracker status on /diagnostics with the reason.

        Raises:
            ReplayError: the node exited, ended in another state, or took longer than ``timeout`` s.
        """
        end = time.monotonic() + timeout
        state = None
        while time.monotonic() < end:
            if not node.alive():
                raise ReplayError(f"the node exited with code {node.proc.returncode} before it became active; "
                                  f"its log ({node.log_path}):\n{node.log_tail()}")
            state = self.node_state(timeout=2.0)
            if state == "active":
                return
            error = self._transition_error()
            if error or state not in (None, "unconfigured", "configuring", "inactive", "activating"):
                raise ReplayError(f"the node is '{state}' instead of active ({error or 'a transition failed'}); "
                                  f"its log ({node.log_path}):\n{node.log_tail()}")
            time.sleep(0.2)
        raise ReplayError(f"the node did not become active within {timeout:.0f} s (last state: {state}); "
                          f"its log ({node.log_path}):\n{node.log_tail()}")

    def _transition_error(self) -> str:
        """The reason of the node's newest ERROR tracker status ("" if its newest status is no ERROR)."""
        with self._lock:
            newest = self.diagnostics[-1][1] if self.diagnostics else None
        if newest is None:
            return ""
        tracker = _node_status(newest, self.ns).get("tracker", {})
        return tracker.get("message", "") if tracker.get("level") == 2 else ""

    def start_bag(self, node: NodeProcess, first_ns: int, period_ns: int) -> dict[str, dict[str, str]]:
        """A fresh activation for the next bag, on the bag's clock; returns the node's status right after.

        ``/clock`` jumps to ``A = first - 4 periods`` (before the bag, so the bag's own time never goes
        back) and steps forward until the node's diagnostics timer fires: a status stamped after ``A``
        proves the node's clock is there (the node's time source keeps only the newest ``/clock``
        message, so this is the only safe acknowledgement). The node is then deactivated (if active) and
        activated again: fresh tracker, sync queues, init buffer, and sync timers started on this clock
        (the model stays loaded). The clock steps on until the next status: the baseline the bag's
        counters are measured from. With the replay's diagnostics period (0.2 s) the aux stream has been
        silent for about 0.6 s when the first frame comes, inside ``sync.aux_timeout_s`` (1 s by
        default), so the first frame is paired normally.

        Raises:
            ReplayError: no status while the clock moved, or a lifecycle transition failed.
        """
        start = first_ns - 4 * period_ns
        clock, status = self._advance_clock(start, first_ns - 2 * period_ns, period_ns)
        if status is None:
            raise ReplayError(f"the node sent no /diagnostics while /clock moved; log:\n{node.log_tail()}")
        if self.node_state() == "active" and not self.transition(_TRANSITION_DEACTIVATE):
            raise ReplayError(f"could not deactivate the node before a bag; log:\n{node.log_tail()}")
        if not self.transition(_TRANSITION_ACTIVATE):
            raise ReplayError(f"could not activate the node before a bag; log:\n{node.log_tail()}")
        _, status = self._advance_clock(clock, first_ns - period_ns // 5, period_ns, jump=False)
        if status is None:
            raise ReplayError(f"the node sent no /diagnostics after activation; log:\n{node.log_tail()}")
        return status

    def flush_diagnostics(self, t_ns: int, period_ns: int) -> Optional[dict]:
        """The node's status after the clock moved on from ``t_ns`` (at most 3 periods), or None."""
        return self._advance_clock(t_ns, t_ns + 3 * period_ns, period_ns, jump=False)[1]

    def _advance_clock(self, start_ns: int, limit_ns: int, period_ns: int, *, jump: bool = True,
                       timeout: float = 5.0) -> tuple[int, Optional[dict]]:
        """Publish ``/clock`` = ``start_ns`` (if ``jump``), then step it forward by a tenth of a
        diagnostics period every 30 ms (at most to ``limit_ns``) until the node sends a status stamped
        at or after ``start_ns`` (strictly after it without ``jump``: the clock was already there, so
        only a later status is new). Returns (last clock published, that status or None after ``timeout``)."""
        since = self.diagnostics_count()  # bags may share stamps: only statuses sent from now on count

        def newest() -> Optional[Any]:  # called under the lock (``wait``)
            for _, msg in reversed(self.diagnostics[since:]):
                stamp = int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec)
                if stamp > start_ns or (jump and stamp == start_ns):
                    return msg
            return None

        clock = start_ns
        if jump:
            self.publish_clock(clock)
        end = time.monotonic() + timeout
        step = max(1, period_ns // 10)
        while time.monotonic() < end:
            msg = self.wait(newest, 0.03)
            if msg is not None:
                return clock, _node_status(msg, self.ns)
            if clock + step <= limit_ns:
                clock += step
                self.publish_clock(clock)
        return clock, None

    # -- one bag --------------------------------------------------------------------------------
    def play_bag(self, bag: ReplayBag, frames: list[PlayFrame], options: ReplayOptions, diag_period_s: float, *,
                 progress: bool = True, node: Optional[NodeProcess] = None,
                 baseline: Optional[Mapping[str, Mapping[str, str]]] = None) -> BagRecord:
        """Play ``frames`` (``read_play_frames``) of ``bag`` on the running node: the frames up to
        the first annotated one one by one, ``~/init_target`` on it, then the rest in
        ``options.mode``; see the package docstring (``replay``) for the protocol.

        Args:
            diag_period_s: the node's diagnostics period (its status is read after the bag).
            node: the node process, to fail at once when it exits.
            baseline: the node's status before the bag (its counters are reported as increases over it).

        Raises:
            ReplayError: the node did not answer the frames before the init, or the init call, or exited.
        """
        return _BagPlayer(self, bag, options, diag_period_s, progress, node).play(frames, baseline)


def _node_status(msg: Any, ns: str) -> dict[str, dict[str, str]]:
    """``{status name: {level, message, key: value...}}`` of the node's statuses in a DiagnosticArray."""
    out = {}
    for s in msg.status:
        if s.name.startswith(ns + ":"):
            level = s.level[0] if isinstance(s.level, (bytes, bytearray)) else int(s.level)
            out[s.name.split(": ", 1)[1]] = {"level": int(level), "message": s.message,
                                             **{kv.key: kv.value for kv in s.values}}
    return out


def _counters(status: Mapping[str, Mapping[str, str]]) -> dict[str, int]:
    """The integer counters of the node's ``input`` status (processed, dropped_stale, matched...)."""
    out = {}
    for key, value in status.get("input", {}).items():
        if key != "level" and isinstance(value, str) and value.isdigit():
            out[key] = int(value)
    return out


class _BagPlayer:
    """Plays one bag on a running node (``Player.play_bag``)."""

    def __init__(self, player: Player, bag: ReplayBag, options: ReplayOptions, diag_period_s: float,
                 progress: bool, node: Optional[NodeProcess] = None) -> None:
        self.player, self.bag, self.options = player, bag, options
        self.diag_period_ns = int(diag_period_s * 1e9)
        self.progress = progress
        self.node = node

    def _await(self, find: Callable[[], Optional[Arrival]], timeout: float) -> Optional[Arrival]:
        """``find()``'s arrival, or None after ``timeout``; raises at once if the node process died."""
        node = self.node
        found = self.player.wait(lambda: find() or (node is not None and not node.alive()), timeout)
        if found is True and node is not None:
            raise ReplayError(f"the node exited (code {node.proc.returncode}) while playing {self.bag.name}; "
                              f"its log ({node.log_path}):\n{node.log_tail()}")
        return found or None

    def _publish_frame(self, frame: PlayFrame) -> int:
        player = self.player
        player.publish_clock(frame.bag_time_ns)
        for topic, raw in frame.before:
            msgtype = (STRING if topic == self.bag.topics.prompt else CAMERA_INFO if topic == self.bag.info_topic
                       else (self.bag.aux_type or IMAGE))
            player.publisher(topic, msgtype).publish(raw)
        pub = player.publisher(self.bag.topics.color, self.bag.color_type)
        sent = time.monotonic_ns()
        pub.publish(frame.color)
        return sent

    def _wait_inputs_matched(self, timeout: float = 30.0) -> None:
        pubs = [self.player.publisher(self.bag.topics.color, self.bag.color_type)]
        if self.bag.aux_topic:
            pubs.append(self.player.publisher(self.bag.aux_topic, self.bag.aux_type or IMAGE))
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(pub.get_subscription_count() > 0 for pub in pubs) and self.player.target_publishers() > 0:
                time.sleep(0.2)  # the reader side finishes matching a moment after the writer side
                return
            time.sleep(0.05)
        raise ReplayError(f"the node did not subscribe to {[pub.topic_name for pub in pubs]} within {timeout:.0f} s")

    def _answer(self, stamp: int, since: int) -> Callable[[], Optional[Arrival]]:
        arrivals = self.player.arrivals

        def find() -> Optional[Arrival]:  # called under the player's lock (``wait``)
            for a in reversed(arrivals[since:]):
                if a.stamp_ns == stamp:
                    return a
            return None

        return find

    def play(self, frames: list[PlayFrame], baseline: Optional[Mapping[str, Mapping[str, str]]] = None) -> BagRecord:
        """Play ``frames`` (``read_play_frames``); ``baseline``: the node's status before the bag
        (its counters are reported as increases over it)."""
        from tqdm import tqdm

        bag, seq, options = self.bag, self.bag.sequence, self.options
        n = len(frames)
        init = first_valid_index(seq.gt, seq.absent)
        rec = BagRecord(bag=bag, sent_ns=np.full(n, -1, np.int64), received_ns=np.full(n, -1, np.int64),
                        boxes_xywh=np.full((n, 4), np.nan), confidence=np.full(n, np.nan),
                        kept_fraction=np.full(n, np.nan), state=["none"] * n, node_latency_ms=np.full(n, np.nan),
                        model_ms=np.full(n, np.nan), init_index=init, init_ok=False, init_message="",
                        init_call_ms=float("nan"), bag_time_ns=np.array([f.bag_time_ns for f in frames], np.int64),
                        points_xyz=np.full((n, 3), np.nan), position_status=["none"] * n,
                        depth_spread_m=np.full(n, np.nan), depth_valid_fraction=np.full(n, np.nan))
        self._wait_inputs_matched()
        start_arrivals = self.player.arrival_count()
        start_diags = self.player.diagnostics_count()
        t_wall = time.monotonic()
        bar = tqdm(total=n, desc=f"replay {bag.name}", unit="frame", disable=not self.progress, leave=False)
        try:
            # 1. frames up to the first annotated one, one by one (retried: the first frames after
            #    (re)activation may race the subscription match)
            for frame in frames[: init + 1]:
                for attempt in range(3):
                    since = self.player.arrival_count()
                    self._publish_frame(frame)
                    if self._await(self._answer(frame.stamp_ns, since), min(options.frame_timeout_s, 5.0 * (attempt + 1))):
                        break
                else:
                    raise ReplayError(f"{bag.name}: the node did not answer frame {frame.index} (stamp "
                                      f"{frame.stamp_ns}) before the init; is it active on {bag.topics.color}?")
                bar.update()
            # 2. the init service on the first annotated frame
            prompt = (seq.prompt or "") if bag.use_prompt else ""
            t0 = time.monotonic_ns()
            res = self.player.init_target(frames[init].stamp_ns, seq.gt[init], prompt, bag.name, options.init_timeout_s)
            rec.init_call_ms = (time.monotonic_ns() - t0) / 1e6
            if res is None:
                raise ReplayError(f"{bag.name}: ~/init_target did not answer within {options.init_timeout_s:.0f} s")
            rec.init_ok, rec.init_message = bool(res.success), str(res.message)
            if not res.success:
                logger.warning("%s: init refused: %s", bag.name, res.message)
            else:
                rec.boxes_xywh[init] = seq.gt[init]
                rec.state[init] = "init"
            # 3. the rest, in the chosen mode
            after_init = self.player.arrival_count()
            rest = frames[init + 1:] if rec.init_ok else []
            if options.mode == "lockstep":
                self._lockstep(rest, rec, after_init, bar)
            else:
                self._timed(rest, rec, after_init, bar)
            bar.update(n - bar.n)
        finally:
            bar.close()
        rec.wall_time_s = time.monotonic() - t_wall
        last_time = frames[-1].bag_time_ns
        status = self.player.flush_diagnostics(last_time, self.diag_period_ns)
        if status is None:
            logger.warning("%s: no /diagnostics from the node after the bag", bag.name)
        else:
            rec.node_status = status
            before = _counters(baseline or {})
            rec.node_counters = {k: v - before.get(k, 0) for k, v in _counters(status).items()}
        rec.targets = self.player.arrivals_since(start_arrivals)
        rec.diagnostics = self.player.diagnostics_since(start_diags)
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
        rec.position_status[i] = str(m.position_status) or "none"
        rec.depth_valid_fraction[i] = float(m.depth_valid_fraction)
        if m.has_position:
            rec.points_xyz[i] = (m.position.x, m.position.y, m.position.z)
            rec.depth_spread_m[i] = float(m.depth_spread_m)

    def _lockstep(self, frames: list[PlayFrame], rec: BagRecord, since: int, bar: Any) -> None:
        missed = 0
        for frame in frames:
            start = self.player.arrival_count()
            rec.sent_ns[frame.index] = self._publish_frame(frame)
            arrival = self._await(self._answer(frame.stamp_ns, start), self.options.frame_timeout_s)
            if arrival is None:
                missed += 1
                logger.warning("%s: no answer to frame %d within %.1f s (missed)", self.bag.name, frame.index,
                               self.options.frame_timeout_s)
            else:
                self._store(rec, frame.index, arrival)
            bar.update()
            bar.set_postfix_str(f"missed {missed}")
        # answers that came after their frame's timeout do not count; they are reported
        answered_late = {a.stamp_ns for a in self.player.arrivals_since(since)}
        rec.late_answers = sum(1 for f in frames if rec.received_ns[f.index] < 0 and f.stamp_ns in answered_late)

    def _timed(self, frames: list[PlayFrame], rec: BagRecord, since: int, bar: Any) -> None:
        if not frames:
            return
        rate = 1.0 if self.options.mode == "realtime" else self.options.rate
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
                self.player.publish_clock(min(sim, frame.bag_time_ns))
                time.sleep(min(clock_step, due - now) / 1e9)
            rec.sent_ns[frame.index] = self._publish_frame(frame)
            bar.update()
        index = {f.stamp_ns: f.index for f in frames}
        pending = set(index)
        end = time.monotonic() + self.options.drain_timeout_s

        def all_in() -> bool:  # called under the player's lock (``wait``)
            for a in self.player.arrivals[since:]:
                pending.discard(a.stamp_ns)
            return not pending

        self.player.wait(all_in, max(0.0, end - time.monotonic()))
        arrivals = self.player.arrivals_since(since)
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
