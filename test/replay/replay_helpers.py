"""Helpers for the replay tests: small generated bags, hand-made bad bags, a unique domain id."""
from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Optional

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_types_from_msg

from utptrack_ros.data import BagTopics, generate, spec_for, write_bag
from utptrack_ros.data.bag import bag_typestore, groundtruth_message
from utptrack_ros.types import Modality

SIZE = (320, 240)


def domain_id(tag: str) -> int:
    """A ROS_DOMAIN_ID per (test process, tag), like test/ros/ros_harness.py."""
    return 100 + (os.getpid() * 31 + zlib.crc32(tag.encode())) % 130


def make_sequence(index: int, length: int = 12, modalities=(Modality.DEPTH,)):
    return generate(spec_for("test", index, length=length, size=SIZE, modalities=tuple(modalities)))


def make_bag(path: Path, index: int = 0, length: int = 12, modalities=(Modality.DEPTH,),
             topics: Optional[BagTopics] = None, storage: str = "mcap") -> Path:
    return write_bag(make_sequence(index, length, modalities), path, storage=storage, topics=topics)


BLOB_TYPE = "my_msgs/msg/Blob"
BLOB_DEF = "std_msgs/Header header\nuint8[] data\n"


def write_custom_bag(path: Path, color_type: str = BLOB_TYPE, count: int = 3) -> Path:
    """A bag with the colour topic carrying ``color_type`` (a custom ``my_msgs/msg/Blob`` or
    ``std_msgs/msg/String``) plus a valid ground-truth topic."""

    ts = bag_typestore()
    ts.register(get_types_from_msg(BLOB_DEF, BLOB_TYPE))
    t = ts.types
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        color = writer.add_connection("/camera/color/image_raw", color_type, typestore=ts)
        gt = writer.add_connection("/groundtruth", "geometry_msgs/msg/PolygonStamped", typestore=ts)
        for i in range(count):
            stamp = 1_000_000_000 + i * 33_333_333
            if color_type == BLOB_TYPE:
                time_msg = t["builtin_interfaces/msg/Time"](sec=1, nanosec=i)
                header = t["std_msgs/msg/Header"](stamp=time_msg, frame_id="c")
                msg = t[BLOB_TYPE](header=header, data=np.zeros(4, np.uint8))
            else:
                msg = t[color_type](data=f"frame {i}")
            writer.write(color, stamp, ts.serialize_cdr(msg, color_type))
            box = np.array([10.0, 10.0, 20.0, 20.0])
            polygon = groundtruth_message(ts, box, stamp)
            writer.write(gt, stamp, ts.serialize_cdr(polygon, "geometry_msgs/msg/PolygonStamped"))
    return path
