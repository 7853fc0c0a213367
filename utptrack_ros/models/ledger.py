"""The token ledger a forward must produce for a variant and its keep ratios (method.md 4.4),
computed from the configuration alone: what the profiler, the exporters and the tests check a
real forward's ledger against."""
from __future__ import annotations

from typing import Optional

from ..config import ModelConfig, PruneConfig
from ..types import LayerTokens, TokenLedger
from .pruning import keep_count

__all__ = ["expected_ledger"]


def expected_ledger(config: ModelConfig, prune: Optional[PruneConfig] = None) -> TokenLedger:
    """The ledger a forward must produce: ``ceil(ratio * n)`` per component per layer (method.md 4.4).

    Args:
        config: the variant (grid sizes, depth).
        prune: keep ratios (default ``config.prune``).
    Returns:
        :class:`TokenLedger` with the counts leaving every block.
    """
    prune = config.prune if prune is None else prune
    n_z = config.template_grid**2
    sr, st, dt = config.search_grid**2, n_z, n_z if config.num_templates == 2 else 0
    start = LayerTokens(-1, sr, st, dt)
    layers = []
    for layer in range(config.depth):
        sr = keep_count(prune.ratio("ce", layer), sr)
        st = keep_count(prune.ratio("ste", layer), st)
        dt = keep_count(prune.ratio("dte", layer), dt)
        layers.append(LayerTokens(layer, sr, st, dt))
    return TokenLedger(input=start, layers=tuple(layers))
