"""Helpers for the ROS tests: the real node entry point in a subprocess
(``utptrack_ros.replay.node_process.NodeProcess``), over real DDS, fed the synthetic scene
(``utptrack_ros.data.checker_scene``), and a test-side rclpy node spinning in a thread.

Isolation: each module gets its own ROS_DOMAIN_ID (100 + a hash of pid and module, < 233);
node and test side share the replay's environment (``replay_environment``:
ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and config/fastdds_large_shm.xml, the transport profile
the docs recommend for camera-sized messages).
"""
from __future__ import annotations

import contextlib
import math
import os
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import pytest

from utptrack_ros.data.checker_scene import CheckerScene
from utptrack_ros.replay.node_process import NodeProcess, node_module_command, replay_environment
from utptrack_ros.sensors import fill_compressed, fill_image, stamp_to_ns

REPO = Path(__file__).resolve().parents[2]

rclpy = pytest.importorskip("rclpy")
try:
    from utptrack_ros.msg import TrackedTarget, TrackedTargets  # noqa: F401
    from utptrack_ros.srv import DropTarget, InitTarget  # noqa: F401
except ImportError as err:  # pragma: no cover
    pytest.skip(f"ROS interfaces not built (make setup): {err}", allow_module_level=True)

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PointStamped  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rcl_interfaces.msg import Log, Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import GetParameters, SetParameters  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.parameter import parameter_value_to_python  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402


def domain_id(tag: str) -> int:
    return 100 + (os.getpid() * 31 + zlib.crc32(tag.encode())) % 130


def ros_env(tag: str) -> dict[str, str]:
    """This process's environment plus the node's: the domain of ``tag``, localhost discovery,
    the large-SHM FastDDS profile."""
    env = dict(os.environ)
    env.update(replay_environment(domain_id(tag)))
    return env


# -- synthetic scene: 320x240, a 40 px checkered square going back and forth, 30 Hz stamps --------

SCENE = CheckerScene()
W, H = SCENE.width, SCENE.height
TARGET = SCENE.target_px
target_box = SCENE.box
scene = SCENE.frame
stamp_of = SCENE.stamp_ns


# -- the node process ------------------------------------------------------------------------------

