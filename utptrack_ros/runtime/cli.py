"""``utptrack export``: write static-shape ONNX graphs of a variant and check them against torch.

See :mod:`utptrack_ros.runtime.export` for the graphs and method.md 11 for the deployment notes.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``utptrack export``."""
    parser.add_argument("--config", "--model", dest="model", default=None,
                        help="registered variant (default: from --weights, else tiny)")
    parser.add_argument("--weights", type=Path, default=None, help="weights file (official .pth.tar or safetensors)")
    parser.add_argument("--out", type=Path, required=True, help="output directory for the .onnx files")
    parser.add_argument("--opset", type=int, default=17, choices=(17, 18))
    parser.add_argument("--keep", type=float, default=None, help="bake one keep ratio for CE, DTE and STE")
    parser.add_argument("--ostrack-shaped", action="store_true",
                        help="also write ostrack.onnx (template, search -> output1..3; the cv2.TrackerVit contract)")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime vs torch parity check")


def run(args: argparse.Namespace) -> int:
    """Execute ``utptrack export``; prints the files written and the parity check."""
    from ..checkpoint import load_model
    from ..models import create_model
    from .export import export_onnx, export_ostrack_shaped

    if args.weights is not None:
        model = load_model(args.weights, name=args.model)
    else:
        model = create_model(args.model or "tiny").eval()
    prune = model.prune.with_keep_ratio(args.keep, args.keep, args.keep) if args.keep is not None else None
    exported = export_onnx(model, args.out, opset=args.opset, prune=prune)
    for path in (exported.templates, exported.search, exported.search_prompt):
        if path is not None:
            print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if args.ostrack_shaped:
        path = export_ostrack_shaped(model, args.out / "ostrack.onnx", opset=args.opset)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if not args.no_check:
        from ..models.examples import example_inputs
        from .backends import OrtBackend, TorchBackend

        if prune is not None:
            model.set_prune(prune)
        x = example_inputs(model.config, seed=1)
        ours, ref = OrtBackend(args.out), TorchBackend(model)
        inputs = (x.static.numpy(), x.dynamic.numpy(), x.static_box.numpy(), x.dynamic_box.numpy())
        t_ort, t_ref = ours.embed_templates(*inputs), ref.embed_templates(*inputs)
        a, b = ours.forward_search(x.search.numpy(), t_ort), ref.forward_search(x.search.numpy(), t_ref)
        worst = max(float(np.abs(getattr(a, k) - getattr(b, k)).max()) for k in ("score_map", "size_map", "offset_map"))
        same_mask = bool(np.array_equal(a.search_keep_mask, b.search_keep_mask))
        print(f"onnxruntime vs torch: max |diff| of the maps {worst:.2e}, kept-token masks equal: {same_mask}")
        if not same_mask or worst > 1e-4:
            return 1
    return 0


if __name__ == "__main__":  # python -m, same as `utptrack export`
    from utptrack_ros.cli import main

    sys.exit(main(["export", *sys.argv[1:]]))
