"""Replay options: how bags are played (``ReplayOptions``), the node under test
(``NodeOptions``), the choices they take (``MODES``, ``COMPARE_CHOICES``, ``parse_compare``), a
seeded random-weights file for plumbing runs, and the replay's error. The CLIs take their
defaults from these dataclasses."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..checkpoint import save_model
from ..data.sequence import AUX_MODALITIES
from ..errors import ConfigError, UTPTrackError
from ..models import create_model

MODES = ("lockstep", "realtime", "rate")
COMPARE_CHOICES = ("pruned", "unpruned", "csrt", "kcf", "mil")


class ReplayError(UTPTrackError):
    """The replay could not run: the node did not come up, or a bag could not be played."""


@dataclass(frozen=True)
class ReplayOptions:
    """How bags are played.

    Attributes:
        mode: ``lockstep`` (next frame after the answer to the previous one), ``realtime``
            (recorded timing) or ``rate`` (recorded timing divided by ``rate``).
        rate: playback speed factor for ``rate`` (2.0 = twice as fast); 1.0 for ``realtime``.
        frame_timeout_s: lock-step: wait this long for an answer, then count the frame missed.
        drain_timeout_s: timed modes: after the last frame, wait this long for late answers.
        init_timeout_s: the ``~/init_target`` call (the first init with a prompt loads the text
            encoder in the node).
        prompt: ``auto`` (use the bag's prompt topic when present), ``on``, ``off``.
        modality: aux stream fed to the node: ``auto`` (the bag's first of depth/thermal/event),
            ``rgb`` (none) or a modality name.

    Raises:
        ConfigError: a value outside its choices or range.
    """

    mode: str = "lockstep"
    rate: float = 1.0
    frame_timeout_s: float = 10.0
    drain_timeout_s: float = 5.0
    init_timeout_s: float = 120.0
    prompt: str = "auto"
    modality: str = "auto"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"replay mode must be one of {MODES}, got {self.mode!r}")
        if not (self.rate > 0 and np.isfinite(self.rate)):
            raise ConfigError(f"replay rate must be a positive number, got {self.rate!r}")
        if self.mode == "realtime" and self.rate != 1.0:
            raise ConfigError("mode 'realtime' plays at rate 1.0; use mode 'rate' for another factor")
        if self.frame_timeout_s <= 0 or self.drain_timeout_s < 0 or self.init_timeout_s <= 0:
            raise ConfigError("timeouts must be positive")
        if self.prompt not in ("auto", "on", "off"):
            raise ConfigError(f"prompt must be auto, on or off, got {self.prompt!r}")
        if self.modality not in ("auto", "rgb") + tuple(m.value for m in AUX_MODALITIES):
            raise ConfigError(f"modality must be auto, rgb, depth, thermal or event, got {self.modality!r}")


@dataclass(frozen=True)
class NodeOptions:
    """The node under test.

    Attributes:
        model: registered variant (``model.name``).
        weights: weights file; None = the variant's shipped weights. The same file feeds the
            offline comparison rows.
        device: ``model.device``.
        num_threads: ``model.num_threads`` (0 = torch's default).
        keep: one keep ratio for CE/DTE/STE (``prune.keep_ratio_*``); None = the model's own.
        params_file: the user's parameter preset, applied before the replay's overrides.
        node_name: the node's name (``~/target`` = ``/<node_name>/target``).
        domain_id: ``ROS_DOMAIN_ID`` for node and player; None = a private one (``private_domain_id``).
        startup_timeout_s: how long the node may take to become active.
        log_dir: where node logs go (default: a temporary folder).
    """

    model: str = "tiny"
    weights: Optional[Path] = None
    device: str = "cpu"
    num_threads: int = 0
    keep: Optional[float] = None
    params_file: Optional[Path] = None
    node_name: str = "utptrack"
    domain_id: Optional[int] = None
    startup_timeout_s: float = 180.0
    log_dir: Optional[Path] = None


def parse_compare(text: str) -> list[str]:
    """The comparison rows of ``text``: ``none`` or a comma list of ``COMPARE_CHOICES``.

    Raises:
        ConfigError: an unknown row.
    """
    items = [] if text.strip() == "none" else [t.strip() for t in text.split(",") if t.strip()]
    bad = [i for i in items if i not in COMPARE_CHOICES]
    if bad:
        raise ConfigError(f"comparisons are none or {', '.join(COMPARE_CHOICES)}, got {', '.join(bad)}")
    return items


def random_weights_file(model: str, folder: Path, seed: int = 0) -> Path:
    """A seeded random-init ``model`` as a weights file in ``folder``, so node and offline rows
    share it (plumbing checks: ``--weights random``)."""
    torch.manual_seed(seed)
    return save_model(create_model(model), folder / f"{model}-random-seed{seed}.safetensors",
                      extra={"note": "random weights for plumbing checks"})
