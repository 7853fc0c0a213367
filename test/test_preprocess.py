"""Official crop geometry, normalisation, and the crop <-> image box round trip (method.md 6.2)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from utptrack_ros.errors import InputError
from utptrack_ros.models import create_model, model_config
from utptrack_ros.postprocess import hann_window
from utptrack_ros.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    crop_geometry,
    crop_image,
    crops_to_tensor,
    template_box,
)
from utptrack_ros.tracker import Tracker
from utptrack_ros.types import Box


def reference_crop(image, box, factor):
    """Pixel loop version of sample_target without the resize (out_size == side)."""
    x, y, w, h = box
    s = math.ceil(math.sqrt(w * h) * factor)
    x1 = round(x + 0.5 * w - s * 0.5)
    y1 = round(y + 0.5 * h - s * 0.5)
    H, W = image.shape[:2]
    out = np.zeros((s, s) + image.shape[2:], image.dtype)
    x2, y2 = x1 + s, y1 + s
    # the official crop keeps rows y1+top .. y2-bottom with bottom = max(y2 - H + 1, 0)
    top, left = max(0, -y1), max(0, -x1)
    bottom, right = max(y2 - H + 1, 0), max(x2 - W + 1, 0)
    for r in range(y1 + top, y2 - bottom):
        for c in range(x1 + left, x2 - right):
            out[r - y1, c - x1] = image[r, c]
    return out


@pytest.mark.parametrize(
    "box",
    [
        (10.0, 12.0, 8.0, 6.0),  # inside
        (0.0, 0.0, 9.0, 9.0),  # touching top-left: negative origin, zero padding
        (30.0, 20.0, 10.0, 12.0),  # touching right/bottom: the +1 quirk drops the last column/row
        (2.5, 3.5, 3.0, 3.0),  # centre - s/2 lands on .5: round half to even
    ],
)
def test_crop_matches_official_pixel_rule(box, rng):
    image = rng.integers(1, 255, size=(32, 40, 3), dtype=np.uint8)
    b = Box(*box)
    geom = crop_geometry(b, 2.0, out_size=math.ceil(math.sqrt(b.w * b.h) * 2.0))
    assert np.array_equal(crop_image(image, geom), reference_crop(image, box, 2.0))


def test_round_half_to_even_and_plus_one_padding():
    geom = crop_geometry(Box(2.5, 3.5, 3.0, 3.0), 1.0, out_size=3)  # x1 = round(2.5), y1 = round(3.5)
    assert (geom.side, geom.x1, geom.y1) == (3, 2, 4)
    geom = crop_geometry(Box(0.0, 0.0, 5.0, 5.0), 1.0, 5)  # x1 = round(0) = 0
    image = np.full((5, 5), 7, np.uint8)
    crop = crop_image(image, geom)  # x2 = 5 = W -> right pad 1: last column is padding
    assert crop[:, -1].tolist() == [0, 0, 0, 0, 0] and crop[:-1, :-1].min() == 7


def test_crop_outside_image_is_all_zero():
    image = np.full((20, 20, 3), 200, np.uint8)
    geom = crop_geometry(Box(100.0, 100.0, 4.0, 4.0), 2.0, 16)
    assert crop_image(image, geom).max() == 0


def test_box_round_trip_is_exact(rng):
    for _ in range(200):
        prev = Box(*rng.uniform(-50, 600, 2), *rng.uniform(2, 200, 2))
        target = Box(*rng.uniform(-50, 600, 2), *rng.uniform(1, 300, 2))
        geom = crop_geometry(prev, float(rng.uniform(1.5, 5.0)), int(rng.choice([96, 128, 192, 256])))
        x, y, w, h = geom.box_to_crop(target)
        back = geom.crop_to_box(np.array([x + w / 2, y + h / 2, w, h]))
        assert np.allclose(back.as_xywh(), target.as_xywh(), rtol=0, atol=1e-9)


def test_map_back_locates_a_drawn_target_at_unit_scale():
    image = np.zeros((120, 160, 3), np.uint8)
    image[50:70, 60:90] = 255  # target: x 60..90, y 50..70
    prev = Box(58.0, 47.0, 30.0, 20.0)  # previous estimate, a few px off
    geom = crop_geometry(prev, 2.0, out_size=math.ceil(math.sqrt(30 * 20) * 2.0))  # resize factor 1
    crop = crop_image(image, geom)
    ys, xs = np.nonzero(crop[:, :, 0])
    found = np.array([xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()], float)
    # in crop px relative to the map-back reference: shift by the rounding of the crop origin
    dx, dy = geom.x1 - (geom.cx - geom.side / 2), geom.y1 - (geom.cy - geom.side / 2)
    cx, cy = found[0] + found[2] / 2 + dx, found[1] + found[3] / 2 + dy
    back = geom.crop_to_box(np.array([cx, cy, found[2], found[3]]) / geom.side)
    assert np.allclose(back.as_xywh(), (60, 50, 30, 20), atol=1e-9)


def test_zero_area_box_cannot_be_cropped():
    with pytest.raises(InputError, match="w > 0 and h > 0"):
        crop_geometry(Box(10, 10, 0, 5), 2.0, 128)


def test_a_crop_too_large_to_allocate_is_refused():
    """A context factor far too large for the box asks for a multi-gigabyte padded crop: refused
    with the reason instead of allocating (or cv2 raising a bare error)."""
    image = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(InputError, match="context factor"):
        crop_image(image, crop_geometry(Box(10, 10, 20, 20), 1e5, 128))
    assert crop_image(image, crop_geometry(Box(10, 10, 20, 20), 100.0, 128)).shape == (128, 128, 3)


def test_six_channel_tensor_normalises_both_halves_and_duplicates_missing_aux():
    rgb = np.full((4, 4, 3), (10, 128, 250), np.uint8)
    aux = np.full((4, 4, 3), (0, 255, 60), np.uint8)
    t = crops_to_tensor([rgb, rgb], [aux, None], 6, torch.device("cpu"))
    assert t.shape == (2, 6, 4, 4)
    expect = lambda v, c: (v / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]  # noqa: E731
    assert math.isclose(t[0, 1, 0, 0].item(), expect(128, 1), rel_tol=1e-6)
    assert math.isclose(t[0, 4, 0, 0].item(), expect(255, 1), rel_tol=1e-6)
    assert torch.equal(t[1, 3:], t[1, :3])  # RGB duplicated where aux is missing


@pytest.mark.parametrize("in_chans", [3, 6])
def test_both_tensor_layouts_hold_the_same_values(in_chans):
    """channels_last=False (what onnxruntime takes) is contiguous NCHW with the same values as
    the channels-last tensor, which equals torch's own normalisation of the stacked crops."""
    rng = np.random.default_rng(0)
    rgb = [rng.integers(0, 256, (9, 9, 3), dtype=np.uint8) for _ in range(2)]
    aux = [rng.integers(0, 256, (9, 9, 3), dtype=np.uint8), None]
    nhwc = crops_to_tensor(rgb, aux, in_chans, torch.device("cpu"))
    nchw = crops_to_tensor(rgb, aux, in_chans, torch.device("cpu"), channels_last=False)
    assert nchw.is_contiguous() and not nhwc.is_contiguous() and nhwc.shape == nchw.shape == (2, in_chans, 9, 9)
    assert torch.equal(nhwc, nchw)
    halves = [np.concatenate([r, r if a is None else a], axis=2)[..., :in_chans] for r, a in zip(rgb, aux)]
    raw = torch.from_numpy(np.stack(halves)).permute(0, 3, 1, 2).double() / 255.0
    mean = torch.tensor(IMAGENET_MEAN * 2, dtype=torch.float64)[:in_chans].view(1, -1, 1, 1)
    std = torch.tensor(IMAGENET_STD * 2, dtype=torch.float64)[:in_chans].view(1, -1, 1, 1)
    assert torch.allclose(nchw.double(), (raw - mean) / std, atol=1e-5)


