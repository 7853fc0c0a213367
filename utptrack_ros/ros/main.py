"""Entry point ``utptrack_node``: the TrackerNode in a multi-threaded executor.

    utptrack_node --ros-args --params-file config/rgb_cpu.yaml -r image:=/camera/color/image_raw

``autostart:=true`` (parameter) configures and activates the node at start for systems without
a lifecycle manager; a failed configure is logged and reported on /diagnostics, and the node
keeps running so it can be reconfigured (``ros2 lifecycle set /utptrack configure``).
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn

from .node import TrackerNode


def autostart(node: TrackerNode) -> bool:
    """configure + activate; False (logged) when a transition fails."""
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        node.get_logger().error("autostart: configure failed; staying unconfigured (see /diagnostics)")
        return False
    if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
        node.get_logger().error("autostart: activate failed; staying inactive (see /diagnostics)")
        return False
    return True


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv if argv is None else argv)
    try:
        with rclpy.init(args=args):
            node = TrackerNode()
            executor = MultiThreadedExecutor(num_threads=4)
            executor.add_node(node)
            if node.get_parameter("autostart").value:
                autostart(node)
            try:
                executor.spin()
            finally:
                node.release()  # stop the worker; no lifecycle transition once the context is down
                executor.shutdown()
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
