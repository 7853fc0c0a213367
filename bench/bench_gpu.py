"""The tracker on a GPU: model-only and whole-step frames/s, pruned vs unpruned (issue 17).

Without a CUDA GPU it prints why and exits 0 (CI never needs one). With one it prints, for
``o256`` and ``o384`` (random weights) and the shipped small model ``tiny``:

* model only (``forward_search`` with cached templates, CUDA events, median of ``--runs``):
  batch 1 and 16 x fp32 / fp16 x eager / CUDA-graph replay, pruned and unpruned, with the
  realised-vs-MAC ratio ``(latency pruned / unpruned) / (MACs pruned / unpruned)`` (1.0 = pruning
  pays exactly its MACs; above 1 = the sorts / gathers / scatters eat part of the saving);
* whole tracker step (``MultiTracker.track`` on a 640x480 frame, crops on the GPU, fp32):
  1 and 16 targets, pruned, unpruned and ``prune.mode: auto`` (``runtime.budget``) eager, and
  pruned / unpruned with ``forward_search`` replayed from CUDA graphs (``runtime.graphed``):
  frames/s, target-frames/s and the median preprocess / model ms.

Everything runs once in one process within ``--budget-s`` seconds (default 270; measurements
left when the time is up are reported as skipped). ``--cpu-smoke`` runs the same code on the CPU
with tiny sizes (no graphs, no fp16), to check the script itself where no GPU is.

    .venv/bin/python bench/bench_gpu.py [--models o256 o384 tiny] [--runs 30] [--frames 60]

Results: ``artifacts/bench/bench_gpu.json`` (machine record, GPU name, every row).
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utptrack_ros.config import BudgetConfig  # noqa: E402
from utptrack_ros.machine import machine_record  # noqa: E402
from utptrack_ros.models import create_model  # noqa: E402
from utptrack_ros.models.examples import example_inputs  # noqa: E402
from utptrack_ros.profiling import count_macs  # noqa: E402
from utptrack_ros.runtime.graphed import GraphedNetwork, cuda_graph  # noqa: E402
from utptrack_ros.tracker import MultiTracker, load_variant  # noqa: E402

SHIPPED = "tiny"


class Clock:
    """The time budget: ``left()`` seconds remain of ``budget_s``."""

    def __init__(self, budget_s: float) -> None:
        self.end = time.monotonic() + budget_s

    def left(self) -> float:
        return self.end - time.monotonic()


def median_ms(fn: Callable[[], Any], runs: int, warmup: int, device: torch.device) -> float:
    """Median milliseconds of ``fn()`` (CUDA events on a GPU, wall clock on the CPU)."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(runs):
            if device.type == "cuda":
                start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                stop.record()
                stop.synchronize()
                times.append(start.elapsed_time(stop))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def build(name: str) -> torch.nn.Module:
    if name == SHIPPED:
        return load_variant(SHIPPED).eval()
    return create_model(name).eval()


def mac_ratio(model: torch.nn.Module) -> float:
    """Paper-convention MACs (Linear + Conv, batch 1) pruned / unpruned."""
    x = example_inputs(model.config, 1)
    with torch.inference_mode():
        tokens = model.embed_templates(x.static, x.dynamic, x.static_box, x.dynamic_box)
    pruned, _ = count_macs(model, lambda: model.forward_search(x.search, tokens, prune=model.prune))
    full, _ = count_macs(model, lambda: model.forward_search(x.search, tokens, prune=model.prune.off()))
    return pruned.paper / full.paper