def test_hann_window_values():
    w = hann_window(16)
    assert w.shape == (16, 16)
    assert math.isclose(w.max(), (0.5 * (1 - math.cos(2 * math.pi * 8 / 17))) ** 2)
    assert math.isclose(w.max(), 0.983, abs_tol=1e-3) and math.isclose(w[0, 0], 0.0011, abs_tol=1e-4)


def official_template_box(box_in, box_extract, resize_factor, crop_sz, divisor):
    """transform_image_to_crop(normalize=True) of the official trackers (method.md 6.5), written
    out: OSTrack divides by ``crop_sz``, SUTrack / UTPTrack-S by ``crop_sz - 1``."""
    cin = (box_in[0] + box_in[2] / 2, box_in[1] + box_in[3] / 2)
    cex = (box_extract[0] + box_extract[2] / 2, box_extract[1] + box_extract[3] / 2)
    w, h = box_in[2] * resize_factor, box_in[3] * resize_factor
    cx = (crop_sz - 1) / 2 + (cin[0] - cex[0]) * resize_factor
    cy = (crop_sz - 1) / 2 + (cin[1] - cex[1]) * resize_factor
    return np.array([cx - w / 2, cy - h / 2, w, h]) / divisor


@pytest.mark.parametrize("target", [(50.0, 30.0, 20.0, 10.0), (53.5, 31.0, 20.0, 10.0)])
def test_template_box_follows_each_familys_official_transform(target):
    extract = Box(50.0, 30.0, 20.0, 10.0)  # the box the template crop was cut around
    geom = crop_geometry(extract, 2.0, 128)
    r = geom.resize_factor
    box = Box(*target)
    ostrack = official_template_box(target, extract.as_xywh(), r, 128, 128)
    sutrack = official_template_box(target, extract.as_xywh(), r, 128, 127)
    np.testing.assert_allclose(template_box(geom, box, "ostrack"), ostrack, rtol=0, atol=1e-12)
    np.testing.assert_allclose(template_box(geom, box, "sutrack"), sutrack, rtol=0, atol=1e-12)
    # "crop" is the exact inverse of the map-back (the project's own models train with it)
    np.testing.assert_allclose(template_box(geom, box, "crop"), geom.box_to_crop(box), rtol=0, atol=0)
    # the three differ: centre (T-1)/2 vs T/2, and the divisor T vs T-1
    if target == extract.as_xywh():
        assert template_box(geom, box, "ostrack")[0] + template_box(geom, box, "ostrack")[2] / 2 == pytest.approx(63.5 / 128)
        assert template_box(geom, box, "sutrack")[0] + template_box(geom, box, "sutrack")[2] / 2 == pytest.approx(0.5)
        assert template_box(geom, box, "crop")[0] + template_box(geom, box, "crop")[2] / 2 == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown template box rule"):
        template_box(geom, box, "stark")


@pytest.mark.parametrize("name, rule", [("o256", "ostrack"), ("ostrack256", "ostrack"), ("tiny", "crop")])
def test_tracker_feeds_the_box_prior_by_the_models_rule(name, rule):
    assert model_config(name).template_box == rule
    overrides = {} if name == "tiny" else dict(embed_dim=48, num_heads=3, head_channels=(8, 8, 8, 8))
    tracker = Tracker(create_model(name, **overrides).eval())
    seen = []
    embed = tracker.model.embed_templates
    tracker.model.embed_templates = lambda static, dynamic, sbox, dbox: seen.append(sbox) or embed(static, dynamic, sbox, dbox)
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    box = Box(40.0, 30.0, 21.0, 17.0)
    tracker.init(image, box)
    geom = crop_geometry(box, tracker.config.template_factor, tracker.model.config.template_size)
    np.testing.assert_allclose(seen[0].numpy()[0], template_box(geom, box, rule), atol=1e-7)
