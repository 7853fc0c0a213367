"""Crops, resize and normalisation in torch on any device: the GPU path of ``preprocess``.

The official geometry (method.md 6.2, :func:`~utptrack_ros.preprocess.crop_geometry`): the
zero-padded ``side`` x ``side`` crop at ``(x1, y1)`` — whose valid image columns are
``max(x1, 0) <= c < min(x1 + side, W - 1)`` (the ``+1`` of the official right/bottom padding
drops the last image column / row of any crop that reaches it) — resized to ``out_size`` the
way ``cv2.resize(INTER_LINEAR)`` does: source coordinate ``(j + 0.5) * side / out - 0.5``,
indices clamped to the crop (border replicate of the padded crop), bilinear weights in OpenCV's
11-bit fixed point and its rounding, result in uint8 steps. The padded crop is never
materialised: each output pixel gathers its four neighbours straight from the frame, and
neighbours in the padding read zero. The pixels equal ``preprocess.crop_image``'s to one grey
level (bit-identical with the pinned OpenCV, whose SIMD kernel's rounding is reproduced;
``test/test_device_crops.py``, also for crops past every border).

Normalisation is ImageNet's (method.md 6.1), as ``preprocess.crops_to_tensor``; the output is
(B, C, S, S) float32 in channels-last memory like the CPU path.

:class:`FrameUploader` sends one frame per call to the device; on CUDA it copies through a
reused pinned (page-locked) staging buffer with a non-blocking copy, and waits for the previous
copy out of that buffer before overwriting it. :class:`DeviceCropper` is what the tracker holds:
one upload per crop call (a frame's search crops for all targets at once; a template update on
the same frame uploads again, every ``update_interval`` frames).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from .errors import InputError
from .preprocess import CropGeometry, normaliser


class FrameUploader:
    """(H, W[, C]) uint8 frames -> tensors on ``device`` (see the module docstring)."""

    def __init__(self, device: Union[str, torch.device]) -> None:
        self.device = torch.device(device)
        self.pinned = self.device.type == "cuda"
        self._staging: Optional[Tensor] = None
        self._copied: Optional[torch.cuda.Event] = None

    def upload(self, image: np.ndarray) -> Tensor:
        if image.dtype != np.uint8:
            raise InputError(f"frames are uint8, got {image.dtype}")
        if not self.pinned:
            array = image if image.flags.c_contiguous and image.flags.writeable else np.ascontiguousarray(image).copy()
            return torch.from_numpy(array).to(self.device)
        if self._staging is None or tuple(self._staging.shape) != image.shape:
            self._staging, self._copied = torch.empty(image.shape, dtype=torch.uint8).pin_memory(), None
        if self._copied is not None:
            self._copied.synchronize()  # the last non-blocking copy has left the staging buffer
        self._staging.numpy()[...] = image
        out = self._staging.to(self.device, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record()
        return out


#: OpenCV's INTER_LINEAR weights for 8-bit images: 11-bit fixed point
COEF_BITS = 11


def _axis(start: Tensor, side: Tensor, limit: int, out: int, rows: bool
          ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Per crop (rows of ``start`` / ``side``) and output index: the two source image indices,
    their fixed-point weights, and whether each source lies in the image part of the crop.

    As ``cv2.resize``: ``f = float32((j + 0.5) * side / out - 0.5)``, ``i = floor(f)``, weights
    ``round((1 - f) * 2048)`` and ``round(f * 2048)`` of crop pixels ``i`` and ``i + 1`` clamped to
    the crop; across columns, left of the crop ``f = 0, i = 0`` and at or past its last pixel
    ``f = 0, i = side - 1`` (across rows OpenCV keeps ``f`` and only clamps the indices)."""
    j = torch.arange(out, dtype=torch.float64, device=start.device)
    s = side.to(torch.float64)[:, None]
    f = ((j[None] + 0.5) * (s / out) - 0.5).float()
    i = torch.floor(f)
    f = f - i
    if not rows:
        low, high = i < 0, i >= s - 1
        f = torch.where(low | high, torch.zeros_like(f), f)
        i = torch.where(low, torch.zeros_like(i), torch.where(high, (s - 1).float().expand_as(i), i))
    one = float(1 << COEF_BITS)
    w0 = torch.round((1.0 - f) * one).long()
    w1 = torch.round(f * one).long()
    last = side[:, None] - 1
    a0 = torch.minimum(i.long().clamp(min=0), last)
    a1 = torch.minimum((i.long() + 1).clamp(min=0), last)
    first = start[:, None]
    end = torch.clamp(start + side, max=limit - 1)[:, None]  # the official +1 padding
    i0, i1 = first + a0, first + a1
    return (i0.clamp(0, limit - 1), i1.clamp(0, limit - 1), w0, w1,
            (i0 >= 0) & (i0 < end), (i1 >= 0) & (i1 < end))


