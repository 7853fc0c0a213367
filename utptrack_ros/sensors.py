"""``sensor_msgs`` images -> numpy arrays (and back), duck-typed: no rclpy import.

Works on live rclpy messages and on messages read from bags with ``rosbags`` alike, as long as
they have the ``sensor_msgs/Image`` fields (``height, width, encoding, is_bigendian, step,
data``) or the ``sensor_msgs/CompressedImage`` fields (``format, data``). ``data`` may be an
``array.array``, ``bytes`` or a numpy array; the RGB path is zero-copy for ``rgb8``.

What each modality accepts (ros-conventions.md 2.2, REP 118):

* RGB: ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, ``mono8``, ``mono16`` (scaled to 8 bit),
  ``8UC1``/``8UC3`` (taken as mono/RGB); CompressedImage ``jpeg``/``png``.
* depth: ``16UC1``/``mono16`` millimetres (0 = invalid) or ``32FC1`` metres (NaN/0 = invalid);
  CompressedImage ``"16UC1; compressedDepth png"`` (lossless) and ``"32FC1; compressedDepth png"``
  (quantised inverse depth, decoded with the header's ``depthQuantA/B``), or plain png.
* thermal: ``mono8``, ``mono16``/``16UC1`` (raw counts), ``rgb8``/``bgr8`` (driver-colourised).
* event: a rendered event frame ``rgb8``/``bgr8``/``mono8``.

Bad input raises :class:`SensorError` (an :class:`~utptrack_ros.errors.InputError`) naming
what arrived and what is accepted.

Serialized messages: :func:`image_from_cdr` / :func:`compressed_from_cdr` read the CDR bytes a
raw subscription (``create_subscription(..., raw=True)``) or a bag hands over into light
objects with the same fields (``data`` is a zero-copy, read-only view of those bytes), so the
node skips rclpy's deserialisation and the conversions above stay the one home of encoding logic.
"""
from __future__ import annotations

import array
import struct
from typing import Any, Optional

import numpy as np

from .errors import InputError
from .types import Modality

__all__ = [
    "SensorError",
    "image_to_array",
    "image_to_rgb",
    "aux_to_array",
    "compressed_to_rgb",
    "compressed_to_aux",
    "fill_image",
    "fill_compressed",
    "stamp_to_ns",
    "image_from_cdr",
    "compressed_from_cdr",
    "CdrImage",
    "CdrCompressedImage",
    "RGB_ENCODINGS",
    "AUX_ENCODINGS",
]


class SensorError(InputError):
    """A sensor message cannot be turned into the array the tracker needs."""


# encoding -> (numpy dtype, channels)
_LAYOUT: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}

