"""End-to-end latency of the tracker node through real DDS, minus the model's own time.

For each setup (640x480 RGB, 640x480 RGB-D; FastDDS large-SHM profile vs default transports)
this starts the real node entry point in a subprocess (tiny model, seeded random weights, CPU),
publishes frames from this process one at a time (the next after the previous ~/target
arrived, so nothing queues), and measures publish -> ~/target received here. It prints:

* e2e median / p90, the model's own time (TrackResult.timings_ms['model']: network + decode),
  and overhead = e2e - model (median of per-frame differences);
* a breakdown from the node's /diagnostics medians: message conversion, sync + mailbox wait,
  tracker preprocessing (crop, aux colour map, tensors), postprocessing, publish call; and
  transport = e2e - (node-internal latency + publish), i.e. both DDS hops including rclpy
  (de)serialisation on each side;
* overhead / e2e as the ratio of one run.

    .venv/bin/python bench/bench_node.py [--frames 100] [--json artifacts/bench_node.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "config" / "fastdds_large_shm.xml"
W, H = 640, 480

PARAMS = """
/**:
  ros__parameters:
    autostart: true
    model: {{name: tiny, weights: random, seed: 0, device: cpu, num_threads: {threads}}}
    input: {{modality: {modality}, qos_image: {qos}, qos_aux: {qos}, qos_depth: 2}}
    output: {{diagnostics_period_s: 0.5, debug_image: false}}
"""


def scene(i: int) -> tuple[np.ndarray, np.ndarray]:
    rgb = np.full((H, W, 3), 90, np.uint8)
    rgb[:, :, 0] = (np.arange(W) * 255 // W)[None, :]
    depth = np.full((H, W), 3000, np.uint16)
    x, y = 200 + (i % 40) * 3, 150 + (i % 40) * 2
    rgb[y : y + 60, x : x + 60] = (230, 40, 40)
    depth[y : y + 60, x : x + 60] = 1500
    return rgb, depth


def run_setup(name: str, modality: str, profile: bool, qos: str, frames: int, threads: int, domain: int) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from utptrack_ros.msg import TrackedTarget
    from utptrack_ros.sensors import fill_image, stamp_to_ns
    from utptrack_ros.srv import InitTarget

    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    if profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
    for key in ("FASTDDS_DEFAULT_PROFILES_FILE", "ROS_AUTOMATIC_DISCOVERY_RANGE"):
        if key in env:
            os.environ[key] = env[key]
        else:
            os.environ.pop(key, None)
    tmp = Path(tempfile.mkdtemp(prefix="bench_node_"))
    (tmp / "p.yaml").write_text(PARAMS.format(modality=modality, qos=qos, threads=threads))
    log = open(tmp / "node.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "utptrack_ros.ros.main", "--ros-args", "--params-file", str(tmp / "p.yaml")],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("bench_node_client", context=ctx)
    rel = ReliabilityPolicy.RELIABLE if qos == "reliable" else ReliabilityPolicy.BEST_EFFORT
    pub = node.create_publisher(Image, "image", QoSProfile(depth=2, reliability=rel))
    pub_aux = node.create_publisher(Image, "aux/image", QoSProfile(depth=2, reliability=rel))
    received: dict[int, tuple[float, object]] = {}
    diags: list = []
    cond = threading.Condition()

    def on_target(msg):
        t = time.perf_counter()
        with cond:
            received.setdefault(stamp_to_ns(msg.header.stamp), (t, msg))
            cond.notify_all()

    node.create_subscription(TrackedTarget, "/utptrack/target", on_target, 10)
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diags.append(m), 10)
    init = node.create_client(InitTarget, "/utptrack/init_target")
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()
    result: dict = {"setup": name, "modality": modality, "fastdds_profile": "large_shm" if profile else "default", "qos": qos}
    try:
        end = time.monotonic() + 90
        while pub.get_subscription_count() == 0 or not init.service_is_ready():
            if time.monotonic() > end or proc.poll() is not None:
                raise RuntimeError(f"node did not come up; see {tmp / 'node.log'}")
            time.sleep(0.1)
        time.sleep(1.0)
        msgs = []
        for i in range(frames + 11):
            rgb, depth = scene(i)
            img = fill_image(Image(), rgb)
            img.header.frame_id = "cam"
            d = fill_image(Image(), depth)
            d.header.frame_id = "cam"
            msgs.append((img, d))

        def send(i: int) -> tuple[int, float]:
            img, d = msgs[i]
            stamp = 1_000_000_000_000 + i * 33_333_333
            for m in (img, d):
                m.header.stamp.sec, m.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            if modality != "rgb":
                pub_aux.publish(d)
            t0 = time.perf_counter()
            pub.publish(img)
            return stamp, t0

        def wait(stamp: int, timeout: float = 3.0) -> bool:
            with cond:
                return cond.wait_for(lambda: stamp in received, timeout)

        for i in range(5):  # warm-up, idle frames
            wait(send(i)[0])
        req = InitTarget.Request(center_x=230.0, center_y=180.0, size_x=60.0, size_y=60.0)
        fut = init.call_async(req)
        while not fut.done():
            time.sleep(0.01)
        assert fut.result().success, fut.result().message
        for i in range(5, 10):  # warm-up, tracking
            wait(send(i)[0])
        rows, lost = [], 0
        for i in range(10, 10 + frames):
            stamp, t0 = send(i)
            if not wait(stamp):
                lost += 1
                continue
            t1, msg = received[stamp]
            rows.append(((t1 - t0) * 1e3, msg.latency_ms, msg.model_ms))
            time.sleep(0.02)
        time.sleep(1.2)
        e2e = np.array([r[0] for r in rows])
        node_internal = np.array([r[1] for r in rows])
        stages = _stage_medians(diags)
        model = stages.get("model p50 ms", float("nan"))
        publish = stages.get("publish p50 ms", 0.0)
        overhead = e2e - model
        result.update(
            frames=frames, delivered=len(rows), lost=lost,
            e2e_ms_p50=float(np.median(e2e)) if len(rows) else None,
            e2e_ms_p90=float(np.percentile(e2e, 90)) if len(rows) else None,
            model_ms_p50=model,
            overhead_ms_p50=float(np.median(overhead)) if len(rows) else None,
            overhead_ms_p90=float(np.percentile(overhead, 90)) if len(rows) else None,
            breakdown_ms_p50={
                "transport (both hops, incl. rclpy (de)serialisation)": float(np.median(e2e - node_internal)) - publish if len(rows) else None,
                "message conversion": stages.get("convert p50 ms"),
                "sync + mailbox wait": stages.get("wait p50 ms"),
                "preprocessing (tracker)": stages.get("preprocess p50 ms"),
                "postprocessing (tracker)": stages.get("postprocess p50 ms"),
                "publish": publish,
            },
        )
        if len(rows):
            result["overhead_over_e2e"] = result["overhead_ms_p50"] / result["e2e_ms_p50"]
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    return result


def _stage_medians(diags: list) -> dict:
    for d in reversed(diags):
        for s in d.status:
            if s.name.endswith(": tracker"):
                return {kv.key: float(kv.value) for kv in s.values if kv.key.endswith("p50 ms")}
    return {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads in the node")
    ap.add_argument("--json", type=Path, default=REPO / "artifacts" / "bench_node.json")
    ap.add_argument("--quick", action="store_true", help="only the two large-SHM setups")
    args = ap.parse_args()
    setups = [
        ("rgb 640x480, large-SHM profile, reliable", "rgb", True, "reliable"),
        ("rgb-d 640x480, large-SHM profile, reliable", "depth", True, "reliable"),
        ("rgb 640x480, large-SHM profile, best effort", "rgb", True, "best_effort"),
        ("rgb 640x480, default transports, reliable", "rgb", False, "reliable"),
        ("rgb 640x480, default transports, best effort", "rgb", False, "best_effort"),
    ]
    if args.quick:
        setups = setups[:2]
    base = 100 + os.getpid() % 120
    results = []
    for k, (name, modality, profile, qos) in enumerate(setups):
        r = run_setup(name, modality, profile, qos, args.frames, args.threads, base + k)
        results.append(r)
        if r.get("e2e_ms_p50") is None:
            print(f"{name}: delivered {r['delivered']}/{r['frames']} frames")
            continue
        print(f"{name}: e2e p50 {r['e2e_ms_p50']:.2f} ms (p90 {r['e2e_ms_p90']:.2f}), model {r['model_ms_p50']:.2f} ms, "
              f"overhead p50 {r['overhead_ms_p50']:.2f} ms (p90 {r['overhead_ms_p90']:.2f}), "
              f"overhead/e2e {r['overhead_over_e2e']:.3f}, delivered {r['delivered']}/{r['frames']}")
        print("    " + ", ".join(f"{k} {v:.2f}" for k, v in r["breakdown_ms_p50"].items() if v is not None))
    import torch

    meta = {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "node_torch_threads": args.threads, "machine": platform.machine()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
