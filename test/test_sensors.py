"""sensors.py: every supported encoding to the arrays the tracker takes, on duck-typed messages
(SimpleNamespace, like a rosbags message) and with real sensor_msgs classes when available."""
from __future__ import annotations

import array
import struct
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from utptrack_ros.errors import InputError
from utptrack_ros.sensors import (
    SensorError, aux_to_array, compressed_to_aux, compressed_to_rgb, fill_compressed, fill_image, image_to_array,
    image_to_rgb, stamp_to_ns,
)
from utptrack_ros.types import Modality


def img(arr: np.ndarray, encoding: str, pad: int = 0, big: bool = False) -> SimpleNamespace:
    """A duck-typed sensor_msgs/Image with optional row padding and byte order."""
    a = arr.astype(arr.dtype.newbyteorder(">")) if big else arr
    rows = a.reshape(a.shape[0], -1).view(np.uint8)
    if pad:
        rows = np.concatenate([rows, np.full((rows.shape[0], pad), 7, np.uint8)], axis=1)
    return SimpleNamespace(height=arr.shape[0], width=arr.shape[1], encoding=encoding, is_bigendian=int(big),
                           step=rows.shape[1], data=array.array("B", rows.tobytes()))


@pytest.fixture
def rgb(rng):
    return rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("pad", [0, 3])
def test_rgb_encodings(rgb, pad):
    assert np.array_equal(image_to_rgb(img(rgb, "rgb8", pad)), rgb)
    assert np.array_equal(image_to_rgb(img(rgb[:, :, ::-1].copy(), "bgr8", pad)), rgb)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    assert np.array_equal(image_to_rgb(img(rgba, "rgba8", pad)), rgb)
    bgra = np.concatenate([rgb[:, :, ::-1], np.zeros(rgb.shape[:2] + (1,), np.uint8)], axis=2)
    assert np.array_equal(image_to_rgb(img(bgra, "bgra8", pad)), rgb)
    mono = rgb[:, :, 0].copy()
    assert np.array_equal(image_to_rgb(img(mono, "mono8", pad)), np.repeat(mono[:, :, None], 3, axis=2))
    m16 = mono.astype(np.uint16) * 256 + 17
    assert np.array_equal(image_to_rgb(img(m16, "mono16", pad)), np.repeat(mono[:, :, None], 3, axis=2))


def test_rgb8_is_zero_copy(rgb):
    msg = img(rgb, "rgb8")
    out = image_to_rgb(msg)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))


@pytest.mark.parametrize("big", [False, True])
def test_depth_units_and_byte_order(big):
    mm = np.array([[0, 1500], [65535, 3000]], np.uint16)
    out = aux_to_array(img(mm, "16UC1", big=big), Modality.DEPTH)
    assert out.dtype == np.uint16 and np.array_equal(out, mm)
    m = np.array([[np.nan, 1.5], [0.0, 3.25]], np.float32)
    out = aux_to_array(img(m, "32FC1", pad=4, big=big), Modality.DEPTH)
    assert out.dtype == np.float32 and np.array_equal(out, m, equal_nan=True)


def test_thermal_and_event(rgb):
    counts = np.arange(35, dtype=np.uint16).reshape(5, 7) * 1000
    assert np.array_equal(aux_to_array(img(counts, "mono16"), Modality.THERMAL), counts)
    assert np.array_equal(aux_to_array(img(rgb[:, :, 0].copy(), "mono8"), Modality.THERMAL), rgb[:, :, 0])
    assert np.array_equal(aux_to_array(img(rgb[:, :, ::-1].copy(), "bgr8"), Modality.THERMAL), rgb)
    assert np.array_equal(aux_to_array(img(rgb, "rgb8"), Modality.EVENT), rgb)


@pytest.mark.parametrize(
    "encoding, modality, text",
    [("yuv422", None, "unsupported"), ("32FC1", None, "unsupported RGB"), ("rgb8", Modality.DEPTH, "unsupported depth"),
     ("32FC1", Modality.THERMAL, "unsupported thermal"), ("16UC1", Modality.EVENT, "unsupported event")],
)
def test_unsupported_encodings_say_what_is_accepted(encoding, modality, text):
    msg = SimpleNamespace(height=2, width=2, encoding=encoding, is_bigendian=0, step=8, data=bytes(16))
    with pytest.raises(SensorError, match=text) as err:
        image_to_rgb(msg) if modality is None else aux_to_array(msg, modality)
    assert "supported" in str(err.value)
    assert isinstance(err.value, InputError) and isinstance(err.value, ValueError)


