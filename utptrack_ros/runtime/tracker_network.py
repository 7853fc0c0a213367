"""What the tracker needs from a network runtime (``TrackerNetwork``) and its torch adapter.

Two implementations: :class:`TorchNetwork` (the torch model itself, ``runtime == "torch"``) and
:class:`~utptrack_ros.runtime.network.OrtNetwork` (static onnxruntime graphs, falling back to the
torch model while no graphs exist for the current keep ratios). Tensors in, tensors out.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Protocol, runtime_checkable

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


class TorchNetwork:
    """The torch model as a :class:`TrackerNetwork` (nothing to prepare)."""

    runtime = "torch"

    def __init__(self, model: nn.Module) -> None:
        self.model: Any = model  # a UTPTrack-family nn.Module (its methods, not nn.Module attributes)

    def embed_templates(
        self, static: Tensor, dynamic: Optional[Tensor], static_box: Tensor, dynamic_box: Optional[Tensor]
    ) -> Any:
        return self.model.embed_templates(static, dynamic, static_box, dynamic_box)

    def embed_template(self, crop: Tensor, box: Tensor) -> Tensor:
        return self.model.embed_template(crop, box)

    def forward_search(
        self, search: Tensor, templates: Any, text: Optional[Tensor] = None, task: Optional[Tensor] = None
    ) -> Any:
        return self.model.forward_search(search, templates, text, task)

    def set_prune(self, prune: PruneConfig) -> None:
        self.model.set_prune(prune)

    def prepare(self) -> Optional[Path]:
        return None
