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

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from ..config import AUX_BOUNDS, BUDGET_BOUNDS, PRUNE_MODES, TRACKER_BOUNDS, AuxConfig, Bounds, BudgetConfig, PruneConfig, TrackerConfig
from ..errors import ConfigError
from ..runtime import BACKENDS, resolve_backend
from ..runtime.tracker_network import DTYPES
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
    "parameter_descriptor",
    "PARAM_SPECS",
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
    # with sleeping workers a second thread makes tiny slower (figures: docs/profiling.md)
    num_threads: int = 1
    # auto: onnxruntime on the CPU, torch on CUDA (runtime.resolve_backend, resolved at configure);
    # onnxruntime (CPU only): the same network exported once per weights and keep ratios into
    # onnx_cache and run by onnxruntime, faster for tiny on the CPU (docs/profiling.md)
    backend: str = "auto"
    onnx_cache: str = ""  # "" = $UTPTRACK_CACHE_DIR, else ~/.cache/utptrack_ros
    # float16 / bfloat16: the torch network in half precision (contract in docs/gpu.md); auto -> torch
    dtype: str = "float32"


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
    max_targets: int = 1  # targets tracked at once (one batched forward); 1 = a new target replaces the old
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
#: the token budget (``config.BudgetConfig``): chosen at activate for this machine, start-up only
_BUDGET_DEFAULTS = {"prune.mode": BudgetConfig.mode, "prune.deadline_ms": BudgetConfig.deadline_ms}

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
    out.update(_BUDGET_DEFAULTS)
    return out


@dataclass(frozen=True)
class ParamSpec:
    """What ``ros2 param describe`` shows for one parameter, and the bounds :func:`build_settings`
    enforces (the descriptor's range and the validation are the same numbers).

    Attributes:
        description: what it does and when a change applies.
        bounds: numeric range (ints for integer parameters) with its reason; None = not numeric.
        read_only: settable at start-up only (parameter file, ``-p``, launch arguments): it
            decides what is loaded, subscribed or written (paths), so changing it needs a new
            process; ``ros2 param set`` is refused.
        constraints: the accepted values where a range cannot say it (choices, formats).
    """

    description: str
    bounds: Optional[Bounds] = None
    read_only: bool = False
    constraints: str = ""


_START_UP = "Start-up only (read-only)."
_CONFIGURE = "Applied at the next configure."
_LIVE = "Live: applied to the running tracker."
_QOS = f"one of {', '.join(QOS_NAMES)}"

