"""sensors.image_from_cdr / compressed_from_cdr against rclpy's own (de)serialisation: the node's
raw subscriptions must see exactly what a deserialised message would give, for every encoding
the node accepts, any frame_id, padded rows and both byte orders."""
from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from utptrack_ros.sensors import (
    AUX_ENCODINGS,
    RGB_ENCODINGS,
    SensorError,
    aux_to_array,
    compressed_from_cdr,
    compressed_to_aux,
    compressed_to_rgb,
    fill_compressed,
    fill_image,
    image_from_cdr,
    image_to_array,
    image_to_rgb,
)
from utptrack_ros.types import Modality

pytest.importorskip("rclpy")
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

pytestmark = pytest.mark.ros

_DTYPE = {"rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4), "mono8": (np.uint8, 1),
          "mono16": (np.uint16, 1), "8UC1": (np.uint8, 1), "8UC3": (np.uint8, 3), "16UC1": (np.uint16, 1), "32FC1": (np.float32, 1)}


def _array(encoding: str, h: int = 7, w: int = 5, seed: int = 0) -> np.ndarray:
    dtype, c = _DTYPE[encoding]
    rng = np.random.default_rng(seed)
    if dtype is np.float32:
        a = rng.uniform(0.2, 9.0, (h, w)).astype(np.float32)
        a[0, 0] = np.nan
        return a
    a = rng.integers(0, np.iinfo(dtype).max, (h, w, c), dtype=dtype, endpoint=True)
    return a[:, :, 0] if c == 1 else a


def _ros_image(arr: np.ndarray, encoding: str, frame_id: str = "cam", stamp=(12, 345), pad: int = 0, big: bool = False) -> Image:
    """A real sensor_msgs/Image, optionally with row padding and big-endian pixels."""
    msg = fill_image(Image(), arr, encoding)
    if pad or big:
        a = arr.astype(arr.dtype.newbyteorder(">")) if big else arr
        rows = np.ascontiguousarray(a).reshape(a.shape[0], -1).view(np.uint8)
        rows = np.concatenate([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)], axis=1)
        msg.step, msg.is_bigendian = rows.shape[1], int(big)
        msg.data = rows.tobytes()
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    return msg


def _same_fields(parsed, ref) -> None:
    assert (parsed.header.stamp.sec, parsed.header.stamp.nanosec) == (ref.header.stamp.sec, ref.header.stamp.nanosec)
    assert parsed.header.frame_id == ref.header.frame_id
    for name in ("height", "width", "encoding", "is_bigendian", "step"):
        assert getattr(parsed, name) == getattr(ref, name), name
    assert bytes(parsed.data) == bytes(ref.data)


ENCODINGS = sorted(set(RGB_ENCODINGS) | {e for v in AUX_ENCODINGS.values() for e in v})
CASES = [(e, pad, big) for e in ENCODINGS for pad, big in ((0, False), (3, False), (0, True))
         if not (big and np.dtype(_DTYPE[e][0]).itemsize == 1)]  # byte order only matters above 8 bits


@pytest.mark.parametrize("encoding, pad, big", CASES)
def test_image_fields_and_arrays_equal_rclpy(encoding, pad, big):
    arr = _array(encoding)
    raw = serialize_message(_ros_image(arr, encoding, pad=pad, big=big))
    ref = deserialize_message(raw, Image)
    parsed = image_from_cdr(raw)
    _same_fields(parsed, ref)
    np.testing.assert_array_equal(image_to_array(parsed), image_to_array(ref))
    np.testing.assert_array_equal(image_to_array(parsed), arr)
    if encoding in RGB_ENCODINGS:
        np.testing.assert_array_equal(image_to_rgb(parsed), image_to_rgb(ref))
    for modality, accepted in AUX_ENCODINGS.items():
        if encoding in accepted:
            np.testing.assert_array_equal(aux_to_array(parsed, modality), aux_to_array(ref, modality))


@pytest.mark.parametrize("frame_id", ["", "a", "abc", "abcd", "camera_color_optical_frame", "kamera/Ölfarbe/ß"])
def test_frame_ids_of_every_length_keep_the_fields_aligned(frame_id):
    """String lengths move every later field's 4-byte alignment."""
    arr = _array("16UC1", 4, 3)
    raw = serialize_message(_ros_image(arr, "16UC1", frame_id=frame_id, stamp=(-5, 999_999_999)))
    parsed = image_from_cdr(raw)
    _same_fields(parsed, deserialize_message(raw, Image))
    assert parsed.header.frame_id == frame_id and parsed.header.stamp.sec == -5
    np.testing.assert_array_equal(image_to_array(parsed), arr)