def test_short_data_and_bad_step_are_refused(rgb):
    msg = img(rgb, "rgb8")
    msg.data = msg.data[:-1]
    with pytest.raises(SensorError, match="needs 105 bytes, got 104"):
        image_to_rgb(msg)
    msg = img(rgb, "rgb8")
    msg.step = 20
    with pytest.raises(SensorError, match="step 20 < 21"):
        image_to_rgb(msg)
    with pytest.raises(SensorError, match="empty"):
        image_to_array(SimpleNamespace(height=0, width=3, encoding="mono8", is_bigendian=0, step=3, data=b""))


def test_compressed_rgb_png_and_jpeg(rgb):
    png = fill_compressed(SimpleNamespace(format="", data=None), rgb, "png")
    assert np.array_equal(compressed_to_rgb(png), rgb)
    big = np.full((32, 32, 3), (200, 30, 60), np.uint8)
    jpg = fill_compressed(SimpleNamespace(format="", data=None), big, "rgb8; jpeg compressed bgr8", quality=95)
    assert np.abs(compressed_to_rgb(jpg).astype(int) - big).max() <= 6  # lossy, but channels in order
    with pytest.raises(SensorError, match="could not decode"):
        compressed_to_rgb(SimpleNamespace(format="jpeg", data=b"not a jpeg"))
    with pytest.raises(SensorError, match="unsupported CompressedImage format"):
        compressed_to_rgb(SimpleNamespace(format="webp", data=b"xx"))


def test_compressed_depth_16uc1_and_32fc1():
    mm = np.array([[0, 1500, 2000], [4000, 0, 65535]], np.uint16)
    ok, png = cv2.imencode(".png", mm)
    payload = struct.pack("<iff", 0, 0.0, 0.0) + png.tobytes()
    out = compressed_to_aux(SimpleNamespace(format="16UC1; compressedDepth png", data=payload), Modality.DEPTH)
    assert out.dtype == np.uint16 and np.array_equal(out, mm)
    # 32FC1: quantised inverse depth v = A / d + B  ->  d = A / (v - B); 0 = invalid
    a, b = 1000.0, 10.0
    depth = np.array([[1.0, 2.0], [0.0, 4.0]], np.float32)
    v = np.where(depth > 0, a / np.where(depth > 0, depth, 1) + b, 0).astype(np.uint16)
    ok, png = cv2.imencode(".png", v)
    payload = struct.pack("<iff", 0, a, b) + png.tobytes()
    out = compressed_to_aux(SimpleNamespace(format="32FC1; compressedDepth png", data=payload), Modality.DEPTH)
    np.testing.assert_allclose(out[[0, 0, 1], [0, 1, 1]], [1.0, 2.0, 4.0], rtol=1e-3)
    assert np.isnan(out[1, 0])
    with pytest.raises(SensorError, match="RVL"):
        compressed_to_aux(SimpleNamespace(format="16UC1; compressedDepth rvl", data=payload), Modality.DEPTH)


def test_fill_image_roundtrip_with_real_messages(rgb):
    sensor_msgs = pytest.importorskip("sensor_msgs.msg")
    for arr, enc in ((rgb, None), (rgb[:, :, 0].copy(), None), (np.arange(35, dtype=np.uint16).reshape(5, 7), None),
                     (np.linspace(0, 5, 35, dtype=np.float32).reshape(5, 7), None)):
        msg = fill_image(sensor_msgs.Image(), arr, enc)
        assert np.array_equal(image_to_array(msg), arr)
    with pytest.raises(SensorError, match="needs 3-channel"):
        fill_image(sensor_msgs.Image(), rgb[:, :, 0].copy(), "rgb8")
    stamp = SimpleNamespace(sec=12, nanosec=34)
    assert stamp_to_ns(stamp) == 12_000_000_034
