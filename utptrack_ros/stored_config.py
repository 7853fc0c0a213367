"""The :class:`~utptrack_ros.config.ModelConfig` stored in a project weights file, checked
before any network is built from it.

A project safetensors file names its architecture in its metadata (``checkpoint.save_model``),
and that JSON decides what :func:`~utptrack_ros.checkpoint.load_model` allocates. So it is
checked first: known keys, JSON types and ranges (:data:`LIMITS`), then the network it describes
is built on torch's ``meta`` device (shapes only, no memory) and its state dict is compared with
the tensors the file's header lists. A config that does not describe the file's own tensors is
refused with :class:`~utptrack_ros.errors.CheckpointError` before anything is allocated, so a
load never allocates more than the file holds.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import fields
from typing import Any, Mapping

import torch

from .config import ModelConfig, PruneConfig, from_mapping
from .errors import CheckpointError, ConfigError
from .models import UTPTrack
from .safetensors_header import SafetensorsHeader

# Inclusive bounds, generous around every registered variant (o384: 768 x 12; tiny: 128 x 6).
LIMITS: dict[str, tuple[float, float]] = {
    "in_chans": (3, 6),
    "embed_dim": (8, 4096),
    "depth": (1, 64),
    "num_heads": (1, 64),
    "mlp_ratio": (0.25, 8.0),
    "norm_eps": (1e-12, 0.1),
    "drop_path_rate": (0.0, 0.99),
    "template_size": (32, 1024),
    "search_size": (32, 1024),
    "text_dim": (0, 4096),
    "num_tasks": (0, 64),
}
HEAD_CHANNELS = (1, 2048)
MAX_TEXT = 64  # characters of name / stem / text_encoder / prune strings
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # it names the ONNX cache folder: no paths
_REPORT = 5

_INT = ("in_chans", "embed_dim", "depth", "num_heads", "template_size", "search_size", "text_dim", "num_tasks")
_FLOAT = ("mlp_ratio", "norm_eps", "drop_path_rate")
_BOOL = ("token_type_embed", "legacy_vit_params")
_STR = ("name", "stem", "text_encoder")


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _check_types(mapping: Mapping[str, Any]) -> None:
    """JSON types and :data:`LIMITS`; unknown keys are left to ``from_mapping`` (it names them)."""
    bad = []
    for key, value in mapping.items():
        if key in _INT and type(value) is not int or key in _FLOAT and not _is_number(value):
            bad.append(f"{key}={value!r:.40} is not a {'whole ' if key in _INT else ''}number")
        elif key in LIMITS and not LIMITS[key][0] <= value <= LIMITS[key][1]:
            bad.append(f"{key}={value} outside [{LIMITS[key][0]}, {LIMITS[key][1]}]")
        elif key in _BOOL and type(value) is not bool:
            bad.append(f"{key}={value!r:.40} is not true/false")
        elif key in _STR and not (isinstance(value, str) and len(value) <= MAX_TEXT):
            bad.append(f"{key}={value!r:.40} is not a string of at most {MAX_TEXT} characters")
        elif key == "name" and not NAME.fullmatch(value):
            bad.append(f"name={value!r:.40} is not a plain name (letters, digits, '_', '.', '-')")
        elif key == "head_channels" and not (
            isinstance(value, list) and len(value) == 4
            and all(type(c) is int and HEAD_CHANNELS[0] <= c <= HEAD_CHANNELS[1] for c in value)
        ):
            bad.append(f"head_channels={value!r:.60} is not 4 widths in [{HEAD_CHANNELS[0]}, {HEAD_CHANNELS[1]}]")
        elif key == "prune":
            bad.extend(_prune_problems(value))
    if bad:
        raise ConfigError("; ".join(bad))


def _prune_problems(value: Any) -> list[str]:
    if not isinstance(value, dict):
        return [f"prune={value!r:.40} is not a mapping"]
    bad = []
    known = {f.name for f in fields(PruneConfig)}
    for key, item in value.items():
        if key in ("ce", "dte", "ste"):
            pairs_ok = isinstance(item, list) and len(item) <= LIMITS["depth"][1] and all(
                isinstance(p, list) and len(p) == 2 and type(p[0]) is int and _is_number(p[1]) for p in item
            )
            if not pairs_ok:
                bad.append(f"prune.{key}={item!r:.60} is not a list of [layer, keep ratio] pairs")
        elif key in known and not (isinstance(item, str) and len(item) <= MAX_TEXT):
            bad.append(f"prune.{key}={item!r:.40} is not a short string")
    return bad


def _expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """State-dict shapes of the network ``config`` describes, built on the meta device."""
    with torch.device("meta"):
        model = UTPTrack(config)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def check_stored_config(text: str, header: SafetensorsHeader) -> ModelConfig:
    """Parse the stored config JSON and check it describes the file's tensors.

    Args:
        text: the ``model_config`` metadata value.
        header: the file's header (tensor names and shapes; no data read).
    Returns:
        The :class:`ModelConfig`.
    Raises:
        CheckpointError: unparsable JSON, unknown keys, wrong types, values out of range, or a
            network whose parameters differ from the stored tensors (names, shapes and totals).
    """
    path = header.path
    try:
        mapping = json.loads(text)
        if not isinstance(mapping, dict):
            raise ConfigError(f"expected a JSON object, got {type(mapping).__name__}")
        _check_types(mapping)
        config = from_mapping(ModelConfig, mapping)
    except (json.JSONDecodeError, ConfigError) as err:
        raise CheckpointError(f"{path}: invalid model_config metadata: {err}") from err
    expected = _expected_shapes(config)
    stored = header.shapes()
    if expected == stored:
        return config
    missing = [k for k in expected if k not in stored]
    extra = [k for k in stored if k not in expected]
    differ = [f"{k} {list(stored[k])} vs {list(v)}" for k, v in expected.items() if k in stored and stored[k] != v]
    parts = [f"{len(v)} {label}: {', '.join(v[:_REPORT])}{', ...' if len(v) > _REPORT else ''}"
             for label, v in (("shape(s) differ (file vs config)", differ), ("missing", missing),
                              ("not in the config", extra)) if v]
    n_expected = sum(math.prod(s) for s in expected.values())
    raise CheckpointError(
        f"{path}: model_config metadata ({config.name!r}) does not describe the stored tensors: "
        f"it needs {n_expected:,} parameters, the file holds {header.numel():,}; {'; '.join(parts)}"
    )
