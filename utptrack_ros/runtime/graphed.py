"""The torch model's search forward captured as CUDA graphs and replayed per frame.

Every shape in the pruned forward is static for a given keep-ratio schedule and batch (kept counts
are ``ceil(ratio * n)``, method.md 4.4), so ``forward_search`` can be captured once per
(keep ratios, batch, dtype, input shapes) and replayed: issue 17 measured ~6x less time per
forward on an H200 at batch 1. :class:`GraphedNetwork` is a
:class:`~utptrack_ros.runtime.tracker_network.TrackerNetwork` that keeps that bookkeeping:

* one graph per key, captured on first use (or ahead with :meth:`GraphedNetwork.capture`), at most
  ``max_graphs`` (least recently used dropped);
* each graph owns static input tensors; a call copies the search crops, the template tokens and
  any text / task inputs into them and replays, so a dynamic-template update or a new target set
  of the same batch size needs no new capture;
* the outputs are cloned out of the graph's static outputs (the next replay overwrites those).

Templates are embedded eagerly (``embed_templates``: once per start and every update interval).
``capture`` is the function turning a closure into a replay (default :func:`cuda_graph`); the
tests pass the closure itself to check the bookkeeping on the CPU.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import fields, replace
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from ..config import PruneConfig
from ..errors import InputError

Capture = Callable[[Callable[[], Any]], Callable[[], Any]]


def cuda_graph(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` (reading only static tensors) captured as a CUDA graph: warmed up on a side stream,
    captured, and returned as a replay that returns the static outputs of the capture."""
    with torch.inference_mode():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = fn()

    def replay() -> Any:
        graph.replay()
        return out

    return replay


def _spec(t: Optional[Tensor]) -> Optional[tuple]:
    return None if t is None else (tuple(t.shape), t.dtype, str(t.device))


class _Graph:
    """Static inputs and the replay of one key."""

    def __init__(self, model: Any, prune: PruneConfig, inputs: dict[str, Optional[Tensor]], capture: Capture) -> None:
        from ..models.encoder import TemplateTokens

        self.inputs = {k: None if v is None else v.clone() for k, v in inputs.items()}
        static = self.inputs
        st, st_fg = static["st"], static["st_fg"]
        assert st is not None and st_fg is not None  # templates always have these
        tokens = TemplateTokens(st, static["dt"], st_fg)

        def forward() -> Any:
            return model.forward_search(static["search"], tokens, static["text"], static["task"], prune=prune)

        self.replay = capture(forward)

    def __call__(self, inputs: dict[str, Optional[Tensor]]) -> Any:
        for name, value in inputs.items():
            if value is not None:
                target = self.inputs[name]
                assert target is not None
                target.copy_(value)
        out = self.replay()
        return replace(out, **{f.name: getattr(out, f.name).clone() for f in fields(out)
                               if isinstance(getattr(out, f.name), Tensor)})


class GraphedNetwork:
    """``model``'s tracking calls with ``forward_search`` replayed from captured graphs.

    Args:
        model: a UTPTrack-family model in eval mode on its device (a CUDA device for the default
            ``capture``).
        capture: closure -> replay (default :func:`cuda_graph`).
        max_graphs: graphs kept (one per keep ratios x batch x dtype x input shapes).
    Raises:
        InputError: the default capture on a model that is not on a CUDA device.
    """

    runtime = "torch"

    def __init__(self, model: nn.Module, capture: Optional[Capture] = None, max_graphs: int = 16) -> None:
        self.model: Any = model
        if capture is None:
            device = next(model.parameters()).device
            if device.type != "cuda":
                raise InputError(f"CUDA graphs need the model on a CUDA device, it is on {device}")
            capture = cuda_graph
        self._capture = capture
        self.max_graphs = max_graphs
        self._graphs: OrderedDict[tuple, _Graph] = OrderedDict()
        self.captures = 0

    @property
    def graphs(self) -> int:
        """Graphs held now."""
        return len(self._graphs)

    def embed_templates(self, static: Tensor, dynamic: Optional[Tensor], static_box: Tensor,
                        dynamic_box: Optional[Tensor]) -> Any:
        return self.model.embed_templates(static, dynamic, static_box, dynamic_box)

    def embed_template(self, crop: Tensor, box: Tensor) -> Tensor:
        return self.model.embed_template(crop, box)

    def set_prune(self, prune: PruneConfig) -> None:
        self.model.set_prune(prune)

    def prepare(self) -> None:
        return None

    @staticmethod
    def _inputs(search: Tensor, templates: Any, text: Optional[Tensor], task: Optional[Tensor]
                ) -> dict[str, Optional[Tensor]]:
        return {"search": search, "st": templates.st, "dt": templates.dt, "st_fg": templates.st_fg,
                "text": text, "task": task}

    def _graph(self, inputs: dict[str, Optional[Tensor]]) -> _Graph:
        prune = self.model.prune
        key = (prune, *(_spec(v) for v in inputs.values()))
        graph = self._graphs.get(key)
        if graph is None:
            graph = _Graph(self.model, prune, inputs, self._capture)
            self.captures += 1
            self._graphs[key] = graph
            while len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        self._graphs.move_to_end(key)
        return graph

    def capture(self, search: Tensor, templates: Any, text: Optional[Tensor] = None,
                task: Optional[Tensor] = None) -> None:
        """Capture the graph for these shapes and the current keep ratios now (at activation)."""
        self._graph(self._inputs(search, templates, text, task))

    def forward_search(self, search: Tensor, templates: Any, text: Optional[Tensor] = None,
                       task: Optional[Tensor] = None) -> Any:
        inputs = self._inputs(search, templates, text, task)
        return self._graph(inputs)(inputs)
