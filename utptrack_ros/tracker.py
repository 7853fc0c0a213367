"""Stateful per-sequence trackers around the network (method.md 6): no I/O, no ROS.

``MultiTracker`` tracks several targets in one image with one batched forward; ``Tracker`` is the
single-target face of it. Per frame: crop the search region around each previous state
(official geometry), run the network with the cached template tokens, window the centre map,
decode, map back around the previous centre, guard the size, clip, decide TRACKING / LOST /
RECOVERING, and every ``update_interval`` frames replace the dynamic template of confidently
tracked targets where the windowed confidence exceeds ``update_threshold`` (two-template models
only: an OSTrack model has one template, never updated). A target LOST for ``reacquire_after``
frames is searched for in a crop that widens each frame up to the whole image, without the Hann
window and with the dynamic template reset to the static one; a confident candidate there
(RECOVERING) is confirmed over ``relock_frames`` frames of normal search before TRACKING resumes
(:class:`_Search`). The static template, its centre mask and the TTA box prior are built once at ``init``
and never rebuilt; the box prior follows the model family's official transform
(``preprocess.template_box``).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np
import torch

from .config import BudgetConfig, PruneConfig, TrackerConfig
from .device_crops import DeviceCropper
from .errors import InputError, NotInitializedError
from .models import UTPTrack, default_tracker_config, list_models
from .models.encoder import TemplateTokens
from .models.inference import prepare_for_inference
from .models.text import TextEncoder, create_text_encoder, normalise_prompt
from .modalities import AuxFrame, prepare_aux
from .postprocess import bound_size, clip_box, damp_centre, decode_windowed, smooth_size, window_tensor
from .preprocess import CropGeometry, crop_geometry, crop_image, crops_to_tensor, template_box
from .runtime.tracker_network import DTYPES, TorchNetwork, TrackerNetwork
from .types import Box, LayerTokens, Modality, Task, TokenLedger, TrackResult, TrackState

if TYPE_CHECKING:
    from .runtime.budget import BudgetChoice

log = logging.getLogger(__name__)

BoxLike = Union[Box, Sequence[float], np.ndarray]


def as_box(value: BoxLike) -> Box:
    if isinstance(value, Box):
        return value
    try:
        return Box.from_sequence(value)
    except (TypeError, ValueError) as err:
        raise InputError(f"a box must be Box or [x, y, w, h], got {value!r}") from err


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate an RGB frame: (H, W, 3) uint8."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"image must be (H, W, 3) uint8 RGB, got shape {image.shape} dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"image is empty: shape {image.shape}")
    return image


#: an init box's sides must be at least this many pixels ...
MIN_BOX_SIDE = 1.0
#: ... and at most this multiple of the image's width / height (a box far larger than the image
#: is a unit or coordinate mistake, and its crops would be mostly padding)
MAX_BOX_TO_IMAGE = 2.0


def box_problem(box: Box, width: int, height: int) -> Optional[str]:
    """Why ``box`` cannot start a target on a ``width`` x ``height`` image, or None if it can:
    non-finite, a side under :data:`MIN_BOX_SIDE` px or over :data:`MAX_BOX_TO_IMAGE` times the
    image's, or no overlap with the image."""
    if not box.is_finite():
        return "has non-finite values"
    if box.w <= 0 or box.h <= 0:
        return "has zero or negative area (w and h must be > 0)"
    if box.w < MIN_BOX_SIDE or box.h < MIN_BOX_SIDE:
        return f"is degenerate: each side must be at least {MIN_BOX_SIDE:g} px"
    if box.w > MAX_BOX_TO_IMAGE * width or box.h > MAX_BOX_TO_IMAGE * height:
        return (f"is far larger than the {width}x{height} image: each side may be at most "
                f"{MAX_BOX_TO_IMAGE:g} times the image's")
    x1, y1, x2, y2 = box.as_xyxy()
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        return f"lies outside the {width}x{height} image"
    return None


def check_box(box: Box, width: int, height: int) -> Box:
    """A usable init box (see :func:`box_problem`); raises InputError saying why not."""
    problem = box_problem(box, width, height)
    if problem is not None:
        raise InputError(f"box {box.as_xywh()} {problem}")
    return box


def resolve_device(device: Union[str, torch.device]) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available")
    return dev


