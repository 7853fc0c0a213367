"""Plain value types shared by every layer: boxes, modalities, tracker results, token ledgers.

Box convention (used everywhere in this package): ``x, y, w, h`` in pixels of the *original*
image the box refers to, top-left origin, continuous coordinates (the box covers
``[x, x + w) x [y, y + h)``; no "-1" pixel rule). Centre = ``(x + w/2, y + h/2)``.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class Box:
    """Axis-aligned box ``(x, y, w, h)`` in image pixels, top-left origin."""

    x: float
    y: float
    w: float
    h: float

    @classmethod
    def from_cxcywh(cls, cx: float, cy: float, w: float, h: float) -> "Box":
        return cls(cx - w / 2.0, cy - h / 2.0, w, h)

    @classmethod
    def from_xyxy(cls, x1: float, y1: float, x2: float, y2: float) -> "Box":
        return cls(x1, y1, x2 - x1, y2 - y1)

    @classmethod
    def from_sequence(cls, values) -> "Box":
        """From any 4-sequence ``[x, y, w, h]`` (list, tuple, ndarray)."""
        x, y, w, h = (float(v) for v in values)
        return cls(x, y, w, h)

    @property
    def cx(self) -> float:
        return self.x + self.w / 2.0

    @property
    def cy(self) -> float:
        return self.y + self.h / 2.0

    @property
    def area(self) -> float:
        return self.w * self.h

    def as_xywh(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.w, self.h)

    def as_cxcywh(self) -> tuple[float, float, float, float]:
        return (self.cx, self.cy, self.w, self.h)

    def as_xyxy(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.x + self.w, self.y + self.h)

    def is_finite(self) -> bool:
        return all(math.isfinite(v) for v in self.as_xywh())


class Modality(str, enum.Enum):
    """What the auxiliary half of the 6-channel input carries."""

    RGB = "rgb"  # no auxiliary stream: the RGB image is duplicated (method.md 3.1)
    DEPTH = "depth"
    THERMAL = "thermal"
    EVENT = "event"


class Task(enum.IntEnum):
    """Task-identification labels (method.md 3.3, ``MODEL.TASK_INDEX``)."""

    RGB = 0
    LANGUAGE = 1
    DEPTH = 2
    THERMAL = 3
    EVENT = 4

    @classmethod
    def for_inputs(cls, modality: Modality, has_prompt: bool) -> "Task":
        """The task index the tracker feeds the model: a prompt makes it LANGUAGE (TG on)."""
        if has_prompt:
            return cls.LANGUAGE
        return {
            Modality.RGB: cls.RGB,
            Modality.DEPTH: cls.DEPTH,
            Modality.THERMAL: cls.THERMAL,
            Modality.EVENT: cls.EVENT,
        }[modality]


class TrackState(str, enum.Enum):
    """Where the tracker stands with one target (``TrackerConfig`` sets the thresholds).

    ``IDLE``: no target initialised. ``TRACKING``: confident; the box is the target.
    ``LOST``: the confidence fell below ``lost_threshold``; the box is only the best guess, the
    search stays around the last confident box and, after ``reacquire_after`` such frames, widens
    step by step up to the whole frame, matching the static (first-frame) template.
    ``RECOVERING``: the widened search found a candidate above ``relock_threshold``; the search is
    back to normal around it, and the state returns to TRACKING once ``relock_frames``
    consecutive frames confirm it at a consistent place (or to LOST when one does not).
    """

    IDLE = "idle"
    TRACKING = "tracking"
    LOST = "lost"
    RECOVERING = "recovering"


@dataclass(frozen=True)
class LayerTokens:
    """Token counts per component *leaving* one encoder block (after that block's pruning)."""

    layer: int
    sr: int  # search-region tokens
    st: int  # static-template tokens
    dt: int  # dynamic-template tokens

    @property
    def visual(self) -> int:
        return self.sr + self.st + self.dt


@dataclass(frozen=True)
class TokenLedger:
    """Per-layer visual-token counts of one forward pass (method.md 4.4 convention).

    ``input`` is what enters block 0; ``layers[i]`` is what leaves block ``i``. The paper's
    "average tokens per layer" is the mean of ``layers[i].visual``.
    """

    input: LayerTokens
    layers: tuple[LayerTokens, ...]

    @property
    def final(self) -> LayerTokens:
        return self.layers[-1] if self.layers else self.input

    @property
    def average_visual(self) -> float:
        return float(np.mean([lt.visual for lt in self.layers])) if self.layers else float(self.input.visual)

    @property
    def kept_fraction(self) -> float:
        """Visual tokens leaving the last block / visual tokens entering the first."""
        return self.final.visual / self.input.visual


@dataclass(frozen=True)
class TrackResult:
    """What ``Tracker.track`` returns for one target on one frame.

    Attributes:
        box: best estimate in original-image pixels (also when ``state`` is LOST).
        confidence: max of the Hann-windowed centre map, in [0, 1].
        state: TRACKING, LOST or RECOVERING (:class:`TrackState`; LOST and RECOVERING mean the
            box is not confirmed: do not act on it as the target).
        frame_index: 0 for the init frame, then 1, 2, ...
        ledger: token counts of this forward pass.
        search_region: the square search crop, in image pixels (may extend past the image).
        search_keep_mask: (F, F) bool, search tokens that survived every CE layer (row-major
            over the search grid); for the debug overlay.
        template_updated: the dynamic template was replaced on this frame.
        timings_ms: ``preprocess``, ``model``, ``postprocess``, ``total``.
    """

    box: Box
    confidence: float
    state: TrackState
    frame_index: int
    ledger: TokenLedger
    search_region: Box
    search_keep_mask: np.ndarray
    template_updated: bool = False
    timings_ms: dict[str, float] = field(default_factory=dict)
    task_probs: Optional[np.ndarray] = None  # (5,) softmax of the task head, if the model has one

    @property
    def kept_fraction(self) -> float:
        return self.ledger.kept_fraction
