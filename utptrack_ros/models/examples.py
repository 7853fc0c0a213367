"""Deterministic example inputs shaped for a variant: what exporters, benchmarks and tests feed a
forward when no real crop is at hand."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import ModelConfig

__all__ = ["ExampleInputs", "example_inputs"]


@dataclass(frozen=True)
class ExampleInputs:
    """Random normalised crops for one forward (batch ``B``).

    Attributes:
        search: (B, C_in, S, S); static, dynamic: (B, C_in, T, T).
        static_box, dynamic_box: (B, 4) ``x, y, w, h`` / T (a centred half-size box).
    """

    search: Tensor
    static: Tensor
    dynamic: Tensor
    static_box: Tensor
    dynamic_box: Tensor


def example_inputs(config: ModelConfig, batch: int = 1, seed: int = 0) -> ExampleInputs:
    """Deterministic random inputs shaped for ``config``, channels-last in memory like the
    tracker's crops (``preprocess.crops_to_tensor``)."""
    g = torch.Generator().manual_seed(seed)
    s, t, c = config.search_size, config.template_size, config.in_chans
    box = torch.tensor([[0.25, 0.25, 0.5, 0.5]]).expand(batch, 4).contiguous()

    def image(size: int) -> Tensor:
        return torch.randn(batch, c, size, size, generator=g).contiguous(memory_format=torch.channels_last)

    return ExampleInputs(
        search=image(s),
        static=image(t),
        dynamic=image(t),
        static_box=box,
        dynamic_box=box.clone(),
    )
