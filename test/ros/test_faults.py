"""Faults over real DDS: the node never dies, never goes silent, starts and stops like a ROS 2
node. Each test drives the real entry point (subprocess) with bad input, bad requests or bad
parameters and checks that the node is alive, the answer says why, /diagnostics has the right
level and the target is kept.

One node process (RGB-D, tiny with seeded random weights, onnxruntime with an empty export cache,
so its start-up includes a graph export of tens of seconds) serves the tests in file order; the
last one stops it with SIGINT. A second, short-lived node starts without a model dependency.
"""
from __future__ import annotations

import itertools
import re
import signal
import sys
import time

import numpy as np
import pytest

from utptrack_ros.sensors import stamp_to_ns
from utptrack_ros.spatial import CameraIntrinsics

# the harness first: it skips this module where ROS (rclpy, the interfaces) is missing
from ros_harness import REPO, Client, H, NodeProcess, W, domain_id, ros_env, stamp_of, start_node, target_box
from rcl_interfaces.srv import GetParameters
from std_msgs.msg import String

pytestmark = pytest.mark.ros

TAG = "test_faults"
MAX_PIXELS = 100_000  # 320x240 = 76800 passes; 400x300 = 120000 is dropped
PARAMS = """
/**:
  ros__parameters:
    autostart: true
    model: {{name: tiny, weights: random, seed: 0, device: cpu, num_threads: 1, backend: onnxruntime, onnx_cache: '{cache}'}}
    input: {{modality: depth, qos_depth: 5, max_prompt_chars: 200, max_image_pixels: %d}}
    sync: {{slop_s: 0.02, queue_size: 5, aux_timeout_s: 1.0}}
    output: {{diagnostics_period_s: 0.25, stale_s: 1.0}}
""" % MAX_PIXELS

IDLE, TRACKING, LOST = 0, 1, 2
OK, WARN, ERROR, STALE = 0, 1, 2, 3
_FRAMES = itertools.count()


def take(n: int) -> list[int]:
    return [next(_FRAMES) for _ in range(n)]


def lockstep(client: Client, frames, **kw) -> list:
    return [client.target_for(client.publish(i, **kw)) for i in frames]


def timed(call, *args, **kw) -> tuple[float, object]:
    t0 = time.monotonic()
    out = call(*args, **kw)
    return time.monotonic() - t0, out


@pytest.fixture(scope="module")
def node(ros_tmp):
    params = ros_tmp / "params.yaml"
    params.write_text(PARAMS.format(cache=ros_tmp / "onnx-cache"))  # empty: the start-up exports
    env = ros_env(TAG)
    proc = start_node(params, env, ros_tmp / "node.log")
    client = Client(domain_id(TAG))
    try:
        yield proc, client
    finally:
        client.close()
        proc.stop()


@pytest.fixture(scope="module")
def get_params(node):
    _, client = node
    cli = client.node.create_client(GetParameters, f"{client.ns}/get_parameters")

    def get(*names: str) -> list:
        return [v for v in client.call(cli, GetParameters.Request(names=list(names))).values]
    return get


