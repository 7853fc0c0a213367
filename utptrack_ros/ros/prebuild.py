"""Install step: export the onnxruntime graphs the parameter presets need, read-only for the node.

    python -m utptrack_ros.ros.prebuild --out <prefix>/share/utptrack_ros/onnx --presets config/*.yaml

Each preset is validated and resolved like the node does at configure (``build_settings``:
``backend: auto`` on the CPU = onnxruntime, keep ratios from ``prune.*``); those that run the
shipped weights on onnxruntime get their graphs built (``runtime.prebuilt.prebuild_graphs``,
once per distinct variant and keep ratios). Presets with a user weights file or on torch need
nothing. CMakeLists.txt runs this at install (``make setup``, ``colcon build``).

    python -m utptrack_ros.ros.prebuild --out <cache>/onnx --node '{"name": "tiny", "weights": "", "seed": 0, "prune": {...}}'

The node's own export (``ros.preparation.export_graphs_in_child``): the model it runs, rebuilt as
configure built it (``load_network``) with its keep ratios, exported by the same code into its
cache, off the node's process; prints the graphs folder.
"""
from __future__ import annotations

import argparse
import json
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


def export_for_node(out: Path, spec: dict) -> Path:
    """The graphs of the node's model (``spec``: name, weights, seed, prune, and the graphs
    ``folder`` the node expects) into ``out``; ``ConfigError`` before any export when the rebuilt
    model is not the node's (another folder name: other weights)."""
    from ..config import PruneConfig, from_mapping
    from ..errors import ConfigError
    from ..models.inference import prepare_for_inference
    from ..runtime.export import DEFAULT_OPSET
    from ..runtime.graph_names import graphs_folder, weights_digest
    from ..runtime.prebuilt import prebuild_graphs
    from .preparation import Progress, load_network

    model = load_network(spec["name"], spec["weights"], int(spec["seed"]), Progress())
    model.set_prune(from_mapping(PruneConfig, spec["prune"]))
    prepared = prepare_for_inference(model)
    folder = graphs_folder(prepared.config, weights_digest(prepared), prepared.prune, DEFAULT_OPSET)
    if folder != spec.get("folder", folder):
        raise ConfigError(f"the rebuilt model's graphs folder is {folder!r}, not the node's {spec['folder']!r} "
                          "(its weights differ)")
    return prebuild_graphs(out, prepared)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m utptrack_ros.ros.prebuild", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the graphs (share/utptrack_ros/onnx)")
    ap.add_argument("--presets", type=Path, nargs="+", help="parameter files (config/*.yaml)")
    ap.add_argument("--node", metavar="JSON", help="the node's model: name, weights, seed, prune (see above)")
    args = ap.parse_args(argv)
    from ..runtime.prebuilt import prebuild_graphs
    from ..tracker import Tracker

    if args.node:
        print(export_for_node(args.out, json.loads(args.node)), flush=True)
        return 0
    if not args.presets:
        ap.error("--presets or --node is required")

    for name, prune in graphs_needed(args.presets):
        start = time.monotonic()
        directory = prebuild_graphs(args.out, Tracker.from_pretrained(name, prune=prune).model)
        ratios = {k: v for k, v in to_mapping(prune).items() if k in ("ce", "dte", "ste")}
        print(f"prebuild: {name} {ratios} -> {directory} ({time.monotonic() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