def model_rows(name: str, model: torch.nn.Module, device: torch.device, args: argparse.Namespace,
               clock: Clock, macs: float) -> list[dict[str, Any]]:
    rows = []
    dtypes = [torch.float32] + ([torch.float16] if device.type == "cuda" else [])
    modes = ["eager"] + (["graph"] if device.type == "cuda" else [])
    for dtype in dtypes:
        net = copy.deepcopy(model).to(device=device, dtype=dtype)
        for batch in args.batches:
            x = example_inputs(model.config, batch)
            on = [t.to(device=device, dtype=dtype) for t in (x.search, x.static, x.dynamic, x.static_box, x.dynamic_box)]
            with torch.inference_mode():
                tokens = net.embed_templates(*on[1:])
            for mode in modes:
                row: dict[str, Any] = {"model": name, "batch": batch, "dtype": str(dtype).replace("torch.", ""),
                                       "mode": mode}
                for label, prune in (("pruned", net.prune), ("unpruned", net.prune.off())):
                    if clock.left() < 0:
                        row[f"{label}_ms"] = None
                        row["note"] = "skipped: time budget spent"
                        continue
                    def fn(prune=prune, net=net, search=on[0], tokens=tokens):  # noqa: E306 - one per schedule
                        return net.forward_search(search, tokens, prune=prune)
                    try:
                        run = cuda_graph(fn) if mode == "graph" else fn
                        row[f"{label}_ms"] = median_ms(run, args.runs, 3, device)
                    except Exception as err:  # noqa: BLE001 - report and go on (e.g. a capture refused)
                        row[f"{label}_ms"] = None
                        row["note"] = f"{type(err).__name__}: {str(err)[:120]}"
                p, u = row.get("pruned_ms"), row.get("unpruned_ms")
                if p and u:
                    row["pruned_fps"], row["unpruned_fps"] = 1e3 / p, 1e3 / u
                    row["realised_vs_mac"] = (p / u) / macs
                rows.append(row)
        del net
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def frame_and_boxes(targets: int, seed: int = 0) -> tuple[np.ndarray, list[list[float]]]:
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    cols = 4 if targets > 1 else 1
    boxes = []
    for i in range(targets):
        x, y = 60 + 140 * (i % cols), 50 + 100 * (i // cols)
        frame[y : y + 40, x : x + 30] = (200, 40 + 10 * i, 40)
        boxes.append([float(x), float(y), 30.0, 40.0])
    return frame, boxes


def step_rows(name: str, model: torch.nn.Module, device: torch.device, args: argparse.Namespace,
              clock: Clock, cache: Path) -> list[dict[str, Any]]:
    rows = []
    configured = model.prune
    for targets in args.targets:
        frame, boxes = frame_and_boxes(targets)
        tracker = MultiTracker(copy.deepcopy(model), device=device)
        eager_network = tracker.network
        labels = ["pruned", "unpruned", "auto"] + (["pruned+graphs", "unpruned+graphs"] if device.type == "cuda" else [])
        for label in labels:
            row: dict[str, Any] = {"model": name, "targets": targets, "schedule": label}
            if clock.left() < 0:
                row["note"] = "skipped: time budget spent"
                rows.append(row)
                continue
            if label == "auto":
                choice = tracker.choose_token_budget(BudgetConfig(mode="auto", runs=max(5, args.runs // 3)),
                                                     configured, batch=targets, cache_dir=cache)
                row["chosen"], row["reason"] = choice.schedule.label, choice.reason
            else:
                tracker.set_prune(configured if label.startswith("pruned") else configured.off())
            if label.endswith("+graphs"):  # forward_search replayed from CUDA graphs (runtime.graphed)
                tracker.network = GraphedNetwork(tracker.model)
                tracker.set_prune(configured if label.startswith("pruned") else configured.off())
            else:
                tracker.network = eager_network
            tracker.init(frame, boxes)
            pre, mod, tot = [], [], []
            for i in range(args.frames + 5):
                t0 = time.perf_counter()
                try:
                    results = tracker.track(frame)
                except Exception as err:  # noqa: BLE001 - report (e.g. a capture refused) and go on
                    row["note"] = f"{type(err).__name__}: {str(err)[:120]}"
                    break
                elapsed = (time.perf_counter() - t0) * 1e3
                if i >= 5:
                    tot.append(elapsed)
                    pre.append(results[0].timings_ms["preprocess"])
                    mod.append(results[0].timings_ms["model"])
            if not tot:
                rows.append(row)
                continue
            ms = statistics.median(tot)
            row.update(step_ms=ms, fps=1e3 / ms, target_fps=targets * 1e3 / ms,
                       preprocess_ms=statistics.median(pre), model_ms=statistics.median(mod))
            rows.append(row)
        del tracker
    return rows


def fmt(v: Any, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["o256", "o384", SHIPPED])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--targets", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--budget-s", type=float, default=270.0)
    parser.add_argument("--cpu-smoke", action="store_true", help="run on the CPU with tiny sizes (checks the script)")
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "bench" / "bench_gpu.json")
    args = parser.parse_args(argv)
    if args.cpu_smoke:
        device = torch.device("cpu")
        args.models = [m for m in args.models if m == SHIPPED] or [SHIPPED]
        args.runs, args.frames, args.batches, args.targets = 2, 3, [1, 2], [1, 2]
    elif not torch.cuda.is_available():
        print("bench_gpu: no CUDA GPU on this machine (torch.cuda.is_available() is False); skipped")
        return 0
    else:
        device = torch.device("cuda")
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
        torch.backends.cudnn.allow_tf32 = False
    clock = Clock(args.budget_s)
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else "none (--cpu-smoke)"
    print(f"bench_gpu on {gpu}; torch {torch.__version__}; budget {args.budget_s:.0f} s")
    model_table: list[dict[str, Any]] = []
    step_table: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as cache:
        for name in args.models:
            t0 = time.monotonic()
            model = build(name)
            macs = mac_ratio(model)
            model_table += model_rows(name, model, device, args, clock, macs)
            step_table += step_rows(name, model, device, args, clock, Path(cache))
            print(f"  {name}: MAC ratio pruned/unpruned {macs:.3f}; {time.monotonic() - t0:.0f} s")
            del model

    print("\nmodel only, forward_search (median ms; frames/s = batches/s)")
    print("| model | batch | dtype | mode | pruned ms | unpruned ms | pruned fps | unpruned fps | realised/MAC | note |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in model_table:
        print(f"| {r['model']} | {r['batch']} | {r['dtype']} | {r['mode']} | {fmt(r.get('pruned_ms'))} | "
              f"{fmt(r.get('unpruned_ms'))} | {fmt(r.get('pruned_fps'), '.0f')} | {fmt(r.get('unpruned_fps'), '.0f')} | "
              f"{fmt(r.get('realised_vs_mac'))} | {r.get('note', '')} |")
    print("\nwhole tracker step, 640x480, fp32, crops on the device (median)")
    print("| model | targets | schedule | frames/s | target-frames/s | preprocess ms | model ms | auto's choice |")
    print("|---|---|---|---|---|---|---|---|")
    for r in step_table:
        print(f"| {r['model']} | {r['targets']} | {r['schedule']} | {fmt(r.get('fps'), '.0f')} | "
              f"{fmt(r.get('target_fps'), '.0f')} | {fmt(r.get('preprocess_ms'))} | {fmt(r.get('model_ms'))} | "
              f"{r.get('reason', r.get('note', ''))} |")
    by = {(r["model"], r["targets"], r["schedule"]): r.get("fps") for r in step_table}
    for (name, targets, schedule), fps in by.items():
        if schedule != "auto" or fps is None:
            continue
        best = max(v for v in (by.get((name, targets, "pruned")), by.get((name, targets, "unpruned"))) if v)
        print(f"auto vs the faster fixed schedule, {name} x{targets}: {fps / best:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"environment": machine_record(), "gpu": gpu, "model_only": model_table,
                                    "whole_step": step_table}, indent=1))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
