"""Install step: export the onnxruntime graphs the parameter presets need, read-only for the node.

    python -m utptrack_ros.ros.prebuild --out <prefix>/share/utptrack_ros/onnx --presets config/*.yaml

Each preset is validated and resolved like the node does at configure (``build_settings``:
``backend: auto`` on the CPU = onnxruntime, keep ratios from ``prune.*``); those that run the
shipped weights on onnxruntime get their graphs built (``runtime.prebuilt.prebuild_graphs``,
once per distinct variant and keep ratios). Presets with a user weights file or on torch need
nothing. CMakeLists.txt runs this at install (``make setup``, ``colcon build``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import yaml

from ..config import to_mapping


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def preset_values(path: Path) -> dict:
    """A ROS 2 parameters file's values for every node (``/**``) as dotted names."""
    data = yaml.safe_load(path.read_text()) or {}
    node = data.get("/**") or next(iter(data.values()), {})
    return _flatten(node.get("ros__parameters", {}))


def graphs_needed(presets: Sequence[Path]) -> list[tuple[str, object]]:
    """Distinct (variant, keep ratios) that presets run with the shipped weights on onnxruntime."""
    from ..checkpoint import load_model
    from ..models import default_tracker_config, shipped_weights
    from .params import build_settings, parameter_defaults

    needed: list[tuple[str, object]] = []
    for path in presets:
        values = {**parameter_defaults(), **preset_values(path)}
        name = str(values["model.name"])
        settings = build_settings(values, default_tracker_config(name))
        weights = shipped_weights(name)
        if settings.model.backend != "onnxruntime" or settings.model.weights or weights is None:
            continue
        prune = settings.prune_config(load_model(weights).config.prune)
        if (name, prune) not in needed:
            needed.append((name, prune))
    return needed


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m utptrack_ros.ros.prebuild", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the graphs (share/utptrack_ros/onnx)")
    ap.add_argument("--presets", type=Path, nargs="+", required=True, help="parameter files (config/*.yaml)")
    args = ap.parse_args(argv)
    from ..runtime.prebuilt import prebuild_graphs
    from ..tracker import Tracker

    for name, prune in graphs_needed(args.presets):
        start = time.monotonic()
        directory = prebuild_graphs(args.out, Tracker.from_pretrained(name, prune=prune).model)
        ratios = {k: v for k, v in to_mapping(prune).items() if k in ("ce", "dte", "ste")}
        print(f"prebuild: {name} {ratios} -> {directory} ({time.monotonic() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