PARAM_SPECS: dict[str, ParamSpec] = {
    "autostart": ParamSpec(f"configure + activate at start, for systems without a lifecycle manager. {_START_UP}",
                           read_only=True),
    "model.name": ParamSpec(f"registered model variant. {_START_UP}", read_only=True,
                            constraints="tiny, tiny_base, o256, o256_base, o384, o384_base"),
    "model.weights": ParamSpec(
        f"weights file: empty = the variant's shipped weights; a project .safetensors or an official "
        f"checkpoint path; 'random' = seeded random init (plumbing tests). A path: {_START_UP}", read_only=True),
    "model.device": ParamSpec(f"torch device. {_START_UP}", read_only=True,
                              constraints="cpu, cuda, cuda:N, or auto (cuda when available)"),
    "model.seed": ParamSpec(f"torch seed for model.weights 'random'. {_START_UP}",
                            Bounds(0, 2**31 - 1, "a seed"), read_only=True),
    "model.num_threads": ParamSpec(f"torch / onnxruntime CPU threads; 0 = the library's default. {_START_UP}",
                                   Bounds(0, 1024, "threads"), read_only=True),
    "model.backend": ParamSpec(
        f"runtime: auto = onnxruntime on the CPU, torch on CUDA (the configure log says which); onnxruntime "
        f"(CPU only; static graphs, prebuilt at install for the shipped presets, else exported once per weights "
        f"and keep ratios); torch. {_START_UP}", read_only=True, constraints="auto, torch, onnxruntime"),
    "model.onnx_cache": ParamSpec(
        f"root of the onnxruntime export cache; empty = $UTPTRACK_CACHE_DIR, else ~/.cache/utptrack_ros. "
        f"A path the node writes to: {_START_UP}", read_only=True),
    "model.dtype": ParamSpec(
        f"the torch network's precision (float16 / bfloat16: boxes within the contract of docs/gpu.md; "
        f"model.backend auto then runs torch; onnxruntime runs float32 only). {_START_UP}", read_only=True,
        constraints="float32, float16, bfloat16"),
    "input.modality": ParamSpec(f"auxiliary stream on aux/image. {_START_UP}", read_only=True,
                                constraints="rgb (none), depth, thermal, event"),
    "input.compressed": ParamSpec(f"RGB from image/compressed (sensor_msgs/CompressedImage) instead of image. {_START_UP}",
                                  read_only=True),
    "input.aux_compressed": ParamSpec(f"aux from aux/image/compressed instead of aux/image. {_START_UP}", read_only=True),
    "input.qos_image": ParamSpec(f"QoS of the RGB subscription. {_START_UP}", read_only=True, constraints=_QOS),
    "input.qos_aux": ParamSpec(f"QoS of the aux subscription. {_START_UP}", read_only=True, constraints=_QOS),
    "input.qos_depth": ParamSpec(f"KEEP_LAST depth of the image subscriptions. {_START_UP}",
                                 Bounds(1, 100, "messages queued per subscription"), read_only=True),
    "input.zero_stamp": ParamSpec(f"frames stamped 0: drop (WARN) or now (stamp with the node clock). {_START_UP}",
                                  read_only=True, constraints="drop, now"),
    "input.prompt": ParamSpec(f"initial language prompt; the prompt topic replaces it at run time. {_START_UP}",
                              read_only=True, constraints="at most input.max_prompt_chars characters"),
    "input.max_prompt_chars": ParamSpec(f"longer prompts are refused (WARN). {_START_UP}",
                                        Bounds(1, 10_000, "characters"), read_only=True),
    "input.init_buffer": ParamSpec(
        f"frames kept for ~/init_target by stamp. {_START_UP}",
        Bounds(1, 1000, "frames held in memory"), read_only=True,
        constraints="init_buffer * max_image_pixels * 6 bytes (RGB + aux) <= 4 GiB"),
    "input.max_targets": ParamSpec(
        "targets tracked at once, in one batched forward: ~/init_target with a new target_id adds one up to "
        f"this many (then refuses); with 1 a new target replaces the current one. {_START_UP}",
        Bounds(1, 64, "targets per frame"), read_only=True),
    "input.max_image_pixels": ParamSpec(
        f"frames with more pixels (W*H) are dropped with a WARN; bounds the memory of every frame. {_START_UP}",
        Bounds(1, 67_108_864, "pixels; 8192 x 8192 at most"), read_only=True),
    "sync.slop_s": ParamSpec(f"max |stamp(rgb) - stamp(aux)| of a pair, seconds. {_LIVE}", Bounds(0.0, 10.0, "seconds")),
    "sync.queue_size": ParamSpec(f"per-stream queue of not-yet-paired frames. {_LIVE}",
                                 Bounds(1, 100, "frames held in memory")),
    "sync.aux_timeout_s": ParamSpec("aux silent, or no RGB/aux pair within the slop, this long (node clock) -> RGB-only "
                                    f"fallback (WARN with the measured offset), seconds. {_LIVE}",
                                    Bounds(0.0, 3600.0, "seconds", low_open=True)),
    "output.debug_image": ParamSpec(f"create ~/debug_image (rendered only while subscribed). {_CONFIGURE}"),
    "output.diagnostics_period_s": ParamSpec("period of /diagnostics, seconds. Live: the timer is re-created at once.",
                                             Bounds(0.05, 60.0, "seconds")),
    "output.stale_s": ParamSpec(f"no RGB frame for this long while active -> STALE (ERROR), seconds. {_CONFIGURE}",
                                Bounds(0.0, 3600.0, "seconds", low_open=True)),
    "prune.enabled": ParamSpec(f"false = every keep ratio 1.0 (the unpruned network). {_LIVE}"),
    "prune.mode": ParamSpec(
        "token budget chosen at activate for this machine: on = the configured keep ratios; off = unpruned; auto = "
        "whichever of the two measured faster here for input.max_targets targets (measured once per device, "
        f"runtime, weights and batch, cached; /diagnostics says what was chosen and why). {_START_UP}",
        read_only=True, constraints=", ".join(PRUNE_MODES)),
    "prune.deadline_ms": ParamSpec(
        "> 0: run the largest keep ratios (most tokens) whose measured forward meets this many milliseconds "
        f"(mode on or auto); 0 = none. {_START_UP}", BUDGET_BOUNDS["deadline_ms"], read_only=True),
    **{f"prune.keep_ratio_{c}": ParamSpec(
        f"one keep ratio for every pruning layer of {name}; unset = the variant's per-layer ratios. {_LIVE}",
        Bounds(0.0, 1.0, "fraction of tokens kept; 1.0 keeps every token", low_open=True))
       for c, name in (("ce", "CE (search region)"), ("dte", "DTE (dynamic template)"), ("ste", "STE (static template)"))},
}