def load_variant(name: str = "tiny", weights: Optional[Union[str, Path]] = None) -> UTPTrack:
    """The network of variant ``name`` on the CPU with its weights: the shipped file (``weights``
    None or ``""``) or a weights file.

    ``weights`` may be a project checkpoint (safetensors with its config) or an official
    OSTrack / UTPTrack-O / SUTrack / UTPTrack-S training checkpoint, loaded without executing
    pickled code; the file then decides the architecture and family from its own content
    (``checkpoint.infer_variant``). ``*_base`` names
    run the weights unpruned (every keep ratio 1.0). See ``utptrack_ros.checkpoint``.
    """
    from .checkpoint import load_model
    from .errors import CheckpointError
    from .models import model_config, shipped_weights

    if not weights:
        path = shipped_weights(name)
        if path is None:
            raise CheckpointError(
                f"no weights ship for {name!r}; pass weights=PATH to an official OSTrack / UTPTrack-O "
                f"checkpoint or a project .safetensors file"
            )
        model = load_model(path)
        model.set_prune(model_config(name).prune)  # tiny_base: the same weights, unpruned
        return model
    path = Path(weights).expanduser()
    if not path.is_file():
        raise CheckpointError(f"weights: no such file {str(weights)!r}")
    model = load_model(path)
    if name.endswith("_base"):  # the unpruned face of whatever the file holds
        model.set_prune(model.prune.off())
    return model


@dataclass
class _Search:
    """One target's place in the re-acquisition cycle (``TrackerConfig.reacquire_*``, ``relock_*``).

    ``lost_frames`` counts consecutive LOST frames (kept while RECOVERING, so a candidate that is
    not confirmed resumes the widening where it stopped); ``confirmed`` counts the RECOVERING
    frames that agreed with the candidate so far.
    """

    state: TrackState = TrackState.TRACKING
    lost_frames: int = 0
    confirmed: int = 0

    def widening(self, config: TrackerConfig) -> int:
        """Widening steps of the next search crop: 0 = the normal search."""
        after = config.reacquire_after
        if self.state is not TrackState.LOST or not after or self.lost_frames < after:
            return 0
        return self.lost_frames - after + 1

    def step(self, config: TrackerConfig, confidence: float, widened: bool, agrees: bool) -> TrackState:
        """The state after a frame with ``confidence`` (``widened``: found by a widened search;
        ``agrees``: the prediction lies within one box size of the candidate being confirmed)."""
        if self.state is TrackState.RECOVERING:
            if confidence >= config.relock_threshold and agrees:
                self.confirmed += 1
                if self.confirmed >= config.relock_frames:
                    self.state, self.lost_frames, self.confirmed = TrackState.TRACKING, 0, 0
                return self.state
            self.state, self.confirmed = TrackState.LOST, 0
            self.lost_frames += 1
            return self.state
        if widened:
            if confidence >= config.relock_threshold:
                self.confirmed = 1
                self.state = TrackState.TRACKING if config.relock_frames <= 1 else TrackState.RECOVERING
                if self.state is TrackState.TRACKING:
                    self.lost_frames, self.confirmed = 0, 0
            else:
                self.lost_frames += 1
            return self.state
        if confidence < config.lost_threshold:
            self.state = TrackState.LOST
            self.lost_frames += 1
        else:
            self.state, self.lost_frames = TrackState.TRACKING, 0
        return self.state


@dataclass
class _Targets:
    """Mutable per-target state, index-aligned with the batch."""

    states: list[Box]
    init_boxes: list[Box]
    search: list[_Search]
    tokens: TemplateTokens
    prompts: list[str]
    text: Optional[torch.Tensor]  # (B, text_dim) or None when the model has no text token
    task: torch.Tensor  # (B,) long
    frames: list[int]  # frames tracked per target since its init (0 on the init frame)

    def take(self, indices: Sequence[int]) -> "_Targets":
        """The targets at ``indices``, in that order (tensors indexed, per-target objects shared)."""
        rows = torch.tensor(list(indices), dtype=torch.long, device=self.task.device)
        return _Targets([self.states[i] for i in indices], [self.init_boxes[i] for i in indices],
                        [self.search[i] for i in indices], _take_tokens(self.tokens, rows),
                        [self.prompts[i] for i in indices], self.text[rows] if self.text is not None else None,
                        self.task[rows], [self.frames[i] for i in indices])

    def put(self, indices: Sequence[int], part: "_Targets") -> None:
        """Write ``part`` (from :meth:`take` with the same ``indices``) back into these targets."""
        for j, i in enumerate(indices):
            self.states[i], self.search[i], self.prompts[i], self.frames[i] = (
                part.states[j], part.search[j], part.prompts[j], part.frames[j])
        rows = torch.tensor(list(indices), dtype=torch.long, device=self.task.device)
        self.tokens = _put_tokens(self.tokens, rows, part.tokens)
        if self.text is not None and part.text is not None:
            self.text = self.text.index_copy(0, rows, part.text)
        self.task = self.task.index_copy(0, rows, part.task)

    def joined(self, more: "_Targets") -> "_Targets":
        """These targets followed by ``more`` (one batch)."""
        text = torch.cat([self.text, more.text]) if self.text is not None and more.text is not None else None
        return _Targets(self.states + more.states, self.init_boxes + more.init_boxes, self.search + more.search,
                        _cat_tokens(self.tokens, more.tokens), self.prompts + more.prompts, text,
                        torch.cat([self.task, more.task]), self.frames + more.frames)


