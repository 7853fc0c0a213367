"""Frozen configuration dataclasses of the core; each default lives here and nowhere else.

YAML and ROS parameters enter only through :func:`from_mapping`, which rejects unknown keys.
Functions take the fields they use; variants are built with :func:`dataclasses.replace`.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Mapping, Optional, Protocol, TypeVar

from .errors import ConfigError

TTA_MODES = ("none", "full", "soft", "all")
# How the first-frame box becomes the template box prior (``preprocess.template_box``, method.md 6.5)
TEMPLATE_BOX_RULES = ("crop", "ostrack", "sutrack")
TEXT_TARGETS = ("C", "D", "S")  # CE (search), DTE (dynamic template), STE (static template)
COMPONENTS = ("ce", "dte", "ste")

LayerRatios = tuple[tuple[int, float], ...]


class _Dataclass(Protocol):
    """What ``dataclasses.fields`` needs: any dataclass instance."""

    __dataclass_fields__: ClassVar[dict[str, Any]]


_Config = TypeVar("_Config", bound=_Dataclass)  # the dataclass from_mapping builds


def _check_layer_ratios(name: str, value: LayerRatios) -> None:
    seen = set()
    for item in value:
        if len(item) != 2:
            raise ConfigError(f"prune.{name}: expected (layer, keep_ratio) pairs, got {item!r}")
        layer, ratio = item
        if not isinstance(layer, int) or layer < 0:
            raise ConfigError(f"prune.{name}: layer index must be a non-negative int, got {layer!r}")
        if layer in seen:
            raise ConfigError(f"prune.{name}: layer {layer} listed twice")
        seen.add(layer)
        if not (isinstance(ratio, (int, float)) and 0.0 < float(ratio) <= 1.0 and math.isfinite(ratio)):
            raise ConfigError(f"prune.{name}: keep ratio must be in (0, 1], got {ratio!r} at layer {layer}")


@dataclass(frozen=True)
class PruneConfig:
    """Where and how hard the encoder prunes (method.md 4.2-4.5).

    Attributes:
        ce: ``(layer, keep_ratio)`` for candidate elimination of search-region tokens.
        dte: same for the dynamic template.
        ste: same for the static template (gets the +1 centre bonus and the TTA bonus).
        tta_mode: first-frame box prior in STE: ``none``, ``full`` (patch fully inside the box),
            ``soft`` (foreground fraction) or ``all`` (any overlap).
        text_guided: components whose scores also use the text token's attention row when a
            prompt is present: a ``-``-joined subset of ``C``, ``D``, ``S`` (``""`` = off).
    Layer indices are 0-based encoder block indices. A ratio of 1.0 keeps everything.
    """

    ce: LayerRatios = ()
    dte: LayerRatios = ()
    ste: LayerRatios = ()
    tta_mode: str = "all"
    text_guided: str = ""

    def __post_init__(self) -> None:
        for name in COMPONENTS:
            value = tuple((int(layer), float(r)) for layer, r in getattr(self, name))
            _check_layer_ratios(name, value)
            object.__setattr__(self, name, value)
        if self.tta_mode not in TTA_MODES:
            raise ConfigError(f"prune.tta_mode must be one of {TTA_MODES}, got {self.tta_mode!r}")
        if self.text_guided:
            parts = self.text_guided.split("-")
            bad = [p for p in parts if p not in TEXT_TARGETS]
            if bad:
                raise ConfigError(
                    f"prune.text_guided must be a '-'-joined subset of {TEXT_TARGETS}, got {self.text_guided!r}"
                )

    def ratio(self, component: str, layer: int) -> float:
        """Keep ratio of ``component`` (``ce``/``dte``/``ste``) at ``layer``; 1.0 where none is set."""
        return dict(getattr(self, component)).get(layer, 1.0)

    def text_guides(self, component: str) -> bool:
        letter = {"ce": "C", "dte": "D", "ste": "S"}[component]
        return letter in self.text_guided.split("-")

    @property
    def enabled(self) -> bool:
        return any(r < 1.0 for name in COMPONENTS for _, r in getattr(self, name))

    def with_keep_ratio(
        self, ce: Optional[float] = None, dte: Optional[float] = None, ste: Optional[float] = None
    ) -> "PruneConfig":
        """Same layers, one ratio per component (a controlled token budget; method.md 4.6).

        ``None`` leaves that component's per-layer ratios as they are; 1.0 turns it off.
        """
        def uniform(layers: LayerRatios, value: Optional[float]) -> LayerRatios:
            return layers if value is None else tuple((layer, float(value)) for layer, _ in layers)

        return replace(self, ce=uniform(self.ce, ce), dte=uniform(self.dte, dte), ste=uniform(self.ste, ste))

    def off(self) -> "PruneConfig":
        """The unpruned baseline: every ratio 1.0 (layers kept so the ledger stays comparable)."""
        return self.with_keep_ratio(1.0, 1.0, 1.0)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one registered variant (see ``utptrack_ros.models``).

    Attributes:
        name: registry name, e.g. ``o256``.
        backbone: ``vit`` (a stem + plain pre-norm ViT blocks: OSTrack, UTPTrack-O, tiny) or
            ``fast_itpn`` (SUTrack / UTPTrack-S: stride-4 conv stem, conv-MLP stages 1-2 per
            image, ``depth`` iTPN attention blocks over ``[CLS, SR, ST, DT, TEXT]``; ``models/itpn.py``).
        stem: for ``vit``: ``patch16`` (one 16x16/16 conv, ViT/OSTrack) or ``mobilenetv2``
            (ImageNet MobileNetV2 up to stride 16 + a 1x1 projection; the CPU-sized model).
        stage_depths: conv-MLP blocks of Fast-iTPN stages 1 and 2 (``fast_itpn`` only).
        depth: transformer blocks (Fast-iTPN: stage 3; pruning layer indices count these).
        in_chans: 3 (RGB) or 6 (RGB | auxiliary, method.md 3.1).
        template_size / search_size: crop sizes in pixels; grids are size // 16.
        head_channels: the four conv widths of each centre-head branch.
        token_type_embed: add search / template-foreground / template-background embeddings.
        text_dim: feature size of the text encoder (0 = no text token).
        text_encoder: ``minilm`` or ``clip`` (the encoder used at inference; see models.text).
        num_tasks: outputs of the task-identification head (0 = no head).
        legacy_vit_params: keep OSTrack's unused ``cls_token`` / MAE ``pos_embed`` so official
            checkpoints load strictly.
        num_templates: 2 (static + dynamic template, UTPTrack / SUTrack) or 1 (OSTrack: one
            template, no dynamic template, no template updates, CE only).
        template_box: how the tracker maps the target box into the template crop for the box
            prior (type embeddings, TTA), each family as its official code does
            (``preprocess.template_box``): ``ostrack`` (centre (T-1)/2, normalised by T),
            ``sutrack`` (centre (T-1)/2, normalised by T-1) or ``crop`` (the exact inverse of the
            map-back: centre T/2, normalised by T; what the project's own models train with).
    """

    name: str
    backbone: str = "vit"
    stem: str = "patch16"
    stage_depths: tuple[int, ...] = ()
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    drop_path_rate: float = 0.1
    template_size: int = 128
    search_size: int = 256
    head_channels: tuple[int, ...] = (256, 128, 64, 32)
    token_type_embed: bool = False
    text_dim: int = 0
    text_encoder: str = ""
    num_tasks: int = 0
    legacy_vit_params: bool = False
    num_templates: int = 2
    template_box: str = "crop"
    prune: PruneConfig = field(default_factory=PruneConfig)

    def __post_init__(self) -> None:
        if self.backbone not in ("vit", "fast_itpn"):
            raise ConfigError(f"model.backbone must be 'vit' or 'fast_itpn', got {self.backbone!r}")
        if self.backbone == "fast_itpn" and (len(self.stage_depths) != 2 or self.embed_dim % 4):
            raise ConfigError("a fast_itpn backbone needs stage_depths (d1, d2) and embed_dim divisible by 4")
        if self.stem not in ("patch16", "mobilenetv2"):
            raise ConfigError(f"model.stem must be 'patch16' or 'mobilenetv2', got {self.stem!r}")
        if self.in_chans not in (3, 6):
            raise ConfigError(f"model.in_chans must be 3 or 6, got {self.in_chans}")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim {self.embed_dim} not divisible by num_heads {self.num_heads}")
        for name in ("template_size", "search_size"):
            if getattr(self, name) % 16 or getattr(self, name) < 32:
                raise ConfigError(f"model.{name} must be a multiple of 16 >= 32, got {getattr(self, name)}")
        if len(self.head_channels) != 4:
            raise ConfigError(f"model.head_channels needs 4 widths, got {self.head_channels}")
        for name in COMPONENTS:
            for layer, _ in getattr(self.prune, name):
                if layer >= self.depth:
                    raise ConfigError(f"prune.{name} layer {layer} >= depth {self.depth}")
        if self.prune.text_guided and not self.text_dim:
            raise ConfigError("prune.text_guided needs a text token (text_dim > 0)")
        if self.num_templates not in (1, 2):
            raise ConfigError(f"model.num_templates must be 1 or 2, got {self.num_templates}")
        if self.num_templates == 1 and (self.prune.dte or self.prune.ste):
            raise ConfigError("a single-template model has no template pruning: prune.dte and prune.ste must be empty")
        if self.template_box not in TEMPLATE_BOX_RULES:
            raise ConfigError(f"model.template_box must be one of {TEMPLATE_BOX_RULES}, got {self.template_box!r}")

    @property
    def template_grid(self) -> int:
        return self.template_size // 16

    @property
    def search_grid(self) -> int:
        return self.search_size // 16


