"""The node's parameters: declared from dataclass defaults, validated into :class:`NodeSettings`.

Every default lives in exactly one place: the node's own groups below, and the core's
:class:`~utptrack_ros.config.TrackerConfig` / :class:`~utptrack_ros.config.AuxConfig` for
``tracker.*``. Core parameters (``tracker.*``, ``prune.keep_ratio_*``) are declared *without a
value*: unset means "the model variant's own setting" (e.g. ``search_factor`` 5.0 for o384);
after configure the node fills them in with the effective values so ``ros2 param get`` shows
them. :func:`build_settings` is a pure function (no rclpy), used at configure and by the
on-set-parameters callback, so an invalid value is rejected with the reason before it is set.
"""
from __future__ import annotations

import math
import typing
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping, Optional

from ..config import AuxConfig, PruneConfig, TrackerConfig
from ..errors import ConfigError
from ..types import Modality
from .qos import QOS_NAMES

__all__ = [
    "ModelParams",
    "InputParams",
    "SyncParams",
    "OutputParams",
    "NodeSettings",
    "GROUPS",
    "CORE_PARAMS",
    "LIVE_PREFIXES",
    "parameter_defaults",
    "build_settings",
]


@dataclass(frozen=True)
class ModelParams:
    """``model.*``: which network to load and where (applied at configure/activate)."""

    name: str = "tiny"  # registered variant: tiny, o256, o384, *_base
    weights: str = ""  # "" = the variant's shipped weights; a file path; "random" = random init (plumbing only)
    device: str = "cpu"  # cpu, cuda, cuda:N, auto
    seed: int = 0  # torch seed for weights == "random"
    # torch CPU threads (0 = torch's default, one per core). 1 by default: utptrack_node runs with
    # OMP_WAIT_POLICY=PASSIVE (sleeping OpenMP workers leave the cores to the other nodes), and
    # with sleeping workers a second thread makes tiny slower (2-core CPU: 24.6 vs 35.4 frames/s)
    num_threads: int = 1
    # torch, or onnxruntime (CPU only): the same network exported once per weights and keep ratios
    # into onnx_cache and run by onnxruntime, ~1.4x faster for tiny on 2 cores (runtime/network.py)
    backend: str = "torch"
    onnx_cache: str = ""  # "" = $UTPTRACK_CACHE_DIR, else ~/.cache/utptrack_ros


@dataclass(frozen=True)
class InputParams:
    """``input.*``: what the node subscribes to (applied at activate)."""

    modality: str = "rgb"  # aux stream on aux/image: rgb (none), depth, thermal, event
    compressed: bool = False  # RGB from image/compressed (sensor_msgs/CompressedImage) instead of image
    aux_compressed: bool = False  # aux from aux/image/compressed instead of aux/image
    qos_image: str = "reliable"  # reliable, sensor_data, best_effort, system_default
    qos_aux: str = "reliable"
    qos_depth: int = 2  # subscription KEEP_LAST depth (small: stale frames are dropped anyway)
    zero_stamp: str = "drop"  # frames with header.stamp == 0: drop (WARN) or now (stamp with the node clock)
    prompt: str = ""  # initial language prompt (the prompt topic replaces it at run time)
    max_prompt_chars: int = 500  # longer prompts are refused (WARN), the current one is kept
    init_buffer: int = 30  # frames kept for ~/init_target by stamp
    max_image_pixels: int = 16_777_216  # frames with more pixels (W*H) are dropped with a WARN; bounds memory


@dataclass(frozen=True)
class SyncParams:
    """``sync.*``: approximate-time pairing of RGB and aux (live)."""

    slop_s: float = 0.02  # max |stamp(rgb) - stamp(aux)| of a pair
    queue_size: int = 5  # per-stream queue of not-yet-paired frames
    aux_timeout_s: float = 1.0  # aux silent this long (node clock) -> RGB-only fallback (WARN)


@dataclass(frozen=True)
class OutputParams:
    """``output.*``: diagnostics and debug outputs (applied at configure)."""

    debug_image: bool = True  # render ~/debug_image (only while someone subscribes)
    diagnostics_period_s: float = 1.0
    stale_s: float = 2.0  # no RGB frame for this long while active -> STALE (ERROR level)


GROUPS: dict[str, type] = {"model": ModelParams, "input": InputParams, "sync": SyncParams, "output": OutputParams}