def _take_tokens(tokens: TemplateTokens, rows: torch.Tensor) -> TemplateTokens:
    dt = tokens.dt[rows.to(tokens.dt.device)] if tokens.dt is not None else None
    return TemplateTokens(tokens.st[rows.to(tokens.st.device)], dt, tokens.st_fg[rows.to(tokens.st_fg.device)])


def _put_tokens(tokens: TemplateTokens, rows: torch.Tensor, part: TemplateTokens) -> TemplateTokens:
    dt = tokens.dt.index_copy(0, rows.to(tokens.dt.device), part.dt) if tokens.dt is not None and part.dt is not None else tokens.dt
    return TemplateTokens(tokens.st.index_copy(0, rows.to(tokens.st.device), part.st), dt,
                          tokens.st_fg.index_copy(0, rows.to(tokens.st_fg.device), part.st_fg))


def _cat_tokens(a: TemplateTokens, b: TemplateTokens) -> TemplateTokens:
    dt = torch.cat([a.dt, b.dt]) if a.dt is not None and b.dt is not None else None
    return TemplateTokens(torch.cat([a.st, b.st]), dt, torch.cat([a.st_fg, b.st_fg]))


def _reset_dynamic_templates(targets: _Targets, indices: list[int]) -> None:
    """Targets ``indices`` match the static (first-frame) template only from now on: their
    dynamic template becomes the static one (it may have been taken from a drifting box)."""
    tokens = targets.tokens
    if not indices or tokens.dt is None:
        return
    dt = tokens.dt.clone()
    rows = torch.tensor(indices, device=dt.device)
    dt[rows] = tokens.st[rows]
    targets.tokens = replace(tokens, dt=dt)


