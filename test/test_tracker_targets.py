"""MultiTracker with a changing set of targets: add to a running batch, remove, track a subset.

Each target must behave as if it were tracked alone from its own init frame: the batch is an
implementation detail (method.md 6; the node's several targets rely on it).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from utptrack_ros.config import TrackerConfig
from utptrack_ros.errors import InputError, NotInitializedError
from utptrack_ros.models import create_model
from utptrack_ros.tracker import MultiTracker, Tracker

H, W = 120, 160
CONFIG = TrackerConfig(update_interval=2, update_threshold=0.0)  # template updates happen within the test


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("tiny").eval()


@pytest.fixture(scope="module")
def video():
    """Six frames of a textured scene drifting right by 3 px per frame, with a depth stream."""
    rng = np.random.default_rng(4)
    base = rng.integers(0, 255, size=(H, W + 40, 3), dtype=np.uint8)
    depth = rng.integers(500, 3000, size=(H, W + 40)).astype(np.uint16)
    return [(np.ascontiguousarray(base[:, 3 * k:3 * k + W]), np.ascontiguousarray(depth[:, 3 * k:3 * k + W]))
            for k in range(6)]


def _same(a, b):
    assert np.allclose(a.box.as_xywh(), b.box.as_xywh(), atol=1e-3), (a.box, b.box)
    assert abs(a.confidence - b.confidence) < 1e-5
    assert a.frame_index == b.frame_index and a.state is b.state and a.template_updated == b.template_updated


def test_an_added_target_runs_as_if_alone_and_the_first_is_undisturbed(tiny, video):
    multi = MultiTracker(tiny, config=CONFIG)
    first, second = Tracker(tiny, config=CONFIG), Tracker(tiny, config=CONFIG)
    img, depth = video[0]
    multi.init(img, [[40, 30, 20, 24]], aux=depth, modality="depth")
    first.init(img, [40, 30, 20, 24], aux=depth, modality="depth")
    for img, depth in video[1:3]:
        _same(multi.track(img, depth)[0], first.track(img, depth))
    img, depth = video[2]  # the new target starts on a frame the first target has already seen
    added = multi.add(img, [[100, 60, 30, 16]], aux=depth)
    alone = second.init(img, [100, 60, 30, 16], aux=depth, modality="depth")
    assert multi.num_targets == 2 and added[0].box == alone.box and added[0].frame_index == 0
    for img, depth in video[3:]:
        together = multi.track(img, depth)
        _same(together[0], first.track(img, depth))
        _same(together[1], second.track(img, depth))
    assert multi.frame_index == 5  # frames since the oldest target's init


def test_tracking_a_subset_leaves_the_others_as_they_were(tiny, video):
    multi = MultiTracker(tiny, config=CONFIG)
    alone = Tracker(tiny, config=CONFIG)
    img, _ = video[0]
    multi.init(img, [[40, 30, 20, 24], [100, 60, 30, 16]])
    alone.init(img, [100, 60, 30, 16])
    (only,) = multi.track(video[1][0], targets=[1])  # target 0 skips this frame
    _same(only, alone.track(video[1][0]))
    both = multi.track(video[2][0])
    assert both[0].frame_index == 1 and both[1].frame_index == 2
    _same(both[1], alone.track(video[2][0]))
    with pytest.raises(InputError):
        multi.track(img, targets=[2])
    with pytest.raises(InputError):
        multi.track(img, targets=[0, 0])


def test_remove_keeps_the_other_targets_running(tiny, video):
    multi = MultiTracker(tiny, config=CONFIG)
    alone = Tracker(tiny, config=CONFIG)
    img, _ = video[0]
    multi.init(img, [[10, 10, 20, 20], [100, 60, 30, 16], [60, 70, 16, 16]])
    alone.init(img, [100, 60, 30, 16])
    multi.track(video[1][0])
    alone.track(video[1][0])
    multi.remove([0, 2])
    assert multi.num_targets == 1
    for img, _ in video[2:]:
        _same(multi.track(img)[0], alone.track(img))
    multi.remove([0])
    assert not multi.initialized
    with pytest.raises(NotInitializedError):
        multi.remove([0])


def test_add_refuses_another_modality_and_a_refused_add_keeps_the_targets(tiny, video):
    multi = MultiTracker(tiny)
    img, depth = video[0]
    multi.init(img, [[40, 30, 20, 24]], aux=depth, modality="depth")
    with pytest.raises(InputError, match="modality"):
        multi.add(img, [[100, 60, 30, 16]], modality="thermal")
    with pytest.raises(InputError):
        multi.add(img, [[500, 500, 30, 16]], aux=depth)  # outside the image
    assert multi.num_targets == 1
    assert len(multi.track(video[1][0], video[1][1])) == 1


def test_add_without_targets_is_init(tiny, video):
    multi = MultiTracker(tiny)
    img, depth = video[0]
    multi.add(img, [[40, 30, 20, 24]], aux=depth, modality="depth")
    assert multi.num_targets == 1 and multi.modality.value == "depth"
