"""The heavy part of the node's lifecycle transitions, and what it is doing right now.

* :func:`load_network` (configure): the variant's network on the CPU with its weights
  (:func:`~utptrack_ros.tracker.load_variant`, or seeded random weights for plumbing tests).
* :func:`build_tracker` (activate): the :class:`~utptrack_ros.tracker.MultiTracker` on its device and
  backend (onnxruntime graphs exported into the cache when missing), a warm-up frame, and the
  prompt encoder when the model has a text token, so no callback ever loads it.

Both run in the thread that runs the transition, never on the executor (``ros/transitions.py``),
and report each step to a :class:`Progress` that ``/diagnostics`` reads ("exporting onnxruntime
graphs for 23.4 s"). No rclpy here.

Nothing on the transition thread may hold the GIL long, or every service waits for it
(docs/ros.md "Lifecycle"):

* :func:`import_model_stack`: the entry point imports torch, timm, torchvision, onnxruntime,
  transformers and the model code in the main thread *before the node exists* (nobody can call a
  node that does not exist yet), then moves every object it made out of the garbage collector's
  reach (``gc.freeze``): a full collection over the ~400 000 objects of the model stack held the
  GIL for 150-350 ms, the longest stalls of the start-up. A missing dependency is not an error
  there: the transition's own import fails again and configure reports it with its reason.
* :func:`export_graphs_in_child`: missing onnxruntime graphs are exported by a child process (the
  install-time ``python -m utptrack_ros.ros.prebuild`` code) into the cache; the node only loads
  the sessions (onnxruntime releases the GIL while it builds them).
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..config import TrackerConfig, to_mapping
from ..errors import ConfigError

__all__ = ["Progress", "import_model_stack", "variant_tracker_config", "family_of", "is_registered", "load_network",
           "export_graphs_in_child", "running_children", "stop_children", "build_tracker", "release_device"]


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


_model_code = threading.Event()  # set once the model stack has been imported


def import_model_stack() -> str:
    """Import the model stack now and freeze the GC's view of it (module docstring); "" or why
    it failed (the transitions import it again and report the failure)."""
    try:
        import timm  # noqa: F401
        import torch  # noqa: F401
        import torchvision  # noqa: F401

        from ..models import list_models  # noqa: F401
        from ..models.inference import prepare_for_inference  # noqa: F401
        from ..tracker import Tracker  # noqa: F401
    except Exception as err:  # noqa: BLE001 - reported at configure, where the import runs again
        return f"{type(err).__name__}: {err}"
    for optional in ("utptrack_ros.runtime.network", "transformers"):  # onnxruntime backend, MiniLM prompt encoder
        try:
            __import__(optional)
        except Exception:  # noqa: BLE001, S112 - only needed by some settings; they report it when used
            continue
    try:
        from ..runtime.ort_telemetry import import_onnxruntime

        import_onnxruntime()
    except Exception:  # noqa: BLE001 - the onnxruntime backend reports it when used
        pass
    _model_code.set()
    gc.collect()
    gc.freeze()
    return ""


def variant_tracker_config(name: str, import_now: bool = True) -> TrackerConfig:
    """The variant's own TrackerConfig (what unset ``tracker.*`` parameters mean).

    ``import_now=False`` (parameter validation on the executor): while neither the entry point
    (:func:`import_model_stack`) nor a transition has imported the model stack yet, the core defaults stand in (the ``tracker.*`` ranges do not depend on the
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


_children: set[subprocess.Popen] = set()  # export children still running
_children_lock = threading.Lock()


def running_children() -> list[subprocess.Popen]:
    """The export child processes running now."""
    with _children_lock:
        return [c for c in _children if c.poll() is None]


def stop_children(timeout_s: float = 1.0) -> None:
    """Terminate the export children (the node is shutting down): SIGTERM, then SIGKILL after
    ``timeout_s``. The child writes its graphs atomically, so a stopped export leaves no partial
    graph in the cache; the transition waiting on it fails."""
    children = running_children()
    for child in children:
        child.terminate()
    for child in children:
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def export_graphs_in_child(prepared: Any, cache: Path, name: str, weights: str, seed: int, progress: Progress) -> Optional[int]:
    """Export the onnxruntime graphs of ``prepared`` (the model as the Tracker runs it) into
    ``cache`` in a child process unless they are prebuilt or cached; the child's pid, or None when
    nothing was exported. The child rebuilds the model from (``name``, ``weights``, ``seed``) and
    the keep ratios; it refuses to export when it arrives at another graphs folder (other
    weights): ``RuntimeError`` with the child's reason, as for any failure of the child."""
    from ..runtime.export import DEFAULT_OPSET, SEARCH_FILE
    from ..runtime.graph_names import graphs_folder, weights_digest
    from ..runtime.prebuilt import find_prebuilt

    folder = graphs_folder(prepared.config, weights_digest(prepared), prepared.prune, DEFAULT_OPSET)
    if find_prebuilt(folder) is not None or (cache / "onnx" / folder / SEARCH_FILE).is_file():
        return None
    progress.step("exporting onnxruntime graphs in a child process (once per weights and keep ratios)")
    spec = {"name": name, "weights": weights, "seed": seed, "prune": to_mapping(prepared.prune), "folder": folder}
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p))
    child = subprocess.Popen([sys.executable, "-m", "utptrack_ros.ros.prebuild", "--out", str(cache / "onnx"),
                              "--node", json.dumps(spec)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with _children_lock:
        _children.add(child)
    try:
        out, err = child.communicate()
    finally:
        with _children_lock:
            _children.discard(child)
    if child.returncode != 0:
        raise RuntimeError(f"the onnxruntime export (child process) failed with exit code {child.returncode}: "
                           f"{err.strip()[-1500:]}")
    made = Path(out.strip().splitlines()[-1]).name if out.strip() else ""
    if made != folder:
        raise RuntimeError(f"the onnxruntime export (child process) wrote {made!r}, not {folder!r}")
    return child.pid


def build_tracker(model: Any, settings: Any, progress: Progress) -> tuple[Any, str]:
    """The MultiTracker for ``settings`` (NodeSettings), warmed up, its prompt encoder loaded, with
    the keep ratios of its token budget (``prune.mode`` / ``prune.deadline_ms``, measured here for
    ``input.max_targets`` targets); and why those ratios ("" when the budget is the configured ratios)."""
    import torch

    from ..models.inference import prepare_for_inference
    from ..runtime.budget import budget_measures, candidate_schedules
    from ..runtime.network import default_cache_dir
    from ..tracker import MultiTracker

    s = settings
    if s.model.num_threads:
        torch.set_num_threads(s.model.num_threads)
    configured = s.prune_config(model.config.prune)
    if s.budget.mode == "off":
        configured = configured.off()
    model.set_prune(configured)
    cache = Path(s.model.onnx_cache).expanduser() if s.model.onnx_cache else default_cache_dir()
    if s.model.backend == "onnxruntime":
        prepared = prepare_for_inference(model)  # what the Tracker runs; its graphs are made for it
        # every schedule the budget may choose has its graphs before anything is measured
        schedules = candidate_schedules(model.config, configured, s.budget) if budget_measures(s.budget) else []
        for prune in [schedule.prune for schedule in schedules if schedule.prune != configured] + [configured]:
            prepared.set_prune(prune)
            export_graphs_in_child(prepared, cache, s.model.name, s.model.weights, s.model.seed, progress)
        progress.step("loading onnxruntime graphs")
        tracker = MultiTracker(prepared, s.tracker, s.model.device, optimize=False, backend="onnxruntime", onnx_cache=cache,
                               threads=s.model.num_threads or None)
    else:
        progress.step(f"moving the model to {s.model.device}")
        tracker = MultiTracker(model, s.tracker, s.model.device, backend=s.model.backend, threads=s.model.num_threads or None,
                               dtype=s.model.dtype)
    progress.step("warming up")
    image = np.zeros((64, 64, 3), np.uint8)
    image[16:48, 16:48] = 200
    tracker.init(image, [(16.0, 16.0, 32.0, 32.0)])
    tracker.track(image)
    tracker.reset()
    reason = ""
    if budget_measures(s.budget):
        progress.step(f"choosing the token budget (prune.mode {s.budget.mode}"
                      f"{f', deadline {s.budget.deadline_ms:g} ms' if s.budget.deadline_ms else ''}; "
                      f"measured once per device and batch)")
        reason = tracker.choose_token_budget(s.budget, configured, batch=s.input.max_targets, cache_dir=cache).reason
    elif s.budget.mode == "off":
        reason = "prune.mode off: unpruned"
    if model.config.text_dim:
        progress.step("loading the prompt encoder")
        tracker.load_text_encoder()
    return tracker, reason


def release_device(tracker: Any, model: Any) -> None:
    """Give back device memory after the tracker is dropped (CUDA only)."""
    if tracker is not None and tracker.device.type == "cuda":
        import torch

        model.to("cpu")
        torch.cuda.empty_cache()
