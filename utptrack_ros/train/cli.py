"""``utptrack train``: train the small unified model on generated sequences (docs/training.md).

Examples::

    utptrack train --out runs/onestage                           # the shipped model's recipe (tiny_onestage)
    utptrack train --out runs/onestage                           # again: resumes from last.pt
    utptrack train --out runs/probe --set optim.steps=300 --set data.val_sequences=4
    utptrack train --recipe tiny --out runs/tiny                 # an archived recipe (recipes/archive/)
    torchrun --nproc_per_node 4 -m utptrack_ros.cli train --out runs/ddp --device cuda
"""
from __future__ import annotations

import os

# Read by libgomp when torch loads it, so it must be set before torch is imported: idle OpenMP
# workers sleep instead of spinning. On the shared 2-core machine this took a training step
# (batch 16) from 2-12 s to ~1.0 s while another process used the cores (docs/training.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

from ..config import to_mapping
from .datasets import GeneratedSequences
from .loop import train
from .recipe import DEFAULT_RECIPE, archived_recipes, load_recipe, named_recipes, parse_override  # noqa: E402

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recipe", default=DEFAULT_RECIPE,
        help=f"recipe YAML file or name (default {DEFAULT_RECIPE}: the shipped model's; {', '.join(named_recipes())}; "
             f"archived: {', '.join(archived_recipes())})",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (resumed if it holds last.pt)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a recipe field, e.g. optim.steps=300 (repeatable; the value is YAML)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (torchrun: one GPU per rank)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads of the training process (default 2; with data.stem_in_loader: 1 where "
                             "it takes effect (CPU, num_workers >= 1: its loader worker takes the other core), "
                             "else torch's default)")
    parser.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    parser.add_argument("--max-steps", type=int, default=None, help="stop early at this step (schedules keep the recipe's length)")
    parser.add_argument("--no-val", action="store_true", help="skip validation on val-split sequences")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    parser.add_argument("--export", type=Path, default=None, help="copy the best (else final) weights here at the end")
    parser.add_argument("--print-recipe", action="store_true", help="print the resolved recipe as JSON and exit")


def run(args: argparse.Namespace) -> int:
    overrides = dict(parse_override(o) for o in args.overrides)
    recipe = load_recipe(args.recipe, **overrides)
    if args.print_recipe:
        print(json.dumps(to_mapping(recipe), indent=1))
        return 0
    d = recipe.data
    aux = tuple((k, float(v)) for k, v in recipe.sampling.modality_probs.items() if k != "rgb")
    image_size = (d.image_size[0], d.image_size[1])
    train_seqs = GeneratedSequences("train", d.sequence_length, image_size, d.challenge_probability, aux,
                                    first_index=d.first_sequence)
    val_seqs = None
    if not args.no_val:
        val_seqs = GeneratedSequences("val", d.val_length, image_size, d.challenge_probability, (), cache=False)
    summary = train(
        recipe,
        args.out,
        train_seqs,
        val_seqs,
        device=args.device,
        threads=args.threads or (None if recipe.data.stem_in_loader else 2),  # None: train() picks 1 or torch's default
        resume=not args.no_resume,
        progress=not args.no_progress,
        max_steps=args.max_steps,
    )
    print(json.dumps(summary, indent=1, default=str))
    if args.export is not None:
        src = args.out / "best.safetensors"
        if not src.is_file():
            src = args.out / "final.safetensors"
        args.export.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, args.export)
        print(f"exported {src} -> {args.export}")
    return 0