class MultiTracker:
    """Tracks ``B`` targets in the same image stream with batched forwards.

    Args:
        model: a :class:`UTPTrack` (weights loaded); put in eval mode and moved to ``device``.
        config: inference settings; default: the variant's registered settings.
        device: ``cpu``, ``cuda``, ``cuda:1`` or ``auto``.
        text_encoder: prompt encoder; default: the one the variant names, created on first use.
        optimize: run a copy of ``model`` with BatchNorm folded and channels-last convolutions
            (``models.inference``; same outputs to float rounding, faster on the CPU: docs/profiling.md).
        backend: ``torch`` (the model itself) or ``onnxruntime`` (graphs exported once per
            weights and keep ratios into ``onnx_cache`` and run by onnxruntime; same outputs to
            float rounding, faster for tiny on the CPU: docs/profiling.md; ``runtime.network``);
            ``onnxruntime:tensorrt`` / ``:cuda`` / ``:cpu`` picks its execution providers, falling
            back towards the CPU with a logged reason (``network.provider``, ``runtime.providers``).
        onnx_cache: root of the onnxruntime export cache (default ``runtime.network.default_cache_dir``).
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).
        dtype: the torch network's precision: ``float32`` (default), ``float16`` or ``bfloat16``
            (weights and activations; BatchNorm folded in float32 first; the maps are decoded in
            float32; accuracy contract in docs/gpu.md). onnxruntime runs float32 only.
    """

    def __init__(
        self,
        model: UTPTrack,
        config: Optional[TrackerConfig] = None,
        device: Union[str, torch.device] = "cpu",
        text_encoder: Optional[TextEncoder] = None,
        optimize: bool = True,
        backend: str = "torch",
        onnx_cache: Optional[Union[str, Path]] = None,
        threads: Optional[int] = None,
        dtype: str = "float32",
    ) -> None:
        self.device = resolve_device(device)
        if dtype not in DTYPES:
            raise InputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if dtype != "float32" and backend != "torch":
            raise InputError(f"backend {backend!r} runs float32 only; dtype {dtype!r} needs backend 'torch'")
        self.model = (prepare_for_inference(model) if optimize else model.eval()).to(self.device, DTYPES[dtype])
        self.dtype = dtype
        self.network = self._network(backend, onnx_cache, threads)
        name = model.config.name
        self.config = config or (default_tracker_config(name) if name in list_models() else TrackerConfig())
        self._text_encoder = text_encoder
        self._window = window_tensor(model.config.search_grid, self.device)
        self._device_crops = DeviceCropper(self.device)
        self._targets: Optional[_Targets] = None
        self.modality = Modality.RGB

    def _network(self, backend: str, onnx_cache: Optional[Union[str, Path]], threads: Optional[int]) -> TrackerNetwork:
        if backend == "torch":
            return TorchNetwork(self.model, DTYPES[self.dtype])
        runtime, _, providers = backend.partition(":")  # onnxruntime:cuda -> runtime.providers
        if runtime != "onnxruntime":
            raise InputError(f"backend must be 'torch' or 'onnxruntime' ('onnxruntime:tensorrt|cuda|cpu' picks its "
                             f"providers), got {backend!r}")
        if self.device.type != "cpu":
            raise InputError(f"backend 'onnxruntime' takes its inputs on the CPU (its providers pick the device); "
                             f"device {self.device} needs backend 'torch'")
        from .runtime.network import OrtNetwork

        return OrtNetwork(self.model, onnx_cache, threads, providers=providers or None)

    @property
    def backend(self) -> str:
        """The runtime computing the next frame: ``torch`` or ``onnxruntime``."""
        return self.network.runtime

    # -- construction from weights -----------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        name: str = "tiny",
        weights: Optional[Union[str, Path]] = None,
        device: Union[str, torch.device] = "cpu",
        config: Optional[TrackerConfig] = None,
        prune: Optional[PruneConfig] = None,
        backend: str = "torch",
        onnx_cache: Optional[Union[str, Path]] = None,
        threads: Optional[int] = None,
        dtype: str = "float32",
    ) -> "MultiTracker":
        """Build a tracker from the shipped weights of ``name`` or from a weights file
        (:func:`load_variant`: the file decides its own architecture and family); ``prune``, when
        given, replaces the pruning settings after that. ``backend``, ``onnx_cache``, ``threads`` and
        ``dtype`` as in the constructor.
        """
        model = load_variant(name, weights)
        if prune is not None:
            model.set_prune(prune)
        return cls(model, config=config, device=device, backend=backend, onnx_cache=onnx_cache, threads=threads,
                   dtype=dtype)

    # -- state -------------------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return self._targets is not None

    @property
    def num_targets(self) -> int:
        return len(self._targets.states) if self._targets else 0

    @property
    def frame_index(self) -> int:
        """Frames tracked since the oldest target's init (-1 without targets)."""
        return max(self._targets.frames) if self._targets else -1

    def reset(self) -> None:
        """Forget every target (the model and settings stay)."""
        self._targets = None

    def remove(self, indices: Sequence[int]) -> None:
        """Forget the targets at ``indices`` (the others keep their index order); none left = :meth:`reset`."""
        if self._targets is None:
            raise NotInitializedError("remove() called before init()")
        n = self.num_targets
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise InputError(f"target indices {bad} out of range for {n} targets")
        keep = [i for i in range(n) if i not in set(indices)]
        self._targets = self._targets.take(keep) if keep else None

    def set_prune(self, prune: PruneConfig) -> None:
        """Change the keep ratios live (takes effect on the next frame).

        With ``backend="onnxruntime"`` ratios without cached graphs run on torch until
        :meth:`prepare_runtime` exports them.
        """
        self.network.set_prune(prune)

    def prepare_runtime(self) -> None:
        """Export and load onnxruntime graphs for the current keep ratios (no-op on torch)."""
        self.network.prepare()

    def choose_token_budget(self, budget: BudgetConfig, configured: Optional[PruneConfig] = None,
                            batch: Optional[int] = None, cache_dir: Optional[Union[str, Path]] = None) -> "BudgetChoice":
        """Choose and set the keep ratios for this machine (``runtime.budget``: ``budget.mode`` /
        ``deadline_ms`` from a cost table measured once per device, runtime, weights and batch);
        ``configured``: the variant's ratios (default: the model's now); ``batch``: default the
        current number of targets (1 before ``init``). The choice's ``reason`` is for /diagnostics."""
        from .runtime.budget import CostCache, choose_budget

        choice = choose_budget(self.network, self.model, configured or self.model.prune, budget,
                               batch or max(self.num_targets, 1), self.device, CostCache(cache_dir))
        self.set_prune(choice.prune)
        return choice

    def set_config(self, config: TrackerConfig) -> None:
        """Change thresholds / factors live (takes effect on the next frame)."""
        self.config = config

    @property
    def text_encoder(self) -> Optional[TextEncoder]:
        """The prompt encoder (None without a text token); loaded here on first use unless
        :meth:`load_text_encoder` loaded it ahead."""
        if self._text_encoder is None and self.model.config.text_dim:
            self._text_encoder = create_text_encoder(self.model.config.text_encoder)
        return self._text_encoder

    def load_text_encoder(self) -> Optional[TextEncoder]:
        """Load the prompt encoder now (seconds for MiniLM), so no later prompt waits for it;
        None when the model has no text token."""
        return self.text_encoder

    def encode_prompt(self, prompt: Optional[str]) -> Optional[torch.Tensor]:
        """``prompt``'s text feature, (text_dim,) on the CPU (zeros for a blank prompt), or None
        when the model has no text token. Reads no tracking state: another thread may encode
        while this tracker tracks, then hand the feature to :meth:`set_prompt` / :meth:`init`."""
        encoder = self.text_encoder
        if encoder is None:  # no text token
            return None
        return encoder.encode([normalise_prompt(prompt)])[0]

    def set_prompt(self, prompt: Optional[str], index: Optional[int] = None,
                   features: Optional[torch.Tensor] = None) -> None:
        """Replace the language prompt of target ``index`` (all targets if None); blank = none.

        ``features``: the prompt's :meth:`encode_prompt` result, computed ahead (no encoding here).
        """
        if self._targets is None:
            raise NotInitializedError("set_prompt() needs an initialised target; pass prompt= to init()")
        targets = self._targets
        indices = range(len(targets.states)) if index is None else [index]
        known = {} if features is None else {normalise_prompt(prompt): features}
        prompts = [normalise_prompt(prompt) if i in indices else p for i, p in enumerate(targets.prompts)]
        targets.text, targets.task = self._encode_prompts(prompts, self.modality, known)
        targets.prompts = prompts

    def _encode_prompts(self, prompts: list[str], modality: Modality,
                        known: Optional[dict] = None) -> tuple[Optional[torch.Tensor], torch.Tensor]:
        """(text features, task ids) of ``prompts``; ``known``: prompt -> feature encoded ahead."""
        has_prompt = [bool(p) for p in prompts]
        if any(has_prompt) and not self.model.config.text_dim:
            log.warning("model %s has no text token; the prompt is ignored", self.model.config.name)
            has_prompt = [False] * len(prompts)
        task = torch.tensor(
            [int(Task.for_inputs(modality, p)) for p in has_prompt], dtype=torch.long, device=self.device
        )
        text_dim = self.model.config.text_dim
        if not text_dim:
            return None, task
        known = known or {}
        rows = [known[p] if p in known else None for p in prompts]
        missing = [p for p, row in zip(prompts, rows) if row is None and p]
        encoder = self.text_encoder if missing else None  # loaded only once a prompt needs it (unless loaded ahead)
        if encoder is not None:
            encoded = dict(zip(missing, encoder.encode(missing)))
            rows = [encoded.get(p) if row is None else row for p, row in zip(prompts, rows)]
        text = torch.stack([torch.zeros(text_dim) if row is None else row.cpu() for row in rows])
        return text.to(self.device), task

    # -- inputs ------------------------------------------------------------------------
    def _aux_frame(self, aux: Union[None, np.ndarray, AuxFrame], image: np.ndarray,
                   modality: Modality) -> Optional[AuxFrame]:
        if aux is None:
            return None
        if modality is Modality.RGB:
            raise InputError("an auxiliary frame was given but the tracker was initialised with modality=rgb")
        if not isinstance(aux, (np.ndarray, AuxFrame)):
            raise InputError(f"auxiliary frame must be a numpy array, got {type(aux).__name__}")
        if aux.shape[:2] != image.shape[:2]:
            raise InputError(
                f"{modality.value} frame is {aux.shape[1]}x{aux.shape[0]} but the RGB image is "
                f"{image.shape[1]}x{image.shape[0]}; register/resize it to the RGB image first"
            )
        if isinstance(aux, AuxFrame):  # prepared ahead (modalities.prepare_aux with this config)
            return aux
        return prepare_aux(aux, modality, self.config.aux)

    def _crops(self, image: np.ndarray, aux: Optional[AuxFrame], geoms: list[CropGeometry]) -> torch.Tensor:
        if self.device.type != "cpu":  # one upload per call; crop, resize, normalise there (device_crops)
            full = aux.full() if aux is not None and self.model.config.in_chans == 6 else None
            return self._device_crops.crops(image, full, geoms, self.model.config.in_chans)
        rgb = [crop_image(image, g) for g in geoms]
        aux_crops: Optional[list[Optional[np.ndarray]]] = (
            [crop_image(aux.raw, g, aux.to_image) for g in geoms] if aux is not None else None)
        # onnxruntime takes NCHW arrays: build that layout directly instead of copying later
        channels_last = self.backend != "onnxruntime"
        return crops_to_tensor(rgb, aux_crops, self.model.config.in_chans, self.device, channels_last)

    # -- the two calls -------------------------------------------------------------------
    def init(
        self,
        image: np.ndarray,
        boxes: Sequence[BoxLike],
        aux: Optional[np.ndarray] = None,
        modality: Union[Modality, str] = Modality.RGB,
        prompts: Union[None, str, Sequence[Optional[str]]] = None,
        prompt_features: Optional[dict] = None,
    ) -> list[TrackResult]:
        """Start tracking ``boxes`` (image px) on ``image``; replaces any previous targets
        (:meth:`add` keeps them).

        Args:
            image: (H, W, 3) uint8 RGB.
            boxes: one box per target, ``Box`` or ``[x, y, w, h]``.
            aux: the auxiliary frame of ``modality`` aligned with ``image`` (see modalities.py).
            modality: what the auxiliary stream is for this sequence.
            prompts: one language description for all targets, or one per target.
            prompt_features: prompt -> its :meth:`encode_prompt` result, encoded ahead.
        """
        targets, results = self._start(image, boxes, aux, modality, prompts, prompt_features)
        self._targets, self.modality = targets, Modality(modality)
        return results

    def add(
        self,
        image: np.ndarray,
        boxes: Sequence[BoxLike],
        aux: Optional[np.ndarray] = None,
        prompts: Union[None, str, Sequence[Optional[str]]] = None,
        prompt_features: Optional[dict] = None,
        modality: Union[Modality, str, None] = None,
    ) -> list[TrackResult]:
        """Start tracking ``boxes`` on ``image`` *as well*: they join the batch after the current
        targets (index ``num_targets``, ...), which keep their state. Arguments as in :meth:`init`;
        ``modality`` must match the current targets' (default: theirs); without targets this is :meth:`init`.
        """
        if self._targets is None:
            return self.init(image, boxes, aux, modality or self.modality, prompts, prompt_features)
        if modality is not None and Modality(modality) is not self.modality:
            raise InputError(f"the current targets track with modality={self.modality.value}; "
                             f"a target with {Modality(modality).value} needs init() (which replaces them)")
        targets, results = self._start(image, boxes, aux, self.modality, prompts, prompt_features)
        self._targets = self._targets.joined(targets)
        return results

    def _start(
        self,
        image: np.ndarray,
        boxes: Sequence[BoxLike],
        aux: Optional[np.ndarray],
        modality: Union[Modality, str],
        prompts: Union[None, str, Sequence[Optional[str]]],
        prompt_features: Optional[dict],
    ) -> tuple[_Targets, list[TrackResult]]:
        """The targets ``boxes`` start on ``image`` and their first results; changes nothing here."""
        t0 = time.perf_counter()
        image = check_image(image)
        height, width = image.shape[:2]
        if len(boxes) == 0:
            raise InputError("init() needs at least one box")
        checked = [check_box(as_box(b), width, height) for b in boxes]
        modality = Modality(modality)
        if modality is not Modality.RGB and self.model.config.in_chans != 6:
            raise InputError(f"model {self.model.config.name} takes RGB only; {modality.value} needs a 6-channel model")
        aux_frame = self._aux_frame(aux, image, modality)
        if prompts is None or isinstance(prompts, str):
            prompts = [prompts] * len(boxes)
        if len(prompts) != len(boxes):
            raise InputError(f"got {len(prompts)} prompts for {len(boxes)} boxes")
        prompt_list = [normalise_prompt(p) for p in prompts]

        cfg = self.model.config
        geoms = [crop_geometry(b, self.config.template_factor, cfg.template_size) for b in checked]
        crops = self._crops(image, aux_frame, geoms)
        box_norm = self._template_boxes(geoms, checked)
        with torch.inference_mode():
            # both templates start as this crop (method.md 6.3); OSTrack models have only this one
            tokens = self.network.embed_templates(crops, None, box_norm, None)
            known = {normalise_prompt(k): v for k, v in (prompt_features or {}).items()}
            text, task = self._encode_prompts(prompt_list, modality, known)
        # nothing here changes the tracker: a refused or failed init keeps the current targets
        targets = _Targets(list(checked), list(checked), [_Search() for _ in checked], tokens, prompt_list, text, task,
                           frames=[0] * len(checked))
        total = (time.perf_counter() - t0) * 1000.0
        n_z, f = cfg.template_grid**2, cfg.search_grid
        ledger = TokenLedger(LayerTokens(-1, f * f, n_z, n_z if cfg.num_templates == 2 else 0), ())
        return targets, [
            TrackResult(
                box=b,
                confidence=1.0,
                state=TrackState.TRACKING,
                frame_index=0,
                ledger=ledger,
                search_region=crop_geometry(b, self.config.search_factor, cfg.search_size).region,
                search_keep_mask=np.ones((f, f), dtype=bool),
                timings_ms={"total": total},
            )
            for b in checked
        ]

    def track(self, image: np.ndarray, aux: Union[None, np.ndarray, AuxFrame] = None,
              targets: Optional[Sequence[int]] = None) -> list[TrackResult]:
        """Locate every target in the next frame (one batched forward); one result per target.
        ``aux=None`` falls back to RGB-only input.

        ``aux`` may also be an :class:`~utptrack_ros.modalities.AuxFrame` prepared ahead of time
        (e.g. while the RGB frame is still in transit) with ``prepare_aux(aux, modality, config.aux)``.
        ``targets``: track only the targets at these indices (results in that order); the others
        keep their state, as if this frame had not happened for them.
        """
        if self._targets is None:
            raise NotInitializedError("track() called before init()")
        if targets is None:
            return self._track(image, aux, self._targets)
        indices = list(targets)
        if sorted(set(indices)) != sorted(indices) or not all(0 <= i < self.num_targets for i in indices):
            raise InputError(f"targets must be distinct indices below {self.num_targets}, got {indices}")
        if not indices:
            return []
        part = self._targets.take(indices)
        results = self._track(image, aux, part)
        self._targets.put(indices, part)
        return results

    def _track(self, image: np.ndarray, aux: Union[None, np.ndarray, AuxFrame], targets: _Targets) -> list[TrackResult]:
        t0 = time.perf_counter()
        image = check_image(image)
        height, width = image.shape[:2]
        aux_frame = self._aux_frame(aux, image, self.modality)
        targets.frames = [f + 1 for f in targets.frames]
        cfg, mcfg = self.config, self.model.config
        widening = [s.widening(cfg) for s in targets.search]
        geoms = [self._search_geometry(s, k, width, height) for s, k in zip(targets.states, widening)]
        search = self._crops(image, aux_frame, geoms)
        t1 = time.perf_counter()
        with torch.inference_mode():
            out = self.network.forward_search(search, targets.tokens, targets.text, targets.task)
            boxes_norm, conf = decode_windowed(out.score_map, out.size_map, out.offset_map, self._windows(widening))
        t2 = time.perf_counter()
        keep = out.search_keep_mask.reshape(-1, mcfg.search_grid, mcfg.search_grid).cpu().numpy()
        task_probs = out.task_logits.softmax(-1).cpu().numpy() if out.task_logits is not None else None
        results = []
        for i, geom in enumerate(geoms):
            box = geom.crop_to_box(boxes_norm[i])
            previous, cycle = targets.states[i], targets.search[i]
            was = cycle.state
            agrees = math.hypot(box.cx - previous.cx, box.cy - previous.cy) < math.sqrt(previous.w * previous.h)
            state = cycle.step(cfg, float(conf[i]), widening[i] > 0, agrees)
            if state is not TrackState.LOST and not widening[i]:  # a step of the track from `previous`
                if cfg.size_smoothing and was is not TrackState.RECOVERING:
                    box = smooth_size(box, previous, cfg.size_smoothing)
                box = bound_size(box, previous, targets.init_boxes[i], cfg.max_scale_step, cfg.min_size_ratio)
                box = damp_centre(box, previous, float(conf[i]), cfg.damping_confidence)
            else:  # a best guess or a widened search's candidate: no previous size to step from
                box = bound_size(box, box, targets.init_boxes[i], 0.0, cfg.min_size_ratio)
            box = clip_box(box, width, height, cfg.clip_margin)
            if state is not TrackState.LOST:
                targets.states[i] = box
            results.append((box, float(conf[i]), state))
        _reset_dynamic_templates(targets, [i for i, s in enumerate(targets.search)
                                           if s.state is TrackState.LOST and cfg.reacquire_after
                                           and s.lost_frames == cfg.reacquire_after])
        updated = self._maybe_update_templates(targets, image, aux_frame, conf)
        t3 = time.perf_counter()
        timings = {
            "preprocess": (t1 - t0) * 1000.0,
            "model": (t2 - t1) * 1000.0,
            "postprocess": (t3 - t2) * 1000.0,
            "total": (t3 - t0) * 1000.0,
        }
        return [
            TrackResult(
                box=box,
                confidence=c,
                state=state,
                frame_index=targets.frames[i],
                ledger=out.ledger,
                search_region=geoms[i].region,
                search_keep_mask=keep[i],
                template_updated=i in updated,
                timings_ms=timings,
                task_probs=task_probs[i] if task_probs is not None else None,
            )
            for i, (box, c, state) in enumerate(results)
        ]

    def _search_geometry(self, state: Box, widening: int, width: int, height: int) -> CropGeometry:
        """The search crop around ``state``; ``widening`` steps of ``reacquire_growth`` make it
        larger, up to a square covering the whole image, moved inside the image as it grows."""
        cfg, size = self.config, self.model.config.search_size
        if not widening:
            return crop_geometry(state, cfg.search_factor, size)
        side = math.sqrt(state.w * state.h)
        whole = float(max(width, height))
        factor = min(cfg.search_factor * cfg.reacquire_growth ** widening, whole / side)
        half = side * factor / 2.0
        cx = min(max(state.cx, half), width - half) if 2 * half <= width else width / 2.0
        cy = min(max(state.cy, half), height - half) if 2 * half <= height else height / 2.0
        return crop_geometry(Box.from_cxcywh(cx, cy, state.w, state.h), factor, size)

    def _windows(self, widening: list[int]) -> Optional[torch.Tensor]:
        """The Hann window of each target's centre map, (B, 1, F, F) (none on a widened search:
        the target may be anywhere in it), or None without ``hann_window``."""
        if not self.config.hann_window:
            return None
        if not any(widening):
            return self._window
        flat = torch.ones_like(self._window)
        return torch.stack([flat if k else self._window for k in widening]).unsqueeze(1)

    def _template_boxes(self, geoms: list[CropGeometry], boxes: Sequence[Box]) -> torch.Tensor:
        """(B, 4) float32 box priors in the template crops, by the model family's own rule."""
        rule = self.model.config.template_box
        priors = np.stack([template_box(g, b, rule) for g, b in zip(geoms, boxes)])
        return torch.tensor(priors, dtype=torch.float32).to(self.device)

    def _maybe_update_templates(
        self, targets: _Targets, image: np.ndarray, aux: Optional[AuxFrame], conf: np.ndarray
    ) -> set[int]:
        """Replace the dynamic template of confident targets every ``update_interval`` of their frames."""
        cfg = self.config
        if self.model.config.num_templates < 2:  # OSTrack: the one template is never replaced
            return set()
        if not cfg.update_interval:
            return set()
        due = [i for i, search in enumerate(targets.search)
               if search.state is TrackState.TRACKING and conf[i] > cfg.update_threshold
               and targets.frames[i] % cfg.update_interval == 0]
        if not due:
            return set()
        size = self.model.config.template_size
        geoms = [crop_geometry(targets.states[i], cfg.template_factor, size) for i in due]
        crops = self._crops(image, aux, geoms)
        box_norm = self._template_boxes(geoms, [targets.states[i] for i in due])
        with torch.inference_mode():
            new = self.network.embed_template(crops, box_norm)
        assert targets.tokens.dt is not None  # two-template models have a dynamic template
        dt = targets.tokens.dt.clone()
        dt[torch.tensor(due, device=dt.device)] = new
        targets.tokens = replace(targets.tokens, dt=dt)
        return set(due)


