"""The entry point's options (utptrack_ros/ros/main.py) and the node under each executor: frames
in, ~/target out, services (ours, lifecycle, parameters) answered, clean exit on SIGINT."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from utptrack_ros.models import create_model, default_tracker_config
from utptrack_ros.tracker import Tracker

pytest.importorskip("rclpy")
from lifecycle_msgs.msg import Transition  # noqa: E402
from ros_harness import Client, H, W, box_xywh, domain_id, ros_env, scene, stamp_of, start_node, target_box  # noqa: E402

from utptrack_ros.ros.main import EXECUTORS, parse_args  # noqa: E402

pytestmark = pytest.mark.ros


def test_executor_option_outside_ros_args(monkeypatch):
    monkeypatch.delenv("UTPTRACK_EXECUTOR", raising=False)
    assert parse_args(["utptrack_node"]).executor == "events"
    assert parse_args(["utptrack_node", "--executor", "multi", "--ros-args", "-r", "image:=/cam"]).executor == "multi"
    # ROS arguments (even ones that look like ours) are not ours; `--` ends the ROS block
    assert parse_args(["n", "--ros-args", "-p", "--executor:=x", "--", "--executor", "single"]).executor == "single"
    assert parse_args(["n", "--ros-args", "--params-file", "/nonexistent.yaml"]).executor == "events"
    monkeypatch.setenv("UTPTRACK_EXECUTOR", "multi")
    assert parse_args(["n"]).executor == "multi"
    assert set(EXECUTORS) == {"single", "multi", "events"}
    with pytest.raises(SystemExit):
        parse_args(["n", "--executor", "threads"])


def test_events_falls_back_to_single_without_rclpy_events_executor():
    code = ("import sys; sys.modules['rclpy.experimental'] = None\n"
            "from utptrack_ros.ros.main import make_executor\n"
            "import rclpy; rclpy.init(); ex, kind = make_executor('events'); print(type(ex).__name__, kind)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["SingleThreadedExecutor", "single"]


PARAMS = """
/**:
  ros__parameters:
    autostart: true
    model: {name: tiny, weights: random, seed: 0, device: cpu, num_threads: 1, backend: torch}
    output: {diagnostics_period_s: 0.25}
"""


@pytest.mark.parametrize("executor, raw", [("single", "1"), ("multi", "1"), ("events", "1"), ("events", "0")])
def test_node_serves_everything_under_each_executor(executor, raw, ros_tmp):
    """raw "0": UTPTRACK_RAW_INPUT=0, rclpy's deserialised messages instead of CDR bytes."""

    tag = f"test_main_{executor}_{raw}"
    params = ros_tmp / f"{executor}.yaml"
    params.write_text(PARAMS)
    env = ros_env(tag)
    env.pop("UTPTRACK_EXECUTOR", None)
    env["UTPTRACK_RAW_INPUT"] = raw
    proc = start_node(params, env, ros_tmp / f"{executor}_{raw}.log", pre=("--executor", executor))
    client = Client(domain_id(tag))
    try:
        try:
            client.log_containing("active on cpu", timeout=90)
        except AssertionError:
            raise AssertionError(f"node did not come up; its log:\n{proc.log()[-3000:]}")
        assert f"executor: {executor}" in client.log_containing("executor:").msg
        t = client.target_for(client.publish(0, aux=False, frame_id="cam_a"))
        assert t.state == 0 and t.header.frame_id == "cam_a" and (t.image_width, t.image_height) == (W, H)
        assert client.init((60.0, 50.0, 40.0, 40.0)).success
        assert client.target_for(client.publish(1, aux=False)).frame_index == 1
        assert client.set_params(tracker__lost_threshold=0.5)[0].successful
        assert client.reset().success
        client.wait_diagnostics(lambda d: int(d["input"][2]["processed"]) >= 2, what="diagnostics timer")
        assert client.state() == "active"
        assert client.transition(Transition.TRANSITION_DEACTIVATE) and client.state() == "inactive"
    finally:
        client.close()
        rc = proc.stop()
    assert rc == 0, f"node exited with {rc}; log:\n{proc.log()[-3000:]}"


def test_node_tracks_on_the_onnxruntime_backend(ros_tmp):
    """model.backend auto on the CPU = onnxruntime: activate exports the graphs into model.onnx_cache, the node
    tracks with them (outputs equal the framework-free onnxruntime Tracker on the same frames),
    /diagnostics says so, and a live keep-ratio change without graphs runs on torch with a WARN."""

    tag = "test_main_onnxruntime"
    cache = ros_tmp / "onnx-cache"
    params = ros_tmp / "onnxruntime.yaml"
    params.write_text(PARAMS.replace("backend: torch}", f"backend: auto, onnx_cache: '{cache}'}}"))
    proc = start_node(params, ros_env(tag), ros_tmp / "onnxruntime.log")
    client = Client(domain_id(tag))
    try:
        try:
            assert "backend=onnxruntime (auto)" in client.log_containing("configured:", timeout=180).msg
            assert "onnxruntime" in client.log_containing("active on cpu", timeout=180).msg
        except AssertionError:
            raise AssertionError(f"node did not come up; its log:\n{proc.log()[-3000:]}")
        assert list(cache.glob("onnx/tiny-*/search.onnx"))
        client.target_for(client.publish(0, aux=False))
        assert client.init(target_box(0)).success
        outs = [client.target_for(client.publish(i, aux=False)) for i in range(1, 5)]
        d = client.wait_diagnostics(lambda d: int(d["input"][2]["processed"]) >= 4, what="diagnostics")
        assert d["tracker"][2]["backend"] == "onnxruntime", d

        torch.manual_seed(0)
        ref = Tracker(create_model("tiny"), default_tracker_config("tiny"), backend="onnxruntime", onnx_cache=cache)
        ref.init(scene(0)[0], target_box(0))
        for i, t in enumerate(outs, start=1):
            np.testing.assert_allclose(box_xywh(t), ref.track(scene(i)[0]).box.as_xywh(), atol=0.05)
            assert (t.header.stamp.sec, t.header.stamp.nanosec) == divmod(stamp_of(i), 1_000_000_000)

        assert client.set_params(prune__keep_ratio_ce=0.5)[0].successful
        assert "runs on torch until the next activate" in client.log_containing("graphs for these keep ratios").msg
        client.target_for(client.publish(5, aux=False))
        client.wait_diagnostics(lambda d: d["tracker"][2]["backend"] == "torch", what="torch fallback in diagnostics")
    finally:
        client.close()
        rc = proc.stop()
    assert rc == 0, f"node exited with {rc}; log:\n{proc.log()[-3000:]}"
