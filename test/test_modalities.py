"""Auxiliary frames -> 3-channel 8-bit images (method.md 3.2)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from utptrack_ros.config import AuxConfig
from utptrack_ros.errors import InputError
from utptrack_ros.modalities import _Histogram, depth_to_aux, event_to_aux, prepare_aux, thermal_to_aux, to_aux_image
from utptrack_ros.preprocess import crop_geometry, crop_image
from utptrack_ros.types import Box, Modality


def official_depth(raw_mm: np.ndarray) -> np.ndarray:
    """The SUTrack recipe as written in method.md 3.2, on a uint16 array."""
    dp = raw_mm.copy()
    max_depth = min(np.median(dp) * 3, 10000)
    dp[dp > max_depth] = max_depth
    dp = cv2.normalize(dp, None, 0, 255, cv2.NORM_MINMAX)
    return cv2.applyColorMap(np.asarray(dp, dtype=np.uint8), cv2.COLORMAP_JET)


def test_uint16_depth_matches_official_recipe(rng):
    depth = rng.integers(0, 8000, size=(48, 64)).astype(np.uint16)
    depth[::7, ::5] = 0  # invalid pixels
    depth[0, 0] = 65000  # far outlier gets clipped
    assert np.array_equal(depth_to_aux(depth), official_depth(depth))


def test_float_metres_with_nan_equal_millimetres_with_zeros(rng):
    mm = rng.integers(300, 6000, size=(40, 50)).astype(np.uint16)
    metres = mm.astype(np.float32) / 1000.0
    metres[5:9, 7:12] = np.nan
    metres[0, :] = np.inf
    metres[1, :3] = -1.0
    mm_invalid = mm.copy()
    mm_invalid[5:9, 7:12] = 0
    mm_invalid[0, :] = 0
    mm_invalid[1, :3] = 0
    out = depth_to_aux(metres)
    assert out.dtype == np.uint8 and out.shape == (40, 50, 3)
    assert np.array_equal(out, depth_to_aux(mm_invalid))


def test_all_invalid_depth_gives_a_defined_image():
    out = depth_to_aux(np.full((10, 12), np.nan, np.float32))
    assert out.dtype == np.uint8 and len(np.unique(out.reshape(-1, 3), axis=0)) == 1


def test_depth_colormap_is_bgr_like_opencv():
    depth = np.tile(np.arange(0, 1000, 10, dtype=np.uint16), (4, 1))
    out = depth_to_aux(depth)
    assert out[0, 0].tolist() == [128, 0, 0]  # JET at 0 is dark blue, in BGR order
    assert out[0, -1, 2] > out[0, -1, 0]  # far end is red (channel 2 in BGR)


@pytest.mark.parametrize("mode", ["minmax", "percentile", "linear"])
def test_thermal_16bit_agc_modes(mode, rng):
    counts = rng.integers(20000, 30000, size=(30, 40)).astype(np.uint16)
    counts[10:15, 10:20] = 40000  # hot target
    cfg = AuxConfig(thermal_mode=mode, thermal_gain=1 / 160.0, thermal_offset=0.0)
    out = thermal_to_aux(counts, cfg)
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    assert np.array_equal(out[:, :, 0], out[:, :, 2])
    assert out[10:15, 10:20, 0].min() >= out[20:, :, 0].max()  # hotter stays brighter
    if mode == "linear":
        assert out[12, 12, 0] == 250  # 40000 / 160
    else:
        assert out[12, 12, 0] == 255


def test_thermal_8bit_and_rgb_pass_through(rng):
    gray = rng.integers(0, 255, size=(5, 6), dtype=np.uint8)
    assert np.array_equal(thermal_to_aux(gray)[:, :, 1], gray)
    colour = rng.integers(0, 255, size=(5, 6, 3), dtype=np.uint8)
    assert thermal_to_aux(colour) is colour


def test_event_frames():
    frame = np.zeros((4, 5, 3), np.uint8)
    frame[1, 2] = (255, 0, 0)
    assert event_to_aux(frame) is frame
    assert event_to_aux(frame[:, :, 0]).shape == (4, 5, 3)


@pytest.mark.parametrize(
    "modality,array,match",
    [
        (Modality.DEPTH, np.zeros((4, 5), np.int32), "uint16"),
        (Modality.DEPTH, np.zeros((4, 5, 3), np.uint16), "single-channel"),
        (Modality.THERMAL, np.zeros((4, 5), np.float32), "uint8 or uint16"),
        (Modality.EVENT, np.zeros((4, 5, 3), np.uint16), "uint8"),
        (Modality.RGB, np.zeros((4, 5, 3), np.uint8), "takes no auxiliary"),
    ],
)
def test_bad_aux_input_is_a_clear_value_error(modality, array, match):
    with pytest.raises(ValueError, match=match):
        to_aux_image(array, modality)
    with pytest.raises(InputError):
        to_aux_image(array, modality)


@pytest.mark.parametrize("modality", [Modality.DEPTH, Modality.THERMAL, Modality.EVENT])
def test_crop_of_converted_frame_equals_conversion_inside_the_crop(modality, rng):
    if modality is Modality.DEPTH:
        aux = rng.integers(0, 9000, size=(60, 80)).astype(np.uint16)
        aux[::9, ::4] = 0
    elif modality is Modality.THERMAL:
        aux = rng.integers(1000, 50000, size=(60, 80)).astype(np.uint16)
    else:
        aux = rng.integers(0, 255, size=(60, 80, 3), dtype=np.uint8)
    frame = prepare_aux(aux, modality)
    full = frame.full()
    for box in (Box(30, 20, 10, 12), Box(-5, -5, 20, 20), Box(70, 50, 15, 15), Box(200, 200, 5, 5)):
        geom = crop_geometry(box, 4.0, 32)
        assert np.array_equal(crop_image(aux, geom, frame.to_image), crop_image(full, geom))


@pytest.mark.parametrize("case", ["random", "zeros", "extremes", "odd"])
def test_histogram_order_statistics_equal_numpy(case, rng):
    values = {
        "random": rng.integers(0, 9000, size=(48, 64)).astype(np.uint16),
        "zeros": np.zeros((5, 7), np.uint16),
        "extremes": np.array([[0, 65535, 65535, 3]], np.uint16),
        "odd": rng.integers(100, 200, size=(3, 5)).astype(np.uint16),
    }[case]
    hist = _Histogram(values)
    flat = np.sort(values.ravel())
    assert (hist.min, hist.max) == (flat[0], flat[-1])
    assert hist.median() == np.median(values)
    assert [hist.at(r) for r in (0, len(flat) // 3, len(flat) - 1)] == [flat[0], flat[len(flat) // 3], flat[-1]]