_TRACKER_FIELDS = [f for f in fields(TrackerConfig) if f.name != "aux"]
_AUX_FIELDS = list(fields(AuxConfig))
_RATIO_COMPONENTS = ("ce", "dte", "ste")

#: declared without a value (unset = the variant's own); name -> python type
_TRACKER_TYPES = typing.get_type_hints(TrackerConfig)
_AUX_TYPES = typing.get_type_hints(AuxConfig)
CORE_PARAMS: dict[str, type] = {
    **{f"tracker.{f.name}": _TRACKER_TYPES[f.name] for f in _TRACKER_FIELDS},
    **{f"tracker.aux.{f.name}": _AUX_TYPES[f.name] for f in _AUX_FIELDS},
    **{f"prune.keep_ratio_{c}": float for c in _RATIO_COMPONENTS},
}
_BOOL_CORE = {"prune.enabled": True}

#: parameters applied while the node is active; everything else takes effect at the next configure
LIVE_PREFIXES = ("tracker.", "prune.", "sync.")


def parameter_defaults() -> dict[str, Any]:
    """Every parameter name -> default (``None`` = declared without a value)."""
    out: dict[str, Any] = {"autostart": False}
    for group, cls in GROUPS.items():
        for f in fields(cls):
            out[f"{group}.{f.name}"] = f.default
    out.update({name: None for name in CORE_PARAMS})
    out.update(_BOOL_CORE)
    return out


@dataclass(frozen=True)
class NodeSettings:
    """Everything the node runs with, validated."""

    model: ModelParams
    input: InputParams
    sync: SyncParams
    output: OutputParams
    tracker: TrackerConfig
    prune_enabled: bool
    keep_ratios: dict  # component -> ratio or None (variant's own)
    autostart: bool

    @property
    def modality(self) -> Modality:
        return Modality(self.input.modality)

    def prune_config(self, variant: PruneConfig) -> PruneConfig:
        """The keep ratios to run with, starting from the model's own per-layer ratios."""
        if not self.prune_enabled:
            return variant.off()
        return variant.with_keep_ratio(**self.keep_ratios)


def _coerce(name: str, value: Any, tp: type) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{name}: must be finite, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{name}: unsupported type {tp}")  # pragma: no cover


