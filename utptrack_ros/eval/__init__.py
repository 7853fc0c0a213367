"""Offline evaluation of trackers: metrics, OpenCV peer trackers, a parallel runner, reports.

Modules (see docs/eval.md):

* ``metrics``  pure numpy: OTB/LaSOT/pytracking success, precision and normalised precision,
  GOT-10k AO/SR, per-attribute pooling, ros2_benchmark-style latency statistics.
* ``peers``    OpenCV CSRT / KCF / MIL behind ``init(image_rgb, box)`` / ``update(image_rgb)``.
* ``offline``  runs tracker factories over sequences in spawned worker processes, writes results.
* ``position3d`` 3D error of the target point (box + aligned depth + camera) against ground truth.
* ``report``   Markdown + HTML + PNG plots + JSON, rendered from one dict.
* ``cli``      ``utptrack eval-offline`` (``add_arguments`` / ``run``).

Nothing here imports rclpy; heavy modules (matplotlib, cv2, torch) are imported by the
submodules that need them, so ``import utptrack_ros.eval.metrics`` stays numpy-only.
"""
