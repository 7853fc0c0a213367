"""What the tracker needs from a network runtime (``TrackerNetwork``) and its torch adapter.

Two implementations: :class:`TorchNetwork` (the torch model itself, ``runtime == "torch"``) and
:class:`~utptrack_ros.runtime.network.OrtNetwork` (static onnxruntime graphs, falling back to the
torch model while no graphs exist for the current keep ratios). Tensors in, tensors out.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ..config import PruneConfig


@runtime_checkable
class TrackerNetwork(Protocol):
    """The tracker's calls on a network, whichever runtime computes them."""

    @property
    def runtime(self) -> str:
        """The runtime computing the next frame: ``torch`` or ``onnxruntime``."""
        ...

    def embed_templates(
        self, static: Tensor, dynamic: Optional[Tensor], static_box: Tensor, dynamic_box: Optional[Tensor]
    ) -> Any:
        """Template tokens (``dynamic=None``: the static crop, at tracking start)."""
        ...

    def embed_template(self, crop: Tensor, box: Tensor) -> Tensor:
        """Tokens of one template crop each (the dynamic-template update)."""
        ...

    def forward_search(
        self, search: Tensor, templates: Any, text: Optional[Tensor] = None, task: Optional[Tensor] = None
    ) -> Any:
        """The search-region forward with cached template tokens (a ``ModelOutput``)."""
        ...

    def set_prune(self, prune: PruneConfig) -> None:
        """Change the keep ratios (next frame)."""
        ...

    def prepare(self) -> Optional[Path]:
        """Make the current keep ratios ready to run (export/load graphs); None when nothing to do."""
        ...


#: the network dtypes the torch runtime runs in (``MultiTracker(dtype=...)``)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class TorchNetwork:
    """The torch model as a :class:`TrackerNetwork` (nothing to prepare).

    ``dtype``: the model's parameter dtype. Crops and text features are cast to it once on the
    way in (template tokens are then in it too; boxes stay float32 for the foreground fractions);
    the maps and task logits come back as float32, so decoding and box arithmetic never run in
    half precision. float32 casts nothing.
    """

    runtime = "torch"

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.float32) -> None:
        self.model: Any = model  # a UTPTrack-family nn.Module (its methods, not nn.Module attributes)
        self.dtype = dtype

    def _in(self, t: Optional[Tensor]) -> Any:
        return t if t is None or t.dtype == self.dtype else t.to(self.dtype)

    def embed_templates(
        self, static: Tensor, dynamic: Optional[Tensor], static_box: Tensor, dynamic_box: Optional[Tensor]
    ) -> Any:
        return self.model.embed_templates(self._in(static), self._in(dynamic), static_box, dynamic_box)

    def embed_template(self, crop: Tensor, box: Tensor) -> Tensor:
        return self.model.embed_template(self._in(crop), box)

    def forward_search(
        self, search: Tensor, templates: Any, text: Optional[Tensor] = None, task: Optional[Tensor] = None
    ) -> Any:
        out = self.model.forward_search(self._in(search), templates, self._in(text), task)
        if self.dtype == torch.float32:
            return out
        logits = out.task_logits.float() if out.task_logits is not None else None
        return replace(out, score_map=out.score_map.float(), size_map=out.size_map.float(),
                       offset_map=out.offset_map.float(), boxes=None, task_logits=logits)

    def set_prune(self, prune: PruneConfig) -> None:
        self.model.set_prune(prune)

    def prepare(self) -> Optional[Path]:
        return None
