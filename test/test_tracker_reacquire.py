"""Re-acquisition (TRACKING / LOST / RECOVERING) and the size guards of the tracker (issue 18).

The state machine and the guards run on a randomly initialised ``tiny`` (its predictions are
arbitrary, which is what a guard must survive); re-finding a target that left the view runs the
shipped weights on a generated sequence.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from utptrack_ros.boxes import iou_xywh
from utptrack_ros.config import TrackerConfig
from utptrack_ros.data.generator import generate
from utptrack_ros.data.spec import spec_for
from utptrack_ros.errors import ConfigError
from utptrack_ros.models import create_model
from utptrack_ros.postprocess import bound_size
from utptrack_ros.tracker import MultiTracker, Tracker
from utptrack_ros.types import Box, TrackState

H, W = 120, 160
INIT = [40, 30, 20, 24]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("tiny").eval()


@pytest.fixture
def image():
    return np.random.default_rng(1).integers(0, 255, size=(H, W, 3), dtype=np.uint8)


def test_the_new_keys_are_validated():
    for key, bad in (("max_scale_step", -0.1), ("min_size_ratio", 1.5), ("reacquire_after", -1),
                     ("reacquire_growth", 1.0), ("relock_threshold", 2.0), ("relock_frames", 0)):
        with pytest.raises(ConfigError, match=key):
            TrackerConfig(**{key: bad})


def test_a_lost_target_is_searched_in_a_widening_crop_up_to_the_whole_image(tiny, image):
    config = TrackerConfig(lost_threshold=1.0, reacquire_after=2, reacquire_growth=1.5, relock_threshold=1.0)
    tracker = Tracker(tiny, config=config)
    tracker.init(image, INIT)
    results = [tracker.track(image) for _ in range(6)]
    assert [r.state for r in results] == [TrackState.LOST] * 6  # nothing reaches relock_threshold 1.0
    sides = [r.search_region.w for r in results]
    normal = math.ceil(math.sqrt(20 * 24) * config.search_factor)
    assert sides[:2] == [normal, normal]  # the first reacquire_after frames search as usual
    assert sides[2] == math.ceil(math.sqrt(20 * 24) * config.search_factor * 1.5)
    assert sides[3] == sides[4] == sides[5] == max(H, W)  # then the whole image, centred on it
    whole = results[-1].search_region
    assert (whole.cx, whole.cy) == pytest.approx((W / 2, H / 2), abs=1.0)
    off = Tracker(tiny, config=replace(config, reacquire_after=0))
    off.init(image, INIT)
    assert {off.track(image).search_region.w for _ in range(6)} == {normal}  # 0 = never widen


def test_the_widened_search_matches_the_static_template_only(tiny, image):
    tracker = MultiTracker(tiny, config=TrackerConfig(update_interval=1, update_threshold=0.0, lost_threshold=0.0,
                                                      reacquire_after=2, relock_threshold=1.0))
    tracker.init(image, [INIT])
    tracker.track(np.roll(image, 5, axis=1))  # a confident frame updates the dynamic template
    tokens = tracker._targets.tokens
    assert not torch.equal(tokens.dt, tokens.st)
    tracker.set_config(replace(tracker.config, lost_threshold=1.0))
    first = tracker.track(image)[0]
    assert first.state is TrackState.LOST and not first.template_updated  # LOST targets are not updated
    assert not torch.equal(tracker._targets.tokens.dt, tracker._targets.tokens.st)
    tracker.track(image)  # the reacquire_after-th LOST frame: the dynamic template is reset
    assert torch.equal(tracker._targets.tokens.dt, tracker._targets.tokens.st)


def test_a_candidate_is_confirmed_before_tracking_resumes(tiny, image):
    # lost_threshold 1.0: every normal frame is LOST; relock_threshold 0: every widened candidate is
    # taken. The candidate is confirmed on a normal search around it only when the prediction stays
    # within one box size of it; a candidate that does not agree sends the target back to LOST.
    config = TrackerConfig(lost_threshold=1.0, reacquire_after=1, relock_threshold=0.0, relock_frames=3)
    tracker = Tracker(tiny, config=config)
    tracker.init(image, INIT)
    states, regions, boxes = [], [], []
    for _ in range(12):
        r = tracker.track(image)
        states.append(r.state)
        regions.append(r.search_region)
        boxes.append(r.box)
    assert states[0] is TrackState.LOST
    assert TrackState.RECOVERING in states
    for k in range(1, len(states)):
        if states[k] is TrackState.RECOVERING and states[k - 1] is TrackState.RECOVERING:
            # confirming steps search the normal crop around the candidate
            assert regions[k].w == math.ceil(math.sqrt(boxes[k - 1].w * boxes[k - 1].h) * config.search_factor)
        if states[k] is TrackState.TRACKING:
            assert states[k - 2:k] == [TrackState.RECOVERING] * 2  # relock_frames = 3 confirming frames
    # relock_frames 1: the first widened candidate re-locks at once
    at_once = Tracker(tiny, config=replace(config, relock_frames=1))
    at_once.init(image, INIT)
    assert [at_once.track(image).state for _ in range(2)] == [TrackState.LOST, TrackState.TRACKING]


def test_batched_targets_follow_their_own_cycle(tiny, image):
    config = TrackerConfig(lost_threshold=1.0, reacquire_after=1, relock_threshold=1.0)
    multi = MultiTracker(tiny, config=config)
    multi.init(image, [INIT, [100, 60, 30, 16]])
    single = Tracker(tiny, config=config)
    single.init(image, INIT)
    for _ in range(4):
        together, alone = multi.track(image)[0], single.track(image)
        assert together.search_region == alone.search_region and together.state is alone.state
        assert np.allclose(together.box.as_xywh(), alone.box.as_xywh(), atol=1e-3)


def test_bound_size_limits_the_step_and_keeps_a_floor():
    previous, init = Box(0, 0, 40, 20), Box(0, 0, 100, 100)
    stepped = bound_size(Box(10, 10, 4, 60), previous, Box(0, 0, 1, 1), 0.25, 0.0)
    assert (stepped.w, stepped.h) == pytest.approx((32.0, 25.0))
    assert (stepped.cx, stepped.cy) == pytest.approx((12.0, 40.0))  # the centre is kept
    floored = bound_size(Box(0, 0, 8, 2), previous, init, 0.0, 0.2)
    assert math.sqrt(floored.w * floored.h) == pytest.approx(20.0) and floored.w / floored.h == pytest.approx(4.0)
    assert bound_size(Box(1, 2, 3, 4), previous, init, 0.0, 0.0) == Box(1, 2, 3, 4)  # both off


def test_the_guards_hold_on_arbitrary_predictions(tiny):
    rng = np.random.default_rng(3)
    h, w, init = 360, 480, [230, 170, 20, 24]  # room around the box: the image border clips nothing
    config = TrackerConfig(lost_threshold=0.0, clip_margin=0, max_scale_step=0.1, min_size_ratio=0.5)
    tracker = Tracker(tiny, config=config)
    free = Tracker(tiny, config=replace(config, max_scale_step=0.0, min_size_ratio=0.0))
    first = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
    tracker.init(first, init)
    free.init(first, init)
    previous, free_sides = Box(*init), []
    for _ in range(8):
        frame = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
        box = tracker.track(frame).box
        x1, y1, x2, y2 = box.as_xyxy()
        assert 0 < x1 and x2 < w and 0 < y1 and y2 < h
        assert previous.w / 1.1 - 1e-6 <= box.w <= previous.w * 1.1 + 1e-6
        assert previous.h / 1.1 - 1e-6 <= box.h <= previous.h * 1.1 + 1e-6
        assert math.sqrt(box.w * box.h) >= 0.5 * math.sqrt(20 * 24) - 1e-6
        previous = box
        b = free.track(frame).box
        free_sides.append(math.sqrt(b.w * b.h))
    # the untrained network's sizes do jump around: the guards had something to hold
    assert max(free_sides) / min(free_sides) > 1.1 ** 2 or min(free_sides) < 0.5 * math.sqrt(20 * 24)


class _TurnedAfterLeaving:
    """A generated out-of-view sequence turned by 180 degrees from the frame the target is gone:
    it comes back at the opposite border, far from where it left (and from the last search)."""

    def __init__(self, seq):
        self._seq = seq
        self.name, self.prompt, self.attributes, self.modalities = seq.name + "_turned", seq.prompt, seq.attributes, ()
        self.absent = np.asarray(seq.absent, dtype=bool)
        self.start = int(np.argmax(self.absent))
        h, w = seq.rgb(0).shape[:2]
        gt = np.array(seq.gt, dtype=float)
        gt[self.start:, 0] = w - gt[self.start:, 0] - gt[self.start:, 2]
        gt[self.start:, 1] = h - gt[self.start:, 1] - gt[self.start:, 3]
        self.gt = gt

    def __len__(self):
        return len(self.gt)

    def rgb(self, i):
        image = self._seq.rgb(i)
        return np.ascontiguousarray(image[::-1, ::-1]) if i >= self.start else image


def _frames_to_refind(tracker, seq):
    """Frames from the target's return until the first TRACKING frame with IoU >= 0.5 (None: never)."""
    back = int(np.nonzero(seq.absent)[0][-1]) + 1
    tracker.init(seq.rgb(0), seq.gt[0])
    for i in range(1, len(seq)):
        r = tracker.track(seq.rgb(i))
        if i >= back and r.state is TrackState.TRACKING and iou_xywh(np.array(r.box.as_xywh()), seq.gt[i]) >= 0.5:
            return i - back
    return None


#: test-split sequences no suite draws, where the shipped model re-finds the turned target
#: (bench/bench_reacquire.py has the rate over more sequences); frames allowed after its return
REFIND_INDICES = (950, 955)
REFIND_WITHIN = 12


@pytest.mark.parametrize("index", REFIND_INDICES)
def test_the_shipped_model_refinds_a_target_that_comes_back_elsewhere(index):
    seq = _TurnedAfterLeaving(generate(spec_for("test", index, challenges={"out_of_view": 1.0}, length=80,
                                                size=(320, 240), modalities=())))
    tracker = Tracker.from_pretrained("tiny")
    found = _frames_to_refind(tracker, seq)
    assert found is not None and found <= REFIND_WITHIN, f"re-found after {found} frames"
    tracker.set_config(replace(tracker.config, reacquire_after=0))  # the search never widens: never found
    assert _frames_to_refind(tracker, seq) is None
