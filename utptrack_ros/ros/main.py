"""Entry point ``utptrack_node``: the TrackerNode in an executor.

    utptrack_node [--executor events|single|multi] --ros-args --params-file config/rgb_cpu.yaml \
        -r image:=/camera/color/image_raw

``autostart:=true`` (parameter) configures and activates the node at start for systems without
a lifecycle manager: the executor spins first and the transitions run in a thread
(ros/transitions.py), so services, parameters and /diagnostics answer while the model loads; a
failed transition is logged with its reason and reported on /diagnostics, and the node keeps
running so it can be reconfigured (``ros2 lifecycle set /utptrack configure``).

Before the node exists, the model stack (torch, timm, torchvision, onnxruntime, transformers) is
imported in the main thread and frozen out of the garbage collector
(``preparation.import_model_stack``): importing it in a transition held the GIL for up to 0.9 s
while services waited. A missing dependency only fails configure, with its reason.

Exit (SIGINT, SIGTERM): the worker stops first (nothing is published into a context that is
going away), then the node, the executor and the context shut down in order, the logs are
flushed, and the process ends with ``os._exit``: interpreter teardown (torch, onnxruntime and
DDS threads) took seconds, past the 5 s after which ``ros2 launch`` escalates to SIGTERM.

Executor (``--executor``, default ``events``; environment ``UTPTRACK_EXECUTOR``): the tracking
runs in the node's own worker thread, so every callback is short and one executor thread serves
them all (services answer between frames, never behind a running model).

* ``events``: rclpy's C++ EventsExecutor (``rclpy.experimental``, rclpy >= 9 / Kilted): no
  Python wait-set rebuild per callback and the GIL is free for the worker as soon as a callback
  returns. Spun with ``spin_once`` in a loop: its ``spin()`` delivered no messages here (rclpy
  9.1.2). Falls back to ``single`` where rclpy has no EventsExecutor (Jazzy).
* ``single``: rclpy's Python SingleThreadedExecutor.
* ``multi``: rclpy's MultiThreadedExecutor (4 threads), the first version's choice: a
  thread-pool hand-off and GIL traffic per callback.

docs/ros.md "Latency overhead" has the A/B of the three.
"""
from __future__ import annotations

import os

# Read by libgomp when torch loads it: idle OpenMP workers sleep instead of spinning on cores the
# executor, DDS threads and other processes need (docs/training.md has the measurement).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import ctypes  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from typing import Optional, Sequence  # noqa: E402

import rclpy  # noqa: E402
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402

from .node import TrackerNode  # noqa: E402
from .preparation import import_model_stack, stop_children  # noqa: E402
from .transitions import autostart, start_in_thread  # noqa: E402

EXECUTORS = ("events", "single", "multi")


def make_executor(kind: str, context=None) -> tuple[object, str]:
    """(executor, the kind actually made): ``events`` falls back to ``single`` without rclpy's."""
    if kind == "multi":
        return MultiThreadedExecutor(num_threads=4, context=context), kind
    if kind == "events":
        try:
            from rclpy.experimental import EventsExecutor

            return EventsExecutor(context=context), kind
        except (ImportError, OSError):
            # OSError: it calls faulthandler.enable(), which fails where sys.stderr is no file
            # (pytest's capture, notebooks): io.UnsupportedOperation
            return SingleThreadedExecutor(context=context), "single"
    return SingleThreadedExecutor(context=context), "single"


def spin(executor, context=None, stop: Optional[threading.Event] = None) -> None:
    """Until ``stop`` is set (SIGINT/SIGTERM) or the context shuts down. ``spin_once`` in a loop
    for every kind: the EventsExecutor's ``spin()`` delivered no messages here (rclpy 9.1.2), and
    the short timeout bounds how long a signal waits for the loop."""
    while not (stop is not None and stop.is_set()) and rclpy.ok(context=context):
        executor.spin_once(timeout_sec=0.1)


def parse_args(args: Sequence[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="utptrack_node", description="UTPTrack lifecycle node (ROS arguments after --ros-args)")
    ap.add_argument("--executor", choices=EXECUTORS, default=os.environ.get("UTPTRACK_EXECUTOR", "events"),
                    help="rclpy executor spinning the node (default events; environment UTPTRACK_EXECUTOR)")
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


def run(argv: Optional[Sequence[str]] = None) -> int:
    """The node until SIGINT/SIGTERM; then an orderly shutdown (worker, node, executor, context)."""
    args = list(sys.argv if argv is None else argv)
    opts = parse_args(args)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        import_failure = import_model_stack()  # before the node: nothing can call it while this holds the GIL
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        node = TrackerNode()
        if import_failure:
            node.get_logger().warning(f"the model stack cannot be imported ({import_failure}): configure will fail")
        executor, kind = make_executor(opts.executor)
        node.get_logger().info(f"executor: {kind}" + ("" if kind == opts.executor else f" ({opts.executor} unavailable)"))
        executor.add_node(node)
        if node.get_parameter("autostart").value:
            start_in_thread(lambda: autostart(node))
        try:
            spin(executor, stop=stop)
        finally:
            node.release()  # the worker stops while the context is still valid
            stop_children()  # an onnxruntime export still running for a transition
            node.get_logger().info("shutting down")
            executor.shutdown(timeout_sec=1.0)
            node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``utptrack_node``: :func:`run`, then exit at once (see the module docstring)."""
    code = run(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    ctypes.CDLL(None).fflush(None)  # C stdio buffers (rcutils' console logging)
    os._exit(code)


if __name__ == "__main__":
    main()