def _group(cls: type, prefix: str, values: Mapping[str, Any]):
    kwargs = {}
    for f in fields(cls):
        key = f"{prefix}.{f.name}"
        if key in values and values[key] is not None:
            kwargs[f.name] = _coerce(key, values[key], type(f.default))
    return cls(**kwargs)


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def build_settings(values: Mapping[str, Any], variant_tracker: TrackerConfig) -> NodeSettings:
    """Validate parameter ``values`` (name -> value, None = unset) into :class:`NodeSettings`.

    Args:
        values: current parameter values (with a pending change applied).
        variant_tracker: the model variant's TrackerConfig (what unset ``tracker.*`` mean).
    Raises:
        ConfigError: naming the parameter and the accepted values.
    """
    known = set(parameter_defaults())
    unknown = sorted(k for k in values if k not in known and not k.startswith(("qos_overrides.", "use_sim_time")))
    _check(not unknown, f"unknown parameter(s) {unknown}")
    model = _group(ModelParams, "model", values)
    inp = _group(InputParams, "input", values)
    sync = _group(SyncParams, "sync", values)
    out = _group(OutputParams, "output", values)

    _check(bool(model.name), "model.name must name a registered variant")
    _check(model.device == "auto" or model.device == "cpu" or model.device.startswith("cuda"),
           f"model.device must be cpu, cuda, cuda:N or auto, got {model.device!r}")
    _check(model.num_threads >= 0, f"model.num_threads must be >= 0, got {model.num_threads}")
    _check(model.backend in ("torch", "onnxruntime"),
           f"model.backend must be torch or onnxruntime, got {model.backend!r}")
    _check(model.backend == "torch" or model.device == "cpu",
           f"model.backend onnxruntime runs on the CPU; model.device {model.device!r} needs model.backend torch")
    modalities = [m.value for m in Modality]
    _check(inp.modality in modalities, f"input.modality must be one of {modalities}, got {inp.modality!r}")
    for key in ("qos_image", "qos_aux"):
        _check(getattr(inp, key) in QOS_NAMES, f"input.{key} must be one of {list(QOS_NAMES)}, got {getattr(inp, key)!r}")
    _check(1 <= inp.qos_depth <= 100, f"input.qos_depth must be in [1, 100], got {inp.qos_depth}")
    _check(inp.zero_stamp in ("drop", "now"), f"input.zero_stamp must be drop or now, got {inp.zero_stamp!r}")
    _check(1 <= inp.max_prompt_chars <= 10000, f"input.max_prompt_chars must be in [1, 10000], got {inp.max_prompt_chars}")
    _check(len(inp.prompt) <= inp.max_prompt_chars,
           f"input.prompt has {len(inp.prompt)} characters; at most input.max_prompt_chars={inp.max_prompt_chars}")
    _check(1 <= inp.init_buffer <= 1000, f"input.init_buffer must be in [1, 1000], got {inp.init_buffer}")
    _check(0.0 <= sync.slop_s <= 10.0, f"sync.slop_s must be in [0, 10] seconds, got {sync.slop_s}")
    _check(1 <= sync.queue_size <= 100, f"sync.queue_size must be in [1, 100], got {sync.queue_size}")
    _check(0.0 < sync.aux_timeout_s <= 3600.0, f"sync.aux_timeout_s must be in (0, 3600], got {sync.aux_timeout_s}")
    _check(0.05 <= out.diagnostics_period_s <= 60.0,
           f"output.diagnostics_period_s must be in [0.05, 60], got {out.diagnostics_period_s}")
    _check(0.0 < out.stale_s <= 3600.0, f"output.stale_s must be in (0, 3600], got {out.stale_s}")

    tracker_kwargs = {}
    for f in _TRACKER_FIELDS:
        key = f"tracker.{f.name}"
        if values.get(key) is not None:
            tracker_kwargs[f.name] = _coerce(key, values[key], CORE_PARAMS[key])
    aux_kwargs = {}
    for f in _AUX_FIELDS:
        key = f"tracker.aux.{f.name}"
        if values.get(key) is not None:
            aux_kwargs[f.name] = _coerce(key, values[key], CORE_PARAMS[key])
    try:  # the core's __post_init__ checks ranges and says which field is wrong
        aux = replace(variant_tracker.aux, **aux_kwargs)
        tracker = replace(variant_tracker, aux=aux, **tracker_kwargs)
    except (ConfigError, TypeError, ValueError) as err:
        raise ConfigError(f"tracker.*: {err}") from err

    ratios: dict[str, Optional[float]] = {}
    for c in _RATIO_COMPONENTS:
        key = f"prune.keep_ratio_{c}"
        value = values.get(key)
        if value is not None:
            value = _coerce(key, value, float)
            _check(0.0 < value <= 1.0, f"{key} must be in (0, 1] (1.0 keeps every token), got {value}")
        ratios[c] = value
    enabled = values.get("prune.enabled", True)
    enabled = True if enabled is None else _coerce("prune.enabled", enabled, bool)
    autostart = values.get("autostart", False)
    autostart = False if autostart is None else _coerce("autostart", autostart, bool)
    return NodeSettings(model, inp, sync, out, tracker, enabled, ratios, autostart)


def effective_core_values(settings: NodeSettings, variant_prune: PruneConfig) -> dict[str, Any]:
    """``tracker.*`` / ``prune.keep_ratio_*`` values in effect (to fill in unset parameters)."""
    out: dict[str, Any] = {}
    for f in _TRACKER_FIELDS:
        out[f"tracker.{f.name}"] = getattr(settings.tracker, f.name)
    for f in _AUX_FIELDS:
        out[f"tracker.aux.{f.name}"] = getattr(settings.tracker.aux, f.name)
    prune = settings.prune_config(variant_prune)
    for c in _RATIO_COMPONENTS:
        ratios = {r for _, r in getattr(prune, c)}
        if len(ratios) == 1:
            out[f"prune.keep_ratio_{c}"] = ratios.pop()
    return out


def settings_summary(settings: NodeSettings) -> str:
    """One line for the configure log."""
    return (
        f"model={settings.model.name} weights={settings.model.weights or '<shipped>'} device={settings.model.device} "
        f"backend={settings.model.backend} "
        f"modality={settings.input.modality} slop={settings.sync.slop_s}s queue={settings.sync.queue_size} "
        f"lost_threshold={settings.tracker.lost_threshold} prune={'on' if settings.prune_enabled else 'off'}"
    )