_TRACKER_TEXT = {
    "template_factor": "template crop side / target size (sqrt(w*h))",
    "search_factor": "search crop side / target size (sqrt(w*h)); sizes every per-frame crop",
    "update_interval": "frames between dynamic-template updates; 0 = never",
    "update_threshold": "windowed confidence above which the dynamic template is updated",
    "lost_threshold": "confidence below which the state is LOST (the box is still published)",
    "hann_window": "multiply the centre map by a Hann window before the argmax",
    "clip_margin": "pixels of the box kept inside the image",
    "size_smoothing": "fraction of the previous width/height kept on each confident frame; 0 = none",
    "max_scale_step": "largest fractional change of width / height per confident frame; 0 = unbounded",
    "min_size_ratio": "smallest box (geometric-mean side) as a fraction of the init box; 0 = none",
    "damping_confidence": "below this confidence the centre moves only part of the way to the prediction; 0 = off",
    "reacquire_after": "consecutive LOST frames before the search region widens to re-find the target; 0 = never",
    "reacquire_growth": "search-crop side multiplier per widening step while re-acquiring",
    "relock_threshold": "confidence a widened search's candidate needs to be taken (state RECOVERING)",
    "relock_frames": "consecutive confirming frames before RECOVERING becomes TRACKING",
    "depth_max_mm": "depth clip in millimetres (min(3 * median, this))",
    "thermal_mode": "16-bit thermal to 8 bits: minmax, percentile or linear",
    "thermal_low_pct": "percentile mapped to 0 (thermal_mode percentile)",
    "thermal_high_pct": "percentile mapped to 255 (thermal_mode percentile)",
    "thermal_gain": "8-bit value per raw count (thermal_mode linear)",
    "thermal_offset": "added after the gain (thermal_mode linear)",
}
for _f in _TRACKER_FIELDS:
    PARAM_SPECS[f"tracker.{_f.name}"] = ParamSpec(
        f"{_TRACKER_TEXT[_f.name]}; unset = the variant's value (filled in at configure). {_LIVE}",
        TRACKER_BOUNDS.get(_f.name))
for _f in _AUX_FIELDS:
    PARAM_SPECS[f"tracker.aux.{_f.name}"] = ParamSpec(
        f"{_TRACKER_TEXT[_f.name]}; unset = the variant's value (filled in at configure). {_LIVE}",
        AUX_BOUNDS.get(_f.name), constraints="minmax, percentile, linear" if _f.name == "thermal_mode" else "")


def parameter_descriptor(name: str) -> ParameterDescriptor:
    """The descriptor ``name`` is declared with: description, range, read-only (``ros2 param describe``).

    Every parameter is dynamically typed (``tracker.*`` are declared without a value and filled
    in at configure; a YAML ``1`` for a float parameter is accepted), so the range applies to
    values of its own type and :func:`build_settings` checks every value with the same bounds.
    """
    spec = PARAM_SPECS.get(name, ParamSpec(""))
    d = ParameterDescriptor(name=name, dynamic_typing=True, description=spec.description, read_only=spec.read_only)
    constraints = [spec.constraints] if spec.constraints else []
    b = spec.bounds
    if b is not None:
        if b.low_open:
            constraints.append(f"> {b.low:g}")
        constraints.append(b.reason)
        if isinstance(b.low, int) and isinstance(b.high, int):
            d.integer_range = [IntegerRange(from_value=b.low, to_value=b.high, step=1)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=float(b.low), to_value=float(b.high), step=0.0)]
    d.additional_constraints = "; ".join(constraints)
    return d


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
    requested_backend: str = ""  # model.backend as set ("auto"); model.backend holds the resolved one
    budget: BudgetConfig = BudgetConfig()  # prune.mode / prune.deadline_ms

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


