"""``utptrack eval``: replay rosbags through the live tracker node over DDS and evaluate.

Wired into ``utptrack_ros/cli.py`` as the ``eval`` verb (``add_arguments`` / ``run``)::

    utptrack eval bags/seq_a bags/seq_b.mcap --out results/replay              # lock-step, shipped tiny
    utptrack eval bag/ --gt-file bag_gt.txt --mode realtime --record results/outputs --out results/rt
    utptrack eval bag/ --mode rate --rate 0.5 --modality thermal --keep 0.5 --out results/k05
    utptrack eval bags/* data/generated/test --mode offline --workers 2 --out results/offline

Live modes (``lockstep``, ``realtime``, ``rate``) start the ``utptrack_node`` entry point, publish
``/clock`` and the recorded messages, initialise through ``~/init_target`` on the first annotated
frame, record ``~/target`` and ``/diagnostics`` and score them (``replay``). ``--mode offline``
runs the same rows without ROS, directly on the decoded frames, in parallel worker processes
(``eval.offline.run_offline``); for larger sweeps over keep ratios, aux inputs and prompts use
``utptrack eval-offline``. Both write the same results folder and report.
"""
from __future__ import annotations

import argparse
import functools
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

from ..data import BagTopics
from ..errors import ConfigError, InputError, UTPTrackError
from ..eval.offline import run_offline
from ..eval.report import format_replay_table, format_summary_table
from ..eval.results import check_out_dir
from ..eval.sources import SequenceSource, is_bag, sequence_sources
from ..eval.specs import parse_keep_ratio
from .bags import open_bag
from .evaluation import comparison_specs, evaluate
from .options import COMPARE_CHOICES, MODES, NodeOptions, ReplayOptions, parse_compare, random_weights_file

HELP = "replay rosbags through the live node over DDS and evaluate (or --mode offline)"
_TOPIC_KEYS = ("color", "depth", "thermal", "event", "prompt", "groundtruth")
_REPLAY = ReplayOptions()  # the defaults the arguments show and take
_NODE = NodeOptions()


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _topics(text: str) -> dict[str, str]:
    out = {}
    for item in _csv(text):
        key, sep, value = item.partition("=")
        if not sep or key not in _TOPIC_KEYS or not value.startswith("/"):
            raise argparse.ArgumentTypeError(
                f"--topics takes key=/topic pairs with keys {', '.join(_TOPIC_KEYS)}, got {item!r}")
        out[key] = value
    return out


