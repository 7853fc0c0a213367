"""``utptrack demo`` (``make demo``): the main job in one command.

1. Creates, or reuses from ``artifacts/demo/bags/``, a small multimodal test set: generated test
   sequences (``data.generate(spec_for("test", i, ...))``) written as rosbag2 (mcap, zstd per
   message), one RGB-D, one RGB-T and one RGB-E bag, each with its language prompt and ground truth.
2. Replays them through the real node (``utptrack_node``, shipped ``tiny`` model, CPU) over DDS
   in lock-step (``replay.evaluate``): ``/clock`` from the bag, ``~/init_target`` on the first
   annotated frame, ``~/target`` and ``/diagnostics`` recorded.
3. Runs the comparison rows on the same frames (the same model offline, pruned and unpruned;
   OpenCV CSRT/KCF/MIL),
   prints a summary table and writes the report to ``artifacts/demo/report/``.

Bags are regenerated only when their recipe (this module's ``DEMO_SPEC`` and the generator
version) changes; ``--regenerate`` forces it.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Optional, TypedDict

from .data import GENERATOR_VERSION, generate, spec_for, write_bag
from .errors import CheckpointError, ConfigError, InputError, UTPTrackError
from .eval.report import format_replay_table, format_summary_table
from . import models  # models.shipped_weights read at call time (tests replace it)
from .types import Modality

HELP = "the main job: bundled multimodal bags -> node -> evaluation report"
MODALITIES = ("depth", "thermal", "event")


class DemoSpec(TypedDict):
    """The recipe of the demo bags before the command line's count, length and size."""

    split: str
    first_index: int
    count: int
    length: int
    size: list[int]  # width, height
    compression: str
    storage: str


DEMO_SPEC: DemoSpec = {"split": "test", "first_index": 0, "count": 3, "length": 60, "size": [640, 480],
                       "compression": "message", "storage": "mcap"}
