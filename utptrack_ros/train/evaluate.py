"""Held-out evaluation of a trained model: the acceptance suites and tracker-setting sweeps.

Thin driver over ``eval.offline.run_offline`` (the project's evaluation runner, with its
tracker factory ``eval.specs.CoreTrackerFactory`` over the weights file: OTB/LaSOT
success AUC, precision@20 px, normalised precision@0.2, with OpenCV CSRT/KCF/MIL on the same
sequences). Sequences come from ``data.generate`` with **test-split seeds** (200 000 + index),
which training never uses (it draws train-split seeds 0 .. 99 999 only); each suite uses its own
index range so no seed is reused between suites:

==========  ==========  =====================  ===============================================
suite       indices     challenges             rows
==========  ==========  =====================  ===============================================
rgb         0 .. n-1    random (seed-drawn)    pruned, unpruned, csrt, kcf, mil (RGB input)
dark        300 ..      darkness               pruned with aux none / depth / thermal / event
camouflage  400 ..      camouflage             pruned with aux none / depth / thermal / event
distractor  500 ..      distractors            pruned with and without the language prompt
==========  ==========  =====================  ===============================================

``--sweep-lost`` (and ``--sweep-update``) instead score ``TrackerConfig.lost_threshold`` x
``update_threshold`` values on **val-split** sequences (tuning; test seeds are not touched).

    python -m utptrack_ros.train.evaluate --weights utptrack_ros/weights/tiny.safetensors --out results/accept
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any, Optional

import torch

from ..checkpoint import load_model
from ..data.generator import generate
from ..data.spec import spec_for
from ..eval.offline import run_offline
from ..eval.specs import CoreTrackerFactory, TrackerSpec, peer_spec

SUITES = ("rgb", "dark", "camouflage", "distractor")
SUITE_START = {"rgb": 0, "dark": 300, "camouflage": 400, "distractor": 500}
SUITE_CHALLENGES: dict[str, Optional[dict[str, float]]] = {
    "rgb": None,  # drawn from the seed, like the training mix
    "dark": {"darkness": 1.0},
    "camouflage": {"camouflage": 1.0},
    "distractor": {"distractors": 1.0},
}


def trained_factory(weights: str, variant: str, *, unpruned: bool = False, lost_threshold: Optional[float] = None,
                    update_threshold: Optional[float] = None) -> Any:
    """The evaluation runner's tracker factory (``eval.specs.CoreTrackerFactory``) over a weights file.

    Args:
        weights: weights file.
        variant: the file's model variant (``model.config.name`` of the loaded file); its
            ``TrackerConfig`` defaults are the base of the threshold overrides.
        unpruned: every keep ratio 1.0 (the ``*_base`` view of the same weights).
        lost_threshold / update_threshold: override ``TrackerConfig`` (None = the variant default).
    """
    settings = tuple((k, v) for k, v in (("lost_threshold", lost_threshold), ("update_threshold", update_threshold))
                     if v is not None)
    name = variant.removesuffix("_base") + ("_base" if unpruned else "")
    # a fresh tracker per run (reuse=False), one torch thread: main() sets it for in-process runs,
    # eval.pool for its workers
    return CoreTrackerFactory(name, weights=weights, reuse=False, settings=settings)


def weights_variant(weights: str) -> str:
    """The model variant a weights file holds (its ``model.config.name``)."""
    return load_model(weights).config.name


def suite_sources(suite: str, count: int, length: int, size: tuple[int, int], split: str = "test") -> list[Any]:
    """Picklable openers of the suite's generated sequences."""
    start = SUITE_START[suite] if split == "test" else 0
    sources = []
    for i in range(start, start + count):
        kwargs: dict[str, Any] = {"length": length, "size": size}
        if SUITE_CHALLENGES[suite] is not None:
            kwargs["challenges"] = SUITE_CHALLENGES[suite]
        if suite == "rgb":
            kwargs["modalities"] = ()
        sources.append(functools.partial(generate, spec_for(split, i, **kwargs)))
    return sources


def suite_trackers(suite: str, weights: str, lost_threshold: Optional[float], variant: Optional[str] = None
                   ) -> list[Any]:
    """The rows of ``suite`` (module docstring); ``variant``: the file's (read from it when None)."""
    variant = variant or weights_variant(weights)
    pruned = trained_factory(weights, variant, lost_threshold=lost_threshold)
    if suite == "rgb":
        return [
            TrackerSpec("tiny", pruned, aux="none", description="shipped model, pruned (tiny)"),
            TrackerSpec("tiny_base", trained_factory(weights, variant, unpruned=True, lost_threshold=lost_threshold),
                        aux="none", description="same weights, unpruned (tiny_base)"),
            peer_spec("csrt"),
            peer_spec("kcf"),
            peer_spec("mil"),
        ]
    if suite in ("dark", "camouflage"):
        return [TrackerSpec(f"tiny/{aux}", pruned, aux=aux, description=f"pruned, aux {aux}")
                for aux in ("none", "depth", "thermal", "event")]
    return [
        TrackerSpec("tiny", pruned, aux="none", description="pruned, no prompt"),
        TrackerSpec("tiny+prompt", pruned, aux="none", use_prompt=True, description="pruned, language prompt"),
    ]