def test_640x480_rgb8_is_a_view_of_the_bytes():
    arr = _array("rgb8", 480, 640)
    raw = serialize_message(_ros_image(arr, "rgb8"))
    rgb = image_to_rgb(image_from_cdr(raw))
    np.testing.assert_array_equal(rgb, arr)
    assert np.shares_memory(rgb, np.frombuffer(raw, np.uint8)) and not rgb.flags.writeable


def _big_endian_cdr(msg: Image) -> bytes:
    """The same message in big-endian CDR (encapsulation 0x0000), written field by field here
    (rclpy only writes little endian): alignment counts from after the 4-byte header."""
    out = bytearray(b"\x00\x00\x00\x00")

    def align():
        out.extend(b"\x00" * ((-(len(out) - 4)) % 4))

    def u32(v, fmt=">I"):
        align()
        out.extend(struct.pack(fmt, v))

    def string(s):
        b = s.encode() + b"\x00"
        u32(len(b))
        out.extend(b)

    u32(msg.header.stamp.sec, ">i")
    u32(msg.header.stamp.nanosec)
    string(msg.header.frame_id)
    u32(msg.height)
    u32(msg.width)
    string(msg.encoding)
    out.append(msg.is_bigendian)
    u32(msg.step)
    u32(len(msg.data))
    out.extend(bytes(msg.data))
    return bytes(out)


def test_big_endian_and_xcdr2_encapsulations():
    arr = _array("mono16", 6, 4)
    msg = _ros_image(arr, "mono16", frame_id="ab", big=True)
    parsed = image_from_cdr(_big_endian_cdr(msg))
    assert parsed.header.frame_id == "ab" and (parsed.height, parsed.width, parsed.step) == (6, 4, 8)
    np.testing.assert_array_equal(image_to_array(parsed), arr)
    le = bytearray(serialize_message(msg))
    le[1] = 0x11  # PLAIN_CDR2 little endian: the same layout for this final type
    _same_fields(image_from_cdr(bytes(le)), msg)


def test_truncated_and_unknown_bytes_are_refused_with_a_reason():
    raw = serialize_message(_ros_image(_array("rgb8"), "rgb8"))
    with pytest.raises(SensorError, match="truncated at data"):
        image_from_cdr(raw[:-1])
    with pytest.raises(SensorError, match="truncated at header.frame_id"):
        image_from_cdr(raw[:14])
    with pytest.raises(SensorError, match="too short"):
        image_from_cdr(b"\x00\x01")
    bad = bytearray(raw)
    bad[1] = 0x03  # parameter-list CDR: not what a ROS image is
    with pytest.raises(SensorError, match="unsupported CDR encapsulation 0x0003"):
        image_from_cdr(bytes(bad))


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_equals_rclpy(fmt):
    rgb = _array("rgb8", 24, 32)
    msg = fill_compressed(CompressedImage(), rgb, fmt)
    msg.header.frame_id, msg.header.stamp.sec = "cam", 7
    raw = serialize_message(msg)
    ref, parsed = deserialize_message(raw, CompressedImage), compressed_from_cdr(raw)
    assert parsed.format == ref.format == fmt and parsed.header.frame_id == "cam" and parsed.header.stamp.sec == 7
    assert bytes(parsed.data) == bytes(ref.data)
    np.testing.assert_array_equal(compressed_to_rgb(parsed), compressed_to_rgb(ref))


def test_compressed_depth_equals_rclpy():
    depth = (_array("16UC1", 16, 20) % 5000).astype(np.uint16)
    ok, png = cv2.imencode(".png", depth)
    assert ok
    msg = CompressedImage(format="16UC1; compressedDepth png")
    msg.data = struct.pack("<iff", 0, 0.0, 0.0) + png.tobytes()
    raw = serialize_message(msg)
    np.testing.assert_array_equal(compressed_to_aux(compressed_from_cdr(raw), Modality.DEPTH), depth)
    np.testing.assert_array_equal(compressed_to_aux(compressed_from_cdr(raw), Modality.DEPTH),
                                  compressed_to_aux(deserialize_message(raw, CompressedImage), Modality.DEPTH))
