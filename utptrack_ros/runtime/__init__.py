"""Deployment runtimes: static-shape ONNX export and backends behind one protocol (method.md 11).

``export`` writes the graphs (torch.onnx dynamo exporter); ``backends`` runs them with
onnxruntime (imported only when an :class:`~utptrack_ros.runtime.backends.OrtBackend` is built)
or runs the torch model directly, with the same call contract::

    from utptrack_ros.runtime import export_onnx, OrtBackend, TorchBackend
    exported = export_onnx(model, "artifacts/onnx/tiny")
    backend = OrtBackend(exported.directory)
    tokens = backend.embed_templates(static, dynamic, static_box, dynamic_box)
    maps = backend.forward_search(search, tokens)          # SearchMaps (numpy)

``resolve_backend("auto", device)`` picks the runtime for a device (the node's ``model.backend``
default). Importing :mod:`utptrack_ros` or this package does not import onnx or onnxruntime.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Any

_LAZY = {
    "export_onnx": "export",
    "export_ostrack_shaped": "export",
    "ExportedModel": "export",
    "TorchBackend": "backends",
    "OrtBackend": "backends",
    "TemplateArrays": "backends",
    "SearchMaps": "backends",
}

BACKENDS = ("auto", "torch", "onnxruntime")

__all__ = sorted([*_LAZY, "BACKENDS", "resolve_backend"])


def resolve_backend(backend: str, device: str) -> str:
    """The runtime ``backend`` names on ``device``: ``auto`` is onnxruntime on the CPU (the same
    network exported to static graphs, faster for ``tiny``: docs/profiling.md) when onnxruntime is installed,
    and torch on a GPU or without onnxruntime; ``torch`` / ``onnxruntime`` are returned as given.

    ``device`` is a device string (``cpu``, ``cuda``, ``cuda:N``, ``auto`` = cuda when available).
    """
    if backend != "auto":
        return backend
    if str(device) == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    on_cpu = str(device).split(":")[0] == "cpu"
    return "onnxruntime" if on_cpu and importlib.util.find_spec("onnxruntime") is not None else "torch"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
