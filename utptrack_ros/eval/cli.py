"""``utptrack eval-offline``: run trackers directly on sequence folders or rosbag2 bags.

Wired into ``utptrack_ros/cli.py`` as the ``eval-offline`` verb (``add_arguments`` / ``run``)::

    utptrack eval-offline data/generated/test_* bags/demo --trackers tiny,tiny_base,csrt,kcf,mil \\
        --out results/offline --workers 2 --keep 0.5,0.7 --aux auto,none --force

Sources: a sequence folder (has ``color/``), a rosbag2 bag (directory with ``metadata.yaml``, or
a ``.mcap`` / ``.db3`` file), or a folder of sequence folders (its ``list.txt`` if present,
else every sub-folder with ``color/``). Trackers: registered model variants (``tiny``,
``tiny_base``, ``o256`` ...) and OpenCV peers (``csrt``, ``kcf``, ``mil``). ``--keep``,
``--aux`` and ``--prompt`` take comma lists and sweep every model variant over them (peers run
once: they use RGB only and prune nothing). Prints the summary table; writes the results folder
and report (``eval.offline``, ``eval.report``); sources: ``eval.sources.sequence_sources``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

from ..errors import ConfigError, UTPTrackError
from ..models import list_models
from .offline import run_offline
from .peers import PEER_NAMES
from .report import format_summary_table
from .sources import sequence_sources
from .specs import AUX_CHOICES, CoreTrackerFactory, TrackerSpec, parse_keep_ratio, peer_spec

logger = logging.getLogger(__name__)

HELP = "run trackers directly on folders or bags and write a report"


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _keep_list(text: str) -> list[Optional[float]]:
    out: list[Optional[float]] = []
    for item in _csv(text):
        if item.lower() in ("default", "model"):
            out.append(None)
            continue
        try:
            out.append(parse_keep_ratio(item))
        except ConfigError as err:
            raise argparse.ArgumentTypeError(f"--keep takes ratios in (0, 1] or 'default': {err}") from None
    return out or [None]


def _aux_list(text: str) -> list[str]:
    items = _csv(text) or ["auto"]
    bad = [a for a in items if a not in AUX_CHOICES]
    if bad:
        raise argparse.ArgumentTypeError(f"--aux takes {', '.join(AUX_CHOICES)}, got {', '.join(bad)}")
    return items


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``eval-offline`` arguments on ``parser``."""
    parser.add_argument("sources", nargs="+", type=Path, help="sequence folders, bags, or folders of sequence folders")
    parser.add_argument(
        "--trackers",
        default="tiny,csrt",
        type=_csv,
        help=f"comma list of model variants and OpenCV peers ({', '.join(PEER_NAMES)}); default tiny,csrt",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="results folder (refused if it holds files, unless --force)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="parallel worker processes (spawned, 1 thread each); default 1"
    )
    parser.add_argument(
        "--keep",
        type=_keep_list,
        default=[None],
        help="keep ratio(s) for the pruned variants' CE/DTE/STE layers, e.g. 0.5 or 0.5,0.7,default",
    )
    parser.add_argument(
        "--aux",
        type=_aux_list,
        default=["auto"],
        help="auxiliary input(s) for model variants: auto (the sequence's), none, depth, thermal, event; "
        "a comma list sweeps",
    )
    parser.add_argument(
        "--prompt",
        choices=("off", "on", "both"),
        default="off",
        help="pass the sequence's language prompt to model variants (both = one row each)",
    )
    parser.add_argument(
        "--weights", type=Path, default=None, help="weights file for the model variants (default: shipped)"
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="build model variants with random weights (pipeline check only; rows are marked)",
    )
    parser.add_argument("--device", default="cpu", help="torch device for model variants; default cpu")
    parser.add_argument("--max-frames", type=int, default=None, help="only the first N frames of each sequence")
    parser.add_argument("--force", action="store_true", help="replace an existing results folder (after success only)")
    parser.add_argument("--no-report", action="store_true", help="skip the Markdown/HTML/PNG report")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def tracker_specs(
    names: list[str],
    keeps: list[Optional[float]],
    auxes: list[str],
    prompt: str = "off",
    *,
    weights: Optional[Path] = None,
    random_weights: bool = False,
    device: str = "cpu",
) -> list[TrackerSpec]:
    """The rows of a comparison: every model variant x keep x aux x prompt, plus the peers.

    Row names: ``<variant>[@k<keep>][/<aux>][+prompt]`` (``@k`` only when a keep ratio is set,
    ``/<aux>`` only when it is not ``auto``); peers keep their names.

    Raises:
        ConfigError: an unknown tracker name.
    """
    models = set(list_models())
    prompts = {"off": [False], "on": [True], "both": [False, True]}[prompt]
    specs: list[TrackerSpec] = []
    for name in names:
        if name in PEER_NAMES:
            specs.append(peer_spec(name))
            continue
        if name not in models:
            raise ConfigError(
                f"unknown tracker {name!r}; model variants: {sorted(models)}, OpenCV peers: {list(PEER_NAMES)}"
            )
        variant_keeps = [None] if name.endswith("_base") else keeps
        for keep in dict.fromkeys(variant_keeps):
            for aux in auxes:
                for use_prompt in prompts:
                    label = name + (f"@k{keep:g}" if keep is not None else "") + ("" if aux == "auto" else f"/{aux}")
                    label += "+prompt" if use_prompt else ""
                    factory = CoreTrackerFactory(
                        name,
                        weights=str(weights) if weights else None,
                        keep=keep,
                        device=device,
                        pretrained=not random_weights,
                    )
                    desc = f"UTPTrack {name}" + (f", keep {keep:g}" if keep is not None else "") + f", aux {aux}"
                    desc += ", prompt" if use_prompt else ""
                    desc += " (RANDOM WEIGHTS)" if random_weights else ""
                    specs.append(TrackerSpec(label, factory, aux=aux, use_prompt=use_prompt, description=desc))
    return specs


def run(args: argparse.Namespace) -> int:
    """Run ``eval-offline``; returns the exit code (0 ok, 1 bad input or existing results)."""
    try:
        specs = tracker_specs(
            args.trackers,
            args.keep,
            args.aux,
            args.prompt,
            weights=args.weights,
            random_weights=args.random_weights,
            device=args.device,
        )
        sources = sequence_sources(args.sources)
        results = run_offline(
            specs,
            sources,
            args.out,
            workers=args.workers,
            force=args.force,
            max_frames=args.max_frames,
            progress=not args.no_progress,
            report=not args.no_report,
        )
    except (FileExistsError, UTPTrackError) as err:
        print(f"utptrack eval-offline: error: {err}", file=sys.stderr)
        return 1
    print(format_summary_table(results))
    print(
        f"\nresults: {args.out / 'results.json'}" + ("" if args.no_report else f"\nreport:  {args.out / 'report.html'}")
    )
    return 0


if __name__ == "__main__":  # python -m, same as `utptrack eval-offline`
    from utptrack_ros.cli import main

    sys.exit(main(["eval-offline", *sys.argv[1:]]))
