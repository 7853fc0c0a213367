"""BatchNorm folding: a ``Conv2d`` directly followed by a ``BatchNorm2d`` in an ``nn.Sequential``
becomes one conv with adjusted weight and bias (the BN becomes ``Identity``). The same function
to float rounding, with less work per call. Used by the inference rewrites (``models.inference``)
and by the frozen stem prefix of training (``models.stems.FrozenPrefix``).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    mean, var = bn.running_mean, bn.running_var
    assert mean is not None and var is not None, "only a BatchNorm with running statistics folds"
    scale = bn.weight / torch.sqrt(var + bn.eps)
    geometry: dict[str, Any] = dict(kernel_size=conv.kernel_size, stride=conv.stride, padding=conv.padding,
                                    dilation=conv.dilation, groups=conv.groups)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, **geometry, bias=True, padding_mode=conv.padding_mode).to(
        conv.weight.device, conv.weight.dtype)
    assert fused.bias is not None
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(mean)
    fused.bias.copy_((bias - mean) * scale + bn.bias)
    return fused


def fold_batchnorm(module: nn.Module) -> int:
    """Fold Conv2d+BatchNorm2d pairs in every nn.Sequential of ``module`` in place; returns the count."""
    count = 0
    for child in list(module.modules()):
        if not isinstance(child, nn.Sequential):
            continue
        for i in range(len(child) - 1):
            conv, bn = child[i], child[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                child[i] = _fold(conv, bn)
                child[i + 1] = nn.Identity()
                count += 1
    return count
