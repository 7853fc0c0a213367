"""In-memory view of one single-object tracking sequence (docs/architecture.md, "Sequences").

A :class:`TrackingSequence` holds the per-frame ground truth (boxes, absent flags), the language prompt
and descriptive attributes, and reads frames through a :class:`FrameSource`: in-memory arrays
(:class:`ArrayFrames`), image files (``data.folder``), decoded bag messages (``data.bag``) or the
generator's renderer (``data.generator``). Native frame types:

* ``rgb(i)``: (H, W, 3) uint8 RGB.
* ``aux(Modality.DEPTH, i)``: (H, W) uint16 millimetres, 0 = invalid.
* ``aux(Modality.THERMAL, i)``: (H, W) uint16 counts (generated data: centi-kelvin).
* ``aux(Modality.EVENT, i)``: (H, W, 3) uint8 rendered event frame.

Boxes are ``x, y, w, h`` in image pixels (``types.Box`` convention); an absent frame has a NaN row.
"""
from __future__ import annotations

import collections.abc as abc
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Protocol, Union

import numpy as np

from ..types import Box, Modality
from .errors import FrameCountError, SequenceError

#: First frame's stamp when a sequence has no stamps of its own (2023-11-14T22:13:20Z).
DEFAULT_START_NS = 1_700_000_000 * 10**9
DEFAULT_FPS = 30.0
AUX_MODALITIES = (Modality.DEPTH, Modality.THERMAL, Modality.EVENT)

ModalityLike = Union[Modality, str]


def as_modality(value: ModalityLike) -> Modality:
    """``Modality`` from a member or its value (``"depth"``); raises ``SequenceError`` otherwise."""
    try:
        modality = Modality(value)
    except ValueError:
        raise SequenceError(f"unknown modality {value!r}; expected one of "
                            f"{[m.value for m in AUX_MODALITIES]}") from None
    if modality is Modality.RGB:
        raise SequenceError("Modality.RGB is not an auxiliary stream; use TrackingSequence.rgb(i)")
    return modality


class FrameSource(Protocol):
    """Where a sequence's images come from; indices are 0-based frame numbers."""

    @property
    def modalities(self) -> tuple[Modality, ...]: ...

    def __len__(self) -> int: ...

    def rgb(self, index: int) -> np.ndarray: ...

    def aux(self, modality: Modality, index: int) -> Optional[np.ndarray]: ...


class ArrayFrames:
    """Frames held in memory: ``rgb[i]`` and ``aux[modality][i]`` (``None`` = missing that frame)."""

    def __init__(self, rgb: abc.Sequence[np.ndarray],
                 aux: Optional[abc.Mapping[Modality, abc.Sequence[Optional[np.ndarray]]]] = None):
        self._rgb = list(rgb)
        self._aux = {as_modality(m): list(v) for m, v in (aux or {}).items()}
        for modality, frames in self._aux.items():
            if len(frames) != len(self._rgb):
                raise FrameCountError(f"{modality.value}: {len(frames)} frames for {len(self._rgb)} RGB frames")

    @property
    def modalities(self) -> tuple[Modality, ...]:
        return tuple(m for m in AUX_MODALITIES if m in self._aux)

    def __len__(self) -> int:
        return len(self._rgb)

    def rgb(self, index: int) -> np.ndarray:
        return self._rgb[index]

    def aux(self, modality: Modality, index: int) -> Optional[np.ndarray]:
        return self._aux[modality][index]


@dataclass(frozen=True)
class SequenceFrame:
    """One frame of a sequence with its ground truth.

    Attributes:
        index: 0-based frame number.
        stamp_ns: capture time in nanoseconds.
        rgb: (H, W, 3) uint8 RGB image.
        aux: the auxiliary frames present for this frame, by modality (native dtypes, see module doc).
        gt: (4,) float64 ``x, y, w, h`` in image pixels; NaN when ``absent``.
        absent: the target is not visible (out of view or fully occluded).
    """

    index: int
    stamp_ns: int
    rgb: np.ndarray
    aux: abc.Mapping[Modality, np.ndarray]
    gt: np.ndarray
    absent: bool

    @property
    def box(self) -> Optional[Box]:
        return None if self.absent else Box.from_sequence(self.gt)


