"""rosbag2 layout of one sequence (docs/architecture.md, "Sequences"): read and write with ``rosbags``.

```
/camera/color/image_raw    sensor_msgs/msg/Image rgb8        /prompt       std_msgs/msg/String
/camera/color/camera_info  sensor_msgs/msg/CameraInfo        /groundtruth  geometry_msgs/msg/PolygonStamped
/camera/depth/image_raw    sensor_msgs/msg/Image 16UC1 (mm)                (x1,y1),(x2,y2); empty = absent
/thermal/image_raw         sensor_msgs/msg/Image mono16
/event/image_raw           sensor_msgs/msg/Image rgb8 (rendered event frame)
```
Every image, camera_info and ground-truth message of frame ``i`` carries the frame's stamp in its
header and as its bag time; the prompt is written at the first frame's stamp. The camera_info
(the colour camera's, which the aux images are registered to) is written when the sequence knows
its camera (``data.camera``) and read back into ``attributes["camera_info"]`` (first message). The sequence name, attributes and
per-frame info travel in the bag metadata (``custom_data["utptrack.sequence"]``, JSON), so a
generated bag loads back with the same attributes. Bags from elsewhere load without it.
This module imports no ROS package: messages are (de)serialised by ``rosbags``.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Union

import numpy as np
import yaml

from ..sensors import (
    AUX_ENCODINGS,
    RGB_ENCODINGS,
    SensorError,
    aux_to_array,
    compressed_to_aux,
    compressed_to_rgb,
    image_to_rgb,
    stamp_to_ns,
)
from ..types import Modality
from .camera import IDENTITY, camera_info_fields, camera_info_from_message
from .errors import FrameCountError, MissingTopicError, SequenceError, SequenceFormatError, UnsupportedMessageError
from .folder import json_default
from .sequence import AUX_MODALITIES, ArrayFrames, ModalityLike, TrackingSequence, as_modality

PathLike = Union[str, Path]
CUSTOM_DATA_KEY = "utptrack.sequence"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
STRING = "std_msgs/msg/String"
POLYGON = "geometry_msgs/msg/PolygonStamped"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
FRAME_ID = "camera_color_optical_frame"  # aux images are registered to the colour camera


@dataclass(frozen=True)
class BagTopics:
    """Topic names of the bag layout; ``None`` = do not read / write that stream."""

    color: str = "/camera/color/image_raw"
    depth: Optional[str] = "/camera/depth/image_raw"
    thermal: Optional[str] = "/thermal/image_raw"
    event: Optional[str] = "/event/image_raw"
    prompt: Optional[str] = "/prompt"
    groundtruth: Optional[str] = "/groundtruth"
    camera_info: Optional[str] = "/camera/color/camera_info"

    def aux(self, modality: Modality) -> Optional[str]:
        return getattr(self, modality.value)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Optional[str]]) -> "BagTopics":
        """Defaults overridden by ``mapping`` (keys: field names); unknown keys raise ``SequenceError``."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - names)
        if unknown:
            raise SequenceError(f"unknown topic keys {unknown}; expected some of {sorted(names)}")
        if mapping.get("color", "x") is None:
            raise SequenceError("the color topic cannot be None")
        overrides: dict[str, Any] = dict(mapping)
        return replace(cls(), **overrides)


