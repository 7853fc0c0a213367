"""Crops around a box with the official geometry, and crops -> normalised tensors (method.md 6.1, 6.2).

Crop geometry (``sample_target`` of the official trackers): side ``s = ceil(sqrt(w*h) * factor)``;
top-left ``x1 = round(cx - s/2)`` with Python's round-half-to-even (likewise ``y1``);
padding ``left = max(0, -x1)``, ``right = max(x1 + s - W + 1, 0)`` (note the +1: a crop touching
the right/bottom border drops the last column/row and pads one extra zero), zero padding,
bilinear resize to the output size. Boxes move between image and crop with the reference point
the official trackers use for mapping back, ``(cx - s/2, cy - s/2)`` of the centre the crop was
requested around, so :meth:`CropGeometry.box_to_crop` and :meth:`CropGeometry.crop_to_box` are
exact inverses.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Optional

import cv2
import numpy as np
import torch
from torch import Tensor

from .errors import InputError
from .types import Box

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: the zero-padded crop is materialised before resizing; a larger one is refused (InputError)
#: instead of asking for gigabytes (a context factor far too large for the box)
MAX_CROP_BYTES = 1 << 28


@dataclass(frozen=True)
class CropGeometry:
    """A square crop of ``side`` image pixels around ``(cx, cy)``, resized to ``out_size``.

    Attributes:
        cx, cy: the centre the crop was requested around (image px).
        side: crop side in image px (before resizing).
        x1, y1: the crop's top-left pixel in the image (rounded; may be negative).
        out_size: side of the resized crop in px.
    """

    cx: float
    cy: float
    side: int
    x1: int
    y1: int
    out_size: int

    @property
    def resize_factor(self) -> float:
        return self.out_size / self.side

    @property
    def region(self) -> Box:
        """The crop's footprint in the image, as the map-back reference sees it."""
        return Box(self.cx - self.side / 2.0, self.cy - self.side / 2.0, float(self.side), float(self.side))

    def box_to_crop(self, box: Box) -> np.ndarray:
        """Image box -> ``x, y, w, h`` in the crop, normalised by ``out_size`` (float64, (4,))."""
        r = self.resize_factor
        x0 = self.cx - self.side / 2.0
        y0 = self.cy - self.side / 2.0
        return np.array([(box.x - x0) * r, (box.y - y0) * r, box.w * r, box.h * r]) / self.out_size

    def crop_to_box(self, cxcywh_norm: np.ndarray) -> Box:
        """Normalised ``cx, cy, w, h`` in the crop -> image box (official map-back, unclipped)."""
        cx, cy, w, h = (float(v) * self.side for v in cxcywh_norm)
        return Box.from_cxcywh(cx + self.cx - self.side / 2.0, cy + self.cy - self.side / 2.0, w, h)


def template_box(geom: CropGeometry, box: Box, rule: str) -> np.ndarray:
    """The target box in a template crop as the model's box prior takes it: ``x, y, w, h`` (4,).

    Each family uses its own official transform (method.md 6.5; ``ModelConfig.template_box``):

    * ``ostrack`` (OSTrack, UTPTrack-O): centre ``(T-1)/2 + (c_box - c_crop) * r``, size ``w*r``,
      all divided by ``T`` (OSTrack's ``transform_image_to_crop(normalize=True)``);
    * ``sutrack`` (SUTrack, UTPTrack-S): the same centre and size divided by ``T - 1``;
    * ``crop``: :meth:`CropGeometry.box_to_crop` (centre ``T/2``, divided by ``T``), the exact
      inverse of the map-back, which the project's own models are trained with.

    ``T`` is the template size, ``r`` the crop's resize factor, ``c_crop`` the centre the crop was
    requested around.
    """
    if rule == "crop":
        return geom.box_to_crop(box)
    if rule not in ("ostrack", "sutrack"):
        raise ValueError(f"unknown template box rule {rule!r}")
    r, t = geom.resize_factor, float(geom.out_size)
    w, h = box.w * r, box.h * r
    cx = (t - 1.0) / 2.0 + (box.cx - geom.cx) * r
    cy = (t - 1.0) / 2.0 + (box.cy - geom.cy) * r
    norm = t if rule == "ostrack" else t - 1.0
    return np.array([cx - w / 2.0, cy - h / 2.0, w, h]) / norm