def _compare(text: str) -> list[str]:
    try:
        return parse_compare(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(f"--compare: {err}") from None


def _keep(text: str) -> float:
    try:
        return parse_keep_ratio(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(f"--keep: {err}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``eval`` arguments on ``parser`` (defaults: ``ReplayOptions`` / ``NodeOptions``)."""
    parser.add_argument("bags", nargs="+", type=Path,
                        help="rosbag2 bags (folder with metadata.yaml, or .mcap / .db3); --mode offline also takes "
                             "sequence folders")
    parser.add_argument("--out", required=True, type=Path,
                        help="results folder (refused if it holds files, unless --force)")
    g = parser.add_argument_group("replay")
    g.add_argument("--mode", choices=MODES + ("offline",), default=_REPLAY.mode,
                   help="lockstep (next frame after the node's answer; default), realtime (recorded timing), rate "
                        "(recorded timing / --rate), offline (no ROS: the rows run directly on the frames)")
    g.add_argument("--rate", type=float, default=None, help="playback speed factor for --mode rate (e.g. 0.5, 2)")
    g.add_argument("--frame-timeout", type=float, default=_REPLAY.frame_timeout_s,
                   help="lock-step: seconds to wait for an answer before the frame counts as missed "
                        f"(default {_REPLAY.frame_timeout_s:g})")
    g.add_argument("--drain-timeout", type=float, default=_REPLAY.drain_timeout_s,
                   help=f"realtime/rate: seconds to wait for answers after the last frame (default "
                        f"{_REPLAY.drain_timeout_s:g})")
    g.add_argument("--record", type=Path, default=None,
                   help="write the node's ~/target and /diagnostics per bag as new bags under this folder")
    g.add_argument("--domain-id", type=int, default=_NODE.domain_id,
                   help="ROS_DOMAIN_ID for node and player (default: a private one, localhost discovery only)")
    t = parser.add_argument_group("inputs")
    t.add_argument("--topics", type=_topics, default={},
                   help="topic names, e.g. color=/cam/image,depth=/cam/depth,prompt=/prompt (defaults: the "
                        "project's bag layout, docs/architecture.md)")
    t.add_argument("--gt-topic", default=None,
                   help="ground-truth topic (geometry_msgs/PolygonStamped; default /groundtruth)")
    t.add_argument("--gt-file", type=Path, action="append", default=None,
                   help="ground truth as a text file (x,y,w,h per colour frame, NaN = absent) instead of the topic; "
                        "give one per bag, in bag order")
    t.add_argument("--modality", choices=("auto", "rgb", "depth", "thermal", "event"), default=_REPLAY.modality,
                   help="aux stream fed to the node: auto = the bag's first of depth/thermal/event (default)")
    t.add_argument("--prompt", choices=("auto", "on", "off"), default=_REPLAY.prompt,
                   help="play the bag's prompt topic and pass the prompt to the init (auto = when the bag has one)")
    m = parser.add_argument_group("node and model")
    m.add_argument("--model", default=_NODE.model, help=f"model variant (model.name; default {_NODE.model})")
    m.add_argument("--weights", default=None,
                   help="weights file (default: the shipped weights); 'random' = seeded random weights (plumbing only)")
    m.add_argument("--device", default=_NODE.device, help=f"model.device (default {_NODE.device})")
    m.add_argument("--threads", type=int, default=_NODE.num_threads,
                   help="torch threads of the node and the offline rows (0 = torch default)")
    m.add_argument("--keep", type=_keep, default=_NODE.keep, help="one keep ratio for CE/DTE/STE (default: the model's)")
    m.add_argument("--params-file", type=Path, default=_NODE.params_file,
                   help="your node parameter preset (e.g. config/rgbd.yaml); the replay's settings override it")
    m.add_argument("--node-name", default=_NODE.node_name, help=f"node name (default {_NODE.node_name})")
    r = parser.add_argument_group("report")
    r.add_argument("--compare", type=_compare, default=list(COMPARE_CHOICES),
                   help="comparison rows run offline on the same frames: pruned, unpruned, csrt, kcf, mil or none "
                        "(default: all)")
    r.add_argument("--workers", type=int, default=1, help="--mode offline: parallel worker processes (default 1)")
    r.add_argument("--force", action="store_true",
                   help="replace existing --out / --record contents (after success only)")
    r.add_argument("--no-report", action="store_true", help="skip the Markdown/HTML/PNG report")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")


def replay_options(args: argparse.Namespace) -> ReplayOptions:
    """``ReplayOptions`` of the parsed arguments (``--mode offline`` keeps the default mode).

    Raises:
        ConfigError: ``--rate`` without ``--mode rate``, or a value ``ReplayOptions`` refuses.
    """
    mode = args.mode if args.mode != "offline" else _REPLAY.mode
    rate = args.rate if args.rate is not None else _REPLAY.rate
    if args.rate is not None and mode != "rate":
        raise ConfigError("--rate needs --mode rate")
    return ReplayOptions(mode=mode, rate=rate, frame_timeout_s=args.frame_timeout,
                         drain_timeout_s=args.drain_timeout, prompt=args.prompt, modality=args.modality)


def bag_topics(args: argparse.Namespace) -> BagTopics:
    mapping: dict[str, Optional[str]] = dict(args.topics)
    if args.gt_topic:
        mapping["groundtruth"] = args.gt_topic
    return BagTopics.from_mapping(mapping)


def _gt_files(args: argparse.Namespace) -> list[Optional[Path]]:
    if not args.gt_file:
        return [None] * len(args.bags)
    if len(args.gt_file) != len(args.bags):
        raise ConfigError(f"--gt-file given {len(args.gt_file)} times for {len(args.bags)} bags; give one per bag")
    return list(args.gt_file)


def open_sequence(path: Path, topics: BagTopics, modality: str, prompt: str, gt_file: Optional[Path]) -> Any:
    """The checked sequence of a bag (picklable through ``functools.partial`` for offline workers)."""
    return open_bag(path, topics=topics, modality=modality, prompt=prompt, gt_file=gt_file).sequence


def _run_offline_mode(args: argparse.Namespace, node: NodeOptions, random_note: str) -> dict[str, Any]:
    topics = bag_topics(args)
    sources: list[SequenceSource] = []
    for path, gt in zip(args.bags, _gt_files(args)):
        if is_bag(path):
            open_bag(path, topics=topics, modality=args.modality, prompt=args.prompt, gt_file=gt)  # check first
            sources.append(functools.partial(open_sequence, path, topics, args.modality, args.prompt, gt))
        else:
            if gt is not None:
                raise ConfigError(f"{path}: --gt-file applies to bags; a sequence folder has its groundtruth.txt")
            sources.extend(sequence_sources([path]))
    rows = ["pruned"] + [c for c in args.compare if c != "pruned"]  # the model itself is always a row
    specs = comparison_specs(rows, node, use_prompt=args.prompt != "off", note=random_note)
    return run_offline(specs, sources, args.out, workers=args.workers, force=args.force,
                       progress=not args.no_progress, report=not args.no_report)


def run(args: argparse.Namespace) -> int:
    """Run ``eval``; returns the exit code (0 ok, 1 bad input, existing results or a failed replay)."""
    try:
        options = replay_options(args)
        with tempfile.TemporaryDirectory(prefix="utptrack-eval-") as tmp:
            weights: Optional[Path] = None
            note = ""
            if args.weights == "random":
                weights = random_weights_file(args.model, Path(tmp))
                note = " (RANDOM WEIGHTS)"
            elif args.weights:
                weights = Path(args.weights).expanduser()
                if not weights.is_file():
                    raise InputError(f"--weights: no such file {weights}")
            node = NodeOptions(model=args.model, weights=weights, device=args.device, num_threads=args.threads,
                               keep=args.keep, params_file=args.params_file, node_name=args.node_name,
                               domain_id=args.domain_id)
            if args.mode == "offline":
                results = _run_offline_mode(args, node, note)
            else:
                not_bags = [str(p) for p in args.bags if not is_bag(p) and p.is_dir()]
                if not_bags:
                    raise InputError(f"not rosbag2 bags (no metadata.yaml): {', '.join(not_bags)}; the live replay "
                                     "plays bags (--mode offline also runs on sequence folders)")
                check_out_dir(args.out, args.force, "results")
                check_out_dir(args.record, args.force, "recorded bags")
                topics = bag_topics(args)
                bags = [open_bag(p, topics=topics, modality=args.modality, prompt=args.prompt, gt_file=gt)
                        for p, gt in zip(args.bags, _gt_files(args))]
                results = evaluate(bags, args.out, options=options, node=node, compare=args.compare,
                                   record_dir=args.record, force=args.force, report=not args.no_report,
                                   progress=not args.no_progress, note=note)
    except (UTPTrackError, FileExistsError) as err:
        print(f"utptrack eval: error: {err}", file=sys.stderr)
        return 1
    print(format_summary_table(results))
    if args.mode != "offline":
        print()
        print(format_replay_table(results))
    print(f"\nresults: {args.out / 'results.json'}")
    if not args.no_report:
        print(f"report:  {args.out / 'report.html'}")
    if args.record:
        print(f"outputs: {args.record}/<sequence>/ (rosbag2, mcap)")
    return 0


if __name__ == "__main__":  # python -m, same as `utptrack eval`
    from utptrack_ros.cli import main

    sys.exit(main(["eval", *sys.argv[1:]]))
