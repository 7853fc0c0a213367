"""The tracker node end to end: real entry point in a subprocess, real DDS, real messages.

One node process (RGB-D, tiny model with seeded random weights) serves every test in this
module; tests run in file order and each one sets up what it needs. The lifecycle test is last
(it reconfigures the node).
"""
from __future__ import annotations

import array
import itertools
import json
import time

import numpy as np
import pytest

from utptrack_ros.models import create_model, default_tracker_config
from utptrack_ros.sensors import fill_image, image_to_rgb
from utptrack_ros.tracker import Tracker

# the harness first: it skips this module where ROS (rclpy, the interfaces) is missing
from ros_harness import (
    Client,
    H,
    W,
    box_xywh,
    running_node,
    scene,
    stamp_of,
    target_box,
)
from builtin_interfaces.msg import Time
from lifecycle_msgs.msg import Transition
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_msgs.msg import String

pytestmark = pytest.mark.ros

TAG = "test_node"
SEED = 0
PARAMS = f"""
/**:
  ros__parameters:
    autostart: true
    model: {{name: tiny, weights: random, seed: {SEED}, device: cpu, num_threads: 1, backend: torch}}
    input: {{modality: depth, qos_image: reliable, qos_aux: reliable, qos_depth: 5, max_prompt_chars: 200}}
    sync: {{slop_s: 0.02, queue_size: 5, aux_timeout_s: 2.0}}
    output: {{diagnostics_period_s: 0.25, stale_s: 1.0}}
"""

IDLE, TRACKING, LOST = 0, 1, 2
_FRAMES = itertools.count()


def take(n: int) -> list[int]:
    """The next ``n`` unused frame indices (stamps only ever increase across the module)."""
    return [next(_FRAMES) for _ in range(n)]


@pytest.fixture(scope="module")
def node(ros_tmp):
    trace = {"UTPTRACK_TRACE_FILE": str(ros_tmp / "trace.jsonl")}  # per-frame stage stamps (ros/trace.py)
    with running_node(ros_tmp, TAG, PARAMS, trace) as running:
        yield running


def lockstep(client: Client, frames, **kw) -> list:
    """Publish frames one at a time, waiting for each one's ~/target."""
    out = []
    for i in frames:
        stamp = client.publish(i, **kw)
        out.append(client.target_for(stamp))
    return out


def test_active_and_qos_logged(node):
    _, client = node
    assert client.state() == "active"
    line = client.log_containing("input 'image' QoS:")
    assert "RELIABLE, KEEP_LAST(5), VOLATILE" in line.msg
    assert "input 'aux/image' (depth) QoS: RELIABLE" in client.log_containing("(depth) QoS").msg


def test_init_refused_before_any_frame(node):
    _, client = node
    res = client.init(target_box(0))
    assert not res.success
    assert "no image received yet" in res.message and "/image" in res.message


def test_idle_targets_copy_input_header(node):
    _, client = node
    frames = take(3)
    outs = lockstep(client, frames)
    for i, t in zip(frames, outs):
        assert t.state == IDLE and t.target_id == ""
        assert (t.header.stamp.sec, t.header.stamp.nanosec) == divmod(stamp_of(i), 1_000_000_000)
        assert t.header.frame_id == "cam"
        assert (t.image_width, t.image_height) == (W, H)


@pytest.mark.parametrize(
    "box, stamp, frame_id, reason",
    [
        (target_box(1), stamp_of(1) + 1, "", "no buffered frame with stamp"),
        ((W + 10.0, 10.0, 20.0, 20.0), 0, "", "outside the 320x240 image"),
        ((10.0, 10.0, 0.0, 20.0), 0, "", "zero or negative area"),
        ((float("nan"), 10.0, 20.0, 20.0), 0, "", "non-finite"),
        (target_box(1), 0, "other_cam", "differs from the image's 'cam'"),
    ],
)
def test_init_refusals_say_why(node, box, stamp, frame_id, reason):
    _, client = node
    res = client.init(box, stamp_ns=stamp, frame_id=frame_id)
    assert not res.success
    assert reason in res.message