@contextlib.contextmanager
def running_node(tmp: Path, tag: str, params_text: str, extra_env: Optional[dict] = None) -> Iterator[tuple]:
    """A node started with ``params_text`` in domain ``tag`` and a Client, once it logs
    "active on cpu"; this process uses the node's transport settings meanwhile. On exit the node is
    stopped and must exit with 0."""
    params = tmp / f"{tag}.yaml"
    params.write_text(params_text)
    env = ros_env(tag)
    env.update(extra_env or {})
    saved = {k: os.environ.get(k) for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE")}
    os.environ.update({k: env[k] for k in saved})
    proc = start_node(params, env, tmp / f"{tag}.log")
    client = Client(domain_id(tag))
    try:
        try:
            client.log_containing("active on cpu", timeout=90)
        except AssertionError:
            raise AssertionError(f"node did not come up; its log:\n{proc.log()[-3000:]}")
        yield proc, client
    finally:
        client.close()
        rc = proc.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert rc == 0, f"node exited with {rc}; log:\n{proc.log()[-3000:]}"


def start_node(params_file: Path, env: dict[str, str], log_path: Path, extra: tuple[str, ...] = (),
               pre: tuple[str, ...] = ()) -> NodeProcess:
    """``python -m utptrack_ros.ros.main <pre> --ros-args --params-file <yaml> <extra>`` in a subprocess."""
    return NodeProcess(["--ros-args", "--params-file", str(params_file), *extra], env, log_path,
                       program=[*node_module_command(), *pre], cwd=REPO)


def _param_value(value: Any) -> ParameterValue:
    if isinstance(value, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    if isinstance(value, int):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    if isinstance(value, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(value))


class Client:
    """Test-side rclpy node: publishes inputs, collects outputs, calls services."""

    def __init__(self, domain: int, node_name: str = "utptrack") -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("utptrack_test_client", context=self.context)
        self.ns = f"/{node_name}"
        n = self.node
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_rgb = n.create_publisher(Image, "image", qos)
        self.pub_rgb_c = n.create_publisher(CompressedImage, "image/compressed", qos)
        self.pub_aux = n.create_publisher(Image, "aux/image", qos)
        self.pub_prompt = n.create_publisher(String, "prompt", 10)
        self.pub_info = n.create_publisher(CameraInfo, "camera_info", qos)
        self._lock = threading.Lock()
        self.targets: list = []
        self.diagnostics: list = []
        self.logs: list = []
        self.debug_images: list = []
        self.points: list = []
        self.batches: list = []
        n.create_subscription(TrackedTarget, f"{self.ns}/target", self._store("targets"), 100)
        n.create_subscription(TrackedTargets, f"{self.ns}/targets", self._store("batches"), 100)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._store("diagnostics"), 50)
        n.create_subscription(PointStamped, f"{self.ns}/target_point", self._store("points"), 100)
        rosout_qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        n.create_subscription(Log, "/rosout", self._store("logs"), rosout_qos)
        self.init_client = n.create_client(InitTarget, f"{self.ns}/init_target")
        self.reset_client = n.create_client(Trigger, f"{self.ns}/reset")
        self.drop_client = n.create_client(DropTarget, f"{self.ns}/drop_target")
        self.change_client = n.create_client(ChangeState, f"{self.ns}/change_state")
        self.state_client = n.create_client(GetState, f"{self.ns}/get_state")
        self.param_client = n.create_client(SetParameters, f"{self.ns}/set_parameters")
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(n)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _store(self, name: str) -> Callable[[Any], None]:
        def cb(msg: Any) -> None:
            with self._lock:
                getattr(self, name).append(msg)
        return cb

    def subscribe_debug(self) -> None:
        self.node.create_subscription(Image, f"{self.ns}/debug_image", self._store("debug_images"), 10)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
        self._thread.join(timeout=5)

    # -- waiting ---------------------------------------------------------------------------
    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                value = predicate()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")

    def target_for(self, stamp_ns: int, timeout: float = 10.0, target_id: Optional[str] = None) -> Any:
        """The first ~/target stamped ``stamp_ns`` (and carrying ``target_id`` if given)."""
        return self.wait_for(
            lambda: next((t for t in self.targets if stamp_to_ns(t.header.stamp) == stamp_ns
                          and (target_id is None or t.target_id == target_id)), None),
            timeout, f"~/target stamped {stamp_ns}")

    def log_containing(self, text: str, timeout: float = 10.0) -> Any:
        return self.wait_for(lambda: next((m for m in self.logs if text in m.msg), None), timeout, f"log line containing {text!r}")

    def next_diagnostics(self, timeout: float = 5.0) -> dict:
        """The next /diagnostics message from the node: {status suffix: (level, message, values)}."""
        with self._lock:
            start = len(self.diagnostics)
        msg = self.wait_for(lambda: next((d for d in self.diagnostics[start:] if any(s.name.startswith(self.ns) for s in d.status)), None), timeout, "/diagnostics")
        return {s.name.split(": ", 1)[1]: (s.level[0] if isinstance(s.level, bytes) else s.level, s.message, {kv.key: kv.value for kv in s.values}) for s in msg.status}

    def diagnostics_count(self) -> int:
        with self._lock:
            return len(self.diagnostics)

    def diagnostics_since(self, start: int, predicate: Callable[[str, int, str, dict], bool], timeout: float = 10.0,
                          what: str = "diagnostics") -> Any:
        """First status (in messages received after index ``start``) with predicate(name, level, message, values)."""
        def find():
            for d in self.diagnostics[start:]:
                for s in d.status:
                    level = s.level[0] if isinstance(s.level, bytes) else s.level
                    if s.name.startswith(self.ns) and predicate(s.name, level, s.message, {kv.key: kv.value for kv in s.values}):
                        return s
            return None
        return self.wait_for(find, timeout, what)

    def wait_diagnostics(self, predicate: Callable[[dict], bool], timeout: float = 10.0, what: str = "diagnostics") -> dict:
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            last = self.next_diagnostics(timeout=max(0.5, end - time.monotonic()))
            if predicate(last):
                return last
        raise AssertionError(f"timed out waiting for {what}; last: {last}")

    # -- publishing ------------------------------------------------------------------------------
    def publish(self, i: int, rgb: Optional[np.ndarray] = None, depth: Optional[np.ndarray] = None, *,
                stamp_ns: Optional[int] = None, aux_stamp_ns: Optional[int] = None, aux: bool = True,
                encoding: str = "rgb8", depth_encoding: Optional[str] = None, frame_id: str = "cam") -> int:
        s_rgb, s_depth = scene(i)
        rgb = s_rgb if rgb is None else rgb
        depth = s_depth if depth is None else depth
        stamp = stamp_of(i) if stamp_ns is None else stamp_ns
        img = fill_image(Image(), rgb if encoding != "bgr8" else np.ascontiguousarray(rgb[:, :, ::-1]), encoding)
        img.header.stamp.sec, img.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        img.header.frame_id = frame_id
        if aux:
            d = fill_image(Image(), depth, depth_encoding)
            a_stamp = stamp if aux_stamp_ns is None else aux_stamp_ns
            d.header.stamp.sec, d.header.stamp.nanosec = divmod(a_stamp, 1_000_000_000)
            d.header.frame_id = frame_id
            self.pub_aux.publish(d)
        self.pub_rgb.publish(img)
        return stamp

    def publish_info(self, stamp_ns: int, width: int = W, height: int = H, fx: float = 200.0, fy: float = 200.0,
                     cx: float = W / 2 - 0.5, cy: float = H / 2 - 0.5, frame_id: str = "cam",
                     d: tuple = (0.0,) * 5) -> None:
        """A plumb_bob CameraInfo (distortion ``d``, none by default) for the colour image (``publish``
        then publishes the frame)."""
        msg = CameraInfo()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        msg.header.frame_id = frame_id
        msg.width, msg.height = width, height
        msg.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
        msg.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        msg.distortion_model = "plumb_bob"
        msg.d = [float(v) for v in d]
        self.pub_info.publish(msg)

    def point_for(self, stamp_ns: int, timeout: float = 10.0) -> Any:
        """The first ~/target_point stamped ``stamp_ns``."""
        return self.wait_for(lambda: next((p for p in self.points if stamp_to_ns(p.header.stamp) == stamp_ns), None),
                             timeout, f"~/target_point stamped {stamp_ns}")

    def publish_compressed(self, i: int) -> int:
        rgb, _ = scene(i)
        msg = fill_compressed(CompressedImage(), rgb, "png")
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_of(i), 1_000_000_000)
        msg.header.frame_id = "cam"
        self.pub_rgb_c.publish(msg)
        return stamp_of(i)

    # -- services --------------------------------------------------------------------------------
    def call(self, client: Any, request: Any, timeout: float = 30.0) -> Any:
        assert client.wait_for_service(timeout_sec=timeout), f"service {client.srv_name} not available"
        future = client.call_async(request)
        end = time.monotonic() + timeout
        while not future.done() and time.monotonic() < end:
            time.sleep(0.01)
        assert future.done(), f"service {client.srv_name} did not answer in {timeout} s"
        return future.result()

    def init(self, box_xywh: tuple, stamp_ns: int = 0, prompt: str = "", target_id: str = "", frame_id: str = "") -> Any:
        x, y, w, h = box_xywh
        req = InitTarget.Request(center_x=x + w / 2, center_y=y + h / 2, size_x=float(w), size_y=float(h),
                                 prompt=prompt, target_id=target_id)
        req.header.stamp.sec, req.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        req.header.frame_id = frame_id
        return self.call(self.init_client, req)

    def reset(self) -> Any:
        return self.call(self.reset_client, Trigger.Request())

    def drop(self, target_id: str) -> Any:
        return self.call(self.drop_client, DropTarget.Request(target_id=target_id))

    def batch_for(self, stamp_ns: int, timeout: float = 10.0) -> Any:
        """The ~/targets message stamped ``stamp_ns``."""
        return self.wait_for(lambda: next((b for b in self.batches if stamp_to_ns(b.header.stamp) == stamp_ns), None),
                             timeout, f"~/targets stamped {stamp_ns}")

    def state(self) -> str:
        return self.call(self.state_client, GetState.Request()).current_state.label

    def transition(self, transition_id: int) -> bool:
        return self.call(self.change_client, ChangeState.Request(transition=Transition(id=transition_id)), timeout=60).success

    def set_params(self, **values: Any) -> list:
        """Set node parameters (``a__b`` spells ``a.b``); returns the SetParametersResult list."""
        req = SetParameters.Request(parameters=[Parameter(name=k.replace("__", "."), value=_param_value(v)) for k, v in values.items()])
        return self.call(self.param_client, req).results

    def get_params(self, names: list[str]) -> list:
        """The values (Python scalars) of node parameters ``names``; None for unset ones."""
        if not hasattr(self, "_get_client"):
            self._get_client = self.node.create_client(GetParameters, f"{self.ns}/get_parameters")
        values = self.call(self._get_client, GetParameters.Request(names=list(names))).values
        return [None if v.type == ParameterType.PARAMETER_NOT_SET else parameter_value_to_python(v) for v in values]


def box_xywh(t: Any) -> np.ndarray:
    return np.array([t.center_x - t.size_x / 2, t.center_y - t.size_y / 2, t.size_x, t.size_y])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


__all__ = ["NodeProcess", "Client", "running_node", "SCENE", "scene", "stamp_of", "start_node", "target_box", "ros_env", "domain_id", "box_xywh",
           "iou", "W", "H", "math"]