def bag_typestore() -> Any:
    """The ``rosbags`` type store of the ROS distribution the project targets (kilted)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def open_bag_reader(path: PathLike) -> Any:
    """An opened ``rosbags`` ``AnyReader`` over one bag (directory, or a single ``.mcap`` / ``.db3``
    file), messages decoded with :func:`bag_typestore`; the caller closes it.

    Raises:
        SequenceFormatError: the bag does not exist or cannot be opened (corrupt metadata or storage).
    """
    from rosbags.highlevel import AnyReader, AnyReaderError
    from rosbags.rosbag2 import ReaderError

    path = Path(path)
    if not path.exists():
        raise SequenceFormatError(f"{path}: bag does not exist")
    try:
        reader = AnyReader([path], default_typestore=bag_typestore())
        reader.open()
    except (AnyReaderError, ReaderError, OSError, ValueError, KeyError) as err:
        raise SequenceFormatError(f"{path}: cannot open bag ({type(err).__name__}: {err})") from err
    return reader


def bag_topic_types(path: PathLike) -> dict[str, str]:
    """``{topic: message type}`` of a bag (reads only its metadata).

    Raises:
        SequenceFormatError: the bag does not exist or cannot be opened.
    """
    reader = open_bag_reader(path)
    try:
        return {c.topic: c.msgtype for c in reader.connections}
    finally:
        reader.close()


# -- messages <-> arrays ----------------------------------------------------------------------
def image_from_message(msg: Any, msgtype: str, topic: str, modality: Optional[Modality] = None) -> np.ndarray:
    """Array from a decoded ``sensor_msgs`` Image/CompressedImage, decoded exactly as the node
    decodes it (``utptrack_ros.sensors``): (H, W, 3) RGB for the colour topic (``modality`` None),
    the tracker's aux array otherwise; ``32FC1`` depth in metres becomes uint16 millimetres
    (NaN -> 0), the unit a TrackingSequence stores."""
    if msgtype != COMPRESSED:
        allowed = RGB_ENCODINGS if modality is None else AUX_ENCODINGS[modality]
        if msg.encoding not in allowed:
            raise UnsupportedMessageError(f"{topic}: image encoding {msg.encoding!r} is not supported "
                                          f"(supported: {list(allowed)})")
    try:
        if modality is None:
            image = compressed_to_rgb(msg) if msgtype == COMPRESSED else image_to_rgb(msg)
        else:
            image = compressed_to_aux(msg, modality) if msgtype == COMPRESSED else aux_to_array(msg, modality)
    except SensorError as err:
        raise SequenceFormatError(f"{topic}: {err}") from err
    if image.dtype == np.float32:
        mm = np.nan_to_num(image * 1000.0, nan=0.0, posinf=0.0, neginf=0.0)
        image = np.clip(np.round(mm), 0, 65535).astype(np.uint16)
    return np.ascontiguousarray(image)


def _header(ts: Any, stamp_ns: int, frame_id: str) -> Any:
    t = ts.types
    return t["std_msgs/msg/Header"](
        stamp=t["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=frame_id)


def image_message(ts: Any, image: np.ndarray, encoding: str, stamp_ns: int, frame_id: str = FRAME_ID) -> Any:
    """``sensor_msgs/msg/Image`` (rosbags class) from an array (rgb8 / 16UC1 / mono16 ...)."""
    image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    return ts.types[IMAGE](header=_header(ts, stamp_ns, frame_id), height=h, width=w, encoding=encoding,
                           is_bigendian=0, step=w * (image.shape[2] if image.ndim == 3 else 1) * image.itemsize,
                           data=image.reshape(-1).view(np.uint8))


def groundtruth_message(ts: Any, box_xywh: np.ndarray, stamp_ns: int, frame_id: str = FRAME_ID) -> Any:
    """PolygonStamped with points (x1, y1), (x2, y2); no points when the box is not finite (absent)."""
    point = ts.types["geometry_msgs/msg/Point32"]
    points = []
    if np.isfinite(box_xywh).all():
        x, y, w, h = (float(v) for v in box_xywh)
        points = [point(x=x, y=y, z=0.0), point(x=x + w, y=y + h, z=0.0)]
    return ts.types[POLYGON](header=_header(ts, stamp_ns, frame_id),
                             polygon=ts.types["geometry_msgs/msg/Polygon"](points=points))


def camera_info_message(ts: Any, fields: Mapping[str, Any], stamp_ns: int, frame_id: str = FRAME_ID) -> Any:
    """``sensor_msgs/msg/CameraInfo`` (rosbags class) from ``data.camera.camera_info_fields``."""
    roi = fields.get("roi") or {}
    return ts.types[CAMERA_INFO](
        header=_header(ts, stamp_ns, frame_id), height=int(fields["height"]), width=int(fields["width"]),
        distortion_model=str(fields.get("distortion_model", "")), d=np.asarray(fields.get("d") or [], np.float64),
        k=np.asarray(fields["k"], np.float64), r=np.asarray(fields.get("r") or IDENTITY, np.float64),
        p=np.asarray(fields["p"], np.float64), binning_x=int(fields.get("binning_x", 0)),
        binning_y=int(fields.get("binning_y", 0)),
        roi=ts.types["sensor_msgs/msg/RegionOfInterest"](
            x_offset=int(roi.get("x_offset", 0)), y_offset=int(roi.get("y_offset", 0)), height=int(roi.get("height", 0)),
            width=int(roi.get("width", 0)), do_rectify=bool(roi.get("do_rectify", False))))


_AUX_ENCODING = {Modality.DEPTH: "16UC1", Modality.THERMAL: "mono16", Modality.EVENT: "rgb8"}
_AUX_DTYPE = {Modality.DEPTH: np.uint16, Modality.THERMAL: np.uint16, Modality.EVENT: np.uint8}


# -- writing ----------------------------------------------------------------------------------
def write_bag(seq: TrackingSequence, path: PathLike, storage: str = "mcap", *, topics: Optional[BagTopics] = None,
              compression: str = "none", overwrite: bool = False) -> Path:
    """Write ``seq`` as a rosbag2 directory at ``path`` (``storage``: ``"mcap"`` or ``"sqlite3"``).

    ``compression``: ``"none"`` (raw images), ``"message"`` (each message zstd-compressed, any
    storage) or ``"storage"`` (mcap's own zstd chunk compression; mcap only). Readers of both
    rosbags and ROS 2 handle all three.

    Raises:
        SequenceError: ``path`` exists (and ``overwrite`` is False), unknown storage, or an aux frame
            has the wrong dtype for its encoding.
    """
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise SequenceError(f"unknown bag storage {storage!r}; expected 'mcap' or 'sqlite3'")
    modes = {"none": CompressionMode.NONE, "message": CompressionMode.MESSAGE, "storage": CompressionMode.STORAGE}
    if compression not in modes or (compression == "storage" and storage != "mcap"):
        raise SequenceError(f"compression {compression!r} is not available for {storage}; expected 'none', "
                            "'message' or (mcap only) 'storage'")
    out = Path(path)
    if out.exists():
        if not overwrite:
            raise SequenceError(f"{out} already exists (pass overwrite=True to replace it)")
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    topics = topics or BagTopics()
    ts = bag_typestore()
    meta = {"name": seq.name, "attributes": seq.attributes,
            "frame_info": {k: v.tolist() for k, v in seq.frame_info.items()}}
    writer = Writer(out, version=9, storage_plugin=plugins[storage])
    if compression != "none":
        writer.set_compression(modes[compression], CompressionFormat.ZSTD)
    with writer:
        writer.set_custom_data(CUSTOM_DATA_KEY, json.dumps(meta, default=json_default))
        color = writer.add_connection(topics.color, IMAGE, typestore=ts)
        aux_topics = {m: topic for m in seq.modalities if (topic := topics.aux(m))}
        aux = {m: writer.add_connection(topic, IMAGE, typestore=ts) for m, topic in aux_topics.items()}
        gt = writer.add_connection(topics.groundtruth, POLYGON, typestore=ts) if topics.groundtruth else None
        camera = camera_info_fields(seq.attributes, seq.image_size) if topics.camera_info else None
        info = writer.add_connection(topics.camera_info, CAMERA_INFO, typestore=ts) if camera and topics.camera_info else None
        if seq.prompt and topics.prompt:
            prompt = writer.add_connection(topics.prompt, STRING, typestore=ts)
            stamp = seq.stamp_ns(0)
            writer.write(prompt, stamp, ts.serialize_cdr(ts.types[STRING](data=seq.prompt), STRING))
        for frame in seq.iter_frames(modalities=list(aux)):
            stamp = frame.stamp_ns
            writer.write(color, stamp, ts.serialize_cdr(image_message(ts, frame.rgb, "rgb8", stamp), IMAGE))
            if info is not None and camera is not None:
                writer.write(info, stamp, ts.serialize_cdr(camera_info_message(ts, camera, stamp), CAMERA_INFO))
            for modality, connection in aux.items():
                image = frame.aux.get(modality)
                if image is None:
                    continue
                if image.dtype != _AUX_DTYPE[modality]:
                    raise SequenceError(f"{seq.name} frame {frame.index}: {modality.value} must be "
                                        f"{np.dtype(_AUX_DTYPE[modality]).name}, got {image.dtype}")
                msg = image_message(ts, image, _AUX_ENCODING[modality], stamp)
                writer.write(connection, stamp, ts.serialize_cdr(msg, IMAGE))
            if gt is not None:
                writer.write(gt, stamp, ts.serialize_cdr(groundtruth_message(ts, frame.gt, stamp), POLYGON))
    return out


# -- reading ----------------------------------------------------------------------------------
def _custom_data(path: Path) -> dict[str, Any]:
    meta_file = path / "metadata.yaml"
    if not meta_file.is_file():
        return {}
    try:
        info = yaml.safe_load(meta_file.read_text())["rosbag2_bagfile_information"]
        raw = (info.get("custom_data") or {}).get(CUSTOM_DATA_KEY)
        return json.loads(raw) if raw else {}
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as err:
        raise SequenceFormatError(f"{meta_file}: unreadable bag metadata ({err})") from err


def _nearest(stamps: np.ndarray, stamp: int) -> int:
    k = int(np.searchsorted(stamps, stamp))
    candidates = [c for c in (k - 1, k) if 0 <= c < len(stamps)]
    return min(candidates, key=lambda c: abs(int(stamps[c]) - stamp))


def load_bag(path: PathLike, topics: Union[BagTopics, Mapping[str, Optional[str]], None] = None,
             modalities: Optional[Iterable[ModalityLike]] = None, *, name: Optional[str] = None,
             tolerance_ns: Optional[int] = None) -> TrackingSequence:
    """Load a sequence from a rosbag2 bag (directory, or a single .mcap / .db3 file) into memory.

    Args:
        path: the bag.
        topics: topic names (``BagTopics`` or a mapping overriding some defaults).
        modalities: aux modalities to load; each must be in the bag. None = every aux topic present.
        name: sequence name (default: from the bag metadata, else the bag's file name).
        tolerance_ns: max stamp difference to pair aux / GT messages with an RGB frame
            (default: half the median frame period).

    Raises:
        MissingTopicError: the colour topic, the GT topic (unless ``topics.groundtruth`` is None) or a
            requested modality's topic is not in the bag.
        UnsupportedMessageError: a topic has an unexpected message type or image encoding.
        FrameCountError: a frame has no ground truth, or GT messages do not match frames.
        SequenceFormatError: the bag cannot be opened or decoded.
    """
    path = Path(path)
    topics = topics if isinstance(topics, BagTopics) else BagTopics.from_mapping(topics or {})
    reader = open_bag_reader(path)
    try:
        return _read(reader, path, topics, modalities, name, tolerance_ns)
    finally:
        reader.close()


def _read(reader: Any, path: Path, topics: BagTopics, modalities: Optional[Iterable[ModalityLike]],
          name: Optional[str], tolerance_ns: Optional[int]) -> TrackingSequence:
    available = {c.topic: c.msgtype for c in reader.connections}

    def require(topic: str, what: str) -> None:
        if topic not in available:
            listing = ", ".join(f"{t} ({m})" for t, m in sorted(available.items())) or "none"
            raise MissingTopicError(f"{path}: no {what} topic {topic!r}; the bag has: {listing}")

    def check_type(topic: str, allowed: tuple[str, ...]) -> None:
        if available[topic] not in allowed:
            raise UnsupportedMessageError(f"{path}: topic {topic!r} has type {available[topic]}, "
                                          f"expected {' or '.join(allowed)}")

    require(topics.color, "color")
    check_type(topics.color, (IMAGE, COMPRESSED))
    wanted: dict[Modality, str] = {}  # modality -> its topic
    if modalities is None:
        wanted = {m: topic for m in AUX_MODALITIES if (topic := topics.aux(m)) and topic in available}
    else:
        for requested in modalities:
            m = as_modality(requested)
            topic = topics.aux(m)
            if not topic:
                raise MissingTopicError(f"{path}: {m.value} requested but its topic is set to None")
            require(topic, m.value)
            wanted[m] = topic
    for m, topic in wanted.items():
        check_type(topic, (IMAGE,) if m is not Modality.EVENT else (IMAGE, COMPRESSED))
    if topics.groundtruth:
        require(topics.groundtruth, "ground-truth")
        check_type(topics.groundtruth, (POLYGON,))
    prompt_topic = topics.prompt if topics.prompt and topics.prompt in available else None
    if prompt_topic:
        check_type(prompt_topic, (STRING,))
    camera_topic = topics.camera_info if topics.camera_info and topics.camera_info in available else None
    if camera_topic:
        check_type(camera_topic, (CAMERA_INFO,))

    by_topic: dict[str, Any] = {topics.color: "color", **{topic: m for m, topic in wanted.items()}}
    if topics.groundtruth:
        by_topic[topics.groundtruth] = "gt"
    if prompt_topic:
        by_topic[prompt_topic] = "prompt"
    if camera_topic:
        by_topic[camera_topic] = "camera_info"
    records: dict[Any, list[tuple[int, Any]]] = {key: [] for key in by_topic.values()}
    connections = [c for c in reader.connections if c.topic in by_topic]
    try:
        for connection, bag_time, raw in reader.messages(connections=connections):
            key = by_topic[connection.topic]
            msg = reader.deserialize(raw, connection.msgtype)
            if key == "prompt":
                records[key].append((bag_time, str(msg.data)))
            elif key == "camera_info":
                records[key].append((stamp_to_ns(msg.header.stamp), camera_info_from_message(msg)))
            elif key == "gt":
                records[key].append((stamp_to_ns(msg.header.stamp), [(p.x, p.y) for p in msg.polygon.points]))
            else:
                modality: Optional[Modality] = None if key == "color" else key
                records[key].append((stamp_to_ns(msg.header.stamp),
                                     image_from_message(msg, connection.msgtype, connection.topic, modality)))
    except (SequenceFormatError, UnsupportedMessageError):
        raise
    except Exception as err:  # rosbags raises many types for truncated/corrupt storage
        raise SequenceFormatError(f"{path}: cannot decode bag messages ({type(err).__name__}: {err})") from err

    color = sorted(records["color"], key=lambda r: r[0])
    if not color:
        raise SequenceFormatError(f"{path}: topic {topics.color!r} has no messages")
    stamps = np.array([s for s, _ in color], dtype=np.int64)
    period = int(np.median(np.diff(stamps))) if len(stamps) > 1 else 10**8
    tol = period // 2 if tolerance_ns is None else int(tolerance_ns)

    aux: dict[Modality, list[Optional[np.ndarray]]] = {}
    for m in wanted:
        frames: list[Optional[np.ndarray]] = [None] * len(color)
        for stamp, image in records[m]:
            k = _nearest(stamps, stamp)
            if abs(int(stamps[k]) - stamp) <= tol:
                frames[k] = image
        aux[m] = frames

    gt = np.full((len(color), 4), np.nan)
    absent = np.zeros(len(color), bool)
    if topics.groundtruth:
        seen = np.zeros(len(color), bool)
        for stamp, points in records["gt"]:
            k = _nearest(stamps, stamp)
            if abs(int(stamps[k]) - stamp) > tol:
                raise FrameCountError(f"{path}: ground truth at stamp {stamp} matches no {topics.color} frame")
            if len(points) == 0:
                absent[k] = True
            elif len(points) == 2:
                (x1, y1), (x2, y2) = points
                gt[k] = (x1, y1, x2 - x1, y2 - y1)
            else:
                raise SequenceFormatError(f"{path}: {topics.groundtruth} at stamp {stamp} has {len(points)} points; "
                                          "expected 2 ((x1,y1),(x2,y2)) or 0 (absent)")
            seen[k] = True
        if not seen.all():
            missing = np.flatnonzero(~seen)
            raise FrameCountError(f"{path}: {len(records['gt'])} ground-truth messages for {len(color)} frames; "
                                  f"{len(missing)} frames have none (first: frame {missing[0]}, "
                                  f"stamp {stamps[missing[0]]})")
    else:
        absent[:] = False

    meta = _custom_data(path) if path.is_dir() else {}
    prompts = sorted(records.get("prompt", []))
    attributes = dict(meta.get("attributes") or {})
    if len({text for _, text in prompts}) > 1:
        attributes["prompt_changes"] = [[int(s), text] for s, text in prompts]
    if not topics.groundtruth:
        attributes["has_groundtruth"] = False
    if records.get("camera_info"):
        attributes["camera_info"] = min(records["camera_info"], key=lambda r: r[0])[1]
    frame_info = {k: np.asarray(v) for k, v in (meta.get("frame_info") or {}).items()}
    if frame_info and any(len(v) != len(color) for v in frame_info.values()):
        frame_info = {}  # bag was cut or edited after writing: per-frame info no longer applies
    return TrackingSequence(name=name or meta.get("name") or path.stem, frames=ArrayFrames([img for _, img in color], aux),
                    gt=gt, absent=absent, prompt=prompts[0][1] if prompts else None, attributes=attributes,
                    frame_info=frame_info, stamps_ns=stamps)