# the headline columns of the report's summary table
SUMMARY_KEYS = ("tracker", "auc", "precision", "norm_precision", "ao", "fps", "latency_mean_ms", "latency_p95_ms",
                "kept_tokens_pct", "missed_frames")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``demo`` arguments on ``parser``."""
    parser.add_argument("--workdir", type=Path, default=Path("artifacts/demo"),
                        help="bags under <workdir>/bags, the report under <workdir>/report (default artifacts/demo)")
    parser.add_argument("--sequences", type=int, default=DEMO_SPEC["count"],
                        help=f"number of test sequences (default {DEMO_SPEC['count']}; the aux stream cycles "
                             "depth, thermal, event)")
    parser.add_argument("--length", type=int, default=DEMO_SPEC["length"], help="frames per sequence")
    parser.add_argument("--size", default="x".join(map(str, DEMO_SPEC["size"])), help="WxH (default 640x480)")
    parser.add_argument("--weights", default=None,
                        help="weights file instead of the shipped tiny model; 'random' = random weights (plumbing)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the node and the offline rows (default 1: on a 2-core machine the "
                             "player, the node and other jobs share the cores; 2 threads oversubscribe them)")
    parser.add_argument("--compare", default="pruned,unpruned,csrt,kcf,mil",
                        help="comparison rows run offline on the same frames: pruned, unpruned, csrt, kcf, mil or none "
                             "(default: all)")
    parser.add_argument("--regenerate", action="store_true", help="write the bags again even if cached")
    parser.add_argument("--domain-id", type=int, default=None,
                        help="ROS_DOMAIN_ID for node and player (default: a private one, localhost discovery only)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size takes WxH, e.g. 640x480, got {text!r}") from None
    return w, h


def demo_recipe(count: int, length: int, size: tuple[int, int]) -> dict[str, Any]:
    recipe = dict(DEMO_SPEC, count=count, length=length, size=list(size), generator_version=GENERATOR_VERSION)
    recipe["modalities"] = [MODALITIES[i % len(MODALITIES)] for i in range(count)]
    return recipe


def ensure_bags(folder: Path, recipe: Mapping[str, Any], *, regenerate: bool = False,
                progress: bool = True) -> list[Path]:
    """The demo bags in ``folder`` (``<name>/`` rosbag2 + ``recipe.json``), written if missing or
    made from another recipe. Written to a temporary sibling and moved into place."""
    from tqdm import tqdm

    stamp = folder / "recipe.json"
    if not regenerate and stamp.is_file():
        try:
            cached = json.loads(stamp.read_text())
        except (OSError, ValueError):
            cached = None
        if cached and cached.get("recipe") == dict(recipe):
            bags = [folder / name for name in cached.get("bags", [])]
            if bags and all((b / "metadata.yaml").is_file() for b in bags):
                return bags
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        names = []
        for i in tqdm(range(int(recipe["count"])), desc="demo bags", unit="bag", disable=not progress):
            spec = spec_for(recipe["split"], int(recipe["first_index"]) + i, length=int(recipe["length"]),
                            size=tuple(recipe["size"]), modalities=(Modality(recipe["modalities"][i]),))
            seq = generate(spec)
            write_bag(seq, tmp / seq.name, storage=recipe["storage"], compression=recipe["compression"])
            names.append(seq.name)
        (tmp / "recipe.json").write_text(json.dumps({"recipe": dict(recipe), "bags": names}, indent=1))
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [folder / name for name in names]


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit code."""
    # The replay drives a node over ROS: imported here so the rest of the demo (and the core) import
    # without rclpy (test/test_core_imports.py proves it).
    from .replay import NodeOptions, ReplayOptions, evaluate, open_bag, parse_compare, random_weights_file  # noqa: PLC0415

    t0 = time.time()
    progress = not args.no_progress
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:  # quiet unless `utptrack -v demo`
        logging.getLogger("utptrack_ros").setLevel(logging.WARNING)
    try:
        compare = parse_compare(args.compare)
        recipe = demo_recipe(args.sequences, args.length, _size(args.size))
        with tempfile.TemporaryDirectory(prefix="utptrack-demo-") as tmp:
            note = ""
            if args.weights == "random":
                weights: Optional[Path] = random_weights_file("tiny", Path(tmp))
                note = " (RANDOM WEIGHTS)"
            elif args.weights:
                weights = Path(args.weights).expanduser()
                if not weights.is_file():
                    raise InputError(f"--weights: no such file {weights}")
            else:
                weights = None
                if models.shipped_weights("tiny") is None:
                    raise CheckpointError("the shipped model utptrack_ros/weights/tiny.safetensors is missing; "
                                          "pass --weights PATH (or --weights random for a plumbing run)")
            print(f"[1/3] demo bags in {args.workdir / 'bags'} ({recipe['count']} x {recipe['length']} frames, "
                  f"{recipe['size'][0]}x{recipe['size'][1]}, aux {', '.join(recipe['modalities'])})", flush=True)
            paths = ensure_bags(args.workdir / "bags", recipe, regenerate=args.regenerate, progress=progress)
            bags = [open_bag(p) for p in paths]
            print(f"[2/3] replaying through utptrack_node (tiny, lock-step, /clock, ~/init_target) "
                  f"+ comparisons: {', '.join(compare) or 'none'}", flush=True)
            node = NodeOptions(model="tiny", weights=weights, num_threads=args.threads, domain_id=args.domain_id,
                               log_dir=args.workdir / "logs")
            report_dir = args.workdir / "report"
            results = evaluate(bags, report_dir, options=ReplayOptions(mode="lockstep"), node=node,
                               compare=compare, force=True, progress=progress, note=note)
    except (UTPTrackError, FileExistsError) as err:
        print(f"utptrack demo: error: {err}", file=sys.stderr)
        return 1
    print(f"[3/3] done in {time.time() - t0:.0f} s\n")
    print(format_summary_table(results, SUMMARY_KEYS))
    print()
    print(format_replay_table(results))
    print("\nScores in %: AUC (OTB success, IoU > t, 21 thresholds), P@20px, NP@0.2, AO (GOT-10k); FPS = 1000 / mean "
          "latency (node rows: publish -> ~/target through DDS); Missed = frames without an answer.")
    print(f"report:  {report_dir / 'report.html'}  (and report.md, report.json, plots/)")
    print(f"results: {report_dir / 'results.json'}")
    return 0


if __name__ == "__main__":  # python -m, same as `utptrack demo`
    from utptrack_ros.cli import main

    sys.exit(main(["demo", *sys.argv[1:]]))
