"""Training samples built exactly the way the tracker builds its inputs (method.md 6.2-6.5, 7).

One sample = (static template, dynamic template, search region) cut from three frames of one
sequence, plus the search frame's ground truth in search-crop coordinates:

* **static template** (ST): an early frame (the first annotated frame with probability
  ``static_first_prob``), cropped around its GT box with the tracker's template factor; its box
  is the GT mapped with ``CropGeometry.box_to_crop`` (what ``Tracker.init`` feeds the model).
* **dynamic template** (DT): either the ST crop itself (``same_template_prob``; the state before
  the first update) or a later frame cropped around a slightly jittered GT box, the box given
  to the model being that jittered box (an update crops around the tracker's *estimate*).
* **search region**: a frame after the DT (at most ``max_gap`` after the ST), cropped with the
  tracker's search factor around the last GT box seen *before* it (the tracker's previous state;
  after an occlusion that is where the tracker holds), jittered OSTrack-style
  (centre ``center_jitter``, log-normal scale ``scale_jitter``). If the target is absent in the
  search frame, or its centre falls outside the crop, the sample is a negative.
  ``negative_prob`` adds negatives on purpose: a search crop around a place the target is not.

Crops, the auxiliary conversion (``modalities.to_aux_image``), 6-channel stacking and
normalisation are the tracker's own functions (``preprocess``), so training sees what inference
sees. The modality of a sample is drawn per sample (``modality_probs``: RGB-only = the RGB crop
duplicated, or one of the sequence's auxiliary streams), the prompt is used with
``prompt_prob`` (task LANGUAGE), and the task label follows ``types.Task.for_inputs``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

import cv2
import numpy as np

from ..config import AuxConfig
from ..modalities import to_aux_image
from ..preprocess import CropGeometry, crop_geometry, crop_image
from ..types import Box, Modality, Task


class SequenceLike(Protocol):
    """What sampling reads (``utptrack_ros.data.sequence.TrackingSequence``)."""

    gt: np.ndarray
    absent: np.ndarray
    prompt: Optional[str]

    @property
    def modalities(self) -> tuple[Modality, ...]: ...

    def rgb(self, index: int) -> np.ndarray: ...

    def aux(self, modality: Any, index: int) -> Optional[np.ndarray]: ...


@dataclass(frozen=True)
class SamplingConfig:
    """How training triplets are drawn (see the module doc; every field is a recipe field).

    Attributes:
        template_factor / search_factor: crop context, the tracker's ``TrackerConfig`` values.
        center_jitter / scale_jitter: search-crop jitter around the previous GT box: centre
            offset uniform in ``+-center_jitter/2 * sqrt(w*h)``, size ``* exp(N(0, scale_jitter))``.
        dynamic_center_jitter / dynamic_scale_jitter: the same for the dynamic template's box
            (the tracker's estimate at an update is close to, not exactly, the GT).
        static_first_prob: the ST is the first annotated frame (as at inference); else any
            annotated frame in the first ``static_span`` of the sequence.
        static_span: fraction of the sequence the ST may come from.
        same_template_prob: the DT is the ST (the state before the first update).
        max_gap: most frames between the ST and the search frame.
        negative_prob: deliberate negatives (search crop away from the target).
        modality_probs: weights of ``rgb``, ``depth``, ``thermal``, ``event`` (a modality the
            sequence lacks is dropped and the rest renormalised).
        prompt_prob: use the sequence's language prompt (task LANGUAGE).
        aux_missing_prob: one frame's aux is missing (the tracker falls back to RGB for it).
        brightness_jitter: RGB crops are scaled by ``exp(U(-b, b))`` (each crop independently).
        gray_prob: the RGB half of all three crops is greyed (the aux half stays).
    """

    template_factor: float = 2.0
    search_factor: float = 4.0
    center_jitter: float = 3.0
    scale_jitter: float = 0.25
    dynamic_center_jitter: float = 0.25
    dynamic_scale_jitter: float = 0.1
    static_first_prob: float = 0.5
    static_span: float = 0.5
    same_template_prob: float = 0.3
    max_gap: int = 100
    negative_prob: float = 0.05
    modality_probs: dict[str, float] = field(
        default_factory=lambda: {"rgb": 0.4, "depth": 0.2, "thermal": 0.2, "event": 0.2}
    )
    prompt_prob: float = 0.5
    aux_missing_prob: float = 0.02
    brightness_jitter: float = 0.2
    gray_prob: float = 0.05


@dataclass
class Sample:
    """One training triplet (uint8 crops; tensors are built in ``collate``).

    Attributes:
        static_rgb / dynamic_rgb: (T, T, 3) uint8; static_aux / dynamic_aux: same or None.
        search_rgb: (S, S, 3) uint8; search_aux: same or None (None = RGB duplicated).
        static_box / dynamic_box: (4,) ``x, y, w, h`` / T in the template crop.
        gt_cxcywh: (4,) search-frame GT ``cx, cy, w, h`` / S (zeros for negatives).
        positive: the target's centre lies inside the search crop.
        task: ``types.Task`` label; prompt: the language prompt or "".
    """

    static_rgb: np.ndarray
    static_aux: Optional[np.ndarray]
    dynamic_rgb: np.ndarray
    dynamic_aux: Optional[np.ndarray]
    search_rgb: np.ndarray
    search_aux: Optional[np.ndarray]
    static_box: np.ndarray
    dynamic_box: np.ndarray
    gt_cxcywh: np.ndarray
    positive: bool
    task: int
    prompt: str
    modality: str


def jitter_box(box: Box, center: float, scale: float, rng: np.random.Generator) -> Box:
    """OSTrack ``_get_jittered_box``: size * exp(N(0, scale)), centre + U(-.5, .5) * center * sqrt(area)."""
    w, h = box.w * math.exp(rng.normal() * scale), box.h * math.exp(rng.normal() * scale)
    max_offset = math.sqrt(w * h) * center
    cx = box.cx + max_offset * (rng.random() - 0.5)
    cy = box.cy + max_offset * (rng.random() - 0.5)
    return Box.from_cxcywh(cx, cy, w, h)


def _box_to_cxcywh(geom: CropGeometry, box: Box) -> np.ndarray:
    x, y, w, h = geom.box_to_crop(box)
    return np.array([x + w / 2, y + h / 2, w, h], dtype=np.float64)


def _choose_modality(seq: SequenceLike, cfg: SamplingConfig, rng: np.random.Generator) -> Modality:
    """RGB-only with probability ``rgb / sum(weights)``, else one of the sequence's aux streams
    (weights renormalised over the streams it has), so the marginals hold whether a sequence
    carries one auxiliary stream or all three."""
    probs = cfg.modality_probs
    total = sum(v for v in probs.values() if v > 0)
    if total <= 0:
        return Modality.RGB
    have = [m for m in seq.modalities if probs.get(m.value, 0.0) > 0]
    if not have or rng.random() < probs.get("rgb", 0.0) / total:
        return Modality.RGB
    p = np.array([probs[m.value] for m in have], dtype=np.float64)
    return have[int(rng.choice(len(have), p=p / p.sum()))]


class _FrameCache:
    """Per-sample cache of converted aux frames (a frame can serve two roles)."""

    def __init__(self, seq: SequenceLike, modality: Modality, aux_cfg: AuxConfig) -> None:
        self.seq, self.modality, self.aux_cfg = seq, modality, aux_cfg
        self._aux: dict[int, Optional[np.ndarray]] = {}

    def aux_image(self, index: int, drop: bool) -> Optional[np.ndarray]:
        if self.modality is Modality.RGB or drop:
            return None
        if index not in self._aux:
            raw = self.seq.aux(self.modality, index)
            self._aux[index] = None if raw is None else to_aux_image(raw, self.modality, self.aux_cfg)
        return self._aux[index]


def _augment_rgb(crop: np.ndarray, gain: float, gray: bool) -> np.ndarray:
    out = crop
    if gray:
        g = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
        out = cv2.merge([g, g, g])
    if gain != 1.0:
        out = cv2.convertScaleAbs(out, alpha=gain, beta=0.0)
    return out


def draw_sample(
    seq: SequenceLike,
    rng: np.random.Generator,
    cfg: SamplingConfig,
    template_size: int,
    search_size: int,
    aux_cfg: AuxConfig = AuxConfig(),
) -> Optional[Sample]:
    """One training triplet from ``seq`` (None if the sequence has too few annotated frames)."""
    n = len(seq.gt)
    present = np.flatnonzero(~np.asarray(seq.absent, dtype=bool))
    if len(present) < 2:
        return None
    # -- static template: an early annotated frame ---------------------------------------
    if rng.random() < cfg.static_first_prob:
        i_s = int(present[0])
    else:
        early = present[present <= max(present[0], int(cfg.static_span * n))]
        i_s = int(rng.choice(early))
    later = np.arange(i_s + 1, min(n, i_s + cfg.max_gap + 1))
    if len(later) == 0:
        return None
    # -- search frame, then the dynamic template between them ---------------------------
    i_x = int(rng.choice(later))
    same = rng.random() < cfg.same_template_prob
    between = present[(present > i_s) & (present < i_x)]
    if same or len(between) == 0:
        i_d = i_s
    else:
        i_d = int(rng.choice(between))
    modality = _choose_modality(seq, cfg, rng)
    frames = _FrameCache(seq, modality, aux_cfg)
    gray = rng.random() < cfg.gray_prob

    def gain() -> float:
        return float(math.exp(rng.uniform(-cfg.brightness_jitter, cfg.brightness_jitter)))

    def template(index: int, box: Box) -> tuple[np.ndarray, Optional[np.ndarray], np.ndarray]:
        geom = crop_geometry(box, cfg.template_factor, template_size)
        rgb = _augment_rgb(crop_image(seq.rgb(index), geom), gain(), gray)
        aux_img = frames.aux_image(index, rng.random() < cfg.aux_missing_prob)
        aux = crop_image(aux_img, geom) if aux_img is not None else None
        return rgb, aux, geom.box_to_crop(box).astype(np.float32)

    st_box = Box.from_sequence(seq.gt[i_s])
    st_rgb, st_aux, st_norm = template(i_s, st_box)
    if i_d == i_s:
        dt_rgb, dt_aux, dt_norm = st_rgb, st_aux, st_norm
    else:
        dt_box = jitter_box(Box.from_sequence(seq.gt[i_d]), cfg.dynamic_center_jitter, cfg.dynamic_scale_jitter, rng)
        dt_rgb, dt_aux, dt_norm = template(i_d, dt_box)

    # -- search region around the previous state ------------------------------------------
    prev = present[present < i_x][-1]
    prev_box = Box.from_sequence(seq.gt[prev])
    img_h, img_w = seq.rgb(i_x).shape[:2]
    if rng.random() < cfg.negative_prob:
        # a crop of the same size centred where the target is not (its centre outside the crop)
        side = math.sqrt(prev_box.w * prev_box.h) * cfg.search_factor
        for _ in range(10):
            cx, cy = rng.uniform(0, img_w), rng.uniform(0, img_h)
            if not seq.absent[i_x]:
                gt_now = Box.from_sequence(seq.gt[i_x])
                if abs(gt_now.cx - cx) < side / 2 + 1 and abs(gt_now.cy - cy) < side / 2 + 1:
                    continue
            break
        centre_box = Box.from_cxcywh(cx, cy, prev_box.w, prev_box.h)
    else:
        centre_box = jitter_box(prev_box, cfg.center_jitter, cfg.scale_jitter, rng)
    geom = crop_geometry(centre_box, cfg.search_factor, search_size)
    search_rgb = _augment_rgb(crop_image(seq.rgb(i_x), geom), gain(), gray)
    aux_img = frames.aux_image(i_x, rng.random() < cfg.aux_missing_prob)
    search_aux = crop_image(aux_img, geom) if aux_img is not None else None
    if seq.absent[i_x]:
        gt = np.zeros(4)
        positive = False
    else:
        gt = _box_to_cxcywh(geom, Box.from_sequence(seq.gt[i_x]))
        positive = bool(0.0 <= gt[0] < 1.0 and 0.0 <= gt[1] < 1.0)
        if not positive:
            gt = np.zeros(4)

    prompt = (seq.prompt or "").strip()
    use_prompt = bool(prompt) and rng.random() < cfg.prompt_prob
    task = int(Task.for_inputs(modality, use_prompt))
    return Sample(
        static_rgb=st_rgb,
        static_aux=st_aux,
        dynamic_rgb=dt_rgb,
        dynamic_aux=dt_aux,
        search_rgb=search_rgb,
        search_aux=search_aux,
        static_box=st_norm,
        dynamic_box=dt_norm,
        gt_cxcywh=gt.astype(np.float32),
        positive=positive,
        task=task,
        prompt=prompt if use_prompt else "",
        modality=modality.value,
    )
