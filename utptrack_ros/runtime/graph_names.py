"""Names of exported graph folders: ``<variant>-<fingerprint>`` from the weights digest, the
config with its keep ratios, the opset and the versions (shared by the onnxruntime cache in
``runtime.network`` and the install-time graphs in ``runtime.prebuilt``)."""
from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
from torch import nn

from ..config import PruneConfig, to_mapping


def weights_digest(model: nn.Module) -> str:
    """SHA-256 over the model's state dict (names and bytes)."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def fingerprint(weights: str, config: Any, prune: PruneConfig, opset: int) -> str:
    """A hex digest naming one export: weights digest, config + keep ratios, opset, versions."""
    from dataclasses import replace

    from .. import __version__

    meta = {"weights": weights, "config": to_mapping(replace(config, prune=prune)), "opset": opset,
            "torch": torch.__version__, "utptrack_ros": __version__}
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:20]


def graphs_folder(config: Any, weights: str, prune: PruneConfig, opset: int) -> str:
    """``<variant>-<fingerprint>``: the folder of one export, in the cache and in the prebuilt graphs."""
    return f"{config.name}-{fingerprint(weights, config, prune, opset)}"
