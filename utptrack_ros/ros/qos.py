"""QoS profiles from parameter strings, and a one-line description for the configure log.

Names (parameter ``qos.image`` / ``qos.aux``):

* ``reliable``: RELIABLE, KEEP_LAST(depth), VOLATILE. The default: matches reliable and (with a
  warning from the middleware) nothing from best-effort publishers.
* ``sensor_data`` / ``best_effort``: BEST_EFFORT, KEEP_LAST(depth), VOLATILE; receives from both
  best-effort and reliable publishers. Over FastDDS's default transports, 640x480 frames
  (~0.9 MB, fragmented) are mostly lost best-effort; see docs/ros.md "Transport and QoS".
* ``system_default``: the middleware's defaults (depth still applied).
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

QOS_NAMES = ("reliable", "sensor_data", "best_effort", "system_default")


def qos_profile(name: str, depth: int) -> QoSProfile:
    """The profile for ``name`` (one of :data:`QOS_NAMES`) with ``KEEP_LAST(depth)``."""
    if name not in QOS_NAMES:
        raise ValueError(f"unknown QoS {name!r}; one of {list(QOS_NAMES)}")
    if depth < 1:
        raise ValueError(f"QoS depth must be >= 1, got {depth}")
    if name == "reliable":
        rel = ReliabilityPolicy.RELIABLE
    elif name in ("sensor_data", "best_effort"):
        rel = ReliabilityPolicy.BEST_EFFORT
    else:
        rel = ReliabilityPolicy.SYSTEM_DEFAULT
    durability = DurabilityPolicy.SYSTEM_DEFAULT if name == "system_default" else DurabilityPolicy.VOLATILE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=rel, durability=durability)


def describe(qos: QoSProfile) -> str:
    """``RELIABLE, KEEP_LAST(1), VOLATILE``."""
    return f"{qos.reliability.name}, {qos.history.name}({qos.depth}), {qos.durability.name}"