class Tracker:
    """Single-target tracker: :class:`MultiTracker` with one box (same arguments)."""

    def __init__(
        self,
        model: UTPTrack,
        config: Optional[TrackerConfig] = None,
        device: Union[str, torch.device] = "cpu",
        text_encoder: Optional[TextEncoder] = None,
        optimize: bool = True,
        backend: str = "torch",
        onnx_cache: Optional[Union[str, Path]] = None,
        threads: Optional[int] = None,
        dtype: str = "float32",
    ) -> None:
        self._multi = MultiTracker(model, config, device, text_encoder, optimize, backend, onnx_cache, threads, dtype)

    @classmethod
    def from_pretrained(
        cls,
        name: str = "tiny",
        weights: Optional[Union[str, Path]] = None,
        device: Union[str, torch.device] = "cpu",
        config: Optional[TrackerConfig] = None,
        prune: Optional[PruneConfig] = None,
        backend: str = "torch",
        onnx_cache: Optional[Union[str, Path]] = None,
        threads: Optional[int] = None,
        dtype: str = "float32",
    ) -> "Tracker":
        multi = MultiTracker.from_pretrained(name, weights, device, config, prune, backend, onnx_cache, threads, dtype)
        tracker = cls.__new__(cls)
        tracker._multi = multi
        return tracker

    @property
    def model(self) -> UTPTrack:
        return self._multi.model

    @property
    def config(self) -> TrackerConfig:
        return self._multi.config

    @property
    def device(self) -> torch.device:
        return self._multi.device

    @property
    def backend(self) -> str:
        return self._multi.backend

    @property
    def modality(self) -> Modality:
        return self._multi.modality

    @property
    def initialized(self) -> bool:
        return self._multi.initialized

    @property
    def frame_index(self) -> int:
        return self._multi.frame_index

    def init(
        self,
        image: np.ndarray,
        box: BoxLike,
        aux: Optional[np.ndarray] = None,
        modality: Union[Modality, str] = Modality.RGB,
        prompt: Optional[str] = None,
        prompt_features: Optional[torch.Tensor] = None,
    ) -> TrackResult:
        """``prompt_features``: ``prompt``'s :meth:`encode_prompt` result, encoded ahead."""
        known = {prompt or "": prompt_features} if prompt_features is not None else None
        return self._multi.init(image, [box], aux, modality, [prompt], known)[0]

    def track(self, image: np.ndarray, aux: Union[None, np.ndarray, AuxFrame] = None) -> TrackResult:
        return self._multi.track(image, aux)[0]

    def load_text_encoder(self) -> Optional[TextEncoder]:
        return self._multi.load_text_encoder()

    def encode_prompt(self, prompt: Optional[str]) -> Optional[torch.Tensor]:
        return self._multi.encode_prompt(prompt)

    def set_prompt(self, prompt: Optional[str], features: Optional[torch.Tensor] = None) -> None:
        self._multi.set_prompt(prompt, features=features)

    def set_prune(self, prune: PruneConfig) -> None:
        self._multi.set_prune(prune)

    def set_config(self, config: TrackerConfig) -> None:
        self._multi.set_config(config)

    def prepare_runtime(self) -> None:
        self._multi.prepare_runtime()

    def choose_token_budget(self, budget: BudgetConfig, configured: Optional[PruneConfig] = None,
                            batch: Optional[int] = None, cache_dir: Optional[Union[str, Path]] = None) -> "BudgetChoice":
        return self._multi.choose_token_budget(budget, configured, batch, cache_dir)

    @property
    def network(self) -> TrackerNetwork:
        """The runtime's network (onnxruntime: ``provider`` / ``provider_reason`` in use)."""
        return self._multi.network

    def reset(self) -> None:
        self._multi.reset()