@dataclass(eq=False)
class TrackingSequence:
    """One tracking sequence: ground truth + prompt + attributes, frames read through ``frames``.

    Attributes:
        name: sequence name (folder name in the folder layout).
        frames: the frame source (``len(frames)`` must equal the number of GT rows).
        gt: (N, 4) float64 ``x, y, w, h`` image pixels; NaN rows for absent frames.
        absent: (N,) bool; a frame is absent if flagged or if its GT row is not finite.
        prompt: one-line language description of the target, or None.
        attributes: JSON-able description (seed, split, challenges, camera, generator version...).
        frame_info: per-frame (N,) arrays (e.g. ``visibility``, ``illumination``) for analysis.
        stamps_ns: (N,) int64 capture times; default ``DEFAULT_START_NS`` + i / ``DEFAULT_FPS``.
    """

    name: str
    frames: FrameSource
    gt: np.ndarray
    # absent and stamps_ns may be given as None (no frame absent; the default stamps): __post_init__
    # stores the (N,) arrays, so every reader gets an array
    absent: np.ndarray = None  # type: ignore[assignment]
    prompt: Optional[str] = None
    attributes: dict[str, Any] = field(default_factory=dict)
    frame_info: dict[str, np.ndarray] = field(default_factory=dict)
    stamps_ns: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        gt = np.array(self.gt, dtype=np.float64, copy=True)
        if gt.ndim != 2 or gt.shape[1] != 4:
            raise SequenceError(f"{self.name}: gt must have shape (N, 4), got {gt.shape}")
        n = len(gt)
        if len(self.frames) != n:
            raise FrameCountError(f"{self.name}: {len(self.frames)} frames but {n} ground-truth rows")
        absent = np.zeros(n, bool) if self.absent is None else np.asarray(self.absent, dtype=bool).copy()
        if absent.shape != (n,):
            raise FrameCountError(f"{self.name}: {absent.shape[0] if absent.ndim else 0} absent flags "
                                  f"for {n} frames")
        absent |= ~np.isfinite(gt).all(axis=1)
        gt[absent] = np.nan
        self.gt, self.absent = gt, absent
        if self.stamps_ns is None:
            self.stamps_ns = DEFAULT_START_NS + np.round(np.arange(n) * 1e9 / DEFAULT_FPS).astype(np.int64)
        else:
            self.stamps_ns = np.asarray(self.stamps_ns, dtype=np.int64)
            if self.stamps_ns.shape != (n,):
                raise FrameCountError(f"{self.name}: {len(self.stamps_ns)} stamps for {n} frames")
        info = {}
        for key, values in self.frame_info.items():
            values = np.asarray(values)
            if values.shape[:1] != (n,):
                raise FrameCountError(f"{self.name}: frame_info[{key!r}] has {len(values)} rows for {n} frames")
            info[key] = values
        self.frame_info = info

    # -- size and metadata -------------------------------------------------------------------
    @property
    def length(self) -> int:
        return len(self.gt)

    def __len__(self) -> int:
        return self.length

    @property
    def modalities(self) -> tuple[Modality, ...]:
        """Auxiliary modalities present (RGB is always present and not listed)."""
        return self.frames.modalities

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the frames (read from the first frame)."""
        h, w = self.rgb(0).shape[:2]
        return w, h

    # -- per-frame access --------------------------------------------------------------------
    def _check(self, index: int) -> int:
        if not -self.length <= index < self.length:
            raise IndexError(f"{self.name}: frame {index} out of range (length {self.length})")
        return index % self.length

    def rgb(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB frame ``index``."""
        return self.frames.rgb(self._check(index))

    def aux(self, modality: ModalityLike, index: int) -> Optional[np.ndarray]:
        """Auxiliary frame in its native type (see module doc); None if missing for this frame."""
        modality = as_modality(modality)
        if modality not in self.modalities:
            have = ", ".join(m.value for m in self.modalities) or "none"
            raise SequenceError(f"{self.name} has no {modality.value} frames (has: {have})")
        return self.frames.aux(modality, self._check(index))

    def stamp_ns(self, index: int) -> int:
        return int(self.stamps_ns[self._check(index)])

    def box(self, index: int) -> Optional[Box]:
        """Ground-truth ``Box`` of frame ``index``, None when the target is absent."""
        index = self._check(index)
        return None if self.absent[index] else Box.from_sequence(self.gt[index])

    def frame(self, index: int, modalities: Optional[abc.Iterable[ModalityLike]] = None) -> SequenceFrame:
        """Everything about frame ``index``; ``modalities`` limits which aux frames are read."""
        index = self._check(index)
        wanted = self.modalities if modalities is None else tuple(as_modality(m) for m in modalities)
        aux = {}
        for modality in wanted:
            image = self.aux(modality, index)
            if image is not None:
                aux[modality] = image
        return SequenceFrame(index, self.stamp_ns(index), self.rgb(index), aux, self.gt[index].copy(),
                     bool(self.absent[index]))

    def iter_frames(self, start: int = 0, stop: Optional[int] = None,
                    modalities: Optional[abc.Iterable[ModalityLike]] = None) -> Iterator[SequenceFrame]:
        """Frames ``start .. stop-1`` in order (sequential access is the fast path for every source)."""
        stop = self.length if stop is None else min(stop, self.length)
        wanted = None if modalities is None else tuple(modalities)
        for index in range(start, stop):
            yield self.frame(index, wanted)

    def materialize(self) -> "TrackingSequence":
        """Copy whose frames are all decoded / rendered into memory (``ArrayFrames``): fast repeated
        random access, e.g. a training sampler revisiting a generated sequence. Memory: about
        ``N * H * W * (3 + 2 + 2 + 3)`` bytes with every aux modality."""
        rgb: list[np.ndarray] = []
        aux: dict[Modality, list[Optional[np.ndarray]]] = {m: [] for m in self.modalities}
        for index in range(self.length):
            rgb.append(self.rgb(index))
            for modality in self.modalities:
                aux[modality].append(self.aux(modality, index))
        return TrackingSequence(self.name, ArrayFrames(rgb, aux), self.gt, self.absent, self.prompt, dict(self.attributes),
                        dict(self.frame_info), self.stamps_ns)

    def __repr__(self) -> str:
        mods = "+".join(["rgb", *(m.value for m in self.modalities)])
        return (f"Sequence({self.name!r}, length={self.length}, {mods}, absent={int(self.absent.sum())}, "
                f"prompt={self.prompt!r})")
