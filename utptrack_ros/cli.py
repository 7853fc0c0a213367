"""``utptrack <verb>``: one entry point; each verb lives in its own module.

A verb module exposes ``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported
only when their verb runs, so ``utptrack profile`` never imports rclpy and ``utptrack eval``
only imports the ROS layer when it needs the live node.
"""
from __future__ import annotations

import os

# Read by libgomp when torch loads it (every verb imports torch after this): idle OpenMP workers
# sleep instead of spinning, which on a shared 2-core machine took a training step from 2-12 s to
# ~1 s next to another process (docs/training.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import importlib  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from typing import Optional, Sequence  # noqa: E402

from .errors import UTPTrackError  # noqa: E402

# verb -> (module, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "profile": ("utptrack_ros.profiling", "token and MAC ledger, pruned vs unpruned, with measured latency"),
    "generate": ("utptrack_ros.data.cli", "generate synthetic multimodal tracking sequences (folders / rosbags)"),
    "eval-offline": ("utptrack_ros.eval.cli", "run trackers directly on folders or bags and write a report"),
    "eval": ("utptrack_ros.replay.cli", "replay rosbags through the live node over DDS and evaluate"),
    "demo": ("utptrack_ros.demo", "the main job: bundled multimodal bag -> node -> evaluation report"),
    "train": ("utptrack_ros.train.cli", "train the small unified model on generated sequences"),
    "export": ("utptrack_ros.runtime.cli", "export a model to static-shape ONNX"),
    "convert": ("utptrack_ros.convert", "official training checkpoint -> weights + model config (safetensors)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="utptrack", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, (_, help_text) in VERBS.items():
        sub.add_parser(verb, help=help_text, add_help=False)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
    args, rest = top.parse_known_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.verb is None:
        top.print_help()
        return 2
    module_name, help_text = VERBS[args.verb]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        print(f"utptrack {args.verb}: not available ({err})", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"utptrack {args.verb}", description=help_text)
    module.add_arguments(parser)
    verb_args = parser.parse_args(rest)
    try:
        return int(module.run(verb_args) or 0)
    except UTPTrackError as err:
        print(f"utptrack {args.verb}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
