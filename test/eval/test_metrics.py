"""Metrics: hand-computed cases and cross-checks against the independent PyPI ``got10k`` toolkit.

got10k 0.1.3 conventions (read from ``got10k/utils/metrics.py`` and ``experiments/{otb,got10k}.py``):

* OTB: ``boxes[0] = anno[0]``; IoU with ``+eps`` in the union and clipped to [0, 1] (continuous,
  same as ours); centre = ``xy + (wh - 1) / 2`` (same); success ``IoU > linspace(0, 1, 21)``,
  precision ``error <= arange(0, 51)``; curves averaged over sequences; success score =
  ``mean(curve)`` (a fraction: ours is x100); precision score = ``curve[20]``. It knows no
  absent or missed frames and has no normalised precision.
* GOT-10k: ``rect_iou(boxes[1:], anno[1:], bound=(W, H))``, frames with ``cover == 0`` dropped,
  IoUs of all sequences pooled; AO = mean, SR = ``mean(iou > 0.5)``, 101-threshold curve.
  Its ``bound`` clip shifts boxes that stick out left/top (see ``clip_xywh_to_image``).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from got10k.experiments.got10k import ExperimentGOT10k
from got10k.experiments.otb import ExperimentOTB
from got10k.utils.metrics import center_error, rect_iou

from utptrack_ros.eval import metrics as M

FAR = np.array([1e6, 1e6, 1.0, 1.0])  # a box that overlaps nothing and is > 50 px from anything


def _otb_toolkit() -> ExperimentOTB:
    exp = object.__new__(ExperimentOTB)  # no dataset download: only the scoring methods are used
    exp.nbins_iou, exp.nbins_ce = 21, 51
    return exp


def _got_toolkit() -> ExperimentGOT10k:
    exp = object.__new__(ExperimentGOT10k)
    exp.nbins_iou = 101
    return exp


def _random_sequence(rng: np.random.Generator, n: int, W: int = 320, H: int = 240):
    """GT inside the image; predictions jittered around it (some far off, some crossing the
    right/bottom border, none crossing left/top: where got10k's clip and ours agree)."""
    wh = rng.uniform(10, 80, size=(n, 2))
    xy = rng.uniform(0, 1, size=(n, 2)) * (np.array([W, H]) - wh)
    gt = np.concatenate([xy, wh], axis=1)
    pred = gt + rng.normal(0, 12, size=(n, 4))
    pred[:, 2:] = np.abs(pred[:, 2:]) + 1.0
    far = rng.random(n) < 0.15
    pred[far, :2] += rng.uniform(40, 120, size=(int(far.sum()), 2))
    pred[:, :2] = np.maximum(pred[:, :2], 0.0)
    return pred, gt


# ---------------------------------------------------------------------------------------------
# Hand-computed cases
# ---------------------------------------------------------------------------------------------


def test_identical_boxes_give_the_convention_maximum():
    gt = np.tile([10.0, 20.0, 30.0, 40.0], (6, 1))
    m = M.evaluate_sequence(gt.copy(), gt)
    # IoU == 1 is not > 1.0, the last of the 21 thresholds: a perfect tracker scores 20/21.
    assert m.auc == pytest.approx(100.0 * 20 / 21)
    assert m.precision == 100.0 and m.norm_precision == 100.0
    assert m.ao == 100.0 and m.sr50 == 100.0 and m.sr75 == 100.0
    assert m.num_missed_frames == 0 and m.init_index == 0


def test_half_overlap_hand_computed():
    n = 5
    gt = np.tile([0.0, 0.0, 10.0, 10.0], (n, 1))
    pred = np.tile([0.0, 0.0, 10.0, 5.0], (n, 1))  # bottom half missing: IoU 50/100
    m = M.evaluate_sequence(pred, gt)
    np.testing.assert_allclose(m.iou, [1.0, 0.5, 0.5, 0.5, 0.5])  # frame 0 := GT
    # t < 0.5: 5/5; 0.5 <= t <= 0.95: only frame 0; t = 1: none.
    expected_curve = np.array([1.0] * 10 + [0.2] * 10 + [0.0])
    np.testing.assert_allclose(m.success_curve, expected_curve)
    assert m.auc == pytest.approx((10 + 2) / 21 * 100)
    # Centres (inclusive): GT (4.5, 4.5), pred (4.5, 2.0): 2.5 px, 0.25 GT heights.
    np.testing.assert_allclose(m.center_error_px[1:], 2.5)
    np.testing.assert_allclose(m.norm_center_error[1:], 0.25)
    assert m.precision == 100.0
    assert m.norm_precision == pytest.approx(20.0)  # only frame 0 is within 0.20
    assert m.precision_curve[2] == pytest.approx(0.2) and m.precision_curve[3] == 1.0
    # GOT-10k: frames 1..4, IoU 0.5 each; 0.5 is not > 0.5.
    assert m.ao == pytest.approx(50.0) and m.sr50 == 0.0


def test_absent_frames_fail_in_otb_and_are_dropped_in_got10k():
    gt = np.tile([0.0, 0.0, 10.0, 10.0], (6, 1))
    pred = gt.copy()
    absent = np.array([0, 0, 1, 1, 0, 0], bool)
    gt[2] = np.nan  # absent without a box
    m = M.evaluate_sequence(pred, gt, absent)
    np.testing.assert_array_equal(m.iou, [1, 1, -1, -1, 1, 1])
    assert np.isinf(m.center_error_px[[2, 3]]).all() and np.isinf(m.norm_center_error[3])
    assert m.success_curve[0] == pytest.approx(4 / 6)  # frames 2 and 3 stay in the denominator
    assert m.precision == pytest.approx(4 / 6 * 100)
    assert m.num_valid_frames == 4 and m.num_missed_frames == 0
    assert m.got10k_iou.size == 3 and m.ao == 100.0  # frame 0 and the absent frames dropped


def test_invalid_gt_sizes_count_as_invalid():
    gt = np.tile([0.0, 0.0, 10.0, 10.0], (3, 1))
    gt[1, 2] = 0.0  # zero width
    m = M.evaluate_sequence(gt.copy(), gt)
    assert m.iou[1] == -1.0 and m.num_valid_frames == 2


def test_missed_frames_are_failures_and_counted():
    gt = np.tile([0.0, 0.0, 10.0, 10.0], (5, 1))
    pred = gt.copy()
    pred[[2, 4]] = np.nan
    m = M.evaluate_sequence(pred, gt)
    assert m.num_missed_frames == 2
    np.testing.assert_array_equal(m.iou, [1, 1, -1, 1, -1])
    assert m.success_curve[0] == pytest.approx(3 / 5)
    np.testing.assert_array_equal(m.got10k_iou, [1, 0, 1, 0])  # missed -> IoU 0 in AO
    assert m.ao == pytest.approx(50.0)


def test_init_on_first_annotated_frame():
    gt = np.tile([0.0, 0.0, 10.0, 10.0], (5, 1))
    gt[:2] = np.nan
    absent = np.array([1, 1, 0, 0, 0], bool)
    pred = np.full((5, 4), np.nan)
    pred[2] = [50, 50, 5, 5]  # overwritten by GT on the init frame
    pred[3:] = gt[3:]
    m = M.evaluate_sequence(pred, gt, absent)
    assert m.init_index == 2
    assert m.num_missed_frames == 0  # no output expected before the init frame
    np.testing.assert_array_equal(m.iou, [-1, -1, 1, 1, 1])
    assert m.got10k_iou.size == 2  # frames 3 and 4


def test_zero_size_predictions_take_the_previous_box():
    gt = np.tile([0.0, 0.0, 10.0, 10.0], (4, 1))
    pred = np.array([[0, 0, 10, 10], [2, 0, 10, 10], [0, 0, 0, 10], [0, 0, 10, -3]], float)
    m = M.evaluate_sequence(pred, gt)
    assert m.num_replaced_boxes == 2
    expected = 80.0 / 120.0  # frames 2 and 3 inherit frame 1's box, shifted by 2 px
    np.testing.assert_allclose(m.iou, [1.0, expected, expected, expected])


def test_got10k_clips_to_the_image():
    gt = np.array([[0, 0, 40, 20], [60, 0, 40, 20]], float)
    pred = np.array([[0, 0, 40, 20], [60, 0, 80, 20]], float)  # leaves a 100-px image on the right
    assert M.evaluate_sequence(pred, gt, image_size=(100, 50)).ao == pytest.approx(100.0)
    assert M.evaluate_sequence(pred, gt, image_size=None).ao == pytest.approx(50.0)


def test_left_edge_clip_differs_from_got10k_by_design():
    pred = np.array([[-10.0, 0, 50, 20]])
    gt = np.array([[0.0, 0, 40, 20]])
    ours = M.clip_xywh_to_image(pred, 100, 50)
    np.testing.assert_allclose(ours, [[0, 0, 40, 20]])  # cut at the edge: IoU 1 with the GT
    theirs = rect_iou(pred.copy(), gt.copy(), bound=(100, 50))
    assert theirs[0] == pytest.approx(0.8)  # got10k shifts the box to x=0 keeping w=50


def test_sequences_weigh_equally_but_got10k_pools_frames():
    gt_a = np.tile([0.0, 0.0, 10.0, 10.0], (3, 1))  # 2 scored frames, IoU 1
    gt_b = np.tile([0.0, 0.0, 10.0, 10.0], (9, 1))  # 8 scored frames, IoU 0 (far away)
    pred_b = np.tile([50.0, 50.0, 10.0, 10.0], (9, 1))
    a = M.evaluate_sequence(gt_a.copy(), gt_a, name="a", attributes={"occlusion": True})
    b = M.evaluate_sequence(
        pred_b, gt_b, name="b", attributes={"occlusion": False, "fast": True, "seed": 1, "note": "x"}
    )
    agg = M.aggregate([a, b])
    np.testing.assert_allclose(agg.success_curve, (a.success_curve + b.success_curve) / 2)
    assert agg.auc == pytest.approx((a.auc + b.auc) / 2)
    assert agg.ao == pytest.approx(2 / 10 * 100)  # frame-weighted, not (100 + 0) / 2
    by_attr = M.aggregate_by_attribute([a, b])
    assert sorted(by_attr) == ["fast", "occlusion"]  # "seed" and "note" are not flags
    assert by_attr["occlusion"].sequences == ("a",) and by_attr["fast"].sequences == ("b",)
    assert by_attr["occlusion"].auc == pytest.approx(a.auc)


def test_generator_challenges_are_the_flags():
    attrs = {"seed": 1, "darkness": True, "challenges": {"fast_motion": 0.5, "rotation": 0.0, "blur": True}}
    assert M.attribute_flags(attrs) == {"fast_motion": True, "rotation": False, "blur": True}
    assert M.attribute_flags({"challenges": ["occlusion"]}) == {"occlusion": True}
    assert M.attribute_flags({"seed": 0, "occluded": True}) == {"occluded": True}


def test_to_dict_is_json_safe():
    gt = np.tile([0.0, 0.0, 10.0, 10.0], (3, 1))
    pred = gt.copy()
    pred[1] = np.nan
    d = M.evaluate_sequence(pred, gt).to_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["center_error_px"][1] is None
    assert d["num_missed_frames"] == 1 and "otb-lasot-pytracking" in d["convention"]


def test_rejects_bad_shapes_and_empty_gt():
    with pytest.raises(ValueError, match="no frame with a valid"):
        M.evaluate_sequence(np.zeros((2, 4)), np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        M.evaluate_sequence(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="frames"):
        M.evaluate_sequence(np.zeros((3, 4)), np.ones((2, 4)))


def test_latency_stats_hand_computed():
    ms = 1_000_000
    sent = np.array([0, 100, 200, 300, 400]) * ms
    received = [10 * ms, 115 * ms, None, 330 * ms, 405 * ms]
    s = M.latency_stats([(sent, received)], num_dropped_frames=1)
    assert (s.num_frames_sent, s.num_frames_received, s.num_missed_frames) == (5, 4, 1)
    assert s.num_dropped_frames == 1
    assert s.latency_mean_ms == pytest.approx(15.0)  # 10, 15, 30, 5
    assert s.latency_p50_ms == pytest.approx(12.5)
    assert s.latency_p95_ms == pytest.approx(27.75)
    assert (s.latency_min_ms, s.latency_max_ms) == (pytest.approx(5.0), pytest.approx(30.0))
    assert s.mean_playback_frame_rate_hz == pytest.approx(5 / 0.4)
    assert s.mean_frame_rate_hz == pytest.approx(4 / 0.395)
    assert s.first_sent_received_latency_ms == pytest.approx(10.0)
    assert s.last_sent_received_latency_ms == pytest.approx(5.0)
    # receive intervals 105, 215, 75 -> |second differences| 110, 140
    assert s.jitter_mean_ms == pytest.approx(125.0) and s.jitter_max_ms == pytest.approx(140.0)
    assert s.jitter_std_ms == pytest.approx(15.0)
    assert s.mean_processing_rate_hz == pytest.approx(1000 / 15)


def test_latency_streams_pool():
    ms = 1_000_000
    a = (np.array([0, 10, 20]) * ms, np.array([5, 15, 25]) * ms)
    b = (np.array([1000, 1010]) * ms, [1002 * ms, float("nan")])
    s = M.latency_stats([a, b])
    assert s.num_frames_sent == 5 and s.num_missed_frames == 1
    assert s.latency_mean_ms == pytest.approx((5 + 5 + 5 + 2) / 4)
    assert s.mean_playback_frame_rate_hz == pytest.approx(5 / 0.030)  # spans 20 ms + 10 ms
    assert s.mean_frame_rate_hz == pytest.approx(3 / 0.020)  # stream b has one receipt: no span
    assert math.isnan(M.latency_stats([(np.array([0]), [None])]).latency_mean_ms)


# ---------------------------------------------------------------------------------------------
# Cross-checks against got10k on random boxes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_otb_curves_match_got10k(seed):
    rng = np.random.default_rng(seed)
    otb = _otb_toolkit()
    ours, succ, prec = [], [], []
    for _ in range(7):
        pred, gt = _random_sequence(rng, int(rng.integers(20, 120)))
        ours.append(M.evaluate_sequence(pred, gt))
        boxes = pred.copy()
        boxes[0] = gt[0]
        ious, ces = otb._calc_metrics(boxes, gt.copy())
        s, p = otb._calc_curves(ious, ces)
        succ.append(s)
        prec.append(p)
        np.testing.assert_allclose(ours[-1].iou, ious, atol=1e-9)
        np.testing.assert_allclose(ours[-1].center_error_px, ces, atol=1e-9)
    agg = M.aggregate(ours)
    succ_curve, prec_curve = np.mean(succ, axis=0), np.mean(prec, axis=0)
    np.testing.assert_allclose(agg.success_curve, succ_curve, atol=1e-12)
    np.testing.assert_allclose(agg.precision_curve, prec_curve, atol=1e-12)
    assert agg.auc == pytest.approx(np.mean(succ_curve) * 100, abs=1e-9)
    assert agg.precision == pytest.approx(prec_curve[20] * 100, abs=1e-9)
    assert 5.0 < agg.auc < 95.0  # the random boxes exercise the whole curve


@pytest.mark.parametrize("seed", [3, 4])
def test_otb_absent_and_missed_match_got10k_on_transformed_inputs(seed):
    """got10k has no absent/missed frames: a far-away GT (absent) or prediction (missed) box
    makes it score those frames as failures at every threshold, which is our rule."""
    rng = np.random.default_rng(seed)
    otb = _otb_toolkit()
    ours, succ, prec = [], [], []
    for _ in range(5):
        n = int(rng.integers(30, 80))
        pred, gt = _random_sequence(rng, n)
        absent = rng.random(n) < 0.2
        missed = rng.random(n) < 0.1
        absent[0] = missed[0] = False
        gt_ours, pred_ours = gt.copy(), pred.copy()
        gt_ours[absent] = np.nan
        pred_ours[missed] = np.nan
        m = M.evaluate_sequence(pred_ours, gt_ours, absent)
        assert m.num_missed_frames == int(missed.sum())
        ours.append(m)
        gt_t, pred_t = gt.copy(), pred.copy()
        gt_t[absent] = FAR
        pred_t[missed] = -FAR
        pred_t[0] = gt_t[0]
        s, p = otb._calc_curves(*otb._calc_metrics(pred_t, gt_t))
        succ.append(s)
        prec.append(p)
    agg = M.aggregate(ours)
    np.testing.assert_allclose(agg.success_curve, np.mean(succ, axis=0), atol=1e-12)
    np.testing.assert_allclose(agg.precision_curve, np.mean(prec, axis=0), atol=1e-12)


def test_norm_precision_matches_got10k_centre_error_on_rescaled_boxes():
    """Scaling each frame's boxes by 100 / GT size turns got10k's pixel centre distance into 100x
    the pytracking normalised distance (the (wh - 1)/2 offsets cancel in the difference), so
    got10k's 0..50 curve is our 0:0.01:0.5 curve."""
    rng = np.random.default_rng(5)
    otb = _otb_toolkit()
    ours, curves = [], []
    for _ in range(6):
        pred, gt = _random_sequence(rng, int(rng.integers(20, 90)))
        ours.append(M.evaluate_sequence(pred, gt))
        boxes = pred.copy()
        boxes[0] = gt[0]
        scale = np.tile(100.0 / gt[:, 2:4], 2)
        ces = center_error(boxes * scale, gt * scale)
        curves.append(otb._calc_curves(np.zeros(len(gt)), ces)[1])
        np.testing.assert_allclose(ours[-1].norm_center_error, ces / 100.0, rtol=1e-9)
    agg = M.aggregate(ours)
    np.testing.assert_allclose(agg.norm_precision_curve, np.mean(curves, axis=0), atol=1e-12)
    assert 0.0 < agg.norm_precision < 100.0


@pytest.mark.parametrize("seed", [6, 7])
def test_got10k_ao_sr_match_got10k(seed):
    rng = np.random.default_rng(seed)
    got = _got_toolkit()
    W, H = 320, 240
    ours, pooled = [], []
    for _ in range(6):
        n = int(rng.integers(15, 100))
        pred, gt = _random_sequence(rng, n, W, H)
        cover = (rng.random(n) > 0.15).astype(int)  # 0 = absent
        cover[0] = 1
        gt_ours = gt.copy()
        gt_ours[cover == 0] = np.nan
        ours.append(M.evaluate_sequence(pred, gt_ours, cover == 0, image_size=(W, H)))
        ious = rect_iou(pred[1:].copy(), gt[1:].copy(), bound=(W, H))  # it clips in place
        pooled.append(ious[cover[1:] > 0])
        np.testing.assert_allclose(ours[-1].got10k_iou, pooled[-1], atol=1e-9)
    ious = np.concatenate(pooled)
    ao, sr, _, curve = got._evaluate(ious, np.zeros(0))
    agg = M.aggregate(ours)
    assert agg.ao == pytest.approx(ao * 100, abs=1e-7)
    assert agg.sr50 == pytest.approx(sr * 100, abs=1e-9)
    assert agg.sr75 == pytest.approx(np.mean(ious > 0.75) * 100, abs=1e-9)
    np.testing.assert_allclose(agg.got10k_success_curve, curve, atol=1e-12)
    # pooled (frame-weighted) differs from a per-sequence mean when lengths differ
    assert agg.ao != pytest.approx(np.mean([m.ao for m in ours]), abs=1e-6)


def test_metrics_import_only_numpy():
    code = (
        "import sys, utptrack_ros.eval.metrics; "
        "heavy = [m for m in ('torch', 'cv2', 'matplotlib', 'rclpy', 'got10k') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