def summary(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{row: {auc, precision, norm_precision, fps}}`` from a results dict."""
    out = {}
    for name, r in results["results"].items():
        o = r["overall"]
        lat = r["latency"]
        out[name] = {
            "auc": o["auc"],
            "precision": o["precision"],
            "norm_precision": o["norm_precision"],
            "op50": o.get("op50"),
            "kept_fraction": r.get("kept_fraction_mean"),
            # per-frame call time in an evaluation worker (1 thread, workers sharing the cores):
            # not the speed benchmark (bench/bench_tracker.py)
            "fps": 1000.0 / lat["latency_p50_ms"] if lat.get("latency_p50_ms") else None,
        }
    return out


def run_suite(suite: str, weights: str, out: Path, count: int, length: int, size: tuple[int, int],
              workers: int, lost_threshold: Optional[float], force: bool) -> dict[str, Any]:
    results = run_offline(
        suite_trackers(suite, weights, lost_threshold, weights_variant(weights)),
        suite_sources(suite, count, length, size),
        out / suite,
        workers=workers,
        force=force,
        report=True,
    )
    return summary(results)


def sweep_settings(weights: str, out: Path, lost: list[float], update: list[Optional[float]], count: int,
                   length: int, size: tuple[int, int], workers: int, force: bool) -> dict[str, Any]:
    """Val-split grid over ``lost_threshold`` x ``update_threshold`` (RGB input): half the
    sequences draw the training challenge mix, half have full occlusion + out-of-view (absent
    frames, where holding on LOST matters). Test seeds are not touched."""
    sources = []
    for i in range(count):
        kwargs: dict[str, Any] = {"length": length, "size": size, "modalities": ()}
        if i % 2:
            kwargs["challenges"] = {"full_occlusion": 1.0, "out_of_view": 0.7}
        sources.append(functools.partial(generate, spec_for("val", 500 + i, **kwargs)))
    variant = weights_variant(weights)
    specs = []
    for t in lost:
        for u in update:
            name = f"lost{t:g}" + (f"_upd{u:g}" if u is not None else "")
            specs.append(TrackerSpec(name, trained_factory(weights, variant, lost_threshold=t, update_threshold=u),
                                     aux="none"))
    results = run_offline(specs, sources, out / "sweep", workers=workers, force=force, report=False)
    return summary(results)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--suites", nargs="*", default=list(SUITES), choices=SUITES)
    parser.add_argument("--count", type=int, default=30, help="sequences per suite")
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lost-threshold", type=float, default=None)
    parser.add_argument("--sweep-lost", type=str, default=None,
                        help="comma list of lost thresholds to score on val-split sequences (instead of the suites)")
    parser.add_argument("--sweep-update", type=str, default=None,
                        help="comma list of update thresholds crossed with --sweep-lost")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # per-frame times comparable with the 1-thread pool workers
    width, height = (int(v) for v in args.size.lower().split("x"))
    size = (width, height)
    weights = str(args.weights.resolve())
    table: dict[str, Any] = {}
    if args.sweep_lost:
        lost = [float(t) for t in args.sweep_lost.split(",")]
        update: list[Optional[float]] = [float(t) for t in args.sweep_update.split(",")] if args.sweep_update else [None]
        table["sweep"] = sweep_settings(weights, args.out, lost, update, args.count, args.length, size,
                                        args.workers, args.force)
    else:
        for suite in args.suites:
            table[suite] = run_suite(suite, weights, args.out, args.count, args.length, size, args.workers,
                                     args.lost_threshold, args.force)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "sweep.json" if args.sweep_lost else "summary.json"
    (args.out / name).write_text(json.dumps(table, indent=1))
    for suite, rows in table.items():
        print(f"\n== {suite}")
        print("row                  |   AUC |  P@20 | NP@0.2 | kept  | fps (1 thread, eval worker)")
        for row, m in rows.items():
            kept = m["kept_fraction"]
            fps = m["fps"]
            print(f"{row:<20} | {m['auc']:5.1f} | {m['precision']:5.1f} | {m['norm_precision']:6.1f} | "
                  f"{kept if kept is None else round(kept, 3)!s:<5} | {fps if fps is None else round(fps, 1)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
