"""The node's life around the tracking: start-up, a first prompt, a soak, and exit.

One node process (the real entry point ``python -m utptrack_ros.ros.main``, RGB-D, tiny with
seeded random weights on the onnxruntime backend, autostart; ``tracker.lost_threshold: 1.0``
keeps the search region on the init box as bench_node.py explains) in a private ROS domain with
config/fastdds_large_shm.xml, driven from this process over real DDS:

1. start-up: from process start until ``get_state`` says active, ``get_state``,
   ``get_parameters``, ``~/init_target`` and ``~/reset`` are called back to back; their answer
   times (max, p99, p50) and the steps /diagnostics named ("preparing") are reported. With
   ``--cache`` empty (the default: a fresh folder) the start includes the onnxruntime export.
2. first-prompt stall: 640x480 RGB-D at ``--hz`` with a target; after a steady stretch the first
   language prompt is published. Reported: the longest gap between ``~/target`` messages in the
   6 s after the prompt minus the median gap before it, and the longest ``latency_ms`` after it.
3. soak (``--minutes``, default 0.5; ``--minutes 10`` for the 10-minute soak): RGB-D at ``--hz``
   with a target. Reported: node RSS slope (MB/min, least squares over the second half) and
   range, latency drift (median ``latency_ms`` of the last minute minus the first minute, or of the
   last / first fifth for short soaks), and the frame accounting from the node's own counters:
   RGB frames in = processed + stale-dropped + unsynchronised + skipped + failed (+ in flight).
4. exit: SIGINT while frames flow; the time until the process has exited, its exit code, and
   whether its log has errors after the signal (``Failed to publish``, ``[ERROR]``, tracebacks).

    .venv/bin/python bench/bench_node_lifecycle.py [--minutes 0.5] [--hz 30] [--cache DIR]
        [--start-up-only] [--json artifacts/bench/bench_node_lifecycle.json]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "config" / "fastdds_large_shm.xml"
W, H = 640, 480
BOX = (200.0, 150.0, 60.0, 60.0)  # x, y, w, h of the target square
sys.path.insert(0, str(REPO))

PARAMS = """
/**:
  ros__parameters:
    autostart: true
    model: {{name: tiny, weights: random, seed: 0, device: cpu, num_threads: 1, backend: onnxruntime, onnx_cache: '{cache}'}}
    input: {{modality: depth, qos_depth: 2}}
    output: {{diagnostics_period_s: 1.0}}
    tracker: {{lost_threshold: 1.0}}
"""


def frames() -> tuple[np.ndarray, np.ndarray]:
    """One 640x480 RGB-D scene: a checkered square on a gradient, 1.5 m in front of 3 m."""
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.stack([xx * 255 // W, yy * 255 // H, np.full_like(xx, 90)], axis=2).astype(np.uint8)
    depth = np.full((H, W), 3000, np.uint16)
    x, y, w, h = (int(v) for v in BOX)
    checker = ((np.arange(h)[:, None] // 8 + np.arange(w)[None, :] // 8) % 2).astype(bool)
    patch = np.zeros((h, w, 3), np.uint8)
    patch[..., 0], patch[checker] = 230, (255, 255, 255)
    rgb[y:y + h, x:x + w], depth[y:y + h, x:x + w] = patch, 1500
    return rgb, depth


class Driver:
    """This side: publishers (serialized bytes, like a C++ driver), ~/target and /diagnostics
    subscribers, service clients, all spun in a thread."""

    def __init__(self, domain: int) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from lifecycle_msgs.srv import GetState
        from rcl_interfaces.srv import GetParameters
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rclpy.serialization import serialize_message
        from sensor_msgs.msg import Image
        from std_msgs.msg import String
        from std_srvs.srv import Trigger

        from utptrack_ros.msg import TrackedTarget
        from utptrack_ros.sensors import fill_image
        from utptrack_ros.srv import InitTarget

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        n = self.node = rclpy.create_node("bench_lifecycle_driver", context=self.ctx)
        qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_rgb = n.create_publisher(Image, "image", qos)
        self.pub_aux = n.create_publisher(Image, "aux/image", qos)
        self.pub_prompt = n.create_publisher(String, "prompt", 10)
        rgb, depth = frames()
        self._rgb_msg, self._aux_msg = fill_image(Image(), rgb), fill_image(Image(), depth)
        self._serialize = serialize_message
        self.lock = threading.Lock()
        self.targets: list[tuple[float, Any]] = []  # (arrival perf_counter, message)
        self.diagnostics: list[dict] = []
        n.create_subscription(TrackedTarget, "/utptrack/target", self._on_target, 50)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.clients = {
            "get_state": (n.create_client(GetState, "/utptrack/get_state"), GetState.Request),
            "get_parameters": (n.create_client(GetParameters, "/utptrack/get_parameters"),
                               lambda: GetParameters.Request(names=["model.backend"])),
            "init_target": (n.create_client(InitTarget, "/utptrack/init_target"), self._init_request),
            "reset": (n.create_client(Trigger, "/utptrack/reset"), Trigger.Request),
        }
        self.sent = 0
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.ctx)
        self.executor.add_node(n)
        self._spin = threading.Thread(target=self.executor.spin, daemon=True)
        self._spin.start()

    @staticmethod
    def _init_request() -> Any:
        from utptrack_ros.srv import InitTarget

        x, y, w, h = BOX
        return InitTarget.Request(center_x=x + w / 2, center_y=y + h / 2, size_x=w, size_y=h, target_id="bench")

    def _on_target(self, msg: Any) -> None:
        with self.lock:
            self.targets.append((time.perf_counter(), msg))

    def _on_diagnostics(self, msg: Any) -> None:
        out = {}
        for s in msg.status:
            if s.name.startswith("/utptrack"):
                out[s.name.split(": ", 1)[1]] = (s.level[0], s.message, {kv.key: kv.value for kv in s.values})
        if out:
            with self.lock:
                self.diagnostics.append(out)

    def call(self, name: str, timeout: float = 60.0) -> tuple[float, Any]:
        """(seconds to the answer, the answer) of one request to service ``name``."""
        client, make = self.clients[name]
        if not client.wait_for_service(timeout_sec=timeout):
            raise RuntimeError(f"{name}: no service")
        start = time.perf_counter()
        future = client.call_async(make())
        while not future.done():
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"{name}: no answer in {timeout} s")
            time.sleep(0.0005)
        return time.perf_counter() - start, future.result()

    def publish(self) -> None:
        """The next RGB-D pair, stamped now on this host's clock (the node measures its age)."""
        stamp = divmod(time.time_ns(), 1_000_000_000)
        for msg in (self._aux_msg, self._rgb_msg):
            msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
        self.pub_aux.publish(self._serialize(self._aux_msg))
        self.pub_rgb.publish(self._serialize(self._rgb_msg))
        self.sent += 1

    def stream(self, hz: float, seconds: float, during: Callable[[float], Any] = lambda t: None) -> None:
        """Publish at ``hz`` for ``seconds``; ``during(elapsed)`` after each frame (True: stop)."""
        start = time.perf_counter()
        k = 0
        while (elapsed := time.perf_counter() - start) < seconds:
            self.publish()
            if during(elapsed):
                return
            k += 1
            time.sleep(max(0.0, start + k / hz - time.perf_counter()))

    def last_diagnostics(self) -> dict:
        with self.lock:
            return self.diagnostics[-1] if self.diagnostics else {}

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self._spin.join(timeout=5)
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_up(drv: Driver, proc: subprocess.Popen, timeout: float = 600.0) -> dict:
    times: dict[str, list[float]] = {name: [] for name in drv.clients}
    steps: dict[str, None] = {}
    slow: list[tuple[float, float, str, str]] = []  # (answer ms, at s, service, step being prepared)
    step = ""
    start = time.perf_counter()
    state = ""
    while state != "active":
        if proc.poll() is not None or time.perf_counter() - start > timeout:
            raise RuntimeError(f"node not active after {time.perf_counter() - start:.0f} s (exit code {proc.poll()})")
        for name in drv.clients:
            took, answer = drv.call(name, timeout=timeout)
            times[name].append(took)
            slow = sorted(slow + [(1e3 * took, time.perf_counter() - start, name, step)], reverse=True)[:5]
            if name == "get_state":
                state = answer.current_state.label
        tracker = drv.last_diagnostics().get("tracker")
        if tracker and tracker[2].get("preparing"):
            step = tracker[2]["preparing"].split(" (")[0]
            steps[step] = None
    answers = [t for v in times.values() for t in v]
    return {"seconds_to_active": time.perf_counter() - start, "requests": len(answers),
            "max_ms": 1e3 * max(answers), "p99_ms": 1e3 * float(np.percentile(answers, 99)),
            "p50_ms": 1e3 * float(np.median(answers)),
            "max_ms_per_service": {k: 1e3 * max(v) for k, v in times.items() if v},
            "steps_seen": list(steps), "slowest": slow}


def first_prompt(drv: Driver, hz: float) -> dict:
    drv.stream(hz, 1.0)  # frames for the init to use
    took, res = drv.call("init_target")
    if not res.success:
        raise RuntimeError(f"init_target: {res.message}")
    drv.stream(hz, 3.0)
    mark = time.perf_counter()
    from std_msgs.msg import String

    drv.pub_prompt.publish(String(data="red and white checkered square"))
    drv.stream(hz, 6.0)
    end = time.perf_counter()
    with drv.lock:
        arrivals = [(t, m.latency_ms) for t, m in drv.targets if m.target_id == "bench"]
    before = [t for t, _ in arrivals if mark - 2.0 <= t < mark]
    after = [(t, lat) for t, lat in arrivals if t >= mark]
    gap_before = float(np.median(np.diff(before))) if len(before) > 2 else float("nan")
    gap_after = float(np.max(np.diff([mark] + [t for t, _ in after]))) if after else end - mark
    return {"median_gap_before_ms": 1e3 * gap_before, "max_gap_after_ms": 1e3 * gap_after, "outputs_in_6_s": len(after),
            "stall_ms": 1e3 * (gap_after - gap_before), "max_latency_after_ms": max((lat for _, lat in after), default=float("nan")),
            }


def soak(drv: Driver, proc: subprocess.Popen, hz: float, minutes: float) -> dict:
    seconds = 60.0 * minutes
    rss: list[tuple[float, float]] = []
    next_sample = [0.0]

    def sample(elapsed: float) -> None:
        if elapsed >= next_sample[0]:
            rss.append((elapsed, rss_mb(proc.pid)))
            next_sample[0] += 1.0

    with drv.lock:
        first_output = len(drv.targets)
    sent_before = drv.sent
    start = time.perf_counter()
    drv.stream(hz, seconds, sample)
    time.sleep(2.5)  # the last frames and one more diagnostics period
    with drv.lock:
        outs = [(t - start, m.latency_ms) for t, m in drv.targets[first_output:]]
    t_rss, mb = np.array(rss).T
    half = t_rss >= t_rss[-1] / 2
    slope = float(np.polyfit(t_rss[half] / 60.0, mb[half], 1)[0]) if half.sum() > 2 else float("nan")
    window = min(60.0, seconds / 5)
    first = [lat for t, lat in outs if t < window]
    last = [lat for t, lat in outs if t >= seconds - window]
    counters = drv.last_diagnostics().get("input", (0, "", {}))[2]
    c = {k: int(counters.get(k, 0) or 0) for k in ("rgb_received", "processed", "dropped_stale", "unmatched_rgb",
                                                   "skipped_before_init", "errors", "bad_input", "zero_stamp")}
    accounted = c["processed"] + c["dropped_stale"] + c["unmatched_rgb"] + c["skipped_before_init"] + c["errors"]
    return {"minutes": minutes, "hz": hz, "frames_sent": drv.sent - sent_before, "node_counters": c,
            "rgb_in_minus_accounted": c["rgb_received"] - accounted,
            "rss_mb_start": float(mb[0]), "rss_mb_end": float(mb[-1]), "rss_mb_max": float(mb.max()),
            "rss_slope_mb_per_min": slope, "latency_p50_first_ms": float(np.median(first)) if first else float("nan"),
            "latency_p50_last_ms": float(np.median(last)) if last else float("nan"),
            "latency_drift_ms": float(np.median(last) - np.median(first)) if first and last else float("nan"),
            "outputs_per_s": len(outs) / seconds}


def exit_on_sigint(drv: Driver, proc: subprocess.Popen, log_path: Path, hz: float) -> dict:
    stop = threading.Event()
    feeder = threading.Thread(target=lambda: drv.stream(hz, 30.0, lambda t: stop.is_set()), daemon=True)
    feeder.start()
    time.sleep(1.0)
    before = len(log_path.read_text(errors="replace"))
    start = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=30)
    took = time.perf_counter() - start
    stop.set()
    feeder.join(timeout=5)
    tail = log_path.read_text(errors="replace")[before:]
    errors = [line for line in tail.splitlines() if any(k in line for k in ("ERROR", "Failed to publish", "Traceback"))]
    return {"seconds": took, "exit_code": code, "error_lines": errors[:5]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=0.5, help="soak length (10 for the 10-minute soak)")
    ap.add_argument("--hz", type=float, default=30.0, help="RGB-D frame rate of the prompt and soak phases")
    ap.add_argument("--cache", type=Path, default=None, help="onnx cache (default: a fresh folder: the start exports)")
    ap.add_argument("--json", type=Path, default=REPO / "artifacts" / "bench" / "bench_node_lifecycle.json")
    ap.add_argument("--start-up-only", action="store_true", help="part 1 only (start-up answer times), then SIGINT")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_lifecycle_"))
    cache = args.cache or tmp / "onnx-cache"
    params = tmp / "params.yaml"
    params.write_text(PARAMS.format(cache=cache))
    domain = 130 + zlib.crc32(f"{os.getpid()}:{time.time_ns()}".encode()) % 100
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               FASTDDS_DEFAULT_PROFILES_FILE=str(PROFILE), RCUTILS_LOGGING_BUFFERED_STREAM="0", PYTHONUNBUFFERED="1")
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE")})
    log_path = tmp / "node.log"
    results: dict[str, Any] = {"cache": "given" if args.cache else "empty (export at start-up)", "load1": os.getloadavg()[0]}
    drv = Driver(domain)
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "utptrack_ros.ros.main", "--ros-args", "--params-file", str(params)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
    phases = (("start_up", lambda: start_up(drv, proc)), ("first_prompt", lambda: first_prompt(drv, args.hz)),
              ("soak", lambda: soak(drv, proc, args.hz, args.minutes)),
              ("exit", lambda: exit_on_sigint(drv, proc, log_path, args.hz)))
    if args.start_up_only:
        phases = phases[:1]
    try:
        for name, phase in phases:
            results[name] = phase()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        drv.close()
        results["load1_end"] = os.getloadavg()[0]
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
        report(results)
        print(f"\nnode log: {log_path}; results: {args.json}")
    return 0


def report(r: dict) -> None:
    print(f"load1 {r['load1']:.1f} -> {r['load1_end']:.1f}; onnx cache {r['cache']}")
    if "start_up" not in r:
        return
    s = r["start_up"]
    print(f"start-up: active after {s['seconds_to_active']:.1f} s; {s['requests']} requests answered meanwhile: "
          f"max {s['max_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, p50 {s['p50_ms']:.1f} ms "
          f"({', '.join(f'{n} {v:.1f}' for n, v in s['max_ms_per_service'].items())} ms max)")
    print("  steps /diagnostics named: " + "; ".join(s["steps_seen"]))
    print("  slowest answers: " + "; ".join(f"{ms:.0f} ms ({name} at {at:.1f} s, last step named: {step or '-'})"
                                            for ms, at, name, step in s["slowest"]))
    if "first_prompt" not in r:
        return
    p = r["first_prompt"]
    print(f"first prompt: longest ~/target gap after it {p['max_gap_after_ms']:.1f} ms vs median gap before "
          f"{p['median_gap_before_ms']:.1f} ms (stall {p['stall_ms']:.1f} ms); longest latency_ms after it "
          f"{p['max_latency_after_ms']:.1f}")
    if "soak" not in r:
        return
    k = r["soak"]
    c = k["node_counters"]
    print(f"soak {k['minutes']:g} min at {k['hz']:g} Hz RGB-D: RSS {k['rss_mb_start']:.0f} -> {k['rss_mb_end']:.0f} MB "
          f"(max {k['rss_mb_max']:.0f}), slope {k['rss_slope_mb_per_min']:+.2f} MB/min over the second half; latency p50 "
          f"{k['latency_p50_first_ms']:.1f} -> {k['latency_p50_last_ms']:.1f} ms (drift {k['latency_drift_ms']:+.1f}); "
          f"{k['outputs_per_s']:.1f} outputs/s")
    print(f"  frames: sent {k['frames_sent']}, RGB in {c['rgb_received']} = processed {c['processed']} + stale-dropped "
          f"{c['dropped_stale']} + unsynchronised {c['unmatched_rgb']} + skipped {c['skipped_before_init']} + failed "
          f"{c['errors']} + {k['rgb_in_minus_accounted']} in flight")
    if "exit" not in r:
        return
    e = r["exit"]
    print(f"exit: SIGINT -> process gone in {e['seconds']:.2f} s, exit code {e['exit_code']}, "
          f"{len(e['error_lines'])} error lines after the signal" + (f": {e['error_lines']}" if e["error_lines"] else ""))


if __name__ == "__main__":
    sys.exit(main())