RGB_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC1", "8UC3")
AUX_ENCODINGS: dict[Modality, tuple[str, ...]] = {
    Modality.DEPTH: ("16UC1", "mono16", "32FC1"),
    Modality.THERMAL: ("mono8", "mono16", "16UC1", "8UC1", "rgb8", "bgr8"),
    Modality.EVENT: ("rgb8", "bgr8", "mono8", "8UC1"),
}


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` (``sec``, ``nanosec``) -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _buffer(data: Any) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def image_to_array(msg: Any) -> np.ndarray:
    """``sensor_msgs/Image`` -> (H, W) or (H, W, C) array of the encoding's dtype (no colour change).

    Row padding (``step`` > width * pixel size) and big-endian data are handled; the result is
    a view of ``msg.data`` when no conversion is needed.
    """
    encoding = str(msg.encoding)
    if encoding not in _LAYOUT:
        raise SensorError(f"unsupported image encoding {encoding!r}; supported: {sorted(_LAYOUT)}")
    dtype, channels = _LAYOUT[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise SensorError(f"empty {encoding} image: {width}x{height}")
    row = width * channels * dtype.itemsize
    if step < row:
        raise SensorError(f"{encoding} image {width}x{height}: step {step} < {row} bytes per row")
    buf = _buffer(msg.data)
    if buf.size < step * height:
        raise SensorError(
            f"{encoding} image {width}x{height} (step {step}) needs {step * height} bytes, got {buf.size}"
        )
    rows = buf[: step * height].reshape(height, step)[:, :row]
    if step != row or (rows.ctypes.data % dtype.itemsize):
        rows = np.ascontiguousarray(rows)
    big = bool(msg.is_bigendian)
    out = rows.view(dtype.newbyteorder(">") if big and dtype.itemsize > 1 else dtype)
    out = out.reshape(height, width, channels) if channels > 1 else out.reshape(height, width)
    if big and dtype.itemsize > 1:
        out = out.astype(dtype)
    return out


def _to_rgb(arr: np.ndarray, encoding: str) -> np.ndarray:
    if encoding in ("rgb8", "8UC3"):
        return arr
    if encoding == "bgr8":
        return np.ascontiguousarray(arr[:, :, ::-1])
    if encoding == "rgba8":
        return np.ascontiguousarray(arr[:, :, :3])
    if encoding == "bgra8":
        return np.ascontiguousarray(arr[:, :, 2::-1])
    if encoding in ("mono8", "8UC1"):
        return np.repeat(arr[:, :, None], 3, axis=2)
    if encoding == "mono16":
        return np.repeat((arr >> 8).astype(np.uint8)[:, :, None], 3, axis=2)
    raise SensorError(f"encoding {encoding!r} is not a colour image; RGB input accepts {RGB_ENCODINGS}")


def image_to_rgb(msg: Any) -> np.ndarray:
    """``sensor_msgs/Image`` -> (H, W, 3) uint8 RGB (the tracker's image input)."""
    encoding = str(msg.encoding)
    if encoding not in RGB_ENCODINGS:
        raise SensorError(f"unsupported RGB image encoding {encoding!r}; supported: {list(RGB_ENCODINGS)}")
    return _to_rgb(image_to_array(msg), encoding)


def aux_to_array(msg: Any, modality: Modality) -> np.ndarray:
    """``sensor_msgs/Image`` of an auxiliary stream -> the array ``Tracker.track(aux=...)`` takes.

    depth: (H, W) uint16 mm or float32 m; thermal: (H, W) uint8/uint16 or (H, W, 3) uint8 RGB;
    event: (H, W, 3) or (H, W) uint8.
    """
    modality = Modality(modality)
    if modality not in AUX_ENCODINGS:
        raise SensorError(f"modality {modality.value!r} has no auxiliary stream")
    encoding = str(msg.encoding)
    if encoding not in AUX_ENCODINGS[modality]:
        raise SensorError(
            f"unsupported {modality.value} encoding {encoding!r}; supported: {list(AUX_ENCODINGS[modality])}"
        )
    arr = image_to_array(msg)
    if encoding == "bgr8":
        return np.ascontiguousarray(arr[:, :, ::-1])
    return arr


# -- compressed ---------------------------------------------------------------------------

def _cv2():
    try:
        import cv2  # noqa: PLC0415 - imported on the first compressed frame only, with a clear error if absent
    except ImportError as err:  # pragma: no cover - opencv is a hard dependency of the package
        raise SensorError("decoding CompressedImage needs OpenCV: pip install opencv-contrib-python") from err
    return cv2


def _decode(data: Any, flags: int, what: str) -> np.ndarray:
    cv2 = _cv2()
    buf = _buffer(data)
    if buf.size == 0:
        raise SensorError(f"{what}: empty data")
    out = cv2.imdecode(buf, flags)
    if out is None:
        raise SensorError(f"{what}: could not decode {buf.size} bytes")
    return out


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (jpeg/png; image_transport format strings) -> (H, W, 3) RGB."""
    cv2 = _cv2()
    fmt = str(msg.format).lower()
    if "compresseddepth" in fmt:
        raise SensorError(f"CompressedImage format {msg.format!r} is depth, not a colour image")
    if not any(k in fmt for k in ("jpeg", "jpg", "png")) and fmt.strip():
        raise SensorError(f"unsupported CompressedImage format {msg.format!r}; supported: jpeg, png")
    img = _decode(msg.data, cv2.IMREAD_COLOR, f"CompressedImage ({msg.format!r})")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _compressed_depth(msg: Any) -> np.ndarray:
    """compressed_depth_image_transport payload: 12-byte ConfigHeader + PNG (RVL unsupported)."""
    cv2 = _cv2()
    fmt = str(msg.format)
    encoding = fmt.split(";")[0].strip()
    if "rvl" in fmt.lower():
        raise SensorError(f"compressedDepth RVL ({fmt!r}) is not supported; publish png compressedDepth")
    buf = _buffer(msg.data)
    if buf.size <= 12:
        raise SensorError(f"compressedDepth message ({fmt!r}) has only {buf.size} bytes")
    _, quant_a, quant_b = struct.unpack("<iff", buf[:12].tobytes())
    raw = _decode(buf[12:], cv2.IMREAD_UNCHANGED, f"compressedDepth ({fmt!r})")
    if encoding in ("16UC1", "mono16"):
        if raw.dtype != np.uint16:
            raise SensorError(f"compressedDepth {encoding}: PNG is {raw.dtype}, expected uint16")
        return raw
    if encoding == "32FC1":
        inv = raw.astype(np.float32)
        with np.errstate(divide="ignore"):
            depth = np.where(raw > 0, quant_a / (inv - quant_b), np.nan).astype(np.float32)
        return depth
    raise SensorError(f"compressedDepth encoding {encoding!r} unsupported; use 16UC1 or 32FC1")


def compressed_to_aux(msg: Any, modality: Modality) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` of an auxiliary stream -> the tracker's aux array."""
    cv2 = _cv2()
    modality = Modality(modality)
    fmt = str(msg.format).lower()
    if modality is Modality.DEPTH:
        if "compresseddepth" in fmt:
            return _compressed_depth(msg)
        img = _decode(msg.data, cv2.IMREAD_UNCHANGED, f"depth CompressedImage ({msg.format!r})")
        if img.ndim != 2 or img.dtype != np.uint16:
            raise SensorError(f"depth CompressedImage must decode to 16-bit single channel, got {img.dtype} {img.shape}")
        return img
    if modality not in AUX_ENCODINGS:
        raise SensorError(f"modality {modality.value!r} has no auxiliary stream")
    img = _decode(msg.data, cv2.IMREAD_UNCHANGED, f"{modality.value} CompressedImage ({msg.format!r})")
    if img.ndim == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return img


