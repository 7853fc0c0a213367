"""Tracker frames/s with the shipped model at batch 1 on the CPU: RGB and each modality.

For each input kind (RGB, RGB-D, RGB-T, RGB-E, RGB + language prompt) it runs the real
``Tracker`` (``Tracker.from_pretrained("tiny")``: pruned, and ``"tiny_base"``: the same weights
unpruned) over a pre-rendered test-split sequence (frames held in memory, so only the tracker is
timed: aux conversion, crops, network, decoding, template updates) and reports frames/s from the
median per-frame time of ``track()`` (plus mean and 90th-percentile fps), the pruned/unpruned
speed ratio, and whether the target (>= 30 frames/s pruned) is met. Pruned and unpruned runs are
interleaved round by round so both see the same machine load; the 1-minute load average is
recorded because other jobs on a shared 2-core machine slow every number down.
``OMP_WAIT_POLICY=PASSIVE`` is set unless the environment sets it (recorded in the JSON), as the
node does; with it one torch thread is fastest for ``tiny`` on the 2-core CPU (measured 35.4
frames/s vs 24.6 with two; with the policy unset two threads gave 40.5 on an idle machine), so
the default is 1 thread, the node's ``model.num_threads`` default.

Each runs on both runtimes (``--backends torch onnxruntime``): the torch model and the same
network exported to onnxruntime (``Tracker(..., backend="onnxruntime")``, the CPU presets' choice).

    .venv/bin/python bench/bench_tracker.py [--threads 1] [--size 640x480] [--frames 100] [--rounds 3]

Results: ``artifacts/bench/bench_tracker.json`` (device, threads, versions, per-config timings).
"""
from __future__ import annotations

import os

# Must precede the torch import (libgomp reads it at load): idle OpenMP threads sleep instead of
# spinning, which keeps 2 threads fast while other jobs share the 2 cores (docs/training.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import cv2  # noqa: E402
import numpy as np
import torch

from utptrack_ros.data.generator import generate  # noqa: E402
from utptrack_ros.data.spec import spec_for  # noqa: E402
from utptrack_ros.machine import machine_record  # noqa: E402
from utptrack_ros.models import create_model  # noqa: E402
from utptrack_ros.tracker import Tracker  # noqa: E402
from utptrack_ros.types import Box  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET_FPS = 30.0
CONFIGS = (  # name, modality, prompt
    ("rgb", "rgb", False),
    ("rgb-d", "depth", False),
    ("rgb-t", "thermal", False),
    ("rgb-e", "event", False),
    ("rgb+prompt", "rgb", True),
)


def load_frames(size: tuple[int, int], frames: int, seed_index: int) -> Any:
    seq = generate(spec_for("test", seed_index, challenges={}, length=frames, size=size))
    return seq.materialize()


def make_tracker(name: str, weights: Optional[Path], random_init: bool, backend: str, threads: int) -> Any:
    if random_init:
        torch.manual_seed(0)  # the same random weights for every runtime
        return Tracker(create_model(name), backend=backend, threads=threads)
    return Tracker.from_pretrained(name, weights=weights, backend=backend, threads=threads)


def run_once(tracker: Any, seq: Any, modality: str, prompt: bool) -> list[float]:
    aux = (lambda i: None) if modality == "rgb" else (lambda i: seq.aux(modality, i))
    tracker.init(seq.rgb(0), Box.from_sequence(seq.gt[0]), aux=aux(0), modality=modality,
                 prompt=seq.prompt if prompt else None)
    times = []
    for i in range(1, seq.length):
        image, aux_frame = seq.rgb(i), aux(i)
        t0 = time.perf_counter()
        tracker.track(image, aux=aux_frame)
        times.append(time.perf_counter() - t0)
    return times


def summarise(times: list[float]) -> dict[str, float]:
    t = np.asarray(times)
    return {
        "frames": int(t.size),
        "median_ms": float(np.median(t) * 1e3),
        "fps_median": float(1.0 / np.median(t)),
        "fps_mean": float(t.size / t.sum()),
        "fps_p90": float(1.0 / np.percentile(t, 90)),
        "fps_best_decile": float(1.0 / np.percentile(t, 10)),
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1, the node's model.num_threads: with OMP_WAIT_POLICY=PASSIVE "
                             "a second thread slows tiny down on 2 cores)")
    parser.add_argument("--size", default="640x480", help="frame size WxH (a VGA camera by default)")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved pruned/unpruned rounds per config")
    parser.add_argument("--seed-index", type=int, default=0, help="test-split sequence index to render")
    parser.add_argument("--weights", type=Path, default=None, help="weights file instead of the shipped model")
    parser.add_argument("--random-init", action="store_true", help="random weights (pipeline check only)")
    parser.add_argument("--configs", nargs="*", default=[c[0] for c in CONFIGS])
    parser.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"], choices=("torch", "onnxruntime"),
                        help="runtimes to time (onnxruntime exports into the cache once: ~20 s per model)")
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "bench" / "bench_tracker.json")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)

    cv2.setNumThreads(1)
    w, h = (int(v) for v in args.size.lower().split("x"))
    seq = load_frames((w, h), args.frames, args.seed_index)
    names = ("tiny", "tiny_base")
    trackers = {(b, n): make_tracker(n, args.weights, args.random_init, b, args.threads)
                for b in args.backends for n in names}
    load_before = os.getloadavg()[0]
    results: dict[str, Any] = {}
    for cname, modality, prompt in CONFIGS:
        if cname not in args.configs:
            continue
        times: dict[Any, list[float]] = {key: [] for key in trackers}
        for tracker in trackers.values():  # warm-up (and the text encoder's first load)
            run_once(tracker, seq, modality, prompt)
        for _ in range(args.rounds):  # interleaved: load hits every runtime and pruning alike
            for key, tracker in trackers.items():
                times[key] += run_once(tracker, seq, modality, prompt)
        for backend in args.backends:
            pruned, unpruned = summarise(times[(backend, "tiny")]), summarise(times[(backend, "tiny_base")])
            results.setdefault(backend, {})[cname] = {
                "pruned": pruned,
                "unpruned": unpruned,
                "speedup_median": pruned["fps_median"] / unpruned["fps_median"],
                "target_fps": TARGET_FPS,
                "met": pruned["fps_median"] >= TARGET_FPS,
            }
    load_after = os.getloadavg()[0]

    print(f"tracker frames/s at batch 1, {args.threads} threads, {w}x{h} frames, "
          f"load average {load_before:.1f} -> {load_after:.1f} (other jobs slow every number down)")
    print("backend     | input      | pruned fps median (mean, p90) | unpruned fps median | pruned/unpruned | >= 30 fps")
    for backend, rows in results.items():
        for cname, r in rows.items():
            p, u = r["pruned"], r["unpruned"]
            print(f"{backend:<11} | {cname:<10} | {p['fps_median']:6.1f} ({p['fps_mean']:5.1f}, {p['fps_p90']:5.1f})"
                  f"          | {u['fps_median']:6.1f}              | {r['speedup_median']:.2f}x"
                  f"           | {'MET' if r['met'] else 'MISSED'}")

    out = {
        "device": "cpu",
        "environment": machine_record(),
        "threads": args.threads,
        "backends": args.backends,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "frame_size": [w, h],
        "weights": str(args.weights) if args.weights else ("random" if args.random_init else "shipped"),
        "load_average_1min": [load_before, load_after],
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
