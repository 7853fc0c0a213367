"""OpenCV peer trackers on real synthetic frames (no mocks)."""

from __future__ import annotations

import numpy as np
import pytest
from eval.eval_synthetic import SyntheticSequence

from utptrack_ros.boxes import iou_xywh
from utptrack_ros.errors import InputError
from utptrack_ros.eval.peers import PEER_NAMES, OpenCVTracker
from utptrack_ros.types import Box


@pytest.fixture(scope="module")
def seq() -> SyntheticSequence:
    return SyntheticSequence("peer", num_frames=16, seed=3)


@pytest.mark.parametrize("kind", PEER_NAMES)
def test_peer_follows_the_target(kind, seq):
    tracker = OpenCVTracker(kind)
    tracker.init(seq.rgb(0), Box.from_sequence(seq.gt[0]))
    ious = []
    for i in range(1, seq.length):
        box, ok = tracker.update(seq.rgb(i))
        assert ok and isinstance(box, Box)
        ious.append(float(iou_xywh(np.array(box.as_xywh()), seq.gt[i])))
    assert np.mean(ious) > 0.6, ious  # the target moves ~25 px over the sequence
    assert len(tracker.times_ms) == seq.length and all(t > 0 for t in tracker.times_ms)
    assert tracker.num_failed_updates == 0


@pytest.mark.parametrize("kind", ["csrt", "kcf"])
def test_failed_update_returns_none_and_is_counted(kind, seq):
    tracker = OpenCVTracker(kind)
    tracker.init(seq.rgb(0), Box.from_sequence(seq.gt[0]))
    for i in (1, 2):  # KCF applies its detection threshold from its second update on
        assert tracker.update(seq.rgb(i))[1]
    box, ok = tracker.update(np.zeros_like(seq.rgb(3)))  # covered lens: no response anywhere
    assert (box, ok) == (None, False)
    assert tracker.num_failed_updates == 1


def test_init_rounds_the_box_to_pixels(seq):
    tracker = OpenCVTracker("kcf")
    gt = seq.gt[0]
    tracker.init(seq.rgb(0), Box(gt[0] + 0.3, gt[1] - 0.2, gt[2] + 0.4, gt[3]))
    box, ok = tracker.update(seq.rgb(0))  # same frame: stays on the (rounded) init box
    assert ok and box.as_xywh() == tuple(float(v) for v in gt)


def test_bad_inputs_raise_clear_errors(seq):
    with pytest.raises(ValueError, match="unknown OpenCV peer"):
        OpenCVTracker("boosting")
    tracker = OpenCVTracker("csrt")
    with pytest.raises(RuntimeError, match="before init"):
        tracker.update(seq.rgb(0))
    with pytest.raises(InputError, match="HxWx3"):
        tracker.init(seq.rgb(0)[:, :, 0], Box.from_sequence(seq.gt[0]))
    with pytest.raises(InputError, match="uint8"):
        tracker.init(seq.rgb(0).astype(np.float32), Box.from_sequence(seq.gt[0]))
    with pytest.raises(InputError, match="w, h > 0"):
        tracker.init(seq.rgb(0), Box(1, 1, 0, 5))
