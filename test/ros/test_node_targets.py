"""Several targets in one node, end to end over real DDS: ``input.max_targets``, ``~/init_target``
adding and restarting targets, ``~/drop_target``, ``~/reset``, ``~/targets`` (all of a frame's
targets in one message) and each target's 3D point.

One node process (RGB-D, tiny with seeded random weights, camera_info) serves the module; tests
run in file order. Every target's boxes must equal a core ``Tracker`` run here on that target
alone from its own init frame: the batch and the per-target gating change nothing.
"""
from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
import torch

from utptrack_ros.models import create_model, default_tracker_config
from utptrack_ros.sensors import stamp_to_ns
from utptrack_ros.tracker import Tracker

# the harness first: it skips this module where ROS (rclpy, the interfaces) is missing
from ros_harness import Client, box_xywh, running_node, scene, stamp_of, target_box

pytestmark = pytest.mark.ros

TAG = "test_node_targets"
SEED = 0
FX = FY = 200.0
PARAMS = f"""
/**:
  ros__parameters:
    autostart: true
    model: {{name: tiny, weights: random, seed: {SEED}, device: cpu, num_threads: 1, backend: torch}}
    input: {{modality: depth, max_targets: 3}}
    sync: {{slop_s: 0.02, queue_size: 5, aux_timeout_s: 2.0}}
    output: {{diagnostics_period_s: 0.25, debug_image: false}}
"""
TRACKING = 1
STILL = (230.0, 160.0, 40.0, 40.0)  # a second target: a patch of the background that does not move
_FRAMES = itertools.count(1000)


def take(n: int) -> list[int]:
    return [next(_FRAMES) for _ in range(n)]


@pytest.fixture(scope="module")
def node(ros_tmp):
    with running_node(ros_tmp, TAG, PARAMS) as running:
        yield running


def send(client: Client, i: int) -> int:
    """Frame i with its CameraInfo (pinhole, principal point at the centre) sent first; waits for ~/targets."""
    client.publish_info(stamp_of(i), fx=FX, fy=FY)
    time.sleep(0.03)
    stamp = client.publish(i)
    client.batch_for(stamp)
    return stamp


def reference(first: int, box: tuple, frames: list[int]) -> list:
    """The core Tracker on one target alone, from frame ``first`` through ``frames``."""
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    tracker = Tracker(create_model("tiny"), default_tracker_config("tiny"), "cpu")
    rgb, depth = scene(first)
    tracker.init(rgb, box, aux=depth, modality="depth")
    return [tracker.track(*scene(i)) for i in frames]


def test_targets_join_track_in_one_message_and_each_runs_as_if_alone(node):
    _, client = node
    before = take(3)
    for i in before:
        send(client, i)
    a0, b0 = before[0], before[2]
    res = client.init(target_box(a0), stamp_ns=stamp_of(a0), target_id="square")
    assert res.success, res.message
    res = client.init(STILL, stamp_ns=stamp_of(b0))
    assert res.success and res.target_id == "1", res.message
    frames = take(6)
    batches = [client.batch_for(send(client, i)) for i in frames]
    square = reference(a0, target_box(a0), frames)
    still = reference(b0, STILL, frames)
    for k, (i, batch) in enumerate(zip(frames, batches)):
        assert [t.target_id for t in batch.targets] == ["square", "1"]
        assert stamp_to_ns(batch.header.stamp) == stamp_of(i) and batch.header.frame_id == "cam"
        a, b = batch.targets
        assert (a.frame_index, b.frame_index) == (k + 1, k + 1)  # both started on frames already tracked
        np.testing.assert_allclose(box_xywh(a), square[k].box.as_xywh(), atol=0.05, err_msg=f"frame {i}")
        np.testing.assert_allclose(box_xywh(b), still[k].box.as_xywh(), atol=0.05, err_msg=f"frame {i}")
        per_target = [client.target_for(stamp_of(i), target_id=t) for t in ("square", "1")]
        assert [box_xywh(t).tolist() for t in per_target] == [box_xywh(a).tolist(), box_xywh(b).tolist()]


def test_each_target_has_its_own_point_and_the_first_one_goes_on_target_point(node):
    _, client = node
    stamp = send(client, take(1)[0])
    batch = client.batch_for(stamp)
    for t in batch.targets:
        if t.state != TRACKING:
            continue
        assert t.has_position and t.position_status == "ok", (t.target_id, t.position_reason)
        u, v = t.center_x - 0.5, t.center_y - 0.5  # pixel centres: the principal point is (W/2 - 0.5, H/2 - 0.5)
        z = t.position.z
        assert z == pytest.approx(1.5, abs=0.05) or z == pytest.approx(3.0, abs=0.05)
        assert t.position.x == pytest.approx((u - (320 / 2 - 0.5)) / FX * z, abs=0.01)
        assert t.position.y == pytest.approx((v - (240 / 2 - 0.5)) / FY * z, abs=0.01)
    xs = [t.position.x for t in batch.targets if t.has_position]
    assert xs, "no target had a point"
    assert len(xs) == len(set(xs))  # every target its own point
    time.sleep(0.2)
    points = [p for p in client.points if stamp_to_ns(p.header.stamp) == stamp]
    assert len(points) == 1 and points[0].point.z == pytest.approx(batch.targets[0].position.z)


def test_the_limit_refuses_a_fourth_target_and_an_id_restarts_its_target(node):
    _, client = node
    i = take(1)[0]
    send(client, i)
    assert client.init((10.0, 10.0, 30.0, 30.0), target_id="corner").success
    res = client.init((100.0, 150.0, 30.0, 30.0), target_id="fourth")
    assert not res.success and "already tracking 3 targets (square, 1, corner" in res.message
    res = client.init(target_box(i), stamp_ns=stamp_of(i), target_id="square")  # restart by id
    assert res.success, res.message
    batch = client.batch_for(send(client, take(1)[0]))
    assert [t.target_id for t in batch.targets] == ["1", "corner", "square"]
    assert [t.frame_index for t in batch.targets] == [9, 1, 1]  # frames since each target's own init


def test_drop_one_target_then_reset_drops_all(node):
    _, client = node
    res = client.drop("corner")
    assert res.success and "tracking 1, square" in res.message, res.message
    res = client.drop("corner")
    assert not res.success and "no target has the id 'corner'" in res.message
    batch = client.batch_for(send(client, take(1)[0]))
    assert [t.target_id for t in batch.targets] == ["1", "square"]
    diag = client.wait_diagnostics(lambda d: d.get("tracker", (0, ""))[1] == "tracking 2 targets",
                                   what="/diagnostics: tracking 2 targets")
    assert diag["tracker"][2]["targets"].startswith("1: ")
    res = client.reset()
    assert res.success and "'1', 'square' dropped" in res.message
    stamp = send(client, take(1)[0])
    assert client.batch_for(stamp).targets == [] and client.target_for(stamp).state == 0
