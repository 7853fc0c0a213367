"""The entry point's options and allocator setting (utptrack_ros/ros/main.py)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("rclpy")
from utptrack_ros.ros.main import EXECUTORS, parse_args  # noqa: E402

pytestmark = pytest.mark.ros


def test_executor_option_outside_ros_args():
    assert parse_args(["utptrack_node"]).executor == "single"
    assert parse_args(["utptrack_node", "--executor", "multi", "--ros-args", "-r", "image:=/cam"]).executor == "multi"
    # ROS arguments (even ones that look like ours) are not ours; `--` ends the ROS block
    assert parse_args(["n", "--ros-args", "-p", "--executor:=x", "--", "--executor", "events"]).executor == "events"
    assert parse_args(["n", "--ros-args", "--params-file", "/nonexistent.yaml"]).executor == "single"
    assert set(EXECUTORS) == {"single", "multi", "events"}
    with pytest.raises(SystemExit):
        parse_args(["n", "--executor", "threads"])


_FAULTS = """
import resource
from utptrack_ros.ros.main import tune_allocator
print(tune_allocator())
def frame():
    a = b"\\x01" * (1 << 20)  # e.g. a received message and its converted copy, alive together
    b = b"\\x02" * (1 << 20)
    del a, b
frame()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    frame()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 50)
"""


def _run(env_extra: dict) -> tuple[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "UTPTRACK_MALLOC_TUNE"}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    applied, per_iter = out.stdout.split()
    return applied, float(per_iter)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tuned_allocator_reuses_pages_for_frame_sized_buffers():
    applied, faults = _run({})
    assert applied == "True"
    assert faults < 20, f"{faults} page faults per frame with the tuned allocator"  # 512 pages if mapped afresh
    applied, faults = _run({"UTPTRACK_MALLOC_TUNE": "0"})
    assert applied == "False"
    print(f"glibc defaults: {faults:.0f} page faults per frame")  # 480 here (glibc 2.36): trimmed and re-mapped
    applied, _ = _run({"MALLOC_ARENA_MAX": "2"})  # the user's own malloc settings win
    assert applied == "False"
