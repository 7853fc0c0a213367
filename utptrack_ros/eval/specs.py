"""The rows of a comparison: a named tracker and how to feed it (``TrackerSpec``), the picklable
factories that build the trackers in worker processes (``CoreTrackerFactory`` for the project's
tracker, ``peer_spec`` for the OpenCV peers), and the keep-ratio text the CLIs take.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

from ..errors import ConfigError
from ..models import create_model, default_tracker_config
from ..tracker import Tracker
from .peers import PEER_NAMES, OpenCVTracker

AUX_CHOICES = ("none", "auto", "depth", "thermal", "event")


def parse_keep_ratio(text: str) -> float:
    """One keep ratio for CE/DTE/STE, in (0, 1], from text (``--keep`` of the CLIs).

    Raises:
        ConfigError: not a number, or outside (0, 1].
    """
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"a keep ratio is a number in (0, 1], got {text!r}") from None
    if not 0.0 < value <= 1.0:  # NaN fails here too
        raise ConfigError(f"a keep ratio must be in (0, 1], got {value}")
    return value


@dataclass(frozen=True)
class TrackerSpec:
    """One row of a comparison: a named, picklable tracker factory and how to feed it.

    Attributes:
        name: row label (unique in a run), e.g. ``tiny@keep0.5``.
        factory: zero-argument picklable callable building a fresh tracker in the worker.
        aux: ``none`` (RGB only), ``auto`` (the sequence's first auxiliary modality, if any) or a
            modality name (``depth``/``thermal``/``event``; RGB only where the sequence lacks it).
        use_prompt: pass the sequence's language prompt to ``init``.
        description: free text for the report.

    Raises:
        ConfigError: an empty name or an unknown ``aux``.
    """

    name: str
    factory: Callable[[], Any]
    aux: str = "none"
    use_prompt: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError(f"tracker spec needs a non-empty name, got {self.name!r}")
        if self.aux not in AUX_CHOICES:
            raise ConfigError(f"tracker {self.name!r}: aux must be one of {AUX_CHOICES}, got {self.aux!r}")


@dataclass(frozen=True)
class CoreTrackerFactory:
    """Picklable factory of ``utptrack_ros.tracker.Tracker`` for worker processes.

    Building a tracker (model init, weights, the text encoder it loads on first use) costs
    seconds, so by default one tracker per distinct factory is kept per process and handed out
    again after ``reset()`` (targets forgotten; model, keep ratios and encoder kept).

    Attributes:
        model: registered variant (``tiny``, ``tiny_base``, ``o256`` ...); with ``weights``, a
            ``*_base`` name runs the file's weights unpruned.
        weights: weights file; None = the variant's shipped weights.
        keep: one keep ratio for CE/DTE/STE on the variant's pruning layers (``*_base``
            variants have none, so it does not change them); None = the variant's own ratios.
        device: torch device.
        pretrained: False builds the variant with random weights (pipeline checks only).
        reuse: hand out the process's cached tracker for this factory (reset) instead of a new one.
        settings: ``TrackerConfig`` overrides as ``(field, value)`` pairs, applied to the defaults
            of ``model`` (``models.default_tracker_config``); empty = the tracker's own defaults.
    """

    model: str = "tiny"
    weights: Optional[str] = None
    keep: Optional[float] = None
    device: str = "cpu"
    pretrained: bool = True
    reuse: bool = True
    settings: tuple[tuple[str, Any], ...] = ()

    def __call__(self) -> Any:
        cached = _TRACKER_CACHE.get(self) if self.reuse else None
        if cached is not None:
            cached.reset()
            return cached
        tracker = self._build()
        if self.reuse:
            _TRACKER_CACHE[self] = tracker
        return tracker

    def _build(self) -> Any:
        config = replace(default_tracker_config(self.model), **dict(self.settings)) if self.settings else None
        if self.pretrained:
            tracker = Tracker.from_pretrained(self.model, weights=self.weights, device=self.device, config=config)
        else:
            tracker = Tracker(create_model(self.model), config=config, device=self.device)
        if self.keep is not None:
            prune = tracker.model.prune
            tracker.set_prune(prune.with_keep_ratio(self.keep, self.keep, self.keep))
        return tracker


_TRACKER_CACHE: dict[CoreTrackerFactory, Any] = {}


def peer_spec(kind: str, name: Optional[str] = None) -> TrackerSpec:
    """A ``TrackerSpec`` for an OpenCV peer (``csrt``, ``kcf``, ``mil``).

    Raises:
        ConfigError: an unknown peer.
    """
    if kind not in PEER_NAMES:
        raise ConfigError(f"unknown OpenCV peer {kind!r}; choose one of {PEER_NAMES}")
    return TrackerSpec(name or kind, functools.partial(OpenCVTracker, kind), description=f"OpenCV {kind.upper()}")
