"""The heavy part of the node's lifecycle transitions, and what it is doing right now.

* :func:`load_network` (configure): the variant's network on the CPU with its weights
  (:func:`~utptrack_ros.tracker.load_variant`, or seeded random weights for plumbing tests).
* :func:`build_tracker` (activate): the :class:`~utptrack_ros.tracker.Tracker` on its device and
  backend (onnxruntime graphs exported into the cache when missing), a warm-up frame, and the
  prompt encoder when the model has a text token, so no callback ever loads it.

Both run in the thread that runs the transition, never on the executor (``ros/transitions.py``),
and report each step to a :class:`Progress` that ``/diagnostics`` reads ("exporting onnxruntime
graphs for 23.4 s"). The model stack (torch, timm, torchvision, onnxruntime) is imported by these
functions, not when the node starts: a missing dependency is a transition failure with its
reason on ``/diagnostics``, not a crash before the node exists. No rclpy here.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Optional

import numpy as np

from ..config import TrackerConfig
from ..errors import ConfigError

__all__ = ["Progress", "variant_tracker_config", "family_of", "is_registered", "load_network", "build_tracker", "release_device"]


class Progress:
    """The step a transition is in and since when (``time.monotonic``), thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._step: Optional[str] = None
        self._since = 0.0
        self._started = 0.0

    def start(self, step: str) -> None:
        """A new transition begins with ``step``."""
        with self._lock:
            self._step, self._since = step, time.monotonic()
            self._started = self._since

    def step(self, step: str) -> None:
        with self._lock:
            self._step, self._since = step, time.monotonic()

    def done(self) -> None:
        with self._lock:
            self._step = None

    @property
    def busy(self) -> bool:
        return self._step is not None

    def describe(self) -> str:
        """``"exporting onnxruntime graphs (12.3 s; 14.0 s in all)"``, or "" when idle."""
        with self._lock:
            if self._step is None:
                return ""
            now = time.monotonic()
            total = f"; {now - self._started:.1f} s in all" if self._since > self._started + 0.05 else ""
            return f"{self._step} ({now - self._since:.1f} s{total})"


_model_code = threading.Event()  # set once the model stack has been imported (by a transition)


def variant_tracker_config(name: str, import_now: bool = True) -> TrackerConfig:
    """The variant's own TrackerConfig (what unset ``tracker.*`` parameters mean).

    ``import_now=False`` (parameter validation on the executor): while no transition has imported
    the model stack yet, the core defaults stand in (the ``tracker.*`` ranges do not depend on the
    variant) and the name is checked at configure, so a request never waits seconds for torch.
    """
    if not import_now and not _model_code.is_set():
        return TrackerConfig()
    from ..models import default_tracker_config, list_models

    _model_code.set()
    if name not in list_models():
        raise ConfigError(f"model.name {name!r} is not a registered variant; registered: {list_models()}")
    return default_tracker_config(name) if name else TrackerConfig()


def family_of(name: str) -> str:
    """The registered variant a name runs the settings of (``*_base`` = its pruned sibling's)."""
    return name[: -len("_base")] if name.endswith("_base") else name


def is_registered(name: str) -> bool:
    from ..models import list_models

    return name in list_models()


def load_network(name: str, weights: str, seed: int, progress: Progress):
    """The network on the CPU: shipped weights (``""``), a weights file, or ``"random"``."""
    progress.step("importing the model stack (torch)")
    import torch

    from ..models import create_model
    from ..tracker import load_variant

    if weights == "random":
        progress.step(f"building {name} with random weights (seed {seed})")
        torch.manual_seed(seed)
        return create_model(name)
    progress.step(f"loading {name} weights from {weights or 'the shipped file'}")
    return load_variant(name, weights or None)


def build_tracker(model: Any, settings: Any, progress: Progress):
    """The Tracker for ``settings`` (NodeSettings), warmed up, its prompt encoder loaded."""
    import torch

    from ..tracker import Tracker

    s = settings
    if s.model.num_threads:
        torch.set_num_threads(s.model.num_threads)
    model.set_prune(s.prune_config(model.config.prune))
    progress.step("loading onnxruntime graphs (exporting them first when not cached for these weights and keep ratios)"
                  if s.model.backend == "onnxruntime" else f"moving the model to {s.model.device}")
    tracker = Tracker(model, s.tracker, s.model.device, backend=s.model.backend,
                      onnx_cache=s.model.onnx_cache or None, threads=s.model.num_threads or None)
    progress.step("warming up")
    image = np.zeros((64, 64, 3), np.uint8)
    image[16:48, 16:48] = 200
    tracker.init(image, (16.0, 16.0, 32.0, 32.0))
    tracker.track(image)
    tracker.reset()
    if model.config.text_dim:
        progress.step("loading the prompt encoder")
        tracker.load_text_encoder()
    return tracker


def release_device(tracker: Any, model: Any) -> None:
    """Give back device memory after the tracker is dropped (CUDA only)."""
    if tracker is not None and tracker.device.type == "cuda":
        import torch

        model.to("cpu")
        torch.cuda.empty_cache()