#: worst case of the init history: RGB (3 bytes per pixel) + an aux frame (up to 3)
_HISTORY_BYTES_PER_PIXEL = 6
_MAX_HISTORY_BYTES = 4 * 2**30


def _check_bounds(group: str, params: Any) -> None:
    """Every bounded field of ``params`` (the ``group.*`` parameters) within its :data:`PARAM_SPECS` range."""
    for f in fields(params):
        name = f"{group}.{f.name}"
        b = PARAM_SPECS[name].bounds if name in PARAM_SPECS else None
        if b is not None:
            value = getattr(params, f.name)
            _check(b.holds(value), f"{name} must be in {b.text()} ({b.reason}), got {value!r}")


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
    _check(model.backend in BACKENDS, f"model.backend must be {', '.join(BACKENDS)}, got {model.backend!r}")
    _check(model.backend != "onnxruntime" or model.device == "cpu",
           f"model.backend onnxruntime runs on the CPU; model.device {model.device!r} needs model.backend "
           "torch or auto")
    _check(model.dtype in DTYPES, f"model.dtype must be {', '.join(DTYPES)}, got {model.dtype!r}")
    _check(model.backend != "onnxruntime" or model.dtype == "float32",
           f"model.backend onnxruntime runs float32 only; model.dtype {model.dtype!r} needs model.backend torch or auto")
    requested_backend = model.backend
    backend = "torch" if model.dtype != "float32" and model.backend == "auto" else model.backend
    model = replace(model, backend=resolve_backend(backend, model.device))
    modalities = [m.value for m in Modality]
    _check(inp.modality in modalities, f"input.modality must be one of {modalities}, got {inp.modality!r}")
    for key in ("qos_image", "qos_aux"):
        _check(getattr(inp, key) in QOS_NAMES, f"input.{key} must be one of {list(QOS_NAMES)}, got {getattr(inp, key)!r}")
    _check(inp.zero_stamp in ("drop", "now"), f"input.zero_stamp must be drop or now, got {inp.zero_stamp!r}")
    for group, params in (("model", model), ("input", inp), ("sync", sync), ("output", out)):
        _check_bounds(group, params)
    _check(len(inp.prompt) <= inp.max_prompt_chars,
           f"input.prompt has {len(inp.prompt)} characters; at most input.max_prompt_chars={inp.max_prompt_chars}")
    history = inp.init_buffer * inp.max_image_pixels * _HISTORY_BYTES_PER_PIXEL
    _check(history <= _MAX_HISTORY_BYTES,
           f"input.init_buffer * input.max_image_pixels allow {history / 2**30:.1f} GiB of buffered frames "
           f"(RGB + aux, {_HISTORY_BYTES_PER_PIXEL} bytes per pixel); at most {_MAX_HISTORY_BYTES / 2**30:.0f} GiB: "
           "lower one of them")

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
            b = PARAM_SPECS[key].bounds
            _check(b.holds(value), f"{key} must be in {b.text()} ({b.reason}), got {value}")
        ratios[c] = value
    enabled = values.get("prune.enabled", True)
    enabled = True if enabled is None else _coerce("prune.enabled", enabled, bool)
    autostart = values.get("autostart", False)
    autostart = False if autostart is None else _coerce("autostart", autostart, bool)
    return NodeSettings(model, inp, sync, out, tracker, enabled, ratios, autostart, requested_backend, _budget(values))


def _budget(values: Mapping[str, Any]) -> BudgetConfig:
    mode = values.get("prune.mode")
    deadline = values.get("prune.deadline_ms")
    mode = BudgetConfig.mode if mode is None else _coerce("prune.mode", mode, str)
    deadline = BudgetConfig.deadline_ms if deadline is None else _coerce("prune.deadline_ms", deadline, float)
    return BudgetConfig(mode=mode, deadline_ms=deadline)  # ConfigError names the parameter


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
        f"backend={settings.model.backend}"
        f"{' (auto)' if settings.requested_backend == 'auto' else ''} "
        f"modality={settings.input.modality} slop={settings.sync.slop_s}s queue={settings.sync.queue_size} "
        f"lost_threshold={settings.tracker.lost_threshold} prune={'on' if settings.prune_enabled else 'off'} "
        f"prune.mode={settings.budget.mode}"
        f"{f' prune.deadline_ms={settings.budget.deadline_ms:g}' if settings.budget.deadline_ms else ''} "
        f"max_targets={settings.input.max_targets}"
    )

