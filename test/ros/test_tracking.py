"""tracking.py: the node's tracker + target session behind one lock, with a real MultiTracker
(tiny, seeded random weights) and no rclpy."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from utptrack_ros.errors import InputError
from utptrack_ros.models import create_model
from utptrack_ros.ros.tracking import Tracking
from utptrack_ros.tracker import MultiTracker, Tracker
from utptrack_ros.types import Modality

H, W = 120, 160


@pytest.fixture(scope="module")
def tracker():
    torch.manual_seed(0)
    return MultiTracker(create_model("tiny"))


@pytest.fixture
def frames():
    rng = np.random.default_rng(1)
    return rng.integers(0, 255, size=(H, W, 3), dtype=np.uint8), rng.integers(500, 3000, size=(H, W)).astype(np.uint16)


def test_frames_before_the_init_frame_are_skipped_until_stamps_restart(tracker, frames):
    rgb, depth = frames
    t = Tracking()
    assert t.track(1, rgb, depth) is None  # inactive
    t.start(tracker, Modality.DEPTH)
    idle = t.track(1, rgb, depth)
    assert idle.result is None and idle.target_id == "" and not idle.aux_fallback
    out, notes = t.init(100, rgb, [40, 30, 20, 24], depth, "car", "")
    assert out.target_id == "car" and not out.aux_fallback and notes == []
    assert t.track(100, rgb, depth) is None and t.track(99, rgb, depth) is None
    assert t.track(101, rgb, depth).result.frame_index == 1
    t.stamps_restarted()
    assert t.track(5, rgb, depth).target_id == "car"
    assert t.drop() == ["car"] and t.track(6, rgb, depth).result is None
    assert t.stop() is tracker and t.track(7, rgb, depth) is None


def test_unusable_aux_frames_fall_back_to_rgb_only_with_a_note(tracker, frames):
    rgb, depth = frames
    t = Tracking()
    t.start(tracker, Modality.DEPTH)
    small = depth[: H // 2, : W // 2]
    out, notes = t.init(1, rgb, [40, 30, 20, 24], small, "", "")
    assert out.aux_fallback and "depth frame unusable" in notes[0] and "initialised RGB-only" in notes[0]
    assert out.target_id == "1"
    got = t.track(2, rgb, small)
    assert got.aux_fallback and "this frame tracked RGB-only" in got.note and got.target_id == "1"
    out, notes = t.init(3, rgb, [40, 30, 20, 24], None, "", "")
    assert out.aux_fallback and "no depth frame within slop" in notes[0] and out.target_id == "2"


def test_a_refused_init_keeps_the_target_and_prompts_are_encoded_ahead(tracker, frames):
    rgb, depth = frames
    t = Tracking()
    t.start(tracker, Modality.DEPTH)
    t.init(1, rgb, [40, 30, 20, 24], depth, "car", "")
    for box, why in (([10, 10, 0.001, 0.001], "degenerate"), ([-W, -H, 3 * W, 3 * H], "far larger")):
        with pytest.raises(InputError, match=why):
            t.init(2, rgb, box, depth, "other", "")
    with pytest.raises(InputError, match="control characters"):
        t.init(2, rgb, [40, 30, 20, 24], depth, "a\nb", "")
    assert t.session.target_id == "car" and t.track(3, rgb, depth).target_id == "car"
    t.set_prompt("red cup")
    assert t.session.prompt == "red cup" and t._features is not None
    expected = tracker.encode_prompt("red cup")
    assert torch.equal(tracker._targets.text[0], expected)
    out, notes = t.init(4, rgb, [40, 30, 20, 24], depth, "", "")
    assert notes == ["prompt 'red cup'"] and int(tracker._targets.task[0]) != 0


def test_several_targets_one_forward_each_gated_by_its_own_init_frame(tracker, frames):
    rgb, depth = frames
    t = Tracking()
    t.start(tracker, Modality.DEPTH, max_targets=2)
    t.init(10, rgb, [40, 30, 20, 24], depth, "cup", "")
    assert [i for i, _ in t.track(11, rgb, depth).results] == ["cup"]
    t.init(20, rgb, [100, 60, 30, 16], depth, "", "")  # joins: the node numbers it
    assert t.session.ids == ["cup", "1"] and tracker.num_targets == 2
    late = t.track(15, rgb, depth)  # queued before "1" started: only "cup" tracks it
    assert [i for i, _ in late.results] == ["cup"] and late.results[0][1].frame_index == 2
    both = t.track(21, rgb, depth)
    assert [(i, r.frame_index) for i, r in both.results] == [("cup", 3), ("1", 1)]
    alone = Tracker(tracker.model, optimize=False)  # the batch changes nothing for a target
    alone.init(rgb, [100, 60, 30, 16], depth, "depth")
    assert np.allclose(alone.track(rgb, depth).box.as_xywh(), both.results[1][1].box.as_xywh(), atol=1e-3)
    with pytest.raises(InputError, match="already tracking 2 targets"):
        t.init(22, rgb, [10, 10, 20, 20], depth, "third", "")
    assert t.session.ids == ["cup", "1"] and tracker.num_targets == 2
    out, _ = t.init(23, rgb, [10, 10, 20, 20], depth, "cup", "")  # its own id restarts "cup"
    assert out.target_id == "cup" and t.session.ids == ["1", "cup"] and tracker.num_targets == 2
    assert [(i, r.frame_index) for i, r in t.track(24, rgb, depth).results] == [("1", 2), ("cup", 1)]
    assert t.drop("nobody") == [] and t.drop("1") == ["1"] and tracker.num_targets == 1
    assert [i for i, _ in t.track(25, rgb, depth).results] == ["cup"]


def test_with_one_target_allowed_a_new_target_replaces_the_old(tracker, frames):
    rgb, depth = frames
    t = Tracking()
    t.start(tracker, Modality.DEPTH)
    t.init(1, rgb, [40, 30, 20, 24], depth, "cup", "")
    out, _ = t.init(2, rgb, [100, 60, 30, 16], depth, "ball", "")
    assert out.target_id == "ball" and t.session.ids == ["ball"] and tracker.num_targets == 1
