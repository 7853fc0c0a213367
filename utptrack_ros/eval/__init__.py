"""Offline evaluation of trackers: metrics, OpenCV peer trackers, a parallel runner, reports.

Modules (see docs/eval.md):

* ``metrics``  pure numpy: OTB/LaSOT/pytracking success, precision and normalised precision,
  GOT-10k AO/SR, per-attribute pooling, ros2_benchmark-style latency statistics.
* ``peers``    OpenCV CSRT / KCF / MIL behind ``init(image_rgb, box)`` / ``update(image_rgb)``.
* ``position3d`` 3D error of the target point (box + aligned depth + camera) against ground truth.
* ``specs``    the rows of a comparison (``TrackerSpec``), picklable tracker factories, keep-ratio text.
* ``sources``  sequences and picklable openers of them; the openers for command-line paths.
* ``sequence_run`` one tracker on one sequence: the init rule, the tracking loop, ``SequenceRun``.
* ``pool``     tasks run in this process or in spawned worker processes.
* ``results``  results I/O: scores of runs, the results dict, per-run files, ``results.json``.
* ``report``   Markdown + HTML + PNG plots + JSON, rendered from one results dict.
* ``offline``  ``run_offline`` (specs x sources through the pool) and ``write_results`` (one
  results folder with its report, written atomically; also for the live replay).
* ``cli``      ``utptrack eval-offline`` (``add_arguments`` / ``run``).

Imports point one way: ``cli -> offline -> {pool, report} -> results -> sequence_run ->
{specs, sources, metrics, position3d}``.

Nothing here imports rclpy; heavy modules (matplotlib, cv2, torch) are imported by the
submodules that need them, so ``import utptrack_ros.eval.metrics`` stays numpy-only.
"""