# -- serialized (CDR) messages -> light message objects ----------------------------------------

class CdrStamp:
    """``builtin_interfaces/Time`` fields."""

    __slots__ = ("sec", "nanosec")

    def __init__(self, sec: int, nanosec: int) -> None:
        self.sec, self.nanosec = sec, nanosec


class CdrHeader:
    """``std_msgs/Header`` fields."""

    __slots__ = ("stamp", "frame_id")

    def __init__(self, stamp: CdrStamp, frame_id: str) -> None:
        self.stamp, self.frame_id = stamp, frame_id


class CdrImage:
    """``sensor_msgs/Image`` fields read from CDR; ``data`` views the serialized bytes."""

    __slots__ = ("header", "height", "width", "encoding", "is_bigendian", "step", "data")
    header: CdrHeader
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray


class CdrCompressedImage:
    """``sensor_msgs/CompressedImage`` fields read from CDR; ``data`` views the serialized bytes."""

    __slots__ = ("header", "format", "data")
    header: CdrHeader
    format: str
    data: np.ndarray


# Encapsulation kinds whose layout for these (final, no 8-byte member) types is plain CDR with
# 4-byte alignment: CDR / XCDR2 PLAIN, big and little endian (DDS-XTypes 7.6.3.1.2).
_CDR_KINDS = {0x0000: ">", 0x0001: "<", 0x0010: ">", 0x0011: "<"}


class _CdrReader:
    __slots__ = ("buf", "pos", "end", "u32", "i32", "what")

    def __init__(self, buf: Any, what: str) -> None:
        self.buf = memoryview(buf).cast("B")
        self.what = what
        self.end = len(self.buf)
        if self.end < 4:
            raise SensorError(f"{what}: {self.end} bytes, too short for a CDR message")
        kind = (self.buf[0] << 8) | self.buf[1]
        order = _CDR_KINDS.get(kind)
        if order is None:
            raise SensorError(f"{what}: unsupported CDR encapsulation 0x{kind:04x}")
        self.u32, self.i32 = struct.Struct(order + "I"), struct.Struct(order + "i")
        self.pos = 4  # alignment counts from the end of the encapsulation header

    def _need(self, n: int, field: str) -> None:
        if self.pos + n > self.end:
            raise SensorError(f"{self.what}: truncated at {field} (needs {n} bytes at offset {self.pos}, message has {self.end})")

    def _align4(self) -> None:
        self.pos += (-(self.pos - 4)) % 4

    def uint32(self, field: str) -> int:
        self._align4()
        self._need(4, field)
        v = self.u32.unpack_from(self.buf, self.pos)[0]
        self.pos += 4
        return v

    def int32(self, field: str) -> int:
        self._align4()
        self._need(4, field)
        v = self.i32.unpack_from(self.buf, self.pos)[0]
        self.pos += 4
        return v

    def uint8(self, field: str) -> int:
        self._need(1, field)
        v = self.buf[self.pos]
        self.pos += 1
        return v

    def string(self, field: str) -> str:
        n = self.uint32(field)
        self._need(n, field)
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        if n and raw[n - 1] == 0:  # the length counts the terminating NUL
            raw = raw[: n - 1]
        return bytes(raw).decode("utf-8", errors="replace")

    def octets(self, field: str) -> np.ndarray:
        n = self.uint32(field)
        self._need(n, field)
        out = np.frombuffer(self.buf, dtype=np.uint8, count=n, offset=self.pos)
        self.pos += n
        return out

    def header(self) -> CdrHeader:
        sec = self.int32("header.stamp.sec")
        nanosec = self.uint32("header.stamp.nanosec")
        return CdrHeader(CdrStamp(sec, nanosec), self.string("header.frame_id"))


