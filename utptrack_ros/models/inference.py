"""Inference-time rewrites that keep the outputs (to float rounding) but cut CPU time.

* BatchNorm folding (``models.folding``): every ``Conv2d`` directly followed by a ``BatchNorm2d``
  inside an ``nn.Sequential`` (the centre head's branches, MobileNetV2's conv-BN-act units) becomes
  one conv with adjusted weight and bias; the BN becomes ``Identity``.
* Channels-last weights for the convolutions (the crops arrive NHWC from OpenCV, so the stem
  runs without layout conversions).
Their speed-up is recorded in docs/measurements-log.md.
"""
from __future__ import annotations

import copy

import torch

from .folding import fold_batchnorm
from .utptrack import UTPTrack


def prepare_for_inference(model: UTPTrack) -> UTPTrack:
    """An eval-mode copy of ``model`` with folded BatchNorm and channels-last conv weights."""
    fast = copy.deepcopy(model).eval()
    fold_batchnorm(fast)
    fast.to(memory_format=torch.channels_last)
    return fast