class Bounds(typing.NamedTuple):
    """Inclusive ``[low, high]`` of a numeric field (``low_open``: ``low`` itself is refused) and why."""

    low: float
    high: float
    reason: str
    low_open: bool = False

    def text(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"

    def holds(self, value: float) -> bool:
        return (self.low < value if self.low_open else self.low <= value) and value <= self.high


def check_bounds(obj: Any, bounds: Mapping[str, Bounds], prefix: str = "") -> None:
    """Raise :class:`ConfigError` naming the first field of ``obj`` outside its ``bounds``."""
    for name, b in bounds.items():
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not b.holds(value):
            raise ConfigError(f"{prefix}{name} must be in {b.text()} ({b.reason}), got {value!r}")


#: Bounds of :class:`AuxConfig`'s numeric fields (also the node's ``tracker.aux.*`` parameter ranges).
AUX_BOUNDS: dict[str, Bounds] = {
    "depth_max_mm": Bounds(0.0, 1_000_000.0, "millimetres; 0 would clip every depth", low_open=True),
    "thermal_low_pct": Bounds(0.0, 100.0, "a percentile"),
    "thermal_high_pct": Bounds(0.0, 100.0, "a percentile"),
    "thermal_gain": Bounds(0.0, 1_000_000.0, "8-bit value per raw count", low_open=True),
    "thermal_offset": Bounds(-1_000_000.0, 1_000_000.0, "8-bit value added after the gain"),
}

#: Bounds of :class:`TrackerConfig`'s numeric fields (also the node's ``tracker.*`` parameter
#: ranges). The crop factors size every crop the tracker allocates: its side is
#: ``factor * sqrt(w * h)`` image pixels (zero-padded beyond the image) before the resize, so
#: the memory of one crop grows with the factor squared; beyond these bounds the target also
#: shrinks to a patch or two of the model's input (o384: 384 px / 8 = 48 px = 3 patches).
TRACKER_BOUNDS: dict[str, Bounds] = {
    "template_factor": Bounds(1.0, 4.0, "template crop side / target size; official 2"),
    "search_factor": Bounds(1.0, 8.0, "search crop side / target size; official 4 (o384: 5)"),
    "update_interval": Bounds(0, 1_000_000, "frames between dynamic-template updates; 0 = never"),
    "update_threshold": Bounds(0.0, 1.0, "a confidence"),
    "lost_threshold": Bounds(0.0, 1.0, "a confidence"),
    "clip_margin": Bounds(0, 100_000, "pixels"),
    "size_smoothing": Bounds(0.0, 0.99, "fraction of the previous size kept; 1 would freeze it"),
    "max_scale_step": Bounds(0.0, 10.0, "largest relative change of w or h per frame; 0 = unbounded"),
    "min_size_ratio": Bounds(0.0, 1.0, "smallest box side / init box side (geometric mean); 0 = none"),
    "damping_confidence": Bounds(0.0, 1.0, "a confidence; 0 = no centre damping"),
    "reacquire_after": Bounds(0, 1_000_000, "LOST frames before the search widens; 0 = never widen"),
    "reacquire_growth": Bounds(1.0, 8.0, "search crop side multiplier per widening step", low_open=True),
    "relock_threshold": Bounds(0.0, 1.0, "a confidence"),
    "relock_frames": Bounds(1, 1000, "consecutive confirming frames before TRACKING again"),
}


@dataclass(frozen=True)
class AuxConfig:
    """How auxiliary frames become the 3-channel, 8-bit image the model sees (method.md 3.2).

    Attributes:
        depth_max_mm: depth is clipped at ``min(3 * median(valid depth), depth_max_mm)``.
        thermal_mode: ``minmax`` (per-frame min-max of valid pixels to 0..255), ``percentile``
            (per-frame stretch between ``thermal_low_pct`` and ``thermal_high_pct``) or
            ``linear`` (``value * thermal_gain + thermal_offset``, clipped to 0..255).
    """

    depth_max_mm: float = 10000.0
    thermal_mode: str = "percentile"
    thermal_low_pct: float = 1.0
    thermal_high_pct: float = 99.0
    thermal_gain: float = 1.0 / 256.0
    thermal_offset: float = 0.0

    def __post_init__(self) -> None:
        if self.thermal_mode not in ("minmax", "percentile", "linear"):
            raise ConfigError(f"aux.thermal_mode must be minmax, percentile or linear, got {self.thermal_mode!r}")
        check_bounds(self, AUX_BOUNDS, "aux.")
        if not self.thermal_low_pct < self.thermal_high_pct:
            raise ConfigError("aux.thermal_low_pct must be < thermal_high_pct, both in [0, 100]")


@dataclass(frozen=True)
class TrackerConfig:
    """Inference-time procedure around the network (method.md 6).

    Attributes:
        template_factor / search_factor: crop side = ceil(sqrt(w*h) * factor).
        update_interval / update_threshold: the dynamic template is replaced on frames where
            ``frame_index % update_interval == 0`` and windowed confidence > threshold
            (``update_interval = 0`` disables updates).
        lost_threshold: confidence below this reports state LOST (the box is still returned).
        hann_window: multiply the centre map by a Hann window before the argmax.
        clip_margin: the box keeps at least this many pixels inside the image.
        size_smoothing: fraction of the previous width/height kept on each confident frame
            (``w = s * w_prev + (1 - s) * w_pred``; the centre is the prediction's). 0 = the
            official procedure (no smoothing); a small model's noisy size estimates benefit.
        max_scale_step: on a confident frame, w and h each move at most this fraction from the
            previous box's (``w / w_prev`` within ``[1 / (1 + s), 1 + s]``); 0 = unbounded (official).
        min_size_ratio: the box's geometric-mean side stays at least this fraction of the init
            box's (the aspect ratio is kept), so the box and the search region cannot collapse onto
            a sub-part of the target; 0 = no floor (official).
        damping_confidence: on a tracked frame with confidence ``c`` below this, the centre moves
            only ``c / damping_confidence`` of the way to the prediction (a low-confidence jump is
            damped); 0 = off (official).
        reacquire_after: after this many consecutive LOST frames the search crop widens by
            ``reacquire_growth`` per frame (no Hann window, the dynamic template reset to the
            static one) until it covers the whole frame; 0 = never (official: the search stays
            around the last confident box).
        reacquire_growth: crop side multiplier per widening step.
        relock_threshold / relock_frames: a widened search's candidate above ``relock_threshold``
            turns the state to RECOVERING and the search back to normal around it; TRACKING
            resumes after ``relock_frames`` consecutive frames above the threshold whose centres
            move less than one box size.
    """

    template_factor: float = 2.0
    search_factor: float = 4.0
    update_interval: int = 25
    update_threshold: float = 0.7
    lost_threshold: float = 0.25
    hann_window: bool = True
    clip_margin: int = 10
    size_smoothing: float = 0.0
    max_scale_step: float = 0.0
    min_size_ratio: float = 0.0
    damping_confidence: float = 0.0
    reacquire_after: int = 5
    reacquire_growth: float = 1.5
    relock_threshold: float = 0.5
    relock_frames: int = 3
    aux: AuxConfig = field(default_factory=AuxConfig)

    def __post_init__(self) -> None:
        check_bounds(self, TRACKER_BOUNDS)


PRUNE_MODES = ("on", "off", "auto")

#: Bounds of :class:`BudgetConfig`'s numeric fields (the node's ``prune.deadline_ms`` etc. ranges).
BUDGET_BOUNDS: dict[str, Bounds] = {
    "deadline_ms": Bounds(0.0, 60_000.0, "milliseconds per forward on this machine; 0 = no deadline"),
    "hysteresis": Bounds(0.0, 0.5, "fraction of the deadline / cost a change must win by"),
    "runs": Bounds(1, 1000, "timed forwards per schedule when measuring the cost table"),
}


@dataclass(frozen=True)
class BudgetConfig:
    """Which keep ratios run on this machine (``runtime.budget``; the node's ``prune.mode`` and
    ``prune.deadline_ms``). Not part of the architecture: the weights file and the exported graphs
    do not depend on it.

    Attributes:
        mode: ``on`` (the configured keep ratios), ``off`` (every ratio 1.0) or ``auto`` (whichever
            of the two measured faster for the configured batch on this device).
        deadline_ms: > 0: the largest keep ratios (most tokens) whose measured forward meets this
            many milliseconds, among unpruned, the configured ratios and ``ladder``; 0 = none.
            Needs ``mode`` ``on`` or ``auto``.
        hysteresis: a change of schedule must win by this fraction: a larger schedule is taken only
            when it costs <= ``(1 - hysteresis) * deadline_ms``; ``auto`` switches only when the
            other schedule is that much cheaper. Stops flapping when costs are near the line.
        ladder: uniform keep ratios (every pruning layer of every component) tried for the deadline.
        runs: timed forwards per schedule when measuring.
    """

    mode: str = "on"
    deadline_ms: float = 0.0
    hysteresis: float = 0.1
    ladder: tuple[float, ...] = (0.9, 0.8, 0.7, 0.6, 0.5)
    runs: int = 10

    def __post_init__(self) -> None:
        if self.mode not in PRUNE_MODES:
            raise ConfigError(f"prune.mode must be one of {PRUNE_MODES}, got {self.mode!r}")
        check_bounds(self, BUDGET_BOUNDS, "prune.")
        if self.deadline_ms > 0 and self.mode == "off":
            raise ConfigError("prune.deadline_ms needs prune.mode 'on' or 'auto' ('off' always runs unpruned)")
        ladder = tuple(float(r) for r in self.ladder)
        if any(not (math.isfinite(r) and 0.0 < r <= 1.0) for r in ladder):
            raise ConfigError(f"prune.ladder: keep ratios must be in (0, 1], got {self.ladder!r}")
        object.__setattr__(self, "ladder", ladder)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
        return from_mapping(tp, value, where=where)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, where) for v in value)
        return tuple(_convert(a, v, where) for a, v in zip(args, value))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def from_mapping(cls: type[_Config], mapping: Mapping[str, Any], where: str = "") -> _Config:
    """Build dataclass ``cls`` from a (nested) mapping; unknown keys raise :class:`ConfigError`."""
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(mapping).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(mapping) - names)
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {}
    for key, value in mapping.items():
        sub = f"{where}.{key}" if where else key
        kwargs[key] = _convert(hints[key], value, sub)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{where or cls.__name__}: {err}") from err


def to_mapping(obj: Any) -> dict[str, Any]:
    """Inverse of :func:`from_mapping` (tuples become lists, for YAML/JSON)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(obj)