def test_tracks_exactly_like_the_core_tracker_on_the_stamped_frame(node):
    """Init on an older buffered frame (by stamp), then track: every output equals the
    framework-free Tracker run here on the same frames (same seeded weights). Proves the
    buffered-frame lookup, RGB/depth conversion and pairing, box conversions and stamps."""
    torch = pytest.importorskip("torch")

    _, client = node
    before = take(3)
    lockstep(client, before)
    first = before[1]  # not the latest frame: the service must use the one with this stamp
    res = client.init(target_box(first), stamp_ns=stamp_of(first), target_id="car")
    assert res.success, res.message
    assert res.target_id == "car" and "car" in res.message
    assert (res.frame_stamp.sec, res.frame_stamp.nanosec) == divmod(stamp_of(first), 1_000_000_000)
    init_msg = client.target_for(stamp_of(first), target_id="car")
    assert init_msg.frame_index == 0 and init_msg.target_id == "car"
    np.testing.assert_allclose(box_xywh(init_msg), target_box(first), atol=1e-6)

    frames = take(8)
    outs = lockstep(client, frames)

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    ref = Tracker(create_model("tiny"), default_tracker_config("tiny"), "cpu")
    rgb, depth = scene(first)
    ref.init(rgb, target_box(first), aux=depth, modality="depth")
    for k, (i, t) in enumerate(zip(frames, outs)):
        rgb, depth = scene(i)
        r = ref.track(rgb, aux=depth)
        assert t.target_id == "car" and t.frame_index == k + 1
        assert not t.aux_fallback and t.modality == "depth"
        np.testing.assert_allclose(box_xywh(t), r.box.as_xywh(), atol=0.05, err_msg=f"frame {i}")
        assert t.confidence == pytest.approx(r.confidence, abs=1e-3)
        assert t.state == (TRACKING if r.state.value == "tracking" else LOST)
        assert t.kept_token_fraction == pytest.approx(r.kept_fraction, abs=1e-6)
        assert t.kept_token_fraction < 1.0  # tiny prunes by default
        assert t.model_ms > 0 and t.latency_ms >= t.model_ms


def test_sync_pairs_inside_slop_and_not_outside(node):
    _, client = node
    lockstep(client, take(1))  # ends a possible RGB-only fallback after the previous test's pause
    before = client.next_diagnostics()["input"][2]
    mark = client.diagnostics_count()
    for i in take(3):  # depth stamped 10 ms after its image: inside the 20 ms slop
        t = client.target_for(client.publish(i, aux_stamp_ns=stamp_of(i) + 10_000_000))
        assert not t.aux_fallback
    # 50 ms skew with frames 200 ms apart: no image has a depth frame within the slop
    reserved = take(13)
    skewed = [stamp_of(reserved[0]) + k * 200_000_000 for k in range(3)]
    for i, stamp in zip(reserved, skewed):
        client.publish(i, stamp_ns=stamp, aux_stamp_ns=stamp + 50_000_000)
        time.sleep(0.1)
    after = client.wait_diagnostics(
        lambda d: int(d["input"][2]["unmatched_rgb"]) >= int(before["unmatched_rgb"]) + 3, what="unmatched_rgb to grow")
    stamps = {t.header.stamp.sec * 10**9 + t.header.stamp.nanosec for t in client.targets}
    assert not set(skewed) & stamps  # never processed
    assert int(after["input"][2]["matched"]) >= int(before["matched"]) + 3
    assert int(after["input"][2]["unmatched_aux"]) >= int(before["unmatched_aux"]) + 2  # the last waits for a newer image
    warn = client.diagnostics_since(mark, lambda name, level, msg, v: "RGB frames unsynchronized" in msg)
    assert warn.level == b"\x01"
    lockstep(client, take(2))  # back in sync


