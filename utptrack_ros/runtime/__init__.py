"""Deployment runtimes: static-shape ONNX export and backends behind one protocol (method.md 11).

``export`` writes the graphs (torch.onnx dynamo exporter); ``backends`` runs them with
onnxruntime (imported only when an :class:`~utptrack_ros.runtime.backends.OrtBackend` is built)
or runs the torch model directly, with the same call contract::

    from utptrack_ros.runtime import export_onnx, OrtBackend, TorchBackend
    exported = export_onnx(model, "artifacts/onnx/tiny")
    backend = OrtBackend(exported.directory)
    tokens = backend.embed_templates(static, dynamic, static_box, dynamic_box)
    maps = backend.forward_search(search, tokens)          # SearchMaps (numpy)

Importing :mod:`utptrack_ros` or this package does not import onnx or onnxruntime.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "export_onnx": "export",
    "export_ostrack_shaped": "export",
    "ExportedModel": "export",
    "Backend": "backends",
    "TorchBackend": "backends",
    "OrtBackend": "backends",
    "TemplateArrays": "backends",
    "SearchMaps": "backends",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