def crop_geometry(box: Box, factor: float, out_size: int) -> CropGeometry:
    """Where the official trackers crop around ``box`` with context ``factor``."""
    if not box.is_finite() or box.w <= 0 or box.h <= 0:
        raise InputError(f"cannot crop around box {box.as_xywh()}: needs finite w > 0 and h > 0")
    side = math.ceil(math.sqrt(box.w * box.h) * factor)
    if side < 1:
        raise InputError(f"crop around box {box.as_xywh()} with factor {factor} is empty")
    cx, cy = box.cx, box.cy
    return CropGeometry(cx, cy, side, round(cx - side * 0.5), round(cy - side * 0.5), out_size)


def crop_image(
    image: np.ndarray, geom: CropGeometry, to_image: Optional[Callable[[np.ndarray], np.ndarray]] = None
) -> np.ndarray:
    """Cut ``geom`` out of ``image`` (H, W) or (H, W, C), zero-pad, resize -> (out, out[, C]).

    ``to_image`` maps the in-image part of the crop to (h, w, 3) uint8 before padding (the
    per-pixel auxiliary conversions of ``modalities.AuxFrame``), so padding stays zero as if the
    whole frame had been converted first.
    """
    h, w = image.shape[:2]
    x1, y1, s = geom.x1, geom.y1, geom.side
    pixel_bytes = 3 if to_image is not None else image.itemsize * int(np.prod(image.shape[2:], dtype=np.int64))
    if s * s * pixel_bytes > MAX_CROP_BYTES:
        raise InputError(
            f"a {s}x{s} px crop around ({geom.cx:.0f}, {geom.cy:.0f}) would need "
            f"{s * s * pixel_bytes / 2**30:.1f} GiB (limit {MAX_CROP_BYTES >> 20} MiB): "
            f"the context factor (search_factor / template_factor) is too large for this box"
        )
    x2, y2 = x1 + s, y1 + s
    left, top = max(0, -x1), max(0, -y1)
    right, bottom = max(x2 - w + 1, 0), max(y2 - h + 1, 0)
    patch = image[y1 + top : y2 - bottom, x1 + left : x2 - right]
    if patch.size == 0:  # the crop lies wholly outside the image
        trailing = (3,) if to_image is not None else image.shape[2:]
        padded = np.zeros((s, s) + trailing, dtype=np.uint8 if to_image is not None else image.dtype)
    else:
        if to_image is not None:
            patch = to_image(patch)
        if left or top or right or bottom:
            padded = cv2.copyMakeBorder(patch, top, bottom, left, right, cv2.BORDER_CONSTANT, value=0)
            if padded.ndim < patch.ndim:  # OpenCV drops a trailing singleton channel
                padded = padded[..., None]
        else:
            padded = patch
    if padded.shape[0] == geom.out_size and padded.shape[1] == geom.out_size:
        return np.ascontiguousarray(padded)
    return cv2.resize(padded, (geom.out_size, geom.out_size), interpolation=cv2.INTER_LINEAR)