def image_from_cdr(buf: Any) -> CdrImage:
    """Serialized ``sensor_msgs/Image`` (bytes with the 4-byte CDR encapsulation header, as a raw
    subscription delivers it) -> :class:`CdrImage`. ``data`` is a read-only view of ``buf``, no
    copy. Truncated or unknown encodings of the bytes raise :class:`SensorError`."""
    r = _CdrReader(buf, "serialized sensor_msgs/Image")
    msg = CdrImage()
    msg.header = r.header()
    msg.height = r.uint32("height")
    msg.width = r.uint32("width")
    msg.encoding = r.string("encoding")
    msg.is_bigendian = r.uint8("is_bigendian")
    msg.step = r.uint32("step")
    msg.data = r.octets("data")
    return msg


def compressed_from_cdr(buf: Any) -> CdrCompressedImage:
    """Serialized ``sensor_msgs/CompressedImage`` -> :class:`CdrCompressedImage` (``data`` a view)."""
    r = _CdrReader(buf, "serialized sensor_msgs/CompressedImage")
    msg = CdrCompressedImage()
    msg.header = r.header()
    msg.format = r.string("format")
    msg.data = r.octets("data")
    return msg


# -- arrays -> messages (publishers, tests, benchmarks, bag writers) ------------------------

_ENCODING_FOR = {(np.dtype(np.uint8), 3): "rgb8", (np.dtype(np.uint8), 1): "mono8",
                 (np.dtype(np.uint16), 1): "16UC1", (np.dtype(np.float32), 1): "32FC1"}


def fill_image(msg: Any, arr: np.ndarray, encoding: Optional[str] = None) -> Any:
    """Fill a ``sensor_msgs/Image`` (rclpy or rosbags) from an array; returns ``msg``.

    ``encoding`` defaults from the dtype/channels (rgb8, mono8, 16UC1, 32FC1); ``bgr8`` etc. must
    be named (the array is taken as already in that channel order). Header is left alone.
    """
    arr = np.ascontiguousarray(arr)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if encoding is None:
        try:
            encoding = _ENCODING_FOR[(arr.dtype, channels)]
        except KeyError:
            raise SensorError(f"no default encoding for {arr.dtype} with {channels} channels") from None
    if encoding in _LAYOUT:
        dtype, want = _LAYOUT[encoding]
        if arr.dtype != dtype or want != channels:
            raise SensorError(f"{encoding} needs {want}-channel {dtype}, got {channels}-channel {arr.dtype}")
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(arr.shape[1] * channels * arr.dtype.itemsize)
    msg.data = _data_for(msg, arr.view(np.uint8).reshape(-1))
    return msg


def fill_compressed(msg: Any, arr: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> Any:
    """Fill a ``sensor_msgs/CompressedImage`` from an RGB (H, W, 3) or mono uint8 array."""
    cv2 = _cv2()
    img = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR) if arr.ndim == 3 else arr
    ext = ".png" if "png" in fmt else ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext == ".jpg" else []
    ok, enc = cv2.imencode(ext, img, params)
    if not ok:
        raise SensorError(f"could not encode a {arr.shape} {arr.dtype} image as {fmt}")
    msg.format = fmt
    msg.data = _data_for(msg, enc.reshape(-1))
    return msg


def _data_for(msg: Any, flat_u8: np.ndarray) -> Any:
    """What the message class stores for ``uint8[]``: rclpy wants array('B'), rosbags ndarray."""
    current = getattr(msg, "data", None)
    if isinstance(current, np.ndarray):
        return flat_u8.copy()
    out = array.array("B")
    out.frombytes(flat_u8.tobytes())
    return out