def test_aux_stream_stops_and_resumes(node):
    _, client = node
    stamps = []
    for i in take(26):
        stamps.append(client.publish(i, aux=False))
        time.sleep(0.1)
    last = client.target_for(stamps[-1], timeout=10)
    assert last.aux_fallback and last.target_id == "car"
    diag = client.wait_diagnostics(lambda d: "silent" in d["input"][1], what="aux fallback warning")
    assert diag["input"][0] == 1 and "depth stream silent" in diag["input"][1]
    outs = lockstep(client, take(3))
    assert not outs[-1].aux_fallback and outs[-1].target_id == "car"
    assert any(t.aux_fallback for t in client.targets[-30:]) and not all(t.aux_fallback for t in client.targets[-30:])


def test_bad_inputs_are_reported_and_tracking_goes_on(node):
    _, client = node
    i = take(1)[0]
    rgb, _ = scene(i)
    msg = fill_image(Image(), rgb)
    msg.encoding, msg.step = "yuv422", W * 2
    msg.data = array.array("B", np.ascontiguousarray(rgb[:, :, :2]).tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_of(i), 10**9)
    client.pub_rgb.publish(msg)
    assert "unsupported RGB image encoding 'yuv422'" in client.log_containing("yuv422").msg
    # depth of another size than the RGB image -> this frame RGB-only, target kept
    small = np.full((H // 2, W // 2), 2000, np.uint16)
    t = client.target_for(client.publish(take(1)[0], depth=small))
    assert t.aux_fallback and t.target_id == "car"
    assert "register/resize it to the RGB image" in client.log_containing("frame unusable").msg
    # all-NaN 32FC1 depth and all-zero 16UC1 depth: tracked, reported as invalid depth
    t = client.target_for(client.publish(take(1)[0], depth=np.full((H, W), np.nan, np.float32)))
    assert not t.aux_fallback and t.target_id == "car"
    diag = client.wait_diagnostics(lambda d: "depth 0.0% valid" in d["input"][1], what="invalid-depth warning")
    assert diag["input"][0] == 1
    t = client.target_for(client.publish(take(1)[0], depth=np.zeros((H, W), np.uint16)))
    assert t.target_id == "car"
    # zero stamps: dropped with a reason
    client.publish(take(1)[0], stamp_ns=0)
    assert "header.stamp == 0 dropped" in client.log_containing("header.stamp == 0").msg
    d = client.next_diagnostics()
    assert int(d["input"][2]["zero_stamp"]) >= 1 and int(d["input"][2]["bad_input"]) >= 1
    lockstep(client, take(2))


def test_prompt_topic_empty_and_too_long(node):
    _, client = node
    client.pub_prompt.publish(String(data="x" * 300))
    assert "prompt refused: prompt has 300 characters; at most 200" in client.log_containing("prompt refused").msg
    client.pub_prompt.publish(String(data="   "))
    client.log_containing("prompt cleared")
    assert client.next_diagnostics()["tracker"][2]["prompt"] == ""
    lockstep(client, take(2))
    # a real prompt: encoded (MiniLM, offline) at run time, text guidance on, tracking goes on
    client.pub_prompt.publish(String(data="  red   checkered square "))
    assert "prompt set to 'red checkered square'" in client.log_containing("prompt set to", timeout=60).msg
    outs = lockstep(client, take(2))
    assert all(t.target_id == "car" for t in outs)
    client.wait_diagnostics(lambda d: d["tracker"][2]["prompt"] == "red checkered square", what="prompt in diagnostics")
    client.pub_prompt.publish(String(data=""))
    client.wait_diagnostics(lambda d: d["tracker"][2]["prompt"] == "", what="prompt cleared")


def test_live_parameters_apply_and_invalid_ones_are_rejected(node):
    _, client = node
    assert client.set_params(tracker__lost_threshold=1.0)[0].successful
    assert all(t.state == LOST for t in lockstep(client, take(2)))  # confidence < 1.0 always
    res = client.set_params(tracker__lost_threshold=2.0)  # refused by the descriptor's range
    assert not res[0].successful and "tracker.lost_threshold" in res[0].reason and "1.0" in res[0].reason
    res = client.set_params(sync__slop_s=-1.0)
    assert not res[0].successful and "sync.slop_s" in res[0].reason
    res = client.set_params(input__qos_image="fast")  # start-up only
    assert not res[0].successful and "read-only" in res[0].reason
    assert client.set_params(tracker__lost_threshold=0.0)[0].successful
    assert all(t.state == TRACKING for t in lockstep(client, take(2)))
    assert client.set_params(prune__keep_ratio_ce=1.0, prune__keep_ratio_dte=1.0, prune__keep_ratio_ste=1.0)[0].successful
    assert lockstep(client, take(1))[0].kept_token_fraction == pytest.approx(1.0)
    assert client.set_params(prune__keep_ratio_ce=0.5)[0].successful
    assert lockstep(client, take(1))[0].kept_token_fraction < 0.95
    res = client.set_params(prune__keep_ratio_ce=0.0)
    assert not res[0].successful and "(0, 1]" in res[0].reason
    assert client.set_params(prune__keep_ratio_ce=0.7, prune__keep_ratio_dte=0.7, prune__keep_ratio_ste=0.7,
                             tracker__lost_threshold=0.25)[0].successful


def test_debug_image_while_subscribed(node):
    _, client = node
    client.subscribe_debug()
    time.sleep(0.5)
    i = take(1)[0]
    stamp = client.publish(i)
    client.target_for(stamp)
    img = client.wait_for(
        lambda: next((m for m in client.debug_images if m.header.stamp.sec * 10**9 + m.header.stamp.nanosec == stamp), None),
        what="debug image")
    assert (img.width, img.height, img.encoding) == (W, H, "rgb8")
    drawn = image_to_rgb(img)
    assert (drawn != scene(i)[0]).any(axis=2).mean() > 0.01  # overlay drawn


def test_camera_stops_goes_stale_and_recovers(node):
    _, client = node
    client.wait_diagnostics(lambda d: d["input"][0] == 3 and "no RGB image for" in d["input"][1], timeout=8,
                            what="STALE input status")
    t = lockstep(client, take(1))[0]
    assert t.target_id == "car" and t.state in (TRACKING, LOST)
    client.wait_diagnostics(lambda d: d["input"][0] != 3, what="input status to recover")


def test_diagnostics_content(node):
    _, client = node
    frames = take(6)
    for i in frames:
        client.publish(i)
        time.sleep(0.05)
    client.target_for(stamp_of(frames[-1]))
    d = client.next_diagnostics()
    lvl, msg, v = d["tracker"]
    assert v["model"] == "tiny" and v["device"] == "cpu" and v["backend"] == "torch", d
    assert v["target id"] == "car" and v["tracker state"] in ("tracking", "lost"), d
    assert 0.0 < float(v["kept token fraction"]) < 1.0, d
    for key in ("latency p50 ms", "latency p90 ms", "latency p99 ms", "model p50 ms", "convert p50 ms", "publish p50 ms"):
        assert float(v[key]) >= 0.0, (key, d)
    assert float(v["latency p99 ms"]) >= float(v["latency p50 ms"]), d
    inp = d["input"][2]
    assert float(inp["rgb_hz"]) > 0.0 and float(inp["output_hz"]) > 0.0, d
    for key in ("matched", "unmatched_rgb", "unmatched_aux", "rgb_only", "dropped_stale", "zero_stamp", "bad_input"):
        assert int(inp[key]) >= 0, (key, d)
    assert int(inp["matched"]) > 20, d


def test_stage_trace_orders_every_stage(node, ros_tmp):
    """UTPTRACK_TRACE_FILE: each processed frame has its input callbacks' and the worker's stamps,
    in data-flow order, on the clock this process reads too (bench/bench_node.py relies on it)."""

    _, client = node
    frames = take(3)
    sent = {}
    for i in frames:
        before = time.perf_counter()
        sent[client.publish(i)] = before
        client.target_for(stamp_of(i))
    received = time.perf_counter()
    path = ros_tmp / "trace.jsonl"
    client.wait_for(lambda: path.exists() and all(f'"stamp": {stamp_of(i)}, "t_taken"' in path.read_text() for i in frames),
                    what="trace records flushed")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for stamp, before in sent.items():
        inputs = [r for r in records if r["ev"] == "input" and r["stamp"] == stamp]
        work = [r for r in records if r["ev"] == "frame" and r["stamp"] == stamp]
        assert sorted(r["stream"] for r in inputs) == ["aux", "rgb"] and len(work) == 1, (inputs, work)
        w = work[0]
        for r in inputs:
            assert before < r["t_entry"] <= r["t_parsed"] <= r["t_converted"] <= r["t_done"] <= w["t_taken"], r
            assert r["cpu"] >= 0.0
        assert w["t_taken"] <= w["t_tracked"] <= w["t_published"] < received
        tm = w["timings_ms"]
        assert tm["total"] >= tm["model"] > 0.0 and tm["preprocess"] > 0.0
        assert (w["t_tracked"] - w["t_taken"]) * 1e3 >= tm["total"]
        assert w["cpu_process"] >= w["cpu_thread"] > 0.0


def test_reset_goes_idle(node):
    _, client = node
    res = client.reset()
    assert res.success and "'car' dropped" in res.message
    t = lockstep(client, take(1))[0]
    assert t.state == IDLE and t.target_id == ""


def test_lifecycle_transitions(node, ros_tmp):
    _, client = node
    assert client.transition(Transition.TRANSITION_DEACTIVATE)
    assert client.state() == "inactive"
    n = len(client.targets)
    i = take(1)[0]
    client.publish(i)
    time.sleep(0.5)
    assert len(client.targets) == n  # inactive: nothing processed, nothing published
    res = client.init(target_box(i))
    assert not res.success and "the node is inactive" in res.message
    assert client.transition(Transition.TRANSITION_ACTIVATE)
    time.sleep(0.3)
    lockstep(client, take(1))
    assert client.transition(Transition.TRANSITION_DEACTIVATE)
    assert client.transition(Transition.TRANSITION_CLEANUP)
    assert client.state() == "unconfigured"
    res = client.init(target_box(i))
    assert not res.success and "the model is not configured" in res.message

    # what was loaded cannot be swapped at run time (start-up-only parameters); the same
    # configuration comes back (test_start_up_config.py: bad weights, compressed input)
    res = client.set_params(model__weights=str(ros_tmp / "other.safetensors"))[0]
    assert not res.successful and "read-only" in res.reason
    assert client.transition(Transition.TRANSITION_CONFIGURE)
    assert client.transition(Transition.TRANSITION_ACTIVATE)
    assert client.state() == "active"
    time.sleep(0.5)
    i = take(1)[0]
    t = client.target_for(client.publish(i))
    assert t.state == IDLE and t.modality == "depth" and (t.image_width, t.image_height) == (W, H)
    res = client.init(target_box(i))
    assert res.success, res.message
    t = client.target_for(client.publish(take(1)[0]))
    assert t.frame_index == 1 and t.target_id == res.target_id and not t.aux_fallback
    d = client.wait_diagnostics(lambda d: d["tracker"][0] in (0, 1), what="tracker OK")
    assert d["tracker"][2]["model"] == "tiny"


def test_use_sim_time_follows_clock(node):
    """Under use_sim_time the node's clock (timers, diagnostics stamps, rates) is /clock's."""

    _, client = node
    clock_pub = client.node.create_publisher(Clock, "/clock", 10)
    assert client.set_params(use_sim_time=True)[0].successful
    try:
        start = client.diagnostics_count()
        end = time.monotonic() + 15
        found, k = None, 0
        while found is None and time.monotonic() < end:
            k += 1
            clock_pub.publish(Clock(clock=Time(sec=5000 + k // 10, nanosec=(k % 10) * 100_000_000)))
            time.sleep(0.1)
            with client._lock:
                found = next((d for d in client.diagnostics[start:] if 5000 <= d.header.stamp.sec < 5100), None)
        assert found is not None, "no /diagnostics stamped with the simulated time"
    finally:
        assert client.set_params(use_sim_time=False)[0].successful
