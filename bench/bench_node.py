"""Node overhead: end-to-end latency through real DDS minus the model's own time, per stage.

Setups (640x480 RGB and RGB-D; each runs the real entry point ``python -m utptrack_ros.ros.main``
in its own process and ROS domain: tiny model, seeded random weights, CPU, 1 torch thread by
default, ``tracker.lost_threshold: 1.0`` so the search region stays on the 60x60 px init box
as it would while following a 60 px target; random weights otherwise let the box grow to the
whole image and the crop to 2200 px, which is not what a tracker does):

* the shipped configuration (EventsExecutor, raw CDR input, ``config/fastdds_large_shm.xml``,
  reliable QoS) for RGB and RGB-D;
* A/B variants, one change each: rclpy's Python SingleThreadedExecutor, its MultiThreadedExecutor
  (the first version's), rclpy's deserialisation instead of raw CDR input, best-effort QoS, frames published as Python message objects instead
  of serialized bytes, 2 torch threads, and (separately: a process has one FastDDS profile)
  default transports;
* a transport floor: an echo node (same executor, raw input) that answers each image (set)
  with a ``TrackedTarget`` carrying its header and does nothing else.

All setups of one transport profile run at once and take turns frame by frame (round robin,
lock-step: the next frame after the previous ``~/target`` arrived), so load from other jobs on the
shared machine hits them alike. Frames are published from this process as serialized bytes
(like ``ros2 bag play`` or a C++ driver; ``publish objects`` shows the Python-message cost).

Per frame, with ``UTPTRACK_TRACE_FILE`` the node records CLOCK_MONOTONIC stamps (the same clock
here) at callback entry, after reading the CDR, after conversion, after sync + mailbox, when the
worker takes the set, after ``Tracker.track`` and after publishing, plus the tracker's own
preprocess / model / postprocess times and thread / process CPU (ros/trace.py). Stages:

  publish call   this process's publish() calls (the driver's cost)
  transport in   the rest until the set-completing callback is entered: DDS + executor dispatch
  read (CDR)     callback entry -> sensors.image_from_cdr done (clock, rates, header)
  conversion     ndarray conversion (sensors.py)
  sync+mailbox   pairing, init history, mailbox put
  hand-off       mailbox put -> worker running (thread wake-up, GIL)
  preprocessing  the tracker's own (crop, aux colour map, tensors)
  postprocessing the tracker's own (decode, map back, template update)
  track other    Tracker.track wall time outside its three stages (tracker lock, ...)
  publish        TrackedTarget build + publish() (returns after the reader was notified)
  transport out  publish() returned -> our callback entered (negative when our callback ran
                 before the node's publish() returned: "output hop" is the two together)

overhead = e2e - model, per frame (e2e: first publish() call -> ~/target callback entry). The
machine's load (other processes' CPU, steal) is recorded per group; CPU per stage and the node
process's CPU and page faults per frame are reported beside the wall times, because wall times
on a busy 2-core machine include waiting for a core.

    .venv/bin/python bench/bench_node.py [--frames 200] [--threads 1] [--quick] [--only NAMES]
        [--json artifacts/bench/bench_node.json]

``--quick``: the shipped configuration, the executor and input A/B and the echo floors, 60 frames.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
import torch
from builtin_interfaces.msg import Time
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Header

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "config" / "fastdds_large_shm.xml"
sys.path.insert(0, str(REPO))

# the package of this checkout (after sys.path) and its generated interfaces
from utptrack_ros.data.checker_scene import CheckerScene  # noqa: E402
from utptrack_ros.machine import machine_record  # noqa: E402
from utptrack_ros.models import create_model  # noqa: E402
from utptrack_ros.msg import TrackedTarget  # noqa: E402
from utptrack_ros.replay.node_process import NodeProcess, node_module_command  # noqa: E402
from utptrack_ros.ros.main import make_executor, spin  # noqa: E402
from utptrack_ros.ros.qos import qos_profile  # noqa: E402
from utptrack_ros.ros.trace import StageTrace  # noqa: E402
from utptrack_ros.runtime.network import default_cache_dir  # noqa: E402
from utptrack_ros.sensors import aux_to_array, fill_image, image_from_cdr, image_to_rgb, stamp_to_ns  # noqa: E402
from utptrack_ros.srv import InitTarget  # noqa: E402
from utptrack_ros.tracker import Tracker  # noqa: E402
from utptrack_ros.types import Modality  # noqa: E402

# 640x480 RGB-D: a 60 px checkered square going back and forth from (200, 150), 30 Hz stamps
SCENE = CheckerScene(width=640, height=480, target_px=60, start_xy=(200.0, 150.0), step_xy=(3.0, 2.0))
scene, stamp_of = SCENE.frame, SCENE.stamp_ns

PARAMS = """
/**:
  ros__parameters:
    autostart: true
    model: {{name: tiny, weights: random, seed: 0, device: cpu, num_threads: {threads}, backend: {backend}}}
    input: {{modality: {modality}, qos_image: {qos}, qos_aux: {qos}, qos_depth: 2}}
    output: {{diagnostics_period_s: 1.0, debug_image: true}}
    tracker: {{lost_threshold: 1.0}}
"""

# the CPU presets' configuration (config/rgb_cpu.yaml, rgbd.yaml): onnxruntime, large-SHM profile
SHIPPED = dict(kind="node", executor="events", profile=True, qos="reliable", publish="serialized", backend="onnxruntime")


def export_node_graphs() -> None:
    """Export the nodes' onnxruntime graphs once (the nodes' seeded random tiny, into the user's
    cache) before the setups start, so they do not all export at once on activate."""

    torch.manual_seed(0)  # as the node's model.weights: random, model.seed: 0
    t0 = time.perf_counter()
    tracker = Tracker(create_model("tiny"), backend="onnxruntime")
    print(f"onnxruntime graphs for the nodes ready in {time.perf_counter() - t0:.1f} s "
          f"({tracker.backend}; cache {default_cache_dir()})", flush=True)


def setups(quick: bool) -> list[dict]:
    """Name -> settings; one change against the shipped configuration each."""
    out = []
    for mod, tag in (("rgb", "RGB"), ("depth", "RGB-D")):
        out.append(dict(SHIPPED, name=f"{tag} shipped", modality=mod, base=True))
        out.append(dict(SHIPPED, name=f"{tag} echo floor", modality=mod, kind="echo"))
        out.append(dict(SHIPPED, name=f"{tag} single-threaded executor", modality=mod, executor="single"))
        out.append(dict(SHIPPED, name=f"{tag} multi-threaded executor", modality=mod, executor="multi"))
        out.append(dict(SHIPPED, name=f"{tag} rclpy deserialisation", modality=mod, raw=False))
        if not quick:
            out.append(dict(SHIPPED, name=f"{tag} publish objects", modality=mod, publish="objects"))
            out.append(dict(SHIPPED, name=f"{tag} 2 torch threads", modality=mod, threads=2, backend="torch"))
            out.append(dict(SHIPPED, name=f"{tag} torch backend", modality=mod, backend="torch"))
    if not quick:
        out.append(dict(SHIPPED, name="RGB best effort", modality="rgb", qos="best_effort"))
        out.append(dict(SHIPPED, name="RGB default transports", modality="rgb", profile=False))
        out.append(dict(SHIPPED, name="RGB-D default transports", modality="depth", profile=False))
        out.append(dict(SHIPPED, name="RGB default transports, echo floor", modality="rgb", profile=False, kind="echo"))
    return out


# -- the echo node (transport floor) ------------------------------------------------------------

def echo_main(modality: str, executor_kind: str, qos_name: str) -> int:
    """Answer each image (RGB-D: each pair with equal stamps) with a TrackedTarget carrying its
    header: DDS + rclpy + CDR read + one small publish, no conversion and no tracking.

    It keeps the last 30 messages, as the node's init history does: an echo that freed each
    0.9 MB message at once would make glibc trim and re-map its heap every frame (~640 page
    faults, ~1.5 ms per frame measured here), which is allocator behaviour, not transport."""

    trace = StageTrace.from_env()
    rclpy.init()
    node = rclpy.create_node("utptrack")
    pub = node.create_publisher(TrackedTarget, "~/target", 10)
    pending: dict[int, int] = {}
    kept: deque = deque(maxlen=30)
    need = 2 if modality != "rgb" else 1

    def on_image(stream: str):
        def cb(raw: bytes) -> None:
            t0 = time.perf_counter()
            msg = image_from_cdr(raw)
            kept.append(raw)
            stamp = stamp_to_ns(msg.header.stamp)
            t1 = time.perf_counter()
            trace.add({"ev": "input", "stream": stream, "stamp": stamp, "t_entry": t0, "t_parsed": t1, "t_converted": t1, "t_done": t1, "cpu": 0.0})
            pending[stamp] = pending.get(stamp, 0) + 1
            if pending[stamp] < need:
                return
            del pending[stamp]
            out = TrackedTarget(header=Header(stamp=Time(sec=msg.header.stamp.sec, nanosec=msg.header.stamp.nanosec),
                                              frame_id=msg.header.frame_id), image_width=msg.width, image_height=msg.height)
            t2 = time.perf_counter()
            pub.publish(out)
            trace.add({"ev": "frame", "stamp": stamp, "t_taken": t2, "t_tracked": t2, "t_published": time.perf_counter(), "timings_ms": {}})
        return cb

    qos = qos_profile(qos_name, 2)
    node.create_subscription(Image, "image", on_image("rgb"), qos, raw=True)
    if modality != "rgb":
        node.create_subscription(Image, "aux/image", on_image("aux"), qos, raw=True)
    node.create_timer(1.0, trace.flush)
    ex, _ = make_executor(executor_kind)
    ex.add_node(node)
    try:
        spin(ex)
    except BaseException:  # noqa: BLE001 - SIGINT / external shutdown end the echo
        pass
    finally:
        trace.flush()
    return 0


# -- one group of setups sharing a FastDDS profile (child process) ------------------------------

class Target:
    """One setup: its process, and this side's rclpy context, publishers and ~/target subscriber."""

    def __init__(self, setup: dict, domain: int, tmp: Path, threads: int, consumer: str) -> None:
        self.setup, self.domain = setup, domain
        self.trace_path = tmp / f"trace_{domain}.jsonl"
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1", UTPTRACK_TRACE_FILE=str(self.trace_path),
                   UTPTRACK_EXECUTOR=setup["executor"], UTPTRACK_RAW_INPUT="1" if setup.get("raw", True) else "0")
        if setup["kind"] == "node":
            params = tmp / f"params_{domain}.yaml"
            params.write_text(PARAMS.format(modality=setup["modality"], qos=setup["qos"], threads=setup.get("threads", threads),
                                          backend=setup.get("backend", "torch")))
            program = [*node_module_command(), "--executor", setup["executor"]]
            args = ["--ros-args", "--params-file", str(params)]
        else:
            program = [sys.executable, str(Path(__file__).resolve())]
            args = ["--echo", setup["modality"], setup["executor"], setup["qos"]]
        self.log_path = tmp / f"node_{domain}.log"
        self.node_process = NodeProcess(args, env, self.log_path, program=program, cwd=REPO)
        self.proc = self.node_process.proc
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = rclpy.create_node("bench_node_client", context=self.ctx)
        rel = ReliabilityPolicy.RELIABLE if setup["qos"] == "reliable" else ReliabilityPolicy.BEST_EFFORT
        self.pub = self.node.create_publisher(Image, "image", QoSProfile(depth=2, reliability=rel))
        self.pub_aux = self.node.create_publisher(Image, "aux/image", QoSProfile(depth=2, reliability=rel))
        self.received: dict[int, tuple[float, Any]] = {}
        self.cond = threading.Condition()

        def on_target(msg: Any) -> None:
            t = time.perf_counter()
            with self.cond:
                self.received.setdefault(stamp_to_ns(msg.header.stamp), (t, msg))
                self.cond.notify_all()

        self.node.create_subscription(TrackedTarget, "/utptrack/target", on_target, 10)
        self.init = self.node.create_client(InitTarget, "/utptrack/init_target") if setup["kind"] == "node" else None

        self.ex, kind = make_executor(consumer, self.ctx)
        self.ex.add_node(self.node)
        def run() -> None:
            try:
                spin(self.ex, self.ctx)
            except BaseException:  # noqa: BLE001 - the context shutting down ends the spin
                pass

        self.spin = threading.Thread(target=run, daemon=True)
        self.spin.start()
        self.sent: dict[int, dict] = {}

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.setup['name']}: process exited; see {self.log_path}")
        subs = self.pub.get_subscription_count() > 0 and (self.setup["modality"] == "rgb" or self.pub_aux.get_subscription_count() > 0)
        return subs and (self.init is None or self.init.service_is_ready())

    def send(self, i: int, frames: dict) -> int:
        img, d, img_raw, d_raw = frames[i]
        objects = self.setup["publish"] == "objects"
        rec: dict = {}
        rec["t0"] = time.perf_counter()
        if self.setup["modality"] != "rgb":
            self.pub_aux.publish(d if objects else d_raw)
            rec["t_aux_sent"] = time.perf_counter()
        rec["t_rgb_send"] = time.perf_counter()
        self.pub.publish(img if objects else img_raw)
        rec["t_sent"] = time.perf_counter()
        self.sent[stamp_of(i)] = rec
        return stamp_of(i)

    def wait(self, stamp: int, timeout: float = 5.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: stamp in self.received, timeout)

    def init_target(self) -> None:
        if self.init is None:
            return
        x, y, w, h = SCENE.box(0)  # frame 0's box (the node inits on its newest frame, 4, 12 px away)
        fut = self.init.call_async(InitTarget.Request(center_x=x + w / 2, center_y=y + h / 2, size_x=w, size_y=h))
        end = time.monotonic() + 30
        while not fut.done() and time.monotonic() < end:
            time.sleep(0.01)
        if not fut.done() or not fut.result().success:
            raise RuntimeError(f"{self.setup['name']}: init_target failed: {fut.result().message if fut.done() else 'timeout'}")

    def stop(self) -> None:
        rclpy.shutdown(context=self.ctx)
        self.spin.join(timeout=3)
        self.ex.shutdown()
        self.node.destroy_node()
        self.node_process.stop()

    def cpu_seconds(self) -> float:
        return self.proc_stat()[0]

    def proc_stat(self) -> tuple[float, int]:
        """(CPU seconds, minor page faults) of the node process so far."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[7])
        except (OSError, IndexError):
            return 0.0, 0


def _proc_stat() -> tuple[float, float, float]:
    """(busy, total, steal) jiffies over all CPUs."""
    vals = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = vals[3] + vals[4]
    total = sum(vals[:8])
    return total - idle, total, vals[7]


def run_group(spec_path: Path) -> int:
    """Child process: start every setup of one profile, warm up, measure round robin, write JSON."""
    spec = json.loads(spec_path.read_text())

    tmp = Path(tempfile.mkdtemp(prefix="bench_node_"))
    targets: list[Target] = []
    n_warm, n_frames = spec["warmup"], spec["frames"]
    frames: dict = {}
    for i in range(n_warm + n_frames + 5):
        rgb, depth = scene(i)
        img, d = fill_image(Image(), rgb), fill_image(Image(), depth)
        for m in (img, d):
            m.header.frame_id = "camera_color_optical_frame"
            m.header.stamp.sec, m.header.stamp.nanosec = divmod(stamp_of(i), 1_000_000_000)
        frames[i] = (img, d, serialize_message(img), serialize_message(d))
    out: dict = {"setups": []}
    try:
        for k, s in enumerate(spec["setups"]):
            targets.append(Target(s, spec["domain_base"] + k, tmp, spec["threads"], spec["consumer"]))
        end = time.monotonic() + 240
        while not all(t.ready() for t in targets):
            if time.monotonic() > end:
                raise RuntimeError("not every node came up in 240 s: " + ", ".join(t.setup["name"] for t in targets if not t.ready()))
            time.sleep(0.2)
        time.sleep(1.0)
        for t in targets:  # warm-up: idle frames, init, tracking frames
            for i in range(5):
                t.wait(t.send(i, frames))
            t.init_target()
        for i in range(5, 5 + n_warm):
            for t in targets:
                t.wait(t.send(i, frames))
                time.sleep(0.005)
        cpu0 = {t.domain: t.proc_stat() for t in targets}
        own0 = time.process_time()
        busy0, total0, steal0 = _proc_stat()
        wall0 = time.monotonic()
        load0 = os.getloadavg()[0]
        lost = {t.domain: 0 for t in targets}
        order = list(range(len(targets)))
        for i in range(5 + n_warm, 5 + n_warm + n_frames):
            order = order[1:] + order[:1]  # rotate who goes first
            for k in order:
                t = targets[k]
                if not t.wait(t.send(i, frames)):
                    lost[t.domain] += 1
                time.sleep(0.01)
        wall = time.monotonic() - wall0
        busy1, total1, steal1 = _proc_stat()
        cpu1 = {t.domain: t.proc_stat() for t in targets}
        node_use = {d: {"cpu_ms_per_frame": 1e3 * (cpu1[d][0] - cpu0[d][0]) / n_frames,
                        "page_faults_per_frame": (cpu1[d][1] - cpu0[d][1]) / n_frames} for d in cpu0}
        ours = sum(cpu1[d][0] - cpu0[d][0] for d in cpu0) + (time.process_time() - own0)
        tick = os.sysconf("SC_CLK_TCK")
        ncpu = os.cpu_count() or 1
        out["machine"] = {
            "wall_s": wall,
            "cores_busy_total": (busy1 - busy0) / tick / wall,
            "cores_busy_ours": ours / wall,
            "cores_busy_others": max(0.0, (busy1 - busy0) / tick / wall - ours / wall),
            "steal_fraction": (steal1 - steal0) / max(1, total1 - total0),
            "load1_start": load0, "load1_end": os.getloadavg()[0], "cpus": ncpu,
        }
        time.sleep(1.5)
    finally:
        for t in targets:
            t.stop()
    for t in targets:
        trace: list = []
        if t.trace_path.exists():
            trace = [json.loads(line) for line in t.trace_path.read_text().splitlines() if line.strip()]
        rows = []
        inputs: dict[int, list] = {}
        work: dict[int, dict] = {}
        for r in trace:
            if r["ev"] == "input":
                inputs.setdefault(r["stamp"], []).append(r)
            else:
                work[r["stamp"]] = r
        for i in range(5 + n_warm, 5 + n_warm + n_frames):
            st = stamp_of(i)
            if st not in t.received or st not in work or st not in inputs:
                continue
            t_recv, msg = t.received[st]
            rows.append({"sent": t.sent[st], "t_recv": t_recv, "model_ms_msg": msg.model_ms, "inputs": inputs[st], "frame": work[st]})
        out["setups"].append({"setup": t.setup, "rows": rows, "lost": lost.get(t.domain, 0), "frames": n_frames,
                              "node_process": node_use.get(t.domain, {}),
                              "log_tail": t.log_path.read_text(errors="replace")[-1500:] if not rows else ""})
    Path(spec["out"]).write_text(json.dumps(out))
    return 0


# -- analysis -----------------------------------------------------------------------------------

STAGES = ("publish call", "transport in", "read (CDR)", "conversion", "sync+mailbox", "hand-off", "preprocessing", "model",
          "postprocessing", "track other", "publish", "transport out")


def frame_stages(row: dict) -> dict[str, float]:
    """Per-frame stage durations (ms) that add up to the end-to-end time."""
    sent, fr, ins = row["sent"], row["frame"], row["inputs"]
    ms = 1e3
    last = max(ins, key=lambda r: r["t_done"])  # the callback that completed the set
    tm = fr.get("timings_ms", {})
    own_inputs = sum(r["t_done"] - r["t_entry"] for r in ins)
    publish_call = (sent["t_sent"] - sent["t_rgb_send"]) + (sent.get("t_aux_sent", sent["t_rgb_send"]) - sent["t0"])
    e2e = (row["t_recv"] - sent["t0"]) * ms
    track = (fr["t_tracked"] - fr["t_taken"]) * ms
    st = {
        "publish call": publish_call * ms,
        "read (CDR)": sum(r["t_parsed"] - r["t_entry"] for r in ins) * ms,
        "conversion": sum(r["t_converted"] - r["t_parsed"] for r in ins) * ms,
        "sync+mailbox": sum(r["t_done"] - r["t_converted"] for r in ins) * ms,
        "hand-off": (fr["t_taken"] - last["t_done"]) * ms,
        "preprocessing": tm.get("preprocess", 0.0),
        "model": tm.get("model", 0.0),
        "postprocessing": tm.get("postprocess", 0.0),
        "track other": track - tm.get("total", track if not tm else 0.0),
        "publish": (fr["t_published"] - fr["t_tracked"]) * ms,
        "transport out": (row["t_recv"] - fr["t_published"]) * ms,
    }
    # transport in: everything before the completing callback that is not our own callback work
    st["transport in"] = (last["t_entry"] - sent["t0"]) * ms - publish_call * ms - (own_inputs - (last["t_done"] - last["t_entry"])) * ms
    st["output hop"] = (row["t_recv"] - fr["t_tracked"]) * ms  # publish + transport out, never negative
    st["e2e"] = e2e
    st["overhead"] = e2e - st["model"]
    st["rgb hop"] = (next(r for r in ins if r["stream"] == "rgb")["t_entry"] - sent["t_rgb_send"]) * ms
    st["cpu callbacks"] = sum(r.get("cpu", 0.0) for r in ins) * ms
    if "cpu_thread" in fr:
        st["cpu worker thread"] = fr["cpu_thread"] * ms
        st["cpu node process (taken->published)"] = fr["cpu_process"] * ms
        st["cpu publish"] = fr.get("cpu_publish", np.nan) * ms
    return st


def summarise(setup_out: dict) -> dict:
    rows = setup_out["rows"]
    s = setup_out["setup"]
    res = {"name": s["name"], "setup": s, "frames": setup_out["frames"], "delivered": len(rows), "lost": setup_out["lost"],
           "node_process": setup_out.get("node_process", {})}
    if not rows:
        res["log_tail"] = setup_out.get("log_tail", "")
        return res
    per = [frame_stages(r) for r in rows]
    keys = per[0].keys()
    arr = {k: np.array([p.get(k, np.nan) for p in per]) for k in keys}
    res["p50_ms"] = {k: float(np.nanmedian(v)) for k, v in arr.items()}
    res["p95_ms"] = {k: float(np.nanpercentile(v, 95)) for k, v in arr.items()}
    res["mean_ms"] = {k: float(np.nanmean(v)) for k, v in arr.items()}
    return res


def conversion_micro(n: int = 200) -> dict:
    """rclpy deserialisation vs sensors.image_from_cdr (+ the same conversion): median wall and
    thread CPU time, and page faults, per message (this process, same bytes)."""

    rgb, depth = scene(0)
    cases = {"rgb8": (fill_image(Image(), rgb), image_to_rgb), "16UC1 depth": (fill_image(Image(), depth), lambda m: aux_to_array(m, Modality.DEPTH))}
    out: dict = {}

    def measure(fn) -> dict:
        wall, cpu = [], []
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(n):
            t, c = time.perf_counter(), time.thread_time()
            fn()
            cpu.append(time.thread_time() - c)
            wall.append(time.perf_counter() - t)
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / n
        return {"wall_ms": float(np.median(wall) * 1e3), "cpu_ms": float(np.median(cpu) * 1e3), "page_faults": faults}

    for name, (msg, conv) in cases.items():
        raw = serialize_message(msg)
        out[name] = {"rclpy deserialize + convert": measure(lambda: conv(deserialize_message(raw, Image))),
                     "CDR read + convert": measure(lambda: conv(image_from_cdr(raw)))}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20, help="tracking frames per setup before measuring")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads in the node (model.num_threads)")
    ap.add_argument("--consumer", choices=("single", "events"), default="events",
                    help="executor of this process's ~/target subscriber (the downstream consumer)")
    ap.add_argument("--nice", type=int, default=0,
                    help="run the nodes and this side at this nice value (negative = ahead of other jobs; needs root)")
    ap.add_argument("--json", type=Path, default=REPO / "artifacts" / "bench" / "bench_node.json")
    ap.add_argument("--quick", action="store_true", help="shipped configuration, executor/input A/B and floors only, 60 frames")
    ap.add_argument("--only", default="", help="comma-separated substrings: run the setups whose name contains one")
    ap.add_argument("--echo", nargs=3, metavar=("MODALITY", "EXECUTOR", "QOS"), help=argparse.SUPPRESS)
    ap.add_argument("--group", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.echo:
        return echo_main(*args.echo)
    if args.group:
        return run_group(args.group)
    frames = 60 if args.quick and args.frames == 200 else args.frames
    chosen = setups(args.quick)
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        chosen = [s for s in chosen if any(k in s["name"] for k in keys)]
    if any(s["kind"] == "node" and s.get("backend") == "onnxruntime" for s in chosen):
        export_node_graphs()
    tmp = Path(tempfile.mkdtemp(prefix="bench_node_groups_"))
    base = 100 + os.getpid() % 100
    results, machine = [], {}
    for g, profile in enumerate((True, False)):
        group = [s for s in chosen if s["profile"] == profile]
        if not group:
            continue
        label = "large-SHM profile" if profile else "default transports"
        print(f"== {len(group)} setups over {label}, {frames} frames each, round robin", flush=True)
        spec = {"setups": group, "frames": frames, "warmup": args.warmup, "threads": args.threads, "consumer": args.consumer,
                "domain_base": base + 20 * g, "out": str(tmp / f"group{g}.json")}
        (tmp / f"group{g}.spec.json").write_text(json.dumps(spec))
        env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
        env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
        if profile:
            env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
        nice = ["nice", "-n", str(args.nice)] if args.nice else []
        rc = subprocess.call(nice + [sys.executable, str(Path(__file__).resolve()), "--group", str(tmp / f"group{g}.spec.json")], env=env)
        if rc != 0:
            print(f"group over {label} failed (rc {rc})")
            continue
        data = json.loads(Path(spec["out"]).read_text())
        machine[label] = data.get("machine", {})
        results += [summarise(s) for s in data["setups"]]
    micro = conversion_micro()
    report(results, machine, micro)

    meta = {"environment": machine_record(),
            "node_torch_threads": args.threads, "frames": frames, "warmup": args.warmup,
            "consumer_executor": args.consumer, "nice": args.nice}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "machine_load": machine, "conversion_cpu_ms": micro, "results": results}, indent=2))
    print(f"wrote {args.json}")
    return 0


def report(results: list[dict], machine: dict, micro: dict) -> None:
    for label, m in machine.items():
        if m:
            print(f"machine during the {label} group: {m['cores_busy_others']:.2f} of {m['cpus']} cores busy with other "
                  f"processes, ours {m['cores_busy_ours']:.2f}, steal {100 * m['steal_fraction']:.1f} %, load1 "
                  f"{m['load1_start']:.1f} -> {m['load1_end']:.1f}")
    by_name = {r["name"]: r for r in results}
    print("\nms per frame, median (p95)   e2e = first publish() -> ~/target received; overhead = e2e - model (per frame)")
    for r in results:
        if "p50_ms" not in r:
            print(f"{r['name']}: delivered {r['delivered']}/{r['frames']}  {r.get('log_tail', '')[-300:]}")
            continue
        p50, p95 = r["p50_ms"], r["p95_ms"]
        print(f"{r['name']}: e2e {p50['e2e']:.2f} ({p95['e2e']:.2f}), model {p50['model']:.2f}, overhead {p50['overhead']:.2f} "
              f"({p95['overhead']:.2f}), delivered {r['delivered']}/{r['frames']}")
        print("    " + ", ".join(f"{k} {p50[k]:.2f}" for k in STAGES if k in p50 and k != "model"))
        cpu = [k for k in p50 if k.startswith("cpu")]
        proc = r.get("node_process", {})
        print("    CPU: " + ", ".join(f"{k[4:]} {p50[k]:.2f}" for k in cpu) + f"; rgb hop alone {p50['rgb hop']:.2f}, "
              f"output hop {p50['output hop']:.2f}; node process "
              f"{proc.get('cpu_ms_per_frame', float('nan')):.1f} ms CPU and {proc.get('page_faults_per_frame', float('nan')):.0f} page faults per frame")
    print("\nA/B (overhead median, this run):")
    for r in results:
        s = r["setup"]
        if s.get("base") or "p50_ms" not in r:
            continue
        tag = "RGB-D" if s["modality"] != "rgb" else "RGB"
        base = by_name.get(f"{tag} shipped")
        if base and "p50_ms" in base:
            b, v = base["p50_ms"]["overhead"], r["p50_ms"]["overhead"]
            print(f"  {r['name']}: {v:.2f} ms vs shipped {b:.2f} ms (x{v / b:.2f})")
    print("\nmessage read + conversion per 640x480 message (this process, median):")
    for case, v in micro.items():
        print(f"  {case}: " + "; ".join(f"{k} {x['wall_ms']:.3f} ms ({x['cpu_ms']:.3f} CPU, {x['page_faults']:.0f} page faults)"
                                        for k, x in v.items()))


if __name__ == "__main__":
    sys.exit(main())
