"""The player: the replay's rclpy node (``Player``) that publishes the bag topics and ``/clock``
and collects the node's ``~/target`` answers (``Arrival``) and ``/diagnostics``.

rclpy is imported only when a ``Player`` is created."""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from .bags import COMPRESSED, IMAGE, STRING
from .node_process import replay_environment


@dataclass
class Arrival:
    """One ``~/target`` message as received by the player."""

    received_ns: int  # time.monotonic_ns() in the player
    stamp_ns: int
    msg: Any


class Player:
    """The replay's rclpy node: publishers for the bag topics and ``/clock``, the node's
    ``~/target`` and ``/diagnostics`` subscriptions, its services. Spins in its own thread.

    QoS: inputs RELIABLE, KEEP_LAST(5), VOLATILE (compatible with the node's ``reliable`` and
    ``best_effort`` subscriptions); ``/clock`` RELIABLE depth 1 (the node's time source reads it
    best effort); ``~/target`` and ``/diagnostics`` RELIABLE with deep queues, so nothing the node
    sends is lost on the player's side.
    """

    def __init__(self, domain_id: int, node_name: str = "utptrack") -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from lifecycle_msgs.srv import ChangeState, GetState
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock

        from utptrack_ros.msg import TrackedTarget
        from utptrack_ros.srv import InitTarget

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
        from ..ros.main import make_executor

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
            from sensor_msgs.msg import CompressedImage, Image
            from std_msgs.msg import String

            cls = {IMAGE: Image, COMPRESSED: CompressedImage, STRING: String}[msgtype]
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
        from lifecycle_msgs.msg import Transition

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
        import rclpy

        self._stop.set()
        self._thread.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