def test_services_answer_while_the_model_is_prepared(node, get_params):
    """Start-up (configure + activate: weights, onnxruntime export into an empty cache, warm-up,
    prompt encoder) runs off the executor: get_state, parameters, ~/init_target and ~/reset all
    answer meanwhile, /diagnostics says what is prepared and for how long. The 100 ms target is
    measured by bench/bench_node_lifecycle.py; here a generous bound that fails when requests wait
    for the preparation (tens of seconds)."""
    proc, client = node
    get_params("model.name")  # discovery of every service first: not the node's answer time
    for cli in (client.state_client, client.init_client, client.reset_client):
        assert cli.wait_for_service(timeout_sec=30), cli.srv_name
    worst = {"get_state": 0.0, "get_parameters": 0.0, "init_target": 0.0, "reset": 0.0}
    states, refusals = set(), []
    end = time.monotonic() + 240
    while time.monotonic() < end:
        assert proc.proc.poll() is None, proc.log()[-3000:]
        dt, state = timed(client.state)
        worst["get_state"] = max(worst["get_state"], dt)
        states.add(state)
        if state == "active":
            break
        dt, _ = timed(get_params, "model.name")
        worst["get_parameters"] = max(worst["get_parameters"], dt)
        dt, res = timed(client.init, target_box(0))
        worst["init_target"] = max(worst["init_target"], dt)
        refusals.append(res.message)
        dt, _ = timed(client.reset)
        worst["reset"] = max(worst["reset"], dt)
        time.sleep(0.2)
    assert state == "active", f"not active after 240 s; log:\n{proc.log()[-3000:]}"
    assert {"configuring", "activating"} & states, states  # the transition states were visible
    assert max(worst.values()) < 2.0, worst
    assert any("onnxruntime graphs" in m for m in refusals), refusals[-3:]
    assert all(m.startswith("refused: ") for m in refusals), refusals[-3:]
    prepared = [s for d in client.diagnostics for s in d.status if s.name.endswith("tracker")
                and any(kv.key == "preparing" and kv.value for kv in s.values)]
    # the long onnxruntime step of an empty cache is the export (a child process); loading the
    # sessions after it takes a fraction of the diagnostics period
    assert prepared and any("activating: exporting onnxruntime graphs in a child process" in s.message
                            for s in prepared), \
        [s.message for s in prepared][-3:]


def test_init_boxes_that_cannot_be_tracked_are_refused_and_the_target_kept(node):
    _, client = node
    frames = take(2)
    lockstep(client, frames)
    res = client.init(target_box(frames[-1]), target_id="car")
    assert res.success, res.message
    for box, why in (((100.0, 100.0, 0.001, 0.001), "degenerate"),
                     ((-W, -H, 3.0 * W, 3.0 * H), f"far larger than the {W}x{H} image"),
                     ((-5e5, -5e5, 1e6, 1e6), f"far larger than the {W}x{H} image")):
        res = client.init(box)
        assert not res.success and why in res.message, res.message
        assert res.target_id == "car"
    outs = lockstep(client, take(2))
    assert all(t.target_id == "car" and t.state in (TRACKING, LOST) for t in outs)


def _set_first_accepted(client: Client, name: str, values: tuple) -> object:
    """Set ``name`` to the first of ``values`` the node accepts (validation may bound it);
    returns it, or None when all are refused (each refusal names the parameter)."""
    for value in values:
        res = client.set_params(**{name: value})[0]
        if res.successful:
            return value
        assert name.replace("__", ".") in res.reason or "factor" in res.reason, res.reason
    return None


def test_a_context_factor_too_large_is_refused_at_init_and_the_target_kept(node, get_params):
    proc, client = node
    before = get_params("tracker.template_factor")[0].double_value
    value = _set_first_accepted(client, "tracker__template_factor", (1e5, 1e3, 200.0))
    try:
        if value is not None:
            res = client.init(target_box(0))
            assert not res.success and "context factor" in res.message and "too large" in res.message, res.message
            assert res.target_id == "car"
    finally:
        assert client.set_params(tracker__template_factor=before)[0].successful
    assert proc.proc.poll() is None
    assert all(t.target_id == "car" for t in lockstep(client, take(2)))


def test_frames_that_all_fail_raise_diagnostics_to_error_and_recover(node, get_params):
    """A search_factor far too large for the box: every frame fails (its crop would need
    gigabytes). /diagnostics goes to ERROR with the reason; fixing it recovers, the target kept."""
    _, client = node
    before = get_params("tracker.search_factor")[0].double_value
    frames = take(1)
    lockstep(client, frames)
    assert client.init((-W / 2 + 1, -H / 2 + 1, 2.0 * W - 2, 2.0 * H - 2), target_id="big").success
    value = _set_first_accepted(client, "tracker__search_factor", (1e6, 1e3, 100.0, 50.0, 20.0))
    if value is None:
        assert client.set_params(tracker__search_factor=before)[0].successful
        assert client.init(target_box(take(1)[0] - 1), target_id="car").success  # the suite's target for later tests
        pytest.skip("search_factor is bounded below what makes every crop too large")
    try:
        mark = client.diagnostics_count()
        for i in take(5):
            client.publish(i)
            time.sleep(0.1)
        err = client.diagnostics_since(mark, lambda name, lvl, msg, v: name.endswith("tracker") and lvl == ERROR,
                                       what="tracker ERROR")
        assert "frames in a row failed" in err.message and "context factor" in err.message, err.message
    finally:
        assert client.set_params(tracker__search_factor=before)[0].successful
    outs = lockstep(client, take(2))
    assert outs[-1].target_id == "big"
    client.wait_diagnostics(lambda d: d["tracker"][0] in (OK, WARN) and "failed" not in d["tracker"][1],
                            what="tracker status recovered")
    assert client.init(target_box(take(1)[0] - 1), target_id="car").success