def crop_resize(frame: Tensor, geoms: Sequence[CropGeometry]) -> Tensor:
    """``geoms``' crops of ``frame`` (H, W[, C]) uint8 -> (B, out, out, C) float32 holding the
    uint8 values ``preprocess.crop_image`` gives (OpenCV's fixed-point arithmetic, to one grey
    level). All crops share ``out_size``."""
    if not geoms:
        raise InputError("crop_resize needs at least one crop")
    out = geoms[0].out_size
    if any(g.out_size != out for g in geoms):
        raise InputError("crops of one batch share out_size")
    if frame.ndim == 2:
        frame = frame[..., None]
    h, w = frame.shape[:2]
    dev = frame.device
    x1, y1, side = torch.tensor([[g.x1, g.y1, g.side] for g in geoms], dtype=torch.long).to(dev).unbind(1)  # one copy
    c0, c1, ax0, ax1, cv0, cv1 = _axis(x1, side, w, out, rows=False)
    r0, r1, by0, by1, rv0, rv1 = _axis(y1, side, h, out, rows=True)

    def row(r: Tensor, rv: Tensor) -> Tensor:
        """The horizontal pass on source rows ``r``: (B, out, out, C) int, weights sum 2048."""
        def tap(c: Tensor, cv: Tensor) -> Tensor:
            pixels = frame[r[:, :, None], c[:, None, :]].long()
            return pixels * (rv[:, :, None] & cv[:, None, :])[..., None]

        return tap(c0, cv0) * ax0[:, None, :, None] + tap(c1, cv1) * ax1[:, None, :, None]

    # the vertical pass as OpenCV's SIMD kernel rounds it: 16-bit products, then (sum + 2) >> 2
    top = ((row(r0, rv0) >> 4) * by0[:, :, None, None]) >> 16
    bottom = ((row(r1, rv1) >> 4) * by1[:, :, None, None]) >> 16
    return ((top + bottom + 2) >> 2).clamp_(0, 255).float()


def normalise(pixels: Tensor) -> Tensor:
    """(B, S, S, C) uint8-valued floats -> (B, C, S, S) ImageNet-normalised (channels-last memory);
    ``C`` = 3 or 6 (the auxiliary half uses the same statistics, method.md 3.1)."""
    channels = pixels.shape[-1]
    scale, bias = normaliser(channels, pixels.device)  # the CPU path's constants, cached per device
    return torch.addcmul(bias.view(channels), pixels, scale.view(channels)).permute(0, 3, 1, 2)


def crops_on_device(
    frame: Tensor, geoms: Sequence[CropGeometry], in_chans: int, aux: Optional[Tensor] = None
) -> Tensor:
    """Model input for ``geoms`` from an uploaded frame: (B, in_chans, S, S) float32.

    ``aux``: the whole auxiliary frame converted to (H, W, 3) uint8 (``AuxFrame.full()``) and
    uploaded; with ``in_chans == 6`` and no ``aux`` the RGB crop fills both halves (method.md 3.1).
    """
    rgb = crop_resize(frame, geoms)
    if in_chans == 3:
        return normalise(rgb)
    second = rgb if aux is None else crop_resize(aux, geoms)
    return normalise(torch.cat([rgb, second], dim=-1))


class DeviceCropper:
    """The tracker's crops on its device: the frame (and the converted auxiliary frame) uploaded
    once per call, every crop of the call cut there in one batched gather. Nothing is kept
    between calls: a caller may reuse its frame buffer."""

    def __init__(self, device: Union[str, torch.device]) -> None:
        self.device = torch.device(device)
        self._rgb = FrameUploader(self.device)
        self._aux = FrameUploader(self.device)
        self.uploads = 0

    def crops(self, image: np.ndarray, aux_full: Optional[np.ndarray], geoms: Sequence[CropGeometry],
              in_chans: int) -> Tensor:
        frame = self._rgb.upload(image)
        aux_t = None if aux_full is None or in_chans == 3 else self._aux.upload(aux_full)
        self.uploads += 1
        return crops_on_device(frame, geoms, in_chans, aux_t)
