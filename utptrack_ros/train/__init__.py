"""Training of the small unified tracker (method.md 4.6, 7; docs/training.md).

* ``recipe``    frozen dataclass recipe (YAML via ``config.from_mapping``; ``recipes/*.yaml``, superseded
                ones in ``recipes/archive/``).
* ``sampling``  training triplets built with the tracker's own crop / aux / text functions.
* ``datasets``  DDP-aware streams of batches from generated train-split sequences.
* ``losses``    focal centre map + GIoU + L1 + task cross-entropy.
* ``loop``      optimiser, schedules (LR, keep rate), resume, metrics log, validation.
* ``cli``       ``utptrack train``.

Nothing here imports rclpy.
"""