def test_oversized_frames_are_dropped_with_a_reason_and_not_buffered(node):
    _, client = node
    i = take(1)[0]
    mark = client.diagnostics_count()
    big_rgb = np.zeros((300, 400, 3), np.uint8)
    stamp = client.publish(i, rgb=big_rgb, depth=np.zeros((300, 400), np.uint16))
    line = client.log_containing("max_image_pixels")
    assert f"400x300 image has 120000 pixels, more than input.max_image_pixels={MAX_PIXELS}" in line.msg
    res = client.init((10.0, 10.0, 50.0, 50.0), stamp_ns=stamp)
    assert not res.success and "no buffered frame with stamp" in res.message
    warn = client.diagnostics_since(mark, lambda name, lvl, msg, v: name.endswith("input") and "max_image_pixels" in msg,
                                    what="input WARN")
    assert warn.level == bytes([WARN])
    assert lockstep(client, take(1))[0].target_id == "car"


def test_target_ids_that_would_forge_log_lines_are_refused(node):
    _, client = node
    res = client.init(target_box(0), target_id="x\n[ERROR] forged line")
    assert not res.success and "control characters" in res.message
    res = client.init(target_box(0), target_id="x" * 65)
    assert not res.success and "at most 64" in res.message
    time.sleep(0.3)
    assert not any(m.msg.startswith("[ERROR] forged") or "\n[ERROR] forged" in m.msg for m in client.logs)
    assert lockstep(client, take(1))[0].target_id == "car"