@functools.lru_cache(maxsize=8)
def normaliser(channels: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Per-channel ``scale``, ``bias`` with ``x_norm = x_uint8 * scale + bias`` (ImageNet stats)."""
    reps = channels // 3
    std = torch.tensor(IMAGENET_STD * reps, dtype=torch.float64)
    mean = torch.tensor(IMAGENET_MEAN * reps, dtype=torch.float64)
    scale = (1.0 / (255.0 * std)).float().view(1, channels, 1, 1).to(device)
    bias = (-mean / std).float().view(1, channels, 1, 1).to(device)
    return scale, bias


@functools.lru_cache(maxsize=1)
def _lookup_table() -> np.ndarray:
    """(1, 256, 3) float32: ``x_uint8 * scale + bias`` of :func:`normaliser` for every byte of
    an RGB triple (the auxiliary half uses the same statistics, method.md 3.1)."""
    scale, bias = normaliser(3, torch.device("cpu"))
    values = torch.arange(256, dtype=torch.float32).view(256, 1)
    return np.ascontiguousarray(torch.addcmul(bias.view(1, 3), values, scale.view(1, 3)).numpy()[None])


def _stack_channels(rgb: np.ndarray, aux: Optional[np.ndarray], in_chans: int) -> np.ndarray:
    if in_chans == 3:
        return rgb
    aux = rgb if aux is None else aux
    return cv2.merge([*cv2.split(rgb), *cv2.split(aux)])


def crops_to_tensor(
    rgb_crops: list[np.ndarray],
    aux_crops: Optional[list[Optional[np.ndarray]]],
    in_chans: int,
    device: torch.device,
    channels_last: bool = True,
) -> Tensor:
    """RGB (and auxiliary) uint8 crops -> (B, in_chans, S, S) float32, ImageNet-normalised.

    With ``in_chans == 6`` each sample is ``[RGB | aux]``; a missing aux crop (``None``)
    duplicates the RGB crop (method.md 3.1). With ``in_chans == 3`` aux crops are ignored.
    ``channels_last``: the memory layout (the values are the same): channels-last (the crops are
    HWC), which torch's convolutions prefer, or contiguous NCHW, which onnxruntime takes without
    another copy. On the CPU each 3-channel half goes through a 256-entry lookup table
    (``cv2.LUT``, one pass) written into the output layout (a 192 px 6-channel crop: 0.13 ms
    against 0.94 ms for torch's copy + multiply-add, plus the 0.2 ms NCHW copy it saves
    onnxruntime); on other devices the uint8 crops are uploaded and normalised there.
    """
    device = torch.device(device)
    aux_list: list[Optional[np.ndarray]] = list(aux_crops) if aux_crops else [None] * len(rgb_crops)
    if device.type == "cpu":
        return _normalise_on_cpu(rgb_crops, aux_list, in_chans, channels_last)
    b = len(rgb_crops)
    h, w = rgb_crops[0].shape[:2]
    raw = torch.empty(b, h, w, in_chans, dtype=torch.uint8)
    for i, (rgb, aux) in enumerate(zip(rgb_crops, aux_list)):
        raw[i] = torch.from_numpy(_stack_channels(rgb, aux, in_chans))
    scale, bias = normaliser(in_chans, device)
    out = torch.addcmul(bias, raw.to(device, non_blocking=True).permute(0, 3, 1, 2).float(), scale)
    return out if channels_last else out.contiguous()


def _normalise_on_cpu(
    rgb_crops: list[np.ndarray], aux_list: list[Optional[np.ndarray]], in_chans: int, channels_last: bool
) -> Tensor:
    lut = _lookup_table()
    h, w = rgb_crops[0].shape[:2]
    b, halves = len(rgb_crops), in_chans // 3
    if channels_last:
        out = np.empty((b, h, w, in_chans), np.float32)
        for i, (rgb, aux) in enumerate(zip(rgb_crops, aux_list)):
            if halves == 1:
                cv2.LUT(rgb, lut, dst=out[i])
                continue
            first = cv2.LUT(rgb, lut)
            second = first if aux is None else cv2.LUT(aux, lut)
            out[i] = cv2.merge([first, second])
        return torch.from_numpy(out).permute(0, 3, 1, 2)
    out = np.empty((b, in_chans, h, w), np.float32)
    for i, (rgb, aux) in enumerate(zip(rgb_crops, aux_list)):
        out[i, :3] = cv2.LUT(rgb, lut).transpose(2, 0, 1)
        if halves == 2:
            if aux is None:
                out[i, 3:] = out[i, :3]
            else:
                out[i, 3:] = cv2.LUT(aux, lut).transpose(2, 0, 1)
    return torch.from_numpy(out)
