"""The node's outputs during one bag written to a new rosbag2 (mcap): ``~/target`` and
``/diagnostics`` on the replay clock."""
from __future__ import annotations

import json
from pathlib import Path

from ..data.bag import bag_typestore
from .node_process import find_share_file
from .options import ReplayError
from .player import BagRecord

TARGET_TYPE = "utptrack_ros/msg/TrackedTarget"
DIAGNOSTICS_TYPE = "diagnostic_msgs/msg/DiagnosticArray"


def target_msg_definition() -> str:
    """``msg/TrackedTarget.msg`` of this package (for registering the type with rosbags)."""
    path = find_share_file("msg/TrackedTarget.msg")
    if path is None:
        raise ReplayError("msg/TrackedTarget.msg not found (build the interfaces: make setup)")
    return path.read_text()


def write_output_bag(record: BagRecord, path: Path, node_name: str) -> Path:
    """The node's outputs during one bag as a new rosbag2 (mcap): ``/<node>/target`` at each
    output's header stamp, ``/diagnostics`` at each message's stamp (both on the replay clock)."""
    from rclpy.serialization import serialize_message  # noqa: PLC0415 - ROS only when recording (see player.py)
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import get_types_from_msg

    ts = bag_typestore()
    ts.register(get_types_from_msg(target_msg_definition(), TARGET_TYPE))
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    with writer:
        source = {"bag": str(record.bag.path), "sequence": record.bag.name}
        writer.set_custom_data("utptrack.replay", json.dumps(source))
        targets = writer.add_connection(f"/{node_name}/target", TARGET_TYPE, typestore=ts)
        diags = writer.add_connection("/diagnostics", DIAGNOSTICS_TYPE, typestore=ts)
        items = [(a.stamp_ns, targets, a.msg) for a in record.targets]
        for _, msg in record.diagnostics:
            items.append((int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec), diags, msg))
        for t, connection, msg in sorted(items, key=lambda x: x[0]):
            writer.write(connection, int(t), serialize_message(msg))
    return path