def test_init_with_an_unusable_aux_frame_starts_rgb_only(node):
    _, client = node
    i = take(1)[0]
    stamp = client.publish(i, depth=np.full((H // 2, W // 2), 2000, np.uint16))
    client.target_for(stamp)
    res = client.init(target_box(i), stamp_ns=stamp, target_id="rgbonly")
    assert res.success, res.message
    assert "depth frame unusable" in res.message and "initialised RGB-only" in res.message
    outs = lockstep(client, take(2))
    assert all(t.target_id == "rgbonly" and not t.aux_fallback for t in outs)  # the next frames pair as usual


def test_all_inf_depth_is_invalid(node):
    _, client = node
    t = client.target_for(client.publish(take(1)[0], depth=np.full((H, W), np.inf, np.float32)))
    assert t.target_id == "rgbonly"
    d = client.wait_diagnostics(lambda d: "depth 0.0% valid" in d["input"][1], what="invalid-depth WARN")
    assert d["input"][0] == WARN and d["input"][2]["depth valid fraction"] == "0.000"


def test_late_frames_warn_with_the_fix(node):
    """Frames stamped 3 s before they arrive (the node and this process share the clock): the
    input status warns with the age and the transport fix."""
    _, client = node
    for i in take(6):
        client.target_for(client.publish(i, stamp_ns=time.time_ns() - 3_000_000_000))
    d = client.wait_diagnostics(lambda d: "after their stamps" in d["input"][1], what="late-input WARN")
    assert d["input"][0] == WARN and "frames arrive 3.0" in d["input"][1]
    assert "fastdds_large_shm.xml" in d["input"][1] and "camera driver AND the node" in d["input"][1]
    assert 2.9 < float(d["input"][2]["input age p50 s"]) < 3.5
    assert "boxes are that old" in client.log_containing("after their stamps").msg


def test_stamps_going_back_keep_the_target_tracked(node):
    """The camera driver restarts with a new clock (stamps back from now to t = 1000 s):
    tracking goes on with the same target; the jump is logged and on /diagnostics."""
    _, client = node
    outs = lockstep(client, take(3))  # stamp_of(): ~55 years before the previous frames
    assert all(t.target_id == "rgbonly" and t.state in (TRACKING, LOST) for t in outs)
    assert outs[-1].frame_index > outs[0].frame_index
    assert "jumped back" in client.log_containing("jumped back").msg
    d = client.wait_diagnostics(lambda d: int(d["input"][2]["time_jumps"]) >= 1, what="time jump counted")
    assert "init buffer and init stamp reset" in d["input"][2]["last time jump"]
    assert d["input"][2]["input age p50 s"] == ""  # stamps no longer on the node clock: not measured
    assert client.init(target_box(take(1)[0] - 1), target_id="car").success  # the new time line is buffered


def test_aux_stamps_beyond_the_slop_fall_back_to_rgb_only_and_recover(node):
    """Two drivers on different clocks: depth stamped 45 ms after RGB (slop 20 ms). After
    sync.aux_timeout_s the node tracks RGB-only and reports the offset; aligned stamps recover."""
    _, client = node
    assert client.set_params(sync__aux_timeout_s=0.5)[0].successful
    try:
        stamps = []
        reserved = take(45)  # 14 frames 100 ms apart span 42 frame slots of 33 ms
        for k, i in enumerate(reserved[:14]):  # 10 Hz: nothing pairs, then RGB-only once the mismatch lasted 0.5 s
            stamp = stamp_of(reserved[0]) + k * 100_000_000
            stamps.append(client.publish(i, stamp_ns=stamp, aux_stamp_ns=stamp + 45_000_000))
            time.sleep(0.1)
        last = client.target_for(stamps[-1])
        assert last.aux_fallback and last.target_id == "car"
        d = client.wait_diagnostics(lambda d: "beyond sync.slop_s" in d["input"][1], what="offset WARN")
        assert d["input"][0] == WARN and "depth stamps are +0.045 s from the RGB stamps" in d["input"][1]
        assert d["input"][2]["aux offset s"] == "0.045"
        outs = lockstep(client, take(3))
        assert not outs[-1].aux_fallback and outs[-1].target_id == "car"
    finally:
        assert client.set_params(sync__aux_timeout_s=1.0)[0].successful


def test_first_prompt_does_not_stall_tracking(node):
    """The prompt encoder was loaded at activation: a first prompt (and an init with a new prompt)
    is encoded in milliseconds, outside the tracker lock; frames keep their pace."""

    _, client = node
    lockstep(client, take(2))
    client.pub_prompt.publish(String(data="red checkered square"))
    t0 = time.monotonic()
    out = lockstep(client, take(1))[0]
    assert time.monotonic() - t0 < 2.5 and out.target_id == "car"
    client.log_containing("prompt set to 'red checkered square'")
    i = take(1)[0]
    client.target_for(client.publish(i))
    dt, res = timed(client.init, target_box(i), prompt="a white and red box", target_id="prompted")
    assert res.success and "prompt 'a white and red box'" in res.message and dt < 2.5
    outs = lockstep(client, take(2))
    assert all(t.target_id == "prompted" for t in outs)


def test_diagnostics_period_applies_live(node):
    _, client = node

    def period(n: int = 6) -> float:
        start = client.diagnostics_count()
        client.wait_for(lambda: len([d for d in client.diagnostics[start:] if d.status[0].name.startswith(client.ns)]) >= n,
                        timeout=30, what=f"{n} diagnostics")
        own = [d for d in client.diagnostics[start:] if d.status[0].name.startswith(client.ns)]
        stamps = [d.header.stamp.sec + d.header.stamp.nanosec * 1e-9 for d in own[:n]]
        return float(np.median(np.diff(stamps)))

    assert client.set_params(output__diagnostics_period_s=1.0)[0].successful
    assert 0.8 < period(3) < 1.3
    assert client.set_params(output__diagnostics_period_s=0.25)[0].successful
    assert 0.15 < period() < 0.4


def test_last_arrival_is_reported_after_a_long_gap(node):
    """A gap longer than the 5 s rate window: STALE "no RGB image for N s", not "since activation"."""
    _, client = node
    lockstep(client, take(1))
    time.sleep(6.0)
    d = client.next_diagnostics()
    gap = re.search(r"no RGB image for ([0-9.]+) s", d["input"][1])
    assert d["input"][0] == STALE and gap and float(gap.group(1)) >= 5.5, d["input"]
    assert lockstep(client, take(1))[0].target_id == "prompted"


def _with_info(client: Client, i: int, **info) -> int:
    """Frame i with a CameraInfo of the same stamp sent first (the camera driver's order)."""
    client.publish_info(stamp_of(i), **info)
    time.sleep(0.05)
    return client.publish(i)


def test_camera_info_gives_the_target_point_in_the_image_frame(node):
    """Pinhole 200 px, principal point at the image centre: the scene's target (depth 1500 mm) has
    its point at z 1.5 m, x/y from the box centre, with the image's stamp and frame_id."""
    _, client = node
    end = time.monotonic() + 180  # when run alone: the node is still exporting its graphs
    while client.state() != "active" and time.monotonic() < end:
        time.sleep(0.5)
    frames = take(3)
    for i in frames[:2]:
        client.target_for(_with_info(client, i))
    res = client.init(target_box(frames[1]), stamp_ns=stamp_of(frames[1]), target_id="xyz")
    assert res.success, res.message
    stamp = _with_info(client, frames[2])
    t, p = client.target_for(stamp, target_id="xyz"), client.point_for(stamp)
    assert p.header.frame_id == "cam" and p.point.z == pytest.approx(1.5, abs=0.02)
    u, v = t.center_x - 0.5, t.center_y - 0.5
    assert p.point.x == pytest.approx((u - (W / 2 - 0.5)) / 200.0 * p.point.z, abs=0.01)
    assert p.point.y == pytest.approx((v - (H / 2 - 0.5)) / 200.0 * p.point.z, abs=0.01)
    # the same point in the target message, with the depth estimate's quality
    assert t.has_position and t.position_status == "ok" and t.position_reason == ""
    assert (t.position.x, t.position.y, t.position.z) == (p.point.x, p.point.y, p.point.z)
    assert t.depth_valid_fraction > 0.9 and 0.0 <= t.depth_spread_m < 0.05


def test_a_distorted_camera_gives_the_undistorted_point(node):
    """plumb_bob with strong radial distortion: the node's point is the box centre undistorted
    with K and D (the spatial core's back-projection), not the pinhole one."""
    _, client = node
    d = (-0.3, 0.1, 0.001, -0.002, 0.0)
    i = take(1)[0]
    stamp = _with_info(client, i, d=d)
    t, p = client.target_for(stamp, target_id="xyz"), client.point_for(stamp)
    assert t.has_position, t.position_reason
    cam = CameraIntrinsics.from_fields(width=W, height=H, k=[200.0, 0, W / 2 - 0.5, 0, 200.0, H / 2 - 0.5, 0, 0, 1],
                                       d=list(d), distortion_model="plumb_bob")
    pixel = np.array([[t.center_x - 0.5, t.center_y - 0.5]])
    expected = cam.back_project(pixel, np.array([p.point.z]))[0]
    pinhole = ((pixel[0, 0] - (W / 2 - 0.5)) / 200.0 * p.point.z, (pixel[0, 1] - (H / 2 - 0.5)) / 200.0 * p.point.z)
    assert (p.point.x, p.point.y) == pytest.approx((expected[0], expected[1]), abs=1e-4)
    assert np.hypot(p.point.x - pinhole[0], p.point.y - pinhole[1]) > 0.01  # the distortion matters here


@pytest.mark.parametrize("info, why", [
    (dict(fx=0.0), "camera_info refused"), (dict(fy=float("nan")), "camera_info refused"),
    (dict(width=2 * W, height=2 * H), "does not belong to this image")])
def test_bad_camera_info_warns_no_point_and_the_2d_output_goes_on(node, info, why):
    _, client = node
    for i in take(3):
        stamp = _with_info(client, i, **info)
        t = client.target_for(stamp)
        assert t.target_id == "xyz"
        assert not t.has_position and why in t.position_reason
        assert t.position_status == ("size_mismatch" if "width" in info else "camera_info_refused")
    time.sleep(0.2)
    assert not [p for p in client.points if stamp_to_ns(p.header.stamp) == stamp]
    client.wait_for(lambda: any(why in m.msg and "no 3D position" in m.msg for m in client.logs), what=f"WARN {why!r}")
    client.wait_diagnostics(lambda d: why in str(d), what=f"diagnostics with {why!r}")


def test_camera_info_stopping_or_depth_of_another_encoding_no_point_2d_goes_on(node):
    _, client = node
    i = take(1)[0]
    client.publish_info(stamp_of(i) - 3_000_000_000)  # the last camera_info came 3 s before this frame
    time.sleep(0.05)
    stamp = client.publish(i)
    t = client.target_for(stamp)
    assert t.target_id == "xyz" and not t.has_position and t.position_status == "camera_info_stopped"
    assert "no 3D position" in client.log_containing("camera_info stopped").msg
    i = take(1)[0]
    client.publish_info(stamp_of(i))
    stamp = client.publish(i, depth=np.zeros((H, W, 3), np.uint8), depth_encoding="rgb8")
    client.wait_for(lambda: any("unsupported depth encoding 'rgb8'" in m.msg for m in client.logs), what="depth encoding WARN")
    assert client.target_for(_with_info(client, take(1)[0])).target_id == "xyz"  # tracking goes on
    time.sleep(0.2)
    assert not [p for p in client.points if stamp_to_ns(p.header.stamp) == stamp]


def test_sigint_ends_the_node_within_2_s_cleanly(node):
    """Under ros2 launch a node has 5 s after SIGINT; the worker stops before the context goes, so
    nothing is published into an invalid context, and exit takes well under 2 s."""
    proc, client = node
    lockstep(client, take(2))
    for i in take(5):  # frames in flight while the signal arrives
        client.publish(i)
    t0 = time.monotonic()
    proc.proc.send_signal(signal.SIGINT)
    rc = proc.proc.wait(timeout=10)
    elapsed = time.monotonic() - t0
    log = proc.log()
    assert rc == 0, log[-3000:]
    assert elapsed < 2.0, f"exit took {elapsed:.2f} s"
    assert "shutting down" in log and "Failed to publish" not in log and "context is invalid" not in log
    after = log[log.rfind("shutting down"):]
    assert "Traceback" not in after and not any(line.startswith("[ERROR]") for line in after.splitlines()), after


def test_a_configure_failure_is_logged_and_published_as_error(ros_tmp):
    """The model stack cannot be imported (timm missing): configure fails with the reason in the
    log and on /diagnostics (ERROR); the node keeps answering and exits cleanly."""
    tag = "test_faults_missing_dep"
    params = ros_tmp / "missing.yaml"
    params.write_text("/**:\n  ros__parameters:\n    autostart: true\n"
                      "    model: {name: tiny, weights: random, device: cpu}\n    output: {diagnostics_period_s: 0.25}\n")
    code = "import sys; sys.modules['timm'] = None\nfrom utptrack_ros.ros.main import main\nmain()"
    proc = NodeProcess(["--ros-args", "--params-file", str(params)], ros_env(tag), ros_tmp / "missing.log",
                       program=[sys.executable, "-c", code], cwd=REPO)
    client = Client(domain_id(tag))
    try:
        line = client.log_containing("configure failed", timeout=120)
        assert "timm" in line.msg, line.msg
        d = client.wait_diagnostics(lambda d: d["tracker"][0] == ERROR, what="ERROR status")
        assert "configure failed" in d["tracker"][1] and "timm" in d["tracker"][1]
        assert client.state() == "unconfigured"
        res = client.init(target_box(0))
        assert not res.success and "timm" in res.message
    finally:
        client.close()
        rc = proc.stop()
    assert rc == 0, proc.log()[-3000:]
