"""Each challenge flag measurably does what it says (same seed with and without the flag)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from data.datautils import SMALL, box_region, make

from utptrack_ros.types import Modality

W, H = SMALL
SEEDS = (40, 41, 42)


def visible(seq):
    return [i for i in range(seq.length) if not seq.absent[i]]


def ring_mask(seq, i, pad=8):
    mask = np.zeros((H, W), bool)
    mask[box_region(seq, i, pad)] = True
    mask[box_region(seq, i)] = False
    return mask


@pytest.mark.parametrize("seed", SEEDS)
def test_darkness_hides_rgb_but_not_depth_or_thermal(seed):
    base, dark = make(seed), make(seed, {"darkness": 1.0})
    frames = [i for i in visible(dark) if dark.frame_info["dark"][i]]
    assert frames and dark.attributes["darkness"] is not None
    for i in frames[:: max(1, len(frames) // 3)]:
        r = box_region(dark, i)
        assert dark.rgb(i)[r].mean() < 0.3 * base.rgb(i)[r].mean()
        thermal = dark.aux(Modality.THERMAL, i).astype(float)
        assert thermal[r].mean() - thermal[ring_mask(dark, i)].mean() > 200  # > 2 K hotter than surroundings
        # active / passive sensors do not see the light change at all
        np.testing.assert_array_equal(dark.aux(Modality.DEPTH, i), base.aux(Modality.DEPTH, i))
        np.testing.assert_array_equal(dark.aux(Modality.THERMAL, i), base.aux(Modality.THERMAL, i))


def test_illumination_changes_brightness_over_time():
    base, lit = make(40), make(40, {"illumination": 1.0})
    assert np.std(lit.frame_info["illumination"]) > 0.1 and np.std(base.frame_info["illumination"]) == 0

    def means(s):
        return [s.rgb(i).mean() for i in range(0, s.length, 3)]

    assert np.std(means(lit)) > 3 * np.std(means(base)) + 1


@pytest.mark.parametrize("seed", SEEDS)
def test_out_of_view_leaves_and_returns(seed):
    seq = make(seed, {"out_of_view": 1.0}, length=40)
    absent = np.flatnonzero(seq.absent)
    assert len(absent) >= 3
    assert (seq.frame_info["in_view"][absent] < 0.1).all()  # absent because outside, not hidden
    before = absent[0] - 1
    x, y, w, h = seq.gt[before]
    assert min(x, y, W - (x + w), H - (y + h)) < 1.0, "the box touches the border on its way out"
    assert seq.frame_info["in_view"][before] < 1.0
    assert not seq.absent[absent[-1] + 1:].all() and absent[-1] < seq.length - 1, "the target comes back"
    base = make(seed, length=40)
    assert not base.absent.any() and (base.frame_info["in_view"] == 1).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_full_occlusion_hides_the_target_in_view(seed):
    seq = make(seed, {"full_occlusion": 1.0}, length=40)
    hidden = np.flatnonzero(seq.absent)
    assert len(hidden) >= 3
    assert (seq.frame_info["in_view"][hidden] > 0.99).all()
    assert (seq.frame_info["occluded"][hidden] > 0.9).all()
    assert {o["kind"] for o in seq.attributes["occluders"]} == {"board"}


@pytest.mark.parametrize("seed", SEEDS)
def test_partial_occlusion_covers_part_of_the_target(seed):
    seq = make(seed, {"partial_occlusion": 1.0}, length=40)
    occ = seq.frame_info["occluded"]
    partial = (occ > 0.15) & (occ < 0.9) & ~seq.absent
    assert partial.sum() >= 2
    assert (make(seed, length=40).frame_info["occluded"] == 0).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_scale_change(seed):
    def area(s):
        return s.gt[:, 2] * s.gt[:, 3]

    changed, base = area(make(seed, {"scale_change": 1.0})), area(make(seed))
    assert np.nanmax(changed) / np.nanmin(changed) > 4
    assert np.nanmax(base) / np.nanmin(base) < 3


@pytest.mark.parametrize("seed", SEEDS)
def test_fast_motion_and_rotation(seed):
    base = make(seed)
    fast = make(seed, {"fast_motion": 1.0})
    assert fast.frame_info["speed_px"][1:].mean() > 3 * base.frame_info["speed_px"][1:].mean()
    rotating = make(seed, {"rotation": 1.0})
    assert np.ptp(rotating.frame_info["angle_deg"]) > 80 and np.ptp(base.frame_info["angle_deg"]) < 30


def test_deformation_changes_the_box_aspect_more():
    def aspect_spread(s):
        return np.nanstd(np.log(s.gt[:, 2] / s.gt[:, 3]))

    deformed = np.mean([aspect_spread(make(s, {"deformation": 1.0})) for s in SEEDS])
    rigid = np.mean([aspect_spread(make(s)) for s in SEEDS])
    assert deformed > 1.5 * rigid


def _sharpness(image, region):
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return cv2.Laplacian(gray, cv2.CV_32F)[region].var()


@pytest.mark.parametrize("seed", SEEDS)
def test_motion_blur_smears_the_target(seed):
    blurred, sharp = make(seed, {"motion_blur": 1.0}), make(seed, {"fast_motion": 0.3})
    assert blurred.frame_info["blur_px"][1:].mean() > 3 * sharp.frame_info["blur_px"][1:].mean()
    frames = [i for i in visible(blurred)[1:] if blurred.frame_info["blur_px"][i] > 4][:4]
    assert frames
    ratio = np.mean([_sharpness(blurred.rgb(i), box_region(blurred, i)) for i in frames]) / np.mean(
        [_sharpness(sharp.rgb(i), box_region(sharp, i)) for i in visible(sharp)[1:5]])
    assert ratio < 0.7


def test_camera_shake_moves_the_background():
    for seed in SEEDS:
        shaky, base = make(seed, {"camera_shake": 1.0}), make(seed)
        assert shaky.frame_info["camera_motion_px"][1:].mean() > 3.0
        assert shaky.frame_info["camera_motion_px"][1:].mean() > 3 * base.frame_info["camera_motion_px"][1:].mean()


@pytest.mark.parametrize("seed", SEEDS)
def test_low_resolution_small_target_and_blurry_rgb(seed):
    low, base = make(seed, {"low_resolution": 1.0}), make(seed)
    assert np.nanmedian(low.gt[:, 2] * low.gt[:, 3]) < 0.01 * W * H
    full = (slice(None), slice(None))
    assert _sharpness(low.rgb(3), full) < 0.5 * _sharpness(base.rgb(3), full)


@pytest.mark.parametrize("seed", SEEDS)
def test_camouflage_lowers_rgb_contrast_only(seed):
    def contrasts(seq):
        rgb, depth, thermal = [], [], []
        for i in visible(seq)[:6]:
            r, ring = box_region(seq, i), ring_mask(seq, i)
            image = seq.rgb(i).astype(float)
            rgb.append(np.abs(image[r].mean((0, 1)) - image[ring].mean(0)).sum())
            d = seq.aux(Modality.DEPTH, i).astype(float)
            depth.append(np.median(d[ring][d[ring] > 0]) - np.median(d[r][d[r] > 0]))
            t = seq.aux(Modality.THERMAL, i).astype(float)
            thermal.append(t[r].mean() - t[ring].mean())
        return np.mean(rgb), np.mean(depth), np.mean(thermal)

    camo, base = contrasts(make(seed, {"camouflage": 1.0})), contrasts(make(seed))
    assert camo[0] < 0.6 * base[0]
    assert camo[1] > 100 and camo[2] > 200  # still nearer (mm) and hotter (centi-kelvin)


def test_depth_is_uint16_mm_with_invalid_zeros_and_a_nearer_target(small_seq):
    for i in visible(small_seq)[:5]:
        depth = small_seq.aux(Modality.DEPTH, i)
        assert depth.dtype == np.uint16
        assert 0.0005 < (depth == 0).mean() < 0.5
        valid = depth[depth > 0]
        assert valid.min() >= 250 and valid.max() <= 8000
        target = depth[box_region(small_seq, i)]
        assert np.median(target[target > 0]) < np.median(valid)


def test_thermal_target_hotter_than_most_background(small_seq):
    for i in visible(small_seq)[:5]:
        thermal = small_seq.aux(Modality.THERMAL, i).astype(float)
        outside = np.ones(thermal.shape, bool)
        outside[box_region(small_seq, i, pad=4)] = False
        assert np.percentile(thermal[box_region(small_seq, i)], 75) > np.percentile(thermal[outside], 90)
        assert 25_000 < thermal.mean() < 32_000  # centi-kelvin of room-ish temperatures


def _static_camera_seed():
    for seed in range(100, 140):
        seq = make(seed, length=12)
        if not seq.attributes["background"]["camera_pan"] and seq.frame_info["speed_px"][1:].min() > 1.0:
            return seq
    raise AssertionError("no static-camera seed found")


def test_events_fire_where_the_target_moves_and_not_on_a_static_background():
    seq = _static_camera_seed()
    for i in range(1, seq.length, 3):
        events = (seq.aux(Modality.EVENT, i) != 255).any(axis=2)
        moving = np.zeros(events.shape, bool)
        moving[box_region(seq, i, pad=3)] = True
        moving[box_region(seq, i - 1, pad=3)] = True
        assert events[~moving].mean() < 0.01, "background: noise only"
        assert events[box_region(seq, i)].mean() > 0.03, "the target's edges fire"
    colours = {tuple(c) for c in np.unique(seq.aux(Modality.EVENT, 5).reshape(-1, 3), axis=0)}
    assert colours <= {(255, 255, 255), (255, 0, 0), (0, 0, 255)} and len(colours) == 3
    first = (seq.aux(Modality.EVENT, 0) != 255).any(axis=2)
    assert first.mean() < 0.01  # nothing happened before frame 0
