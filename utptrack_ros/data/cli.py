"""``utptrack generate``: write generated sequences as folders (and optionally rosbag2 bags).

Wired into ``utptrack_ros/cli.py`` as::

    from .data import cli as data_cli
    data_cli.add_arguments(subparsers.add_parser("generate", help=data_cli.HELP))
    ... args.func = data_cli.run  (returns an exit code)

Output layout: ``<out>/<name>/`` per sequence (folder layout), ``<out>/list.txt`` (one name per
line), and with ``--bags``: ``<out>/bags/<storage>/<name>/`` rosbag2 directories.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

from ..types import Modality
from .bag import write_bag
from .errors import SequenceError
from .folder import write_folder
from .generator import generate
from .sources import load_library
from .spec import SPLITS, Challenge, ChallengeSpec, SequenceSpec, random_challenges, spec_for

HELP = "generate synthetic multimodal tracking sequences (folders and/or rosbag2 bags)"


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x480, got {text!r}") from None
    return w, h


def parse_challenges(text: str) -> Optional[ChallengeSpec]:
    """``random`` -> None (drawn from each seed); ``none`` -> {}; ``a,b=0.5`` -> {a: 1.0, b: 0.5}."""
    text = text.strip().lower()
    if text == "random":
        return None
    if text in ("none", ""):
        return {}
    out: dict[Challenge, float] = {}
    for item in text.split(","):
        name, _, strength = item.strip().partition("=")
        try:
            out[Challenge.parse(name)] = float(strength) if strength else 1.0
        except (SequenceError, ValueError) as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return out


def parse_modalities(text: str) -> tuple[Modality, ...]:
    if text.strip().lower() in ("", "none", "rgb"):
        return ()
    try:
        return tuple(Modality(m.strip()) for m in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"modalities: comma list of depth, thermal, event; got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", choices=sorted(SPLITS), default="test",
                        help="seed range: train 0.., val 100000.., test 200000.. (default test)")
    parser.add_argument("--start", type=int, default=0, help="first sequence index within the split")
    parser.add_argument("--count", type=int, default=10, help="number of sequences (default 10)")
    parser.add_argument("--seeds", type=str, default=None,
                        help="explicit comma-separated seeds (overrides --split/--start/--count)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--length", type=int, default=100, help="frames per sequence (default 100)")
    parser.add_argument("--size", type=parse_size, default=(320, 240), help="WxH (default 320x240)")
    parser.add_argument("--challenges", type=parse_challenges, default=None,
                        help="'random' (default: drawn per seed), 'none', or e.g. 'darkness,distractors=0.6' "
                             f"from: {', '.join(c.value for c in Challenge)}")
    parser.add_argument("--modalities", type=parse_modalities, default=(Modality.DEPTH, Modality.THERMAL,
                                                                         Modality.EVENT),
                        help="aux modalities: comma list of depth,thermal,event or 'none' (default all)")
    parser.add_argument("--bags", choices=("none", "mcap", "sqlite3", "both"), default="none",
                        help="also write rosbag2 bags under <out>/bags/<storage>/ (default none)")
    parser.add_argument("--bag-compression", choices=("none", "message", "storage"), default="none",
                        help="zstd per message, or mcap chunk compression ('storage', mcap only); ~2x smaller")
    parser.add_argument("--no-folders", action="store_true", help="write only bags")
    parser.add_argument("--overwrite", action="store_true", help="replace existing sequences of the same name")


def specs_from_args(args: argparse.Namespace) -> list[SequenceSpec]:
    common = {"length": args.length, "size": args.size, "modalities": args.modalities}
    if args.seeds:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        return [SequenceSpec(seed=s, challenges=random_challenges(s) if args.challenges is None else args.challenges,
                             **common) for s in seeds]
    return [spec_for(args.split, args.start + i, challenges=args.challenges, **common) for i in range(args.count)]


def run(args: argparse.Namespace) -> int:
    """Generate and write; prints one line per sequence. Returns 0, or 2 on bad input."""
    storages = {"none": (), "mcap": ("mcap",), "sqlite3": ("sqlite3",), "both": ("mcap", "sqlite3")}[args.bags]
    if args.no_folders and not storages:
        print("error: --no-folders needs --bags", file=sys.stderr)
        return 2
    try:
        specs = specs_from_args(args)
    except (SequenceError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    library = load_library()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    names, frames, started = [], 0, time.perf_counter()
    for spec in specs:
        t0 = time.perf_counter()
        seq = generate(spec, library)
        try:
            if not args.no_folders:
                write_folder(seq, out, overwrite=args.overwrite)
            for storage in storages:
                (out / "bags" / storage).mkdir(parents=True, exist_ok=True)
                compression = args.bag_compression
                if compression == "storage" and storage != "mcap":
                    compression = "message"
                write_bag(seq, out / "bags" / storage / seq.name, storage, compression=compression,
                          overwrite=args.overwrite)
        except SequenceError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        names.append(seq.name)
        frames += seq.length
        challenges = ",".join(seq.attributes["challenges"]) or "-"
        print(f"{seq.name}: {seq.length} frames, absent {int(seq.absent.sum())}, challenges {challenges}, "
              f"prompt {seq.prompt!r} ({time.perf_counter() - t0:.1f} s)")
    list_file = out / "list.txt"
    existing = list_file.read_text().split() if list_file.exists() else []
    list_file.write_text("".join(f"{n}\n" for n in dict.fromkeys(existing + names)))
    elapsed = time.perf_counter() - started
    print(f"{len(names)} sequences, {frames} frames in {elapsed:.1f} s ({frames / max(elapsed, 1e-9):.0f} frames/s) "
          f"-> {out}")
    return 0


if __name__ == "__main__":  # python -m, same as `utptrack generate`
    from utptrack_ros.cli import main

    sys.exit(main(["generate", *sys.argv[1:]]))
