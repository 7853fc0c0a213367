"""Entry point ``utptrack_node``: the TrackerNode in an executor.

    utptrack_node [--executor single|multi|events] --ros-args --params-file config/rgb_cpu.yaml \
        -r image:=/camera/color/image_raw

``autostart:=true`` (parameter) configures and activates the node at start for systems without
a lifecycle manager; a failed configure is logged and reported on /diagnostics, and the node
keeps running so it can be reconfigured (``ros2 lifecycle set /utptrack configure``).

Executor (``--executor``, default ``single``): the tracking runs in the node's own worker
thread, so every callback is short and one thread serves them all (services answer between
frames, never behind a running model). rclpy's Python ``MultiThreadedExecutor`` (``multi``)
adds a thread-pool hand-off and GIL traffic to every callback (docs/ros.md "Latency
overhead" has the A/B); ``events`` is rclpy's experimental C++ EventsExecutor (spun with
``spin_once``: its ``spin()`` delivered nothing here, rclpy kilted 9.1.2).

Allocator: image-sized buffers (each received message, rclpy's and numpy's temporaries) are
above glibc's default mmap threshold, so every frame mapped fresh pages and paid a page fault
per 4 KiB (~1 ms per 640x480 frame on this VM). :func:`tune_allocator` keeps such buffers in
the heap; ``UTPTRACK_MALLOC_TUNE=0`` (or any ``MALLOC_*`` variable set by the user) leaves
glibc's defaults.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import sys
from typing import Optional, Sequence

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn

from .node import TrackerNode

EXECUTORS = ("single", "multi", "events")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc malloc.h


def tune_allocator(mmap_threshold: int = 32 << 20, trim_threshold: int = 128 << 20) -> bool:
    """glibc only: serve allocations below ``mmap_threshold`` from the heap and keep up to
    ``trim_threshold`` of freed heap, so per-frame buffers reuse mapped pages. Returns True when
    applied (False: not glibc, opted out, or the user set MALLOC_* variables)."""
    if os.environ.get("UTPTRACK_MALLOC_TUNE", "1") == "0" or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))


def autostart(node: TrackerNode) -> bool:
    """configure + activate; False (logged) when a transition fails."""
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        node.get_logger().error("autostart: configure failed; staying unconfigured (see /diagnostics)")
        return False
    if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
        node.get_logger().error("autostart: activate failed; staying inactive (see /diagnostics)")
        return False
    return True


def _make_executor(kind: str):
    if kind == "multi":
        return MultiThreadedExecutor(num_threads=4)
    if kind == "events":
        from rclpy.experimental import EventsExecutor

        return EventsExecutor()
    return SingleThreadedExecutor()


def _spin(executor, kind: str) -> None:
    if kind == "events":
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.5)
    else:
        executor.spin()


def parse_args(args: Sequence[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="utptrack_node", description="UTPTrack lifecycle node (ROS arguments after --ros-args)")
    ap.add_argument("--executor", choices=EXECUTORS, default=os.environ.get("UTPTRACK_EXECUTOR", "single"),
                    help="rclpy executor spinning the node (default single; env UTPTRACK_EXECUTOR)")
    return ap.parse_known_args(_user_args(args))[0]  # other arguments were ignored before: still are


def _user_args(args: Sequence[str]) -> list[str]:
    """``args`` without the program name and the ``--ros-args ... [--]`` blocks (not parsed here)."""
    out, in_ros = [], False
    for a in list(args)[1:]:
        if a == "--ros-args":
            in_ros = True
        elif in_ros and a == "--":
            in_ros = False
        elif not in_ros:
            out.append(a)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv if argv is None else argv)
    opts = parse_args(args)
    tuned = tune_allocator()
    try:
        with rclpy.init(args=args):
            node = TrackerNode()
            node.get_logger().info(f"executor {opts.executor}; allocator tuned: {tuned}")
            executor = _make_executor(opts.executor)
            executor.add_node(node)
            if node.get_parameter("autostart").value:
                autostart(node)
            try:
                _spin(executor, opts.executor)
            finally:
                node.release()  # stop the worker; no lifecycle transition once the context is down
                executor.shutdown()
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
