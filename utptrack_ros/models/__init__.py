"""Model registry: ``create_model(name)`` builds a registered variant.

The registry is an explicit dict: the ViT variants (``utptrack.VARIANTS``: UTPTrack-O, OSTrack,
tiny) and the Fast-iTPN S family (``sutrack.S_VARIANTS``: SUTrack, UTPTrack-S), not filled by
import side effects. :func:`build_model` builds the network class a :class:`ModelConfig` names.
"""
from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from ..config import ModelConfig, PruneConfig, TrackerConfig
from ..errors import ConfigError
from .sutrack import S_VARIANTS, SUTrack
from .utptrack import VARIANTS as VIT_VARIANTS
from .utptrack import ModelOutput, UTPTrack

VARIANTS = {**VIT_VARIANTS, **S_VARIANTS}

__all__ = [
    "UTPTrack",
    "SUTrack",
    "ModelOutput",
    "build_model",
    "create_model",
    "list_models",
    "model_config",
    "default_tracker_config",
    "shipped_weights",
]


def list_models() -> list[str]:
    return sorted(VARIANTS)


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """The registered :class:`ModelConfig` of ``name`` with field ``overrides`` applied."""
    if name not in VARIANTS:
        raise ConfigError(f"unknown model {name!r}; registered: {list_models()}")
    return replace(VARIANTS[name][0], **overrides) if overrides else VARIANTS[name][0]


def default_tracker_config(name: str) -> TrackerConfig:
    """The inference settings the variant was designed with (e.g. search factor 5 for o384)."""
    if name not in VARIANTS:
        raise ConfigError(f"unknown model {name!r}; registered: {list_models()}")
    return VARIANTS[name][1]


def build_model(config: ModelConfig, pretrained_stem: bool = False) -> UTPTrack:
    """The network for ``config``: :class:`SUTrack` for a ``fast_itpn`` backbone, else :class:`UTPTrack`."""
    if config.backbone == "fast_itpn":
        return SUTrack(config)
    return UTPTrack(config, pretrained_stem=pretrained_stem)


def create_model(
    name: str, prune: Optional[PruneConfig] = None, pretrained_stem: bool = False, **overrides: Any
) -> UTPTrack:
    """Build variant ``name`` with random weights (load weights with ``utptrack_ros.checkpoint``).

    Args:
        prune: keep ratios to build with instead of the variant's own.
        pretrained_stem: initialise a MobileNetV2 stem from the offline ImageNet weights.
        overrides: other :class:`ModelConfig` fields.
    """
    if prune is not None:
        overrides["prune"] = prune  # validated together with the other overrides
    return build_model(model_config(name, **overrides), pretrained_stem=pretrained_stem)


def shipped_weights(name: str) -> Optional[Path]:
    """The weights file shipped inside the package for variant ``name`` (``weights/<name>.safetensors``).

    Only variants trained by this project ship weights (``tiny``); the ViT-B variants take
    official OSTrack / UTPTrack-O files the user supplies. ``*_base`` variants share the weights
    of their pruned sibling (pruning adds no parameters).
    """
    model_config(name)  # validates the name
    stem = name[: -len("_base")] if name.endswith("_base") else name
    path = resources.files("utptrack_ros").joinpath("weights", f"{stem}.safetensors")
    return Path(str(path)) if path.is_file() else None
