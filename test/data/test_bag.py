"""rosbag2 layout (mcap and sqlite3 via rosbags): round trips, topic overrides and clear errors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from data.datautils import assert_same_sequence
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rosbags.rosbag2 import StoragePlugin, Writer

from utptrack_ros.data import (
    ArrayFrames,
    BagTopics,
    FrameCountError,
    MissingTopicError,
    SequenceError,
    SequenceFormatError,
    TrackingSequence,
    UnsupportedMessageError,
    load_bag,
    load_folder,
    write_bag,
    write_folder,
)
from utptrack_ros.data.bag import IMAGE, POLYGON, bag_typestore, groundtruth_message, image_message
from utptrack_ros.types import Modality


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_round_trip_equals_memory(small_seq, tmp_path, storage):
    path = write_bag(small_seq, tmp_path / "bag", storage)
    loaded = load_bag(path)
    # Point32 is float32: boxes come back to float32 precision
    assert_same_sequence(small_seq, loaded, rgb_tol=0.0, gt_tol=1e-3)
    assert loaded.name == small_seq.name
    assert loaded.attributes["seed"] == small_seq.attributes["seed"]
    np.testing.assert_allclose(loaded.frame_info["visibility"], small_seq.frame_info["visibility"])


@pytest.mark.parametrize("storage, compression", [("mcap", "storage"), ("sqlite3", "message")])
def test_compressed_bags_round_trip(small_seq, tmp_path, storage, compression):
    path = write_bag(small_seq, tmp_path / "bag", storage, compression=compression)
    assert_same_sequence(small_seq, load_bag(path), gt_tol=1e-3)


def test_bag_groundtruth_equals_folder_groundtruth(small_seq, tmp_path):
    from_folder = load_folder(write_folder(small_seq, tmp_path / "f"))
    from_bag = load_bag(write_bag(small_seq, tmp_path / "b"))
    np.testing.assert_allclose(from_bag.gt, from_folder.gt, atol=1e-3, equal_nan=True)
    np.testing.assert_array_equal(from_bag.absent, from_folder.absent)
    assert from_bag.prompt == from_folder.prompt


def test_mcap_is_readable_without_rosbags(small_seq, tmp_path):
    """The mcap library's own ROS 2 decoder reads our Image and PolygonStamped messages."""
    path = write_bag(small_seq, tmp_path / "b", "mcap")
    (mcap_file,) = path.glob("*.mcap")
    with mcap_file.open("rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        seen = {}
        for _, channel, message, decoded in reader.iter_decoded_messages(
                topics=["/camera/depth/image_raw", "/groundtruth"]):
            seen.setdefault(channel.topic, (message, decoded))
    _, depth = seen["/camera/depth/image_raw"]
    assert depth.encoding == "16UC1"
    np.testing.assert_array_equal(np.frombuffer(bytes(depth.data), "<u2").reshape(depth.height, depth.width),
                                  small_seq.aux(Modality.DEPTH, 0))
    _, gt = seen["/groundtruth"]
    x, y, w, h = small_seq.gt[0]
    assert [v for p in gt.polygon.points for v in (p.x, p.y)] == pytest.approx([x, y, x + w, y + h])


def test_topic_overrides_and_modality_selection(small_seq, tmp_path):
    topics = BagTopics(color="/cam/rgb", thermal="/ir/image", event=None)
    path = write_bag(small_seq, tmp_path / "b", topics=topics)
    seq = load_bag(path, topics={"color": "/cam/rgb", "thermal": "/ir/image"}, modalities=["thermal"])
    assert seq.modalities == (Modality.THERMAL,)
    np.testing.assert_array_equal(seq.aux("thermal", 3), small_seq.aux(Modality.THERMAL, 3))
    with pytest.raises(MissingTopicError, match=r"no color topic '/camera/color/image_raw'.*the bag has: /cam/rgb"):
        load_bag(path)
    with pytest.raises(MissingTopicError, match="no event topic"):
        load_bag(path, topics={"color": "/cam/rgb", "event": "/event/image_raw"}, modalities=["event"])
    with pytest.raises(SequenceError, match="unknown topic keys"):
        load_bag(path, topics={"colour": "/cam/rgb"})


def _write_raw_bag(path, frames: int, *, color_type: str = IMAGE, encoding: str = "rgb8", gt_frames=None):
    """A hand-made bag for the error cases (rosbags writer, no TrackingSequence involved)."""

    ts = bag_typestore()
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        color = writer.add_connection("/camera/color/image_raw", color_type, typestore=ts)
        gt = writer.add_connection("/groundtruth", POLYGON, typestore=ts)
        for i in range(frames):
            stamp = 10**9 + i * 33_333_333
            if color_type == IMAGE:
                msg = image_message(ts, np.zeros((4, 6, 3), np.uint8), "rgb8", stamp)
                msg.encoding = encoding
            else:
                msg = ts.types[color_type](data="not an image")
            writer.write(color, stamp, ts.serialize_cdr(msg, color_type))
            if gt_frames is None or i in gt_frames:
                writer.write(gt, stamp, ts.serialize_cdr(groundtruth_message(ts, np.array([1.0, 1, 2, 2]), stamp),
                                                         POLYGON))
    return path


def test_hand_made_bag_loads(tmp_path):
    seq = load_bag(_write_raw_bag(tmp_path / "b", 3))
    assert seq.length == 3 and seq.modalities == () and seq.prompt is None
    assert seq.box(2).as_xywh() == (1, 1, 2, 2)
    assert seq.stamp_ns(1) - seq.stamp_ns(0) == 33_333_333


def test_wrong_message_type(tmp_path):
    path = _write_raw_bag(tmp_path / "b", 2, color_type="std_msgs/msg/String")
    with pytest.raises(UnsupportedMessageError, match="has type std_msgs/msg/String, expected sensor_msgs/msg/Image"):
        load_bag(path)


def test_unsupported_encoding(tmp_path):
    path = _write_raw_bag(tmp_path / "b", 2, encoding="yuv422")
    with pytest.raises(UnsupportedMessageError, match="encoding 'yuv422' is not supported"):
        load_bag(path)


def test_driver_encodings_decode_like_the_node(tmp_path):
    """bgr8 colour and 32FC1 depth (metres, NaN holes), as camera drivers publish them, load as
    RGB and uint16 millimetres, decoded by the node's own decoders (utptrack_ros.sensors)."""

    ts = bag_typestore()
    rgb = np.random.default_rng(0).integers(0, 255, (4, 6, 3), dtype=np.uint8)
    metres = np.full((4, 6), 1.2345, np.float32)
    metres[0, 0] = np.nan
    path = tmp_path / "b"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        color = writer.add_connection("/camera/color/image_raw", IMAGE, typestore=ts)
        depth = writer.add_connection("/camera/depth/image_raw", IMAGE, typestore=ts)
        for i in range(2):
            stamp = 10**9 + i * 33_333_333
            writer.write(color, stamp, ts.serialize_cdr(image_message(ts, rgb[:, :, ::-1].copy(), "bgr8", stamp), IMAGE))
            writer.write(depth, stamp, ts.serialize_cdr(image_message(ts, metres, "32FC1", stamp), IMAGE))
    seq = load_bag(path, topics={"groundtruth": None}, modalities=["depth"])
    assert np.array_equal(seq.rgb(1), rgb)
    mm = seq.aux(Modality.DEPTH, 1)
    assert mm.dtype == np.uint16 and mm[0, 0] == 0 and mm[1, 1] == 1234


def test_groundtruth_missing_for_some_frames(tmp_path):
    path = _write_raw_bag(tmp_path / "b", 4, gt_frames={0, 1, 3})
    with pytest.raises(FrameCountError, match=r"3 ground-truth messages for 4 frames; 1 frames have none "
                                              r"\(first: frame 2"):
        load_bag(path)
    seq = load_bag(path, topics={"groundtruth": None})  # explicitly without ground truth
    assert seq.attributes["has_groundtruth"] is False


def test_corrupt_and_missing_bags(small_seq, tmp_path):
    path = write_bag(TrackingSequence("s", ArrayFrames([small_seq.rgb(0)] * 2), small_seq.gt[:2]), tmp_path / "b")
    (mcap_file,) = path.glob("*.mcap")
    mcap_file.write_bytes(mcap_file.read_bytes()[:200])  # truncated
    with pytest.raises(SequenceFormatError, match=str(path.name)):
        load_bag(path)
    with pytest.raises(SequenceFormatError, match="bag does not exist"):
        load_bag(tmp_path / "missing")
    with pytest.raises(SequenceError, match="already exists"):
        write_bag(small_seq, path)
    with pytest.raises(SequenceError, match="unknown bag storage"):
        write_bag(small_seq, tmp_path / "x", "rosbag1")
    with pytest.raises(SequenceError, match="not available for sqlite3"):
        write_bag(small_seq, tmp_path / "x", "sqlite3", compression="storage")


def test_data_package_needs_no_ros(tmp_path):
    """Generation and bag I/O work with every ROS Python package blocked (rosbags only)."""

    code = (
        "import sys\n"
        "for name in ('rclpy', 'sensor_msgs', 'std_msgs', 'geometry_msgs', 'rosidl_runtime_py', 'utptrack_ros.ros'):\n"
        "    sys.modules[name] = None\n"
        "from utptrack_ros.data import SequenceSpec, generate, load_bag, write_bag\n"
        "seq = generate(SequenceSpec(seed=3, length=3, size=(64, 48)))\n"
        f"print(load_bag(write_bag(seq, {str(tmp_path / 'b')!r})).length)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"
